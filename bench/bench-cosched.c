/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A test bed for co-scheduling without VMs.  G "gangs" (processes) of V
 * threads each contend on one spin lock in the gang's memory, the way the
 * vCPUs of one guest contend on a guest lock; on an overcommitted host a
 * waiter burns its slice while the holder (its sibling) is preempted:
 * lock-holder preemption.  Placement modes are interleaved and rotated per
 * repetition; each run counts lock acquisitions per gang over a window and
 * the CPU time each gang got (/proc/TID/schedstat).
 */
#include "bench-args.h"
#include "cosched.h"
#include "cosched-plan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXG 32
#define MAXV 16
#define MAXMODES 16
#define MAXREPS 200
#define CG_ROOT "/sys/fs/cgroup/cpu/vcpuspread-bench"

static const char usage[] =
"usage: bench-cosched [OPTIONS]\n"
"  --gangs LIST     vCPUs per gang, comma separated (default 2,2: two gangs of 2)\n"
"  --spin KIND      load (plain load loop, default) | pause | futex (waiters block)\n"
"  --lock KIND      tas (test-and-set, default) | ticket (fair FIFO, as guest kernels'\n"
"                   spinlocks; spins with --spin load or pause)\n"
"  --modes LIST     default,spread,stacked,cosched[:idle|nice|shares|cgidle][:TURN_MS][:pin]\n"
"                   (default: default,spread,stacked,cosched:idle:20:pin; TURN_MS 20)\n"
"  --reps N         repetitions, modes rotated each time (default 5)\n"
"  --window MS      measuring window per run (default 3000), after 300 ms warm-up\n"
"  --cs N --out N   work units inside / outside the lock per acquisition (default 200 / 200)\n"
"  --cgroups        put each gang in its own cpu cgroup, each thread in a child, as libvirt does\n"
"                   (needed by cosched:shares)\n"
"  --verbose        one line per run\n";

struct gang_shm {
        _Alignas(64) int lock;
        unsigned ticket_owner;          /* ticket lock: the ticket being served */
        _Alignas(64) unsigned ticket_next;
        _Alignas(64) struct {
                volatile uint64_t ops;
                pid_t tid;
                char pad[64 - sizeof(uint64_t) - sizeof(pid_t)];
        } th[MAXV];
};

struct shm {
        volatile int go, stop, ready;
        struct gang_shm g[MAXG];
};

enum spin { SPIN_LOAD, SPIN_PAUSE, SPIN_FUTEX };

struct mode {
        char name[48];
        enum { M_DEFAULT, M_SPREAD, M_STACKED, M_COSCHED } kind;
        struct cosched_params cp;
};

static struct shm *shm;
static unsigned n_gangs, vcpus[MAXG], cs_work = 200, out_work = 200;
static enum spin spin_kind = SPIN_LOAD;
static int n_cpus;
static bool use_cgroups, verbose, ticket;

static volatile uint64_t sink;

static void work(unsigned n)
{
        uint64_t x = sink;
        for (unsigned i = 0; i < n; i++)
                x = x * 6364136223846793005ull + 1442695040888963407ull;
        sink = x;
}

static void lock_spin(int *l, bool pause)
{
        for (;;) {
                if (!__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
                        return;
                while (__atomic_load_n(l, __ATOMIC_RELAXED))
                        if (pause)
                                __builtin_ia32_pause();
        }
}

static void futex_op(int *l, int op, int v)
{
        syscall(SYS_futex, l, op | FUTEX_PRIVATE_FLAG, v, NULL, NULL, 0);
}

/* Drepper's mutex: 0 free, 1 locked, 2 locked with waiters. */
static void lock_futex(int *l)
{
        int c = 0;
        if (__atomic_compare_exchange_n(l, &c, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
                return;
        if (c != 2)
                c = __atomic_exchange_n(l, 2, __ATOMIC_ACQUIRE);
        while (c != 0) {
                futex_op(l, FUTEX_WAIT, 2);
                c = __atomic_exchange_n(l, 2, __ATOMIC_ACQUIRE);
        }
}

static void unlock(int *l)
{
        if (spin_kind == SPIN_FUTEX) {
                if (__atomic_exchange_n(l, 0, __ATOMIC_RELEASE) == 2)
                        futex_op(l, FUTEX_WAKE, 1);
        } else {
                __atomic_store_n(l, 0, __ATOMIC_RELEASE);
        }
}

/* A fair FIFO spin lock, like the guest kernel's ticket and queued
 * spinlocks: a preempted waiter whose ticket is next stalls everyone
 * (lock-waiter preemption), not only a preempted holder. */
static void ticket_lock(struct gang_shm *g, bool pause)
{
        unsigned my = __atomic_fetch_add(&g->ticket_next, 1, __ATOMIC_RELAXED);
        while (__atomic_load_n(&g->ticket_owner, __ATOMIC_ACQUIRE) != my)
                if (pause)
                        __builtin_ia32_pause();
}

static void ticket_unlock(struct gang_shm *g)
{
        __atomic_store_n(&g->ticket_owner, g->ticket_owner + 1, __ATOMIC_RELEASE);
}

struct wargs { struct gang_shm *g; unsigned k; };

static void *worker(void *arg)
{
        struct wargs *a = arg;
        struct gang_shm *g = a->g;

        g->th[a->k].tid = gettid();
        __atomic_fetch_add(&shm->ready, 1, __ATOMIC_SEQ_CST);
        while (!shm->go)
                usleep(1000);
        while (!shm->stop) {
                if (ticket)
                        ticket_lock(g, spin_kind == SPIN_PAUSE);
                else if (spin_kind == SPIN_FUTEX)
                        lock_futex(&g->lock);
                else
                        lock_spin(&g->lock, spin_kind == SPIN_PAUSE);
                work(cs_work);
                g->th[a->k].ops++;
                if (ticket)
                        ticket_unlock(g);
                else
                        unlock(&g->lock);
                work(out_work);
        }
        return NULL;
}

static void gang_main(unsigned gi)
{
        pthread_t t[MAXV];
        struct wargs a[MAXV];

        for (unsigned k = 0; k < vcpus[gi]; k++) {
                a[k] = (struct wargs){ &shm->g[gi], k };
                if (pthread_create(&t[k], NULL, worker, &a[k]))
                        _exit(1);
        }
        for (unsigned k = 0; k < vcpus[gi]; k++)
                pthread_join(t[k], NULL);
        _exit(0);
}

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint64_t runtime_ns(pid_t tid)
{
        char p[64];
        unsigned long long v = 0;
        snprintf(p, sizeof(p), "/proc/%d/schedstat", tid);
        FILE *f = fopen(p, "re");
        if (f) {
                if (fscanf(f, "%llu", &v) != 1)
                        v = 0;
                fclose(f);
        }
        return v;
}

static void pin(pid_t tid, int cpu)
{
        cpu_set_t m;
        CPU_ZERO(&m);
        CPU_SET(cpu, &m);
        if (sched_setaffinity(tid, sizeof(m), &m) < 0)
                fprintf(stderr, "sched_setaffinity(%d): %m\n", tid);
}

static int write_str(const char *path, const char *s)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int r = write(fd, s, strlen(s)) < 0 ? -errno : 0;
        close(fd);
        return r;
}

static void cgroups_make(void)
{
        char p[256], s[32];
        mkdir(CG_ROOT, 0755);
        for (unsigned g = 0; g < n_gangs; g++) {
                snprintf(p, sizeof(p), CG_ROOT "/g%u", g);
                mkdir(p, 0755);
                for (unsigned k = 0; k < vcpus[g]; k++) {
                        snprintf(p, sizeof(p), CG_ROOT "/g%u/vcpu%u", g, k);
                        mkdir(p, 0755);
                        snprintf(p, sizeof(p), CG_ROOT "/g%u/vcpu%u/tasks", g, k);
                        snprintf(s, sizeof(s), "%d", shm->g[g].th[k].tid);
                        if (write_str(p, s) < 0)
                                fprintf(stderr, "cannot write %s\n", p);
                }
        }
}

/* After the gangs exited: remove the tree (tasks are gone). */
static void cgroups_remove(void)
{
        char p[256];
        for (unsigned g = 0; g < n_gangs; g++) {
                for (unsigned k = 0; k < vcpus[g]; k++) {
                        snprintf(p, sizeof(p), CG_ROOT "/g%u/vcpu%u", g, k);
                        for (int i = 0; i < 100 && rmdir(p) < 0 && errno == EBUSY; i++)
                                usleep(10000);
                }
                snprintf(p, sizeof(p), CG_ROOT "/g%u", g);
                rmdir(p);
        }
        rmdir(CG_ROOT);
}

struct result {
        double total, gang_ops[MAXG], share[MAXG], fairness, wfairness;
        double ops_per_cpu_s;           /* total ops over the gangs' CPU time: robust to a shared host */
        double ctl_cpu_us_per_s;
        uint64_t turns;
};

static void sleep_or_drive(struct cosched *cs, uint64_t until)
{
        for (;;) {
                uint64_t t = now_ns();
                if (t >= until)
                        return;
                int ms = (int)((until - t) / 1000000) + 1;
                if (!cs) {
                        poll(NULL, 0, ms);
                        continue;
                }
                struct pollfd pfd = { cosched_fd(cs), POLLIN, 0 };
                if (poll(&pfd, 1, ms) > 0) {
                        int r = cosched_on_timer(cs);
                        if (r < 0)
                                fprintf(stderr, "cosched_on_timer: %s\n", strerror(-r));
                }
        }
}

static int run(const struct mode *m, unsigned window_ms, struct result *res)
{
        pid_t kids[MAXG];
        unsigned total_threads = 0;

        memset(shm, 0, sizeof(*shm));
        for (unsigned g = 0; g < n_gangs; g++)
                total_threads += vcpus[g];
        for (unsigned g = 0; g < n_gangs; g++) {
                kids[g] = fork();
                if (kids[g] < 0)
                        return -errno;
                if (kids[g] == 0)
                        gang_main(g);
        }
        while (shm->ready < (int)total_threads)
                usleep(1000);
        if (use_cgroups)
                cgroups_make();

        for (unsigned g = 0; g < n_gangs; g++)
                for (unsigned k = 0; k < vcpus[g]; k++) {
                        if (m->kind == M_SPREAD)
                                pin(shm->g[g].th[k].tid, k % n_cpus);
                        else if (m->kind == M_STACKED)
                                pin(shm->g[g].th[k].tid, g % n_cpus);
                }

        struct cosched *cs = NULL;
        if (m->kind == M_COSCHED) {
                struct cosched_gang cg[MAXG];
                pid_t tids[MAXG][MAXV];
                char cgp[MAXG][128];
                int r = cosched_new(&m->cp, &cs);
                if (r < 0) {
                        fprintf(stderr, "cosched_new: %s\n", strerror(-r));
                        return r;
                }
                for (unsigned g = 0; g < n_gangs; g++) {
                        for (unsigned k = 0; k < vcpus[g]; k++)
                                tids[g][k] = shm->g[g].th[k].tid;
                        snprintf(cgp[g], sizeof(cgp[g]), CG_ROOT "/g%u", g);
                        cg[g] = (struct cosched_gang){ .id = g, .tids = tids[g], .n_tids = vcpus[g],
                                                       .cgroup = use_cgroups ? cgp[g] : NULL };
                }
                r = cosched_set_gangs(cs, cg, n_gangs);
                if (r < 0)
                        fprintf(stderr, "cosched_set_gangs: %s\n", strerror(-r));
        }

        shm->go = 1;
        sleep_or_drive(cs, now_ns() + 300000000ull);

        uint64_t ops0[MAXG][MAXV], rt0[MAXG][MAXV];
        for (unsigned g = 0; g < n_gangs; g++)
                for (unsigned k = 0; k < vcpus[g]; k++) {
                        ops0[g][k] = shm->g[g].th[k].ops;
                        rt0[g][k] = runtime_ns(shm->g[g].th[k].tid);
                }
        struct rusage ru0, ru1;
        getrusage(RUSAGE_SELF, &ru0);
        uint64_t t0 = now_ns();
        sleep_or_drive(cs, t0 + window_ms * 1000000ull);
        uint64_t t1 = now_ns();
        getrusage(RUSAGE_SELF, &ru1);

        memset(res, 0, sizeof(*res));
        unsigned w[MAXG];
        double cpu_s = 0;
        for (unsigned g = 0; g < n_gangs; g++) {
                double rt = 0;
                for (unsigned k = 0; k < vcpus[g]; k++) {
                        res->gang_ops[g] += shm->g[g].th[k].ops - ops0[g][k];
                        rt += runtime_ns(shm->g[g].th[k].tid) - rt0[g][k];
                }
                res->share[g] = rt / ((double)(t1 - t0) * n_cpus);
                cpu_s += rt / 1e9;
                res->total += res->gang_ops[g];
                w[g] = vcpus[g];
        }
        res->ops_per_cpu_s = cpu_s > 0 ? res->total / cpu_s : 0;
        res->fairness = cosched_fairness(res->gang_ops, n_gangs);
        res->wfairness = cosched_fairness_weighted(res->gang_ops, w, n_gangs);
        double cpu_us = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1e6 +
                        (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec);
        res->ctl_cpu_us_per_s = cpu_us / ((t1 - t0) / 1e9);
        if (cs) {
                struct cosched_stats st;
                cosched_get_stats(cs, &st);
                res->turns = st.turns;
        }
        cosched_free(cs);
        shm->stop = 1;
        for (unsigned g = 0; g < n_gangs; g++)
                waitpid(kids[g], NULL, 0);
        if (use_cgroups)
                cgroups_remove();
        return 0;
}

static int parse_mode(const char *s, struct mode *m)
{
        memset(m, 0, sizeof(*m));
        snprintf(m->name, sizeof(m->name), "%s", s);
        if (!strcmp(s, "default"))
                m->kind = M_DEFAULT;
        else if (!strcmp(s, "spread"))
                m->kind = M_SPREAD;
        else if (!strcmp(s, "stacked"))
                m->kind = M_STACKED;
        else if (!strncmp(s, "cosched", 7)) {
                m->kind = M_COSCHED;
                m->cp.turn_us = 20000;
                char buf[48];
                snprintf(buf, sizeof(buf), "%s", s);
                char *save, *tok = strtok_r(buf, ":", &save);
                while ((tok = strtok_r(NULL, ":", &save))) {
                        if (!strcmp(tok, "idle"))
                                m->cp.lever = COSCHED_LEVER_IDLE;
                        else if (!strcmp(tok, "nice"))
                                m->cp.lever = COSCHED_LEVER_NICE;
                        else if (!strcmp(tok, "shares"))
                                m->cp.lever = COSCHED_LEVER_SHARES;
                        else if (!strcmp(tok, "cgidle"))
                                m->cp.lever = COSCHED_LEVER_CGROUP_IDLE;
                        else if (!strcmp(tok, "pin"))
                                m->cp.pin = true;
                        else if (atoi(tok) > 0)
                                m->cp.turn_us = atoi(tok) * 1000;
                        else
                                return -1;
                }
        } else
                return -1;
        return 0;
}

static int cmp_d(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
        qsort(v, n, sizeof(*v), cmp_d);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
        struct mode modes[MAXMODES];
        size_t n_modes = 0;
        unsigned long reps = 5, window = 3000;
        const char *mode_list = "default,spread,stacked,cosched:idle:20:pin", *gang_list = "2,2";

        if (bench_wants_help(argc, argv, usage))
                return 0;
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                const char *v = i + 1 < argc ? argv[i + 1] : NULL;
                unsigned long x;
                if (!strcmp(a, "--cgroups")) { use_cgroups = true; continue; }
                if (!strcmp(a, "--verbose")) { verbose = true; continue; }
                if (!v) {
                        fprintf(stderr, "bench-cosched: unknown or incomplete argument '%s'\n%s", a, usage);
                        return 2;
                }
                i++;
                if (!strcmp(a, "--gangs")) gang_list = v;
                else if (!strcmp(a, "--modes")) mode_list = v;
                else if (!strcmp(a, "--lock")) {
                        if (!strcmp(v, "tas")) ticket = false;
                        else if (!strcmp(v, "ticket")) ticket = true;
                        else { fprintf(stderr, "bench-cosched: --lock tas|ticket\n"); return 2; }
                }
                else if (!strcmp(a, "--spin")) {
                        if (!strcmp(v, "load")) spin_kind = SPIN_LOAD;
                        else if (!strcmp(v, "pause")) spin_kind = SPIN_PAUSE;
                        else if (!strcmp(v, "futex")) spin_kind = SPIN_FUTEX;
                        else { fprintf(stderr, "bench-cosched: --spin load|pause|futex\n"); return 2; }
                } else if (!strcmp(a, "--reps")) {
                        if (!bench_arg_count(argc, argv, i, "--reps", 5, 1, MAXREPS, &reps)) return 2;
                } else if (!strcmp(a, "--window")) {
                        if (!bench_arg_count(argc, argv, i, "--window", 3000, 100, 600000, &window)) return 2;
                } else if (!strcmp(a, "--cs")) {
                        if (!bench_arg_count(argc, argv, i, "--cs", 200, 0, 1000000, &x)) return 2;
                        cs_work = x;
                } else if (!strcmp(a, "--out")) {
                        if (!bench_arg_count(argc, argv, i, "--out", 200, 0, 1000000, &x)) return 2;
                        out_work = x;
                } else {
                        fprintf(stderr, "bench-cosched: unknown argument '%s'\n%s", a, usage);
                        return 2;
                }
        }
        char buf[512];
        snprintf(buf, sizeof(buf), "%s", gang_list);
        for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                int v = atoi(t);
                if (v < 1 || v > MAXV || n_gangs == MAXG) {
                        fprintf(stderr, "bench-cosched: --gangs takes up to %d counts from 1 to %d\n", MAXG, MAXV);
                        return 2;
                }
                vcpus[n_gangs++] = v;
        }
        snprintf(buf, sizeof(buf), "%s", mode_list);
        for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (n_modes == MAXMODES || parse_mode(t, &modes[n_modes]) < 0) {
                        fprintf(stderr, "bench-cosched: bad mode '%s'\n", t);
                        return 2;
                }
                n_modes++;
        }
        cpu_set_t m;
        sched_getaffinity(0, sizeof(m), &m);
        n_cpus = CPU_COUNT(&m);

        shm = mmap(NULL, sizeof(*shm), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (shm == MAP_FAILED)
                return 1;

        static struct result res[MAXMODES][MAXREPS];
        if (ticket && spin_kind == SPIN_FUTEX) {
                fprintf(stderr, "bench-cosched: --lock ticket spins: --spin load or pause\n");
                return 2;
        }
        printf("# bench-cosched: gangs %s, lock %s, spin %s, cs %u out %u, window %lu ms, %lu reps, %d CPUs%s\n", gang_list,
               ticket ? "ticket" : "tas",
               spin_kind == SPIN_LOAD ? "load" : spin_kind == SPIN_PAUSE ? "pause" : "futex", cs_work, out_work,
               window, reps, n_cpus, use_cgroups ? ", cgroups" : "");
        for (unsigned long r = 0; r < reps; r++) {
                for (size_t j = 0; j < n_modes; j++) {
                        size_t mi = (j + r) % n_modes;
                        if (run(&modes[mi], window, &res[mi][r]) < 0)
                                return 1;
                        if (verbose) {
                                struct result *x = &res[mi][r];
                                printf("run %lu %-24s total %10.0f ops/cpu-s %9.0f fair %.3f", r, modes[mi].name, x->total,
                                       x->ops_per_cpu_s, x->fairness);
                                for (unsigned g = 0; g < n_gangs; g++)
                                        printf(" g%u %.0f/%.2f", g, x->gang_ops[g], x->share[g]);
                                printf("\n");
                                fflush(stdout);
                        }
                }
        }
        printf("%-24s %10s %23s %10s %21s %6s %6s %8s  %s\n", "mode", "ops", "[min - max]", "ops/cpu-s",
               "[min - max]", "fair", "fmin", "ctl us/s", "CPU share per gang");
        for (size_t mi = 0; mi < n_modes; mi++) {
                double tot[MAXREPS], fair[MAXREPS], sh[MAXREPS], ctl[MAXREPS], eff[MAXREPS];
                for (unsigned long r = 0; r < reps; r++) {
                        tot[r] = res[mi][r].total;
                        eff[r] = res[mi][r].ops_per_cpu_s;
                        fair[r] = res[mi][r].wfairness;     /* per vCPU: plain min/max for equal gangs */
                        ctl[r] = res[mi][r].ctl_cpu_us_per_s;
                }
                double mt = median(tot, reps), me = median(eff, reps);
                double mf = median(fair, reps);
                printf("%-24s %10.0f [%10.0f - %10.0f] %10.0f [%9.0f - %9.0f] %6.3f %6.3f %8.0f ", modes[mi].name, mt,
                       tot[0], tot[reps - 1], me, eff[0], eff[reps - 1], mf, fair[0], median(ctl, reps));
                for (unsigned g = 0; g < n_gangs; g++) {
                        for (unsigned long r = 0; r < reps; r++)
                                sh[r] = res[mi][r].share[g];
                        printf(" %.2f", median(sh, reps));
                }
                printf("\n");
        }
        return 0;
}
