/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "topology.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

static void groups_free(struct topo_group *g, size_t n)
{
        if (!g)
                return;
        for (size_t i = 0; i < n; i++)
                if (g[i].cpuset)
                        hwloc_bitmap_free(g[i].cpuset);
        free(g);
}

void topology_free(struct topology *t)
{
        if (!t)
                return;
        groups_free(t->cores, t->n_cores);
        groups_free(t->l3s, t->n_l3s);
        groups_free(t->numas, t->n_numas);
        groups_free(t->packages, t->n_packages);
        free(t->pus);
        free(t->pu_by_os);
        if (t->complete)
                hwloc_bitmap_free(t->complete);
        if (t->online)
                hwloc_bitmap_free(t->online);
        if (t->allowed)
                hwloc_bitmap_free(t->allowed);
        if (t->hw)
                hwloc_topology_destroy(t->hw);
        free(t);
}

/*
 * Fill one level of groups.  When the host has no object of that type (no L3,
 * no package in a flat synthetic topology) the whole machine forms one group,
 * so every PU always has a core, L3, NUMA node and package to belong to.
 */
static int build_level(struct topology *t, hwloc_obj_type_t type, struct topo_group **groups,
                       size_t *n_groups)
{
        int depth = hwloc_get_type_depth(t->hw, type);
        int n = 0;

        if (depth != HWLOC_TYPE_DEPTH_UNKNOWN && depth != HWLOC_TYPE_DEPTH_MULTIPLE)
                n = hwloc_get_nbobjs_by_depth(t->hw, depth);
        if (type == HWLOC_OBJ_NUMANODE)
                n = hwloc_get_nbobjs_by_type(t->hw, HWLOC_OBJ_NUMANODE);

        size_t count = n > 0 ? (size_t)n : 1;
        struct topo_group *g = calloc(count, sizeof(*g));
        if (!g)
                return -ENOMEM;

        for (size_t i = 0; i < count; i++) {
                hwloc_obj_t obj = n > 0 ? hwloc_get_obj_by_type(t->hw, type, (unsigned)i) : NULL;
                hwloc_const_bitmap_t set = obj ? obj->cpuset : t->complete;

                g[i].cpuset = hwloc_bitmap_dup(set);
                if (!g[i].cpuset) {
                        groups_free(g, count);
                        return -ENOMEM;
                }
                hwloc_bitmap_and(g[i].cpuset, g[i].cpuset, t->complete);
                g[i].os_index = obj && obj->os_index != HWLOC_UNKNOWN_INDEX ? obj->os_index : (unsigned)i;
                g[i].n_pus = (unsigned)hwloc_bitmap_weight(g[i].cpuset);
        }
        *groups = g;
        *n_groups = count;
        return 0;
}

/*
 * Assign each PU to the group of @groups containing it; records first_pu.
 * A PU outside every group of the level (real machines have them: PUs in no
 * package, NUMA nodes whose PUs hwloc left out because they are disallowed)
 * goes into one pseudo group appended for them, as a missing level makes one
 * for the whole machine: a daemon that refused such a host could not start.
 * Its os_index is one past the largest of the level, so that no output takes
 * it for a real node or package.
 */
static int assign_level(struct topology *t, struct topo_group **groups, size_t *n_groups,
                        size_t member_offset)
{
        struct topo_group *g = *groups;
        size_t n = *n_groups, orphan = SIZE_MAX;

        for (size_t gi = 0; gi < n; gi++)
                g[gi].first_pu = UINT32_MAX;
        for (size_t p = 0; p < t->n_pus; p++) {
                unsigned *member = (unsigned *)((char *)&t->pus[p] + member_offset);
                size_t gi;

                for (gi = 0; gi < n; gi++)
                        if (hwloc_bitmap_isset(g[gi].cpuset, t->pus[p].os_index))
                                break;
                if (gi == n && orphan == SIZE_MAX) {
                        struct topo_group *bigger = realloc(g, (n + 1) * sizeof(*g));
                        if (!bigger)
                                return -ENOMEM;
                        *groups = g = bigger;
                        unsigned os = 0;
                        for (size_t i = 0; i < n; i++)
                                if (g[i].os_index >= os)
                                        os = g[i].os_index + 1;
                        g[n] = (struct topo_group){ .os_index = os, .cpuset = hwloc_bitmap_alloc(),
                                                    .first_pu = UINT32_MAX };
                        /* Counted now, so that groups_free() releases it. */
                        *n_groups = ++n;
                        if (!g[n - 1].cpuset)
                                return -ENOMEM;
                        orphan = n - 1;
                }
                if (gi == n || gi == orphan) {
                        gi = orphan;
                        hwloc_bitmap_set(g[gi].cpuset, t->pus[p].os_index);
                        g[gi].n_pus++;
                }
                *member = (unsigned)gi;
                if (g[gi].first_pu == UINT32_MAX)
                        g[gi].first_pu = (unsigned)p;
        }
        return 0;
}

/*
 * Cores from the PUs in dense order: consecutive PUs under one Core object
 * form a core, and a PU without a Core object (some VMs, flat synthetic
 * input, or a machine where only some PUs have one) is its own core.  So a
 * core's PUs are always consecutive in dense order and core indices grow
 * with it, which the engine's lanes rely on, and a Core whose PUs are all
 * offline leaves no empty core behind.
 */
static int build_cores(struct topology *t)
{
        hwloc_obj_t prev = NULL;

        t->cores = calloc(t->n_pus, sizeof(*t->cores));
        if (!t->cores)
                return -ENOMEM;
        for (size_t i = 0; i < t->n_pus; i++) {
                hwloc_obj_t pu = hwloc_get_obj_by_type(t->hw, HWLOC_OBJ_PU, (unsigned)i);
                hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(t->hw, HWLOC_OBJ_CORE, pu);
                struct topo_group *c;

                if (!core || core != prev) {
                        c = &t->cores[t->n_cores++];
                        c->cpuset = hwloc_bitmap_alloc();
                        if (!c->cpuset)
                                return -ENOMEM;
                        c->os_index = core && core->os_index != HWLOC_UNKNOWN_INDEX ?
                                core->os_index : (unsigned)(t->n_cores - 1);
                        c->first_pu = (unsigned)i;
                }
                c = &t->cores[t->n_cores - 1];
                hwloc_bitmap_set(c->cpuset, t->pus[i].os_index);
                c->n_pus++;
                t->pus[i].core = (unsigned)(t->n_cores - 1);
                prev = core;
        }
        return 0;
}

static int topology_build(hwloc_topology_t hw, const char *source, struct topology **out)
{
        struct topology *t = calloc(1, sizeof(*t));
        int r;

        if (!t) {
                hwloc_topology_destroy(hw);
                return -ENOMEM;
        }
        t->hw = hw;
        snprintf(t->source, sizeof(t->source), "%s", source);

        t->complete = hwloc_bitmap_dup(hwloc_topology_get_complete_cpuset(hw));
        t->online = hwloc_bitmap_dup(hwloc_topology_get_topology_cpuset(hw));
        t->allowed = hwloc_bitmap_dup(hwloc_topology_get_allowed_cpuset(hw));
        if (!t->complete || !t->online || !t->allowed) {
                r = -ENOMEM;
                goto fail;
        }
        /* Only PUs hwloc actually describes can be placed on. */
        hwloc_bitmap_and(t->complete, t->complete, hwloc_topology_get_topology_cpuset(hw));

        int n = hwloc_get_nbobjs_by_type(hw, HWLOC_OBJ_PU);
        if (n <= 0) {
                r = -ENODEV;
                goto fail;
        }
        t->n_pus = (size_t)n;
        t->pus = calloc(t->n_pus, sizeof(*t->pus));
        if (!t->pus) {
                r = -ENOMEM;
                goto fail;
        }
        for (size_t i = 0; i < t->n_pus; i++) {
                hwloc_obj_t pu = hwloc_get_obj_by_type(hw, HWLOC_OBJ_PU, (unsigned)i);
                t->pus[i].os_index = pu->os_index;
                if (pu->os_index > t->max_os_index)
                        t->max_os_index = pu->os_index;
        }
        t->pu_by_os = malloc(((size_t)t->max_os_index + 1) * sizeof(int));
        if (!t->pu_by_os) {
                r = -ENOMEM;
                goto fail;
        }
        for (size_t i = 0; i <= t->max_os_index; i++)
                t->pu_by_os[i] = -1;
        for (size_t i = 0; i < t->n_pus; i++)
                t->pu_by_os[t->pus[i].os_index] = (int)i;

        if ((r = build_cores(t)) < 0 ||
            (r = build_level(t, HWLOC_OBJ_L3CACHE, &t->l3s, &t->n_l3s)) < 0 ||
            (r = build_level(t, HWLOC_OBJ_NUMANODE, &t->numas, &t->n_numas)) < 0 ||
            (r = build_level(t, HWLOC_OBJ_PACKAGE, &t->packages, &t->n_packages)) < 0)
                goto fail;

        if ((r = assign_level(t, &t->l3s, &t->n_l3s, offsetof(struct topo_pu, l3))) < 0 ||
            (r = assign_level(t, &t->numas, &t->n_numas, offsetof(struct topo_pu, numa))) < 0 ||
            (r = assign_level(t, &t->packages, &t->n_packages, offsetof(struct topo_pu, package))) < 0)
                goto fail;

        *out = t;
        return 0;
fail:
        topology_free(t);
        return r;
}

static int topology_init(hwloc_topology_t *hw)
{
        if (hwloc_topology_init(hw) < 0)
                return -errno ?: -ENOMEM;
        /* Keep disallowed PUs in the model: we place vCPUs of other processes,
         * and must know all PUs even if our own cpuset is narrower. */
        hwloc_topology_set_flags(*hw, HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED);
        /* Only the CPU side matters; skip I/O and instruction caches. */
        hwloc_topology_set_io_types_filter(*hw, HWLOC_TYPE_FILTER_KEEP_NONE);
        hwloc_topology_set_icache_types_filter(*hw, HWLOC_TYPE_FILTER_KEEP_NONE);
        return 0;
}

static int load_with(int (*setup)(hwloc_topology_t, const char *), const char *arg,
                     const char *source, struct topology **out)
{
        hwloc_topology_t hw;
        int r = topology_init(&hw);
        if (r < 0)
                return r;
        if (setup && setup(hw, arg) < 0) {
                r = errno > 0 ? -errno : -EINVAL;
                hwloc_topology_destroy(hw);
                return r;
        }
        if (hwloc_topology_load(hw) < 0) {
                r = errno > 0 ? -errno : -EINVAL;
                hwloc_topology_destroy(hw);
                return r;
        }
        return topology_build(hw, source, out);
}

int topology_load_host(struct topology **out)
{
        return load_with(NULL, NULL, "host", out);
}

int topology_load_xml(const char *path, struct topology **out)
{
        return load_with(hwloc_topology_set_xml, path, "xml", out);
}

int topology_load_synthetic(const char *description, struct topology **out)
{
        errno = 0;
        int r = load_with(hwloc_topology_set_synthetic, description, "synthetic", out);
        /* hwloc reports bad synthetic strings with errno EINVAL or not at all. */
        return r;
}

static bool ends_with(const char *s, const char *suffix)
{
        size_t a = strlen(s), b = strlen(suffix);
        return a >= b && strcmp(s + a - b, suffix) == 0;
}

int topology_load_spec(const char *spec, struct topology **out, char *err, size_t errlen)
{
        int r;

        if (!spec || !*spec) {
                snprintf(err, errlen, "empty topology: expected host, FILE.xml or a synthetic description");
                return -EINVAL;
        }
        if (strcmp(spec, "host") == 0) {
                r = topology_load_host(out);
                if (r < 0)
                        snprintf(err, errlen, "cannot read this host's topology: %s", strerror(-r));
                return r;
        }
        if (ends_with(spec, ".xml")) {
                r = topology_load_xml(spec, out);
                if (r < 0)
                        snprintf(err, errlen, "cannot load hwloc XML topology %s: %s", spec,
                                 strerror(-r));
                return r;
        }
        r = topology_load_synthetic(spec, out);
        if (r < 0)
                snprintf(err, errlen,
                         "invalid synthetic topology '%s': expected e.g. 'pack:2 numa:2 l3:2 core:8 pu:2'",
                         spec);
        return r;
}

int topology_usable(const struct topology *t, hwloc_const_bitmap_t reserved, hwloc_bitmap_t out)
{
        hwloc_bitmap_and(out, t->online, t->allowed);
        hwloc_bitmap_and(out, out, t->complete);
        if (reserved)
                hwloc_bitmap_andnot(out, out, reserved);
        return hwloc_bitmap_iszero(out) ? -ENOSPC : 0;
}
