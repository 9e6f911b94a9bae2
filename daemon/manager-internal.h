/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What the manager's files share among themselves; nothing outside daemon/manager*.c. */

#include "log.h"
#include "manager.h"
#include "history.h"
#include "manager-metrics.h"

/* How long to wait for a started guest's vCPU threads to show up, and how often. */
#define THREAD_RETRY_USEC (100 * 1000ULL)
#define THREAD_RETRY_MAX 20

/* manager-guests.c: the guest table */
struct log_domain guest_log(const struct managed_guest *g);
/* Drop what observing assumed of @v's affinity: the plan starts from the
 * real one again (Mode=observe ended, or the affinity changed under us). */
void vcpu_forget_observed(struct managed_vcpu *v);
void guest_free(struct managed_guest *g);
struct managed_guest *guest_find(struct manager *m, const char *uuid, size_t *index);
void guest_remove(struct manager *m, size_t index, const char *why);
void guest_set_state(struct managed_guest *g, enum guest_state s, const char *reason);
void guest_apply_config(struct manager *m, struct managed_guest *g, bool created);
struct managed_guest *guest_update(struct manager *m, const struct lv_domain *dom);
int guest_refresh_threads(struct manager *m, struct managed_guest *g);

/* manager-plan.c: one pass, inputs -> engine -> applied moves -> log */
int manager_plan_and_apply(struct manager *m);
void manager_schedule_plan(struct manager *m);
void manager_update_status(struct manager *m);

/* manager-discovery.c: resync, libvirt's callbacks, status files */
extern const struct lv_callbacks manager_lv_callbacks;
/* Ask libvirt for every running domain; the resync itself runs when the
 * answer comes.  0, or -ENOTCONN / -EBUSY (one is pending already: it is
 * repeated when that one is done). */
int manager_resync(struct manager *m);
void manager_watch_status_files(struct manager *m);
/* The host's online CPUs changed (or may have): reload the topology,
 * re-plan, say so.  manager.c */
void manager_check_cpus(struct manager *m);
/* Read what the cpuset above @g's vCPU cgroups allows into g->cgroup_allowed
 * (NULL when it allows every usable CPU).  1 when that changed, else 0.
 * manager-cpus.c */
int guest_read_cgroup_allowed(struct manager *m, struct managed_guest *g);

/* manager-sample.c */
int manager_start_sampling(struct manager *m);

/* manager-auto.c: Policy=auto */
int manager_auto_start(struct manager *m);
void manager_auto_free(struct manager *m);
void manager_auto_reload(struct manager *m);
void manager_auto_interval(struct manager *m);
void manager_auto_after_plan(struct manager *m);
void manager_auto_guest_input(const struct managed_guest *g, struct guest_input *gi, struct vcpu_input *v);
void vcpu_auto_done(struct vcpu_auto *a);
void guest_auto_done(struct guest_auto *a);

/* manager-kvm.c: KVM's per-vCPU counters for kvm guests */
/* Once per Policy=auto interval: fetch when due and some managed guest is kvm. */
void manager_kvm_interval(struct manager *m);
/* @v's KVM rates into @s when they are fresh; @s->kvm stays false otherwise. */
void manager_kvm_sample(const struct manager *m, const struct managed_vcpu *v, struct adaptive_vcpu_sample *s);
/* The "kvm" object of @v in status, or NULL unless its guest is managed and kvm. */
json_object *manager_kvm_vcpu_json(const struct manager *m, const struct managed_guest *g,
                                   const struct managed_vcpu *v);
/* @v's sums for the history and the metrics. */
struct history_kvm manager_kvm_history(const struct managed_guest *g, const struct managed_vcpu *v);
/* The daemon's "kvm_stats" in status: fetches so far. */
json_object *manager_kvm_status_json(const struct manager *m);
void manager_kvm_free(struct manager *m);

/* manager.c */
void manager_ready(struct manager *m, const char *why);
