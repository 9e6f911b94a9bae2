/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's answers on the control socket: status, plan, reload. */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "build-config.h"
#include "cpulist.h"
#include "log.h"
#include "macro.h"
#include "manager-internal.h"
#include "manager-metrics.h"
#include "plan-json.h"

static json_object *json_cpulist(hwloc_const_bitmap_t set)
{
        _cleanup_free_ char *s = set ? cpulist_format(set) : NULL;
        return s ? json_object_new_string(s) : NULL;
}


static json_object *vcpu_status(struct manager *m, const struct managed_guest *g, const struct managed_vcpu *v)
{
        json_object *o = json_object_new_object();
        _cleanup_bitmap_ hwloc_bitmap_t aff = hwloc_bitmap_alloc();
        _cleanup_bitmap_ hwloc_bitmap_t cg = hwloc_bitmap_alloc();

        json_object_object_add(o, "vcpu", json_object_new_int((int)v->vcpu));
        json_object_object_add(o, "tid", json_object_new_int((int)v->tid));
        /* What the kernel says now, not what we last wrote: status must show
         * the truth even if someone else changed it. */
        if (aff && cg && vcpu_masks_read(&m->apply_env, v->tid, aff, cg) >= 0) {
                json_object_object_add(o, "cpus", json_cpulist(aff));
                json_object_object_add(o, "cgroup_cpus", json_cpulist(cg));
        } else {
                json_object_object_add(o, "cpus", NULL);
        }
        struct vcpu_input in = manager_vcpu_input(v, false);
        json_object_object_add(o, "load", json_object_new_double(vcpu_demand(&in, &m->plan_params)));
        json_object_object_add(o, "sampled", json_object_new_boolean(v->sampled));
        json_object_object_add(o, "wait_ms", json_object_new_double(v->wait_ms));
        if (v->last_reason[0]) {
                json_object_object_add(o, "last_reason", json_object_new_string(v->last_reason));
                json_object_object_add(o, "last_change", json_utc_time(v->last_change));
        }
        json_object *kvm = manager_kvm_vcpu_json(m, g, v);
        if (kvm)
                json_object_object_add(o, "kvm", kvm);
        return o;
}

/* Policy=auto: the mode, why, and the last interval's figures (struct guest_auto). */
static json_object *auto_status(const struct managed_guest *g)
{
        const struct guest_auto *a = &g->auto_state;
        json_object *o = json_object_new_object();

        json_object_object_add(o, "mode", json_object_new_string(adaptive_mode_to_string(a->mode)));
        json_object_object_add(o, "phase", json_object_new_string(adaptive_phase_to_string(a->ag.phase)));
        json_object_object_add(o, "active", json_object_new_boolean(a->active));
        json_object_object_add(o, "cosched", json_object_new_boolean(a->cosched));
        json_object_object_add(o, "ticked", json_object_new_boolean(a->ticked));
        json_object_object_add(o, "changes", json_object_new_int((int)a->ag.changes));
        json_object_object_add(o, "reason", json_object_new_string(a->reason[0] ? a->reason : "initial"));
        if (a->last_event != ADAPTIVE_EVENT_NONE)
                json_object_object_add(o, "event", json_object_new_string(adaptive_event_to_string(a->last_event)));
        if (a->text[0])
                json_object_object_add(o, "text", json_object_new_string(a->text));
        if (a->window_text[0] && a->mode == ADAPTIVE_KERNEL)
                json_object_object_add(o, "last_window", json_object_new_string(a->window_text));
        if (a->since)
                json_object_object_add(o, "since", json_utc_time(a->since));
        if (a->have_last) {
                json_object *l = json_object_new_object();
                json_object_object_add(l, "cpu_share", json_object_new_double(a->last.cpu_share));
                json_object_object_add(l, "busy", json_object_new_double(a->last.busy));
                json_object_object_add(l, "wait", json_object_new_double(a->last.wait));
                json_object_object_add(l, "samples", json_object_new_int((int)a->last.samples));
                json_object_object_add(l, "runnable_samples", json_object_new_int((int)a->last.runnable_samples));
                json_object_object_add(l, "stacked_samples", json_object_new_int((int)a->last.stacked_samples));
                json_object_object_add(l, "stacked_chance", json_object_new_double(a->last.stacked_chance));
                /* null: no fresh switch rate this interval (struct adaptive_input) */
                bool sw = !a->last.switches_unknown;
                json_object_object_add(l, "voluntary_hz", sw ? json_object_new_double(a->last.voluntary_hz) : NULL);
                json_object_object_add(l, "involuntary_hz", sw ? json_object_new_double(a->last.involuntary_hz) : NULL);
                json_object_object_add(l, "idle_forbidden", json_object_new_double(a->last.idle_forbidden));
                /* null: not known (no sample, or the guest wants no CPU) */
                json_object_object_add(l, "fair_share",
                                       a->last.fair_share > 0 ? json_object_new_double(a->last.fair_share) : NULL);
                json_object_object_add(l, "others_share", a->last.others_fair > 0 ?
                                       json_object_new_double(a->last.others_share) : NULL);
                json_object_object_add(l, "others_fair", a->last.others_fair > 0 ?
                                       json_object_new_double(a->last.others_fair) : NULL);
                json_object_object_add(o, "last_interval", l);
        }
        return o;
}

static json_object *guest_status(struct manager *m, const struct managed_guest *g)
{
        json_object *o = json_object_new_object();
        json_object *vcpus = json_object_new_array();

        json_object_object_add(o, "name", json_object_new_string(g->name));
        json_object_object_add(o, "uuid", json_object_new_string(g->uuid));
        json_object_object_add(o, "id", json_object_new_int(g->id));
        json_object_object_add(o, "policy", json_object_new_string(placement_policy_to_string(g->policy)));
        json_object_object_add(o, "state", json_object_new_string(guest_state_to_string(g->state)));
        json_object_object_add(o, "managed", json_object_new_boolean(g->state == GUEST_MANAGED));
        if (g->state_reason)
                json_object_object_add(o, "reason", json_object_new_string(g->state_reason));
        if (g->restriction)
                json_object_object_add(o, "restriction", json_cpulist(g->restriction));
        json_object_object_add(o, "qemu_pid", json_object_new_int((int)g->qemu_pid));
        if (g->policy == POLICY_AUTO)
                json_object_object_add(o, "auto", auto_status(g));
        for (size_t k = 0; k < g->n_vcpus; k++)
                json_object_array_add(vcpus, vcpu_status(m, g, &g->vcpus[k]));
        json_object_object_add(o, "vcpus", vcpus);
        return o;
}

static json_object *topology_json(const struct manager *m)
{
        json_object *cpus = json_object_new_array();
        for (size_t p = 0; p < m->topo->n_pus; p++) {
                const struct topo_pu *pu = &m->topo->pus[p];
                json_object *c = json_object_new_object();
                json_object_object_add(c, "cpu", json_object_new_int((int)pu->os_index));
                json_object_object_add(c, "core", json_object_new_int((int)pu->core));
                json_object_object_add(c, "l3", json_object_new_int((int)pu->l3));
                json_object_object_add(c, "numa", json_object_new_int((int)m->topo->numas[pu->numa].os_index));
                json_object_object_add(c, "package", json_object_new_int((int)pu->package));
                json_object_object_add(c, "usable", json_object_new_boolean(hwloc_bitmap_isset(m->usable, pu->os_index)));
                if (m->host_load && m->host_load[p].busy.primed) {
                        json_object_object_add(c, "busy", json_object_new_double(m->host_load[p].busy.value));
                        json_object_object_add(c, "steal", json_object_new_double(m->host_load[p].steal.value));
                }
                json_object_array_add(cpus, c);
        }
        return cpus;
}

static json_object *reply_ok(void)
{
        json_object *o = json_object_new_object();
        json_object_object_add(o, "ok", json_object_new_boolean(true));
        return o;
}

static json_object *reply_error(const char *msg)
{
        json_object *o = json_object_new_object();
        json_object_object_add(o, "ok", json_object_new_boolean(false));
        json_object_object_add(o, "error", json_object_new_string(msg));
        return o;
}

static json_object *control_status(struct manager *m)
{
        json_object *o = reply_ok();
        json_object *d = json_object_new_object();
        json_object *guests = json_object_new_array();

        json_object_object_add(d, "version", json_object_new_string(PACKAGE_VERSION));
        json_object_object_add(d, "pid", json_object_new_int((int)getpid()));
        json_object_object_add(d, "libvirt", json_object_new_string(m->lv ? lv_conn_state_text(m->lv) : "connecting"));
        json_object_object_add(d, "observe", json_object_new_boolean(m->observe));
        json_object_object_add(d, "dry_run", json_object_new_boolean(m->observe));      /* the old name */
        json_object_object_add(d, "moves", json_object_new_int64((int64_t)m->n_moves));
        /* A client (or a test) waits for these rather than for time to pass. */
        json_object_object_add(d, "resyncs", json_object_new_int64((int64_t)m->n_resyncs));
        json_object_object_add(d, "passes", json_object_new_int64((int64_t)m->n_passes));
        if (m->last_change[0])
                json_object_object_add(d, "last_change", json_object_new_string(m->last_change));
        json_object_object_add(d, "usable_cpus", json_cpulist(m->usable));
        json_object_object_add(d, "kvm_stats", manager_kvm_status_json(m));
        for (size_t i = 0; i < m->n_guests; i++)
                json_object_array_add(guests, guest_status(m, m->guests[i]));
        json_object_object_add(o, "daemon", d);
        json_object_object_add(o, "guests", guests);
        json_object_object_add(o, "cpus", topology_json(m));
        return o;
}

static json_object *control_plan(struct manager *m)
{
        _cleanup_(plan_inputs_done) struct plan_inputs in = {};
        struct plan plan;
        struct plan_checks checks;

        if (manager_compute_plan(m, false, &in, &plan) < 0)
                return reply_error("planning failed; see the daemon's log");
        placement_check(m->topo, m->usable, in.guests, in.n, &plan, &checks);
        json_object *o = plan_to_json(m->topo, m->usable, in.guests, in.n, &plan, &checks);
        if (o) {
                json_object_object_add(o, "ok", json_object_new_boolean(true));
                /* Exactly what the engine read: `simulate --inputs` plans from it. */
                json_object_object_add(o, "inputs", plan_inputs_to_json(m->usable, in.guests, in.n, &in.params));
                /* Refine the engine's reasons the way an applied move would be logged. */
                json_object *moves = NULL;
                json_object_object_get_ex(o, "moves", &moves);
                for (size_t k = 0; moves && k < plan.n_moves; k++) {
                        const struct plan_move *mv = &plan.moves[k];
                        const struct managed_guest *g = in.owner[mv->guest];
                        json_object *jm = json_object_array_get_idx(moves, k);
                        json_object_object_add(jm, "uuid", json_object_new_string(g->uuid));
                        json_object_object_add(jm, "tid", json_object_new_int((int)g->vcpus[mv->vcpu].tid));
                        json_object_object_add(jm, "reason",
                                json_object_new_string(move_reason(g, &g->vcpus[mv->vcpu], mv->reason)));
                }
        }
        plan_done(&plan);
        return o;
}

json_object *manager_control(void *userdata, const char *command, json_object *request,
                            const struct ucred *peer)
{
        struct manager *m = userdata;

        log_debug("control request: %.64s (uid %d, pid %d)", command, (int)peer->uid, (int)peer->pid);
        if (strcmp(command, "status") == 0)
                return control_status(m);
        if (strcmp(command, "plan") == 0)
                return control_plan(m);
        if (strcmp(command, "reload") == 0) {
                char err[512] = "";
                log_info("Reload asked on the control socket by uid %d (pid %d)", (int)peer->uid, (int)peer->pid);
                int r = manager_reload(m, err, sizeof(err));
                if (r < 0)
                        return reply_error(err[0] ? err : strerror(-r));
                json_object *o = reply_ok();
                json_object_object_add(o, "message", json_object_new_string("configuration reloaded"));
                return o;
        }
        json_object *o = manager_metrics_control(m, command, request);
        if (o)
                return o;
        char msg[192];
        snprintf(msg, sizeof(msg), "unknown command '%.64s': expected status, plan, reload, metrics or report",
                 command);
        return reply_error(msg);
}
