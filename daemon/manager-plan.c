/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One planning pass: gather the engine's inputs from the guest table, call
 * the engine, apply its moves in its order, log each.  Every rule about
 * which vCPU moves where, and when, is the engine's (lib/placement.c); this
 * file decides nothing but what to do when the host refuses a move.
 */
#include "manager-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "cpulist.h"
#include "macro.h"
#include "util.h"
#include "message-ids.h"

/* A move the kernel refused is retried this much later, not every pass. */
#define APPLY_RETRY_USEC (30 * 1000 * 1000ULL)

void plan_inputs_done(struct plan_inputs *in)
{
        free(in->guests);
        free(in->owner);
        free(in->vcpus);
}

struct vcpu_input manager_vcpu_input(const struct managed_vcpu *v, bool from_observed)
{
        return (struct vcpu_input){
                .vcpu = v->vcpu,
                .load = v->util,
                .current = from_observed && v->observed ? v->observed : v->current,
                .wait = v->wait,
                .wait_ms = v->wait_ms,
                .unsampled = !v->sampled,
                .boot = v->boot,
                .last_move_usec = v->last_move_usec,
                .retry_after_usec = v->retry_after_usec,
        };
}

static int plan_inputs_build(struct manager *m, bool from_observed, struct plan_inputs *in)
{
        size_t total = 0;

        in->params = m->plan_params;
        sd_event_now(m->event, CLOCK_MONOTONIC, &in->params.now_usec);

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
                        v[k] = manager_vcpu_input(&g->vcpus[k], from_observed);
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
                manager_auto_guest_input(g, &in->guests[in->n], v);
                in->owner[in->n++] = g;
        }
        return 0;
}

const char *move_reason(const struct managed_guest *g, const struct managed_vcpu *v,
                               enum place_reason r)
{
        /* A vCPU that appeared since the last pass is a hot-plugged one,
         * whatever mask QEMU's new thread happened to inherit. */
        if (r != PLACE_NONE && !g->is_new && v->is_new)
                return "hotplug";
        if (r == PLACE_UNPLACED)
                return g->is_new ? "new-guest" : "unplaced";
        return place_reason_to_string(r);
}

void manager_update_status(struct manager *m)
{
        size_t managed = 0, vcpus = 0;

        for (size_t i = 0; i < m->n_guests; i++)
                if (m->guests[i]->state == GUEST_MANAGED) {
                        managed++;
                        vcpus += m->guests[i]->n_vcpus;
                }
        const char *lv = m->lv ? lv_conn_state_text(m->lv) : "connecting";
        char lv_note[96] = "";
        if (strcmp(lv, "connected") != 0)
                snprintf(lv_note, sizeof(lv_note), "libvirt %s%s; ", lv,
                         strcmp(lv, "unresponsive") == 0 ? ", keeping the current placement" : "");
        sd_notifyf(false, "STATUS=%s%zu guest%s (%zu managed, %zu vCPUs), %llu move%s%s%s", lv_note, m->n_guests,
                   m->n_guests == 1 ? "" : "s", managed, vcpus, (unsigned long long)m->n_moves,
                   m->n_moves == 1 ? "" : "s", m->last_change[0] ? "; last: " : "", m->last_change);
}

/* Apply one move; returns 0, -ESRCH (thread or guest gone) or another error, logged. */
static int apply_move(struct manager *m, struct managed_guest *g, const struct plan_move *mv, double load,
                      uint64_t now)
{
        struct managed_vcpu *v = &g->vcpus[mv->vcpu];
        hwloc_const_bitmap_t to = mv->to;
        const char *reason = move_reason(g, v, mv->reason);
        struct log_domain d = guest_log(g);
        _cleanup_free_ char *from_s = cpulist_format(v->observed ?: v->current);
        _cleanup_free_ char *to_s = cpulist_format(to);
        char err[256] = "";
        unsigned vcpu_check;
        int r;

        if (!from_s || !to_s)
                return log_error_errno(-ENOMEM, "out of memory");
        struct vcpu_move_log mv_log = {
                .domain = d, .vcpu = v->vcpu, .tid = (int)v->tid, .from = from_s, .to = to_s,
                .reason = reason, .dry_run = m->observe, .load = load, .wait_ms = v->wait_ms,
                .note = mv->staging ? "on the way: a sibling still holds its target" : NULL,
        };

        /* A thread id can be reused once a guest stops: check right before writing. */
        if (!vcpu_thread_verify(&m->threads_src, g->qemu_pid, v->tid, &vcpu_check) || vcpu_check != v->vcpu) {
                log_debug("%s vcpu%u (tid %d): no longer a vCPU thread of pid %d; dropping it", g->name,
                          v->vcpu, (int)v->tid, (int)g->qemu_pid);
                return -ESRCH;
        }

        if (m->observe) {
                /* Nothing changes, but the next plan starts from what this
                 * move would have made, as it would once applied.  Planned
                 * from the unchanged affinity, every pass said the moves
                 * again, or their mirror image (two guests' vCPUs swapped
                 * between two CPUs): 22 moves in 40 s for the 4 an applying
                 * daemon makes once, and as many counted in the metrics. */
                if (!v->observed && !(v->observed = hwloc_bitmap_alloc()))
                        return log_error_errno(-ENOMEM, "out of memory");
                hwloc_bitmap_copy(v->observed, to);
        } else {
                /* Bound to the thread discovery found: pid, tid and start time,
                 * checked again before each of the two writes. */
                struct vcpu_task task = { .pid = g->qemu_pid, .tid = v->tid, .start_time = v->start_time };
                r = vcpu_apply_task(&m->apply_env, &task, to, err, sizeof(err));
                if (r == -ESRCH) {
                        log_debug("%s vcpu%u (tid %d): thread vanished while applying", g->name, v->vcpu,
                                  (int)v->tid);
                        manager_metrics_move(m, g, v, reason, NULL, r);
                        return r;
                }
                if (r < 0) {
                        v->retry_after_usec = now + APPLY_RETRY_USEC;
                        mv_log.error = r;
                        mv_log.error_text = err;
                        mv_log.retry_sec = (unsigned)(APPLY_RETRY_USEC / 1000000);
                        manager_metrics_move(m, g, v, reason, NULL, r);
                        return log_vcpu_move(&mv_log);
                }
        }

        log_vcpu_move(&mv_log);

        if (!m->observe) {
                hwloc_bitmap_copy(v->current, to);
                m->n_moves++;
        }
        v->last_move_usec = now;
        snprintf(v->last_reason, sizeof(v->last_reason), "%s", reason);
        v->last_change = time(NULL);
        snprintf(m->last_change, sizeof(m->last_change), "%s vcpu%u %s -> %s (%s)", g->name, v->vcpu, from_s,
                 to_s, reason);
        manager_metrics_move(m, g, v, reason, m->last_change, 0);
        return 0;
}

/* For every guest whose start event we saw: how long until all its vCPUs were placed. */
static void log_placement_latency(struct manager *m, const struct plan_inputs *in, const unsigned *failed,
                                  uint64_t now)
{
        for (size_t i = 0; i < in->n; i++) {
                struct managed_guest *g = in->owner[i];
                if (!g->start_event_usec || failed[i] || g->state != GUEST_MANAGED)
                        continue;
                /* Until now, the moves applied: not the iteration's start. */
                uint64_t end = monotonic_usec();
                uint64_t us = end > g->start_event_usec ? end - g->start_event_usec : 0;
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
int manager_compute_plan(struct manager *m, bool from_observed, struct plan_inputs *in, struct plan *plan)
{
        int r = plan_inputs_build(m, from_observed, in);
        if (r < 0)
                return log_error_errno(r, "cannot build the placement input: %m");
        r = placement_plan(m->topo, m->usable, in->guests, in->n, &in->params, plan);
        if (r < 0)
                return log_error_errno(r, "placement failed: %m");
        return 0;
}

/* Guest states that follow from the plan: a restriction that leaves no usable CPU. */
static void note_guest_errors(const struct plan_inputs *in, const struct plan *plan)
{
        for (size_t i = 0; i < in->n; i++) {
                struct managed_guest *g = in->owner[i];
                if (plan->guests[i].error == -ENOSPC && g->state != GUEST_NO_CPUS) {
                        struct log_domain d = guest_log(g);
                        guest_set_state(g, GUEST_NO_CPUS, "its CPU restriction leaves no usable CPU");
                        log_struct(LOG_WARNING, 0, MSGID_NO_USABLE_CPUS, &d, NULL,
                                   "%s: its allowed CPUs leave no usable CPU (reserved or offline); leaving it alone",
                                   g->name);
                } else if (plan->guests[i].error == 0 && g->state == GUEST_NO_CPUS) {
                        guest_set_state(g, GUEST_MANAGED, NULL);
                }
        }
}

/* What the engine deferred (a swap with no free CPU on the way), said at debug level. */
static void log_deferred(const struct plan_inputs *in, const struct plan *plan)
{
        for (size_t i = 0; plan->n_deferred && i < in->n; i++)
                for (size_t k = 0; k < plan->guests[i].n_vcpus; k++)
                        if (plan->guests[i].vcpus[k].deferred)
                                log_debug("%s vcpu%u: its move waits for the next pass (no free CPU to swap through)",
                                          in->owner[i]->name, in->owner[i]->vcpus[k].vcpu);
}

/* Apply the plan's moves in its order.  @failed, @attempted: per guest. */
static bool apply_plan(struct manager *m, const struct plan_inputs *in, const struct plan *plan, unsigned *failed,
                       unsigned *attempted)
{
        bool resync = false;

        for (size_t k = 0; k < plan->n_moves; k++) {
                const struct plan_move *mv = &plan->moves[k];
                struct managed_guest *g = in->owner[mv->guest];

                attempted[mv->guest]++;
                /* The guest's later moves were ordered after this one: after a
                 * refusal they could stack siblings, so they wait for the next
                 * pass, which plans around the refused vCPU. */
                if (failed[mv->guest]) {
                        failed[mv->guest]++;
                        continue;
                }
                int r = apply_move(m, g, mv, plan->guests[mv->guest].vcpus[mv->vcpu].load, in->params.now_usec);
                if (r < 0) {
                        failed[mv->guest]++;
                        resync |= r == -ESRCH;
                }
        }
        return resync;
}

/* One planning pass over every guest.  Returns 0 or a negative errno (logged). */
int manager_plan_and_apply(struct manager *m)
{
        _cleanup_(plan_inputs_done) struct plan_inputs in = {};
        struct plan plan;
        int r;

        uint64_t t0 = monotonic_usec();
        r = manager_compute_plan(m, true, &in, &plan);
        if (r < 0)
                return r;
        manager_metrics_plan_time(m, monotonic_usec() - t0);

        /* Guests with failed or dropped moves, to say so once per guest. */
        _cleanup_free_ unsigned *failed = calloc(in.n ?: 1, sizeof(unsigned));
        _cleanup_free_ unsigned *attempted = calloc(in.n ?: 1, sizeof(unsigned));
        if (!failed || !attempted) {
                plan_done(&plan);
                return log_error_errno(-ENOMEM, "out of memory");
        }

        note_guest_errors(&in, &plan);
        log_deferred(&in, &plan);
        bool resync = apply_plan(m, &in, &plan, failed, attempted);
        log_placement_latency(m, &in, failed, in.params.now_usec);

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
        manager_auto_after_plan(m);
        m->n_passes++;
        manager_update_status(m);
        if (resync)
                m->resync_failed = true;
        return 0;
}

static int on_replan(sd_event_source *s, void *userdata)
{
        struct manager *m = userdata;
        manager_plan_and_apply(m);
        return 0;
}

void manager_schedule_plan(struct manager *m)
{
        if (!m->replan_source) {
                if (sd_event_add_defer(m->event, &m->replan_source, on_replan, m) < 0) {
                        manager_plan_and_apply(m);
                        return;
                }
        }
        sd_event_source_set_enabled(m->replan_source, SD_EVENT_ONESHOT);
}
