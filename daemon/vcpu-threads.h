/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Which host thread runs which vCPU of a guest, found without disturbing it:
 * no QEMU monitor commands (libvirt marks the guest tainted for those).
 * Primary source: libvirt's status file in /run/libvirt/qemu/, matched by the
 * domain's UUID inside the file (a domain name never builds a path).  Every
 * thread is cross-checked: it must be a task of the QEMU process and be named
 * "CPU N/KVM" or "CPU N/TCG" with N its vCPU number.  When the status file
 * cannot be read, the thread names of the QEMU process alone are used.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct vcpu_threads_source {
        const char *status_dir;         /* NULL: /run/libvirt/qemu */
        const char *proc_root;          /* NULL: /proc */
};

/* The directory of libvirt's status files that @src names (NULL or no
 * status_dir: /run/libvirt/qemu), for discovery and for the watch on it. */
const char *vcpu_threads_status_dir(const struct vcpu_threads_source *src);
/* Whether @name, an entry of that directory, is a domain's status file
 * ("NAME.xml"); the other entries (.pid, .monitor, ...) are not. */
bool vcpu_threads_is_status_file(const char *name);

struct vcpu_thread {
        unsigned vcpu;
        pid_t tid;
};

enum vcpu_threads_origin {
        VCPU_THREADS_STATUS_FILE,       /* status file, every thread cross-checked */
        VCPU_THREADS_THREAD_NAMES,      /* fallback: /proc/PID/task/ * /comm only */
};

struct vcpu_threads {
        pid_t qemu_pid;
        size_t n;
        struct vcpu_thread *threads;    /* sorted by vcpu; owned */
        enum vcpu_threads_origin origin;
        size_t n_rejected;              /* threads listed or named as vCPUs that failed the check */
        char *status_file;              /* path of the matched status file, or NULL; owned */
};

/*
 * Find the vCPU threads of the running domain @uuid (canonical string form).
 * Returns 0, -EINVAL for a malformed UUID, -ENOENT when no QEMU process of
 * that UUID is found, -ESRCH when the process vanished while reading,
 * -ENOTUNIQ when several processes claim the UUID, other negative errno
 * otherwise.
 * Threads that fail the cross-check are left out (never guessed).
 */
int vcpu_threads_find(const struct vcpu_threads_source *src, const char *uuid,
                      struct vcpu_threads *out);

void vcpu_threads_done(struct vcpu_threads *t);

/* Is @tid a vCPU thread ("CPU N/KVM" or "CPU N/TCG") of process @pid?
 * Stores N in @vcpu.  Used again right before every write, since thread ids
 * can be reused once a guest stops. */
bool vcpu_thread_verify(const struct vcpu_threads_source *src, pid_t pid, pid_t tid,
                        unsigned *vcpu);
