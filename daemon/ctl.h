/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* vcpuspreadctl: exit statuses and the subcommands. */

enum {
        CTL_EXIT_OK = 0,
        CTL_EXIT_FAILURE = 1,   /* the daemon is unreachable, a check failed */
        CTL_EXIT_USAGE = 2,
};

/* Print "vcpuspreadctl: <message>" and return CTL_EXIT_USAGE. */
int ctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print "vcpuspreadctl: <message>" and return CTL_EXIT_FAILURE. */
int ctl_error(int error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int ctl_simulate(int argc, char **argv);
#include <stdbool.h>
#include <json-c/json.h>
int ctl_map_render(json_object *reply, bool colour);
/* status, map, plan and reload: one request to the daemon, @argv[0] names it. */
int ctl_daemon_command(int argc, char **argv);
