/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daemon/signals.c: the /proc/TID/stat and /proc/TID/status parsers against
 * fixtures (fixtures/signals: status-bash.txt is a real status file of this
 * host, the stat lines are a real line of this host with the name and the
 * state/processor fields edited, since no guest runs while unit tests do),
 * the readers against this test's own threads in the real /proc (a spinning
 * thread reads R, a blocked one S, an exited one ESRCH), a fake /proc root
 * for a thread that never existed, the stacking tally, the tick budget and
 * the candidate gate.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "signals.h"
#include "tap.h"

static const char *fixtures;

static size_t slurp(const char *name, char *buf, size_t size)
{
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", fixtures, name);
        FILE *f = fopen(path, "r");
        size_t n = 0;
        CHECK(f, "open %s", path);
        if (f) {
                n = fread(buf, 1, size - 1, f);
                fclose(f);
        }
        buf[n] = '\0';
        return n;
}

static void test_stat_parse(void)
{
        char buf[2048];
        struct thread_sched_state st = {};
        size_t n;

        n = slurp("stat-vcpu.txt", buf, sizeof(buf));
        CHECK(proc_tid_stat_parse(buf, n, &st) == 0, "vcpu line");
        CHECK(st.state == 'R' && st.cpu == 1, "state %c cpu %d", st.state, st.cpu);

        /* A name with ") (" and a fake state inside: the last ')' ends it. */
        n = slurp("stat-odd-comm.txt", buf, sizeof(buf));
        CHECK(proc_tid_stat_parse(buf, n, &st) == 0, "odd name");
        CHECK(st.state == 'S' && st.cpu == 7, "state %c cpu %d", st.state, st.cpu);

        /* Not NUL-terminated at @len: a shorter length cuts field 39 off. */
        n = slurp("stat-vcpu.txt", buf, sizeof(buf));
        char *p = strstr(buf, " 17 1 ");
        CHECK(p, "fixture shape");
        if (p)
                CHECK(proc_tid_stat_parse(buf, (size_t)(p - buf) + 4, &st) == -EINVAL, "cut before processor");

        const char *bad[] = { "", "1 (x)", "1 (x) R", "1 x R 1 2 3", "1 (x) R 1 2 3\n" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                CHECK(proc_tid_stat_parse(bad[i], strlen(bad[i]), &st) == -EINVAL, "bad %zu", i);
}

static void test_status_parse(void)
{
        char buf[4096];
        struct thread_ctxt c = {};
        size_t n = slurp("status-bash.txt", buf, sizeof(buf));

        CHECK(proc_status_ctxt_parse(buf, n, &c) == 0, "real status");
        /* The expected numbers are the fixture's last two lines. */
        const char *v = strstr(buf, "\nvoluntary_ctxt_switches:\t");
        const char *nv = strstr(buf, "\nnonvoluntary_ctxt_switches:\t");
        CHECK(v && nv, "fixture shape");
        if (v && nv) {
                CHECK(c.voluntary == strtoull(v + 26, NULL, 10), "voluntary %llu", (unsigned long long)c.voluntary);
                CHECK(c.involuntary == strtoull(nv + 29, NULL, 10), "involuntary %llu",
                      (unsigned long long)c.involuntary);
        }
        const char *mini = "Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3";
        CHECK(proc_status_ctxt_parse(mini, strlen(mini), &c) == 0 && c.voluntary == 12 && c.involuntary == 3,
              "no final newline");
        const char *missing = "Name:\tx\nvoluntary_ctxt_switches:\t12\n";
        CHECK(proc_status_ctxt_parse(missing, strlen(missing), &c) == -EINVAL, "one line missing");
        const char *garbage = "voluntary_ctxt_switches:\tx\nnonvoluntary_ctxt_switches:\t3\n";
        CHECK(proc_status_ctxt_parse(garbage, strlen(garbage), &c) == -EINVAL, "not a number");
}

/* ---- real threads ---------------------------------------------------------- */

static atomic_int stop_spin;
static atomic_int tid_spin, tid_block;
static int block_pipe[2];

static void *spinner(void *arg)
{
        prctl(PR_SET_NAME, "CPU 0/TCG");
        atomic_store(&tid_spin, gettid());
        while (!atomic_load(&stop_spin))
                ;
        return NULL;
}

static void *blocker(void *arg)
{
        char c;
        atomic_store(&tid_block, gettid());
        if (read(block_pipe[0], &c, 1) < 0)
                perror("read");
        return NULL;
}

static void test_real_threads(void)
{
        _cleanup_signals_ struct signals *s = NULL;
        pthread_t a, b;
        struct signals_thread ta, tb;
        struct thread_sched_state st;
        struct thread_ctxt c1, c2;
        long ncpu = sysconf(_SC_NPROCESSORS_CONF);

        CHECK(signals_new(NULL, &s) == 0, "new");
        CHECK(pipe(block_pipe) == 0, "pipe");
        pthread_create(&a, NULL, spinner, NULL);
        pthread_create(&b, NULL, blocker, NULL);
        while (!atomic_load(&tid_spin) || !atomic_load(&tid_block))
                usleep(1000);
        usleep(20000);
        signals_thread_init(&ta, getpid(), atomic_load(&tid_spin));
        signals_thread_init(&tb, getpid(), atomic_load(&tid_block));

        CHECK(signals_read_state(s, &ta, &st) == 0, "spinner");
        CHECK(st.state == 'R' && st.cpu >= 0 && st.cpu < ncpu, "spinner %c on %d", st.state, st.cpu);
        CHECK(ta.stat_fd >= 0, "fd kept open");
        int fd = ta.stat_fd;
        CHECK(signals_read_state(s, &ta, &st) == 0 && ta.stat_fd == fd, "same fd reused");

        /* The blocker stores its tid just before read(): on a loaded host it may
         * not have reached it yet, so give it up to 5 s to block. */
        for (int i = 0; i < 500; i++) {
                if (signals_read_state(s, &tb, &st) != 0 || st.state == 'S')
                        break;
                usleep(10000);
        }
        CHECK(signals_read_state(s, &tb, &st) == 0 && st.state == 'S', "blocker %c", st.state);
        CHECK(signals_read_ctxt(s, &tb, &c1) == 0, "ctxt");
        CHECK(write(block_pipe[1], "x", 1) == 1, "wake");
        CHECK(test_join_released(b, atomic_load(&tid_block)), "blocker released");
        /* The thread is gone; its fd pins the dead task: ESRCH, not another thread's data. */
        CHECK(signals_read_state(s, &tb, &st) == -ESRCH, "exited thread");
        CHECK(tb.stat_fd < 0 && tb.status_fd < 0, "files closed");
        CHECK(signals_read_ctxt(s, &tb, &c2) == -ESRCH, "exited thread, reopen by path fails too");

        CHECK(signals_read_ctxt(s, &ta, &c1) == 0, "spinner ctxt");
        usleep(50000);
        CHECK(signals_read_ctxt(s, &ta, &c2) == 0, "spinner ctxt again");
        CHECK(c2.voluntary == c1.voluntary, "a spinner never blocks: %llu -> %llu",
              (unsigned long long)c1.voluntary, (unsigned long long)c2.voluntary);

        atomic_store(&stop_spin, 1);
        pthread_join(a, NULL);
        signals_thread_close(&ta);
        signals_thread_close(&tb);
        close(block_pipe[0]);
        close(block_pipe[1]);
}

static void test_fake_root(void)
{
        _cleanup_signals_ struct signals *s = NULL;
        struct signals_config cfg = { .proc_root = "/nonexistent-proc" };
        struct signals_thread t;
        struct thread_sched_state st;

        CHECK(signals_new(&cfg, &s) == 0, "new");
        signals_thread_init(&t, 1, 2);
        CHECK(signals_read_state(s, &t, &st) == -ESRCH, "no such thread");
        CHECK(t.stat_fd == -1, "nothing open");
}

static void test_loadavg(void)
{
        _cleanup_signals_ struct signals *s = NULL;
        unsigned r = 99;
        const char *t = "10.67 9.82 5.13 11/158 5787\n";

        CHECK(proc_loadavg_running_parse(t, strlen(t), &r) == 0 && r == 11, "parse: %u", r);
        CHECK(proc_loadavg_running_parse(t, 16, &r) == -EINVAL, "cut");
        CHECK(proc_loadavg_running_parse("1 2 3 x/5", 9, &r) == -EINVAL, "not a number");
        CHECK(signals_new(NULL, &s) == 0, "new");
        CHECK(signals_read_running(s, &r) == 0 && r < 100000, "real /proc/loadavg: %u", r);
        CHECK(signals_read_running(s, &r) == 0, "again, same fd");
}

/* ---- pure parts ------------------------------------------------------------ */

static void test_tally(void)
{
        struct signals_tally t = {};
        /* Four vCPUs: 0 and 1 queue on CPU 3, 2 runs on CPU 4, 3 sleeps on CPU 3. */
        struct thread_sched_state v[] = { { 'R', 3 }, { 'R', 3 }, { 'R', 4 }, { 'S', 3 } };

        signals_tally_add(&t, v, 4);
        CHECK(t.ticks == 1 && t.samples == 4 && t.runnable == 3 && t.stacked == 2, "tick: %u %u", t.runnable,
              t.stacked);
        struct thread_sched_state w[] = { { 'R', 0 }, { 'R', 1 }, { 0, 1 }, { 'D', 0 } };
        signals_tally_add(&t, w, 4);
        CHECK(t.ticks == 2 && t.samples == 7 && t.runnable == 5 && t.stacked == 2, "apart, unread skipped: %u %u",
              t.runnable, t.stacked);
        struct thread_sched_state x[] = { { 'R', 5 }, { 'R', 5 }, { 'R', 5 } };
        signals_tally_add(&t, x, 3);
        CHECK(t.runnable == 8 && t.stacked == 5, "three on one CPU: %u %u", t.runnable, t.stacked);
}

static void test_budget_and_gate(void)
{
        struct signals_budget b = SIGNALS_BUDGET_DEFAULT;
        double busy[] = { 0.95, 0.9, 0.1 }, wait[] = { 0.3, 0.2, 0.0 };

        CHECK(signals_tick_hz(&b, 0) == 10, "none");
        CHECK(signals_tick_hz(&b, 20) == 10, "few: max");
        CHECK(signals_tick_hz(&b, 200) == 1.5, "200: budget %g", signals_tick_hz(&b, 200));
        CHECK(signals_ctxt_due(&b, 5, 0) && !signals_ctxt_due(&b, 5, 1) && signals_ctxt_due(&b, 6, 4), "status spread");
        CHECK(signals_tick_hz(&b, 10000) == 1, "many: min");
        CHECK(signals_tick_hz(&b, 30) == 10, "30: max");

        CHECK(signals_guest_wants_ticks(busy, wait, 3, 0.8, 0.1, false), "two hot vCPUs");
        CHECK(!signals_guest_wants_ticks(busy, wait, 1, 0.8, 0.1, true), "one vCPU never");
        wait[1] = 0.05;
        CHECK(!signals_guest_wants_ticks(busy, wait, 3, 0.8, 0.1, false), "one hot vCPU");
        CHECK(signals_guest_wants_ticks(busy, wait, 3, 0.8, 0.1, true), "intervening: always");
}

int main(int argc, char **argv)
{
        fixtures = argc > 1 ? argv[1] : "tests/unit/fixtures/signals";
        test_stat_parse();
        test_status_parse();
        test_real_threads();
        test_fake_root();
        test_loadavg();
        test_tally();
        test_budget_and_gate();
        return test_result();
}
