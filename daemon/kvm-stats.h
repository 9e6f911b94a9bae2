/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * KVM's own per-vCPU counters, as virConnectGetAllDomainStats(...,
 * VIR_DOMAIN_STATS_VCPU, ...) returns them in each record's typed
 * parameters: "vcpu.current", "vcpu.maximum", then per vCPU N
 * "vcpu.N.state", "vcpu.N.time", "vcpu.N.wait", "vcpu.N.delay" and, for
 * KVM domains with libvirt >= 8.10, the binary-stats counters
 * "vcpu.N.halt_exits.sum", "vcpu.N.preemption_reported.sum", ...
 * (/work/shared/FACTS.md, "Load").  One call covers every guest and does
 * not taint them.  TCG guests have none of the .sum/.cur counters; a
 * counter that is absent keeps its bit clear in @have.
 *
 * The parser takes the parameters as numbers of any integer type (libvirt
 * sends ULLONG for the counters and INT for state, but has changed types
 * between versions) and ignores what it does not know.  Pure: no libvirt
 * call, only its types, so the tests build parameter arrays from fixtures.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <libvirt/libvirt.h>

enum kvm_stat {
        KVM_STAT_STATE,
        KVM_STAT_TIME,                  /* vcpu.N.time: CPU time, ns (10 ms steps) */
        KVM_STAT_WAIT,                  /* vcpu.N.wait: time waiting on I/O, ns */
        KVM_STAT_DELAY,                 /* vcpu.N.delay: run-queue wait, ns (= schedstat field 2) */
        KVM_STAT_HALT_EXITS,
        KVM_STAT_HALT_WAIT_NS,
        KVM_STAT_HALT_SUCCESSFUL_POLL,
        KVM_STAT_HALT_ATTEMPTED_POLL,
        KVM_STAT_HALT_WAKEUP,
        KVM_STAT_PREEMPTION_REPORTED,
        KVM_STAT_PREEMPTION_OTHER,
        KVM_STAT_DIRECTED_YIELD_ATTEMPTED,
        KVM_STAT_DIRECTED_YIELD_SUCCESSFUL,
        KVM_STAT_EXITS,
        KVM_STAT_SIGNAL_EXITS,
        KVM_STAT_BLOCKING,              /* vcpu.N.blocking.cur: 1 while halted in the kernel */
        KVM_STAT_GUEST_MODE,            /* vcpu.N.guest_mode.cur */
        _KVM_STAT_MAX,
};

const char *kvm_stat_name(enum kvm_stat k);     /* the parameter suffix, e.g. "halt_exits.sum" */

struct kvm_vcpu_stats {
        uint32_t have;                  /* bit k set: v[k] came from the record */
        uint64_t v[_KVM_STAT_MAX];
};

static inline bool kvm_vcpu_has(const struct kvm_vcpu_stats *s, enum kvm_stat k)
{
        return s->have & (1u << k);
}

/* The KVM counters proper (halt, preemption, yield): what TCG lacks. */
bool kvm_vcpu_has_kvm_counters(const struct kvm_vcpu_stats *s);

/*
 * Parse one domain record's parameters into @out[vcpu], for vCPU ids below
 * @capacity (entries are zeroed first).  Stores in *@n one more than the
 * highest vCPU id seen (or vcpu.maximum when larger).  Returns 0, -ENOBUFS
 * when a vCPU id is >= @capacity (*@n says how many are needed; the rest is
 * filled), -EINVAL for a "vcpu.N." parameter whose value is not an integer.
 */
int kvm_stats_parse(const virTypedParameter *params, int nparams, struct kvm_vcpu_stats *out,
                    size_t capacity, size_t *n);

/*
 * The same into an array it allocates (*@out, free()), sized for the
 * record but for no more than @max_vcpus entries: ids from @max_vcpus on
 * are left out.  *@n: the entries.  Returns 0, -ENOMEM, or -EINVAL as
 * kvm_stats_parse() (then *@out is NULL and *@n 0).
 */
int kvm_stats_parse_alloc(const virTypedParameter *params, int nparams, size_t max_vcpus,
                          struct kvm_vcpu_stats **out, size_t *n);

/* Per-second rates between two samples of one vCPU, for lib/adaptive.h. */
struct kvm_vcpu_rates {
        bool kvm;                       /* both samples had the KVM counters */
        double halt_hz;                 /* halt exits */
        double preempt_hz;              /* preemption_reported */
        double yield_hz;                /* directed_yield_attempted */
        double yield_ok_hz;             /* directed_yield_successful */
        double halt_wait_share;         /* halt_wait_ns / wall */
};

/* Returns 0, -EINVAL when @dt_s <= 0; a counter that went backwards (vCPU
 * replugged) counts as 0. */
int kvm_vcpu_rates(const struct kvm_vcpu_stats *prev, const struct kvm_vcpu_stats *cur, double dt_s,
                   struct kvm_vcpu_rates *out);

/*
 * One vCPU across fetches: the last reading, the rates of the last window
 * and, for the metrics, each counter's increments summed while the daemon
 * watched (a Prometheus counter that survives a reset of KVM's own).
 * Zero-initialised = nothing seen.
 */
struct kvm_vcpu_track {
        bool have_prev;                 /* @prev is a reading with the KVM counters */
        struct kvm_vcpu_stats prev;
        uint64_t prev_ns;               /* CLOCK_MONOTONIC of @prev */
        bool rates_known;               /* @rates are from the last two readings */
        struct kvm_vcpu_rates rates;
        double window_s;                /* what @rates cover */
        uint64_t rates_ns;              /* the end of that window */
        bool counted;                   /* a KVM reading was seen: the sums mean something */
        uint64_t halt_exits, preemption_reported, yield_attempted, yield_successful, halt_wait_ns;
};

enum kvm_track_result {
        KVM_TRACK_NONE,                 /* no KVM counters in @cur (TCG, vCPU offline, libvirt skipped them) */
        KVM_TRACK_FIRST,                /* the first reading: a baseline, no rates yet */
        KVM_TRACK_RATES,                /* rates and sums updated */
        KVM_TRACK_RESET,                /* a counter went backwards: a new baseline, no rates */
};

/*
 * Fold the reading @cur taken at @now_ns into @t.  A reading without the
 * KVM counters keeps the baseline (the next window spans the gap: the
 * counters kept counting) and makes the rates unknown.  Returns an
 * enum kvm_track_result, or -EINVAL when @now_ns is not after the baseline
 * (@t unchanged).
 */
int kvm_vcpu_track_update(struct kvm_vcpu_track *t, const struct kvm_vcpu_stats *cur, uint64_t now_ns);
