/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Policy=auto in the daemon: the signals of lib/adaptive.h gathered per
 * guest (daemon/signals.h), one adaptive_step() per guest and sampling
 * interval, the decided mode handed to the engine (guest_input.auto_mode)
 * and the co-scheduled guests handed to daemon/cosched as gangs.  The
 * engine stays the one home of placement: this file decides modes, never
 * masks.
 *
 *  - tick timer (signals_tick_hz()): for guests worth ticking, each vCPU's
 *    state and CPU (stacking), and the host's runnable count;
 *  - manager_auto_interval(), after the load sampler's round: switch
 *    counters, adaptive_input_build(), adaptive_step(), the journal entry;
 *  - manager_auto_guest_input(): the engine's input for one guest;
 *  - manager_auto_after_plan(): the gangs of co-scheduled guests.
 *
 * KVM counters (daemon/kvm-stats.h) come from manager-kvm.c, fetched at
 * this file's interval; adaptive_vcpu_sample.kvm is set for the vCPUs of kvm
 * guests whose rates are fresh, and stays false for TCG guests.
 *
 * Co-scheduling needs two gangs to take turns.  A guest can go COSCHED only
 * while another Policy=auto guest is co-scheduled, or has a window in
 * progress that looks like a spinner's (partner_for()).  A guest alone in
 * COSCHED is harmless: with one gang daemon/cosched demotes nobody and pins
 * nothing, so it runs as in KERNEL mode.  The daemon says so once, and the
 * engine's trial waits for a partner (cosched_alone, cosched_partnered()).
 */
#include "manager-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cosched.h"
#include "fileio.h"
#include "util.h"
#include "macro.h"
#include "message-ids.h"

#define NSEC_PER_USEC 1000ULL
#define COSCHED_TURN_US 20000

struct manager_auto {
        struct signals *signals;
        struct signals_budget budget;
        struct adaptive_params params;  /* cosched_available set per guest */
        sd_event_source *tick_timer;
        double tick_hz;
        struct cosched *cs;             /* NULL: no co-scheduler (dry run, or it failed) */
        sd_event_source *cs_source;
        size_t n_gangs;                 /* gangs handed over last time */
        uint64_t gangs_sig;             /* ... and their ids and threads */
        bool said_alone;                /* logged that a lone gang has nobody to take turns with */
        uint64_t interval;
        struct thread_sched_state *scratch;
        struct signals_thread **threads;
        size_t scratch_len;
};

static bool guest_is_auto(const struct managed_guest *g)
{
        return g->policy == POLICY_AUTO && g->state == GUEST_MANAGED && g->n_vcpus > 0;
}

void vcpu_auto_done(struct vcpu_auto *a)
{
        if (a->st.tid > 0)
                signals_thread_close(&a->st);
        a->st.tid = 0;
}

void guest_auto_done(struct guest_auto *a)
{
        free(a->cgroup);
        a->cgroup = NULL;
        if (a->allowed)
                hwloc_bitmap_free(a->allowed);
        a->allowed = NULL;
}

/* ---- the guest's cpu cgroup (the parent of vcpuN) ---------------------------- */

/* From /proc/TID/cgroup: the path in the hierarchy with the cpu controller
 * (v1 "N:cpu,cpuacct:/machine/...", or v2 "0::/..."), and the directory
 * holding it, found by trying the usual mounts. */
static char *guest_cpu_cgroup(pid_t tid)
{
        char path[64], *text = NULL, *found = NULL, *v2 = NULL;
        size_t len;

        snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)tid);
        if (read_file_full(path, 65536, &text, &len) < 0)
                return NULL;
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
                char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                if (!c2)
                        continue;
                *c2 = '\0';
                const char *ctrls = c1 + 1, *p = c2 + 1;
                if (!*ctrls) {
                        v2 = strdup(p);
                        continue;
                }
                char buf[128];
                snprintf(buf, sizeof(buf), ",%s,", ctrls);
                if (strstr(buf, ",cpu,")) {
                        found = strdup(p);
                        break;
                }
        }
        free(text);
        const char *rel = found ? found : v2;
        const char *const roots_v1[] = { "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct",
                                         "/sys/fs/cgroup/cpuacct,cpu" };
        const char *const roots_v2[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/unified" };
        char *dir = NULL;
        if (rel) {
                const char *const *roots = found ? roots_v1 : roots_v2;
                size_t n = found ? ELEMENTSOF(roots_v1) : ELEMENTSOF(roots_v2);
                for (size_t i = 0; i < n && !dir; i++) {
                        char *d = NULL, *slash, probe[4096];
                        if (asprintf(&d, "%s%s", roots[i], rel) < 0)
                                break;
                        slash = strrchr(d, '/');
                        if (slash && slash > d)
                                *slash = '\0';  /* the parent of vcpuN */
                        snprintf(probe, sizeof(probe), "%s/cpu.idle", d);
                        if (access(probe, W_OK) == 0)
                                dir = d;
                        else
                                free(d);
                }
        }
        free(found);
        free(v2);
        return dir;
}

/* ---- ticks ------------------------------------------------------------------ */

static size_t ticked_threads(const struct manager *m)
{
        size_t n = 0;

        for (size_t i = 0; i < m->n_guests; i++)
                if (m->guests[i]->auto_state.ticked && guest_is_auto(m->guests[i]))
                        n += m->guests[i]->n_vcpus;
        return n;
}

static int scratch_reserve(struct manager_auto *a, size_t n)
{
        if (n <= a->scratch_len)
                return 0;
        struct thread_sched_state *s = realloc(a->scratch, n * sizeof(*s));
        if (!s)
                return -ENOMEM;
        a->scratch = s;
        struct signals_thread **t = realloc(a->threads, n * sizeof(*t));
        if (!t)
                return -ENOMEM;
        a->threads = t;
        a->scratch_len = n;
        return 0;
}

static void vcpu_auto_bind(struct managed_guest *g, struct managed_vcpu *v)
{
        if (v->auto_state.st.tid == v->tid && v->auto_state.st.pid == g->qemu_pid && v->tid > 0)
                return;
        vcpu_auto_done(&v->auto_state);
        v->auto_state = (struct vcpu_auto){};
        signals_thread_init(&v->auto_state.st, g->qemu_pid, v->tid);
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct manager *m = userdata;
        struct manager_auto *a = m->autom;
        unsigned running = 0;
        bool have_running = signals_read_running(a->signals, &running) >= 0;

        for (size_t i = 0; i < m->n_guests; i++) {
                struct managed_guest *g = m->guests[i];
                struct guest_auto *ga = &g->auto_state;
                if (!ga->ticked || !guest_is_auto(g))
                        continue;
                if (scratch_reserve(a, g->n_vcpus) < 0)
                        break;
                for (size_t k = 0; k < g->n_vcpus; k++) {
                        vcpu_auto_bind(g, &g->vcpus[k]);
                        a->threads[k] = &g->vcpus[k].auto_state.st;
                }
                int r = signals_sample_guest(a->signals, a->threads, g->n_vcpus, a->scratch, &ga->tally);
                if (r < 0)
                        log_debug_errno(r, "%s: cannot read its vCPUs' states: %m", g->name);
                if (have_running) {
                        ga->host_running_sum += running;
                        ga->host_running_ticks++;
                }
        }
        size_t n = ticked_threads(m);
        if (n == 0)
                return sd_event_source_set_enabled(s, SD_EVENT_OFF);
        a->tick_hz = signals_tick_hz(&a->budget, n);
        return sd_event_source_set_time(s, usec + (uint64_t)(1e6 / a->tick_hz));
}

static void arm_ticks(struct manager *m)
{
        struct manager_auto *a = m->autom;
        size_t n = ticked_threads(m);
        int enabled = SD_EVENT_OFF;
        uint64_t now;

        sd_event_source_get_enabled(a->tick_timer, &enabled);
        if (n == 0) {
                if (enabled != SD_EVENT_OFF)
                        sd_event_source_set_enabled(a->tick_timer, SD_EVENT_OFF);
                return;
        }
        if (enabled != SD_EVENT_OFF)
                return;
        a->tick_hz = signals_tick_hz(&a->budget, n);
        sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        sd_event_source_set_time(a->tick_timer, now + (uint64_t)(1e6 / a->tick_hz));
        sd_event_source_set_enabled(a->tick_timer, SD_EVENT_ON);
}

/* ---- co-scheduling ------------------------------------------------------------ */

static int on_cosched(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct manager *m = userdata;
        uint64_t expirations;

        if (read(fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
                log_debug_errno(-errno, "co-scheduler timer: %m");
        int r = cosched_on_timer(m->autom->cs);
        if (r < 0)
                log_debug_errno(r, "co-scheduler turn: %m");
        return 0;
}

/* A gang id that stays the same while the guest runs (FNV-1a of its UUID). */
static uint64_t uuid_hash(const char *uuid)
{
        uint64_t h = 1469598103934665603ULL;

        for (const char *c = uuid; *c; c++)
                h = (h ^ (uint64_t)(unsigned char)*c) * 1099511628211ULL;
        return h;
}

/* Another Policy=auto guest is co-scheduled: @self, co-scheduled, has a gang to take turns with. */
static bool cosched_partnered(const struct manager *m, const struct managed_guest *self)
{
        for (size_t i = 0; i < m->n_guests; i++) {
                const struct managed_guest *g = m->guests[i];
                if (g != self && guest_is_auto(g) && g->auto_state.mode == ADAPTIVE_COSCHED)
                        return true;
        }
        return false;
}

static bool partner_for(const struct manager *m, const struct managed_guest *self, const struct adaptive_params *p)
{
        for (size_t i = 0; i < m->n_guests; i++) {
                const struct managed_guest *g = m->guests[i];
                if (g == self || !guest_is_auto(g) || g->n_vcpus < 2 || !g->auto_state.cgroup)
                        continue;
                /* Co-scheduled already, or about to be: a window in progress
                 * that looks like a spinner's, so that two guests that become
                 * candidates in the same interval both go COSCHED.  Merely
                 * busy is not enough: beside a hackbench guest (busy, but it
                 * blocks by itself and never becomes a candidate) a spinning
                 * guest went COSCHED alone and gained nothing (scenario e of
                 * the effectiveness benchmark: 0.98x). */
                if (g->auto_state.mode == ADAPTIVE_COSCHED || adaptive_window_in_progress(&g->auto_state.ag, p))
                        return true;
        }
        return false;
}

void manager_auto_after_plan(struct manager *m)
{
        struct manager_auto *a = m->autom;
        size_t n = 0, n_tids = 0;

        if (!a || !a->cs)
                return;
        for (size_t i = 0; i < m->n_guests; i++)
                if (!m->observe && guest_is_auto(m->guests[i]) && m->guests[i]->auto_state.mode == ADAPTIVE_COSCHED) {
                        n++;
                        n_tids += m->guests[i]->n_vcpus;
                }
        _cleanup_free_ struct cosched_gang *gangs = calloc(n ?: 1, sizeof(*gangs));
        _cleanup_free_ pid_t *tids = calloc(n_tids ?: 1, sizeof(*tids));
        if (!gangs || !tids)
                return (void)log_error_errno(-ENOMEM, "out of memory");
        size_t k = 0, t = 0;
        bool left = false;
        for (size_t i = 0; i < m->n_guests; i++) {
                struct managed_guest *g = m->guests[i];
                /* Observing (Mode=observe by a reload too): no gang, and the
                 * ones set before are released by the empty set. */
                bool on = !m->observe && guest_is_auto(g) && g->auto_state.mode == ADAPTIVE_COSCHED;
                g->auto_state.left_cosched = g->auto_state.cosched && !on;
                left |= g->auto_state.left_cosched;
                g->auto_state.cosched = on;
                if (!on)
                        continue;
                gangs[k] = (struct cosched_gang){ .id = uuid_hash(g->uuid),
                                                  .tids = &tids[t], .n_tids = g->n_vcpus,
                                                  .cgroup = g->auto_state.cgroup };
                for (size_t j = 0; j < g->n_vcpus; j++)
                        tids[t++] = g->vcpus[j].tid;
                k++;
        }
        uint64_t sig = 1469598103934665603ULL ^ k;
        for (size_t j = 0; j < k; j++)
                sig = (sig ^ gangs[j].id) * 1099511628211ULL;
        for (size_t j = 0; j < t; j++)
                sig = (sig ^ (uint64_t)tids[j]) * 1099511628211ULL;
        if (sig == a->gangs_sig && k == a->n_gangs)
                return;         /* the same set: keep the rotation as it is */
        a->gangs_sig = sig;
        int r = cosched_set_gangs(a->cs, gangs, k);
        /* A guest that left has its masks back from the co-scheduler: what
         * the manager last read of them may be an on-duty pin. */
        for (size_t i = 0; left && i < m->n_guests; i++) {
                struct managed_guest *g = m->guests[i];
                if (!g->auto_state.left_cosched)
                        continue;
                g->auto_state.left_cosched = false;
                for (size_t j = 0; j < g->n_vcpus; j++)
                        if (g->vcpus[j].current)
                                (void)vcpu_masks_read(&m->apply_env, g->vcpus[j].tid, g->vcpus[j].current, NULL);
        }
        if (r < 0)
                log_struct(LOG_WARNING, r, MSGID_DAEMON_STATE, NULL, NULL,
                           "co-scheduler: cannot set %zu gangs: %s", k, strerror(-r));
        if (k == 1 && !a->said_alone) {
                for (size_t i = 0; i < m->n_guests; i++)
                        if (m->guests[i]->auto_state.cosched) {
                                struct log_domain d = guest_log(m->guests[i]);
                                /* No mode changed: no MESSAGE_ID of a mode change. */
                                log_struct(LOG_INFO, 0, NULL, &d, NULL,
                                           "%s: the only co-scheduled guest: nobody to take turns with, so "
                                           "nothing is demoted or pinned; its vCPUs run as in kernel mode, "
                                           "and its trial waits for a partner (a window at most, then spread)",
                                           m->guests[i]->name);
                        }
                a->said_alone = true;
        } else if (k != 1)
                a->said_alone = false;
        a->n_gangs = k;
}

/* ---- one interval --------------------------------------------------------------- */

static uint64_t threads_signature(const struct managed_guest *g)
{
        uint64_t h = 1469598103934665603ULL ^ (uint64_t)g->qemu_pid;

        for (size_t k = 0; k < g->n_vcpus; k++)
                h = (h ^ (uint64_t)g->vcpus[k].tid ^ ((uint64_t)g->vcpus[k].vcpu << 32)) * 1099511628211ULL;
        return h ^ g->n_vcpus;
}

static const char *event_msgid(enum adaptive_event e)
{
        switch (e) {
        case ADAPTIVE_EVENT_TRIAL_KEPT:
                return MSGID_AUTO_TRIAL_KEPT;
        case ADAPTIVE_EVENT_TRIAL_FAILED:
                return MSGID_AUTO_TRIAL_REVERTED;
        case ADAPTIVE_EVENT_RELEASE:
                return MSGID_AUTO_RELEASED;
        case ADAPTIVE_EVENT_CANDIDATE_HELD:
                return NULL;    /* no change: a debug line, not the catalog's "mode changed" */
        default:
                return MSGID_AUTO_MODE;
        }
}

static void log_decision(const struct managed_guest *g, const struct adaptive_decision *out)
{
        struct log_domain d = guest_log(g);
        char f_from[64], f_to[64], f_event[64], f_reason[96], f_stacked[64], f_vol[64], f_busy[64], f_wait[64];
        char f_harm[64], f_cpu[64], f_fair[64];

        snprintf(f_from, sizeof(f_from), "VCPUSPREAD_MODE_FROM=%s", adaptive_mode_to_string(out->from));
        snprintf(f_to, sizeof(f_to), "VCPUSPREAD_MODE=%s", adaptive_mode_to_string(out->to));
        snprintf(f_event, sizeof(f_event), "VCPUSPREAD_EVENT=%s", adaptive_event_to_string(out->event));
        snprintf(f_reason, sizeof(f_reason), "VCPUSPREAD_REASON=%s", out->reason ? out->reason : "");
        snprintf(f_busy, sizeof(f_busy), "VCPUSPREAD_BUSY=%.2f", out->now.busy);
        snprintf(f_wait, sizeof(f_wait), "VCPUSPREAD_WAIT=%.2f", out->now.wait);
        snprintf(f_stacked, sizeof(f_stacked), "VCPUSPREAD_STACKED=%.2f", out->now.stacked);
        snprintf(f_vol, sizeof(f_vol), "VCPUSPREAD_VOLUNTARY_HZ=%.0f", out->now.voluntary_hz);
        snprintf(f_harm, sizeof(f_harm), "VCPUSPREAD_HARM=%.3f", out->now.harm);
        snprintf(f_cpu, sizeof(f_cpu), "VCPUSPREAD_CPU_SHARE=%.2f", out->now.cpu_share);
        /* Last, so that an unknown fair share ends the list. */
        snprintf(f_fair, sizeof(f_fair), "VCPUSPREAD_FAIR_SHARE=%.2f", out->now.fair_share);
        const char *fields[] = { f_from, f_to, f_event, f_reason, f_busy, f_wait, f_stacked, f_vol, f_harm, f_cpu,
                                 out->now.fair_share > 0 ? f_fair : NULL, NULL };
        int level = out->event == ADAPTIVE_EVENT_CANDIDATE_HELD ? LOG_DEBUG : LOG_NOTICE;

        log_struct(level, 0, event_msgid(out->event), &d, fields, "%s: %s", g->name, out->text);
}

static double cpu_idle_of(const struct manager *m, unsigned os)
{
        int p = topology_pu_dense(m->topo, os);
        if (p < 0 || !m->host_load[p].have_prev)
                return 0;
        double idle = 1 - m->host_load[p].last_busy - m->host_load[p].last_steal;
        return idle > 0 ? idle : 0;
}

/*
 * The switch rates held describe a time that is over: the guest was not
 * ticked (idle, halting: hundreds of voluntary switches a second), or it
 * has just changed mode (co-scheduled PAUSE spinners block 190-230 times a
 * second, in kernel mode 7-30).  Read every 5th interval, such a rate stayed
 * in the next window for up to 5 s, and a rate over the gap after it: the
 * effectiveness benchmark's logs had PAUSE spinners' windows "blocks by
 * itself: voluntary 43-101/s" right after a failed trial and at the start
 * of their load, and a guest spread alone because its partner's window had
 * failed so.  So the next reading is a new baseline, the one after it a
 * rate, and until then the vCPU's rates are unknown to Policy=auto
 * (adaptive_vcpu_sample.switches_unknown), not counted.  The next
 * ctxt_every rates are read at every interval (vcpu_auto.fresh_reads): the
 * first one is of the transition, and held until the next due reading it
 * still counted five times (a PAUSE spinner's window "voluntary 36/s > 35/s"
 * after the first fix).
 */
static void switch_rates_forget(struct manager *m, struct managed_guest *g)
{
        for (size_t k = 0; k < g->n_vcpus; k++) {
                g->vcpus[k].auto_state.rate_known = false;
                g->vcpus[k].auto_state.ctxt_known = false;
                g->vcpus[k].auto_state.fresh_reads = m->autom->budget.ctxt_every;
        }
}

static void read_ctxt(struct manager *m, struct managed_guest *g, uint64_t now_ns)
{
        struct manager_auto *a = m->autom;
        bool judging = adaptive_judging(&g->auto_state.ag);

        for (size_t k = 0; k < g->n_vcpus; k++) {
                struct managed_vcpu *v = &g->vcpus[k];
                struct vcpu_auto *va = &v->auto_state;
                /* Until a rate is known, and while a trial needs fresh
                 * rates, every interval; then every Nth. */
                if (va->rate_known && !judging && va->fresh_reads == 0 && !signals_ctxt_due(&a->budget, a->interval, k))
                        continue;
                struct thread_ctxt c;
                vcpu_auto_bind(g, v);
                if (signals_read_ctxt(a->signals, &va->st, &c) < 0)
                        continue;
                if (va->ctxt_known && now_ns > va->last_ctxt_ns && c.voluntary >= va->last_ctxt.voluntary &&
                    c.involuntary >= va->last_ctxt.involuntary) {
                        double dt = (double)(now_ns - va->last_ctxt_ns) / 1e9;
                        va->voluntary_hz = (double)(c.voluntary - va->last_ctxt.voluntary) / dt;
                        va->involuntary_hz = (double)(c.involuntary - va->last_ctxt.involuntary) / dt;
                        va->rate_known = true;
                        if (va->fresh_reads)
                                va->fresh_reads--;
                }
                va->last_ctxt = c;
                va->last_ctxt_ns = now_ns;
                va->ctxt_known = true;
        }
}

/* What one managed guest wants and gets this interval, for the fair shares. */
struct guest_demand {
        hwloc_bitmap_t allowed;         /* restriction ∩ usable; owned */
        double demand, share, weight;   /* CPUs wanted (CPU + wait, <= 1 per vCPU), CPUs got, vCPUs */
};

/*
 * Each Policy=auto guest's fair share of the CPUs it may use, and what the
 * other guests competing for them got against theirs (struct
 * adaptive_input).  Every managed guest competes, whatever its policy; one
 * whose allowed set covers only part of this guest's counts for that part
 * (its figures scaled by the overlap, as if spread evenly over its set).
 * The capacity is the CPU the competing guests got on this guest's CPUs plus
 * what idled there: other tenants' CPU time is not the guests' to share.
 * One pass over the guests and one water-filling per distinct allowed
 * set: on the usual host, where all guests may use the same CPUs, O(guests
 * log guests) per interval.
 */
static void fair_shares_interval(struct manager *m, const double *idle, size_t n_idle)
{
        size_t n = m->n_guests;
        _cleanup_free_ struct guest_demand *d = calloc(n ?: 1, sizeof(*d));
        _cleanup_free_ size_t *idx = calloc(n ?: 1, sizeof(size_t));
        _cleanup_free_ double *dem = calloc(n ?: 1, sizeof(double));
        _cleanup_free_ double *wt = calloc(n ?: 1, sizeof(double));
        _cleanup_free_ double *fair = calloc(n ?: 1, sizeof(double));
        _cleanup_free_ double *got = calloc(n ?: 1, sizeof(double));
        _cleanup_free_ bool *done = calloc(n ?: 1, sizeof(bool));
        hwloc_bitmap_t both = hwloc_bitmap_alloc();

        for (size_t i = 0; i < n; i++) {
                struct guest_auto *ga = &m->guests[i]->auto_state;
                ga->fair_share = ga->others_share = ga->others_fair = 0;
        }
        if (!d || !idx || !dem || !wt || !fair || !got || !done || !both)
                goto out;
        for (size_t i = 0; i < n; i++) {
                const struct managed_guest *g = m->guests[i];
                if (g->state != GUEST_MANAGED)
                        continue;
                for (size_t k = 0; k < g->n_vcpus; k++) {
                        const struct managed_vcpu *v = &g->vcpus[k];
                        if (!v->sampled)
                                continue;
                        d[i].demand += fmin(1, v->tl.last_util + v->tl.last_wait);
                        d[i].share += v->tl.last_util;
                        d[i].weight += 1;
                }
                if (d[i].weight == 0 || !(d[i].allowed = hwloc_bitmap_alloc()))
                        continue;
                if (g->restriction)
                        hwloc_bitmap_and(d[i].allowed, g->restriction, m->usable);
                else
                        hwloc_bitmap_copy(d[i].allowed, m->usable);
        }
        /* One water-filling per distinct allowed set, shared by every auto
         * guest with that set (on the usual host, one for all guests). */
        for (size_t i = 0; i < n; i++) {
                if (done[i] || !guest_is_auto(m->guests[i]) || !d[i].allowed || hwloc_bitmap_iszero(d[i].allowed))
                        continue;
                double capacity = 0, sum_got = 0, sum_fair = 0;
                int c;
                hwloc_bitmap_foreach_begin(c, d[i].allowed) {
                        if ((size_t)c < n_idle)
                                capacity += idle[c];
                }
                hwloc_bitmap_foreach_end();
                size_t nc = 0;
                for (size_t j = 0; j < n; j++) {
                        if (!d[j].allowed)
                                continue;
                        double frac = 1;
                        if (!hwloc_bitmap_isequal(d[j].allowed, d[i].allowed)) {
                                hwloc_bitmap_and(both, d[j].allowed, d[i].allowed);
                                int w = hwloc_bitmap_weight(d[j].allowed);
                                frac = w > 0 ? (double)hwloc_bitmap_weight(both) / w : 0;
                        }
                        if (frac <= 0)
                                continue;
                        idx[nc] = j;
                        dem[nc] = d[j].demand * frac;
                        wt[nc] = d[j].weight * frac;
                        got[nc] = d[j].share * frac;
                        capacity += got[nc];
                        nc++;
                }
                if (adaptive_fair_shares(dem, wt, nc, capacity, fair) < 0)
                        continue;
                for (size_t k = 0; k < nc; k++) {
                        sum_got += got[k];
                        sum_fair += fair[k];
                }
                /* frac is 1 exactly for the guests whose set equals this one. */
                for (size_t k = 0; k < nc; k++) {
                        size_t j = idx[k];
                        if (!guest_is_auto(m->guests[j]) || !hwloc_bitmap_isequal(d[j].allowed, d[i].allowed))
                                continue;
                        struct guest_auto *ga = &m->guests[j]->auto_state;
                        ga->fair_share = fair[k];
                        ga->others_share = sum_got - got[k];
                        ga->others_fair = sum_fair - fair[k];
                        done[j] = true;
                }
        }
out:
        for (size_t i = 0; d && i < n; i++)
                hwloc_bitmap_free(d[i].allowed);
        hwloc_bitmap_free(both);
}

static void guest_interval(struct manager *m, struct managed_guest *g, uint64_t now_ns, double dt_s,
                           const double *cpu_idle, size_t n_cpus)
{
        struct manager_auto *a = m->autom;
        struct guest_auto *ga = &g->auto_state;
        uint64_t sig = threads_signature(g);

        if (!ga->active || sig != ga->threads_sig) {
                /* Started managing it, or its threads changed: a baseline of
                 * other threads is no baseline. */
                bool was = ga->active;
                enum adaptive_mode old = ga->mode;
                adaptive_guest_init(&ga->ag);
                ga->mode = ADAPTIVE_KERNEL;
                ga->active = true;
                ga->threads_sig = sig;
                ga->tally = (struct signals_tally){};
                ga->host_running_sum = 0;
                ga->host_running_ticks = 0;
                ga->last_step_ns = 0;
                ga->window_text[0] = '\0';
                free(ga->cgroup);
                ga->cgroup = guest_cpu_cgroup(g->vcpus[0].tid);
                if (was && old != ADAPTIVE_KERNEL) {
                        snprintf(ga->reason, sizeof(ga->reason), "threads-changed");
                        ga->since = time(NULL);
                        manager_schedule_plan(m);
                }
        }
        if (!ga->allowed && !(ga->allowed = hwloc_bitmap_alloc()))
                return;
        if (g->restriction)
                hwloc_bitmap_and(ga->allowed, g->restriction, m->usable);
        else
                hwloc_bitmap_copy(ga->allowed, m->usable);
        if (hwloc_bitmap_iszero(ga->allowed))
                return;

        if (ga->ticked)
                read_ctxt(m, g, now_ns);

        _cleanup_free_ struct adaptive_vcpu_sample *vs = calloc(g->n_vcpus, sizeof(*vs));
        _cleanup_free_ double *busy = calloc(g->n_vcpus, sizeof(double));
        _cleanup_free_ double *wait = calloc(g->n_vcpus, sizeof(double));
        if (!vs || !busy || !wait)
                return;
        size_t n = 0;
        for (size_t k = 0; k < g->n_vcpus; k++) {
                const struct managed_vcpu *v = &g->vcpus[k];
                if (!v->sampled)
                        continue;
                vs[n] = (struct adaptive_vcpu_sample){
                        .util = v->tl.last_util,
                        .wait = v->tl.last_wait,
                        .voluntary_hz = v->auto_state.voluntary_hz,
                        .involuntary_hz = v->auto_state.involuntary_hz,
                        /* Not read this interval (no ticks), or no rate since the ticks resumed. */
                        .switches_unknown = !ga->ticked || !v->auto_state.rate_known,
                        /* The co-scheduler's pins are its own, not a confinement. */
                        .cpus = ga->cosched ? NULL : v->current,
                };
                manager_kvm_sample(m, v, &vs[n]);
                busy[n] = v->tl.last_util + v->tl.last_wait;
                wait[n] = v->tl.last_wait;
                n++;
        }
        bool want_ticks = signals_guest_wants_ticks(busy, wait, n, a->params.busy_min, a->params.wait_min,
                                                    ga->mode != ADAPTIVE_KERNEL);
        if (n == 0)
                goto done;

        struct adaptive_guest_sample s = {
                .now_ns = now_ns,
                .dt_s = ga->last_step_ns ? dt_s : 0,
                .vcpus = vs,
                .n_vcpus = n,
                .samples = ga->tally.samples,
                .runnable_samples = ga->tally.runnable,
                .stacked_samples = ga->tally.stacked,
                .host_runnable = ga->host_running_ticks ? ga->host_running_sum / ga->host_running_ticks : 0,
                .allowed = ga->allowed,
                .cpu_idle = cpu_idle,
                .n_cpus = n_cpus,
        };
        struct adaptive_params p = a->params;
        p.cosched_available = a->cs && ga->cgroup && n >= 2 &&
                              (ga->mode == ADAPTIVE_COSCHED || partner_for(m, g, &a->params));
        struct adaptive_input in;
        struct adaptive_decision out;
        int r = adaptive_input_build(&s, &p, &in);
        if (r < 0) {
                log_debug_errno(r, "%s: no Policy=auto input this interval: %m", g->name);
                goto done;
        }
        in.cosched_alone = ga->mode == ADAPTIVE_COSCHED && !cosched_partnered(m, g);
        in.fair_share = ga->fair_share;
        in.others_share = ga->others_share;
        in.others_fair = ga->others_fair;
        /* Without a tick this interval, no sample says whether it stacked. */
        r = adaptive_step(&ga->ag, &p, &in, &out);
        if (r < 0) {
                log_debug_errno(r, "%s: Policy=auto step refused its figures: %m", g->name);
                goto done;
        }
        ga->last = in;
        ga->have_last = true;
        ga->last_step_ns = now_ns;
        ga->intervals++;
        if (out.window_closed) {
                /* Why nothing happens, for whoever asks (debug log, status). */
                log_debug("%s: Policy=auto %s", g->name, out.text);
                snprintf(ga->window_text, sizeof(ga->window_text), "%s", out.text);
        }
        if (out.event != ADAPTIVE_EVENT_NONE) {
                log_decision(g, &out);
                if (out.event != ADAPTIVE_EVENT_CANDIDATE_HELD) {
                        ga->last_event = out.event;
                        snprintf(ga->reason, sizeof(ga->reason), "%s", out.reason ? out.reason : "");
                        snprintf(ga->text, sizeof(ga->text), "%s", out.text);
                }
        }
        if (out.changed) {
                ga->mode = out.to;
                ga->since = time(NULL);
                switch_rates_forget(m, g);
                manager_schedule_plan(m);
                if (out.to != ADAPTIVE_KERNEL)
                        want_ticks = true;
        }
done:
        ga->tally = (struct signals_tally){};
        ga->host_running_sum = 0;
        ga->host_running_ticks = 0;
        if (ga->last_step_ns == 0)
                ga->last_step_ns = now_ns;
        if (want_ticks && !ga->ticked)
                switch_rates_forget(m, g);
        ga->ticked = want_ticks;
}

void manager_auto_interval(struct manager *m)
{
        struct manager_auto *a = m->autom;

        if (!a)
                return;
        uint64_t now_ns = monotonic_ns();
        double dt_s = (double)m->config.sample_interval_usec / 1e6;
        unsigned max_os = 0;
        for (size_t p = 0; p < m->topo->n_pus; p++)
                if (m->topo->pus[p].os_index > max_os)
                        max_os = m->topo->pus[p].os_index;
        _cleanup_free_ double *idle = calloc(max_os + 1, sizeof(double));
        if (!idle)
                return;
        for (size_t p = 0; p < m->topo->n_pus; p++)
                idle[m->topo->pus[p].os_index] = cpu_idle_of(m, m->topo->pus[p].os_index);

        a->interval++;
        manager_kvm_interval(m);
        fair_shares_interval(m, idle, max_os + 1);
        for (size_t i = 0; i < m->n_guests; i++) {
                struct managed_guest *g = m->guests[i];
                if (!guest_is_auto(g)) {
                        if (g->auto_state.active && g->auto_state.mode != ADAPTIVE_KERNEL)
                                manager_schedule_plan(m);  /* the gangs lose it */
                        g->auto_state.active = false;
                        g->auto_state.ticked = false;
                        g->auto_state.mode = ADAPTIVE_KERNEL;
                        continue;
                }
                /* The actual interval per guest, so a late first step is not counted long. */
                uint64_t last = g->auto_state.last_step_ns;
                double gdt = last && now_ns > last ? (double)(now_ns - last) / 1e9 : dt_s;
                guest_interval(m, g, now_ns, gdt, idle, max_os + 1);
        }
        arm_ticks(m);
        /* Guests that went away since the last plan leave the gangs. */
        manager_auto_after_plan(m);
}

/* ---- the engine's input ------------------------------------------------------------ */

void manager_auto_guest_input(const struct managed_guest *g, struct guest_input *gi, struct vcpu_input *v)
{
        const struct guest_auto *ga = &g->auto_state;

        gi->auto_mode = ga->active ? ga->mode : ADAPTIVE_KERNEL;
        /* The co-scheduler pins the on-duty gang for its turn and gives the
         * masks back after it: the engine sees the full set it gave. */
        if (ga->cosched && ga->allowed && gi->policy == POLICY_AUTO)
                for (size_t k = 0; k < g->n_vcpus; k++)
                        v[k].current = ga->allowed;
}

/* ---- start and stop --------------------------------------------------------------- */

int manager_auto_start(struct manager *m)
{
        _cleanup_free_ struct manager_auto *a = calloc(1, sizeof(*a));
        int r;

        if (!a)
                return log_error_errno(-ENOMEM, "out of memory");
        a->budget = (struct signals_budget)SIGNALS_BUDGET_DEFAULT;
        adaptive_params_default(&a->params);
        adaptive_params_set_window(&a->params, (double)m->config.auto_window_usec / 1e6);
        a->params.observe = m->observe;
        r = signals_new(NULL, &a->signals);
        if (r < 0)
                return log_error_errno(r, "cannot set up Policy=auto's signals: %m");
        r = sd_event_add_time(m->event, &a->tick_timer, CLOCK_MONOTONIC, 0, 1000, on_tick, m);
        if (r < 0) {
                signals_free(a->signals);
                return log_error_errno(r, "cannot add Policy=auto's tick timer: %m");
        }
        sd_event_source_set_enabled(a->tick_timer, SD_EVENT_OFF);

        /* Observing too, though it then gets no gang (manager_auto_after_plan):
         * an observing daemon decides what an applying one would, co-scheduling
         * included.  Without it, observing said spread where applying
         * co-schedules (the benchmark's spin-pause guests), and a later
         * Mode=enforce could only spread.  Creating it changes nothing. */
        struct cosched_params cp = { .turn_us = COSCHED_TURN_US, .lever = COSCHED_LEVER_CGROUP_IDLE, .pin = true };
        r = cosched_new(&cp, &a->cs);
        if (r >= 0)
                r = sd_event_add_io(m->event, &a->cs_source, cosched_fd(a->cs), EPOLLIN, on_cosched, m);
        if (r < 0) {
                log_struct(LOG_WARNING, r, MSGID_DAEMON_STATE, NULL, NULL,
                           "no co-scheduler (%s): Policy=auto guests go to spread mode instead", strerror(-r));
                cosched_free(a->cs);
                a->cs = NULL;
        }
        m->autom = TAKE_PTR(a);
        log_struct(LOG_INFO, 0, MSGID_DAEMON_STATE, NULL, NULL,
                   "Policy=auto: window %.0fs, settle %.0fs, trial %.0fs, hold-off and dwell %.0f min, co-scheduler %s",
                   m->autom->params.window_s, m->autom->params.settle_s, m->autom->params.trial_s,
                   (double)m->autom->params.min_dwell_ns / 60e9,
                   m->autom->cs ? "cgroup cpu.idle, pinned, 20 ms turns" : "none");
        return 0;
}

void manager_auto_reload(struct manager *m)
{
        struct manager_auto *a = m->autom;

        if (!a)
                return;
        adaptive_params_set_window(&a->params, (double)m->config.auto_window_usec / 1e6);
        if (a->params.observe == m->observe)
                return;
        /* Mode= changed: what was decided while observing was never tried,
         * and what was tried no longer applies.  Every guest starts over
         * (watching, in KERNEL mode) on its next interval. */
        a->params.observe = m->observe;
        for (size_t i = 0; i < m->n_guests; i++) {
                struct guest_auto *ga = &m->guests[i]->auto_state;
                ga->active = false;
                if (ga->mode != ADAPTIVE_KERNEL) {
                        ga->mode = ADAPTIVE_KERNEL;
                        snprintf(ga->reason, sizeof(ga->reason), "mode-changed");
                        ga->since = time(NULL);
                }
        }
}

void manager_auto_free(struct manager *m)
{
        struct manager_auto *a = m->autom;

        if (!a)
                return;
        sd_event_source_unref(a->tick_timer);
        sd_event_source_unref(a->cs_source);
        cosched_free(a->cs);    /* every co-scheduled thread and cgroup back as found */
        signals_free(a->signals);
        free(a->scratch);
        free(a->threads);
        free(a);
        m->autom = NULL;
}
