/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The placement engine: a pure function from (topology, usable CPUs, guests
 * with their vCPUs' loads and current masks, parameters) to a target mask for
 * every vCPU and the list of moves that gets there.  No I/O, no globals: the
 * daemon, `vcpuspreadctl simulate`, the tests and the benchmark all call the
 * same function with hand-made or measured inputs.
 *
 * All masks are hwloc bitmaps of OS CPU numbers.
 */

#include <stdbool.h>
#include <stddef.h>
#include <hwloc.h>

#include "topology.h"

enum placement_policy {
        POLICY_SPREAD,          /* siblings on pairwise disjoint CPUs */
        POLICY_SPREAD_CORES,    /* ... and on distinct physical cores */
        POLICY_IGNORE,          /* never moved, but its load counts */
        _POLICY_MAX,
};

const char *placement_policy_to_string(enum placement_policy p);
/* Returns the policy or -EINVAL. */
int placement_policy_from_string(const char *s);

/* Why a vCPU is moved.  The daemon may refine PLACE_UNPLACED into new-guest
 * or hotplug, which only it can tell apart. */
enum place_reason {
        PLACE_NONE,             /* not moved */
        PLACE_UNPLACED,         /* mask was never set by us (e.g. all CPUs) */
        PLACE_SIBLING_CONFLICT, /* shared a CPU with a sibling vCPU */
        PLACE_SMT_CONFLICT,     /* shared a physical core with a sibling (spread-cores) */
        PLACE_OUT_OF_BOUNDS,    /* mask left the usable / restricted CPUs */
        PLACE_LOCALITY,         /* guest fits one NUMA node / L3 group but was split */
        PLACE_REBALANCE,        /* load moved elsewhere */
        _PLACE_REASON_MAX,
};

/* "new-guest", "sibling-conflict", ...: the VCPUSPREAD_REASON vocabulary. */
const char *place_reason_to_string(enum place_reason r);

/* The narrowest domain holding all of a guest's vCPUs (property 3). */
enum plan_scope {
        SCOPE_L3,               /* one L3 group (within one NUMA node) */
        SCOPE_NUMA,             /* one NUMA node */
        SCOPE_ANY,              /* anywhere the guest may run */
        _SCOPE_MAX,
};

/* "l3", "numa", "any". */
const char *plan_scope_to_string(enum plan_scope s);

struct vcpu_input {
        unsigned vcpu;                  /* the guest's vCPU number */
        double load;                    /* expected load in [0,1] */
        hwloc_const_bitmap_t current;   /* current affinity; NULL = unknown (all CPUs) */
};

struct guest_input {
        unsigned id;                    /* caller's id; carried through, unused */
        const char *name;               /* for messages only */
        enum placement_policy policy;
        hwloc_const_bitmap_t restriction; /* CPUs the guest may use; NULL = all usable */
        size_t n_vcpus;
        const struct vcpu_input *vcpus;
};

struct plan_params {
        /*
         * Largest number of PUs in one vCPU's mask ("lane").  1 pins every
         * vCPU to a single PU; 0 lets the engine choose (see placement.c for
         * the evidence behind the default).
         */
        unsigned lane_max;
        /* Re-balance only when the most loaded PU exceeds the ideal
         * (total load / PUs) by more than this (load units). */
        double imbalance_threshold;
        /* A move must gain at least this much peak load to be worth it. */
        double move_penalty;
        /* At most this many rebalancing moves per plan; 0 = unlimited.
         * Correctness moves (conflicts, bounds, new vCPUs) are never limited. */
        unsigned max_moves;
};

/* Defaults used by the daemon and by `simulate`. */
void plan_params_default(struct plan_params *p);

struct vcpu_plan {
        hwloc_bitmap_t target;          /* owned */
        enum place_reason reason;       /* PLACE_NONE when target == current */
};

struct guest_plan {
        size_t n_vcpus;
        struct vcpu_plan *vcpus;        /* owned, parallel to guest_input.vcpus */
        /* More vCPUs than usable PUs: masks cannot be disjoint; no PU carries
         * more than max_per_pu = ceil(vCPUs / PUs) of them.  max_per_pu is 1
         * for other managed guests, 0 for ignored ones and errors. */
        bool overcommitted;
        unsigned max_per_pu;
        /* 0, or -ENOSPC: the restriction leaves no usable CPU (guest untouched). */
        int error;
        /*
         * Where the engine keeps the guest.  @spilled: the guest fits a
         * narrower domain than @scope, but every such domain that could hold
         * it was too loaded: its average PU load with the guest added would
         * exceed ideal + largest vCPU load ("when load allows").
         */
        enum plan_scope scope;
        bool spilled;
};

struct plan_move {
        size_t guest;                   /* index into the guests array */
        size_t vcpu;                    /* index into that guest's vcpus */
        hwloc_const_bitmap_t from;      /* borrowed from the input (may be NULL) */
        hwloc_const_bitmap_t to;        /* borrowed from the plan */
        enum place_reason reason;
};

struct plan {
        size_t n_guests;
        struct guest_plan *guests;      /* owned */
        /* Moves in an order that is safe to apply one by one: no step puts
         * two vCPUs of one guest on a common CPU that the final plan keeps apart
         * (except for overcommitted guests, whose vCPUs share CPUs anyway). */
        size_t n_moves;
        struct plan_move *moves;        /* owned */
        /* Moves placed out of dependency order to break a cycle (a swap):
         * applying those may briefly put two siblings on one CPU.  The engine
         * keeps vCPUs where they are when it can, so this is normally 0. */
        size_t n_unordered;
        size_t n_pus;
        double *pu_load;                /* expected load per PU, by dense index; owned */
        double ideal_load;              /* total load / usable PUs */
};

/*
 * Compute a plan.  @params may be NULL for the defaults.  Returns 0, or a negative errno: -EINVAL for invalid input
 * (load outside [0,1], NaN), -ENOSPC when @usable is empty, -ENOMEM.
 * On success @out must be released with plan_done().
 */
int placement_plan(const struct topology *topo, hwloc_const_bitmap_t usable,
                   const struct guest_input *guests, size_t n_guests,
                   const struct plan_params *params, struct plan *out);

void plan_done(struct plan *p);

/* The properties the engine promises, checked on a finished plan. */
struct plan_checks {
        bool anti_affinity;     /* 1: siblings disjoint (or within ceil(v/PUs) when overcommitted) */
        bool smt;               /* 2: spread-cores guests avoid sharing cores when they fit */
        bool locality;          /* 3: guests that fit one NUMA node (L3 group) are kept in it;
                                 * a spilled guest within one domain at its scope */
        bool balance;           /* 4: max PU load <= ideal + largest vCPU load */
        bool bounds;            /* every managed mask is non-empty and inside usable ∩ restriction */
        double max_pu_load;
        double max_vcpu_load;
};

void placement_check(const struct topology *topo, hwloc_const_bitmap_t usable,
                     const struct guest_input *guests, size_t n_guests,
                     const struct plan *plan, struct plan_checks *out);
