/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Prometheus text exposition of the daemon's figures and each guest's record. */
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const double metrics_plan_bounds[METRICS_PLAN_BUCKETS] = {
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1,
};

/* The windowed ratios cover the current bucket and the one before it. */
#define RATIO_WINDOW_S (2.0 * HISTORY_BUCKET_SEC)

void metrics_escape(FILE *f, const char *s)
{
        for (; s && *s; s++) {
                if (*s == '\\')
                        fputs("\\\\", f);
                else if (*s == '"')
                        fputs("\\\"", f);
                else if (*s == '\n')
                        fputs("\\n", f);
                else
                        fputc(*s, f);
        }
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A number as the format writes it: integers without a fraction, NaN. */
static void value(FILE *f, double v)
{
        if (isnan(v))
                fputs(" NaN\n", f);
        else if (v == floor(v) && fabs(v) < 1e15)
                fprintf(f, " %.0f\n", v);
        else
                fprintf(f, " %.6g\n", v);
}

static void guest_labels(FILE *f, const struct history_guest *g)
{
        fputs("domain=\"", f);
        metrics_escape(f, g->name);
        fputs("\",uuid=\"", f);
        metrics_escape(f, g->uuid);
        fputc('"', f);
}

/* name{domain="..",uuid=".."[,extra]} value */
static void guest_sample(FILE *f, const char *name, const struct history_guest *g, const char *extra_key,
                         const char *extra_value, double v)
{
        fprintf(f, "%s{", name);
        guest_labels(f, g);
        if (extra_key) {
                fprintf(f, ",%s=\"", extra_key);
                metrics_escape(f, extra_value);
                fputc('"', f);
        }
        fputc('}', f);
        value(f, v);
}

static void counts(FILE *f, const char *name, const char *type, const char *help, const char *key,
                   const struct metrics_count *c, size_t n)
{
        family(f, name, type, help);
        for (size_t i = 0; i < n; i++) {
                fprintf(f, "%s{%s=\"", name, key);
                metrics_escape(f, c[i].label);
                fputs("\"}", f);
                value(f, (double)c[i].value);
        }
}

static void scalar(FILE *f, const char *name, const char *type, const char *help, double v)
{
        family(f, name, type, help);
        fputs(name, f);
        value(f, v);
}

static void daemon_families(FILE *f, const struct metrics_daemon *d)
{
        family(f, "vcpuspread_build_info", "gauge", "The daemon's version; always 1.");
        fputs("vcpuspread_build_info{version=\"", f);
        metrics_escape(f, d->version);
        fputs("\"} 1\n", f);
        scalar(f, "vcpuspread_observe", "gauge",
               "1 when the daemon observes (Mode=observe, --observe): it decides and exports, and changes nothing.",
               d->observe);
        scalar(f, "vcpuspread_libvirt_connected", "gauge", "1 when the connection to libvirtd is up.",
               d->libvirt_connected);
        counts(f, "vcpuspread_guests", "gauge", "Running guests the daemon knows, by state.", "state", d->guests,
               d->n_guest_states);
        scalar(f, "vcpuspread_managed_vcpus", "gauge", "vCPUs of the guests the daemon places (or, observing, would place).",
               (double)d->vcpus_managed);
        scalar(f, "vcpuspread_config_last_load_timestamp_seconds", "gauge",
               "When the configuration in force was loaded, seconds since the epoch.", (double)d->config_loaded);
        scalar(f, "vcpuspread_config_last_reload_successful", "gauge",
               "1 when the last load or reload of the configuration succeeded.", d->config_reload_ok);
        scalar(f, "vcpuspread_passes_total", "counter", "Planning passes run.", (double)d->passes);

        family(f, "vcpuspread_plan_duration_seconds", "histogram", "Time the placement engine took per pass.");
        uint64_t cum = 0;
        for (size_t i = 0; i < METRICS_PLAN_BUCKETS; i++) {
                cum += d->plan_buckets[i];
                fprintf(f, "vcpuspread_plan_duration_seconds_bucket{le=\"%g\"} %llu\n", metrics_plan_bounds[i],
                        (unsigned long long)cum);
        }
        fprintf(f, "vcpuspread_plan_duration_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)d->plan_count);
        fputs("vcpuspread_plan_duration_seconds_sum", f);
        value(f, d->plan_sum);
        fprintf(f, "vcpuspread_plan_duration_seconds_count %llu\n", (unsigned long long)d->plan_count);

        counts(f, "vcpuspread_apply_errors_total", "counter", "Moves the host refused, by kind.", "kind",
               d->apply_errors, d->n_apply_errors);
        counts(f, "vcpuspread_moves_total", "counter", "vCPU moves applied since the daemon started, by reason.",
               "reason", d->moves, d->n_moves);
        counts(f, "vcpuspread_observed_moves_total", "counter",
               "vCPU moves decided but not applied because the daemon observes, by reason.", "reason",
               d->observed_moves, d->n_observed_moves);
}

/* Per-guest families: one line per running guest each. */
enum guest_figure {
        G_VCPUS, G_BUSY, G_WAIT, G_STACKED, G_CHANCE, G_STACKED_ALL,
        G_SAMPLES, G_RUNNABLE, G_STACKED_SAMPLES, G_VOLUNTARY, G_INVOLUNTARY, G_CHANGES, _G_MAX,
};

static const struct {
        const char *name, *type, *help;
} guest_families[_G_MAX] = {
        [G_VCPUS] = { "vcpuspread_guest_vcpus", "gauge", "vCPUs of the guest." },
        [G_BUSY] = { "vcpuspread_guest_busy_ratio", "gauge",
                     "Mean per-vCPU share of the last interval spent running or waiting to run." },
        [G_WAIT] = { "vcpuspread_guest_wait_ratio", "gauge",
                     "Mean per-vCPU share of the last interval spent waiting for a CPU (run-queue wait)." },
        [G_STACKED] = { "vcpuspread_guest_stacked_ratio", "gauge",
                        "Share of runnable vCPU samples with a runnable sibling on the same host CPU, over the last 2 to 4 minutes." },
        [G_CHANCE] = { "vcpuspread_guest_stacked_chance_ratio", "gauge",
                       "The stacked ratio an even random spread of the host's runnable tasks would give, same window." },
        [G_STACKED_ALL] = { "vcpuspread_guest_stacked_all_ratio", "gauge",
                            "Share of all vCPU samples, runnable or not, that were stacked, same window." },
        [G_SAMPLES] = { "vcpuspread_guest_samples_total", "counter", "vCPU state samples taken." },
        [G_RUNNABLE] = { "vcpuspread_guest_runnable_samples_total", "counter", "Of those, samples of a runnable vCPU." },
        [G_STACKED_SAMPLES] = { "vcpuspread_guest_stacked_samples_total", "counter",
                                "Of those, samples of a runnable vCPU with a runnable sibling on its host CPU." },
        [G_VOLUNTARY] = { "vcpuspread_guest_voluntary_switches_total", "counter",
                          "Voluntary context switches of the guest's vCPU threads (halt, futex wait, I/O)." },
        [G_INVOLUNTARY] = { "vcpuspread_guest_involuntary_switches_total", "counter",
                            "Involuntary context switches of the guest's vCPU threads (preemption)." },
        [G_CHANGES] = { "vcpuspread_guest_mode_changes_total", "counter", "Changes of the guest's mode." },
};

static double guest_figure(const struct history_guest *g, const struct history_acc *w, enum guest_figure k)
{
        switch (k) {
        case G_VCPUS: return (double)g->n_vcpus;
        case G_BUSY: return g->busy;
        case G_WAIT: return g->wait;
        case G_STACKED: return history_stacked_share(w);
        case G_CHANCE: return history_stacked_chance(w);
        case G_STACKED_ALL: return history_stacked_all(w);
        case G_SAMPLES: return (double)g->total.samples;
        case G_RUNNABLE: return (double)g->total.runnable;
        case G_STACKED_SAMPLES: return (double)g->total.stacked;
        case G_VOLUNTARY: return g->total.voluntary;
        case G_INVOLUNTARY: return g->total.involuntary;
        case G_CHANGES: return (double)g->total.mode_changes;
        default: return NAN;
        }
}

/* Policy=auto's figures of its last window, for guests it decides. */
enum adaptive_figure { A_HARM, A_STACKED, A_BUSY, A_WAIT, A_VOLUNTARY, A_INVOLUNTARY, _A_MAX };

static const struct {
        const char *name, *help;
} adaptive_families[_A_MAX] = {
        [A_HARM] = { "vcpuspread_guest_adaptive_harm_ratio", "Policy=auto: wait x stacked of the last interval its state machine was fed (harm)." },
        [A_STACKED] = { "vcpuspread_guest_adaptive_stacked_ratio", "Policy=auto: stacked share of the last interval its state machine was fed." },
        [A_BUSY] = { "vcpuspread_guest_adaptive_busy_ratio", "Policy=auto: busy share of the last interval its state machine was fed." },
        [A_WAIT] = { "vcpuspread_guest_adaptive_wait_ratio", "Policy=auto: run-queue wait share of the last interval its state machine was fed." },
        [A_VOLUNTARY] = { "vcpuspread_guest_adaptive_voluntary_switches_per_second",
                          "Policy=auto: voluntary switches per vCPU-second it was fed last." },
        [A_INVOLUNTARY] = { "vcpuspread_guest_adaptive_involuntary_switches_per_second",
                            "Policy=auto: involuntary switches per vCPU-second it was fed last." },
};

static double adaptive_figure(const struct adaptive_figures *a, enum adaptive_figure k)
{
        switch (k) {
        case A_HARM: return a->harm;
        case A_STACKED: return a->stacked;
        case A_BUSY: return a->busy;
        case A_WAIT: return a->wait;
        case A_VOLUNTARY: return a->voluntary_hz;
        case A_INVOLUNTARY: return a->involuntary_hz;
        default: return NAN;
        }
}

static void guest_families_write(FILE *f, const struct history *h, uint64_t now_ns)
{
        size_t n = h->n_guests;
        struct history_acc *w = calloc(n ?: 1, sizeof(*w));
        bool any_adaptive = false;

        for (size_t i = 0; w && i < n; i++) {
                history_window(h, h->guests[i], now_ns, RATIO_WINDOW_S, &w[i]);
                any_adaptive |= h->guests[i]->present && h->guests[i]->adaptive;
        }

        family(f, "vcpuspread_guest_info", "gauge", "A running guest: its policy and state; always 1.");
        for (size_t i = 0; i < n; i++) {
                const struct history_guest *g = h->guests[i];
                if (!g->present)
                        continue;
                fputs("vcpuspread_guest_info{", f);
                guest_labels(f, g);
                fputs(",policy=\"", f);
                metrics_escape(f, g->policy);
                fputs("\",state=\"", f);
                metrics_escape(f, g->state);
                fputs("\"} 1\n", f);
        }
        family(f, "vcpuspread_guest_mode", "gauge",
               "1 for the mode the guest is in (observing: would be in): kernel, spread or cosched.");
        for (size_t i = 0; i < n; i++)
                for (int m = 0; h->guests[i]->present && m < _ADAPTIVE_MODE_MAX; m++)
                        guest_sample(f, "vcpuspread_guest_mode", h->guests[i], "mode", adaptive_mode_to_string(m),
                                     h->guests[i]->mode == (enum adaptive_mode)m);
        family(f, "vcpuspread_guest_mode_seconds_total", "counter", "Time the guest spent in each mode.");
        for (size_t i = 0; i < n; i++)
                for (int m = 0; h->guests[i]->present && m < _ADAPTIVE_MODE_MAX; m++)
                        guest_sample(f, "vcpuspread_guest_mode_seconds_total", h->guests[i], "mode",
                                     adaptive_mode_to_string(m), h->guests[i]->total.mode_s[m]);
        for (int k = 0; k < _G_MAX; k++) {
                family(f, guest_families[k].name, guest_families[k].type, guest_families[k].help);
                for (size_t i = 0; i < n; i++)
                        if (h->guests[i]->present)
                                guest_sample(f, guest_families[k].name, h->guests[i], NULL, NULL,
                                             w ? guest_figure(h->guests[i], &w[i], k) : NAN);
        }
        for (int k = 0; any_adaptive && k < _A_MAX; k++) {
                family(f, adaptive_families[k].name, "gauge", adaptive_families[k].help);
                for (size_t i = 0; i < n; i++)
                        if (h->guests[i]->present && h->guests[i]->adaptive)
                                guest_sample(f, adaptive_families[k].name, h->guests[i], NULL, NULL,
                                             adaptive_figure(&h->guests[i]->figures, k));
        }
        free(w);
}

static void vcpu_labels(FILE *f, const char *name, const struct history_guest *g, const struct history_vcpu *v)
{
        fprintf(f, "%s{", name);
        guest_labels(f, g);
        fprintf(f, ",vcpu=\"%u\"", v->vcpu);
}

/* KVM's counters, for the vCPUs of kvm guests only (no family at all on a
 * host of TCG guests). */
enum kvm_figure { K_HALT_EXITS, K_HALT_WAIT, K_PREEMPT, K_YIELD_ATTEMPTED, K_YIELD_SUCCESSFUL, _K_MAX };

static const struct {
        const char *name, *help;
} kvm_families[_K_MAX] = {
        [K_HALT_EXITS] = { "vcpuspread_vcpu_kvm_halt_exits_total",
                           "KVM guests: halt exits of the vCPU (it executed HLT: idle, blocking) while the daemon watched." },
        [K_HALT_WAIT] = { "vcpuspread_vcpu_kvm_halt_wait_seconds_total",
                          "KVM guests: time the vCPU was halted in the host kernel while the daemon watched." },
        [K_PREEMPT] = { "vcpuspread_vcpu_kvm_preemption_reported_total",
                        "KVM guests: host preemptions of the running vCPU reported to the guest (steal time) while the daemon watched." },
        [K_YIELD_ATTEMPTED] = { "vcpuspread_vcpu_kvm_directed_yield_attempted_total",
                                "KVM guests: directed yields the vCPU attempted (paravirtual spin-lock waits) while the daemon watched." },
        [K_YIELD_SUCCESSFUL] = { "vcpuspread_vcpu_kvm_directed_yield_successful_total",
                                 "KVM guests: of those, yields that ran the preempted sibling." },
};

static double kvm_figure(const struct history_kvm *k, enum kvm_figure f)
{
        switch (f) {
        case K_HALT_EXITS: return k->halt_exits;
        case K_HALT_WAIT: return k->halt_wait_s;
        case K_PREEMPT: return k->preemption_reported;
        case K_YIELD_ATTEMPTED: return k->yield_attempted;
        case K_YIELD_SUCCESSFUL: return k->yield_successful;
        default: return NAN;
        }
}

static void kvm_families_write(FILE *f, const struct history *h)
{
        bool any = false;

        for (size_t i = 0; i < h->n_guests && !any; i++)
                for (size_t k = 0; h->guests[i]->present && k < h->guests[i]->n_vcpus && !any; k++)
                        any = h->guests[i]->vcpus[k].kvm.known;
        for (int x = 0; any && x < _K_MAX; x++) {
                family(f, kvm_families[x].name, "counter", kvm_families[x].help);
                for (size_t i = 0; i < h->n_guests; i++)
                        for (size_t k = 0; h->guests[i]->present && k < h->guests[i]->n_vcpus; k++) {
                                const struct history_vcpu *v = &h->guests[i]->vcpus[k];
                                if (!v->kvm.known)
                                        continue;
                                vcpu_labels(f, kvm_families[x].name, h->guests[i], v);
                                fputc('}', f);
                                value(f, kvm_figure(&v->kvm, x));
                        }
        }
}

static void vcpu_families_write(FILE *f, const struct history *h)
{
        family(f, "vcpuspread_vcpu_cpu_seconds_total", "counter", "CPU time of the vCPU thread while the daemon watched.");
        for (size_t i = 0; i < h->n_guests; i++)
                for (size_t k = 0; h->guests[i]->present && k < h->guests[i]->n_vcpus; k++) {
                        vcpu_labels(f, "vcpuspread_vcpu_cpu_seconds_total", h->guests[i], &h->guests[i]->vcpus[k]);
                        fputc('}', f);
                        value(f, h->guests[i]->vcpus[k].cpu_s);
                }
        family(f, "vcpuspread_vcpu_wait_seconds_total", "counter",
               "Time the vCPU thread waited for a CPU (run-queue wait) while the daemon watched.");
        for (size_t i = 0; i < h->n_guests; i++)
                for (size_t k = 0; h->guests[i]->present && k < h->guests[i]->n_vcpus; k++) {
                        vcpu_labels(f, "vcpuspread_vcpu_wait_seconds_total", h->guests[i], &h->guests[i]->vcpus[k]);
                        fputc('}', f);
                        value(f, h->guests[i]->vcpus[k].wait_s);
                }
        kvm_families_write(f, h);
        for (int observed = 0; observed < 2; observed++) {
                const char *name = observed ? "vcpuspread_vcpu_observed_moves_total" : "vcpuspread_vcpu_moves_total";
                family(f, name, "counter",
                       observed ? "Moves of the vCPU decided but not applied because the daemon observes, by reason."
                                : "Moves of the vCPU applied, by reason.");
                for (size_t i = 0; i < h->n_guests; i++)
                        for (size_t k = 0; h->guests[i]->present && k < h->guests[i]->n_vcpus; k++) {
                                const struct history_vcpu *v = &h->guests[i]->vcpus[k];
                                for (size_t r = 0; r < v->n_reasons; r++) {
                                        uint64_t c = observed ? v->moves[r].observed : v->moves[r].applied;
                                        if (!c)
                                                continue;
                                        vcpu_labels(f, name, h->guests[i], v);
                                        fputs(",reason=\"", f);
                                        metrics_escape(f, v->moves[r].reason);
                                        fputs("\"}", f);
                                        value(f, (double)c);
                                }
                        }
        }
}

int metrics_format(const struct metrics_daemon *d, const struct history *h, uint64_t now_ns, char **text,
                   size_t *len)
{
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                return -ENOMEM;
        daemon_families(f, d);
        guest_families_write(f, h, now_ns);
        vcpu_families_write(f, h);
        if (ferror(f) | fclose(f)) {
                free(buf);
                return -ENOMEM;
        }
        *text = buf;
        *len = size;
        return 0;
}

int metrics_write_file(const char *path, const char *text, size_t len, char *err, size_t errlen)
{
        char tmp[4200];
        int fd, r;

        /* A name the textfile collector skips (it reads *.prom only). */
        if ((size_t)snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid()) >= sizeof(tmp)) {
                snprintf(err, errlen, "%s: file name too long", path);
                return -ENAMETOOLONG;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0) {
                r = -errno;
                snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
                return r;
        }
        for (size_t done = 0; done < len;) {
                ssize_t n = write(fd, text + done, len - done);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        r = n < 0 ? -errno : -EIO;
                        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(-r));
                        close(fd);
                        unlink(tmp);
                        return r;
                }
                done += (size_t)n;
        }
        /* Mode 0644 whatever the umask: node_exporter runs as its own user. */
        r = fchmod(fd, 0644) < 0 ? -errno : 0;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r < 0) {
                snprintf(err, errlen, "cannot finish %s: %s", tmp, strerror(-r));
                unlink(tmp);
                return r;
        }
        if (rename(tmp, path) < 0) {
                r = -errno;
                snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
                unlink(tmp);
                return r;
        }
        return 0;
}
