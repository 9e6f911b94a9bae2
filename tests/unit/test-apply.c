/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * apply.c against directory trees laid out like cgroupfs, with a fake /proc
 * whose TID/cgroup files point into them.  Why fakes: this host runs cgroup
 * v1 and its unified (v2) hierarchy cannot get the cpuset controller while
 * v1 holds it, so a real v2 cpuset tree cannot be produced here; v1 files
 * with odd contents (co-mounted controllers, decoy names) are easier to set
 * up than to find.  The affinity half is real: the thread ids are this test's
 * own thread (or a free id for "vanished"), and sched_getaffinity reads the
 * result back.  tests/integration/test-hostio covers real v1 cgroups of
 * real guests.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apply.h"
#include "cpulist.h"
#include "macro.h"
#include "fake-tree.h"
#include "tap.h"

static char root[PATH_MAX];
static char proc[PATH_MAX + 8];
static char v2root[PATH_MAX + 8];
static char v1root[PATH_MAX + 8];
static pid_t self_tid;

/* systemd's escaping for a domain named `acc b 'q' x`, as /proc shows it. */
#define V2_SCOPE "/machine.slice/machine-qemu\\x2d1\\x2dacc\\x20b\\x20\\x27q\\x27\\x20x.scope/libvirt"

static char *pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *pathf(const char *fmt, ...)
{
        static char bufs[4][PATH_MAX * 2];
        static unsigned i;
        char *b = bufs[i++ % 4];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(b, PATH_MAX * 2, fmt, ap);
        va_end(ap);
        return b;
}

static void put(const char *path, const char *content)
{
        char dir[PATH_MAX];
        FILE *f;

        if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
                exit(2);
        *strrchr(dir, '/') = '\0';
        mkdir_p(dir);
        f = fopen(path, "w");
        if (!f || fputs(content, f) < 0 || fclose(f) != 0) {
                perror(path);
                exit(2);
        }
}

static char *slurp(const char *path)
{
        static char buf[256];
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

        if (f)
                fclose(f);
        buf[n] = '\0';
        while (n > 0 && buf[n - 1] == '\n')
                buf[--n] = '\0';
        return f ? buf : "(unreadable)";
}

static void point_tid_at(pid_t tid, const char *cgroup_file)
{
        put(pathf("%s/%d/cgroup", proc, (int)tid), cgroup_file);
}

static void my_affinity(hwloc_bitmap_t out)
{
        cpu_set_t set;

        CPU_ZERO(&set);
        if (sched_getaffinity(0, sizeof(set), &set) < 0) {
                perror("sched_getaffinity");
                exit(2);
        }
        hwloc_bitmap_zero(out);
        for (int i = 0; i < CPU_SETSIZE; i++)
                if (CPU_ISSET(i, &set))
                        hwloc_bitmap_set(out, (unsigned)i);
}

static void v2_tree(void)
{
        mkdir_p(v2root);
        put(pathf("%s%s/cpuset.cpus", v2root, V2_SCOPE), "");
        put(pathf("%s%s/cpuset.cpus.effective", v2root, V2_SCOPE), "0-1\n");
        put(pathf("%s%s/vcpu0/cpuset.cpus", v2root, V2_SCOPE), "\n");
        put(pathf("%s%s/vcpu0/cpuset.cpus.effective", v2root, V2_SCOPE), "0-1\n");
        put(pathf("%s%s/vcpu1/cpuset.cpus", v2root, V2_SCOPE), "1\n");
        put(pathf("%s%s/vcpu1/cpuset.cpus.effective", v2root, V2_SCOPE), "1\n");
        /* a cgroup the cpuset controller is not enabled for */
        put(pathf("%s%s/emulator/cgroup.threads", v2root, V2_SCOPE), "");
        /* reads back empty whatever is written */
        mkdir_p(pathf("%s%s/devnull", v2root, V2_SCOPE));
        if (symlink("/dev/null", pathf("%s%s/devnull/cpuset.cpus", v2root, V2_SCOPE)) < 0)
                perror("symlink");
        /* cannot be opened for writing */
        mkdir_p(pathf("%s%s/isdir/cpuset.cpus", v2root, V2_SCOPE));
        /* Each holds this test's thread alone, as libvirt's vcpuN cgroups do. */
        put(pathf("%s%s/vcpu0/cgroup.threads", v2root, V2_SCOPE), pathf("%d\n", (int)self_tid));
        put(pathf("%s%s/devnull/cgroup.threads", v2root, V2_SCOPE), pathf("%d\n", (int)self_tid));
        put(pathf("%s%s/isdir/cgroup.threads", v2root, V2_SCOPE), pathf("%d\n", (int)self_tid));
        /* shared: the guest's scope holds other threads too */
        put(pathf("%s%s/shared/cpuset.cpus", v2root, V2_SCOPE), "0-1\n");
        put(pathf("%s%s/shared/cgroup.threads", v2root, V2_SCOPE), pathf("%d\n1\n", (int)self_tid));
        /* alone, but with a child cgroup whose cpuset it bounds */
        put(pathf("%s%s/parent/cpuset.cpus", v2root, V2_SCOPE), "0-1\n");
        put(pathf("%s%s/parent/cgroup.threads", v2root, V2_SCOPE), pathf("%d\n", (int)self_tid));
        put(pathf("%s%s/parent/child/cgroup.procs", v2root, V2_SCOPE), "");
}

static void v2_find_and_read(const struct apply_env *env)
{
        struct vcpu_cgroup cg = {};
        _cleanup_bitmap_ hwloc_bitmap_t aff = hwloc_bitmap_alloc(), cgm = hwloc_bitmap_alloc();
        _cleanup_bitmap_ hwloc_bitmap_t mine = hwloc_bitmap_alloc();
        int r;

        point_tid_at(self_tid, "0::" V2_SCOPE "/vcpu0\n");
        r = vcpu_cgroup_find(env, self_tid, &cg);
        CHECK(r == 0, "v2 find: %s", strerror(-r));
        CHECK(cg.version == 2, "version %d", cg.version);
        CHECK(cg.dir && strcmp(cg.dir, pathf("%s%s/vcpu0", v2root, V2_SCOPE)) == 0, "dir %s", cg.dir);
        vcpu_cgroup_done(&cg);

        /* Empty cpuset.cpus in v2 inherits: the effective set is reported. */
        r = vcpu_masks_read(env, self_tid, aff, cgm);
        my_affinity(mine);
        CHECK(r == 0, "masks: %s", strerror(-r));
        CHECK(hwloc_bitmap_isequal(aff, mine), "affinity read matches sched_getaffinity");
        CHECK(hwloc_bitmap_weight(cgm) == 2 && hwloc_bitmap_isset(cgm, 0) && hwloc_bitmap_isset(cgm, 1),
              "empty cpuset.cpus -> effective 0-1");

        point_tid_at(self_tid, "0::" V2_SCOPE "/vcpu1\n");
        r = vcpu_masks_read(env, self_tid, NULL, cgm);
        CHECK(r == 0 && hwloc_bitmap_weight(cgm) == 1 && hwloc_bitmap_isset(cgm, 1), "vcpu1 cgroup mask 1");

        point_tid_at(self_tid, "0::" V2_SCOPE "/emulator\n");
        CHECK(vcpu_cgroup_find(env, self_tid, &cg) == -ENOENT, "no cpuset.cpus -> -ENOENT");
}

static void v2_apply(const struct apply_env *env, hwloc_const_bitmap_t original)
{
        _cleanup_bitmap_ hwloc_bitmap_t one = hwloc_bitmap_alloc(), now = hwloc_bitmap_alloc();
        _cleanup_free_ char *one_text = NULL, *orig_text = cpulist_format(original);
        const char *vcpu0 = pathf("%s%s/vcpu0/cpuset.cpus", v2root, V2_SCOPE);
        char err[512] = "";
        int r;

        hwloc_bitmap_only(one, (unsigned)hwloc_bitmap_last(original));
        one_text = cpulist_format(one);
        point_tid_at(self_tid, "0::" V2_SCOPE "/vcpu0\n");

        r = vcpu_apply(env, self_tid, one, err, sizeof(err));
        CHECK(r == 0, "apply %s: %s (%s)", one_text, strerror(-r), err);
        CHECK(strcmp(slurp(vcpu0), one_text) == 0, "cpuset.cpus holds \"%s\", wanted \"%s\"", slurp(vcpu0), one_text);
        my_affinity(now);
        CHECK(hwloc_bitmap_isequal(now, one), "affinity narrowed to %s", one_text);

        r = vcpu_apply(env, self_tid, original, err, sizeof(err));
        CHECK(r == 0, "apply back: %s (%s)", strerror(-r), err);
        CHECK(strcmp(slurp(vcpu0), orig_text) == 0, "cpuset.cpus back to %s: %s", orig_text, slurp(vcpu0));
        my_affinity(now);
        CHECK(hwloc_bitmap_isequal(now, original), "affinity back to %s", orig_text);

        /* dry run: no write at all */
        struct apply_env dry = *env;
        dry.dry_run = true;
        r = vcpu_apply(&dry, self_tid, one, err, sizeof(err));
        my_affinity(now);
        CHECK(r == 0, "dry run: %s", strerror(-r));
        CHECK(strcmp(slurp(vcpu0), orig_text) == 0 && hwloc_bitmap_isequal(now, original), "dry run wrote");

        /* The read-back is a real check: a file that drops what is written. */
        point_tid_at(self_tid, "0::" V2_SCOPE "/devnull\n");
        err[0] = '\0';
        r = vcpu_apply(env, self_tid, one, err, sizeof(err));
        CHECK(r == -EIO, "lost write detected: %d", r);
        CHECK(strstr(err, "devnull/cpuset.cpus") != NULL, "err names the file: %s", err);

        /* Cgroup first: a failed cgroup write leaves the affinity alone. */
        point_tid_at(self_tid, "0::" V2_SCOPE "/vcpu0\n");
        CHECK(vcpu_apply(env, self_tid, original, err, sizeof(err)) == 0, "restore: %s", err);
        point_tid_at(self_tid, "0::" V2_SCOPE "/isdir\n");
        err[0] = '\0';
        r = vcpu_apply(env, self_tid, one, err, sizeof(err));
        my_affinity(now);
        CHECK(r == -EISDIR, "unwritable cpuset.cpus: %d", r);
        CHECK(strstr(err, "isdir/cpuset.cpus") && strstr(err, one_text), "err names file and value: %s", err);
        CHECK(hwloc_bitmap_isequal(now, original), "affinity untouched after failed cgroup write");

        /* A CPU the kernel does not have: the cgroup (fake) takes it, the
         * affinity call refuses, and the message names the call. */
        point_tid_at(self_tid, "0::" V2_SCOPE "/vcpu0\n");
        hwloc_bitmap_only(now, 4000);
        err[0] = '\0';
        r = vcpu_apply(env, self_tid, now, err, sizeof(err));
        CHECK(r == -EINVAL, "affinity to CPU 4000: %d", r);
        CHECK(strstr(err, "sched_setaffinity") != NULL, "err names the call: %s", err);
        CHECK(vcpu_apply(env, self_tid, original, err, sizeof(err)) == 0, "restore: %s", err);

        hwloc_bitmap_zero(now);
        CHECK(vcpu_apply(env, self_tid, now, err, sizeof(err)) == -EINVAL, "empty mask refused");

        /* A cgroup the thread shares (with other threads, or above a child
         * cgroup) is left alone: the affinity alone is set. */
        static const char *const not_own[] = { "shared", "parent" };
        for (size_t i = 0; i < ELEMENTSOF(not_own); i++) {
                const char *file = pathf("%s%s/%s/cpuset.cpus", v2root, V2_SCOPE, not_own[i]);
                point_tid_at(self_tid, pathf("0::%s/%s\n", V2_SCOPE, not_own[i]));
                err[0] = '\0';
                r = vcpu_apply(env, self_tid, one, err, sizeof(err));
                my_affinity(now);
                CHECK(r == 0, "%s cgroup: affinity only: %s (%s)", not_own[i], strerror(-r), err);
                CHECK(strcmp(slurp(file), "0-1") == 0, "%s cgroup untouched: %s", not_own[i], slurp(file));
                CHECK(hwloc_bitmap_isequal(now, one), "%s cgroup: affinity narrowed to %s", not_own[i], one_text);
                CHECK(vcpu_apply(env, self_tid, original, err, sizeof(err)) == 0, "restore: %s", err);
        }
}

static pid_t free_tid(void)
{
        char *text = slurp("/proc/sys/kernel/pid_max");
        long max = atol(text);

        for (long t = max - 1; t > 300; t--)
                if (access(pathf("/proc/%ld", t), F_OK) < 0)
                        return (pid_t)t;
        return 0;
}

static void vanished(const struct apply_env *env)
{
        _cleanup_bitmap_ hwloc_bitmap_t one = hwloc_bitmap_alloc();
        struct vcpu_cgroup cg = {};
        char err[512];
        pid_t tid = free_tid();

        hwloc_bitmap_only(one, 0);
        /* No /proc entry at all. */
        CHECK(vcpu_cgroup_find(env, tid, &cg) == -ESRCH, "find on a gone thread");
        CHECK(vcpu_apply(env, tid, one, err, sizeof(err)) == -ESRCH, "apply on a gone thread");
        CHECK(vcpu_masks_read(env, tid, NULL, one) == -ESRCH, "masks of a gone thread");
        /* Gone between the cgroup write and the affinity call. */
        point_tid_at(tid, "0::" V2_SCOPE "/vcpu1\n");
        CHECK(vcpu_apply(env, tid, one, err, sizeof(err)) == -ESRCH, "thread exits mid-apply");
}

static void v1_parse(void)
{
        struct apply_env env = { .proc_root = proc, .cgroup_root = v1root, .cgroup_version = 1 };
        struct vcpu_cgroup cg = {};
        const pid_t tid = 4711;
        int r;

        /* As on this host (libvirt without systemd, cgroup v1 + empty unified). */
        point_tid_at(tid, "9:name=systemd:/\n8:pids:/\n7:blkio:/machine/qemu-2-hostio-accbqx.libvirt-qemu\n"
                          "6:freezer:/\n5:devices:/\n4:memory:/\n"
                          "3:cpuset:/machine/qemu-2-hostio-accbqx.libvirt-qemu/vcpu1\n"
                          "2:cpuacct:/\n1:cpu:/\n0::/\n");
        put(pathf("%s/machine/qemu-2-hostio-accbqx.libvirt-qemu/vcpu1/cpuset.cpus", v1root), "0-1\n");
        r = vcpu_cgroup_find(&env, tid, &cg);
        CHECK(r == 0 && cg.version == 1, "v1 find: %s", strerror(-r));
        CHECK(cg.dir && strcmp(cg.dir, pathf("%s/machine/qemu-2-hostio-accbqx.libvirt-qemu/vcpu1", v1root)) == 0,
              "v1 dir %s", cg.dir);
        vcpu_cgroup_done(&cg);

        /* Detection picks v1 cpuset over the 0:: line on a hybrid host. */
        env.cgroup_version = 0;
        r = vcpu_cgroup_find(&env, tid, &cg);
        CHECK(r == 0 && cg.version == 1, "hybrid detect: %d v%d", r, cg.version);
        vcpu_cgroup_done(&cg);

        /* Decoys: "cpuset" as a path or a name= hierarchy; cpuset co-mounted. */
        point_tid_at(tid, "10:name=systemd:/cpuset\n9:cpuacct:/cpuset/x\n7:net_cls,net_prio:/\n"
                          "4:cpu,cpuset,cpuacct:/a/b c\n0::/v2/path\n");
        put(pathf("%s/a/b c/cpuset.cpus", v1root), "1\n");
        env.cgroup_version = 1;
        r = vcpu_cgroup_find(&env, tid, &cg);
        CHECK(r == 0 && cg.dir && strcmp(cg.dir, pathf("%s/a/b c", v1root)) == 0, "co-mounted: %s", cg.dir);
        vcpu_cgroup_done(&cg);

        /* Forcing v2 takes the 0:: line from the same file. */
        put(pathf("%s/v2/path/cpuset.cpus", v1root), "\n");
        env.cgroup_version = 2;
        r = vcpu_cgroup_find(&env, tid, &cg);
        CHECK(r == 0 && cg.version == 2 && strcmp(cg.dir, pathf("%s/v2/path", v1root)) == 0, "forced v2: %s",
              cg.dir);
        vcpu_cgroup_done(&cg);

        /* The hierarchy root itself. */
        point_tid_at(tid, "3:cpuset:/\n");
        put(pathf("%s/cpuset.cpus", v1root), "0-1\n");
        env.cgroup_version = 1;
        r = vcpu_cgroup_find(&env, tid, &cg);
        CHECK(r == 0 && strcmp(cg.dir, v1root) == 0, "root cgroup: %s", cg.dir);
        vcpu_cgroup_done(&cg);

        /* No cpuset anywhere. */
        point_tid_at(tid, "9:name=systemd:/\n1:cpu,cpuacct:/\n");
        env.cgroup_version = 0;
        CHECK(vcpu_cgroup_find(&env, tid, &cg) == -ENOENT, "no cpuset line");
        point_tid_at(tid, "0::/only/v2\n");
        env.cgroup_version = 1;
        CHECK(vcpu_cgroup_find(&env, tid, &cg) == -ENOENT, "v1 asked, only v2 there");
}

/* Is the host's cpuset controller on cgroup v2?  Then libcgroup answers for
 * v2 with the real mount and the mountinfo fallback is not reached. */
static bool host_has_v2_cpuset(void)
{
        char line[4096];
        FILE *f = fopen("/proc/self/mountinfo", "re");
        bool yes = false;

        while (f && fgets(line, sizeof(line), f)) {
                char dir[PATH_MAX];
                if (strstr(line, " - cgroup2 ") && sscanf(line, "%*s %*s %*s %*s %4095s", dir) == 1 &&
                    strstr(slurp(pathf("%s/cgroup.controllers", dir)), "cpuset"))
                        yes = true;
        }
        if (f)
                fclose(f);
        return yes;
}

/*
 * Discovery without cgroup_root, v2 on a host whose cpuset is not on v2:
 * libcgroup's cpuset mount is not cgroup2, so /proc/self/mountinfo (here
 * the fake one) decides.  Its mount point is escaped (\040 for a blank) and
 * it mounts a sub-cgroup ("/lxc/c1"), whose prefix the path loses.
 */
static void mountinfo_fallback(void)
{
        struct apply_env env = { .proc_root = proc };
        struct vcpu_cgroup cg = {};
        const pid_t tid = 4712;
        char mnt[PATH_MAX * 2];
        int r;

        snprintf(mnt, sizeof(mnt), "%s/mnt/cg two", root);

        if (host_has_v2_cpuset()) {
                fprintf(stderr, "# host has cpuset on cgroup v2: mountinfo fallback not reachable, skipped\n");
                return;
        }
        put(pathf("%s/self/mountinfo", proc),
            pathf("30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
                  "41 30 0:38 /lxc/c1 %s/mnt/cg\\040two rw,relatime - cgroup2 cgroup2 rw\n", root));
        put(pathf("%s/machine/vcpu0/cpuset.cpus", mnt), "0\n");
        point_tid_at(tid, "0::/lxc/c1/machine/vcpu0\n");
        r = vcpu_cgroup_find(&env, tid, &cg);
        CHECK(r == 0 && cg.version == 2, "mountinfo fallback: %s", strerror(-r));
        CHECK(cg.dir && strcmp(cg.dir, pathf("%s/machine/vcpu0", mnt)) == 0, "dir %s", cg.dir);
        vcpu_cgroup_done(&cg);

        /* A cgroup outside what is mounted cannot be reached. */
        point_tid_at(tid, "0::/lxc/c2/machine/vcpu0\n");
        CHECK(vcpu_cgroup_find(&env, tid, &cg) == -ENOENT, "cgroup outside the mount");
        point_tid_at(tid, "0::/lxc/c10/machine/vcpu0\n");
        CHECK(vcpu_cgroup_find(&env, tid, &cg) == -ENOENT, "prefix match is by component");
}

int main(void)
{
        _cleanup_bitmap_ hwloc_bitmap_t original = hwloc_bitmap_alloc();

        snprintf(root, sizeof(root), "%s/test-apply-XXXXXX", getenv("TMPDIR") ?: "/tmp");
        if (!mkdtemp(root)) {
                perror("mkdtemp");
                return 2;
        }
        snprintf(proc, sizeof(proc), "%s/proc", root);
        snprintf(v2root, sizeof(v2root), "%s/v2", root);
        snprintf(v1root, sizeof(v1root), "%s/v1", root);
        self_tid = gettid();
        my_affinity(original);
        v2_tree();

        struct apply_env env = { .proc_root = proc, .cgroup_root = v2root, .cgroup_version = 2 };
        v2_find_and_read(&env);
        v2_apply(&env, original);
        vanished(&env);
        v1_parse();
        mountinfo_fallback();

        if (system(pathf("rm -rf '%s'", root)) != 0)
                fprintf(stderr, "could not remove %s\n", root);
        return test_result();
}
