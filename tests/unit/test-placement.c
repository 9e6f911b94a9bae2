/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The placement engine's properties (issue 2, 1-7) on hwloc synthetic
 * topologies from 2 to 1,024 PUs, on hand-made cases and on random inputs
 * drawn from a fixed seed.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "cpulist.h"
#include "macro.h"
#include "placement.h"
#include "tap.h"
#include "topology.h"

static const char *const topologies[] = {
        "pu:2",
        "core:2 pu:1",
        "core:2 pu:2",
        "numa:2 core:2 pu:1",
        "pack:1 l3:2 core:4 pu:2",
        "pack:2 numa:2 l3:3 core:3 pu:2",       /* nothing a power of two */
        "pack:2 numa:2 l3:2 core:8 pu:2",       /* 128 */
        "pack:4 numa:2 l3:4 core:16 pu:2",      /* 1,024 */
};

static int weight(hwloc_const_bitmap_t b)
{
        return hwloc_bitmap_weight(b);
}

/* ---- Topologies, each loaded once (hwloc loads its plugins on every load) ---- */

struct topo_cache {
        size_t n;
        struct {
                const char *name;
                struct topology *topo;
        } slot[32];
};

static struct topology *topo_get(struct topo_cache *tc, const char *synthetic)
{
        for (size_t i = 0; i < tc->n; i++)
                if (strcmp(tc->slot[i].name, synthetic) == 0)
                        return tc->slot[i].topo;
        struct topology *t = NULL;
        int r = topology_load_synthetic(synthetic, &t);
        CHECK(r == 0 && tc->n < ELEMENTSOF(tc->slot), "load %s: %s", synthetic, strerror(-r));
        if (r < 0 || tc->n >= ELEMENTSOF(tc->slot)) {
                topology_free(t);
                return NULL;
        }
        tc->slot[tc->n].name = synthetic;
        tc->slot[tc->n++].topo = t;
        return t;
}

static void topo_cache_done(struct topo_cache *tc)
{
        for (size_t i = 0; i < tc->n; i++)
                topology_free(tc->slot[i].topo);
}

/* ---- Scenario: a topology (borrowed), a usable set and guests (owned) ---- */

struct scenario {
        struct topology *topo;          /* borrowed from the cache */
        hwloc_bitmap_t usable;
        struct guest_input *guests;
        size_t n_guests;
        struct plan_params params;
};

static int scenario_init(struct scenario *s, struct topo_cache *tc, const char *synthetic)
{
        *s = (struct scenario){};
        plan_params_default(&s->params);
        s->topo = topo_get(tc, synthetic);
        if (!s->topo)
                return -EINVAL;
        s->usable = hwloc_bitmap_alloc();
        CHECK(topology_usable(s->topo, NULL, s->usable) == 0, "usable of %s", synthetic);
        return 0;
}

static void scenario_done(struct scenario *s)
{
        for (size_t i = 0; i < s->n_guests; i++) {
                struct guest_input *g = &s->guests[i];
                for (size_t j = 0; j < g->n_vcpus; j++)
                        if (g->vcpus[j].current)
                                hwloc_bitmap_free((hwloc_bitmap_t)g->vcpus[j].current);
                if (g->restriction)
                        hwloc_bitmap_free((hwloc_bitmap_t)g->restriction);
                free((void *)g->vcpus);
        }
        free(s->guests);
        if (s->usable)
                hwloc_bitmap_free(s->usable);
        *s = (struct scenario){};
}

static struct vcpu_input *vcpus_of(struct scenario *s, size_t gi)
{
        return (struct vcpu_input *)s->guests[gi].vcpus;
}

static size_t add_guest(struct scenario *s, enum placement_policy policy, size_t n, double load)
{
        s->guests = realloc(s->guests, (s->n_guests + 1) * sizeof(*s->guests));
        struct vcpu_input *v = calloc(n ? n : 1, sizeof(*v));
        for (size_t j = 0; j < n; j++)
                v[j] = (struct vcpu_input){ .vcpu = (unsigned)j, .load = load };
        s->guests[s->n_guests] = (struct guest_input){
                .id = (unsigned)s->n_guests, .name = "g", .policy = policy, .n_vcpus = n, .vcpus = v,
        };
        return s->n_guests++;
}

static hwloc_bitmap_t parse(const char *list)
{
        hwloc_bitmap_t b = hwloc_bitmap_alloc();
        int r = cpulist_parse(list, b, NULL, 0);
        CHECK(r == 0, "parse %s", list);
        return b;
}

static void set_current(struct scenario *s, size_t gi, size_t j, const char *list)
{
        struct vcpu_input *v = &vcpus_of(s, gi)[j];
        if (v->current)
                hwloc_bitmap_free((hwloc_bitmap_t)v->current);
        v->current = list ? parse(list) : NULL;
}

/* Every vCPU's current mask becomes its target in @p (how a restarted daemon finds them). */
static void adopt(struct scenario *s, const struct plan *p)
{
        for (size_t i = 0; i < s->n_guests; i++)
                for (size_t j = 0; j < s->guests[i].n_vcpus; j++) {
                        struct vcpu_input *v = &vcpus_of(s, i)[j];
                        if (v->current)
                                hwloc_bitmap_free((hwloc_bitmap_t)v->current);
                        v->current = hwloc_bitmap_dup(p->guests[i].vcpus[j].target);
                }
}

static int plan(struct scenario *s, struct plan *p)
{
        return placement_plan(s->topo, s->usable, s->guests, s->n_guests, &s->params, p);
}

/* plan() that must succeed: a failure is a failed check, never a skipped one. */
static bool plan_ok(struct scenario *s, struct plan *p, const char *what)
{
        int r = plan(s, p);
        CHECK(r == 0, "%s: plan: %s", what, strerror(-r));
        return r == 0;
}

static struct plan_checks checks_of(struct scenario *s, const struct plan *p)
{
        struct plan_checks c;
        placement_check(s->topo, s->usable, s->guests, s->n_guests, p, &c);
        return c;
}

/* On a balance failure: who sits on the hottest PU. */
static void dump_hot(const struct scenario *s, const struct plan *p)
{
        size_t hot = 0;
        for (size_t i = 0; i < p->n_pus; i++)
                if (p->pu_load[i] > p->pu_load[hot])
                        hot = i;
        unsigned os = s->topo->pus[hot].os_index;
        fprintf(stderr, "# hot PU %zu load %.3f ideal %.3f\n", hot, p->pu_load[hot], p->ideal_load);
        for (size_t i = 0; i < s->n_guests; i++)
                for (size_t j = 0; j < s->guests[i].n_vcpus; j++) {
                        const struct vcpu_plan *vp = &p->guests[i].vcpus[j];
                        if (!hwloc_bitmap_isset(vp->target, os))
                                continue;
                        char *mask = cpulist_format(vp->target);
                        fprintf(stderr, "#   guest %zu (%s, %zu vCPUs, scope %s%s) vCPU %zu load %.3f on %s (%s)\n",
                                i, placement_policy_to_string(s->guests[i].policy), s->guests[i].n_vcpus,
                                plan_scope_to_string(p->guests[i].scope), p->guests[i].spilled ? ", spilled" : "",
                                j, s->guests[i].vcpus[j].load, mask, place_reason_to_string(vp->reason));
                        free(mask);
                }
}

/*
 * Most load that ignored guests alone put on one PU.  Their masks are random
 * in the random tests; when that alone exceeds ideal + largest vCPU load, no
 * engine can meet property 4, which is about what the engine places.
 */
static double ignored_peak(const struct scenario *s)
{
        double *load = calloc(s->topo->n_pus, sizeof(*load)), peak = 0;
        hwloc_bitmap_t mask = hwloc_bitmap_alloc();
        unsigned os;

        for (size_t i = 0; i < s->n_guests; i++)
                for (size_t j = 0; s->guests[i].policy == POLICY_IGNORE && j < s->guests[i].n_vcpus; j++) {
                        const struct vcpu_input *v = &s->guests[i].vcpus[j];
                        if (v->current)
                                hwloc_bitmap_and(mask, v->current, s->usable);
                        else
                                hwloc_bitmap_copy(mask, s->usable);
                        hwloc_bitmap_foreach_begin(os, mask) {
                                load[topology_pu_dense(s->topo, os)] += v->load / weight(mask);
                        } hwloc_bitmap_foreach_end();
                }
        for (size_t i = 0; i < s->topo->n_pus; i++)
                peak = fmax(peak, load[i]);
        free(load);
        hwloc_bitmap_free(mask);
        return peak;
}

static bool balance_feasible(const struct scenario *s, const struct plan *p, const struct plan_checks *c)
{
        return ignored_peak(s) <= p->ideal_load + c->max_vcpu_load;
}

/* Plan, and assert that properties 1-4 hold and that the plan's loads agree with the check's. */
static int plan_checked(struct scenario *s, struct plan *p, const char *what)
{
        int r = plan(s, p);
        CHECK(r == 0, "%s: plan: %s", what, strerror(-r));
        if (r < 0)
                return r;
        struct plan_checks c = checks_of(s, p);
        CHECK(c.anti_affinity, "%s: anti-affinity (%zu staged, %zu deferred)", what, p->n_staged, p->n_deferred);
        CHECK(c.smt, "%s: smt", what);
        CHECK(c.locality, "%s: locality", what);
        CHECK(c.bounds, "%s: bounds", what);
        bool feasible = balance_feasible(s, p, &c);
        CHECK(c.balance || !feasible, "%s: balance: max %.3f ideal %.3f max vcpu %.3f", what, c.max_pu_load,
              p->ideal_load, c.max_vcpu_load);
        if (!c.balance && feasible)
                dump_hot(s, p);
        double max = 0;
        for (size_t i = 0; i < p->n_pus; i++)
                max = fmax(max, p->pu_load[i]);
        CHECK(fabs(max - c.max_pu_load) < 1e-6, "%s: plan says max load %.6f, check %.6f", what, max,
              c.max_pu_load);
        return 0;
}

static bool target_is(const struct plan *p, size_t gi, size_t j, const char *list)
{
        _cleanup_bitmap_ hwloc_bitmap_t want = parse(list);
        return hwloc_bitmap_isequal(p->guests[gi].vcpus[j].target, want);
}

static bool target_within(const struct plan *p, size_t gi, const char *list)
{
        _cleanup_bitmap_ hwloc_bitmap_t want = parse(list);
        for (size_t j = 0; j < p->guests[gi].n_vcpus; j++)
                if (!hwloc_bitmap_isincluded(p->guests[gi].vcpus[j].target, want))
                        return false;
        return true;
}

static size_t moves_of_guest(const struct plan *p, size_t gi)
{
        size_t n = 0;
        for (size_t i = 0; i < p->n_moves; i++)
                n += p->moves[i].guest == gi;
        return n;
}

/* ---- Random inputs, from a fixed seed ---- */

struct rng {
        uint64_t state;
};

static uint64_t rng_next(struct rng *r)
{
        /* xorshift64* */
        r->state ^= r->state >> 12;
        r->state ^= r->state << 25;
        r->state ^= r->state >> 27;
        return r->state * 2685821657736338717ull;
}

static unsigned rng_below(struct rng *r, unsigned n)
{
        return (unsigned)(rng_next(r) % n);
}

static double rng_load(struct rng *r)
{
        return (double)(rng_next(r) >> 11) / (double)(1ull << 53);
}

/* A random set of @n PUs (about) among the usable ones, as an ignored guest's mask. */
static hwloc_bitmap_t random_mask(struct rng *r, const struct scenario *s, unsigned n)
{
        hwloc_bitmap_t b = hwloc_bitmap_alloc();
        int pus = weight(s->usable);
        for (unsigned i = 0; i < n; i++)
                hwloc_bitmap_set(b, (unsigned)hwloc_bitmap_first(s->usable) + rng_below(r, (unsigned)pus));
        hwloc_bitmap_and(b, b, s->usable);
        return b;
}

/*
 * Guests of 1-16 vCPUs (now and then, if @big, one of up to all PUs) with
 * random loads until about @density x the PUs' worth of vCPUs; mostly
 * spread, some spread-cores, a few ignored with random masks.
 */
static void random_guests_sized(struct rng *r, struct scenario *s, double density, bool big)
{
        unsigned pus = (unsigned)weight(s->usable), target = (unsigned)(density * pus) + 1, total = 0;

        while (total < target) {
                unsigned n = big && rng_below(r, 10) == 0 ? 1 + rng_below(r, pus + 2) : 1 + rng_below(r, 16);
                unsigned kind = rng_below(r, 10);
                enum placement_policy policy = kind < 6 ? POLICY_SPREAD : kind < 9 ? POLICY_SPREAD_CORES : POLICY_IGNORE;
                size_t gi = add_guest(s, policy, n, 0);
                for (unsigned j = 0; j < n; j++) {
                        struct vcpu_input *v = &vcpus_of(s, gi)[j];
                        v->load = rng_load(r);
                        if (policy == POLICY_IGNORE && rng_below(r, 2))
                                v->current = random_mask(r, s, 1 + pus / 2);
                }
                total += n;
        }
}

static void random_guests(struct rng *r, struct scenario *s, double density)
{
        random_guests_sized(r, s, density, true);
}

/* ---- 0. Strings and bad input ---- */

static void test_strings(void)
{
        for (int p = 0; p < _POLICY_MAX; p++)
                CHECK(placement_policy_from_string(placement_policy_to_string(p)) == p, "policy %d", p);
        CHECK(placement_policy_from_string("spread-threads") == -EINVAL, "unknown policy");
        CHECK(strcmp(place_reason_to_string(PLACE_UNPLACED), "new-guest") == 0, "reason name");
        CHECK(place_reason_to_string(_PLACE_REASON_MAX) == NULL, "reason out of range");
        CHECK(strcmp(plan_scope_to_string(SCOPE_NUMA), "numa") == 0, "scope name");
}

static void test_bad_input(struct topo_cache *tc)
{
        struct scenario s;
        struct plan p;

        if (scenario_init(&s, tc, "core:4 pu:1") < 0)
                return;
        size_t g = add_guest(&s, POLICY_SPREAD, 2, 0.5);
        vcpus_of(&s, g)[1].load = NAN;
        CHECK(plan(&s, &p) == -EINVAL, "NaN load accepted");
        vcpus_of(&s, g)[1].load = 1.5;
        CHECK(plan(&s, &p) == -EINVAL, "load 1.5 accepted");
        vcpus_of(&s, g)[1].load = -0.01;
        CHECK(plan(&s, &p) == -EINVAL, "negative load accepted");
        CHECK(p.guests == NULL && p.n_moves == 0, "failed plan left output behind");
        vcpus_of(&s, g)[1].load = 1;

        hwloc_bitmap_zero(s.usable);
        CHECK(plan(&s, &p) == -ENOSPC, "empty usable set accepted");
        hwloc_bitmap_set_range(s.usable, 0, 3);

        /* A restriction with no usable CPU: that guest is untouched, the others planned. */
        size_t bad = add_guest(&s, POLICY_SPREAD, 2, 1);
        s.guests[bad].restriction = parse("8-9");
        set_current(&s, bad, 0, "0");
        CHECK(plan_checked(&s, &p, "restriction outside usable") == 0, "plan");
        CHECK(p.guests[bad].error == -ENOSPC, "guest error %d", p.guests[bad].error);
        CHECK(moves_of_guest(&p, bad) == 0, "errored guest moved");
        CHECK(target_is(&p, bad, 0, "0"), "errored guest's mask changed");
        CHECK(p.guests[g].error == 0 && moves_of_guest(&p, g) == 2, "other guest not planned");
        /* Its load still counts, on its current CPU. */
        CHECK(p.pu_load[0] >= 1 - 1e-9, "errored guest's load lost: %.2f", p.pu_load[0]);
        plan_done(&p);
        scenario_done(&s);
}

/* ---- 1. Spread ---- */

static void test_spread_tiny(struct topo_cache *tc)
{
        for (size_t t = 0; t < 2; t++) {
                struct scenario s;
                struct plan p;
                if (scenario_init(&s, tc, topologies[t]) < 0)
                        continue;
                size_t two = add_guest(&s, POLICY_SPREAD, 2, 1);
                size_t one = add_guest(&s, POLICY_SPREAD, 1, 0.5);
                if (plan_checked(&s, &p, topologies[t]) == 0) {
                        CHECK(weight(p.guests[two].vcpus[0].target) == 1 &&
                              !hwloc_bitmap_intersects(p.guests[two].vcpus[0].target, p.guests[two].vcpus[1].target),
                              "%s: 2 vCPUs not on one PU each", topologies[t]);
                        /* A lane never covers the whole usable set (that would be no placement). */
                        CHECK(weight(p.guests[one].vcpus[0].target) == 1, "%s: lone vCPU lane", topologies[t]);
                        CHECK(p.n_moves == 3 && p.moves[0].reason == PLACE_UNPLACED, "%s: moves %zu",
                              topologies[t], p.n_moves);
                        CHECK(!p.guests[two].overcommitted && p.guests[two].max_per_pu == 1, "not overcommitted");
                        plan_done(&p);
                }
                scenario_done(&s);
        }
}

static void test_overcommit(struct topo_cache *tc)
{
        struct scenario s;
        struct plan p;

        if (scenario_init(&s, tc, "pu:2") < 0)
                return;
        size_t g = add_guest(&s, POLICY_SPREAD, 5, 0.8);
        if (plan_checked(&s, &p, "5 vCPUs on 2 PUs") == 0) {
                CHECK(p.guests[g].overcommitted && p.guests[g].max_per_pu == 3, "overcommit %d/%u",
                      p.guests[g].overcommitted, p.guests[g].max_per_pu);
                unsigned on0 = 0;
                for (size_t j = 0; j < 5; j++) {
                        CHECK(weight(p.guests[g].vcpus[j].target) == 1, "overcommitted lane");
                        on0 += hwloc_bitmap_isset(p.guests[g].vcpus[j].target, 0);
                }
                CHECK(on0 == 2 || on0 == 3, "PU 0 carries %u of 5", on0);
                plan_done(&p);
        }
        scenario_done(&s);

        /* Many more vCPUs than PUs, many guests: 10,000 on 64. */
        struct rng r = { 0x5eed0001 };
        if (scenario_init(&s, tc, "pack:1 l3:2 core:16 pu:2") < 0)
                return;
        random_guests(&r, &s, 10000.0 / 64);
        if (plan_checked(&s, &p, "10,000 vCPUs on 64 PUs") == 0)
                plan_done(&p);
        scenario_done(&s);
}

/* ---- 2. Spread-cores ---- */

static void test_spread_cores(struct topo_cache *tc)
{
        struct scenario s;
        struct plan p;

        if (scenario_init(&s, tc, "core:4 pu:2") < 0)
                return;
        s.params.lane_width = 1;
        size_t cores = add_guest(&s, POLICY_SPREAD_CORES, 4, 1);
        size_t more = add_guest(&s, POLICY_SPREAD_CORES, 5, 1);
        size_t spread = add_guest(&s, POLICY_SPREAD, 4, 1);
        if (plan_checked(&s, &p, "spread-cores") == 0) {
                unsigned seen = 0;
                for (size_t j = 0; j < 4; j++) {
                        int pu = hwloc_bitmap_first(p.guests[cores].vcpus[j].target);
                        unsigned core = s.topo->pus[topology_pu_dense(s.topo, (unsigned)pu)].core;
                        CHECK(!(seen & (1u << core)), "spread-cores: two siblings on core %u", core);
                        seen |= 1u << core;
                }
                /* 5 vCPUs on 4 cores: cores must be shared, PUs still disjoint (checked). */
                CHECK(!p.guests[more].overcommitted, "5 on 8 PUs is not overcommitted");
                /* Spread prefers distinct cores too while there are enough (SMT penalty). */
                seen = 0;
                for (size_t j = 0; j < 4; j++) {
                        int pu = hwloc_bitmap_first(p.guests[spread].vcpus[j].target);
                        seen |= 1u << s.topo->pus[topology_pu_dense(s.topo, (unsigned)pu)].core;
                }
                CHECK(seen == 0xf, "spread with 4 vCPUs on 4 cores shares a core: %#x", seen);
                plan_done(&p);
        }

        /* Auto lanes under spread-cores are whole cores... */
        s.params.lane_width = 0;
        s.guests[more].n_vcpus = s.guests[spread].n_vcpus = 0;
        if (plan_checked(&s, &p, "spread-cores, auto lanes") == 0) {
                for (size_t j = 0; j < 4; j++)
                        CHECK(weight(p.guests[cores].vcpus[j].target) == 2, "lane of a whole core");
                plan_done(&p);
        }
        /* ...but never lift a busy PU above what the home PU alone would carry. */
        s.guests[more].n_vcpus = 5;
        if (plan_checked(&s, &p, "spread-cores, auto lanes, busy") == 0) {
                for (size_t j = 0; j < 4; j++) {
                        int pu = hwloc_bitmap_first(p.guests[cores].vcpus[j].target);
                        CHECK(p.pu_load[topology_pu_dense(s.topo, (unsigned)pu)] <= 2 + 1e-9, "lane lifted PU %d", pu);
                }
                plan_done(&p);
        }
        s.guests[spread].n_vcpus = 4;
        scenario_done(&s);
}

/* ---- 3. Locality ---- */

static void test_locality(struct topo_cache *tc)
{
        struct scenario s;
        struct plan p;

        /* 4 NUMA nodes of 32 PUs, each 2 L3 groups of 16: 0-15, 16-31, 32-47, ... */
        if (scenario_init(&s, tc, "pack:2 numa:2 l3:2 core:8 pu:2") < 0)
                return;
        size_t busy = add_guest(&s, POLICY_IGNORE, 16, 1);
        for (size_t j = 0; j < 16; j++)
                set_current(&s, busy, j, "0-15");
        size_t small = add_guest(&s, POLICY_SPREAD, 4, 0.5);
        size_t mid = add_guest(&s, POLICY_SPREAD, 24, 0.5);
        size_t big = add_guest(&s, POLICY_SPREAD, 40, 0.5);
        if (plan_checked(&s, &p, "locality") == 0) {
                CHECK(p.guests[small].scope == SCOPE_L3 && !p.guests[small].spilled, "small guest scope %d",
                      p.guests[small].scope);
                CHECK(p.guests[mid].scope == SCOPE_NUMA, "24 vCPUs fit a node, not an L3: scope %d",
                      p.guests[mid].scope);
                CHECK(p.guests[big].scope == SCOPE_ANY && !p.guests[big].spilled, "40 vCPUs fit no node");
                /* Node 0 carries the busy guest: the others go to the least-loaded nodes. */
                CHECK(!target_within(&p, small, "0-31") && !target_within(&p, mid, "0-31"),
                      "placed on the loaded node");
                plan_done(&p);
        }
        scenario_done(&s);

        /* The least-loaded node, then its least-loaded L3 group. */
        if (scenario_init(&s, tc, "pack:2 numa:2 l3:2 core:8 pu:2") < 0)
                return;
        static const char *const busy_on[] = { "0-31", "32-63", "64-95", "96-111" };
        static const unsigned busy_vcpus[] = { 16, 8, 4, 2 };
        for (size_t n = 0; n < ELEMENTSOF(busy_on); n++) {
                size_t b = add_guest(&s, POLICY_IGNORE, busy_vcpus[n], 1);
                for (size_t j = 0; j < busy_vcpus[n]; j++)
                        set_current(&s, b, j, busy_on[n]);
        }
        small = add_guest(&s, POLICY_SPREAD, 4, 0.5);
        if (plan_checked(&s, &p, "least loaded") == 0) {
                CHECK(target_within(&p, small, "112-127"), "not in node 3's idle L3 group");
                plan_done(&p);
        }
        scenario_done(&s);

        /*
         * Load does not allow: the guest fits only node 0 (restriction), which
         * already carries 4.0 on its 2 PUs.  Keeping it there would put node 0
         * above ideal + max vCPU load, so it spills and says so.
         */
        if (scenario_init(&s, tc, "numa:3 core:2 pu:1") < 0)
                return;
        s.params.lane_width = 1;
        size_t hog = add_guest(&s, POLICY_IGNORE, 4, 1);
        set_current(&s, hog, 0, "0");
        set_current(&s, hog, 1, "0");
        set_current(&s, hog, 2, "1");
        set_current(&s, hog, 3, "1");
        size_t g = add_guest(&s, POLICY_SPREAD, 2, 1);
        s.guests[g].restriction = parse("0,1,2,4");
        if (plan_ok(&s, &p, __func__)) {
                struct plan_checks c = checks_of(&s, &p);
                CHECK(p.guests[g].spilled && p.guests[g].scope == SCOPE_ANY, "spilled %d scope %d",
                      p.guests[g].spilled, p.guests[g].scope);
                CHECK(c.locality && c.anti_affinity && c.bounds, "checks of a spilled guest");
                CHECK(!target_within(&p, g, "0-1"), "kept on the overloaded node");
                plan_done(&p);
        }
        /* Without the hog the same guest stays in node 0. */
        s.guests[hog].n_vcpus = 0;
        if (plan_checked(&s, &p, "fits node 0") == 0) {
                CHECK(!p.guests[g].spilled && target_within(&p, g, "0-1"), "left node 0 needlessly");
                plan_done(&p);
        }
        s.guests[hog].n_vcpus = 4;
        scenario_done(&s);
}

/* ---- 4. Balance on random inputs ---- */

static void test_random_balance(struct topo_cache *tc)
{
        struct rng r = { 0x5eed0004 };
        static const unsigned lanes[] = { 0, 1, 2 };
        static const double densities[] = { 0.3, 1.0, 3.0 };
        unsigned spilled = 0, guests = 0, cases = 0, infeasible = 0;

        for (size_t t = 0; t < ELEMENTSOF(topologies); t++)
                for (size_t l = 0; l < ELEMENTSOF(lanes); l++)
                        for (size_t d = 0; d < ELEMENTSOF(densities); d++)
                                for (unsigned round = 0; round < 3; round++) {
                                        struct scenario s;
                                        struct plan p;
                                        char what[128];
                                        if (scenario_init(&s, tc, topologies[t]) < 0)
                                                continue;
                                        s.params.lane_width = lanes[l];
                                        random_guests(&r, &s, densities[d]);
                                        snprintf(what, sizeof(what), "%s lanes %u density %.1f round %u",
                                                 topologies[t], lanes[l], densities[d], round);
                                        if (plan_checked(&s, &p, what) == 0) {
                                                struct plan_checks c = checks_of(&s, &p);
                                                for (size_t i = 0; i < p.n_guests; i++)
                                                        spilled += p.guests[i].spilled;
                                                guests += (unsigned)p.n_guests;
                                                infeasible += !balance_feasible(&s, &p, &c);
                                                cases++;
                                                plan_done(&p);
                                        }
                                        scenario_done(&s);
                                }
        /* Spilling is the exception: load rarely forbids locality without restrictions. */
        CHECK(spilled * 50 <= guests, "%u of %u guests spilled", spilled, guests);
        /* Balance is asserted in all but the few cases where ignored guests alone break it. */
        CHECK(infeasible * 10 <= cases, "%u of %u random cases cannot be balanced", infeasible, cases);
        fprintf(stderr, "# random balance: %u cases (%u not balanceable), %u of %u guests spilled\n", cases,
                infeasible, spilled, guests);
}

/* ---- 5. Stability ---- */

static bool plans_equal(const struct plan *a, const struct plan *b)
{
        if (a->n_moves != b->n_moves || a->n_guests != b->n_guests)
                return false;
        for (size_t i = 0; i < a->n_guests; i++)
                for (size_t j = 0; j < a->guests[i].n_vcpus; j++)
                        if (!hwloc_bitmap_isequal(a->guests[i].vcpus[j].target, b->guests[i].vcpus[j].target) ||
                            a->guests[i].vcpus[j].reason != b->guests[i].vcpus[j].reason)
                                return false;
        for (size_t i = 0; i < a->n_moves; i++)
                if (a->moves[i].guest != b->moves[i].guest || a->moves[i].vcpu != b->moves[i].vcpu)
                        return false;
        return true;
}

static void test_stability_random(struct topo_cache *tc)
{
        struct rng r = { 0x5eed0005 };

        for (size_t t = 0; t < ELEMENTSOF(topologies); t++)
                for (unsigned lane = 0; lane < 2; lane++) {
                        struct scenario s;
                        struct plan first, again, adopted, changed;
                        char what[128];
                        if (scenario_init(&s, tc, topologies[t]) < 0)
                                continue;
                        s.params.lane_width = lane;
                        random_guests(&r, &s, 1.5);
                        snprintf(what, sizeof(what), "%s lanes %u", topologies[t], lane);
                        if (plan_checked(&s, &first, what) < 0) {
                                scenario_done(&s);
                                continue;
                        }
                        /* Deterministic. */
                        if (plan_ok(&s, &again, __func__)) {
                                CHECK(plans_equal(&first, &again), "%s: two plans differ", what);
                                plan_done(&again);
                        }
                        /* A restarted daemon adopts what it finds: zero moves. */
                        adopt(&s, &first);
                        if (plan_checked(&s, &adopted, what) == 0) {
                                CHECK(adopted.n_moves == 0, "%s: %zu moves on adopting its own plan", what,
                                      adopted.n_moves);
                                plan_done(&adopted);
                        }
                        /* A small load change moves few vCPUs, not all. */
                        size_t n_vcpus = 0;
                        for (size_t i = 0; i < s.n_guests; i++) {
                                for (size_t j = 0; j < s.guests[i].n_vcpus; j++) {
                                        struct vcpu_input *v = &vcpus_of(&s, i)[j];
                                        v->load = fmin(1, fmax(0, v->load + (rng_load(&r) - 0.5) * 0.1));
                                }
                                n_vcpus += s.guests[i].n_vcpus;
                        }
                        vcpus_of(&s, 0)[0].load = 1;
                        /* Unlimited moves: few is the engine's doing, not max_moves'. */
                        s.params.moves_per_interval = 0;
                        if (plan_ok(&s, &changed, __func__)) {
                                fprintf(stderr, "# %s: %zu of %zu vCPUs moved after a small load change\n", what,
                                        changed.n_moves, n_vcpus);
                                CHECK(changed.n_moves <= 2 + n_vcpus / 20, "%s: %zu of %zu vCPUs moved", what,
                                      changed.n_moves, n_vcpus);
                                for (size_t i = 0; i < changed.n_moves; i++)
                                        CHECK(changed.moves[i].reason == PLACE_REBALANCE, "%s: move for %s", what,
                                              place_reason_to_string(changed.moves[i].reason));
                                plan_done(&changed);
                        }
                        plan_done(&first);
                        scenario_done(&s);
                }
}

/* Masks someone else set that satisfy 1-3, balanced enough: adopted as they are. */
static void test_adopt_foreign(struct topo_cache *tc)
{
        struct scenario s;
        struct plan p;

        if (scenario_init(&s, tc, "pack:1 l3:2 core:4 pu:2") < 0)
                return;
        size_t a = add_guest(&s, POLICY_SPREAD, 2, 0.2);
        size_t b = add_guest(&s, POLICY_SPREAD_CORES, 2, 0.2);
        set_current(&s, a, 0, "0-1");
        set_current(&s, a, 1, "2");
        set_current(&s, b, 0, "8,9");
        set_current(&s, b, 1, "12");
        if (plan_checked(&s, &p, "foreign masks") == 0) {
                CHECK(p.n_moves == 0, "%zu moves", p.n_moves);
                CHECK(target_is(&p, a, 0, "0-1") && target_is(&p, b, 1, "12"), "masks changed");
                plan_done(&p);
        }
        scenario_done(&s);
}

/* Only violating vCPUs move, each with its reason. */
static void test_fix_violations(struct topo_cache *tc)
{
        struct scenario s;
        struct plan p;

        if (scenario_init(&s, tc, "core:4 pu:2") < 0)
                return;
        hwloc_bitmap_clr(s.usable, 7);          /* reserved */
        s.params.lane_width = 1;
        size_t g = add_guest(&s, POLICY_SPREAD, 5, 0.5);
        set_current(&s, g, 0, "0");
        set_current(&s, g, 1, "2");
        set_current(&s, g, 2, "2");             /* collides with vCPU 1 */
        set_current(&s, g, 3, "6-7");           /* 7 is reserved */
        set_current(&s, g, 4, "0-6");           /* the whole usable set: never placed */
        size_t c = add_guest(&s, POLICY_SPREAD_CORES, 2, 0.5);
        set_current(&s, c, 0, "4");
        set_current(&s, c, 1, "5");             /* same core as vCPU 0 */
        if (plan_checked(&s, &p, "violations") == 0) {
                CHECK(p.guests[g].vcpus[0].reason == PLACE_NONE && p.guests[g].vcpus[1].reason == PLACE_NONE,
                      "valid vCPUs moved");
                CHECK(p.guests[g].vcpus[2].reason == PLACE_SIBLING_CONFLICT, "reason %d",
                      p.guests[g].vcpus[2].reason);
                CHECK(p.guests[g].vcpus[3].reason == PLACE_OUT_OF_BOUNDS, "reason %d", p.guests[g].vcpus[3].reason);
                CHECK(p.guests[g].vcpus[4].reason == PLACE_UNPLACED, "reason %d", p.guests[g].vcpus[4].reason);
                CHECK(p.guests[c].vcpus[0].reason == PLACE_NONE &&
                      p.guests[c].vcpus[1].reason == PLACE_SMT_CONFLICT, "smt reasons %d %d",
                      p.guests[c].vcpus[0].reason, p.guests[c].vcpus[1].reason);
                CHECK(p.n_moves == 4, "moves %zu", p.n_moves);
                plan_done(&p);
        }
        scenario_done(&s);

        /* Split over two NUMA nodes although it fits one: moved together. */
        if (scenario_init(&s, tc, "numa:2 core:4 pu:1") < 0)
                return;
        s.params.lane_width = 1;
        g = add_guest(&s, POLICY_SPREAD, 2, 0.5);
        set_current(&s, g, 0, "0");
        set_current(&s, g, 1, "4");
        if (plan_checked(&s, &p, "split guest") == 0) {
                CHECK(p.n_moves == 1 && p.moves[0].reason == PLACE_LOCALITY, "moves %zu", p.n_moves);
                CHECK(target_within(&p, g, "0-3") || target_within(&p, g, "4-7"), "still split");
                plan_done(&p);
        }
        scenario_done(&s);
}

/* Rebalancing: bounded by max_moves, worth more than move_penalty, off above the threshold. */
static void test_rebalance(struct topo_cache *tc)
{
        struct scenario s;
        struct plan p;

        if (scenario_init(&s, tc, "core:8 pu:1") < 0)
                return;
        s.params.lane_width = 1;
        for (size_t i = 0; i < 4; i++) {
                size_t g = add_guest(&s, POLICY_SPREAD, 1, 1);
                set_current(&s, g, 0, "0");     /* four single-vCPU guests stacked: valid for 1-3 */
        }
        /* Two moves leave PU 0 at 2.0, above ideal + max vCPU load: plan() rather than plan_checked(). */
        s.params.moves_per_interval = 2;
        if (plan_ok(&s, &p, __func__)) {
                CHECK(p.n_moves == 2, "max_moves 2: %zu moves", p.n_moves);
                for (size_t i = 0; i < p.n_moves; i++)
                        CHECK(p.moves[i].reason == PLACE_REBALANCE, "reason %d", p.moves[i].reason);
                CHECK(fabs(p.pu_load[0] - 2) < 1e-9, "PU 0 load %.2f", p.pu_load[0]);
                plan_done(&p);
        }
        s.params.moves_per_interval = 0;
        if (plan_checked(&s, &p, "rebalance unlimited") == 0) {
                CHECK(p.n_moves == 3 && fabs(p.pu_load[0] - 1) < 1e-9, "moves %zu, PU 0 %.2f", p.n_moves,
                      p.pu_load[0]);
                plan_done(&p);
        }
        s.params.imbalance_threshold = 4;
        if (plan_ok(&s, &p, __func__)) {
                CHECK(p.n_moves == 0, "moved below the threshold: %zu", p.n_moves);
                plan_done(&p);
        }
        s.params.imbalance_threshold = 0.25;
        s.params.hysteresis = 1.5;    /* no move can gain that much */
        if (plan_ok(&s, &p, __func__)) {
                CHECK(p.n_moves == 0, "moved for less than move_penalty: %zu", p.n_moves);
                plan_done(&p);
        }
        scenario_done(&s);
}

/* ---- 6. Lanes ---- */

static void test_lanes(struct topo_cache *tc)
{
        static const unsigned lane_max[] = { 1, 4, 0 };
        static const unsigned sizes[] = { 1, 2, 3, 5, 8, 16 };

        for (size_t l = 0; l < ELEMENTSOF(lane_max); l++) {
                struct scenario s;
                struct plan p;
                if (scenario_init(&s, tc, "pack:2 numa:2 l3:2 core:8 pu:2") < 0)
                        continue;
                s.params.lane_width = lane_max[l];
                for (size_t i = 0; i < ELEMENTSOF(sizes); i++)
                        add_guest(&s, i % 2 ? POLICY_SPREAD_CORES : POLICY_SPREAD, sizes[i], 0.6);
                if (plan_checked(&s, &p, "lanes") == 0) {
                        unsigned cap = lane_max[l] ? lane_max[l] : 8;
                        int widest = 0;
                        for (size_t i = 0; i < p.n_guests; i++)
                                for (size_t j = 0; j < p.guests[i].n_vcpus; j++) {
                                        int w = weight(p.guests[i].vcpus[j].target);
                                        widest = w > widest ? w : widest;
                                        /* Fewer vCPUs than cores in an L3: lanes of whole cores. */
                                        CHECK(lane_max[l] == 1 || sizes[i] > 8 || w % 2 == 0,
                                              "lane_max %u, %u vCPUs: lane of %d PUs", lane_max[l], sizes[i], w);
                                }
                        CHECK(widest == (int)cap, "lane_max %u: widest lane %d", lane_max[l], widest);
                        plan_done(&p);
                }
                scenario_done(&s);
        }
}

/* ---- 7. Ignored guests ---- */

static void test_ignore(struct topo_cache *tc)
{
        struct scenario s;
        struct plan p;

        if (scenario_init(&s, tc, "core:4 pu:1") < 0)
                return;
        s.params.lane_width = 1;
        size_t ign = add_guest(&s, POLICY_IGNORE, 3, 1);
        set_current(&s, ign, 0, "0");
        set_current(&s, ign, 1, "0");           /* stacked: still never moved */
        set_current(&s, ign, 2, "1-2");
        size_t g = add_guest(&s, POLICY_SPREAD, 2, 1);
        if (plan_checked(&s, &p, "ignore") == 0) {
                CHECK(moves_of_guest(&p, ign) == 0, "ignored guest moved");
                CHECK(target_is(&p, ign, 0, "0") && target_is(&p, ign, 2, "1-2"), "ignored masks changed");
                double sum = 0;
                for (size_t i = 0; i < p.n_pus; i++)
                        sum += p.pu_load[i];
                CHECK(fabs(p.pu_load[0] - 2) < 1e-9 && fabs(sum - 5) < 1e-9, "ignored load: PU 0 %.2f, sum %.2f",
                      p.pu_load[0], sum);
                /* Its load counts: the managed guest avoids PU 0, the busiest. */
                CHECK(!hwloc_bitmap_isset(p.guests[g].vcpus[0].target, 0) &&
                      !hwloc_bitmap_isset(p.guests[g].vcpus[1].target, 0), "placed on the busy PU");
                plan_done(&p);
        }
        scenario_done(&s);
}

/* ---- Move order ---- */

/* Usable PUs of the domain the plan keeps a guest in. */
static unsigned domain_pus(const struct scenario *s, const struct plan *p, size_t gi)
{
        const struct guest_plan *gp = &p->guests[gi];
        const struct topology *t = s->topo;

        if (gp->scope == SCOPE_ANY || gp->n_vcpus == 0)
                return (unsigned)weight(s->usable);
        const struct topo_pu *pu = &t->pus[topology_pu_dense(t, (unsigned)hwloc_bitmap_first(gp->vcpus[0].target))];
        hwloc_const_bitmap_t dom = gp->scope == SCOPE_L3 ? t->l3s[pu->l3].cpuset : t->numas[pu->numa].cpuset;
        _cleanup_bitmap_ hwloc_bitmap_t both = hwloc_bitmap_alloc();
        hwloc_bitmap_and(both, dom, s->usable);
        return (unsigned)weight(both);
}

/*
 * Replay the moves one by one and count the steps that newly put two
 * siblings on a CPU the plan keeps apart.  @sparse_bad: those in guests that
 * fill at most half their domain, which usually leaves room to avoid a swap.
 */
static unsigned replay_violations(const struct scenario *s, const struct plan *p, unsigned *sparse_bad)
{
        unsigned bad = 0;

        *sparse_bad = 0;
        for (size_t i = 0; i < s->n_guests; i++) {
                size_t n = s->guests[i].n_vcpus;
                bool sparse = 2 * n <= domain_pus(s, p, i);
                if (p->guests[i].overcommitted)
                        continue;       /* siblings share CPUs in the plan itself */
                hwloc_bitmap_t *cur = calloc(n ? n : 1, sizeof(*cur));
                hwloc_bitmap_t common = hwloc_bitmap_alloc(), before = hwloc_bitmap_alloc();
                for (size_t j = 0; j < n; j++)
                        cur[j] = s->guests[i].vcpus[j].current ? hwloc_bitmap_dup(s->guests[i].vcpus[j].current)
                                                                : hwloc_bitmap_alloc_full();
                for (size_t m = 0; m < p->n_moves; m++) {
                        const struct plan_move *mv = &p->moves[m];
                        if (mv->guest != i)
                                continue;
                        for (size_t y = 0; y < n; y++) {
                                if (y == mv->vcpu)
                                        continue;
                                hwloc_bitmap_and(before, cur[mv->vcpu], cur[y]);
                                hwloc_bitmap_and(common, mv->to, cur[y]);
                                hwloc_bitmap_andnot(common, common, before);
                                hwloc_bitmap_andnot(common, common, p->guests[i].vcpus[y].target);
                                bad += !hwloc_bitmap_iszero(common);
                                *sparse_bad += sparse && !hwloc_bitmap_iszero(common);
                        }
                        hwloc_bitmap_copy(cur[mv->vcpu], mv->to);
                }
                for (size_t j = 0; j < n; j++) {
                        CHECK(p->guests[i].vcpus[j].deferred ||
                                      hwloc_bitmap_isequal(cur[j], p->guests[i].vcpus[j].target),
                              "replaying the moves does not reach the plan (guest %zu vCPU %zu)", i, j);
                        hwloc_bitmap_free(cur[j]);
                }
                free(cur);
                hwloc_bitmap_free(common);
                hwloc_bitmap_free(before);
        }
        return bad;
}

static void test_move_order(struct topo_cache *tc)
{
        struct scenario s;
        struct plan p;

        /*
         * Every usable PU is left by some moving sibling, so vCPU 0 (heaviest,
         * placed first) has to enter one: PU 0, which vCPU 1 leaves.  vCPU 1
         * must move first.
         */
        if (scenario_init(&s, tc, "core:4 pu:1") < 0)
                return;
        hwloc_bitmap_clr(s.usable, 3);
        s.params.lane_width = 1;
        size_t g = add_guest(&s, POLICY_SPREAD, 3, 0.5);
        vcpus_of(&s, g)[0].load = 0.9;
        set_current(&s, g, 0, "3");
        set_current(&s, g, 1, "0-1,3");
        set_current(&s, g, 2, "2-3");
        if (plan_checked(&s, &p, "chain") == 0) {
                CHECK(target_is(&p, g, 0, "0") && target_is(&p, g, 1, "1") && target_is(&p, g, 2, "2"),
                      "unexpected targets");
                size_t pos[3] = {};
                for (size_t i = 0; i < p.n_moves; i++)
                        pos[p.moves[i].vcpu] = i;
                CHECK(p.n_moves == 3 && pos[1] < pos[0], "vCPU 0 enters PU 0 before vCPU 1 leaves it");
                unsigned sparse_bad;
                CHECK(p.n_staged == 0 && p.n_deferred == 0 && replay_violations(&s, &p, &sparse_bad) == 0, "chain replay");
                plan_done(&p);
        }
        scenario_done(&s);

        /*
         * Random masks, many of them invalid: replaying never stacks siblings,
         * not even at a cycle (it goes through a free CPU or is deferred), and
         * cycles are rare: they need a guest so dense in its domain that its
         * vCPUs must take each other's places.
         */
        struct rng r = { 0x5eed0007 };
        unsigned cycles = 0, staged = 0, partial_moves = 0, sparse_cycles = 0;
        for (size_t t = 0; t < ELEMENTSOF(topologies); t++)
                for (unsigned round = 0; round < 6; round++) {
                        bool big = round >= 3;
                        if (scenario_init(&s, tc, topologies[t]) < 0)
                                continue;
                        s.params.lane_width = round % 3;
                        random_guests_sized(&r, &s, 1.0, big);
                        for (size_t i = 0; i < s.n_guests; i++)
                                for (size_t j = 0; s.guests[i].policy != POLICY_IGNORE && j < s.guests[i].n_vcpus; j++)
                                        if (rng_below(&r, 4))
                                                vcpus_of(&s, i)[j].current =
                                                        random_mask(&r, &s, 1 + rng_below(&r, 3));
                        if (plan_checked(&s, &p, topologies[t]) == 0) {
                                unsigned sparse_bad, v = replay_violations(&s, &p, &sparse_bad);
                                CHECK(v == 0, "%s: %u stacking steps", topologies[t], v);
                                sparse_cycles += sparse_bad;
                                cycles += (unsigned)(p.n_staged + p.n_deferred);
                                staged += (unsigned)p.n_staged;
                                for (size_t i = 0; i < p.n_moves; i++)
                                        partial_moves += p.moves[i].reason != PLACE_UNPLACED;
                                plan_done(&p);
                        }
                        scenario_done(&s);
                }
        /* Swaps are the exception, and the more so where a guest leaves itself room. */
        CHECK(cycles * 100 <= partial_moves, "%u cycles in %u moves", cycles, partial_moves);
        fprintf(stderr, "# move order: %u cycles (%u through a staging CPU), %u stacking in sparse guests, "
                "%u moves from partial masks\n", cycles, staged, sparse_cycles, partial_moves);
        CHECK(sparse_cycles * 1000 <= partial_moves, "%u stacking steps in guests filling <= half their domain",
              sparse_cycles);
}

/* ---- 7. The move rules: inputs the daemon gathers, decided here ---- */

/* One knob, one name, one default: the engine's defaults are the daemon's. */
static void test_defaults(void)
{
        struct plan_params p;
        struct config c;

        plan_params_default(&p);
        CHECK(config_init(&c) == 0, "config_init");
        CHECK(p.lane_width == c.lane_width, "LaneWidth= %u, engine %u", c.lane_width, p.lane_width);
        CHECK(p.hysteresis == c.hysteresis, "Hysteresis= %g, engine %g", c.hysteresis, p.hysteresis);
        CHECK(p.moves_per_interval == c.moves_per_interval, "MovesPerInterval= %u, engine %u",
              c.moves_per_interval, p.moves_per_interval);
        CHECK(p.min_dwell_usec == c.min_dwell_usec, "MinDwellSec=");
        CHECK(p.starvation_wait_usec == c.starvation_wait_usec, "StarvationWaitSec=");
        config_done(&c);
}

static void test_demand(void)
{
        struct plan_params p;
        plan_params_default(&p);

        struct vcpu_input v = { .vcpu = 0, .load = 0.3, .wait = 0.2 };
        CHECK(fabs(vcpu_demand(&v, &p) - 0.5) < 1e-12, "use plus wait: %g", vcpu_demand(&v, &p));
        v.load = 0.9;
        CHECK(vcpu_demand(&v, &p) == 1.0, "clamped to 1: %g", vcpu_demand(&v, &p));
        v.unsampled = true;
        CHECK(vcpu_demand(&v, &p) == p.unsampled_load, "unsampled: %g", vcpu_demand(&v, &p));
        v.boot = true;
        CHECK(vcpu_demand(&v, &p) == p.boot_load, "booting vCPU 0: %g", vcpu_demand(&v, &p));
        v.vcpu = 1;
        CHECK(vcpu_demand(&v, &p) == p.unsampled_load, "booting vCPU 1: %g", vcpu_demand(&v, &p));
        v.load = 7;     /* ignored while unsampled */
        v.wait = NAN;
        CHECK(vcpu_demand(&v, &p) == p.unsampled_load, "unsampled ignores the measurement");
}


/* A small hand-made case: one-PU lanes, the clock at 100 s. */
static bool rule_case(struct scenario *s, struct topo_cache *tc, const char *synthetic)
{
        if (scenario_init(s, tc, synthetic) < 0)
                return false;
        s->params.lane_width = 1;
        s->params.now_usec = 100 * 1000000ULL;
        return true;
}

/* A guest whose vCPUs sit on @cpus[j] (NULL-terminated, one per vCPU; "*": everywhere). */
static size_t add_placed(struct scenario *s, enum placement_policy policy, double load, const char *const *cpus)
{
        size_t n = 0;
        while (cpus[n])
                n++;
        size_t g = add_guest(s, policy, n, load);
        for (size_t j = 0; j < n; j++)
                set_current(s, g, j, strcmp(cpus[j], "*") ? cpus[j] : NULL);
        return g;
}

static void test_dwell(struct topo_cache *tc)
{
        struct scenario s;
        struct plan p;

        /* Four single-vCPU guests stacked on PU 0 of 8, each moved 1 s ago (dwell 10 s). */
        if (!rule_case(&s, tc, "core:8 pu:1"))
                return;
        s.params.moves_per_interval = 0;
        for (size_t i = 0; i < 4; i++)
                vcpus_of(&s, add_placed(&s, POLICY_SPREAD, 1, (const char *[]){ "0", NULL }))[0].last_move_usec =
                        s.params.now_usec - 1000000;
        if (plan_ok(&s, &p, "dwelling")) {
                CHECK(p.n_moves == 0, "moved %zu vCPUs that dwell", p.n_moves);
                plan_done(&p);
        }
        /* Starving (wait over StarvationWaitSec in the last interval): dwell does not hold it. */
        vcpus_of(&s, 2)[0].wait_ms = 150;
        if (plan_ok(&s, &p, "starving")) {
                CHECK(p.n_moves == 1 && p.moves[0].guest == 2, "%zu moves, first of guest %zu", p.n_moves,
                      p.n_moves ? p.moves[0].guest : 99);
                plan_done(&p);
        }
        vcpus_of(&s, 2)[0].wait_ms = 0;
        /* Dwelt long enough. */
        s.params.now_usec += s.params.min_dwell_usec;
        if (plan_ok(&s, &p, "dwelt")) {
                CHECK(p.n_moves == 3, "%zu moves after the dwell time", p.n_moves);
                plan_done(&p);
        }
        scenario_done(&s);

        /* Dwell never holds a correctness move: two siblings on one PU. */
        if (!rule_case(&s, tc, "core:4 pu:1"))
                return;
        size_t g = add_placed(&s, POLICY_SPREAD, 0.5, (const char *[]){ "0", "0", NULL });
        vcpus_of(&s, g)[0].last_move_usec = vcpus_of(&s, g)[1].last_move_usec = s.params.now_usec - 1;
        if (plan_checked(&s, &p, "conflict while dwelling") == 0) {
                CHECK(p.n_moves == 1 && p.moves[0].reason == PLACE_SIBLING_CONFLICT, "%zu moves", p.n_moves);
                plan_done(&p);
        }
        scenario_done(&s);
}

static void test_backoff(struct topo_cache *tc)
{
        struct scenario s;
        struct plan p;

        if (!rule_case(&s, tc, "core:4 pu:1"))
                return;
        /* vCPU 1 collides with vCPU 0, which keeps its mask ...; vCPU 2 is everywhere. */
        size_t g = add_placed(&s, POLICY_SPREAD, 0.5, (const char *[]){ "1", "1", "*", NULL });
        vcpus_of(&s, g)[1].retry_after_usec = s.params.now_usec + 1;   /* ... unless vCPU 1 backs off */
        if (plan_checked(&s, &p, "back-off")) {
                scenario_done(&s);
                return;
        }
        bool moved[3] = {};
        for (size_t i = 0; i < p.n_moves; i++)
                moved[p.moves[i].vcpu] = true;
        CHECK(!moved[1] && p.guests[g].vcpus[1].holding && target_is(&p, g, 1, "1"), "vCPU 1 moved while backing off");
        CHECK(moved[0] && !hwloc_bitmap_isset(p.guests[g].vcpus[0].target, 1), "vCPU 0 did not make way");
        CHECK(moved[2], "vCPU 2 (everywhere) not placed");
        plan_done(&p);
        /* The back-off is over: the first of the two keeps its mask again. */
        s.params.now_usec += 1;
        if (plan_checked(&s, &p, "back-off over") == 0) {
                CHECK(!p.guests[g].vcpus[1].holding && p.guests[g].vcpus[1].reason == PLACE_SIBLING_CONFLICT,
                      "vCPU 1 after its back-off: reason %d", p.guests[g].vcpus[1].reason);
                plan_done(&p);
        }
        scenario_done(&s);
}

/*
 * A swap: both vCPUs leave CPUs outside the guest's new restriction, and the
 * load of an ignored guest sends each onto the other's CPU.  No order of the
 * two moves avoids stacking; vCPU 0 first shrinks onto a CPU of its own that
 * nobody enters.
 */
static void test_swap_staging(struct topo_cache *tc)
{
        struct scenario s;
        struct plan p;

        if (!rule_case(&s, tc, "core:4 pu:1"))
                return;
        add_placed(&s, POLICY_IGNORE, 1, (const char *[]){ "1", NULL });
        size_t g = add_placed(&s, POLICY_SPREAD, 0.5, (const char *[]){ "0-1", "2-3", NULL });
        vcpus_of(&s, g)[0].load = 0.9;
        s.guests[g].restriction = parse("1-2");
        if (plan_checked(&s, &p, "swap") == 0) {
                unsigned sparse_bad;
                CHECK(target_is(&p, g, 0, "2") && target_is(&p, g, 1, "1"), "not a swap: the test is void");
                CHECK(p.n_staged == 1 && p.n_deferred == 0, "%zu staged, %zu deferred", p.n_staged, p.n_deferred);
                CHECK(p.n_moves == 3 && p.moves[0].staging && p.moves[0].vcpu == 0, "%zu moves", p.n_moves);
                CHECK(replay_violations(&s, &p, &sparse_bad) == 0, "the swap stacks siblings");
                plan_done(&p);
        }
        scenario_done(&s);

        /* The same swap on two usable CPUs: nowhere to wait, so both are deferred, and the plan says so. */
        if (!rule_case(&s, tc, "core:3 pu:1"))
                return;
        hwloc_bitmap_clr(s.usable, 2);
        add_placed(&s, POLICY_IGNORE, 1, (const char *[]){ "0", NULL });
        g = add_placed(&s, POLICY_SPREAD, 0.5, (const char *[]){ "0,2", "1-2", NULL });
        vcpus_of(&s, g)[0].load = 0.9;
        if (plan_checked(&s, &p, "swap, no room") == 0) {
                CHECK(target_is(&p, g, 0, "1") && target_is(&p, g, 1, "0"), "not a swap: the test is void");
                CHECK(p.n_deferred == 2 && p.n_moves == 0 && p.guests[g].vcpus[0].deferred &&
                      p.guests[g].vcpus[1].deferred, "%zu deferred, %zu moves", p.n_deferred, p.n_moves);
                plan_done(&p);
        }
        scenario_done(&s);
}

/* ---- The largest topology, dense ---- */

static void test_large(struct topo_cache *tc)
{
        struct rng r = { 0x5eed0008 };
        struct scenario s;
        struct plan p;

        if (scenario_init(&s, tc, "pack:4 numa:2 l3:4 core:16 pu:2") < 0)
                return;
        CHECK(s.topo->n_pus == 1024, "1,024 PUs");
        random_guests(&r, &s, 10000.0 / 1024);
        if (plan_checked(&s, &p, "10,000 vCPUs on 1,024 PUs") == 0) {
                adopt(&s, &p);
                plan_done(&p);
                if (plan_checked(&s, &p, "adopting 10,000") == 0) {
                        CHECK(p.n_moves == 0, "%zu moves on adopting", p.n_moves);
                        plan_done(&p);
                }
        }
        scenario_done(&s);
}

/* Policy=auto: the mode the daemon decided is the engine's input. */
static void test_auto_modes(struct topo_cache *tc)
{
        const char *topo = "pack:1 l3:2 core:4 pu:2";   /* 16 PUs */
        struct scenario s;
        struct plan p;

        if (scenario_init(&s, tc, topo) < 0)
                return;
        /* KERNEL, never confined (current = every CPU): target = the full set, no move. */
        size_t k = add_guest(&s, POLICY_AUTO, 4, 1);
        for (size_t j = 0; j < 4; j++)
                set_current(&s, k, j, "0-15");
        /* KERNEL, confined before (one CPU each): released to the full set. */
        size_t kc = add_guest(&s, POLICY_AUTO, 2, 1);
        set_current(&s, kc, 0, "3");
        set_current(&s, kc, 1, "4");
        /* COSCHED with a restriction: the restriction, whole. */
        size_t c = add_guest(&s, POLICY_AUTO, 2, 1);
        s.guests[c].auto_mode = ADAPTIVE_COSCHED;
        s.guests[c].restriction = parse("8-11");
        set_current(&s, c, 0, "8");
        set_current(&s, c, 1, "9");
        /* SPREAD: as Policy=spread. */
        size_t sp = add_guest(&s, POLICY_AUTO, 4, 1);
        s.guests[sp].auto_mode = ADAPTIVE_SPREAD;
        /* KERNEL with current unknown (NULL): every CPU, nothing to write. */
        size_t kn = add_guest(&s, POLICY_AUTO, 2, 0.5);

        CHECK(guest_input_whole(&s.guests[k]) && guest_input_whole(&s.guests[c]) &&
              !guest_input_whole(&s.guests[sp]), "guest_input_whole");
        if (plan_checked(&s, &p, "auto modes") == 0) {
                for (size_t j = 0; j < 4; j++)
                        CHECK(target_is(&p, k, j, "0-15") && p.guests[k].vcpus[j].reason == PLACE_NONE,
                              "kernel: vcpu%zu full set, no move", j);
                CHECK(moves_of_guest(&p, k) == 0, "kernel guest never confined: no move");
                for (size_t j = 0; j < 2; j++)
                        CHECK(target_is(&p, kc, j, "0-15") && p.guests[kc].vcpus[j].reason == PLACE_RELEASE,
                              "kernel, confined before: vcpu%zu released", j);
                CHECK(moves_of_guest(&p, kc) == 2, "released guest: 2 moves");
                for (size_t j = 0; j < 2; j++)
                        CHECK(target_is(&p, c, j, "8-11") && p.guests[c].vcpus[j].reason == PLACE_RELEASE,
                              "cosched: vcpu%zu gets its whole restriction", j);
                for (size_t a = 0; a < 4; a++) {
                        CHECK(weight(p.guests[sp].vcpus[a].target) >= 1 &&
                              weight(p.guests[sp].vcpus[a].target) < 16, "spread: vcpu%zu a lane", a);
                        for (size_t b = a + 1; b < 4; b++)
                                CHECK(!hwloc_bitmap_intersects(p.guests[sp].vcpus[a].target,
                                                               p.guests[sp].vcpus[b].target),
                                      "spread: vcpu%zu and vcpu%zu disjoint", a, b);
                }
                CHECK(moves_of_guest(&p, kn) == 0 && target_is(&p, kn, 0, "0-15"), "kernel, unknown mask: no move");
                CHECK(strcmp(place_reason_to_string(PLACE_RELEASE), "release") == 0, "release name");
                /* A second pass from the plan's targets moves nothing. */
                adopt(&s, &p);
                plan_done(&p);
                if (plan_checked(&s, &p, "auto modes, again") == 0) {
                        CHECK(moves_of_guest(&p, k) + moves_of_guest(&p, kc) + moves_of_guest(&p, c) == 0,
                              "whole guests stable");
                        plan_done(&p);
                }
        }
        /* Back to KERNEL from SPREAD: the spread guest is released. */
        s.guests[sp].auto_mode = ADAPTIVE_KERNEL;
        if (plan_checked(&s, &p, "spread -> kernel") == 0) {
                for (size_t j = 0; j < 4; j++)
                        CHECK(target_is(&p, sp, j, "0-15") && p.guests[sp].vcpus[j].reason == PLACE_RELEASE,
                              "spread -> kernel: vcpu%zu released", j);
                plan_done(&p);
        }
        /* A bad mode is refused. */
        s.guests[sp].auto_mode = _ADAPTIVE_MODE_MAX;
        CHECK(plan(&s, &p) == -EINVAL, "bad auto_mode refused");
        scenario_done(&s);
        CHECK(placement_policy_from_string("auto") == POLICY_AUTO &&
              strcmp(placement_policy_to_string(POLICY_AUTO), "auto") == 0, "auto policy name");
}

int main(void)
{
        struct topo_cache tc = {};

        test_strings();
        test_bad_input(&tc);
        test_spread_tiny(&tc);
        test_overcommit(&tc);
        test_spread_cores(&tc);
        test_locality(&tc);
        test_random_balance(&tc);
        test_stability_random(&tc);
        test_adopt_foreign(&tc);
        test_fix_violations(&tc);
        test_rebalance(&tc);
        test_lanes(&tc);
        test_ignore(&tc);
        test_move_order(&tc);
        test_defaults();
        test_demand();
        test_dwell(&tc);
        test_backoff(&tc);
        test_swap_staging(&tc);
        test_large(&tc);
        test_auto_modes(&tc);
        topo_cache_done(&tc);
        return test_result();
}
