/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CPU hotplug: the online CPUs read on every sample tick (one small sysfs
 * file), and when they change the topology is loaded again, the usable
 * CPUs recomputed, every vCPU's mask re-read and the guests re-planned, so
 * no vCPU keeps an offline CPU as its only one and a CPU that comes online
 * is used.
 *
 * cgroup v1 takes an offline CPU out of every cpuset below the root for
 * good: afterwards libvirt's machine cpuset, and every guest started under
 * it, lack that CPU even when it is back.  The daemon cannot place a vCPU
 * where its parent cpuset forbids (the kernel refuses with EACCES), so it
 * plans each guest within what the cpuset above its vCPUs allows, and says
 * in the journal which cpuset lost CPUs that are online again.
 */
#include "manager-internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpulist.h"
#include "fileio.h"
#include "macro.h"
#include "message-ids.h"

#define CPUS_ONLINE "/sys/devices/system/cpu/online"

static int read_trimmed(const char *path, char **out)
{
        size_t len;
        int r = read_file_full(path, 64 * 1024, out, &len);

        if (r < 0)
                return r;
        while (len > 0 && ((*out)[len - 1] == '\n' || (*out)[len - 1] == ' '))
                (*out)[--len] = '\0';
        return 0;
}

static int read_cpulist(const char *path, hwloc_bitmap_t out)
{
        _cleanup_free_ char *text = NULL;
        int r = read_trimmed(path, &text);

        if (r < 0)
                return r;
        return cpulist_parse(text, out, NULL, 0);
}

/* The cgroup directory of @tid's cpuset, and its version. */
static int vcpu_dir(struct manager *m, pid_t tid, struct vcpu_cgroup *cg)
{
        return vcpu_cgroup_find(&m->apply_env, tid, cg);
}

int guest_read_cgroup_allowed(struct manager *m, struct managed_guest *g)
{
        _cleanup_bitmap_ hwloc_bitmap_t allowed = hwloc_bitmap_alloc();
        struct vcpu_cgroup cg = {};
        char path[PATH_MAX];
        char *slash;
        int r;

        if (!allowed || g->n_vcpus == 0 || m->observe)
                return 0;
        r = vcpu_dir(m, g->vcpus[0].tid, &cg);
        if (r < 0)
                return 0;
        slash = strrchr(cg.dir, '/');
        if (slash)
                *slash = '\0';
        snprintf(path, sizeof(path), "%s/%s", cg.dir, cg.version == 1 ? "cpuset.effective_cpus" : "cpuset.cpus.effective");
        r = read_cpulist(path, allowed);
        vcpu_cgroup_done(&cg);
        if (r < 0 || hwloc_bitmap_iszero(allowed))
                return 0;
        bool limits = !hwloc_bitmap_isincluded(m->usable, allowed);
        if (!limits) {
                if (!g->cgroup_allowed)
                        return 0;
                hwloc_bitmap_free(g->cgroup_allowed);
                g->cgroup_allowed = NULL;
                return 1;
        }
        if (g->cgroup_allowed && hwloc_bitmap_isequal(g->cgroup_allowed, allowed))
                return 0;
        if (g->cgroup_allowed)
                hwloc_bitmap_free(g->cgroup_allowed);
        g->cgroup_allowed = TAKE_PTR(allowed);
        return 1;
}

/* Each cpuset above a vCPU of a guest (not the root) that lacks CPUs of
 * @back, which just came online: said once per directory per change. */
static void report_shrunk_cpusets(struct manager *m, hwloc_const_bitmap_t back)
{
        _cleanup_bitmap_ hwloc_bitmap_t cpus = hwloc_bitmap_alloc();
        _cleanup_bitmap_ hwloc_bitmap_t missing = hwloc_bitmap_alloc();
        char said[16][PATH_MAX];
        size_t n_said = 0;

        if (!cpus || !missing)
                return;
        for (size_t i = 0; i < m->n_guests; i++) {
                struct managed_guest *g = m->guests[i];
                struct vcpu_cgroup cg = {};

                if (g->n_vcpus == 0 || vcpu_dir(m, g->vcpus[0].tid, &cg) < 0)
                        continue;
                /* From the vCPU's cgroup up to, not including, the root. */
                for (char *slash; (slash = strrchr(cg.dir, '/')) && slash != cg.dir;) {
                        char path[PATH_MAX], parent[PATH_MAX];
                        bool dup = false;

                        snprintf(path, sizeof(path), "%s/cpuset.cpus", cg.dir);
                        *slash = '\0';
                        snprintf(parent, sizeof(parent), "%s/cpuset.cpus", cg.dir);
                        if (access(parent, F_OK) < 0)
                                break;  /* @path is the root's */
                        *slash = '/';
                        if (read_cpulist(path, cpus) < 0) {
                                *slash = '\0';
                                continue;
                        }
                        hwloc_bitmap_andnot(missing, back, cpus);
                        for (size_t k = 0; k < n_said; k++)
                                dup |= strcmp(said[k], path) == 0;
                        if (!hwloc_bitmap_iszero(missing) && !dup) {
                                _cleanup_free_ char *miss = cpulist_format(missing);
                                _cleanup_free_ char *has = cpulist_format(cpus);
                                log_struct(LOG_WARNING, 0, MSGID_DAEMON_STATE, NULL, NULL,
                                           "%s lacks CPU %s, which is online again (cgroup v1 removes a CPU that goes offline from every cpuset for good); "
                                           "guests under it cannot use it and new guests inherit \"%s\": the daemon places within it, restore it by hand",
                                           path, miss ?: "?", has ?: "?");
                                if (n_said < ELEMENTSOF(said))
                                        snprintf(said[n_said++], PATH_MAX, "%s", path);
                        }
                        *slash = '\0';
                }
                vcpu_cgroup_done(&cg);
        }
}

static int reload_topology(struct manager *m)
{
        struct topology *t = NULL;
        char err[512];
        int r = topology_load_spec("host", &t, err, sizeof(err));

        if (r < 0) {
                log_error_errno(r, "cannot reload the host topology: %s", err);
                return r;
        }
        _cleanup_bitmap_ hwloc_bitmap_t usable = hwloc_bitmap_alloc();
        if (!usable || topology_usable(t, m->config.reserved_cpus, usable) < 0) {
                log_error("after the CPU change ReservedCPUs= leaves no CPU for guests; keeping the old topology");
                topology_free(t);
                return -ENOSPC;
        }
        struct host_cpu_load *hl = calloc(t->n_pus, sizeof(*hl));
        struct host_cpu_counters *hc = calloc(t->n_pus, sizeof(*hc));
        if (!hl || !hc) {
                free(hl);
                free(hc);
                topology_free(t);
                return log_error_errno(-ENOMEM, "out of memory");
        }
        /* Dense indices change with the PUs: host loads start again. */
        free(m->host_load);
        free(m->host_counters);
        m->host_load = hl;
        m->host_counters = hc;
        topology_free(m->topo);
        m->topo = t;
        hwloc_bitmap_copy(m->usable, usable);
        return 0;
}

/*
 * The kernel changes affinities behind the daemon's back: at CPU hotplug,
 * and when a cpuset above a thread is written (6.2+ restores the mask the
 * thread asked for).  Each vCPU's mask is read again on every tick (one
 * sched_getaffinity each), so the engine plans from what is, not from what
 * was last written.
 */
static void refresh_masks(struct manager *m)
{
        _cleanup_bitmap_ hwloc_bitmap_t now = hwloc_bitmap_alloc();

        if (!now)
                return;
        for (size_t i = 0; i < m->n_guests; i++) {
                struct managed_guest *g = m->guests[i];
                for (size_t k = 0; k < g->n_vcpus; k++) {
                        struct managed_vcpu *v = &g->vcpus[k];
                        if (vcpu_masks_read(&m->apply_env, v->tid, now, NULL) < 0 || hwloc_bitmap_iszero(now) ||
                            hwloc_bitmap_isequal(now, v->current))
                                continue;
                        /* A co-scheduled guest's masks change every turn,
                         * by the daemon's own co-scheduler: not news. */
                        if (!g->auto_state.cosched) {
                                _cleanup_free_ char *was = cpulist_format(v->current), *is = cpulist_format(now);
                                log_debug("%s vcpu%u (tid %d): affinity changed outside the daemon: %s -> %s",
                                          g->name, v->vcpu, (int)v->tid, was ?: "?", is ?: "?");
                        }
                        hwloc_bitmap_copy(v->current, now);
                        vcpu_forget_observed(v);
                }
        }
}

/* Guests held inside a shrunk cpuset: has someone restored it?  Only those
 * guests are read, so a host without the trap reads nothing here. */
static void recheck_limited(struct manager *m)
{
        bool changed = false;

        for (size_t i = 0; i < m->n_guests; i++) {
                struct managed_guest *g = m->guests[i];
                if (!g->cgroup_allowed || guest_read_cgroup_allowed(m, g) <= 0)
                        continue;
                _cleanup_free_ char *now = g->cgroup_allowed ? cpulist_format(g->cgroup_allowed) : NULL;
                struct log_domain d = guest_log(g);
                log_struct(LOG_INFO, 0, MSGID_DAEMON_STATE, &d, NULL,
                           "%s: the cpuset above its vCPUs now allows %s; re-planning", g->name,
                           now ? now : "every usable CPU");
                guest_apply_config(m, g, false);
                changed = true;
        }
        if (changed)
                manager_schedule_plan(m);
}

void manager_check_cpus(struct manager *m)
{
        _cleanup_free_ char *text = NULL;
        _cleanup_bitmap_ hwloc_bitmap_t before = hwloc_bitmap_alloc();
        _cleanup_bitmap_ hwloc_bitmap_t now = hwloc_bitmap_alloc();
        _cleanup_bitmap_ hwloc_bitmap_t back = hwloc_bitmap_alloc();

        if (!before || !now || !back || read_trimmed(CPUS_ONLINE, &text) < 0)
                return;
        if (!m->cpus_online) {
                m->cpus_online = TAKE_PTR(text);
                return;
        }
        if (strcmp(m->cpus_online, text) == 0) {
                refresh_masks(m);
                recheck_limited(m);
                return;
        }
        if (cpulist_parse(m->cpus_online, before, NULL, 0) < 0 || cpulist_parse(text, now, NULL, 0) < 0)
                return;
        hwloc_bitmap_andnot(back, now, before);
        log_struct(LOG_NOTICE, 0, MSGID_DAEMON_STATE, NULL, NULL,
                   "online CPUs changed from %s to %s; reloading the topology and re-planning every guest",
                   m->cpus_online, text);
        free(m->cpus_online);
        m->cpus_online = TAKE_PTR(text);
        if (reload_topology(m) < 0)
                return;

        /* What the kernel did to each vCPU's masks, not what we last wrote:
         * a thread whose only CPU went offline shows an empty affinity. */
        for (size_t i = 0; i < m->n_guests; i++) {
                struct managed_guest *g = m->guests[i];
                for (size_t k = 0; k < g->n_vcpus; k++) {
                        struct managed_vcpu *v = &g->vcpus[k];
                        if (vcpu_masks_read(&m->apply_env, v->tid, v->current, NULL) < 0 ||
                            hwloc_bitmap_iszero(v->current))
                                hwloc_bitmap_copy(v->current, m->topo->complete);
                        vcpu_forget_observed(v);
                        v->retry_after_usec = 0;        /* refusals may be over */
                }
                if (guest_read_cgroup_allowed(m, g) >= 0)
                        guest_apply_config(m, g, false);
                if (g->state == GUEST_NO_CPUS)
                        guest_set_state(g, GUEST_MANAGED, NULL);
        }
        if (!hwloc_bitmap_iszero(back))
                report_shrunk_cpusets(m, back);
        manager_schedule_plan(m);
}
