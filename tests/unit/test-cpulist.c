/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cpulist.h"
#include "macro.h"
#include "tap.h"

static void roundtrip(const char *in, const char *expect)
{
        _cleanup_bitmap_ hwloc_bitmap_t b = hwloc_bitmap_alloc();
        char err[128] = "";
        int r = cpulist_parse(in, b, err, sizeof(err));
        CHECK(r == 0, "parse '%s': %s", in, err);
        _cleanup_free_ char *s = cpulist_format(b);
        CHECK(s && strcmp(s, expect) == 0, "'%s' formatted as '%s', expected '%s'", in, s, expect);
}

static void rejects(const char *in, const char *msg)
{
        _cleanup_bitmap_ hwloc_bitmap_t b = hwloc_bitmap_alloc();
        char err[128] = "";
        int r = cpulist_parse(in, b, err, sizeof(err));
        CHECK(r == -EINVAL, "'%s' accepted", in);
        CHECK(strcmp(err, msg) == 0, "'%s': message '%s', expected '%s'", in, err, msg);
}

int main(void)
{
        roundtrip("0-3,8,10-11", "0-3,8,10-11");
        roundtrip("3,2,1,0", "0-3");
        roundtrip(" 1 - 2 ", "1-2");  /* spaces around numbers are tolerated */
        roundtrip("7", "7");
        roundtrip("", "");
        roundtrip("   ", "");
        roundtrip("0-8191", "0-8191");

        rejects("5-2", "range 5-2 is reversed");
        rejects("1,,2", "expected a CPU number at \",2\"");
        rejects("1,", "expected a CPU number at \"end of list\"");
        rejects("-1", "expected a CPU number at \"-1\"");
        rejects("a", "expected a CPU number at \"a\"");
        rejects("1;2", "unexpected \";\" in CPU list");
        rejects("8192", "CPU number too large (max 8191) at \"8192\"");
        rejects("99999999999999999999", "CPU number too large (max 8191) at \"99999999999999999999\"");
        rejects("1-", "expected a CPU number at \"end of list\"");
        return test_result();
}
