/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Everything the daemon asks of libvirt: the connection (keepalive,
 * reconnect with backoff), running domains with the parts of their live XML
 * that decide whether the daemon may touch them, and lifecycle / tunable
 * events.  libvirt's event loop is bridged onto the daemon's sd-event loop
 * (virEventRegisterImpl), so there is one loop; every call that waits for
 * libvirtd (open, close, list, lookup, XML) runs on one worker thread
 * (libvirt-worker.c) and its result comes back to the loop as a callback, so
 * a hung libvirtd never blocks the loop.
 *
 * Never calls QEMU monitor APIs (they taint the guest) and never pins through
 * libvirt (pins made that way look like the operator's).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <hwloc.h>
#include <systemd/sd-event.h>

#include "domain-xml.h"
#include "kvm-stats.h"

/* Map libvirt's event loop onto @e.  Call once per process, before any
 * connection is opened; -EBUSY if already registered with another loop. */
int lv_event_bridge_register(sd_event *e);
/* The id the next libvirt watch will get, and shutdown(2) of the sockets of
 * every live watch from @first_id on: how a virConnectOpen that hangs (no
 * keepalive yet) is cut short. */
int lv_event_bridge_next_handle(void);
int lv_event_bridge_shutdown_handles(int first_id);
/* VIR_EVENT_HANDLE_* <-> EPOLL* (exposed for unit tests). */
uint32_t lv_event_to_epoll(int events);
int lv_event_from_epoll(uint32_t revents);

/* From libvirt's lifecycle events; the detail string is "event/detail",
 * e.g. "started/booted", "resumed/unpaused", "stopped/destroyed",
 * "stopped/crashed", "stopped/migrated".  A guest that crashes or shuts down
 * is reported when QEMU exits (STOPPED), not before. */
enum lv_domain_event {
        LV_DOMAIN_STARTED,              /* started, resumed, migrated in, restored */
        LV_DOMAIN_STOPPED,              /* stopped: shut down, destroyed, crashed, migrated out, saved */
};

struct lv_domain_event_info {
        const char *uuid;
        enum lv_domain_event event;
        const char *detail;
        /* STARTED: the domain as it runs now, or NULL with @error (-ENOENT:
         * it stopped again before it could be read).  STOPPED: NULL, 0. */
        const struct lv_domain *dom;
        int error;
        const char *error_text;
        uint64_t received_usec;         /* CLOCK_MONOTONIC when libvirt delivered it */
};

struct lv_callbacks {
        /* The connection is (re)established: the manager resyncs everything. */
        void (*connected)(void *userdata);
        /* The connection is lost, or the first attempt failed; reconnection
         * is already scheduled. */
        void (*disconnected)(void *userdata);
        /* libvirtd stopped answering (a call has waited for more than
         * LV_UNRESPONSIVE_USEC) or answers again: see lv_conn_state(). */
        void (*state_changed)(void *userdata);
        /* Events come in the order libvirt sent them, after the lookups
         * queued before them. */
        void (*domain_event)(void *userdata, const struct lv_domain_event_info *ev);
        /* A tunable event pinned vCPU @vcpu (cputune.vcpupinN): the operator
         * took it over. */
        void (*vcpu_pinned)(void *userdata, const char *uuid, unsigned vcpu, const char *cpulist);
};

struct lv_conn;

/* A call that has waited this long makes libvirt "unresponsive". */
#define LV_UNRESPONSIVE_USEC (3ULL * 1000000)

enum lv_conn_state {
        LV_CONNECTING,          /* an attempt is under way */
        LV_CONNECTED,
        LV_DISCONNECTED,        /* waiting to retry */
};

/* Create a connection manager for @uri (NULL: DEFAULT_CONNECT).  Starts
 * connecting on the worker at once, and keeps retrying with backoff (1 s
 * doubling to 30 s), calling cb->connected each time it gets through.
 * Returns -ENOMEM or 0; a libvirtd that is down is not an error.  Callbacks
 * only ever run from @e's loop, never from inside an lv_* call. */
int lv_conn_new(sd_event *e, const char *uri, const struct lv_callbacks *cb, void *userdata,
                struct lv_conn **out);
void lv_conn_free(struct lv_conn *c);
bool lv_conn_is_alive(struct lv_conn *c);
enum lv_conn_state lv_conn_state(struct lv_conn *c);
/* A call has been waiting for libvirtd for LV_UNRESPONSIVE_USEC or more;
 * @since_usec (CLOCK_MONOTONIC) and @what say since when and doing what. */
bool lv_conn_unresponsive(struct lv_conn *c, uint64_t *since_usec, const char **what);
/* "connected", "connecting", "disconnected" or "unresponsive", for status. */
const char *lv_conn_state_text(struct lv_conn *c);
const char *lv_conn_uri(struct lv_conn *c);
/* Why the last lv_list_domains / lv_get_domain on @c failed (libvirt's
 * message), for the caller's log line. */
const char *lv_conn_last_error(struct lv_conn *c);

/* Ask for the running domains, with their live XML interpreted: @cb runs on
 * the loop later with 0 and the domains (which it owns: lv_domains_free),
 * or a negative errno (-ENOTCONN when the connection went away).  Returns
 * 0, -ENOTCONN when not connected, or -EBUSY while an earlier listing is
 * still pending (a hung libvirtd: the caller tries again later). */
typedef void (*lv_domains_cb)(void *userdata, int r, struct lv_domain *doms, size_t n);
int lv_list_domains_async(struct lv_conn *c, lv_domains_cb cb, void *userdata);

/*
 * Every running guest's vCPU counters in one virConnectGetAllDomainStats(
 * VIR_DOMAIN_STATS_VCPU) call, parsed on the worker (kvm-stats.h).  @cb runs
 * on the loop later with 0, the records (which it owns: lv_vcpu_stats_free)
 * and @when_usec, CLOCK_MONOTONIC right after libvirt answered; or a
 * negative errno, with lv_conn_last_error() saying why.  Returns 0,
 * -ENOTCONN, or -EBUSY while the previous one is pending: one at a time.
 */
struct lv_vcpu_stats {
        char uuid[37];
        size_t n_vcpus;                 /* one more than the highest vCPU id in the record */
        struct kvm_vcpu_stats *vcpus;   /* indexed by vCPU id; owned */
};
typedef void (*lv_vcpu_stats_cb)(void *userdata, int r, struct lv_vcpu_stats *doms, size_t n, uint64_t when_usec);
int lv_vcpu_stats_async(struct lv_conn *c, lv_vcpu_stats_cb cb, void *userdata);
void lv_vcpu_stats_free(struct lv_vcpu_stats *d, size_t n);

/* The same, waiting for the answer by running @c's loop: for programs and
 * tests outside the loop (never from a callback).  -ETIMEDOUT after
 * @timeout_usec. */
int lv_list_domains(struct lv_conn *c, struct lv_domain **out, size_t *n_out);
/* One running domain by UUID, waiting likewise; -ENOENT if it is not
 * running. */
int lv_get_domain(struct lv_conn *c, const char *uuid, struct lv_domain *out);
/* Run @c's loop until it is connected or its first attempt failed, at
 * most @timeout_usec.  Returns whether it is connected. */
bool lv_conn_wait_connected(struct lv_conn *c, uint64_t timeout_usec);
