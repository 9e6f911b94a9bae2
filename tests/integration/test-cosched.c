/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daemon/cosched on real threads: three gangs of two spinning threads (one
 * of them a 4-thread gang), 5 ms turns for 3 s.  A sampler thread reads
 * every thread's policy continuously and checks that at no moment more than
 * one gang has a thread off SCHED_IDLE (on duty), that every gang got turns
 * and CPU time in proportion to its weight (no starvation), that a thread
 * that exits is a normal event (ESRCH counted, no error), that a gang
 * leaving the set is restored at once, and that cosched_free() gives every
 * thread back its original policy, nice value and affinity.  Then the same
 * threads, each moved alone into its own cpu cgroup under a gang cgroup (as
 * libvirt lays out vCPUs), under COSCHED_LEVER_CGROUP_IDLE: at most one gang
 * cgroup with cpu.idle 0 at any moment, all back to 0 at the end (skipped
 * where the v1 cpu hierarchy has no cpu.idle).  Needs root
 * (leaving SCHED_IDLE needs RLIMIT_NICE or CAP_SYS_NICE); exits 77 without
 * it outside CI.
 */
#include "cosched.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
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

static bool gang_on_now(int g)
{
        for (unsigned k = 0; k < nt[g]; k++) {
                int pol = sched_getscheduler(tids[g][k]);
                if (pol >= 0 && pol != SCHED_IDLE)
                        return true;
        }
        return false;
}

/*
 * Reading threads one by one is no snapshot: a pass can see gang A before
 * it goes off duty and gang B after it comes on.  So each sample is a
 * forward pass then a backward pass, and a gang counts as on duty only if
 * both passes saw it on: then it was on at the moment between the passes
 * (a duty span is one interval, far longer than a pass, and some thread of
 * the gang is on throughout it), so two such gangs were on at once.
 */
static void *sampler(void *p)
{
        while (sampling) {
                bool fwd[NG];
                int on = 0;
                for (int g = 0; g < NG; g++)
                        fwd[g] = gang_on_now(g);
                for (int g = NG - 1; g >= 0; g--) {
                        bool both = fwd[g] && gang_on_now(g);
                        on += both;
                        on_duty_counts[g] += both;
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

#define CG "/sys/fs/cgroup/cpu/vcpuspread-test-cosched"

static bool alive(int g, unsigned k)
{
        return !(g == 2 && k == 1);
}

static int write_str(const char *path, const char *v)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int r = write(fd, v, strlen(v)) < 0 ? -errno : 0;
        close(fd);
        return r;
}

static long read_num(const char *path)
{
        long v = -1;
        FILE *f = fopen(path, "re");
        if (f) {
                if (fscanf(f, "%ld", &v) != 1)
                        v = -1;
                fclose(f);
        }
        return v;
}

/* The thread's cgroup in the v1 hierarchy that holds the cpu controller. */
static bool cpu_cgroup_of(pid_t tid, char *out, size_t len)
{
        char p[64], line[512];
        bool found = false;
        snprintf(p, sizeof(p), "/proc/self/task/%d/cgroup", tid);
        FILE *f = fopen(p, "re");
        while (f && !found && fgets(line, sizeof(line), f)) {
                char *ctl = strchr(line, ':'), *path = ctl ? strchr(ctl + 1, ':') : NULL;
                if (!path)
                        continue;
                *path++ = 0;
                ctl++;
                for (char *save, *t = strtok_r(ctl, ",", &save); t; t = strtok_r(NULL, ",", &save))
                        if (!strcmp(t, "cpu")) {
                                path[strcspn(path, "\n")] = 0;
                                snprintf(out, len, "/sys/fs/cgroup/cpu%s", path);
                                found = true;
                        }
        }
        if (f)
                fclose(f);
        return found;
}

static long cg_samples, cg_max_on;

static bool cg_on_now(int g)
{
        char path[128];
        snprintf(path, sizeof(path), CG "/g%d/cpu.idle", g);
        return read_num(path) == 0;
}

/* Forward and backward passes, as in sampler(). */
static void *cg_sampler(void *p)
{
        while (sampling) {
                bool fwd[NG];
                int on = 0;
                for (int g = 0; g < NG; g++)
                        fwd[g] = cg_on_now(g);
                for (int g = NG - 1; g >= 0; g--)
                        on += fwd[g] && cg_on_now(g);
                cg_max_on = on > cg_max_on ? on : cg_max_on;
                cg_samples++;
                usleep(200);
        }
        return NULL;
}

static void test_cgroup_lever(void)
{
        char home[NG][MAXT][256], path[256], v[32];

        if (access("/sys/fs/cgroup/cpu/cpu.idle", F_OK) < 0) {
                fprintf(stderr, "no /sys/fs/cgroup/cpu/cpu.idle: cgroup lever not tested\n");
                return;
        }
        mkdir(CG, 0755);
        for (int g = 0; g < NG; g++) {
                snprintf(path, sizeof(path), CG "/g%d", g);
                mkdir(path, 0755);
                for (unsigned k = 0; k < nt[g]; k++) {
                        if (!alive(g, k))
                                continue;
                        CHECK(cpu_cgroup_of(tids[g][k], home[g][k], sizeof(home[g][k])), "cpu cgroup of %d", tids[g][k]);
                        snprintf(path, sizeof(path), CG "/g%d/vcpu%u", g, k);
                        mkdir(path, 0755);
                        snprintf(path, sizeof(path), CG "/g%d/vcpu%u/tasks", g, k);
                        snprintf(v, sizeof(v), "%d", tids[g][k]);
                        CHECK(write_str(path, v) == 0, "move %d into %s", tids[g][k], path);
                }
        }
        struct cosched *cs;
        struct cosched_params p = { .turn_us = 5000, .lever = COSCHED_LEVER_CGROUP_IDLE, .pin = true };
        CHECK(cosched_new(&p, &cs) == 0, "cosched_new (cgroup idle)");
        struct cosched_gang gangs[NG];
        pid_t live[NG][MAXT];
        char dirs[NG][64];
        for (int g = 0; g < NG; g++) {
                size_t n = 0;
                for (unsigned k = 0; k < nt[g]; k++)
                        if (alive(g, k))
                                live[g][n++] = tids[g][k];
                snprintf(dirs[g], sizeof(dirs[g]), CG "/g%d", g);
                gangs[g] = (struct cosched_gang){ .id = g, .tids = live[g], .n_tids = n, .cgroup = dirs[g] };
        }
        pthread_t smp;
        int r = cosched_set_gangs(cs, gangs, NG);
        CHECK(r == 0, "cosched_set_gangs (cgroup idle): %s", strerror(-r));
        sampling = 1;
        pthread_create(&smp, NULL, cg_sampler, NULL);
        uint64_t turns[NG] = { 0 }, last = 0;
        bool have_last = false;
        drive(cs, 1000, turns, &last, &have_last);
        sampling = 0;
        pthread_join(smp, NULL);
        for (int g = 0; g < NG; g++)
                /* 10 + 20 + 5 ms rounds (gang 2 is down to one thread): ~28 turns each */
                CHECK(turns[g] >= 20, "gang %d had %llu cgroup turns in 1 s", g, (unsigned long long)turns[g]);
        CHECK(cg_max_on == 1, "at most one gang cgroup with cpu.idle 0: saw %ld in %ld samples", cg_max_on, cg_samples);
        struct cosched_stats st;
        cosched_get_stats(cs, &st);
        CHECK(st.errors == 0, "no errors with the cgroup lever: %llu", (unsigned long long)st.errors);
        cosched_free(cs);
        for (int g = 0; g < NG; g++) {
                snprintf(path, sizeof(path), CG "/g%d/cpu.idle", g);
                CHECK(read_num(path) == 0, "gang %d cpu.idle restored: %ld", g, read_num(path));
                for (unsigned k = 0; k < nt[g]; k++)
                        CHECK(!alive(g, k) || sched_getscheduler(tids[g][k]) != SCHED_IDLE,
                              "gang %d thread %u not left SCHED_IDLE", g, k);
        }
        /* Back where they came from; remove the tree. */
        for (int g = 0; g < NG; g++) {
                for (unsigned k = 0; k < nt[g]; k++) {
                        if (!alive(g, k))
                                continue;
                        snprintf(path, sizeof(path), "%s/tasks", home[g][k]);
                        snprintf(v, sizeof(v), "%d", tids[g][k]);
                        CHECK(write_str(path, v) == 0, "move %d back to %s", tids[g][k], home[g][k]);
                        snprintf(path, sizeof(path), CG "/g%d/vcpu%u", g, k);
                        rmdir(path);
                }
                snprintf(path, sizeof(path), CG "/g%d", g);
                rmdir(path);
        }
        CHECK(rmdir(CG) == 0, "cgroup tree removed: %m");
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

        /* Before the set is in place every gang runs as found; the
         * invariant holds from then on. */
        int r = cosched_set_gangs(cs, gangs, NG);
        CHECK(r == 0, "cosched_set_gangs: %s", strerror(-r));
        sampling = 1;
        pthread_create(&smp, NULL, sampler, NULL);

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
        /* pthread_join returns before the kernel releases the task: until
         * then the scheduler calls on it still succeed, and the turns that
         * follow might not see it gone. */
        CHECK(test_join_released(th[2][1], tids[2][1]), "vanishing thread released");
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

        /* A thread listed twice is refused and changes nothing. */
        struct cosched_gang dup[2] = { gangs[1], { .id = 9, .tids = tids[1], .n_tids = 1 } };
        CHECK(cosched_set_gangs(cs, dup, 2) == -EINVAL, "a thread in two gangs is refused");
        cosched_get_stats(cs, &st);
        CHECK(st.gangs == 2, "the refused set changed nothing: %zu gangs", st.gangs);

        /* Gang 0's threads come back, one of them moved into gang 1: its
         * original attributes are the ones first read, not a demoted state. */
        pid_t g1plus[MAXT + 1];
        memcpy(g1plus, tids[1], sizeof(pid_t) * nt[1]);
        g1plus[nt[1]] = tids[0][1];
        struct cosched_gang moved[3] = {
                { .id = 0, .tids = tids[0], .n_tids = 1 },
                { .id = 1, .tids = g1plus, .n_tids = nt[1] + 1 },
                { .id = 2, .tids = tids[2], .n_tids = 1 },
        };
        r = cosched_set_gangs(cs, moved, 3);
        CHECK(r == 0, "cosched_set_gangs with a moved thread: %s", strerror(-r));
        drive(cs, 100, turns, &last, &have_last);
        moved[0].tids = &tids[0][1];
        moved[1].n_tids = nt[1];
        r = cosched_set_gangs(cs, moved, 3);            /* and back to gang 0 */
        CHECK(r == 0, "cosched_set_gangs moving it back: %s", strerror(-r));
        drive(cs, 100, turns, &last, &have_last);
        r = cosched_set_gangs(cs, gangs + 1, NG - 1);
        CHECK(r == 0, "cosched_set_gangs without gang 0 again: %s", strerror(-r));
        for (unsigned k = 0; k < nt[0]; k++) {
                CHECK(sched_getscheduler(tids[0][k]) == orig_policy[0][k], "gang 0 thread %u policy restored again", k);
                CHECK(getpriority(PRIO_PROCESS, tids[0][k]) == orig_nice[0][k], "gang 0 thread %u nice restored again", k);
        }

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
        test_cgroup_lever();

        stop = 1;
        for (int g = 0; g < NG; g++)
                for (unsigned k = 0; k < nt[g]; k++)
                        if (!(g == 2 && k == 1))
                                pthread_join(th[g][k], NULL);
        return test_result();
}
