/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "plan-json.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpulist.h"
#include "macro.h"

/* json-c keeps doubles at full precision; two decimals are what a person
 * reads and what a load measured over a second can claim. */
static json_object *json_load(double v)
{
        return json_object_new_double(round(v * 1000) / 1000);
}

static json_object *json_cpulist(hwloc_const_bitmap_t set)
{
        if (!set)
                return NULL;
        _cleanup_free_ char *s = cpulist_format(set);
        return s ? json_object_new_string(s) : NULL;
}

static json_object *guest_to_json(const struct guest_input *g, const struct guest_plan *gp)
{
        json_object *o = json_object_new_object();
        json_object *vcpus = json_object_new_array();

        json_object_object_add(o, "name", json_object_new_string(g->name ? g->name : ""));
        json_object_object_add(o, "policy", json_object_new_string(placement_policy_to_string(g->policy)));
        if (g->policy == POLICY_AUTO)
                json_object_object_add(o, "auto_mode", json_object_new_string(adaptive_mode_to_string(g->auto_mode)));
        if (g->restriction)
                json_object_object_add(o, "restriction", json_cpulist(g->restriction));
        json_object_object_add(o, "overcommitted", json_object_new_boolean(gp->overcommitted));
        if (gp->overcommitted)
                json_object_object_add(o, "max_per_cpu", json_object_new_int((int)gp->max_per_pu));
        if (gp->error)
                json_object_object_add(o, "error", json_object_new_string("no usable CPU in the guest's restriction"));
        for (size_t v = 0; v < g->n_vcpus; v++) {
                json_object *jv = json_object_new_object();
                json_object_object_add(jv, "vcpu", json_object_new_int((int)g->vcpus[v].vcpu));
                json_object_object_add(jv, "cpus", json_cpulist(gp->vcpus[v].target));
                json_object_object_add(jv, "load", json_load(gp->vcpus[v].load));
                if (gp->vcpus[v].deferred)
                        json_object_object_add(jv, "deferred", json_object_new_boolean(true));
                if (gp->vcpus[v].holding)
                        json_object_object_add(jv, "holding", json_object_new_boolean(true));
                if (gp->vcpus[v].reason != PLACE_NONE) {
                        if (g->vcpus[v].current)
                                json_object_object_add(jv, "from", json_cpulist(g->vcpus[v].current));
                        json_object_object_add(jv, "reason",
                                json_object_new_string(place_reason_to_string(gp->vcpus[v].reason)));
                }
                json_object_array_add(vcpus, jv);
        }
        json_object_object_add(o, "vcpus", vcpus);
        return o;
}

json_object *plan_to_json(const struct topology *topo, hwloc_const_bitmap_t usable,
                          const struct guest_input *guests, size_t n_guests,
                          const struct plan *plan, const struct plan_checks *checks)
{
        json_object *root = json_object_new_object();
        json_object *jguests = json_object_new_array();
        json_object *jcpus = json_object_new_array();
        json_object *jmoves = json_object_new_array();
        json_object *jchecks = json_object_new_object();

        for (size_t i = 0; i < n_guests; i++)
                json_object_array_add(jguests, guest_to_json(&guests[i], &plan->guests[i]));

        for (size_t p = 0; p < topo->n_pus; p++) {
                const struct topo_pu *pu = &topo->pus[p];
                json_object *c = json_object_new_object();
                json_object_object_add(c, "cpu", json_object_new_int((int)pu->os_index));
                json_object_object_add(c, "core", json_object_new_int((int)pu->core));
                json_object_object_add(c, "l3", json_object_new_int((int)pu->l3));
                json_object_object_add(c, "numa", json_object_new_int((int)topo->numas[pu->numa].os_index));
                json_object_object_add(c, "package", json_object_new_int((int)pu->package));
                json_object_object_add(c, "usable", json_object_new_boolean(hwloc_bitmap_isset(usable, pu->os_index)));
                json_object_object_add(c, "load", json_load(plan->pu_load ? plan->pu_load[p] : 0));
                json_object_array_add(jcpus, c);
        }

        for (size_t m = 0; m < plan->n_moves; m++) {
                const struct plan_move *mv = &plan->moves[m];
                json_object *jm = json_object_new_object();
                json_object_object_add(jm, "guest", json_object_new_string(guests[mv->guest].name));
                json_object_object_add(jm, "vcpu", json_object_new_int((int)guests[mv->guest].vcpus[mv->vcpu].vcpu));
                json_object_object_add(jm, "from", mv->from ? json_cpulist(mv->from) : NULL);
                json_object_object_add(jm, "to", json_cpulist(mv->to));
                json_object_object_add(jm, "reason", json_object_new_string(place_reason_to_string(mv->reason)));
                if (mv->staging)
                        json_object_object_add(jm, "staging", json_object_new_boolean(true));
                json_object_array_add(jmoves, jm);
        }

        json_object_object_add(jchecks, "anti_affinity", json_object_new_boolean(checks->anti_affinity));
        json_object_object_add(jchecks, "smt", json_object_new_boolean(checks->smt));
        json_object_object_add(jchecks, "locality", json_object_new_boolean(checks->locality));
        json_object_object_add(jchecks, "balance", json_object_new_boolean(checks->balance));
        json_object_object_add(jchecks, "max_cpu_load", json_load(checks->max_pu_load));
        json_object_object_add(jchecks, "ideal_load", json_load(plan->ideal_load));
        json_object_object_add(jchecks, "max_vcpu_load", json_load(checks->max_vcpu_load));

        json_object_object_add(root, "guests", jguests);
        json_object_object_add(root, "cpus", jcpus);
        json_object_object_add(root, "moves", jmoves);
        json_object_object_add(root, "checks", jchecks);
        return root;
}

static void print_check(FILE *f, const char *name, bool ok, const char *what)
{
        fprintf(f, "  %s %-14s %s\n", ok ? "pass" : "FAIL", name, what);
}

void plan_print_text(FILE *f, const struct topology *topo, hwloc_const_bitmap_t usable,
                     const struct guest_input *guests, size_t n_guests,
                     const struct plan *plan, const struct plan_checks *checks)
{
        for (size_t i = 0; i < n_guests; i++) {
                const struct guest_input *g = &guests[i];
                const struct guest_plan *gp = &plan->guests[i];

                fprintf(f, "%s (%s%s%s, %zu vCPU%s)%s%s\n", g->name, placement_policy_to_string(g->policy),
                        g->policy == POLICY_AUTO ? ": " : "",
                        g->policy == POLICY_AUTO ? adaptive_mode_to_string(g->auto_mode) : "", g->n_vcpus, g->n_vcpus == 1 ? "" : "s",
                        gp->overcommitted ? ": more vCPUs than CPUs, shared" : "",
                        gp->error ? ": ERROR no usable CPU in its restriction" : "");
                for (size_t v = 0; v < g->n_vcpus; v++) {
                        _cleanup_free_ char *cpus = cpulist_format(gp->vcpus[v].target);
                        enum place_reason why = gp->vcpus[v].reason;
                        fprintf(f, "  vcpu%-3u -> %-12s load %.2f", g->vcpus[v].vcpu, cpus ? cpus : "?",
                                gp->vcpus[v].load);
                        if (why != PLACE_NONE)
                                fprintf(f, "  (%s%s)", place_reason_to_string(why),
                                        gp->vcpus[v].deferred ? ", deferred to the next pass" : "");
                        fputc('\n', f);
                }
        }

        fprintf(f, "\nCPU load (ideal %.2f):\n", plan->ideal_load);
        for (size_t p = 0; p < topo->n_pus; p++) {
                const struct topo_pu *pu = &topo->pus[p];
                if (!hwloc_bitmap_isset(usable, pu->os_index))
                        continue;
                fprintf(f, "  cpu%-4u core %-4u numa %-2u %5.2f\n", pu->os_index, pu->core,
                        topo->numas[pu->numa].os_index, plan->pu_load ? plan->pu_load[p] : 0);
        }

        fprintf(f, "\nChecks:\n");
        print_check(f, "anti-affinity", checks->anti_affinity, "siblings on disjoint CPUs (or within ceil(vcpus/CPUs))");
        print_check(f, "smt", checks->smt, "spread-cores siblings on distinct cores");
        print_check(f, "locality", checks->locality, "guests that fit one NUMA node / L3 group kept inside");
        char what[128];
        snprintf(what, sizeof(what), "max CPU load %.2f <= ideal %.2f + largest vCPU load %.2f",
                 checks->max_pu_load, plan->ideal_load, checks->max_vcpu_load);
        print_check(f, "balance", checks->balance, what);
}

/* ---- The engine's inputs, both ways ---- */

/*
 * One row per field the engine reads, for both directions: what the daemon
 * writes is what simulate reads, by construction.
 */
enum field_kind { F_DOUBLE, F_U64, F_UNSIGNED, F_BOOL, F_CPUS };

struct field_row {
        const char *key;
        enum field_kind kind;
        size_t offset;
};

#define ROW(type, member, kind) { #member, kind, offsetof(type, member) }

static const struct field_row vcpu_rows[] = {
        ROW(struct vcpu_input, vcpu, F_UNSIGNED),
        ROW(struct vcpu_input, load, F_DOUBLE),
        ROW(struct vcpu_input, wait, F_DOUBLE),
        ROW(struct vcpu_input, wait_ms, F_DOUBLE),
        ROW(struct vcpu_input, current, F_CPUS),
        ROW(struct vcpu_input, unsampled, F_BOOL),
        ROW(struct vcpu_input, boot, F_BOOL),
        ROW(struct vcpu_input, last_move_usec, F_U64),
        ROW(struct vcpu_input, retry_after_usec, F_U64),
        {},
};

static const struct field_row param_rows[] = {
        ROW(struct plan_params, lane_width, F_UNSIGNED),
        ROW(struct plan_params, imbalance_threshold, F_DOUBLE),
        ROW(struct plan_params, hysteresis, F_DOUBLE),
        ROW(struct plan_params, moves_per_interval, F_UNSIGNED),
        ROW(struct plan_params, min_dwell_usec, F_U64),
        ROW(struct plan_params, starvation_wait_usec, F_U64),
        ROW(struct plan_params, now_usec, F_U64),
        ROW(struct plan_params, unsampled_load, F_DOUBLE),
        ROW(struct plan_params, boot_load, F_DOUBLE),
        {},
};

static json_object *rows_to_json(const struct field_row *rows, const void *base)
{
        json_object *o = json_object_new_object();

        for (const struct field_row *f = rows; f->key; f++) {
                const char *p = (const char *)base + f->offset;
                json_object *v = NULL;
                switch (f->kind) {
                case F_DOUBLE: v = json_object_new_double(*(const double *)p); break;
                case F_U64: v = json_object_new_uint64(*(const uint64_t *)p); break;
                case F_UNSIGNED: v = json_object_new_uint64(*(const unsigned *)p); break;
                case F_BOOL: v = json_object_new_boolean(*(const bool *)p); break;
                case F_CPUS: v = json_cpulist(*(const hwloc_const_bitmap_t *)p); break;
                }
                json_object_object_add(o, f->key, v);
        }
        return o;
}

json_object *plan_inputs_to_json(hwloc_const_bitmap_t usable, const struct guest_input *guests, size_t n_guests,
                                 const struct plan_params *params)
{
        json_object *root = json_object_new_object();
        json_object *jguests = json_object_new_array();

        for (size_t i = 0; i < n_guests; i++) {
                const struct guest_input *g = &guests[i];
                json_object *jg = json_object_new_object();
                json_object *jv = json_object_new_array();
                json_object_object_add(jg, "name", json_object_new_string(g->name ? g->name : ""));
                json_object_object_add(jg, "policy", json_object_new_string(placement_policy_to_string(g->policy)));
                if (g->policy == POLICY_AUTO)
                        json_object_object_add(jg, "auto_mode",
                                               json_object_new_string(adaptive_mode_to_string(g->auto_mode)));
                json_object_object_add(jg, "restriction", json_cpulist(g->restriction));
                for (size_t v = 0; v < g->n_vcpus; v++)
                        json_object_array_add(jv, rows_to_json(vcpu_rows, &g->vcpus[v]));
                json_object_object_add(jg, "vcpus", jv);
                json_object_array_add(jguests, jg);
        }
        json_object_object_add(root, "usable", json_cpulist(usable));
        json_object_object_add(root, "params", rows_to_json(param_rows, params));
        json_object_object_add(root, "guests", jguests);
        return root;
}

/* Readers: a missing key keeps the default; a key of the wrong type is an error. */
struct reader {
        char *err;
        size_t errlen;
        int r;
};

static json_object *field(struct reader *rd, json_object *o, const char *key, json_type type)
{
        json_object *v = NULL;

        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return NULL;
        bool ok = json_object_is_type(v, type) ||
                  (type == json_type_double && json_object_is_type(v, json_type_int));
        if (!ok && rd->r == 0) {
                snprintf(rd->err, rd->errlen, "\"%s\": expected %s", key, json_type_to_name(type));
                rd->r = -EINVAL;
        }
        return ok ? v : NULL;
}

/* A cpulist, or NULL when absent or null; -ENOMEM / -EINVAL in rd->r. */
static hwloc_bitmap_t read_cpus(struct reader *rd, json_object *o, const char *key)
{
        json_object *v = field(rd, o, key, json_type_string);
        if (!v)
                return NULL;
        hwloc_bitmap_t b = hwloc_bitmap_alloc();
        if (!b) {
                rd->r = -ENOMEM;
                return NULL;
        }
        char why[128];
        if (cpulist_parse(json_object_get_string(v), b, why, sizeof(why)) < 0) {
                if (rd->r == 0) {
                        snprintf(rd->err, rd->errlen, "\"%s\": %s", key, why);
                        rd->r = -EINVAL;
                }
                hwloc_bitmap_free(b);
                return NULL;
        }
        return b;
}

static void read_rows(struct reader *rd, json_object *o, const struct field_row *rows, void *base)
{
        static const json_type types[] = {
                [F_DOUBLE] = json_type_double, [F_U64] = json_type_int, [F_UNSIGNED] = json_type_int,
                [F_BOOL] = json_type_boolean, [F_CPUS] = json_type_string,
        };

        for (const struct field_row *f = rows; f->key && rd->r == 0; f++) {
                char *p = (char *)base + f->offset;
                if (f->kind == F_CPUS) {
                        *(hwloc_const_bitmap_t *)p = read_cpus(rd, o, f->key);
                        continue;
                }
                json_object *v = field(rd, o, f->key, types[f->kind]);
                if (!v)
                        continue;
                switch (f->kind) {
                case F_DOUBLE: *(double *)p = json_object_get_double(v); break;
                case F_U64: *(uint64_t *)p = json_object_get_uint64(v); break;
                case F_UNSIGNED: *(unsigned *)p = (unsigned)json_object_get_uint64(v); break;
                case F_BOOL: *(bool *)p = json_object_get_boolean(v); break;
                case F_CPUS: break;
                }
        }
}

static int read_guest(struct reader *rd, json_object *o, struct guest_input *g)
{
        json_object *name = field(rd, o, "name", json_type_string);
        json_object *policy = field(rd, o, "policy", json_type_string);
        json_object *vcpus = field(rd, o, "vcpus", json_type_array);

        g->name = strdup(name ? json_object_get_string(name) : "");
        if (!g->name)
                return -ENOMEM;
        int p = policy ? placement_policy_from_string(json_object_get_string(policy)) : POLICY_SPREAD;
        if (p < 0) {
                snprintf(rd->err, rd->errlen, "guest %s: unknown policy", g->name);
                return -EINVAL;
        }
        g->policy = (enum placement_policy)p;
        json_object *mode = NULL;
        if (json_object_object_get_ex(o, "auto_mode", &mode) && mode) {
                const char *ms = json_object_get_string(mode);
                int found = -1;
                for (int k = 0; k < _ADAPTIVE_MODE_MAX; k++)
                        if (ms && strcmp(ms, adaptive_mode_to_string((enum adaptive_mode)k)) == 0)
                                found = k;
                if (found < 0) {
                        snprintf(rd->err, rd->errlen, "guest %s: unknown auto_mode", g->name);
                        return -EINVAL;
                }
                g->auto_mode = (enum adaptive_mode)found;
        }
        g->restriction = read_cpus(rd, o, "restriction");
        size_t n = vcpus ? json_object_array_length(vcpus) : 0;
        struct vcpu_input *v = calloc(n ?: 1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        g->vcpus = v;
        g->n_vcpus = n;
        for (size_t k = 0; k < n && rd->r == 0; k++)
                read_rows(rd, json_object_array_get_idx(vcpus, k), vcpu_rows, &v[k]);
        return rd->r;
}

int plan_inputs_from_json(json_object *o, struct plan_input_set *out, char *err, size_t errlen)
{
        struct reader rd = { .err = err, .errlen = errlen };
        json_object *inputs = NULL, *params, *guests;

        memset(out, 0, sizeof(*out));
        plan_params_default(&out->params);
        /* The daemon's whole `plan` reply, or its "inputs" alone. */
        if (json_object_object_get_ex(o, "inputs", &inputs))
                o = inputs;
        if (!json_object_is_type(o, json_type_object)) {
                snprintf(err, errlen, "expected a JSON object with \"guests\"");
                return -EINVAL;
        }
        out->usable = read_cpus(&rd, o, "usable");
        if ((params = field(&rd, o, "params", json_type_object)))
                read_rows(&rd, params, param_rows, &out->params);
        guests = field(&rd, o, "guests", json_type_array);
        if (!guests && rd.r == 0) {
                snprintf(err, errlen, "no \"guests\" array");
                return -EINVAL;
        }
        size_t n = guests ? json_object_array_length(guests) : 0;
        out->guests = calloc(n ?: 1, sizeof(*out->guests));
        if (!out->guests)
                return -ENOMEM;
        for (size_t i = 0; i < n && rd.r == 0; i++) {
                out->guests[i].id = (unsigned)i;
                out->n_guests++;
                int r = read_guest(&rd, json_object_array_get_idx(guests, i), &out->guests[i]);
                if (r < 0)
                        return r;
        }
        return rd.r;
}

void plan_input_set_done(struct plan_input_set *s)
{
        for (size_t i = 0; i < s->n_guests; i++) {
                struct guest_input *g = &s->guests[i];
                for (size_t k = 0; g->vcpus && k < g->n_vcpus; k++)
                        if (g->vcpus[k].current)
                                hwloc_bitmap_free((hwloc_bitmap_t)g->vcpus[k].current);
                if (g->restriction)
                        hwloc_bitmap_free((hwloc_bitmap_t)g->restriction);
                free((char *)g->name);
                free((struct vcpu_input *)g->vcpus);
        }
        free(s->guests);
        if (s->usable)
                hwloc_bitmap_free(s->usable);
        memset(s, 0, sizeof(*s));
}

json_object *json_utc_time(time_t t)
{
        char buf[32];
        struct tm tm;
        if (!t || !gmtime_r(&t, &tm))
                return NULL;
        strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
        return json_object_new_string(buf);
}
