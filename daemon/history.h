/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What the daemon saw of each guest and what it did (or, observing, would
 * have done), for `vcpuspreadctl report` and the metrics (metrics.h).  No
 * clock and no host I/O: the manager's glue (manager-metrics.c) feeds one
 * struct history_sample per guest per sampling interval and one call per
 * move; the tests feed hand-made ones.
 *
 * Per guest it keeps lifetime sums (struct history_acc) and the same sums
 * in buckets of HISTORY_BUCKET_SEC over the last HISTORY_BUCKETS buckets,
 * so a report over a window ("the last hour") adds up the buckets it
 * covers; per vCPU, CPU and run-queue wait seconds and moves by reason.
 * A guest that goes away is kept for the report (marked gone, no longer in
 * the metrics) until HISTORY_GONE_MAX newer ones have gone or its last
 * bucket ages out.  Memory: about 27 KiB per guest (the buckets), plus
 * 0.4 KiB per vCPU.
 *
 * The tick figures (samples, runnable, stacked) are those of
 * daemon/signals.h: a vCPU sample is stacked when the vCPU is runnable and
 * another runnable vCPU of its guest queues on the same host CPU.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <json-c/json.h>

#include "lib/adaptive.h"
#include "signals.h"

#define HISTORY_BUCKET_SEC 120
#define HISTORY_BUCKETS 180                     /* 6 hours */
#define HISTORY_GONE_MAX 64
#define HISTORY_REASONS 12                      /* distinct move reasons per vCPU; the rest are "other" */

/* Sums over a stretch of time: one bucket, a window, or a guest's lifetime. */
struct history_acc {
        double seconds;                 /* wall time observed */
        double vcpu_seconds;            /* vCPU-seconds observed (sum over vCPUs of seconds) */
        double cpu_s, wait_s;           /* CPU and run-queue wait, summed over vCPUs */
        double ctxt_vcpu_s;             /* vCPU-seconds over which switches were counted */
        double voluntary, involuntary;  /* context switches */
        uint64_t samples, runnable, stacked;    /* tick samples (see above) */
        double chance_weighted;         /* sum of stacked_chance x runnable samples */
        double mode_s[_ADAPTIVE_MODE_MAX];      /* time in each mode */
        uint64_t moves, observed_moves, apply_errors, mode_changes;
};

struct history_moves {
        char reason[24];
        uint64_t applied;               /* applied */
        uint64_t observed;              /* decided but not applied: observe mode */
};

/* KVM's counters of one vCPU of a kvm guest, summed while the daemon
 * watched (manager-kvm.c); @known false: TCG, or nothing read yet. */
struct history_kvm {
        bool known;
        double halt_exits, halt_wait_s, preemption_reported, yield_attempted, yield_successful;
};

struct history_vcpu {
        unsigned vcpu;
        pid_t tid;                      /* the thread the counters below were read from */
        bool have_counters;
        uint64_t cpu_ns, wait_ns;       /* the thread's cumulative counters at the last sample */
        bool have_ctxt;
        struct thread_ctxt ctxt;        /* cumulative switch counters at the last read */
        uint64_t ctxt_ns;               /* when they were read */
        double cpu_s, wait_s;           /* while the daemon watched: what the metrics export */
        struct history_kvm kvm;         /* the same for KVM's counters */
        size_t n_reasons;
        struct history_moves moves[HISTORY_REASONS];
        struct signals_thread st;       /* the glue's open /proc files for the ticks */
        bool seen;                      /* mark for history_guest_vcpus() */
};

struct history_bucket {
        uint64_t index;                 /* which HISTORY_BUCKET_SEC slice since history_new(): +1, 0 = empty */
        struct history_acc acc;
};

struct history_guest {
        char uuid[37];
        char *name;                     /* owned */
        bool present;                   /* running now: in the metrics */
        uint64_t first_ns, last_ns;     /* first and last interval seen (the history's clock) */
        time_t first_seen, last_seen;   /* the same, wall clock */
        char policy[24], state[24];
        enum adaptive_mode mode;        /* the mode it is in (or, observing, would be in) */
        char mode_reason[32];           /* why, when Policy=auto said so; "" otherwise */
        char last_move[160];            /* "vcpu1 0-1 -> 1 (sibling-conflict)", for the report */
        bool observed_last;             /* last_move was not applied */

        /* The last interval's figures, for the gauges. */
        unsigned n_vcpus_sampled;
        double busy, wait;              /* mean per-vCPU (CPU + wait) and wait shares */
        double cpu_share;               /* sum over vCPUs, in CPUs */

        /* Policy=auto's own figures of its last window, when it runs. */
        bool adaptive;
        enum adaptive_phase phase;
        struct adaptive_figures figures;
        uint64_t ext_seq;               /* the glue's: Policy=auto's interval whose ticks were taken */

        struct history_acc total;
        struct history_bucket *buckets; /* HISTORY_BUCKETS, owned */
        size_t n_vcpus;
        struct history_vcpu *vcpus;     /* owned, sorted by vcpu */
};

struct history {
        uint64_t start_ns;
        size_t n_guests;
        struct history_guest **guests;  /* present ones first is not promised; sorted by nothing */
        size_t n_gone;
        /* Lifetime counts of the daemon, across guests that went away. */
        uint64_t moves, observed_moves;
};

int history_new(uint64_t now_ns, struct history **out);
void history_free(struct history *h);

/* The record of @uuid, created (present) when missing; NULL on ENOMEM. */
struct history_guest *history_guest_get(struct history *h, const char *uuid, const char *name, uint64_t now_ns,
                                        time_t wall);
struct history_guest *history_guest_find(struct history *h, const char *uuid);

/* The guest's record of vCPU @vcpu, created when missing; NULL on ENOMEM.
 * Pointers stay valid until the next history_vcpu_get() on that guest. */
struct history_vcpu *history_vcpu_get(struct history_guest *g, unsigned vcpu);

/* The guest is no longer running: out of the metrics, kept for the report. */
void history_guest_gone(struct history *h, const char *uuid);

/* One guest, one sampling interval. */
struct history_vcpu_sample {
        unsigned vcpu;
        pid_t tid;
        bool have_counters;             /* cpu_ns, wait_ns read this interval */
        uint64_t cpu_ns, wait_ns;       /* the thread's cumulative counters */
        bool have_ctxt;                 /* switch counters read this interval */
        struct thread_ctxt ctxt;
        struct history_kvm kvm;         /* kvm guests: the sums so far */
};

struct history_sample {
        uint64_t now_ns;                /* CLOCK_MONOTONIC */
        time_t wall;
        double dt_s;                    /* since the guest's previous sample */
        const struct history_vcpu_sample *vcpus;
        size_t n_vcpus;
        struct signals_tally tally;     /* this interval's ticks */
        double stacked_chance;          /* what an even random spread gives; 0 unknown */
        enum adaptive_mode mode;
        const char *mode_reason;        /* NULL: none */
        const char *policy, *state;
};

/* Fold one interval of a guest into its record.  Returns 0 or -ENOMEM. */
int history_sample_add(struct history *h, struct history_guest *g, const struct history_sample *s);

/* A move decided for vCPU @vcpu: applied, or (@observed) not applied because
 * the daemon observes.  @text: for the report's last decision. */
int history_move(struct history *h, struct history_guest *g, unsigned vcpu, const char *reason, bool observed,
                 const char *text, uint64_t now_ns);
void history_apply_error(struct history *h, struct history_guest *g, uint64_t now_ns);

/* Sums of @g over the last @window_s seconds (0: its lifetime). */
void history_window(const struct history *h, const struct history_guest *g, uint64_t now_ns, double window_s,
                    struct history_acc *out);

/* Shares from sums; NAN when there is nothing to divide by. */
double history_stacked_share(const struct history_acc *a);     /* stacked / runnable samples */
double history_stacked_all(const struct history_acc *a);       /* stacked / all samples */
double history_stacked_chance(const struct history_acc *a);
double history_busy(const struct history_acc *a);              /* (CPU + wait) / vCPU-seconds */
double history_wait(const struct history_acc *a);              /* wait / vCPU-seconds */
double history_voluntary_hz(const struct history_acc *a);      /* per vCPU-second */
double history_involuntary_hz(const struct history_acc *a);

/* The report: one object per guest (present ones and those that went away
 * within the window), over the last @window_s seconds (0: lifetime). */
json_object *history_report_json(const struct history *h, uint64_t now_ns, double window_s);
