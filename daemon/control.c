/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"

struct ratelimit {
        uint64_t last;
        unsigned suppressed;
};

struct control_conn {
        struct control_server *server;
        int fd;
        struct ucred peer;      /* SO_PEERCRED at accept; uid -1 if unknown */
        sd_event_source *io;
        sd_event_source *deadline;
        char request[CONTROL_REQUEST_MAX + 1];
        size_t request_len;
        char *reply;            /* owned */
        size_t reply_len, reply_sent;
        struct control_conn *next;
};

struct control_server {
        sd_event *event;
        int fd;
        char *path;
        sd_event_source *accept_source;
        control_handler_t handler;
        void *userdata;
        struct control_conn *conns;
        unsigned n_conns;
        /* Accepting stops at the cap and on EMFILE (a level-triggered
         * listener would otherwise wake the loop for ever); a freed slot or
         * the retry timer starts it again. */
        bool accept_paused;
        sd_event_source *accept_retry;
        struct ratelimit rl_full, rl_accept;
};

/* At most one message per interval; the next one says how many were held back. */
static bool ratelimit_pass(struct ratelimit *rl, uint64_t now, unsigned *suppressed)
{
        if (rl->last && now < rl->last + CONTROL_WARN_INTERVAL_USEC) {
                rl->suppressed++;
                return false;
        }
        rl->last = now;
        *suppressed = rl->suppressed;
        rl->suppressed = 0;
        return true;
}

static uint64_t server_now(const struct control_server *s)
{
        uint64_t now = 0;
        if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) < 0)
                now = 0;
        return now ? now : 1;
}

static void accept_pause(struct control_server *s)
{
        if (s->accept_paused)
                return;
        s->accept_paused = true;
        sd_event_source_set_enabled(s->accept_source, SD_EVENT_OFF);
}

/* CONTROL_MAX_CONNECTIONS, or fewer when descriptors are scarce: clients
 * may take a quarter of RLIMIT_NOFILE, the rest is the daemon's own work. */
static unsigned conn_cap(void)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
            rl.rlim_cur / 4 >= CONTROL_MAX_CONNECTIONS)
                return CONTROL_MAX_CONNECTIONS;
        return rl.rlim_cur / 4 > 1 ? (unsigned)(rl.rlim_cur / 4) : 1;
}

static void accept_resume(struct control_server *s)
{
        if (!s->accept_paused || s->n_conns >= conn_cap())
                return;
        s->accept_paused = false;
        if (s->accept_retry)
                sd_event_source_set_enabled(s->accept_retry, SD_EVENT_OFF);
        sd_event_source_set_enabled(s->accept_source, SD_EVENT_ON);
}

static void conn_free(struct control_conn *c)
{
        struct control_conn **p;

        for (p = &c->server->conns; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->deadline);
        if (c->fd >= 0)
                close(c->fd);
        free(c->reply);
        c->server->n_conns--;
        accept_resume(c->server);
        free(c);
}

static json_object *error_reply(const char *msg)
{
        json_object *o = json_object_new_object();
        json_object_object_add(o, "ok", json_object_new_boolean(false));
        json_object_object_add(o, "error", json_object_new_string(msg));
        return o;
}

/* The one JSON value of @text[0..len), or NULL when it is not exactly one:
 * anything but blanks after it is refused, not ignored. */
static json_object *parse_one_value(const char *text, size_t len)
{
        struct json_tokener *tok = json_tokener_new();
        json_object *v;

        if (!tok)
                return NULL;
        /* An object ends at its '}': a value still incomplete at the end is no request. */
        v = json_tokener_parse_ex(tok, text, (int)len);
        if (v) {
                for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
                        if (!strchr(" \t\r\n", text[i])) {
                                json_object_put(v);
                                v = NULL;
                                break;
                        }
        }
        json_tokener_free(tok);
        return v;
}

/* A request is complete at a newline or when the client shut down writing. */
static json_object *conn_handle_request(struct control_conn *c)
{
        c->request[c->request_len] = '\0';
        /* A NUL inside is no JSON text: the tokener would stop at it. */
        json_object *req = strlen(c->request) == c->request_len ? parse_one_value(c->request, c->request_len) : NULL;
        json_object *cmd = NULL;
        json_object *reply;

        if (!req || !json_object_is_type(req, json_type_object) ||
            !json_object_object_get_ex(req, "command", &cmd) || !json_object_is_type(cmd, json_type_string))
                reply = error_reply("bad request: expected one {\"command\":\"...\"} and nothing after it");
        else
                reply = c->server->handler(c->server->userdata, json_object_get_string(cmd), req, &c->peer);
        json_object_put(req);
        return reply;
}

static int conn_start_reply(struct control_conn *c, json_object *reply)
{
        if (!reply)
                return -ENOMEM;
        const char *s = json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        c->reply_len = strlen(s) + 1;
        c->reply = malloc(c->reply_len);
        if (!c->reply) {
                json_object_put(reply);
                return -ENOMEM;
        }
        memcpy(c->reply, s, c->reply_len - 1);
        c->reply[c->reply_len - 1] = '\n';
        json_object_put(reply);
        return sd_event_source_set_io_events(c->io, EPOLLOUT);
}

static int conn_read(struct control_conn *c)
{
        for (;;) {
                ssize_t n = read(c->fd, c->request + c->request_len, CONTROL_REQUEST_MAX - c->request_len);
                if (n < 0) {
                        if (errno == EAGAIN)
                                return 0;
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                bool eof = n == 0;
                c->request_len += (size_t)n;
                if (eof || memchr(c->request, '\n', c->request_len))
                        return conn_start_reply(c, conn_handle_request(c));
                if (c->request_len == CONTROL_REQUEST_MAX)
                        return conn_start_reply(c, error_reply("request too long"));
        }
}

static int conn_write(struct control_conn *c)
{
        while (c->reply_sent < c->reply_len) {
                ssize_t n = send(c->fd, c->reply + c->reply_sent, c->reply_len - c->reply_sent, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EAGAIN)
                                return 0;
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                c->reply_sent += (size_t)n;
        }
        return 1;  /* done */
}

static int on_conn_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct control_conn *c = userdata;
        int r;

        if (c->reply)
                r = conn_write(c);
        else
                r = conn_read(c);
        if (r < 0)
                log_debug_errno(r, "control client: %m");
        if (r != 0 || (revents & (EPOLLERR | EPOLLHUP) && !c->reply))
                conn_free(c);
        return 0;
}

static int on_conn_deadline(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct control_conn *c = userdata;
        log_debug("control client gave no complete request within %llu s; closing",
                  (unsigned long long)(CONTROL_DEADLINE_USEC / 1000000));
        conn_free(c);
        return 0;
}

static int on_accept_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct control_server *srv = userdata;

        sd_event_source_set_enabled(s, SD_EVENT_OFF);
        accept_resume(srv);
        return 0;
}

/* Out of descriptors: stop accepting for a while instead of spinning on a
 * listener that stays readable. */
static void accept_backoff(struct control_server *srv, int error)
{
        uint64_t now = server_now(srv);
        unsigned suppressed;

        if (ratelimit_pass(&srv->rl_accept, now, &suppressed))
                log_warning_errno(error, "control socket: accept failed: %m; pausing for %llu ms (%u more such failures not logged)",
                                  (unsigned long long)(CONTROL_ACCEPT_RETRY_USEC / 1000), suppressed);
        accept_pause(srv);
        if (!srv->accept_retry) {
                if (sd_event_add_time(srv->event, &srv->accept_retry, CLOCK_MONOTONIC, now + CONTROL_ACCEPT_RETRY_USEC,
                                      0, on_accept_retry, srv) < 0)
                        srv->accept_retry = NULL;
        } else {
                sd_event_source_set_time(srv->accept_retry, now + CONTROL_ACCEPT_RETRY_USEC);
                sd_event_source_set_enabled(srv->accept_retry, SD_EVENT_ONESHOT);
        }
}

int control_server_add_connection(struct control_server *srv, int cfd)
{
        uint64_t now = server_now(srv);
        socklen_t len = sizeof(struct ucred);
        int r;

        struct control_conn *c = calloc(1, sizeof(*c));
        if (!c) {
                close(cfd);
                return -ENOMEM;
        }
        c->server = srv;
        c->fd = cfd;
        c->next = srv->conns;
        srv->conns = c;
        srv->n_conns++;
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &c->peer, &len) < 0)
                c->peer = (struct ucred){ .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
        r = sd_event_add_io(srv->event, &c->io, cfd, EPOLLIN, on_conn_io, c);
        if (r >= 0)
                r = sd_event_add_time(srv->event, &c->deadline, CLOCK_MONOTONIC, now + CONTROL_DEADLINE_USEC, 0,
                                      on_conn_deadline, c);
        if (r < 0) {
                conn_free(c);
                return r;
        }
        if (srv->n_conns >= conn_cap()) {
                unsigned suppressed;
                if (ratelimit_pass(&srv->rl_full, now, &suppressed))
                        log_warning("control socket: %u clients connected, the limit; further ones wait in the "
                                    "listen queue (%u more such warnings not logged)",
                                    srv->n_conns, suppressed);
                accept_pause(srv);
        }
        return 0;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct control_server *srv = userdata;

        /* A few per wake-up, so one flood cannot hold the loop. */
        for (int i = 0; i < 8 && !srv->accept_paused; i++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                                accept_backoff(srv, -errno);
                        else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                                log_warning_errno(-errno, "control socket: accept failed: %m");
                        return 0;
                }
                if (control_server_add_connection(srv, cfd) == -ENOMEM)
                        accept_backoff(srv, -ENOMEM);
        }
        return 0;
}

static int make_parent_dir(const char *path)
{
        _cleanup_free_ char *dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir)
                return 0;
        *slash = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

int control_server_new(sd_event *e, const char *path, const char *group, control_handler_t handler,
                       void *userdata, struct control_server **out)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        gid_t gid = (gid_t)-1;
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return log_error_errno(-ENAMETOOLONG, "ControlSocket=%s: path too long for a Unix socket", path);
        if (group && *group) {
                struct group *gr = getgrnam(group);
                if (!gr)
                        return log_error_errno(-ENOENT, "ControlSocketGroup=%s: no such group", group);
                gid = gr->gr_gid;
        }

        struct control_server *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(e);
        s->handler = handler;
        s->userdata = userdata;
        s->fd = -1;
        s->path = strdup(path);
        if (!s->path) {
                control_server_free(s);
                return -ENOMEM;
        }

        r = make_parent_dir(path);
        if (r < 0) {
                control_server_free(s);
                return log_error_errno(r, "cannot create the directory of %s: %m", path);
        }
        s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s->fd < 0) {
                r = -errno;
                control_server_free(s);
                return log_error_errno(r, "cannot create the control socket: %m");
        }
        strcpy(sa.sun_path, path);
        /* A previous instance's socket file; nobody listens on it any more
         * since only one daemon runs (systemd) -- replace it. */
        unlink(path);
        /* Create it private, then open up to the group: no window where it is wider. */
        mode_t old = umask(0177);
        r = bind(s->fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old);
        if (r < 0 || listen(s->fd, CONTROL_BACKLOG) < 0) {
                r = -errno;
                control_server_free(s);
                return log_error_errno(r, "cannot listen on %s: %m", path);
        }
        /* Only the group changes: a member of @group needs no CAP_CHOWN for that. */
        if (gid != (gid_t)-1 && (chown(path, (uid_t)-1, gid) < 0 || chmod(path, 0660) < 0)) {
                r = -errno;
                control_server_free(s);
                if (r == -EPERM)
                        return log_error_errno(r, "ControlSocketGroup=%s: cannot give %s to the group: %m. "
                                               "The shipped unit blocks chown(): add the drop-in "
                                               "/etc/systemd/system/vcpuspreadd.service.d/control-socket-group.conf "
                                               "with [Service] SupplementaryGroups=%s and SystemCallFilter=@chown "
                                               "(vcpuspreadd.conf(5))", group, path, group);
                return log_error_errno(r, "ControlSocketGroup=%s: cannot give %s to the group: %m", group, path);
        }
        r = sd_event_add_io(e, &s->accept_source, s->fd, EPOLLIN, on_accept, s);
        if (r < 0) {
                control_server_free(s);
                return log_error_errno(r, "cannot watch the control socket: %m");
        }
        *out = s;
        return 0;
}

void control_server_free(struct control_server *s)
{
        if (!s)
                return;
        while (s->conns)
                conn_free(s->conns);
        sd_event_source_disable_unref(s->accept_source);
        sd_event_source_disable_unref(s->accept_retry);
        if (s->fd >= 0) {
                close(s->fd);
                unlink(s->path);
        }
        free(s->path);
        sd_event_unref(s->event);
        free(s);
}
