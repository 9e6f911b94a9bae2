/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The engine's promises (properties 1-4 of issue 2), checked on a finished
 * plan from the targets alone: the unit tests and `vcpuspreadctl simulate`
 * judge plans with this, not with the engine's own bookkeeping.
 */
#include "placement.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "placement-domains.h"

struct checker {
        const struct topology *topo;
        struct domains d;
        hwloc_bitmap_t usable_set, tmp;
        double *load;
        unsigned *pu_stamp, *pu_count;  /* per PU: guest stamp, sibling masks covering it */
        unsigned *core_stamp, *core_owner;
};

static void checker_done(struct checker *c)
{
        domains_done(&c->d);
        if (c->usable_set)
                hwloc_bitmap_free(c->usable_set);
        if (c->tmp)
                hwloc_bitmap_free(c->tmp);
        free(c->load);
        free(c->pu_stamp);
        free(c->pu_count);
        free(c->core_stamp);
        free(c->core_owner);
}

static int checker_init(struct checker *c, const struct topology *t, hwloc_const_bitmap_t usable)
{
        *c = (struct checker){ .topo = t };
        c->usable_set = hwloc_bitmap_alloc();
        c->tmp = hwloc_bitmap_alloc();
        c->load = calloc(t->n_pus, sizeof(*c->load));
        c->pu_stamp = calloc(t->n_pus, sizeof(*c->pu_stamp));
        c->pu_count = calloc(t->n_pus, sizeof(*c->pu_count));
        c->core_stamp = calloc(t->n_cores, sizeof(*c->core_stamp));
        c->core_owner = calloc(t->n_cores, sizeof(*c->core_owner));
        if (!c->usable_set || !c->tmp || !c->load || !c->pu_stamp || !c->pu_count || !c->core_stamp ||
            !c->core_owner)
                return -ENOMEM;
        hwloc_bitmap_and(c->usable_set, usable, t->complete);
        return domains_init(&c->d, t, c->usable_set);
}

/* Property 4, recomputed from the targets alone. */
static void check_balance(struct checker *c, const struct guest_input *guests, size_t n_guests,
                          const struct plan *plan, struct plan_checks *out)
{
        double total = 0;
        unsigned os;

        for (size_t i = 0; i < n_guests; i++)
                for (size_t j = 0; j < guests[i].n_vcpus; j++) {
                        hwloc_bitmap_and(c->tmp, plan->guests[i].vcpus[j].target, c->usable_set);
                        int w = hwloc_bitmap_weight(c->tmp);
                        double l = guests[i].vcpus[j].load;
                        if (w <= 0)
                                continue;
                        total += l;
                        out->max_vcpu_load = fmax(out->max_vcpu_load, l);
                        hwloc_bitmap_foreach_begin(os, c->tmp) {
                                c->load[topology_pu_dense(c->topo, os)] += l / w;
                        } hwloc_bitmap_foreach_end();
                }
        for (size_t p = 0; p < c->d.n_pus; p++)
                out->max_pu_load = fmax(out->max_pu_load, c->load[p]);
        out->balance = out->max_pu_load <= total / c->d.n_usable + out->max_vcpu_load + PLACEMENT_EPSILON;
}

/* Properties 1 and 2 for one vCPU's mask; @stamp identifies the guest. */
static void check_mask(struct checker *c, hwloc_const_bitmap_t mask, unsigned stamp, unsigned vcpu,
                       const struct guest_facts *f, struct plan_checks *out)
{
        unsigned os;

        hwloc_bitmap_and(c->tmp, mask, c->usable_set);
        hwloc_bitmap_foreach_begin(os, c->tmp) {
                unsigned p = (unsigned)topology_pu_dense(c->topo, os), core = c->topo->pus[p].core;
                if (c->pu_stamp[p] != stamp) {
                        c->pu_stamp[p] = stamp;
                        c->pu_count[p] = 0;
                }
                if (++c->pu_count[p] > f->cap)
                        out->anti_affinity = false;
                if (f->core_units && c->core_stamp[core] == stamp && c->core_owner[core] != vcpu)
                        out->smt = false;
                c->core_stamp[core] = stamp;
                c->core_owner[core] = vcpu;
        } hwloc_bitmap_foreach_end();
}

/* Property 3: the union of the targets lies in one run at the scope the guest must keep. */
static bool check_locality(const struct checker *c, const struct guest_plan *gp, enum plan_scope fit)
{
        enum plan_scope want = gp->spilled ? gp->scope : fit;
        int run = -1;
        unsigned os;

        if (gp->spilled && gp->scope <= fit)
                return false;
        if (want == SCOPE_ANY)
                return true;
        for (size_t j = 0; j < gp->n_vcpus; j++) {
                bool same = true;
                hwloc_bitmap_foreach_begin(os, gp->vcpus[j].target) {
                        int p = topology_pu_dense(c->topo, os);
                        int r = p < 0 ? -2 : (int)scope_of(&c->d, want, (unsigned)p);
                        if (run == -1)
                                run = r;
                        same = same && r == run;
                } hwloc_bitmap_foreach_end();
                if (!same)
                        return false;
        }
        return true;
}

static void check_guest(struct checker *c, const struct guest_input *g, const struct guest_plan *gp,
                        unsigned stamp, struct plan_checks *out)
{
        struct guest_facts f;

        if (guest_facts_init(&f, c->topo, &c->d, c->usable_set, g) < 0) {
                out->bounds = false;    /* planned although it has nowhere to go */
                return;
        }
        hwloc_const_bitmap_t allowed = f.allowed ? f.allowed : c->usable_set;
        for (size_t j = 0; j < g->n_vcpus; j++) {
                hwloc_const_bitmap_t t = gp->vcpus[j].target;
                if (hwloc_bitmap_iszero(t) || !hwloc_bitmap_isincluded(t, allowed))
                        out->bounds = false;
                check_mask(c, t, stamp, (unsigned)j, &f, out);
        }
        if (!check_locality(c, gp, f.fit))
                out->locality = false;
        guest_facts_done(&f);
}

/* A whole guest (Policy=auto, KERNEL or COSCHED): every vCPU but one that
 * holds after a refused move has exactly the allowed set. */
static void check_whole(struct checker *c, const struct guest_input *g, const struct guest_plan *gp,
                        struct plan_checks *out)
{
        struct guest_facts f;

        if (guest_facts_init(&f, c->topo, &c->d, c->usable_set, g) < 0) {
                out->bounds = false;
                return;
        }
        hwloc_const_bitmap_t allowed = f.allowed ? f.allowed : c->usable_set;
        for (size_t j = 0; j < g->n_vcpus; j++)
                if (!gp->vcpus[j].holding && !hwloc_bitmap_isequal(gp->vcpus[j].target, allowed))
                        out->bounds = false;
        guest_facts_done(&f);
}

void placement_check(const struct topology *topo, hwloc_const_bitmap_t usable,
                     const struct guest_input *guests, size_t n_guests,
                     const struct plan *plan, struct plan_checks *out)
{
        struct checker c;

        memset(out, 0, sizeof(*out));
        if (!plan->guests || plan->n_guests != n_guests)
                return;
        if (checker_init(&c, topo, usable) < 0) {
                checker_done(&c);
                return;
        }
        out->anti_affinity = out->smt = out->locality = out->bounds = true;
        check_balance(&c, guests, n_guests, plan, out);
        for (size_t i = 0; i < n_guests; i++) {
                if (guests[i].policy == POLICY_IGNORE || plan->guests[i].error)
                        continue;
                if (guest_input_whole(&guests[i])) {
                        check_whole(&c, &guests[i], &plan->guests[i], out);
                        continue;
                }
                check_guest(&c, &guests[i], &plan->guests[i], (unsigned)i + 1, out);
        }
        checker_done(&c);
}
