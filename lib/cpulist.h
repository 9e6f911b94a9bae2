/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * CPU lists in the kernel's notation ("0-3,8,10-11"), held as hwloc bitmaps of
 * OS (Linux) CPU numbers.  hwloc's own list parser is lenient ("5-2" parses);
 * operators' input must be rejected precisely instead, hence our own parser.
 */

#include <stddef.h>
#include <hwloc.h>

/* Largest CPU number accepted: the kernel's NR_CPUS ceiling. */
#define CPULIST_MAX_CPU 8191u

/*
 * Parse @text into @out (cleared first).  On failure returns -EINVAL and, when
 * @err is non-NULL, writes a one-line reason such as
 * "range 5-2 is reversed" into @err (of @errlen bytes).  An empty or blank
 * string is an empty set.
 */
int cpulist_parse(const char *text, hwloc_bitmap_t out, char *err, size_t errlen);

/* Format @set as a cpulist; returns a malloc'ed string ("" for the empty set),
 * or NULL on allocation failure. */
char *cpulist_format(hwloc_const_bitmap_t set);
