/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The guest table: what the daemon knows about each running guest, from
 * libvirt, the configuration and its vCPU threads. */
#include "manager-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cpulist.h"
#include "macro.h"
#include "message-ids.h"

static const char *const guest_state_names[] = {
        [GUEST_MANAGED] = "managed",
        [GUEST_OPERATOR] = "operator-pinned",
        [GUEST_IGNORED] = "ignored",
        [GUEST_NO_THREADS] = "no-threads",
        [GUEST_NO_CPUS] = "no-usable-cpus",
};

const char *guest_state_to_string(enum guest_state s)
{
        return (size_t)s < ELEMENTSOF(guest_state_names) ? guest_state_names[s] : "unknown";
}

struct log_domain guest_log(const struct managed_guest *g)
{
        return (struct log_domain){ .name = g->name, .uuid = g->uuid };
}

void vcpu_forget_observed(struct managed_vcpu *v)
{
        if (v->observed)
                hwloc_bitmap_free(v->observed);
        v->observed = NULL;
}

static void vcpus_free(struct managed_vcpu *v, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                if (v[i].current)
                        hwloc_bitmap_free(v[i].current);
                vcpu_forget_observed(&v[i]);
                vcpu_auto_done(&v[i].auto_state);
        }
        free(v);
}

void guest_free(struct managed_guest *g)
{
        if (!g)
                return;
        free(g->name);
        free(g->state_reason);
        if (g->restriction)
                hwloc_bitmap_free(g->restriction);
        if (g->xml_restriction)
                hwloc_bitmap_free(g->xml_restriction);
        if (g->cgroup_allowed)
                hwloc_bitmap_free(g->cgroup_allowed);
        free(g->xml_pinned);
        free(g->runtime_pinned);
        vcpus_free(g->vcpus, g->n_vcpus);
        guest_auto_done(&g->auto_state);
        free(g);
}

struct managed_guest *guest_find(struct manager *m, const char *uuid, size_t *index)
{
        for (size_t i = 0; i < m->n_guests; i++)
                if (strcasecmp(m->guests[i]->uuid, uuid) == 0) {
                        if (index)
                                *index = i;
                        return m->guests[i];
                }
        return NULL;
}

void guest_remove(struct manager *m, size_t index, const char *why)
{
        struct managed_guest *g = m->guests[index];
        struct log_domain d = guest_log(g);

        log_struct(LOG_INFO, 0, MSGID_DOMAIN_GONE, &d, NULL, "%s: %s, forgetting it", g->name, why);
        manager_metrics_guest_gone(m, g);
        guest_free(g);
        memmove(&m->guests[index], &m->guests[index + 1], (m->n_guests - index - 1) * sizeof(*m->guests));
        m->n_guests--;
}

void guest_set_state(struct managed_guest *g, enum guest_state s, const char *reason)
{
        g->state = s;
        free(g->state_reason);
        g->state_reason = reason ? strdup(reason) : NULL;
}

/*
 * Decide the guest's policy, restriction and whether the operator owns it,
 * from its live XML and the configuration.  Logs a change of ownership.
 */
void guest_apply_config(struct manager *m, struct managed_guest *g, bool created)
{
        const struct config_domain *match = config_match_domain(&m->config, g->name, g->uuid);
        enum guest_state old = g->state;
        struct log_domain d = guest_log(g);
        const char *why;

        g->policy = config_domain_policy(&m->config, match);
        g->override = match && match->override;

        if (g->restriction)
                hwloc_bitmap_free(g->restriction);
        g->restriction = NULL;
        if (g->xml_restriction || (match && match->cpus) || g->cgroup_allowed) {
                g->restriction = hwloc_bitmap_alloc_full();
                if (g->restriction && g->xml_restriction)
                        hwloc_bitmap_and(g->restriction, g->restriction, g->xml_restriction);
                if (g->restriction && g->cgroup_allowed)
                        hwloc_bitmap_and(g->restriction, g->restriction, g->cgroup_allowed);
                if (g->restriction && match && match->cpus)
                        hwloc_bitmap_and(g->restriction, g->restriction, match->cpus);
        }

        why = g->xml_pinned ?: g->runtime_pinned;
        if (why && !g->override)
                guest_set_state(g, GUEST_OPERATOR, why);
        else if (g->policy == POLICY_IGNORE)
                guest_set_state(g, GUEST_IGNORED, "policy ignore");
        else if (created || old == GUEST_OPERATOR || old == GUEST_IGNORED)
                guest_set_state(g, GUEST_MANAGED, NULL);

        if (!created && old == g->state)
                return;
        if (g->state == GUEST_OPERATOR) {
                log_struct(LOG_NOTICE, 0, MSGID_BACKED_OFF, &d, NULL,
                           "%s: pinned by the operator (%s); leaving it alone", g->name, g->state_reason);
        } else if (g->state == GUEST_IGNORED) {
                log_struct(LOG_INFO, 0, MSGID_BACKED_OFF, &d, NULL,
                           "%s: policy ignore; leaving it alone (its load still counts)", g->name);
        } else if (created || old == GUEST_OPERATOR || old == GUEST_IGNORED) {
                _cleanup_free_ char *r = g->restriction ? cpulist_format(g->restriction) : NULL;
                log_struct(LOG_INFO, 0, MSGID_DOMAIN_FOUND, &d, NULL, "%s: managing it (policy %s%s%s%s)", g->name,
                           placement_policy_to_string(g->policy), r ? ", CPUs " : "", r ? r : "",
                           g->override && why ? ", overriding the operator's pins" : "");
        }
}

/*
 * Take over what libvirt says about a running domain.  Creates the guest on
 * first sight.  Returns the guest, or NULL on allocation failure.
 */
struct managed_guest *guest_update(struct manager *m, const struct lv_domain *dom)
{
        struct managed_guest *g = guest_find(m, dom->uuid, NULL);
        bool created = false;


        if (g && g->id != dom->id) {
                /* Same UUID, new run: nothing we knew about its threads holds. */
                vcpus_free(g->vcpus, g->n_vcpus);
                g->vcpus = NULL;
                g->n_vcpus = 0;
                g->is_new = true;
        }
        if (!g) {
                struct managed_guest **n = realloc(m->guests, (m->n_guests + 1) * sizeof(*n));
                if (!n)
                        return NULL;
                m->guests = n;
                g = calloc(1, sizeof(*g));
                if (!g)
                        return NULL;
                memcpy(g->uuid, dom->uuid, sizeof(g->uuid));
                g->is_new = true;
                m->guests[m->n_guests++] = g;
                created = true;
        }

        char *name = strdup(dom->name ? dom->name : "");
        if (!name)
                return NULL;
        free(g->name);
        g->name = name;
        g->id = dom->id;
        g->kvm = dom->kvm;
        g->seen = true;

        free(g->xml_pinned);
        g->xml_pinned = dom->operator_pinned ? strdup(dom->operator_reason ?: "pinning in its live XML") : NULL;
        if (g->xml_restriction)
                hwloc_bitmap_free(g->xml_restriction);
        g->xml_restriction = dom->restriction ? hwloc_bitmap_dup(dom->restriction) : NULL;

        guest_apply_config(m, g, created);
        return g;
}

/* Re-read which thread runs which vCPU, and each thread's current mask. */
int guest_refresh_threads(struct manager *m, struct managed_guest *g)
{
        struct vcpu_threads t = {};
        struct log_domain d = guest_log(g);
        int r;

        r = vcpu_threads_find(&m->threads_src, g->uuid, &t);
        if (r < 0 || t.n == 0) {
                vcpu_threads_done(&t);
                return r < 0 ? r : -ENOENT;
        }
        /*
         * A guest that just started has no vCPUs in libvirt's status file
         * until libvirt has finished setting it up, and that setup resets the
         * vCPUs' affinity (seen here: a guest placed from thread names alone
         * was back on every CPU a moment later).  So wait for the status
         * file a while; fall back to thread names only after that.
         */
        if (t.origin == VCPU_THREADS_THREAD_NAMES && g->is_new && g->thread_retries < THREAD_RETRY_MAX) {
                vcpu_threads_done(&t);
                return -EAGAIN;
        }
        if (t.origin == VCPU_THREADS_THREAD_NAMES && !g->name_fallback_logged)
                log_struct(LOG_NOTICE, 0, MSGID_THREADS_BY_NAME, &d, NULL,
                           "%s: libvirt's status file could not be read; found its vCPU threads by name",
                           g->name);
        g->name_fallback_logged = t.origin == VCPU_THREADS_THREAD_NAMES;

        struct managed_vcpu *vcpus = calloc(t.n, sizeof(*vcpus));
        if (!vcpus) {
                vcpu_threads_done(&t);
                return -ENOMEM;
        }
        for (size_t i = 0; i < t.n; i++) {
                struct managed_vcpu *nv = &vcpus[i];
                struct managed_vcpu *old = NULL;

                for (size_t j = 0; j < g->n_vcpus; j++)
                        if (g->vcpus[j].vcpu == t.threads[i].vcpu && g->vcpus[j].tid == t.threads[i].tid &&
                            g->vcpus[j].start_time == t.threads[i].start_time)
                                old = &g->vcpus[j];
                if (old) {
                        *nv = *old;
                        old->current = NULL;    /* moved into nv */
                        old->observed = NULL;   /* likewise */
                        old->auto_state.st.tid = 0;     /* its open files too */
                } else {
                        nv->vcpu = t.threads[i].vcpu;
                        nv->tid = t.threads[i].tid;
                        nv->start_time = t.threads[i].start_time;
                        nv->boot = g->is_new;   /* unsampled: the engine assumes its load */
                        nv->is_new = !g->is_new;
                }
                if (!nv->current)
                        nv->current = hwloc_bitmap_alloc();
                if (!nv->current) {
                        r = -ENOMEM;
                        break;
                }
                r = vcpu_masks_read(&m->apply_env, nv->tid, nv->current, NULL);
                if (r < 0) {
                        /* Vanished between listing and reading: the next event resyncs. */
                        log_debug_errno(r, "%s vcpu%u (tid %d): cannot read its affinity: %m", g->name,
                                        nv->vcpu, (int)nv->tid);
                        hwloc_bitmap_copy(nv->current, m->topo->complete);
                }
                r = 0;
        }
        if (r < 0) {
                vcpus_free(vcpus, t.n);
                vcpu_threads_done(&t);
                return r;
        }
        vcpus_free(g->vcpus, g->n_vcpus);
        g->vcpus = vcpus;
        g->n_vcpus = t.n;
        if (guest_read_cgroup_allowed(m, g) > 0)
                guest_apply_config(m, g, false);
        g->qemu_pid = t.qemu_pid;
        vcpu_threads_done(&t);
        return 0;
}
