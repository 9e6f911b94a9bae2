/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"
#include "config-keys.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        for (size_t i = 0; i < config_n_daemon_keys; i++) {
                int r = config_key_set(&config_daemon_keys[i], c, config_daemon_keys[i].default_value, NULL, w, sizeof(w));
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
        free(c->metrics_file);
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
        const struct config_key *keys = daemon ? config_daemon_keys : config_domain_keys;
        size_t n = daemon ? config_n_daemon_keys : config_n_domain_keys;
        const char *here = daemon ? "[Daemon]" : "[Domain]";
        char names[256];

        if (config_key_find(daemon ? config_domain_keys : config_daemon_keys, daemon ? config_n_domain_keys : config_n_daemon_keys,
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
                k = config_key_find(config_daemon_keys, config_n_daemon_keys, key);
                base = p->c;
        } else {
                k = config_key_find(config_domain_keys, config_n_domain_keys, key);
                base = &p->domains[p->n_domains - 1];
        }
        if (!k)
                return unknown_key(p, lineno, key, value);
        /* Empty resets to the default, as in systemd. */
        r = config_key_set(k, base, value, &origin, w, sizeof(w));
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
        for (size_t i = 0; i < config_n_daemon_keys; i++) {
                _cleanup_free_ char *v = config_daemon_keys[i].format(&config_daemon_keys[i], c);
                ok = ok && v;
                fprintf(f, "%s=%s\n", config_daemon_keys[i].name, v ? v : "");
        }

        for (size_t i = 0; i < c->n_domains; i++) {
                const struct config_domain *d = &c->domains[i];

                fputs("\n[Domain]\n", f);
                if (d->section.file)
                        fprintf(f, "# %s:%u\n", d->section.file, d->section.line);
                for (size_t k = 0; k < config_n_domain_keys; k++) {
                        const struct config_key *key = &config_domain_keys[k];
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
