/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A plan as JSON and as text: shared by `vcpuspreadctl simulate`, the
 * daemon's `plan` reply and the tests, so all show the same thing. */

#include <stdio.h>
#include <time.h>
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

/*
 * The engine's inputs, every field it reads: {"usable", "params":{...},
 * "guests":[{"name","policy","restriction","vcpus":[{"vcpu","load","wait",
 * "wait_ms","current","unsampled","boot","last_move_usec",
 * "retry_after_usec"}]}]}.  The daemon's `plan` reply carries it as
 * "inputs", and `vcpuspreadctl simulate --inputs` plans from it, so the two
 * can be compared.  NULL on allocation failure.
 */
json_object *plan_inputs_to_json(hwloc_const_bitmap_t usable, const struct guest_input *guests, size_t n_guests,
                                 const struct plan_params *params);

/* Inputs read back; owns everything it points to. */
struct plan_input_set {
        hwloc_bitmap_t usable;          /* NULL: not given */
        struct plan_params params;
        size_t n_guests;
        struct guest_input *guests;
};

/* Returns 0, -ENOMEM, or -EINVAL with the reason in @err. */
int plan_inputs_from_json(json_object *o, struct plan_input_set *out, char *err, size_t errlen);
void plan_input_set_done(struct plan_input_set *s);

/* @t as "2026-12-01T10:51:51Z" (UTC), or NULL (JSON null) when 0. */
json_object *json_utc_time(time_t t);
