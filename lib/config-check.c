/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The configuration's CPU lists held against the host's CPUs. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "cpulist.h"
#include "macro.h"

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
