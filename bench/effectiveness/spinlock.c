/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * spinlock: threads on different vCPUs of the guest contend on one
 * user-space test-and-test-and-set spinlock.  This is the seed mail's
 * lock-holder preemption: when the host preempts the vCPU that holds the
 * lock, the vCPUs waiting for it spin until the holder runs again.  When the
 * host stacks sibling vCPUs on one CPU, the holder and the waiter never run
 * at the same time, so every preemption inside the critical section costs
 * the waiter the rest of its time slice.
 *
 *   spinlock plain|pause|ticket WARMUP_S WINDOW_S COOLDOWN_S [CS_ITERS [OUT_ITERS]]
 *
 * plain: the waiter spins with a plain load loop (no PAUSE instruction);
 * pause: the same loop with PAUSE in it (what every real spinlock does on x86,
 *        and what KVM's pause-loop exiting catches);
 * ticket: a fair (FIFO) ticket lock, waiting with a plain load loop: the
 *        kind of lock a guest kernel takes (ticket and queued spinlocks are
 *        fair).  A preempted waiter whose turn has come stalls every thread
 *        behind it, and the holder's successor too, so lock-holder *and*
 *        lock-waiter preemption cost here, not only the former.
 *
 * One thread per online guest CPU, thread i pinned to guest CPU i.  A thread
 * takes the lock, does CS_ITERS steps of work on shared data (the critical
 * section), drops it, does OUT_ITERS steps of private work and starts over.
 * One op = one lock acquisition.  Runs the load for WARMUP_S seconds, counts
 * the acquisitions in the next WINDOW_S seconds (guest CLOCK_MONOTONIC),
 * prints "ops=N window_s=W spins=S" (S: load-loop iterations spent waiting in
 * the window, all threads) as soon as the window closes, keeps the load up
 * for COOLDOWN_S more seconds and exits.
 *
 * Built with gcc -static so that the initramfs needs no shared libraries.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SHARED_WORDS 64

static _Alignas(64) atomic_int lock;
static _Alignas(64) atomic_uint ticket_next;
static _Alignas(64) atomic_uint ticket_serving;
static int use_ticket;
static _Alignas(64) volatile uint64_t shared[SHARED_WORDS];
static atomic_int stop;
static int use_pause;
static long cs_iters = 2000, out_iters = 2000;

struct worker {
        _Alignas(64) atomic_ulong acquisitions;
        atomic_ulong spins;
        int cpu;
        pthread_t thread;
};

static void pin_self(int cpu)
{
        cpu_set_t set;

        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        /* Failure only weakens the load (threads may share a vCPU): keep going. */
        (void) sched_setaffinity(0, sizeof(set), &set);
}

static unsigned long take(void)
{
        unsigned long spins = 0;

        if (use_ticket) {
                unsigned mine = atomic_fetch_add_explicit(&ticket_next, 1, memory_order_relaxed);
                while (atomic_load_explicit(&ticket_serving, memory_order_acquire) != mine)
                        spins++;
                return spins;
        }
        while (atomic_exchange_explicit(&lock, 1, memory_order_acquire)) {
                if (use_pause) {
                        while (atomic_load_explicit(&lock, memory_order_relaxed)) {
                                __builtin_ia32_pause();
                                spins++;
                        }
                } else {
                        while (atomic_load_explicit(&lock, memory_order_relaxed))
                                spins++;
                }
        }
        return spins;
}

static void drop(void)
{
        if (use_ticket)
                atomic_fetch_add_explicit(&ticket_serving, 1, memory_order_release);
        else
                atomic_store_explicit(&lock, 0, memory_order_release);
}

static void *work(void *arg)
{
        struct worker *w = arg;
        uint64_t local = (uint64_t) w->cpu + 1;

        pin_self(w->cpu);
        while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
                unsigned long spins = take();
                for (long i = 0; i < cs_iters; i++)
                        shared[i % SHARED_WORDS] += (uint64_t) i ^ local;
                drop();
                atomic_fetch_add_explicit(&w->acquisitions, 1, memory_order_relaxed);
                if (spins)
                        atomic_fetch_add_explicit(&w->spins, spins, memory_order_relaxed);
                for (long i = 0; i < out_iters; i++)
                        local = local * 6364136223846793005ULL + 1442695040888963407ULL;
                __asm__ volatile("" : : "r"(local));
        }
        return NULL;
}

static void totals(struct worker *ws, int n, unsigned long *acq, unsigned long *spins)
{
        *acq = *spins = 0;
        for (int i = 0; i < n; i++) {
                *acq += atomic_load(&ws[i].acquisitions);
                *spins += atomic_load(&ws[i].spins);
        }
}

static void sleep_s(double s)
{
        struct timespec ts = { .tv_sec = (time_t) s, .tv_nsec = (long) ((s - (time_t) s) * 1e9) };
        while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
                ;
}

int main(int argc, char **argv)
{
        if (argc < 5 || argc > 7 || (strcmp(argv[1], "plain") && strcmp(argv[1], "pause") && strcmp(argv[1], "ticket"))) {
                fprintf(stderr, "usage: %s plain|pause|ticket WARMUP_S WINDOW_S COOLDOWN_S [CS_ITERS [OUT_ITERS]]\n",
                        argv[0]);
                return 2;
        }
        use_pause = !strcmp(argv[1], "pause");
        use_ticket = !strcmp(argv[1], "ticket");
        double warmup = atof(argv[2]), window = atof(argv[3]), cooldown = atof(argv[4]);
        if (argc > 5)
                cs_iters = atol(argv[5]);
        if (argc > 6)
                out_iters = atol(argv[6]);

        int ncpus = (int) sysconf(_SC_NPROCESSORS_ONLN);
        if (ncpus < 1)
                ncpus = 1;
        struct worker *ws = aligned_alloc(64, sizeof(*ws) * (size_t) ncpus);
        if (!ws) {
                perror("spinlock: allocation");
                return 1;
        }
        memset(ws, 0, sizeof(*ws) * (size_t) ncpus);
        for (int i = 0; i < ncpus; i++) {
                ws[i].cpu = i;
                if (pthread_create(&ws[i].thread, NULL, work, &ws[i]) != 0) {
                        perror("spinlock: pthread_create");
                        return 1;
                }
        }

        unsigned long acq0, spins0, acq1, spins1;
        sleep_s(warmup);
        totals(ws, ncpus, &acq0, &spins0);
        sleep_s(window);
        totals(ws, ncpus, &acq1, &spins1);
        printf("ops=%lu window_s=%g spins=%lu\n", acq1 - acq0, window, spins1 - spins0);
        fflush(stdout);

        sleep_s(cooldown);
        atomic_store(&stop, 1);
        for (int i = 0; i < ncpus; i++)
                pthread_join(ws[i].thread, NULL);
        return 0;
}
