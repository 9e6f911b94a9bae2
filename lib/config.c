/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
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

/* ---- the key table ----------------------------------------------------- */

/*
 * One row per key over a handful of typed parsers, as systemd's config
 * tables do.  A row says where the value lives (an offset into struct config
 * or struct config_domain), its built-in default (lib/defaults.h), its bounds
 * and, where the generic message would not do, the whole "expected ..." text.
 */

struct config_key;
typedef int (*key_parse_fn)(const struct config_key *k, void *base, const char *v, char *w, size_t wlen);
typedef char *(*key_format_fn)(const struct config_key *k, const void *base);

struct config_key {
        const char *name;
        const char *default_value;      /* also what an empty assignment resets to */
        key_parse_fn parse;
        key_format_fn format;
        size_t offset;                  /* the value in struct config / struct config_domain */
        size_t origin_offset;           /* its struct config_origin; 0: none (never a first member) */
        size_t set_offset;              /* a bool saying it was given; 0: none */
        bool empty_unsets;              /* "Key=" means "not set", not "the default" */
        uint64_t min, max;              /* durations (usec) and numbers */
        const char *zero_word;          /* numbers: the word that stands for 0 */
        const char *what;               /* numbers: what is counted */
        const char *hint;               /* the whole reason when a value is rejected */
};

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

static const struct config_key daemon_keys[] = {
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
        DAEMON_KEY("TaskDelayAccounting", DEFAULT_TASK_DELAY_ACCOUNTING, bool, task_delay_accounting),
        DAEMON_KEY("ControlSocket", DEFAULT_CONTROL_SOCKET, socket_path, control_socket),
        DAEMON_KEY("ControlSocketGroup", DEFAULT_CONTROL_SOCKET_GROUP, group, control_socket_group,
                   .empty_unsets = true),
        DAEMON_KEY("LogLevel", DEFAULT_LOG_LEVEL, log_level, log_level),
};

static const struct config_key domain_keys[] = {
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
static int key_set(const struct config_key *k, void *base, const char *value, const struct config_origin *o,
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

static const struct config_key *key_find(const struct config_key *keys, size_t n, const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(keys[i].name, name) == 0)
                        return &keys[i];
        return NULL;
}

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
                int r = key_set(&daemon_keys[i], c, daemon_keys[i].default_value, NULL, w, sizeof(w));
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

/* "Name, UUID, Policy, CPUs or Override" */
static void key_names(const struct config_key *keys, size_t n, char *buf, size_t len)
{
        size_t used = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < n && used < len; i++)
                used += (size_t)snprintf(buf + used, len - used, "%s%s", i == 0 ? "" : i == n - 1 ? " or " : ", ",
                                         keys[i].name);
}

static int unknown_key(struct parser *p, unsigned lineno, const char *key, const char *value)
{
        bool daemon = p->section == SECTION_DAEMON;
        const struct config_key *keys = daemon ? daemon_keys : domain_keys;
        size_t n = daemon ? ELEMENTSOF(daemon_keys) : ELEMENTSOF(domain_keys);
        const char *here = daemon ? "[Daemon]" : "[Domain]";
        char names[256];

        if (key_find(daemon ? domain_keys : daemon_keys, daemon ? ELEMENTSOF(domain_keys) : ELEMENTSOF(daemon_keys),
                     key))
                return parse_error(p, lineno, "%s=%s: not a %s key, it belongs in %s", key, value, here,
                                   daemon ? "[Domain]" : "[Daemon]");
        for (size_t i = 0; i < n; i++)
                if (key_is_close(key, keys[i].name))
                        return parse_error(p, lineno, "%s=%s: unknown key in %s, did you mean %s=?", key, value, here,
                                           keys[i].name);
        if (daemon)
                return parse_error(p, lineno, "%s=%s: unknown key in [Daemon], see vcpuspreadd.conf(5)", key, value);
        key_names(keys, n, names, sizeof(names));
        return parse_error(p, lineno, "%s=%s: unknown key in [Domain], expected %s", key, value, names);
}

static int assignment(struct parser *p, char *line, unsigned lineno)
{
        char *eq = strchr(line, '='), *key = line, *value, *end;
        char w[512] = "";
        struct config_origin origin = { .file = (char *)p->file, .line = lineno };
        const struct config_key *k;
        void *base;
        int r;

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
                k = key_find(daemon_keys, ELEMENTSOF(daemon_keys), key);
                base = p->c;
        } else {
                k = key_find(domain_keys, ELEMENTSOF(domain_keys), key);
                base = &p->domains[p->n_domains - 1];
        }
        if (!k)
                return unknown_key(p, lineno, key, value);
        /* Empty resets to the default, as in systemd. */
        r = key_set(k, base, value, &origin, w, sizeof(w));
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
                _cleanup_free_ char *v = daemon_keys[i].format(&daemon_keys[i], c);
                ok = ok && v;
                fprintf(f, "%s=%s\n", daemon_keys[i].name, v ? v : "");
        }

        for (size_t i = 0; i < c->n_domains; i++) {
                const struct config_domain *d = &c->domains[i];

                fputs("\n[Domain]\n", f);
                if (d->section.file)
                        fprintf(f, "# %s:%u\n", d->section.file, d->section.line);
                for (size_t k = 0; k < ELEMENTSOF(domain_keys); k++) {
                        const struct config_key *key = &domain_keys[k];
                        if (key->set_offset > 0 && !*(const bool *)((const char *)d + key->set_offset)) {
                                fprintf(f, "# %s= not set: DefaultPolicy=%s applies\n", key->name,
                                        placement_policy_to_string(c->default_policy));
                                continue;
                        }
                        _cleanup_free_ char *v = key->format(key, d);
                        ok = ok && v;
                        if (v && (v[0] || !key->empty_unsets))
                                fprintf(f, "%s=%s\n", key->name, v);
                }
        }

        if (fclose(f) != 0 || !ok) {
                free(buf);
                return NULL;
        }
        return buf;
}
