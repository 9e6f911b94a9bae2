/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vcpuspreadctl: look at and steer vcpuspreadd; simulate its decisions. */
#include "ctl.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "build-config.h"

static void print_error(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static void print_error(const char *fmt, va_list ap)
{
        fputs("vcpuspreadctl: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
}

int ctl_usage_error(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        print_error(fmt, ap);
        va_end(ap);
        return CTL_EXIT_USAGE;
}

int ctl_error(int error, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        print_error(fmt, ap);
        va_end(ap);
        return CTL_EXIT_FAILURE;
}

static void help(void)
{
        printf("Usage: vcpuspreadctl COMMAND [OPTIONS]\n"
               "\n"
               "Look at and steer vcpuspreadd, which keeps each guest's vCPUs on disjoint host CPUs.\n"
               "\n"
               "Commands:\n"
               "  status     guests, their vCPUs, CPUs, load and the last decision\n"
               "  map        the host topology with the vCPUs on each CPU\n"
               "  plan       what the daemon would change now, and why (changes nothing)\n"
               "  reload     make the daemon re-read its configuration\n"
               "  metrics    the daemon's metrics in the Prometheus text format\n"
               "  report     per guest: stacking, signals, what it did or would have done, modes\n"
               "  simulate   plan made-up guests on a topology, without any VM or daemon\n"
               "\n"
               "  -h, --help     show this help\n"
               "  --version      show the version\n"
               "\n"
               "Run 'vcpuspreadctl COMMAND --help' for a command's options.\n");
}

static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
} commands[] = {
        { "status", ctl_daemon_command },
        { "map", ctl_daemon_command },
        { "plan", ctl_daemon_command },
        { "reload", ctl_daemon_command },
        { "metrics", ctl_daemon_command },
        { "report", ctl_daemon_command },
        { "simulate", ctl_simulate },
};

int main(int argc, char **argv)
{
        if (argc < 2)
                return ctl_usage_error("missing command; see 'vcpuspreadctl --help'");
        if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
                help();
                return CTL_EXIT_OK;
        }
        if (strcmp(argv[1], "--version") == 0) {
                printf("vcpuspreadctl %s\n", PACKAGE_VERSION);
                return CTL_EXIT_OK;
        }
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (strcmp(argv[1], commands[i].name) == 0)
                        return commands[i].run(argc - 1, argv + 1);
        return ctl_usage_error("unknown command '%s'; see 'vcpuspreadctl --help'", argv[1]);
}
