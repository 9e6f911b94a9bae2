/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Co-scheduling of gangs (the vCPU threads of one guest): at any moment at
 * most one gang is "on duty" and runs at its threads' own scheduling
 * attributes; every other gang is "off duty", demoted so that it runs only on
 * CPUs the on-duty gang leaves idle (work conservation: the kernel still
 * hands an idle CPU to an off-duty thread).  Duty rotates in gang-id order;
 * a turn lasts params.turn_us scaled by the gang's weight over the smallest
 * weight (lib/cosched-plan.h).  Running all vCPUs of a guest together is what
 * removes lock-holder preemption on spin locks without PAUSE (docs/cosched.md).
 *
 * Use from an event loop:
 *
 *     struct cosched *cs;
 *     r = cosched_new(&params, &cs);                    // -errno on failure
 *     poll on cosched_fd(cs) (POLLIN); when readable:   r = cosched_on_timer(cs);
 *     whenever guests come or go:                       r = cosched_set_gangs(cs, gangs, n);
 *     at shutdown:                                      cosched_free(cs);
 *
 * Every function returns 0 or a negative errno and logs nothing: the caller
 * logs.  A thread that vanished (ESRCH) is not an error: it is dropped from
 * its gang and counted in cosched_stats.vanished; a gang with no threads left
 * is skipped.  Every thread the component touched is given back its original
 * policy, nice value and affinity when its gang leaves the set (or the thread
 * leaves its gang) and in cosched_free(); "original" is what the thread had
 * when the component first saw it.  If the process dies without
 * cosched_free(), off-duty threads stay SCHED_IDLE (or nice 19) until someone
 * resets them.
 *
 * What won on the test bed (docs/cosched.md): lever COSCHED_LEVER_IDLE,
 * pin = true, turn_us 20000.  On a libvirt host every vCPU thread sits alone
 * in its own cpu cgroup (machine/qemu-N-NAME.libvirt-qemu/vcpuN); there a
 * thread's policy or nice only weighs against its cgroup siblings (none), so
 * the thread levers do nothing against other guests.  Give such gangs
 * .cgroup = the guest's directory (the parent of vcpuN, in the cpu
 * hierarchy) and use COSCHED_LEVER_CGROUP_IDLE; that also demotes the
 * guest's emulator and I/O threads while it is off duty (they still run on
 * idle CPUs).  Co-schedule only guests that spin: a guest whose vCPUs hand
 * work over by blocking (futex) lost 22% in the bench.
 *
 * Threads with a real-time policy (SCHED_FIFO, SCHED_RR, SCHED_DEADLINE) are
 * left alone.  With params.pin the component calls sched_setaffinity on the
 * on-duty gang (thread k to CPU k of params.cpus) and gives the others their
 * original masks back: do not combine it with another placer (vcpuspreadd's
 * spread policy) on the same threads.  Not thread-safe; one owner.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum cosched_lever {
        COSCHED_LEVER_IDLE,     /* off duty: SCHED_IDLE (weight 3), nice kept.  Default. */
        COSCHED_LEVER_NICE,     /* off duty: SCHED_OTHER at nice 19 (weight 15) */
        COSCHED_LEVER_SHARES,   /* off duty: the gang's cgroup cpu.shares (v1) / cpu.weight (v2)
                                 * at its minimum; gangs without a cgroup fall back to IDLE */
        COSCHED_LEVER_CGROUP_IDLE, /* off duty: the gang's cgroup cpu.idle = 1 (v1 and v2, 5.15+);
                                 * gangs without a cgroup fall back to IDLE */
};

struct cosched_params {
        unsigned turn_us;       /* base turn (smallest weight); 0: 20000 (20 ms) */
        unsigned max_turn_us;   /* cap on a weighted turn; 0: 8 * turn_us */
        enum cosched_lever lever;
        bool pin;               /* on duty, thread k runs on params.cpus[k % n_cpus] only */
        const int *cpus;        /* with pin: host CPUs to use (NULL: 0 .. n_cpus-1) */
        size_t n_cpus;          /* with pin; 0: the CPUs the process may use */
};

struct cosched_gang {
        uint64_t id;            /* unique; the rotation order */
        const pid_t *tids;      /* the gang's threads (copied) */
        size_t n_tids;
        unsigned weight;        /* 0: n_tids */
        const char *cgroup;     /* optional: the directory holding cpu.shares or cpu.weight
                                 * for the gang alone (COSCHED_LEVER_SHARES); NULL: none */
};

struct cosched_stats {
        uint64_t turns;         /* duty changes so far */
        uint64_t vanished;      /* threads dropped because they had gone (ESRCH) */
        uint64_t errors;        /* other failed calls (the first error is returned) */
        size_t gangs;           /* gangs in the set (with at least one thread) */
        bool have_duty;
        uint64_t duty_id;       /* with have_duty: the gang on duty now */
        uint64_t turn_ns;       /* length of the current turn */
};

struct cosched;

/* A co-scheduler with no gangs and a disarmed timerfd.  -EINVAL on bad
 * params; -errno from timerfd_create. */
int cosched_new(const struct cosched_params *params, struct cosched **out);

/* Give every thread back its original attributes, close the timerfd, free.
 * NULL is fine.  Returns nothing: what cannot be restored is gone. */
void cosched_free(struct cosched *cs);

/* The timerfd (CLOCK_MONOTONIC, nonblocking) to poll for POLLIN. */
int cosched_fd(const struct cosched *cs);

/*
 * Replace the set.  Gangs whose id is not in @gangs are restored and
 * dropped; threads no longer listed in a kept gang are restored; new threads
 * start off duty (unless their gang is on duty).  The gang on duty keeps its
 * turn if it is still in the set; otherwise the next gang's turn starts now.
 * With fewer than two gangs nobody is demoted and the timer is disarmed.
 * n = 0 restores everything.  A thread may move from one gang to another.
 * -EINVAL (set unchanged) for a repeated id or a thread listed twice;
 * -ENOMEM leaves the previous set in place.
 */
int cosched_set_gangs(struct cosched *cs, const struct cosched_gang *gangs, size_t n);

/* Call when cosched_fd() is readable: ends the current turn (off duty first,
 * so never two gangs on duty) and starts the next.  Returns 0 or the first
 * negative errno (other than ESRCH) met; the rotation goes on regardless. */
int cosched_on_timer(struct cosched *cs);

void cosched_get_stats(const struct cosched *cs, struct cosched_stats *out);
