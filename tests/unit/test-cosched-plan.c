/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The pure part of co-scheduling: rotation order, weighted turns, fairness. */
#include "cosched-plan.h"
#include "tap.h"

#include <math.h>

static void test_next(void)
{
        struct cosched_plan_gang g[] = {
                { .id = 30, .weight = 2, .live = true },
                { .id = 10, .weight = 2, .live = true },
                { .id = 20, .weight = 4, .live = false },
                { .id = 40, .weight = 2, .live = true },
        };

        CHECK(cosched_plan_next(g, 4, false, 0) == 1, "first turn goes to the lowest live id");
        CHECK(cosched_plan_next(g, 4, true, 10) == 0, "after 10 comes 30: 20 is not live");
        CHECK(cosched_plan_next(g, 4, true, 30) == 3, "after 30 comes 40");
        CHECK(cosched_plan_next(g, 4, true, 40) == 1, "after the highest it wraps to the lowest");
        CHECK(cosched_plan_next(g, 4, true, 25) == 0, "after an id that left, the next one up");
        CHECK(cosched_plan_next(g, 4, true, 99) == 1, "after an id above all, wrap");
        CHECK(cosched_plan_next(g, 0, false, 0) == SIZE_MAX, "no gangs: nobody");
        g[0].live = g[1].live = g[3].live = false;
        CHECK(cosched_plan_next(g, 4, true, 10) == SIZE_MAX, "nobody live: nobody");

        /* Every live gang gets exactly one turn per round. */
        struct cosched_plan_gang h[5];
        for (int i = 0; i < 5; i++)
                h[i] = (struct cosched_plan_gang){ .id = (uint64_t)(5 - i) * 7, .weight = 1, .live = i != 2 };
        int turns[5] = { 0 };
        size_t cur = cosched_plan_next(h, 5, false, 0);
        for (int r = 0; r < 40; r++) {
                turns[cur]++;
                cur = cosched_plan_next(h, 5, true, h[cur].id);
        }
        for (int i = 0; i < 5; i++)
                CHECK(turns[i] == (i == 2 ? 0 : 10), "gang %d had %d turns in 10 rounds", i, turns[i]);
}

static void test_turns(void)
{
        struct cosched_plan_gang g[] = {
                { .id = 1, .weight = 2, .live = true },
                { .id = 2, .weight = 4, .live = true },
                { .id = 3, .weight = 1, .live = false },
        };

        CHECK(cosched_plan_turn_ns(g, 3, 0, 10000000, 0) == 10000000, "smallest live weight: base turn");
        CHECK(cosched_plan_turn_ns(g, 3, 1, 10000000, 0) == 20000000, "twice the vCPUs: twice the turn");
        CHECK(cosched_plan_turn_ns(g, 3, 1, 10000000, 15000000) == 15000000, "capped");
        /* Over a round the 4-vCPU gang is on duty 2/3 of the time: its share
         * of 6 threads on an overcommitted host. */
        double on1 = cosched_plan_turn_ns(g, 3, 0, 10000000, 0), on2 = cosched_plan_turn_ns(g, 3, 1, 10000000, 0);
        CHECK(fabs(on2 / (on1 + on2) - 4.0 / 6.0) < 1e-9, "4-vCPU gang's share %.3f", on2 / (on1 + on2));
        CHECK(cosched_plan_turn_ns(g, 0, 0, 5000, 0) == 5000, "nothing live: base");
}

static void test_fairness(void)
{
        double a[] = { 10, 5, 20 }, z[] = { 0, 0 }, one[] = { 3 };
        unsigned w[] = { 2, 1, 4 };

        CHECK(cosched_fairness(a, 3) == 0.25, "min/max");
        CHECK(cosched_fairness(z, 2) == 0.0, "nobody got anything: 0");
        CHECK(cosched_fairness(one, 1) == 1.0, "one gang is fair to itself");
        CHECK(cosched_fairness_weighted(a, w, 3) == 1.0, "work in proportion to weight is fair");
}

int main(void)
{
        test_next();
        test_turns();
        test_fairness();
        return test_result();
}
