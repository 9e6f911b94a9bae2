/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What sampling costs: the CPU time of one sampling round (every thread's
 * counters, one /proc/stat, the load arithmetic) over N real threads, for
 * taskstats and for schedstat, as a share of one CPU at a 1 s interval.
 *
 *   bench-sample [THREADS=200] [ROUNDS=50] [RUNS=7] [GAP_MS=100]
 *
 * A run is ROUNDS rounds GAP_MS apart (a gap lets caches cool a little, as
 * they would between rounds a second apart; 0 = back to back); its cost is
 * CLOCK_PROCESS_CPUTIME_ID over the rounds, which also counts the kernel's
 * work done on our behalf (the netlink reply is built in our sendmsg()).
 * Prints the median, min and max over RUNS runs.  Needs root for taskstats.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench-args.h"
#include "load.h"
#include "sample.h"

static atomic_int started;

static void *idle_thread(void *arg)
{
        int *slot = arg;
        char c;

        *slot = gettid();
        atomic_fetch_add(&started, 1);
        /* Blocks until the write end closes. */
        if (read(slot[1], &c, 1) < 0)
                perror("read");
        return NULL;
}

static double cpu_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t mono_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

enum part { ALL, THREADS_ONLY, HOST_ONLY };

/* CPU seconds per round, or a negative errno. */
static double one_run(struct sampler *s, const int (*slots)[2], size_t n, struct thread_load *loads,
                      struct host_cpu_load *cpu_loads, unsigned rounds, unsigned gap_ms, enum part part)
{
        struct host_cpu_counters cpus[1024];
        double cpu = 0;

        for (unsigned r = 0; r < rounds; r++) {
                if (gap_ms)
                        usleep(gap_ms * 1000);
                double t0 = cpu_s();
                if (part != HOST_ONLY)
                        for (size_t i = 0; i < n; i++) {
                                struct thread_counters c;
                                int k = sampler_read_thread(s, slots[i][0], &c);
                                if (k < 0)
                                        return k;
                                thread_load_update(&loads[i], &c, 5);
                        }
                if (part != THREADS_ONLY) {
                        size_t m = 1024;
                        int k = sampler_read_host(s, cpus, &m);
                        if (k < 0)
                                return k;
                        uint64_t now = mono_ns();
                        for (size_t j = 0; j < m; j++)
                                host_cpu_load_update(&cpu_loads[j], &cpus[j], now, 5);
                }
                cpu += cpu_s() - t0;
        }
        return cpu / rounds;
}

static int bench(const char *name, struct sampler *s, const int (*slots)[2], size_t n,
                 unsigned rounds, unsigned runs, unsigned gap_ms, enum part part)
{
        double per_round[runs];
        struct thread_load *loads = calloc(n, sizeof(*loads));
        struct host_cpu_load *cpu_loads = calloc(1024, sizeof(*cpu_loads));

        if (!loads || !cpu_loads)
                return -ENOMEM;
        for (unsigned r = 0; r < runs; r++) {
                per_round[r] = one_run(s, slots, n, loads, cpu_loads, rounds, gap_ms, part);
                if (per_round[r] < 0) {
                        fprintf(stderr, "%s: %s\n", name, strerror((int)-per_round[r]));
                        return (int)per_round[r];
                }
        }
        qsort(per_round, runs, sizeof(double), cmp_double);
        /* At a 1 s interval, CPU seconds per round = share of one CPU. */
        printf("%-28s %8.1f us/round  %6.3f%% of one CPU  [min %.3f%%, max %.3f%%]\n", name,
               per_round[runs / 2] * 1e6, per_round[runs / 2] * 100, per_round[0] * 100,
               per_round[runs - 1] * 100);
        free(loads);
        free(cpu_loads);
        return 0;
}

int main(int argc, char **argv)
{
        unsigned long n_arg, rounds_arg, runs_arg, gap_arg;
        int pipefd[2];

        if (bench_wants_help(argc, argv,
                             "Usage: bench-sample [THREADS=200] [ROUNDS=50] [RUNS=7] [GAP_MS=100]\n"
                             "CPU cost of one sampling round over THREADS real threads, taskstats and schedstat,\n"
                             "as a share of one CPU at a 1 s interval: median, min and max over RUNS runs of\n"
                             "ROUNDS rounds GAP_MS apart.  Needs root for taskstats.\n"))
                return 0;
        if (argc > 5 || !bench_arg_count(argc, argv, 1, "THREADS", 200, 1, 100000, &n_arg) ||
            !bench_arg_count(argc, argv, 2, "ROUNDS", 50, 1, 100000, &rounds_arg) ||
            !bench_arg_count(argc, argv, 3, "RUNS", 7, 1, 1000, &runs_arg) ||
            !bench_arg_count(argc, argv, 4, "GAP_MS", 100, 0, 60000, &gap_arg)) {
                fprintf(stderr, "Try 'bench-sample --help'.\n");
                return 2;
        }
        size_t n = n_arg;
        unsigned rounds = (unsigned)rounds_arg, runs = (unsigned)runs_arg, gap_ms = (unsigned)gap_arg;

        if (pipe(pipefd) < 0) {
                perror("bench-sample: pipe");
                return 1;
        }

        /* slot[0]: the thread's id, slot[1]: the read end it blocks on. */
        int (*slots)[2] = calloc(n, sizeof(*slots));
        pthread_t *threads = calloc(n, sizeof(*threads));
        if (!slots || !threads)
                return 1;
        for (size_t i = 0; i < n; i++) {
                slots[i][1] = pipefd[0];
                if (pthread_create(&threads[i], NULL, idle_thread, slots[i]) != 0)
                        return 1;
        }
        while ((size_t)atomic_load(&started) < n)
                usleep(1000);

        struct sampler *ts = NULL, *ss = NULL;
        struct sampler_config ts_cfg = { .use_taskstats = true }, ss_cfg = { .use_taskstats = false };
        if (sampler_new(&ts_cfg, &ts) < 0 || sampler_new(&ss_cfg, &ss) < 0)
                return 1;

        printf("%zu threads, %u rounds per run, %u runs, %u ms between rounds; median per round\n",
               n, rounds, runs, gap_ms);
        printf("taskstats sampler: %s\n", sampler_description(ts));
        if (sampler_source(ts) == SAMPLER_TASKSTATS) {
                bench("taskstats, threads + host", ts, (const int (*)[2])slots, n, rounds, runs, gap_ms, ALL);
                bench("taskstats, threads only", ts, (const int (*)[2])slots, n, rounds, runs, gap_ms, THREADS_ONLY);
        }
        bench("schedstat, threads + host", ss, (const int (*)[2])slots, n, rounds, runs, gap_ms, ALL);
        bench("schedstat, threads only", ss, (const int (*)[2])slots, n, rounds, runs, gap_ms, THREADS_ONLY);
        bench("/proc/stat only", ss, (const int (*)[2])slots, n, rounds, runs, gap_ms, HOST_ONLY);

        close(pipefd[1]);
        for (size_t i = 0; i < n; i++)
                pthread_join(threads[i], NULL);
        sampler_free(ts);
        sampler_free(ss);
        free(slots);
        free(threads);
        return 0;
}
