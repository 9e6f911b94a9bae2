/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cosched-plan.h"

size_t cosched_plan_next(const struct cosched_plan_gang *g, size_t n, bool have_after, uint64_t after_id)
{
        size_t best = SIZE_MAX, lowest = SIZE_MAX;

        for (size_t i = 0; i < n; i++) {
                if (!g[i].live)
                        continue;
                if (lowest == SIZE_MAX || g[i].id < g[lowest].id)
                        lowest = i;
                if (have_after && g[i].id > after_id && (best == SIZE_MAX || g[i].id < g[best].id))
                        best = i;
        }
        return best != SIZE_MAX ? best : lowest;
}

uint64_t cosched_plan_turn_ns(const struct cosched_plan_gang *g, size_t n, size_t i, uint64_t base_ns,
                              uint64_t max_ns)
{
        unsigned minw = 0;

        for (size_t k = 0; k < n; k++)
                if (g[k].live && g[k].weight && (minw == 0 || g[k].weight < minw))
                        minw = g[k].weight;
        if (i >= n || minw == 0 || g[i].weight == 0)
                return base_ns;
        uint64_t t = base_ns * g[i].weight / minw;
        return max_ns && t > max_ns ? max_ns : t;
}

double cosched_fairness(const double *v, size_t n)
{
        if (n < 2)
                return 1.0;
        double lo = v[0], hi = v[0];
        for (size_t i = 1; i < n; i++) {
                lo = v[i] < lo ? v[i] : lo;
                hi = v[i] > hi ? v[i] : hi;
        }
        return hi > 0 ? lo / hi : 0.0;
}

double cosched_fairness_weighted(const double *v, const unsigned *w, size_t n)
{
        double r[n ? n : 1];

        for (size_t i = 0; i < n; i++)
                r[i] = w[i] ? v[i] / w[i] : 0.0;
        return cosched_fairness(r, n);
}
