/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daemon/control.c without the daemon: a server with a trivial handler in
 * this process, clients on real sockets.
 *  - Out of descriptors (EMFILE on accept): the loop does not spin, and the
 *    queued clients are served once descriptors are free again.
 *  - At the cap: accepting pauses, and resumes when a client leaves.
 *  - A request with data after its object is refused; the handler sees the
 *    peer's uid (SO_PEERCRED).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "log.h"
#include "tap.h"

static uid_t seen_uid = (uid_t)-2;

static json_object *handler(void *userdata, const char *command, json_object *request, const struct ucred *peer)
{
        json_object *o = json_object_new_object();
        seen_uid = peer->uid;
        json_object_object_add(o, "ok", json_object_new_boolean(true));
        json_object_object_add(o, "command", json_object_new_string(command));
        return o;
}

static char sock_path[108];

static int client(const char *request)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        strcpy(sa.sun_path, sock_path);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                perror("client");
                exit(2);
        }
        if (request && write(fd, request, strlen(request)) < 0)
                exit(2);
        return fd;
}

/* Run the loop until @fd has a whole reply (or @ms pass); the reply or NULL. */
static char *reply_of(sd_event *e, int fd, int ms)
{
        static char buf[4096];
        size_t n = 0;

        for (int i = 0; i < ms; i++) {
                ssize_t k = read(fd, buf + n, sizeof(buf) - 1 - n);
                if (k > 0)
                        n += (size_t)k;
                if (n && buf[n - 1] == '\n') {
                        buf[n] = '\0';
                        return buf;
                }
                sd_event_run(e, 1000);
        }
        return NULL;
}

static double cpu_seconds(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(void)
{
        sd_event *e = NULL;
        struct control_server *srv = NULL;
        struct rlimit old, low;
        int clients[4], fillers[256], n_fill = 0;
        char *r;

        log_setup(LOG_TARGET_CONSOLE, LOG_WARNING);
        snprintf(sock_path, sizeof(sock_path), "%s/test-control-%d.sock", getenv("TMPDIR") ?: "/tmp", (int)getpid());
        if (sd_event_new(&e) < 0 || control_server_new(e, sock_path, NULL, handler, NULL, &srv) < 0)
                return 2;

        /* Trailing data is refused; a plain request is answered, with the peer's uid. */
        int fd = client("{\"command\":\"status\"} {\"command\":\"reload\"}\n");
        r = reply_of(e, fd, 2000);
        CHECK(r && strstr(r, "\"ok\":false") && strstr(r, "nothing after it"), "trailing data: %s", r ? r : "(none)");
        close(fd);
        fd = client("{\"command\":\"status\"}\n");
        r = reply_of(e, fd, 2000);
        CHECK(r && strstr(r, "\"ok\":true"), "plain request: %s", r ? r : "(none)");
        CHECK(seen_uid == geteuid(), "handler saw uid %d, we are %d", (int)seen_uid, (int)geteuid());
        close(fd);

        /* EMFILE: clients wait in the queue while every descriptor is taken. */
        for (size_t i = 0; i < 4; i++)
                clients[i] = client("{\"command\":\"status\"}\n");
        getrlimit(RLIMIT_NOFILE, &old);
        low = old;
        low.rlim_cur = 64;
        setrlimit(RLIMIT_NOFILE, &low);
        for (int f; n_fill < 256 && (f = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;)
                fillers[n_fill++] = f;
        CHECK(errno == EMFILE, "descriptors filled up: %s", strerror(errno));
        double c0 = cpu_seconds();
        for (int i = 0; i < 100; i++)
                sd_event_run(e, 10 * 1000);   /* about 1 s of loop */
        double used = cpu_seconds() - c0;
        fprintf(stderr, "# 1 s of loop with accept() at EMFILE and 4 clients queued: %.3f s of CPU\n", used);
        CHECK(used < 0.2, "the loop spins at EMFILE: %.3f s of CPU in 1 s", used);
        char buf[16];
        CHECK(read(clients[0], buf, sizeof(buf)) < 0 && errno == EAGAIN, "a queued client got something at EMFILE");

        /* Descriptors back: within the retry interval the queue is served. */
        while (n_fill > 0)
                close(fillers[--n_fill]);
        for (size_t i = 0; i < 4; i++) {
                r = reply_of(e, clients[i], 3000);
                CHECK(r && strstr(r, "\"ok\":true"), "queued client %zu served after EMFILE: %s", i, r ? r : "(none)");
                close(clients[i]);
        }
        setrlimit(RLIMIT_NOFILE, &old);

        /* The cap: CONTROL_MAX_CONNECTIONS silent clients held, one more waits
         * until one of them leaves. */
        int silent[CONTROL_MAX_CONNECTIONS];
        for (size_t i = 0; i < CONTROL_MAX_CONNECTIONS; i++)
                silent[i] = client(NULL);
        for (int i = 0; i < 20; i++)
                sd_event_run(e, 10 * 1000);
        fd = client("{\"command\":\"status\"}\n");
        CHECK(!reply_of(e, fd, 300), "a client beyond the cap was served");
        close(silent[0]);
        r = reply_of(e, fd, 2000);
        CHECK(r && strstr(r, "\"ok\":true"), "served when a slot freed: %s", r ? r : "(none)");
        close(fd);
        for (size_t i = 1; i < CONTROL_MAX_CONNECTIONS; i++)
                close(silent[i]);

        control_server_free(srv);
        sd_event_unref(e);
        return test_result();
}
