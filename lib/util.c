/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

size_t utf8_sequence_len(const unsigned char *s)
{
        size_t n;
        unsigned cp;

        if (s[0] < 0x80)
                return 1;
        if ((s[0] & 0xe0) == 0xc0) {
                n = 2;
                cp = s[0] & 0x1f;
        } else if ((s[0] & 0xf0) == 0xe0) {
                n = 3;
                cp = s[0] & 0x0f;
        } else if ((s[0] & 0xf8) == 0xf0) {
                n = 4;
                cp = s[0] & 0x07;
        } else {
                return 0;
        }
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        /* overlong forms, surrogates, beyond U+10FFFF */
        if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
                return 0;
        return n;
}

char *escape_text(const char *s, unsigned flags)
{
        static const char hex[] = "0123456789abcdef";
        const unsigned char *p = (const unsigned char *)s;
        char *out = malloc(strlen(s) * 4 + 1), *w = out;

        if (!out)
                return NULL;
        while (*p) {
                size_t n = utf8_sequence_len(p);
                const char *named = NULL;

                switch (*p) {
                case '\n': named = "\\n"; break;
                case '\t': named = "\\t"; break;
                case '\r': named = "\\r"; break;
                case '\a': named = "\\a"; break;
                case '\b': named = "\\b"; break;
                case '\f': named = "\\f"; break;
                case '\v': named = "\\v"; break;
                case '\\': named = flags & ESCAPE_BACKSLASH ? "\\\\" : NULL; break;
                }
                if (named) {
                        w = stpcpy(w, named);
                        p++;
                } else if (n == 1 && *p >= 0x20 && *p != 0x7f) {
                        *w++ = (char)*p++;
                } else if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0) {
                        /* a C1 control: CSI (U+009B) starts an escape sequence too */
                        for (int i = 0; i < 2; i++, p++) {
                                *w++ = '\\';
                                *w++ = 'x';
                                *w++ = hex[*p >> 4];
                                *w++ = hex[*p & 15];
                        }
                } else if (n > 1) {
                        memcpy(w, p, n);
                        w += n;
                        p += n;
                } else {
                        *w++ = '\\';
                        *w++ = 'x';
                        *w++ = hex[*p >> 4];
                        *w++ = hex[*p & 15];
                        p++;
                }
        }
        *w = '\0';
        return out;
}

uint64_t monotonic_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}
