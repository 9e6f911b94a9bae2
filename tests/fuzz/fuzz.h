/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Each harness defines LLVMFuzzerTestOneInput().  Built with clang's
 * libFuzzer (-Dfuzzing=true) libFuzzer provides main(); otherwise
 * fuzz-main.c does, running every file (or every file of every directory)
 * named on the command line once: the seed corpus as a regression test.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* @data as a NUL-terminated string (inputs may hold NULs: cut there). */
static inline char *fuzz_string(const uint8_t *data, size_t size)
{
        char *s = malloc(size + 1);
        if (!s)
                abort();
        memcpy(s, data, size);
        s[size] = '\0';
        return s;
}
