/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The sampler's /proc side against a fixture tree: source selection and its
 * description, schedstat and /proc/stat reading, vanished threads, the
 * kernel.task_delayacct switch.  A fixture stands in for /proc because the
 * states tested here (zeros from an old kernel, no schedstat, delay
 * accounting off) cannot be produced on this host.  taskstats and the real
 * /proc are exercised in tests/integration/test-sample.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "sample.h"
#include "tap.h"

static char root[64];

static void put(const char *rel, const char *text)
{
        char path[256], dir[256];
        snprintf(path, sizeof(path), "%s/%s", root, rel);
        snprintf(dir, sizeof(dir), "%s", path);
        for (char *p = dir + strlen(root) + 1; (p = strchr(p, '/')); p++) {
                *p = '\0';
                mkdir(dir, 0755);
                *p = '/';
        }
        FILE *f = fopen(path, "w");
        CHECK(f, "create %s", path);
        if (f) {
                fputs(text, f);
                fclose(f);
        }
}

static void drop(const char *rel)
{
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", root, rel);
        unlink(path);
}

static char *slurp(const char *rel)
{
        static char buf[64];
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", root, rel);
        FILE *f = fopen(path, "r");
        buf[0] = '\0';
        if (f) {
                if (!fgets(buf, sizeof(buf), f))
                        buf[0] = '\0';
                fclose(f);
        }
        return buf;
}

static void test_schedstat_source(void)
{
        struct sampler_config cfg = { .proc_root = root, .use_taskstats = false };
        _cleanup_sampler_ struct sampler *s = NULL;
        struct thread_counters c = {};

        put("thread-self/schedstat", "5000 100 3\n");
        put("4242/schedstat", "123456789 2000 7\n");
        put("4243/schedstat", "12 x 7\n");
        put("sys/kernel/task_delayacct", "0\n");

        CHECK(sampler_new(&cfg, &s) == 0, "new");
        CHECK(sampler_source(s) == SAMPLER_SCHEDSTAT, "source %s", sampler_source_to_string(sampler_source(s)));
        const char *d = sampler_description(s);
        CHECK(strcmp(d, "per-thread load from /proc/TID/schedstat: taskstats not requested; "
                        "kernel.task_delayacct=0: delay accounting is off (enable_delayacct not set), "
                        "but this kernel reports CPU run-queue wait without it") == 0, "description: %s", d);
        CHECK(strcmp(slurp("sys/kernel/task_delayacct"), "0\n") == 0, "switch left alone");

        CHECK(sampler_read_thread(s, 4242, &c) == 0, "read");
        CHECK(c.cpu_ns == 123456789 && c.wait_ns == 2000 && c.timeslices == 7, "values");
        CHECK(c.when_ns > 0, "timestamped");
        CHECK(sampler_read_thread(s, 999, &c) == -ESRCH, "vanished thread is -ESRCH");
        CHECK(sampler_read_thread(s, 4243, &c) == -EINVAL, "malformed");
        CHECK(sampler_read_thread(s, 0, &c) == -EINVAL, "tid 0");
}

static void test_enable_delayacct(void)
{
        struct sampler_config cfg = { .proc_root = root, .enable_delayacct = true };
        _cleanup_sampler_ struct sampler *s = NULL;

        put("sys/kernel/task_delayacct", "0\n");
        CHECK(sampler_new(&cfg, &s) == 0, "new");
        CHECK(strcmp(slurp("sys/kernel/task_delayacct"), "1\n") == 0, "switch written: %s",
              slurp("sys/kernel/task_delayacct"));
        CHECK(strstr(sampler_description(s), "; kernel.task_delayacct set to 1 (enable_delayacct)"),
              "description: %s", sampler_description(s));

        /* Already on: nothing to say but that. */
        _cleanup_sampler_ struct sampler *t = NULL;
        CHECK(sampler_new(&cfg, &t) == 0, "new");
        CHECK(strstr(sampler_description(t), "; kernel.task_delayacct=1") &&
              !strstr(sampler_description(t), "set to"), "description: %s", sampler_description(t));

        /* Kernels before 5.14 have no switch. */
        drop("sys/kernel/task_delayacct");
        _cleanup_sampler_ struct sampler *u = NULL;
        CHECK(sampler_new(&cfg, &u) == 0, "new");
        CHECK(strstr(sampler_description(u), "; no kernel.task_delayacct switch on this kernel"),
              "description: %s", sampler_description(u));
}

static void test_no_source(void)
{
        struct sampler_config cfg = { .proc_root = root };
        struct thread_counters c;

        put("thread-self/schedstat", "0 0 0\n");
        put("sys/kernel/task_delayacct", "0\n");
        _cleanup_sampler_ struct sampler *s = NULL;
        CHECK(sampler_new(&cfg, &s) == 0, "new");
        CHECK(sampler_source(s) == SAMPLER_NONE, "source %s", sampler_source_to_string(sampler_source(s)));
        char want[256];
        snprintf(want, sizeof(want), "no per-thread load source: taskstats not requested, "
                 "%s/thread-self/schedstat reads zeros after ", root);
        const char *d = sampler_description(s);
        CHECK(strncmp(d, want, strlen(want)) == 0, "description: %s", d);
        /* The probing thread ran at least 5 ms before it read the file. */
        double ms = strtod(d + strlen(want), NULL);
        CHECK(ms >= 5.0, "probed after %.1f ms of CPU time", ms);
        CHECK(strstr(d, " ms of CPU time (scheduler statistics off); "
                        "kernel.task_delayacct=0: delay accounting is off (enable_delayacct not set)"),
              "description: %s", d);
        CHECK(sampler_read_thread(s, 4242, &c) == -EOPNOTSUPP, "reads refused");

        /* What a fresh thread reads with the statistics on, "0 0 1", is still
         * "off" when the probing thread reads it after it has run. */
        put("thread-self/schedstat", "0 0 1\n");
        _cleanup_sampler_ struct sampler *f = NULL;
        CHECK(sampler_new(&cfg, &f) == 0, "new");
        CHECK(sampler_source(f) == SAMPLER_NONE, "0 0 1 after running: source %s",
              sampler_source_to_string(sampler_source(f)));

        drop("thread-self/schedstat");
        _cleanup_sampler_ struct sampler *t = NULL;
        CHECK(sampler_new(&cfg, &t) == 0, "new");
        CHECK(sampler_source(t) == SAMPLER_NONE, "source");
        CHECK(strstr(sampler_description(t), "schedstat missing (kernel without CONFIG_SCHED_INFO)"),
              "description: %s", sampler_description(t));
}

/*
 * The real /proc, probed from a thread that has only just been created (issue
 * 12: such a thread reads "0 0 1", and the probe took that for "statistics
 * off", leaving the daemon without a load source when taskstats is not
 * allowed).  Needs no privilege.
 */
static void *probe_fresh(void *arg)
{
        struct sampler_config cfg = { .use_taskstats = false };
        struct sampler **out = arg;
        char buf[96] = "";
        FILE *f = fopen("/proc/thread-self/schedstat", "re");

        if (f) {
                if (!fgets(buf, sizeof(buf), f))
                        buf[0] = '\0';
                fclose(f);
        }
        printf("# a new thread's /proc/thread-self/schedstat: %s", buf[0] ? buf : "(unreadable)\n");
        if (sampler_new(&cfg, out) < 0)
                *out = NULL;
        return NULL;
}

static void test_fresh_thread(void)
{
        _cleanup_sampler_ struct sampler *s = NULL;
        struct thread_counters c;
        pthread_t t;

        if (access("/proc/self/schedstat", R_OK) < 0) {
                printf("# /proc/self/schedstat: %m; kernel without CONFIG_SCHED_INFO, nothing to check\n");
                return;
        }
        CHECK(pthread_create(&t, NULL, probe_fresh, &s) == 0, "thread");
        pthread_join(t, NULL);
        CHECK(s, "new");
        if (!s)
                return;
        printf("# %s\n", sampler_description(s));
        CHECK(sampler_source(s) == SAMPLER_SCHEDSTAT, "probe on a fresh thread: %s", sampler_description(s));
        CHECK(sampler_read_thread(s, getpid(), &c) == 0 && c.cpu_ns > 0, "read this process");
}

static void test_host(void)
{
        struct sampler_config cfg = { .proc_root = root };
        _cleanup_sampler_ struct sampler *s = NULL;
        struct host_cpu_counters c[3];
        size_t n;

        CHECK(sampler_new(&cfg, &s) == 0, "new");
        CHECK(sampler_read_host(s, c, &(size_t){ 3 }) == -ENOENT, "no stat file");

        /* Bigger than the first buffer, as on hosts with many interrupts. */
        char *big = malloc(200000);
        strcpy(big, "cpu  3 0 3 6 0 0 0 0 0 0\ncpu0 1 0 2 3 0 0 0 0 0 0\ncpu3 2 0 1 3 0 0 0 4 0 0\nintr 1");
        for (size_t len = strlen(big); len < 199000; len += 2)
                strcpy(big + len, " 0");
        strcat(big, "\nctxt 5\n");
        put("stat", big);
        free(big);

        n = 3;
        CHECK(sampler_read_host(s, c, &n) == 0, "read");
        CHECK(n == 2 && c[0].cpu == 0 && c[0].system == 2 && c[1].cpu == 3 && c[1].steal == 4, "values");
        n = 1;
        CHECK(sampler_read_host(s, c, &n) == -ENOBUFS && n == 2, "too small: %zu", n);
}

int main(void)
{
        snprintf(root, sizeof(root), "/tmp/test-sample-XXXXXX");
        if (!mkdtemp(root)) {
                perror("mkdtemp");
                return 1;
        }
        test_schedstat_source();
        test_enable_delayacct();
        test_no_source();
        test_fresh_thread();
        test_host();

        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", root);
        return test_result();
}
