/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vcpuspreadd: keep the vCPUs of each libvirt guest on disjoint host CPUs. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build-config.h"
#include "cpulist.h"
#include "config-load.h"
#include "topology.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "message-ids.h"

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
        bool observe;
        bool check_config;
};

static void help(void)
{
        printf("Usage: vcpuspreadd [OPTIONS]\n"
               "\n"
               "Keep the vCPU threads of each libvirt/QEMU guest on disjoint host CPUs, so\n"
               "sibling vCPUs do not stack on one CPU and spin on each other's locks.\n"
               "\n"
               "  -c, --connect URI       libvirt URI (default Connect= from the configuration,\n"
               "                          built in: " DEFAULT_CONNECT ")\n"
               "      --config FILE       configuration file (default " CONFIG_MAIN_PATH_DEFAULT ")\n"
               "      --check-config      validate the configuration, print it, exit 0 or 1\n"
               "      --once              discover, plan, apply once, then exit\n"
               "      --observe           sample, decide, log and export what it would do, change\n"
               "                          nothing (as Mode=observe)\n"
               "  -n, --dry-run           the same as --observe\n"
               "      --log-target TARGET auto (default), journal or console\n"
               "  -v, --verbose           log debug messages too\n"
               "  -h, --help              show this help\n"
               "      --version           show the version\n"
               "\n"
               "Exit status: 0 success, 1 runtime failure, 2 usage error.\n"
               "See vcpuspreadd(8).\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
        va_list ap;
        fprintf(stderr, "vcpuspreadd: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nTry 'vcpuspreadd --help'.\n");
        return -EINVAL;
}

static int parse_args(int argc, char **argv, struct arguments *a)
{
        enum { ARG_CONFIG = 0x100, ARG_ONCE, ARG_LOG_TARGET, ARG_VERSION, ARG_CHECK_CONFIG, ARG_OBSERVE };
        static const struct option options[] = {
                { "connect", required_argument, NULL, 'c' },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "once", no_argument, NULL, ARG_ONCE },
                { "check-config", no_argument, NULL, ARG_CHECK_CONFIG },
                { "dry-run", no_argument, NULL, 'n' },
                { "observe", no_argument, NULL, ARG_OBSERVE },
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
                                return usage_error("--connect needs a libvirt URI");
                        a->connect_uri = optarg;
                        break;
                case ARG_CONFIG: a->config_file = optarg; break;
                case ARG_ONCE: a->once = true; break;
                case ARG_CHECK_CONFIG: a->check_config = true; break;
                case 'n':
                case ARG_OBSERVE: a->observe = true; break;
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

/*
 * Load the configuration.  A missing default file means built-in defaults;
 * a file named with --config must exist.  Errors go to stderr (and the
 * journal when logging there): the daemon must not start on a config it
 * cannot read.
 */
static int load_config(const struct arguments *a, struct config *c)
{
        struct config_error err = {};
        int r;

        if (a->config_file && access(a->config_file, R_OK) < 0) {
                r = -errno;
                fprintf(stderr, "vcpuspreadd: %s: %s\n", a->config_file, strerror(errno));
                log_struct(LOG_ERR, r, MSGID_CONFIG, NULL, NULL, "%s: %m", a->config_file);
                return r;
        }
        r = config_load(a->config_file, NULL, c, &err);
        if (r < 0) {
                fprintf(stderr, "vcpuspreadd: %s\n", err.text);
                if (!isatty(STDERR_FILENO) || a->log_target == LOG_TARGET_JOURNAL)
                        log_struct(LOG_ERR, r, MSGID_CONFIG, NULL, NULL, "invalid configuration: %s", err.text);
        }
        return r;
}

static int check_config(const struct arguments *a)
{
        struct config c;
        _cleanup_topology_ struct topology *topo = NULL;
        _cleanup_bitmap_ hwloc_bitmap_t host = hwloc_bitmap_alloc();
        struct config_warnings warnings = {};
        struct config_error err = {};
        char msg[256];
        int r;

        if (load_config(a, &c) < 0)
                return EXIT_RUNTIME;
        r = topology_load_spec("host", &topo, msg, sizeof(msg));
        if (r >= 0 && host) {
                topology_usable(topo, NULL, host);
                r = config_check_cpus(&c, host, &warnings, &err);
                for (size_t i = 0; i < warnings.n; i++)
                        fprintf(stderr, "vcpuspreadd: warning: %s\n", warnings.lines[i]);
                config_warnings_done(&warnings);
                if (r < 0) {
                        fprintf(stderr, "vcpuspreadd: %s\n", err.text);
                        config_done(&c);
                        return EXIT_RUNTIME;
                }
        } else {
                fprintf(stderr, "vcpuspreadd: warning: %s; CPU lists not checked against this host\n", msg);
        }
        _cleanup_free_ char *text = config_format(&c);
        if (text)
                fputs(text, stdout);
        config_done(&c);
        return text ? EXIT_OK : EXIT_RUNTIME;
}

int main(int argc, char **argv)
{
        struct arguments args;
        struct config config;
        int r;

        r = parse_args(argc, argv, &args);
        if (r <= 0)
                return r < 0 ? EXIT_USAGE : EXIT_OK;

        /* Only the CPU topology matters here.  hwloc's GPU and PCI plugins
         * would pull OpenCL, X11 and libpciaccess into a daemon that runs
         * forever (measured: 1 MiB of RSS, 14 shared libraries).  An
         * operator's own setting wins. */
        setenv("HWLOC_PLUGINS_BLACKLIST", "hwloc_gl,hwloc_opencl,hwloc_pci,hwloc_cuda,hwloc_nvml,hwloc_rsmi,"
               "hwloc_levelzero,hwloc_xml_libxml", 0);

        if (args.check_config)
                return check_config(&args);

        log_setup(args.log_target, args.log_level);
        if (load_config(&args, &config) < 0)
                return EXIT_RUNTIME;

        struct manager_settings settings = {
                .connect_uri = args.connect_uri,
                .config_path = args.config_file,
                .resync_usec = DEFAULT_RESYNC_USEC,
                .observe = args.observe,
                .once = args.once,
                .verbose = args.log_level == LOG_DEBUG,
        };

        _cleanup_(manager_freep) struct manager *m = NULL;
        r = manager_new(&settings, &config, &m);
        if (r < 0) {
                config_done(&config);
                return EXIT_RUNTIME;
        }
        return manager_run(m);
}
