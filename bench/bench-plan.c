/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Plan time and peak memory of the placement engine for 100, 1,000 and
 * 10,000 vCPUs on 64, 256 and 1,024 PUs.  Guests of 2-16 vCPUs,
 * loads uniform in [0,1], fixed seed.
 *
 *   fresh:  every vCPU unplaced (a daemon starting on a busy host);
 *   replan: the fresh plan's masks as current masks and every load changed
 *           by up to +-0.05 (the daemon's steady state).
 *
 * Times are the median of RUNS runs of this thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID): the engine is single-threaded and pure, and on a
 * shared machine wall time mostly measures the neighbours.  Peak memory is the
 * peak of heap bytes in use during one fresh placement_plan() call, plan
 * output included, counted by wrapping malloc and friends (malloc_usable_size
 * of every block); it does not include the topology, which the caller owns.
 * Sanitizer builds have their own allocator, so there the column reads "-".
 *
 * Usage: bench-plan [RUNS]
 */
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench-args.h"
#include "placement.h"
#include "topology.h"

#ifdef BENCH_COUNT_ALLOCATIONS
/*
 * Allocation counting.  Interposing malloc needs process-wide state: these
 * two counters are the only globals, and they live in this benchmark only.
 */
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);
extern void __libc_free(void *p);

static long long heap_in_use, heap_peak;

static void *counted(void *p)
{
        if (p) {
                heap_in_use += (long long)malloc_usable_size(p);
                if (heap_in_use > heap_peak)
                        heap_peak = heap_in_use;
        }
        return p;
}

void *malloc(size_t n)
{
        return counted(__libc_malloc(n));
}

void *calloc(size_t n, size_t size)
{
        return counted(__libc_calloc(n, size));
}

void *realloc(void *p, size_t n)
{
        long long old = p ? (long long)malloc_usable_size(p) : 0;
        void *q = __libc_realloc(p, n);

        if (q || n == 0)
                heap_in_use -= old;
        return counted(q);
}

void free(void *p)
{
        if (p)
                heap_in_use -= (long long)malloc_usable_size(p);
        __libc_free(p);
}

void *memalign(size_t align, size_t n)
{
        return counted(__libc_memalign(align, n));
}

void *aligned_alloc(size_t align, size_t n)
{
        return counted(__libc_memalign(align, n));
}

int posix_memalign(void **out, size_t align, size_t n)
{
        void *p = counted(__libc_memalign(align, n));

        if (!p)
                return ENOMEM;
        *out = p;
        return 0;
}

static void heap_reset_peak(void)
{
        heap_peak = heap_in_use;
}

static long long heap_peak_since(long long start)
{
        return heap_peak - start;
}

static long long heap_now(void)
{
        return heap_in_use;
}
#define HAVE_HEAP_COUNT 1
#else
static void heap_reset_peak(void) {}
static long long heap_peak_since(long long start) { return -1; }
static long long heap_now(void) { return 0; }
#define HAVE_HEAP_COUNT 0
#endif

#define MAX_RUNS 31

struct rng {
        uint64_t state;
};

static uint64_t rng_next(struct rng *r)
{
        r->state ^= r->state >> 12;
        r->state ^= r->state << 25;
        r->state ^= r->state >> 27;
        return r->state * 2685821657736338717ull;
}

static double rng_unit(struct rng *r)
{
        return (double)(rng_next(r) >> 11) / (double)(1ull << 53);
}

struct workload {
        size_t n_guests;
        struct guest_input *guests;
        struct vcpu_input *vcpus;
        size_t n_vcpus;
};

static void workload_done(struct workload *w)
{
        for (size_t i = 0; i < w->n_vcpus; i++)
                if (w->vcpus[i].current)
                        hwloc_bitmap_free((hwloc_bitmap_t)w->vcpus[i].current);
        free(w->guests);
        free(w->vcpus);
}

static int workload_init(struct workload *w, size_t n_vcpus, struct rng *r)
{
        *w = (struct workload){ .n_vcpus = n_vcpus };
        w->vcpus = calloc(n_vcpus, sizeof(*w->vcpus));
        w->guests = calloc(n_vcpus, sizeof(*w->guests));
        if (!w->vcpus || !w->guests)
                return -ENOMEM;
        for (size_t done = 0; done < n_vcpus;) {
                size_t n = 2 + rng_next(r) % 15;
                if (n > n_vcpus - done)
                        n = n_vcpus - done;
                struct guest_input *g = &w->guests[w->n_guests];
                *g = (struct guest_input){
                        .id = (unsigned)w->n_guests,
                        .name = "bench",
                        .policy = rng_next(r) % 5 == 0 ? POLICY_SPREAD_CORES : POLICY_SPREAD,
                        .n_vcpus = n,
                        .vcpus = &w->vcpus[done],
                };
                for (size_t j = 0; j < n; j++)
                        w->vcpus[done + j] = (struct vcpu_input){ .vcpu = (unsigned)j, .load = rng_unit(r) };
                w->n_guests++;
                done += n;
        }
        return 0;
}

/* The daemon's next round: it finds its own masks, and loads have moved a little. */
static int workload_settle(struct workload *w, const struct plan *p, struct rng *r)
{
        for (size_t i = 0; i < w->n_guests; i++)
                for (size_t j = 0; j < w->guests[i].n_vcpus; j++) {
                        struct vcpu_input *v = (struct vcpu_input *)&w->guests[i].vcpus[j];
                        v->current = hwloc_bitmap_dup(p->guests[i].vcpus[j].target);
                        if (!v->current)
                                return -ENOMEM;
                        v->load = fmin(1, fmax(0, v->load + (rng_unit(r) - 0.5) * 0.1));
                }
        return 0;
}

static double now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

struct timing {
        double median_ms;
        size_t moves;
        long long peak_bytes;
};

/* Plan @runs times; the median time, the moves and (first run) the peak heap. */
static int time_plans(const struct topology *t, hwloc_const_bitmap_t usable, const struct workload *w,
                      unsigned runs, struct timing *out, struct plan *keep)
{
        double ms[MAX_RUNS];

        for (unsigned i = 0; i < runs; i++) {
                struct plan p;
                long long start = heap_now();
                heap_reset_peak();
                double t0 = now_ms();
                int r = placement_plan(t, usable, w->guests, w->n_guests, NULL, &p);
                ms[i] = now_ms() - t0;
                if (r < 0)
                        return r;
                if (i == 0) {
                        out->peak_bytes = heap_peak_since(start);
                        out->moves = p.n_moves;
                }
                if (i == 0 && keep)
                        *keep = p;
                else
                        plan_done(&p);
        }
        qsort(ms, runs, sizeof(*ms), cmp_double);
        out->median_ms = ms[runs / 2];
        return 0;
}

static int bench_one(const struct topology *t, hwloc_const_bitmap_t usable, size_t n_vcpus, unsigned runs)
{
        struct rng r = { 0x5eedbe9c ^ n_vcpus ^ (t->n_pus << 20) };
        struct workload w;
        struct timing fresh = {}, replan = {};
        struct plan first;
        int ret = workload_init(&w, n_vcpus, &r);

        if (ret == 0)
                ret = time_plans(t, usable, &w, runs, &fresh, &first);
        if (ret == 0) {
                ret = workload_settle(&w, &first, &r);
                plan_done(&first);
        }
        if (ret == 0)
                ret = time_plans(t, usable, &w, runs, &replan, NULL);
        if (ret == 0) {
                double vlogp = (double)n_vcpus * log2((double)t->n_pus);
                printf("%5zu  %6zu  %6zu  %10.3f  %10.3f  %8zu  %9.1f  ", t->n_pus, n_vcpus, w.n_guests,
                       fresh.median_ms, replan.median_ms, replan.moves, fresh.median_ms * 1e6 / vlogp);
                if (fresh.peak_bytes >= 0)
                        printf("%9.1f\n", fresh.peak_bytes / 1024.0);
                else
                        printf("%9s\n", "-");
        }
        workload_done(&w);
        return ret;
}

int main(int argc, char **argv)
{
        static const char *const topologies[] = {
                "pack:1 l3:2 core:16 pu:2",             /* 64 PUs */
                "pack:2 numa:2 l3:2 core:16 pu:2",      /* 256 PUs */
                "pack:4 numa:2 l3:4 core:16 pu:2",      /* 1,024 PUs */
        };
        static const size_t sizes[] = { 100, 1000, 10000 };
        unsigned long runs_arg;

        if (bench_wants_help(argc, argv,
                             "Usage: bench-plan [RUNS]\n"
                             "Plan time (median of RUNS runs, default 9, thread CPU time) and peak heap of the\n"
                             "placement engine for 100, 1,000 and 10,000 vCPUs on 64, 256 and 1,024 PUs.\n"))
                return 0;
        if (argc > 2 || !bench_arg_count(argc, argv, 1, "RUNS", 9, 1, MAX_RUNS, &runs_arg)) {
                fprintf(stderr, "Try 'bench-plan --help'.\n");
                return 2;
        }
        unsigned runs = (unsigned)runs_arg;
        printf("placement_plan, median of %u runs, thread CPU time.  fresh: all vCPUs unplaced; replan: own masks adopted, loads\n"
               "changed by up to +-0.05 (moves: of the replan); ns/VlogP: fresh time / (vCPUs x log2 PUs);\n"
               "peak: heap bytes in use during one fresh plan, output included%s\n", runs,
               HAVE_HEAP_COUNT ? "" : " (not counted in sanitizer builds)");
        printf("%5s  %6s  %6s  %10s  %10s  %8s  %9s  %9s\n", "PUs", "vCPUs", "guests", "fresh ms", "replan ms",
               "moves", "ns/VlogP", "peak KiB");
        for (size_t i = 0; i < sizeof(topologies) / sizeof(*topologies); i++) {
                struct topology *t = NULL;
                hwloc_bitmap_t usable = hwloc_bitmap_alloc();
                int r = topology_load_synthetic(topologies[i], &t);
                if (r == 0)
                        r = topology_usable(t, NULL, usable);
                for (size_t j = 0; r == 0 && j < sizeof(sizes) / sizeof(*sizes); j++)
                        r = bench_one(t, usable, sizes[j], runs);
                hwloc_bitmap_free(usable);
                topology_free(t);
                if (r < 0) {
                        fprintf(stderr, "bench-plan: %s: %s\n", topologies[i], strerror(-r));
                        return 1;
                }
        }
        return 0;
}
