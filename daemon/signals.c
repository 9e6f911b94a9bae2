/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "signals.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct signals {
        char *proc_root;
        int loadavg_fd;                 /* -1 until first use */
};

int signals_new(const struct signals_config *config, struct signals **out)
{
        struct signals *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        s->loadavg_fd = -1;
        s->proc_root = strdup(config && config->proc_root ? config->proc_root : "/proc");
        if (!s->proc_root) {
                free(s);
                return -ENOMEM;
        }
        *out = s;
        return 0;
}

void signals_free(struct signals *s)
{
        if (!s)
                return;
        if (s->loadavg_fd >= 0)
                close(s->loadavg_fd);
        free(s->proc_root);
        free(s);
}

void signals_thread_init(struct signals_thread *t, pid_t pid, pid_t tid)
{
        *t = (struct signals_thread) { .pid = pid, .tid = tid, .stat_fd = -1, .status_fd = -1 };
}

void signals_thread_close(struct signals_thread *t)
{
        if (t->stat_fd >= 0)
                close(t->stat_fd);
        if (t->status_fd >= 0)
                close(t->status_fd);
        t->stat_fd = t->status_fd = -1;
}

/* ---- parsing --------------------------------------------------------------- */

static int parse_u64(const char **p, const char *end, uint64_t *out)
{
        const char *s = *p;
        uint64_t v = 0;

        while (s < end && (*s == ' ' || *s == '\t'))
                s++;
        if (s == end || *s < '0' || *s > '9')
                return -EINVAL;
        for (; s < end && *s >= '0' && *s <= '9'; s++) {
                unsigned d = (unsigned)(*s - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -EINVAL;
                v = v * 10 + d;
        }
        *p = s;
        *out = v;
        return 0;
}

int proc_tid_stat_parse(const char *text, size_t len, struct thread_sched_state *out)
{
        const char *end = text + len;
        const char *p = NULL;

        /* The command name ends at the last ')' of the line: it may hold any
         * character but NUL, newlines included. */
        for (const char *q = end; q > text; q--)
                if (q[-1] == ')') {
                        p = q;
                        break;
                }
        if (!p || end - p < 3 || p[0] != ' ' || p[2] != ' ')
                return -EINVAL;
        char state = p[1];
        /* Fields 4..38 are 35 numbers (some may be negative); 39 follows. */
        p += 2;
        for (int field = 4; field <= 39; field++) {
                if (p >= end || *p != ' ')
                        return -EINVAL;
                p++;
                if (field == 39)
                        break;
                while (p < end && *p != ' ' && *p != '\n')
                        p++;
        }
        uint64_t cpu;
        if (parse_u64(&p, end, &cpu) < 0 || cpu > INT_MAX)
                return -EINVAL;
        if (state < 'A' || state > 'z')
                return -EINVAL;
        out->state = state;
        out->cpu = (int)cpu;
        return 0;
}

/* The value after "@key:" at the start of a line, or -EINVAL. */
static int status_field(const char *text, size_t len, const char *key, uint64_t *out)
{
        size_t klen = strlen(key);
        const char *end = text + len;

        for (const char *line = text; line < end;) {
                const char *nl = memchr(line, '\n', (size_t)(end - line));
                const char *next = nl ? nl + 1 : end;
                if ((size_t)(next - line) > klen && memcmp(line, key, klen) == 0 && line[klen] == ':') {
                        const char *p = line + klen + 1;
                        return parse_u64(&p, nl ? nl : end, out);
                }
                line = next;
        }
        return -EINVAL;
}

int proc_status_ctxt_parse(const char *text, size_t len, struct thread_ctxt *out)
{
        struct thread_ctxt c;

        /* The two lines are the last of the file since 2.6.23; searching
         * from the start costs ~60 line compares, nothing beside the read. */
        if (status_field(text, len, "voluntary_ctxt_switches", &c.voluntary) < 0 ||
            status_field(text, len, "nonvoluntary_ctxt_switches", &c.involuntary) < 0)
                return -EINVAL;
        *out = c;
        return 0;
}

/* ---- reading --------------------------------------------------------------- */

static int open_file(struct signals *s, const struct signals_thread *t, const char *name)
{
        char path[PATH_MAX];
        int fd;

        snprintf(path, sizeof(path), "%s/%d/task/%d/%s", s->proc_root, (int)t->pid, (int)t->tid, name);
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return errno == ENOENT ? -ESRCH : -errno;
        return fd;
}

/* pread the whole (small) file into @buf; -ESRCH when the task is gone. */
static ssize_t read_file(struct signals *s, struct signals_thread *t, int *fd, const char *name,
                         char *buf, size_t size)
{
        if (*fd < 0) {
                int r = open_file(s, t, name);
                if (r < 0)
                        return r;
                *fd = r;
        }
        ssize_t n = pread(*fd, buf, size, 0);
        if (n < 0) {
                int r = -errno;
                if (r == -ESRCH)
                        signals_thread_close(t);
                return r;
        }
        if (n == 0) {
                /* An exited task's stat reads empty on some kernels. */
                signals_thread_close(t);
                return -ESRCH;
        }
        return n;
}

int signals_read_state(struct signals *s, struct signals_thread *t, struct thread_sched_state *out)
{
        char buf[1024];
        ssize_t n = read_file(s, t, &t->stat_fd, "stat", buf, sizeof(buf));

        if (n < 0)
                return (int)n;
        return proc_tid_stat_parse(buf, (size_t)n, out);
}

int signals_read_ctxt(struct signals *s, struct signals_thread *t, struct thread_ctxt *out)
{
        char buf[4096];
        ssize_t n = read_file(s, t, &t->status_fd, "status", buf, sizeof(buf));

        if (n < 0)
                return (int)n;
        return proc_status_ctxt_parse(buf, (size_t)n, out);
}

int proc_loadavg_running_parse(const char *text, size_t len, unsigned *running)
{
        const char *end = text + len, *p = text;
        uint64_t v;

        /* Three load averages, then "R/T". */
        for (int field = 0; field < 3; field++) {
                while (p < end && *p != ' ')
                        p++;
                if (p == end)
                        return -EINVAL;
                p++;
        }
        if (parse_u64(&p, end, &v) < 0 || p == end || *p != '/' || v > UINT32_MAX)
                return -EINVAL;
        *running = (unsigned)v;
        return 0;
}

int signals_read_running(struct signals *s, unsigned *running)
{
        char buf[128];
        unsigned r;

        if (s->loadavg_fd < 0) {
                char path[PATH_MAX];
                snprintf(path, sizeof(path), "%s/loadavg", s->proc_root);
                s->loadavg_fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (s->loadavg_fd < 0)
                        return -errno;
        }
        ssize_t n = pread(s->loadavg_fd, buf, sizeof(buf), 0);
        if (n < 0)
                return -errno;
        if (proc_loadavg_running_parse(buf, (size_t)n, &r) < 0)
                return -EINVAL;
        *running = r > 0 ? r - 1 : 0;   /* we are running while we read */
        return 0;
}

/* ---- ticks ----------------------------------------------------------------- */

void signals_tally_add(struct signals_tally *t, const struct thread_sched_state *v, size_t n)
{
        t->ticks++;
        for (size_t i = 0; i < n; i++) {
                if (v[i].state)
                        t->samples++;
                if (v[i].state != 'R')
                        continue;
                t->runnable++;
                for (size_t j = 0; j < n; j++)
                        if (j != i && v[j].state == 'R' && v[j].cpu == v[i].cpu) {
                                t->stacked++;
                                break;
                        }
        }
}

int signals_sample_guest(struct signals *s, struct signals_thread *const *threads, size_t n,
                         struct thread_sched_state *scratch, struct signals_tally *tally)
{
        int read = 0;

        for (size_t i = 0; i < n; i++) {
                int r = signals_read_state(s, threads[i], &scratch[i]);
                if (r == -ESRCH) {
                        tally->gone++;
                        scratch[i].state = 0;
                        continue;
                }
                if (r < 0)
                        return r;
                read++;
        }
        signals_tally_add(tally, scratch, n);
        return read;
}

double signals_tick_hz(const struct signals_budget *b, size_t n_threads)
{
        double hz = n_threads ? b->reads_per_s / (double)n_threads : b->max_hz;

        if (hz > b->max_hz)
                hz = b->max_hz;
        if (hz < b->min_hz)
                hz = b->min_hz;
        return hz;
}

bool signals_guest_wants_ticks(const double *busy, const double *wait, size_t n, double busy_min,
                               double wait_min, bool intervening)
{
        unsigned hot = 0;

        if (n < 2)
                return false;
        if (intervening)
                return true;
        for (size_t i = 0; i < n; i++)
                if (busy[i] >= busy_min && wait[i] >= wait_min)
                        hot++;
        return hot >= 2;
}
