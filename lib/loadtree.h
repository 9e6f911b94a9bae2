/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A tournament tree over the PUs (by dense index) for the placement engine:
 * the candidate PU with the smallest key in any contiguous range, and the PU
 * with the largest key overall, each in O(log P) per update and per query.
 *
 * Every leaf carries two keys because "best candidate" depends on the guest
 * being placed (its siblings' PUs are excluded, some PUs carry penalties)
 * while "most loaded" does not.  Ties go to the lower index, so the engine
 * stays deterministic.
 */

#include <stddef.h>

struct lt_key {
        double value;
        unsigned index;
};

struct loadtree {
        size_t size;            /* leaves, a power of two */
        struct lt_key *min;     /* 2 * size nodes: node i has children 2i and 2i+1 */
        struct lt_key *max;
};

/* Every leaf starts as (min +inf, max -inf). */
int loadtree_init(struct loadtree *t, size_t n);
void loadtree_done(struct loadtree *t);
void loadtree_set(struct loadtree *t, size_t leaf, double min_key, double max_key);
/* Smallest min key in [lo, hi); its value is +inf when nothing there is a candidate. */
struct lt_key loadtree_min(const struct loadtree *t, size_t lo, size_t hi);

/* Largest max key of all leaves. */
static inline struct lt_key loadtree_max(const struct loadtree *t)
{
        return t->max[1];
}
