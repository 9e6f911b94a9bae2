/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vcpuspreadctl commands that talk to the running daemon over its control
 * socket: status, map, plan, reload.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <math.h>

#include <json-c/json.h>

#include "config-value.h"
#include "control.h"
#include "ctl.h"
#include "cpulist.h"
#include "macro.h"
#include "util.h"

/* The daemon answers at once; this only bounds a wedged daemon. */
#define CTL_TIMEOUT_MS 10000

/* @since_sec > 0: the request's window ("report --since"). */
static int ctl_request(const char *path, const char *command, double since_sec, json_object **reply)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd, r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return ctl_usage_error("--socket %s: path too long", path);
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return ctl_error(-errno, "cannot create a socket: %s", strerror(errno));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                r = errno;
                close(fd);
                if (r == ENOENT || r == ECONNREFUSED)
                        return ctl_error(-r, "vcpuspreadd is not running (nothing listens on %s); "
                                             "start it with 'systemctl start vcpuspreadd'", path);
                if (r == EACCES)
                        return ctl_error(-r, "permission denied on %s: run as root or as a member of "
                                             "ControlSocketGroup=", path);
                return ctl_error(-r, "cannot connect to %s: %s", path, strerror(r));
        }

        char req[256];
        int len = since_sec > 0 ? snprintf(req, sizeof(req), "{\"command\":\"%s\",\"since_sec\":%.3f}\n", command, since_sec)
                                : snprintf(req, sizeof(req), "{\"command\":\"%s\"}\n", command);
        if (write(fd, req, (size_t)len) != len) {
                r = errno;
                close(fd);
                return ctl_error(-r, "cannot send the request to %s: %s", path, strerror(r));
        }
        shutdown(fd, SHUT_WR);

        json_tokener *tok = json_tokener_new();
        json_object *obj = NULL;
        enum json_tokener_error jerr = json_tokener_continue;
        char buf[65536];
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                r = poll(&p, 1, CTL_TIMEOUT_MS);
                if (r == 0) {
                        json_tokener_free(tok);
                        close(fd);
                        return ctl_error(-ETIMEDOUT, "vcpuspreadd did not answer within %d s", CTL_TIMEOUT_MS / 1000);
                }
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                obj = json_tokener_parse_ex(tok, buf, (int)n);
                jerr = json_tokener_get_error(tok);
                if (jerr != json_tokener_continue)
                        break;
        }
        json_tokener_free(tok);
        close(fd);
        if (!obj || jerr != json_tokener_success) {
                json_object_put(obj);
                return ctl_error(-EBADMSG, "vcpuspreadd sent no valid reply on %s", path);
        }
        *reply = obj;
        return 0;
}

/* A string of the reply for printing: names come from guests and users, so
 * control characters are escaped (escape_text); kept in a small ring, valid
 * until 16 later calls. */
static const char *jstr(json_object *o, const char *key)
{
        static char *ring[16];
        static unsigned next;
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return NULL;
        free(ring[next % 16]);
        ring[next % 16] = escape_text(json_object_get_string(v), ESCAPE_BACKSLASH);
        return ring[next++ % 16] ?: "?";
}

static double jdouble(json_object *o, const char *key)
{
        json_object *v;
        return json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0;
}

static int jint(json_object *o, const char *key)
{
        json_object *v;
        return json_object_object_get_ex(o, key, &v) ? json_object_get_int(v) : -1;
}

static json_object *jarr(json_object *o, const char *key)
{
        json_object *v;
        return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_array) ? v : NULL;
}

/* Common option parsing: --socket PATH, --json, --since DURATION, --help. */
struct ctl_opts {
        const char *socket;
        bool json;
        double since_sec;       /* 0: the daemon's lifetime */
};

/* A subcommand that asks the daemon one thing (the table is at the end). */
struct ctl_command {
        const char *name;
        const char *request;    /* what is asked of the daemon */
        bool json;              /* --json prints the daemon's reply as it is */
        bool window;            /* --since DURATION */
        const char *summary;    /* the rest of --help */
        int (*render)(json_object *reply);
};

static void command_help(const struct ctl_command *c)
{
        printf("Usage: vcpuspreadctl %s%s%s [--socket PATH]\n\n%s\n"
               "%s%s"
               "  --socket PATH  the daemon's control socket (default $VCPUSPREAD_SOCKET, or\n"
               "                 " DEFAULT_CONTROL_SOCKET ")\n"
               "  -h, --help     show this help\n",
               c->name, c->window ? " [--since DURATION]" : "", c->json ? " [--json]" : "", c->summary,
               c->json ? "  --json         print the daemon's reply as one JSON object\n" : "",
               c->window ? "  --since DURATION  only the last DURATION (such as 30min or 2h; at most 6h,\n"
                           "                 in steps of 2 min); default: the daemon's lifetime\n" : "");
}

static int parse_ctl_opts(int argc, char **argv, const struct ctl_command *cmd, struct ctl_opts *o)
{
        enum { ARG_SOCKET = 0x100, ARG_JSON, ARG_SINCE };
        static const struct option options[] = {
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "json", no_argument, NULL, ARG_JSON },
                { "since", required_argument, NULL, ARG_SINCE },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        int c;

        o->socket = getenv("VCPUSPREAD_SOCKET") ?: DEFAULT_CONTROL_SOCKET;
        o->json = false;
        o->since_sec = 0;
        optind = 1;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_SOCKET: o->socket = optarg; break;
                case ARG_JSON:
                        if (!cmd->json)
                                return -ctl_usage_error("%s: --json is not supported", argv[0]);
                        o->json = true;
                        break;
                case ARG_SINCE: {
                        uint64_t usec;
                        if (!cmd->window)
                                return -ctl_usage_error("%s: --since is not supported", argv[0]);
                        if (config_parse_duration(optarg, &usec) < 0 || usec < 1000000)
                                return -ctl_usage_error("%s: --since %s: expected a duration such as 30min or 2h",
                                                        argv[0], optarg);
                        o->since_sec = (double)usec / 1e6;
                        break;
                }
                case 'h':
                        command_help(cmd);
                        return 1;
                default: return -CTL_EXIT_USAGE;
                }
        }
        if (optind < argc)
                return -ctl_usage_error("%s: unexpected argument '%s'", argv[0], argv[optind]);
        return 0;
}

/* Runs a request and handles the generic error paths; returns an exit code
 * >= 0 when done, or -1 to let the caller render *reply. */
static int run_request(int argc, char **argv, const struct ctl_command *cmd, json_object **reply,
                       struct ctl_opts *o)
{
        int r = parse_ctl_opts(argc, argv, cmd, o);
        if (r > 0)
                return CTL_EXIT_OK;
        if (r < 0)
                return CTL_EXIT_USAGE;
        r = ctl_request(o->socket, cmd->request, o->since_sec, reply);
        if (r != 0)
                return r;
        json_object *ok;
        if (!json_object_object_get_ex(*reply, "ok", &ok) || !json_object_get_boolean(ok)) {
                const char *e = jstr(*reply, "error");
                fprintf(stderr, "vcpuspreadctl: %s: %s\n", argv[0], e ? e : "request failed");
                json_object_put(*reply);
                return CTL_EXIT_FAILURE;
        }
        if (o->json) {
                puts(json_object_to_json_string_ext(*reply, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
                json_object_put(*reply);
                return CTL_EXIT_OK;
        }
        return -1;
}

/* ---- status ------------------------------------------------------------- */

static bool jknown(json_object *o, const char *key)
{
        json_object *v;
        return json_object_object_get_ex(o, key, &v) && !json_object_is_type(v, json_type_null);
}

static void print_guest(json_object *g)
{
        const char *reason = jstr(g, "reason");
        const char *restriction = jstr(g, "restriction");
        printf("%s  (%s, %s%s%s%s%s)\n", jstr(g, "name"), jstr(g, "policy"), jstr(g, "state"),
               reason ? ": " : "", reason ? reason : "", restriction ? ", CPUs " : "",
               restriction ? restriction : "");
        json_object *a = NULL;
        if (json_object_object_get_ex(g, "auto", &a) && a) {
                const char *since = jstr(a, "since");
                printf("  mode %s (%s%s%s), %s%s\n", jstr(a, "mode") ?: "?", jstr(a, "reason") ?: "?",
                       since ? " since " : "", since ? since : "", jstr(a, "phase") ?: "?",
                       json_object_get_boolean(json_object_object_get(a, "cosched")) ? ", co-scheduled" : "");
                if (jstr(a, "text"))
                        printf("    %s\n", jstr(a, "text"));
                if (jstr(a, "last_window"))
                        printf("    last %s\n", jstr(a, "last_window"));
                /* What the trial's CPU-share guards hold it to (vcpuspreadd.conf(5)). */
                json_object *l = NULL;
                if (json_object_object_get_ex(a, "last_interval", &l) && l && jknown(l, "fair_share")) {
                        printf("    last interval: cpu %.2f of a fair share of %.2f", jdouble(l, "cpu_share"),
                               jdouble(l, "fair_share"));
                        if (jknown(l, "others_fair") && jdouble(l, "others_fair") > 0)
                                printf("; the other guests on its CPUs %.2f of their %.2f", jdouble(l, "others_share"),
                                       jdouble(l, "others_fair"));
                        printf("\n");
                }
        }
        json_object *vcpus = jarr(g, "vcpus");
        for (size_t k = 0; vcpus && k < json_object_array_length(vcpus); k++) {
                json_object *v = json_object_array_get_idx(vcpus, k);
                const char *last = jstr(v, "last_reason");
                const char *when = jstr(v, "last_change");
                printf("  vcpu%-3d tid %-8d cpus %-10s load %4.2f  wait %6.1f ms", jint(v, "vcpu"), jint(v, "tid"),
                       jstr(v, "cpus") ?: "?", jdouble(v, "load"), jdouble(v, "wait_ms"));
                if (last)
                        printf("  last: %s at %s", last, when ? when : "?");
                putchar('\n');
                json_object *kvm = NULL;
                if (json_object_object_get_ex(v, "kvm", &kvm) && kvm &&
                    json_object_get_boolean(json_object_object_get(kvm, "rates_known")))
                        printf("          kvm: halt %.0f/s (halted %.0f%%), preemption reported %.0f/s, "
                               "directed yield %.0f/s (%.0f/s successful)\n",
                               jdouble(kvm, "halt_exits_per_s"), 100 * jdouble(kvm, "halt_wait_ratio"),
                               jdouble(kvm, "preemption_reported_per_s"), jdouble(kvm, "directed_yield_attempted_per_s"),
                               jdouble(kvm, "directed_yield_successful_per_s"));
        }
}

static int render_status(json_object *reply)
{
        json_object *d = NULL;
        json_object_object_get_ex(reply, "daemon", &d);
        if (json_object_get_boolean(json_object_object_get(d, "observe")))
                printf("*** OBSERVING (Mode=observe): vcpuspreadd decides and logs, and changes nothing. ***\n"
                       "*** The last decisions below were not applied; 'vcpuspreadctl report' sums them up. ***\n\n");
        printf("vcpuspreadd %s (pid %d), libvirt %s%s, %d move%s applied%s%s\n", jstr(d, "version"), jint(d, "pid"),
               jstr(d, "libvirt"), json_object_get_boolean(json_object_object_get(d, "observe")) ? ", observing" : "",
               jint(d, "moves"), jint(d, "moves") == 1 ? "" : "s", jstr(d, "last_change") ? "; last: " : "",
               jstr(d, "last_change") ?: "");
        printf("usable CPUs: %s\n\n", jstr(d, "usable_cpus") ?: "?");
        json_object *guests = jarr(reply, "guests");
        if (!guests || json_object_array_length(guests) == 0)
                printf("no running guests\n");
        for (size_t i = 0; guests && i < json_object_array_length(guests); i++)
                print_guest(json_object_array_get_idx(guests, i));
        return CTL_EXIT_OK;
}

/* ---- plan --------------------------------------------------------------- */

static int render_plan(json_object *reply)
{
        json_object *moves = jarr(reply, "moves");
        size_t n = moves ? json_object_array_length(moves) : 0;
        if (n == 0)
                printf("nothing to change: every managed guest's vCPUs are already apart and balanced\n");
        for (size_t k = 0; k < n; k++) {
                json_object *mv = json_object_array_get_idx(moves, k);
                printf("%s vcpu%d (tid %d): %s -> %s (%s)\n", jstr(mv, "guest"), jint(mv, "vcpu"), jint(mv, "tid"),
                       jstr(mv, "from") ?: "?", jstr(mv, "to") ?: "?", jstr(mv, "reason") ?: "?");
        }
        return CTL_EXIT_OK;
}

/* ---- reload ------------------------------------------------------------- */

static int render_reload(json_object *reply)
{
        printf("%s\n", jstr(reply, "message") ?: "configuration reloaded");
        return CTL_EXIT_OK;
}

/* ---- metrics ------------------------------------------------------------ */

/* The text is already in the exposition format (label values escaped as it
 * requires), so it is printed line by line: only control characters inside a
 * line are escaped, the newlines and backslashes of the format are kept. */
static int render_metrics(json_object *reply)
{
        json_object *v;
        if (!json_object_object_get_ex(reply, "text", &v) || !json_object_is_type(v, json_type_string))
                return ctl_error(-EBADMSG, "the daemon's reply has no metrics text");
        const char *text = json_object_get_string(v);
        while (*text) {
                size_t n = strcspn(text, "\n");
                _cleanup_free_ char *line = strndup(text, n);
                _cleanup_free_ char *safe = line ? escape_text(line, 0) : NULL;
                if (!safe)
                        return ctl_error(-ENOMEM, "out of memory");
                puts(safe);
                text += n + (text[n] == '\n');
        }
        return CTL_EXIT_OK;
}

/* ---- report ------------------------------------------------------------- */

static void print_share(double v, bool known)
{
        if (known)
                printf(" %6.1f%%", 100 * v);
        else
                printf(" %7s", "-");
}

static void format_seconds(char *buf, size_t len, double s)
{
        if (s >= 3600)
                snprintf(buf, len, "%.1fh", s / 3600);
        else if (s >= 60)
                snprintf(buf, len, "%.0fmin", s / 60);
        else
                snprintf(buf, len, "%.0fs", s);
}

static void print_seconds(double s)
{
        char buf[32];
        format_seconds(buf, sizeof(buf), s);
        printf(" %7s", buf);
}

static int render_report(json_object *reply)
{
        bool observe = json_object_get_boolean(json_object_object_get(reply, "observe"));
        bool lifetime = json_object_get_boolean(json_object_object_get(reply, "lifetime"));
        json_object *guests = jarr(reply, "guests");
        size_t n = guests ? json_object_array_length(guests) : 0;

        char span[32];
        format_seconds(span, sizeof(span), jdouble(reply, "window_sec"));
        printf("Over %s%s%s%s\n", lifetime ? "the daemon's lifetime (" : "the last ", span, lifetime ? ")" : "",
               observe ? "; OBSERVING: nothing was changed, WOULD counts what would have been" : "");
        printf("STACKED: runnable vCPU samples with a runnable sibling on the same host CPU; CHANCE: what an\n"
               "even random spread gives; BUSY, WAIT: per vCPU, running or waiting / waiting for a CPU;\n"
               "VOL/S: voluntary switches per vCPU-second; KERNEL/SPREAD/COSCHED: time in each mode.\n\n");
        if (n == 0) {
                printf("no guests seen\n");
                return CTL_EXIT_OK;
        }
        int w = 5;
        for (size_t i = 0; i < n; i++) {
                json_object *g = json_object_array_get_idx(guests, i);
                int l = (int)strlen(jstr(g, "name") ?: "?") + 7;
                if (l > w)
                        w = l < 48 ? l : 48;
        }
        printf("%-*s %5s %7s %7s %7s %7s %7s %7s %-8s %7s %7s %7s %6s %6s %6s\n", w, "GUEST", "VCPUS", "SEEN",
               "STACKED", "CHANCE", "BUSY", "WAIT", "VOL/S", "MODE", "KERNEL", "SPREAD", "COSCHED", "MOVES", "WOULD",
               "ERRORS");
        for (size_t i = 0; i < n; i++) {
                json_object *g = json_object_array_get_idx(guests, i);
                json_object *modes = NULL;
                bool running = json_object_get_boolean(json_object_object_get(g, "running"));
                char name[300];
                snprintf(name, sizeof(name), "%s%s", jstr(g, "name") ?: "?", running ? "" : " (gone)");
                printf("%-*s %5d", w, name, jint(g, "vcpus"));
                print_seconds(jdouble(g, "seconds"));
                print_share(jdouble(g, "stacked_share"), jknown(g, "stacked_share"));
                print_share(jdouble(g, "stacked_chance"), jknown(g, "stacked_chance"));
                print_share(jdouble(g, "busy"), jknown(g, "busy"));
                print_share(jdouble(g, "wait"), jknown(g, "wait"));
                if (jknown(g, "voluntary_hz"))
                        printf(" %7.1f", jdouble(g, "voluntary_hz"));
                else
                        printf(" %7s", "-");
                printf(" %-8s", jstr(g, "mode") ?: "?");
                json_object_object_get_ex(g, "mode_seconds", &modes);
                print_seconds(jdouble(modes, "kernel"));
                print_seconds(jdouble(modes, "spread"));
                print_seconds(jdouble(modes, "cosched"));
                printf(" %6d %6d %6d\n", jint(g, "moves"), jint(g, "observed_moves"), jint(g, "apply_errors"));
        }
        putchar('\n');
        for (size_t i = 0; i < n; i++) {
                json_object *g = json_object_array_get_idx(guests, i);
                const char *last = jstr(g, "last_decision");
                const char *reason = jstr(g, "mode_reason");
                if (last)
                        printf("%s: last decision: %s%s\n", jstr(g, "name"), last,
                               json_object_get_boolean(json_object_object_get(g, "last_decision_applied")) ? ""
                                                                                                            : " (not applied: observing)");
                if (reason)
                        printf("%s: mode %s because %s\n", jstr(g, "name"), jstr(g, "mode"), reason);
        }
        return CTL_EXIT_OK;
}

/* ---- map ---------------------------------------------------------------- */

static const char *const palette[] = { "\033[1;31m", "\033[1;32m", "\033[1;33m", "\033[1;34m",
                                       "\033[1;35m", "\033[1;36m", "\033[0;31m", "\033[0;32m",
                                       "\033[0;33m", "\033[0;34m", "\033[0;35m", "\033[0;36m" };
#define COLOUR_RESET "\033[0m"

struct map_entry {
        int guest;              /* index in guests, for the colour */
        const char *name;
        int vcpu;
        bool lane;              /* mask wider than one CPU */
};

struct map_cpu {
        int cpu, core, l3, numa, package;
        bool usable;
        size_t n;
        struct map_entry *e;
};

static int map_add(struct map_cpu *c, struct map_entry e)
{
        struct map_entry *n = realloc(c->e, (c->n + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        c->e = n;
        c->e[c->n++] = e;
        return 0;
}

static void map_print(struct map_cpu *cpus, size_t n_cpus, json_object *guests, json_object *floating, bool colour)
{
        int pkg = -1, numa = -1, l3 = -1, core = -1;
        bool open_line = false;

#define END_LINE() do { if (open_line) { putchar('\n'); open_line = false; } } while (0)
        for (size_t i = 0; i < n_cpus; i++) {
                struct map_cpu *c = &cpus[i];
                if (c->package != pkg) {
                        END_LINE();
                        printf("Package %d\n", c->package);
                        pkg = c->package;
                        numa = l3 = core = -1;
                }
                if (c->numa != numa) {
                        END_LINE();
                        printf("  NUMA node %d\n", c->numa);
                        numa = c->numa;
                        l3 = core = -1;
                }
                if (c->l3 != l3) {
                        END_LINE();
                        printf("    L3 %d\n", c->l3);
                        l3 = c->l3;
                        core = -1;
                }
                if (c->core != core) {
                        END_LINE();
                        printf("      core %-4d", c->core);
                        core = c->core;
                        open_line = true;
                }
                printf(" cpu%-3d%s[", c->cpu, c->usable ? "" : "(reserved)");
                for (size_t k = 0; k < c->n; k++) {
                        struct map_entry *e = &c->e[k];
                        printf("%s%s%s:%d%s%s", k ? " " : "",
                               colour ? palette[e->guest % (int)ELEMENTSOF(palette)] : "", e->name, e->vcpu,
                               e->lane ? "~" : "", colour ? COLOUR_RESET : "");
                }
                printf("]");
        }
        END_LINE();
#undef END_LINE
        if (json_object_array_length(floating) > 0) {
                printf("\nNot placed by vcpuspreadd (may run on any usable CPU):\n ");
                for (size_t k = 0; k < json_object_array_length(floating); k++)
                        printf(" %s", json_object_get_string(json_object_array_get_idx(floating, k)));
                putchar('\n');
        }
        printf("\nname:N = vCPU N of guest name on that CPU alone; name:N~ = its lane of several CPUs.\n");
        (void)guests;
}

/* Draw the map from a reply carrying "cpus" (topology) and "guests" with
 * each vCPU's "cpus": the daemon's status and simulate's plan both do. */
int ctl_map_render(json_object *reply, bool colour)
{
        json_object *jcpus = jarr(reply, "cpus"), *guests = jarr(reply, "guests");
        size_t n_cpus = jcpus ? json_object_array_length(jcpus) : 0;
        struct map_cpu *cpus = calloc(n_cpus ?: 1, sizeof(*cpus));
        json_object *floating = json_object_new_array();
        _cleanup_bitmap_ hwloc_bitmap_t usable = hwloc_bitmap_alloc();
        _cleanup_bitmap_ hwloc_bitmap_t mask = hwloc_bitmap_alloc();
        if (!cpus || !floating || !usable || !mask) {
                free(cpus);
                json_object_put(floating);
                return ctl_error(-ENOMEM, "out of memory");
        }

        for (size_t i = 0; i < n_cpus; i++) {
                json_object *c = json_object_array_get_idx(jcpus, i);
                cpus[i] = (struct map_cpu){ .cpu = jint(c, "cpu"), .core = jint(c, "core"), .l3 = jint(c, "l3"),
                                            .numa = jint(c, "numa"), .package = jint(c, "package"),
                                            .usable = json_object_get_boolean(json_object_object_get(c, "usable")) };
                if (cpus[i].usable)
                        hwloc_bitmap_set(usable, (unsigned)cpus[i].cpu);
        }
        for (size_t gi = 0; guests && gi < json_object_array_length(guests); gi++) {
                json_object *g = json_object_array_get_idx(guests, gi);
                json_object *vcpus = jarr(g, "vcpus");
                for (size_t k = 0; vcpus && k < json_object_array_length(vcpus); k++) {
                        json_object *v = json_object_array_get_idx(vcpus, k);
                        if (cpulist_parse(jstr(v, "cpus") ?: "", mask, NULL, 0) < 0 || hwloc_bitmap_iszero(mask))
                                continue;
                        /* A vCPU allowed everywhere sits on no CPU in particular. */
                        if (hwloc_bitmap_isincluded(usable, mask) && hwloc_bitmap_weight(usable) > 1) {
                                char label[300];
                                snprintf(label, sizeof(label), "%s:%d", jstr(g, "name"), jint(v, "vcpu"));
                                json_object_array_add(floating, json_object_new_string(label));
                                continue;
                        }
                        for (size_t i = 0; i < n_cpus; i++)
                                if (hwloc_bitmap_isset(mask, (unsigned)cpus[i].cpu))
                                        map_add(&cpus[i], (struct map_entry){ .guest = (int)gi, .name = jstr(g, "name"),
                                                                             .vcpu = jint(v, "vcpu"),
                                                                             .lane = hwloc_bitmap_weight(mask) > 1 });
                }
        }
        map_print(cpus, n_cpus, guests, floating, colour);
        for (size_t i = 0; i < n_cpus; i++)
                free(cpus[i].e);
        free(cpus);
        json_object_put(floating);
        return CTL_EXIT_OK;
}

static int render_map(json_object *reply)
{
        return ctl_map_render(reply, isatty(STDOUT_FILENO));
}

/* ---- the commands -------------------------------------------------------- */

static const struct ctl_command commands[] = {
        { "status", "status", true, false,
          "Every guest the daemon knows, whether it manages it (and if not, why), and\n"
          "each vCPU's thread, current CPUs, recent load, run-queue wait and last decision.\n",
          render_status },
        /* The map is drawn from the status reply; the daemon has no map of its own. */
        { "map", "status", false, false,
          "The host topology (packages, NUMA nodes, L3 groups, cores, CPUs) with the guest\n"
          "vCPUs that sit on each CPU; a colour per guest on a terminal.\n",
          render_map },
        { "plan", "plan", true, false,
          "What the daemon would change now and why.  Changes nothing.\n",
          render_plan },
        { "reload", "reload", false, false,
          "Re-read the configuration (as SIGHUP does).  On an error the daemon keeps the\n"
          "old configuration and this prints the error with file and line.\n",
          render_reload },
        { "metrics", "metrics", false, false,
          "The daemon's metrics in the Prometheus text format: the same text as the\n"
          "MetricsFile= it writes every interval (see vcpuspreadd-metrics(7)).\n",
          render_metrics },
        { "report", "report", true, true,
          "Per guest, over the daemon's lifetime or the last --since: how often its vCPUs\n"
          "were stacked on one host CPU, what the signals said (busy, wait, voluntary\n"
          "switches), the moves the daemon made (or, observing, would have made), and the\n"
          "time spent in each mode.  Guests that went away are listed as gone.\n",
          render_report },
};

int ctl_daemon_command(int argc, char **argv)
{
        const struct ctl_command *c = NULL;
        json_object *reply = NULL;
        struct ctl_opts o;

        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (strcmp(argv[0], commands[i].name) == 0)
                        c = &commands[i];
        if (!c)
                return ctl_usage_error("unknown command '%s'; see 'vcpuspreadctl --help'", argv[0]);
        int r = run_request(argc, argv, c, &reply, &o);
        if (r >= 0)
                return r;
        r = c->render(reply);
        json_object_put(reply);
        return r;
}

