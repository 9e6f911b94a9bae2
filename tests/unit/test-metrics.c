/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The history (daemon/history.c) and the Prometheus text (daemon/metrics.c)
 * from hand-made intervals: sums and windows, moves by reason (bounded), a
 * gone guest out of the text and kept for the report, label escaping, the
 * atomic file write, and the size of the text for 100 guests x 2 vCPUs.
 * With PROMTOOL set (meson does when promtool is installed), the texts are
 * checked with `promtool check metrics` as well.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/history.h"
#include "daemon/metrics.h"
#include "tap.h"

#define SEC 1000000000ULL

static const struct metrics_count states[] = { { "managed", 2 }, { "ignored", 0 } };
static const struct metrics_count errors[] = { { "thread-gone", 1 }, { "readback-mismatch", 0 } };
static const struct metrics_count moves[] = { { "new-guest", 4 } };

static struct metrics_daemon daemon_figures(void)
{
        return (struct metrics_daemon){
                .version = "0.1", .observe = true, .libvirt_connected = true, .guests = states,
                .n_guest_states = 2, .vcpus_managed = 4, .config_loaded = 1764590000, .config_reload_ok = true,
                .plan_buckets = { 3, 1 }, .plan_count = 4, .plan_sum = 0.0003, .apply_errors = errors,
                .n_apply_errors = 2, .moves = moves, .n_moves = 1, .observed_moves = moves, .n_observed_moves = 1,
                .passes = 7,
        };
}

/* One interval of @g with @n vCPUs, each having used @cpu and waited @wait
 * seconds since @t0 (cumulative counters grow by that much per call). */
static void feed(struct history *h, struct history_guest *g, unsigned n, uint64_t now, double dt, double cpu,
                 double wait, unsigned runnable, unsigned stacked)
{
        struct history_vcpu_sample vs[8];
        for (unsigned k = 0; k < n; k++) {
                struct history_vcpu *v = history_vcpu_get(g, k);
                uint64_t c = v->have_counters ? v->cpu_ns : 0, w = v->have_counters ? v->wait_ns : 0;
                vs[k] = (struct history_vcpu_sample){ .vcpu = k, .tid = 1000 + (pid_t)k, .have_counters = true,
                                                      .cpu_ns = c + (uint64_t)(cpu * 1e9),
                                                      .wait_ns = w + (uint64_t)(wait * 1e9) };
        }
        struct history_sample s = {
                .now_ns = now, .wall = 1764590000, .dt_s = dt, .vcpus = vs, .n_vcpus = n,
                .tally = { .ticks = 1, .samples = n, .runnable = runnable, .stacked = stacked },
                .stacked_chance = 1.0 / 3, .mode = ADAPTIVE_SPREAD, .policy = "spread", .state = "managed",
        };
        CHECK(history_sample_add(h, g, &s) == 0, "history_sample_add");
}

static int promtool_check(const char *text, size_t len, const char *what)
{
        const char *promtool = getenv("PROMTOOL");
        char path[] = "/tmp/test-metrics-XXXXXX", cmd[512];
        if (!promtool || !*promtool)
                return 0;
        int fd = mkstemp(path);
        if (fd < 0 || write(fd, text, len) != (ssize_t)len)
                return -errno;
        close(fd);
        snprintf(cmd, sizeof(cmd), "%s check metrics < %s", promtool, path);
        int r = system(cmd);
        unlink(path);
        CHECK(r == 0, "promtool check metrics accepts %s", what);
        return r;
}

static void test_history(void)
{
        struct history *h;
        CHECK(history_new(10 * SEC, &h) == 0, "history_new");
        struct history_guest *g = history_guest_get(h, "6e0b5a1c-0000-4000-8000-000000000001", "web", 10 * SEC, 1);
        CHECK(g, "guest record");

        /* First interval: a baseline only; then 10 intervals of 1 s: CPU 0.5, wait 0.25 per vCPU. */
        feed(h, g, 2, 11 * SEC, 1, 0, 0, 0, 0);
        for (int i = 2; i <= 11; i++)
                feed(h, g, 2, (10 + (uint64_t)i) * SEC, 1, 0.5, 0.25, 2, 1);
        struct history_acc a;
        history_window(h, g, 21 * SEC, 0, &a);
        CHECK(fabs(a.cpu_s - 10) < 1e-6 && fabs(a.wait_s - 5) < 1e-6, "cpu %g s, wait %g s", a.cpu_s, a.wait_s);
        CHECK(fabs(history_busy(&a) - 0.75) < 1e-6, "busy %g", history_busy(&a));
        CHECK(fabs(history_stacked_share(&a) - 0.5) < 1e-9, "stacked share %g", history_stacked_share(&a));
        CHECK(fabs(history_stacked_chance(&a) - 1.0 / 3) < 1e-9, "chance %g", history_stacked_chance(&a));
        CHECK(fabs(a.mode_s[ADAPTIVE_SPREAD] - 11) < 1e-9, "11 s in spread: %g", a.mode_s[ADAPTIVE_SPREAD]);
        CHECK(isnan(history_voluntary_hz(&a)), "no switch counters: NaN, not 0");

        /* A window covers whole buckets: 10 minutes later, a 2-minute window sees only the new interval. */
        feed(h, g, 2, 620 * SEC, 1, 0.5, 0.5, 2, 2);
        history_window(h, g, 620 * SEC, 120, &a);
        CHECK(fabs(a.seconds - 1) < 1e-9 && a.stacked == 2, "window: %g s, %llu stacked", a.seconds,
              (unsigned long long)a.stacked);
        history_window(h, g, 620 * SEC, 3600, &a);
        CHECK(fabs(a.seconds - 12) < 1e-9, "an hour holds everything: %g s", a.seconds);

        /* A new thread id: a new baseline, no negative delta. */
        struct history_vcpu_sample vs = { .vcpu = 0, .tid = 4242, .have_counters = true, .cpu_ns = 1, .wait_ns = 1 };
        struct history_sample s = { .now_ns = 621 * SEC, .dt_s = 1, .vcpus = &vs, .n_vcpus = 1, .mode = ADAPTIVE_SPREAD };
        history_sample_add(h, g, &s);
        CHECK(fabs(history_vcpu_get(g, 0)->cpu_s - 5.5) < 1e-6, "vcpu0 keeps its seconds across a new thread: %g",
              history_vcpu_get(g, 0)->cpu_s);

        /* Moves by reason, bounded. */
        char reason[32];
        for (int i = 0; i < 40; i++) {
                snprintf(reason, sizeof(reason), "reason-%d", i % 20);
                history_move(h, g, 1, reason, i % 2, "vcpu1 0-1 -> 1", 622 * SEC);
        }
        struct history_vcpu *v1 = history_vcpu_get(g, 1);
        CHECK(v1->n_reasons == HISTORY_REASONS, "reasons bounded: %zu", v1->n_reasons);
        CHECK(!strcmp(v1->moves[HISTORY_REASONS - 1].reason, "other"), "the rest are 'other'");
        CHECK(h->moves == 20 && h->observed_moves == 20, "daemon counts: %llu applied, %llu observed",
              (unsigned long long)h->moves, (unsigned long long)h->observed_moves);

        /* Gone: not in the text, kept in the report. */
        history_guest_gone(h, g->uuid);
        struct metrics_daemon d = daemon_figures();
        char *text;
        size_t len;
        CHECK(metrics_format(&d, h, 623 * SEC, &text, &len) == 0, "metrics_format");
        CHECK(!strstr(text, g->uuid), "a gone guest is not in the metrics");
        promtool_check(text, len, "the text with no guest");
        free(text);
        json_object *r = history_report_json(h, 623 * SEC, 0);
        CHECK(json_object_array_length(r) == 1, "the report keeps it");
        json_object *running = json_object_object_get(json_object_array_get_idx(r, 0), "running");
        CHECK(running && !json_object_get_boolean(running), "as not running");
        json_object_put(r);

        /* It comes back: the same record goes on. */
        CHECK(history_guest_get(h, g->uuid, "web", 700 * SEC, 2) == g && g->present && h->n_gone == 0, "restart");

        /* At most HISTORY_GONE_MAX gone guests are kept. */
        for (int i = 0; i < HISTORY_GONE_MAX + 10; i++) {
                char uuid[37];
                snprintf(uuid, sizeof(uuid), "6e0b5a1c-0000-4000-8000-%012d", 100 + i);
                history_guest_get(h, uuid, "churn", (800 + (uint64_t)i) * SEC, 3);
                history_guest_gone(h, uuid);
        }
        CHECK(h->n_gone == HISTORY_GONE_MAX && h->n_guests == HISTORY_GONE_MAX + 1, "%zu gone kept of %zu",
              h->n_gone, h->n_guests);
        history_free(h);
}

/* KVM's counters: families only when a vCPU has them, samples only for those vCPUs. */
static void test_kvm(void)
{
        struct history *h;
        struct metrics_daemon d = daemon_figures();
        char *text;
        size_t len;

        CHECK(history_new(1 * SEC, &h) == 0, "history_new");
        struct history_guest *tcg = history_guest_get(h, "6e0b5a1c-0000-4000-8000-00000000000a", "tcg", SEC, 1);
        struct history_guest *kvm = history_guest_get(h, "6e0b5a1c-0000-4000-8000-00000000000b", "kvm", SEC, 1);
        feed(h, tcg, 2, 2 * SEC, 1, 0, 0, 0, 0);
        metrics_format(&d, h, 2 * SEC, &text, &len);
        CHECK(!strstr(text, "_kvm_"), "TCG guests only: no KVM family at all");
        free(text);

        struct history_vcpu_sample vs[2] = {
                { .vcpu = 0, .tid = 2000, .kvm = { .known = true, .halt_exits = 93, .halt_wait_s = 5.061393119,
                                                   .preemption_reported = 2, .yield_attempted = 4, .yield_successful = 3 } },
                { .vcpu = 1, .tid = 2001, .kvm = { .known = true } },
        };
        struct history_sample s = { .now_ns = 3 * SEC, .dt_s = 1, .vcpus = vs, .n_vcpus = 2, .mode = ADAPTIVE_KERNEL,
                                    .policy = "auto", .state = "managed" };
        CHECK(history_sample_add(h, kvm, &s) == 0, "kvm sample");
        metrics_format(&d, h, 3 * SEC, &text, &len);
        const char *want[] = {
                "# TYPE vcpuspread_vcpu_kvm_halt_exits_total counter\n",
                "vcpuspread_vcpu_kvm_halt_exits_total{domain=\"kvm\",uuid=\"6e0b5a1c-0000-4000-8000-00000000000b\",vcpu=\"0\"} 93\n",
                "vcpuspread_vcpu_kvm_halt_wait_seconds_total{domain=\"kvm\",uuid=\"6e0b5a1c-0000-4000-8000-00000000000b\",vcpu=\"0\"} 5.06139\n",
                "vcpuspread_vcpu_kvm_preemption_reported_total{domain=\"kvm\",uuid=\"6e0b5a1c-0000-4000-8000-00000000000b\",vcpu=\"0\"} 2\n",
                "vcpuspread_vcpu_kvm_directed_yield_attempted_total{domain=\"kvm\",uuid=\"6e0b5a1c-0000-4000-8000-00000000000b\",vcpu=\"0\"} 4\n",
                "vcpuspread_vcpu_kvm_directed_yield_successful_total{domain=\"kvm\",uuid=\"6e0b5a1c-0000-4000-8000-00000000000b\",vcpu=\"1\"} 0\n",
        };
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
                CHECK(strstr(text, want[i]), "has %s", want[i]);
        CHECK(!strstr(text, "_kvm_halt_exits_total{domain=\"tcg\""), "no KVM series for the TCG guest");
        promtool_check(text, len, "the text with KVM counters");
        free(text);

        /* A new thread for vCPU 0 (a restart): its sums start again. */
        struct history_vcpu_sample again = { .vcpu = 0, .tid = 3000 };
        s = (struct history_sample){ .now_ns = 4 * SEC, .dt_s = 1, .vcpus = &again, .n_vcpus = 1 };
        history_sample_add(h, kvm, &s);
        CHECK(!history_vcpu_get(kvm, 0)->kvm.known, "a new thread: no KVM sums until read");
        history_free(h);
}

static void test_escaping(void)
{
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        metrics_escape(f, "a\\b\"c\nd ü");
        fclose(f);
        CHECK(!strcmp(buf, "a\\\\b\\\"c\\nd ü"), "escaped: %s", buf);
        free(buf);

        struct history *h;
        history_new(0, &h);
        struct history_guest *g = history_guest_get(h, "6e0b5a1c-0000-4000-8000-000000000002",
                                                    "odd \"quoted\" \\name\\\nline2", 0, 1);
        feed(h, g, 2, 1 * SEC, 1, 0, 0, 0, 0);
        feed(h, g, 2, 2 * SEC, 1, 0.9, 0.1, 2, 2);
        history_move(h, g, 0, "new-guest", false, "vcpu0 0-1 -> 0 (new-guest)", 2 * SEC);
        struct metrics_daemon d = daemon_figures();
        char *text;
        size_t len;
        metrics_format(&d, h, 2 * SEC, &text, &len);
        CHECK(strstr(text, "domain=\"odd \\\"quoted\\\" \\\\name\\\\\\nline2\""), "domain label escaped");
        CHECK(strstr(text, "vcpuspread_vcpu_moves_total{domain=") && strstr(text, "vcpu=\"0\",reason=\"new-guest\"} 1\n"),
              "a move by reason");
        CHECK(strstr(text, "vcpuspread_guest_stacked_ratio{") && strstr(text, "vcpuspread_guest_mode{"), "guest families");
        CHECK(strstr(text, "vcpuspread_plan_duration_seconds_bucket{le=\"0.00025\"} 4\n"), "cumulative buckets");
        CHECK(strstr(text, "vcpuspread_plan_duration_seconds_bucket{le=\"+Inf\"} 4\n"), "+Inf bucket");
        /* Every sample line belongs to the family announced last. */
        char family[128] = "";
        bool grouped = true;
        for (char *line = text; *line;) {
                char *end = strchr(line, '\n');
                if (!end) {
                        grouped = false;
                        break;
                }
                if (!strncmp(line, "# TYPE ", 7))
                        sscanf(line + 7, "%127s", family);
                else if (line[0] != '#' && strncmp(line, family, strlen(family)) != 0)
                        grouped = false;
                line = end + 1;
        }
        CHECK(grouped, "samples follow their family's # TYPE, every line ends in a newline");
        promtool_check(text, len, "a guest with an odd name");
        free(text);
        history_free(h);
}

static void test_write_file(void)
{
        char dir[] = "/tmp/test-metrics-dir-XXXXXX", path[128], err[256] = "";
        CHECK(mkdtemp(dir), "mkdtemp");
        snprintf(path, sizeof(path), "%s/vcpuspreadd.prom", dir);
        CHECK(metrics_write_file(path, "a 1\n", 4, err, sizeof(err)) == 0, "write: %s", err);
        CHECK(metrics_write_file(path, "b 2\n", 4, err, sizeof(err)) == 0, "rewrite: %s", err);
        struct stat st;
        CHECK(stat(path, &st) == 0 && st.st_size == 4 && (st.st_mode & 0777) == 0644, "size 4, mode 0644");
        FILE *f = fopen(path, "r");
        char line[16] = "";
        CHECK(f && fgets(line, sizeof(line), f) && !strcmp(line, "b 2\n"), "the new text");
        if (f)
                fclose(f);
        unlink(path);
        rmdir(dir);
        CHECK(metrics_write_file("/nonexistent-dir/x.prom", "a 1\n", 4, err, sizeof(err)) == -ENOENT &&
              strstr(err, "/nonexistent-dir/x.prom"), "a missing directory: %s", err);
}

/* The closing note of issue 17: the text's size with 200 vCPUs. */
static void test_size(void)
{
        struct history *h;
        history_new(0, &h);
        for (int i = 0; i < 100; i++) {
                char uuid[37], name[32];
                snprintf(uuid, sizeof(uuid), "6e0b5a1c-0000-4000-8000-%012d", i);
                snprintf(name, sizeof(name), "guest-%03d", i);
                struct history_guest *g = history_guest_get(h, uuid, name, 0, 1);
                feed(h, g, 2, 1 * SEC, 1, 0, 0, 0, 0);
                feed(h, g, 2, 2 * SEC, 1, 0.7, 0.2, 2, 1);
                history_move(h, g, 0, "new-guest", false, "vcpu0 0-1 -> 0 (new-guest)", 2 * SEC);
                history_move(h, g, 1, "new-guest", false, "vcpu1 0-1 -> 1 (new-guest)", 2 * SEC);
        }
        struct metrics_daemon d = daemon_figures();
        char *text;
        size_t len, lines = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        metrics_format(&d, h, 2 * SEC, &text, &len);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        for (size_t i = 0; i < len; i++)
                lines += text[i] == '\n';
        fprintf(stderr, "# 100 guests x 2 vCPUs: %zu bytes, %zu lines, formatted in %.2f ms\n", len, lines,
                (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
        CHECK(len < 512 * 1024, "under 512 KiB: %zu bytes", len);
        promtool_check(text, len, "100 guests x 2 vCPUs");
        free(text);
        history_free(h);
}

int main(void)
{
        test_history();
        test_kvm();
        test_escaping();
        test_write_file();
        test_size();
        return test_result();
}
