/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * futexpp: futex ping-pong between threads pinned to different vCPUs of the
 * guest.  Every round trip is two cross-vCPU wake-ups (a reschedule IPI each
 * when the partner vCPU is idle), which is what suffers when the host stacks
 * sibling vCPUs on one CPU: the woken vCPU cannot run until its sibling
 * yields the host CPU.
 *
 * One pair per online guest CPU; pair i runs its two threads on guest CPUs i
 * and i+1, so every vCPU hosts two threads of two different pairs.
 *
 *   futexpp WARMUP_S WINDOW_S COOLDOWN_S
 *
 * Runs the load for WARMUP_S seconds, counts round trips completed during the
 * next WINDOW_S seconds (guest CLOCK_MONOTONIC), prints
 * "ops=N window_s=W" on stdout as soon as the window closes, keeps the load
 * up for COOLDOWN_S more seconds (so that the other guests' windows do not
 * end beside an idle neighbour) and exits.
 *
 * Built with gcc -static so that the initramfs needs no shared libraries.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct pair {
        _Alignas(64) atomic_uint turn;  /* 0: ping's turn, 1: pong's turn */
        _Alignas(64) atomic_ulong round_trips;
        int cpu_ping;
        int cpu_pong;
};

static atomic_int stop;

static void futex_wait(atomic_uint *word, unsigned expected)
{
        syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake(atomic_uint *word)
{
        syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void pin_self(int cpu)
{
        cpu_set_t set;

        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        /* Failure only weakens the load (threads may share a vCPU): keep going. */
        (void) sched_setaffinity(0, sizeof(set), &set);
}

/* Wait until it is my turn, hand the turn over, wake the partner. */
static void play(struct pair *p, unsigned mine, unsigned theirs, int count)
{
        while (!atomic_load(&stop)) {
                unsigned t = atomic_load(&p->turn);
                if (t != mine) {
                        futex_wait(&p->turn, t);
                        continue;
                }
                atomic_store(&p->turn, theirs);
                futex_wake(&p->turn);
                if (count)
                        atomic_fetch_add_explicit(&p->round_trips, 1, memory_order_relaxed);
        }
        /* Let a partner blocked in futex_wait see the stop flag. */
        atomic_store(&p->turn, theirs);
        futex_wake(&p->turn);
}

static void *ping(void *arg)
{
        struct pair *p = arg;
        pin_self(p->cpu_ping);
        play(p, 0, 1, 1);
        return NULL;
}

static void *pong(void *arg)
{
        struct pair *p = arg;
        pin_self(p->cpu_pong);
        play(p, 1, 0, 0);
        return NULL;
}

static unsigned long total_round_trips(struct pair *pairs, int n)
{
        unsigned long sum = 0;
        for (int i = 0; i < n; i++)
                sum += atomic_load(&pairs[i].round_trips);
        return sum;
}

static void sleep_s(double s)
{
        struct timespec ts = { .tv_sec = (time_t) s, .tv_nsec = (long) ((s - (time_t) s) * 1e9) };
        while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
                ;
}

int main(int argc, char **argv)
{
        if (argc != 4) {
                fprintf(stderr, "usage: %s WARMUP_S WINDOW_S COOLDOWN_S\n", argv[0]);
                return 2;
        }
        double warmup = atof(argv[1]), window = atof(argv[2]), cooldown = atof(argv[3]);

        int ncpus = (int) sysconf(_SC_NPROCESSORS_ONLN);
        if (ncpus < 1)
                ncpus = 1;

        struct pair *pairs = aligned_alloc(64, sizeof(*pairs) * (size_t) ncpus);
        pthread_t *threads = calloc(2 * (size_t) ncpus, sizeof(*threads));
        if (!pairs || !threads) {
                perror("futexpp: allocation");
                return 1;
        }

        for (int i = 0; i < ncpus; i++) {
                atomic_init(&pairs[i].turn, 0);
                atomic_init(&pairs[i].round_trips, 0);
                pairs[i].cpu_ping = i;
                pairs[i].cpu_pong = (i + 1) % ncpus;
                if (pthread_create(&threads[2 * i], NULL, ping, &pairs[i]) != 0 ||
                    pthread_create(&threads[2 * i + 1], NULL, pong, &pairs[i]) != 0) {
                        perror("futexpp: pthread_create");
                        return 1;
                }
        }

        sleep_s(warmup);
        unsigned long start = total_round_trips(pairs, ncpus);
        sleep_s(window);
        unsigned long end = total_round_trips(pairs, ncpus);
        printf("ops=%lu window_s=%g\n", end - start, window);
        fflush(stdout);

        sleep_s(cooldown);
        atomic_store(&stop, 1);
        for (int i = 0; i < 2 * ncpus; i++)
                pthread_join(threads[i], NULL);
        return 0;
}
