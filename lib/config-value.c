/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The values of configuration keys: booleans, durations, shares. */
#include "config-value.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "macro.h"

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
int config_parse_fraction(const char *s, double *out)
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
void config_format_double(char *buf, size_t len, double v)
{
        for (int prec = 1; prec <= 17; prec++) {
                snprintf(buf, len, "%.*g", prec, v);
                if (strtod(buf, NULL) == v)
                        return;
        }
}
