/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vcpuspreadd: keep the vCPUs of each libvirt guest on disjoint host CPUs. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "cpulist.h"
#include "log.h"
#include "macro.h"
#include "manager.h"

enum {
        EXIT_OK = 0,
        EXIT_RUNTIME = 1,
        EXIT_USAGE = 2,
};

struct arguments {
        const char *connect_uri;
        const char *config_file;
        enum log_target log_target;
        int log_level;
        bool once;
        bool dry_run;
};

static void help(void)
{
        printf("Usage: vcpuspreadd [OPTIONS]\n"
               "\n"
               "Keep the vCPU threads of each libvirt/QEMU guest on disjoint host CPUs, so\n"
               "sibling vCPUs do not stack on one CPU and spin on each other's locks.\n"
               "\n"
               "  -c, --connect URI       libvirt URI (default qemu:///system)\n"
               "      --config FILE       configuration file (default %s/vcpuspreadd/vcpuspreadd.conf)\n"
               "      --once              discover, plan, apply once, then exit\n"
               "  -n, --dry-run           plan and log decisions, change nothing\n"
               "      --log-target TARGET auto (default), journal or console\n"
               "  -v, --verbose           log debug messages too\n"
               "  -h, --help              show this help\n"
               "      --version           show the version\n"
               "\n"
               "Exit status: 0 success, 1 runtime failure, 2 usage error.\n"
               "See vcpuspreadd(8).\n",
               SYSCONFDIR);
}

static int usage_error(const char *fmt, const char *arg)
{
        fprintf(stderr, "vcpuspreadd: ");
        fprintf(stderr, fmt, arg);
        fprintf(stderr, "\nTry 'vcpuspreadd --help'.\n");
        return -EINVAL;
}

static int parse_args(int argc, char **argv, struct arguments *a)
{
        enum { ARG_CONFIG = 0x100, ARG_ONCE, ARG_LOG_TARGET, ARG_VERSION };
        static const struct option options[] = {
                { "connect", required_argument, NULL, 'c' },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "once", no_argument, NULL, ARG_ONCE },
                { "dry-run", no_argument, NULL, 'n' },
                { "log-target", required_argument, NULL, ARG_LOG_TARGET },
                { "verbose", no_argument, NULL, 'v' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {}
        };
        int c, r;

        *a = (struct arguments){ .log_target = LOG_TARGET_AUTO, .log_level = LOG_INFO };
        while ((c = getopt_long(argc, argv, "c:nvh", options, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        if (!*optarg)
                                return usage_error("--connect needs a libvirt URI%s", "");
                        a->connect_uri = optarg;
                        break;
                case ARG_CONFIG: a->config_file = optarg; break;
                case ARG_ONCE: a->once = true; break;
                case 'n': a->dry_run = true; break;
                case ARG_LOG_TARGET:
                        r = log_target_from_string(optarg);
                        if (r < 0)
                                return usage_error("--log-target %s: expected auto, journal or console", optarg);
                        a->log_target = (enum log_target)r;
                        break;
                case 'v': a->log_level = LOG_DEBUG; break;
                case 'h': help(); return 0;
                case ARG_VERSION: printf("vcpuspreadd %s\n", PACKAGE_VERSION); return 0;
                default: return -EINVAL;  /* getopt said why */
                }
        }
        if (optind < argc)
                return usage_error("unexpected argument '%s'", argv[optind]);
        return 1;
}

int main(int argc, char **argv)
{
        struct arguments args;
        int r;

        r = parse_args(argc, argv, &args);
        if (r <= 0)
                return r < 0 ? EXIT_USAGE : EXIT_OK;

        log_setup(args.log_target, args.log_level);

        struct manager_settings settings = {
                .connect_uri = args.connect_uri,
                .reserved = NULL,
                .default_policy = POLICY_SPREAD,
                .resync_usec = 30 * 1000 * 1000ULL,
                .control_socket = CONTROL_SOCKET_DEFAULT,
                .dry_run = args.dry_run,
                .once = args.once,
        };
        plan_params_default(&settings.plan);

        _cleanup_(manager_freep) struct manager *m = NULL;
        r = manager_new(&settings, &m);
        if (r < 0)
                return EXIT_RUNTIME;
        return manager_run(m);
}
