/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Every topology of hwloc's own test suite that this hwloc loads
 * (tests/data/hwloc-xml/, see its README) loads here too, gives every PU a
 * core, L3 group, NUMA node and package that hold it, and gets plans whose
 * sibling vCPUs are kept apart (issue 12: a PU outside every NUMA node made
 * the whole topology fail with -EINVAL, and the daemon could not start).
 *
 * Per file: as many 2-vCPU guests as the usable CPUs hold (every other one
 * spread-cores) and one guest with more vCPUs than CPUs.  The plan must pass
 * placement_check's anti-affinity and bounds, and an independent count of
 * the masks here says the same.  A plan spoilt on purpose (two siblings on
 * one mask) must fail both, so the test can fail.
 *
 * Usage: test-topology-hwloc FILE.xml...
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "placement.h"
#include "tap.h"
#include "topology.h"

struct level {
        const char *name;
        hwloc_obj_type_t type;
        size_t offset;          /* of the group index in struct topo_pu */
};

static const struct level levels[] = {
        { "L3", HWLOC_OBJ_L3CACHE, offsetof(struct topo_pu, l3) },
        { "NUMA node", HWLOC_OBJ_NUMANODE, offsetof(struct topo_pu, numa) },
        { "package", HWLOC_OBJ_PACKAGE, offsetof(struct topo_pu, package) },
};

static const struct topo_group *level_groups(const struct topology *t, size_t l, size_t *n)
{
        switch (l) {
        case 0:
                *n = t->n_l3s;
                return t->l3s;
        case 1:
                *n = t->n_numas;
                return t->numas;
        default:
                *n = t->n_packages;
                return t->packages;
        }
}

/* Is PU @pu inside an hwloc object of @type?  NUMA nodes are memory
 * children, not ancestors: look at their cpusets. */
static bool hwloc_holds(hwloc_topology_t hw, hwloc_obj_t pu, hwloc_obj_type_t type)
{
        hwloc_obj_t o = NULL;

        if (type != HWLOC_OBJ_NUMANODE)
                return hwloc_get_ancestor_obj_by_type(hw, type, pu) != NULL;
        while ((o = hwloc_get_next_obj_by_type(hw, HWLOC_OBJ_NUMANODE, o)))
                if (hwloc_bitmap_isset(o->cpuset, pu->os_index))
                        return true;
        return false;
}

/* The model against hwloc's own view.  Returns how many PUs needed a
 * pseudo group (at any level), for the log. */
static unsigned check_model(const char *name, const struct topology *t)
{
        unsigned orphans = 0;
        int n_hw = hwloc_get_nbobjs_by_type(t->hw, HWLOC_OBJ_PU);

        CHECK(n_hw > 0 && t->n_pus == (size_t)n_hw, "%s: %zu PUs, hwloc has %d", name, t->n_pus, n_hw);
        for (size_t p = 0; p < t->n_pus; p++) {
                const struct topo_pu *pu = &t->pus[p];
                hwloc_obj_t obj = hwloc_get_obj_by_type(t->hw, HWLOC_OBJ_PU, (unsigned)p);

                CHECK(topology_pu_dense(t, pu->os_index) == (int)p, "%s: dense map of PU %zu", name, p);
                /* A core's PUs are consecutive in dense order (the lanes rely on it). */
                CHECK(pu->core < t->n_cores && t->cores[pu->core].first_pu <= p &&
                      p < t->cores[pu->core].first_pu + t->cores[pu->core].n_pus &&
                      hwloc_bitmap_isset(t->cores[pu->core].cpuset, pu->os_index),
                      "%s: PU %u in core %u", name, pu->os_index, pu->core);
                CHECK(p == 0 || pu->core == t->pus[p - 1].core || pu->core == t->pus[p - 1].core + 1,
                      "%s: cores in dense order at PU %u", name, pu->os_index);
                for (size_t l = 0; l < ELEMENTSOF(levels); l++) {
                        size_t n;
                        const struct topo_group *g = level_groups(t, l, &n);
                        unsigned gi = *(const unsigned *)((const char *)pu + levels[l].offset);
                        CHECK(gi < n && hwloc_bitmap_isset(g[gi].cpuset, pu->os_index) &&
                              g[gi].first_pu <= p && g[gi].n_pus > 0,
                              "%s: PU %u in its %s %u", name, pu->os_index, levels[l].name, gi);
                        /* PUs outside every object of a level that hwloc
                         * has are the ones in its pseudo group. */
                        if (gi < n && hwloc_get_nbobjs_by_type(t->hw, levels[l].type) > 0 &&
                            !hwloc_holds(t->hw, obj, levels[l].type))
                                orphans++;
                }
        }
        return orphans;
}

struct guests {
        size_t n;
        struct guest_input *in;
        struct vcpu_input *vcpus;
        char (*names)[16];
};

static void guests_free(struct guests *g)
{
        free(g->in);
        free(g->vcpus);
        free(g->names);
}

/* @pairs 2-vCPU guests and one of @big vCPUs. */
static int guests_make(struct guests *g, unsigned pairs, unsigned big)
{
        size_t total = 2 * (size_t)pairs + big, v = 0;

        g->n = pairs + 1;
        g->in = calloc(g->n, sizeof(*g->in));
        g->vcpus = calloc(total, sizeof(*g->vcpus));
        g->names = calloc(g->n, sizeof(*g->names));
        if (!g->in || !g->vcpus || !g->names)
                return -ENOMEM;
        for (size_t i = 0; i < g->n; i++) {
                size_t k = i < pairs ? 2 : big;
                snprintf(g->names[i], sizeof(g->names[i]), i < pairs ? "pair%zu" : "big", i);
                g->in[i] = (struct guest_input){
                        .id = (unsigned)i, .name = g->names[i], .n_vcpus = k, .vcpus = &g->vcpus[v],
                        .policy = i < pairs && i % 2 ? POLICY_SPREAD_CORES : POLICY_SPREAD,
                };
                for (size_t j = 0; j < k; j++)
                        g->vcpus[v + j] = (struct vcpu_input){ .vcpu = (unsigned)j, .load = 0.25 };
                v += k;
        }
        return 0;
}

/*
 * The anti-affinity promise counted from the masks alone: no usable PU in
 * more than one of a guest's masks, or ceil(vCPUs / usable PUs) for a guest
 * with more vCPUs than PUs; every mask non-empty and usable.
 */
static bool masks_apart(const struct topology *t, hwloc_const_bitmap_t usable, const struct guests *g,
                        const struct plan *plan, char *why, size_t len)
{
        unsigned n_usable = (unsigned)hwloc_bitmap_weight(usable);
        unsigned *count = calloc(t->n_pus, sizeof(*count));
        bool ok = count != NULL;
        unsigned os;

        for (size_t i = 0; ok && i < g->n; i++) {
                unsigned cap = (unsigned)((g->in[i].n_vcpus + n_usable - 1) / n_usable);
                memset(count, 0, t->n_pus * sizeof(*count));
                for (size_t j = 0; ok && j < g->in[i].n_vcpus; j++) {
                        hwloc_const_bitmap_t m = plan->guests[i].vcpus[j].target;
                        if (hwloc_bitmap_iszero(m) || !hwloc_bitmap_isincluded(m, usable)) {
                                snprintf(why, len, "%s vcpu%zu: mask empty or not usable", g->names[i], j);
                                ok = false;
                                break;
                        }
                        hwloc_bitmap_foreach_begin(os, m) {
                                int p = topology_pu_dense(t, os);
                                if (p >= 0 && ++count[p] > cap && ok) {
                                        snprintf(why, len, "%s: CPU %u in %u of its masks, at most %u",
                                                 g->names[i], os, count[p], cap);
                                        ok = false;
                                }
                        } hwloc_bitmap_foreach_end();
                }
        }
        free(count);
        return ok;
}

static void check_file(const char *path)
{
        const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        _cleanup_topology_ struct topology *t = NULL;
        char err[512] = "", why[160] = "";
        int r = topology_load_spec(path, &t, err, sizeof(err));

        CHECK(r == 0, "%s: %s", name, err);
        if (r < 0)
                return;
        unsigned orphans = check_model(name, t);

        _cleanup_bitmap_ hwloc_bitmap_t usable = hwloc_bitmap_alloc();
        r = topology_usable(t, NULL, usable);
        CHECK(r == 0, "%s: no usable PU", name);
        if (r < 0)
                return;
        unsigned n_usable = (unsigned)hwloc_bitmap_weight(usable);

        struct guests g = {};
        struct plan plan = {};
        struct plan_checks checks;
        r = guests_make(&g, n_usable / 2, n_usable + 1);
        CHECK(r == 0, "%s: guests", name);
        if (r == 0)
                r = placement_plan(t, usable, g.in, g.n, NULL, &plan);
        CHECK(r == 0, "%s: plan: %s", name, strerror(-r));
        if (r < 0) {
                guests_free(&g);
                return;
        }
        placement_check(t, usable, g.in, g.n, &plan, &checks);
        printf("# %-58s %3zu PUs (%3u usable), %3zu cores, %2zu L3, %2zu NUMA, %2zu packages, "
               "%3u pseudo-grouped; %zu guests: anti-affinity %s smt %s locality %s balance %s\n",
               name, t->n_pus, n_usable, t->n_cores, t->n_l3s, t->n_numas, t->n_packages, orphans, g.n,
               checks.anti_affinity ? "pass" : "FAIL", checks.smt ? "pass" : "FAIL",
               checks.locality ? "pass" : "FAIL", checks.balance ? "pass" : "FAIL");
        CHECK(checks.anti_affinity, "%s: anti-affinity", name);
        CHECK(checks.bounds, "%s: bounds", name);
        CHECK(checks.smt, "%s: smt", name);
        CHECK(masks_apart(t, usable, &g, &plan, why, sizeof(why)), "%s: %s", name, why);
        CHECK(plan.guests[g.n - 1].overcommitted, "%s: the big guest is overcommitted", name);

        /* Spoil it: the first pair's vCPUs on one mask.  Both judges must
         * notice, or they could not have failed above either. */
        if (g.n > 1) {
                hwloc_bitmap_copy(plan.guests[0].vcpus[1].target, plan.guests[0].vcpus[0].target);
                placement_check(t, usable, g.in, g.n, &plan, &checks);
                CHECK(!checks.anti_affinity, "%s: spoilt plan passes placement_check", name);
                CHECK(!masks_apart(t, usable, &g, &plan, why, sizeof(why)), "%s: spoilt plan passes the count",
                      name);
        }
        plan_done(&plan);
        guests_free(&g);
}

int main(int argc, char **argv)
{
        CHECK(argc > 1, "usage: %s FILE.xml...", argv[0]);
        for (int i = 1; i < argc; i++)
                check_file(argv[i]);
        printf("# %d hwloc XML topologies\n", argc - 1);
        return test_result();
}
