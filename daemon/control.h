/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The control socket: a Unix stream socket on which each connection carries
 * one JSON request ({"command":"status"}) and gets one JSON reply
 * ({"ok":true,...} or {"ok":false,"error":"..."}).  Every connection is
 * non-blocking with a deadline, so a slow or silent client never stalls the
 * daemon or other clients.
 */

#include <sys/types.h>
#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "lib/defaults.h"

/* Longest request accepted; real ones are a few dozen bytes. */
#define CONTROL_REQUEST_MAX 4096
/* A client has this long to send its request and read the reply. */
#define CONTROL_DEADLINE_USEC (5 * 1000 * 1000ULL)

/* Builds the reply to a request; returns a new object (with "ok") or NULL
 * on allocation failure. */
typedef json_object *(*control_handler_t)(void *userdata, const char *command, json_object *request);

struct control_server;

/*
 * Listen on @path (its directory is created 0755 if missing; a stale socket
 * is replaced).  Mode 0600, or 0660 owned by @group when @group is given
 * (-ENOENT if no such group).
 */
int control_server_new(sd_event *e, const char *path, const char *group, control_handler_t handler,
                       void *userdata, struct control_server **out);
void control_server_free(struct control_server *s);
