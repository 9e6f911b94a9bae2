/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * KVM's own per-vCPU counters (daemon/kvm-stats.h) for the guests of type
 * kvm: halt exits, halted time, preemptions reported to the guest, directed
 * yields.  TCG guests have none.
 *
 *  - fetch: one virConnectGetAllDomainStats(VIR_DOMAIN_STATS_VCPU) for all
 *    guests (lv_vcpu_stats_async(), on the libvirt worker), every
 *    ctxt_every-th sampling interval: the cadence at which Policy=auto reads
 *    the switch counters (daemon/signals.h), since the two signals say the
 *    same thing (does the vCPU block?) and one call per interval would be
 *    five times the load on libvirtd for no better decision.  Only while a
 *    managed guest is a kvm domain: a host of TCG guests makes no call.  At
 *    most one in flight; a libvirtd that hangs only stops the figures (they
 *    go stale, and Policy=auto falls back to the /proc signals).
 *  - keep: per vCPU, struct kvm_vcpu_track in struct managed_vcpu: the last
 *    reading, the rates of the last window, the sums for the metrics.  It
 *    moves with the vCPU's thread (guest_refresh_threads() copies it) and
 *    goes with it.
 *  - show and use: manager_kvm_vcpu_json() for status,
 *    manager_kvm_history() for the metrics, manager_kvm_sample() for
 *    adaptive_vcpu_sample.
 */
#include "manager-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "message-ids.h"
#include "util.h"

struct manager_kvm {
        uint64_t interval;              /* sampling intervals seen */
        bool pending;                   /* a fetch is on the worker */
        bool failing;                   /* a failure was said: quiet until a fetch works */
        uint64_t fetches, failures;     /* answered, and failed, since the start: for status */
};

/* Rates older than this many fetch periods are not used: two fetches missed
 * (libvirtd slow or gone) is no longer "the last window". */
#define STALE_PERIODS 3

static unsigned fetch_every(void)
{
        struct signals_budget b = SIGNALS_BUDGET_DEFAULT;
        return b.ctxt_every ? b.ctxt_every : 1;
}

static bool guest_wants_kvm(const struct managed_guest *g)
{
        return g->kvm && g->state == GUEST_MANAGED && g->n_vcpus > 0;
}

static bool rates_fresh(const struct manager *m, const struct kvm_vcpu_track *t, uint64_t now)
{
        uint64_t max_age = (uint64_t)STALE_PERIODS * fetch_every() * m->config.sample_interval_usec * 1000ULL;
        return t->rates_known && now >= t->rates_ns && now - t->rates_ns <= max_age;
}

static void guest_take(struct managed_guest *g, const struct lv_vcpu_stats *rec, uint64_t when_ns)
{
        static const struct kvm_vcpu_stats none = {};

        for (size_t k = 0; k < g->n_vcpus; k++) {
                struct managed_vcpu *v = &g->vcpus[k];
                const struct kvm_vcpu_stats *cur = v->vcpu < rec->n_vcpus ? &rec->vcpus[v->vcpu] : &none;
                int r = kvm_vcpu_track_update(&v->kvm, cur, when_ns);
                if (r == KVM_TRACK_RESET)
                        log_debug("%s vcpu%u: KVM's counters went backwards (vCPU recreated); new baseline",
                                  g->name, v->vcpu);
        }
}

static void on_stats(void *userdata, int r, struct lv_vcpu_stats *doms, size_t n, uint64_t when_usec)
{
        struct manager *m = userdata;
        struct manager_kvm *k = m->kvm;

        k->pending = false;
        if (r < 0) {
                k->failures++;
                /* A lost connection is said by the adapter; anything else
                 * once, until a fetch works again.  Survivable either way:
                 * the figures go stale and nothing else depends on them. */
                if (r == -ENOTCONN || k->failing)
                        log_debug("Cannot read KVM's vCPU counters: %s; trying again later", lv_conn_last_error(m->lv));
                else
                        log_struct(LOG_WARNING, r, MSGID_DAEMON_STATE, NULL, NULL,
                                   "Cannot read KVM's vCPU counters: %s; Policy=auto goes on without them, trying again later",
                                   lv_conn_last_error(m->lv));
                k->failing = true;
                return;
        }
        k->fetches++;
        if (k->failing)
                log_debug("KVM's vCPU counters read again");
        k->failing = false;
        for (size_t i = 0; i < n; i++) {
                struct managed_guest *g = guest_find(m, doms[i].uuid, NULL);
                if (g && guest_wants_kvm(g))
                        guest_take(g, &doms[i], when_usec * 1000ULL);
        }
        lv_vcpu_stats_free(doms, n);
}

void manager_kvm_interval(struct manager *m)
{
        bool any = false;
        int r;

        if (!m->kvm && !(m->kvm = calloc(1, sizeof(*m->kvm))))
                return (void)log_debug_errno(-ENOMEM, "No KVM counters this interval: %m");
        struct manager_kvm *k = m->kvm;
        if (k->interval++ % fetch_every() != 0)
                return;
        for (size_t i = 0; i < m->n_guests && !any; i++)
                any = guest_wants_kvm(m->guests[i]);
        if (!any || !lv_conn_is_alive(m->lv))
                return;
        if (k->pending) {
                log_debug("KVM's vCPU counters: the previous fetch is still waiting for libvirtd; skipping this one");
                return;
        }
        r = lv_vcpu_stats_async(m->lv, on_stats, m);
        if (r < 0)
                log_debug_errno(r, "Cannot ask for KVM's vCPU counters: %m");
        else
                k->pending = true;
}

void manager_kvm_sample(const struct manager *m, const struct managed_vcpu *v, struct adaptive_vcpu_sample *s)
{
        if (!rates_fresh(m, &v->kvm, monotonic_ns()))
                return;
        s->kvm = true;
        s->kvm_halt_hz = v->kvm.rates.halt_hz;
        s->kvm_preempt_hz = v->kvm.rates.preempt_hz;
        s->kvm_yield_hz = v->kvm.rates.yield_hz;
}

json_object *manager_kvm_vcpu_json(const struct manager *m, const struct managed_guest *g,
                                   const struct managed_vcpu *v)
{
        const struct kvm_vcpu_track *t = &v->kvm;
        bool fresh = rates_fresh(m, t, monotonic_ns());

        if (!guest_wants_kvm(g))
                return NULL;
        json_object *o = json_object_new_object();
        json_object_object_add(o, "rates_known", json_object_new_boolean(fresh));
        if (fresh) {
                json_object_object_add(o, "window_s", json_object_new_double(t->window_s));
                json_object_object_add(o, "halt_exits_per_s", json_object_new_double(t->rates.halt_hz));
                json_object_object_add(o, "halt_wait_ratio", json_object_new_double(t->rates.halt_wait_share));
                json_object_object_add(o, "preemption_reported_per_s", json_object_new_double(t->rates.preempt_hz));
                json_object_object_add(o, "directed_yield_attempted_per_s", json_object_new_double(t->rates.yield_hz));
                json_object_object_add(o, "directed_yield_successful_per_s",
                                       json_object_new_double(t->rates.yield_ok_hz));
        }
        if (t->have_prev) {
                /* KVM's own counters at the last reading, since the vCPU was created. */
                json_object *c = json_object_new_object();
                json_object_object_add(c, "halt_exits", json_object_new_uint64(t->prev.v[KVM_STAT_HALT_EXITS]));
                json_object_object_add(c, "halt_wait_ns", json_object_new_uint64(t->prev.v[KVM_STAT_HALT_WAIT_NS]));
                json_object_object_add(c, "preemption_reported",
                                       json_object_new_uint64(t->prev.v[KVM_STAT_PREEMPTION_REPORTED]));
                json_object_object_add(c, "directed_yield_attempted",
                                       json_object_new_uint64(t->prev.v[KVM_STAT_DIRECTED_YIELD_ATTEMPTED]));
                json_object_object_add(c, "directed_yield_successful",
                                       json_object_new_uint64(t->prev.v[KVM_STAT_DIRECTED_YIELD_SUCCESSFUL]));
                json_object_object_add(o, "counters", c);
        }
        return o;
}

struct history_kvm manager_kvm_history(const struct managed_guest *g, const struct managed_vcpu *v)
{
        const struct kvm_vcpu_track *t = &v->kvm;

        if (!guest_wants_kvm(g) || !t->counted)
                return (struct history_kvm){};
        return (struct history_kvm){
                .known = true,
                .halt_exits = (double)t->halt_exits,
                .halt_wait_s = (double)t->halt_wait_ns / 1e9,
                .preemption_reported = (double)t->preemption_reported,
                .yield_attempted = (double)t->yield_attempted,
                .yield_successful = (double)t->yield_successful,
        };
}

json_object *manager_kvm_status_json(const struct manager *m)
{
        const struct manager_kvm *k = m->kvm;
        json_object *o = json_object_new_object();

        /* Fetches answered and failed: 0 and 0 on a host without kvm guests. */
        json_object_object_add(o, "fetches", json_object_new_uint64(k ? k->fetches : 0));
        json_object_object_add(o, "failures", json_object_new_uint64(k ? k->failures : 0));
        json_object_object_add(o, "pending", json_object_new_boolean(k && k->pending));
        return o;
}

void manager_kvm_free(struct manager *m)
{
        /* After lv_conn_free(): no fetch can call back any more. */
        free(m->kvm);
        m->kvm = NULL;
}
