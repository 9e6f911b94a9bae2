/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Domains (NUMA nodes, L3 groups) and what a guest can use in them. */
#include "placement-domains.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

static unsigned umax(unsigned a, unsigned b)
{
        return a > b ? a : b;
}

struct units count_units(const struct topology *t, const struct domains *d,
                                hwloc_const_bitmap_t allowed, unsigned lo, unsigned hi)
{
        struct units u = {};
        unsigned last_core = UINT_MAX;

        for (unsigned p = lo; p < hi; p++) {
                if (!d->usable[p] || (allowed && !hwloc_bitmap_isset(allowed, t->pus[p].os_index)))
                        continue;
                u.pus++;
                /* A core's PUs are consecutive in dense order. */
                if (t->pus[p].core != last_core) {
                        u.cores++;
                        last_core = t->pus[p].core;
                }
        }
        return u;
}

void domains_done(struct domains *d)
{
        free(d->usable);
        free(d->numa);
        free(d->cache);
        free(d->numa_of);
        free(d->cache_of);
        free(d->numa_units);
        free(d->cache_units);
        *d = (struct domains){};
}

static void domains_add_pu(struct domains *d, const struct topology *t, unsigned p)
{
        bool new_numa = p == 0 || t->pus[p].numa != t->pus[p - 1].numa;
        bool new_cache = new_numa || t->pus[p].l3 != t->pus[p - 1].l3;

        if (new_numa)
                d->numa[d->n_numa++] = (struct run){ .lo = p, .first = (unsigned)d->n_cache };
        if (new_cache)
                d->cache[d->n_cache++] = (struct run){ .lo = p, .first = (unsigned)d->n_numa - 1 };
        d->numa[d->n_numa - 1].hi = p + 1;
        d->numa[d->n_numa - 1].end = (unsigned)d->n_cache;
        d->cache[d->n_cache - 1].hi = p + 1;
        d->numa_of[p] = (unsigned)d->n_numa - 1;
        d->cache_of[p] = (unsigned)d->n_cache - 1;
}

static void units_max(struct units *m, struct units u)
{
        m->pus = umax(m->pus, u.pus);
        m->cores = umax(m->cores, u.cores);
}

int domains_init(struct domains *d, const struct topology *t, hwloc_const_bitmap_t usable)
{
        size_t n = t->n_pus;

        *d = (struct domains){ .n_pus = n };
        d->usable = calloc(n, sizeof(*d->usable));
        d->numa = calloc(n, sizeof(*d->numa));
        d->cache = calloc(n, sizeof(*d->cache));
        d->numa_of = calloc(n, sizeof(*d->numa_of));
        d->cache_of = calloc(n, sizeof(*d->cache_of));
        d->numa_units = calloc(n, sizeof(*d->numa_units));
        d->cache_units = calloc(n, sizeof(*d->cache_units));
        if (!d->usable || !d->numa || !d->cache || !d->numa_of || !d->cache_of ||
            !d->numa_units || !d->cache_units) {
                domains_done(d);
                return -ENOMEM;
        }
        for (unsigned p = 0; p < n; p++) {
                d->usable[p] = hwloc_bitmap_isset(usable, t->pus[p].os_index);
                d->n_usable += d->usable[p];
                domains_add_pu(d, t, p);
        }
        if (d->n_usable == 0) {
                domains_done(d);
                return -ENOSPC;
        }
        for (size_t i = 0; i < d->n_numa; i++) {
                d->numa_units[i] = count_units(t, d, NULL, d->numa[i].lo, d->numa[i].hi);
                units_max(&d->max_numa, d->numa_units[i]);
        }
        for (size_t i = 0; i < d->n_cache; i++) {
                d->cache_units[i] = count_units(t, d, NULL, d->cache[i].lo, d->cache[i].hi);
                units_max(&d->max_cache, d->cache_units[i]);
        }
        d->all = count_units(t, d, NULL, 0, (unsigned)n);
        return 0;
}

struct units run_units(const struct topology *t, const struct domains *d,
                              hwloc_const_bitmap_t allowed, enum plan_scope s, unsigned i)
{
        if (!allowed)
                return s == SCOPE_L3 ? d->cache_units[i] : d->numa_units[i];
        const struct run *r = scope_run(d, s, i);
        return count_units(t, d, allowed, r->lo, r->hi);
}

void guest_facts_done(struct guest_facts *f)
{
        if (f->allowed)
                hwloc_bitmap_free(f->allowed);
        f->allowed = NULL;
}

static enum plan_scope fit_scope(const struct topology *t, const struct domains *d,
                                 const struct guest_facts *f, unsigned n)
{
        for (enum plan_scope s = SCOPE_L3; s < SCOPE_ANY; s++) {
                if (!f->allowed) {
                        if (units_of(s == SCOPE_L3 ? d->max_cache : d->max_numa, f->core_units) >= n)
                                return s;
                        continue;
                }
                for (unsigned i = 0; i < scope_count(d, s); i++)
                        if (units_of(run_units(t, d, f->allowed, s, i), f->core_units) >= n)
                                return s;
        }
        return SCOPE_ANY;
}

int guest_facts_init(struct guest_facts *f, const struct topology *t, const struct domains *d,
                            hwloc_const_bitmap_t usable, const struct guest_input *g)
{
        unsigned n = (unsigned)g->n_vcpus;

        *f = (struct guest_facts){};
        if (g->restriction && !hwloc_bitmap_isincluded(usable, g->restriction)) {
                f->allowed = hwloc_bitmap_alloc();
                if (!f->allowed)
                        return -ENOMEM;
                hwloc_bitmap_and(f->allowed, usable, g->restriction);
                f->all = count_units(t, d, f->allowed, 0, (unsigned)d->n_pus);
        } else
                f->all = d->all;
        if (f->all.pus == 0) {
                guest_facts_done(f);
                return -ENOSPC;
        }
        f->core_units = g->policy == POLICY_SPREAD_CORES && n <= f->all.cores;
        f->overcommitted = n > f->all.pus;
        f->cap = f->overcommitted ? (n + f->all.pus - 1) / f->all.pus : 1;
        f->fit = f->overcommitted ? SCOPE_ANY : fit_scope(t, d, f, n);
        return 0;
}
