/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Small helpers shared by lib/ and daemon/: the one-line reason that every
 * adapter hands back, one strict decimal parser, one UUID check, and the
 * monotonic clock (the only one that reads anything: no I/O, no state).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Write a one-line reason into @buf (when @buf is not NULL) and return @r, so
 * an error path reads "return set_reason(err, errlen, -EINVAL, "...", ...);". */
int set_reason(char *buf, size_t len, int r, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * An enum's names, as systemd's string tables: a table indexed by the enum
 * (holes are NULL) and its two lookups.  DEFINE_STRING_TABLE(log_target,
 * enum log_target, names) defines log_target_to_string() (NULL when out of
 * range) and log_target_from_string() (the value, or -EINVAL).
 */
int string_table_find(const char *const *table, size_t n, const char *s);
#define DEFINE_STRING_TABLE(name, type, table)                                          \
        const char *name##_to_string(type v)                                            \
        {                                                                               \
                return (size_t)v < sizeof(table) / sizeof((table)[0]) ? (table)[v] : NULL; \
        }                                                                               \
        int name##_from_string(const char *s)                                           \
        {                                                                               \
                return string_table_find(table, sizeof(table) / sizeof((table)[0]), s); \
        }

/* A whole decimal number from 0 to @max: digits only, no sign, blanks, hex
 * or exponent.  Returns 0, -EINVAL (not a number) or -ERANGE (above @max). */
int parse_ulong(const char *s, unsigned long max, unsigned long *out);

/* @s without leading and trailing white space, not copied: returns where it
 * starts and sets *@len to its length. */
const char *strip_view(const char *s, size_t *len);

/* The canonical lower-case form 8-4-4-4-12 of a UUID given with or without
 * dashes, in any case.  Returns false when @s is not a UUID. */
bool uuid_canonical(const char *s, char out[static 37]);

/* True when @s is a UUID in the dashed 8-4-4-4-12 form (any case), as
 * libvirt writes it. */
bool uuid_is_dashed(const char *s);

/*
 * @s made safe for a terminal or a one-line log, as systemd's cescape(): C0
 * control characters, DEL, C1 controls (U+0080-U+009F) and bytes that are
 * not UTF-8 become \n \t \r \a \b \f \v or \xNN; other UTF-8 is kept.
 * With ESCAPE_BACKSLASH a backslash becomes \\ as well, so the text can be
 * read back without doubt (CLI output); without it (whole log messages,
 * whose cgroup paths carry systemd's \x2d) backslashes stay as they are.
 * Returns a new string, or NULL when out of memory.
 */
enum { ESCAPE_BACKSLASH = 1 << 0 };
char *escape_text(const char *s, unsigned flags);
/* Length of the valid UTF-8 sequence at @s (1-4), or 0 when it is none. */
size_t utf8_sequence_len(const unsigned char *s);

/* CLOCK_MONOTONIC, in nanoseconds and in microseconds: the one clock the
 * daemon measures intervals and deadlines with. */
uint64_t monotonic_ns(void);
static inline uint64_t monotonic_usec(void)
{
        return monotonic_ns() / 1000;
}
