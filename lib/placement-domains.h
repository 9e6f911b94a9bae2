/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Internal to the placement engine (placement.c) and its checks
 * (placement-check.c), so that both judge locality and capacity alike.
 */

#include <stdbool.h>
#include <stddef.h>
#include <hwloc.h>

#include "placement.h"
#include "topology.h"

/* Slack when comparing sums of doubles. */
#define PLACEMENT_EPSILON 1e-9

/*
 * Locality works on maximal runs of consecutive PUs (dense order) in one NUMA
 * node, and within those in one L3 group.  hwloc numbers PUs in tree order, so
 * on real machines a run is exactly a NUMA node or an L3 group; with sub-NUMA
 * clustering (nodes inside an L3) a cache run is a node's share of its L3.
 */
struct run {
        unsigned lo, hi;        /* dense PUs [lo, hi) */
        unsigned first, end;    /* NUMA run: its cache runs [first, end) */
};

struct units {
        unsigned pus, cores;
};

struct domains {
        size_t n_pus;
        bool *usable;                   /* by dense PU */
        unsigned n_usable;
        size_t n_numa, n_cache;
        struct run *numa, *cache;
        unsigned *numa_of, *cache_of;   /* dense PU -> run */
        struct units *numa_units, *cache_units;  /* usable PUs and cores per run */
        struct units all, max_numa, max_cache;
};

static inline unsigned units_of(struct units u, bool cores)
{
        return cores ? u.cores : u.pus;
}

/* Usable PUs (and the cores they sit on) in dense PUs [lo, hi), within @allowed if not NULL. */
struct units count_units(const struct topology *t, const struct domains *d, hwloc_const_bitmap_t allowed,
                         unsigned lo, unsigned hi);

/* Returns 0, -ENOSPC when @usable holds none of the topology's PUs, or -ENOMEM. */
int domains_init(struct domains *d, const struct topology *t, hwloc_const_bitmap_t usable);
void domains_done(struct domains *d);

static inline const struct run *scope_run(const struct domains *d, enum plan_scope s, unsigned i)
{
        return s == SCOPE_L3 ? &d->cache[i] : &d->numa[i];
}

static inline size_t scope_count(const struct domains *d, enum plan_scope s)
{
        return s == SCOPE_L3 ? d->n_cache : d->n_numa;
}

/* The run at scope @s holding dense PU @p. */
static inline unsigned scope_of(const struct domains *d, enum plan_scope s, unsigned p)
{
        return s == SCOPE_L3 ? d->cache_of[p] : d->numa_of[p];
}

/* Usable (and @allowed, if not NULL) PUs and cores of run @i at scope @s. */
struct units run_units(const struct topology *t, const struct domains *d, hwloc_const_bitmap_t allowed,
                       enum plan_scope s, unsigned i);

/* What the engine and the checks both need to know about one managed guest. */
struct guest_facts {
        hwloc_bitmap_t allowed; /* usable ∩ restriction; NULL when the restriction changes nothing */
        struct units all;       /* allowed PUs and cores */
        bool core_units;        /* spread-cores, and no more vCPUs than allowed cores */
        bool overcommitted;     /* more vCPUs than allowed PUs */
        unsigned cap;           /* sibling masks one PU may carry */
        enum plan_scope fit;    /* narrowest scope with a domain that holds all its vCPUs */
};

/* Returns 0, -ENOSPC when the guest may use no usable CPU, or -ENOMEM. */
int guest_facts_init(struct guest_facts *f, const struct topology *t, const struct domains *d,
                     hwloc_const_bitmap_t usable, const struct guest_input *g);
void guest_facts_done(struct guest_facts *f);
