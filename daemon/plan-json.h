/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A plan as JSON and as text: shared by `vcpuspreadctl simulate`, the
 * daemon's `plan` reply and the tests, so all show the same thing. */

#include <stdio.h>
#include <json-c/json.h>

#include "placement.h"

/* {"guests":[{"name","policy","vcpus":[{"vcpu","cpus","load","from","reason"}],...}],
 *  "cpus":[{"cpu","core","l3","numa","package","load"}], "moves":[...],
 *  "checks":{"anti_affinity":...}}.  NULL on allocation failure. */
json_object *plan_to_json(const struct topology *topo, hwloc_const_bitmap_t usable,
                          const struct guest_input *guests, size_t n_guests,
                          const struct plan *plan, const struct plan_checks *checks);

void plan_print_text(FILE *f, const struct topology *topo, hwloc_const_bitmap_t usable,
                     const struct guest_input *guests, size_t n_guests,
                     const struct plan *plan, const struct plan_checks *checks);
