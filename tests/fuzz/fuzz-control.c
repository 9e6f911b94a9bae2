/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control protocol through the real control code (daemon/control.c):
 * the input is what a client sends on one connection, then it shuts down
 * writing; the event loop runs until the server has replied and hung up.
 * The handler answers every well-formed request as the daemon would shape
 * it, echoing the command.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control.h"
#include "fuzz.h"
#include "log.h"

static sd_event *event;
static struct control_server *server;
static char sock_path[64];

static json_object *handler(void *userdata, const char *command, json_object *request, const struct ucred *peer)
{
        json_object *o = json_object_new_object();
        json_object_object_add(o, "ok", json_object_new_boolean(true));
        json_object_object_add(o, "command", json_object_new_string(command));
        json_object_object_add(o, "uid", json_object_new_int((int)peer->uid));
        return o;
}

static void teardown(void)
{
        control_server_free(server);
        sd_event_unref(event);
}

static void setup(void)
{
        log_set_max_level(LOG_CRIT);
        snprintf(sock_path, sizeof(sock_path), "%s/fuzz-control-%d.sock", getenv("TMPDIR") ?: "/tmp", (int)getpid());
        if (sd_event_new(&event) < 0 || control_server_new(event, sock_path, NULL, handler, NULL, &server) < 0)
                abort();
        atexit(teardown);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        int sv[2];
        char buf[65536];

        if (!server)
                setup();
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        /* More than a request may hold is cut: the server stops reading there. */
        size_t n = size < 60000 ? size : 60000;
        if (n && write(sv[0], data, n) < 0 && errno != EAGAIN)
                abort();
        shutdown(sv[0], SHUT_WR);
        if (control_server_add_connection(server, sv[1]) < 0)
                abort();
        for (int i = 0; i < 1000; i++) {
                ssize_t k = read(sv[0], buf, sizeof(buf));
                if (k == 0)
                        break;          /* the server hung up: done */
                if (k < 0 && errno != EAGAIN)
                        break;
                if (sd_event_run(event, 0) < 0)
                        abort();
        }
        close(sv[0]);
        /* Flush the server side of this connection if it is still open. */
        for (int i = 0; i < 4; i++)
                sd_event_run(event, 0);
        return 0;
}
