/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Scope-bound cleanup helpers.  Only the handful the project needs. */

#include <stdlib.h>
#include <hwloc.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

static inline void freep(void *p) { free(*(void **)p); }
#define _cleanup_free_ _cleanup_(freep)

static inline void hwloc_bitmap_freep(hwloc_bitmap_t *b)
{
        if (*b)
                hwloc_bitmap_free(*b);
}
#define _cleanup_bitmap_ _cleanup_(hwloc_bitmap_freep)

/* Hand ownership out of a cleanup-scoped variable. */
#define TAKE_PTR(p) ({ __typeof__(p) _p = (p); (p) = NULL; _p; })
