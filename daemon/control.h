/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The control socket: a Unix stream socket on which each connection carries
 * one JSON request ({"command":"status"}) and gets one JSON reply
 * ({"ok":true,...} or {"ok":false,"error":"..."}).  A request with anything
 * but blanks after its object is refused.  Every connection is non-blocking
 * with a deadline, so a slow or silent client (one that never reads its
 * reply included) never stalls the daemon or other clients; connections are
 * capped, and accepting pauses at the cap and when descriptors run out.
 */

#include <sys/socket.h>
#include <sys/types.h>
#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "lib/defaults.h"

/* Longest request accepted; real ones are a few dozen bytes. */
#define CONTROL_REQUEST_MAX 4096
/* A client has this long to send its request and read the reply. */
#define CONTROL_DEADLINE_USEC (5 * 1000 * 1000ULL)

/* At most this many clients at once (fewer when RLIMIT_NOFILE / 4 is
 * smaller, so clients cannot starve the daemon of descriptors); further
 * ones wait in the kernel's listen queue, which costs the daemon no
 * descriptor (CONTROL_BACKLOG long, at most net.core.somaxconn), and beyond
 * it their connect() fails (EAGAIN). */
#define CONTROL_MAX_CONNECTIONS 32
#define CONTROL_BACKLOG SOMAXCONN
/* After accept() failed for want of descriptors (EMFILE): wait this long,
 * or until a connection closes, before accepting again. */
#define CONTROL_ACCEPT_RETRY_USEC (250 * 1000ULL)
/* Each kind of warning about the socket: at most once per this interval. */
#define CONTROL_WARN_INTERVAL_USEC (10 * 1000 * 1000ULL)

/* Builds the reply to a request from the peer @peer (SO_PEERCRED; uid
 * (uid_t)-1 when unknown); returns a new object (with "ok") or NULL on
 * allocation failure. */
typedef json_object *(*control_handler_t)(void *userdata, const char *command, json_object *request,
                                          const struct ucred *peer);

struct control_server;

/*
 * Listen on @path (its directory is created 0755 if missing; a stale socket
 * is replaced).  Mode 0600, or 0660 owned by @group when @group is given
 * (-ENOENT if no such group).
 */
int control_server_new(sd_event *e, const char *path, const char *group, control_handler_t handler,
                       void *userdata, struct control_server **out);
void control_server_free(struct control_server *s);

/* Serve the connected socket @fd (non-blocking) as if accepted; takes it.
 * For the fuzzer and tests; the listener uses it for every client. */
int control_server_add_connection(struct control_server *s, int fd);
