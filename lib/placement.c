/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Placeholder: the engine lands with the placement work. */
#include "placement.h"

#include <errno.h>
#include <string.h>

static const char *const policy_names[_POLICY_MAX] = {
        [POLICY_SPREAD] = "spread",
        [POLICY_SPREAD_CORES] = "spread-cores",
        [POLICY_IGNORE] = "ignore",
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
};

const char *place_reason_to_string(enum place_reason r)
{
        return (unsigned)r < _PLACE_REASON_MAX ? reason_names[r] : NULL;
}

void plan_params_default(struct plan_params *p)
{
        *p = (struct plan_params){ .lane_max = 0, .imbalance_threshold = 0.25, .move_penalty = 0.1 };
}

int placement_plan(const struct topology *topo, hwloc_const_bitmap_t usable,
                   const struct guest_input *guests, size_t n_guests,
                   const struct plan_params *params, struct plan *out)
{
        memset(out, 0, sizeof(*out));
        return -ENOSYS;
}

void plan_done(struct plan *p)
{
        memset(p, 0, sizeof(*p));
}

void placement_check(const struct topology *topo, hwloc_const_bitmap_t usable,
                     const struct guest_input *guests, size_t n_guests,
                     const struct plan *plan, struct plan_checks *out)
{
        memset(out, 0, sizeof(*out));
}
