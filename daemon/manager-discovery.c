/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Discovery: which guests run and which threads are their vCPUs, from a
 * full resync, libvirt's events and libvirt's status files (vCPU hotplug). */
#include "manager-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

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

/* Full resync: every running domain from libvirt, then plan.  The listing
 * runs on the libvirt worker; on_domains_listed() does the rest. */
static void on_domains_listed(void *userdata, int r, struct lv_domain *doms, size_t n)
{
        struct manager *m = userdata;

        m->resync_pending = false;
        if (r < 0) {
                m->resync_failed = true;
                if (r != -ENOTCONN)
                        log_warning_errno(r, "cannot list libvirt domains: %s", lv_conn_last_error(m->lv));
                return;
        }
        m->resync_failed = false;

        /* The status directory read once for all guests (linear), not once
         * per guest. */
        if (m->status_index) {
                int q = status_index_rebuild(m->status_index);
                if (q < 0 && q != -ENOENT)
                        log_debug_errno(q, "cannot read the status directory: %m");
        }
        for (size_t i = 0; i < m->n_guests; i++)
                m->guests[i]->seen = false;
        for (size_t i = 0; i < n; i++) {
                struct managed_guest *g = guest_update(m, &doms[i]);
                if (!g) {
                        log_error_errno(-ENOMEM, "out of memory");
                        continue;
                }
                guest_discover_threads(m, g);
        }
        for (size_t i = m->n_guests; i-- > 0;)
                if (!m->guests[i]->seen)
                        guest_remove(m, i, "no longer running");
        lv_domains_free(doms, n);
        if (manager_plan_and_apply(m) >= 0)
                m->n_resyncs++;
        manager_ready(m, "first placement applied");
        if (m->resync_again) {
                m->resync_again = false;
                (void) manager_resync(m);
        }
}

int manager_resync(struct manager *m)
{
        int r;

        if (m->resync_pending) {
                m->resync_again = true;
                return -EBUSY;
        }
        r = lv_list_domains_async(m->lv, on_domains_listed, m);
        if (r == -EBUSY) {
                m->resync_again = true;
                return r;
        }
        if (r < 0) {
                m->resync_failed = true;
                return r == -ENOTCONN ? r : log_warning_errno(r, "cannot ask libvirt for its domains: %m");
        }
        m->resync_pending = true;
        return 0;
}

/* ---- libvirt callbacks -------------------------------------------------- */

static void on_lv_connected(void *userdata)
{
        struct manager *m = userdata;

        /* The adapter already logged the connection; ready comes with the
         * first placement (on_domains_listed). */
        manager_update_status(m);
        manager_resync(m);
}

static void on_lv_disconnected(void *userdata)
{
        struct manager *m = userdata;
        /* Pins stay as they are; nothing to undo.  Resync on reconnect. */
        m->resync_pending = false;
        manager_ready(m, "waiting for libvirt");
        manager_update_status(m);
}

static void on_lv_state_changed(void *userdata)
{
        struct manager *m = userdata;

        /* An unresponsive libvirtd at start must not hold READY=1 back: the
         * service manager would time the start out and restart us into the
         * same hang.  The adapter logged the change. */
        if (lv_conn_unresponsive(m->lv, NULL, NULL))
                manager_ready(m, "libvirt is unresponsive, waiting for it");
        manager_update_status(m);
}

static void on_lv_domain_event(void *userdata, const struct lv_domain_event_info *ev)
{
        struct manager *m = userdata;
        size_t index;
        struct managed_guest *g = guest_find(m, ev->uuid, &index);
        const char *detail = ev->detail && *ev->detail ? ev->detail : NULL;

        if (ev->event == LV_DOMAIN_STOPPED) {
                if (g)
                        guest_remove(m, index, detail ? detail : "stopped");
                return;
        }
        if (!ev->dom) {
                if (ev->error == -ENOENT)
                        return;  /* gone again already */
                log_warning_errno(ev->error, "cannot look up domain %s after its %s event: %s", ev->uuid,
                                  detail ? detail : "start", ev->error_text ?: "");
                m->resync_failed = true;
                return;
        }
        g = guest_update(m, ev->dom);
        if (!g) {
                log_error_errno(-ENOMEM, "out of memory");
                return;
        }
        /* Latency counts from libvirt's event, the lookup included. */
        if (g->is_new && !g->start_event_usec)
                g->start_event_usec = ev->received_usec;
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
        .state_changed = on_lv_state_changed,
        .domain_event = on_lv_domain_event,
        .vcpu_pinned = on_lv_vcpu_pinned,
};

/* ---- status files: vCPU hotplug ---------------------------------------- */

/* Re-discover the guests whose status file changed, after the burst. */
static int on_statusfile_settled(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct manager *m = userdata;
        bool changed = false;

        for (size_t i = 0; i < m->n_guests; i++) {
                struct managed_guest *g = m->guests[i];
                size_t before = g->n_vcpus;
                if (!g->status_changed)
                        continue;
                g->status_changed = false;
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

static void arm_statusfile_debounce(struct manager *m)
{
        uint64_t now;

        sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        if (!m->statusfile_debounce) {
                if (sd_event_add_time(m->event, &m->statusfile_debounce, CLOCK_MONOTONIC,
                                      now + STATUSFILE_DEBOUNCE_USEC, 0, on_statusfile_settled, m) < 0)
                        log_warning("cannot arm the status-file timer; the periodic resync catches up");
                return;
        }
        sd_event_source_set_time(m->statusfile_debounce, now + STATUSFILE_DEBOUNCE_USEC);
        sd_event_source_set_enabled(m->statusfile_debounce, SD_EVENT_ONESHOT);
}

/* The file said something new about @uuid's guest. */
static void status_changed_for(struct manager *m, const char *uuid)
{
        struct managed_guest *g = *uuid ? guest_find(m, uuid, NULL) : NULL;

        if (!g)
                return;
        if (g->state == GUEST_NO_THREADS && g->thread_retries <= THREAD_RETRY_MAX) {
                /* A guest that just started waits for exactly this (its vCPUs
                 * in the file): no need to wait for the burst to end. */
                guest_discover_threads(m, g);
                if (g->state == GUEST_MANAGED)
                        manager_schedule_plan(m);
                return;
        }
        g->status_changed = true;
        arm_statusfile_debounce(m);
}

static void statusdir_lost(struct manager *m, const char *why);

static int on_statusfile_changed(sd_event_source *s, const struct inotify_event *ev, void *userdata)
{
        struct manager *m = userdata;
        char before[37], after[37];
        int r;

        if (ev->mask & IN_Q_OVERFLOW) {
                /* Events were lost: nothing short of reading everything again holds. */
                log_struct(LOG_NOTICE, 0, MSGID_DAEMON_STATE, NULL, NULL,
                           "inotify queue on %s overflowed; resyncing everything",
                           vcpu_threads_status_dir(&m->threads_src));
                if (m->status_index)
                        status_index_invalidate(m->status_index);
                (void) manager_resync(m);
                return 0;
        }
        if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) {
                statusdir_lost(m, "it was removed");
                return 0;
        }
        if (!ev->len || !vcpu_threads_is_status_file(ev->name) || !m->status_index)
                return 0;
        r = status_index_update(m->status_index, ev->name, before, after);
        if (r < 0) {
                log_debug_errno(r, "cannot re-read status file %s: %m", ev->name);
                return 0;
        }
        if (r == 0)
                return 0;
        status_changed_for(m, before);
        if (strcmp(before, after) != 0)
                status_changed_for(m, after);
        return 0;
}

/* Watching an ancestor until the status directory exists. */
static int on_statusdir_ancestor(sd_event_source *s, const struct inotify_event *ev, void *userdata)
{
        struct manager *m = userdata;

        if (!(ev->mask & (IN_CREATE | IN_MOVED_TO | IN_IGNORED | IN_Q_OVERFLOW)))
                return 0;
        /* Something appeared on the way: try the directory (or a nearer
         * ancestor) again; this source goes (sd-event frees it after its
         * dispatch). */
        manager_watch_status_files(m);
        return 0;
}

/* Watch the nearest existing ancestor of the status directory for it to
 * appear; 0 or negative errno. */
static int watch_for_statusdir(struct manager *m)
{
        _cleanup_free_ char *dir = strdup(vcpu_threads_status_dir(&m->threads_src));
        int r = -ENOENT;

        if (!dir)
                return -ENOMEM;
        for (char *slash; (slash = strrchr(dir, '/'));) {
                if (slash == dir)
                        slash[1] = '\0';
                else
                        *slash = '\0';
                r = sd_event_add_inotify(m->event, &m->statusdir_wait, dir,
                                         IN_CREATE | IN_MOVED_TO | IN_ONLYDIR | IN_DELETE_SELF | IN_MOVE_SELF,
                                         on_statusdir_ancestor, m);
                if (r >= 0 || r != -ENOENT || slash == dir)
                        break;
        }
        if (r >= 0)
                log_debug("waiting for %s to appear (watching %s)", vcpu_threads_status_dir(&m->threads_src), dir);
        return r;
}

static void statusdir_lost(struct manager *m, const char *why)
{
        const char *status_dir = vcpu_threads_status_dir(&m->threads_src);

        log_struct(LOG_NOTICE, 0, MSGID_DAEMON_STATE, NULL, NULL,
                   "%s: %s; watching for it to come back (vCPU hotplug is seen at the periodic resync meanwhile)",
                   status_dir, why);
        m->inotify_source = sd_event_source_disable_unref(m->inotify_source);
        if (m->status_index)
                status_index_invalidate(m->status_index);
        manager_watch_status_files(m);
}

void manager_watch_status_files(struct manager *m)
{
        const char *status_dir = vcpu_threads_status_dir(&m->threads_src);
        bool was_waiting = m->statusdir_wait != NULL || m->n_resyncs > 0;
        int r;

        if (!m->status_index && status_index_new(&m->threads_src, &m->status_index) < 0) {
                log_error_errno(-ENOMEM, "out of memory");
                return;
        }
        m->threads_src.index = m->status_index;
        m->statusdir_wait = sd_event_source_disable_unref(m->statusdir_wait);
        if (m->inotify_source)
                return;
        r = sd_event_add_inotify(m->event, &m->inotify_source, status_dir,
                                 IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM |
                                 IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR,
                                 on_statusfile_changed, m);
        if (r >= 0) {
                m->statusdir_said = false;
                m->statusdir_tries = 0;
                /* Before libvirt's events in an iteration: a start event
                 * finds its status file already indexed. */
                (void) sd_event_source_set_priority(m->inotify_source, SD_EVENT_PRIORITY_IMPORTANT);
                (void) sd_event_source_set_description(m->inotify_source, "status-files");
                if (was_waiting) {
                        log_struct(LOG_INFO, 0, MSGID_DAEMON_STATE, NULL, NULL,
                                   "%s is there now; watching it for vCPU hotplug", status_dir);
                        (void) manager_resync(m);
                }
                return;
        }
        if (r == -ENOENT && watch_for_statusdir(m) >= 0) {
                /* It may have appeared between the two (mkdir -p): then the
                 * ancestor's watch came too late to see it. */
                if (access(status_dir, F_OK) == 0 && ++m->statusdir_tries < 10) {
                        manager_watch_status_files(m);
                        return;
                }
                if (!m->statusdir_said)
                        log_struct(LOG_NOTICE, 0, MSGID_DAEMON_STATE, NULL, NULL,
                                   "%s does not exist yet; watching for it to appear", status_dir);
                m->statusdir_said = true;
                m->statusdir_tries = 0;
                return;
        }
        /* Without it hotplug is noticed only at the periodic resync. */
        log_warning_errno(r, "cannot watch %s for vCPU hotplug (%m); relying on the periodic resync",
                          status_dir);
}
