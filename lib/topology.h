/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The host's CPU topology as the placement engine needs it: every logical CPU
 * (PU) with the physical core, L3 group, NUMA node and package it belongs to.
 * Loaded once through hwloc; after that a plain read-only model.
 *
 * PUs are numbered two ways.  The *dense* index (0..n_pus-1, hwloc's logical
 * order, so neighbours in the index share caches) is what the engine uses for
 * arrays; the *OS* index is the Linux CPU number used in every mask.
 */

#include <stdbool.h>
#include <stddef.h>
#include <hwloc.h>

struct topo_pu {
        unsigned os_index;
        unsigned core;     /* dense index into topology.cores (a PU without a Core is its own) */
        /* Dense indices into topology.l3s, .numas, .packages.  A PU outside
         * every object of a level (or on a host without that level) is in
         * that level's one pseudo group. */
        unsigned l3;
        unsigned numa;
        unsigned package;
};

/* A group of PUs at one level (a core, an L3 group, a NUMA node, a package). */
struct topo_group {
        /* hwloc's OS index of the object, or the dense index if it has none.
         * Pseudo groups (a level the host lacks; the PUs outside every object
         * of a level, as on hosts with disallowed NUMA nodes) have no object:
         * theirs is one that no object of the level has. */
        unsigned os_index;
        hwloc_bitmap_t cpuset;  /* PUs in it, by OS index */
        unsigned first_pu;      /* dense index of its first PU */
        unsigned n_pus;
};

struct topology {
        hwloc_topology_t hw;
        size_t n_pus;
        struct topo_pu *pus;            /* by dense index */
        size_t n_cores, n_l3s, n_numas, n_packages;
        struct topo_group *cores, *l3s, *numas, *packages;
        unsigned max_os_index;
        int *pu_by_os;                  /* OS index -> dense index, -1 if absent; max_os_index+1 entries */
        hwloc_bitmap_t complete;        /* every PU hwloc knows of */
        hwloc_bitmap_t online;          /* PUs that are online */
        hwloc_bitmap_t allowed;         /* PUs this process may use (its cpuset cgroup) */
        char source[64];                /* "host", "xml", "synthetic": for messages */
};

/* Load the running host's topology. */
int topology_load_host(struct topology **out);
/* Load an hwloc XML export (lstopo foo.xml). */
int topology_load_xml(const char *path, struct topology **out);
/* Load an hwloc synthetic description, e.g. "pack:2 numa:2 l3:2 core:8 pu:2". */
int topology_load_synthetic(const char *description, struct topology **out);
/*
 * "host", a path ending in ".xml", or a synthetic description.  On failure
 * returns a negative errno and writes a one-line reason into @err.
 */
int topology_load_spec(const char *spec, struct topology **out, char *err, size_t errlen);

void topology_free(struct topology *t);

/* Usable = online ∩ allowed ∖ reserved (reserved may be NULL).  Returns
 * -ENOSPC when nothing is left. */
int topology_usable(const struct topology *t, hwloc_const_bitmap_t reserved, hwloc_bitmap_t out);

/* Dense index of an OS CPU number, or -1. */
static inline int topology_pu_dense(const struct topology *t, unsigned os_index)
{
        return os_index <= t->max_os_index ? t->pu_by_os[os_index] : -1;
}

static inline void topology_freep(struct topology **t)
{
        if (*t)
                topology_free(*t);
}
#define _cleanup_topology_ __attribute__((cleanup(topology_freep)))
