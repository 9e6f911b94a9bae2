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

struct status_index;

struct vcpu_threads_source {
        const char *status_dir;         /* NULL: /run/libvirt/qemu */
        const char *proc_root;          /* NULL: /proc */
        /* When set, status files are looked up here (UUID -> file) instead
         * of reading the whole directory on every lookup. */
        const struct status_index *index;
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
        /* Field 22 of /proc/PID/task/TID/stat when found: with pid and tid
         * it names this thread and no later one that reuses the tid. */
        unsigned long long start_time;
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

/* The start time (clock ticks since boot, stat field 22) of thread @tid of
 * process @pid, read from /proc/PID/task/TID/stat.  -ESRCH when gone. */
int vcpu_thread_start_time(const char *proc_root, pid_t pid, pid_t tid, unsigned long long *out);

/*
 * The status directory read once: which file holds which domain, and what
 * each says (QEMU pid, vCPU threads).  Built whole per resync (one read of
 * every file) and kept current one file at a time from inotify events, so a
 * lookup or an event costs one file, not the directory.
 */
int status_index_new(const struct vcpu_threads_source *src, struct status_index **out);
void status_index_free(struct status_index *ix);
/* Re-read every status file: O(files).  Returns the number indexed, or
 * negative errno when the directory cannot be read (the index is then
 * empty, and lookups fall back to reading the directory). */
int status_index_rebuild(struct status_index *ix);
/* Re-read the one file @name of the directory (gone: drop it).  The
 * UUID the file named before and after, if any, go to @old_uuid and
 * @new_uuid (37 bytes each, "" for none).  Returns 1 when what it says
 * changed, 0 when not, negative errno. */
int status_index_update(struct status_index *ix, const char *name, char old_uuid[static 37],
                        char new_uuid[static 37]);
size_t status_index_size(const struct status_index *ix);
/* Whether rebuild has succeeded since the directory last went away. */
bool status_index_valid(const struct status_index *ix);
void status_index_invalidate(struct status_index *ix);

/* Is @tid a vCPU thread ("CPU N/KVM" or "CPU N/TCG") of process @pid?
 * Stores N in @vcpu.  Used again right before every write, since thread ids
 * can be reused once a guest stops. */
bool vcpu_thread_verify(const struct vcpu_threads_source *src, pid_t pid, pid_t tid,
                        unsigned *vcpu);
