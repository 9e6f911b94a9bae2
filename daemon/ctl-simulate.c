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

#include "adaptive.h"
#include "config-value.h"
#include "cpulist.h"
#include "defaults.h"
#include "ctl.h"
#include "macro.h"
#include "placement.h"
#include "plan-json.h"
#include "topology.h"

/* --guest: the signals of a steady window, per vCPU (lib/adaptive.h). */
struct sim_signals {
        bool given;             /* a --guest guest: Policy=auto, judged by adaptive_step() */
        double load, wait;      /* CPU use and run-queue wait per vCPU */
        double stacked;         /* stacked / runnable samples */
        double runnable;        /* runnable / all samples */
        double voluntary, involuntary;  /* switches per vCPU-second */
        /* The outcome. */
        struct adaptive_decision decision;
        bool decided;
        char verdict[512];      /* the window's "not a candidate: ..." from adaptive_step() */
};

/* Guests from the command line; owns names, vCPU arrays. */
struct sim_guests {
        size_t n;
        struct guest_input *guests;
        struct sim_signals *signals;    /* parallel to guests */
};

static void sim_guests_done(struct sim_guests *s)
{
        for (size_t i = 0; i < s->n; i++) {
                free((char *)s->guests[i].name);
                free((struct vcpu_input *)s->guests[i].vcpus);
        }
        free(s->guests);
        free(s->signals);
}

static int sim_guests_grow(struct sim_guests *s)
{
        struct guest_input *n = realloc(s->guests, (s->n + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        s->guests = n;
        struct sim_signals *g = realloc(s->signals, (s->n + 1) * sizeof(*g));
        if (!g)
                return -ENOMEM;
        s->signals = g;
        s->signals[s->n] = (struct sim_signals){};
        return 0;
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
                if (sim_guests_grow(out) < 0)
                        return -ENOMEM;
                r = parse_one_guest(item, policy, &out->guests[out->n], err, errlen);
                if (r < 0)
                        return r;
                out->guests[out->n].id = (unsigned)out->n;
                out->n++;
        }
        if (out->n == 0 && policy != POLICY_AUTO) {
                snprintf(err, errlen, "--domains lists no guest: expected e.g. 'web1:4,web2:4,db:8@0.9'");
                return -EINVAL;
        }
        return 0;
}

static int parse_share(const char *key, const char *v, double max, double *out, char *err, size_t errlen)
{
        char *end;
        errno = 0;
        double x = strtod(v, &end);
        if (errno || end == v || *end || !(x >= 0 && x <= max)) {
                snprintf(err, errlen, "%s=%s: expected a number from 0 to %g", key, v, max);
                return -EINVAL;
        }
        *out = x;
        return 0;
}

/* --guest NAME:VCPUS[@LOAD][,stacked=S,vol=V,invol=I,runnable=R,wait=W] */
static int parse_signal_guest(const char *spec, struct sim_guests *out, char *err, size_t errlen)
{
        _cleanup_free_ char *copy = strdup(spec);
        char *save = NULL;
        int r;

        if (!copy)
                return -ENOMEM;
        char *head = strtok_r(copy, ",", &save);
        if (!head) {
                snprintf(err, errlen, "--guest '%s': expected NAME:VCPUS[@LOAD][,stacked=S,...]", spec);
                return -EINVAL;
        }
        if (sim_guests_grow(out) < 0)
                return -ENOMEM;
        r = parse_one_guest(head, POLICY_AUTO, &out->guests[out->n], err, errlen);
        if (r < 0)
                return r;
        out->guests[out->n].id = (unsigned)out->n;
        struct sim_signals *s = &out->signals[out->n];
        out->n++;
        s->given = true;
        s->load = out->guests[out->n - 1].vcpus[0].load;
        s->wait = 1 - s->load;  /* runnable all the time: running or waiting */
        s->runnable = 1;
        for (char *kv = strtok_r(NULL, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
                char *eq = strchr(kv, '=');
                if (!eq) {
                        snprintf(err, errlen, "--guest '%s': '%s' is not KEY=VALUE", spec, kv);
                        return -EINVAL;
                }
                *eq = '\0';
                const char *v = eq + 1;
                if (strcmp(kv, "stacked") == 0)
                        r = parse_share(kv, v, 1, &s->stacked, err, errlen);
                else if (strcmp(kv, "runnable") == 0)
                        r = parse_share(kv, v, 1, &s->runnable, err, errlen);
                else if (strcmp(kv, "wait") == 0)
                        r = parse_share(kv, v, 1, &s->wait, err, errlen);
                else if (strcmp(kv, "vol") == 0)
                        r = parse_share(kv, v, 1e7, &s->voluntary, err, errlen);
                else if (strcmp(kv, "invol") == 0)
                        r = parse_share(kv, v, 1e7, &s->involuntary, err, errlen);
                else {
                        snprintf(err, errlen, "--guest '%s': unknown key '%s' (stacked, vol, invol, runnable, wait)",
                                 spec, kv);
                        return -EINVAL;
                }
                if (r < 0)
                        return r;
        }
        if (s->load + s->wait > 1 + 1e-9) {
                snprintf(err, errlen, "--guest '%s': LOAD + wait exceed 1", spec);
                return -EINVAL;
        }
        return 0;
}

static bool sim_busy(const struct sim_signals *s, const struct adaptive_params *p)
{
        return s->load + s->wait >= p->busy_min && s->wait >= p->wait_min;
}

/*
 * Policy=auto on the --guest guests: each one's signals as a steady window
 * of 1-second intervals fed to adaptive_step() until the window closes, so
 * the mode is the daemon's decision for a guest that has looked like this
 * for AutoWindowSec=.  Co-scheduling is there when another busy guest of 2+
 * vCPUs could take turns with it (the daemon's rule).
 */
static int sim_decide(struct sim_guests *sim, hwloc_const_bitmap_t usable, double window_s)
{
        struct adaptive_params params;
        double host_runnable = 0;
        int n_cpus = hwloc_bitmap_weight(usable);

        adaptive_params_default(&params);
        adaptive_params_set_window(&params, window_s);
        for (size_t i = 0; i < sim->n; i++) {
                const struct sim_signals *s = &sim->signals[i];
                host_runnable += (double)sim->guests[i].n_vcpus * (s->given ? s->runnable : sim->guests[i].vcpus[0].load);
        }
        for (size_t i = 0; i < sim->n; i++) {
                struct sim_signals *s = &sim->signals[i];
                struct guest_input *g = &sim->guests[i];
                if (!s->given)
                        continue;
                struct adaptive_params p = params;
                for (size_t k = 0; k < sim->n; k++)
                        if (k != i && sim->signals[k].given && sim->guests[k].n_vcpus >= 2 &&
                            sim_busy(&sim->signals[k], &params))
                                p.cosched_available = true;
                p.cosched_available = p.cosched_available && g->n_vcpus >= 2;
                struct adaptive_guest ag;
                adaptive_guest_init(&ag);
                _cleanup_free_ struct adaptive_vcpu_sample *vs = calloc(g->n_vcpus, sizeof(*vs));
                if (!vs)
                        return -ENOMEM;
                for (size_t k = 0; k < g->n_vcpus; k++)
                        vs[k] = (struct adaptive_vcpu_sample){ .util = s->load, .wait = s->wait,
                                                               .voluntary_hz = s->voluntary,
                                                               .involuntary_hz = s->involuntary };
                unsigned samples = (unsigned)g->n_vcpus * 10;   /* 10 Hz ticks */
                unsigned runnable = (unsigned)lround(samples * s->runnable);
                unsigned stacked = (unsigned)lround(runnable * s->stacked);
                unsigned steps = (unsigned)ceil(window_s) + 1;
                for (unsigned t = 1; t <= steps && !s->decided; t++) {
                        struct adaptive_guest_sample gs = {
                                .now_ns = (uint64_t)t * 1000000000ULL, .dt_s = 1, .vcpus = vs,
                                .n_vcpus = g->n_vcpus, .samples = samples, .runnable_samples = runnable,
                                .stacked_samples = stacked, .host_runnable = host_runnable, .allowed = usable,
                        };
                        struct adaptive_input in;
                        int r = adaptive_input_build(&gs, &p, &in);
                        if (r < 0)
                                return r;
                        r = adaptive_step(&ag, &p, &in, &s->decision);
                        if (r < 0)
                                return r;
                        s->decided = s->decision.event != ADAPTIVE_EVENT_NONE;
                        const char *why = s->decision.window_closed ? strstr(s->decision.text, "not a candidate: ") : NULL;
                        if (why)
                                snprintf(s->verdict, sizeof(s->verdict), "%s", why + strlen("not a candidate: "));
                }
                g->auto_mode = ag.mode;
        }
        (void)n_cpus;
        return 0;
}

/* Why a --guest guest stays in kernel mode: the first rule it fails, as the
 * daemon says it (adaptive_why_not() on the window's figures). */
static void sim_why_not(const struct sim_signals *s, const struct guest_input *g, const struct adaptive_params *p,
                        char *buf, size_t len)
{
        const struct adaptive_figures f = {
                .seconds = p->window_s, .cpu_share = s->load, .busy = s->load + s->wait, .wait = s->wait,
                .stacked = s->stacked, .voluntary_hz = s->voluntary, .involuntary_hz = s->involuntary,
                .samples_known = true, .runnable_share = s->runnable, .stacked_all = s->stacked * s->runnable,
                .runnable_samples = (unsigned)lround(g->n_vcpus * 10 * p->window_s * s->runnable),
        };

        if (s->verdict[0])
                snprintf(buf, len, "%s", s->verdict);
        else if (!adaptive_why_not(&f, (unsigned)g->n_vcpus, p, buf, len))
                snprintf(buf, len, "a candidate, but held off or within the dwell");
}

static void sim_print_modes(FILE *f, const struct sim_guests *sim, double window_s)
{
        struct adaptive_params p;

        adaptive_params_default(&p);
        adaptive_params_set_window(&p, window_s);
        fprintf(f, "Policy=auto over a steady %.0f s window:\n", window_s);
        for (size_t i = 0; i < sim->n; i++) {
                const struct sim_signals *s = &sim->signals[i];
                const struct guest_input *g = &sim->guests[i];
                if (!s->given)
                        continue;
                if (s->decided && s->decision.event == ADAPTIVE_EVENT_INTERVENE) {
                        fprintf(f, "  %s: mode %s (%s%s)\n    %s\n", g->name, adaptive_mode_to_string(g->auto_mode),
                                s->decision.reason,
                                g->auto_mode == ADAPTIVE_SPREAD ? "; no other busy guest to co-schedule with" : "",
                                s->decision.text);
                } else {
                        char why[512];
                        sim_why_not(s, g, &p, why, sizeof(why));
                        fprintf(f, "  %s: mode %s (%s)\n", g->name, adaptive_mode_to_string(g->auto_mode), why);
                }
        }
        fputc('\n', f);
}

static json_object *sim_modes_json(const struct sim_guests *sim)
{
        json_object *a = json_object_new_array();

        for (size_t i = 0; i < sim->n; i++) {
                const struct sim_signals *s = &sim->signals[i];
                if (!s->given)
                        continue;
                struct adaptive_params p;
                adaptive_params_default(&p);
                json_object *o = json_object_new_object();
                json_object_object_add(o, "name", json_object_new_string(sim->guests[i].name));
                json_object_object_add(o, "mode", json_object_new_string(adaptive_mode_to_string(sim->guests[i].auto_mode)));
                if (s->decided && s->decision.event == ADAPTIVE_EVENT_INTERVENE) {
                        json_object_object_add(o, "reason", json_object_new_string(s->decision.reason));
                        json_object_object_add(o, "text", json_object_new_string(s->decision.text));
                } else {
                        char why[512];
                        sim_why_not(s, &sim->guests[i], &p, why, sizeof(why));
                        json_object_object_add(o, "reason", json_object_new_string(why));
                }
                json_object_array_add(a, o);
        }
        return a;
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
               "  --guest SPEC       a Policy=auto guest with its signals (repeatable):\n"
               "                     NAME:VCPUS[@LOAD][,stacked=S][,vol=V][,invol=I][,runnable=R][,wait=W]\n"
               "                     (per vCPU: stacked share of runnable samples, voluntary and\n"
               "                     involuntary switches/s, runnable share, wait share, default 1-LOAD);\n"
               "                     prints the mode Policy=auto decides after a steady window\n"
               "  --window SECONDS   Policy=auto's window for --guest (default AutoWindowSec=, " DEFAULT_AUTO_WINDOW ")\n"
               "  --inputs FILE      guests, usable CPUs and parameters as the daemon's\n"
               "                     'vcpuspreadctl plan --json' shows them (- for stdin)\n"
               "  --topology SPEC    host (default), FILE.xml (lstopo export) or an hwloc\n"
               "                     synthetic description such as 'pack:2 numa:2 l3:2 core:8 pu:2'\n"
               "  --reserved LIST    host CPUs never given to vCPUs, e.g. 0-1\n"
               "  --policy POLICY    spread (default), spread-cores or auto (guests of --domains)\n"
               "  --lane-width N     CPUs per vCPU mask: auto (default) or a number (1 = pin to one CPU)\n"
               "  --json             print one JSON object\n"
               "  --map              draw the plan as vcpuspreadctl map does\n"
               "  -h, --help         show this help\n"
               "\n"
               "Exit status: 0 all checks pass, 1 a check fails, 2 bad arguments.\n");
}

int ctl_simulate(int argc, char **argv)
{
        enum { ARG_DOMAINS = 0x100, ARG_GUEST, ARG_WINDOW, ARG_INPUTS, ARG_TOPOLOGY, ARG_RESERVED, ARG_POLICY, ARG_JSON, ARG_LANE, ARG_MAP };
        static const struct option options[] = {
                { "domains", required_argument, NULL, ARG_DOMAINS },
                { "guest", required_argument, NULL, ARG_GUEST },
                { "window", required_argument, NULL, ARG_WINDOW },
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
        const char *guest_specs[256];
        size_t n_guest_specs = 0;
        uint64_t window_usec = 10 * 1000000ULL;
        (void)config_parse_duration(DEFAULT_AUTO_WINDOW, &window_usec);
        double window_s = (double)window_usec / 1e6;

        plan_params_default(&params);
        optind = 1;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_DOMAINS: domains = optarg; break;
                case ARG_GUEST:
                        if (n_guest_specs >= ELEMENTSOF(guest_specs))
                                return ctl_usage_error("--guest: at most %zu", ELEMENTSOF(guest_specs));
                        guest_specs[n_guest_specs++] = optarg;
                        break;
                case ARG_WINDOW: {
                        char *end;
                        errno = 0;
                        window_s = strtod(optarg, &end);
                        if (errno || end == optarg || (*end && strcmp(end, "s") != 0) || !(window_s >= 1 && window_s <= 3600))
                                return ctl_usage_error("--window %s: expected seconds from 1 to 3600", optarg);
                        break;
                }
                case ARG_INPUTS: inputs = optarg; break;
                case ARG_TOPOLOGY: topo_spec = optarg; break;
                case ARG_RESERVED: reserved_spec = optarg; break;
                case ARG_JSON: json = true; break;
                case ARG_MAP: map = true; break;
                case ARG_POLICY:
                        r = placement_policy_from_string(optarg);
                        if (r < 0 || r == POLICY_IGNORE)
                                return ctl_usage_error("--policy %s: expected spread, spread-cores or auto", optarg);
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
        if (inputs && (domains || n_guest_specs || reserved_spec || lane_given || policy != POLICY_SPREAD))
                return ctl_usage_error("simulate: --inputs carries the guests and parameters; "
                                       "--domains, --reserved, --policy and --lane-width do not go with it");
        if (!domains && !inputs && !n_guest_specs)
                return ctl_usage_error("simulate: --domains is required, e.g. --domains 'web1:4,web2:4'");

        _cleanup_bitmap_ hwloc_bitmap_t reserved = hwloc_bitmap_alloc();
        _cleanup_bitmap_ hwloc_bitmap_t usable = hwloc_bitmap_alloc();
        if (!reserved || !usable)
                return ctl_error(-ENOMEM, "out of memory");
        if (reserved_spec && cpulist_parse(reserved_spec, reserved, err, sizeof(err)) < 0)
                return ctl_usage_error("--reserved %s: %s", reserved_spec, err);

        _cleanup_(sim_guests_done) struct sim_guests sim = {};
        _cleanup_(plan_input_set_done) struct plan_input_set set = {};
        r = inputs ? read_inputs(inputs, &set, err, sizeof(err))
            : domains ? parse_domains(domains, policy, &sim, err, sizeof(err)) : 0;
        if (r == -ENOMEM)
                return ctl_error(r, "out of memory");
        if (r < 0)
                return ctl_usage_error("%s: %s", inputs ? "--inputs" : "--domains", err);
        for (size_t i = 0; i < n_guest_specs; i++) {
                r = parse_signal_guest(guest_specs[i], &sim, err, sizeof(err));
                if (r == -ENOMEM)
                        return ctl_error(r, "out of memory");
                if (r < 0)
                        return ctl_usage_error("--guest: %s", err);
        }
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
        if (n_guest_specs) {
                r = sim_decide(&sim, usable, window_s);
                if (r < 0)
                        return ctl_error(r, "Policy=auto on the --guest guests failed: %s", strerror(-r));
        }

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
                if (o && n_guest_specs)
                        json_object_object_add(o, "auto", sim_modes_json(&sim));
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
                if (n_guest_specs)
                        sim_print_modes(stdout, &sim, window_s);
                plan_print_text(stdout, topo, usable, guests, n_guests, &plan, &checks);
        }
        plan_done(&plan);
        return ok ? 0 : 1;
}
