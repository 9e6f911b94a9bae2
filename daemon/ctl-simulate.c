/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * `vcpuspreadctl simulate`: run the placement engine on a topology and a
 * list of made-up guests, and print what it decides.  No VM, no daemon.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpulist.h"
#include "ctl.h"
#include "macro.h"
#include "placement.h"
#include "plan-json.h"
#include "topology.h"

/* Guests from the command line; owns names, vCPU arrays. */
struct sim_guests {
        size_t n;
        struct guest_input *guests;
};

static void sim_guests_done(struct sim_guests *s)
{
        for (size_t i = 0; i < s->n; i++) {
                free((char *)s->guests[i].name);
                free((struct vcpu_input *)s->guests[i].vcpus);
        }
        free(s->guests);
}

/* Simulated guests of more vCPUs than this are certainly a typo. */
#define SIM_MAX_VCPUS 4096u

static int parse_one_guest(const char *item, enum placement_policy policy, struct guest_input *g,
                           char *err, size_t errlen)
{
        const char *colon = strrchr(item, ':');
        char *end;

        if (!colon || colon == item) {
                snprintf(err, errlen, "guest '%s': expected NAME:VCPUS[@LOAD]", item);
                return -EINVAL;
        }
        errno = 0;
        unsigned long vcpus = strtoul(colon + 1, &end, 10);
        if (errno || end == colon + 1 || vcpus == 0 || vcpus > SIM_MAX_VCPUS || (*end && *end != '@')) {
                snprintf(err, errlen, "guest '%s': VCPUS must be a number from 1 to %u", item, SIM_MAX_VCPUS);
                return -EINVAL;
        }
        double load = 1.0;
        if (*end == '@') {
                const char *l = end + 1;
                errno = 0;
                load = strtod(l, &end);
                if (errno || end == l || *end || !(load >= 0.0 && load <= 1.0)) {
                        snprintf(err, errlen, "guest '%s': LOAD must be a number from 0 to 1", item);
                        return -EINVAL;
                }
        }

        struct vcpu_input *v = calloc(vcpus, sizeof(*v));
        char *name = strndup(item, (size_t)(colon - item));
        if (!v || !name) {
                free(v);
                free(name);
                return -ENOMEM;
        }
        for (unsigned i = 0; i < vcpus; i++)
                v[i] = (struct vcpu_input){ .vcpu = i, .load = load, .current = NULL };
        *g = (struct guest_input){ .name = name, .policy = policy, .n_vcpus = vcpus, .vcpus = v };
        return 0;
}

static int parse_domains(const char *spec, enum placement_policy policy, struct sim_guests *out,
                         char *err, size_t errlen)
{
        _cleanup_free_ char *copy = strdup(spec);
        char *save = NULL;
        int r;

        if (!copy)
                return -ENOMEM;
        for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
                struct guest_input *n = realloc(out->guests, (out->n + 1) * sizeof(*n));
                if (!n)
                        return -ENOMEM;
                out->guests = n;
                r = parse_one_guest(item, policy, &out->guests[out->n], err, errlen);
                if (r < 0)
                        return r;
                out->guests[out->n].id = (unsigned)out->n;
                out->n++;
        }
        if (out->n == 0) {
                snprintf(err, errlen, "--domains lists no guest: expected e.g. 'web1:4,web2:4,db:8@0.9'");
                return -EINVAL;
        }
        return 0;
}

/* --inputs: the engine's inputs as the daemon's `plan --json` shows them. */
static int read_inputs(const char *path, struct plan_input_set *set, char *err, size_t errlen)
{
        json_object *o = strcmp(path, "-") == 0 ? json_object_from_fd(STDIN_FILENO) : json_object_from_file(path);
        int r;

        if (!o) {
                snprintf(err, errlen, "%s: %s", path, json_util_get_last_err() ?: "not JSON");
                return -EINVAL;
        }
        r = plan_inputs_from_json(o, set, err, errlen);
        json_object_put(o);
        return r;
}

static void simulate_help(void)
{
        printf("Usage: vcpuspreadctl simulate --domains LIST [OPTIONS]\n"
               "\n"
               "       vcpuspreadctl simulate --inputs FILE [--topology SPEC] [--json|--map]\n"
               "\n"
               "Run the placement engine on a topology and made-up guests; change nothing.\n"
               "\n"
               "  --domains LIST     guests as NAME:VCPUS[@LOAD],... (LOAD per vCPU in [0,1], default 1)\n"
               "  --inputs FILE      guests, usable CPUs and parameters as the daemon's\n"
               "                     'vcpuspreadctl plan --json' shows them (- for stdin)\n"
               "  --topology SPEC    host (default), FILE.xml (lstopo export) or an hwloc\n"
               "                     synthetic description such as 'pack:2 numa:2 l3:2 core:8 pu:2'\n"
               "  --reserved LIST    host CPUs never given to vCPUs, e.g. 0-1\n"
               "  --policy POLICY    spread (default) or spread-cores\n"
               "  --lane-width N     CPUs per vCPU mask: auto (default) or a number (1 = pin to one CPU)\n"
               "  --json             print one JSON object\n"
               "  --map              draw the plan as vcpuspreadctl map does\n"
               "  -h, --help         show this help\n"
               "\n"
               "Exit status: 0 all checks pass, 1 a check fails, 2 bad arguments.\n");
}

int ctl_simulate(int argc, char **argv)
{
        enum { ARG_DOMAINS = 0x100, ARG_INPUTS, ARG_TOPOLOGY, ARG_RESERVED, ARG_POLICY, ARG_JSON, ARG_LANE, ARG_MAP };
        static const struct option options[] = {
                { "domains", required_argument, NULL, ARG_DOMAINS },
                { "inputs", required_argument, NULL, ARG_INPUTS },
                { "topology", required_argument, NULL, ARG_TOPOLOGY },
                { "reserved", required_argument, NULL, ARG_RESERVED },
                { "policy", required_argument, NULL, ARG_POLICY },
                { "lane-width", required_argument, NULL, ARG_LANE },
                { "json", no_argument, NULL, ARG_JSON },
                { "map", no_argument, NULL, ARG_MAP },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        const char *domains = NULL, *inputs = NULL, *topo_spec = "host", *reserved_spec = NULL;
        enum placement_policy policy = POLICY_SPREAD;
        bool json = false, map = false, lane_given = false;
        struct plan_params params;
        char err[512];
        int c, r;

        plan_params_default(&params);
        optind = 1;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_DOMAINS: domains = optarg; break;
                case ARG_INPUTS: inputs = optarg; break;
                case ARG_TOPOLOGY: topo_spec = optarg; break;
                case ARG_RESERVED: reserved_spec = optarg; break;
                case ARG_JSON: json = true; break;
                case ARG_MAP: map = true; break;
                case ARG_POLICY:
                        r = placement_policy_from_string(optarg);
                        if (r < 0 || r == POLICY_IGNORE)
                                return ctl_usage_error("--policy %s: expected spread or spread-cores", optarg);
                        policy = (enum placement_policy)r;
                        break;
                case ARG_LANE:
                        lane_given = true;
                        if (strcmp(optarg, "auto") == 0)
                                params.lane_width = 0;
                        else {
                                char *end;
                                errno = 0;
                                unsigned long w = strtoul(optarg, &end, 10);
                                if (errno || end == optarg || *end || w == 0 || w > CPULIST_MAX_CPU + 1)
                                        return ctl_usage_error("--lane-width %s: expected auto or a number of CPUs", optarg);
                                params.lane_width = (unsigned)w;
                        }
                        break;
                case 'h': simulate_help(); return 0;
                default: return CTL_EXIT_USAGE;  /* getopt printed why */
                }
        }
        if (optind < argc)
                return ctl_usage_error("simulate: unexpected argument '%s'", argv[optind]);
        if (inputs && (domains || reserved_spec || lane_given || policy != POLICY_SPREAD))
                return ctl_usage_error("simulate: --inputs carries the guests and parameters; "
                                       "--domains, --reserved, --policy and --lane-width do not go with it");
        if (!domains && !inputs)
                return ctl_usage_error("simulate: --domains is required, e.g. --domains 'web1:4,web2:4'");

        _cleanup_bitmap_ hwloc_bitmap_t reserved = hwloc_bitmap_alloc();
        _cleanup_bitmap_ hwloc_bitmap_t usable = hwloc_bitmap_alloc();
        if (!reserved || !usable)
                return ctl_error(-ENOMEM, "out of memory");
        if (reserved_spec && cpulist_parse(reserved_spec, reserved, err, sizeof(err)) < 0)
                return ctl_usage_error("--reserved %s: %s", reserved_spec, err);

        _cleanup_(sim_guests_done) struct sim_guests sim = {};
        _cleanup_(plan_input_set_done) struct plan_input_set set = {};
        r = inputs ? read_inputs(inputs, &set, err, sizeof(err)) : parse_domains(domains, policy, &sim, err, sizeof(err));
        if (r == -ENOMEM)
                return ctl_error(r, "out of memory");
        if (r < 0)
                return ctl_usage_error("%s: %s", inputs ? "--inputs" : "--domains", err);
        const struct guest_input *guests = inputs ? set.guests : sim.guests;
        size_t n_guests = inputs ? set.n_guests : sim.n;
        if (inputs)
                params = set.params;

        _cleanup_topology_ struct topology *topo = NULL;
        r = topology_load_spec(topo_spec, &topo, err, sizeof(err));
        if (r < 0)
                return ctl_usage_error("--topology: %s", err);
        if (topology_usable(topo, reserved, usable) < 0)
                return ctl_usage_error("--reserved %s leaves no usable CPU", reserved_spec);
        if (set.usable)
                hwloc_bitmap_copy(usable, set.usable);

        struct plan plan;
        r = placement_plan(topo, usable, guests, n_guests, &params, &plan);
        if (r < 0)
                return ctl_error(r, "planning failed: %s", strerror(-r));

        struct plan_checks checks;
        placement_check(topo, usable, guests, n_guests, &plan, &checks);
        bool ok = checks.anti_affinity && checks.smt && checks.locality && checks.balance;

        if (json || map) {
                json_object *o = plan_to_json(topo, usable, guests, n_guests, &plan, &checks);
                if (o)
                        json_object_object_add(o, "inputs", plan_inputs_to_json(usable, guests, n_guests, &params));
                if (!o) {
                        plan_done(&plan);
                        return ctl_error(-ENOMEM, "out of memory");
                }
                if (map)
                        ctl_map_render(o, isatty(STDOUT_FILENO));
                else
                        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
                json_object_put(o);
        } else {
                plan_print_text(stdout, topo, usable, guests, n_guests, &plan, &checks);
        }
        plan_done(&plan);
        return ok ? 0 : 1;
}
