/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "apply.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <linux/magic.h>

#include <libcgroup.h>

#include "cpulist.h"
#include "fileio.h"
#include "log.h"
#include "lib/util.h"
#include "macro.h"

#define PROC_ROOT_DEFAULT "/proc"

static const char *proc_root(const struct apply_env *env)
{
        return env && env->proc_root ? env->proc_root : PROC_ROOT_DEFAULT;
}

/* Small kernel files (cgroup, cpuset.cpus, mountinfo) into a NUL-terminated
 * string with the trailing newline removed. */
static int read_text(const char *path, char **out)
{
        size_t n;
        int r = read_file_full(path, 4u << 20, out, &n);

        if (r < 0)
                return r;
        while (n > 0 && (*out)[n - 1] == '\n')
                (*out)[--n] = '\0';
        return 0;
}

/* --- where the thread's cpuset cgroup is -------------------------------- */

static bool list_has_token(const char *list, size_t len, const char *token)
{
        size_t tlen = strlen(token);

        for (size_t i = 0; i < len;) {
                size_t j = i;
                while (j < len && list[j] != ',')
                        j++;
                if (j - i == tlen && memcmp(list + i, token, tlen) == 0)
                        return true;
                i = j + 1;
        }
        return false;
}

/*
 * From /proc/TID/cgroup ("ID:CONTROLLERS:PATH" lines) pick the cpuset
 * hierarchy: v1 is the line whose controller list holds "cpuset", v2 the
 * "0::" line.  A v1 cpuset line wins: on a hybrid host the unified tree
 * cannot have the cpuset controller while v1 does.  @want: 0 any, 1 or 2.
 */
static int parse_proc_cgroup(const char *text, int want, int *version, char **path)
{
        const char *v2_path = NULL;
        size_t v2_len = 0;

        for (const char *line = text; *line;) {
                const char *eol = strchrnul(line, '\n');
                const char *c1 = memchr(line, ':', (size_t)(eol - line));
                const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(eol - c1 - 1)) : NULL;

                if (c2) {
                        bool v2 = c1 - line == 1 && line[0] == '0' && c2 == c1 + 1;
                        if (!v2 && want != 2 &&
                            list_has_token(c1 + 1, (size_t)(c2 - c1 - 1), "cpuset")) {
                                *version = 1;
                                *path = strndup(c2 + 1, (size_t)(eol - c2 - 1));
                                return *path ? 0 : -ENOMEM;
                        }
                        if (v2 && want != 1) {
                                v2_path = c2 + 1;
                                v2_len = (size_t)(eol - c2 - 1);
                        }
                }
                line = *eol ? eol + 1 : eol;
        }
        if (!v2_path)
                return -ENOENT;
        *version = 2;
        *path = strndup(v2_path, v2_len);
        return *path ? 0 : -ENOMEM;
}

struct cgroup_mount {
        char *dir;      /* where the hierarchy is mounted */
        char *root;     /* which of its cgroups is mounted there ("/" normally) */
};

/* Discovered once per process: mounts do not move under a running daemon. */
static struct cgroup_mount discovered[3];

static void libcgroup_log(void *userdata, int level, const char *fmt, va_list ap)
{
        _cleanup_free_ char *msg = NULL;

        /* libcgroup logs to stdout by default; keep its chatter at debug. */
        if (vasprintf(&msg, fmt, ap) >= 0)
                log_debug("libcgroup: %s", msg);
}

static bool is_cgroup_fs(const char *dir, int version)
{
        struct statfs sfs;

        if (statfs(dir, &sfs) < 0)
                return false;
        return version == 2 ? sfs.f_type == CGROUP2_SUPER_MAGIC : sfs.f_type == CGROUP_SUPER_MAGIC;
}

/* libcgroup knows which mount hosts the cpuset controller (v1 or v2). */
static int mount_from_libcgroup(int version, struct cgroup_mount *m)
{
        static int init_r = 1;
        char *dir = NULL;

        if (init_r > 0) {
                cgroup_set_logger(libcgroup_log, CGROUP_LOG_WARNING, NULL);
                init_r = cgroup_init();
        }
        if (init_r != 0 || cgroup_get_subsys_mount_point("cpuset", &dir) != 0 || !dir)
                return -ENOENT;
        if (!is_cgroup_fs(dir, version)) {
                free(dir);
                return -ENOENT;
        }
        m->dir = dir;
        m->root = strdup("/");
        return m->root ? 0 : -ENOMEM;
}

/* mountinfo escapes blanks and backslashes as \ooo. */
static void unescape_octal(char *s)
{
        char *w = s;

        for (char *p = s; *p; p++) {
                if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
                    p[3] >= '0' && p[3] <= '7') {
                        *w++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
                        p += 3;
                } else {
                        *w++ = *p;
                }
        }
        *w = '\0';
}

/* Fallback when libcgroup cannot tell: the cgroup (v1 with cpuset) or
 * cgroup2 entry of /proc/self/mountinfo, which also names the mount's root. */
static int mount_from_mountinfo(const char *proc, int version, struct cgroup_mount *m)
{
        char path[PATH_MAX];
        _cleanup_free_ char *text = NULL;
        int r;

        snprintf(path, sizeof(path), "%s/self/mountinfo", proc);
        r = read_text(path, &text);
        if (r < 0)
                return r;
        for (char *line = text, *next; line && *line; line = next) {
                char root[PATH_MAX], dir[PATH_MAX], fstype[64], super[512];
                char *sep;

                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                sep = strstr(line, " - ");
                if (!sep)
                        continue;
                /* id parent major:minor root mount-point ... - fstype source super-options */
                if (sscanf(line, "%*s %*s %*s %4095s %4095s", root, dir) != 2 ||
                    sscanf(sep + 3, "%63s %*s %511s", fstype, super) != 2)
                        continue;
                if (version == 1 ? strcmp(fstype, "cgroup") != 0 ||
                                           !list_has_token(super, strlen(super), "cpuset")
                                 : strcmp(fstype, "cgroup2") != 0)
                        continue;
                unescape_octal(root);
                unescape_octal(dir);
                m->dir = strdup(dir);
                m->root = strdup(root);
                return m->dir && m->root ? 0 : -ENOMEM;
        }
        return -ENOENT;
}

static int cgroup_mount_get(const struct apply_env *env, int version, const struct cgroup_mount **out)
{
        struct cgroup_mount *m = &discovered[version];
        int r;

        if (!m->dir) {
                r = mount_from_libcgroup(version, m);
                if (r < 0)
                        r = mount_from_mountinfo(proc_root(env), version, m);
                if (r < 0) {
                        free(m->dir);
                        free(m->root);
                        *m = (struct cgroup_mount){};
                        return r;
                }
        }
        *out = m;
        return 0;
}

/* Join mount dir and the cgroup path, which /proc/TID/cgroup gives relative
 * to the hierarchy's root; a mount of a sub-cgroup strips its own prefix. */
static int cgroup_dir_join(const char *mount_dir, const char *mount_root, const char *path, char **out)
{
        size_t rlen = strlen(mount_root);

        if (strcmp(mount_root, "/") != 0) {
                if (strncmp(path, mount_root, rlen) != 0 || (path[rlen] != '/' && path[rlen] != '\0'))
                        return -ENOENT;  /* outside what is mounted here */
                path += rlen;
        }
        while (*path == '/')
                path++;
        if (asprintf(out, "%s%s%s", mount_dir, *path ? "/" : "", path) < 0)
                return -ENOMEM;
        return 0;
}

static int cgroup_find_at(const struct apply_env *env, const char *cgroup_file, struct vcpu_cgroup *out);

int vcpu_cgroup_find(const struct apply_env *env, pid_t tid, struct vcpu_cgroup *out)
{
        char path[PATH_MAX];

        if (tid <= 0)
                return -EINVAL;
        /* Only /proc/TID/cgroup says where the thread is: libvirt's directory
         * names are mangled domain names and must never be composed. */
        snprintf(path, sizeof(path), "%s/%d/cgroup", proc_root(env), (int)tid);
        return cgroup_find_at(env, path, out);
}

static int cgroup_find_at(const struct apply_env *env, const char *cgroup_file, struct vcpu_cgroup *out)
{
        char path[PATH_MAX];
        _cleanup_free_ char *text = NULL, *cg_path = NULL, *dir = NULL;
        int version, r;

        r = read_text(cgroup_file, &text);
        if (r == -ENOENT || r == -ESRCH)
                return -ESRCH;
        if (r < 0)
                return r;
        r = parse_proc_cgroup(text, env && env->cgroup_root ? env->cgroup_version : 0, &version, &cg_path);
        if (r < 0)
                return r;

        if (env && env->cgroup_root) {
                r = cgroup_dir_join(env->cgroup_root, "/", cg_path, &dir);
        } else {
                const struct cgroup_mount *m;
                r = cgroup_mount_get(env, version, &m);
                if (r == 0)
                        r = cgroup_dir_join(m->dir, m->root, cg_path, &dir);
        }
        if (r < 0)
                return r;

        snprintf(path, sizeof(path), "%s/cpuset.cpus", dir);
        if (access(path, F_OK) < 0)
                return -ENOENT;  /* a v2 cgroup without the cpuset controller */
        *out = (struct vcpu_cgroup){ .version = version, .dir = TAKE_PTR(dir) };
        return 0;
}

void vcpu_cgroup_done(struct vcpu_cgroup *cg)
{
        free(cg->dir);
        *cg = (struct vcpu_cgroup){};
}

/* --- reading and writing the two masks ---------------------------------- */

static int cpuset_read(const char *dir, const char *file, hwloc_bitmap_t out)
{
        char path[PATH_MAX];
        _cleanup_free_ char *text = NULL;
        int r;

        snprintf(path, sizeof(path), "%s/%s", dir, file);
        r = read_text(path, &text);
        if (r < 0)
                return r;
        return cpulist_parse(text, out, NULL, 0);
}

static int cgroup_mask_read(const struct vcpu_cgroup *cg, hwloc_bitmap_t out)
{
        int r = cpuset_read(cg->dir, "cpuset.cpus", out);

        /* v2: an empty cpuset.cpus means "whatever the parent has". */
        if (r == 0 && cg->version == 2 && hwloc_bitmap_iszero(out))
                r = cpuset_read(cg->dir, "cpuset.cpus.effective", out);
        return r;
}

/* The kernel's mask may be larger than glibc's 1024-CPU cpu_set_t. */
static int affinity_get(pid_t tid, hwloc_bitmap_t out)
{
        for (size_t ncpus = 1024; ncpus <= 4 * (CPULIST_MAX_CPU + 1); ncpus *= 2) {
                size_t size = CPU_ALLOC_SIZE(ncpus);
                cpu_set_t *set = CPU_ALLOC(ncpus);
                int r;

                if (!set)
                        return -ENOMEM;
                r = sched_getaffinity(tid, size, set) < 0 ? -errno : 0;
                if (r == 0) {
                        hwloc_bitmap_zero(out);
                        for (size_t i = 0; i < ncpus; i++)
                                if (CPU_ISSET_S(i, size, set))
                                        hwloc_bitmap_set(out, (unsigned)i);
                }
                CPU_FREE(set);
                if (r != -EINVAL)
                        return r;
        }
        return -EINVAL;
}

static int affinity_set(pid_t tid, hwloc_const_bitmap_t mask)
{
        int last = hwloc_bitmap_last(mask);
        size_t ncpus, size;
        cpu_set_t *set;
        unsigned cpu;
        int r;

        if (last < 0 || (unsigned)last > CPULIST_MAX_CPU)
                return -EINVAL;
        ncpus = (size_t)last + 1;
        set = CPU_ALLOC(ncpus);
        if (!set)
                return -ENOMEM;
        size = CPU_ALLOC_SIZE(ncpus);
        CPU_ZERO_S(size, set);
        hwloc_bitmap_foreach_begin(cpu, mask)
                CPU_SET_S(cpu, size, set);
        hwloc_bitmap_foreach_end();
        r = sched_setaffinity(tid, size, set) < 0 ? -errno : 0;
        CPU_FREE(set);
        return r;
}

int vcpu_masks_read(const struct apply_env *env, pid_t tid, hwloc_bitmap_t affinity,
                    hwloc_bitmap_t cgroup)
{
        int r;

        if (affinity) {
                r = affinity_get(tid, affinity);
                if (r < 0)
                        return r;
        }
        if (cgroup) {
                struct vcpu_cgroup cg = {};
                r = vcpu_cgroup_find(env, tid, &cg);
                if (r < 0)
                        return r;
                r = cgroup_mask_read(&cg, cgroup);
                vcpu_cgroup_done(&cg);
                if (r == -ENOENT || r == -ENODEV)
                        return -ESRCH;  /* the cgroup went away with its guest */
                if (r < 0)
                        return r;
        }
        return 0;
}

static bool thread_exists(const struct apply_env *env, pid_t tid)
{
        char path[PATH_MAX];

        snprintf(path, sizeof(path), "%s/%d", proc_root(env), (int)tid);
        return access(path, F_OK) == 0;
}

/* Write @text to DIR/cpuset.cpus; the error message says which file and,
 * for v1, the parent's set a child must stay inside. */
static int cgroup_mask_write(const struct apply_env *env, pid_t tid, const struct vcpu_cgroup *cg,
                             const char *text, char *err, size_t errlen)
{
        char path[PATH_MAX];
        ssize_t k;
        int fd, r;

        snprintf(path, sizeof(path), "%s/cpuset.cpus", cg->dir);
        /* O_TRUNC as a shell's `>` does: cgroupfs ignores it, a test tree needs it. */
        fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (fd < 0 && (errno == EROFS || errno == EACCES || errno == EPERM) && thread_exists(env, tid))
                /* Not ours to write (a read-only mount, a sandbox): the caller sets the affinity alone. */
                return set_reason(err, errlen, -EROFS, "%s is not writable here: %s", path, strerror(errno));
        if (fd < 0) {
                r = -errno;
        } else {
                /* One write: cgroupfs takes the whole list in a single call. */
                k = write(fd, text, strlen(text));
                r = k < 0 ? -errno : 0;
                if (close(fd) < 0 && r == 0)
                        r = -errno;
        }
        if (r == 0)
                return 0;
        /* A guest that stops takes its cgroups along. */
        if ((r == -ENOENT || r == -ENODEV || r == -ESRCH) && !thread_exists(env, tid))
                return -ESRCH;
        if (cg->version == 1 && (r == -EINVAL || r == -EACCES || r == -EPERM)) {
                _cleanup_free_ char *parent_dir = strdup(cg->dir);
                _cleanup_free_ char *parent = NULL;
                char *slash = parent_dir ? strrchr(parent_dir, '/') : NULL;
                char ppath[PATH_MAX];

                if (slash) {
                        *slash = '\0';
                        snprintf(ppath, sizeof(ppath), "%s/cpuset.cpus", parent_dir);
                        (void)read_text(ppath, &parent);
                }
                return set_reason(err, errlen, r,
                            "write \"%s\" to %s: %s (cgroup v1 needs a subset of the parent's cpuset.cpus \"%s\")",
                            text, path, strerror(-r), parent ? parent : "?");
        }
        return set_reason(err, errlen, r, "write \"%s\" to %s: %s", text, path, strerror(-r));
}

/* Field 22 of /proc/PID/task/TID/stat.  Local twin of vcpu-threads.c's
 * reader, so this file keeps its own check next to its writes. */
static int task_start_time(const struct apply_env *env, const struct vcpu_task *t, unsigned long long *out)
{
        char path[PATH_MAX];
        _cleanup_free_ char *text = NULL;
        const char *p;
        int r;

        snprintf(path, sizeof(path), "%s/%d/task/%d/stat", proc_root(env), (int)t->pid, (int)t->tid);
        r = read_text(path, &text);
        if (r == -ENOENT)
                return -ESRCH;
        if (r < 0)
                return r;
        p = strrchr(text, ')');
        for (int field = 2; p && field < 22; field++)
                p = strchr(p + 1, ' ');
        if (!p)
                return -EBADMSG;
        char *end;
        errno = 0;
        *out = strtoull(p + 1, &end, 10);
        return errno || end == p + 1 ? -EBADMSG : 0;
}

/* Is @t still the thread discovery saw?  0, or -ESRCH when it is gone or
 * its tid now names a thread started at another time (reused). */
static int task_check(const struct apply_env *env, const struct vcpu_task *t)
{
        unsigned long long now;
        int r;

        if (!t)
                return 0;
        r = task_start_time(env, t, &now);
        if (r < 0)
                return r == -EBADMSG ? r : -ESRCH;
        return now == t->start_time ? 0 : -ESRCH;
}

static int apply_checked(const struct apply_env *env, const struct vcpu_task *task, pid_t tid,
                         hwloc_const_bitmap_t to, char *err, size_t errlen);

/* --- whose cgroup it is ------------------------------------------------ */

static void closedirp(DIR **d)
{
        if (*d)
                closedir(*d);
}
#define _cleanup_closedir_ _cleanup_(closedirp)

/*
 * Is @cg the vCPU's own cgroup: does it hold @tid and no other thread, and no
 * child cgroup below it?  libvirt gives every vCPU thread a vcpuN cgroup of
 * its own; a thread found anywhere else (the guest's scope, the machine
 * slice, the root) shares its cgroup, and narrowing that would narrow every
 * thread in it.  v1 lists threads in "tasks", v2 in "cgroup.threads".
 * 1 yes, 0 no, negative errno when the lists cannot be read.
 */
static int cgroup_is_own(const struct vcpu_cgroup *cg, pid_t tid)
{
        char path[PATH_MAX];
        _cleanup_free_ char *text = NULL;
        _cleanup_closedir_ DIR *d = NULL;
        struct dirent *de;
        char want[16];
        int r;

        snprintf(path, sizeof(path), "%s/%s", cg->dir, cg->version == 1 ? "tasks" : "cgroup.threads");
        r = read_text(path, &text);
        if (r < 0)
                return r;
        snprintf(want, sizeof(want), "%d", (int)tid);
        if (strcmp(text, want) != 0)
                return 0;
        /* A child cgroup's cpuset is bounded by this one's. */
        d = opendir(cg->dir);
        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                struct stat st;
                if (de->d_name[0] == '.' || fstatat(dirfd(d), de->d_name, &st, 0) < 0 || !S_ISDIR(st.st_mode))
                        continue;
                snprintf(path, sizeof(path), "%s/%s/%s", cg->dir, de->d_name,
                         cg->version == 1 ? "tasks" : "cgroup.procs");
                if (access(path, F_OK) == 0)
                        return 0;
        }
        return 1;
}

/*
 * Say once per cgroup (in practice: once per guest, whose vCPUs share it)
 * that the affinity alone is set.  Bounded: after WARNED_MAX distinct
 * cgroups, one last line says that further ones are not named.
 */
#define WARNED_MAX 64
static void warn_affinity_only(pid_t tid, const char *dir, const char *why)
{
        static char *warned[WARNED_MAX];
        static size_t n_warned;
        static bool said_full;

        for (size_t i = 0; i < n_warned; i++)
                if (strcmp(warned[i], dir) == 0)
                        return;
        if (n_warned == WARNED_MAX) {
                if (!said_full)
                        log_warning("More vCPU threads outside a cgroup of their own; not naming each");
                said_full = true;
                return;
        }
        warned[n_warned] = strdup(dir);
        if (warned[n_warned])
                n_warned++;
        log_warning("tid %d: cgroup %s %s: setting the affinity only, leaving the cgroup alone", (int)tid,
                    dir, why);
}

/* The affinity alone, read back; for a thread whose cgroup is not its own. */
static int affinity_only(pid_t tid, hwloc_const_bitmap_t to, const char *text, char *err, size_t errlen)
{
        _cleanup_bitmap_ hwloc_bitmap_t aff = hwloc_bitmap_alloc();
        _cleanup_free_ char *got = NULL;
        int r;

        if (!aff)
                return -ENOMEM;
        r = affinity_set(tid, to);
        if (r < 0)
                return r == -ESRCH ? r : set_reason(err, errlen, r, "sched_setaffinity(%d, \"%s\"): %s (affinity only)",
                                                    (int)tid, text, strerror(-r));
        r = affinity_get(tid, aff);
        if (r < 0)
                return r == -ESRCH ? r : set_reason(err, errlen, r, "sched_getaffinity(%d): %s", (int)tid, strerror(-r));
        if (!hwloc_bitmap_isequal(aff, to)) {
                got = cpulist_format(aff);
                return set_reason(err, errlen, -EIO, "tid %d: wanted \"%s\", read back affinity \"%s\"", (int)tid,
                                  text, got ? got : "?");
        }
        return 0;
}

int vcpu_apply(const struct apply_env *env, pid_t tid, hwloc_const_bitmap_t to, char *err,
               size_t errlen)
{
        return apply_checked(env, NULL, tid, to, err, errlen);
}

int vcpu_apply_task(const struct apply_env *env, const struct vcpu_task *task, hwloc_const_bitmap_t to,
                    char *err, size_t errlen)
{
        if (!task || task->pid <= 0 || task->tid <= 0)
                return -EINVAL;
        return apply_checked(env, task, task->tid, to, err, errlen);
}

/* affinity_only() for the thread @task names, checked right before. */
static int affinity_only_checked(const struct apply_env *env, const struct vcpu_task *task, pid_t tid,
                                 hwloc_const_bitmap_t to, const char *text, char *err, size_t errlen)
{
        int r = task_check(env, task);

        if (r < 0)
                return set_reason(err, errlen, r, "tid %d: no longer the thread found (start time)", (int)tid);
        return affinity_only(tid, to, text, err, errlen);
}

static int apply_checked(const struct apply_env *env, const struct vcpu_task *task, pid_t tid,
                         hwloc_const_bitmap_t to, char *err, size_t errlen)
{
        struct vcpu_cgroup cg = {};
        _cleanup_free_ char *text = NULL, *got_aff = NULL, *got_cg = NULL;
        _cleanup_bitmap_ hwloc_bitmap_t aff = NULL, cgmask = NULL;
        int r;

        if (hwloc_bitmap_iszero(to) || hwloc_bitmap_last(to) < 0)
                return set_reason(err, errlen, -EINVAL, "tid %d: refusing an empty or infinite mask", (int)tid);
        text = cpulist_format(to);
        if (!text)
                return -ENOMEM;

        if (task) {
                char path[PATH_MAX];

                r = task_check(env, task);
                if (r < 0)
                        return set_reason(err, errlen, r, "tid %d: no longer the thread found (start time)", (int)tid);
                snprintf(path, sizeof(path), "%s/%d/task/%d/cgroup", proc_root(env), (int)task->pid, (int)tid);
                r = cgroup_find_at(env, path, &cg);
        } else {
                r = vcpu_cgroup_find(env, tid, &cg);
        }
        if (r == -ESRCH)
                return set_reason(err, errlen, r, "tid %d: thread is gone", (int)tid);
        if (r == -ENOENT) {
                /* No cpuset controller for this thread: its affinity is all there is. */
                static bool said;
                if (!said)
                        log_notice("tid %d is in no cpuset cgroup: setting affinities only (said once)", (int)tid);
                said = true;
                if (env && env->dry_run)
                        return 0;
                return affinity_only_checked(env, task, tid, to, text, err, errlen);
        }
        if (r < 0)
                return set_reason(err, errlen, r, "tid %d: no cpuset cgroup found in %s/%d/cgroup: %s",
                            (int)tid, proc_root(env), (int)tid, strerror(-r));

        r = cgroup_is_own(&cg, tid);
        if (r == 0 || r == -ENOENT) {
                /* Never narrow a cgroup other threads (or child cgroups) live in. */
                if (!thread_exists(env, tid)) {
                        r = -ESRCH;
                        goto out;
                }
                warn_affinity_only(tid, cg.dir, r == 0 ? "holds other threads or cgroups too"
                                                      : "lists no threads");
                r = env && env->dry_run ? 0 : affinity_only_checked(env, task, tid, to, text, err, errlen);
                goto out;
        }
        if (r < 0) {
                r = set_reason(err, errlen, r, "tid %d: cannot read the threads of %s: %s", (int)tid, cg.dir,
                               strerror(-r));
                goto out;
        }
        if (env && env->dry_run) {
                vcpu_cgroup_done(&cg);
                return 0;
        }

        /* Cgroup first: an affinity outside the cpuset is refused (EINVAL), and
         * kernels < 6.2 reset the affinity on every cpuset.cpus write. */
        r = task_check(env, task);
        if (r < 0) {
                r = set_reason(err, errlen, r, "tid %d: no longer the thread found (start time)", (int)tid);
                goto out;
        }
        r = cgroup_mask_write(env, tid, &cg, text, err, errlen);
        if (r == -EROFS) {
                /* A sandbox that does not let us write here: the affinity still can be. */
                warn_affinity_only(tid, cg.dir, "cannot be written here");
                r = affinity_only_checked(env, task, tid, to, text, err, errlen);
                goto out;
        }
        if (r < 0)
                goto out;
        r = task_check(env, task);
        if (r < 0) {
                r = set_reason(err, errlen, r, "tid %d: gone after its cgroup was written", (int)tid);
                goto out;
        }
        r = affinity_set(tid, to);
        if (r < 0) {
                r = r == -ESRCH ? r : set_reason(err, errlen, r, "sched_setaffinity(%d, \"%s\"): %s (cgroup %s)",
                                           (int)tid, text, strerror(-r), cg.dir);
                goto out;
        }

        aff = hwloc_bitmap_alloc();
        cgmask = hwloc_bitmap_alloc();
        if (!aff || !cgmask) {
                r = -ENOMEM;
                goto out;
        }
        r = affinity_get(tid, aff);
        if (r < 0) {
                r = r == -ESRCH ? r : set_reason(err, errlen, r, "sched_getaffinity(%d): %s", (int)tid, strerror(-r));
                goto out;
        }
        /* Read back what was written, not the effective set: in v2 that can be
         * narrower when the parent is, which is the parent's business. */
        r = cpuset_read(cg.dir, "cpuset.cpus", cgmask);
        if (r < 0) {
                r = (r == -ENOENT || r == -ENODEV) && !thread_exists(env, tid)
                            ? -ESRCH
                            : set_reason(err, errlen, r, "read back %s/cpuset.cpus: %s", cg.dir, strerror(-r));
                goto out;
        }
        if (!hwloc_bitmap_isequal(aff, to) || !hwloc_bitmap_isequal(cgmask, to)) {
                got_aff = cpulist_format(aff);
                got_cg = cpulist_format(cgmask);
                r = set_reason(err, errlen, -EIO, "tid %d: wanted \"%s\", read back affinity \"%s\" and %s/cpuset.cpus \"%s\"",
                         (int)tid, text, got_aff ? got_aff : "?", cg.dir, got_cg ? got_cg : "?");
        }
out:
        vcpu_cgroup_done(&cg);
        return r;
}
