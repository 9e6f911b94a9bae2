/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The CPU list parser: whatever it accepts formats and parses back equal. */
#include <errno.h>
#include <stdio.h>

#include "cpulist.h"
#include "fuzz.h"
#include "macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_free_ char *text = fuzz_string(data, size);
        _cleanup_bitmap_ hwloc_bitmap_t set = hwloc_bitmap_alloc(), again = hwloc_bitmap_alloc();
        char err[256];

        if (cpulist_parse(text, set, err, sizeof(err)) == 0 && !hwloc_bitmap_iszero(set)) {
                _cleanup_free_ char *out = cpulist_format(set);
                if (!out || cpulist_parse(out, again, NULL, 0) != 0 || !hwloc_bitmap_isequal(set, again))
                        abort();
        }
        return 0;
}
