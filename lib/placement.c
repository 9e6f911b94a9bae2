/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The placement engine.  One plan goes through five steps:
 *
 *  1. classify: each vCPU of a managed guest keeps its current mask when that
 *     mask is valid (set by someone, inside the guest's allowed CPUs, not
 *     colliding with a sibling kept before it); otherwise it is to be placed,
 *     and the reason is recorded.  Keeping what is valid is what lets a
 *     restarted daemon adopt the masks it finds with zero moves.
 *  2. account: loads of ignored guests and of kept vCPUs go onto the PUs.
 *  3. place: guests, heaviest first, get a domain (an L3 group, a NUMA node
 *     or everything: locality) and each vCPU still to be placed a lane (a
 *     mask) on the least-loaded PUs of that domain, disjoint from its
 *     siblings' lanes.
 *  4. rebalance: while the most loaded PU is above ideal + threshold, move
 *     the vCPU whose move lowers it most, if it gains more than hysteresis,
 *     at most moves_per_interval vCPUs that were not moving anyway and
 *     have dwelt long enough (or starve); a vCPU backing off after a refused
 *     move is not moved at all.
 *  5. emit: targets, and the moves in an order that never stacks siblings:
 *     a cycle (a swap) goes through a free CPU, or is deferred to the next
 *     pass when there is none.
 *
 * Costs, in the manner of irqbalance: a sibling on the same PU (on the same
 * core under spread-cores) is prohibitive: the PU is no candidate at all
 * (overcommitted guests: once it carries max_per_pu of them).  Sharing a core
 * with a sibling under spread ranks below every unshared core (a "tier"
 * larger than any load).  Leaving the guest's NUMA node / L3 group is only
 * allowed when no domain that fits the guest can take its load.  Entering a
 * PU that a moving sibling leaves (applying that could take a swap) costs
 * hysteresis, and a vCPU's own current PUs get it as a bonus: small costs,
 * because a swap only stacks two siblings for the moment it takes to apply,
 * while balance lasts.  A rebalancing move must lower the peak by more than
 * hysteresis.
 *
 * Cost: choosing a PU is a query on a tournament tree over the PUs
 * (loadtree.h), O(log P); a lane of w PUs costs O(w log P) to account.  A
 * guest's domain is chosen by scanning the NUMA nodes and L3 groups once,
 * O(P / PUs per L3).  Guests with a restriction cost O(P) each.
 */
#include "placement.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config-value.h"
#include "defaults.h"
#include "loadtree.h"
#include "macro.h"
#include "placement-domains.h"

static const char *const policy_names[_POLICY_MAX] = {
        [POLICY_SPREAD] = "spread",
        [POLICY_SPREAD_CORES] = "spread-cores",
        [POLICY_IGNORE] = "ignore",
        [POLICY_AUTO] = "auto",
};

const char *placement_policy_to_string(enum placement_policy p)
{
        return (unsigned)p < _POLICY_MAX ? policy_names[p] : NULL;
}

int placement_policy_from_string(const char *s)
{
        for (int i = 0; i < _POLICY_MAX; i++)
                if (strcmp(s, policy_names[i]) == 0)
                        return i;
        return -EINVAL;
}

static const char *const reason_names[_PLACE_REASON_MAX] = {
        [PLACE_NONE] = "none",
        [PLACE_UNPLACED] = "new-guest",
        [PLACE_SIBLING_CONFLICT] = "sibling-conflict",
        [PLACE_SMT_CONFLICT] = "smt-conflict",
        [PLACE_OUT_OF_BOUNDS] = "out-of-bounds",
        [PLACE_LOCALITY] = "locality",
        [PLACE_REBALANCE] = "rebalance",
        [PLACE_RELEASE] = "release",
};

const char *place_reason_to_string(enum place_reason r)
{
        return (unsigned)r < _PLACE_REASON_MAX ? reason_names[r] : NULL;
}

static const char *const scope_names[_SCOPE_MAX] = {
        [SCOPE_L3] = "l3",
        [SCOPE_NUMA] = "numa",
        [SCOPE_ANY] = "any",
};

bool guest_input_whole(const struct guest_input *g)
{
        return g->policy == POLICY_AUTO && g->auto_mode != ADAPTIVE_SPREAD;
}

const char *plan_scope_to_string(enum plan_scope s)
{
        return (unsigned)s < _SCOPE_MAX ? scope_names[s] : NULL;
}

/*
 * Lanes (property 6): the default.
 *
 * /work/shared/FACTS.md measured on this project's host: pinning each vCPU to
 * a CPU of its own ("static") gave the most throughput (172 vs 132 ops for 2
 * guests x 2 vCPUs, 299 vs 180 for 3) but was bimodal and unfair (fairness
 * 0.71 with a minimum of 0.52, and 0.34 with a minimum of 0.31), and it cost
 * a lone busy guest (98 vs 111 ops).  The default scheduler stayed fair (0.96,
 * 0.90) but two runnable siblings sat on one CPU in 28-93% of the samples.
 * What costs throughput is the stacking; what makes pinning unfair is that a
 * vCPU whose single CPU is busy with another guest has nowhere to go.
 *
 * So by default every vCPU gets a lane: a few nearby PUs (whole cores when the
 * guest has no more vCPUs than cores in its domain), disjoint from its
 * siblings' lanes.  Siblings cannot stack, and inside a lane the kernel still
 * balances as it does by default.  Lanes are an equal share of the guest's
 * domain (units / vCPUs), rounded down to a power of two so that lanes of
 * different guests nest inside each other instead of straddling, and capped
 * at AUTO_LANE_PUS: wide enough to span several cores of one L3 group, and a
 * constant bound on the engine's work per vCPU (O(lane log P)).  A lane never
 * takes in a PU that its share would lift above what the home PU alone would
 * carry (trim_lane): without that rule the random balance tests failed when a
 * lane took in a busy SMT sibling.  On a 2-PU host a 2-vCPU guest still gets
 * one PU per vCPU: disjointness leaves no choice there.
 *
 * The width is a judgement from the evidence above, not a measurement of
 * lanes themselves: the effectiveness benchmark (issue 5) should compare
 * LaneWidth= 1, 2 and auto.  lane_width = 1 gives classic pinning.
 */
#define AUTO_LANE_PUS 8u

/* vCPUs examined per rebalancing step: the heaviest movers of the hottest PU. */
#define REBALANCE_CANDIDATES 8u

/* A default from defaults.h that does not parse is a bug caught by every test. */
static uint64_t default_duration(const char *text)
{
        uint64_t usec = 0;
        int r = config_parse_duration(text, &usec);
        assert(r == 0);
        (void)r;
        return usec;
}

void plan_params_default(struct plan_params *p)
{
        /* The knobs a configuration file sets come from the one table of
         * defaults (defaults.h), parsed as the configuration parses them. */
        double hysteresis = 0;
        int r = config_parse_fraction(DEFAULT_HYSTERESIS, &hysteresis);
        assert(r == 0);
        (void)r;
        *p = (struct plan_params){
                /* DEFAULT_LANE_WIDTH is "auto": 0. */
                .lane_width = 0,
                /* A quarter of a CPU above the ideal before anything moves for balance. */
                .imbalance_threshold = 0.25,
                .hysteresis = hysteresis,
                .moves_per_interval = (unsigned)strtoul(DEFAULT_MOVES_PER_INTERVAL, NULL, 10),
                .min_dwell_usec = default_duration(DEFAULT_MIN_DWELL),
                .starvation_wait_usec = default_duration(DEFAULT_STARVATION_WAIT),
                .unsampled_load = 0.5,
                .boot_load = 1.0,
        };
}

static double clamp01(double x)
{
        return x > 1.0 ? 1.0 : x < 0.0 ? 0.0 : x;
}

/*
 * A vCPU not sampled yet: a guest that just started runs on vCPU 0 alone
 * (firmware, then the kernel until it brings up the others).  Counting every
 * vCPU as busy made the engine put the boot vCPUs of guests started together
 * on the same CPU (ties go to the lowest CPU), and their boots took half as
 * long again (measured: 12-16 s against 9 s with two guests).  Anything else
 * unknown counts as half busy until the first sample.
 */
double vcpu_demand(const struct vcpu_input *v, const struct plan_params *p)
{
        if (v->unsampled)
                return v->boot && v->vcpu == 0 ? p->boot_load : p->unsampled_load;
        return clamp01(v->load + v->wait);
}

/*
 * A vCPU moved less than MinDwellSec ago is not moved for balance, so the
 * system converges instead of chasing noise, unless it starves (its run-queue
 * wait in the last interval is over StarvationWaitSec).  Moves that fix a
 * conflict or place a new vCPU never wait.
 */
bool vcpu_dwelling(const struct vcpu_input *v, const struct plan_params *p)
{
        if (!v->last_move_usec || p->now_usec - v->last_move_usec >= p->min_dwell_usec)
                return false;
        return !(p->starvation_wait_usec && v->wait_ms * 1000.0 >= (double)p->starvation_wait_usec);
}

/* A move the kernel refused is not planned again before its retry time. */
bool vcpu_backing_off(const struct vcpu_input *v, const struct plan_params *p)
{
        return p->now_usec < v->retry_after_usec;
}

static unsigned umin(unsigned a, unsigned b)
{
        return a < b ? a : b;
}

static unsigned umax(unsigned a, unsigned b)
{
        return a > b ? a : b;
}

static unsigned pow2_floor(unsigned x)
{
        unsigned p = 1;

        while (p <= x / 2)
                p *= 2;
        return p;
}

/* ---- Engine state ---- */

struct vstate {
        const struct vcpu_input *in;
        unsigned guest;
        double load;
        size_t lane;                    /* its PUs: engine.pool[lane .. lane + lane_len) */
        unsigned lane_len;              /* 0: not placed */
        enum place_reason reason;       /* PLACE_NONE while it keeps its current mask */
        bool fixed;                     /* ignored guest or guest in error: never moved */
};

struct gstate {
        struct guest_facts f;
        size_t first;                   /* its vCPUs: engine.vs[first .. first + n) */
        unsigned n;
        double load;
        bool managed;
        bool whole;                     /* guest_input_whole(): every vCPU gets the allowed set */
        int error;
        enum plan_scope scope;
        unsigned domain;                /* run index at @scope */
        bool spilled;
};

/* Scratch marks of the guest being placed. */
enum {
        PU_TOUCHED = 1 << 0,            /* on the list of marks to undo */
        PU_OUTSIDE = 1 << 1,            /* outside the guest's restriction */
        PU_OWN = 1 << 2,                /* in the current mask of the vCPU being placed */
};

struct order {
        double key;
        unsigned index;
};

struct engine {
        const struct topology *topo;
        struct plan_params params;
        struct domains d;
        hwloc_bitmap_t usable_set;
        hwloc_bitmap_t tmp;
        unsigned smt;                   /* most PUs on one core */
        unsigned lane_cap;              /* most PUs in one lane */

        double *load;                   /* by dense PU, without base_load */
        double base_load;               /* spread evenly over every usable PU */
        double *numa_load, *cache_load; /* sums of load[] per run */
        double *own_numa, *own_cache;   /* the share of the guest being placed */
        double total, max_vcpu, ideal, bound, tier;
        struct loadtree tree;
        bool *frozen;                   /* by PU, while rebalancing: no move can cool it */

        const struct gstate *active;    /* guest whose siblings are marked, or NULL */
        unsigned *sib;                  /* by PU: sibling lanes covering it */
        unsigned *core_sib;             /* by core: sibling lanes touching it */
        unsigned *vacate;               /* by PU: moving siblings' current masks covering it */
        uint8_t *flags;                 /* by PU: PU_* */
        unsigned *touched;
        size_t n_touched;
        unsigned *lane_buf, *best_buf;  /* lane_cap each */
        struct order *order_buf;        /* the largest guest's vCPU count */

        const struct guest_input *in;
        size_t n_guests, n_vs;
        struct gstate *gs;
        struct vstate *vs;
        unsigned *pool;                 /* the lanes' PUs */
        size_t pool_len, pool_cap;
};

static void engine_done(struct engine *e)
{
        for (size_t i = 0; i < e->n_guests; i++)
                guest_facts_done(&e->gs[i].f);
        free(e->gs);
        free(e->vs);
        free(e->pool);
        free(e->load);
        free(e->numa_load);
        free(e->cache_load);
        free(e->own_numa);
        free(e->own_cache);
        free(e->sib);
        free(e->core_sib);
        free(e->vacate);
        free(e->flags);
        free(e->touched);
        free(e->lane_buf);
        free(e->best_buf);
        free(e->order_buf);
        loadtree_done(&e->tree);
        domains_done(&e->d);
        if (e->usable_set)
                hwloc_bitmap_free(e->usable_set);
        if (e->tmp)
                hwloc_bitmap_free(e->tmp);
}

static const unsigned *lane_of(const struct engine *e, const struct vstate *v)
{
        return e->pool + v->lane;
}

static unsigned core_of(const struct engine *e, unsigned p)
{
        return e->topo->pus[p].core;
}

/* ---- Candidate keys: load plus the costs of the guest being placed ---- */

/* A moving sibling leaves this PU: entering it could take a swap to apply. */
static bool is_vacated(const struct engine *e, unsigned p)
{
        return e->vacate[p] > (unsigned)!!(e->flags[p] & PU_OWN);
}

/* A sibling of the guest being placed sits on another PU of this core. */
static bool shares_core(const struct engine *e, unsigned p)
{
        return e->core_sib[core_of(e, p)] > e->sib[p];
}

static double candidate_key(const struct engine *e, unsigned p)
{
        const struct gstate *g = e->active;
        double key = e->load[p];

        if (!e->d.usable[p] || (e->flags[p] & PU_OUTSIDE))
                return HUGE_VAL;
        if (!g)
                return key;
        if (e->sib[p] >= g->f.cap)
                return HUGE_VAL;
        if (g->f.core_units && e->core_sib[core_of(e, p)] > 0)
                return HUGE_VAL;
        /*
         * Overcommitted guests share PUs anyway: for them max_per_pu is the
         * only rule and load alone decides, so a busy PU takes their
         * lightest vCPUs.
         */
        if (g->f.overcommitted)
                return key;
        if (shares_core(e, p))
                key += e->tier;
        if (is_vacated(e, p))
                key += e->params.hysteresis;
        if (e->flags[p] & PU_OWN)
                key -= e->params.hysteresis;
        return key;
}

static bool is_candidate(const struct engine *e, unsigned p)
{
        return candidate_key(e, p) < HUGE_VAL;
}

static void refresh(struct engine *e, unsigned p)
{
        bool hot_candidate = e->d.usable[p] && !(e->frozen && e->frozen[p]);
        loadtree_set(&e->tree, p, candidate_key(e, p), hot_candidate ? e->load[p] : -HUGE_VAL);
}

static void add_load(struct engine *e, unsigned p, double delta)
{
        e->load[p] += delta;
        e->numa_load[e->d.numa_of[p]] += delta;
        e->cache_load[e->d.cache_of[p]] += delta;
        refresh(e, p);
}

/* Add (sign 1) or remove (sign -1) a vCPU's load, spread evenly over its lane. */
static void account_lane(struct engine *e, const struct vstate *v, int sign)
{
        const unsigned *lane = lane_of(e, v);
        double share = sign * v->load / v->lane_len;

        for (unsigned i = 0; i < v->lane_len; i++)
                add_load(e, lane[i], share);
}

/* ---- Scratch marks of the guest being placed ---- */

static void touch(struct engine *e, unsigned p)
{
        if (e->flags[p] & PU_TOUCHED)
                return;
        e->flags[p] |= PU_TOUCHED;
        e->touched[e->n_touched++] = p;
}

static void refresh_core(struct engine *e, unsigned core)
{
        const struct topo_group *c = &e->topo->cores[core];

        for (unsigned p = c->first_pu; p < c->first_pu + c->n_pus; p++) {
                touch(e, p);
                refresh(e, p);
        }
}

/* Start placing @g in dense PUs [lo, hi): PUs outside its restriction are no candidates. */
static void session_begin(struct engine *e, const struct gstate *g, unsigned lo, unsigned hi)
{
        e->active = g;
        if (!g->f.allowed)
                return;
        for (unsigned p = lo; p < hi; p++)
                if (e->d.usable[p] && !hwloc_bitmap_isset(g->f.allowed, e->topo->pus[p].os_index)) {
                        touch(e, p);
                        e->flags[p] |= PU_OUTSIDE;
                        refresh(e, p);
                }
}

static void session_end(struct engine *e)
{
        e->active = NULL;
        for (size_t i = 0; i < e->n_touched; i++) {
                unsigned p = e->touched[i];
                e->sib[p] = 0;
                e->vacate[p] = 0;
                e->core_sib[core_of(e, p)] = 0;
                e->flags[p] = 0;
        }
        for (size_t i = 0; i < e->n_touched; i++)
                refresh(e, e->touched[i]);
        e->n_touched = 0;
}

/* A sibling holds this lane: its PUs (and cores) are taken for the others. */
static void register_lane(struct engine *e, const struct vstate *v)
{
        const unsigned *lane = lane_of(e, v);

        for (unsigned i = 0; i < v->lane_len; i++) {
                touch(e, lane[i]);
                e->sib[lane[i]]++;
                e->core_sib[core_of(e, lane[i])]++;
        }
        for (unsigned i = 0; i < v->lane_len; i++)
                refresh_core(e, core_of(e, lane[i]));
}

static bool is_unplaced(const struct engine *e, hwloc_const_bitmap_t mask)
{
        return !mask || hwloc_bitmap_iszero(mask) || hwloc_bitmap_isincluded(e->usable_set, mask);
}

/* Add @delta to a per-PU counter (vacate) or flip the PU_OWN flag on mask ∩ usable. */
static void mark_mask(struct engine *e, hwloc_const_bitmap_t mask, unsigned *counter, int delta,
                      uint8_t flag)
{
        unsigned os;

        hwloc_bitmap_and(e->tmp, mask, e->usable_set);
        hwloc_bitmap_foreach_begin(os, e->tmp) {
                unsigned p = (unsigned)topology_pu_dense(e->topo, os);
                touch(e, p);
                if (counter)
                        counter[p] += delta;
                if (flag)
                        e->flags[p] = delta > 0 ? e->flags[p] | flag : e->flags[p] & ~flag;
                refresh(e, p);
        } hwloc_bitmap_foreach_end();
}

/* ---- Lanes ---- */

static unsigned *pool_grow(struct engine *e, size_t n, size_t *off)
{
        if (e->pool_len + n > e->pool_cap) {
                size_t cap = e->pool_cap ? e->pool_cap * 2 : 1024;
                while (cap < e->pool_len + n)
                        cap *= 2;
                unsigned *p = realloc(e->pool, cap * sizeof(*p));
                if (!p)
                        return NULL;
                e->pool = p;
                e->pool_cap = cap;
        }
        *off = e->pool_len;
        e->pool_len += n;
        return e->pool + *off;
}

static int set_lane(struct engine *e, struct vstate *v, const unsigned *pus, unsigned n)
{
        size_t off;
        unsigned *dst = pool_grow(e, n, &off);

        if (!dst)
                return -ENOMEM;
        memcpy(dst, pus, n * sizeof(*pus));
        v->lane = off;
        v->lane_len = n;
        return 0;
}

/* The vCPU's lane becomes mask ∩ usable (possibly empty). */
static int lane_from_mask(struct engine *e, struct vstate *v, hwloc_const_bitmap_t mask)
{
        size_t off;
        unsigned os, n = 0;

        hwloc_bitmap_and(e->tmp, mask, e->usable_set);
        int w = hwloc_bitmap_weight(e->tmp);
        v->lane_len = 0;
        if (w <= 0)
                return 0;
        unsigned *dst = pool_grow(e, (size_t)w, &off);
        if (!dst)
                return -ENOMEM;
        hwloc_bitmap_foreach_begin(os, e->tmp) {
                dst[n++] = (unsigned)topology_pu_dense(e->topo, os);
        } hwloc_bitmap_foreach_end();
        v->lane = off;
        v->lane_len = n;
        return 0;
}

static bool lane_contains(const struct engine *e, const struct vstate *v, unsigned p)
{
        const unsigned *lane = lane_of(e, v);

        for (unsigned i = 0; i < v->lane_len; i++)
                if (lane[i] == p)
                        return true;
        return false;
}

/* Where one guest's lanes go: its domain's PUs [lo, hi) and the lane width. */
struct geometry {
        unsigned lo, hi;
        unsigned width;         /* in units: cores when by_core, else PUs */
        bool by_core;           /* lanes are made of whole cores */
};

static void guest_geometry(const struct engine *e, const struct gstate *g, struct geometry *geo)
{
        struct units u = g->f.all;

        geo->lo = 0;
        geo->hi = (unsigned)e->d.n_pus;
        if (g->scope != SCOPE_ANY) {
                const struct run *r = scope_run(&e->d, g->scope, g->domain);
                geo->lo = r->lo;
                geo->hi = r->hi;
                u = run_units(e->topo, &e->d, g->f.allowed, g->scope, g->domain);
        }
        /* Whole cores per lane while every vCPU can have a core of its own. */
        geo->by_core = u.cores >= g->n;
        unsigned unit_pus = geo->by_core ? e->smt : 1;
        unsigned share = units_of(u, geo->by_core) / umax(g->n, 1);
        unsigned cap = umax(e->lane_cap / unit_pus, 1);
        geo->width = pow2_floor(umax(umin(share, cap), 1));
}

/*
 * The block of @width units containing @home.  Blocks are aligned from the
 * start of home's L3 run, so lanes never straddle L3 groups and blocks of
 * different widths nest.
 */
static void lane_block(const struct engine *e, const struct geometry *geo, unsigned home,
                       unsigned *lo, unsigned *hi)
{
        const struct topology *t = e->topo;
        const struct run *r = &e->d.cache[e->d.cache_of[home]];

        if (geo->by_core) {
                unsigned first = t->pus[r->lo].core, last = t->pus[r->hi - 1].core;
                unsigned c_lo = first + (t->pus[home].core - first) / geo->width * geo->width;
                unsigned c_hi = umin(c_lo + geo->width, last + 1);
                *lo = t->cores[c_lo].first_pu;
                *hi = t->cores[c_hi - 1].first_pu + t->cores[c_hi - 1].n_pus;
        } else {
                *lo = r->lo + (home - r->lo) / geo->width * geo->width;
                *hi = *lo + geo->width;
        }
        *lo = umax(umax(*lo, r->lo), geo->lo);
        *hi = umin(umin(*hi, r->hi), geo->hi);
}

/*
 * Drop lane PUs that the vCPU's share would lift above what its home alone
 * would carry with all of its load: a lane is never worse for the peak than
 * pinning to the home, so spreading over it cannot break balance.
 */
static unsigned trim_lane(const struct engine *e, double load, unsigned *lane, unsigned n)
{
        double ceiling = e->load[lane[0]] + load + PLACEMENT_EPSILON;

        for (bool changed = true; changed && n > 1;) {
                unsigned kept = 1;
                changed = false;
                for (unsigned i = 1; i < n; i++) {
                        if (e->load[lane[i]] + load / n <= ceiling)
                                lane[kept++] = lane[i];
                        else
                                changed = true;
                }
                n = kept;
        }
        return n;
}

/*
 * The candidate PUs of home's block for a vCPU of @load: home, then its core,
 * then the rest, at most lane_cap, none a moving sibling leaves.
 */
static unsigned build_lane(const struct engine *e, const struct geometry *geo, unsigned home,
                           double load, unsigned *out)
{
        unsigned lo, hi, n = 0, home_core = core_of(e, home);

        lane_block(e, geo, home, &lo, &hi);
        out[n++] = home;
        for (unsigned pass = 0; pass < 2; pass++)
                for (unsigned p = lo; p < hi && n < e->lane_cap; p++) {
                        if (p == home || (core_of(e, p) == home_core) != (pass == 0))
                                continue;
                        if (is_candidate(e, p) && !is_vacated(e, p))
                                out[n++] = p;
                }
        return trim_lane(e, load, out, n);
}

/* ---- Setup ---- */

static int engine_alloc_pus(struct engine *e)
{
        size_t n = e->topo->n_pus;

        e->load = calloc(n, sizeof(*e->load));
        e->sib = calloc(n, sizeof(*e->sib));
        e->vacate = calloc(n, sizeof(*e->vacate));
        e->flags = calloc(n, sizeof(*e->flags));
        e->touched = calloc(n, sizeof(*e->touched));
        e->core_sib = calloc(e->topo->n_cores, sizeof(*e->core_sib));
        e->numa_load = calloc(e->d.n_numa, sizeof(*e->numa_load));
        e->cache_load = calloc(e->d.n_cache, sizeof(*e->cache_load));
        e->own_numa = calloc(e->d.n_numa, sizeof(*e->own_numa));
        e->own_cache = calloc(e->d.n_cache, sizeof(*e->own_cache));
        e->lane_buf = calloc(e->lane_cap, sizeof(*e->lane_buf));
        e->best_buf = calloc(e->lane_cap, sizeof(*e->best_buf));
        if (!e->load || !e->sib || !e->vacate || !e->flags || !e->touched || !e->core_sib ||
            !e->numa_load || !e->cache_load || !e->own_numa || !e->own_cache || !e->lane_buf ||
            !e->best_buf)
                return -ENOMEM;
        return loadtree_init(&e->tree, n);
}

static int engine_init(struct engine *e, const struct topology *topo, hwloc_const_bitmap_t usable,
                       const struct plan_params *params)
{
        int r;

        e->topo = topo;
        e->params = *params;
        e->usable_set = hwloc_bitmap_alloc();
        e->tmp = hwloc_bitmap_alloc();
        if (!e->usable_set || !e->tmp)
                return -ENOMEM;
        hwloc_bitmap_and(e->usable_set, usable, topo->complete);
        r = domains_init(&e->d, topo, e->usable_set);
        if (r < 0)
                return r;
        for (size_t c = 0; c < topo->n_cores; c++)
                e->smt = umax(e->smt, topo->cores[c].n_pus);
        e->smt = umax(e->smt, 1);
        /* A lane as wide as the usable set would be no placement at all. */
        e->lane_cap = params->lane_width ? params->lane_width : AUTO_LANE_PUS;
        if (e->d.n_usable > 1)
                e->lane_cap = umin(e->lane_cap, e->d.n_usable - 1);
        r = engine_alloc_pus(e);
        if (r < 0)
                return r;
        for (unsigned p = 0; p < topo->n_pus; p++)
                refresh(e, p);
        return 0;
}

static int setup_guest(struct engine *e, size_t i)
{
        const struct guest_input *in = &e->in[i];
        struct gstate *g = &e->gs[i];
        int r = 0;

        g->n = (unsigned)in->n_vcpus;
        for (unsigned j = 0; j < g->n; j++) {
                struct vstate *v = &e->vs[g->first + j];
                *v = (struct vstate){ .in = &in->vcpus[j], .guest = (unsigned)i,
                                      .load = vcpu_demand(&in->vcpus[j], &e->params) };
                g->load += v->load;
        }
        if (in->policy != POLICY_IGNORE) {
                r = guest_facts_init(&g->f, e->topo, &e->d, e->usable_set, in);
                if (r == -ENOSPC)
                        g->error = r;
                else if (r < 0)
                        return r;
                /* A whole guest is not placed: its vCPUs are fixed at the
                 * allowed set (target_of, emit_guest). */
                g->whole = r == 0 && guest_input_whole(in);
                g->managed = r == 0 && !g->whole;
        }
        /* A vCPU backing off after a refused move stays where it is, and its
         * siblings are placed around it. */
        for (unsigned j = 0; j < g->n; j++)
                e->vs[g->first + j].fixed = !g->managed || vcpu_backing_off(&in->vcpus[j], &e->params);
        return 0;
}

static int setup_guests(struct engine *e, const struct guest_input *guests, size_t n)
{
        size_t total = 0, largest = 1;

        e->in = guests;
        for (size_t i = 0; i < n; i++) {
                total += guests[i].n_vcpus;
                if (guests[i].n_vcpus > largest)
                        largest = guests[i].n_vcpus;
        }
        e->gs = calloc(n ? n : 1, sizeof(*e->gs));
        e->vs = calloc(total ? total : 1, sizeof(*e->vs));
        e->order_buf = calloc(largest, sizeof(*e->order_buf));
        if (!e->gs || !e->vs || !e->order_buf)
                return -ENOMEM;
        e->n_guests = n;
        e->n_vs = total;
        for (size_t i = 0, first = 0; i < n; first += guests[i].n_vcpus, i++) {
                e->gs[i].first = first;
                int r = setup_guest(e, i);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Does this vCPU's load land on usable PUs at all? */
static bool load_counts(const struct engine *e, const struct vstate *v)
{
        return !v->fixed || !v->in->current || hwloc_bitmap_intersects(v->in->current, e->usable_set);
}

static void count_totals(struct engine *e)
{
        for (size_t i = 0; i < e->n_vs; i++) {
                if (!load_counts(e, &e->vs[i]))
                        continue;
                e->total += e->vs[i].load;
                e->max_vcpu = fmax(e->max_vcpu, e->vs[i].load);
        }
        e->ideal = e->total / e->d.n_usable;
        e->bound = e->ideal + e->max_vcpu;
        /* Larger than any load difference plus penalties: SMT sharing ranks last. */
        e->tier = 2 * (e->total + 2 * e->params.hysteresis + 1);
}

/* ---- 1. Classify ---- */

static enum place_reason conflict_reason(const struct engine *e, const struct gstate *g,
                                         const struct vstate *v)
{
        const unsigned *lane = lane_of(e, v);

        for (unsigned i = 0; i < v->lane_len; i++)
                if (e->sib[lane[i]] >= g->f.cap)
                        return PLACE_SIBLING_CONFLICT;
        if (g->f.core_units)
                for (unsigned i = 0; i < v->lane_len; i++)
                        if (e->core_sib[core_of(e, lane[i])] > 0)
                                return PLACE_SMT_CONFLICT;
        return PLACE_NONE;
}

static hwloc_const_bitmap_t allowed_set(const struct engine *e, const struct gstate *g)
{
        return g->f.allowed ? g->f.allowed : e->usable_set;
}

/* Keep a vCPU's mask when it is valid; the first of two colliding siblings keeps its. */
static int classify_guest(struct engine *e, struct gstate *g)
{
        int r = 0;

        session_begin(e, g, 0, 0);
        /* vCPUs that back off hold their CPUs first, valid or not. */
        for (unsigned j = 0; j < g->n && r == 0; j++) {
                struct vstate *v = &e->vs[g->first + j];
                if (v->fixed && !is_unplaced(e, v->in->current) &&
                    (r = lane_from_mask(e, v, v->in->current)) == 0 && v->lane_len > 0)
                        register_lane(e, v);
        }
        for (unsigned j = 0; j < g->n && r == 0; j++) {
                struct vstate *v = &e->vs[g->first + j];
                hwloc_const_bitmap_t cur = v->in->current;

                if (v->fixed)
                        continue;
                if (is_unplaced(e, cur))
                        v->reason = PLACE_UNPLACED;
                else if (!hwloc_bitmap_isincluded(cur, allowed_set(e, g)))
                        v->reason = PLACE_OUT_OF_BOUNDS;
                else if ((r = lane_from_mask(e, v, cur)) == 0) {
                        v->reason = conflict_reason(e, g, v);
                        if (v->reason == PLACE_NONE)
                                register_lane(e, v);
                        else
                                v->lane_len = 0;
                }
        }
        session_end(e);
        return r;
}

/* ---- 2. Account ---- */

static hwloc_const_bitmap_t allowed_set(const struct engine *e, const struct gstate *g);

static int account_fixed(struct engine *e, struct vstate *v)
{
        const struct gstate *g = &e->gs[v->guest];
        /* A whole guest's vCPUs end up on the allowed set, backing-off ones where they are. */
        hwloc_const_bitmap_t cur = g->whole && !vcpu_backing_off(v->in, &e->params) ? allowed_set(e, g)
                                                                                      : v->in->current;

        if (!cur || hwloc_bitmap_isincluded(e->usable_set, cur)) {
                e->base_load += v->load / e->d.n_usable;
                return 0;
        }
        int r = lane_from_mask(e, v, cur);
        if (r < 0)
                return r;
        if (v->lane_len > 0)
                account_lane(e, v, 1);
        return 0;
}

static int classify_and_account(struct engine *e)
{
        for (size_t i = 0; i < e->n_guests; i++) {
                if (!e->gs[i].managed)
                        continue;
                int r = classify_guest(e, &e->gs[i]);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < e->n_vs; i++) {
                struct vstate *v = &e->vs[i];
                if (v->fixed) {
                        int r = account_fixed(e, v);
                        if (r < 0)
                                return r;
                } else if (v->reason == PLACE_NONE)
                        account_lane(e, v, 1);
        }
        return 0;
}

/* ---- 3a. Locality: choose the guest's domain ---- */

static struct vstate *guest_vcpu(const struct engine *e, const struct gstate *g, unsigned j)
{
        return &e->vs[g->first + j];
}

static bool is_kept(const struct vstate *v)
{
        return v->reason == PLACE_NONE && v->lane_len > 0;
}

/* Record (or clear) the guest's own kept load per run, to judge domains without it. */
static bool own_account(struct engine *e, const struct gstate *g, bool set)
{
        bool any = false;

        for (unsigned j = 0; j < g->n; j++) {
                const struct vstate *v = guest_vcpu(e, g, j);
                if (!is_kept(v))
                        continue;
                const unsigned *lane = lane_of(e, v);
                for (unsigned i = 0; i < v->lane_len; i++) {
                        double share = v->load / v->lane_len;
                        e->own_numa[e->d.numa_of[lane[i]]] = set ? e->own_numa[e->d.numa_of[lane[i]]] + share : 0;
                        e->own_cache[e->d.cache_of[lane[i]]] = set ? e->own_cache[e->d.cache_of[lane[i]]] + share : 0;
                }
                any = true;
        }
        return any;
}

static double run_others_load(const struct engine *e, enum plan_scope s, unsigned i)
{
        return s == SCOPE_L3 ? e->cache_load[i] - e->own_cache[i] : e->numa_load[i] - e->own_numa[i];
}

static unsigned run_usable(const struct engine *e, enum plan_scope s, unsigned i)
{
        return (s == SCOPE_L3 ? e->d.cache_units : e->d.numa_units)[i].pus;
}

static double run_avg(const struct engine *e, enum plan_scope s, unsigned i)
{
        unsigned n = run_usable(e, s, i);
        return n ? run_others_load(e, s, i) / n + e->base_load : HUGE_VAL;
}

static bool run_fits(const struct engine *e, const struct gstate *g, enum plan_scope s, unsigned i)
{
        return units_of(run_units(e->topo, &e->d, g->f.allowed, s, i), g->f.core_units) >= g->n;
}

/* "When load allows": the run's average with the guest added stays within the balance bound. */
static bool run_admits(const struct engine *e, const struct gstate *g, enum plan_scope s, unsigned i)
{
        unsigned n = run_usable(e, s, i);
        return n && (run_others_load(e, s, i) + g->load) / n + e->base_load <= e->bound + PLACEMENT_EPSILON;
}

/* The least-loaded run in [first, end) that fits and admits the guest, or -1. */
static int best_run(const struct engine *e, const struct gstate *g, enum plan_scope s,
                    unsigned first, unsigned end)
{
        int best = -1;
        double best_avg = HUGE_VAL;

        for (unsigned i = first; i < end; i++) {
                if (!run_fits(e, g, s, i) || !run_admits(e, g, s, i))
                        continue;
                double avg = run_avg(e, s, i);
                if (avg < best_avg) {
                        best = (int)i;
                        best_avg = avg;
                }
        }
        return best;
}

/* NUMA node first (least loaded with a suitable L3 group), then its least-loaded L3 group. */
static int best_cache(const struct engine *e, const struct gstate *g)
{
        int best = -1;
        double best_avg = HUGE_VAL;

        for (unsigned n = 0; n < e->d.n_numa; n++) {
                int c = best_run(e, g, SCOPE_L3, e->d.numa[n].first, e->d.numa[n].end);
                if (c < 0)
                        continue;
                double avg = run_avg(e, SCOPE_NUMA, n);
                if (avg < best_avg) {
                        best = c;
                        best_avg = avg;
                }
        }
        return best;
}

/* The run at scope @s holding every kept vCPU of @g, or -1 (none kept, or several runs). */
static int kept_run(const struct engine *e, const struct gstate *g, enum plan_scope s)
{
        int run = -1;

        for (unsigned j = 0; j < g->n; j++) {
                const struct vstate *v = guest_vcpu(e, g, j);
                if (!is_kept(v))
                        continue;
                const unsigned *lane = lane_of(e, v);
                for (unsigned i = 0; i < v->lane_len; i++) {
                        int r = (int)scope_of(&e->d, s, lane[i]);
                        if (run < 0)
                                run = r;
                        else if (run != r)
                                return -1;
                }
        }
        return run;
}

/*
 * Property 3.  At the narrowest scope the guest fits: stay where the kept
 * vCPUs are when that domain fits the guest (stability), else take the
 * least-loaded domain that fits and admits it.  When none admits, the guest is
 * "spilled" to the next scope.
 */
static void choose_domain(struct engine *e, struct gstate *g)
{
        bool kept = own_account(e, g, true);

        g->scope = SCOPE_ANY;
        g->domain = 0;
        g->spilled = false;
        for (enum plan_scope s = g->f.fit; s < SCOPE_ANY; s++) {
                int run = kept ? kept_run(e, g, s) : -1;
                if (run < 0 || !run_fits(e, g, s, (unsigned)run))
                        run = s == SCOPE_L3 ? best_cache(e, g) : best_run(e, g, s, 0, (unsigned)e->d.n_numa);
                if (run >= 0) {
                        g->scope = s;
                        g->domain = (unsigned)run;
                        break;
                }
                g->spilled = true;
        }
        if (kept)
                own_account(e, g, false);
}

/* Kept vCPUs outside the chosen domain move into it. */
static void evict_outside(struct engine *e, struct gstate *g)
{
        struct geometry geo;

        guest_geometry(e, g, &geo);
        for (unsigned j = 0; j < g->n; j++) {
                struct vstate *v = guest_vcpu(e, g, j);
                if (!is_kept(v) || v->fixed)
                        continue;
                const unsigned *lane = lane_of(e, v);
                for (unsigned i = 0; i < v->lane_len; i++)
                        if (lane[i] < geo.lo || lane[i] >= geo.hi) {
                                account_lane(e, v, -1);
                                v->lane_len = 0;
                                v->reason = PLACE_LOCALITY;
                                break;
                        }
        }
}

/* ---- 3b. Place: a lane per vCPU ---- */

static int order_cmp(const void *a, const void *b)
{
        const struct order *x = a, *y = b;

        if (x->key != y->key)
                return x->key > y->key ? -1 : 1;
        return x->index < y->index ? -1 : x->index > y->index;
}

/* Least-loaded candidate PU of the domain as home, then the lane around it. */
static int place_vcpu(struct engine *e, struct vstate *v, const struct geometry *geo)
{
        hwloc_const_bitmap_t cur = v->in->current;
        bool partial = !is_unplaced(e, cur);

        if (partial)
                mark_mask(e, cur, NULL, 1, PU_OWN);
        struct lt_key home = loadtree_min(&e->tree, geo->lo, geo->hi);
        if (partial)
                mark_mask(e, cur, NULL, -1, PU_OWN);
        if (home.value == HUGE_VAL)
                return -ENOSPC;

        unsigned n = build_lane(e, geo, home.index, v->load, e->lane_buf);
        int r = set_lane(e, v, e->lane_buf, n);
        if (r < 0)
                return r;
        account_lane(e, v, 1);
        register_lane(e, v);
        return 0;
}

static int fill_guest(struct engine *e, struct gstate *g)
{
        struct geometry geo;
        size_t n_todo = 0;
        int r = 0;

        guest_geometry(e, g, &geo);
        session_begin(e, g, geo.lo, geo.hi);
        for (unsigned j = 0; j < g->n; j++) {
                struct vstate *v = guest_vcpu(e, g, j);
                if (is_kept(v) || v->fixed) {
                        if (v->lane_len > 0)
                                register_lane(e, v);
                        continue;
                }
                e->order_buf[n_todo++] = (struct order){ v->load, (unsigned)(g->first + j) };
                if (!is_unplaced(e, v->in->current))
                        mark_mask(e, v->in->current, e->vacate, 1, 0);
        }
        /* Heaviest first: they get the emptiest PUs. */
        qsort(e->order_buf, n_todo, sizeof(*e->order_buf), order_cmp);
        for (size_t i = 0; i < n_todo && r == 0; i++)
                r = place_vcpu(e, &e->vs[e->order_buf[i].index], &geo);
        session_end(e);
        return r;
}

static bool has_moving(const struct engine *e, const struct gstate *g)
{
        for (unsigned j = 0; j < g->n; j++)
                if (guest_vcpu(e, g, j)->reason != PLACE_NONE)
                        return true;
        return false;
}

/* Take all of a guest's lanes off the PUs; kept vCPUs move for @reason. */
static void unplace_guest(struct engine *e, struct gstate *g, enum place_reason reason)
{
        for (unsigned j = 0; j < g->n; j++) {
                struct vstate *v = guest_vcpu(e, g, j);
                if (v->lane_len == 0 || v->fixed ||
                    (reason == PLACE_REBALANCE && v->reason == PLACE_NONE && vcpu_dwelling(v->in, &e->params)))
                        continue;
                account_lane(e, v, -1);
                v->lane_len = 0;
                if (v->reason == PLACE_NONE)
                        v->reason = reason;
        }
}

static bool has_kept(const struct engine *e, const struct gstate *g)
{
        for (unsigned j = 0; j < g->n; j++)
                if (is_kept(guest_vcpu(e, g, j)))
                        return true;
        return false;
}

/* Most load on any PU of the guest's lanes. */
static double guest_peak(const struct engine *e, const struct gstate *g)
{
        double peak = 0;

        for (unsigned j = 0; j < g->n; j++) {
                const struct vstate *v = guest_vcpu(e, g, j);
                const unsigned *lane = lane_of(e, v);
                for (unsigned i = 0; i < v->lane_len; i++)
                        peak = fmax(peak, e->load[lane[i]] + e->base_load);
        }
        return peak;
}

static int place_guest(struct engine *e, struct gstate *g)
{
        choose_domain(e, g);
        evict_outside(e, g);
        if (!has_moving(e, g))
                return 0;
        bool kept = has_kept(e, g);
        int r = fill_guest(e, g);
        if (r == 0 && kept && g->f.overcommitted && guest_peak(e, g) > e->bound + PLACEMENT_EPSILON) {
                /*
                 * An overcommitted guest has only max_per_pu places per PU;
                 * kept vCPUs may have used up those on the quiet PUs, leaving
                 * the rest to pile up on a busy one.  Start it over.
                 */
                unplace_guest(e, g, PLACE_REBALANCE);
                return fill_guest(e, g);
        }
        if (r != -ENOSPC)
                return r;
        /*
         * Kept siblings' masks (set by someone else, possibly wide) leave no
         * room for the rest: place the whole guest afresh.  Lanes are at most
         * units / vCPUs wide and each takes one block, so that cannot fail.
         */
        unplace_guest(e, g, PLACE_SIBLING_CONFLICT);
        return fill_guest(e, g);
}

static int place_all(struct engine *e)
{
        _cleanup_free_ struct order *order = calloc(e->n_guests ? e->n_guests : 1, sizeof(*order));
        size_t n = 0;

        if (!order)
                return -ENOMEM;
        for (size_t i = 0; i < e->n_guests; i++)
                if (e->gs[i].managed)
                        order[n++] = (struct order){ e->gs[i].load, (unsigned)i };
        /* Heaviest guests first: they get the emptiest domains. */
        qsort(order, n, sizeof(*order), order_cmp);
        for (size_t i = 0; i < n; i++) {
                int r = place_guest(e, &e->gs[order[i].index]);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- 4. Rebalance ---- */

struct pu_list {
        unsigned *items;
        unsigned n, cap;
};

static int list_push(struct pu_list *l, unsigned x)
{
        if (l->n == l->cap) {
                unsigned cap = l->cap ? l->cap * 2 : 8;
                unsigned *items = realloc(l->items, cap * sizeof(*items));
                if (!items)
                        return -ENOMEM;
                l->items = items;
                l->cap = cap;
        }
        l->items[l->n++] = x;
        return 0;
}

static int index_lane(const struct engine *e, struct pu_list *lists, unsigned vi)
{
        const struct vstate *v = &e->vs[vi];
        const unsigned *lane = lane_of(e, v);

        for (unsigned i = 0; i < v->lane_len; i++) {
                int r = list_push(&lists[lane[i]], vi);
                if (r < 0)
                        return r;
        }
        return 0;
}

static bool same_lane(const struct engine *e, const struct vstate *v, const unsigned *lane, unsigned n)
{
        if (n != v->lane_len)
                return false;
        for (unsigned i = 0; i < n; i++)
                if (!lane_contains(e, v, lane[i]))
                        return false;
        return true;
}

/*
 * How much lower the hot PU would be if vCPU @vi left it for the best lane
 * its guest could give it; 0 when there is no better lane.  The lane goes to
 * @out (lane_cap entries), its length to @n_out.
 */
static double evaluate_move(struct engine *e, unsigned vi, unsigned hot, double peak, unsigned *out,
                            unsigned *n_out)
{
        struct vstate *v = &e->vs[vi];
        const struct gstate *g = &e->gs[v->guest];
        struct geometry geo;
        double gain = 0;

        guest_geometry(e, g, &geo);
        session_begin(e, g, geo.lo, geo.hi);
        for (unsigned j = 0; j < g->n; j++) {
                const struct vstate *s = guest_vcpu(e, g, j);
                if (s != v && s->lane_len > 0)
                        register_lane(e, s);
        }
        account_lane(e, v, -1);
        struct lt_key home = loadtree_min(&e->tree, geo.lo, geo.hi);
        /* Under spread, never move onto a core shared with a sibling while cores suffice. */
        if (home.value < HUGE_VAL && !(geo.by_core && shares_core(e, home.index))) {
                unsigned n = build_lane(e, &geo, home.index, v->load, out);
                if (!same_lane(e, v, out, n)) {
                        double peak_new = 0;
                        for (unsigned i = 0; i < n; i++)
                                peak_new = fmax(peak_new, e->load[out[i]] + v->load / n);
                        gain = peak - fmax(e->load[hot], peak_new);
                        *n_out = n;
                }
        }
        account_lane(e, v, 1);
        session_end(e);
        return gain;
}

struct move_choice {
        unsigned vcpu;
        unsigned n;             /* lane length, lane in engine.best_buf */
        double gain;
};

/* The best of the heaviest movers on the hot PU; false when none gains more than hysteresis. */
static bool best_move(struct engine *e, const struct pu_list *list, unsigned hot, double peak,
                      bool allow_kept, struct move_choice *m)
{
        _cleanup_free_ struct order *cand = calloc(list->n ? list->n : 1, sizeof(*cand));
        size_t n = 0, tried = 0;

        if (!cand)
                return false;
        for (unsigned i = 0; i < list->n; i++) {
                const struct vstate *v = &e->vs[list->items[i]];
                bool kept = v->reason == PLACE_NONE;
                if (!lane_contains(e, v, hot) || (kept && (!allow_kept || vcpu_dwelling(v->in, &e->params))))
                        continue;
                double relief = v->load / v->lane_len;
                if (relief > e->params.hysteresis)
                        cand[n++] = (struct order){ relief, list->items[i] };
        }
        qsort(cand, n, sizeof(*cand), order_cmp);
        *m = (struct move_choice){ .gain = 0 };
        for (size_t i = 0; i < n && tried < REBALANCE_CANDIDATES; i++) {
                unsigned len = 0;
                if (i > 0 && cand[i].index == cand[i - 1].index)
                        continue;
                tried++;
                double gain = evaluate_move(e, cand[i].index, hot, peak, e->lane_buf, &len);
                if (gain > m->gain) {
                        *m = (struct move_choice){ .vcpu = cand[i].index, .n = len, .gain = gain };
                        memcpy(e->best_buf, e->lane_buf, len * sizeof(*e->lane_buf));
                }
        }
        return m->gain > e->params.hysteresis;
}

static int apply_move(struct engine *e, struct pu_list *lists, const struct move_choice *m)
{
        struct vstate *v = &e->vs[m->vcpu];

        account_lane(e, v, -1);
        int r = set_lane(e, v, e->best_buf, m->n);
        if (r < 0)
                return r;
        account_lane(e, v, 1);
        if (v->reason == PLACE_NONE)
                v->reason = PLACE_REBALANCE;
        return index_lane(e, lists, m->vcpu);
}

static double hot_excess(const struct engine *e)
{
        return loadtree_max(&e->tree).value + e->base_load - e->ideal;
}

/* While rebalancing: PUs no move can cool; a move elsewhere may change that. */
struct frozen_set {
        unsigned *pus;
        size_t n;
};

static void freeze(struct engine *e, struct frozen_set *f, unsigned p)
{
        e->frozen[p] = true;
        f->pus[f->n++] = p;
        refresh(e, p);
}

static void thaw(struct engine *e, struct frozen_set *f)
{
        for (size_t i = 0; i < f->n; i++) {
                e->frozen[f->pus[i]] = false;
                refresh(e, f->pus[i]);
        }
        f->n = 0;
}

static int rebalance_steps(struct engine *e, struct pu_list *lists, struct frozen_set *frozen)
{
        unsigned budget = e->params.moves_per_interval ? e->params.moves_per_interval : UINT_MAX;

        for (size_t i = 0; i < e->n_vs; i++)
                if (!e->vs[i].fixed) {
                        int r = index_lane(e, lists, (unsigned)i);
                        if (r < 0)
                                return r;
                }
        /*
         * Each step either lowers the hottest PU by more than hysteresis or
         * sets it aside while no move can (it may carry ignored guests only).
         * Moves change what is possible for the PUs set aside, so passes
         * repeat until one makes no move: then no PU above the threshold can
         * be helped, and the next plan from the same state moves nothing.
         * The steps are bounded anyway: a later plan continues the work.
         */
        size_t steps = 2 * (e->n_vs + e->d.n_usable);
        for (bool moved = true; moved && steps > 0;) {
                moved = false;
                for (; steps > 0; steps--) {
                        struct lt_key hot = loadtree_max(&e->tree);
                        struct move_choice m;

                        if (hot_excess(e) <= e->params.imbalance_threshold)
                                break;
                        if (!best_move(e, &lists[hot.index], hot.index, hot.value, budget > 0, &m)) {
                                freeze(e, frozen, hot.index);
                                continue;
                        }
                        bool was_kept = e->vs[m.vcpu].reason == PLACE_NONE;
                        int r = apply_move(e, lists, &m);
                        if (r < 0)
                                return r;
                        budget -= was_kept;
                        moved = true;
                }
                thaw(e, frozen);
        }
        return 0;
}

static int rebalance(struct engine *e)
{
        struct frozen_set frozen = {};
        struct pu_list *lists;
        int r = -ENOMEM;

        if (hot_excess(e) <= e->params.imbalance_threshold)
                return 0;
        lists = calloc(e->d.n_pus, sizeof(*lists));
        frozen.pus = calloc(e->d.n_pus, sizeof(*frozen.pus));
        e->frozen = calloc(e->d.n_pus, sizeof(*e->frozen));
        if (lists && frozen.pus && e->frozen)
                r = rebalance_steps(e, lists, &frozen);
        for (size_t p = 0; lists && p < e->d.n_pus; p++)
                free(lists[p].items);
        free(lists);
        free(frozen.pus);
        free(TAKE_PTR(e->frozen));
        return r;
}

/* ---- 5. Emit ---- */

static hwloc_bitmap_t lane_bitmap(const struct engine *e, const struct vstate *v)
{
        hwloc_bitmap_t b = hwloc_bitmap_alloc();
        const unsigned *lane = lane_of(e, v);
        unsigned highest = 0;

        if (!b || v->lane_len == 0)
                return b;
        /* Setting the highest CPU first sizes the bitmap once. */
        for (unsigned i = 0; i < v->lane_len; i++)
                highest = umax(highest, e->topo->pus[lane[i]].os_index);
        if (hwloc_bitmap_set(b, highest) < 0) {
                hwloc_bitmap_free(b);
                return NULL;
        }
        for (unsigned i = 0; i < v->lane_len; i++)
                hwloc_bitmap_set(b, e->topo->pus[lane[i]].os_index);
        return b;
}

/* A whole guest's vCPU is released to the allowed set unless it backs off. */
static bool released(const struct engine *e, const struct vstate *v)
{
        return e->gs[v->guest].whole && !vcpu_backing_off(v->in, &e->params);
}

static hwloc_bitmap_t target_of(const struct engine *e, const struct vstate *v)
{
        if (!v->fixed)
                return lane_bitmap(e, v);
        if (released(e, v))
                return hwloc_bitmap_dup(allowed_set(e, &e->gs[v->guest]));
        return v->in->current ? hwloc_bitmap_dup(v->in->current) : hwloc_bitmap_alloc_full();
}

static int emit_guest(const struct engine *e, size_t gi, struct guest_plan *gp)
{
        const struct gstate *g = &e->gs[gi];

        gp->vcpus = calloc(g->n ? g->n : 1, sizeof(*gp->vcpus));
        if (!gp->vcpus)
                return -ENOMEM;
        gp->n_vcpus = g->n;
        gp->error = g->error;
        gp->overcommitted = g->managed && g->f.overcommitted;
        gp->max_per_pu = g->managed ? g->f.cap : 0;
        gp->scope = g->managed ? g->scope : SCOPE_ANY;
        gp->spilled = g->managed && g->spilled;
        for (unsigned j = 0; j < g->n; j++) {
                const struct vstate *v = guest_vcpu(e, g, j);
                struct vcpu_plan *vp = &gp->vcpus[j];

                vp->target = target_of(e, v);
                if (!vp->target)
                        return -ENOMEM;
                vp->load = v->load;
                vp->holding = (g->managed || g->whole) && v->fixed && !released(e, v);
                if (released(e, v))
                        /* Unknown (NULL) counts as every CPU: written only when the
                         * allowed set is narrower than the host. */
                        vp->reason = (v->in->current ? hwloc_bitmap_isequal(vp->target, v->in->current)
                                                     : hwloc_bitmap_isincluded(e->usable_set, vp->target))
                                             ? PLACE_NONE
                                             : PLACE_RELEASE;
                else if (v->fixed || (v->in->current && hwloc_bitmap_isequal(vp->target, v->in->current)))
                        vp->reason = PLACE_NONE;
                else
                        vp->reason = v->reason != PLACE_NONE ? v->reason : PLACE_REBALANCE;
        }
        return 0;
}

/* The move of vCPU @j to its target, from @via when it waited on a staging CPU. */
static void append_move(struct plan *out, size_t gi, size_t j, const struct engine *e, hwloc_const_bitmap_t via)
{
        out->moves[out->n_moves++] = (struct plan_move){
                .guest = gi,
                .vcpu = j,
                .from = via ? via : e->in[gi].vcpus[j].current,
                .to = out->guests[gi].vcpus[j].target,
                .reason = out->guests[gi].vcpus[j].reason,
        };
}

struct move_graph {
        size_t m;
        hwloc_bitmap_t *enter, *leave;  /* CPUs a move enters / leaves for good */
        unsigned *edge_to, *edge_start, *indeg;
        bool *done;
        unsigned *queue;
};

static void move_graph_done(struct move_graph *g)
{
        for (size_t i = 0; i < g->m; i++) {
                if (g->enter && g->enter[i])
                        hwloc_bitmap_free(g->enter[i]);
                if (g->leave && g->leave[i])
                        hwloc_bitmap_free(g->leave[i]);
        }
        free(g->enter);
        free(g->leave);
        free(g->edge_to);
        free(g->edge_start);
        free(g->indeg);
        free(g->done);
        free(g->queue);
}

/*
 * Edge y -> x when x enters a CPU that y leaves for good: y must go first,
 * or for a moment both would sit there, which the final plan keeps apart.
 */
static int move_graph_build(struct move_graph *g, const hwloc_const_bitmap_t *from,
                            const hwloc_const_bitmap_t *to)
{
        size_t m = g->m, n_edges = 0, cap = m;

        g->enter = calloc(m, sizeof(*g->enter));
        g->leave = calloc(m, sizeof(*g->leave));
        g->edge_start = calloc(m + 1, sizeof(*g->edge_start));
        g->indeg = calloc(m, sizeof(*g->indeg));
        g->done = calloc(m, sizeof(*g->done));
        g->queue = calloc(m, sizeof(*g->queue));
        g->edge_to = calloc(cap, sizeof(*g->edge_to));
        if (!g->enter || !g->leave || !g->edge_start || !g->indeg || !g->done || !g->queue || !g->edge_to)
                return -ENOMEM;
        for (size_t i = 0; i < m; i++) {
                g->enter[i] = hwloc_bitmap_alloc();
                g->leave[i] = hwloc_bitmap_alloc();
                if (!g->enter[i] || !g->leave[i])
                        return -ENOMEM;
                hwloc_bitmap_andnot(g->enter[i], to[i], from[i]);
                hwloc_bitmap_andnot(g->leave[i], from[i], to[i]);
        }
        for (size_t y = 0; y < m; y++) {
                g->edge_start[y] = (unsigned)n_edges;
                for (size_t x = 0; x < m; x++) {
                        if (x == y || !hwloc_bitmap_intersects(g->enter[x], g->leave[y]))
                                continue;
                        if (n_edges == cap) {
                                unsigned *grown = realloc(g->edge_to, 2 * cap * sizeof(*grown));
                                if (!grown)
                                        return -ENOMEM;
                                g->edge_to = grown;
                                cap *= 2;
                        }
                        g->edge_to[n_edges++] = (unsigned)x;
                        g->indeg[x]++;
                }
        }
        g->edge_start[m] = (unsigned)n_edges;
        return 0;
}

/* A move's successors may go once it has left its CPUs. */
static void move_graph_release(struct move_graph *g, unsigned x, size_t *tail)
{
        for (unsigned k = g->edge_start[x]; k < g->edge_start[x + 1]; k++) {
                unsigned y = g->edge_to[k];
                if (--g->indeg[y] == 0 && !g->done[y])
                        g->queue[(*tail)++] = y;
        }
}

/*
 * A CPU where vCPU @j can wait while a cycle of its guest's moves goes on.
 * Either one of its own current usable CPUs that no sibling enters (it
 * shrinks onto it: nothing new is shared), or one it may use that no sibling holds before
 * or after this pass (siblings that start from no mask have moved first).
 * -ENOENT when there is neither.
 */
static int staging_cpu(const struct engine *e, const struct plan *out, size_t gi, size_t j, hwloc_bitmap_t set)
{
        const struct gstate *g = &e->gs[gi];
        hwloc_const_bitmap_t own = e->in[gi].vcpus[j].current;

        for (int pass = 0; pass < 2; pass++) {
                if (pass == 0)
                        hwloc_bitmap_and(set, own, e->usable_set);
                else
                        hwloc_bitmap_copy(set, allowed_set(e, g));
                for (unsigned k = 0; k < g->n; k++) {
                        hwloc_const_bitmap_t cur = e->in[gi].vcpus[k].current;
                        if (k == j)
                                continue;
                        if (pass == 1 && !is_unplaced(e, cur))
                                hwloc_bitmap_andnot(set, set, cur);
                        hwloc_bitmap_andnot(set, set, out->guests[gi].vcpus[k].target);
                }
                int cpu = hwloc_bitmap_first(set);
                if (cpu >= 0) {
                        hwloc_bitmap_only(set, (unsigned)cpu);
                        return 0;
                }
        }
        return -ENOENT;
}

/* State of one guest's ordering: the graph over its partial moves js[]. */
struct move_order {
        struct move_graph g;
        const unsigned *js;
        hwloc_bitmap_t *via;            /* by move: its staging CPU, or NULL */
        size_t head, tail, emitted;
};

/*
 * No move can go without stacking: @x and whatever must wait for it stay
 * where they are this pass (a staged one on its staging CPU), and the plan
 * says so; their targets stay what the engine wants.  Its CPUs are not
 * left, so nothing that enters them goes.
 */
static void defer_from(struct plan *out, size_t gi, struct move_order *o, unsigned x, const struct engine *e)
{
        struct move_graph *g = &o->g;
        size_t top = 0;

        _cleanup_free_ unsigned *stack = calloc(g->m, sizeof(*stack));
        if (!stack)
                return;
        g->done[x] = true;
        stack[top++] = x;
        while (top > 0) {
                unsigned y = stack[--top];
                struct vcpu_plan *vp = &out->guests[gi].vcpus[o->js[y]];

                vp->deferred = true;
                out->n_deferred++;
                o->emitted++;
                for (unsigned k = g->edge_start[y]; k < g->edge_start[y + 1]; k++)
                        if (!g->done[g->edge_to[k]]) {
                                g->done[g->edge_to[k]] = true;
                                stack[top++] = g->edge_to[k];
                        }
        }
}

/* Every remaining move waits for another (a cycle): send @x to a free CPU first, or defer it. */
static int break_cycle(struct plan *out, size_t gi, struct move_order *o, unsigned x, const struct engine *e)
{
        hwloc_bitmap_t set = hwloc_bitmap_alloc();
        size_t j = o->js[x];

        if (!set)
                return -ENOMEM;
        if (staging_cpu(e, out, gi, j, set) < 0) {
                hwloc_bitmap_free(set);
                defer_from(out, gi, o, x, e);
                return 0;
        }
        out->staging_sets[out->n_staging_sets++] = set;
        out->moves[out->n_moves++] = (struct plan_move){
                .guest = gi,
                .vcpu = j,
                .from = e->in[gi].vcpus[j].current,
                .to = set,
                .reason = out->guests[gi].vcpus[j].reason,
                .staging = true,
        };
        out->n_staged++;
        o->via[x] = set;
        move_graph_release(&o->g, x, &o->tail);
        return 0;
}

/* Kahn's algorithm in index order; a cycle is broken at its lowest index. */
static int move_graph_order(struct plan *out, size_t gi, struct move_order *o, const struct engine *e)
{
        struct move_graph *g = &o->g;
        size_t scan = 0;

        for (size_t x = 0; x < g->m; x++)
                if (g->indeg[x] == 0)
                        g->queue[o->tail++] = (unsigned)x;
        while (o->emitted < g->m) {
                if (o->head == o->tail) {
                        while (g->done[scan] || o->via[scan])
                                scan++;
                        int r = break_cycle(out, gi, o, (unsigned)scan, e);
                        if (r < 0)
                                return r;
                        continue;
                }
                unsigned x = g->queue[o->head++];
                if (g->done[x])
                        continue;
                g->done[x] = true;
                o->emitted++;
                append_move(out, gi, o->js[x], e, o->via[x]);
                if (!o->via[x])
                        move_graph_release(g, x, &o->tail);
        }
        return 0;
}

static int order_partial_moves(struct plan *out, size_t gi, const unsigned *js, size_t m,
                               const struct engine *e)
{
        struct move_order o = { .g = { .m = m }, .js = js };
        _cleanup_free_ hwloc_const_bitmap_t *from = calloc(m, sizeof(*from));
        _cleanup_free_ hwloc_const_bitmap_t *to = calloc(m, sizeof(*to));
        _cleanup_free_ hwloc_bitmap_t *via = calloc(m, sizeof(*via));
        int r = -ENOMEM;

        if (from && to && via) {
                for (size_t i = 0; i < m; i++) {
                        from[i] = e->in[gi].vcpus[js[i]].current;
                        to[i] = out->guests[gi].vcpus[js[i]].target;
                }
                r = move_graph_build(&o.g, from, to);
        }
        if (r == 0) {
                o.via = via;
                r = move_graph_order(out, gi, &o, e);
        }
        move_graph_done(&o.g);
        return r;
}

/*
 * A guest's moves: first those from no mask at all (they leave nothing
 * behind and, being everywhere already, enter nothing new), then the others
 * in dependency order.  An overcommitted guest's siblings share CPUs in the
 * plan anyway: its moves simply follow vCPU order.
 */
static int emit_guest_moves(struct plan *out, size_t gi, const struct engine *e)
{
        const struct guest_plan *gp = &out->guests[gi];
        _cleanup_free_ unsigned *partial = calloc(gp->n_vcpus ? gp->n_vcpus : 1, sizeof(*partial));
        size_t m = 0;

        if (!partial)
                return -ENOMEM;
        for (size_t j = 0; j < gp->n_vcpus; j++) {
                if (gp->vcpus[j].reason == PLACE_NONE)
                        continue;
                if (is_unplaced(e, e->in[gi].vcpus[j].current))
                        append_move(out, gi, j, e, NULL);
                else
                        partial[m++] = (unsigned)j;
        }
        /* Widening to the allowed set never stacks siblings that were apart
         * by our doing: a whole guest's vCPUs may share CPUs. */
        if (m > 1 && !gp->overcommitted && !e->gs[gi].whole)
                return order_partial_moves(out, gi, partial, m, e);
        for (size_t i = 0; i < m; i++)
                append_move(out, gi, partial[i], e, NULL);
        return 0;
}

static int emit(const struct engine *e, struct plan *out)
{
        size_t n_moves = 0;

        out->guests = calloc(e->n_guests ? e->n_guests : 1, sizeof(*out->guests));
        out->pu_load = calloc(e->d.n_pus, sizeof(*out->pu_load));
        if (!out->guests || !out->pu_load)
                return -ENOMEM;
        out->n_guests = e->n_guests;
        out->n_pus = e->d.n_pus;
        out->ideal_load = e->ideal;
        for (size_t p = 0; p < e->d.n_pus; p++)
                out->pu_load[p] = e->d.usable[p] ? e->load[p] + e->base_load : 0;
        for (size_t gi = 0; gi < e->n_guests; gi++) {
                int r = emit_guest(e, gi, &out->guests[gi]);
                if (r < 0)
                        return r;
                for (size_t j = 0; j < out->guests[gi].n_vcpus; j++)
                        n_moves += out->guests[gi].vcpus[j].reason != PLACE_NONE;
        }
        /* A partial move may take a staging step first: at most twice as many. */
        out->moves = calloc(n_moves ? 2 * n_moves : 1, sizeof(*out->moves));
        out->staging_sets = calloc(n_moves ? n_moves : 1, sizeof(*out->staging_sets));
        if (!out->moves || !out->staging_sets)
                return -ENOMEM;
        for (size_t gi = 0; gi < e->n_guests; gi++) {
                int r = emit_guest_moves(out, gi, e);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- Entry points ---- */

static bool is_load(double x)
{
        return x >= 0 && x <= 1;        /* false for NaN */
}

static int validate(const struct guest_input *guests, size_t n_guests, const struct plan_params *p)
{
        if (!(p->imbalance_threshold >= 0) || !(p->hysteresis >= 0) || !isfinite(p->hysteresis) ||
            !isfinite(p->imbalance_threshold) || !is_load(p->unsampled_load) || !is_load(p->boot_load))
                return -EINVAL;
        if (n_guests > 0 && !guests)
                return -EINVAL;
        for (size_t i = 0; i < n_guests; i++) {
                if ((unsigned)guests[i].policy >= _POLICY_MAX || (unsigned)guests[i].auto_mode >= _ADAPTIVE_MODE_MAX ||
                    (guests[i].n_vcpus > 0 && !guests[i].vcpus))
                        return -EINVAL;
                if (guests[i].n_vcpus > UINT_MAX / 2)
                        return -EINVAL;
                for (size_t j = 0; j < guests[i].n_vcpus; j++) {
                        const struct vcpu_input *v = &guests[i].vcpus[j];
                        if (!v->unsampled && (!is_load(v->load) || !is_load(v->wait) || !(v->wait_ms >= 0)))
                                return -EINVAL;
                }
        }
        return 0;
}

static int plan_with(struct engine *e, const struct guest_input *guests, size_t n_guests, struct plan *out)
{
        int r = setup_guests(e, guests, n_guests);
        if (r < 0)
                return r;
        count_totals(e);
        if ((r = classify_and_account(e)) < 0 || (r = place_all(e)) < 0 || (r = rebalance(e)) < 0)
                return r;
        return emit(e, out);
}

int placement_plan(const struct topology *topo, hwloc_const_bitmap_t usable,
                   const struct guest_input *guests, size_t n_guests,
                   const struct plan_params *params, struct plan *out)
{
        struct plan_params defaults;
        struct engine e = {};

        memset(out, 0, sizeof(*out));
        if (!params) {
                plan_params_default(&defaults);
                params = &defaults;
        }
        if (!topo || !usable)
                return -EINVAL;
        int r = validate(guests, n_guests, params);
        if (r < 0)
                return r;
        r = engine_init(&e, topo, usable, params);
        if (r == 0)
                r = plan_with(&e, guests, n_guests, out);
        engine_done(&e);
        if (r < 0)
                plan_done(out);
        return r;
}

void plan_done(struct plan *p)
{
        for (size_t i = 0; p->guests && i < p->n_guests; i++) {
                struct guest_plan *g = &p->guests[i];
                for (size_t j = 0; g->vcpus && j < g->n_vcpus; j++)
                        if (g->vcpus[j].target)
                                hwloc_bitmap_free(g->vcpus[j].target);
                free(g->vcpus);
        }
        for (size_t i = 0; i < p->n_staging_sets; i++)
                hwloc_bitmap_free(p->staging_sets[i]);
        free(p->staging_sets);
        free(p->guests);
        free(p->moves);
        free(p->pu_load);
        memset(p, 0, sizeof(*p));
}
