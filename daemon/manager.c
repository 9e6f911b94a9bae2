/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "manager.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "build-config.h"
#include "config-load.h"
#include "cpulist.h"
#include "log.h"
#include "macro.h"
#include "message-ids.h"

/* How long to wait for a started guest's vCPU threads to show up, and how often. */
#define THREAD_RETRY_USEC (100 * 1000ULL)
#define THREAD_RETRY_MAX 20
/* libvirt rewrites a status file a few times in a burst on hotplug. */
#define STATUSFILE_DEBOUNCE_USEC (20 * 1000ULL)
#define RESYNC_RETRY_USEC (2 * 1000 * 1000ULL)
/* A move the kernel refused is retried this much later, not every pass. */
#define APPLY_RETRY_USEC (30 * 1000 * 1000ULL)

static const char *const guest_state_names[] = {
        [GUEST_MANAGED] = "managed",
        [GUEST_OPERATOR] = "operator-pinned",
        [GUEST_IGNORED] = "ignored",
        [GUEST_NO_THREADS] = "no-threads",
        [GUEST_NO_CPUS] = "no-usable-cpus",
};

const char *guest_state_to_string(enum guest_state s)
{
        return (size_t)s < ELEMENTSOF(guest_state_names) ? guest_state_names[s] : "unknown";
}

static struct log_domain guest_log(const struct managed_guest *g)
{
        return (struct log_domain){ .name = g->name, .uuid = g->uuid };
}

static const char *manager_uri(const struct manager *m)
{
        return m->settings.connect_uri ?: m->config.connect ?: DEFAULT_CONNECT;
}

/* Host CPUs a configuration may name: online and allowed, before ReservedCPUs=. */
static int host_cpus(const struct manager *m, hwloc_bitmap_t out)
{
        return topology_usable(m->topo, NULL, out);
}

/*
 * Validate @c against this host and derive the plan parameters and usable
 * CPUs from it.  On success takes @c over (the old configuration is freed);
 * on failure leaves both untouched and writes the reason into @err.
 */
static int manager_take_config(struct manager *m, struct config *c, char *err, size_t errlen)
{
        _cleanup_bitmap_ hwloc_bitmap_t host = hwloc_bitmap_alloc();
        _cleanup_bitmap_ hwloc_bitmap_t usable = hwloc_bitmap_alloc();
        struct config_warnings warnings = {};
        struct config_error cerr = {};
        int r;

        if (!host || !usable)
                return -ENOMEM;
        host_cpus(m, host);
        r = config_check_cpus(c, host, &warnings, &cerr);
        for (size_t i = 0; i < warnings.n; i++)
                log_struct(LOG_WARNING, 0, MSGID_CONFIG, NULL, NULL, "%s", warnings.lines[i]);
        config_warnings_done(&warnings);
        if (r < 0) {
                snprintf(err, errlen, "%s", cerr.text);
                return r;
        }
        r = topology_usable(m->topo, c->reserved_cpus, usable);
        if (r < 0) {
                _cleanup_free_ char *res = cpulist_format(c->reserved_cpus);
                snprintf(err, errlen, "ReservedCPUs=%s leaves no CPU for guests", res ? res : "?");
                return r;
        }

        hwloc_bitmap_copy(m->usable, usable);
        plan_params_default(&m->plan_params);
        m->plan_params.lane_max = c->lane_width;
        m->plan_params.move_penalty = c->hysteresis;
        m->plan_params.max_moves = c->moves_per_interval;
        if (!m->settings.verbose)
                log_set_max_level(c->log_level);
        config_done(&m->config);
        m->config = *c;
        memset(c, 0, sizeof(*c));
        return 0;
}

/* ---- guests table ------------------------------------------------------ */

static void vcpus_free(struct managed_vcpu *v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (v[i].current)
                        hwloc_bitmap_free(v[i].current);
        free(v);
}

static void guest_free(struct managed_guest *g)
{
        if (!g)
                return;
        free(g->name);
        free(g->state_reason);
        if (g->restriction)
                hwloc_bitmap_free(g->restriction);
        if (g->xml_restriction)
                hwloc_bitmap_free(g->xml_restriction);
        free(g->xml_pinned);
        free(g->runtime_pinned);
        vcpus_free(g->vcpus, g->n_vcpus);
        free(g);
}

static struct managed_guest *guest_find(struct manager *m, const char *uuid, size_t *index)
{
        for (size_t i = 0; i < m->n_guests; i++)
                if (strcasecmp(m->guests[i]->uuid, uuid) == 0) {
                        if (index)
                                *index = i;
                        return m->guests[i];
                }
        return NULL;
}

static void guest_remove(struct manager *m, size_t index, const char *why)
{
        struct managed_guest *g = m->guests[index];
        struct log_domain d = guest_log(g);

        log_struct(LOG_INFO, 0, MSGID_DOMAIN_GONE, &d, NULL, "%s: %s, forgetting it", g->name, why);
        guest_free(g);
        memmove(&m->guests[index], &m->guests[index + 1], (m->n_guests - index - 1) * sizeof(*m->guests));
        m->n_guests--;
}

static void guest_set_state(struct managed_guest *g, enum guest_state s, const char *reason)
{
        g->state = s;
        free(g->state_reason);
        g->state_reason = reason ? strdup(reason) : NULL;
}

/*
 * Decide the guest's policy, restriction and whether the operator owns it,
 * from its live XML and the configuration.  Logs a change of ownership.
 */
static void guest_apply_config(struct manager *m, struct managed_guest *g, bool created)
{
        const struct config_domain *match = config_match_domain(&m->config, g->name, g->uuid);
        enum guest_state old = g->state;
        struct log_domain d = guest_log(g);
        const char *why;

        g->policy = config_domain_policy(&m->config, match);
        g->override = match && match->override;

        if (g->restriction)
                hwloc_bitmap_free(g->restriction);
        g->restriction = NULL;
        if (g->xml_restriction || (match && match->cpus)) {
                g->restriction = hwloc_bitmap_alloc_full();
                if (g->restriction && g->xml_restriction)
                        hwloc_bitmap_and(g->restriction, g->restriction, g->xml_restriction);
                if (g->restriction && match && match->cpus)
                        hwloc_bitmap_and(g->restriction, g->restriction, match->cpus);
        }

        why = g->xml_pinned ?: g->runtime_pinned;
        if (why && !g->override)
                guest_set_state(g, GUEST_OPERATOR, why);
        else if (g->policy == POLICY_IGNORE)
                guest_set_state(g, GUEST_IGNORED, "policy ignore");
        else if (created || old == GUEST_OPERATOR || old == GUEST_IGNORED)
                guest_set_state(g, GUEST_MANAGED, NULL);

        if (!created && old == g->state)
                return;
        if (g->state == GUEST_OPERATOR) {
                log_struct(LOG_NOTICE, 0, MSGID_BACKED_OFF, &d, NULL,
                           "%s: pinned by the operator (%s); leaving it alone", g->name, g->state_reason);
        } else if (g->state == GUEST_IGNORED) {
                log_struct(LOG_INFO, 0, MSGID_BACKED_OFF, &d, NULL,
                           "%s: policy ignore; leaving it alone (its load still counts)", g->name);
        } else if (created || old == GUEST_OPERATOR || old == GUEST_IGNORED) {
                _cleanup_free_ char *r = g->restriction ? cpulist_format(g->restriction) : NULL;
                log_struct(LOG_INFO, 0, MSGID_DOMAIN_FOUND, &d, NULL, "%s: managing it (policy %s%s%s%s)", g->name,
                           placement_policy_to_string(g->policy), r ? ", CPUs " : "", r ? r : "",
                           g->override && why ? ", overriding the operator's pins" : "");
        }
}

/*
 * Take over what libvirt says about a running domain.  Creates the guest on
 * first sight.  Returns the guest, or NULL on allocation failure.
 */
static struct managed_guest *guest_update(struct manager *m, const struct lv_domain *dom)
{
        struct managed_guest *g = guest_find(m, dom->uuid, NULL);
        bool created = false;


        if (g && g->id != dom->id) {
                /* Same UUID, new run: nothing we knew about its threads holds. */
                vcpus_free(g->vcpus, g->n_vcpus);
                g->vcpus = NULL;
                g->n_vcpus = 0;
                g->is_new = true;
        }
        if (!g) {
                struct managed_guest **n = realloc(m->guests, (m->n_guests + 1) * sizeof(*n));
                if (!n)
                        return NULL;
                m->guests = n;
                g = calloc(1, sizeof(*g));
                if (!g)
                        return NULL;
                memcpy(g->uuid, dom->uuid, sizeof(g->uuid));
                g->is_new = true;
                m->guests[m->n_guests++] = g;
                created = true;
        }

        char *name = strdup(dom->name ? dom->name : "");
        if (!name)
                return NULL;
        free(g->name);
        g->name = name;
        g->id = dom->id;
        g->seen = true;

        free(g->xml_pinned);
        g->xml_pinned = dom->operator_pinned ? strdup(dom->operator_reason ?: "pinning in its live XML") : NULL;
        if (g->xml_restriction)
                hwloc_bitmap_free(g->xml_restriction);
        g->xml_restriction = dom->restriction ? hwloc_bitmap_dup(dom->restriction) : NULL;

        guest_apply_config(m, g, created);
        return g;
}

/*
 * Load of a vCPU not sampled yet.  A guest that just started runs on vCPU 0
 * alone (firmware, then the kernel until it brings up the others): counting
 * every vCPU as busy made the engine put the boot vCPUs of guests started
 * together on the same CPU (ties go to the lowest CPU), and their boots took
 * half as long again (measured: 12-16 s against 9 s with two guests).
 * Anything else unknown counts as half busy until the first sample.
 */
static double initial_load(const struct managed_guest *g, unsigned vcpu)
{
        return g->is_new && vcpu == 0 ? 1.0 : 0.5;
}

/* Re-read which thread runs which vCPU, and each thread's current mask. */
static int guest_refresh_threads(struct manager *m, struct managed_guest *g)
{
        struct vcpu_threads t = {};
        struct log_domain d = guest_log(g);
        int r;

        r = vcpu_threads_find(&m->threads_src, g->uuid, &t);
        if (r < 0 || t.n == 0) {
                vcpu_threads_done(&t);
                return r < 0 ? r : -ENOENT;
        }
        /*
         * A guest that just started has no vCPUs in libvirt's status file
         * until libvirt has finished setting it up, and that setup resets the
         * vCPUs' affinity (seen here: a guest placed from thread names alone
         * was back on every CPU a moment later).  So wait for the status
         * file a while; fall back to thread names only after that.
         */
        if (t.origin == VCPU_THREADS_THREAD_NAMES && g->is_new && g->thread_retries < THREAD_RETRY_MAX) {
                vcpu_threads_done(&t);
                return -EAGAIN;
        }
        if (t.origin == VCPU_THREADS_THREAD_NAMES && !g->name_fallback_logged)
                log_struct(LOG_NOTICE, 0, MSGID_THREADS_BY_NAME, &d, NULL,
                           "%s: libvirt's status file could not be read; found its vCPU threads by name",
                           g->name);
        g->name_fallback_logged = t.origin == VCPU_THREADS_THREAD_NAMES;

        struct managed_vcpu *vcpus = calloc(t.n, sizeof(*vcpus));
        if (!vcpus) {
                vcpu_threads_done(&t);
                return -ENOMEM;
        }
        for (size_t i = 0; i < t.n; i++) {
                struct managed_vcpu *nv = &vcpus[i];
                struct managed_vcpu *old = NULL;

                for (size_t j = 0; j < g->n_vcpus; j++)
                        if (g->vcpus[j].vcpu == t.threads[i].vcpu && g->vcpus[j].tid == t.threads[i].tid)
                                old = &g->vcpus[j];
                if (old) {
                        *nv = *old;
                        old->current = NULL;    /* moved into nv */
                } else {
                        nv->vcpu = t.threads[i].vcpu;
                        nv->tid = t.threads[i].tid;
                        nv->load = initial_load(g, nv->vcpu);
                        nv->is_new = !g->is_new;
                }
                if (!nv->current)
                        nv->current = hwloc_bitmap_alloc();
                if (!nv->current) {
                        r = -ENOMEM;
                        break;
                }
                r = vcpu_masks_read(&m->apply_env, nv->tid, nv->current, NULL);
                if (r < 0) {
                        /* Vanished between listing and reading: the next event resyncs. */
                        log_debug_errno(r, "%s vcpu%u (tid %d): cannot read its affinity: %m", g->name,
                                        nv->vcpu, (int)nv->tid);
                        hwloc_bitmap_copy(nv->current, m->topo->complete);
                }
                r = 0;
        }
        if (r < 0) {
                vcpus_free(vcpus, t.n);
                vcpu_threads_done(&t);
                return r;
        }
        vcpus_free(g->vcpus, g->n_vcpus);
        g->vcpus = vcpus;
        g->n_vcpus = t.n;
        g->qemu_pid = t.qemu_pid;
        vcpu_threads_done(&t);
        return 0;
}

/* ---- planning and applying -------------------------------------------- */

static void manager_schedule_plan(struct manager *m);

void plan_inputs_done(struct plan_inputs *in)
{
        free(in->guests);
        free(in->owner);
        free(in->vcpus);
}

static int plan_inputs_build(struct manager *m, struct plan_inputs *in)
{
        size_t total = 0;

        for (size_t i = 0; i < m->n_guests; i++)
                total += m->guests[i]->n_vcpus;
        in->guests = calloc(m->n_guests ?: 1, sizeof(*in->guests));
        in->owner = calloc(m->n_guests ?: 1, sizeof(*in->owner));
        in->vcpus = calloc(total ?: 1, sizeof(*in->vcpus));
        if (!in->guests || !in->owner || !in->vcpus)
                return -ENOMEM;

        size_t used = 0;
        for (size_t i = 0; i < m->n_guests; i++) {
                struct managed_guest *g = m->guests[i];
                if (g->n_vcpus == 0 || g->state == GUEST_NO_THREADS)
                        continue;
                struct vcpu_input *v = &in->vcpus[used];
                for (size_t k = 0; k < g->n_vcpus; k++)
                        v[k] = (struct vcpu_input){ .vcpu = g->vcpus[k].vcpu, .load = g->vcpus[k].load,
                                                    .current = g->vcpus[k].current };
                used += g->n_vcpus;
                /* Guests we may not move still occupy CPUs: their load counts. */
                bool movable = g->state == GUEST_MANAGED || g->state == GUEST_NO_CPUS;
                in->guests[in->n] = (struct guest_input){
                        .id = (unsigned)i,
                        .name = g->name,
                        .policy = movable ? g->policy : POLICY_IGNORE,
                        .restriction = g->restriction,
                        .n_vcpus = g->n_vcpus,
                        .vcpus = v,
                };
                in->owner[in->n++] = g;
        }
        return 0;
}

const char *move_reason(const struct managed_guest *g, const struct managed_vcpu *v,
                               enum place_reason r)
{
        if (r == PLACE_UNPLACED)
                return g->is_new ? "new-guest" : v->is_new ? "hotplug" : "unplaced";
        return place_reason_to_string(r);
}

static void update_status(struct manager *m)
{
        size_t managed = 0, vcpus = 0;

        for (size_t i = 0; i < m->n_guests; i++)
                if (m->guests[i]->state == GUEST_MANAGED) {
                        managed++;
                        vcpus += m->guests[i]->n_vcpus;
                }
        sd_notifyf(false, "STATUS=%zu guest%s (%zu managed, %zu vCPUs), %llu move%s%s%s", m->n_guests,
                   m->n_guests == 1 ? "" : "s", managed, vcpus, (unsigned long long)m->n_moves,
                   m->n_moves == 1 ? "" : "s", m->last_change[0] ? "; last: " : "", m->last_change);
}

/* Apply one move; returns 0, -ESRCH (thread or guest gone) or another error, logged. */
static int apply_move(struct manager *m, struct managed_guest *g, struct managed_vcpu *v,
                      hwloc_const_bitmap_t to, const char *reason)
{
        struct log_domain d = guest_log(g);
        _cleanup_free_ char *from_s = cpulist_format(v->current);
        _cleanup_free_ char *to_s = cpulist_format(to);
        char err[256] = "";
        unsigned vcpu_check;
        int r;

        if (!from_s || !to_s)
                return log_error_errno(-ENOMEM, "out of memory");
        struct vcpu_move_log mv = {
                .domain = d, .vcpu = v->vcpu, .tid = (int)v->tid, .from = from_s, .to = to_s,
                .reason = reason, .dry_run = m->settings.dry_run, .load = v->load, .wait_ms = v->wait_ms,
        };

        /* A thread id can be reused once a guest stops: check right before writing. */
        if (!vcpu_thread_verify(&m->threads_src, g->qemu_pid, v->tid, &vcpu_check) || vcpu_check != v->vcpu) {
                log_debug("%s vcpu%u (tid %d): no longer a vCPU thread of pid %d; dropping it", g->name,
                          v->vcpu, (int)v->tid, (int)g->qemu_pid);
                return -ESRCH;
        }

        if (m->settings.dry_run) {
                /* Nothing changes in a dry run, so every pass would say it again. */
                if (strcmp(v->dry_run_target, to_s) == 0)
                        return 0;
                snprintf(v->dry_run_target, sizeof(v->dry_run_target), "%s", to_s);
        } else {
                r = vcpu_apply(&m->apply_env, v->tid, to, err, sizeof(err));
                if (r == -ESRCH) {
                        log_debug("%s vcpu%u (tid %d): thread vanished while applying", g->name, v->vcpu,
                                  (int)v->tid);
                        return r;
                }
                if (r < 0) {
                        uint64_t now;
                        sd_event_now(m->event, CLOCK_MONOTONIC, &now);
                        v->retry_after_usec = now + APPLY_RETRY_USEC;
                        mv.error = r;
                        mv.error_text = err;
                        mv.retry_sec = (unsigned)(APPLY_RETRY_USEC / 1000000);
                        return log_vcpu_move(&mv);
                }
        }

        log_vcpu_move(&mv);

        if (!m->settings.dry_run) {
                hwloc_bitmap_copy(v->current, to);
                m->n_moves++;
        }
        snprintf(v->last_reason, sizeof(v->last_reason), "%s", reason);
        v->last_change = time(NULL);
        snprintf(m->last_change, sizeof(m->last_change), "%s vcpu%u %s -> %s (%s)", g->name, v->vcpu, from_s,
                 to_s, reason);
        return 0;
}

/*
 * A rebalancing move of a vCPU moved less than MinDwellSec ago waits, so the
 * system converges instead of chasing noise, unless the vCPU starves (its
 * run-queue wait is over StarvationWaitSec per second).  Moves that fix a
 * conflict or place a new vCPU never wait.
 */
static bool move_too_soon(const struct manager *m, const struct plan_move *mv, const struct managed_guest *g,
                          uint64_t now)
{
        const struct managed_vcpu *v = &g->vcpus[mv->vcpu];

        if (mv->reason != PLACE_REBALANCE || !v->last_move_usec)
                return false;
        if (now - v->last_move_usec >= m->config.min_dwell_usec)
                return false;
        return !(m->config.starvation_wait_usec &&
                 v->wait_ms * 1000.0 >= (double)m->config.starvation_wait_usec);
}

/*
 * The engine orders moves so that siblings never share a CPU on the way,
 * but skipped moves (dwell, failures) and swap cycles break that chain:
 * never move a vCPU onto CPUs a placed sibling still holds.  A sibling that
 * is not placed yet (a new guest's vCPUs all start on every CPU) overlaps
 * anyway until its own later move in this pass.
 */
static bool sibling_in_the_way(const struct plan *plan, const struct plan_move *mv, const bool *skip,
                               const struct managed_guest *g, size_t k)
{
        for (size_t s = 0; s < g->n_vcpus; s++) {
                if (s == mv->vcpu || !hwloc_bitmap_intersects(g->vcpus[s].current, mv->to))
                        continue;
                bool placed_later = false;
                for (size_t j = k + 1; j < plan->n_moves; j++)
                        if (plan->moves[j].guest == mv->guest && plan->moves[j].vcpu == s && !skip[j] &&
                            plan->moves[j].reason != PLACE_REBALANCE)
                                placed_later = true;
                if (!placed_later)
                        return true;
        }
        return false;
}

/* For every guest whose start event we saw: how long until all its vCPUs were placed. */
static void log_placement_latency(struct manager *m, const struct plan_inputs *in, const unsigned *failed,
                                  uint64_t now)
{
        for (size_t i = 0; i < in->n; i++) {
                struct managed_guest *g = in->owner[i];
                if (!g->start_event_usec || failed[i] || g->state != GUEST_MANAGED)
                        continue;
                uint64_t us = now - g->start_event_usec;
                char f_lat[64];
                snprintf(f_lat, sizeof(f_lat), "VCPUSPREAD_LATENCY_US=%llu", (unsigned long long)us);
                const char *fields[] = { f_lat, NULL };
                struct log_domain d = guest_log(g);
                log_struct(LOG_INFO, 0, MSGID_PLACED_LATENCY, &d, fields,
                           "%s: all %zu vCPUs placed %.1f ms after its start event", g->name, g->n_vcpus,
                           (double)us / 1000.0);
                g->start_event_usec = 0;
        }
}

/* Compute what the engine would do now; the caller owns @in and @plan. */
int manager_compute_plan(struct manager *m, struct plan_inputs *in, struct plan *plan)
{
        int r = plan_inputs_build(m, in);
        if (r < 0)
                return log_error_errno(r, "cannot build the placement input: %m");
        r = placement_plan(m->topo, m->usable, in->guests, in->n, &m->plan_params, plan);
        if (r < 0)
                return log_error_errno(r, "placement failed: %m");
        return 0;
}

/* One planning pass over every guest.  Returns 0 or a negative errno (logged). */
static int manager_plan_and_apply(struct manager *m)
{
        _cleanup_(plan_inputs_done) struct plan_inputs in = {};
        struct plan plan;
        int r;

        r = manager_compute_plan(m, &in, &plan);
        if (r < 0)
                return r;

        /* Guests with failed or dropped moves, to say so once per guest. */
        _cleanup_free_ unsigned *failed = calloc(in.n ?: 1, sizeof(unsigned));
        _cleanup_free_ unsigned *attempted = calloc(in.n ?: 1, sizeof(unsigned));
        bool resync = false;
        if (!failed || !attempted) {
                plan_done(&plan);
                return log_error_errno(-ENOMEM, "out of memory");
        }

        for (size_t i = 0; i < in.n; i++) {
                struct managed_guest *g = in.owner[i];
                if (plan.guests[i].error == -ENOSPC && g->state != GUEST_NO_CPUS) {
                        struct log_domain d = guest_log(g);
                        guest_set_state(g, GUEST_NO_CPUS, "its CPU restriction leaves no usable CPU");
                        log_struct(LOG_WARNING, 0, MSGID_NO_USABLE_CPUS, &d, NULL,
                                   "%s: its allowed CPUs leave no usable CPU (reserved or offline); leaving it alone",
                                   g->name);
                } else if (plan.guests[i].error == 0 && g->state == GUEST_NO_CPUS) {
                        guest_set_state(g, GUEST_MANAGED, NULL);
                }
        }

        uint64_t now;
        sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        _cleanup_free_ bool *skip = calloc(plan.n_moves ?: 1, sizeof(bool));
        if (!skip) {
                plan_done(&plan);
                return log_error_errno(-ENOMEM, "out of memory");
        }
        for (size_t k = 0; k < plan.n_moves; k++)
                skip[k] = move_too_soon(m, &plan.moves[k], in.owner[plan.moves[k].guest], now);

        for (size_t k = 0; k < plan.n_moves; k++) {
                const struct plan_move *mv = &plan.moves[k];
                struct managed_guest *g = in.owner[mv->guest];
                struct managed_vcpu *v = &g->vcpus[mv->vcpu];

                if (in.guests[mv->guest].policy == POLICY_IGNORE || skip[k])
                        continue;  /* the engine never moves ignored guests; belt and braces */
                if (now < v->retry_after_usec)
                        continue;  /* refused recently: said so then, try again later */
                attempted[mv->guest]++;
                if (!m->settings.dry_run && !plan.guests[mv->guest].overcommitted &&
                    sibling_in_the_way(&plan, mv, skip, g, k)) {
                        log_debug("%s vcpu%u: a sibling still holds part of the target; retrying next pass",
                                  g->name, v->vcpu);
                        failed[mv->guest]++;
                        continue;
                }
                r = apply_move(m, g, v, mv->to, move_reason(g, v, mv->reason));
                if (r < 0) {
                        failed[mv->guest]++;
                        if (r == -ESRCH)
                                resync = true;
                } else {
                        v->last_move_usec = now;
                }
        }
        log_placement_latency(m, &in, failed, now);

        for (size_t i = 0; i < in.n; i++) {
                struct managed_guest *g = in.owner[i];
                if (failed[i]) {
                        struct log_domain d = guest_log(g);
                        log_struct(LOG_WARNING, 0, MSGID_APPLY_FAILED, &d, NULL,
                                   "%s: %u of %u moves not applied; its vCPUs may still share CPUs until the next pass",
                                   g->name, failed[i], attempted[i]);
                }
                g->is_new = false;
                for (size_t k = 0; k < g->n_vcpus; k++)
                        g->vcpus[k].is_new = false;
        }
        plan_done(&plan);
        update_status(m);
        if (resync)
                m->resync_failed = true;
        return 0;
}

/* ---- discovery ---------------------------------------------------------- */

static void manager_arm_thread_retry(struct manager *m);

static void guest_discover_threads(struct manager *m, struct managed_guest *g)
{
        int r = guest_refresh_threads(m, g);
        struct log_domain d = guest_log(g);

        if (r >= 0) {
                if (g->state == GUEST_NO_THREADS)
                        guest_set_state(g, GUEST_MANAGED, NULL);
                g->thread_retries = 0;
                return;
        }
        if (r == -ENOMEM) {
                log_error_errno(r, "out of memory");
                return;
        }
        /* Right after the start event QEMU may not have all vCPU threads yet. */
        if (g->thread_retries++ < THREAD_RETRY_MAX) {
                if (g->state == GUEST_MANAGED)
                        g->state = GUEST_NO_THREADS;
                manager_arm_thread_retry(m);
                return;
        }
        if (g->thread_retries == THREAD_RETRY_MAX + 1)
                log_struct(LOG_WARNING, r, MSGID_THREADS_NOT_FOUND, &d, NULL,
                           "%s: cannot find its vCPU threads (%m); leaving it alone until the next resync",
                           g->name);
        guest_set_state(g, GUEST_NO_THREADS, "vCPU threads not found");
}

static int on_thread_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct manager *m = userdata;
        bool again = false;

        for (size_t i = 0; i < m->n_guests; i++) {
                struct managed_guest *g = m->guests[i];
                if (g->state == GUEST_NO_THREADS && g->thread_retries <= THREAD_RETRY_MAX) {
                        guest_discover_threads(m, g);
                        again = true;
                }
        }
        if (again)
                manager_schedule_plan(m);
        return 0;
}

static void manager_arm_thread_retry(struct manager *m)
{
        uint64_t now;
        sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        if (m->retry_timer) {
                int enabled = SD_EVENT_OFF;
                sd_event_source_get_enabled(m->retry_timer, &enabled);
                if (enabled != SD_EVENT_OFF)
                        return;
                sd_event_source_set_time(m->retry_timer, now + THREAD_RETRY_USEC);
                sd_event_source_set_enabled(m->retry_timer, SD_EVENT_ONESHOT);
                return;
        }
        sd_event_add_time(m->event, &m->retry_timer, CLOCK_MONOTONIC, now + THREAD_RETRY_USEC, 0,
                          on_thread_retry, m);
}

/* Full resync: every running domain from libvirt, then plan. */
static int manager_resync(struct manager *m)
{
        struct lv_domain *doms = NULL;
        size_t n = 0;
        int r;

        r = lv_list_domains(m->lv, &doms, &n);
        if (r < 0) {
                m->resync_failed = true;
                return r == -ENOTCONN ? r : log_warning_errno(r, "cannot list libvirt domains: %m");
        }
        m->resync_failed = false;

        for (size_t i = 0; i < m->n_guests; i++)
                m->guests[i]->seen = false;
        for (size_t i = 0; i < n; i++) {
                struct managed_guest *g = guest_update(m, &doms[i]);
                if (!g) {
                        r = log_error_errno(-ENOMEM, "out of memory");
                        continue;
                }
                guest_discover_threads(m, g);
        }
        for (size_t i = m->n_guests; i-- > 0;)
                if (!m->guests[i]->seen)
                        guest_remove(m, i, "no longer running");
        for (size_t i = 0; i < n; i++)
                lv_domain_done(&doms[i]);
        free(doms);
        return manager_plan_and_apply(m);
}

static void manager_ready(struct manager *m, const char *why)
{
        if (m->ready)
                return;
        m->ready = true;
        update_status(m);
        sd_notify(false, "READY=1");
        log_struct(LOG_INFO, 0, MSGID_DAEMON_STATE, NULL, NULL, "vcpuspreadd %s ready: %s", PACKAGE_VERSION,
                   why);
}

static int on_replan(sd_event_source *s, void *userdata)
{
        struct manager *m = userdata;
        manager_plan_and_apply(m);
        return 0;
}

static void manager_schedule_plan(struct manager *m)
{
        if (!m->replan_source) {
                if (sd_event_add_defer(m->event, &m->replan_source, on_replan, m) < 0) {
                        manager_plan_and_apply(m);
                        return;
                }
        }
        sd_event_source_set_enabled(m->replan_source, SD_EVENT_ONESHOT);
}

/* ---- libvirt callbacks -------------------------------------------------- */

static void on_lv_connected(void *userdata)
{
        struct manager *m = userdata;
        if (m->settings.once)
                return;  /* manager_run_once does the one pass itself */
        /* The adapter already logged the connection. */
        manager_resync(m);
        manager_ready(m, "first placement applied");
}

static void on_lv_disconnected(void *userdata)
{
        struct manager *m = userdata;
        /* Pins stay as they are; nothing to undo.  Resync on reconnect. */
        manager_ready(m, "waiting for libvirt");
        update_status(m);
}

static void on_lv_domain_event(void *userdata, const char *uuid, enum lv_domain_event ev, const char *detail)
{
        struct manager *m = userdata;
        size_t index;
        struct managed_guest *g = guest_find(m, uuid, &index);

        if (ev == LV_DOMAIN_STOPPED) {
                if (g)
                        guest_remove(m, index, detail ? detail : "stopped");
                return;
        }

        struct lv_domain dom = {};
        int r = lv_get_domain(m->lv, uuid, &dom);
        if (r == -ENOENT)
                return;  /* gone again already */
        if (r < 0) {
                log_warning_errno(r, "cannot look up domain %s after its %s event: %m", uuid,
                                  detail ? detail : "start");
                m->resync_failed = true;
                return;
        }
        g = guest_update(m, &dom);
        lv_domain_done(&dom);
        if (!g) {
                log_error_errno(-ENOMEM, "out of memory");
                return;
        }
        if (g->is_new && !g->start_event_usec)
                sd_event_now(m->event, CLOCK_MONOTONIC, &g->start_event_usec);
        guest_discover_threads(m, g);
        manager_schedule_plan(m);
}

static void on_lv_vcpu_pinned(void *userdata, const char *uuid, unsigned vcpu, const char *cpulist)
{
        struct manager *m = userdata;
        struct managed_guest *g = guest_find(m, uuid, NULL);
        char reason[96];

        if (!g || g->runtime_pinned)
                return;
        snprintf(reason, sizeof(reason), "the operator pinned vcpu%u to %s", vcpu, cpulist ? cpulist : "?");
        g->runtime_pinned = strdup(reason);
        /* The pin lands in the live XML, so after a restart the whole guest
         * is the operator's anyway; backing off from all of it now keeps the
         * daemon's behaviour the same either way. */
        guest_apply_config(m, g, false);
}

static const struct lv_callbacks lv_callbacks = {
        .connected = on_lv_connected,
        .disconnected = on_lv_disconnected,
        .domain_event = on_lv_domain_event,
        .vcpu_pinned = on_lv_vcpu_pinned,
};

/* ---- status files: vCPU hotplug ---------------------------------------- */

static int on_statusfile_settled(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct manager *m = userdata;
        bool changed = false;

        for (size_t i = 0; i < m->n_guests; i++) {
                struct managed_guest *g = m->guests[i];
                size_t before = g->n_vcpus;
                if (g->state != GUEST_MANAGED && g->state != GUEST_NO_THREADS)
                        continue;
                guest_discover_threads(m, g);
                if (g->n_vcpus != before) {
                        struct log_domain d = guest_log(g);
                        log_struct(LOG_INFO, 0, MSGID_VCPU_COUNT, &d, NULL, "%s: now has %zu vCPU%s (was %zu)",
                                   g->name, g->n_vcpus, g->n_vcpus == 1 ? "" : "s", before);
                        changed = true;
                }
        }
        if (changed)
                manager_schedule_plan(m);
        return 0;
}

static int on_statusfile_changed(sd_event_source *s, const struct inotify_event *ev, void *userdata)
{
        struct manager *m = userdata;
        uint64_t now;

        if (!ev->len || !vcpu_threads_is_status_file(ev->name))
                return 0;
        sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        if (!m->statusfile_debounce)
                return sd_event_add_time(m->event, &m->statusfile_debounce, CLOCK_MONOTONIC,
                                         now + STATUSFILE_DEBOUNCE_USEC, 0, on_statusfile_settled, m) < 0 ? 0 : 0;
        sd_event_source_set_time(m->statusfile_debounce, now + STATUSFILE_DEBOUNCE_USEC);
        sd_event_source_set_enabled(m->statusfile_debounce, SD_EVENT_ONESHOT);
        return 0;
}

/* ---- sampling ----------------------------------------------------------- */

/*
 * A vCPU's demand is the CPU time it got plus the time it waited for a CPU:
 * a starved vCPU uses little but wants much, and it is exactly the one the
 * engine must see as loaded.
 */
static void vcpu_sample(struct manager *m, struct managed_guest *g, struct managed_vcpu *v, double window_s)
{
        struct thread_counters c;
        int r = sampler_read_thread(m->sampler, v->tid, &c);

        if (r < 0) {
                if (r != -ESRCH && r != -EOPNOTSUPP)
                        log_debug_errno(r, "%s vcpu%u (tid %d): cannot sample: %m", g->name, v->vcpu, (int)v->tid);
                return;  /* a vanished thread is found out by the next resync */
        }
        if (thread_load_update(&v->tl, &c, window_s) != THREAD_LOAD_UPDATED)
                return;
        double demand = v->tl.util.value + v->tl.wait.value;
        v->load = demand > 1.0 ? 1.0 : demand < 0.0 ? 0.0 : demand;
        v->wait_ms = v->tl.last_wait_ms;
}

/* Busy and steal time per host CPU, for status: the operator sees a CPU
 * that another hypervisor layer takes away. */
static void host_sample(struct manager *m, double window_s)
{
        size_t n = m->topo->n_pus;
        struct timespec ts;

        if (sampler_read_host(m->sampler, m->host_counters, &n) < 0)
                return;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t when = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
        for (size_t i = 0; i < n; i++) {
                int p = topology_pu_dense(m->topo, m->host_counters[i].cpu);
                if (p >= 0)
                        host_cpu_load_update(&m->host_load[p], &m->host_counters[i], when, window_s);
        }
}

static int on_sample_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct manager *m = userdata;
        double window_s = (double)m->config.load_window_usec / 1e6;

        sd_event_source_set_time(s, usec + m->config.sample_interval_usec);
        host_sample(m, window_s);
        for (size_t i = 0; i < m->n_guests; i++) {
                struct managed_guest *g = m->guests[i];
                for (size_t k = 0; k < g->n_vcpus; k++)
                        vcpu_sample(m, g, &g->vcpus[k], window_s);
        }
        /* Re-plan with the new loads: the engine only moves what clears the
         * hysteresis, and at most MovesPerInterval= vCPUs. */
        if (lv_conn_is_alive(m->lv))
                manager_plan_and_apply(m);
        return 0;
}

static int manager_start_sampling(struct manager *m)
{
        struct sampler_config sc = {
                .use_taskstats = true,
                .enable_delayacct = m->config.task_delay_accounting,
        };
        uint64_t now;
        int r;

        r = sampler_new(&sc, &m->sampler);
        if (r < 0)
                return log_error_errno(r, "cannot set up load sampling: %m");
        m->host_load = calloc(m->topo->n_pus, sizeof(*m->host_load));
        m->host_counters = calloc(m->topo->n_pus, sizeof(*m->host_counters));
        if (!m->host_load || !m->host_counters)
                return log_error_errno(-ENOMEM, "out of memory");
        log_struct(sampler_source(m->sampler) == SAMPLER_NONE ? LOG_WARNING : LOG_INFO, 0, MSGID_DAEMON_STATE,
                   NULL, NULL, "load sampling: %s", sampler_description(m->sampler));
        if (sampler_source(m->sampler) == SAMPLER_NONE)
                return 0;  /* placement still works, with every vCPU counted as busy */
        sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        r = sd_event_add_time(m->event, &m->sample_timer, CLOCK_MONOTONIC, now + m->config.sample_interval_usec,
                              0, on_sample_timer, m);
        if (r < 0)
                return log_error_errno(r, "cannot arm the sampling timer: %m");
        return sd_event_source_set_enabled(m->sample_timer, SD_EVENT_ON);
}

/* ---- timers and signals ------------------------------------------------ */

static int on_resync_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct manager *m = userdata;
        uint64_t next = m->settings.resync_usec;

        if (lv_conn_is_alive(m->lv))
                manager_resync(m);
        if (m->resync_failed)
                next = RESYNC_RETRY_USEC;
        sd_event_source_set_time(s, usec + next);
        return 0;
}

static int on_terminate(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        struct manager *m = userdata;
        sd_notify(false, "STOPPING=1");
        log_struct(LOG_INFO, 0, MSGID_DAEMON_STATE, NULL, NULL,
                   "received %s, stopping; current pins stay in place", strsignal((int)si->ssi_signo));
        sd_event_exit(m->event, 0);
        return 0;
}

static int on_reload_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        struct manager *m = userdata;
        char err[512] = "";
        manager_reload(m, err, sizeof(err));
        return 0;
}

int manager_reload(struct manager *m, char *err, size_t errlen)
{
        struct config c;
        struct config_error cerr = {};
        _cleanup_free_ char *old_socket = m->config.control_socket ? strdup(m->config.control_socket) : NULL;
        _cleanup_free_ char *old_connect = m->config.connect ? strdup(m->config.connect) : NULL;
        int r;

        sd_notify(false, "RELOADING=1");
        r = config_load(m->settings.config_path, NULL, &c, &cerr);
        if (r >= 0) {
                r = manager_take_config(m, &c, err, errlen);
                if (r < 0)
                        config_done(&c);
        } else {
                snprintf(err, errlen, "%s", cerr.text);
        }
        if (r < 0) {
                log_struct(LOG_ERR, r, MSGID_CONFIG, NULL, NULL,
                           "configuration not reloaded, the previous one stays in force: %s", err);
                sd_notify(false, "READY=1");
                return r;
        }

        if (old_connect && m->config.connect && strcmp(old_connect, m->config.connect) != 0 && !m->settings.connect_uri)
                log_struct(LOG_NOTICE, 0, MSGID_CONFIG, NULL, NULL,
                           "Connect= changed to %s; it takes effect when the daemon restarts", m->config.connect);
        if (old_socket && m->config.control_socket && strcmp(old_socket, m->config.control_socket) != 0)
                log_struct(LOG_NOTICE, 0, MSGID_CONFIG, NULL, NULL,
                           "ControlSocket= changed to %s; it takes effect when the daemon restarts",
                           m->config.control_socket);

        for (size_t i = 0; i < m->n_guests; i++)
                guest_apply_config(m, m->guests[i], false);
        log_struct(LOG_INFO, 0, MSGID_CONFIG, NULL, NULL, "configuration reloaded (%zu file%s); re-planning",
                   m->config.n_files, m->config.n_files == 1 ? "" : "s");
        manager_schedule_plan(m);
        sd_notify(false, "READY=1");
        return 0;
}

/* ---- lifecycle ---------------------------------------------------------- */

int manager_new(const struct manager_settings *settings, struct config *config, struct manager **out)
{
        _cleanup_(manager_freep) struct manager *m = calloc(1, sizeof(*m));
        char err[2200];
        int r;

        if (!m)
                return log_error_errno(-ENOMEM, "out of memory");
        m->settings = *settings;
        config_init(&m->config);
        m->usable = hwloc_bitmap_alloc();
        if (!m->usable)
                return log_error_errno(-ENOMEM, "out of memory");
        m->apply_env.dry_run = settings->dry_run;

        r = topology_load_spec("host", &m->topo, err, sizeof(err));
        if (r < 0)
                return log_error_errno(r, "%s", err);
        r = manager_take_config(m, config, err, sizeof(err));
        if (r < 0)
                return log_struct(LOG_ERR, r, MSGID_CONFIG, NULL, NULL, "invalid configuration: %s", err);

        r = sd_event_default(&m->event);
        if (r < 0)
                return log_error_errno(r, "cannot create the event loop: %m");

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        if ((r = sd_event_add_signal(m->event, NULL, SIGTERM, on_terminate, m)) < 0 ||
            (r = sd_event_add_signal(m->event, NULL, SIGINT, on_terminate, m)) < 0 ||
            (r = sd_event_add_signal(m->event, NULL, SIGHUP, on_reload_signal, m)) < 0)
                return log_error_errno(r, "cannot watch signals: %m");
        /* Pings the service manager at half of WATCHDOG_USEC when it asks. */
        r = sd_event_set_watchdog(m->event, true);
        if (r < 0)
                log_warning_errno(r, "cannot set up the watchdog: %m");

        r = lv_event_bridge_register(m->event);
        if (r < 0)
                return log_error_errno(r, "cannot attach libvirt to the event loop: %m");

        if (!settings->once && m->config.control_socket && *m->config.control_socket) {
                r = control_server_new(m->event, m->config.control_socket, m->config.control_socket_group,
                                       manager_control, m, &m->control);
                if (r < 0)
                        return r;  /* logged */
        }

        const char *status_dir = vcpu_threads_status_dir(&m->threads_src);
        r = sd_event_add_inotify(m->event, &m->inotify_source, status_dir,
                                 IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE, on_statusfile_changed, m);
        if (r < 0)
                /* Without it hotplug is noticed only at the periodic resync. */
                log_warning_errno(r, "cannot watch %s for vCPU hotplug (%m); relying on the periodic resync",
                                  status_dir);

        *out = TAKE_PTR(m);
        return 0;
}

void manager_free(struct manager *m)
{
        if (!m)
                return;
        if (m->lv)
                lv_conn_free(m->lv);
        for (size_t i = 0; i < m->n_guests; i++)
                guest_free(m->guests[i]);
        free(m->guests);
        control_server_free(m->control);
        sd_event_source_unref(m->replan_source);
        sd_event_source_unref(m->sample_timer);
        sampler_free(m->sampler);
        free(m->host_load);
        free(m->host_counters);
        sd_event_source_unref(m->resync_timer);
        sd_event_source_unref(m->retry_timer);
        sd_event_source_unref(m->inotify_source);
        sd_event_source_unref(m->statusfile_debounce);
        sd_event_unref(m->event);
        topology_free(m->topo);
        if (m->usable)
                hwloc_bitmap_free(m->usable);
        config_done(&m->config);
        free(m);
}

static int manager_run_once(struct manager *m)
{
        int r;

        if (!lv_conn_is_alive(m->lv))
                return log_error_errno(-ENOTCONN, "cannot connect to libvirt at %s; is libvirtd running?",
                                       manager_uri(m)),
                       1;
        r = manager_resync(m);
        /* Give threads of guests that are just starting a moment to appear;
         * the retry timer re-plans when they do. */
        for (unsigned i = 0; r >= 0 && i < THREAD_RETRY_MAX; i++) {
                bool waiting = false;
                for (size_t k = 0; k < m->n_guests; k++)
                        waiting |= m->guests[k]->state == GUEST_NO_THREADS &&
                                   m->guests[k]->thread_retries <= THREAD_RETRY_MAX;
                if (!waiting)
                        break;
                sd_event_run(m->event, THREAD_RETRY_USEC * 2);
        }
        return r < 0 ? 1 : 0;
}

int manager_run(struct manager *m)
{
        int r;

        /* with --once, the connected callback does the pass synchronously */
        r = lv_conn_new(m->event, manager_uri(m), &lv_callbacks, m, &m->lv);
        if (r < 0)
                return log_error_errno(r, "cannot set up the libvirt connection: %m"), 1;
        if (m->settings.once)
                return manager_run_once(m);

        uint64_t now;
        sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        r = sd_event_add_time(m->event, &m->resync_timer, CLOCK_MONOTONIC, now + m->settings.resync_usec, 0,
                              on_resync_timer, m);
        if (r < 0)
                return log_error_errno(r, "cannot arm the resync timer: %m"), 1;
        sd_event_source_set_enabled(m->resync_timer, SD_EVENT_ON);
        r = manager_start_sampling(m);
        if (r < 0)
                return 1;

        if (!lv_conn_is_alive(m->lv))
                /* Not fatal: a host boots libvirtd after us sometimes. */
                manager_ready(m, "waiting for libvirt");

        r = sd_event_loop(m->event);
        if (r < 0)
                return log_error_errno(r, "event loop failed: %m"), 1;
        return 0;
}
