/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cpulist.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "util.h"

/* The reason names the text where parsing stopped, escaped: a CPU list may
 * come from a user and the reason ends up on a terminal. */
static int reason_at(char *err, size_t errlen, const char *what, const char *at)
{
        char *e = escape_text(*at ? at : "end of list", ESCAPE_BACKSLASH);
        int r = set_reason(err, errlen, -EINVAL, "%s at \"%.40s%s\"", what, e ? e : "?",
                           e && strlen(e) > 40 ? "..." : "");
        free(e);
        return r;
}

/* Reads one decimal CPU number; no sign, no leading '+', no overflow. */
static int parse_cpu(const char **p, unsigned *out, char *err, size_t errlen)
{
        const char *s = *p;
        unsigned long v = 0;

        if (!isdigit((unsigned char)*s))
                return reason_at(err, errlen, "expected a CPU number", s);
        while (isdigit((unsigned char)*s)) {
                v = v * 10 + (unsigned long)(*s - '0');
                if (v > CPULIST_MAX_CPU) {
                        char what[64];
                        snprintf(what, sizeof(what), "CPU number too large (max %u)", CPULIST_MAX_CPU);
                        return reason_at(err, errlen, what, *p);
                }
                s++;
        }
        *out = (unsigned)v;
        *p = s;
        return 0;
}

int cpulist_parse(const char *text, hwloc_bitmap_t out, char *err, size_t errlen)
{
        const char *p = text;
        int r;

        hwloc_bitmap_zero(out);
        while (isspace((unsigned char)*p))
                p++;
        if (*p == '\0')
                return 0;

        for (;;) {
                unsigned lo, hi;

                while (isspace((unsigned char)*p))
                        p++;
                r = parse_cpu(&p, &lo, err, errlen);
                if (r < 0)
                        return r;
                hi = lo;
                while (isspace((unsigned char)*p))
                        p++;
                if (*p == '-') {
                        p++;
                        while (isspace((unsigned char)*p))
                                p++;
                        r = parse_cpu(&p, &hi, err, errlen);
                        if (r < 0)
                                return r;
                        if (hi < lo)
                                return set_reason(err, errlen, -EINVAL, "range %u-%u is reversed", lo, hi);
                }
                hwloc_bitmap_set_range(out, lo, hi);
                while (isspace((unsigned char)*p))
                        p++;
                if (*p == '\0')
                        return 0;
                if (*p != ',') {
                        char c[2] = { *p, 0 };
                        _cleanup_free_ char *e = escape_text(c, ESCAPE_BACKSLASH);
                        return set_reason(err, errlen, -EINVAL, "unexpected \"%s\" in CPU list", e ? e : "?");
                }
                p++;
        }
}

char *cpulist_format(hwloc_const_bitmap_t set)
{
        char *s = NULL;

        if (hwloc_bitmap_iszero(set))
                return strdup("");
        if (hwloc_bitmap_list_asprintf(&s, set) < 0)
                return NULL;
        return s;
}
