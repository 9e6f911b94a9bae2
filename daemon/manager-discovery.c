/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Discovery: which guests run and which threads are their vCPUs, from a
 * full resync, libvirt's events and libvirt's status files (vCPU hotplug). */
#include "manager-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>

#include "macro.h"
#include "message-ids.h"

/* libvirt rewrites a status file a few times in a burst on hotplug. */
#define STATUSFILE_DEBOUNCE_USEC (20 * 1000ULL)

static void manager_arm_thread_retry(struct manager *m);

static void guest_discover_threads(struct manager *m, struct managed_guest *g)
{
        int r = guest_refresh_threads(m, g);
        struct log_domain d = guest_log(g);

        if (r >= 0) {
                if (g->state == GUEST_NO_THREADS)
                        guest_set_state(g, GUEST_MANAGED, NULL);
                g->thread_retries = 0;
                return;
        }
        if (r == -ENOMEM) {
                log_error_errno(r, "out of memory");
                return;
        }
        /* Right after the start event QEMU may not have all vCPU threads yet. */
        if (g->thread_retries++ < THREAD_RETRY_MAX) {
                if (g->state == GUEST_MANAGED)
                        g->state = GUEST_NO_THREADS;
                manager_arm_thread_retry(m);
                return;
        }
        if (g->thread_retries == THREAD_RETRY_MAX + 1)
                log_struct(LOG_WARNING, r, MSGID_THREADS_NOT_FOUND, &d, NULL,
                           "%s: cannot find its vCPU threads (%m); leaving it alone until the next resync",
                           g->name);
        guest_set_state(g, GUEST_NO_THREADS, "vCPU threads not found");
}

static int on_thread_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct manager *m = userdata;
        bool again = false;

        for (size_t i = 0; i < m->n_guests; i++) {
                struct managed_guest *g = m->guests[i];
                if (g->state == GUEST_NO_THREADS && g->thread_retries <= THREAD_RETRY_MAX) {
                        guest_discover_threads(m, g);
                        again = true;
                }
        }
        if (again)
                manager_schedule_plan(m);
        return 0;
}

static void manager_arm_thread_retry(struct manager *m)
{
        uint64_t now;
        sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        if (m->retry_timer) {
                int enabled = SD_EVENT_OFF;
                sd_event_source_get_enabled(m->retry_timer, &enabled);
                if (enabled != SD_EVENT_OFF)
                        return;
                sd_event_source_set_time(m->retry_timer, now + THREAD_RETRY_USEC);
                sd_event_source_set_enabled(m->retry_timer, SD_EVENT_ONESHOT);
                return;
        }
        sd_event_add_time(m->event, &m->retry_timer, CLOCK_MONOTONIC, now + THREAD_RETRY_USEC, 0,
                          on_thread_retry, m);
}

/* Full resync: every running domain from libvirt, then plan. */
int manager_resync(struct manager *m)
{
        struct lv_domain *doms = NULL;
        size_t n = 0;
        int r;

        r = lv_list_domains(m->lv, &doms, &n);
        if (r < 0) {
                m->resync_failed = true;
                return r == -ENOTCONN ? r : log_warning_errno(r, "cannot list libvirt domains: %m");
        }
        m->resync_failed = false;

        for (size_t i = 0; i < m->n_guests; i++)
                m->guests[i]->seen = false;
        for (size_t i = 0; i < n; i++) {
                struct managed_guest *g = guest_update(m, &doms[i]);
                if (!g) {
                        r = log_error_errno(-ENOMEM, "out of memory");
                        continue;
                }
                guest_discover_threads(m, g);
        }
        for (size_t i = m->n_guests; i-- > 0;)
                if (!m->guests[i]->seen)
                        guest_remove(m, i, "no longer running");
        for (size_t i = 0; i < n; i++)
                lv_domain_done(&doms[i]);
        free(doms);
        r = manager_plan_and_apply(m);
        if (r >= 0)
                m->n_resyncs++;
        return r;
}

/* ---- libvirt callbacks -------------------------------------------------- */

static void on_lv_connected(void *userdata)
{
        struct manager *m = userdata;
        if (m->settings.once)
                return;  /* manager_run_once does the one pass itself */
        /* The adapter already logged the connection. */
        manager_resync(m);
        manager_ready(m, "first placement applied");
}

static void on_lv_disconnected(void *userdata)
{
        struct manager *m = userdata;
        /* Pins stay as they are; nothing to undo.  Resync on reconnect. */
        manager_ready(m, "waiting for libvirt");
        manager_update_status(m);
}

static void on_lv_domain_event(void *userdata, const char *uuid, enum lv_domain_event ev, const char *detail)
{
        struct manager *m = userdata;
        size_t index;
        struct managed_guest *g = guest_find(m, uuid, &index);

        if (ev == LV_DOMAIN_STOPPED) {
                if (g)
                        guest_remove(m, index, detail ? detail : "stopped");
                return;
        }

        struct lv_domain dom = {};
        int r = lv_get_domain(m->lv, uuid, &dom);
        if (r == -ENOENT)
                return;  /* gone again already */
        if (r < 0) {
                log_warning_errno(r, "cannot look up domain %s after its %s event: %m", uuid,
                                  detail ? detail : "start");
                m->resync_failed = true;
                return;
        }
        g = guest_update(m, &dom);
        lv_domain_done(&dom);
        if (!g) {
                log_error_errno(-ENOMEM, "out of memory");
                return;
        }
        if (g->is_new && !g->start_event_usec)
                sd_event_now(m->event, CLOCK_MONOTONIC, &g->start_event_usec);
        guest_discover_threads(m, g);
        manager_schedule_plan(m);
}

static void on_lv_vcpu_pinned(void *userdata, const char *uuid, unsigned vcpu, const char *cpulist)
{
        struct manager *m = userdata;
        struct managed_guest *g = guest_find(m, uuid, NULL);
        char reason[96];

        if (!g || g->runtime_pinned)
                return;
        snprintf(reason, sizeof(reason), "the operator pinned vcpu%u to %s", vcpu, cpulist ? cpulist : "?");
        g->runtime_pinned = strdup(reason);
        /* The pin lands in the live XML, so after a restart the whole guest
         * is the operator's anyway; backing off from all of it now keeps the
         * daemon's behaviour the same either way. */
        guest_apply_config(m, g, false);
}

const struct lv_callbacks manager_lv_callbacks = {
        .connected = on_lv_connected,
        .disconnected = on_lv_disconnected,
        .domain_event = on_lv_domain_event,
        .vcpu_pinned = on_lv_vcpu_pinned,
};

/* ---- status files: vCPU hotplug ---------------------------------------- */

static int on_statusfile_settled(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct manager *m = userdata;
        bool changed = false;

        for (size_t i = 0; i < m->n_guests; i++) {
                struct managed_guest *g = m->guests[i];
                size_t before = g->n_vcpus;
                if (g->state != GUEST_MANAGED && g->state != GUEST_NO_THREADS)
                        continue;
                guest_discover_threads(m, g);
                if (g->n_vcpus != before) {
                        struct log_domain d = guest_log(g);
                        log_struct(LOG_INFO, 0, MSGID_VCPU_COUNT, &d, NULL, "%s: now has %zu vCPU%s (was %zu)",
                                   g->name, g->n_vcpus, g->n_vcpus == 1 ? "" : "s", before);
                        changed = true;
                }
        }
        if (changed)
                manager_schedule_plan(m);
        return 0;
}

static int on_statusfile_changed(sd_event_source *s, const struct inotify_event *ev, void *userdata)
{
        struct manager *m = userdata;
        uint64_t now;

        if (!ev->len || !vcpu_threads_is_status_file(ev->name))
                return 0;
        sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        if (!m->statusfile_debounce)
                return sd_event_add_time(m->event, &m->statusfile_debounce, CLOCK_MONOTONIC,
                                         now + STATUSFILE_DEBOUNCE_USEC, 0, on_statusfile_settled, m) < 0 ? 0 : 0;
        sd_event_source_set_time(m->statusfile_debounce, now + STATUSFILE_DEBOUNCE_USEC);
        sd_event_source_set_enabled(m->statusfile_debounce, SD_EVENT_ONESHOT);
        return 0;
}


void manager_watch_status_files(struct manager *m)
{
        const char *status_dir = vcpu_threads_status_dir(&m->threads_src);
        int r = sd_event_add_inotify(m->event, &m->inotify_source, status_dir,
                                     IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE, on_statusfile_changed, m);
        if (r < 0)
                /* Without it hotplug is noticed only at the periodic resync. */
                log_warning_errno(r, "cannot watch %s for vCPU hotplug (%m); relying on the periodic resync",
                                  status_dir);
}
