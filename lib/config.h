/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The configuration model and its parser: systemd-style INI text with a
 * [Daemon] section and repeatable [Domain] sections (vcpuspreadd.conf(5)).
 *
 * Our own parser rather than inih: every error must carry file, line and key,
 * and Debian builds inih without line-number reporting.  This file only
 * parses text (config_parse_string); reading the files is the daemon's job
 * (daemon/config-load.c), so lib/ does no I/O and the tests feed text.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <hwloc.h>

#include "config-value.h"
#include "defaults.h"
#include "placement.h"

/* Where a setting was made, for messages about it after loading. */
struct config_origin {
        char *file;             /* as given to the loader; NULL = built-in default */
        unsigned line;
};

/* One [Domain] section.  A guest matches when every match key given matches. */
struct config_domain {
        char *name;             /* Name=: fnmatch(3) pattern, or NULL */
        char *uuid;             /* UUID=: canonical lower-case form, or NULL */
        bool policy_set;        /* false: DefaultPolicy= applies */
        enum placement_policy policy;
        hwloc_bitmap_t cpus;    /* CPUs=: NULL = every usable CPU */
        bool override;          /* Override=: take over guests with their own <vcpupin> */
        struct config_origin section;   /* the [Domain] line */
        struct config_origin cpus_origin;
};

struct config {
        char *connect;                  /* Connect=: libvirt URI */
        uint64_t sample_interval_usec;  /* SampleIntervalSec= */
        hwloc_bitmap_t reserved_cpus;   /* ReservedCPUs=: never NULL, may be empty */
        struct config_origin reserved_cpus_origin;
        enum placement_policy default_policy;   /* DefaultPolicy= */
        unsigned moves_per_interval;    /* MovesPerInterval=: rebalancing moves; 0 = no limit */
        double hysteresis;              /* Hysteresis=: gain a move must clear, in CPUs of load */
        char *control_socket;           /* ControlSocket=: absolute path */
        char *control_socket_group;     /* ControlSocketGroup=: NULL = owner root only */
        int log_level;                  /* LogLevel=: LOG_ERR .. LOG_DEBUG (syslog.h) */
        unsigned lane_width;            /* LaneWidth=: max CPUs per vCPU mask; 0 = auto */
        uint64_t load_window_usec;      /* LoadWindowSec=: EWMA time constant; 0 = none */
        uint64_t min_dwell_usec;        /* MinDwellSec=: per-vCPU minimum time between moves */
        bool task_delay_accounting;     /* TaskDelayAccounting=: may set kernel.task_delayacct=1 */
        uint64_t auto_window_usec;      /* AutoWindowSec=: Policy=auto's evaluation window and trial */
        uint64_t starvation_wait_usec;  /* StarvationWaitSec=: run-queue wait per second of
                                         * wall time above which a vCPU starves; 0 = off */
        bool observe;                   /* Mode=observe: decide, log and export; change nothing */
        char *metrics_file;             /* MetricsFile=: absolute path, NULL = none */

        /* [Domain] sections in match order: later files' before earlier
         * files', within a file top to bottom.  The first match wins. */
        size_t n_domains;
        struct config_domain *domains;

        /* Files that were read, in order (the main file only if it existed). */
        size_t n_files;
        char **files;
};

struct config_error {
        char file[1024];        /* path as given; "" when not about a file */
        unsigned line;          /* 0 when not about one line */
        char message[1024];     /* "Policy=sprad: expected spread, spread-cores or ignore" */
        char text[2100];        /* "vcpuspreadd.conf:14: Policy=sprad: expected ..." */
};

/* Fill @err (when not NULL): "file:line: message", "file: message" or
 * "message" when @file is NULL or @line is 0. */
void config_error_set(struct config_error *err, const char *file, unsigned line, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* Built-in defaults.  Returns 0 or -ENOMEM; release with config_done(). */
int config_init(struct config *c);
void config_done(struct config *c);

/*
 * Apply the settings in @text (a whole file's content, named @filename in
 * messages) on top of @c.  [Domain] sections of @text are matched before the
 * ones already in @c.  Returns 0, -EINVAL with @err filled, or -ENOMEM.  On
 * failure @c is valid but partly updated: discard it.
 */
int config_parse_string(struct config *c, const char *text, const char *filename,
                        struct config_error *err);

/* The first [Domain] matching the guest, or NULL (defaults apply).  @name or
 * @uuid may be NULL when unknown; a section with that key then cannot match. */
const struct config_domain *config_match_domain(const struct config *c, const char *name,
                                                const char *uuid);

/* The policy for a guest matched to @d (NULL = no section matched). */
enum placement_policy config_domain_policy(const struct config *c, const struct config_domain *d);

struct config_warnings {
        size_t n;
        char **lines;           /* "vcpuspreadd.conf:20: CPUs=0-7: CPUs 2-7 are not usable ..." */
};

void config_warnings_done(struct config_warnings *w);

/*
 * Check ReservedCPUs= and every CPUs= against the host.  @host_cpus: the CPUs
 * the daemon may give out before ReservedCPUs= is taken away (online and
 * allowed; topology_usable(t, NULL, ...)).  CPUs outside the usable set
 * (host minus reserved) are warnings, appended to @warnings; a ReservedCPUs=
 * that leaves nothing, or a CPUs= with no usable CPU at all, is an error:
 * returns -EINVAL with @err filled (the warnings found so far are kept).
 * Returns 0 or -ENOMEM otherwise.
 */
int config_check_cpus(const struct config *c, hwloc_const_bitmap_t host_cpus,
                      struct config_warnings *warnings, struct config_error *err);

/* The effective configuration as INI text that config_parse_string() reads
 * back to the same configuration (for --check-config).  Malloc'ed; NULL on
 * allocation failure. */
char *config_format(const struct config *c);
