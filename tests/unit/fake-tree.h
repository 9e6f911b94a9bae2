/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Building fake /proc and cgroupfs trees for the adapters' unit tests. */

#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>

/* mkdir -p; errors show up as failed checks on the files written below. */
static inline void mkdir_p(const char *path)
{
        char buf[PATH_MAX];

        snprintf(buf, sizeof(buf), "%s", path);
        for (char *p = buf + 1; *p; p++) {
                if (*p == '/') {
                        *p = '\0';
                        mkdir(buf, 0755);
                        *p = '/';
                }
        }
        mkdir(buf, 0755);
}
