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
#include <stdint.h>
#include <hwloc.h>

#include "adaptive.h"
#include "topology.h"

enum placement_policy {
        POLICY_SPREAD,          /* siblings on pairwise disjoint CPUs */
        POLICY_SPREAD_CORES,    /* ... and on distinct physical cores */
        POLICY_IGNORE,          /* never moved, but its load counts */
        POLICY_AUTO,            /* per guest, guest_input.auto_mode: KERNEL and COSCHED get the
                                 * full allowed set, SPREAD is as POLICY_SPREAD (lib/adaptive.h) */
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
        PLACE_RELEASE,          /* Policy=auto, KERNEL or COSCHED mode: back to the full allowed set */
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

/*
 * One vCPU as the engine sees it: what it was measured to want, where it is,
 * and the state every move rule reads (see vcpu_demand, vcpu_dwelling,
 * vcpu_backing_off).  All-zero fields beyond the first three mean: measured,
 * never moved by us, nothing refused.
 */
struct vcpu_input {
        unsigned vcpu;                  /* the guest's vCPU number */
        double load;                    /* measured CPU use, share of one CPU in [0,1] */
        hwloc_const_bitmap_t current;   /* current affinity; NULL = unknown (all CPUs) */
        double wait;                    /* measured run-queue wait, share of one CPU in [0,1] */
        double wait_ms;                 /* run-queue wait in the last sample interval (starvation) */
        bool unsampled;                 /* no measurement yet: load and wait are ignored */
        bool boot;                      /* found when its guest started (vCPU 0 boots alone) */
        uint64_t last_move_usec;        /* params.now_usec clock of our last move of it; 0 never */
        uint64_t retry_after_usec;      /* a move of it was refused: none is planned before this */
};

struct guest_input {
        unsigned id;                    /* caller's id; carried through, unused */
        const char *name;               /* for messages only */
        enum placement_policy policy;
        /* POLICY_AUTO only: the mode the daemon decided (lib/adaptive.h).
         * ADAPTIVE_KERNEL (0, the zero value) and ADAPTIVE_COSCHED: every
         * vCPU's target is the guest's full allowed set (restriction ∩
         * usable), a move (PLACE_RELEASE) only where its mask differs, and
         * its load counts spread over that set; ADAPTIVE_SPREAD: as
         * POLICY_SPREAD. */
        enum adaptive_mode auto_mode;
        hwloc_const_bitmap_t restriction; /* CPUs the guest may use; NULL = all usable */
        size_t n_vcpus;
        const struct vcpu_input *vcpus;
};

/* Field names are the configuration's (struct config, vcpuspreadd.conf(5)). */
struct plan_params {
        /*
         * LaneWidth=: largest number of PUs in one vCPU's mask ("lane").  1
         * pins every vCPU to a single PU; 0 lets the engine choose (see
         * placement.c for the evidence behind the default).
         */
        unsigned lane_width;
        /* Re-balance only when the most loaded PU exceeds the ideal
         * (total load / PUs) by more than this (load units). */
        double imbalance_threshold;
        /* Hysteresis=: a move must gain at least this much peak load. */
        double hysteresis;
        /* MovesPerInterval=: at most this many rebalancing moves per plan;
         * 0 = unlimited.  Correctness moves (conflicts, bounds, new vCPUs)
         * are never limited. */
        unsigned moves_per_interval;
        /* MinDwellSec=: a vCPU moved less than this ago is not moved for
         * balance, unless it starves (StarvationWaitSec=; 0 = never). */
        uint64_t min_dwell_usec;
        uint64_t starvation_wait_usec;
        /* The clock of vcpu_input.last_move_usec and retry_after_usec. */
        uint64_t now_usec;
        /* Load assumed for a vCPU not measured yet, and for vCPU 0 of a
         * guest that is starting (it boots alone). */
        double unsampled_load;
        double boot_load;
};

/* Whether the engine gives @g's vCPUs the full allowed set rather than
 * disjoint ones: POLICY_AUTO in KERNEL or COSCHED mode. */
bool guest_input_whole(const struct guest_input *g);

/* The daemon's defaults; `simulate` and the daemon both start from them. */
void plan_params_default(struct plan_params *p);

/* The move rules, one function each; the engine applies them, and the
 * daemon calls them only to show what the engine used. */
/* Demand in [0,1]: use plus wait (a starved vCPU uses little but wants much),
 * or the assumed load when unsampled. */
double vcpu_demand(const struct vcpu_input *v, const struct plan_params *p);
/* Moved too recently to move for balance, and not starving. */
bool vcpu_dwelling(const struct vcpu_input *v, const struct plan_params *p);
/* A move was refused lately: the vCPU stays where it is, whatever the reason. */
bool vcpu_backing_off(const struct vcpu_input *v, const struct plan_params *p);

struct vcpu_plan {
        hwloc_bitmap_t target;          /* owned; where it is after the moves, unless @deferred */
        enum place_reason reason;       /* PLACE_NONE when target == current */
        double load;                    /* the demand the engine used (vcpu_demand) */
        /* It should move for @reason, but no order of this pass's moves gets
         * it there without stacking it on a sibling for a moment, and no free
         * CPU could hold it on the way: moves[] leaves it where it is (or on
         * its staging CPU) and the next pass tries again.  @holding: it stays because it backs off
         * after a refused move (vcpu_backing_off). */
        bool deferred;
        bool holding;
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
        hwloc_const_bitmap_t from;      /* borrowed from the input or the plan (may be NULL) */
        hwloc_const_bitmap_t to;        /* borrowed from the plan */
        enum place_reason reason;
        /* A step on the way: @to is a CPU no sibling holds before or after,
         * where the vCPU waits so that a cycle of moves (a swap) can go on;
         * a later move takes it to its target. */
        bool staging;
};

struct plan {
        size_t n_guests;
        struct guest_plan *guests;      /* owned */
        /* Moves in an order that is safe to apply one by one as they are:
         * no step puts two vCPUs of one guest on a common CPU they did not
         * already share (except for overcommitted guests, whose vCPUs share
         * CPUs anyway).  The caller filters nothing. */
        size_t n_moves;
        struct plan_move *moves;        /* owned */
        /* Cycles broken through a free CPU (staging moves), and vCPUs
         * deferred because no free CPU was there. */
        size_t n_staged, n_deferred;
        size_t n_staging_sets;
        hwloc_bitmap_t *staging_sets;   /* owned: the staging moves' @to */
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
