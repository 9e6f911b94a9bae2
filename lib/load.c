/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "load.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <string.h>

double ewma_alpha(double dt_s, double window_s)
{
        if (!(dt_s > 0))
                return 0;
        if (!(window_s > 0))
                return 1;
        return -expm1(-dt_s / window_s);
}

void ewma_add(struct ewma *e, double sample, double dt_s, double window_s)
{
        if (!e->primed) {
                e->value = sample;
                e->primed = true;
                return;
        }
        e->value += ewma_alpha(dt_s, window_s) * (sample - e->value);
}

static double clamp01(double x)
{
        return x < 0 ? 0 : x > 1 ? 1 : x;
}

/* One unsigned decimal; no sign, no overflow.  Leading blanks are skipped. */
static int parse_u64(const char **p, uint64_t *out)
{
        const char *s = *p;
        uint64_t v = 0;

        while (*s == ' ' || *s == '\t')
                s++;
        if (!isdigit((unsigned char)*s))
                return -EINVAL;
        while (isdigit((unsigned char)*s)) {
                unsigned d = (unsigned)(*s - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -EINVAL;
                v = v * 10 + d;
                s++;
        }
        *out = v;
        *p = s;
        return 0;
}

static bool at_line_end(const char *p)
{
        while (*p == ' ' || *p == '\t')
                p++;
        return *p == '\0' || *p == '\n';
}

int schedstat_parse(const char *text, struct thread_counters *out)
{
        const char *p = text;
        uint64_t run, wait, slices;

        if (parse_u64(&p, &run) < 0 || parse_u64(&p, &wait) < 0 || parse_u64(&p, &slices) < 0)
                return -EINVAL;
        if (!at_line_end(p))
                return -EINVAL;
        out->cpu_ns = run;
        out->wait_ns = wait;
        out->timeslices = slices;
        return 0;
}

enum thread_load_update thread_load_update(struct thread_load *l, const struct thread_counters *c,
                                           double window_s)
{
        if (!l->have_prev) {
                l->prev = *c;
                l->have_prev = true;
                return THREAD_LOAD_BASELINE;
        }
        if (c->cpu_ns < l->prev.cpu_ns || c->wait_ns < l->prev.wait_ns) {
                l->prev = *c;
                l->resets++;
                return THREAD_LOAD_RESET;
        }
        if (c->when_ns <= l->prev.when_ns)
                return THREAD_LOAD_NO_TIME;

        double wall = (double)(c->when_ns - l->prev.when_ns);
        double cpu = (double)(c->cpu_ns - l->prev.cpu_ns);
        double wait = (double)(c->wait_ns - l->prev.wait_ns);

        l->last_dt_s = wall / 1e9;
        l->last_util = clamp01(cpu / wall);
        l->last_wait = clamp01(wait / wall);
        l->last_wait_ms = wait / 1e6;
        ewma_add(&l->util, l->last_util, l->last_dt_s, window_s);
        ewma_add(&l->wait, l->last_wait, l->last_dt_s, window_s);
        l->prev = *c;
        return THREAD_LOAD_UPDATED;
}

/* "cpu12 1 2 3 ..." -> cpu 12 and the fields; at least user..idle must be there. */
static int parse_cpu_line(const char *line, struct host_cpu_counters *c)
{
        uint64_t *fields[] = {
                &c->user, &c->nice, &c->system, &c->idle, &c->iowait,
                &c->irq, &c->softirq, &c->steal, &c->guest, &c->guest_nice,
        };
        const char *p = line + 3;
        uint64_t cpu;
        size_t i;

        memset(c, 0, sizeof(*c));
        if (parse_u64(&p, &cpu) < 0 || cpu > UINT32_MAX)
                return -EINVAL;
        if (*p != ' ' && *p != '\t')
                return -EINVAL;
        c->cpu = (unsigned)cpu;
        for (i = 0; i < sizeof(fields) / sizeof(fields[0]) && !at_line_end(p); i++)
                if (parse_u64(&p, fields[i]) < 0)
                        return -EINVAL;
        if (i < 4 || !at_line_end(p))
                return -EINVAL;
        return 0;
}

int proc_stat_parse(const char *text, struct host_cpu_counters *out, size_t capacity, size_t *n)
{
        size_t found = 0;
        const char *line = text;

        while (*line) {
                const char *next = strchr(line, '\n');

                if (strncmp(line, "cpu", 3) == 0 && isdigit((unsigned char)line[3])) {
                        struct host_cpu_counters c;
                        int r = parse_cpu_line(line, &c);
                        if (r < 0)
                                return r;
                        if (found < capacity)
                                out[found] = c;
                        found++;
                }
                if (!next)
                        break;
                line = next + 1;
        }
        *n = found;
        if (found == 0)
                return -EINVAL;
        return found > capacity ? -ENOBUFS : 0;
}

/* A counter that went backwards advanced by nothing. */
static uint64_t delta(uint64_t now, uint64_t before)
{
        return now > before ? now - before : 0;
}

int host_cpu_load_update(struct host_cpu_load *l, const struct host_cpu_counters *c,
                         uint64_t when_ns, double window_s)
{
        if (l->have_prev && l->prev.cpu != c->cpu)
                return -EINVAL;
        if (!l->have_prev || when_ns <= l->prev_when_ns) {
                if (!l->have_prev) {
                        l->prev = *c;
                        l->prev_when_ns = when_ns;
                        l->have_prev = true;
                }
                return 1;
        }

        const struct host_cpu_counters *o = &l->prev;
        uint64_t busy = delta(c->user, o->user) + delta(c->nice, o->nice) +
                        delta(c->system, o->system) + delta(c->irq, o->irq) +
                        delta(c->softirq, o->softirq);
        uint64_t steal = delta(c->steal, o->steal);
        uint64_t total = busy + steal + delta(c->idle, o->idle) + delta(c->iowait, o->iowait);

        if (total == 0)
                return 1;       /* not one tick yet: wait for more */

        double dt_s = (double)(when_ns - l->prev_when_ns) / 1e9;
        l->last_busy = (double)busy / (double)total;
        l->last_steal = (double)steal / (double)total;
        ewma_add(&l->busy, l->last_busy, dt_s, window_s);
        ewma_add(&l->steal, l->last_steal, dt_s, window_s);
        l->prev = *c;
        l->prev_when_ns = when_ns;
        return 0;
}
