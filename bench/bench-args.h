/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Argument handling shared by the C benchmarks: --help prints the usage
 * text, a malformed number is a usage error (exit status 2) that names the
 * argument, instead of atoi() quietly turning "x" into 0.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* true (after printing USAGE to stdout) when argv holds -h or --help. */
static inline bool bench_wants_help(int argc, char **argv, const char *usage)
{
        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
                        fputs(usage, stdout);
                        return true;
                }
        }
        return false;
}

/*
 * argv[index] as a whole number in [min, max], or def when absent.  Returns
 * false after one line on stderr saying what was expected.
 */
static inline bool bench_arg_count(int argc, char **argv, int index, const char *name, unsigned long def,
                                   unsigned long min, unsigned long max, unsigned long *out)
{
        const char *s = index < argc ? argv[index] : NULL;
        char *end;

        if (!s) {
                *out = def;
                return true;
        }
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
                fprintf(stderr, "%s: %s must be a whole number from %lu to %lu, not '%s'\n",
                        program_invocation_short_name, name, min, max, s);
                return false;
        }
        *out = v;
        return true;
}
