/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvirt's event loop (virEventRegisterImpl) mapped onto sd-event, so the
 * daemon has one loop and no threads.  A libvirt watch is an io source, a
 * libvirt timeout a time source.
 *
 * libvirt requires that the free callback handed to add* is never called from
 * within remove*: it may hold a lock the free function takes.  So removal
 * disconnects the sd-event source at once and runs the free callback (and
 * frees our record) from a one-shot defer source on the next iteration.
 */
#include "libvirt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "log.h"

struct bridge_handle {
        int id;
        int fd;                         /* libvirt's */
        int dup_fd;                     /* ours, when fd was already watched; else -1 */
        int events;                     /* libvirt VIR_EVENT_HANDLE_* */
        virEventHandleCallback cb;
        void *opaque;
        virFreeCallback ff;
        sd_event_source *source;
        struct bridge_handle *next;
};

struct bridge_timeout {
        int id;
        int interval_ms;                /* -1 off, 0 every iteration, >0 period */
        virEventTimeoutCallback cb;
        void *opaque;
        virFreeCallback ff;
        sd_event_source *source;        /* a CLOCK_MONOTONIC time source */
        struct bridge_timeout *next;
};

/* A removed watch or timeout whose free callback is still to run. */
struct bridge_release {
        virFreeCallback ff;
        void *opaque;
        sd_event_source *source;
};

static sd_event *bridge_event;
static struct bridge_handle *handles;
static struct bridge_timeout *timeouts;
static int next_handle_id = 1;
static int next_timeout_id = 1;

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

/* Run @ff(@opaque) on a later iteration, never now. */
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
                if (h->id == id)
                        return h;
        return NULL;
}

static int handle_dispatch(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct bridge_handle *h = userdata;

        /* The callback may remove this very watch; the record stays valid
         * until then because removal only unlinks it. */
        h->cb(h->id, h->fd, lv_event_from_epoll(revents), h->opaque);
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

static int bridge_add_handle(int fd, int events, virEventHandleCallback cb, void *opaque,
                             virFreeCallback ff)
{
        struct bridge_handle *h;
        int r;

        h = calloc(1, sizeof(*h));
        if (!h)
                return -1;
        *h = (struct bridge_handle){ .id = next_handle_id++, .fd = fd, .dup_fd = -1,
                                     .events = events, .cb = cb, .opaque = opaque, .ff = ff };
        r = sd_event_add_io(bridge_event, &h->source, fd, lv_event_to_epoll(events),
                            handle_dispatch, h);
        if (r == -EEXIST) {
                /* libvirt allows two watches on one fd, epoll does not; a
                 * duplicate descriptor is a separate epoll entry. */
                h->dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                r = h->dup_fd < 0 ? -errno
                                  : sd_event_add_io(bridge_event, &h->source, h->dup_fd,
                                                    lv_event_to_epoll(events), handle_dispatch, h);
        }
        if (r >= 0)
                r = handle_apply_events(h);
        if (r < 0) {
                log_debug_errno(r, "Cannot watch fd %d for libvirt: %m", fd);
                sd_event_source_unref(h->source);
                if (h->dup_fd >= 0)
                        close(h->dup_fd);
                free(h);
                return -1;
        }
        (void) sd_event_source_set_description(h->source, "libvirt-handle");
        h->next = handles;
        handles = h;
        return h->id;
}

static void bridge_update_handle(int id, int events)
{
        struct bridge_handle *h = handle_find(id);
        int r;

        if (!h)
                return;
        h->events = events;
        r = handle_apply_events(h);
        if (r < 0)
                log_full_errno(bridge_failure_level(r, LOG_WARNING), r, "Cannot update libvirt watch on fd %d: %m", h->fd);
}

static int bridge_remove_handle(int id)
{
        struct bridge_handle **p;

        for (p = &handles; *p; p = &(*p)->next)
                if ((*p)->id == id)
                        break;
        if (!*p)
                return -1;

        struct bridge_handle *h = *p;
        *p = h->next;
        /* Unref takes the fd out of epoll now (sd-event defers the actual
         * free if we are inside this source's dispatch). */
        h->source = sd_event_source_unref(h->source);
        if (h->dup_fd >= 0)
                close(h->dup_fd);
        release_later(h->ff, h->opaque);
        free(h);
        return 0;
}

/* ---- timeouts ---- */

static struct bridge_timeout *timeout_find(int id)
{
        for (struct bridge_timeout *t = timeouts; t; t = t->next)
                if (t->id == id)
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
                r = sd_event_now(bridge_event, CLOCK_MONOTONIC, &when);
                if (r < 0)
                        return r;
                when += (uint64_t)t->interval_ms * 1000;
        }
        r = sd_event_source_set_time(t->source, when);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(t->source, SD_EVENT_ON);
}

static int timeout_dispatch(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct bridge_timeout *t = userdata;

        /* Re-arm before the callback so that an update from inside it wins. */
        if (t->interval_ms > 0)
                (void) timeout_arm(t);
        t->cb(t->id, t->opaque);
        return 0;
}

static int bridge_add_timeout(int interval_ms, virEventTimeoutCallback cb, void *opaque,
                              virFreeCallback ff)
{
        struct bridge_timeout *t;
        int r;

        t = calloc(1, sizeof(*t));
        if (!t)
                return -1;
        *t = (struct bridge_timeout){ .id = next_timeout_id++, .interval_ms = interval_ms,
                                      .cb = cb, .opaque = opaque, .ff = ff };
        /* 1 ms accuracy: the default (250 ms) would delay keepalives and
         * libvirt's own retries noticeably. */
        r = sd_event_add_time(bridge_event, &t->source, CLOCK_MONOTONIC, TIME_DUE_ALWAYS, 1000,
                              timeout_dispatch, t);
        if (r >= 0)
                r = timeout_arm(t);
        if (r < 0) {
                log_debug_errno(r, "Cannot add libvirt timeout: %m");
                sd_event_source_unref(t->source);
                free(t);
                return -1;
        }
        (void) sd_event_source_set_description(t->source, "libvirt-timeout");
        t->next = timeouts;
        timeouts = t;
        return t->id;
}

static void bridge_update_timeout(int id, int interval_ms)
{
        struct bridge_timeout *t = timeout_find(id);
        int r;

        if (!t)
                return;
        t->interval_ms = interval_ms;
        r = timeout_arm(t);
        if (r < 0)
                log_full_errno(bridge_failure_level(r, LOG_WARNING), r, "Cannot update libvirt timeout to %d ms: %m", interval_ms);
}

static int bridge_remove_timeout(int id)
{
        struct bridge_timeout **p;

        for (p = &timeouts; *p; p = &(*p)->next)
                if ((*p)->id == id)
                        break;
        if (!*p)
                return -1;

        struct bridge_timeout *t = *p;
        *p = t->next;
        t->source = sd_event_source_unref(t->source);
        release_later(t->ff, t->opaque);
        free(t);
        return 0;
}

int lv_event_bridge_register(sd_event *e)
{
        if (bridge_event)
                return bridge_event == e ? 0 : -EBUSY;
        bridge_event = sd_event_ref(e);
        virEventRegisterImpl(bridge_add_handle, bridge_update_handle, bridge_remove_handle,
                             bridge_add_timeout, bridge_update_timeout, bridge_remove_timeout);
        return 0;
}
