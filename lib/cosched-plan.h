/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The pure part of co-scheduling: whose turn is next, how long it lasts, and
 * the fairness arithmetic the benchmark and the tests share.  No I/O, no
 * clock: everything comes in as arguments.
 *
 * Turns go round in gang-id order.  A gang's turn lasts base_ns scaled by its
 * weight over the smallest live weight (weight = vCPU count by default), so
 * over a round a 4-vCPU guest beside a 2-vCPU guest is on duty 2/3 of the
 * time, which is what the default scheduler would give its four threads.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cosched_plan_gang {
        uint64_t id;
        unsigned weight;        /* > 0 */
        bool live;              /* false: every thread vanished, skip it */
};

/* The index of the live gang whose turn follows the gang with id @after_id
 * (ids ascending, wrapping round), or the first live gang when @have_after is
 * false.  SIZE_MAX when no gang is live.  @g need not be sorted. */
size_t cosched_plan_next(const struct cosched_plan_gang *g, size_t n, bool have_after, uint64_t after_id);

/* Length of @g[i]'s turn: base_ns * weight / (smallest live weight), capped
 * at max_ns (0: no cap).  base_ns when nothing is live. */
uint64_t cosched_plan_turn_ns(const struct cosched_plan_gang *g, size_t n, size_t i, uint64_t base_ns,
                              uint64_t max_ns);

/* min(v) / max(v) over n values: 1 = everyone got the same, 0 = someone got
 * nothing.  1 for n < 2; 0 when max is 0 and n >= 2 (nobody got anything). */
double cosched_fairness(const double *v, size_t n);

/* Weighted fairness: min over max of v[i] / w[i]. */
double cosched_fairness_weighted(const double *v, const unsigned *w, size_t n);
