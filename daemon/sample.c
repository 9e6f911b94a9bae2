/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "sample.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/taskstats.h>
#include <netlink/errno.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/netlink.h>

#include "macro.h"
#include "util.h"

struct taskstats_reply {
        pid_t tid;              /* the thread asked about */
        bool done;
        int error;              /* negative errno from the kernel or the parse */
        struct thread_counters counters;
};

struct sampler {
        char *proc_root;
        enum sampler_source source;
        char *description;     /* owned */
        char why[384];          /* reasons, built while probing */
        char delayacct[192];    /* the state of kernel.task_delayacct */
        uint64_t probe_cpu_ns;  /* CPU time of the probing thread when probed */

        struct nl_sock *nl;
        struct nl_cb *cb;
        int family;
        struct taskstats_reply reply;

        char *stat_buf;         /* /proc/stat text, kept between rounds */
        size_t stat_buf_size;
};

const char *sampler_source_to_string(enum sampler_source s)
{
        switch (s) {
        case SAMPLER_TASKSTATS:
                return "taskstats";
        case SAMPLER_SCHEDSTAT:
                return "schedstat";
        case SAMPLER_NONE:
                return "none";
        }
        return "?";
}

static void append(char *buf, size_t size, const char *fmt, ...)
{
        size_t len = strlen(buf);
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf + len, size - len, fmt, ap);
        va_end(ap);
}

/* Why a source was passed over; reasons are joined by ", ". */
#define reason(s, fmt, ...) \
        append((s)->why, sizeof((s)->why), "%s" fmt, (s)->why[0] ? ", " : "", ##__VA_ARGS__)
#define note_delayacct(s, ...) append((s)->delayacct, sizeof((s)->delayacct), __VA_ARGS__)

/* libnl reports its own error codes; the rest of the daemon speaks errno. */
static int nlerr_to_errno(int nlerr)
{
        switch (abs(nlerr)) {
        case NLE_NOMEM:
                return -ENOMEM;
        case NLE_PERM:
        case NLE_NOACCESS:
                return -EPERM;
        case NLE_OBJ_NOTFOUND:
                return -ENOENT;
        case NLE_AGAIN:
                return -EAGAIN;
        case NLE_INTR:
                return -EINTR;
        case NLE_OPNOTSUPP:
        case NLE_AF_NOSUPPORT:
                return -EOPNOTSUPP;
        default:
                return -EIO;
        }
}

/* ---- files under proc_root ----------------------------------------------- */

/* Read a small file whole into @buf (NUL-terminated).  Returns length or -errno. */
static ssize_t read_small_file(const char *path, char *buf, size_t size)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        ssize_t n;

        if (fd < 0)
                return -errno;
        n = read(fd, buf, size - 1);
        if (n < 0)
                n = -errno;
        else
                buf[n] = '\0';
        close(fd);
        return n;
}

static int read_schedstat(const char *path, struct thread_counters *out)
{
        char buf[96];
        ssize_t n = read_small_file(path, buf, sizeof(buf));

        if (n < 0)
                return (int)n;
        return schedstat_parse(buf, out);
}

/* ---- kernel.task_delayacct ----------------------------------------------- */

/* Returns true when delay accounting stays off. */
static bool setup_delayacct(struct sampler *s, bool enable)
{
        _cleanup_free_ char *path = NULL;
        char buf[16];
        ssize_t n;

        if (asprintf(&path, "%s/sys/kernel/task_delayacct", s->proc_root) < 0) {
                note_delayacct(s, "; kernel.task_delayacct unknown: %s", strerror(ENOMEM));
                return false;
        }
        n = read_small_file(path, buf, sizeof(buf));
        if (n == -ENOENT) {
                /* Kernels before 5.14 have no switch: delay accounting is on
                 * unless booted with nodelayacct. */
                note_delayacct(s, "; no kernel.task_delayacct switch on this kernel");
                return false;
        }
        if (n < 0) {
                note_delayacct(s, "; kernel.task_delayacct unreadable: %s", strerror((int)-n));
                return false;
        }
        if (buf[0] != '0') {
                note_delayacct(s, "; kernel.task_delayacct=1");
                return false;
        }
        if (!enable) {
                note_delayacct(s, "; kernel.task_delayacct=0: delay accounting is off (enable_delayacct not set)");
                return true;
        }

        int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0 || write(fd, "1\n", 2) != 2) {
                note_delayacct(s, "; kernel.task_delayacct=0: delay accounting is off, setting it to 1 failed: %s",
                         strerror(errno));
                if (fd >= 0)
                        close(fd);
                return true;
        }
        close(fd);
        note_delayacct(s, "; kernel.task_delayacct set to 1 (enable_delayacct)");
        return false;
}

/* ---- taskstats ----------------------------------------------------------- */

static int on_taskstats_reply(struct nl_msg *msg, void *arg)
{
        struct taskstats_reply *reply = arg;
        struct nlattr *attrs[TASKSTATS_TYPE_MAX + 1];
        struct nlattr *inner[TASKSTATS_TYPE_MAX + 1];
        struct taskstats ts = {};

        if (genlmsg_parse(nlmsg_hdr(msg), 0, attrs, TASKSTATS_TYPE_MAX, NULL) < 0 ||
            !attrs[TASKSTATS_TYPE_AGGR_PID] ||
            nla_parse_nested(inner, TASKSTATS_TYPE_MAX, attrs[TASKSTATS_TYPE_AGGR_PID], NULL) < 0 ||
            !inner[TASKSTATS_TYPE_PID] || nla_len(inner[TASKSTATS_TYPE_PID]) < (int)sizeof(uint32_t) ||
            !inner[TASKSTATS_TYPE_STATS]) {
                reply->error = -EBADMSG;
                reply->done = true;
                return NL_STOP;
        }
        /* A reply to an earlier, abandoned request: keep reading. */
        if ((pid_t)nla_get_u32(inner[TASKSTATS_TYPE_PID]) != reply->tid)
                return NL_SKIP;

        /* The kernel's struct may be older or newer than ours; the fields
         * used here exist since version 1. */
        int len = nla_len(inner[TASKSTATS_TYPE_STATS]);
        if (len < (int)(offsetof(struct taskstats, cpu_run_virtual_total) + sizeof(ts.cpu_run_virtual_total))) {
                reply->error = -EBADMSG;
                reply->done = true;
                return NL_STOP;
        }
        memcpy(&ts, nla_data(inner[TASKSTATS_TYPE_STATS]), (size_t)len < sizeof(ts) ? (size_t)len : sizeof(ts));
        reply->counters.cpu_ns = ts.cpu_run_virtual_total;
        reply->counters.wait_ns = ts.cpu_delay_total;
        reply->counters.timeslices = ts.cpu_count;
        reply->error = 0;
        reply->done = true;
        return NL_STOP;
}

static int on_taskstats_error(struct sockaddr_nl *nla, struct nlmsgerr *err, void *arg)
{
        struct taskstats_reply *reply = arg;

        reply->error = err->error < 0 ? err->error : -EIO;
        reply->done = true;
        return NL_STOP;
}

static int taskstats_query(struct sampler *s, pid_t tid, struct thread_counters *out)
{
        struct nl_msg *msg = nlmsg_alloc();
        int r;

        if (!msg)
                return -ENOMEM;
        if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, s->family, 0, 0,
                         TASKSTATS_CMD_GET, TASKSTATS_VERSION) ||
            nla_put_u32(msg, TASKSTATS_CMD_ATTR_PID, (uint32_t)tid) < 0) {
                nlmsg_free(msg);
                return -ENOMEM;
        }
        r = nl_send_auto(s->nl, msg);
        nlmsg_free(msg);
        if (r < 0)
                return nlerr_to_errno(r);

        s->reply = (struct taskstats_reply) { .tid = tid };
        /* The kernel answers inside sendmsg(), so the reply is queued already;
         * only stale replies make this loop more than once. */
        for (int i = 0; i < 8 && !s->reply.done; i++) {
                r = nl_recvmsgs(s->nl, s->cb);
                if (r < 0 && !s->reply.done)
                        return nlerr_to_errno(r);
        }
        if (!s->reply.done)
                return -EIO;
        if (s->reply.error < 0)
                return s->reply.error;
        *out = s->reply.counters;
        return 0;
}

static int taskstats_open(struct sampler *s)
{
        struct timeval timeout = { .tv_sec = 1 };
        int r;

        s->nl = nl_socket_alloc();
        s->cb = nl_cb_alloc(NL_CB_DEFAULT);
        if (!s->nl || !s->cb)
                return -ENOMEM;
        /* One reply per request, matched by thread id: no acks, no sequence
         * bookkeeping. */
        nl_socket_disable_auto_ack(s->nl);
        /* A reply is under 1 KiB: one page-sized read, no MSG_PEEK first
         * (libnl's default peek doubles the recvmsg calls). */
        nl_socket_disable_msg_peek(s->nl);
        r = genl_connect(s->nl);
        if (r < 0)
                return nlerr_to_errno(r);
        /* The kernel answers synchronously; a timeout only guards against
         * a reply that never comes. */
        (void) setsockopt(nl_socket_get_fd(s->nl), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
        s->family = genl_ctrl_resolve(s->nl, TASKSTATS_GENL_NAME);
        if (s->family < 0)
                return nlerr_to_errno(s->family);
        nl_cb_set(s->cb, NL_CB_VALID, NL_CB_CUSTOM, on_taskstats_reply, &s->reply);
        nl_cb_err(s->cb, NL_CB_CUSTOM, on_taskstats_error, &s->reply);
        return 0;
}

static void taskstats_close(struct sampler *s)
{
        if (s->nl)
                nl_socket_free(s->nl);
        if (s->cb)
                nl_cb_put(s->cb);
        s->nl = NULL;
        s->cb = NULL;
}

/* Returns true when taskstats is usable; otherwise says why. */
static bool try_taskstats(struct sampler *s)
{
        struct thread_counters self;
        int r;

        r = taskstats_open(s);
        if (r == -ENOENT) {
                reason(s, "taskstats unavailable (no TASKSTATS generic netlink family in this network namespace)");
                goto fail;
        }
        if (r < 0) {
                reason(s, "taskstats unavailable (%s)", strerror(-r));
                goto fail;
        }
        r = taskstats_query(s, gettid(), &self);
        if (r == -EPERM) {
                reason(s, "taskstats unavailable (no CAP_NET_ADMIN)");
                goto fail;
        }
        if (r < 0) {
                reason(s, "taskstats unavailable (query failed: %s)", strerror(-r));
                goto fail;
        }
        /* This thread has just run for probe_cpu_ns (run_before_probing());
         * zero means the kernel does not fill the scheduler fields (delay
         * accounting off on a kernel that gates them). */
        if (self.timeslices == 0 || self.cpu_ns == 0) {
                reason(s, "taskstats reports no scheduler counters after %.1f ms of CPU time "
                       "(delay accounting off)", (double)s->probe_cpu_ns / 1e6);
                goto fail;
        }
        return true;
fail:
        taskstats_close(s);
        return false;
}

/* ---- schedstat ----------------------------------------------------------- */

static bool try_schedstat(struct sampler *s)
{
        _cleanup_free_ char *path = NULL;
        struct thread_counters self;
        int r;

        if (asprintf(&path, "%s/thread-self/schedstat", s->proc_root) < 0) {
                reason(s, "%s", strerror(ENOMEM));
                return false;
        }
        r = read_schedstat(path, &self);
        if (r == -ENOENT) {
                reason(s, "%s missing (kernel without CONFIG_SCHED_INFO)", path);
                return false;
        }
        if (r < 0) {
                reason(s, "%s unreadable: %s", path, strerror(-r));
                return false;
        }
        /* Old kernels without CONFIG_SCHEDSTATS print "0 0 0" while delay
         * accounting is off.  Zeros alone prove nothing: a thread that has
         * only just been created reads "0 0 1".  This one has run for
         * probe_cpu_ns, so zeros now mean the statistics are off. */
        if (self.timeslices == 0 || self.cpu_ns == 0) {
                reason(s, "%s reads zeros after %.1f ms of CPU time (scheduler statistics off)",
                       path, (double)s->probe_cpu_ns / 1e6);
                return false;
        }
        return true;
}

/* ---- the probe's own run time -------------------------------------------- */

#define PROBE_CPU_NS    (5 * 1000000ull)        /* the scheduler tick is 1-10 ms */
#define PROBE_WALL_NS   (1000 * 1000000ull)     /* give up waiting on a saturated host */

static uint64_t thread_cpu_ns(void)
{
        struct timespec ts;
        if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
                return 0;
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * The probes ask "does the kernel keep scheduler statistics?" by reading this
 * thread's counters, so this thread must certainly have run first: a thread
 * that was just forked reads zero run time with the statistics on.  Burn a
 * few ms of CPU (a tick or more, so the kernel's accounting has moved past
 * the first slice; reading the thread clock also brings sum_exec_runtime up
 * to date) and remember how much, for the reason given when zeros remain.
 * Costs about 5 ms once per sampler.
 */
static void run_before_probing(struct sampler *s)
{
        uint64_t cpu0 = thread_cpu_ns(), wall0 = monotonic_ns(), cpu;

        do
                cpu = thread_cpu_ns();
        while (cpu - cpu0 < PROBE_CPU_NS && monotonic_ns() - wall0 < PROBE_WALL_NS);
        s->probe_cpu_ns = cpu;
}

/* ---- the sampler --------------------------------------------------------- */

int sampler_new(const struct sampler_config *config, struct sampler **out)
{
        _cleanup_sampler_ struct sampler *s = calloc(1, sizeof(*s));
        int r;

        if (!s)
                return -ENOMEM;
        s->proc_root = strdup(config->proc_root ? config->proc_root : "/proc");
        if (!s->proc_root)
                return -ENOMEM;

        /* First, since kernels that gate the scheduler fields on it would
         * fail the probes below. */
        bool delayacct_off = setup_delayacct(s, config->enable_delayacct);

        run_before_probing(s);
        if (!config->use_taskstats)
                reason(s, "taskstats not requested");
        if (config->use_taskstats && try_taskstats(s))
                s->source = SAMPLER_TASKSTATS;
        else if (try_schedstat(s))
                s->source = SAMPLER_SCHEDSTAT;
        else
                s->source = SAMPLER_NONE;
        if (delayacct_off && s->source != SAMPLER_NONE)
                note_delayacct(s, ", but this kernel reports CPU run-queue wait without it");

        switch (s->source) {
        case SAMPLER_TASKSTATS:
                r = asprintf(&s->description, "per-thread load from taskstats (generic netlink)%s",
                             s->delayacct);
                break;
        case SAMPLER_SCHEDSTAT:
                r = asprintf(&s->description, "per-thread load from /proc/TID/schedstat: %s%s",
                             s->why, s->delayacct);
                break;
        default:
                r = asprintf(&s->description, "no per-thread load source: %s%s", s->why, s->delayacct);
                break;
        }
        if (r < 0) {
                s->description = NULL;
                return -ENOMEM;
        }
        *out = TAKE_PTR(s);
        return 0;
}

void sampler_free(struct sampler *s)
{
        if (!s)
                return;
        taskstats_close(s);
        free(s->stat_buf);
        free(s->description);
        free(s->proc_root);
        free(s);
}

enum sampler_source sampler_source(const struct sampler *s)
{
        return s->source;
}

const char *sampler_description(const struct sampler *s)
{
        return s->description;
}

int sampler_read_thread(struct sampler *s, pid_t tid, struct thread_counters *out)
{
        int r;

        if (tid <= 0)
                return -EINVAL;
        switch (s->source) {
        case SAMPLER_TASKSTATS:
                r = taskstats_query(s, tid, out);
                break;
        case SAMPLER_SCHEDSTAT: {
                char path[PATH_MAX];
                snprintf(path, sizeof(path), "%s/%d/schedstat", s->proc_root, (int)tid);
                r = read_schedstat(path, out);
                if (r == -ENOENT)
                        r = -ESRCH;
                break;
        }
        default:
                return -EOPNOTSUPP;
        }
        if (r < 0)
                return r;
        out->when_ns = monotonic_ns();
        return 0;
}

int sampler_read_host(struct sampler *s, struct host_cpu_counters *out, size_t *n)
{
        _cleanup_free_ char *path = NULL;
        size_t used = 0;
        int fd, r = 0;

        if (asprintf(&path, "%s/stat", s->proc_root) < 0)
                return -ENOMEM;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        /* /proc/stat grows with CPUs and interrupts (tens of KiB on large
         * hosts); the buffer is kept and grown as needed. */
        for (;;) {
                if (used + 1 >= s->stat_buf_size) {
                        size_t size = s->stat_buf_size ? s->stat_buf_size * 2 : 16384;
                        char *b = realloc(s->stat_buf, size);
                        if (!b) {
                                r = -ENOMEM;
                                break;
                        }
                        s->stat_buf = b;
                        s->stat_buf_size = size;
                }
                ssize_t k = read(fd, s->stat_buf + used, s->stat_buf_size - used - 1);
                if (k < 0) {
                        r = -errno;
                        break;
                }
                if (k == 0)
                        break;
                used += (size_t)k;
        }
        close(fd);
        if (r < 0)
                return r;
        s->stat_buf[used] = '\0';
        return proc_stat_parse(s->stat_buf, out, *n, n);
}
