/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A minimal test harness: CHECK() records a failure with file:line and keeps
 * going, so one run shows every broken property; main returns test_result().
 */

#include <stdio.h>

static int test_failures;
static int test_checks;

#define CHECK(cond, ...)                                                              \
        do {                                                                          \
                test_checks++;                                                        \
                if (!(cond)) {                                                        \
                        test_failures++;                                              \
                        fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
                        fprintf(stderr, __VA_ARGS__);                                 \
                        fputc('\n', stderr);                                          \
                }                                                                     \
        } while (0)

static inline int test_result(void)
{
        fprintf(stderr, "%d checks, %d failed\n", test_checks, test_failures);
        return test_failures ? 1 : (test_checks ? 0 : 1);
}
