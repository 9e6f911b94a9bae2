/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* lib/util: the strict decimal parser, UUID checks, strip_view, string tables, set_reason. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "tap.h"
#include "util.h"

static void test_parse_ulong(void)
{
        unsigned long v = 7;

        CHECK(parse_ulong("0", 10, &v) == 0 && v == 0, "0");
        CHECK(parse_ulong("10", 10, &v) == 0 && v == 10, "10 at the bound");
        CHECK(parse_ulong("11", 10, &v) == -ERANGE, "11 above 10");
        CHECK(parse_ulong("9", 5, &v) == -ERANGE, "a digit above a small bound");
        CHECK(parse_ulong("4294967295", UINT_MAX, &v) == 0 && v == UINT_MAX, "UINT_MAX");
        CHECK(parse_ulong("4294967296", UINT_MAX, &v) == -ERANGE, "UINT_MAX + 1");
        CHECK(parse_ulong("99999999999999999999999", ULONG_MAX, &v) == -ERANGE, "overflow");
        static const char *const bad[] = { "", " 1", "1 ", "+1", "-1", "0x10", "1e3", "1.0", "a" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                CHECK(parse_ulong(bad[i], ULONG_MAX, &v) == -EINVAL, "'%s' is not a number", bad[i]);
        CHECK(parse_ulong(NULL, 1, &v) == -EINVAL, "NULL");
}

static void test_uuid(void)
{
        char c[37];

        CHECK(uuid_canonical("0B7D4A3E-5F1C-4C2A-9E8B-3F6D2A1C0E9F", c) &&
              strcmp(c, "0b7d4a3e-5f1c-4c2a-9e8b-3f6d2a1c0e9f") == 0, "dashed, upper case: %s", c);
        CHECK(uuid_canonical("0b7d4a3e5f1c4c2a9e8b3f6d2a1c0e9f", c) &&
              strcmp(c, "0b7d4a3e-5f1c-4c2a-9e8b-3f6d2a1c0e9f") == 0, "without dashes: %s", c);
        CHECK(!uuid_canonical("0b7d4a3e5-f1c-4c2a-9e8b-3f6d2a1c0e9f", c), "dash in the wrong place");
        CHECK(!uuid_canonical("0b7d4a3e-5f1c-4c2a-9e8b", c), "too short");
        CHECK(!uuid_canonical("0b7d4a3e-5f1c-4c2a-9e8b-3f6d2a1c0e9g", c), "not hex");
        CHECK(uuid_is_dashed("0b7d4a3e-5f1c-4c2a-9e8b-3f6d2a1c0e9f"), "dashed");
        CHECK(!uuid_is_dashed("0b7d4a3e5f1c4c2a9e8b3f6d2a1c0e9f"), "undashed is not the dashed form");
}

static void test_strip_view(void)
{
        size_t n;
        const char *s = strip_view(" \t 12 3\n ", &n);

        CHECK(n == 4 && strncmp(s, "12 3", n) == 0, "inner blanks kept: '%.*s'", (int)n, s);
        s = strip_view("   ", &n);
        CHECK(n == 0, "only blanks");
}

enum colour { RED, GREEN = 2, _COLOUR_MAX };
static const char *const colour_names[_COLOUR_MAX] = { [RED] = "red", [GREEN] = "green" };
const char *colour_to_string(enum colour c);
int colour_from_string(const char *s);
DEFINE_STRING_TABLE(colour, enum colour, colour_names)

static void test_string_table(void)
{
        CHECK(strcmp(colour_to_string(GREEN), "green") == 0, "to_string");
        CHECK(colour_to_string(1) == NULL && colour_to_string(_COLOUR_MAX) == NULL, "a hole and out of range");
        CHECK(colour_from_string("green") == GREEN && colour_from_string("red") == RED, "from_string");
        CHECK(colour_from_string("blue") == -EINVAL && colour_from_string(NULL) == -EINVAL, "unknown names");
}

static void test_set_reason(void)
{
        char buf[16] = "";

        CHECK(set_reason(buf, sizeof(buf), -EINVAL, "bad %d", 42) == -EINVAL && strcmp(buf, "bad 42") == 0,
              "returns the error and writes: %s", buf);
        CHECK(set_reason(NULL, 0, -ENOENT, "ignored") == -ENOENT, "no buffer");
}

static void test_escape_text(void)
{
        static const struct { const char *in; unsigned flags; const char *out; } cases[] = {
                { "web1", 0, "web1" },
                { "a\nerror: forged", 0, "a\\nerror: forged" },
                { "\x1b[31mred\x1b[0m", 0, "\\x1b[31mred\\x1b[0m" },
                { "tab\there\r", 0, "tab\\there\\r" },
                { "del\x7f", 0, "del\\x7f" },
                { "csi\xc2\x9b" "2J", 0, "csi\\xc2\\x9b2J" },         /* C1 CSI */
                { "\xc3\xbc" "n\xc3\xaf" "c\xc3\xb8" "d\xc3\xa9", 0, "\xc3\xbc" "n\xc3\xaf" "c\xc3\xb8" "d\xc3\xa9" },  /* UTF-8 kept */
                { "bad\xff\xc3", 0, "bad\\xff\\xc3" },            /* not UTF-8 */
                { "\xc0\xaf", 0, "\\xc0\\xaf" },                  /* overlong '/' */
                { "machine-qemu\\x2d1", 0, "machine-qemu\\x2d1" },
                { "machine-qemu\\x2d1", ESCAPE_BACKSLASH, "machine-qemu\\\\x2d1" },
                { "'q' \"q\" %n", 0, "'q' \"q\" %n" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *e = escape_text(cases[i].in, cases[i].flags);
                CHECK(e && strcmp(e, cases[i].out) == 0, "escape case %zu: got \"%s\", want \"%s\"", i, e,
                      cases[i].out);
                free(e);
        }
}

int main(void)
{
        test_parse_ulong();
        test_uuid();
        test_strip_view();
        test_string_table();
        test_set_reason();
        test_escape_text();
        return test_result();
}
