/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Load arithmetic: from cumulative kernel counters to per-interval fractions
 * and their exponentially weighted moving averages.  Pure: the counters come
 * in as numbers (or as the text of /proc/stat and /proc/TID/schedstat), so the
 * tests feed hand-made sequences and check exact results.
 *
 * Samples arrive at irregular intervals (timer slack, a slow pass, a skipped
 * round), so the smoothing factor depends on the interval:
 * alpha = 1 - exp(-dt / window).  Two half-intervals then weigh the same as
 * one whole interval, and a long gap lets a new value dominate.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- EWMA ---------------------------------------------------------------- */

struct ewma {
        double value;
        bool primed;            /* has seen a sample; the first one is taken as is */
};

/* 1 - exp(-dt/window) in [0,1].  A window <= 0 means no smoothing (1);
 * dt <= 0 means no time passed (0). */
double ewma_alpha(double dt_s, double window_s);

/* Fold @sample, observed over the last @dt_s seconds, into @e. */
void ewma_add(struct ewma *e, double sample, double dt_s, double window_s);

/* ---- one thread (vCPU) --------------------------------------------------- */

/* Cumulative counters of one thread, as the sampler reads them. */
struct thread_counters {
        uint64_t cpu_ns;        /* CPU time used (the scheduler's sum_exec_runtime) */
        uint64_t wait_ns;       /* time runnable but waiting for a CPU (run_delay) */
        uint64_t timeslices;    /* times it was scheduled in */
        uint64_t when_ns;       /* CLOCK_MONOTONIC when read */
};

/* Parse the text of /proc/TID/schedstat ("run_ns wait_ns timeslices\n").
 * Returns 0 or -EINVAL.  Leaves @out->when_ns alone. */
int schedstat_parse(const char *text, struct thread_counters *out);

enum thread_load_update {
        THREAD_LOAD_BASELINE,   /* first sample: nothing to compare with yet */
        THREAD_LOAD_UPDATED,    /* last_* and the averages were updated */
        THREAD_LOAD_RESET,      /* counters went backwards (thread replaced): new baseline */
        THREAD_LOAD_NO_TIME,    /* no wall time passed since the last sample: ignored */
};

struct thread_load {
        bool have_prev;
        struct thread_counters prev;
        unsigned resets;        /* times the counters went backwards */

        /* The last interval. */
        double last_dt_s;
        double last_util;       /* CPU time / wall time, in [0,1] */
        double last_wait;       /* run-queue wait / wall time, in [0,1] */
        double last_wait_ms;    /* run-queue wait in that interval, ms */

        /* Smoothed over the window. */
        struct ewma util;
        struct ewma wait;
};

/*
 * Feed one sample.  Returns which of enum thread_load_update happened.
 * A counter that went backwards means another thread now carries the id
 * (or the kernel reset it); the interval is dropped, the sample becomes the
 * new baseline and the averages are kept.  A thread replaced by one that
 * already ran longer cannot be told from counters alone: callers that see
 * the thread id change should start from a fresh struct thread_load.
 */
enum thread_load_update thread_load_update(struct thread_load *l, const struct thread_counters *c,
                                           double window_s);

/* ---- host CPUs (/proc/stat) ---------------------------------------------- */

/* One "cpuN" line of /proc/stat, in USER_HZ ticks. */
struct host_cpu_counters {
        unsigned cpu;
        uint64_t user, nice, system, idle, iowait, irq, softirq, steal;
        uint64_t guest, guest_nice;     /* already included in user and nice */
};

/*
 * Parse the per-CPU lines of /proc/stat text (the aggregate "cpu" line is
 * skipped).  Stores up to @capacity entries in @out and the number of CPUs
 * found in @n.  Returns 0, -ENOBUFS when @capacity is too small (@n says how
 * many are needed), -EINVAL on a malformed cpu line or when none is found.
 * Fields missing on old kernels (steal, guest, guest_nice) read as 0.
 */
int proc_stat_parse(const char *text, struct host_cpu_counters *out, size_t capacity, size_t *n);

struct host_cpu_load {
        bool have_prev;
        struct host_cpu_counters prev;
        uint64_t prev_when_ns;

        double last_busy;       /* user+nice+system+irq+softirq over all ticks */
        double last_steal;      /* steal over all ticks */
        struct ewma busy;
        struct ewma steal;
};

/*
 * Feed one CPU's counters read at CLOCK_MONOTONIC @when_ns.  A field that went
 * backwards (iowait may, and a CPU that went offline restarts some) counts as
 * no change.  Returns 0 when updated, 1 when this was a baseline or no tick
 * passed, -EINVAL when @c is for another CPU than the previous sample.
 */
int host_cpu_load_update(struct host_cpu_load *l, const struct host_cpu_counters *c,
                         uint64_t when_ns, double window_s);
