/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "kvm-stats.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

static const char *const names[_KVM_STAT_MAX] = {
        [KVM_STAT_STATE] = "state",
        [KVM_STAT_TIME] = "time",
        [KVM_STAT_WAIT] = "wait",
        [KVM_STAT_DELAY] = "delay",
        [KVM_STAT_HALT_EXITS] = "halt_exits.sum",
        [KVM_STAT_HALT_WAIT_NS] = "halt_wait_ns.sum",
        [KVM_STAT_HALT_SUCCESSFUL_POLL] = "halt_successful_poll.sum",
        [KVM_STAT_HALT_ATTEMPTED_POLL] = "halt_attempted_poll.sum",
        [KVM_STAT_HALT_WAKEUP] = "halt_wakeup.sum",
        [KVM_STAT_PREEMPTION_REPORTED] = "preemption_reported.sum",
        [KVM_STAT_PREEMPTION_OTHER] = "preemption_other.sum",
        [KVM_STAT_DIRECTED_YIELD_ATTEMPTED] = "directed_yield_attempted.sum",
        [KVM_STAT_DIRECTED_YIELD_SUCCESSFUL] = "directed_yield_successful.sum",
        [KVM_STAT_EXITS] = "exits.sum",
        [KVM_STAT_SIGNAL_EXITS] = "signal_exits.sum",
        [KVM_STAT_BLOCKING] = "blocking.cur",
        [KVM_STAT_GUEST_MODE] = "guest_mode.cur",
};

const char *kvm_stat_name(enum kvm_stat k)
{
        return k < _KVM_STAT_MAX ? names[k] : "?";
}

bool kvm_vcpu_has_kvm_counters(const struct kvm_vcpu_stats *s)
{
        return kvm_vcpu_has(s, KVM_STAT_HALT_EXITS) && kvm_vcpu_has(s, KVM_STAT_PREEMPTION_REPORTED);
}

static int param_u64(const virTypedParameter *p, uint64_t *out)
{
        switch (p->type) {
        case VIR_TYPED_PARAM_INT:
                if (p->value.i < 0)
                        return -EINVAL;
                *out = (uint64_t)p->value.i;
                return 0;
        case VIR_TYPED_PARAM_UINT:
                *out = p->value.ui;
                return 0;
        case VIR_TYPED_PARAM_LLONG:
                if (p->value.l < 0)
                        return -EINVAL;
                *out = (uint64_t)p->value.l;
                return 0;
        case VIR_TYPED_PARAM_ULLONG:
                *out = p->value.ul;
                return 0;
        case VIR_TYPED_PARAM_BOOLEAN:
                *out = p->value.b ? 1 : 0;
                return 0;
        default:
                return -EINVAL;
        }
}

/* No guest has a million vCPUs: an id or a vcpu.maximum beyond is not believed
 * (and one near ULONG_MAX would wrap the count). */
#define VCPU_ID_MAX (1ul << 20)

/* "vcpu.12.halt_exits.sum" -> 12 and "halt_exits.sum"; false for anything else. */
static bool split_field(const char *field, unsigned long *vcpu, const char **suffix)
{
        char *end;

        if (strncmp(field, "vcpu.", 5) != 0 || field[5] < '0' || field[5] > '9')
                return false;
        errno = 0;
        *vcpu = strtoul(field + 5, &end, 10);
        if (errno != 0 || *vcpu >= VCPU_ID_MAX || *end != '.' || end[1] == '\0')
                return false;
        *suffix = end + 1;
        return true;
}

int kvm_stats_parse(const virTypedParameter *params, int nparams, struct kvm_vcpu_stats *out,
                    size_t capacity, size_t *n)
{
        size_t needed = 0;
        int r = 0;

        memset(out, 0, capacity * sizeof(*out));
        for (int i = 0; i < nparams; i++) {
                const virTypedParameter *p = &params[i];
                unsigned long vcpu;
                const char *suffix;
                uint64_t v;

                if (strcmp(p->field, "vcpu.maximum") == 0) {
                        if (param_u64(p, &v) == 0 && v > needed && v <= VCPU_ID_MAX)
                                needed = (size_t)v;
                        continue;
                }
                if (!split_field(p->field, &vcpu, &suffix))
                        continue;
                for (int k = 0; k < _KVM_STAT_MAX; k++) {
                        if (strcmp(suffix, names[k]) != 0)
                                continue;
                        if (param_u64(p, &v) < 0)
                                return -EINVAL;
                        if (vcpu + 1 > needed)
                                needed = vcpu + 1;
                        if (vcpu >= capacity) {
                                r = -ENOBUFS;
                                break;
                        }
                        out[vcpu].v[k] = v;
                        out[vcpu].have |= 1u << k;
                        break;
                }
        }
        *n = needed;
        return r;
}

int kvm_stats_parse_alloc(const virTypedParameter *params, int nparams, size_t max_vcpus,
                          struct kvm_vcpu_stats **out, size_t *n)
{
        size_t capacity = max_vcpus < 8 ? max_vcpus : 8, needed = 0;
        struct kvm_vcpu_stats *s = NULL;
        int r;

        /* Eight fit most guests; the parser says how many it needs when they
         * do not, and one more pass takes them all. */
        for (;;) {
                free(s);
                s = calloc(capacity ?: 1, sizeof(*s));
                if (!s)
                        return -ENOMEM;
                r = kvm_stats_parse(params, nparams, s, capacity, &needed);
                /* (needed > capacity whenever -ENOBUFS: the guard only makes
                 * sure this loop ends.) */
                if (r != -ENOBUFS || capacity >= max_vcpus || needed <= capacity)
                        break;
                capacity = needed < max_vcpus ? needed : max_vcpus;
        }
        if (r == -EINVAL) {
                free(s);
                *out = NULL;
                *n = 0;
                return r;
        }
        *out = s;
        /* What was filled: vcpu.maximum alone can make @needed larger. */
        *n = needed < capacity ? needed : capacity;
        return 0;
}

static double rate(const struct kvm_vcpu_stats *a, const struct kvm_vcpu_stats *b, enum kvm_stat k, double dt)
{
        if (!kvm_vcpu_has(a, k) || !kvm_vcpu_has(b, k) || b->v[k] < a->v[k])
                return 0;
        return (double)(b->v[k] - a->v[k]) / dt;
}

int kvm_vcpu_rates(const struct kvm_vcpu_stats *prev, const struct kvm_vcpu_stats *cur, double dt_s,
                   struct kvm_vcpu_rates *out)
{
        if (!(dt_s > 0))
                return -EINVAL;
        *out = (struct kvm_vcpu_rates) {
                .kvm = kvm_vcpu_has_kvm_counters(prev) && kvm_vcpu_has_kvm_counters(cur),
        };
        if (!out->kvm)
                return 0;
        out->halt_hz = rate(prev, cur, KVM_STAT_HALT_EXITS, dt_s);
        out->preempt_hz = rate(prev, cur, KVM_STAT_PREEMPTION_REPORTED, dt_s);
        out->yield_hz = rate(prev, cur, KVM_STAT_DIRECTED_YIELD_ATTEMPTED, dt_s);
        out->yield_ok_hz = rate(prev, cur, KVM_STAT_DIRECTED_YIELD_SUCCESSFUL, dt_s);
        out->halt_wait_share = rate(prev, cur, KVM_STAT_HALT_WAIT_NS, dt_s) / 1e9;
        if (out->halt_wait_share > 1)
                out->halt_wait_share = 1;
        return 0;
}

/* The counters the tracker keeps; any of them going backwards is a reset. */
static const enum kvm_stat tracked[] = {
        KVM_STAT_HALT_EXITS, KVM_STAT_PREEMPTION_REPORTED, KVM_STAT_DIRECTED_YIELD_ATTEMPTED,
        KVM_STAT_DIRECTED_YIELD_SUCCESSFUL, KVM_STAT_HALT_WAIT_NS,
};

static uint64_t delta(const struct kvm_vcpu_stats *a, const struct kvm_vcpu_stats *b, enum kvm_stat k)
{
        return kvm_vcpu_has(a, k) && kvm_vcpu_has(b, k) ? b->v[k] - a->v[k] : 0;
}

int kvm_vcpu_track_update(struct kvm_vcpu_track *t, const struct kvm_vcpu_stats *cur, uint64_t now_ns)
{
        if (!kvm_vcpu_has_kvm_counters(cur)) {
                t->rates_known = false;
                return KVM_TRACK_NONE;
        }
        if (t->have_prev && now_ns <= t->prev_ns)
                return -EINVAL;
        t->counted = true;
        if (!t->have_prev) {
                t->prev = *cur;
                t->prev_ns = now_ns;
                t->have_prev = true;
                t->rates_known = false;
                return KVM_TRACK_FIRST;
        }
        /* KVM's counters only grow while its vCPU lives; one that fell
         * belongs to a new vCPU (replugged, or a guest reset that made
         * QEMU recreate it): its increments are unknown, so no rate. */
        for (size_t i = 0; i < ELEMENTSOF(tracked); i++)
                if (kvm_vcpu_has(&t->prev, tracked[i]) && kvm_vcpu_has(cur, tracked[i]) &&
                    cur->v[tracked[i]] < t->prev.v[tracked[i]]) {
                        t->prev = *cur;
                        t->prev_ns = now_ns;
                        t->rates_known = false;
                        return KVM_TRACK_RESET;
                }
        double dt_s = (double)(now_ns - t->prev_ns) / 1e9;
        (void) kvm_vcpu_rates(&t->prev, cur, dt_s, &t->rates);
        t->window_s = dt_s;
        t->rates_ns = now_ns;
        t->rates_known = true;
        t->halt_exits += delta(&t->prev, cur, KVM_STAT_HALT_EXITS);
        t->preemption_reported += delta(&t->prev, cur, KVM_STAT_PREEMPTION_REPORTED);
        t->yield_attempted += delta(&t->prev, cur, KVM_STAT_DIRECTED_YIELD_ATTEMPTED);
        t->yield_successful += delta(&t->prev, cur, KVM_STAT_DIRECTED_YIELD_SUCCESSFUL);
        t->halt_wait_ns += delta(&t->prev, cur, KVM_STAT_HALT_WAIT_NS);
        t->prev = *cur;
        t->prev_ns = now_ns;
        return KVM_TRACK_RATES;
}
