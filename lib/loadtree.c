/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "loadtree.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

static struct lt_key lower(struct lt_key a, struct lt_key b)
{
        return b.value < a.value || (b.value == a.value && b.index < a.index) ? b : a;
}

static struct lt_key higher(struct lt_key a, struct lt_key b)
{
        return b.value > a.value || (b.value == a.value && b.index < a.index) ? b : a;
}

static bool same(struct lt_key a, struct lt_key b)
{
        return a.value == b.value && a.index == b.index;
}

/* Recompute node i from its children; false when it did not change. */
static bool pull(struct loadtree *t, size_t i)
{
        struct lt_key min = lower(t->min[2 * i], t->min[2 * i + 1]);
        struct lt_key max = higher(t->max[2 * i], t->max[2 * i + 1]);
        bool changed = !same(min, t->min[i]) || !same(max, t->max[i]);

        t->min[i] = min;
        t->max[i] = max;
        return changed;
}

int loadtree_init(struct loadtree *t, size_t n)
{
        size_t size = 1;

        while (size < n)
                size <<= 1;
        t->size = size;
        t->min = calloc(2 * size, sizeof(*t->min));
        t->max = calloc(2 * size, sizeof(*t->max));
        if (!t->min || !t->max) {
                loadtree_done(t);
                return -ENOMEM;
        }
        for (size_t i = 0; i < size; i++) {
                t->min[size + i] = (struct lt_key){ HUGE_VAL, (unsigned)i };
                t->max[size + i] = (struct lt_key){ -HUGE_VAL, (unsigned)i };
        }
        for (size_t i = size; --i > 0;)
                (void)pull(t, i);
        return 0;
}

void loadtree_done(struct loadtree *t)
{
        free(t->min);
        free(t->max);
        *t = (struct loadtree){};
}

void loadtree_set(struct loadtree *t, size_t leaf, double min_key, double max_key)
{
        size_t i = t->size + leaf;

        t->min[i].value = min_key;
        t->max[i].value = max_key;
        /* Ancestors only change while their key does: stop at the first that keeps it. */
        for (i >>= 1; i > 0 && pull(t, i); i >>= 1)
                ;
}

struct lt_key loadtree_min(const struct loadtree *t, size_t lo, size_t hi)
{
        struct lt_key best = { HUGE_VAL, (unsigned)-1 };

        for (lo += t->size, hi += t->size; lo < hi; lo >>= 1, hi >>= 1) {
                if (lo & 1)
                        best = lower(best, t->min[lo++]);
                if (hi & 1)
                        best = lower(best, t->min[--hi]);
        }
        return best;
}
