/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daemon/cosched on real threads: three gangs of two spinning threads (one
 * of them a 4-thread gang), 5 ms turns for 3 s.  A sampler thread reads
 * every thread's policy continuously and checks that at no moment more than
 * one gang has a thread off SCHED_IDLE (on duty), that every gang got turns
 * and CPU time in proportion to its weight (no starvation), that a thread
 * that exits is a normal event (ESRCH counted, no error), that a gang
 * leaving the set is restored at once, and that cosched_free() gives every
 * thread back its original policy, nice value and affinity.  Needs root
 * (leaving SCHED_IDLE needs RLIMIT_NICE or CAP_SYS_NICE); exits 77 without
 * it outside CI.
 */
#include "cosched.h"
#include "tap.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define NG 3
#define MAXT 4

static const unsigned nt[NG] = { 2, 4, 2 };
static pid_t tids[NG][MAXT];
static volatile int stop, stop_one;
static volatile int started;

struct targ { int g, k; };

static void *spin(void *p)
{
        struct targ *a = p;
        tids[a->g][a->k] = gettid();
        if (a->g == 0 && a->k == 1)
                setpriority(PRIO_PROCESS, 0, 5);        /* an original nice to restore */
        if (a->g == 2 && a->k == 0) {
                struct sched_param sp = { 0 };
                sched_setscheduler(0, SCHED_BATCH, &sp); /* an original policy to restore */
        }
        __atomic_fetch_add(&started, 1, __ATOMIC_SEQ_CST);
        volatile unsigned long x = 0;
        while (!stop) {
                x++;
                if (a->g == 2 && a->k == 1 && stop_one)
                        return NULL;                    /* a vCPU that vanishes */
        }
        return NULL;
}

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint64_t runtime(pid_t tid)
{
        char p[64];
        unsigned long long v = 0;
        snprintf(p, sizeof(p), "/proc/self/task/%d/schedstat", tid);
        FILE *f = fopen(p, "re");
        if (f) {
                if (fscanf(f, "%llu", &v) != 1)
                        v = 0;
                fclose(f);
        }
        return v;
}

static volatile int sampling;
static long samples, max_on_duty_seen, on_duty_counts[NG];

static void *sampler(void *p)
{
        while (sampling) {
                int on = 0;
                for (int g = 0; g < NG; g++) {
                        bool any = false;
                        for (unsigned k = 0; k < nt[g]; k++) {
                                int pol = sched_getscheduler(tids[g][k]);
                                if (pol >= 0 && pol != SCHED_IDLE)
                                        any = true;
                        }
                        on += any;
                        on_duty_counts[g] += any;
                }
                if (on > max_on_duty_seen)
                        max_on_duty_seen = on;
                samples++;
                usleep(200);
        }
        return NULL;
}

static void drive(struct cosched *cs, uint64_t ms, uint64_t turns[NG], uint64_t *last_duty, bool *have_last)
{
        uint64_t until = now_ns() + ms * 1000000;
        while (now_ns() < until) {
                struct pollfd pfd = { cosched_fd(cs), POLLIN, 0 };
                if (poll(&pfd, 1, 5) > 0) {
                        int r = cosched_on_timer(cs);
                        CHECK(r == 0, "cosched_on_timer: %s", strerror(-r));
                }
                struct cosched_stats st;
                cosched_get_stats(cs, &st);
                if (st.have_duty && (!*have_last || st.duty_id != *last_duty)) {
                        turns[st.duty_id]++;
                        *last_duty = st.duty_id;
                        *have_last = true;
                }
        }
}

int main(void)
{
        if (geteuid() != 0) {
                fprintf(stderr, "needs root\n");
                return getenv("CI") ? 1 : 77;
        }
        pthread_t th[NG][MAXT], smp;
        struct targ args[NG][MAXT];
        int orig_policy[NG][MAXT], orig_nice[NG][MAXT];
        cpu_set_t orig_mask[NG][MAXT];

        for (int g = 0; g < NG; g++)
                for (unsigned k = 0; k < nt[g]; k++) {
                        args[g][k] = (struct targ){ g, (int)k };
                        pthread_create(&th[g][k], NULL, spin, &args[g][k]);
                }
        while (started < 8)
                usleep(1000);
        for (int g = 0; g < NG; g++)
                for (unsigned k = 0; k < nt[g]; k++) {
                        orig_policy[g][k] = sched_getscheduler(tids[g][k]);
                        errno = 0;
                        orig_nice[g][k] = getpriority(PRIO_PROCESS, tids[g][k]);
                        sched_getaffinity(tids[g][k], sizeof(cpu_set_t), &orig_mask[g][k]);
                }

        struct cosched *cs;
        struct cosched_params p = { .turn_us = 5000, .lever = COSCHED_LEVER_IDLE, .pin = true };
        CHECK(cosched_new(&p, &cs) == 0, "cosched_new");
        struct cosched_gang gangs[NG];
        for (int g = 0; g < NG; g++)
                gangs[g] = (struct cosched_gang){ .id = g, .tids = tids[g], .n_tids = nt[g] };
        uint64_t rt0[NG] = { 0 }, rt1[NG] = { 0 };
        for (int g = 0; g < NG; g++)
                for (unsigned k = 0; k < nt[g]; k++)
                        rt0[g] += runtime(tids[g][k]);

        sampling = 1;
        pthread_create(&smp, NULL, sampler, NULL);
        int r = cosched_set_gangs(cs, gangs, NG);
        CHECK(r == 0, "cosched_set_gangs: %s", strerror(-r));

        uint64_t turns[NG] = { 0 }, last = 0;
        bool have_last = false;
        drive(cs, 3000, turns, &last, &have_last);
        for (int g = 0; g < NG; g++)
                for (unsigned k = 0; k < nt[g]; k++)
                        rt1[g] += runtime(tids[g][k]);

        /* 3 s of 5 ms + 10 ms + 5 ms rounds: about 150 turns per gang. */
        for (int g = 0; g < NG; g++)
                CHECK(turns[g] >= 100, "gang %d had %llu turns in 3 s", g, (unsigned long long)turns[g]);
        double cpu[NG], per_w[NG];
        for (int g = 0; g < NG; g++) {
                cpu[g] = (rt1[g] - rt0[g]) / 1e9;
                per_w[g] = cpu[g] / nt[g];
                fprintf(stderr, "gang %d: %u threads, %llu turns, %.2f s CPU, %.2f s per thread, on duty in %ld of %ld samples\n",
                        g, nt[g], (unsigned long long)turns[g], cpu[g], per_w[g], on_duty_counts[g], samples);
        }
        for (int g = 0; g < NG; g++)
                CHECK(per_w[g] > 0.15 * 3.0 / 4.0 * 0.5, "gang %d starved: %.2f s per thread", g, per_w[g]);

        /* A thread vanishes: the next turns go on without an error. */
        stop_one = 1;
        pthread_join(th[2][1], NULL);
        drive(cs, 100, turns, &last, &have_last);
        struct cosched_stats st;
        cosched_get_stats(cs, &st);
        CHECK(st.vanished == 1, "vanished thread counted: %llu", (unsigned long long)st.vanished);
        CHECK(st.errors == 0, "no errors: %llu", (unsigned long long)st.errors);

        sampling = 0;
        pthread_join(smp, NULL);
        CHECK(max_on_duty_seen == 1, "at most one gang on duty at any moment: saw %ld in %ld samples",
              max_on_duty_seen, samples);
        CHECK(samples > 1000, "sampler ran: %ld samples", samples);

        /* Gang 0 leaves the set: restored at once. */
        r = cosched_set_gangs(cs, gangs + 1, NG - 1);
        CHECK(r == 0, "cosched_set_gangs without gang 0: %s", strerror(-r));
        for (unsigned k = 0; k < nt[0]; k++) {
                CHECK(sched_getscheduler(tids[0][k]) == orig_policy[0][k], "gang 0 thread %u policy restored", k);
                CHECK(getpriority(PRIO_PROCESS, tids[0][k]) == orig_nice[0][k], "gang 0 thread %u nice restored", k);
        }
        drive(cs, 100, turns, &last, &have_last);

        cosched_free(cs);
        for (int g = 0; g < NG; g++)
                for (unsigned k = 0; k < nt[g]; k++) {
                        if (g == 2 && k == 1)
                                continue;
                        cpu_set_t m;
                        sched_getaffinity(tids[g][k], sizeof(m), &m);
                        CHECK(sched_getscheduler(tids[g][k]) == orig_policy[g][k], "gang %d thread %u policy %d, was %d",
                              g, k, sched_getscheduler(tids[g][k]), orig_policy[g][k]);
                        CHECK(getpriority(PRIO_PROCESS, tids[g][k]) == orig_nice[g][k], "gang %d thread %u nice", g, k);
                        CHECK(CPU_EQUAL(&m, &orig_mask[g][k]), "gang %d thread %u affinity restored", g, k);
                }
        stop = 1;
        for (int g = 0; g < NG; g++)
                for (unsigned k = 0; k < nt[g]; k++)
                        if (!(g == 2 && k == 1))
                                pthread_join(th[g][k], NULL);
        return test_result();
}
