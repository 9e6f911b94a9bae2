/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What Policy=auto's sampling costs: one second of the daemon's sampling at
 * the default interval (SampleIntervalSec=1s) over THREADS vCPU-like threads
 * in guests of 2, with the signals included:
 *
 *   per interval: every thread's load counters (sample.h: taskstats as root,
 *                 else schedstat), /proc/stat, the load arithmetic, and for
 *                 ticked guests /proc/TID/status (context switches, each
 *                 vCPU every 5th interval) and one adaptive_step() per guest;
 *   per tick:     /proc/loadavg (runnable tasks, for the chance figure),
 *                 /proc/PID/task/TID/stat of every ticked vCPU (state and
 *                 processor) and the stacking tally, at signals_tick_hz()
 *                 (10 Hz per vCPU, at most 300 reads/s over all).
 *
 *   bench-signals [THREADS=200] [SECONDS=20] [RUNS=5] [GAP_MS=10]
 *
 * The threads live in a child process (as vCPUs live in QEMU), blocked on a
 * pipe; reading a blocked or a running thread's files costs the same.  The
 * cost is this process's CPU time (CLOCK_PROCESS_CPUTIME_ID, kernel work on
 * our behalf included) per simulated second; the rounds are run GAP_MS
 * apart rather than at real rate, so a run takes SECONDS x (ticks+1) x
 * GAP_MS.  Scenarios: no guest ticked (an idle host: what every host pays),
 * every guest ticked under the budget (the worst case), and every guest at
 * 10 Hz with no budget (why there is one).  Prints median [min-max] over
 * RUNS, as a share of one CPU.
 *
 *   bench-signals --pid PID [SECONDS=5]
 *
 * instead samples the vCPU threads ("CPU N/KVM", "CPU N/TCG") of a running
 * QEMU process PID as the daemon would (10 Hz ticks, 1 s intervals) and
 * prints each second's figures per guest: CPU share, busy, wait, stacked
 * share and switch rates.  Read-only; for recording what real guests show.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>

#include "adaptive.h"
#include "bench-args.h"
#include "load.h"
#include "sample.h"
#include "signals.h"

#define VCPUS_PER_GUEST 2

static double cpu_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

/* ---- the child: THREADS threads, their ids written to a pipe ------------- */

static int hold_fd;

static void *blocked(void *arg)
{
        int fd = *(int *)arg;
        pid_t tid = gettid();
        char c;

        if (write(fd, &tid, sizeof(tid)) != sizeof(tid))
                _exit(1);
        if (read(hold_fd, &c, 1) < 0)
                perror("read");
        return NULL;
}

static pid_t spawn(size_t n, pid_t *tids)
{
        int ids[2], hold[2];

        if (pipe(ids) < 0 || pipe(hold) < 0)
                return -1;
        pid_t pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0) {
                close(hold[1]);
                hold_fd = hold[0];
                for (size_t i = 0; i < n; i++) {
                        pthread_t t;
                        if (pthread_create(&t, NULL, blocked, &ids[1]) != 0)
                                _exit(1);
                }
                pause();
                _exit(0);
        }
        close(hold[0]);
        for (size_t i = 0; i < n; i++)
                if (read(ids[0], &tids[i], sizeof(pid_t)) != sizeof(pid_t))
                        return -1;
        close(ids[0]);
        close(ids[1]);
        return pid;
}

/* ---- one simulated second ------------------------------------------------ */

struct vcpu {
        struct signals_thread st;
        struct thread_load tl;
        struct thread_ctxt ctxt;
        uint64_t ctxt_interval;         /* when ctxt was read */
        double voluntary_hz, involuntary_hz;    /* the last rate, held between reads */
};

struct bench {
        struct sampler *sampler;
        struct signals *signals;
        struct vcpu *v;
        size_t n;
        struct host_cpu_load host[1024];
        struct host_cpu_counters host_c[1024];
        struct adaptive_params params;
        struct adaptive_guest *guests;
        struct signals_tally *tally;
        struct signals_budget budget;
        unsigned gap_ms;
        uint64_t now_ns;
        uint64_t interval;
        double tick_acc;                /* fractional ticks carried between intervals */
};

enum scenario { NONE_TICKED, ALL_BUDGET, ALL_10HZ };

static int interval(struct bench *b, enum scenario sc)
{
        size_t ng = b->n / VCPUS_PER_GUEST;
        size_t ticked = sc == NONE_TICKED ? 0 : b->n;
        struct thread_sched_state scratch[VCPUS_PER_GUEST];
        int r;

        /* The load sampler's round, as the manager does it today. */
        for (size_t i = 0; i < b->n; i++) {
                struct thread_counters c;
                r = sampler_read_thread(b->sampler, b->v[i].st.tid, &c);
                if (r < 0)
                        return r;
                thread_load_update(&b->v[i].tl, &c, 5);
        }
        size_t m = 1024;
        r = sampler_read_host(b->sampler, b->host_c, &m);
        if (r < 0)
                return r;
        b->now_ns += 1000000000ULL;
        for (size_t j = 0; j < m; j++)
                host_cpu_load_update(&b->host[j], &b->host_c[j], b->now_ns, 5);

        /* Signals: context switches and one decision per ticked guest. */
        for (size_t g = 0; g < ng && ticked; g++) {
                struct adaptive_input in = { .now_ns = b->now_ns, .dt_s = 1, .n_vcpus = VCPUS_PER_GUEST };
                for (size_t k = 0; k < VCPUS_PER_GUEST; k++) {
                        size_t index = g * VCPUS_PER_GUEST + k;
                        struct vcpu *v = &b->v[index];
                        if (signals_ctxt_due(&b->budget, b->interval, index)) {
                                struct thread_ctxt c;
                                r = signals_read_ctxt(b->signals, &v->st, &c);
                                if (r < 0)
                                        return r;
                                double dt = (double)(b->interval - v->ctxt_interval);
                                if (dt > 0) {
                                        v->voluntary_hz = (double)(c.voluntary - v->ctxt.voluntary) / dt;
                                        v->involuntary_hz = (double)(c.involuntary - v->ctxt.involuntary) / dt;
                                }
                                v->ctxt = c;
                                v->ctxt_interval = b->interval;
                        }
                        in.voluntary_hz += v->voluntary_hz / VCPUS_PER_GUEST;
                        in.involuntary_hz += v->involuntary_hz / VCPUS_PER_GUEST;
                        in.cpu_share += v->tl.last_util;
                        in.busy += (v->tl.last_util + v->tl.last_wait) / VCPUS_PER_GUEST;
                        in.wait += v->tl.last_wait / VCPUS_PER_GUEST;
                }
                in.samples = b->tally[g].samples;
                in.runnable_samples = b->tally[g].runnable;
                in.stacked_samples = b->tally[g].stacked;
                b->tally[g] = (struct signals_tally) {};
                struct adaptive_decision d;
                if (adaptive_step(&b->guests[g], &b->params, &in, &d) < 0)
                        return -EINVAL;
        }

        b->interval++;

        /* The ticks until the next interval. */
        double hz = sc == ALL_10HZ ? 10 : signals_tick_hz(&b->budget, ticked);
        b->tick_acc += ticked ? hz : 0;
        unsigned ticks = (unsigned)b->tick_acc;
        b->tick_acc -= ticks;
        for (unsigned t = 0; t < ticks; t++) {
                if (b->gap_ms)
                        usleep(b->gap_ms * 1000);
                unsigned running;
                r = signals_read_running(b->signals, &running);
                if (r < 0)
                        return r;
                for (size_t g = 0; g < ng; g++) {
                        struct signals_thread *th[VCPUS_PER_GUEST];
                        for (size_t k = 0; k < VCPUS_PER_GUEST; k++)
                                th[k] = &b->v[g * VCPUS_PER_GUEST + k].st;
                        r = signals_sample_guest(b->signals, th, VCPUS_PER_GUEST, scratch, &b->tally[g]);
                        if (r < 0)
                                return r;
                }
        }
        if (b->gap_ms)
                usleep(b->gap_ms * 1000);
        return 0;
}

static int run(struct bench *b, enum scenario sc, unsigned seconds, double *per_s)
{
        double total = 0;

        for (unsigned s = 0; s < seconds; s++) {
                double t0 = cpu_s();
                int r = interval(b, sc);
                if (r < 0)
                        return r;
                total += cpu_s() - t0;
        }
        *per_s = total / seconds;
        return 0;
}

static int scenario(struct bench *b, const char *name, enum scenario sc, unsigned seconds, unsigned runs)
{
        double v[runs];

        for (unsigned i = 0; i < runs; i++) {
                int r = run(b, sc, seconds, &v[i]);
                if (r < 0) {
                        fprintf(stderr, "bench-signals: %s: %s\n", name, strerror(-r));
                        return r;
                }
        }
        qsort(v, runs, sizeof(double), cmp_double);
        printf("%-44s %8.1f us/s  %6.3f%% of one CPU  [min %.3f%%, max %.3f%%]\n", name, v[runs / 2] * 1e6,
               v[runs / 2] * 100, v[0] * 100, v[runs - 1] * 100);
        return 0;
}

/* ---- --pid: the figures of a real guest ------------------------------------ */

static size_t find_vcpus(pid_t pid, pid_t *tids, size_t max)
{
        char path[384], comm[64];
        struct dirent *e;
        size_t n = 0;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
        d = opendir(path);
        if (!d)
                return 0;
        while ((e = readdir(d)) && n < max) {
                if (e->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "/proc/%d/task/%s/comm", (int)pid, e->d_name);
                FILE *f = fopen(path, "r");
                if (!f)
                        continue;
                if (fgets(comm, sizeof(comm), f) && strncmp(comm, "CPU ", 4) == 0 && strchr(comm, '/'))
                        tids[n++] = (pid_t)atoi(e->d_name);
                fclose(f);
        }
        closedir(d);
        return n;
}

static int probe(pid_t pid, unsigned seconds)
{
        pid_t tids[256];
        size_t n = find_vcpus(pid, tids, 256);
        struct sampler *sampler = NULL;
        struct signals *sig = NULL;
        struct sampler_config sc = { .use_taskstats = true };

        if (n == 0) {
                fprintf(stderr, "bench-signals: no vCPU threads (CPU N/...) in process %d\n", (int)pid);
                return 1;
        }
        if (sampler_new(&sc, &sampler) < 0 || signals_new(NULL, &sig) < 0)
                return 1;
        struct signals_thread st[256], *stp[256];
        struct thread_load tl[256] = {};
        struct thread_ctxt ctxt[256] = {}, c;
        struct thread_sched_state scratch[256];
        struct thread_counters tc;
        for (size_t i = 0; i < n; i++) {
                signals_thread_init(&st[i], pid, tids[i]);
                stp[i] = &st[i];
                if (sampler_read_thread(sampler, tids[i], &tc) == 0)
                        thread_load_update(&tl[i], &tc, 0);
                if (signals_read_ctxt(sig, &st[i], &ctxt[i]) < 0)
                        return 1;
        }
        printf("qemu pid %d, %zu vCPU threads; 10 Hz ticks, 1 s intervals\n", (int)pid, n);
        printf("%4s %6s %6s %6s %8s %10s %10s\n", "s", "cpu", "busy", "wait", "stacked", "vol/s", "invol/s");
        for (unsigned s = 1; s <= seconds; s++) {
                struct signals_tally tally = {};
                for (int t = 0; t < 10; t++) {
                        usleep(100000);
                        if (signals_sample_guest(sig, stp, n, scratch, &tally) < 0)
                                return 1;
                }
                double cpu = 0, wait = 0, vol = 0, invol = 0;
                for (size_t i = 0; i < n; i++) {
                        if (sampler_read_thread(sampler, tids[i], &tc) == 0 &&
                            thread_load_update(&tl[i], &tc, 0) == THREAD_LOAD_UPDATED) {
                                cpu += tl[i].last_util;
                                wait += tl[i].last_wait;
                        }
                        if (signals_read_ctxt(sig, &st[i], &c) == 0) {
                                vol += (double)(c.voluntary - ctxt[i].voluntary);
                                invol += (double)(c.involuntary - ctxt[i].involuntary);
                                ctxt[i] = c;
                        }
                }
                printf("%4u %6.2f %6.2f %6.2f %4u/%-4u %10.0f %10.0f\n", s, cpu, (cpu + wait) / n, wait / n,
                       tally.stacked, tally.runnable, vol / n, invol / n);
        }
        for (size_t i = 0; i < n; i++)
                signals_thread_close(&st[i]);
        sampler_free(sampler);
        signals_free(sig);
        return 0;
}

int main(int argc, char **argv)
{
        unsigned long n_arg, sec_arg, runs_arg, gap_arg;

        if (bench_wants_help(argc, argv,
                             "Usage: bench-signals [THREADS=200] [SECONDS=20] [RUNS=5] [GAP_MS=10]\n"
                             "CPU cost of one second of sampling with Policy=auto's signals (load counters,\n"
                             "/proc/stat, context switches, stacking ticks, one decision per guest) over\n"
                             "THREADS threads in guests of 2, as a share of one CPU: median, min and max over\n"
                             "RUNS runs of SECONDS simulated seconds, rounds GAP_MS apart.\n"
                             "       bench-signals --pid PID [SECONDS=5]\n"
                             "The same figures for the vCPU threads of a running QEMU process, each second.\n"))
                return 0;
        if (argc >= 3 && strcmp(argv[1], "--pid") == 0) {
                unsigned long pid_arg, s_arg;
                if (argc > 4 || !bench_arg_count(argc, argv, 2, "PID", 0, 1, 1u << 22, &pid_arg) ||
                    !bench_arg_count(argc, argv, 3, "SECONDS", 5, 1, 3600, &s_arg)) {
                        fprintf(stderr, "Try 'bench-signals --help'.\n");
                        return 2;
                }
                return probe((pid_t)pid_arg, (unsigned)s_arg);
        }
        if (argc > 5 || !bench_arg_count(argc, argv, 1, "THREADS", 200, 2, 100000, &n_arg) ||
            !bench_arg_count(argc, argv, 2, "SECONDS", 20, 1, 100000, &sec_arg) ||
            !bench_arg_count(argc, argv, 3, "RUNS", 5, 1, 1000, &runs_arg) ||
            !bench_arg_count(argc, argv, 4, "GAP_MS", 10, 0, 60000, &gap_arg)) {
                fprintf(stderr, "Try 'bench-signals --help'.\n");
                return 2;
        }
        struct bench *b = calloc(1, sizeof(*b));
        size_t n = n_arg & ~(size_t)(VCPUS_PER_GUEST - 1);
        pid_t *tids = calloc(n, sizeof(pid_t));
        if (!b || !tids)
                return 1;
        pid_t child = spawn(n, tids);
        if (child < 0) {
                perror("bench-signals: spawn");
                return 1;
        }
        struct sampler_config sc = { .use_taskstats = true };
        if (sampler_new(&sc, &b->sampler) < 0 || signals_new(NULL, &b->signals) < 0)
                return 1;
        b->n = n;
        b->v = calloc(n, sizeof(*b->v));
        b->guests = calloc(n / VCPUS_PER_GUEST, sizeof(*b->guests));
        b->tally = calloc(n / VCPUS_PER_GUEST, sizeof(*b->tally));
        if (!b->v || !b->guests || !b->tally)
                return 1;
        for (size_t i = 0; i < n; i++)
                signals_thread_init(&b->v[i].st, child, tids[i]);
        for (size_t g = 0; g < n / VCPUS_PER_GUEST; g++)
                adaptive_guest_init(&b->guests[g]);
        adaptive_params_default(&b->params);
        b->budget = (struct signals_budget) SIGNALS_BUDGET_DEFAULT;
        b->gap_ms = (unsigned)gap_arg;
        b->now_ns = 1000000000ULL;

        printf("%zu threads in %zu guests of %d, %lu s per run, %lu runs, %u ms between rounds\n", n,
               n / VCPUS_PER_GUEST, VCPUS_PER_GUEST, sec_arg, runs_arg, b->gap_ms);
        printf("load sampler: %s\n", sampler_description(b->sampler));
        printf("tick: %.1f Hz per vCPU with all %zu ticked (budget %.0f stat reads/s, %.0f-%.0f Hz), "
               "status every %u intervals\n", signals_tick_hz(&b->budget, n), n, b->budget.reads_per_s,
               b->budget.min_hz, b->budget.max_hz, b->budget.ctxt_every);
        int r = 0;
        r |= scenario(b, "no guest ticked (idle host)", NONE_TICKED, (unsigned)sec_arg, (unsigned)runs_arg);
        r |= scenario(b, "every guest ticked, budget (default)", ALL_BUDGET, (unsigned)sec_arg, (unsigned)runs_arg);
        r |= scenario(b, "every guest ticked at 10 Hz, no budget", ALL_10HZ, (unsigned)sec_arg, (unsigned)runs_arg);

        for (size_t i = 0; i < n; i++)
                signals_thread_close(&b->v[i].st);
        kill(child, SIGTERM);
        waitpid(child, NULL, 0);
        sampler_free(b->sampler);
        signals_free(b->signals);
        free(b->v);
        free(b->guests);
        free(b->tally);
        free(b);
        free(tids);
        return r ? 1 : 0;
}
