/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Co-scheduling by rotating duty (see cosched.h).  The only code besides
 * apply.c that changes a thread's scheduling: it changes policy/nice
 * (sched_setattr), optionally affinity (pin) and a guest cgroup's cpu.shares,
 * and writes back exactly what it read first.
 */
#include "cosched.h"
#include "cosched-plan.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/* The kernel's struct sched_attr (glibc 2.36 has no wrapper; including
 * <linux/sched/types.h> beside <sched.h> redefines struct sched_param). */
struct sched_attr {
        uint32_t size;
        uint32_t sched_policy;
        uint64_t sched_flags;
        int32_t sched_nice;
        uint32_t sched_priority;
        uint64_t sched_runtime, sched_deadline, sched_period;
        uint32_t sched_util_min, sched_util_max;
};

#ifndef SCHED_DEADLINE
#define SCHED_DEADLINE 6
#endif
#ifndef SCHED_IDLE
#define SCHED_IDLE 5
#endif

struct cs_thread {
        pid_t tid;
        struct sched_attr orig;         /* as first seen */
        cpu_set_t orig_mask;
        bool skip;                      /* real-time: never touched */
        bool pinned;                    /* affinity currently differs from orig_mask */
        bool demoted;                   /* currently off-duty attributes */
};

struct cs_gang {
        uint64_t id;
        unsigned weight;
        struct cs_thread *t;
        size_t n;
        char *cgroup_file;              /* cpu.shares / cpu.weight, or NULL */
        long cgroup_orig;               /* value read when first seen */
        bool cgroup_low;
};

struct cosched {
        struct cosched_params p;
        int cpus[CPU_SETSIZE];
        size_t n_cpus;
        int tfd;
        struct cs_gang *g;
        size_t n;
        bool have_duty;
        uint64_t duty_id;
        uint64_t turn_ns;
        struct cosched_stats st;
        int first_err;
};

static int sys_getattr(pid_t tid, struct sched_attr *a)
{
        memset(a, 0, sizeof(*a));
        return syscall(SYS_sched_getattr, tid, a, sizeof(*a), 0) < 0 ? -errno : 0;
}

static int sys_setattr(pid_t tid, const struct sched_attr *a)
{
        struct sched_attr c = *a;

        c.size = sizeof(c);
        return syscall(SYS_sched_setattr, tid, &c, 0) < 0 ? -errno : 0;
}

/* Record a failure: ESRCH is a vanished thread, anything else an error. */
static void note(struct cosched *cs, struct cs_thread *t, int r)
{
        if (r == -ESRCH) {
                if (t->tid > 0)
                        cs->st.vanished++;
                t->tid = -1;
                return;
        }
        cs->st.errors++;
        if (!cs->first_err)
                cs->first_err = r;
}

static bool is_rt(int policy)
{
        return policy == SCHED_FIFO || policy == SCHED_RR || policy == SCHED_DEADLINE;
}

static int read_long(const char *path, long *v)
{
        FILE *f = fopen(path, "re");
        if (!f)
                return -errno;
        int ok = fscanf(f, "%ld", v) == 1;
        fclose(f);
        return ok ? 0 : -EIO;
}

static int write_long(const char *path, long v)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        char buf[32];
        int len = snprintf(buf, sizeof(buf), "%ld\n", v);
        ssize_t w = write(fd, buf, len);
        int r = w == len ? 0 : w < 0 ? -errno : -EIO;
        close(fd);
        return r;
}

/* The lever acts on the gang's cgroup rather than on its threads. */
static bool lever_shares(const struct cosched *cs, const struct cs_gang *g)
{
        return (cs->p.lever == COSCHED_LEVER_SHARES || cs->p.lever == COSCHED_LEVER_CGROUP_IDLE) && g->cgroup_file;
}

/* The value that puts the gang's cgroup off duty. */
static long cgroup_low_value(const char *file)
{
        if (strstr(file, "cpu.idle"))
                return 1;
        if (strstr(file, "cpu.shares"))
                return 2;               /* v1 minimum */
        return 1;                       /* v2 cpu.weight minimum */
}

static void thread_demote(struct cosched *cs, struct cs_gang *g, struct cs_thread *t)
{
        if (t->tid <= 0 || t->skip)
                return;
        if (t->pinned) {
                if (sched_setaffinity(t->tid, sizeof(t->orig_mask), &t->orig_mask) < 0)
                        note(cs, t, -errno);
                else
                        t->pinned = false;
        }
        if (t->demoted || lever_shares(cs, g) || t->tid <= 0)
                return;
        struct sched_attr a = t->orig;
        if (cs->p.lever == COSCHED_LEVER_NICE) {
                a.sched_policy = SCHED_OTHER;
                a.sched_nice = 19;
        } else {
                a.sched_policy = SCHED_IDLE;
        }
        int r = sys_setattr(t->tid, &a);
        if (r < 0)
                note(cs, t, r);
        else
                t->demoted = true;
}

/* Back to what the thread had; @pin_cpu >= 0 then narrows its affinity. */
static void thread_restore(struct cosched *cs, struct cs_thread *t, int pin_cpu)
{
        if (t->tid <= 0 || t->skip)
                return;
        if (t->demoted) {
                int r = sys_setattr(t->tid, &t->orig);
                if (r < 0) {
                        note(cs, t, r);
                        return;
                }
                t->demoted = false;
        }
        if (pin_cpu >= 0 && CPU_ISSET(pin_cpu, &t->orig_mask)) {
                cpu_set_t m;
                CPU_ZERO(&m);
                CPU_SET(pin_cpu, &m);
                if (sched_setaffinity(t->tid, sizeof(m), &m) < 0)
                        note(cs, t, -errno);
                else
                        t->pinned = true;
        } else if (t->pinned) {
                if (sched_setaffinity(t->tid, sizeof(t->orig_mask), &t->orig_mask) < 0)
                        note(cs, t, -errno);
                else
                        t->pinned = false;
        }
}

static void gang_cgroup_set(struct cosched *cs, struct cs_gang *g, bool low)
{
        if (!g->cgroup_file || g->cgroup_low == low)
                return;
        int r = write_long(g->cgroup_file, low ? cgroup_low_value(g->cgroup_file) : g->cgroup_orig);
        if (r < 0) {
                cs->st.errors++;
                if (!cs->first_err)
                        cs->first_err = r;
                return;
        }
        g->cgroup_low = low;
}

static void gang_off(struct cosched *cs, struct cs_gang *g)
{
        for (size_t i = 0; i < g->n; i++)
                thread_demote(cs, g, &g->t[i]);
        if (lever_shares(cs, g))
                gang_cgroup_set(cs, g, true);
}

static void gang_on(struct cosched *cs, struct cs_gang *g)
{
        if (lever_shares(cs, g))
                gang_cgroup_set(cs, g, false);
        for (size_t i = 0; i < g->n; i++)
                thread_restore(cs, &g->t[i], cs->p.pin && cs->n_cpus ? cs->cpus[i % cs->n_cpus] : -1);
}

/* Everything back as found. */
static void gang_restore(struct cosched *cs, struct cs_gang *g)
{
        gang_cgroup_set(cs, g, false);
        for (size_t i = 0; i < g->n; i++)
                thread_restore(cs, &g->t[i], -1);
}

static void gang_done(struct cs_gang *g)
{
        free(g->t);
        free(g->cgroup_file);
        memset(g, 0, sizeof(*g));
}

static size_t gang_live(const struct cs_gang *g)
{
        size_t k = 0;
        for (size_t i = 0; i < g->n; i++)
                k += g->t[i].tid > 0;
        return k;
}

static struct cs_gang *find_gang(struct cosched *cs, uint64_t id)
{
        for (size_t i = 0; i < cs->n; i++)
                if (cs->g[i].id == id)
                        return &cs->g[i];
        return NULL;
}

static int arm(struct cosched *cs, uint64_t ns)
{
        struct itimerspec its = { 0 };

        if (ns) {
                its.it_value.tv_sec = ns / 1000000000u;
                its.it_value.tv_nsec = ns % 1000000000u;
        }
        return timerfd_settime(cs->tfd, 0, &its, NULL) < 0 ? -errno : 0;
}

static size_t count_live_gangs(struct cosched *cs)
{
        size_t k = 0;
        for (size_t i = 0; i < cs->n; i++)
                k += gang_live(&cs->g[i]) > 0;
        return k;
}

/* End the current turn and start the next one after it (or the first one). */
static int rotate(struct cosched *cs)
{
        struct cosched_plan_gang pg[cs->n ? cs->n : 1];

        memset(pg, 0, sizeof(pg));
        struct cs_gang *cur = cs->have_duty ? find_gang(cs, cs->duty_id) : NULL;

        for (size_t i = 0; i < cs->n; i++)
                pg[i] = (struct cosched_plan_gang){ cs->g[i].id, cs->g[i].weight, gang_live(&cs->g[i]) > 0 };

        if (count_live_gangs(cs) < 2) {
                /* Nobody to take turns with: everyone runs as found. */
                for (size_t i = 0; i < cs->n; i++)
                        gang_restore(cs, &cs->g[i]);
                cs->have_duty = false;
                cs->turn_ns = 0;
                return arm(cs, 0);
        }
        size_t next = cosched_plan_next(pg, cs->n, cs->have_duty, cs->duty_id);
        if (cur && cur != &cs->g[next])
                gang_off(cs, cur);              /* off first: never two on duty */
        gang_on(cs, &cs->g[next]);
        if (!cur || cur != &cs->g[next])
                cs->st.turns++;
        cs->have_duty = true;
        cs->duty_id = cs->g[next].id;
        cs->turn_ns = cosched_plan_turn_ns(pg, cs->n, next, (uint64_t)cs->p.turn_us * 1000,
                                           (uint64_t)cs->p.max_turn_us * 1000);
        return arm(cs, cs->turn_ns);
}

int cosched_new(const struct cosched_params *params, struct cosched **out)
{
        if (!params || !out || params->turn_us > 10000000 || params->lever > COSCHED_LEVER_CGROUP_IDLE ||
            (params->cpus && !params->n_cpus))
                return -EINVAL;
        struct cosched *cs = calloc(1, sizeof(*cs));
        if (!cs)
                return -ENOMEM;
        cs->p = *params;
        if (!cs->p.turn_us)
                cs->p.turn_us = 20000;
        if (!cs->p.max_turn_us)
                cs->p.max_turn_us = 8 * cs->p.turn_us;
        cs->p.cpus = NULL;
        if (params->cpus) {
                if (params->n_cpus > CPU_SETSIZE) {
                        free(cs);
                        return -EINVAL;
                }
                for (size_t i = 0; i < params->n_cpus; i++) {
                        if (params->cpus[i] < 0 || params->cpus[i] >= CPU_SETSIZE) {
                                free(cs);
                                return -EINVAL;
                        }
                        cs->cpus[i] = params->cpus[i];
                }
                cs->n_cpus = params->n_cpus;
        } else if (params->pin) {
                cpu_set_t m;
                if (sched_getaffinity(0, sizeof(m), &m) < 0) {
                        free(cs);
                        return -errno;
                }
                for (int c = 0; c < CPU_SETSIZE && (!params->n_cpus || cs->n_cpus < params->n_cpus); c++)
                        if (CPU_ISSET(c, &m))
                                cs->cpus[cs->n_cpus++] = c;
        }
        cs->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (cs->tfd < 0) {
                int r = -errno;
                free(cs);
                return r;
        }
        *out = cs;
        return 0;
}

void cosched_free(struct cosched *cs)
{
        if (!cs)
                return;
        for (size_t i = 0; i < cs->n; i++) {
                gang_restore(cs, &cs->g[i]);
                gang_done(&cs->g[i]);
        }
        free(cs->g);
        close(cs->tfd);
        free(cs);
}

int cosched_fd(const struct cosched *cs)
{
        return cs->tfd;
}

static int thread_init(struct cs_thread *t, pid_t tid)
{
        memset(t, 0, sizeof(*t));
        t->tid = tid;
        int r = sys_getattr(tid, &t->orig);
        if (r < 0)
                return r;
        if (sched_getaffinity(tid, sizeof(t->orig_mask), &t->orig_mask) < 0)
                return -errno;
        t->skip = is_rt(t->orig.sched_policy);
        return 0;
}

static void cgroup_init(const struct cosched *cs, struct cs_gang *g, const char *dir)
{
        static const char *const weight_files[] = { "cpu.shares", "cpu.weight" };
        static const char *const idle_files[] = { "cpu.idle", "cpu.idle" };
        const char *const *files = cs->p.lever == COSCHED_LEVER_CGROUP_IDLE ? idle_files : weight_files;

        if (cs->p.lever != COSCHED_LEVER_SHARES && cs->p.lever != COSCHED_LEVER_CGROUP_IDLE)
                return;
        for (size_t i = 0; dir && i < 2; i++) {
                char *p;
                if (asprintf(&p, "%s/%s", dir, files[i]) < 0)
                        return;
                if (read_long(p, &g->cgroup_orig) == 0) {
                        g->cgroup_file = p;
                        return;
                }
                free(p);
        }
}

static struct cs_thread *find_thread(struct cosched *cs, pid_t tid)
{
        for (size_t i = 0; i < cs->n; i++)
                for (size_t k = 0; k < cs->g[i].n; k++)
                        if (cs->g[i].t[k].tid == tid)
                                return &cs->g[i].t[k];
        return NULL;
}

/* Build the new gang @ng from @src, carrying over what @old knew. */
static int gang_build(struct cosched *cs, struct cs_gang *ng, const struct cosched_gang *src,
                      const struct cs_gang *old)
{
        memset(ng, 0, sizeof(*ng));
        ng->id = src->id;
        ng->weight = src->weight ? src->weight : (unsigned)(src->n_tids ? src->n_tids : 1);
        ng->t = calloc(src->n_tids ? src->n_tids : 1, sizeof(*ng->t));
        if (!ng->t)
                return -ENOMEM;
        if (old && old->cgroup_file) {
                ng->cgroup_file = strdup(old->cgroup_file);
                if (!ng->cgroup_file)
                        return -ENOMEM;
                ng->cgroup_orig = old->cgroup_orig;
                ng->cgroup_low = old->cgroup_low;
        } else if (!old) {
                cgroup_init(cs, ng, src->cgroup);
        }
        for (size_t i = 0; i < src->n_tids; i++) {
                /* A thread already known (in this gang, or moved from another)
                 * keeps what was first read of it, not its demoted state. */
                const struct cs_thread *ot = src->tids[i] > 0 ? find_thread(cs, src->tids[i]) : NULL;
                if (ot) {
                        ng->t[ng->n++] = *ot;
                        continue;
                }
                int r = src->tids[i] > 0 ? thread_init(&ng->t[ng->n], src->tids[i]) : -ESRCH;
                if (r == -ESRCH) {
                        cs->st.vanished++;
                        continue;
                }
                if (r < 0) {
                        cs->st.errors++;
                        if (!cs->first_err)
                                cs->first_err = r;
                        continue;
                }
                ng->n++;
        }
        return 0;
}

static bool gang_has(const struct cs_gang *g, pid_t tid)
{
        for (size_t i = 0; i < g->n; i++)
                if (g->t[i].tid == tid)
                        return true;
        return false;
}

/* Ids unique, and no thread in two gangs (or twice in one). */
static bool set_valid(const struct cosched_gang *gangs, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                if (gangs[i].n_tids && !gangs[i].tids)
                        return false;
                for (size_t k = 0; k < i; k++)
                        if (gangs[k].id == gangs[i].id)
                                return false;
                for (size_t t = 0; t < gangs[i].n_tids; t++)
                        for (size_t k = 0; k <= i; k++)
                                for (size_t u = 0; u < (k == i ? t : gangs[k].n_tids); u++)
                                        if (gangs[k].tids[u] == gangs[i].tids[t])
                                                return false;
        }
        return true;
}

int cosched_set_gangs(struct cosched *cs, const struct cosched_gang *gangs, size_t n)
{
        if (n && !gangs)
                return -EINVAL;
        if (!set_valid(gangs, n))
                return -EINVAL;
        struct cs_gang *ng = calloc(n ? n : 1, sizeof(*ng));
        if (!ng)
                return -ENOMEM;
        cs->first_err = 0;
        for (size_t i = 0; i < n; i++) {
                int r = gang_build(cs, &ng[i], &gangs[i], find_gang(cs, gangs[i].id));
                if (r < 0) {
                        for (size_t k = 0; k <= i; k++)
                                gang_done(&ng[k]);
                        free(ng);
                        return r;
                }
        }
        /* Restore what leaves: the cgroups of gangs that go, and every thread
         * that is in no gang of the new set. */
        for (size_t i = 0; i < cs->n; i++) {
                struct cs_gang *og = &cs->g[i];
                bool kept = false;
                for (size_t k = 0; k < n && !kept; k++)
                        kept = ng[k].id == og->id;
                if (!kept)
                        gang_cgroup_set(cs, og, false);
                for (size_t t = 0; t < og->n; t++) {
                        bool stays = false;
                        for (size_t k = 0; k < n && !stays; k++)
                                stays = gang_has(&ng[k], og->t[t].tid);
                        if (og->t[t].tid > 0 && !stays)
                                thread_restore(cs, &og->t[t], -1);
                }
        }
        for (size_t i = 0; i < cs->n; i++)
                gang_done(&cs->g[i]);
        free(cs->g);
        cs->g = ng;
        cs->n = n;

        struct cs_gang *duty = cs->have_duty ? find_gang(cs, cs->duty_id) : NULL;
        int r;
        if (duty && gang_live(duty) && count_live_gangs(cs) >= 2) {
                /* Keep the turn; put everyone else (new threads too) off duty. */
                for (size_t i = 0; i < cs->n; i++)
                        if (&cs->g[i] != duty)
                                gang_off(cs, &cs->g[i]);
                gang_on(cs, duty);
                r = 0;
        } else {
                if (count_live_gangs(cs) >= 2)
                        for (size_t i = 0; i < cs->n; i++)
                                gang_off(cs, &cs->g[i]);
                r = rotate(cs);
        }
        return r < 0 ? r : cs->first_err;
}

int cosched_on_timer(struct cosched *cs)
{
        uint64_t exp;

        if (read(cs->tfd, &exp, sizeof(exp)) < 0 && errno != EAGAIN)
                return -errno;
        cs->first_err = 0;
        int r = rotate(cs);
        return r < 0 ? r : cs->first_err;
}

void cosched_get_stats(const struct cosched *cs, struct cosched_stats *out)
{
        *out = cs->st;
        out->gangs = 0;
        for (size_t i = 0; i < cs->n; i++)
                out->gangs += gang_live(&cs->g[i]) > 0;
        out->have_duty = cs->have_duty;
        out->duty_id = cs->duty_id;
        out->turn_ns = cs->turn_ns;
}
