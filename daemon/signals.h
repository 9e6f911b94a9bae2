/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The signals behind Policy=auto (lib/adaptive.h), read cheaply from /proc:
 *
 *  - stacking: a vCPU's scheduling state and CPU, fields 3 (state) and 39
 *    (processor) of /proc/PID/task/TID/stat, read at a sub-interval rate
 *    (a "tick", up to 10 Hz).  Two runnable (R) vCPUs of one guest with the
 *    same processor are stacked: at most one of them runs, the other waits
 *    behind its sibling.  For a runnable task the field is the CPU whose
 *    run queue holds it (task_cpu()), so a tick sees exactly who queues where.
 *  - voluntary and involuntary context switches, the last two lines of
 *    /proc/PID/task/TID/status, read every ctxt_every-th sampling interval
 *    (the file costs 9 us a read: it formats ~55 lines to give us two).
 *  - run-queue wait and CPU time come from the load sampler (sample.h),
 *    per-host-CPU idle from its /proc/stat counters (lib/load.h): not read
 *    twice.
 *
 * Each thread keeps its two files open (struct signals_thread, owned by the
 * caller) and reads them with one pread() each: no path formatting, no
 * open/close per read.  A read that fails with ESRCH means the thread is
 * gone (the fd pins the task, so a reused TID is never read by mistake):
 * the files are closed and the call returns -ESRCH; the next call opens them
 * again by path, which finds a new thread of that TID if there is one, or
 * fails with -ESRCH again.
 *
 * Cost, measured here (pread on a 6.18 kernel): stat 3.4 us, status 9.3 us,
 * schedstat 1.1 us.  At 200 vCPUs, every vCPU at 10 Hz would be 0.7% of one
 * CPU for stat alone (measured: 1.5% with everything else), so the tick
 * reads only the vCPUs of guests that can be candidates (busy and waiting
 * in the last interval, see signals_guest_wants_ticks()) and spreads a
 * fixed budget of reads per second over them (signals_tick_hz()).
 * bench/bench-signals measures it; on this 2-CPU host (busy with other
 * work, 2026-12-01), 200 vCPU threads, load sampler included: 0.15% of one
 * CPU with no guest ticked, 0.44% (0.34% with rounds 200 ms apart) with
 * every guest ticked under the default budget, 1.5% at 10 Hz without it.
 *
 * Style of the load sampler: no logging, negative errno, -ESRCH = thread gone.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct signals_config {
        const char *proc_root;          /* NULL: /proc */
};

struct signals;

int signals_new(const struct signals_config *config, struct signals **out);
void signals_free(struct signals *s);
static inline void signals_freep(struct signals **s)
{
        if (*s)
                signals_free(*s);
}
#define _cleanup_signals_ __attribute__((cleanup(signals_freep)))

/* One vCPU thread's open files; embedded in the caller's vCPU struct. */
struct signals_thread {
        pid_t pid, tid;                 /* /proc/PID/task/TID */
        int stat_fd, status_fd;         /* -1: closed, opened on first use */
};

void signals_thread_init(struct signals_thread *t, pid_t pid, pid_t tid);
void signals_thread_close(struct signals_thread *t);

/* ---- one thread ---------------------------------------------------------- */

struct thread_sched_state {
        char state;                     /* R, S, D, T, t, X, Z, P, I */
        int cpu;                        /* field 39: the CPU it runs or queues on, or last ran on */
};

/* Parse one /proc/TID/stat line (@len bytes, need not be NUL-terminated).
 * The command name may hold spaces and parentheses.  Returns 0, -EINVAL. */
int proc_tid_stat_parse(const char *text, size_t len, struct thread_sched_state *out);

struct thread_ctxt {
        uint64_t voluntary;             /* voluntary_ctxt_switches */
        uint64_t involuntary;           /* nonvoluntary_ctxt_switches */
};

/* Parse the switch counters out of /proc/TID/status text.  Returns 0,
 * -EINVAL when either line is missing or malformed. */
int proc_status_ctxt_parse(const char *text, size_t len, struct thread_ctxt *out);

/* Returns 0, -ESRCH (thread gone), other negative errno. */
int signals_read_state(struct signals *s, struct signals_thread *t, struct thread_sched_state *out);
int signals_read_ctxt(struct signals *s, struct signals_thread *t, struct thread_ctxt *out);

/* ---- the host ------------------------------------------------------------- */

/* Parse /proc/loadavg ("0.52 0.58 0.59 2/345 12345"): runnable tasks now. */
int proc_loadavg_running_parse(const char *text, size_t len, unsigned *running);

/*
 * Runnable tasks on the host at this moment, the reader excluded: once per
 * tick, for the chance figure of stacking (adaptive_stacked_chance(); the
 * manager averages it over the interval into host_runnable).  /proc/loadavg
 * kept open, one pread (about 1 us).  Returns 0 or negative errno.
 */
int signals_read_running(struct signals *s, unsigned *running);

/* ---- one guest, one tick -------------------------------------------------- */

/* Counts over the ticks of one interval, per guest.  Reset by the caller
 * after handing them to adaptive_step() (runnable/stacked_samples). */
struct signals_tally {
        unsigned ticks;
        unsigned samples;               /* vCPU samples read (gone ones not counted) */
        unsigned runnable;              /* of those, in state R */
        unsigned stacked;               /* of those, with another R sibling on the same CPU */
        unsigned gone;                  /* reads that found the thread gone */
};

/* Fold one tick of a guest's vCPUs (pure).  Threads whose state is 0 (not
 * read) are skipped. */
void signals_tally_add(struct signals_tally *t, const struct thread_sched_state *v, size_t n);

/*
 * Read every thread of one guest (@threads: pointers into the caller's vCPU
 * structs) and fold the tick into @tally.  @scratch
 * holds @n states.  Returns the number of threads read, or a negative errno
 * other than ESRCH (gone threads count in tally->gone and are skipped).
 */
int signals_sample_guest(struct signals *s, struct signals_thread *const *threads, size_t n,
                         struct thread_sched_state *scratch, struct signals_tally *tally);

/* ---- the tick rate --------------------------------------------------------- */

struct signals_budget {
        double max_hz;                  /* per vCPU: 10 */
        double min_hz;                  /* per vCPU, however many there are: 1 */
        double reads_per_s;             /* stat reads per second over all vCPUs: 300 */
        unsigned ctxt_every;            /* read a ticked vCPU's status every Nth interval: 5 */
};

/*
 * 300 stat reads/s and status every 5th interval keep the worst case (every
 * one of 200 vCPUs in a possible candidate: 1.5 Hz each, 45 samples per vCPU
 * in a 30 s window) under 0.5% of one CPU with the load sampler's own round
 * included (bench-signals).  Between ticks the caches cool: a stat read then
 * costs about 6 us, not the 3.4 us of a hot loop.  Below 60 ticked vCPUs
 * every vCPU gets the full 10 Hz.  The switch counters
 * are cumulative, so a rate over 5 s is as good as five of 1 s; the manager
 * passes the last rate to adaptive_step() in the intervals between.  Not
 * across a change, though: a rate read every 5th interval still shows the
 * old mode for seconds after it, so while a trial runs (adaptive_judging())
 * every interval reads, and after a mode change or a gap in the ticks the
 * manager starts a new baseline and passes no rate until it has one
 * (manager-auto.c, switch_rates_forget()).  Spread the reads: vCPU i's status is due when
 * (interval + i) % ctxt_every == 0.
 */
#define SIGNALS_BUDGET_DEFAULT { .max_hz = 10, .min_hz = 1, .reads_per_s = 300, .ctxt_every = 5 }

/* Whether vCPU @index's status is due in interval number @interval. */
static inline bool signals_ctxt_due(const struct signals_budget *b, uint64_t interval, size_t index)
{
        return b->ctxt_every <= 1 || (interval + index) % b->ctxt_every == 0;
}

/* The tick rate for @n_threads ticked vCPUs: reads_per_s / n, within [min_hz, max_hz]. */
double signals_tick_hz(const struct signals_budget *b, size_t n_threads);

/* Whether a guest's vCPUs are worth ticking in the next interval: it has
 * >= 2 vCPUs and at least two of them were busy (@busy_min) and waited
 * (@wait_min) in the last one, or the guest is not in KERNEL mode (its trial
 * or steady state needs the figures).  @busy and @wait: per vCPU shares. */
bool signals_guest_wants_ticks(const double *busy, const double *wait, size_t n, double busy_min,
                               double wait_min, bool intervening);
