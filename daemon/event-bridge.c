/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvirt's event loop (virEventRegisterImpl) mapped onto sd-event, so the
 * daemon has one loop.  A libvirt watch is an io source, a libvirt timeout a
 * time source.
 *
 * libvirt calls these functions from whichever thread it runs in: the loop
 * thread (callbacks, the manager's own calls) and the libvirt worker
 * (libvirt-worker.c), whose virConnectOpen adds the connection's socket
 * and whose calls switch its watch off and on again.  sd-event is not
 * thread-safe, so every record lives under one mutex, and only the loop
 * thread touches sd-event sources: a change made from another thread is
 * marked dirty and the loop is woken (an eventfd) to apply it, which is what
 * libvirt's own poll loop does (it wakes its poll thread through a pipe).
 * Callbacks and free callbacks run on the loop thread only.
 *
 * libvirt requires that the free callback handed to add* is never called from
 * within remove*: it may hold a lock the free function takes.  So removal
 * disconnects the sd-event source and runs the free callback (and frees our
 * record) from a one-shot defer source on a later iteration.
 */
#include "libvirt.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "log.h"
#include "util.h"

struct bridge_handle {
        int id;
        int fd;                         /* libvirt's */
        int dup_fd;                     /* ours, when fd was already watched; else -1 */
        int events;                     /* libvirt VIR_EVENT_HANDLE_* */
        virEventHandleCallback cb;
        void *opaque;
        virFreeCallback ff;
        sd_event_source *source;        /* loop thread only; NULL until synced */
        bool dirty;                     /* changed off the loop thread, not applied yet */
        bool deleted;                   /* removed; unlinked at the next sync */
        struct bridge_handle *next;
};

struct bridge_timeout {
        int id;
        int interval_ms;                /* -1 off, 0 every iteration, >0 period */
        virEventTimeoutCallback cb;
        void *opaque;
        virFreeCallback ff;
        sd_event_source *source;        /* a CLOCK_MONOTONIC time source; loop thread only */
        bool dirty;
        bool deleted;
        struct bridge_timeout *next;
};

/* A removed watch or timeout whose free callback is still to run. */
struct bridge_release {
        virFreeCallback ff;
        void *opaque;
        sd_event_source *source;
};

static pthread_mutex_t bridge_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t loop_thread;
static sd_event *bridge_event;
static int wake_fd = -1;
static sd_event_source *wake_source;
static bool wake_pending;
static struct bridge_handle *handles;
static struct bridge_timeout *timeouts;
static int next_handle_id = 1;
static int next_timeout_id = 1;

static bool on_loop_thread(void)
{
        return pthread_equal(pthread_self(), loop_thread);
}

/* Called with the lock held from another thread: have the loop sync soon. */
static void wake_loop(void)
{
        uint64_t one = 1;

        if (wake_pending)
                return;
        wake_pending = true;
        (void) !write(wake_fd, &one, sizeof(one));
}

uint32_t lv_event_to_epoll(int events)
{
        uint32_t r = 0;

        if (events & VIR_EVENT_HANDLE_READABLE)
                r |= EPOLLIN;
        if (events & VIR_EVENT_HANDLE_WRITABLE)
                r |= EPOLLOUT;
        if (events & VIR_EVENT_HANDLE_ERROR)
                r |= EPOLLERR;
        if (events & VIR_EVENT_HANDLE_HANGUP)
                r |= EPOLLHUP;
        return r;
}

int lv_event_from_epoll(uint32_t revents)
{
        int r = 0;

        if (revents & (EPOLLIN | EPOLLPRI))
                r |= VIR_EVENT_HANDLE_READABLE;
        if (revents & EPOLLOUT)
                r |= VIR_EVENT_HANDLE_WRITABLE;
        if (revents & EPOLLERR)
                r |= VIR_EVENT_HANDLE_ERROR;
        if (revents & (EPOLLHUP | EPOLLRDHUP))
                r |= VIR_EVENT_HANDLE_HANGUP;
        return r;
}

static int release_dispatch(sd_event_source *s, void *userdata)
{
        struct bridge_release *rel = userdata;

        rel->ff(rel->opaque);
        sd_event_source_unref(rel->source);
        free(rel);
        return 0;
}

/* Once the loop has finished (the daemon is exiting and tears libvirt
 * down) sd-event refuses changes with ESTALE: expected then, not a problem. */
static int bridge_failure_level(int r, int level)
{
        return r == -ESTALE ? LOG_DEBUG : level;
}

/* Run @ff(@opaque) on a later iteration, never now.  Loop thread. */
static void release_later(virFreeCallback ff, void *opaque)
{
        struct bridge_release *rel;
        int r;

        if (!ff)
                return;
        rel = calloc(1, sizeof(*rel));
        if (!rel) {
                log_error("Out of memory deferring a libvirt free callback; leaking it");
                return;
        }
        *rel = (struct bridge_release){ .ff = ff, .opaque = opaque };
        r = sd_event_add_defer(bridge_event, &rel->source, release_dispatch, rel);
        if (r < 0) {
                /* Calling ff here could deadlock inside libvirt; a leak is the
                 * lesser harm. */
                log_full_errno(bridge_failure_level(r, LOG_ERR), r, "Cannot defer a libvirt free callback, leaking it: %m");
                free(rel);
                return;
        }
        (void) sd_event_source_set_description(rel->source, "libvirt-release");
}

/* ---- handles ---- */

static struct bridge_handle *handle_find(int id)
{
        for (struct bridge_handle *h = handles; h; h = h->next)
                if (h->id == id && !h->deleted)
                        return h;
        return NULL;
}

static int handle_dispatch(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct bridge_handle *h = userdata;
        virEventHandleCallback cb;
        void *opaque;
        int id, lfd, events;

        /* Another thread may have switched the watch off or removed it since
         * epoll reported it; the record stays until the loop syncs. */
        pthread_mutex_lock(&bridge_lock);
        if (h->deleted || h->events == 0) {
                pthread_mutex_unlock(&bridge_lock);
                return 0;
        }
        cb = h->cb, opaque = h->opaque, id = h->id, lfd = h->fd;
        events = lv_event_from_epoll(revents);
        pthread_mutex_unlock(&bridge_lock);
        /* The callback may remove this very watch: only copies are used. */
        cb(id, lfd, events, opaque);
        return 0;
}

static int handle_apply_events(struct bridge_handle *h)
{
        int r;

        /* epoll reports ERR and HUP even when not asked for, so a watch with
         * no events must be switched off, not merely given an empty mask. */
        if (h->events == 0)
                return sd_event_source_set_enabled(h->source, SD_EVENT_OFF);
        r = sd_event_source_set_io_events(h->source, lv_event_to_epoll(h->events));
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(h->source, SD_EVENT_ON);
}

/* Give @h its sd-event source.  Loop thread, lock held. */
static int handle_attach(struct bridge_handle *h)
{
        int r;

        r = sd_event_add_io(bridge_event, &h->source, h->fd, lv_event_to_epoll(h->events),
                            handle_dispatch, h);
        if (r == -EEXIST) {
                /* libvirt allows two watches on one fd, epoll does not; a
                 * duplicate descriptor is a separate epoll entry. */
                h->dup_fd = fcntl(h->fd, F_DUPFD_CLOEXEC, 3);
                r = h->dup_fd < 0 ? -errno
                                  : sd_event_add_io(bridge_event, &h->source, h->dup_fd,
                                                    lv_event_to_epoll(h->events), handle_dispatch, h);
        }
        if (r >= 0)
                r = handle_apply_events(h);
        if (r < 0) {
                h->source = sd_event_source_unref(h->source);
                if (h->dup_fd >= 0)
                        close(h->dup_fd);
                h->dup_fd = -1;
                return r;
        }
        (void) sd_event_source_set_description(h->source, "libvirt-handle");
        return 0;
}

/* Unlink and free @h, its free callback on a later iteration.  Loop thread,
 * lock held. */
static void handle_release(struct bridge_handle *h)
{
        struct bridge_handle **p;

        for (p = &handles; *p && *p != h; p = &(*p)->next)
                ;
        if (*p)
                *p = h->next;
        /* Unref takes the fd out of epoll now (sd-event defers the actual
         * free if we are inside this source's dispatch). */
        h->source = sd_event_source_unref(h->source);
        if (h->dup_fd >= 0)
                close(h->dup_fd);
        release_later(h->ff, h->opaque);
        free(h);
}

/* Make the sd-event side match @h.  Loop thread, lock held. */
static void handle_sync(struct bridge_handle *h)
{
        int r;

        h->dirty = false;
        if (h->deleted) {
                handle_release(h);
                return;
        }
        r = h->source ? handle_apply_events(h) : handle_attach(h);
        if (r < 0)
                log_full_errno(bridge_failure_level(r, LOG_WARNING), r, "Cannot watch fd %d for libvirt: %m", h->fd);
}

static int bridge_add_handle(int fd, int events, virEventHandleCallback cb, void *opaque,
                             virFreeCallback ff)
{
        struct bridge_handle *h;
        int r = 0, id;

        h = calloc(1, sizeof(*h));
        if (!h)
                return -1;
        pthread_mutex_lock(&bridge_lock);
        *h = (struct bridge_handle){ .id = next_handle_id++, .fd = fd, .dup_fd = -1,
                                     .events = events, .cb = cb, .opaque = opaque, .ff = ff };
        if (on_loop_thread())
                r = handle_attach(h);
        if (r < 0) {
                pthread_mutex_unlock(&bridge_lock);
                log_debug_errno(r, "Cannot watch fd %d for libvirt: %m", fd);
                free(h);
                return -1;
        }
        if (!on_loop_thread()) {
                h->dirty = true;
                wake_loop();
        }
        h->next = handles;
        handles = h;
        id = h->id;
        pthread_mutex_unlock(&bridge_lock);
        return id;
}

static void bridge_update_handle(int id, int events)
{
        struct bridge_handle *h;

        pthread_mutex_lock(&bridge_lock);
        h = handle_find(id);
        if (h) {
                h->events = events;
                if (on_loop_thread() && !h->dirty)
                        handle_sync(h);
                else {
                        h->dirty = true;
                        wake_loop();
                }
        }
        pthread_mutex_unlock(&bridge_lock);
}

static int bridge_remove_handle(int id)
{
        struct bridge_handle *h;

        pthread_mutex_lock(&bridge_lock);
        h = handle_find(id);
        if (!h) {
                pthread_mutex_unlock(&bridge_lock);
                return -1;
        }
        h->deleted = true;
        if (on_loop_thread())
                handle_sync(h);
        else {
                h->dirty = true;
                wake_loop();
        }
        pthread_mutex_unlock(&bridge_lock);
        return 0;
}

int lv_event_bridge_next_handle(void)
{
        int id;

        pthread_mutex_lock(&bridge_lock);
        id = next_handle_id;
        pthread_mutex_unlock(&bridge_lock);
        return id;
}

int lv_event_bridge_shutdown_handles(int first_id)
{
        int n = 0;

        pthread_mutex_lock(&bridge_lock);
        for (struct bridge_handle *h = handles; h; h = h->next)
                if (h->id >= first_id && !h->deleted && shutdown(h->fd, SHUT_RDWR) == 0)
                        n++;
        pthread_mutex_unlock(&bridge_lock);
        return n;
}

/* ---- timeouts ---- */

static struct bridge_timeout *timeout_find(int id)
{
        for (struct bridge_timeout *t = timeouts; t; t = t->next)
                if (t->id == id && !t->deleted)
                        return t;
        return NULL;
}

/* Period 0 is a time source due since boot: it is pending on every iteration
 * but, unlike an always-on defer source (which sd-event keeps first in its
 * pending queue, starving every io source), takes its turn with the others. */
#define TIME_DUE_ALWAYS 1

static int timeout_arm(struct bridge_timeout *t)
{
        uint64_t when = TIME_DUE_ALWAYS;
        int r;

        if (t->interval_ms < 0)
                return sd_event_source_set_enabled(t->source, SD_EVENT_OFF);
        if (t->interval_ms > 0) {
                /* From now, not from the loop's last wakeup (sd_event_now):
                 * armed outside a dispatch, or after a long iteration, that
                 * timestamp is stale and the timeout would fire early by as
                 * much (libvirt's own loop counts from the current time). */
                when = monotonic_usec() + (uint64_t)t->interval_ms * 1000;
        }
        r = sd_event_source_set_time(t->source, when);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(t->source, SD_EVENT_ON);
}

static int timeout_dispatch(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct bridge_timeout *t = userdata;
        virEventTimeoutCallback cb;
        void *opaque;
        int id;

        pthread_mutex_lock(&bridge_lock);
        if (t->deleted || t->interval_ms < 0) {
                pthread_mutex_unlock(&bridge_lock);
                return 0;
        }
        /* Re-arm before the callback so that an update from inside it wins. */
        if (t->interval_ms > 0)
                (void) timeout_arm(t);
        cb = t->cb, opaque = t->opaque, id = t->id;
        pthread_mutex_unlock(&bridge_lock);
        cb(id, opaque);
        return 0;
}

static int timeout_attach(struct bridge_timeout *t)
{
        /* 1 ms accuracy: the default (250 ms) would delay keepalives and
         * libvirt's own retries noticeably. */
        int r = sd_event_add_time(bridge_event, &t->source, CLOCK_MONOTONIC, TIME_DUE_ALWAYS, 1000,
                                  timeout_dispatch, t);
        if (r >= 0)
                r = timeout_arm(t);
        if (r < 0) {
                t->source = sd_event_source_unref(t->source);
                return r;
        }
        (void) sd_event_source_set_description(t->source, "libvirt-timeout");
        return 0;
}

static void timeout_release(struct bridge_timeout *t)
{
        struct bridge_timeout **p;

        for (p = &timeouts; *p && *p != t; p = &(*p)->next)
                ;
        if (*p)
                *p = t->next;
        t->source = sd_event_source_unref(t->source);
        release_later(t->ff, t->opaque);
        free(t);
}

static void timeout_sync(struct bridge_timeout *t)
{
        int r;

        t->dirty = false;
        if (t->deleted) {
                timeout_release(t);
                return;
        }
        r = t->source ? timeout_arm(t) : timeout_attach(t);
        if (r < 0)
                log_full_errno(bridge_failure_level(r, LOG_WARNING), r,
                               "Cannot set libvirt timeout to %d ms: %m", t->interval_ms);
}

static int bridge_add_timeout(int interval_ms, virEventTimeoutCallback cb, void *opaque,
                              virFreeCallback ff)
{
        struct bridge_timeout *t;
        int r = 0, id;

        t = calloc(1, sizeof(*t));
        if (!t)
                return -1;
        pthread_mutex_lock(&bridge_lock);
        *t = (struct bridge_timeout){ .id = next_timeout_id++, .interval_ms = interval_ms,
                                      .cb = cb, .opaque = opaque, .ff = ff };
        if (on_loop_thread())
                r = timeout_attach(t);
        if (r < 0) {
                pthread_mutex_unlock(&bridge_lock);
                log_debug_errno(r, "Cannot add libvirt timeout: %m");
                free(t);
                return -1;
        }
        if (!on_loop_thread()) {
                t->dirty = true;
                wake_loop();
        }
        t->next = timeouts;
        timeouts = t;
        id = t->id;
        pthread_mutex_unlock(&bridge_lock);
        return id;
}

static void bridge_update_timeout(int id, int interval_ms)
{
        struct bridge_timeout *t;

        pthread_mutex_lock(&bridge_lock);
        t = timeout_find(id);
        if (t) {
                t->interval_ms = interval_ms;
                if (on_loop_thread() && !t->dirty)
                        timeout_sync(t);
                else {
                        t->dirty = true;
                        wake_loop();
                }
        }
        pthread_mutex_unlock(&bridge_lock);
}

static int bridge_remove_timeout(int id)
{
        struct bridge_timeout *t;

        pthread_mutex_lock(&bridge_lock);
        t = timeout_find(id);
        if (!t) {
                pthread_mutex_unlock(&bridge_lock);
                return -1;
        }
        t->deleted = true;
        if (on_loop_thread())
                timeout_sync(t);
        else {
                t->dirty = true;
                wake_loop();
        }
        pthread_mutex_unlock(&bridge_lock);
        return 0;
}

/* ---- changes made off the loop thread ---- */

static int on_wake(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        uint64_t n;

        (void) !read(wake_fd, &n, sizeof(n));
        pthread_mutex_lock(&bridge_lock);
        wake_pending = false;
        for (struct bridge_handle *h = handles, *next; h; h = next) {
                next = h->next;
                if (h->dirty)
                        handle_sync(h);
        }
        for (struct bridge_timeout *t = timeouts, *next; t; t = next) {
                next = t->next;
                if (t->dirty)
                        timeout_sync(t);
        }
        pthread_mutex_unlock(&bridge_lock);
        return 0;
}

int lv_event_bridge_register(sd_event *e)
{
        int r;

        if (bridge_event)
                return bridge_event == e ? 0 : -EBUSY;
        wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (wake_fd < 0)
                return -errno;
        r = sd_event_add_io(e, &wake_source, wake_fd, EPOLLIN, on_wake, NULL);
        if (r < 0) {
                close(wake_fd);
                wake_fd = -1;
                return r;
        }
        /* Before libvirt's own sources: a watch switched off by the worker
         * must be off before its fd is dispatched again. */
        (void) sd_event_source_set_priority(wake_source, SD_EVENT_PRIORITY_IMPORTANT);
        (void) sd_event_source_set_description(wake_source, "libvirt-bridge-wake");
        loop_thread = pthread_self();
        bridge_event = sd_event_ref(e);
        virEventRegisterImpl(bridge_add_handle, bridge_update_handle, bridge_remove_handle,
                             bridge_add_timeout, bridge_update_timeout, bridge_remove_timeout);
        return 0;
}
