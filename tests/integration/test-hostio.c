/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The host adapters on the real thing: the host's libvirtd, TCG guests this
 * test starts and destroys itself (names "hostio-it-PID ..." with a space, a
 * quote and unicode), their real /proc entries and real cgroups.
 *
 * What is checked against what, so nothing is checked against itself:
 * - vcpu_threads_find against libvirt's cgroup placement: libvirt moves the
 *   thread of vCPU N into a cgroup ".../vcpuN", from QEMU's own answer.
 * - vcpu_apply against cpuset.cpus read here from the thread's cgroup
 *   directory (found here from /proc/self/mountinfo) and Cpus_allowed_list
 *   from /proc/TID/status.
 *
 * Needs root and libvirtd.  Outside CI it exits 77 (skip) without them; with
 * $CI set that is a failure, since CI is meant to provide them.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "apply.h"
#include "cpulist.h"
#include "macro.h"
#include "tap.h"
#include "vcpu-threads.h"

#define NAME_PREFIX "hostio-it-"
#define MAX_GUESTS 4

static virConnectPtr conn;
static virDomainPtr guests[MAX_GUESTS];
static char guest_names[MAX_GUESTS][256];

/* Other tests sharing this libvirtd may restart it under us: then reconnect
 * (for up to 15 s) and find our guests again by name. */
static bool reconnect(void)
{
        if (conn && virConnectIsAlive(conn) == 1)
                return true;
        if (conn)
                virConnectClose(conn);
        for (int i = 0; i < 30; i++) {
                conn = virConnectOpen("qemu:///system");
                if (conn)
                        return true;
                usleep(500 * 1000);
        }
        return false;
}

static virDomainPtr guest(size_t slot)
{
        if (guests[slot] && conn && virConnectIsAlive(conn) == 1)
                return guests[slot];
        if (guests[slot])
                virDomainFree(guests[slot]);
        guests[slot] = reconnect() ? virDomainLookupByName(conn, guest_names[slot]) : NULL;
        return guests[slot];
}

static int guest_destroy(size_t slot)
{
        int r = virDomainDestroy(guest(slot));

        if (r < 0 && guest(slot))  /* the connection broke during the call */
                r = virDomainDestroy(guest(slot));
        if (guests[slot])
                virDomainFree(guests[slot]);
        guests[slot] = NULL;
        return r;
}

static void destroy_guests(void)
{
        for (size_t i = 0; i < MAX_GUESTS; i++)
                if (guest_names[i][0] && guests[i])
                        guest_destroy(i);
        if (conn)
                virConnectClose(conn);
        conn = NULL;
}

static void on_signal(int sig)
{
        destroy_guests();
        signal(sig, SIG_DFL);
        raise(sig);
}

/* Errors are reported where they matter, with virGetLastErrorMessage(). */
static void quiet_libvirt(void *userdata, virErrorPtr e)
{
}

static int skip_or_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int skip_or_fail(const char *fmt, ...)
{
        bool ci = getenv("CI") && *getenv("CI");
        va_list ap;

        fprintf(stderr, "%s: ", ci ? "FAIL" : "SKIP");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return ci ? 1 : 77;
}

/* Guests of an earlier run of this test that was SIGKILLed. */
static void reap_stale_guests(void)
{
        virDomainPtr *doms = NULL;
        int n = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);

        for (int i = 0; i < n; i++) {
                const char *name = virDomainGetName(doms[i]);
                long pid;

                if (name && strncmp(name, NAME_PREFIX, strlen(NAME_PREFIX)) == 0 &&
                    (pid = strtol(name + strlen(NAME_PREFIX), NULL, 10)) > 0 && kill((pid_t)pid, 0) < 0 &&
                    errno == ESRCH) {
                        fprintf(stderr, "# destroying stale guest %s\n", name);
                        virDomainDestroy(doms[i]);
                }
                virDomainFree(doms[i]);
        }
        free(doms);
}

static void xml_escape(const char *s, char *out, size_t outlen)
{
        size_t n = 0;

        for (; *s && n + 8 < outlen; s++) {
                const char *e = *s == '\'' ? "&apos;" : *s == '"' ? "&quot;" : *s == '&' ? "&amp;"
                              : *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : NULL;
                if (e) {
                        memcpy(out + n, e, strlen(e));
                        n += strlen(e);
                } else {
                        out[n++] = *s;
                }
        }
        out[n] = '\0';
}

/* A transient TCG guest without an OS: its vCPU threads exist all the same. */
static virDomainPtr guest_start(size_t slot, const char *suffix, unsigned online, unsigned max)
{
        char name[256], escaped[512], xml[2048];

        snprintf(name, sizeof(name), NAME_PREFIX "%d %s", (int)getpid(), suffix);
        xml_escape(name, escaped, sizeof(escaped));
        snprintf(xml, sizeof(xml),
                 "<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory>"
                 "<vcpu current='%u'>%u</vcpu>"
                 "<os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/></features>"
                 "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>",
                 escaped, online, max);
        snprintf(guest_names[slot], sizeof(guest_names[slot]), "%s", name);
        guests[slot] = virDomainCreateXML(conn, xml, 0);
        if (!guests[slot]) {
                fprintf(stderr, "FAIL: cannot start guest \"%s\": %s\n", name, virGetLastErrorMessage());
                destroy_guests();
                exit(1);
        }
        return guests[slot];
}

static char *slurp(const char *path)
{
        static char buf[8192];
        FILE *f = fopen(path, "re");
        size_t n;

        if (!f)
                return NULL;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        while (n > 0 && buf[n - 1] == '\n')
                buf[--n] = '\0';
        return buf;
}

/* The cpuset cgroup path of @tid as /proc shows it ("" if none). */
static const char *cpuset_path_of(pid_t tid, char *out, size_t outlen)
{
        char path[64];
        char *text, *line, *save = NULL;

        snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)tid);
        out[0] = '\0';
        text = slurp(path);
        for (line = text ? strtok_r(text, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
                char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                if (c2 && c2 - c1 - 1 == 6 && strncmp(c1 + 1, "cpuset", 6) == 0)
                        snprintf(out, outlen, "%s", c2 + 1);
        }
        return out;
}

/* Where the v1 cpuset hierarchy is mounted, straight from mountinfo. */
static const char *cpuset_mount(void)
{
        static char mnt[PATH_MAX];
        char line[4096];
        FILE *f = fopen("/proc/self/mountinfo", "re");

        while (f && fgets(line, sizeof(line), f)) {
                char *sep = strstr(line, " - cgroup ");
                char dir[PATH_MAX];
                if (sep && strstr(sep, "cpuset") && sscanf(line, "%*s %*s %*s %*s %4095s", dir) == 1) {
                        snprintf(mnt, sizeof(mnt), "%s", dir);
                        break;
                }
        }
        if (f)
                fclose(f);
        return mnt;
}

static char *cgroup_cpus_of(pid_t tid)
{
        char rel[PATH_MAX], path[PATH_MAX * 2];

        snprintf(path, sizeof(path), "%s%s/cpuset.cpus", cpuset_mount(), cpuset_path_of(tid, rel, sizeof(rel)));
        return slurp(path);
}

static char *affinity_of(pid_t tid)
{
        static char out[256];
        char path[64];
        char *text, *p;

        snprintf(path, sizeof(path), "/proc/%d/status", (int)tid);
        text = slurp(path);
        p = text ? strstr(text, "Cpus_allowed_list:") : NULL;
        if (!p)
                return NULL;
        p += strlen("Cpus_allowed_list:");
        while (*p == ' ' || *p == '\t')
                p++;
        snprintf(out, sizeof(out), "%.*s", (int)strcspn(p, "\n"), p);
        return out;
}

static bool ends_with(const char *s, const char *suffix)
{
        size_t a = strlen(s), b = strlen(suffix);
        return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Each thread found for vCPU N sits in libvirt's cgroup .../vcpuN. */
static void check_threads(const char *what, const struct vcpu_threads *t, unsigned expect_n)
{
        CHECK(t->n == expect_n, "%s: %zu threads, expected %u", what, t->n, expect_n);
        CHECK(t->n_rejected == 0, "%s: %zu rejected", what, t->n_rejected);
        for (size_t i = 0; i < t->n; i++) {
                char rel[PATH_MAX], want[32];

                snprintf(want, sizeof(want), "/vcpu%u", t->threads[i].vcpu);
                cpuset_path_of(t->threads[i].tid, rel, sizeof(rel));
                CHECK(t->threads[i].vcpu == i, "%s: thread %zu is vCPU %u", what, i, t->threads[i].vcpu);
                CHECK(ends_with(rel, want), "%s: vCPU %u tid %d is in cgroup %s", what, t->threads[i].vcpu,
                      (int)t->threads[i].tid, rel);
        }
}

static void find_threads(virDomainPtr dom, unsigned online, struct vcpu_threads *t)
{
        char uuid[VIR_UUID_STRING_BUFLEN];
        char empty[] = "/tmp/hostio-empty-XXXXXX";
        struct vcpu_threads_source no_status = {};
        struct vcpu_threads fb = {};
        int r;

        virDomainGetUUIDString(dom, uuid);
        r = vcpu_threads_find(NULL, uuid, t);
        CHECK(r == 0, "find %s: %s", virDomainGetName(dom), strerror(-r));
        CHECK(t->origin == VCPU_THREADS_STATUS_FILE, "%s: origin %d", virDomainGetName(dom), t->origin);
        CHECK(t->qemu_pid > 0 && t->status_file, "%s: qemu pid %d", virDomainGetName(dom), (int)t->qemu_pid);
        check_threads("status file", t, online);

        /* Without a status dir the thread names must give the same answer. */
        if (!mkdtemp(empty))
                return;
        no_status.status_dir = empty;
        r = vcpu_threads_find(&no_status, uuid, &fb);
        CHECK(r == 0 && fb.origin == VCPU_THREADS_THREAD_NAMES && fb.qemu_pid == t->qemu_pid,
              "fallback: r %d origin %d pid %d", r, fb.origin, (int)fb.qemu_pid);
        check_threads("thread names", &fb, online);
        for (size_t i = 0; i < fb.n && i < t->n; i++)
                CHECK(fb.threads[i].tid == t->threads[i].tid, "fallback vCPU %zu: %d vs %d", i,
                      (int)fb.threads[i].tid, (int)t->threads[i].tid);
        vcpu_threads_done(&fb);
        rmdir(empty);
}

/* Only vCPU threads pass: the emulator's main thread and every helper fail. */
static void check_verify(const struct vcpu_threads *t)
{
        char path[64];
        struct dirent *de;
        unsigned vcpu;
        size_t passed = 0;
        DIR *d;

        CHECK(!vcpu_thread_verify(NULL, t->qemu_pid, t->qemu_pid, &vcpu), "emulator thread %d accepted",
              (int)t->qemu_pid);
        snprintf(path, sizeof(path), "/proc/%d/task", (int)t->qemu_pid);
        d = opendir(path);
        CHECK(d != NULL, "open %s", path);
        while (d && (de = readdir(d))) {
                pid_t tid = (pid_t)atoi(de->d_name);
                bool is_vcpu = false;

                if (tid <= 0)
                        continue;
                for (size_t i = 0; i < t->n; i++)
                        if (t->threads[i].tid == tid)
                                is_vcpu = true;
                bool ok = vcpu_thread_verify(NULL, t->qemu_pid, tid, &vcpu);
                CHECK(ok == is_vcpu, "tid %d: verify says %d, is vCPU %d", (int)tid, ok, is_vcpu);
                passed += ok;
        }
        if (d)
                closedir(d);
        CHECK(passed == t->n, "%zu of %zu tasks verified", passed, t->n);
        for (size_t i = 0; i < t->n; i++)
                CHECK(vcpu_thread_verify(NULL, t->qemu_pid, t->threads[i].tid, &vcpu) && vcpu == t->threads[i].vcpu,
                      "vCPU %zu verified as %u", i, vcpu);
}

static void apply_and_check(pid_t tid, hwloc_const_bitmap_t to)
{
        _cleanup_free_ char *text = cpulist_format(to);
        _cleanup_bitmap_ hwloc_bitmap_t aff = hwloc_bitmap_alloc(), cg = hwloc_bitmap_alloc();
        char err[512] = "";
        char *got;
        int r = vcpu_apply(NULL, tid, to, err, sizeof(err));

        CHECK(r == 0, "apply %s to tid %d: %s (%s)", text, (int)tid, strerror(-r), err);
        got = cgroup_cpus_of(tid);
        CHECK(got && strcmp(got, text) == 0, "cpuset.cpus of tid %d is \"%s\", wanted \"%s\"", (int)tid,
              got ? got : "?", text);
        got = affinity_of(tid);
        CHECK(got && strcmp(got, text) == 0, "affinity of tid %d is \"%s\", wanted \"%s\"", (int)tid,
              got ? got : "?", text);
        r = vcpu_masks_read(NULL, tid, aff, cg);
        CHECK(r == 0 && hwloc_bitmap_isequal(aff, to) && hwloc_bitmap_isequal(cg, to), "masks read back: %d", r);
}

static void write_cpus(const char *dir, const char *cpus)
{
        char path[PATH_MAX * 2];
        FILE *f;

        snprintf(path, sizeof(path), "%s/cpuset.cpus", dir);
        f = fopen(path, "we");
        CHECK(f && fputs(cpus, f) >= 0 && fclose(f) == 0, "test's own write of \"%s\" to %s", cpus, path);
}

/*
 * v1 keeps a child's cpuset.cpus inside its parent's.  The parent
 * (machine/qemu-N-NAME.libvirt-qemu) normally has every CPU; narrow it here
 * (the test writes this guest's cgroups itself, children first as v1
 * demands) and check that a vCPU cannot leave it, with a message naming the
 * parent's set.  @one is the first CPU of @before, where vCPU 1 sits now.
 */
static void check_parent_subset(pid_t tid, hwloc_const_bitmap_t before, hwloc_const_bitmap_t one)
{
        _cleanup_bitmap_ hwloc_bitmap_t other = hwloc_bitmap_alloc();
        _cleanup_free_ char *before_text = cpulist_format(before), *one_text = cpulist_format(one);
        char rel[PATH_MAX], parent[PATH_MAX * 2], child[PATH_MAX * 3], err[512] = "";
        char saved[8][256] = {}, names[8][256] = {};
        size_t n = 0;
        struct dirent *de;
        DIR *d;
        int r;

        snprintf(parent, sizeof(parent), "%s%s", cpuset_mount(), cpuset_path_of(tid, rel, sizeof(rel)));
        *strrchr(parent, '/') = '\0';
        d = opendir(parent);
        CHECK(d != NULL, "open %s", parent);
        while (d && (de = readdir(d)) && n < 8) {
                char *cpus;
                if (de->d_type != DT_DIR || de->d_name[0] == '.')
                        continue;
                snprintf(child, sizeof(child), "%s/%s/cpuset.cpus", parent, de->d_name);
                cpus = slurp(child);
                snprintf(names[n], sizeof(names[n]), "%s", de->d_name);
                snprintf(saved[n], sizeof(saved[n]), "%s", cpus ? cpus : before_text);
                snprintf(child, sizeof(child), "%s/%s", parent, de->d_name);
                write_cpus(child, one_text);
                n++;
        }
        if (d)
                closedir(d);
        write_cpus(parent, one_text);

        hwloc_bitmap_andnot(other, before, one);
        r = vcpu_apply(NULL, tid, other, err, sizeof(err));
        /* The kernel says EACCES for this (cpuset v1 validate_change). */
        CHECK(r == -EACCES || r == -EINVAL, "vCPU outside its parent's cpuset: %d (%s)", r, err);
        CHECK(strstr(err, "/vcpu1/cpuset.cpus") && strstr(err, "parent") && strstr(err, one_text),
              "message names the file and the parent's set: %s", err);
        fprintf(stderr, "# parent-subset refusal: %s\n", err);

        write_cpus(parent, before_text);
        for (size_t i = 0; i < n; i++) {
                snprintf(child, sizeof(child), "%s/%s", parent, names[i]);
                write_cpus(child, saved[i]);
        }
}

static void check_apply(const struct vcpu_threads *t)
{
        _cleanup_bitmap_ hwloc_bitmap_t before = hwloc_bitmap_alloc(), one = hwloc_bitmap_alloc();
        _cleanup_bitmap_ hwloc_bitmap_t bad = hwloc_bitmap_alloc();
        struct apply_env dry = { .dry_run = true };
        struct vcpu_cgroup cg = {};
        char err[512] = "", before_aff[256], *s;
        _cleanup_free_ char *one_text = NULL;
        pid_t tid = t->threads[t->n - 1].tid;
        int r;

        r = vcpu_cgroup_find(NULL, tid, &cg);
        CHECK(r == 0 && cg.version == 1 && ends_with(cg.dir, "/vcpu1") && strncmp(cg.dir, cpuset_mount(),
              strlen(cpuset_mount())) == 0, "real v1 cgroup of vCPU 1: r %d v%d %s", r, cg.version, cg.dir);
        vcpu_cgroup_done(&cg);

        s = cgroup_cpus_of(tid);
        CHECK(s && cpulist_parse(s, before, NULL, 0) == 0 && !hwloc_bitmap_iszero(before), "cpuset.cpus %s", s);
        s = affinity_of(tid);
        snprintf(before_aff, sizeof(before_aff), "%s", s ? s : "");

        /* One CPU, then another, then back to what libvirt gave it. */
        hwloc_bitmap_only(one, (unsigned)hwloc_bitmap_last(before));
        apply_and_check(tid, one);
        hwloc_bitmap_only(one, (unsigned)hwloc_bitmap_first(before));
        apply_and_check(tid, one);
        one_text = cpulist_format(one);

        /* Dry run: nothing changes. */
        hwloc_bitmap_only(bad, (unsigned)hwloc_bitmap_last(before));
        r = vcpu_apply(&dry, tid, bad, err, sizeof(err));
        s = affinity_of(tid);
        CHECK(r == 0 && s && strcmp(s, one_text) == 0, "dry run changed the affinity to %s", s);

        /* A CPU beyond the kernel's: refused at the cgroup, affinity untouched. */
        hwloc_bitmap_only(bad, 1000);
        err[0] = '\0';
        r = vcpu_apply(NULL, tid, bad, err, sizeof(err));
        CHECK(r < 0 && strstr(err, "/vcpu1/cpuset.cpus"), "cpuset.cpus \"1000\": %d (%s)", r, err);
        s = affinity_of(tid);
        CHECK(s && strcmp(s, one_text) == 0, "affinity changed after a refused cgroup write: %s", s);

        if (hwloc_bitmap_weight(before) >= 2)
                check_parent_subset(tid, before, one);
        else
                fprintf(stderr, "# one CPU only: cannot test the v1 parent-subset rule\n");

        apply_and_check(tid, before);
        s = affinity_of(tid);
        CHECK(s && strcmp(s, before_aff) == 0, "affinity restored: %s vs %s", s, before_aff);
}

static double now_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int dbl_cmp(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

/* Not a benchmark (bench/ is), but the cost of one lookup and one apply on
 * this host is worth a line in the log. */
static void report_cost(virDomainPtr dom, pid_t tid, hwloc_const_bitmap_t mask)
{
        enum { N = 41 };
        double find[N], apply[N];
        char uuid[VIR_UUID_STRING_BUFLEN], err[256];
        struct vcpu_threads t = {};

        virDomainGetUUIDString(dom, uuid);
        for (int i = 0; i < N; i++) {
                double t0 = now_us();
                vcpu_threads_find(NULL, uuid, &t);
                double t1 = now_us();
                vcpu_apply(NULL, tid, mask, err, sizeof(err));
                double t2 = now_us();
                vcpu_threads_done(&t);
                find[i] = t1 - t0;
                apply[i] = t2 - t1;
        }
        qsort(find, N, sizeof(double), dbl_cmp);
        qsort(apply, N, sizeof(double), dbl_cmp);
        fprintf(stderr, "# vcpu_threads_find: median %.0f us, max %.0f us; vcpu_apply: median %.0f us, max %.0f us (%d runs)\n",
                find[N / 2], find[N - 1], apply[N / 2], apply[N - 1], N);
}

int main(void)
{
        struct vcpu_threads a = {}, b = {};
        char uuid[VIR_UUID_STRING_BUFLEN];
        int r;

        if (geteuid() != 0)
                return skip_or_fail("needs root (libvirt's status files and cgroups are root's)");
        virSetErrorFunc(NULL, quiet_libvirt);
        conn = virConnectOpen("qemu:///system");
        if (!conn)
                return skip_or_fail("no libvirtd at qemu:///system: %s", virGetLastErrorMessage());
        if (access("/usr/bin/qemu-system-x86_64", X_OK) < 0)
                return skip_or_fail("no /usr/bin/qemu-system-x86_64");
        atexit(destroy_guests);
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        reap_stale_guests();

        /* Two guests, so the status file scan has to pick the right one. */
        guest_start(0, "acc b 'q' ü", 3, 4);
        guest_start(1, "\"dq\" two", 2, 2);

        find_threads(guest(0), 3, &a);
        find_threads(guest(1), 2, &b);
        CHECK(a.qemu_pid != b.qemu_pid, "two guests, one pid");
        check_verify(&a);
        CHECK(!vcpu_thread_verify(NULL, b.qemu_pid, a.threads[0].tid, NULL), "A's thread passes as B's");
        if (a.n == 3 && b.n == 2)
                check_apply(&b);

        if (a.n == 3) {
                _cleanup_bitmap_ hwloc_bitmap_t aff = hwloc_bitmap_alloc();
                if (vcpu_masks_read(NULL, a.threads[0].tid, aff, NULL) == 0)
                        report_cost(guest(0), a.threads[0].tid, aff);
        }

        /* Hotplug rewrites the status file; the new vCPU is found. */
        r = virDomainSetVcpusFlags(guest(0), 4, VIR_DOMAIN_AFFECT_LIVE);
        CHECK(r == 0, "setvcpus 4: %s", virGetLastErrorMessage());
        if (r == 0) {
                vcpu_threads_done(&a);
                find_threads(guest(0), 4, &a);
        }

        /* A destroyed guest: its threads are gone, which apply reports as
         * -ESRCH, and the domain is no longer found. */
        virDomainGetUUIDString(guest(1), uuid);
        CHECK(guest_destroy(1) == 0, "destroy: %s", virGetLastErrorMessage());
        {
                _cleanup_bitmap_ hwloc_bitmap_t zero = hwloc_bitmap_alloc();
                struct vcpu_threads gone = {};
                char err[256] = "";

                hwloc_bitmap_only(zero, 0);
                for (size_t i = 0; i < b.n; i++) {
                        r = vcpu_apply(NULL, b.threads[i].tid, zero, err, sizeof(err));
                        CHECK(r == -ESRCH, "apply to vanished tid %d: %d (%s)", (int)b.threads[i].tid, r, err);
                        CHECK(!vcpu_thread_verify(NULL, b.qemu_pid, b.threads[i].tid, NULL), "vanished tid verified");
                }
                r = vcpu_threads_find(NULL, uuid, &gone);
                CHECK(r == -ENOENT || r == -ESRCH, "find destroyed guest: %d", r);
        }

        vcpu_threads_done(&a);
        vcpu_threads_done(&b);
        destroy_guests();
        return test_result();
}
