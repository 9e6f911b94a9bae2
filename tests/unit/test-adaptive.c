/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Policy=auto's state machine (lib/adaptive.c) against hand-made interval
 * sequences, one rule per test: candidate -> intervene, trial kept, trial
 * failed -> revert + hold-off, no flapping over an hour of steady load,
 * at most one intervention per dwell, work-conservation release, the
 * guest that must never be touched (halting, lone vCPU, unstacked).
 * Intervals are 1 s, as with the default SampleIntervalSec=1s.
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "adaptive.h"
#include "tap.h"

#define SEC 1000000000ULL

static struct adaptive_params P;
static uint64_t now;            /* simulated CLOCK_MONOTONIC */

/* A guest whose two vCPUs spin stacked: busy, waiting, never halting. */
static struct adaptive_input spinner_stacked(void)
{
        return (struct adaptive_input) {
                .dt_s = 1, .n_vcpus = 2, .cpu_share = 1.0, .busy = 1.0, .wait = 0.5,
                .runnable_samples = 20, .stacked_samples = 14, .voluntary_hz = 2, .involuntary_hz = 250,
        };
}

/* The same guest spread: no stacking; @share its CPU share now. */
static struct adaptive_input spinner_spread(double share)
{
        struct adaptive_input in = spinner_stacked();
        in.stacked_samples = 1;
        in.cpu_share = share;
        in.confined = true;
        return in;
}

/* hackbench-like: busy and waiting and stacked, but halting all the time. */
static struct adaptive_input halter(void)
{
        struct adaptive_input in = spinner_stacked();
        in.voluntary_hz = 3000;
        return in;
}

struct run {
        unsigned events[8];             /* per enum adaptive_event */
        unsigned changes;
        struct adaptive_decision last;  /* the last decision with an event */
        uint64_t last_change_at[64];
};

/* Feed @seconds intervals of @in (its now_ns advanced) and count what happens. */
static void feed(struct adaptive_guest *g, struct adaptive_input in, unsigned seconds, struct run *r)
{
        for (unsigned i = 0; i < seconds; i++) {
                struct adaptive_decision d;
                now += (uint64_t)(in.dt_s * SEC);
                in.now_ns = now;
                int k = adaptive_step(g, &P, &in, &d);
                CHECK(k == 0, "step at %llus: %d", (unsigned long long)(now / SEC), k);
                if (d.event == ADAPTIVE_EVENT_NONE)
                        continue;
                r->events[d.event]++;
                if (d.changed) {
                        if (r->changes < 64)
                                r->last_change_at[r->changes] = now;
                        r->changes++;
                }
                r->last = d;
        }
}

static void setup(struct adaptive_guest *g)
{
        adaptive_params_default(&P);
        adaptive_guest_init(g);
        now = 1000 * SEC;
}

static void test_defaults(void)
{
        adaptive_params_default(&P);
        CHECK(P.holdoff_ns >= 600 * SEC, "hold-off >= 10 min");
        CHECK(P.min_dwell_ns >= 600 * SEC, "dwell >= 10 min");
        CHECK(P.window_s > 0 && P.trial_s > 0, "windows");
        CHECK(strcmp(adaptive_mode_to_string(ADAPTIVE_COSCHED), "cosched") == 0, "names");
}

/* Rule 1: a whole candidate window -> SPREAD (no co-scheduler), with the figures. */
static void test_candidate_intervenes(void)
{
        struct adaptive_guest g;
        struct run r = {};

        setup(&g);
        feed(&g, spinner_stacked(), 29, &r);
        CHECK(r.changes == 0 && g.mode == ADAPTIVE_KERNEL, "nothing before the window is full");
        feed(&g, spinner_stacked(), 1, &r);
        CHECK(r.changes == 1 && g.mode == ADAPTIVE_SPREAD, "spread after one window: %u %s", r.changes,
              adaptive_mode_to_string(g.mode));
        CHECK(r.last.event == ADAPTIVE_EVENT_INTERVENE, "event %s", adaptive_event_to_string(r.last.event));
        CHECK(strcmp(r.last.reason, "stacked-nonblocking") == 0, "reason %s", r.last.reason);
        CHECK(fabs(r.last.now.stacked - 0.7) < 1e-9 && r.last.now.runnable_samples == 600,
              "stacked %g over %u", r.last.now.stacked, r.last.now.runnable_samples);
        CHECK(fabs(r.last.now.harm - 0.35) < 1e-9, "harm = wait x stacked: %g", r.last.now.harm);
        CHECK(strstr(r.last.text, "kernel -> spread (stacked-nonblocking)") &&
              strstr(r.last.text, "stacked 0.70"), "text: %s", r.last.text);

        /* With a co-scheduler the candidate goes to COSCHED. */
        setup(&g);
        P.cosched_available = true;
        r = (struct run) {};
        feed(&g, spinner_stacked(), 30, &r);
        CHECK(g.mode == ADAPTIVE_COSCHED, "cosched: %s", adaptive_mode_to_string(g.mode));
}

/* Seconds without a fresh switch rate do not count towards the window's
 * rates.  The daemon's first intervals of a guest whose load has just
 * started carry a rate over its idle time (halting, hundreds of voluntary
 * switches a second) or none at all; counted, 2 s at 300/s made a spinner's
 * window "blocks by itself: voluntary 57/s" (effectiveness benchmark, a
 * PAUSE spinner), and counted as 0 they would hide a guest that blocks. */
static void test_switches_unknown(void)
{
        struct adaptive_guest g;
        struct run r = {};
        struct adaptive_input stale = spinner_stacked();

        setup(&g);
        stale.switches_unknown = true;
        stale.voluntary_hz = stale.involuntary_hz = 0;
        feed(&g, stale, 3, &r);
        feed(&g, spinner_stacked(), 27, &r);
        CHECK(g.mode == ADAPTIVE_SPREAD && r.changes == 1, "a candidate after one window: %s",
              adaptive_mode_to_string(g.mode));
        CHECK(r.last.now.voluntary_hz == 2 && r.last.now.involuntary_hz == 250 && r.last.now.seconds == 30,
              "the rates of the 27 s that had them: %g %g over %g s", r.last.now.voluntary_hz,
              r.last.now.involuntary_hz, r.last.now.seconds);

        /* The same three seconds with the idle gap's rate counted would have
         * failed the window: the bug this guards against. */
        setup(&g);
        r = (struct run){};
        stale.switches_unknown = false;
        stale.voluntary_hz = 400;
        feed(&g, stale, 3, &r);
        feed(&g, spinner_stacked(), 27, &r);
        CHECK(g.mode == ADAPTIVE_KERNEL && r.changes == 0, "counted, 3 s at 400/s fail a 30-s window");

        /* A guest that blocks is still seen when some seconds are unknown. */
        setup(&g);
        r = (struct run){};
        stale.switches_unknown = true;
        stale.voluntary_hz = 0;
        feed(&g, stale, 20, &r);
        CHECK(adaptive_window_in_progress(&g, &P), "20 s busy and waiting, rates unknown: spinner-like so far");
        feed(&g, halter(), 5, &r);
        CHECK(!adaptive_window_in_progress(&g, &P) && g.acc.seconds == 25,
              "5 known seconds at 3000/s: no partner (window so far %g s)", g.acc.seconds);
        feed(&g, halter(), 5, &r);
        CHECK(g.mode == ADAPTIVE_KERNEL && r.changes == 0, "a halter's known seconds decide");
}

/* Guests that must be left to the kernel, whatever else they show. */
static void test_not_candidates(void)
{
        struct adaptive_guest g;
        struct run r = {};
        struct adaptive_input in;

        setup(&g);
        feed(&g, halter(), 3600, &r);
        CHECK(r.changes == 0, "halting guest (hackbench, futex hand-off) untouched: %u", r.changes);

        setup(&g);
        in = spinner_stacked();
        in.stacked_samples = 4;         /* 0.2: not stacked more than chance */
        feed(&g, in, 3600, &r);
        CHECK(r.changes == 0, "unstacked spinner untouched");

        setup(&g);
        in = spinner_stacked();
        in.n_vcpus = 1;
        feed(&g, in, 3600, &r);
        CHECK(r.changes == 0, "one vCPU: no siblings");

        setup(&g);
        in = spinner_stacked();
        in.wait = 0.02;
        feed(&g, in, 3600, &r);
        CHECK(r.changes == 0, "no run-queue wait: nothing to win");

        setup(&g);
        in = spinner_stacked();
        in.runnable_samples = 1;
        in.stacked_samples = 1;         /* 30 samples a window < min_stack_samples */
        feed(&g, in, 3600, &r);
        CHECK(r.changes == 0, "too few stacking samples to judge");

        /* hackbench as signals.md measured it (58 voluntary/s): left to the kernel. */
        setup(&g);
        r = (struct run) {};
        in = spinner_stacked();
        in.voluntary_hz = 58;
        feed(&g, in, 3600, &r);
        CHECK(r.changes == 0, "hackbench-like, 58 voluntary/s");
        /* futex ping-pong's involuntary rate, even were its voluntary one hidden. */
        setup(&g);
        in = spinner_stacked();
        in.involuntary_hz = 5554;
        feed(&g, in, 3600, &r);
        CHECK(r.changes == 0, "5554 involuntary/s");

        /* Runnable at only 80% of the ticks: it sleeps, whatever its switch count says. */
        setup(&g);
        in = spinner_stacked();
        in.samples = 25;
        feed(&g, in, 3600, &r);
        CHECK(r.changes == 0, "runnable 0.80 < 0.90");
        setup(&g);
        r = (struct run) {};
        in.samples = 21;                /* 0.95 */
        feed(&g, in, 30, &r);
        CHECK(r.changes == 1, "runnable 0.95: a candidate");

        /* KVM halt exits count as blocking even when the thread's switches do not show it. */
        setup(&g);
        r = (struct run) {};
        in = spinner_stacked();
        in.kvm = true;
        in.kvm_halt_hz = 2000;
        feed(&g, in, 3600, &r);
        CHECK(r.changes == 0, "KVM guest that halts");
}

/* Feed @in until a window closes with no candidate; its text ("" if none in @seconds). */
static const char *window_verdict(struct adaptive_guest *g, struct adaptive_input in, unsigned seconds)
{
        static struct adaptive_decision d;

        for (unsigned i = 0; i < seconds; i++) {
                now += (uint64_t)(in.dt_s * SEC);
                in.now_ns = now;
                if (adaptive_step(g, &P, &in, &d) == 0 && d.window_closed)
                        return d.text;
        }
        return "";
}

/* Every window that decides nothing says why: the first check it failed. */
static void test_window_verdicts(void)
{
        struct adaptive_guest g;
        struct adaptive_input in;
        const char *t;

        setup(&g);
        t = window_verdict(&g, halter(), 60);
        CHECK(strstr(t, "not a candidate: blocks by itself: voluntary 3000/s > 35/s"), "halter: %s", t);
        CHECK(g.mode == ADAPTIVE_KERNEL, "and nothing changed");

        setup(&g);
        in = spinner_stacked();
        in.n_vcpus = 1;
        t = window_verdict(&g, in, 60);
        CHECK(strstr(t, "one vCPU"), "one vCPU: %s", t);

        setup(&g);
        in = spinner_stacked();
        in.stacked_samples = 4;
        t = window_verdict(&g, in, 60);
        CHECK(strstr(t, "not stacked beyond chance: 0.20"), "unstacked: %s", t);

        setup(&g);
        in = spinner_stacked();
        in.kvm = true;
        in.kvm_halt_hz = 2000;
        t = window_verdict(&g, in, 60);
        CHECK(strstr(t, "halts: KVM halt exits 2000/s"), "KVM halter: %s", t);

        /* Never waiting: every interval restarts the window, and no window was cut short. */
        setup(&g);
        in = spinner_stacked();
        in.wait = 0.02;
        t = window_verdict(&g, in, 60);
        CHECK(!*t, "never a window in progress, nothing to say: %s", t);

        /* One slow interval among busy ones does not restart a window (a
         * spinning TCG guest has them), idle ones that take the window
         * below busy_min do, and say so. */
        setup(&g);
        (void) window_verdict(&g, spinner_stacked(), 5);
        in = spinner_stacked();
        in.busy = 0.5;
        in.wait = 0.01;
        t = window_verdict(&g, in, 1);
        CHECK(!*t && fabs(g.acc.seconds - 6) < 1e-9, "one slow interval: '%s', window %.0f s", t, g.acc.seconds);
        in.busy = 0;
        t = window_verdict(&g, in, 2);
        CHECK(strstr(t, "window restarted after 6s: not busy over it (cpu + wait 0.79; 0.00 in the last interval)"),
              "restart: %s", t);
        CHECK(g.acc.seconds == 0, "restarted after the idle interval: %.0f s", g.acc.seconds);
        /* Busy but never waiting, the same for wait_min. */
        setup(&g);
        (void) window_verdict(&g, spinner_stacked(), 2);
        in = spinner_stacked();
        in.wait = 0;
        t = window_verdict(&g, in, 30);
        CHECK(strstr(t, "window restarted after 10s: not waiting over it (wait 0.09; 0.00 in the last interval)"),
              "restart on wait: %s", t);

        /* The busy window that was cut short counts as in progress until then. */
        setup(&g);
        CHECK(!adaptive_window_in_progress(&g, &P), "fresh guest: no window in progress");
        (void) window_verdict(&g, spinner_stacked(), 3);
        CHECK(adaptive_window_in_progress(&g, &P), "3 busy intervals: a window in progress");
        in = spinner_stacked();
        in.busy = 0.1;
        (void) window_verdict(&g, in, 1);
        CHECK(!adaptive_window_in_progress(&g, &P), "an idle interval ends it");

        /* Busy and waiting, but blocking by itself (hackbench) or often
         * not runnable: a window goes on, but it can never be a candidate. */
        setup(&g);
        in = spinner_stacked();
        in.voluntary_hz = 400;
        (void) window_verdict(&g, in, 3);
        CHECK(g.acc.seconds > 0 && !adaptive_window_in_progress(&g, &P),
              "a guest that blocks by itself: no promising window (%.0f s of window)", g.acc.seconds);
        setup(&g);
        in = spinner_stacked();
        in.samples = 2 * in.runnable_samples;
        (void) window_verdict(&g, in, 3);
        CHECK(g.acc.seconds > 0 && !adaptive_window_in_progress(&g, &P),
              "runnable at half the ticks: no promising window");

        /* A candidate window is an intervention, not a verdict. */
        setup(&g);
        t = window_verdict(&g, spinner_stacked(), 30);
        CHECK(!*t && g.mode == ADAPTIVE_SPREAD, "candidate: %s", t);

        char buf[160];
        struct adaptive_figures f = { .seconds = 10, .busy = 1, .wait = 0.5, .stacked = 0.9, .stacked_chance = 0.3,
                                      .runnable_samples = 100 };
        CHECK(adaptive_why_not(&f, 2, &P, buf, sizeof(buf)) == NULL, "a candidate has no why-not");
}

/* KVM halt exits are a veto, never a trigger, and only when known. */
static void test_kvm_halt_veto(void)
{
        struct adaptive_guest g;
        struct run r = {};
        struct adaptive_input in;

        setup(&g);
        CHECK(P.kvm_halt_max == 35, "default %g", P.kvm_halt_max);
        in = spinner_stacked();
        in.kvm = true;
        in.kvm_halt_hz = 40;            /* just above; its switches (2/s) say nothing */
        feed(&g, in, 3600, &r);
        CHECK(r.changes == 0 && g.mode == ADAPTIVE_KERNEL, "halts 40/s: vetoed, %u changes", r.changes);

        setup(&g);
        r = (struct run) {};
        in.kvm_halt_hz = 30;            /* a spinner's guest that halts now and then */
        feed(&g, in, 30, &r);
        CHECK(r.changes == 1, "halts 30/s: still a candidate");

        setup(&g);
        r = (struct run) {};
        in.kvm = false;                 /* unknown (TCG, stale): the figure is not looked at */
        in.kvm_halt_hz = 2000;
        feed(&g, in, 30, &r);
        CHECK(r.changes == 1, "no KVM counters: the /proc signals decide");

        setup(&g);
        r = (struct run) {};
        P.kvm_halt_max = 0;             /* off */
        in.kvm = true;
        feed(&g, in, 30, &r);
        CHECK(r.changes == 1, "kvm_halt_max 0: off");

        /* Not a trigger: a guest the other rules refuse stays, halting or not. */
        setup(&g);
        r = (struct run) {};
        in = spinner_stacked();
        in.stacked_samples = 2;         /* not stacked */
        in.kvm = true;
        in.kvm_halt_hz = 0;
        feed(&g, in, 3600, &r);
        CHECK(r.changes == 0, "no halts does not make a candidate");
        in = halter();                  /* blocks by its switches */
        in.kvm = true;
        in.kvm_halt_hz = 0;
        feed(&g, in, 3600, &r);
        CHECK(r.changes == 0, "KVM saying no halts does not overrule the voluntary switches");
}

/* Rule 2, kept: harm falls and CPU share holds -> the mode stays, one change in an hour. */
static void test_trial_kept_no_flapping(void)
{
        struct adaptive_guest g;
        struct run r = {};

        setup(&g);
        feed(&g, spinner_stacked(), 30, &r);
        CHECK(g.mode == ADAPTIVE_SPREAD, "intervened");
        feed(&g, spinner_spread(1.0), 35, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_KEPT] == 1, "trial kept after settle + trial");
        CHECK(r.last.before.seconds == 30 && r.last.before.harm > r.last.now.harm, "before/after figures");
        CHECK(strstr(r.last.text, "before 30s"), "text carries the baseline: %s", r.last.text);
        feed(&g, spinner_spread(1.0), 3600 - 65, &r);
        CHECK(r.changes == 1 && g.mode == ADAPTIVE_SPREAD, "steady hour: %u changes", r.changes);
}

/* Rule 2, failed: harm falls but the CPU share falls too -> back, held off 10 min. */
static void test_trial_share_fell(void)
{
        struct adaptive_guest g;
        struct run r = {};

        setup(&g);
        feed(&g, spinner_stacked(), 30, &r);
        feed(&g, spinner_spread(0.80), 35, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_FAILED] == 1 && g.mode == ADAPTIVE_KERNEL, "reverted");
        CHECK(strcmp(r.last.reason, "cpu-share-fell") == 0, "reason %s", r.last.reason);
        CHECK(r.last.holdoff_until_ns == now + P.holdoff_ns, "hold-off announced");
}

/* The CPU-share guard against the fair share: falling towards it is no
 * harm, below it is; and a guest may not gain at the other guests' cost. */
/* A fresh guest: a stacked window of @before, then @after for the trial. */
static void trial_of(struct adaptive_guest *g, struct adaptive_input before, struct adaptive_input after, struct run *r)
{
        setup(g);
        *r = (struct run){};
        feed(g, before, 30, r);
        feed(g, after, 35, r);
}

static void test_trial_fair_share(void)
{
        struct adaptive_guest g;
        struct run r;
        struct adaptive_input before = spinner_stacked(), after = spinner_spread(0.97);

        /* The kernel gave it 1.1 CPUs of a fair 1.0: 0.97 is kept. */
        before.cpu_share = 1.1;
        before.fair_share = after.fair_share = 1.0;
        trial_of(&g, before, after, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_KEPT] == 1 && g.mode == ADAPTIVE_SPREAD, "towards its fair share: kept (%s)",
              r.last.reason);
        CHECK(strstr(r.last.text, ", fair share 1.00") != NULL, "text: %s", r.last.text);

        /* Without a fair share the old guard: 0.97 < 1.1 x 0.95. */
        before.fair_share = after.fair_share = 0;
        trial_of(&g, before, after, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_FAILED] == 1 && strcmp(r.last.reason, "cpu-share-fell") == 0,
              "no fair share known: %s", r.last.reason);

        /* Below the fair share: fails even though the share was less before. */
        before.cpu_share = 0.9;
        before.fair_share = after.fair_share = 1.0;
        after.cpu_share = 0.85;
        trial_of(&g, before, after, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_FAILED] == 1 && strcmp(r.last.reason, "cpu-share-fell") == 0,
              "0.85 < 0.9 x 0.95: %s", r.last.reason);

        /* The other guests: 1.0 of their fair share before, 0.93 on trial -> back. */
        before = spinner_stacked();
        after = spinner_spread(1.0);
        before.others_share = before.others_fair = 1.0;
        after.others_share = 0.93;
        after.others_fair = 1.0;
        trial_of(&g, before, after, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_FAILED] == 1 && strcmp(r.last.reason, "others-share-fell") == 0,
              "the others lost 7%%: %s", r.last.reason);
        CHECK(strstr(r.last.text, "other guests 0.93 of their fair share") != NULL, "text: %s", r.last.text);

        /* 0.96 of it is within the 5%; and a neighbour that had 1.2 of its
         * fair share may fall to 0.96 (the floor is the fair share). */
        after.others_share = 0.96;
        trial_of(&g, before, after, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_KEPT] == 1, "the others at 0.96: kept (%s)", r.last.reason);
        before.others_share = 1.2;
        trial_of(&g, before, after, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_KEPT] == 1, "from 1.2 to 0.96 of fair: kept (%s)", r.last.reason);

        /* Nobody else before or after: nothing to judge. */
        after.others_share = after.others_fair = 0;
        trial_of(&g, before, after, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_KEPT] == 1, "the others left: kept (%s)", r.last.reason);
}

static void test_fair_shares(void)
{
        double fair[3];

        CHECK(adaptive_fair_shares((double[]){ 2, 2 }, (double[]){ 2, 2 }, 2, 2, fair) == 0 &&
              fabs(fair[0] - 1) < 1e-12 && fabs(fair[1] - 1) < 1e-12, "two spinners on two CPUs: 1 each");
        CHECK(adaptive_fair_shares((double[]){ 0.3, 2, 2 }, (double[]){ 2, 2, 2 }, 3, 2, fair) == 0 &&
              fabs(fair[0] - 0.3) < 1e-12 && fabs(fair[1] - 0.85) < 1e-12 && fabs(fair[2] - 0.85) < 1e-12,
              "a light guest gets what it wants, the rest share: %g %g %g", fair[0], fair[1], fair[2]);
        CHECK(adaptive_fair_shares((double[]){ 0.5, 0.5 }, (double[]){ 2, 2 }, 2, 2, fair) == 0 &&
              fair[0] == 0.5 && fair[1] == 0.5, "no contention: the demand");
        CHECK(adaptive_fair_shares((double[]){ 4, 2 }, (double[]){ 4, 2 }, 2, 2, fair) == 0 &&
              fabs(fair[0] - 4.0 / 3) < 1e-12 && fabs(fair[1] - 2.0 / 3) < 1e-12, "by vCPUs: %g %g", fair[0],
              fair[1]);
        CHECK(adaptive_fair_shares((double[]){ 2, 2, 2 }, (double[]){ 2, 2, 2 }, 3, 2, fair) == 0 &&
              fabs(fair[0] - 2.0 / 3) < 1e-12, "three on two CPUs: 2/3");
        CHECK(adaptive_fair_shares(NULL, NULL, 0, 2, fair) == 0, "no guests");
        CHECK(adaptive_fair_shares((double[]){ 1 }, (double[]){ 0 }, 1, 2, fair) == -EINVAL, "weight 0");
        CHECK(adaptive_fair_shares((double[]){ NAN }, (double[]){ 1 }, 1, 2, fair) == -EINVAL, "NaN demand");
        CHECK(adaptive_fair_shares((double[]){ 1 }, (double[]){ 1 }, 1, -1, fair) == -EINVAL, "negative capacity");
}

/*
 * Rule 2 and 3 against mode_voluntary_max: siblings that run together block
 * more than the candidate bound allows (co-scheduled TCG spinners 73-133/s,
 * run logs of bench/results/auto-a-ticket2-20261201).  That keeps the trial
 * and the mode for an hour; blocking beyond the mode's bound (PAUSE
 * spinners, most likely on QEMU's big lock, 161-222/s) fails the trial.
 */
static void test_trial_blocking(void)
{
        struct adaptive_guest g;
        struct run r = {};
        struct adaptive_input in;

        setup(&g);
        feed(&g, spinner_stacked(), 30, &r);
        in = spinner_spread(1.0);
        in.voluntary_hz = 130;
        feed(&g, in, 35, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_KEPT] == 1, "130/s in the trial: kept");
        feed(&g, in, 3600, &r);
        CHECK(r.changes == 1 && g.mode == ADAPTIVE_SPREAD, "an hour at 130/s: %u changes, mode %s", r.changes,
              adaptive_mode_to_string(g.mode));

        setup(&g);
        r = (struct run) {};
        feed(&g, spinner_stacked(), 30, &r);
        in.voluntary_hz = 200;
        feed(&g, in, 5 + 14, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_FAILED] == 0, "200/s for 14 s of a 30 s trial: no verdict yet");
        feed(&g, in, 1, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_FAILED] == 1 && g.mode == ADAPTIVE_KERNEL,
              "200/s for half the trial: reverted at once");
        CHECK(strcmp(r.last.reason, "blocking-rose") == 0 && r.last.now.seconds == 15, "reason %s after %.0f s",
              r.last.reason, r.last.now.seconds);
        CHECK(g.holdoff_until_ns[ADAPTIVE_SPREAD] == now + P.holdoff_ns, "spread held off");

        /* Blocking is the one verdict that comes early: a CPU share that
         * fell over the first half but recovers is judged on the whole trial. */
        setup(&g);
        r = (struct run) {};
        feed(&g, spinner_stacked(), 30, &r);
        feed(&g, spinner_spread(0.8), 5 + 15, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_FAILED] == 0, "share down for half the trial: no verdict yet");
        feed(&g, spinner_spread(1.2), 15, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_KEPT] == 1 && g.mode == ADAPTIVE_SPREAD,
              "share back over the whole trial: kept (%s)", r.last.text);

        /* Blocking that rises only in the second half: judged at the end. */
        setup(&g);
        r = (struct run) {};
        feed(&g, spinner_stacked(), 30, &r);
        in = spinner_spread(1.0);
        in.voluntary_hz = 100;
        feed(&g, in, 5 + 15, &r);
        in.voluntary_hz = 220;
        feed(&g, in, 14, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_FAILED] == 0, "over the bound after half the trial, not yet the whole trial: no verdict");
        feed(&g, in, 1, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_FAILED] == 1 && strcmp(r.last.reason, "blocking-rose") == 0 &&
              r.last.now.seconds == 30, "160/s over the whole trial: %s", r.last.text);

        /* A kept mode whose vCPUs start blocking beyond the bound: back after the dwell. */
        setup(&g);
        r = (struct run) {};
        feed(&g, spinner_stacked(), 30, &r);
        in.voluntary_hz = 20;
        feed(&g, in, 35, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_KEPT] == 1, "20/s: kept");
        in.voluntary_hz = 300;
        feed(&g, in, 600, &r);
        CHECK(g.mode == ADAPTIVE_KERNEL && r.events[ADAPTIVE_EVENT_LOAD_CHANGED] == 1,
              "300/s once kept: back to the kernel, mode %s", adaptive_mode_to_string(g.mode));

        /* 0 turns the bound off. */
        setup(&g);
        r = (struct run) {};
        P.mode_voluntary_max = 0;
        feed(&g, spinner_stacked(), 30, &r);
        in.voluntary_hz = 1000;
        feed(&g, in, 35, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_KEPT] == 1, "bound off: kept at 1000/s");
}

/*
 * Rule 2 against busy_min: spread PAUSE spinners under TCG keep their CPU
 * share and lose their stacking, yet sleep half the time on QEMU's lock
 * (bench/results/auto-a-early-20261202: busy 0.60 against 0.85-0.95
 * before, 0.2x the default's ops).  The trial fails on it; a guest that
 * stays busy is kept as before.
 */
static void test_trial_busy_fell(void)
{
        struct adaptive_guest g;
        struct run r = {};
        struct adaptive_input in;

        setup(&g);
        feed(&g, spinner_stacked(), 30, &r);
        in = spinner_spread(1.0);
        in.busy = 0.6;
        in.wait = 0.1;
        in.voluntary_hz = 10;
        feed(&g, in, 35, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_FAILED] == 1 && g.mode == ADAPTIVE_KERNEL &&
              strcmp(r.last.reason, "busy-fell") == 0, "busy 0.6 in the trial: %s", r.last.text);
        CHECK(g.holdoff_until_ns[ADAPTIVE_SPREAD] > now, "spread held off");
        /* Judged at half of the trial, as blocking is. */
        uint64_t at = (uint64_t)((P.settle_s + P.trial_s / 2) * SEC);
        CHECK(r.changes == 2 && r.last_change_at[1] - r.last_change_at[0] == at,
              "busy-fell %llu s after the change, expected %llu", (unsigned long long)((r.last_change_at[1] -
              r.last_change_at[0]) / SEC), (unsigned long long)(at / SEC));

        /* Busy over the first half, sleeping over the second: judged at the end. */
        setup(&g);
        r = (struct run) {};
        feed(&g, spinner_stacked(), 30, &r);
        struct adaptive_input busy = in;
        busy.busy = 0.85;
        feed(&g, busy, (unsigned)(P.settle_s + P.trial_s / 2), &r);
        CHECK(r.changes == 1, "busy 0.85 at half: no verdict yet");
        feed(&g, in, (unsigned)(P.trial_s / 2), &r);
        CHECK(r.changes == 2 && strcmp(r.last.reason, "busy-fell") == 0 &&
              r.last_change_at[1] - r.last_change_at[0] == (uint64_t)((P.settle_s + P.trial_s) * SEC),
              "0.85 then 0.6: busy-fell at the end (%s)", r.last.reason);

        setup(&g);
        r = (struct run) {};
        feed(&g, spinner_stacked(), 30, &r);
        in.busy = P.busy_min;
        feed(&g, in, 35, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_KEPT] == 1 && g.mode == ADAPTIVE_SPREAD, "busy at busy_min: kept (%s)",
              r.last.text);
}

/* Rule 2, failed: harm not lowered -> revert and hold-off, then no retry for 10 min. */
static void test_trial_harm_not_lowered(void)
{
        struct adaptive_guest g;
        struct run r = {};

        setup(&g);
        feed(&g, spinner_stacked(), 30, &r);
        CHECK(g.mode == ADAPTIVE_SPREAD, "intervened");
        /* Still stacked in the trial (e.g. the placement could not be applied). */
        feed(&g, spinner_stacked(), 35, &r);
        CHECK(g.mode == ADAPTIVE_KERNEL && r.events[ADAPTIVE_EVENT_TRIAL_FAILED] == 1, "reverted");
        CHECK(strcmp(r.last.reason, "harm-not-lowered") == 0, "reason %s", r.last.reason);
        uint64_t failed_at = now;
        CHECK(g.holdoff_until_ns[ADAPTIVE_SPREAD] == failed_at + P.holdoff_ns, "spread held off");

        /* The guest still looks like a candidate: no retry within the hold-off. */
        feed(&g, spinner_stacked(), 599, &r);
        CHECK(r.changes == 2, "no retry in the hold-off: %u changes", r.changes);
        CHECK(r.events[ADAPTIVE_EVENT_CANDIDATE_HELD] >= 19, "held candidates said so: %u",
              r.events[ADAPTIVE_EVENT_CANDIDATE_HELD]);
        feed(&g, spinner_stacked(), 31, &r);
        CHECK(r.changes == 3 && g.mode == ADAPTIVE_SPREAD, "retried after the hold-off: %u", r.changes);
}

/* Mode=observe: the same still-stacked guest as above is not "tried" (nothing
 * was applied): it stays in the mode it would be in, with no failed trial
 * and no hold-off, and leaves it when the load changes (rule 3). */
static void test_observe_no_trial(void)
{
        struct adaptive_guest g;
        struct run r = {};

        setup(&g);
        P.observe = true;
        feed(&g, spinner_stacked(), 30, &r);
        CHECK(g.mode == ADAPTIVE_SPREAD && r.events[ADAPTIVE_EVENT_INTERVENE] == 1, "would intervene");
        CHECK(g.phase == ADAPTIVE_STEADY, "no settle or trial: phase %s", adaptive_phase_to_string(g.phase));
        feed(&g, spinner_stacked(), 3600, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_FAILED] == 0 && r.changes == 1 && g.mode == ADAPTIVE_SPREAD,
              "an hour stacked: %u failed trials, %u changes", r.events[ADAPTIVE_EVENT_TRIAL_FAILED], r.changes);
        CHECK(g.holdoff_until_ns[ADAPTIVE_SPREAD] == 0, "nothing held off");
        feed(&g, halter(), 60, &r);
        CHECK(g.mode == ADAPTIVE_KERNEL && r.events[ADAPTIVE_EVENT_LOAD_CHANGED] == 1, "load changed: back");
}

/* Steady load that never helps: over an hour at most one intervention per 10 min. */
static void test_steady_failing_hour(void)
{
        struct adaptive_guest g;
        struct run r = {};

        setup(&g);
        feed(&g, spinner_stacked(), 3600, &r);
        unsigned interventions = r.events[ADAPTIVE_EVENT_INTERVENE];
        CHECK(interventions >= 1 && interventions <= 6, "interventions in an hour: %u", interventions);
        for (unsigned i = 2; i < r.changes && i < 64; i += 2)
                CHECK(r.last_change_at[i] - r.last_change_at[i - 2] >= P.min_dwell_ns,
                      "interventions %u and %u %llus apart", i - 2, i,
                      (unsigned long long)((r.last_change_at[i] - r.last_change_at[i - 2]) / SEC));
}

/* Noise around the thresholds does not flap a kept mode. */
static void test_noisy_steady(void)
{
        struct adaptive_guest g;
        struct run r = {};

        setup(&g);
        feed(&g, spinner_stacked(), 30, &r);
        feed(&g, spinner_spread(1.0), 35, &r);
        for (unsigned i = 0; i < 3600; i++) {
                struct adaptive_input in = spinner_spread(1.0);
                /* Every 7th interval looks idle, every 11th blocks often. */
                if (i % 7 == 0)
                        in.busy = 0.3;
                if (i % 11 == 0)
                        in.voluntary_hz = 200;      /* a window: ~20/s on average */
                feed(&g, in, 1, &r);
        }
        CHECK(r.changes == 1, "noisy hour: %u changes", r.changes);
}

/* Rule 3: the load goes away -> back to KERNEL, but only after the dwell. */
static void test_load_changed(void)
{
        struct adaptive_guest g;
        struct run r = {};
        struct adaptive_input idle = spinner_spread(0.1);

        idle.busy = 0.1;
        idle.wait = 0;
        setup(&g);
        feed(&g, spinner_stacked(), 30, &r);
        feed(&g, spinner_spread(1.0), 35, &r);
        CHECK(g.phase == ADAPTIVE_STEADY, "steady");
        feed(&g, idle, 300, &r);
        CHECK(g.mode == ADAPTIVE_SPREAD, "still spread within the dwell");
        feed(&g, idle, 300, &r);
        CHECK(g.mode == ADAPTIVE_KERNEL && r.last.event == ADAPTIVE_EVENT_LOAD_CHANGED,
              "back to the kernel after the dwell: %s", adaptive_mode_to_string(g.mode));
        CHECK(r.changes == 2, "changes %u", r.changes);
        /* And straight back is not allowed either: the dwell holds again. */
        feed(&g, spinner_stacked(), 300, &r);
        CHECK(g.mode == ADAPTIVE_KERNEL, "no re-intervention within the dwell");
}

/* Rule 4: a confined guest waits while a CPU it may not use idles -> release at once. */
static void test_work_conservation(void)
{
        struct adaptive_guest g;
        struct run r = {};

        setup(&g);
        feed(&g, spinner_stacked(), 30, &r);
        feed(&g, spinner_spread(1.0), 35, &r);
        CHECK(g.mode == ADAPTIVE_SPREAD, "spread and kept");

        struct adaptive_input waste = spinner_spread(1.0);
        waste.idle_forbidden = 0.9;
        feed(&g, waste, 2, &r);
        CHECK(g.mode == ADAPTIVE_SPREAD, "two intervals are not yet a pattern");
        feed(&g, waste, 1, &r);
        CHECK(g.mode == ADAPTIVE_KERNEL && r.last.event == ADAPTIVE_EVENT_RELEASE, "released: %s",
              adaptive_event_to_string(r.last.event));
        CHECK(strcmp(r.last.reason, "idle-cpu-while-waiting") == 0, "reason %s", r.last.reason);
        CHECK(r.last.now.idle_forbidden == 0.9 && r.last.now.wait == 0.5, "interval figures");
        CHECK(g.holdoff_until_ns[ADAPTIVE_SPREAD] == now + P.holdoff_ns, "spread held off");

        /* Within the dwell too: a release does not wait 10 min. */
        setup(&g);
        r = (struct run) {};
        feed(&g, spinner_stacked(), 30, &r);
        feed(&g, waste, 3, &r);
        CHECK(g.mode == ADAPTIVE_KERNEL && r.changes == 2, "released during settle");

        /* A KERNEL-mode guest in narrowed lanes: release says widen, no mode change. */
        setup(&g);
        r = (struct run) {};
        struct adaptive_input lanes = halter();
        lanes.confined = true;
        lanes.idle_forbidden = 1.0;
        feed(&g, lanes, 3, &r);
        CHECK(r.events[ADAPTIVE_EVENT_RELEASE] == 1 && r.changes == 0, "widen lanes");

        /* Not confined, or no wait: nothing to release. */
        setup(&g);
        r = (struct run) {};
        struct adaptive_input free_guest = halter();
        free_guest.idle_forbidden = 1.0;
        feed(&g, free_guest, 100, &r);
        CHECK(r.events[ADAPTIVE_EVENT_RELEASE] == 0, "unconfined guest");
        setup(&g);
        r = (struct run) {};
        feed(&g, spinner_stacked(), 30, &r);
        struct adaptive_input nowait = spinner_spread(1.0);
        nowait.wait = 0.01;
        nowait.idle_forbidden = 1.0;
        feed(&g, nowait, 100, &r);
        CHECK(r.events[ADAPTIVE_EVENT_RELEASE] == 0, "idle CPU, but nobody waits");
}

static void test_cosched_then_spread(void)
{
        struct adaptive_guest g;
        struct run r = {};

        setup(&g);
        P.cosched_available = true;
        feed(&g, spinner_stacked(), 30, &r);
        CHECK(g.mode == ADAPTIVE_COSCHED, "cosched first");
        feed(&g, spinner_spread(0.5), 35, &r);
        CHECK(g.mode == ADAPTIVE_KERNEL, "cosched cost CPU share: back");
        CHECK(adaptive_target(&g, &P, now) == ADAPTIVE_SPREAD, "spread next");
        /* The next try waits for the dwell, then takes spread. */
        feed(&g, spinner_stacked(), 600, &r);
        CHECK(g.mode == ADAPTIVE_SPREAD, "spread after the dwell: %s", adaptive_mode_to_string(g.mode));
        CHECK(r.last_change_at[2] - r.last_change_at[0] >= P.min_dwell_ns, "dwell between interventions");
}

/* A co-scheduled guest with nobody to take turns with has no change to
 * judge: its trial waits for a partner; after a window alone it takes
 * spread (held off: the kernel), holding co-scheduling off for nothing. */
static void test_cosched_alone(void)
{
        struct adaptive_guest g;
        struct run r = {};
        struct adaptive_input alone = spinner_stacked();

        alone.cosched_alone = true;
        setup(&g);
        P.cosched_available = true;
        feed(&g, spinner_stacked(), 30, &r);
        CHECK(g.mode == ADAPTIVE_COSCHED, "cosched: %s", adaptive_mode_to_string(g.mode));
        /* Still stacked, as alone it must be: judged, this would fail. */
        feed(&g, alone, 20, &r);
        CHECK(g.mode == ADAPTIVE_COSCHED && g.phase == ADAPTIVE_SETTLE && r.events[ADAPTIVE_EVENT_TRIAL_FAILED] == 0,
              "alone for 20 s: waiting, %s %s", adaptive_mode_to_string(g.mode), adaptive_phase_to_string(g.phase));
        /* The partner comes: settle (5 s) and trial (30 s) from then. */
        feed(&g, spinner_spread(1.0), 34, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_KEPT] == 0, "no verdict before settle + trial from the partner's arrival");
        feed(&g, spinner_spread(1.0), 1, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_KEPT] == 1 && g.mode == ADAPTIVE_COSCHED,
              "kept on the change it judged: %s", r.last.text);

        /* Nobody comes: spread after a window alone, then its own trial. */
        setup(&g);
        P.cosched_available = true;
        r = (struct run) {};
        feed(&g, spinner_stacked(), 30, &r);
        feed(&g, alone, 29, &r);
        CHECK(g.mode == ADAPTIVE_COSCHED && r.changes == 1, "alone 29 s: still waiting");
        feed(&g, alone, 1, &r);
        CHECK(g.mode == ADAPTIVE_SPREAD && r.last.event == ADAPTIVE_EVENT_INTERVENE &&
              strcmp(r.last.reason, "no-partner") == 0, "no partner: %s", r.last.text);
        CHECK(g.holdoff_until_ns[ADAPTIVE_COSCHED] == 0, "co-scheduling is not held off: it was never tried");
        CHECK(strstr(r.last.text, "cosched -> spread (no-partner)") && strstr(r.last.text, "before 30s"),
              "text: %s", r.last.text);
        feed(&g, spinner_spread(1.0), 35, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_KEPT] == 1 && g.mode == ADAPTIVE_SPREAD, "spread kept: %s", r.last.text);

        /* The partner leaves a quarter into the trial they started
         * together (its own, a second ahead, failed early on blocking):
         * judged on what was measured with it. */
        setup(&g);
        P.cosched_available = true;
        r = (struct run) {};
        struct adaptive_input together = spinner_spread(1.0);
        together.voluntary_hz = 200;
        feed(&g, spinner_stacked(), 30, &r);
        feed(&g, together, 5 + 7, &r);
        feed(&g, alone, 1, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_FAILED] == 0 && g.mode == ADAPTIVE_COSCHED,
              "partner gone after 7 s of a 30 s trial: waits");
        setup(&g);
        P.cosched_available = true;
        r = (struct run) {};
        feed(&g, spinner_stacked(), 30, &r);
        feed(&g, together, 5 + 8, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_FAILED] == 0, "8 s of a 30 s trial at 200/s: no verdict yet");
        feed(&g, alone, 1, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_FAILED] == 1 && g.mode == ADAPTIVE_KERNEL &&
              strcmp(r.last.reason, "blocking-rose") == 0 && r.last.now.seconds == 8,
              "partner gone after 8 s of trial: judged on them: %s", r.last.text);
        CHECK(g.holdoff_until_ns[ADAPTIVE_COSCHED] > now, "co-scheduling held off");

        /* Kept, then the partner leaves: spread once the dwell has passed. */
        setup(&g);
        P.cosched_available = true;
        r = (struct run) {};
        feed(&g, spinner_stacked(), 30, &r);
        feed(&g, spinner_spread(1.0), 35, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_KEPT] == 1 && g.mode == ADAPTIVE_COSCHED, "kept with a partner");
        feed(&g, alone, 60, &r);
        CHECK(g.mode == ADAPTIVE_COSCHED && r.changes == 1, "partner gone, within the dwell: waits (%s)",
              adaptive_mode_to_string(g.mode));
        for (int i = 0; i < 600 && g.mode == ADAPTIVE_COSCHED; i++)
                feed(&g, alone, 1, &r);
        CHECK(g.mode == ADAPTIVE_SPREAD && r.changes == 2 && strcmp(r.last.reason, "no-partner") == 0 &&
              r.last.before.seconds == 30, "partner gone, after the dwell: %s", r.last.text);
        CHECK(r.last_change_at[1] - r.last_change_at[0] >= P.min_dwell_ns, "not within the dwell");
        feed(&g, spinner_spread(1.0), 35, &r);
        CHECK(r.events[ADAPTIVE_EVENT_TRIAL_KEPT] == 2 && g.mode == ADAPTIVE_SPREAD, "spread kept: %s", r.last.text);

        /* Kept, and a partner that leaves for less than a window changes nothing. */
        setup(&g);
        P.cosched_available = true;
        r = (struct run) {};
        feed(&g, spinner_stacked(), 30, &r);
        feed(&g, spinner_spread(1.0), 35, &r);
        for (int i = 0; i < 60; i++) {
                feed(&g, alone, 20, &r);
                feed(&g, spinner_spread(1.0), 20, &r);
        }
        CHECK(g.mode == ADAPTIVE_COSCHED && r.changes == 1, "a partner away 20 s at a time for 40 min: %u changes",
              r.changes);

        /* Spread held off too: back to the kernel. */
        setup(&g);
        P.cosched_available = true;
        r = (struct run) {};
        feed(&g, spinner_stacked(), 30, &r);
        g.holdoff_until_ns[ADAPTIVE_SPREAD] = now + P.holdoff_ns;
        feed(&g, alone, 30, &r);
        CHECK(g.mode == ADAPTIVE_KERNEL && r.last.event == ADAPTIVE_EVENT_LOAD_CHANGED &&
              g.phase == ADAPTIVE_WATCH, "no partner, spread held off: %s", r.last.text);
}

static void test_bad_input(void)
{
        struct adaptive_guest g;
        struct adaptive_decision d;
        struct adaptive_input in = spinner_stacked();

        setup(&g);
        in.now_ns = now;
        in.busy = NAN;
        CHECK(adaptive_step(&g, &P, &in, &d) == -EINVAL, "NaN");
        in = spinner_stacked();
        in.now_ns = now;
        in.stacked_samples = 30;
        CHECK(adaptive_step(&g, &P, &in, &d) == -EINVAL, "stacked > runnable");
        in = spinner_stacked();
        in.now_ns = now;
        in.dt_s = 0;
        CHECK(adaptive_step(&g, &P, &in, &d) == 0 && d.event == ADAPTIVE_EVENT_NONE, "no time");
        CHECK(g.acc.seconds == 0, "nothing accumulated");
}

/* The chance figure: README's arithmetic, and a candidate must beat it. */
static void test_chance(void)
{
        struct adaptive_guest g;
        struct run r = {};
        struct adaptive_input in = spinner_stacked();

        CHECK(fabs(adaptive_stacked_chance(4, 2, 2) - 1.0 / 3) < 1e-12, "2 x 2 on 2 CPUs: 1/3");
        CHECK(fabs(adaptive_stacked_chance(6, 2, 2) - 0.4) < 1e-12, "3 x 2 on 2 CPUs: 2/5");
        CHECK(adaptive_stacked_chance(2, 2, 2) == 0 && adaptive_stacked_chance(8, 64, 4) == 0, "room for all");
        CHECK(adaptive_stacked_chance(6, 2, 1) == 0, "no sibling");
        /* 4 siblings among 12 tasks on 4 CPUs: p = 2/11, 1 - (9/11)^3. */
        CHECK(fabs(adaptive_stacked_chance(12, 4, 4) - (1 - pow(9.0 / 11, 3))) < 1e-12, "4 siblings");

        /* 0.70 stacked on a host where chance alone gives 0.6: not a candidate. */
        setup(&g);
        in.stacked_chance = 0.6;
        feed(&g, in, 3600, &r);
        CHECK(r.changes == 0, "stacking no worse than chance: %u", r.changes);
        setup(&g);
        in.stacked_chance = 0.4;
        feed(&g, in, 30, &r);
        CHECK(r.changes == 1 && strstr(r.last.text, "chance 0.40"), "well above chance: %s", r.last.text);

        /* The threshold on effbench's basis (stacked / all samples), when set. */
        setup(&g);
        r = (struct run) {};
        P.stacked_all_min = 0.5;
        P.runnable_min = 0;             /* this one on its own */
        in = spinner_stacked();
        in.samples = 40;                /* runnable half the time: 14/40 = 0.35 stacked of all */
        feed(&g, in, 3600, &r);
        CHECK(r.changes == 0, "stacked_all 0.35 < 0.5: %u", r.changes);
        setup(&g);
        P.stacked_all_min = 0.5;
        in.samples = 20;                /* always runnable: 0.70 */
        feed(&g, in, 30, &r);
        CHECK(g.mode == ADAPTIVE_SPREAD && fabs(r.last.now.stacked_all - 0.7) < 1e-12 &&
              r.last.now.runnable_share == 1, "stacked_all %g", r.last.now.stacked_all);
}

/* KVM's directed-yield rate joins the harm when weighted. */
static void test_kvm_harm(void)
{
        struct adaptive_figures f = { .wait = 0.5, .stacked = 0.5, .kvm = true, .kvm_yield_hz = 100 };

        adaptive_params_default(&P);
        CHECK(adaptive_harm(&f, &P) == 0.25, "weight 0: %g", adaptive_harm(&f, &P));
        P.yield_weight = 0.001;
        CHECK(fabs(adaptive_harm(&f, &P) - 0.35) < 1e-12, "weighted: %g", adaptive_harm(&f, &P));
}

/* From per-vCPU samples to one interval: means, confinement, idle CPUs a waiting vCPU may not use. */
static void test_input_build(void)
{
        hwloc_bitmap_t allowed = hwloc_bitmap_alloc(), cpu0 = hwloc_bitmap_alloc(), cpu1 = hwloc_bitmap_alloc();
        double idle[4] = { 0.0, 0.25, 0.5, 0.75 };      /* CPU 3 is outside the guest's set */
        struct adaptive_input in;

        adaptive_params_default(&P);
        hwloc_bitmap_set_range(allowed, 0, 2);
        hwloc_bitmap_set(cpu0, 0);
        hwloc_bitmap_set(cpu1, 1);
        struct adaptive_vcpu_sample v[2] = {
                { .util = 0.5, .wait = 0.4, .voluntary_hz = 10, .involuntary_hz = 100, .cpus = cpu0 },
                { .util = 0.3, .wait = 0.01, .voluntary_hz = 30, .involuntary_hz = 300, .cpus = cpu1 },
        };
        struct adaptive_guest_sample gs = {
                .now_ns = 5 * SEC, .dt_s = 1, .vcpus = v, .n_vcpus = 2, .runnable_samples = 20,
                .stacked_samples = 3, .allowed = allowed, .cpu_idle = idle, .n_cpus = 4,
        };
        CHECK(adaptive_input_build(&gs, &P, &in) == 0, "build");
        CHECK(fabs(in.cpu_share - 0.8) < 1e-12 && fabs(in.busy - 0.605) < 1e-12 && fabs(in.wait - 0.205) < 1e-12,
              "means: %g %g %g", in.cpu_share, in.busy, in.wait);
        CHECK(in.voluntary_hz == 20 && in.involuntary_hz == 200, "rates per vCPU");
        CHECK(in.confined, "one-CPU masks inside 0-2 are confined");
        /* Only vCPU 0 waits; it may not use 1 and 2: 0.25 + 0.5.  CPU 3 is nobody's. */
        CHECK(fabs(in.idle_forbidden - 0.75) < 1e-12, "idle forbidden %g", in.idle_forbidden);
        CHECK(!in.kvm, "no KVM counters");
        CHECK(in.runnable_samples == 20 && in.stacked_samples == 3 && in.now_ns == 5 * SEC, "copied");

        /* Full masks: not confined, nothing forbidden; KVM on every vCPU: averaged. */
        v[0].cpus = allowed;
        v[1].cpus = NULL;
        v[0].kvm = v[1].kvm = true;
        v[0].kvm_halt_hz = 100;
        v[1].kvm_halt_hz = 300;
        CHECK(adaptive_input_build(&gs, &P, &in) == 0, "build");
        CHECK(!in.confined && in.idle_forbidden == 0, "free guest");
        CHECK(in.kvm && in.kvm_halt_hz == 200, "kvm halt %g", in.kvm_halt_hz);
        v[1].kvm = false;
        CHECK(adaptive_input_build(&gs, &P, &in) == 0 && !in.kvm, "KVM on one vCPU only: not used");

        CHECK(in.stacked_chance == 0, "host runnable unknown: no chance figure");
        gs.host_runnable = 6;
        CHECK(adaptive_input_build(&gs, &P, &in) == 0 && fabs(in.stacked_chance - 0.2) < 1e-12,
              "6 tasks on 3 CPUs: (2-1)/5 = %g", in.stacked_chance);

        /* A vCPU without a fresh switch rate is left out of the rates, not counted as 0. */
        v[1].switches_unknown = true;
        CHECK(adaptive_input_build(&gs, &P, &in) == 0 && !in.switches_unknown && in.voluntary_hz == 10 &&
              in.involuntary_hz == 100, "rates of the vCPU that has them: %g %g", in.voluntary_hz, in.involuntary_hz);
        v[0].switches_unknown = true;
        CHECK(adaptive_input_build(&gs, &P, &in) == 0 && in.switches_unknown && in.voluntary_hz == 0,
              "no vCPU with a rate: unknown");
        CHECK(fabs(in.busy - 0.605) < 1e-12, "the other means do not care");
        v[0].switches_unknown = v[1].switches_unknown = false;

        gs.n_vcpus = 0;
        CHECK(adaptive_input_build(&gs, &P, &in) == -EINVAL, "no vCPUs");
        hwloc_bitmap_free(allowed);
        hwloc_bitmap_free(cpu0);
        hwloc_bitmap_free(cpu1);
}

/* The daemon's timings (AutoWindowSec=10s): a guest idle for a while that
 * starts spinning is taken in within window + 2 s, the window restarting at
 * every idle interval; the steady hour that follows has at most one
 * intervention per 10 minutes. */
static void test_daemon_window(void)
{
        struct adaptive_guest g;
        struct run r = {};
        struct adaptive_input idle = spinner_stacked();

        setup(&g);
        adaptive_params_set_window(&P, 10);
        CHECK(P.window_s == 10 && P.trial_s == 10 && P.settle_s == 2, "set_window: %g %g %g", P.window_s,
              P.trial_s, P.settle_s);
        CHECK(P.holdoff_ns == 600 * SEC && P.min_dwell_ns == 600 * SEC, "hold-off and dwell stay 10 min");
        P.cosched_available = true;
        idle.busy = 0.05;
        idle.wait = 0.01;
        idle.cpu_share = 0.1;
        idle.runnable_samples = idle.stacked_samples = 0;
        feed(&g, idle, 17, &r);         /* not a multiple of the window: the load starts mid-window */
        uint64_t start = now;
        CHECK(r.changes == 0, "idle: no change");
        unsigned t = 0;
        while (g.mode == ADAPTIVE_KERNEL && t < 60) {
                feed(&g, spinner_stacked(), 1, &r);
                t++;
        }
        CHECK(g.mode == ADAPTIVE_COSCHED && t <= 12, "spinner taken in after %u s (mode %s)", t,
              adaptive_mode_to_string(g.mode));
        CHECK(r.last_change_at[0] - start <= 12 * SEC, "within 12 s of its load");
        /* An hour of the same, trial failing (harm not lowered): at most one
         * intervention per 10 minutes. */
        r = (struct run) {};
        feed(&g, spinner_stacked(), 3600, &r);
        CHECK(r.events[ADAPTIVE_EVENT_INTERVENE] <= 6, "%u interventions in an hour",
              r.events[ADAPTIVE_EVENT_INTERVENE]);
        for (unsigned i = 2; i < r.changes && i < 64; i += 2)
                CHECK(r.last_change_at[i] - r.last_change_at[i - 2] >= 600 * SEC,
                      "interventions %u and %u %llus apart", i - 2, i,
                      (unsigned long long)((r.last_change_at[i] - r.last_change_at[i - 2]) / SEC));
}

int main(void)
{
        test_defaults();
        test_candidate_intervenes();
        test_switches_unknown();
        test_fair_shares();
        test_trial_fair_share();
        test_not_candidates();
        test_trial_kept_no_flapping();
        test_trial_share_fell();
        test_trial_blocking();
        test_trial_busy_fell();
        test_trial_harm_not_lowered();
        test_observe_no_trial();
        test_window_verdicts();
        test_steady_failing_hour();
        test_noisy_steady();
        test_load_changed();
        test_work_conservation();
        test_cosched_then_spread();
        test_cosched_alone();
        test_bad_input();
        test_kvm_harm();
        test_kvm_halt_veto();
        test_input_build();
        test_chance();
        test_daemon_window();
        return test_result();
}
