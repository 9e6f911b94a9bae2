/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vCPU thread discovery against libvirt status files (fixtures cut from a
 * real one, see fixtures/libvirt-status/README) and a fake /proc tree built
 * here.  The fake /proc is the one thing a unit test cannot get for real: it
 * would need QEMU processes with chosen pids, thread names and stale status
 * files.  tests/integration/test-hostio runs the same code on real guests.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "fake-tree.h"
#include "tap.h"
#include "vcpu-threads.h"

#define UUID_ACC "8f4c2a51-3d1e-4b7a-9c60-1e2d3f4a5b6c"
#define UUID_UNICODE "2b7e1516-28ae-4d2a-a6ab-f7158809cf4f"
#define UUID_MISMATCH "c0ffee00-1111-4222-8333-944455556666"
#define UUID_NAMED_LIKE_ACC "0badcafe-0000-4000-8000-000000000001"
#define UUID_STALE "e1e1e1e1-2222-4333-8444-555566667777"
#define UUID_GONE "f00df00d-2222-4333-8444-555566667777"
#define UUID_NOVCPUS "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
#define UUID_BROKEN "d0d0d0d0-2222-4333-8444-555566667777"
#define UUID_NOSTATUS "99999999-2222-4333-8444-555566667777"

static char proc[PATH_MAX];
static const char *fixtures;

static void put(const char *content, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put(const char *content, size_t len, const char *fmt, ...)
{
        char path[PATH_MAX], dir[PATH_MAX];
        va_list ap;
        FILE *f;

        va_start(ap, fmt);
        vsnprintf(path, sizeof(path), fmt, ap);
        va_end(ap);
        snprintf(dir, sizeof(dir), "%s", path);
        *strrchr(dir, '/') = '\0';
        mkdir_p(dir);
        f = fopen(path, "w");
        if (!f || fwrite(content, 1, len, f) != len || fclose(f) != 0) {
                perror(path);
                exit(2);
        }
}

/* A process: cmdline (NUL-separated, as the kernel shows it) and tasks
 * given as "tid:comm" strings. */
static void fake_process(int pid, const char *cmdline, size_t cmdline_len, ...)
{
        va_list ap;
        const char *task;

        put(cmdline, cmdline_len, "%s/%d/cmdline", proc, pid);
        /* where libvirt puts its QEMU processes (v1, without systemd) */
        static const char machine_cgroup[] = "3:cpuset:/machine/qemu-1-x.libvirt-qemu/emulator\n0::/\n";
        put(machine_cgroup, strlen(machine_cgroup), "%s/%d/cgroup", proc, pid);
        va_start(ap, cmdline_len);
        while ((task = va_arg(ap, const char *))) {
                char comm[64];
                int tid = atoi(task);
                char stat[256];
                snprintf(comm, sizeof(comm), "%s\n", strchr(task, ':') + 1);
                put(comm, strlen(comm), "%s/%d/task/%d/comm", proc, pid, tid);
                /* The start time (field 22) is tid * 10; the comm in
                 * parentheses may hold blanks and ')' as a real one can. */
                snprintf(stat, sizeof(stat), "%d (%s) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n", tid,
                         strchr(task, ':') + 1, tid * 10);
                put(stat, strlen(stat), "%s/%d/task/%d/stat", proc, pid, tid);
        }
        va_end(ap);
}

#define QEMU(uuid) "/usr/bin/qemu-system-x86_64\0-name\0guest=x,debug-threads=on\0-uuid\0" uuid "\0-smp\0" "4"
#define FAKE(pid, cmd, ...) fake_process(pid, cmd, sizeof(cmd), __VA_ARGS__, NULL)

static void build_proc(void)
{
        FAKE(31877, QEMU(UUID_ACC), "31877:qemu-system-x86", "31880:call_rcu", "31885:IO mon_iothread",
             "31890:CPU 0/TCG", "31891:CPU 1/TCG", "31893:CPU 2/TCG", "31894:worker");
        FAKE(4242, QEMU(UUID_UNICODE), "4242:qemu-system-x86", "4250:CPU 0/KVM", "4251:CPU 1/KVM");
        FAKE(5000, QEMU(UUID_MISMATCH), "5000:qemu-system-x86", "5001:CPU 0/KVM", "5002:CPU 0/KVM");
        FAKE(1234, QEMU(UUID_NAMED_LIKE_ACC), "1234:qemu-system-x86", "1235:CPU 0/TCG");
        /* stale.xml's pid 6000 was reused by sshd; the guest runs as 6100 */
        FAKE(6000, "/usr/sbin/sshd\0-D", "6000:sshd");
        FAKE(6100, QEMU(UUID_STALE), "6100:qemu-system-x86", "6101:CPU 0/TCG", "6102:CPU 1/TCG");
        FAKE(8000, QEMU(UUID_NOVCPUS), "8000:qemu-system-x86", "8001:CPU 0/KVM", "8002:CPU 1/KVM");
        FAKE(9000, QEMU(UUID_BROKEN), "9000:qemu-system-x86", "9001:CPU 0/TCG");
        /* two threads claim vCPU 0: neither may be picked */
        FAKE(9500, QEMU(UUID_NOSTATUS), "9500:qemu-system-x86", "9501:CPU 0/TCG", "9502:CPU 0/TCG",
             "9503:CPU 1/TCG");
        /* mentions a UUID, but not as -uuid: not a QEMU of that domain */
        FAKE(9600, "virsh\0dominfo\0" UUID_ACC, "9600:virsh");
        /* a decoy: -uuid of a real guest and vCPU-like thread names, but in a
         * user's session cgroup, where libvirt never puts a QEMU */
        FAKE(9800, QEMU(UUID_ACC), "9800:qemu-system-x86", "9801:CPU 0/TCG");
        static const char user_cgroup[] = "3:cpuset:/\n0::/user.slice/user-1000.slice/session-1.scope\n";
        put(user_cgroup, strlen(user_cgroup), "%s/%d/cgroup", proc, 9800);
        /* near misses of the vCPU thread name */
        FAKE(9700, QEMU("77777777-2222-4333-8444-555566667777"), "9700:qemu-system-x86",
             "9701:CPU 1/KVMX", "9702:CPU -1/TCG", "9703:CPU /TCG", "9704:CPU 2/TCG ", "9705:cpu 3/TCG",
             "9706:CPU 99999999999/TCG", "9707:CPU 4/TCG");
        /* non-numeric entries that a /proc scan must skip */
        put("", 0, "%s/self/status", proc);
        put("", 0, "%s/sys/kernel", proc);
}

static const char *tail(const char *path)
{
        const char *s = path ? strrchr(path, '/') : NULL;
        return s ? s + 1 : "(none)";
}

static void status_file_with_quotes(const struct vcpu_threads_source *src)
{
        struct vcpu_threads t = {};
        int r = vcpu_threads_find(src, UUID_ACC, &t);

        CHECK(r == 0, "find: %s", strerror(-r));
        CHECK(t.origin == VCPU_THREADS_STATUS_FILE, "origin %d", t.origin);
        CHECK(t.qemu_pid == 31877, "qemu pid %d", (int)t.qemu_pid);
        CHECK(strcmp(tail(t.status_file), "acc b 'q' x.xml") == 0, "status file %s", tail(t.status_file));
        CHECK(t.n == 3, "n %zu", t.n);
        CHECK(t.n_rejected == 0, "rejected %zu", t.n_rejected);
        if (t.n == 3) {
                CHECK(t.threads[0].vcpu == 0 && t.threads[0].tid == 31890, "vcpu0 -> %d", (int)t.threads[0].tid);
                CHECK(t.threads[1].vcpu == 1 && t.threads[1].tid == 31891, "vcpu1 -> %d", (int)t.threads[1].tid);
                CHECK(t.threads[2].vcpu == 2 && t.threads[2].tid == 31893, "vcpu2 -> %d", (int)t.threads[2].tid);
        }
        vcpu_threads_done(&t);

        /* libvirt writes lowercase, an operator may not. */
        r = vcpu_threads_find(src, "8F4C2A51-3D1E-4B7A-9C60-1E2D3F4A5B6C", &t);
        CHECK(r == 0 && t.origin == VCPU_THREADS_STATUS_FILE && t.n == 3, "uppercase uuid: %d", r);
        vcpu_threads_done(&t);
}

static void unicode_name(const struct vcpu_threads_source *src)
{
        struct vcpu_threads t = {};
        int r = vcpu_threads_find(src, UUID_UNICODE, &t);

        CHECK(r == 0, "find: %s", strerror(-r));
        CHECK(t.origin == VCPU_THREADS_STATUS_FILE, "origin %d", t.origin);
        CHECK(strcmp(tail(t.status_file), "ünïcödé gäst 名前 \"dq\".xml") == 0, "status file %s",
              tail(t.status_file));
        CHECK(t.n == 2 && t.threads[0].tid == 4250 && t.threads[1].tid == 4251, "KVM threads: n %zu", t.n);
        vcpu_threads_done(&t);
}

static void name_that_looks_like_a_uuid(const struct vcpu_threads_source *src)
{
        struct vcpu_threads t = {};
        /* The file named (and whose <name> is) UUID_ACC is another domain. */
        int r = vcpu_threads_find(src, UUID_NAMED_LIKE_ACC, &t);

        CHECK(r == 0 && t.qemu_pid == 1234 && t.n == 1 && t.threads[0].tid == 1235,
              "domain named like a uuid: r %d pid %d", r, (int)t.qemu_pid);
        CHECK(strcmp(tail(t.status_file), UUID_ACC ".xml") == 0, "its file %s", tail(t.status_file));
        vcpu_threads_done(&t);
}

static void mismatched_comm(const struct vcpu_threads_source *src)
{
        struct vcpu_threads t = {};
        int r = vcpu_threads_find(src, UUID_MISMATCH, &t);

        CHECK(r == 0, "find: %s", strerror(-r));
        CHECK(t.origin == VCPU_THREADS_STATUS_FILE, "origin %d", t.origin);
        /* vCPU 1 (tid named "CPU 0/KVM") and vCPU 2 (tid not a task) are dropped. */
        CHECK(t.n == 1 && t.threads[0].vcpu == 0 && t.threads[0].tid == 5001, "kept n %zu", t.n);
        CHECK(t.n_rejected == 2, "rejected %zu", t.n_rejected);
        vcpu_threads_done(&t);
}

static void fallbacks(const struct vcpu_threads_source *src)
{
        struct vcpu_threads t = {};
        int r;

        /* Truncated status file: thread names of the process with -uuid. */
        r = vcpu_threads_find(src, UUID_BROKEN, &t);
        CHECK(r == 0 && t.origin == VCPU_THREADS_THREAD_NAMES && t.qemu_pid == 9000, "broken: r %d origin %d pid %d",
              r, t.origin, (int)t.qemu_pid);
        CHECK(t.n == 1 && t.threads[0].tid == 9001 && !t.status_file, "broken: n %zu", t.n);
        vcpu_threads_done(&t);

        /* Stale status file naming a reused pid: the real QEMU is found. */
        r = vcpu_threads_find(src, UUID_STALE, &t);
        CHECK(r == 0 && t.qemu_pid == 6100 && t.origin == VCPU_THREADS_THREAD_NAMES, "stale: r %d pid %d", r,
              (int)t.qemu_pid);
        CHECK(t.n == 2 && t.threads[0].tid == 6101 && t.threads[1].tid == 6102, "stale: n %zu", t.n);
        vcpu_threads_done(&t);

        /* No <vcpus>: names of the status file's process. */
        r = vcpu_threads_find(src, UUID_NOVCPUS, &t);
        CHECK(r == 0 && t.qemu_pid == 8000 && t.origin == VCPU_THREADS_THREAD_NAMES && t.n == 2,
              "novcpus: r %d n %zu", r, t.n);
        CHECK(t.status_file && strcmp(tail(t.status_file), "novcpus.xml") == 0, "novcpus file %s", tail(t.status_file));
        vcpu_threads_done(&t);

        /* No status file at all; duplicates of one vCPU number are dropped. */
        r = vcpu_threads_find(src, UUID_NOSTATUS, &t);
        CHECK(r == 0 && t.qemu_pid == 9500 && t.origin == VCPU_THREADS_THREAD_NAMES, "nostatus: r %d", r);
        CHECK(t.n == 1 && t.threads[0].vcpu == 1 && t.threads[0].tid == 9503, "nostatus: n %zu", t.n);
        CHECK(t.n_rejected == 2, "duplicates rejected %zu", t.n_rejected);
        vcpu_threads_done(&t);

        /* Exact thread names only. */
        r = vcpu_threads_find(src, "77777777-2222-4333-8444-555566667777", &t);
        CHECK(r == 0 && t.n == 1 && t.threads[0].vcpu == 4 && t.threads[0].tid == 9707,
              "near-miss names: r %d n %zu", r, t.n);
        vcpu_threads_done(&t);
}

static void missing_status_dir(void)
{
        struct vcpu_threads_source src = { .status_dir = "/nonexistent/libvirt/qemu", .proc_root = proc };
        struct vcpu_threads t = {};
        int r = vcpu_threads_find(&src, UUID_ACC, &t);

        /* 9600 mentions the UUID as a plain argument and must not count, and
         * the decoy 9800 outside the machine cgroups neither. */
        CHECK(r == 0, "find without status dir: %s", strerror(-r));
        CHECK(t.origin == VCPU_THREADS_THREAD_NAMES && t.qemu_pid == 31877 && !t.status_file,
              "origin %d pid %d", t.origin, (int)t.qemu_pid);
        CHECK(t.n == 3 && t.threads[0].tid == 31890 && t.threads[1].tid == 31891 && t.threads[2].tid == 31893,
              "names give the same threads: n %zu", t.n);
        vcpu_threads_done(&t);
}

static void not_found(const struct vcpu_threads_source *src)
{
        struct vcpu_threads t = {};

        CHECK(vcpu_threads_find(src, "12345678-2222-4333-8444-555566667777", &t) == -ENOENT, "unknown uuid");
        /* The status file says pid 7000, which is gone, and no process claims it. */
        CHECK(vcpu_threads_find(src, UUID_GONE, &t) == -ESRCH, "vanished process");
        CHECK(vcpu_threads_find(src, "not-a-uuid", &t) == -EINVAL, "malformed uuid");
        CHECK(vcpu_threads_find(src, UUID_ACC "0", &t) == -EINVAL, "uuid with a tail");
        CHECK(t.n == 0 && !t.threads, "out untouched on failure");
}

static void verify(const struct vcpu_threads_source *src)
{
        unsigned vcpu = 99;

        CHECK(vcpu_thread_verify(src, 31877, 31891, &vcpu) && vcpu == 1, "vcpu thread: %u", vcpu);
        CHECK(!vcpu_thread_verify(src, 31877, 31877, &vcpu), "emulator thread rejected");
        CHECK(!vcpu_thread_verify(src, 31877, 31885, &vcpu), "I/O thread rejected");
        CHECK(!vcpu_thread_verify(src, 4242, 31891, &vcpu), "thread of another process rejected");
        CHECK(!vcpu_thread_verify(src, 31877, 31899, &vcpu), "missing thread rejected");
        CHECK(!vcpu_thread_verify(src, 9700, 9701, &vcpu), "\"CPU 1/KVMX\" rejected");
        CHECK(!vcpu_thread_verify(src, 9700, 9704, &vcpu), "trailing blank rejected");
        CHECK(!vcpu_thread_verify(src, 9700, 9706, &vcpu), "absurd vcpu number rejected");
}

/* Threads carry their start time; the index finds what the directory scan
 * finds, and an event re-reads one file. */
static void start_times_and_index(const struct vcpu_threads_source *src)
{
        struct vcpu_threads_source isrc = *src;
        struct status_index *ix = NULL;
        struct vcpu_threads t = {};
        unsigned long long st = 0;
        char before[37], after[37];
        int r;

        CHECK(vcpu_thread_start_time(proc, 31877, 31891, &st) == 0 && st == 318910, "start time %llu", st);
        CHECK(vcpu_thread_start_time(proc, 31877, 31899, &st) == -ESRCH, "start time of a missing thread");
        r = vcpu_threads_find(src, UUID_ACC, &t);
        CHECK(r == 0 && t.n == 3 && t.threads[0].start_time == 318900, "discovery records start times");
        vcpu_threads_done(&t);

        CHECK(status_index_new(src, &ix) == 0, "index");
        r = status_index_rebuild(ix);
        CHECK(r > 0 && status_index_valid(ix), "rebuild: %d", r);
        isrc.index = ix;
        r = vcpu_threads_find(&isrc, UUID_ACC, &t);
        CHECK(r == 0 && t.origin == VCPU_THREADS_STATUS_FILE && t.n == 3, "indexed find: %d", r);
        CHECK(strcmp(tail(t.status_file), "acc b 'q' x.xml") == 0, "indexed status file %s", tail(t.status_file));
        vcpu_threads_done(&t);
        r = vcpu_threads_find(&isrc, "8F4C2A51-3D1E-4B7A-9C60-1E2D3F4A5B6C", &t);
        CHECK(r == 0 && t.n == 3, "indexed find, upper case: %d", r);
        vcpu_threads_done(&t);
        r = status_index_update(ix, "acc b 'q' x.xml", before, after);
        CHECK(r == 0 && strcmp(before, after) == 0 && strcasecmp(after, UUID_ACC) == 0,
              "unchanged file: %d %s %s", r, before, after);
        r = status_index_update(ix, "no-such-file.xml", before, after);
        CHECK(r == 0 && !before[0] && !after[0], "missing file: %d", r);
        r = status_index_update(ix, "x.pid", before, after);
        CHECK(r == 0, "not a status file: %d", r);
        status_index_free(ix);
}

static int rm_rf(const char *path)
{
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
        return system(cmd);
}

int main(int argc, char **argv)
{
        if (argc < 2) {
                fprintf(stderr, "usage: %s FIXTURE-DIR\n", argv[0]);
                return 2;
        }
        fixtures = argv[1];
        if (getenv("TEST_DEBUG"))
                log_set_max_level(LOG_DEBUG);
        snprintf(proc, sizeof(proc), "%s/test-vcpu-threads-XXXXXX", getenv("TMPDIR") ?: "/tmp");
        if (!mkdtemp(proc)) {
                perror("mkdtemp");
                return 2;
        }
        build_proc();

        struct vcpu_threads_source src = { .status_dir = fixtures, .proc_root = proc };
        status_file_with_quotes(&src);
        unicode_name(&src);
        name_that_looks_like_a_uuid(&src);
        mismatched_comm(&src);
        fallbacks(&src);
        missing_status_dir();
        not_found(&src);
        verify(&src);
        start_times_and_index(&src);

        rm_rf(proc);
        return test_result();
}
