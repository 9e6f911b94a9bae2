/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the operator sees of the daemon's work: once per sampling interval
 * each guest's vCPU states are read once (stacked siblings, daemon/signals.h)
 * and, every SIGNALS_BUDGET_DEFAULT.ctxt_every-th interval, their switch
 * counters; with the load sampler's CPU and wait counters they go into the
 * history (history.h), and MetricsFile= is rewritten (metrics.h).  It reads
 * /proc and writes the metrics file; it never changes a guest.
 *
 * Cost: one /proc/TID/stat read per vCPU per interval (3-6 us each) and a
 * status read every fifth; 200 vCPUs: about 1.5 ms a second.
 */
#include "manager-internal.h"
#include "manager-metrics.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "build-config.h"
#include "util.h"
#include "history.h"
#include "macro.h"
#include "message-ids.h"
#include "metrics.h"
#include "signals.h"

/* Apply errors by what the host said (apply.h's return values). */
enum apply_error_kind { ERR_THREAD_GONE, ERR_READBACK, ERR_PERMISSION, ERR_INVALID, ERR_NO_CGROUP, ERR_OTHER, _ERR_MAX };

static const char *const apply_error_kinds[_ERR_MAX] = {
        [ERR_THREAD_GONE] = "thread-gone", [ERR_READBACK] = "readback-mismatch", [ERR_PERMISSION] = "permission",
        [ERR_INVALID] = "invalid", [ERR_NO_CGROUP] = "no-cgroup", [ERR_OTHER] = "other",
};

#define MOVE_REASONS_MAX 16

struct reason_count {
        char reason[24];
        uint64_t applied, observed;
};

struct manager_metrics {
        struct history *history;
        struct signals *signals;
        bool signals_failed;
        uint64_t interval;              /* intervals so far, for the switch counters' turn */
        uint64_t last_ns;
        uint64_t plan_buckets[METRICS_PLAN_BUCKETS], plan_count;
        double plan_sum;
        uint64_t apply_errors[_ERR_MAX];
        size_t n_reasons;
        struct reason_count reasons[MOVE_REASONS_MAX];
        time_t config_loaded;
        bool config_ok;
        char *written;                  /* the file last written: removed when MetricsFile= changes */
        bool write_failed;              /* said once until a write succeeds */
};

static struct manager_metrics *mm_get(struct manager *m)
{
        if (m->metrics)
                return m->metrics;
        struct manager_metrics *mm = calloc(1, sizeof(*mm));
        if (!mm || history_new(monotonic_ns(), &mm->history) < 0) {
                free(mm);
                return NULL;
        }
        mm->config_loaded = time(NULL);
        mm->config_ok = true;
        m->metrics = mm;
        return mm;
}

void manager_metrics_free(struct manager *m)
{
        struct manager_metrics *mm = m->metrics;
        if (!mm)
                return;
        /* Metrics of a daemon that is not running would be stale: no file is better. */
        if (mm->written)
                unlink(mm->written);
        free(mm->written);
        history_free(mm->history);
        if (mm->signals)
                signals_free(mm->signals);
        free(mm);
        m->metrics = NULL;
}

/*
 * The mode a guest is in, or (observing) would be in.  Policy=auto's own
 * decision when it runs (manager-auto.c's struct guest_auto), else what its
 * policy means: spread and spread-cores keep siblings apart, a guest the
 * daemon does not place is left to the kernel.
 */
static enum adaptive_mode guest_mode(const struct managed_guest *g, const char **reason)
{
        *reason = NULL;
        if (g->state != GUEST_MANAGED)
                return ADAPTIVE_KERNEL;
        if (g->auto_state.active) {
                *reason = g->auto_state.reason[0] ? g->auto_state.reason : NULL;
                return g->auto_state.mode;
        }
        return g->policy == POLICY_IGNORE ? ADAPTIVE_KERNEL : ADAPTIVE_SPREAD;
}

/* Policy=auto's figures of the last interval its state machine was fed;
 * false: the guest has none. */
static bool guest_adaptive_figures(const struct managed_guest *g, enum adaptive_phase *phase,
                                   struct adaptive_figures *out)
{
        const struct guest_auto *ga = &g->auto_state;
        if (!ga->active || !ga->have_last || g->state != GUEST_MANAGED)
                return false;
        const struct adaptive_input *in = &ga->last;
        double stacked = in->runnable_samples ? (double)in->stacked_samples / in->runnable_samples : 0;
        *phase = ga->ag.phase;
        *out = (struct adaptive_figures){
                .seconds = in->dt_s, .cpu_share = in->cpu_share, .busy = in->busy, .wait = in->wait,
                .stacked = stacked, .stacked_chance = in->stacked_chance,
                .voluntary_hz = in->switches_unknown ? NAN : in->voluntary_hz,
                .involuntary_hz = in->switches_unknown ? NAN : in->involuntary_hz, .idle_forbidden = in->idle_forbidden,
                /* adaptive_harm() with the default yield_weight of 0 */
                .harm = in->wait * stacked, .runnable_samples = in->runnable_samples,
        };
        return true;
}

/* This interval's ticks from Policy=auto when it ticked the guest (up to
 * 10 Hz): then the vCPUs are not read a second time. */
static bool guest_auto_tally(const struct managed_guest *g, struct history_guest *hg, struct signals_tally *t,
                             double *chance)
{
        const struct guest_auto *ga = &g->auto_state;
        if (!ga->active || !ga->have_last || ga->intervals == hg->ext_seq || ga->last.samples == 0)
                return false;
        hg->ext_seq = ga->intervals;
        *t = (struct signals_tally){ .ticks = 1, .samples = ga->last.samples, .runnable = ga->last.runnable_samples,
                                     .stacked = ga->last.stacked_samples };
        *chance = ga->last.stacked_chance;
        return true;
}

/* Host CPUs the guest may use: what an even random spread is spread over. */
static unsigned guest_cpus(const struct manager *m, const struct managed_guest *g)
{
        int w;
        if (g->restriction) {
                _cleanup_bitmap_ hwloc_bitmap_t a = hwloc_bitmap_alloc();
                if (!a)
                        return 0;
                hwloc_bitmap_and(a, g->restriction, m->usable);
                w = hwloc_bitmap_weight(a);
        } else {
                w = hwloc_bitmap_weight(m->usable);
        }
        return w > 0 ? (unsigned)w : 0;
}

static void guest_interval(struct manager *m, struct manager_metrics *mm, struct managed_guest *g,
                           uint64_t now, double dt_s, unsigned host_runnable)
{
        struct history_guest *hg = history_guest_get(mm->history, g->uuid, g->name, now, time(NULL));
        if (!hg)
                return;
        _cleanup_free_ struct history_vcpu_sample *vs = calloc(g->n_vcpus ?: 1, sizeof(*vs));
        _cleanup_free_ struct signals_thread **threads = calloc(g->n_vcpus ?: 1, sizeof(*threads));
        _cleanup_free_ struct thread_sched_state *scratch = calloc(g->n_vcpus ?: 1, sizeof(*scratch));
        struct signals_budget budget = SIGNALS_BUDGET_DEFAULT;
        size_t n = 0, nt = 0;

        if (!vs || !threads || !scratch)
                return;
        for (size_t k = 0; k < g->n_vcpus; k++) {
                const struct managed_vcpu *v = &g->vcpus[k];
                struct history_vcpu *hv = history_vcpu_get(hg, v->vcpu);
                if (!hv || v->tid <= 0)
                        continue;
                if (hv->st.tid != v->tid || hv->st.pid != g->qemu_pid) {
                        signals_thread_close(&hv->st);
                        signals_thread_init(&hv->st, g->qemu_pid, v->tid);
                }
                vs[n] = (struct history_vcpu_sample){ .vcpu = v->vcpu, .tid = v->tid,
                                                      .kvm = manager_kvm_history(g, v) };
                if (v->tl.have_prev) {
                        vs[n].have_counters = true;
                        vs[n].cpu_ns = v->tl.prev.cpu_ns;
                        vs[n].wait_ns = v->tl.prev.wait_ns;
                }
                if (mm->signals && signals_ctxt_due(&budget, mm->interval, k))
                        vs[n].have_ctxt = signals_read_ctxt(mm->signals, &hv->st, &vs[n].ctxt) == 0;
                n++;
        }
        /* history_vcpu_get() may have moved the vCPU records: take the pointers now. */
        for (size_t k = 0; k < n; k++) {
                struct history_vcpu *hv = history_vcpu_get(hg, vs[k].vcpu);
                if (hv)
                        threads[nt++] = &hv->st;
        }

        struct history_sample s = {
                .now_ns = now, .wall = time(NULL), .dt_s = dt_s, .vcpus = vs, .n_vcpus = n,
                .policy = placement_policy_to_string(g->policy), .state = guest_state_to_string(g->state),
        };
        if (guest_auto_tally(g, hg, &s.tally, &s.stacked_chance))
                ;
        else if (mm->signals && nt >= 2) {
                signals_sample_guest(mm->signals, threads, nt, scratch, &s.tally);
                s.stacked_chance = adaptive_stacked_chance(host_runnable, guest_cpus(m, g), (unsigned)nt);
        }
        s.mode = guest_mode(g, &s.mode_reason);
        history_sample_add(mm->history, hg, &s);
        hg->adaptive = guest_adaptive_figures(g, &hg->phase, &hg->figures);
}

static void metrics_daemon_fill(struct manager *m, struct manager_metrics *mm, struct metrics_daemon *d,
                                struct metrics_count *states, size_t max_states, struct metrics_count *errors,
                                struct metrics_count *moves, struct metrics_count *observed)
{
        *d = (struct metrics_daemon){
                .version = PACKAGE_VERSION, .observe = m->observe, .libvirt_connected = m->lv && lv_conn_is_alive(m->lv),
                .guests = states, .config_loaded = mm->config_loaded, .config_reload_ok = mm->config_ok,
                .plan_count = mm->plan_count, .plan_sum = mm->plan_sum, .apply_errors = errors,
                .n_apply_errors = _ERR_MAX, .moves = moves, .observed_moves = observed, .passes = m->n_passes,
        };
        memcpy(d->plan_buckets, mm->plan_buckets, sizeof(d->plan_buckets));
        for (size_t s = 0; s < max_states && strcmp(guest_state_to_string(s), "unknown") != 0; s++) {
                states[s] = (struct metrics_count){ .label = guest_state_to_string(s) };
                d->n_guest_states++;
        }
        for (size_t i = 0; i < m->n_guests; i++) {
                const struct managed_guest *g = m->guests[i];
                if ((size_t)g->state < d->n_guest_states)
                        states[g->state].value++;
                if (g->state == GUEST_MANAGED)
                        d->vcpus_managed += g->n_vcpus;
        }
        for (size_t k = 0; k < _ERR_MAX; k++)
                errors[k] = (struct metrics_count){ .label = apply_error_kinds[k], .value = mm->apply_errors[k] };
        for (size_t r = 0; r < mm->n_reasons; r++) {
                if (mm->reasons[r].applied)
                        moves[d->n_moves++] = (struct metrics_count){ mm->reasons[r].reason, mm->reasons[r].applied };
                if (mm->reasons[r].observed)
                        observed[d->n_observed_moves++] =
                                (struct metrics_count){ mm->reasons[r].reason, mm->reasons[r].observed };
        }
}

static int metrics_text(struct manager *m, struct manager_metrics *mm, char **text, size_t *len)
{
        struct metrics_count states[8], errors[_ERR_MAX], moves[MOVE_REASONS_MAX], observed[MOVE_REASONS_MAX];
        struct metrics_daemon d;

        metrics_daemon_fill(m, mm, &d, states, ELEMENTSOF(states), errors, moves, observed);
        return metrics_format(&d, mm->history, monotonic_ns(), text, len);
}

static void metrics_file_update(struct manager *m, struct manager_metrics *mm)
{
        const char *path = m->config.metrics_file;
        char err[512];

        if (mm->written && (!path || strcmp(path, mm->written) != 0)) {
                unlink(mm->written);    /* MetricsFile= changed: no stale file left behind */
                free(mm->written);
                mm->written = NULL;
        }
        if (!path)
                return;
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = metrics_text(m, mm, &text, &len);
        if (r >= 0)
                r = metrics_write_file(path, text, len, err, sizeof(err));
        else
                snprintf(err, sizeof(err), "cannot format the metrics: %s", strerror(-r));
        if (r < 0) {
                if (!mm->write_failed)
                        log_struct(LOG_WARNING, r, MSGID_DAEMON_STATE, NULL, NULL,
                                   "MetricsFile=%s not written: %s; trying again every interval", path, err);
                mm->write_failed = true;
                return;
        }
        if (mm->write_failed)
                log_struct(LOG_INFO, 0, MSGID_DAEMON_STATE, NULL, NULL, "MetricsFile=%s written again", path);
        mm->write_failed = false;
        if (!mm->written)
                mm->written = strdup(path);
}

void manager_metrics_interval(struct manager *m)
{
        struct manager_metrics *mm = mm_get(m);
        unsigned host_runnable = 0;

        if (!mm)
                return;
        if (!mm->signals && !mm->signals_failed) {
                struct signals_config sc = {};
                int r = signals_new(&sc, &mm->signals);
                if (r < 0) {
                        mm->signals_failed = true;
                        log_warning_errno(r, "cannot read vCPU states: %m; the metrics and report have no stacking figures");
                }
        }
        uint64_t now = monotonic_ns();
        double dt_s = mm->last_ns ? (double)(now - mm->last_ns) / 1e9 : (double)m->config.sample_interval_usec / 1e6;
        mm->last_ns = now;
        if (mm->signals)
                signals_read_running(mm->signals, &host_runnable);
        for (size_t i = 0; i < m->n_guests; i++)
                guest_interval(m, mm, m->guests[i], now, dt_s, host_runnable);
        mm->interval++;
        metrics_file_update(m, mm);
}

void manager_metrics_guest_gone(struct manager *m, const struct managed_guest *g)
{
        if (m->metrics)
                history_guest_gone(m->metrics->history, g->uuid);
}

static struct reason_count *reason_slot(struct manager_metrics *mm, const char *reason)
{
        for (size_t i = 0; i < mm->n_reasons; i++)
                if (strcmp(mm->reasons[i].reason, reason) == 0)
                        return &mm->reasons[i];
        /* The vocabulary is small; the last slot catches the rest. */
        if (mm->n_reasons >= MOVE_REASONS_MAX - 1 && strcmp(reason, "other") != 0)
                return reason_slot(mm, "other");
        struct reason_count *c = &mm->reasons[mm->n_reasons++];
        snprintf(c->reason, sizeof(c->reason), "%s", reason);
        return c;
}

static enum apply_error_kind error_kind(int error)
{
        switch (-error) {
        case ESRCH: return ERR_THREAD_GONE;
        case EIO: return ERR_READBACK;
        case EACCES: case EPERM: return ERR_PERMISSION;
        case EINVAL: return ERR_INVALID;
        case ENOENT: return ERR_NO_CGROUP;
        default: return ERR_OTHER;
        }
}

void manager_metrics_move(struct manager *m, const struct managed_guest *g, const struct managed_vcpu *v,
                          const char *reason, const char *text, int error)
{
        struct manager_metrics *mm = mm_get(m);
        uint64_t now = monotonic_ns();

        if (!mm)
                return;
        struct history_guest *hg = history_guest_get(mm->history, g->uuid, g->name, now, time(NULL));
        if (error < 0) {
                mm->apply_errors[error_kind(error)]++;
                if (hg)
                        history_apply_error(mm->history, hg, now);
                return;
        }
        struct reason_count *c = reason_slot(mm, reason ?: "other");
        if (m->observe)
                c->observed++;
        else
                c->applied++;
        if (hg)
                history_move(mm->history, hg, v->vcpu, reason, m->observe, text, now);
}

void manager_metrics_plan_time(struct manager *m, uint64_t usec)
{
        struct manager_metrics *mm = mm_get(m);
        double s = (double)usec / 1e6;
        size_t b = 0;

        if (!mm)
                return;
        while (b < METRICS_PLAN_BUCKETS && s > metrics_plan_bounds[b])
                b++;
        if (b < METRICS_PLAN_BUCKETS)
                mm->plan_buckets[b]++;
        mm->plan_count++;
        mm->plan_sum += s;
}

void manager_metrics_config(struct manager *m, bool ok)
{
        struct manager_metrics *mm = mm_get(m);
        if (!mm)
                return;
        mm->config_ok = ok;
        if (ok)
                mm->config_loaded = time(NULL);
}

static json_object *reply(bool ok, const char *error)
{
        json_object *o = json_object_new_object();
        json_object_object_add(o, "ok", json_object_new_boolean(ok));
        if (error)
                json_object_object_add(o, "error", json_object_new_string(error));
        return o;
}

json_object *manager_metrics_control(struct manager *m, const char *command, json_object *request)
{
        bool metrics = strcmp(command, "metrics") == 0;
        if (!metrics && strcmp(command, "report") != 0)
                return NULL;
        struct manager_metrics *mm = mm_get(m);
        if (!mm)
                return reply(false, "out of memory");

        if (metrics) {
                _cleanup_free_ char *text = NULL;
                size_t len;
                if (metrics_text(m, mm, &text, &len) < 0)
                        return reply(false, "out of memory");
                json_object *o = reply(true, NULL);
                json_object_object_add(o, "text", json_object_new_string_len(text, (int)len));
                return o;
        }

        json_object *since = NULL;
        double window_s = 0;
        if (request && json_object_object_get_ex(request, "since_sec", &since)) {
                window_s = json_object_get_double(since);
                if (!(window_s > 0) || window_s > (double)HISTORY_BUCKETS * HISTORY_BUCKET_SEC)
                        return reply(false, "--since: expected a duration from 1s to 6h (the daemon keeps 6 h of history)");
        }
        uint64_t now = monotonic_ns();
        json_object *o = reply(true, NULL);
        double lifetime = (double)(now - mm->history->start_ns) / 1e9;
        json_object_object_add(o, "observe", json_object_new_boolean(m->observe));
        json_object_object_add(o, "window_sec", json_object_new_double(window_s > 0 ? window_s : lifetime));
        json_object_object_add(o, "lifetime", json_object_new_boolean(window_s <= 0));
        json_object_object_add(o, "bucket_sec", json_object_new_int(HISTORY_BUCKET_SEC));
        json_object_object_add(o, "guests", history_report_json(mm->history, now, window_s));
        return o;
}
