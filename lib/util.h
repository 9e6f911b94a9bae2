/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Small pure helpers shared by lib/ and daemon/: the one-line reason that
 * every adapter hands back, one strict decimal parser and one UUID check.
 */

#include <stdbool.h>
#include <stddef.h>

/* Write a one-line reason into @buf (when @buf is not NULL) and return @r, so
 * an error path reads "return set_reason(err, errlen, -EINVAL, "...", ...);". */
int set_reason(char *buf, size_t len, int r, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

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
