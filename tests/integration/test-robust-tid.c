/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A vCPU thread that exits between discovery and the write, or whose tid
 * has been taken by another thread: vcpu_apply_task() must touch neither
 * the cgroup nor the affinity of whatever the tid names now.
 *
 * Real threads of this process stand in for vCPU threads, with their real
 * /proc/PID/task/TID entries and real sched_setaffinity; the cgroup side is
 * a directory tree laid out like the thread's own cpuset cgroup (the path
 * read from /proc/self/cgroup), so nothing of the host's cgroups changes.
 *
 * Real tid reuse cannot be forced in a test: the kernel hands out pids in
 * order and wraps at pid_max (4 million here), so getting one chosen tid
 * back means forking through the whole pid space, racing every other
 * process on a shared host.  What reuse looks like to the daemon is a
 * thread with the same pid and tid and another start time, and that is
 * what the "reused" case fakes: the thread is alive, the start time
 * recorded at "discovery" is not its own.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "apply.h"
#include "cpulist.h"
#include "fake-tree.h"
#include "macro.h"
#include "tap.h"
#include "vcpu-threads.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static bool release;

struct helper {
        pthread_t thread;
        pid_t tid;
        bool ready;
};

static void *helper_main(void *userdata)
{
        struct helper *h = userdata;

        pthread_mutex_lock(&lock);
        h->tid = (pid_t)syscall(SYS_gettid);
        h->ready = true;
        pthread_cond_broadcast(&cond);
        while (!release)
                pthread_cond_wait(&cond, &lock);
        pthread_mutex_unlock(&lock);
        return NULL;
}

static void helper_start(struct helper *h)
{
        pthread_create(&h->thread, NULL, helper_main, h);
        pthread_mutex_lock(&lock);
        while (!h->ready)
                pthread_cond_wait(&cond, &lock);
        pthread_mutex_unlock(&lock);
}

static char cg_file[PATH_MAX + 16];

static char tasks_file[PATH_MAX + 16];

/* The cgroup's thread list: apply writes only a cgroup that is the
 * thread's own, so the tree says it holds @tid alone. */
static void cg_tasks(pid_t tid)
{
        FILE *f = fopen(tasks_file, "w");
        if (f) {
                fprintf(f, "%d\n", (int)tid);
                fclose(f);
        }
}

static void cg_write(const char *text)
{
        FILE *f = fopen(cg_file, "w");
        if (f) {
                fputs(text, f);
                fclose(f);
        }
}

static void cg_read(char *buf, size_t len)
{
        FILE *f = fopen(cg_file, "r");
        buf[0] = '\0';
        if (f) {
                if (!fgets(buf, (int)len, f))
                        buf[0] = '\0';
                fclose(f);
        }
        buf[strcspn(buf, "\n")] = '\0';
}

static void affinity_text(pid_t tid, char *buf, size_t len)
{
        cpu_set_t set;
        size_t w = 0;

        buf[0] = '\0';
        if (sched_getaffinity(tid, sizeof(set), &set) < 0)
                return;
        for (int c = 0; c < CPU_SETSIZE && w + 8 < len; c++)
                if (CPU_ISSET(c, &set))
                        w += (size_t)snprintf(buf + w, len - w, "%s%d", w ? "," : "", c);
}

int main(void)
{
        char root[] = "/tmp/test-robust-tid-XXXXXX", path[PATH_MAX], before[64], after[64], aff_before[256],
             aff_after[256];
        _cleanup_free_ char *self_cg = NULL;
        struct helper alive = {}, gone = {};
        unsigned long long st;
        hwloc_bitmap_t to = hwloc_bitmap_alloc();
        char err[512];
        int ncpus = (int)sysconf(_SC_NPROCESSORS_ONLN), r;

        if (!mkdtemp(root))
                return 2;
        /* The cpuset line of /proc/self/cgroup, or the v2 line. */
        FILE *f = fopen("/proc/self/cgroup", "r");
        char line[1024], *cgpath = NULL;
        int version = 2;
        while (f && fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = '\0';
                char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                if (!c2)
                        continue;
                *c2 = '\0';
                if (strstr(c1 + 1, "cpuset")) {
                        version = 1;
                        cgpath = c2 + 1;
                        break;
                }
                if (line[0] == '0' && c1 == line + 1 && c2 == c1 + 1)
                        cgpath = c2 + 1;
        }
        if (!cgpath) {
                printf("SKIP: no cpuset or v2 line in /proc/self/cgroup\n");
                return 77;
        }
        self_cg = strdup(cgpath);
        if (f)
                fclose(f);
        snprintf(path, sizeof(path), "%s%s", root, self_cg);
        mkdir_p(path);
        snprintf(cg_file, sizeof(cg_file), "%s/cpuset.cpus", path);
        snprintf(tasks_file, sizeof(tasks_file), "%s/%s", path, version == 1 ? "tasks" : "cgroup.threads");
        struct apply_env env = { .cgroup_root = root, .cgroup_version = version };

        helper_start(&alive);
        helper_start(&gone);
        pid_t pid = getpid();
        hwloc_bitmap_only(to, (unsigned)(ncpus - 1));

        /* Control: the thread discovery saw is written. */
        CHECK(vcpu_thread_start_time(NULL, pid, alive.tid, &st) == 0, "start time of a live thread");
        struct vcpu_task task = { .pid = pid, .tid = alive.tid, .start_time = st };
        cg_tasks(alive.tid);
        cg_write("0-1023\n");
        r = vcpu_apply_task(&env, &task, to, err, sizeof(err));
        CHECK(r == 0, "apply to the thread discovery saw: %d (%s)", r, err);
        cg_read(after, sizeof(after));
        affinity_text(alive.tid, aff_after, sizeof(aff_after));
        CHECK(atoi(after) == ncpus - 1 && atoi(aff_after) == ncpus - 1, "written: cgroup '%s', affinity '%s'",
              after, aff_after);

        /* Reused tid, faked: alive, but not started when discovery said. */
        cpu_set_t all;
        CPU_ZERO(&all);
        for (int c = 0; c < ncpus; c++)
                CPU_SET(c, &all);
        sched_setaffinity(alive.tid, sizeof(all), &all);
        cg_write("0-1023\n");
        cg_read(before, sizeof(before));
        affinity_text(alive.tid, aff_before, sizeof(aff_before));
        task.start_time = st + 1;
        r = vcpu_apply_task(&env, &task, to, err, sizeof(err));
        CHECK(r == -ESRCH, "apply to a tid whose start time differs: %d (%s)", r, err);
        cg_read(after, sizeof(after));
        affinity_text(alive.tid, aff_after, sizeof(aff_after));
        CHECK(strcmp(before, after) == 0, "cgroup written for another thread: '%s' -> '%s'", before, after);
        CHECK(strcmp(aff_before, aff_after) == 0, "affinity of another thread changed: %s -> %s", aff_before,
              aff_after);

        /* A thread that exits between discovery and the write. */
        CHECK(vcpu_thread_start_time(NULL, pid, gone.tid, &st) == 0, "start time of the second thread");
        struct vcpu_task gone_task = { .pid = pid, .tid = gone.tid, .start_time = st };
        pthread_mutex_lock(&lock);
        release = true;
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&lock);
        CHECK(test_join_released(gone.thread, gone.tid), "second thread released");
        pthread_join(alive.thread, NULL);
        cg_tasks(gone.tid);
        cg_write("0-1023\n");
        r = vcpu_apply_task(&env, &gone_task, to, err, sizeof(err));
        CHECK(r == -ESRCH, "apply to a thread that exited: %d (%s)", r, err);
        cg_read(after, sizeof(after));
        CHECK(strcmp(after, "0-1023") == 0, "cgroup written for an exited thread: '%s'", after);

        /* The tid in another process's task directory is not the thread. */
        task = (struct vcpu_task){ .pid = 1, .tid = pid, .start_time = 0 };
        r = vcpu_apply_task(&env, &task, to, err, sizeof(err));
        CHECK(r == -ESRCH, "apply to a tid under a process it is not a task of: %d (%s)", r, err);

        hwloc_bitmap_free(to);
        snprintf(path, sizeof(path), "rm -rf '%s'", root);
        (void) !system(path);
        return test_result();
}
