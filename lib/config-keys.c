/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The configuration keys: the typed parsers and printers, and the table. */
#include "config-keys.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <syslog.h>

#include "cpulist.h"
#include "defaults.h"
#include "macro.h"
#include "util.h"

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

#define FIELD(base, k, type) ((type *)((char *)(base) + (k)->offset))
#define CFIELD(base, k, type) ((const type *)((const char *)(base) + (k)->offset))

static int reject(const struct config_key *k, char *w, size_t wlen, const char *generic)
{
        return set_reason(w, wlen, -EINVAL, "%s", k->hint ? k->hint : generic);
}

static char *format_uint64(uint64_t v)
{
        char *s = NULL;
        return asprintf(&s, "%" PRIu64, v) < 0 ? NULL : s;
}

/* Strings: a libvirt URI, an absolute socket path, a group name, a glob. */

static int parse_string(const struct config_key *k, void *base, const char *v, char *w, size_t wlen)
{
        return replace_string(FIELD(base, k, char *), v[0] ? v : NULL);
}

static char *format_string(const struct config_key *k, const void *base)
{
        const char *s = *CFIELD(base, k, char *);
        return strdup(s ? s : "");
}

static int parse_uri(const struct config_key *k, void *base, const char *v, char *w, size_t wlen)
{
        size_t scheme = strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");

        if (!isalpha((unsigned char)v[0]) || v[scheme] != ':' || strpbrk(v, " \t"))
                return reject(k, w, wlen, "expected a libvirt URI such as " DEFAULT_CONNECT);
        return parse_string(k, base, v, w, wlen);
}

static int parse_socket_path(const struct config_key *k, void *base, const char *v, char *w, size_t wlen)
{
        size_t max = sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1;

        if (v[0] != '/' || strlen(v) > max || v[strlen(v) - 1] == '/')
                return set_reason(w, wlen, -EINVAL, "expected an absolute file name of at most %zu bytes", max);
        return parse_string(k, base, v, w, wlen);
}

static int parse_group(const struct config_key *k, void *base, const char *v, char *w, size_t wlen)
{
        size_t ok = strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-");

        if (v[0] && (v[ok] != '\0' || v[0] == '-' || ok > 32))
                return reject(k, w, wlen, "expected a group name of letters, digits, '.', '_' and '-' (at most 32)");
        return parse_string(k, base, v, w, wlen);
}

static int parse_uuid(const struct config_key *k, void *base, const char *v, char *w, size_t wlen)
{
        char canonical[37];

        if (v[0] == '\0')
                return parse_string(k, base, v, w, wlen);
        if (!uuid_canonical(v, canonical))
                return reject(k, w, wlen, "expected a UUID such as 0b7d4a3e-5f1c-4c2a-9e8b-3f6d2a1c0e9f");
        return parse_string(k, base, canonical, w, wlen);
}

/* Durations, from k->min to k->max. */

static int parse_duration_key(const struct config_key *k, void *base, const char *v, char *w, size_t wlen)
{
        uint64_t usec;

        if (config_parse_duration(v, &usec) < 0 || usec < k->min || usec > k->max) {
                _cleanup_free_ char *a = config_format_duration(k->min), *b = config_format_duration(k->max);
                if (!a || !b)
                        return -ENOMEM;
                if (k->hint)
                        return reject(k, w, wlen, NULL);
                return set_reason(w, wlen, -EINVAL,
                                  "expected a duration from %s to %s, such as 500ms, 2s or 1min 30s", a, b);
        }
        *FIELD(base, k, uint64_t) = usec;
        return 0;
}

static char *format_duration_key(const struct config_key *k, const void *base)
{
        return config_format_duration(*CFIELD(base, k, uint64_t));
}

/* Booleans. */

static int parse_bool(const struct config_key *k, void *base, const char *v, char *w, size_t wlen)
{
        if (config_parse_boolean(v, FIELD(base, k, bool)) < 0)
                return reject(k, w, wlen, "expected yes or no");
        return 0;
}

static char *format_bool(const struct config_key *k, const void *base)
{
        return strdup(*CFIELD(base, k, bool) ? "yes" : "no");
}

/* Whole numbers from k->min to k->max; k->zero_word stands for 0. */

static int parse_uint_key(const struct config_key *k, void *base, const char *v, char *w, size_t wlen)
{
        unsigned long n;

        if (k->zero_word && strcmp(v, k->zero_word) == 0) {
                *FIELD(base, k, unsigned) = 0;
                return 0;
        }
        if (parse_ulong(v, k->max, &n) < 0 || n < k->min) {
                if (k->hint)
                        return reject(k, w, wlen, NULL);
                return set_reason(w, wlen, -EINVAL, "expected a number of %s from %" PRIu64 " to %" PRIu64 "%s%s",
                                  k->what, k->min, k->max, k->zero_word ? ", or " : "",
                                  k->zero_word ? k->zero_word : "");
        }
        *FIELD(base, k, unsigned) = (unsigned)n;
        return 0;
}

static char *format_uint_key(const struct config_key *k, const void *base)
{
        unsigned n = *CFIELD(base, k, unsigned);

        if (n == 0 && k->zero_word)
                return strdup(k->zero_word);
        return format_uint64(n);
}

/* Shares from 0 to k->max: "0.1" or "10%". */

static int parse_fraction_key(const struct config_key *k, void *base, const char *v, char *w, size_t wlen)
{
        double d;

        if (config_parse_fraction(v, &d) < 0 || d > (double)k->max)
                return reject(k, w, wlen, "expected a share from 0 to 1, such as 0.1 or 10%");
        *FIELD(base, k, double) = d;
        return 0;
}

static char *format_fraction_key(const struct config_key *k, const void *base)
{
        char buf[32];
        config_format_double(buf, sizeof(buf), *CFIELD(base, k, double));
        return strdup(buf);
}

/* CPU lists; with empty_unsets an empty value means none given (NULL). */

static int parse_cpulist_key(const struct config_key *k, void *base, const char *v, char *w, size_t wlen)
{
        hwloc_bitmap_t *cpus = FIELD(base, k, hwloc_bitmap_t);

        if (v[0] == '\0' && k->empty_unsets) {
                if (*cpus)
                        hwloc_bitmap_free(*cpus);
                *cpus = NULL;
                return 0;
        }
        return parse_cpus(v, cpus, w, wlen);
}

static char *format_cpulist_key(const struct config_key *k, const void *base)
{
        hwloc_const_bitmap_t cpus = *CFIELD(base, k, hwloc_bitmap_t);
        return cpus ? cpulist_format(cpus) : strdup("");
}

/* Enums: the placement policy (the engine's own names) and the log level. */

static int parse_policy_key(const struct config_key *k, void *base, const char *v, char *w, size_t wlen)
{
        if (v[0] == '\0' && k->empty_unsets)
                return 0;       /* the "given" flag is cleared by the caller */
        return parse_policy(v, FIELD(base, k, enum placement_policy), w, wlen);
}

static char *format_policy_key(const struct config_key *k, const void *base)
{
        return strdup(placement_policy_to_string(*CFIELD(base, k, enum placement_policy)));
}

/* syslog(3) levels by number; the more severe ones are not a sensible limit. */
static const char *const log_level_names[] = {
        [LOG_ERR] = "err", [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

static int parse_log_level(const struct config_key *k, void *base, const char *v, char *w, size_t wlen)
{
        int level = string_table_find(log_level_names, ELEMENTSOF(log_level_names), v);

        if (level < 0)
                return reject(k, w, wlen, "expected debug, info, notice, warning or err");
        *FIELD(base, k, int) = level;
        return 0;
}

static char *format_log_level(const struct config_key *k, const void *base)
{
        int level = *CFIELD(base, k, int);
        bool known = level >= 0 && (size_t)level < ELEMENTSOF(log_level_names) && log_level_names[level];

        return strdup(known ? log_level_names[level] : DEFAULT_LOG_LEVEL);
}

/* Mode=: enforce or observe, into a bool. */
static int parse_mode(const struct config_key *k, void *base, const char *v, char *w, size_t wlen)
{
        if (strcmp(v, "enforce") && strcmp(v, "observe"))
                return reject(k, w, wlen, "expected enforce or observe");
        *FIELD(base, k, bool) = strcmp(v, "observe") == 0;
        return 0;
}

static char *format_mode(const struct config_key *k, const void *base)
{
        return strdup(*CFIELD(base, k, bool) ? "observe" : "enforce");
}

/* MetricsFile=: an absolute file name, or empty for none. */
static int parse_file_path(const struct config_key *k, void *base, const char *v, char *w, size_t wlen)
{
        if (v[0] && (v[0] != '/' || v[strlen(v) - 1] == '/' || strlen(v) >= 4096))
                return reject(k, w, wlen, "expected an absolute file name, or nothing for none");
        return parse_string(k, base, v, w, wlen);
}

#define DAEMON_KEY(key, def, type, field, ...)                                                  \
        { .name = key, .default_value = def, .parse = parse_##type, .format = format_##type,   \
          .offset = offsetof(struct config, field), __VA_ARGS__ }
#define DOMAIN_KEY(key, def, type, field, ...)                                                  \
        { .name = key, .default_value = def, .parse = parse_##type, .format = format_##type,   \
          .offset = offsetof(struct config_domain, field), __VA_ARGS__ }

/* Formatting of the string-valued types is the same. */
#define format_uri format_string
#define format_socket_path format_string
#define format_group format_string
#define format_uuid format_string
#define format_file_path format_string

const struct config_key config_daemon_keys[] = {
        DAEMON_KEY("Connect", DEFAULT_CONNECT, uri, connect),
        DAEMON_KEY("SampleIntervalSec", DEFAULT_SAMPLE_INTERVAL, duration_key, sample_interval_usec,
                   .min = 10 * USEC_PER_MSEC, .max = 3600 * USEC_PER_SEC),
        DAEMON_KEY("ReservedCPUs", DEFAULT_RESERVED_CPUS, cpulist_key, reserved_cpus,
                   .origin_offset = offsetof(struct config, reserved_cpus_origin)),
        DAEMON_KEY("DefaultPolicy", DEFAULT_POLICY, policy_key, default_policy),
        DAEMON_KEY("MovesPerInterval", DEFAULT_MOVES_PER_INTERVAL, uint_key, moves_per_interval,
                   .min = 1, .max = 1000000, .zero_word = "infinity", .what = "moves"),
        DAEMON_KEY("Hysteresis", DEFAULT_HYSTERESIS, fraction_key, hysteresis, .max = 1,
                   .hint = "expected a share of one CPU from 0 to 1, such as 0.1 or 10%"),
        DAEMON_KEY("LaneWidth", DEFAULT_LANE_WIDTH, uint_key, lane_width,
                   .min = 1, .max = CPULIST_MAX_CPU + 1, .zero_word = "auto", .what = "CPUs"),
        DAEMON_KEY("LoadWindowSec", DEFAULT_LOAD_WINDOW, duration_key, load_window_usec,
                   .max = 3600 * USEC_PER_SEC),
        DAEMON_KEY("MinDwellSec", DEFAULT_MIN_DWELL, duration_key, min_dwell_usec, .max = 86400 * USEC_PER_SEC),
        /* A thread cannot wait longer than the wall-clock time that passed. */
        DAEMON_KEY("StarvationWaitSec", DEFAULT_STARVATION_WAIT, duration_key, starvation_wait_usec,
                   .max = USEC_PER_SEC - 1,
                   .hint = "expected a wait per second below 1s, such as 100ms, or 0 to disable"),
        DAEMON_KEY("AutoWindowSec", DEFAULT_AUTO_WINDOW, duration_key, auto_window_usec,
                   .min = 2 * USEC_PER_SEC, .max = 3600 * USEC_PER_SEC),
        DAEMON_KEY("TaskDelayAccounting", DEFAULT_TASK_DELAY_ACCOUNTING, bool, task_delay_accounting),
        DAEMON_KEY("ControlSocket", DEFAULT_CONTROL_SOCKET, socket_path, control_socket),
        DAEMON_KEY("ControlSocketGroup", DEFAULT_CONTROL_SOCKET_GROUP, group, control_socket_group,
                   .empty_unsets = true),
        DAEMON_KEY("LogLevel", DEFAULT_LOG_LEVEL, log_level, log_level),
        DAEMON_KEY("Mode", DEFAULT_MODE, mode, observe),
        DAEMON_KEY("MetricsFile", DEFAULT_METRICS_FILE, file_path, metrics_file, .empty_unsets = true),
};

const struct config_key config_domain_keys[] = {
        DOMAIN_KEY("Name", "", string, name, .empty_unsets = true),
        DOMAIN_KEY("UUID", "", uuid, uuid, .empty_unsets = true),
        DOMAIN_KEY("Policy", "", policy_key, policy, .empty_unsets = true,
                   .set_offset = offsetof(struct config_domain, policy_set)),
        DOMAIN_KEY("CPUs", "", cpulist_key, cpus, .empty_unsets = true,
                   .origin_offset = offsetof(struct config_domain, cpus_origin)),
        DOMAIN_KEY("Override", "no", bool, override),
};

/* Set @k in @base from @value ("" = the default, or unset with
 * empty_unsets), made at @o (NULL: built in). */
int config_key_set(const struct config_key *k, void *base, const char *value, const struct config_origin *o,
                   char *w, size_t wlen)
{
        const char *v = value[0] || k->empty_unsets ? value : k->default_value;
        bool unset = v[0] == '\0' && k->empty_unsets;
        int r = k->parse(k, base, v, w, wlen);

        if (r < 0)
                return r;
        if (k->set_offset > 0)
                *(bool *)((char *)base + k->set_offset) = !unset;
        if (k->origin_offset > 0)
                return set_origin((struct config_origin *)((char *)base + k->origin_offset), unset ? NULL : o);
        return 0;
}

const struct config_key *config_key_find(const struct config_key *keys, size_t n, const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(keys[i].name, name) == 0)
                        return &keys[i];
        return NULL;
}

const size_t config_n_daemon_keys = ELEMENTSOF(config_daemon_keys);
const size_t config_n_domain_keys = ELEMENTSOF(config_domain_keys);
