/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The only place that changes the host: a vCPU thread's cpuset cgroup and
 * its scheduler affinity.  Order matters: narrowing cpuset.cpus and then
 * setting an affinity outside it fails with EINVAL, and kernels before 6.2
 * reset every task's affinity on a cpuset.cpus write, so the cgroup is written
 * first, then the affinity, then both are read back and compared.
 *
 * The thread's cgroup is read from /proc/TID/cgroup (never composed from a
 * domain name); cgroup v1 (the cpuset hierarchy) and v2 (the unified
 * hierarchy, threaded vcpuN cgroups) are both handled.  Roots are parameters
 * so tests can point the v2 code at a directory tree laid out like cgroupfs.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <hwloc.h>

struct apply_env {
        const char *proc_root;          /* NULL: /proc */
        /* NULL: discover mount points (libcgroup / mountinfo).  Otherwise the
         * directory that plays the cgroup v2 root (or v1 cpuset root when
         * cgroup_version == 1). */
        const char *cgroup_root;
        int cgroup_version;             /* 0: detect; 1 or 2 with cgroup_root */
        bool dry_run;                   /* compute and verify nothing is missing, write nothing */
};

struct vcpu_cgroup {
        int version;                    /* 1 or 2 */
        char *dir;                      /* absolute directory holding cpuset.cpus; owned */
};

/* Locate the cpuset cgroup of @tid.  -ESRCH if the thread is gone, -ENOENT if
 * it has none (no cpuset controller).  Mount points come from libcgroup, or
 * /proc/self/mountinfo when libcgroup cannot tell; found once per process. */
int vcpu_cgroup_find(const struct apply_env *env, pid_t tid, struct vcpu_cgroup *out);
void vcpu_cgroup_done(struct vcpu_cgroup *cg);

/* Current masks of @tid; either output may be NULL.  The cgroup mask is the
 * effective cpuset.cpus (empty in v2 means "inherit": the parent's). */
int vcpu_masks_read(const struct apply_env *env, pid_t tid, hwloc_bitmap_t affinity,
                    hwloc_bitmap_t cgroup);

/*
 * Give @tid the mask @to: cgroup first, then affinity, then read back both.
 * Returns 0; -ESRCH when the thread vanished (normal: caller drops and
 * resyncs); -EIO when the read-back differs; -EACCES (or -EINVAL) when a v1
 * parent cpuset lacks CPUs of @to; other negative errno on failure.  The
 * caller re-checks the thread with vcpu_thread_verify() first: thread ids
 * are reused.  With env->dry_run the cgroup is located and nothing written.
 * On failure @err (if given) holds a one-line reason naming the file or call.
 * A failed affinity write after a successful cgroup write leaves the cgroup
 * holding @to, which still contains the thread: never a half state the
 * kernel would refuse.
 */
int vcpu_apply(const struct apply_env *env, pid_t tid, hwloc_const_bitmap_t to, char *err,
               size_t errlen);

/* A thread as discovery saw it: a task of @pid, started at @start_time
 * (field 22 of /proc/PID/task/TID/stat). */
struct vcpu_task {
        pid_t pid;
        pid_t tid;
        unsigned long long start_time;
};

/*
 * vcpu_apply() for the thread @task names and no other: its cgroup is read
 * from /proc/PID/task/TID/cgroup, and its start time is checked again right
 * before the cgroup write and right before the affinity call.  A thread that
 * is gone, or whose tid now belongs to a thread started at another time,
 * is -ESRCH and nothing is written for it.  (Between the last check and the
 * syscall a few microseconds remain: no kernel interface sets an affinity
 * or moves a cpuset through a pidfd.)
 */
int vcpu_apply_task(const struct apply_env *env, const struct vcpu_task *task, hwloc_const_bitmap_t to,
                    char *err, size_t errlen);
