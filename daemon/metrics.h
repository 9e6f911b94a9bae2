/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The daemon's metrics in the Prometheus text exposition format (version
 * 0.0.4), as node_exporter's textfile collector reads them: one # HELP and
 * one # TYPE line per family, its samples together, no timestamps.  Names
 * carry the vcpuspread_ prefix and base units (seconds, ratios 0..1),
 * counters end in _total.  Label values are escaped as the format requires
 * (backslash, double quote, newline).  vcpuspreadd-metrics(7) lists them.
 *
 * Formatting is pure (the daemon's figures and the history come in, text
 * goes out); metrics_write_file() is the one function here that touches the
 * file system.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "history.h"

struct metrics_count {
        const char *label;              /* the label value: a state, an error kind, a reason */
        uint64_t value;
};

#define METRICS_PLAN_BUCKETS 10
/* Upper bounds of the plan-duration histogram, seconds (+Inf implied). */
extern const double metrics_plan_bounds[METRICS_PLAN_BUCKETS];

struct metrics_daemon {
        const char *version;
        bool observe;
        bool libvirt_connected;
        const struct metrics_count *guests;     /* guests by state */
        size_t n_guest_states;
        uint64_t vcpus_managed;
        time_t config_loaded;           /* wall clock of the configuration in force */
        bool config_reload_ok;          /* the last load or reload succeeded */
        uint64_t plan_buckets[METRICS_PLAN_BUCKETS];    /* per bound, not cumulative */
        uint64_t plan_count;
        double plan_sum;
        const struct metrics_count *apply_errors;       /* by kind */
        size_t n_apply_errors;
        const struct metrics_count *moves, *observed_moves;     /* by reason, the daemon's lifetime */
        size_t n_moves, n_observed_moves;
        uint64_t passes;
};

/* Write the label value @s escaped for the text format. */
void metrics_escape(FILE *f, const char *s);

/*
 * The whole exposition: the daemon's families, then per guest that is
 * running (@h's present guests) and per vCPU.  @now_ns: the history's clock,
 * for the windowed ratios.  Returns 0 or -ENOMEM; *@text is malloc'ed.
 */
int metrics_format(const struct metrics_daemon *d, const struct history *h, uint64_t now_ns, char **text,
                   size_t *len);

/*
 * Replace @path with @text atomically: a temporary file in the same
 * directory (mode 0644), written, flushed, renamed over @path.  A reader
 * sees the old file or the new one, never a part.  Returns 0 or a negative
 * errno with a one-line reason in @err.
 */
int metrics_write_file(const char *path, const char *text, size_t len, char *err, size_t errlen);
