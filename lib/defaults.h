/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Every built-in default, once.  The [Daemon] key table (config.c), the
 * daemon's and vcpuspreadctl's --help, the libvirt adapter and the control
 * socket read them from here; tests/check-defaults.sh fails when the shipped
 * conf/vcpuspreadd.conf or the man pages state another value.
 *
 * Format, which tests/check-defaults.sh reads: one key per line,
 *   #define DEFAULT_NAME "value"  / * Key= * /
 * The value is the text a configuration file would hold; config_init()
 * parses it like any other setting, and an empty assignment ("Key=") resets
 * the key to it.
 */

#define DEFAULT_CONNECT                 "qemu:///system"                 /* Connect= */
#define DEFAULT_SAMPLE_INTERVAL         "1s"                             /* SampleIntervalSec= */
#define DEFAULT_RESERVED_CPUS           ""                               /* ReservedCPUs= */
#define DEFAULT_POLICY                  "auto"                           /* DefaultPolicy= */
#define DEFAULT_MOVES_PER_INTERVAL      "4"                              /* MovesPerInterval= */
#define DEFAULT_HYSTERESIS              "0.1"                            /* Hysteresis= */
#define DEFAULT_LANE_WIDTH              "auto"                           /* LaneWidth= */
#define DEFAULT_LOAD_WINDOW             "5s"                             /* LoadWindowSec= */
#define DEFAULT_MIN_DWELL               "10s"                            /* MinDwellSec= */
#define DEFAULT_AUTO_WINDOW             "10s"                            /* AutoWindowSec= */
#define DEFAULT_STARVATION_WAIT         "100ms"                          /* StarvationWaitSec= */
#define DEFAULT_TASK_DELAY_ACCOUNTING   "no"                             /* TaskDelayAccounting= */
#define DEFAULT_CONTROL_SOCKET          "/run/vcpuspreadd/control.sock"  /* ControlSocket= */
#define DEFAULT_CONTROL_SOCKET_GROUP    ""                               /* ControlSocketGroup= */
#define DEFAULT_LOG_LEVEL               "info"                           /* LogLevel= */
#define DEFAULT_MODE                    "enforce"                        /* Mode= */
#define DEFAULT_METRICS_FILE            ""                               /* MetricsFile= */

/* Not configuration keys. */

/* The main configuration file below the build's sysconfdir (meson's
 * SYSCONFDIR in build-config.h, /etc in a package), and its drop-in
 * directory next to it. */
#define DEFAULT_CONFIG_SUBPATH          "vcpuspreadd/vcpuspreadd.conf"
#define DEFAULT_CONFIG_DROPIN_DIRNAME   "vcpuspreadd.conf.d"

/* How often the daemon lists the guests again, as a safety net for events
 * libvirt does not send. */
#define DEFAULT_RESYNC_USEC             (30 * 1000 * 1000ULL)
