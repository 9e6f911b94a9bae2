/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int set_reason(char *buf, size_t len, int r, const char *fmt, ...)
{
        if (buf && len > 0) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(buf, len, fmt, ap);
                va_end(ap);
        }
        return r;
}

int string_table_find(const char *const *table, size_t n, const char *s)
{
        for (size_t i = 0; s && i < n; i++)
                if (table[i] && strcmp(table[i], s) == 0)
                        return (int)i;
        return -EINVAL;
}

int parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
        unsigned long v = 0;

        if (!s || !isdigit((unsigned char)*s))
                return -EINVAL;
        for (; *s; s++) {
                if (!isdigit((unsigned char)*s))
                        return -EINVAL;
                unsigned d = (unsigned)(*s - '0');
                if (d > max || v > (max - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *out = v;
        return 0;
}

const char *strip_view(const char *s, size_t *len)
{
        size_t n;

        while (isspace((unsigned char)*s))
                s++;
        n = strlen(s);
        while (n > 0 && isspace((unsigned char)s[n - 1]))
                n--;
        *len = n;
        return s;
}

bool uuid_canonical(const char *s, char out[static 37])
{
        size_t n = 0, len = strlen(s);
        bool dashed = len == 36;

        if (!dashed && len != 32)
                return false;
        for (size_t i = 0; s[i]; i++) {
                bool dash_here = dashed && (i == 8 || i == 13 || i == 18 || i == 23);
                if (dash_here != (s[i] == '-'))
                        return false;
                if (dash_here)
                        continue;
                if (!isxdigit((unsigned char)s[i]))
                        return false;
                if (n == 8 || n == 12 || n == 16 || n == 20)
                        *out++ = '-';
                *out++ = (char)tolower((unsigned char)s[i]);
                n++;
        }
        *out = '\0';
        return true;
}

bool uuid_is_dashed(const char *s)
{
        char canonical[37];

        return strlen(s) == 36 && uuid_canonical(s, canonical);
}
