/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <syslog.h>

#include "cpulist.h"
#include "defaults.h"
#include "macro.h"
#include "util.h"

/* ---- errors ------------------------------------------------------------ */

void config_error_set(struct config_error *err, const char *file, unsigned line, const char *fmt, ...)
{
        va_list ap;

        if (!err)
                return;
        snprintf(err->file, sizeof(err->file), "%s", file ? file : "");
        err->line = line;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
        if (file && line > 0)
                snprintf(err->text, sizeof(err->text), "%s:%u: %s", err->file, line, err->message);
        else if (file)
                snprintf(err->text, sizeof(err->text), "%s: %s", err->file, err->message);
        else
                snprintf(err->text, sizeof(err->text), "%s", err->message);
}

/* ---- value parsers ----------------------------------------------------- */

int config_parse_boolean(const char *s, bool *b)
{
        static const char *const yes[] = { "1", "yes", "y", "true", "t", "on" };
        static const char *const no[] = { "0", "no", "n", "false", "f", "off" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0) {
                        *b = true;
                        return 0;
                }
                if (strcasecmp(s, no[i]) == 0) {
                        *b = false;
                        return 0;
                }
        }
        return -EINVAL;
}

static const struct {
        const char *suffix;
        uint64_t usec;
} duration_units[] = {
        { "usec", 1 }, { "us", 1 }, { "\xc2\xb5s", 1 },
        { "msec", USEC_PER_MSEC }, { "ms", USEC_PER_MSEC },
        { "seconds", USEC_PER_SEC }, { "second", USEC_PER_SEC }, { "sec", USEC_PER_SEC }, { "s", USEC_PER_SEC },
        { "minutes", 60 * USEC_PER_SEC }, { "minute", 60 * USEC_PER_SEC }, { "min", 60 * USEC_PER_SEC },
        { "m", 60 * USEC_PER_SEC },
        { "hours", 3600 * USEC_PER_SEC }, { "hour", 3600 * USEC_PER_SEC }, { "hr", 3600 * USEC_PER_SEC },
        { "h", 3600 * USEC_PER_SEC },
        { "days", 86400 * USEC_PER_SEC }, { "day", 86400 * USEC_PER_SEC }, { "d", 86400 * USEC_PER_SEC },
        { "weeks", 604800 * USEC_PER_SEC }, { "week", 604800 * USEC_PER_SEC }, { "w", 604800 * USEC_PER_SEC },
};

/* One "<number>[.<fraction>][ ]<unit>" component; a missing unit means
 * seconds and is only allowed when the component is the whole value. */
static int parse_duration_component(const char **p, bool whole, uint64_t *out)
{
        const char *s = *p, *unit;
        uint64_t n = 0, mult = 0, v;
        const char *frac = NULL;
        size_t unit_len, n_frac = 0;

        if (!isdigit((unsigned char)*s) && !(*s == '.' && isdigit((unsigned char)s[1])))
                return -EINVAL;
        for (; isdigit((unsigned char)*s); s++) {
                if (n > (UINT64_MAX - 9) / 10)
                        return -ERANGE;
                n = n * 10 + (uint64_t)(*s - '0');
        }
        if (*s == '.') {
                frac = ++s;
                while (isdigit((unsigned char)*s))
                        s++, n_frac++;
        }
        while (*s == ' ' || *s == '\t')
                s++;
        unit = s;
        while (*s && !isdigit((unsigned char)*s) && *s != '.' && *s != ' ' && *s != '\t')
                s++;
        unit_len = (size_t)(s - unit);

        if (unit_len == 0) {
                if (!whole || *s != '\0')
                        return -EINVAL;
                mult = USEC_PER_SEC;
        } else {
                for (size_t i = 0; i < ELEMENTSOF(duration_units); i++)
                        if (strlen(duration_units[i].suffix) == unit_len &&
                            strncmp(unit, duration_units[i].suffix, unit_len) == 0) {
                                mult = duration_units[i].usec;
                                break;
                        }
                if (mult == 0)
                        return -EINVAL;
        }

        if (n > UINT64_MAX / mult)
                return -ERANGE;
        v = n * mult;
        /* Every unit is a multiple of a power of ten, so digit-wise division
         * is exact down to the microsecond. */
        for (size_t i = 0, div = 10; i < n_frac && div <= mult; i++, div *= 10)
                v += (uint64_t)(frac[i] - '0') * (mult / div);
        if (v < n * mult)
                return -ERANGE;
        *out = v;
        *p = s;
        return 0;
}

int config_parse_duration(const char *s, uint64_t *usec)
{
        uint64_t total = 0;
        const char *p = s;
        bool any = false;

        for (;;) {
                uint64_t v;
                int r;

                while (*p == ' ' || *p == '\t')
                        p++;
                if (*p == '\0')
                        break;
                r = parse_duration_component(&p, !any, &v);
                if (r < 0)
                        return r;
                if (total > UINT64_MAX - v)
                        return -ERANGE;
                total += v;
                any = true;
        }
        if (!any)
                return -EINVAL;
        *usec = total;
        return 0;
}

char *config_format_duration(uint64_t usec)
{
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = {
                { "w", 604800 * USEC_PER_SEC }, { "d", 86400 * USEC_PER_SEC }, { "h", 3600 * USEC_PER_SEC },
                { "min", 60 * USEC_PER_SEC }, { "s", USEC_PER_SEC }, { "ms", USEC_PER_MSEC }, { "us", 1 },
        };
        char buf[128] = "";
        size_t len = 0;

        if (usec == 0)
                return strdup("0");
        for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                uint64_t k = usec / units[i].usec;
                if (k == 0)
                        continue;
                usec -= k * units[i].usec;
                len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%llu%s", len ? " " : "",
                                        (unsigned long long)k, units[i].suffix);
        }
        return strdup(buf);
}

/* A plain non-negative decimal: no sign, exponent, hex, inf or nan, which
 * strtod() would all accept. */
static int parse_fraction(const char *s, double *out)
{
        size_t digits = strspn(s, "0123456789"), rest;
        bool percent;
        char *end;
        double v;

        rest = digits;
        if (s[rest] == '.') {
                size_t f = strspn(s + rest + 1, "0123456789");
                digits += f;
                rest += 1 + f;
        }
        percent = s[rest] == '%';
        if (digits == 0 || s[rest + percent] != '\0')
                return -EINVAL;
        errno = 0;
        v = strtod(s, &end);
        if (errno != 0 || !isfinite(v))
                return -EINVAL;
        *out = percent ? v / 100 : v;
        return 0;
}

/* The shortest decimal that strtod() reads back as exactly @v. */
static void format_double(char *buf, size_t len, double v)
{
        for (int prec = 1; prec <= 17; prec++) {
                snprintf(buf, len, "%.*g", prec, v);
                if (strtod(buf, NULL) == v)
                        return;
        }
}

static int parse_unsigned(const char *s, unsigned max, unsigned *out)
{
        unsigned long v;
        int r = parse_ulong(s, max, &v);

        if (r < 0)
                return r;
        *out = (unsigned)v;
        return 0;
}

/* "spread, spread-cores or ignore", from the engine's own list, so a policy
 * it gains is accepted and named here without touching this file. */
static void policy_choices(char *buf, size_t len)
{
        size_t n = 0;

        buf[0] = '\0';
        for (int i = 0; i < _POLICY_MAX && n < len; i++)
                n += (size_t)snprintf(buf + n, len - n, "%s%s",
                                      i == 0 ? "" : i == _POLICY_MAX - 1 ? " or " : ", ",
                                      placement_policy_to_string(i));
}

static int parse_policy(const char *s, enum placement_policy *p, char *w, size_t wlen)
{
        char choices[256];
        int r = placement_policy_from_string(s);

        if (r < 0) {
                policy_choices(choices, sizeof(choices));
                return set_reason(w, wlen, -EINVAL, "expected %s", choices);
        }
        *p = r;
        return 0;
}

static int parse_cpus(const char *s, hwloc_bitmap_t *cpus, char *w, size_t wlen)
{
        _cleanup_bitmap_ hwloc_bitmap_t b = hwloc_bitmap_alloc();
        char reason[128];

        if (!b)
                return -ENOMEM;
        if (cpulist_parse(s, b, reason, sizeof(reason)) < 0)
                return set_reason(w, wlen, -EINVAL, "expected a CPU list such as 0-3,8,10-11 (%s)", reason);
        if (*cpus)
                hwloc_bitmap_free(*cpus);
        *cpus = TAKE_PTR(b);
        return 0;
}

static int replace_string(char **dst, const char *s)
{
        char *copy = NULL;

        if (s && !(copy = strdup(s)))
                return -ENOMEM;
        free(*dst);
        *dst = copy;
        return 0;
}

static int set_origin(struct config_origin *o, const struct config_origin *from)
{
        if (!from) {
                free(o->file);
                *o = (struct config_origin){ 0 };
                return 0;
        }
        o->line = from->line;
        return replace_string(&o->file, from->file);
}

/* ---- [Daemon] keys ----------------------------------------------------- */

typedef int (*daemon_parse_fn)(struct config *c, const char *v, const struct config_origin *o,
                               char *w, size_t wlen);
typedef char *(*daemon_format_fn)(const struct config *c);

static int parse_connect(struct config *c, const char *v, const struct config_origin *o, char *w, size_t wlen)
{
        size_t scheme = strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");

        if (!isalpha((unsigned char)v[0]) || v[scheme] != ':' || strpbrk(v, " \t"))
                return set_reason(w, wlen, -EINVAL, "expected a libvirt URI such as qemu:///system");
        return replace_string(&c->connect, v);
}

static char *format_connect(const struct config *c)
{
        return strdup(c->connect);
}

static int parse_bounded_duration(const char *v, uint64_t min, uint64_t max, uint64_t *out,
                                  char *w, size_t wlen)
{
        _cleanup_free_ char *a = config_format_duration(min), *b = config_format_duration(max);
        uint64_t usec;

        if (!a || !b)
                return -ENOMEM;
        if (config_parse_duration(v, &usec) < 0 || usec < min || usec > max)
                return set_reason(w, wlen, -EINVAL, "expected a duration from %s to %s, such as 500ms, 2s or 1min 30s", a, b);
        *out = usec;
        return 0;
}

static int parse_sample_interval(struct config *c, const char *v, const struct config_origin *o,
                                 char *w, size_t wlen)
{
        return parse_bounded_duration(v, 10 * USEC_PER_MSEC, 3600 * USEC_PER_SEC,
                                      &c->sample_interval_usec, w, wlen);
}

static char *format_sample_interval(const struct config *c)
{
        return config_format_duration(c->sample_interval_usec);
}

static int parse_reserved_cpus(struct config *c, const char *v, const struct config_origin *o,
                               char *w, size_t wlen)
{
        int r = parse_cpus(v, &c->reserved_cpus, w, wlen);
        if (r < 0)
                return r;
        return set_origin(&c->reserved_cpus_origin, o);
}

static char *format_reserved_cpus(const struct config *c)
{
        return cpulist_format(c->reserved_cpus);
}

static int parse_default_policy(struct config *c, const char *v, const struct config_origin *o,
                                char *w, size_t wlen)
{
        return parse_policy(v, &c->default_policy, w, wlen);
}

static char *format_default_policy(const struct config *c)
{
        return strdup(placement_policy_to_string(c->default_policy));
}

static int parse_moves(struct config *c, const char *v, const struct config_origin *o, char *w, size_t wlen)
{
        unsigned n;

        if (strcmp(v, "infinity") == 0) {
                c->moves_per_interval = 0;
                return 0;
        }
        if (parse_unsigned(v, 1000000, &n) < 0 || n == 0)
                return set_reason(w, wlen, -EINVAL, "expected a number of moves from 1 to 1000000, or infinity");
        c->moves_per_interval = n;
        return 0;
}

static char *format_moves(const struct config *c)
{
        char *s = NULL;

        if (c->moves_per_interval == 0)
                return strdup("infinity");
        return asprintf(&s, "%u", c->moves_per_interval) < 0 ? NULL : s;
}

static int parse_hysteresis(struct config *c, const char *v, const struct config_origin *o,
                            char *w, size_t wlen)
{
        double d;

        if (parse_fraction(v, &d) < 0 || d > 1)
                return set_reason(w, wlen, -EINVAL, "expected a share of one CPU from 0 to 1, such as 0.1 or 10%%");
        c->hysteresis = d;
        return 0;
}

static char *format_hysteresis(const struct config *c)
{
        char buf[32];
        format_double(buf, sizeof(buf), c->hysteresis);
        return strdup(buf);
}

static int parse_control_socket(struct config *c, const char *v, const struct config_origin *o,
                                char *w, size_t wlen)
{
        size_t max = sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1;

        if (v[0] != '/' || strlen(v) > max || v[strlen(v) - 1] == '/')
                return set_reason(w, wlen, -EINVAL, "expected an absolute file name of at most %zu bytes", max);
        return replace_string(&c->control_socket, v);
}

static char *format_control_socket(const struct config *c)
{
        return strdup(c->control_socket);
}

static int parse_group(struct config *c, const char *v, const struct config_origin *o, char *w, size_t wlen)
{
        size_t ok = strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-");

        if (v[0] == '\0')
                return replace_string(&c->control_socket_group, NULL);
        if (v[ok] != '\0' || v[0] == '-' || ok > 32)
                return set_reason(w, wlen, -EINVAL, "expected a group name of letters, digits, '.', '_' and '-' (at most 32)");
        return replace_string(&c->control_socket_group, v);
}

static char *format_group(const struct config *c)
{
        return strdup(c->control_socket_group ? c->control_socket_group : "");
}

static const struct {
        const char *name;
        int level;
} log_levels[] = {
        { "err", LOG_ERR }, { "warning", LOG_WARNING }, { "notice", LOG_NOTICE },
        { "info", LOG_INFO }, { "debug", LOG_DEBUG },
};

static int parse_log_level(struct config *c, const char *v, const struct config_origin *o,
                           char *w, size_t wlen)
{
        for (size_t i = 0; i < ELEMENTSOF(log_levels); i++)
                if (strcmp(v, log_levels[i].name) == 0) {
                        c->log_level = log_levels[i].level;
                        return 0;
                }
        return set_reason(w, wlen, -EINVAL, "expected debug, info, notice, warning or err");
}

static char *format_log_level(const struct config *c)
{
        for (size_t i = 0; i < ELEMENTSOF(log_levels); i++)
                if (log_levels[i].level == c->log_level)
                        return strdup(log_levels[i].name);
        return strdup("info");
}

static int parse_lane_width(struct config *c, const char *v, const struct config_origin *o,
                            char *w, size_t wlen)
{
        unsigned n;

        if (strcmp(v, "auto") == 0) {
                c->lane_width = 0;
                return 0;
        }
        if (parse_unsigned(v, CPULIST_MAX_CPU + 1, &n) < 0 || n == 0)
                return set_reason(w, wlen, -EINVAL, "expected auto or a number of CPUs from 1 to %u", CPULIST_MAX_CPU + 1);
        c->lane_width = n;
        return 0;
}

static char *format_lane_width(const struct config *c)
{
        char *s = NULL;

        if (c->lane_width == 0)
                return strdup("auto");
        return asprintf(&s, "%u", c->lane_width) < 0 ? NULL : s;
}

static int parse_load_window(struct config *c, const char *v, const struct config_origin *o,
                             char *w, size_t wlen)
{
        return parse_bounded_duration(v, 0, 3600 * USEC_PER_SEC, &c->load_window_usec, w, wlen);
}

static char *format_load_window(const struct config *c)
{
        return config_format_duration(c->load_window_usec);
}

static int parse_min_dwell(struct config *c, const char *v, const struct config_origin *o,
                           char *w, size_t wlen)
{
        return parse_bounded_duration(v, 0, 86400 * USEC_PER_SEC, &c->min_dwell_usec, w, wlen);
}

static char *format_min_dwell(const struct config *c)
{
        return config_format_duration(c->min_dwell_usec);
}

static int parse_delayacct(struct config *c, const char *v, const struct config_origin *o,
                           char *w, size_t wlen)
{
        if (config_parse_boolean(v, &c->task_delay_accounting) < 0)
                return set_reason(w, wlen, -EINVAL, "expected yes or no");
        return 0;
}

static char *format_delayacct(const struct config *c)
{
        return strdup(c->task_delay_accounting ? "yes" : "no");
}

static int parse_starvation(struct config *c, const char *v, const struct config_origin *o,
                            char *w, size_t wlen)
{
        uint64_t usec;

        /* A thread cannot wait longer than the wall-clock time that passed. */
        if (config_parse_duration(v, &usec) < 0 || usec >= USEC_PER_SEC)
                return set_reason(w, wlen, -EINVAL, "expected a wait per second below 1s, such as 100ms, or 0 to disable");
        c->starvation_wait_usec = usec;
        return 0;
}

static char *format_starvation(const struct config *c)
{
        return config_format_duration(c->starvation_wait_usec);
}

/* The single list of [Daemon] keys: name, built-in default (also what an
 * empty assignment resets to), parser and printer. */
static const struct daemon_key {
        const char *name;
        const char *default_value;
        daemon_parse_fn parse;
        daemon_format_fn format;
} daemon_keys[] = {
        { "Connect", DEFAULT_CONNECT, parse_connect, format_connect },
        { "SampleIntervalSec", DEFAULT_SAMPLE_INTERVAL, parse_sample_interval, format_sample_interval },
        { "ReservedCPUs", DEFAULT_RESERVED_CPUS, parse_reserved_cpus, format_reserved_cpus },
        { "DefaultPolicy", DEFAULT_POLICY, parse_default_policy, format_default_policy },
        { "MovesPerInterval", DEFAULT_MOVES_PER_INTERVAL, parse_moves, format_moves },
        { "Hysteresis", DEFAULT_HYSTERESIS, parse_hysteresis, format_hysteresis },
        { "LaneWidth", DEFAULT_LANE_WIDTH, parse_lane_width, format_lane_width },
        { "LoadWindowSec", DEFAULT_LOAD_WINDOW, parse_load_window, format_load_window },
        { "MinDwellSec", DEFAULT_MIN_DWELL, parse_min_dwell, format_min_dwell },
        { "StarvationWaitSec", DEFAULT_STARVATION_WAIT, parse_starvation, format_starvation },
        { "TaskDelayAccounting", DEFAULT_TASK_DELAY_ACCOUNTING, parse_delayacct, format_delayacct },
        { "ControlSocket", DEFAULT_CONTROL_SOCKET, parse_control_socket, format_control_socket },
        { "ControlSocketGroup", DEFAULT_CONTROL_SOCKET_GROUP, parse_group, format_group },
        { "LogLevel", DEFAULT_LOG_LEVEL, parse_log_level, format_log_level },
};

/* ---- [Domain] keys ----------------------------------------------------- */

typedef int (*domain_parse_fn)(struct config_domain *d, const char *v, const struct config_origin *o,
                               char *w, size_t wlen);

static int parse_name(struct config_domain *d, const char *v, const struct config_origin *o,
                      char *w, size_t wlen)
{
        return replace_string(&d->name, v[0] ? v : NULL);
}

static int parse_uuid(struct config_domain *d, const char *v, const struct config_origin *o,
                      char *w, size_t wlen)
{
        char canonical[37];

        if (v[0] == '\0')
                return replace_string(&d->uuid, NULL);
        if (!uuid_canonical(v, canonical))
                return set_reason(w, wlen, -EINVAL, "expected a UUID such as 0b7d4a3e-5f1c-4c2a-9e8b-3f6d2a1c0e9f");
        return replace_string(&d->uuid, canonical);
}

static int parse_domain_policy(struct config_domain *d, const char *v, const struct config_origin *o,
                               char *w, size_t wlen)
{
        if (v[0] == '\0') {
                d->policy_set = false;
                return 0;
        }
        int r = parse_policy(v, &d->policy, w, wlen);
        if (r < 0)
                return r;
        d->policy_set = true;
        return 0;
}

static int parse_domain_cpus(struct config_domain *d, const char *v, const struct config_origin *o,
                             char *w, size_t wlen)
{
        if (v[0] == '\0') {
                if (d->cpus)
                        hwloc_bitmap_free(d->cpus);
                d->cpus = NULL;
                return set_origin(&d->cpus_origin, NULL);
        }
        int r = parse_cpus(v, &d->cpus, w, wlen);
        if (r < 0)
                return r;
        return set_origin(&d->cpus_origin, o);
}

static int parse_override(struct config_domain *d, const char *v, const struct config_origin *o,
                          char *w, size_t wlen)
{
        if (v[0] == '\0') {
                d->override = false;
                return 0;
        }
        if (config_parse_boolean(v, &d->override) < 0)
                return set_reason(w, wlen, -EINVAL, "expected yes or no");
        return 0;
}

static const struct domain_key {
        const char *name;
        domain_parse_fn parse;
} domain_keys[] = {
        { "Name", parse_name },
        { "UUID", parse_uuid },
        { "Policy", parse_domain_policy },
        { "CPUs", parse_domain_cpus },
        { "Override", parse_override },
};

static void domain_done(struct config_domain *d)
{
        free(d->name);
        free(d->uuid);
        if (d->cpus)
                hwloc_bitmap_free(d->cpus);
        free(d->section.file);
        free(d->cpus_origin.file);
        *d = (struct config_domain){ 0 };
}

/* ---- model ------------------------------------------------------------- */

int config_init(struct config *c)
{
        char w[256];

        *c = (struct config){ 0 };
        c->reserved_cpus = hwloc_bitmap_alloc();
        if (!c->reserved_cpus)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(daemon_keys); i++) {
                int r = daemon_keys[i].parse(c, daemon_keys[i].default_value, NULL, w, sizeof(w));
                /* A default the parser rejects is a bug in the table above. */
                if (r == -EINVAL)
                        abort();
                if (r < 0) {
                        config_done(c);
                        return r;
                }
        }
        return 0;
}

void config_done(struct config *c)
{
        free(c->connect);
        if (c->reserved_cpus)
                hwloc_bitmap_free(c->reserved_cpus);
        free(c->reserved_cpus_origin.file);
        free(c->control_socket);
        free(c->control_socket_group);
        for (size_t i = 0; i < c->n_domains; i++)
                domain_done(&c->domains[i]);
        free(c->domains);
        for (size_t i = 0; i < c->n_files; i++)
                free(c->files[i]);
        free(c->files);
        *c = (struct config){ 0 };
}

/* ---- the INI parser ---------------------------------------------------- */

enum section { SECTION_NONE, SECTION_DAEMON, SECTION_DOMAIN };

struct parser {
        struct config *c;
        const char *file;
        struct config_error *err;
        enum section section;
        /* This text's [Domain] sections; they go before the existing ones. */
        struct config_domain *domains;
        size_t n_domains;
};

static int parse_error(struct parser *p, unsigned line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int parse_error(struct parser *p, unsigned line, const char *fmt, ...)
{
        char msg[sizeof(p->err->message)];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        config_error_set(p->err, p->file, line, "%s", msg);
        return -EINVAL;
}

static int domain_finish(struct parser *p)
{
        struct config_domain *d;

        if (p->section != SECTION_DOMAIN)
                return 0;
        d = &p->domains[p->n_domains - 1];
        if (!d->name && !d->uuid)
                return parse_error(p, d->section.line, "[Domain]: expected Name= or UUID= in this section");
        return 0;
}

static int section_start(struct parser *p, const char *line, unsigned lineno)
{
        size_t len = strlen(line);
        struct config_domain *d;
        int r;

        r = domain_finish(p);
        if (r < 0)
                return r;
        if (line[len - 1] != ']')
                return parse_error(p, lineno, "\"%s\": expected a section header such as [Daemon]", line);
        if (strcmp(line, "[Daemon]") == 0) {
                p->section = SECTION_DAEMON;
                return 0;
        }
        if (strcmp(line, "[Domain]") != 0)
                return parse_error(p, lineno, "%s: unknown section, expected [Daemon] or [Domain]", line);

        d = realloc(p->domains, (p->n_domains + 1) * sizeof(*d));
        if (!d)
                return -ENOMEM;
        p->domains = d;
        d = &p->domains[p->n_domains++];
        *d = (struct config_domain){ .section.line = lineno };
        d->section.file = strdup(p->file);
        if (!d->section.file)
                return -ENOMEM;
        p->section = SECTION_DOMAIN;
        return 0;
}

static size_t edit_distance(const char *a, const char *b)
{
        size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];

        if (la >= 63 || lb >= 63)
                return SIZE_MAX;
        for (size_t j = 0; j <= lb; j++)
                prev[j] = j;
        for (size_t i = 1; i <= la; i++) {
                cur[0] = i;
                for (size_t j = 1; j <= lb; j++) {
                        size_t sub = prev[j - 1] + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
                        size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
                        cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
                }
                memcpy(prev, cur, (lb + 1) * sizeof(size_t));
        }
        return prev[lb];
}

static bool key_is_close(const char *typed, const char *known)
{
        size_t lt = strlen(typed), lk = strlen(known);

        if (lt >= 4 && lt < lk && strncasecmp(typed, known, lt) == 0)
                return true;
        return edit_distance(typed, known) <= 2;
}

static int unknown_key(struct parser *p, unsigned lineno, const char *key, const char *value)
{
        for (size_t i = 0; i < ELEMENTSOF(daemon_keys); i++)
                if (p->section == SECTION_DOMAIN && strcmp(key, daemon_keys[i].name) == 0)
                        return parse_error(p, lineno, "%s=%s: not a [Domain] key, it belongs in [Daemon]", key, value);
        for (size_t i = 0; i < ELEMENTSOF(domain_keys); i++)
                if (p->section == SECTION_DAEMON && strcmp(key, domain_keys[i].name) == 0)
                        return parse_error(p, lineno, "%s=%s: not a [Daemon] key, it belongs in [Domain]", key, value);

        if (p->section == SECTION_DAEMON) {
                for (size_t i = 0; i < ELEMENTSOF(daemon_keys); i++)
                        if (key_is_close(key, daemon_keys[i].name))
                                return parse_error(p, lineno, "%s=%s: unknown key in [Daemon], did you mean %s=?",
                                            key, value, daemon_keys[i].name);
                return parse_error(p, lineno, "%s=%s: unknown key in [Daemon], see vcpuspreadd.conf(5)", key, value);
        }
        for (size_t i = 0; i < ELEMENTSOF(domain_keys); i++)
                if (key_is_close(key, domain_keys[i].name))
                        return parse_error(p, lineno, "%s=%s: unknown key in [Domain], did you mean %s=?",
                                    key, value, domain_keys[i].name);
        return parse_error(p, lineno, "%s=%s: unknown key in [Domain], expected Name, UUID, Policy, CPUs or Override",
                    key, value);
}

static int assignment(struct parser *p, char *line, unsigned lineno)
{
        char *eq = strchr(line, '='), *key = line, *value, *end;
        char w[512] = "";
        struct config_origin origin = { .file = (char *)p->file, .line = lineno };
        int r = 1;

        if (!eq || eq == line)
                return parse_error(p, lineno, "\"%s\": expected Key=value, a [Section] header or a comment", line);
        value = eq + 1;
        for (end = eq; end > key && isspace((unsigned char)end[-1]); end--)
                ;
        *end = '\0';
        while (isspace((unsigned char)*value))
                value++;

        if (p->section == SECTION_NONE)
                return parse_error(p, lineno, "%s=%s: setting outside a section, expected [Daemon] or [Domain] before it",
                            key, value);

        if (p->section == SECTION_DAEMON) {
                for (size_t i = 0; i < ELEMENTSOF(daemon_keys); i++)
                        if (strcmp(key, daemon_keys[i].name) == 0) {
                                /* Empty resets to the default, as in systemd. */
                                const char *v = value[0] ? value : daemon_keys[i].default_value;
                                r = daemon_keys[i].parse(p->c, v, &origin, w, sizeof(w));
                                break;
                        }
        } else {
                for (size_t i = 0; i < ELEMENTSOF(domain_keys); i++)
                        if (strcmp(key, domain_keys[i].name) == 0) {
                                r = domain_keys[i].parse(&p->domains[p->n_domains - 1], value, &origin,
                                                         w, sizeof(w));
                                break;
                        }
        }
        if (r > 0)
                return unknown_key(p, lineno, key, value);
        if (r == -EINVAL)
                return parse_error(p, lineno, "%s=%s: %s", key, value, w);
        return r;
}

static int parse_line(struct parser *p, char *line, unsigned lineno)
{
        char *end;

        while (isspace((unsigned char)*line))
                line++;
        for (end = line + strlen(line); end > line && isspace((unsigned char)end[-1]); end--)
                ;
        *end = '\0';

        if (line[0] == '\0' || line[0] == '#' || line[0] == ';')
                return 0;
        if (line[0] == '[')
                return section_start(p, line, lineno);
        return assignment(p, line, lineno);
}

static int parse_text(struct parser *p, const char *text)
{
        unsigned lineno = 0;
        int r = 0;

        for (const char *s = text; *s && r >= 0;) {
                size_t len = strcspn(s, "\n");
                _cleanup_free_ char *line = strndup(s, len);

                if (!line)
                        return -ENOMEM;
                r = parse_line(p, line, ++lineno);
                s += len + (s[len] == '\n');
        }
        return r < 0 ? r : domain_finish(p);
}

/* Put @p's domains before the configuration's existing ones. */
static int domains_prepend(struct parser *p)
{
        struct config *c = p->c;
        struct config_domain *all;

        if (p->n_domains == 0)
                return 0;
        all = realloc(p->domains, (p->n_domains + c->n_domains) * sizeof(*all));
        if (!all)
                return -ENOMEM;
        if (c->n_domains > 0)
                memcpy(all + p->n_domains, c->domains, c->n_domains * sizeof(*all));
        free(c->domains);
        c->domains = all;
        c->n_domains += p->n_domains;
        p->domains = NULL;
        p->n_domains = 0;
        return 0;
}

int config_parse_string(struct config *c, const char *text, const char *filename,
                        struct config_error *err)
{
        struct parser p = { .c = c, .file = filename, .err = err };
        int r;

        r = parse_text(&p, text);
        if (r >= 0)
                r = domains_prepend(&p);
        for (size_t i = 0; i < p.n_domains; i++)
                domain_done(&p.domains[i]);
        free(p.domains);
        if (r == -ENOMEM)
                config_error_set(err, filename, 0, "out of memory");
        return r;
}

/* ---- matching ---------------------------------------------------------- */

static bool domain_matches(const struct config_domain *d, const char *name, const char *uuid)
{
        char canonical[37];

        if (d->name && (!name || fnmatch(d->name, name, 0) != 0))
                return false;
        if (d->uuid) {
                if (!uuid || !uuid_canonical(uuid, canonical) || strcmp(d->uuid, canonical) != 0)
                        return false;
        }
        return true;
}

const struct config_domain *config_match_domain(const struct config *c, const char *name,
                                                const char *uuid)
{
        for (size_t i = 0; i < c->n_domains; i++)
                if (domain_matches(&c->domains[i], name, uuid))
                        return &c->domains[i];
        return NULL;
}

enum placement_policy config_domain_policy(const struct config *c, const struct config_domain *d)
{
        return d && d->policy_set ? d->policy : c->default_policy;
}

/* ---- checks against the host ------------------------------------------- */

void config_warnings_done(struct config_warnings *w)
{
        for (size_t i = 0; i < w->n; i++)
                free(w->lines[i]);
        free(w->lines);
        *w = (struct config_warnings){ 0 };
}

static int warn(struct config_warnings *w, const struct config_origin *o, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int warn(struct config_warnings *w, const struct config_origin *o, const char *fmt, ...)
{
        _cleanup_free_ char *msg = NULL;
        char *line = NULL, **lines;
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (n < 0) {
                msg = NULL;
                return -ENOMEM;
        }
        if (o->file)
                n = asprintf(&line, "%s:%u: %s", o->file, o->line, msg);
        else
                n = asprintf(&line, "%s", msg);
        if (n < 0)
                return -ENOMEM;
        lines = realloc(w->lines, (w->n + 1) * sizeof(*lines));
        if (!lines) {
                free(line);
                return -ENOMEM;
        }
        w->lines = lines;
        w->lines[w->n++] = line;
        return 0;
}

int config_check_cpus(const struct config *c, hwloc_const_bitmap_t host_cpus,
                      struct config_warnings *warnings, struct config_error *err)
{
        _cleanup_bitmap_ hwloc_bitmap_t usable = hwloc_bitmap_alloc(), outside = hwloc_bitmap_alloc();
        _cleanup_free_ char *host_s = cpulist_format(host_cpus), *reserved_s = cpulist_format(c->reserved_cpus);
        _cleanup_free_ char *usable_s = NULL, *outside_s = NULL;
        const struct config_origin *o = &c->reserved_cpus_origin;
        int r;

        if (!usable || !outside || !host_s || !reserved_s)
                return -ENOMEM;

        hwloc_bitmap_andnot(outside, c->reserved_cpus, host_cpus);
        if (!hwloc_bitmap_iszero(outside)) {
                if (!(outside_s = cpulist_format(outside)))
                        return -ENOMEM;
                bool one = hwloc_bitmap_weight(outside) == 1;
                r = warn(warnings, o, "ReservedCPUs=%s: %s %s %s not on this host (host CPUs: %s)",
                         reserved_s, one ? "CPU" : "CPUs", outside_s, one ? "is" : "are", host_s);
                if (r < 0)
                        return r;
        }
        hwloc_bitmap_andnot(usable, host_cpus, c->reserved_cpus);
        if (hwloc_bitmap_iszero(usable)) {
                config_error_set(err, o->file, o->line, "ReservedCPUs=%s: leaves no CPU for guests (host CPUs: %s)",
                          reserved_s, host_s);
                return -EINVAL;
        }
        if (!(usable_s = cpulist_format(usable)))
                return -ENOMEM;

        for (size_t i = 0; i < c->n_domains; i++) {
                const struct config_domain *d = &c->domains[i];
                _cleanup_free_ char *cpus_s = NULL, *bad_s = NULL;

                if (!d->cpus)
                        continue;
                if (!(cpus_s = cpulist_format(d->cpus)))
                        return -ENOMEM;
                if (!hwloc_bitmap_intersects(d->cpus, usable)) {
                        config_error_set(err, d->cpus_origin.file, d->cpus_origin.line,
                                  "CPUs=%s: none of these CPUs is usable, the guest would have none "
                                  "(usable CPUs: %s)", cpus_s, usable_s);
                        return -EINVAL;
                }
                hwloc_bitmap_andnot(outside, d->cpus, usable);
                if (hwloc_bitmap_iszero(outside))
                        continue;
                if (!(bad_s = cpulist_format(outside)))
                        return -ENOMEM;
                bool one = hwloc_bitmap_weight(outside) == 1;
                r = warn(warnings, &d->cpus_origin, "CPUs=%s: %s %s %s not usable and left out "
                         "(usable CPUs: %s)", cpus_s, one ? "CPU" : "CPUs", bad_s, one ? "is" : "are",
                         usable_s);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- printing ---------------------------------------------------------- */

char *config_format(const struct config *c)
{
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        bool ok = true;

        if (!f)
                return NULL;

        if (c->n_files == 0)
                fputs("# No configuration file was read: built-in defaults.\n", f);
        for (size_t i = 0; i < c->n_files; i++)
                fprintf(f, "# Read %s\n", c->files[i]);
        fputs("[Daemon]\n", f);
        for (size_t i = 0; i < ELEMENTSOF(daemon_keys); i++) {
                _cleanup_free_ char *v = daemon_keys[i].format(c);
                ok = ok && v;
                fprintf(f, "%s=%s\n", daemon_keys[i].name, v ? v : "");
        }

        for (size_t i = 0; i < c->n_domains; i++) {
                const struct config_domain *d = &c->domains[i];

                fputs("\n[Domain]\n", f);
                if (d->section.file)
                        fprintf(f, "# %s:%u\n", d->section.file, d->section.line);
                if (d->name)
                        fprintf(f, "Name=%s\n", d->name);
                if (d->uuid)
                        fprintf(f, "UUID=%s\n", d->uuid);
                if (d->policy_set)
                        fprintf(f, "Policy=%s\n", placement_policy_to_string(d->policy));
                else
                        fprintf(f, "# Policy= not set: DefaultPolicy=%s applies\n",
                                placement_policy_to_string(c->default_policy));
                if (d->cpus) {
                        _cleanup_free_ char *s = cpulist_format(d->cpus);
                        ok = ok && s;
                        fprintf(f, "CPUs=%s\n", s ? s : "");
                }
                fprintf(f, "Override=%s\n", d->override ? "yes" : "no");
        }

        if (fclose(f) != 0 || !ok) {
                free(buf);
                return NULL;
        }
        return buf;
}
