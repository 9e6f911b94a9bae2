/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The sampler on the real host: threads of this process that spin, sleep or
 * share one CPU, and the vCPU thread of a real TCG guest.  Each is measured
 * through taskstats and through /proc/TID/schedstat, and cross-checked with
 * a third, independent witness: utime+stime from /proc/TID/stat (tick-based
 * accounting, a different mechanism from the scheduler's own clock).
 *
 * Needs root (taskstats wants CAP_NET_ADMIN) and libvirtd; outside CI it
 * skips (77) without them.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/capability.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "macro.h"
#include "sample.h"
#include "tap.h"

/* Every guest this test creates is named sample-... (libvirtd is shared). */
#define GUEST_PREFIX "sample-itest-"

enum { TS, SS, N_SOURCES };
static const char *const source_name[N_SOURCES] = { "taskstats", "schedstat" };
static struct sampler *samplers[N_SOURCES];

static int skip_or_fail(const char *why)
{
        if (getenv("CI")) {
                fprintf(stderr, "cannot run in CI: %s\n", why);
                return 1;
        }
        fprintf(stderr, "skipped: %s\n", why);
        return 77;
}

/* ---- threads to measure -------------------------------------------------- */

static atomic_bool stop;

struct worker {
        pthread_t thread;
        atomic_int tid;
        int cpu;                /* -1: any */
        int nice;
        bool spin;              /* else block on the pipe */
        int pipe_rd;
};

static void *worker_main(void *arg)
{
        struct worker *w = arg;
        char c;

        if (w->cpu >= 0) {
                cpu_set_t set;
                CPU_ZERO(&set);
                CPU_SET(w->cpu, &set);
                if (sched_setaffinity(0, sizeof(set), &set) < 0)
                        perror("sched_setaffinity");
        }
        /* Within this test's autogroup (see run_in_own_session). */
        if (setpriority(PRIO_PROCESS, (id_t)gettid(), w->nice) < 0)
                perror("setpriority");
        atomic_store(&w->tid, gettid());
        if (w->spin)
                while (!atomic_load_explicit(&stop, memory_order_relaxed))
                        ;
        else if (read(w->pipe_rd, &c, 1) < 0)
                perror("read");
        return NULL;
}

static void start(struct worker *w)
{
        atomic_store(&w->tid, 0);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
                abort();
        while (atomic_load(&w->tid) == 0)
                usleep(1000);
}

/* ---- measuring ----------------------------------------------------------- */

struct measured {
        double util[N_SOURCES];
        double wait[N_SOURCES];
        uint64_t slices[N_SOURCES];
        double stat_util;       /* utime+stime from /proc/TID/stat */
};

/* utime+stime of @tid in seconds, or -1. */
static double stat_cpu_s(pid_t tid)
{
        char path[64], buf[1024];
        unsigned long long utime, stime;
        /* /proc/TID/stat would sum the whole thread group. */
        snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)tid, (int)tid);
        FILE *f = fopen(path, "re");
        if (!f)
                return -1;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')');   /* comm may contain spaces */
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                         &utime, &stime) != 2)
                return -1;
        return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static double mono_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Measure @n threads over @seconds through both sources and the witness. */
static int measure(const pid_t *tids, size_t n, double seconds, struct measured *out)
{
        struct thread_load load[n][N_SOURCES];
        struct thread_counters c;
        double stat0[n], t0, t1;

        memset(load, 0, sizeof(load));
        t0 = mono_s();
        for (size_t i = 0; i < n; i++) {
                stat0[i] = stat_cpu_s(tids[i]);
                for (int s = 0; s < N_SOURCES; s++) {
                        int r = sampler_read_thread(samplers[s], tids[i], &c);
                        if (r < 0)
                                return r;
                        thread_load_update(&load[i][s], &c, 0);
                }
        }
        usleep((useconds_t)(seconds * 1e6));
        t1 = mono_s();
        for (size_t i = 0; i < n; i++) {
                for (int s = 0; s < N_SOURCES; s++) {
                        int r = sampler_read_thread(samplers[s], tids[i], &c);
                        if (r < 0)
                                return r;
                        out[i].slices[s] = c.timeslices - load[i][s].prev.timeslices;
                        if (thread_load_update(&load[i][s], &c, 0) != THREAD_LOAD_UPDATED)
                                return -EIO;
                        out[i].util[s] = load[i][s].last_util;
                        out[i].wait[s] = load[i][s].last_wait;
                }
                out[i].stat_util = (stat_cpu_s(tids[i]) - stat0[i]) / (t1 - t0);
        }
        return 0;
}

static void print(const char *what, const struct measured *m)
{
        printf("%-22s util taskstats %.4f schedstat %.4f stat %.3f | wait taskstats %.4f schedstat %.4f\n",
               what, m->util[TS], m->util[SS], m->stat_util, m->wait[TS], m->wait[SS]);
}

/* The two sources read the same scheduler counters microseconds apart:
 * they must agree closely.  The tick-based witness is coarser. */
static void check_agreement(const char *what, const struct measured *m)
{
        CHECK(fabs(m->util[TS] - m->util[SS]) < 0.02, "%s: util taskstats %.4f vs schedstat %.4f",
              what, m->util[TS], m->util[SS]);
        CHECK(fabs(m->wait[TS] - m->wait[SS]) < 0.02, "%s: wait taskstats %.4f vs schedstat %.4f",
              what, m->wait[TS], m->wait[SS]);
        CHECK(fabs(m->util[SS] - m->stat_util) < 0.06, "%s: util schedstat %.4f vs /proc/TID/stat %.4f",
              what, m->util[SS], m->stat_util);
}

/* The host CPUs' load over measure(): this host is a VM, and time its
 * hypervisor steals from a CPU is neither the run time nor the wait of the
 * thread that ran there (CI saw 8% steal, and a lone spinner at util + wait
 * = 0.93).  max_steal bounds what a thread that may have run anywhere lost. */
struct host_watch {
        struct host_cpu_counters cpus[256];
        size_t n;
        struct host_cpu_load load[256];
        double max_steal;
};

static void host_watch_start(struct host_watch *w)
{
        uint64_t now = (uint64_t)(mono_s() * 1e9);

        *w = (struct host_watch){ .n = 256 };
        CHECK(sampler_read_host(samplers[SS], w->cpus, &w->n) == 0 && w->n > 0 && w->cpus[0].cpu == 0,
              "read /proc/stat, cpu0 first");
        for (size_t i = 0; i < w->n; i++)
                host_cpu_load_update(&w->load[i], &w->cpus[i], now, 0);
}

static void host_watch_stop(struct host_watch *w)
{
        size_t n = 256;
        uint64_t now = (uint64_t)(mono_s() * 1e9);

        CHECK(sampler_read_host(samplers[SS], w->cpus, &n) == 0 && n == w->n, "read /proc/stat again");
        for (size_t i = 0; i < w->n && i < n; i++) {
                CHECK(host_cpu_load_update(&w->load[i], &w->cpus[i], now, 0) == 0, "cpu%zu load", i);
                w->max_steal = fmax(w->max_steal, w->load[i].last_steal);
        }
        printf("%-22s busy %.3f steal %.3f; most stolen from a CPU %.3f\n", "host CPU 0", w->load[0].last_busy,
               w->load[0].last_steal, w->max_steal);
}

/* A spinner is always runnable: running or waiting, never anything else,
 * but for what the hypervisor stole from its CPU (at most all of it). */
static void check_always_runnable(const char *what, const struct measured *m, double steal)
{
        for (int s = 0; s < N_SOURCES; s++) {
                double sum = m->util[s] + m->wait[s];
                CHECK(sum < 1.05 && sum > 1 - steal - 0.05, "%s via %s: util %.4f + wait %.4f (stolen %.3f)",
                      what, source_name[s], m->util[s], m->wait[s], steal);
        }
}

static void test_busy_and_idle(void)
{
        int fds[2];
        struct worker busy = { .cpu = -1, .nice = -20, .spin = true };
        struct worker idle = { .cpu = -1, .nice = 0, .spin = false };
        struct measured m[2];
        struct host_watch w;

        if (pipe(fds) < 0)
                abort();
        idle.pipe_rd = fds[0];
        atomic_store(&stop, false);
        start(&busy);
        start(&idle);

        pid_t tids[2] = { busy.tid, idle.tid };
        host_watch_start(&w);
        int r = measure(tids, 2, 1.0, m);
        CHECK(r == 0, "measure: %s", strerror(-r));
        host_watch_stop(&w);
        atomic_store(&stop, true);
        close(fds[1]);
        pthread_join(busy.thread, NULL);
        pthread_join(idle.thread, NULL);
        close(fds[0]);
        if (r < 0)
                return;

        print("busy thread", &m[0]);
        print("idle thread", &m[1]);
        for (int s = 0; s < N_SOURCES; s++) {
                CHECK(m[0].util[s] > 0.8, "busy via %s: %.4f", source_name[s], m[0].util[s]);
                CHECK(m[1].util[s] < 0.1, "idle via %s: %.4f", source_name[s], m[1].util[s]);
                CHECK(m[1].wait[s] < 0.01, "idle via %s waits %.4f", source_name[s], m[1].wait[s]);
        }
        check_always_runnable("busy", &m[0], w.max_steal);
        check_agreement("busy", &m[0]);
        check_agreement("idle", &m[1]);
}

/* Two spinners of equal weight on one CPU: each runs about half the time
 * and waits the other half.  This is what run-queue wait is for. */
static void test_shared_cpu(void)
{
        struct worker a = { .cpu = 0, .nice = -20, .spin = true };
        struct worker b = { .cpu = 0, .nice = -20, .spin = true };
        struct measured m[2];

        atomic_store(&stop, false);
        start(&a);
        start(&b);
        pid_t tids[2] = { a.tid, b.tid };
        struct host_watch w;
        host_watch_start(&w);
        int r = measure(tids, 2, 1.0, m);
        CHECK(r == 0, "measure: %s", strerror(-r));
        host_watch_stop(&w);
        atomic_store(&stop, true);
        pthread_join(a.thread, NULL);
        pthread_join(b.thread, NULL);
        if (r < 0)
                return;

        /* CPU 0 ran the spinners the whole time. */
        CHECK(w.load[0].last_busy + w.load[0].last_steal > 0.9, "CPU 0 busy %.3f + steal %.3f",
              w.load[0].last_busy, w.load[0].last_steal);

        print("spinner A on CPU 0", &m[0]);
        print("spinner B on CPU 0", &m[1]);
        for (int i = 0; i < 2; i++) {
                for (int s = 0; s < N_SOURCES; s++) {
                        CHECK(m[i].util[s] > 0.3 && m[i].util[s] < 0.7, "spinner %d via %s: util %.4f",
                              i, source_name[s], m[i].util[s]);
                        CHECK(m[i].wait[s] > 0.3 && m[i].wait[s] < 0.7, "spinner %d via %s: wait %.4f",
                              i, source_name[s], m[i].wait[s]);
                }
                check_always_runnable(i ? "spinner B" : "spinner A", &m[i], w.load[0].last_steal);
                check_agreement(i ? "spinner B" : "spinner A", &m[i]);
        }
}

static void *exit_at_once(void *arg)
{
        atomic_store((atomic_int *)arg, gettid());
        return NULL;
}

static void test_vanished_thread(void)
{
        atomic_int tid = 0;
        pthread_t t;
        struct thread_counters c;

        if (pthread_create(&t, NULL, exit_at_once, &tid) != 0)
                abort();
        CHECK(test_join_released(t, tid), "thread released");
        for (int s = 0; s < N_SOURCES; s++) {
                int r = sampler_read_thread(samplers[s], tid, &c);
                CHECK(r == -ESRCH, "gone thread via %s: %d", source_name[s], r);
        }
}

/* Without CAP_NET_ADMIN taskstats refuses; the sampler falls back to
 * schedstat and says why.  The capability is dropped in a child. */
static void test_fallback_without_cap(void)
{
        int status;

        fflush(stdout);
        pid_t child = fork();
        if (child < 0)
                abort();
        if (child == 0) {
                struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
                struct __user_cap_data_struct data[2] = {};
                if (syscall(SYS_capget, &hdr, data) < 0)
                        _exit(2);
                data[CAP_NET_ADMIN / 32].effective &= ~(1u << (CAP_NET_ADMIN % 32));
                if (syscall(SYS_capset, &hdr, data) < 0)
                        _exit(2);

                struct sampler_config cfg = { .use_taskstats = true };
                _cleanup_sampler_ struct sampler *s = NULL;
                struct thread_counters c;
                /* A just-forked thread, as the daemon's probe may be: it
                 * typically reads "0 0 1" here, which must not count as
                 * "scheduler statistics off" (issue 12). */
                char first[96] = "";
                FILE *f = fopen("/proc/thread-self/schedstat", "re");
                if (f) {
                        if (!fgets(first, sizeof(first), f))
                                first[0] = '\0';
                        fclose(f);
                }
                printf("fresh child's schedstat before probing: %s", first[0] ? first : "(unreadable)\n");
                if (sampler_new(&cfg, &s) < 0)
                        _exit(3);
                printf("without CAP_NET_ADMIN: %s\n", sampler_description(s));
                fflush(stdout);
                if (sampler_source(s) != SAMPLER_SCHEDSTAT)
                        _exit(4);
                if (!strstr(sampler_description(s), "/proc/TID/schedstat: taskstats unavailable (no CAP_NET_ADMIN)"))
                        _exit(5);
                if (sampler_read_thread(s, getppid(), &c) < 0 || c.cpu_ns == 0)
                        _exit(6);
                _exit(0);
        }
        CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status), "child");
        CHECK(WEXITSTATUS(status) == 0, "fallback without CAP_NET_ADMIN: step %d failed", WEXITSTATUS(status));
}

/* The real switch: written when allowed, and restored afterwards since it
 * is global. */
static void test_enable_delayacct(void)
{
        const char *path = "/proc/sys/kernel/task_delayacct";
        char before[8] = "", after[8] = "";
        FILE *f = fopen(path, "re");

        if (!f) {
                printf("no %s on this kernel\n", path);
                return;
        }
        CHECK(fgets(before, sizeof(before), f) != NULL, "read %s", path);
        fclose(f);
        if (before[0] != '0') {
                printf("%s is already %c: nothing to enable\n", path, before[0]);
                return;
        }

        struct sampler_config cfg = { .use_taskstats = true, .enable_delayacct = true };
        _cleanup_sampler_ struct sampler *s = NULL;
        CHECK(sampler_new(&cfg, &s) == 0, "new");
        f = fopen(path, "re");
        CHECK(f && fgets(after, sizeof(after), f), "read %s", path);
        if (f)
                fclose(f);
        CHECK(after[0] == '1', "%s after enable_delayacct: %s", path, after);
        CHECK(s && strstr(sampler_description(s), "kernel.task_delayacct set to 1 (enable_delayacct)"),
              "description: %s", s ? sampler_description(s) : "");

        f = fopen(path, "we");
        CHECK(f && fputs(before, f) >= 0 && fclose(f) == 0, "restore %s", path);
}

/* ---- a real TCG guest ---------------------------------------------------- */

static int virsh(const char *args)
{
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "virsh -q %s >/dev/null", args);
        return system(cmd);
}

/* The vCPU 0 thread of @pid ("CPU 0/TCG"), waiting up to 10 s for it. */
static pid_t find_vcpu0(pid_t pid)
{
        char dir[64], path[384], comm[64];
        snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
        for (int tries = 0; tries < 100; tries++) {
                DIR *d = opendir(dir);
                struct dirent *de;
                pid_t found = 0;
                while (d && (de = readdir(d))) {
                        if (de->d_name[0] == '.')
                                continue;
                        snprintf(path, sizeof(path), "%s/%s/comm", dir, de->d_name);
                        FILE *f = fopen(path, "re");
                        if (f && fgets(comm, sizeof(comm), f) && strcmp(comm, "CPU 0/TCG\n") == 0)
                                found = atoi(de->d_name);
                        if (f)
                                fclose(f);
                }
                if (d)
                        closedir(d);
                if (found)
                        return found;
                usleep(100000);
        }
        return 0;
}

static pid_t guest_pid(const char *name)
{
        char path[128];
        snprintf(path, sizeof(path), "/run/libvirt/qemu/%s.pid", name);
        for (int tries = 0; tries < 100; tries++) {
                FILE *f = fopen(path, "re");
                int pid = 0;
                if (f) {
                        if (fscanf(f, "%d", &pid) != 1)
                                pid = 0;
                        fclose(f);
                }
                if (pid > 0)
                        return pid;
                usleep(100000);
        }
        return 0;
}

/* A disk whose boot sector is "cli; jmp $": SeaBIOS boots it and the vCPU
 * spins in TCG for ever, with no OS.  Returns a malloc'ed path. */
static char *spin_disk(void)
{
        char *path = strdup("/tmp/" GUEST_PREFIX "spin-disk-XXXXXX");
        unsigned char sector[512] = { 0xfa, 0xeb, 0xfe };
        int fd = path ? mkstemp(path) : -1;

        sector[510] = 0x55;
        sector[511] = 0xaa;
        if (fd < 0 || write(fd, sector, sizeof(sector)) != sizeof(sector) || fchmod(fd, 0644) < 0)
                abort();
        close(fd);
        return path;
}

/* Start guest @name (with @disk as its boot disk, or none), measure its
 * vCPU 0 for 2 s through both sources, destroy it, check the thread is then
 * reported gone.  A guest with a disk @spins: its boot sector loops.
 * Returns 0 with @m filled, and *@steal the most any CPU had stolen meanwhile. */
static int measure_guest(const char *name, const char *disk, struct measured *m, double *steal)
{
        char xml[] = "/tmp/" GUEST_PREFIX "xml-XXXXXX";
        char args[256];
        struct thread_counters c;
        int fd = mkstemp(xml), r;
        bool spins = disk != NULL;

        if (fd < 0)
                abort();
        dprintf(fd, "<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory>"
                "<vcpu current='1'>4</vcpu><os><type arch='x86_64' machine='pc'>hvm</type>"
                "<boot dev='hd'/></os><features><acpi/></features><devices>"
                "<emulator>/usr/bin/qemu-system-x86_64</emulator>", name);
        if (disk)
                dprintf(fd, "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                        "<source file='%s'/><target dev='hda' bus='ide'/></disk>", disk);
        dprintf(fd, "</devices></domain>\n");
        close(fd);

        /* A leftover from an interrupted run. */
        snprintf(args, sizeof(args), "virsh -q destroy %s >/dev/null 2>&1", name);
        (void) system(args);
        snprintf(args, sizeof(args), "create %s", xml);
        r = virsh(args);
        unlink(xml);
        CHECK(r == 0, "virsh create %s failed", name);
        if (r != 0)
                return -EIO;

        pid_t pid = guest_pid(name);
        pid_t vcpu = pid ? find_vcpu0(pid) : 0;
        CHECK(vcpu > 0, "%s: no 'CPU 0/TCG' thread in QEMU pid %d", name, (int)pid);
        if (vcpu > 0) {
                /* Past SeaBIOS's start-up.  On a loaded host it can take
                 * longer than 2 s, and a measurement that began while
                 * SeaBIOS still halted read 0.92 runnable in one CI run:
                 * a guest that must spin is measured once a short look
                 * has seen it spin (0.9: what the hypervisor steals from
                 * this VM's CPUs, up to 8% in CI, is neither run nor wait).
                 * The same holds the other way: SeaBIOS still searching
                 * for a boot device keeps the vCPU busy, so a guest that
                 * must halt is measured once a look has seen it halted. */
                sleep(2);
                int tries = 0;
                for (; tries < 32; tries++) {
                        struct measured look;
                        if (measure(&vcpu, 1, 0.25, &look) == 0 &&
                            (spins ? look.util[SS] + look.wait[SS] > 0.9 : look.util[SS] < 0.1))
                                break;
                }
                printf("%s: %s after 2 s and %d more looks of 0.25 s\n", name, spins ? "spinning" : "halted", tries);
                struct host_watch w;
                host_watch_start(&w);
                r = measure(&vcpu, 1, 2.0, m);
                CHECK(r == 0, "measure %s vCPU %d: %s", name, (int)vcpu, strerror(-r));
                host_watch_stop(&w);
                *steal = w.max_steal;
        }
        snprintf(args, sizeof(args), "destroy %s", name);
        CHECK(virsh(args) == 0, "virsh destroy %s", name);
        if (vcpu <= 0)
                return -ESRCH;

        /* The vCPU thread is gone with its guest: a normal event. */
        for (int tries = 0; tries < 50 && kill(pid, 0) == 0; tries++)
                usleep(100000);
        for (int s = 0; s < N_SOURCES; s++) {
                int k = sampler_read_thread(samplers[s], vcpu, &c);
                CHECK(k == -ESRCH, "%s: destroyed guest's vCPU via %s: %d", name, source_name[s], k);
        }
        return r;
}

static void test_tcg_guests(void)
{
        struct measured m;
        double steal;

        /* No disk: SeaBIOS finds nothing to boot and halts; a halted TCG
         * vCPU sleeps in QEMU, so it shows almost no load. */
        if (measure_guest(GUEST_PREFIX "idle", NULL, &m, &steal) == 0) {
                print("TCG vCPU, BIOS halted", &m);
                check_agreement("halted TCG vCPU", &m);
                for (int s = 0; s < N_SOURCES; s++) {
                        CHECK(m.slices[s] > 0, "halted vCPU via %s never scheduled", source_name[s]);
                        CHECK(m.util[s] < 0.1, "halted vCPU via %s: util %.4f", source_name[s], m.util[s]);
                }
        }

        /* Spinning: always runnable, so it runs or waits for the whole
         * interval, however busy the host is. */
        _cleanup_free_ char *disk = spin_disk();
        int r = measure_guest(GUEST_PREFIX "spin", disk, &m, &steal);
        unlink(disk);
        if (r == 0) {
                print("TCG vCPU, spinning", &m);
                check_agreement("spinning TCG vCPU", &m);
                for (int s = 0; s < N_SOURCES; s++) {
                        CHECK(m.util[s] > 0.1, "spinning vCPU via %s: util %.4f", source_name[s], m.util[s]);
                }
                check_always_runnable("spinning vCPU", &m, steal);
        }
}

/*
 * With autogroups (kernel.sched_autogroup_enabled=1) a thread's nice value
 * only counts inside its session; sessions share the CPUs equally.  The host
 * is shared with other work, so the tests run in a session of their own
 * whose autogroup gets nice -20: a spinner then gets about a full CPU, and
 * "busy" is a property of the thread and not of whatever else runs.
 */
static int run_in_own_session(int (*fn)(void))
{
        pid_t child = fork();
        int status;

        if (child < 0)
                return 1;
        if (child == 0) {
                if (setsid() < 0)
                        perror("setsid");
                int fd = open("/proc/self/autogroup", O_WRONLY | O_CLOEXEC);
                if (fd >= 0) {
                        if (write(fd, "-20", 3) != 3)
                                perror("autogroup nice");
                        close(fd);
                }
                fflush(stdout);
                _exit(fn());
        }
        if (waitpid(child, &status, 0) < 0)
                return 1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

static int run(void)
{
        struct sampler_config ts_cfg = { .use_taskstats = true };
        struct sampler_config ss_cfg = { .use_taskstats = false };
        CHECK(sampler_new(&ts_cfg, &samplers[TS]) == 0, "new taskstats sampler");
        CHECK(sampler_new(&ss_cfg, &samplers[SS]) == 0, "new schedstat sampler");
        if (!samplers[TS] || !samplers[SS])
                return test_result();
        printf("taskstats sampler: %s\n", sampler_description(samplers[TS]));
        printf("schedstat sampler: %s\n", sampler_description(samplers[SS]));
        CHECK(sampler_source(samplers[TS]) == SAMPLER_TASKSTATS, "taskstats as root: %s",
              sampler_description(samplers[TS]));
        CHECK(sampler_source(samplers[SS]) == SAMPLER_SCHEDSTAT, "schedstat: %s",
              sampler_description(samplers[SS]));
        if (sampler_source(samplers[TS]) != SAMPLER_TASKSTATS ||
            sampler_source(samplers[SS]) != SAMPLER_SCHEDSTAT)
                return test_result();

        struct host_cpu_counters cpus[1024];
        size_t n = ELEMENTSOF(cpus);
        CHECK(sampler_read_host(samplers[SS], cpus, &n) == 0, "read /proc/stat");
        CHECK(n == (size_t)sysconf(_SC_NPROCESSORS_ONLN), "%zu CPUs in /proc/stat, %ld online",
              n, sysconf(_SC_NPROCESSORS_ONLN));

        test_busy_and_idle();
        test_shared_cpu();
        test_vanished_thread();
        test_fallback_without_cap();
        test_enable_delayacct();
        test_tcg_guests();

        sampler_free(samplers[TS]);
        sampler_free(samplers[SS]);
        fflush(stdout);
        return test_result();
}

int main(void)
{
        if (geteuid() != 0)
                return skip_or_fail("needs root (taskstats wants CAP_NET_ADMIN)");
        if (virsh("uri") != 0)
                return skip_or_fail("libvirtd not reachable");
        return run_in_own_session(run);
}
