/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Policy=auto: per guest, whether to intervene (keep its vCPUs apart, or
 * apart and co-scheduled) or to leave its vCPUs to the kernel.  Pure: the
 * figures of each sampling interval come in as numbers, the decision goes
 * out with the numbers behind it; no clock, no I/O, no globals, so the tests
 * feed hand-made sequences (an hour of intervals in microseconds).
 *
 * Why per guest (docs: /work/shared/FACTS.md, "When stacking hurts"): the
 * kernel's habit of stacking a guest's vCPUs on one CPU helps hackbench and
 * vCPU hand-off (futex ping-pong) guests by 20-60% under TCG, and hurts only
 * guests whose threads spin on a lock with a plain load loop (lock-holder
 * preemption).  What the host sees of such a guest: its vCPUs are busy
 * (CPU + run-queue wait near 1), they wait for a CPU, they almost never
 * block of their own accord (a halting or futex-waiting guest switches out
 * voluntarily hundreds of times a second), and they wait stacked on the CPU
 * where a sibling is runnable.  A guest that shows all four for a whole
 * window is a candidate.
 *
 * The rules, each in one place in adaptive.c:
 *  1. candidate: over one window (window_s; the daemon's AutoWindowSec=,
 *     default 10 s) of the guest in KERNEL mode; when the window so far
 *     is not busy and waiting (busy_min, wait_min) it restarts, so a window
 *     covers the load from its start (one slow interval among busy ones
 *     does not restart it): busy >= busy_min, wait >= wait_min, voluntary switches
 *     per vCPU-second <= voluntary_max (and involuntary ones <=
 *     involuntary_max; for KVM guests halt exits <= kvm_halt_max, a veto
 *     only: without the counters the rule is the same), runnable at >= runnable_min of
 *     the ticks (when there were ticks), stacked >= stacked_min and
 *     >= what chance gives plus stacked_margin (with at least
 *     min_stack_samples runnable samples), and >= 2 vCPUs.  Then the
 *     guest goes to COSCHED when a co-scheduler is there, else SPREAD (of
 *     the two not held off, the one that failed longest ago), unless
 *     min_dwell has not passed since its last change.
 *  2. trial (not under observe, where nothing changed that a trial could
 *     judge): after the change, settle_s are ignored, then trial_s are
 *     measured.  A COSCHED guest with nobody to take turns with
 *     (cosched_alone) has no change to judge: its trial waits (judged at
 *     once on what was measured together when the partner leaves after
 *     a quarter of trial_s), and after
 *     window_s alone it goes to SPREAD (reason no-partner) for a trial
 *     there.  The new mode stays only if harm fell by harm_drop_min
 *     (relative) against the window before the change, the guest's CPU
 *     share fell by no more than share_fall_max (relative; against the
 *     baseline's share, or the fair share when that is less), the other
 *     guests on its CPUs kept their part of their fair shares (same
 *     tolerance, against the baseline's part capped at 1), its vCPUs
 *     are still busy (busy_min: a mode that makes them sleep makes them
 *     wait outside the guest) *and* they
 *     block no more than mode_voluntary_max times a vCPU-second (running
 *     together, siblings may block on each other outside the guest: under
 *     TCG most likely on QEMU's big lock, taken at every PAUSE).
 *     Otherwise the
 *     guest goes back to KERNEL at once and that mode is held off for
 *     holdoff_ns (default 10 min).  Blocking (and busy, blocking seen
 *     as time) is judged early, at half of trial_s: a rate over
 *     thousands of switches needs no full window, and every second more
 *     of a mode that makes the guest queue on QEMU's lock is throughput
 *     lost.
 *  3. steady: a guest in SPREAD/COSCHED that is no longer busy, waiting and
 *     non-blocking (voluntary switches against mode_voluntary_max, the
 *     bound its trial was kept under) for exit_windows windows goes back
 *     to KERNEL, but not
 *     before min_dwell_ns (default 10 min) since its last change.  Together
 *     with 1 this gives at most one intervention per min_dwell under steady
 *     load; reverting a failed trial (2) and releasing (4) are immediate.
 *     A kept COSCHED guest left alone (cosched_alone) for window_s that
 *     still spins goes to SPREAD (reason no-partner, with a trial), after
 *     the dwell and unless spread is held off.
 *  4. work conservation: a confined guest (any mode but KERNEL, or lanes the
 *     manager narrowed) whose vCPUs wait (wait >= conserve_wait_min) while
 *     CPUs they may not use idle (idle_forbidden >= conserve_idle_min CPUs)
 *     for conserve_intervals intervals in a row is released to KERNEL at
 *     once, whatever the dwell; the mode it left is held off.
 *
 * harm: the share of time the guest's vCPUs wait for a CPU while stacked on
 * a sibling (wait x stacked), plus yield_weight x the KVM directed-yield
 * rate per vCPU-second where KVM counters exist (the guest itself reports
 * that it found a preempted lock holder).  Under SPREAD/COSCHED stacking
 * is near 0 by construction, so for those modes the CPU-share check is the
 * one with teeth: it is what stops a spread from ever costing the guest.
 *
 * How the manager drives it, per guest with Policy=auto (daemon/signals.h
 * has the sampling side):
 *   every tick (signals_tick_hz()): signals_read_running() once (summed
 *        for host_runnable); for guests that signals_guest_wants_ticks(),
 *        signals_sample_guest() into the guest's struct signals_tally;
 *   every sampling interval, after the load sampler's round:
 *        for ticked vCPUs whose signals_ctxt_due(), signals_read_ctxt() and
 *        keep the switch rates; for KVM guests, one
 *        virConnectGetAllDomainStats(VIR_DOMAIN_STATS_VCPU) for all guests,
 *        kvm_stats_parse() and kvm_vcpu_rates();
 *        fill struct adaptive_vcpu_sample per vCPU and
 *        adaptive_input_build(), reset the tally, adaptive_step();
 *        out->event != NONE: one journal entry with out->reason and
 *        out->text (the figures; CANDIDATE_HELD at debug level);
 *        out->changed: re-plan the guest in mode out->to (KERNEL: its full
 *        allowed set, SPREAD: the engine's disjoint sets, COSCHED: disjoint
 *        sets handed to the co-scheduler); RELEASE with no mode change:
 *        widen the lanes of a KERNEL-mode guest to its full allowed set.
 * A guest that restarts or whose vCPU threads change gets a fresh
 * adaptive_guest_init() (its baseline is of other threads).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <hwloc.h>

enum adaptive_mode {
        ADAPTIVE_KERNEL,        /* the guest's full allowed set; the kernel places the vCPUs */
        ADAPTIVE_SPREAD,        /* siblings on disjoint CPUs */
        ADAPTIVE_COSCHED,       /* siblings on disjoint CPUs and run together */
        _ADAPTIVE_MODE_MAX,
};

const char *adaptive_mode_to_string(enum adaptive_mode m);

/* Every threshold, with the default in adaptive_params_default(). */
struct adaptive_params {
        double busy_min;                /* mean per-vCPU (CPU + wait) share: 0.80 */
        double wait_min;                /* mean per-vCPU run-queue wait share: 0.10 */
        double voluntary_max;           /* voluntary switches per vCPU-second: 35 */
        double involuntary_max;         /* involuntary switches per vCPU-second: 1200 (0 = off) */
        double runnable_min;            /* runnable / all tick samples: 0.90 (0 = off) */
        double stacked_min;             /* stacked / runnable samples: 0.40 */
        double stacked_margin;          /* above the chance figure (stacked_chance): 0.15 */
        double stacked_all_min;         /* stacked / all samples (effbench's stacked_share): 0 = off */
        unsigned min_stack_samples;     /* runnable samples per window before stacked counts: 50 */
        double yield_weight;            /* harm per directed yield per vCPU-second: 0 (off until measured) */
        double kvm_halt_max;            /* KVM halt exits per vCPU-second: 35; above, it blocks (0 = off) */

        double window_s;                /* evaluation window: 30 s */
        double settle_s;                /* ignored after a change: 5 s */
        double trial_s;                 /* measured after settling: 30 s */
        double harm_drop_min;           /* relative fall of harm that keeps a trial: 0.25 */
        double share_fall_max;          /* relative fall of CPU share a trial may cost: 0.05 */
        double mode_voluntary_max;      /* voluntary switches per vCPU-second under SPREAD/COSCHED: 150 (0 = off) */
        unsigned exit_windows;          /* non-candidate windows before leaving SPREAD/COSCHED: 2 */

        uint64_t holdoff_ns;            /* a failed or released mode is not retried for: 10 min */
        uint64_t min_dwell_ns;          /* between an intervention and the previous change: 10 min */

        double conserve_wait_min;       /* wait share that counts as waiting for work conservation: 0.05 */
        double conserve_idle_min;       /* idle CPUs (sum of idle shares) it may not use: 0.50 */
        unsigned conserve_intervals;    /* in a row: 3 */

        bool cosched_available;         /* a co-scheduler can run this guest's siblings together */
        /* Mode=observe: nothing is applied, so there is no effect to try.
         * An intervention goes straight to STEADY (no settle, no trial) and
         * says what the daemon would do; rules 1, 3 and 4 hold as usual. */
        bool observe;
};

void adaptive_params_default(struct adaptive_params *p);

/* The daemon's judgement timings from one figure, AutoWindowSec= (default
 * 10 s, lib/defaults.h): window_s = trial_s = @window_s, settle_s = a fifth
 * of it within [1, 5] s.  With 1 s sampling a guest that starts spinning is
 * taken in about window + 2 s later (the window restarts while what it
 * holds is not busy and waiting, rule 1).  holdoff and min_dwell stay 10 min. */
void adaptive_params_set_window(struct adaptive_params *p, double window_s);

/*
 * One sampling interval of one guest, filled by the manager from the load
 * sampler (lib/load.h), the signal sampler (daemon/signals.h) and, for KVM
 * guests, daemon/kvm-stats.h.  Shares are per vCPU means over the interval.
 */
struct adaptive_input {
        uint64_t now_ns;                /* CLOCK_MONOTONIC at the end of the interval */
        double dt_s;                    /* length of the interval */
        unsigned n_vcpus;               /* vCPUs with a sample this interval */
        double cpu_share;               /* sum over vCPUs of CPU time / wall: the guest's share, in CPUs */
        double busy;                    /* mean of (CPU + run-queue wait) / wall, 0..1 */
        double wait;                    /* mean of run-queue wait / wall, 0..1 */
        unsigned samples;               /* vCPU samples read at the ticks (0: no ticks) */
        unsigned runnable_samples;      /* of those, runnable (state R) */
        unsigned stacked_samples;       /* of those, with a runnable sibling on the same CPU */
        double stacked_chance;          /* what an even random spread would give; 0: unknown */
        double voluntary_hz;            /* voluntary switches per vCPU-second (halt, futex wait, I/O) */
        double involuntary_hz;          /* involuntary switches per vCPU-second (preemption) */
        bool switches_unknown;          /* no vCPU had a fresh switch rate: the two above are 0 and left out of the window */
        /* Fairness, from adaptive_fair_shares() over the guests that compete
         * for this guest's CPUs (0: not known).  fair_share: what this guest
         * would get, in CPUs; others_share/others_fair: the CPU the other
         * competing guests got, and their fair shares, summed. */
        double fair_share, others_share, others_fair;
        double idle_forbidden;          /* idle share, summed over host CPUs that a waiting vCPU may not use */
        bool confined;                  /* the vCPUs have less than the guest's full allowed set */
        bool kvm;                       /* the three below are valid (KVM counters, daemon/kvm-stats.h) */
        double kvm_halt_hz;             /* halt exits per vCPU-second */
        double kvm_preempt_hz;          /* preemption_reported per vCPU-second */
        double kvm_yield_hz;            /* directed_yield_attempted per vCPU-second */
        /* COSCHED, but no other gang to take turns with this interval: the
         * co-scheduler demotes nobody, so nothing of the mode applies. */
        bool cosched_alone;
};

/*
 * The same interval as the manager holds it, per vCPU: adaptive_input_build()
 * turns it into struct adaptive_input, so the arithmetic (means, the idle
 * CPUs a waiting vCPU may not use) is tested here and not in the manager.
 */
struct adaptive_vcpu_sample {
        double util, wait;              /* struct thread_load's last_util, last_wait */
        double voluntary_hz, involuntary_hz;    /* from daemon/signals.h's switch counters */
        /* No rate of the recent past: the counters were not read since the
         * vCPU's ticks resumed, and a rate over the gap would be the idle
         * guest's (it halted, so it blocked hundreds of times a second).
         * Left out of the means, not counted as 0. */
        bool switches_unknown;
        hwloc_const_bitmap_t cpus;      /* the CPUs it may use now; NULL: all of the guest's */
        bool kvm;                       /* kvm_vcpu_rates() had the counters */
        double kvm_halt_hz, kvm_preempt_hz, kvm_yield_hz;
};

struct adaptive_guest_sample {
        uint64_t now_ns;
        double dt_s;
        const struct adaptive_vcpu_sample *vcpus;
        size_t n_vcpus;
        unsigned samples, runnable_samples, stacked_samples;    /* struct signals_tally of the interval */
        double host_runnable;           /* mean runnable tasks on the host at the ticks; 0: unknown */
        hwloc_const_bitmap_t allowed;   /* the guest's full allowed set (what KERNEL mode gives) */
        const double *cpu_idle;         /* idle share per host CPU, indexed by OS CPU number: 1 - busy - steal */
        size_t n_cpus;                  /* entries in cpu_idle */
};

/*
 * The stacking share an even random spread gives: with T runnable tasks
 * balanced over N CPUs, a given sibling sits on my CPU with p = (T/N - 1) /
 * (T - 1) (0 when T <= N), and one of k - 1 siblings with 1 - (1-p)^(k-1).
 * 2 CPUs, 2 guests x 2 vCPUs: 1/3; 3 guests: 2/5 (README, "Why").
 */
double adaptive_stacked_chance(double runnable_tasks, unsigned n_cpus, unsigned siblings);

/*
 * Max-min fair shares of @capacity CPUs among @n guests that want
 * @demand[i] CPUs each (CPU + run-queue wait of their vCPUs), weighted by
 * @weight[i] (their vCPUs): a guest that wants less than its weighted part
 * gets what it wants, the rest is shared by weight.  @fair[i] out.  What the
 * kernel's CFS aims at for threads of equal nice, counted per guest: the
 * yardstick for "no guest gets less than the default scheduler gives it"
 * when the default gave one guest more than its part by luck.  -EINVAL on
 * a negative or non-finite figure or a zero weight.
 */
int adaptive_fair_shares(const double *demand, const double *weight, size_t n, double capacity, double *fair);

/*
 * Fill @in.  stacked_chance comes from adaptive_stacked_chance() with
 * host_runnable, the CPUs of @allowed and the guest's vCPUs.  A vCPU counts as waiting for idle_forbidden when its wait share
 * is >= @p->conserve_wait_min; idle_forbidden is the idle share summed over
 * the CPUs of @allowed outside the mask of at least one waiting vCPU, and
 * confined is true when some vCPU's mask is narrower than @allowed.
 * Returns 0, -EINVAL (no vCPUs, no allowed set), -ENOMEM.
 */
int adaptive_input_build(const struct adaptive_guest_sample *s, const struct adaptive_params *p,
                         struct adaptive_input *in);

/* An interval or a window in the figures of a journal entry. */
struct adaptive_figures {
        double seconds;                 /* time covered */
        double cpu_share, busy, wait, stacked, stacked_chance, voluntary_hz, involuntary_hz, idle_forbidden, harm;
        bool samples_known;             /* the ticks counted all samples (runnable_share, stacked_all valid) */
        double runnable_share;          /* runnable / all samples */
        double stacked_all;             /* stacked / all samples */
        unsigned runnable_samples;
        bool kvm;
        double kvm_halt_hz, kvm_preempt_hz, kvm_yield_hz;
        double fair_share;              /* mean fair share, CPUs; 0: not known */
        bool others_known;              /* other guests competed: others_ratio is valid */
        double others_ratio;            /* their CPU / their fair share, over the window */
};

/* Time-weighted sums over a window; internal, in the header for the state. */
struct adaptive_acc {
        double seconds, cpu_share, busy, wait, voluntary, involuntary, idle_forbidden, stacked_chance;
        double switch_seconds;          /* of seconds, those with a switch rate (voluntary, involuntary are over these) */
        double fair_share, fair_seconds, others_share, others_fair;
        double kvm_halt, kvm_preempt, kvm_yield, kvm_seconds;
        unsigned samples, runnable_samples, stacked_samples;
};

enum adaptive_phase {
        ADAPTIVE_WATCH,                 /* KERNEL: looking for a candidate window */
        ADAPTIVE_SETTLE,                /* just changed: the first settle_s are ignored */
        ADAPTIVE_TRIAL,                 /* measuring the new mode against the baseline */
        ADAPTIVE_STEADY,                /* trial kept: watching for the load to change */
};

const char *adaptive_phase_to_string(enum adaptive_phase p);

/* Per guest; zero-initialised (or adaptive_guest_init()) = KERNEL, watching. */
struct adaptive_guest {
        enum adaptive_mode mode;
        enum adaptive_phase phase;
        bool changed_once;              /* last_change_ns is valid */
        uint64_t last_change_ns;
        uint64_t holdoff_until_ns[_ADAPTIVE_MODE_MAX];
        struct adaptive_acc acc;        /* the current window */
        struct adaptive_figures baseline; /* the window before the last change */
        unsigned exit_streak;           /* non-candidate windows in SPREAD/COSCHED */
        unsigned conserve_streak;       /* intervals waiting beside an idle forbidden CPU */
        unsigned changes;               /* mode changes so far */
        double alone_s;                 /* COSCHED with no partner (trial waiting, or kept and left), so far */
};

void adaptive_guest_init(struct adaptive_guest *g);

enum adaptive_event {
        ADAPTIVE_EVENT_NONE,
        ADAPTIVE_EVENT_INTERVENE,       /* KERNEL -> SPREAD/COSCHED: a candidate window; COSCHED -> SPREAD: no partner */
        ADAPTIVE_EVENT_TRIAL_KEPT,      /* no mode change: the trial lowered harm at no cost */
        ADAPTIVE_EVENT_TRIAL_FAILED,    /* back to KERNEL, mode held off */
        ADAPTIVE_EVENT_LOAD_CHANGED,    /* SPREAD/COSCHED -> KERNEL: no longer a candidate (or no partner, SPREAD held off) */
        ADAPTIVE_EVENT_RELEASE,         /* -> KERNEL: work conservation */
        ADAPTIVE_EVENT_CANDIDATE_HELD,  /* no change: a candidate window, but held off or within dwell */
};

const char *adaptive_event_to_string(enum adaptive_event e);

struct adaptive_decision {
        enum adaptive_event event;
        bool changed;                   /* from != to: the manager must apply @to */
        enum adaptive_mode from, to;
        const char *reason;             /* short, for VCPUSPREAD_REASON: "stacked-nonblocking", ... */
        struct adaptive_figures now;    /* the window (or interval, for RELEASE) that decided */
        struct adaptive_figures before; /* for trials: the baseline window */
        uint64_t holdoff_until_ns;      /* TRIAL_FAILED, RELEASE: the mode left is not retried before */
        char text[512];                 /* one line with the numbers, for MESSAGE= */
        /* Event NONE, but a KERNEL window closed that was no candidate:
         * @text says why (the first check it failed) and @now has its
         * figures.  For the debug log and status, not a journal entry of
         * its own at the default level. */
        bool window_closed;
};

/*
 * Feed one interval.  Returns 0 (@out says what happened; event NONE most
 * of the time), -EINVAL for an input that is not a number where one is
 * needed or goes back in time.
 */
int adaptive_step(struct adaptive_guest *g, const struct adaptive_params *p,
                  const struct adaptive_input *in, struct adaptive_decision *out);

/* Why a window with figures @f is no candidate (rule 1): the first check it
 * fails, in words with the figures, written to @buf; NULL when it is one. */
const char *adaptive_why_not(const struct adaptive_figures *f, unsigned n_vcpus, const struct adaptive_params *p,
                             char *buf, size_t len);

/* A KERNEL guest with a window in progress that looks like a spinner's so
 * far (busy, waiting, runnable, not blocking by itself; stacking and the
 * sample count are judged only when it closes): it may become a candidate
 * when the window closes. */
bool adaptive_window_in_progress(const struct adaptive_guest *g, const struct adaptive_params *p);

/* A change is being judged (settling or on trial): the manager reads the
 * vCPUs' switch counts every interval then, not every ctxt_every-th, so
 * that the trial's blocking figure is of the new mode (read every 5th
 * interval, a 10 s trial held the kernel mode's rates for a third of it)
 * and its early verdict (rule 2) rests on fresh figures. */
bool adaptive_judging(const struct adaptive_guest *g);

/* The harm of a window (see above). */
double adaptive_harm(const struct adaptive_figures *f, const struct adaptive_params *p);

/* The mode a candidate would go to now: of COSCHED (when available) and
 * SPREAD, the one not held off whose hold-off ended first (ties: COSCHED);
 * KERNEL when both are held off. */
enum adaptive_mode adaptive_target(const struct adaptive_guest *g, const struct adaptive_params *p,
                                   uint64_t now_ns);
