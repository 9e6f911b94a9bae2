/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Everything the daemon asks of libvirt: the connection (keepalive,
 * reconnect with backoff), running domains with the parts of their live XML
 * that decide whether the daemon may touch them, and lifecycle / tunable
 * events.  libvirt's event loop is bridged onto the daemon's sd-event loop
 * (virEventRegisterImpl), so there is one loop and no threads.
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

/* Map libvirt's event loop onto @e.  Call once per process, before any
 * connection is opened; -EBUSY if already registered with another loop. */
int lv_event_bridge_register(sd_event *e);
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

struct lv_callbacks {
        /* The connection is (re)established: the manager resyncs everything. */
        void (*connected)(void *userdata);
        /* The connection is lost; reconnection is already scheduled. */
        void (*disconnected)(void *userdata);
        void (*domain_event)(void *userdata, const char *uuid, enum lv_domain_event ev,
                             const char *detail);
        /* A tunable event pinned vCPU @vcpu (cputune.vcpupinN): the operator
         * took it over. */
        void (*vcpu_pinned)(void *userdata, const char *uuid, unsigned vcpu, const char *cpulist);
};

struct lv_conn;

/* Create a connection manager for @uri (NULL: DEFAULT_CONNECT).  Connects at
 * once when possible, otherwise keeps retrying with backoff (1 s doubling to
 * 30 s), calling cb->connected each time it gets through.  Returns -ENOMEM or
 * 0; a libvirtd that is down is not an error.  Callbacks only ever run from
 * @e's loop, never from inside an lv_* call. */
int lv_conn_new(sd_event *e, const char *uri, const struct lv_callbacks *cb, void *userdata,
                struct lv_conn **out);
void lv_conn_free(struct lv_conn *c);
bool lv_conn_is_alive(struct lv_conn *c);
const char *lv_conn_uri(struct lv_conn *c);
/* Why the last lv_list_domains / lv_get_domain on @c failed (libvirt's
 * message), for the caller's log line. */
const char *lv_conn_last_error(struct lv_conn *c);

/* Running domains, with their live XML interpreted.  -ENOTCONN when not
 * connected. */
int lv_list_domains(struct lv_conn *c, struct lv_domain **out, size_t *n_out);
/* One running domain by UUID; -ENOENT if it is not running. */
int lv_get_domain(struct lv_conn *c, const char *uuid, struct lv_domain *out);
