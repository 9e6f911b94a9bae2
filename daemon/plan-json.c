/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "plan-json.h"

#include <math.h>
#include <stdlib.h>

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
                json_object_object_add(jv, "load", json_load(g->vcpus[v].load));
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

                fprintf(f, "%s (%s, %zu vCPU%s)%s%s\n", g->name, placement_policy_to_string(g->policy),
                        g->n_vcpus, g->n_vcpus == 1 ? "" : "s",
                        gp->overcommitted ? ": more vCPUs than CPUs, shared" : "",
                        gp->error ? ": ERROR no usable CPU in its restriction" : "");
                for (size_t v = 0; v < g->n_vcpus; v++) {
                        _cleanup_free_ char *cpus = cpulist_format(gp->vcpus[v].target);
                        enum place_reason why = gp->vcpus[v].reason;
                        fprintf(f, "  vcpu%-3u -> %-12s load %.2f", g->vcpus[v].vcpu, cpus ? cpus : "?",
                                g->vcpus[v].load);
                        if (why != PLACE_NONE)
                                fprintf(f, "  (%s)", place_reason_to_string(why));
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
