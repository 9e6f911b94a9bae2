/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The manager's hooks into the history (history.h) and the metrics
 * (metrics.h), in manager-metrics.c.  Each is one call from the manager's
 * files; none changes the host, and none fails the caller (an allocation
 * failure costs a figure, not a pass).
 */

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <json-c/json.h>

struct manager;
struct managed_guest;
struct managed_vcpu;

/* Once per sampling interval, after the pass: the vCPU state tick (stacking),
 * the switch counters, the history, and MetricsFile= rewritten. */
void manager_metrics_interval(struct manager *m);
/* A guest that is going away: out of the metrics from the next write on. */
void manager_metrics_guest_gone(struct manager *m, const struct managed_guest *g);
/* A move of @v: applied (@error 0, or observed when m->observe), or refused
 * by the host (@error < 0).  @text: "vcpu1 0-1 -> 1 (sibling-conflict)". */
void manager_metrics_move(struct manager *m, const struct managed_guest *g, const struct managed_vcpu *v,
                          const char *reason, const char *text, int error);
/* The engine's time for one pass. */
void manager_metrics_plan_time(struct manager *m, uint64_t usec);
/* The configuration was (re)loaded, or a reload failed. */
void manager_metrics_config(struct manager *m, bool ok);
void manager_metrics_free(struct manager *m);

/* The control socket's "metrics" and "report" (NULL: not one of them). */
json_object *manager_metrics_control(struct manager *m, const char *command, json_object *request);
