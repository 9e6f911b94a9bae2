/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Cost of vCPU thread discovery from libvirt's status files, on a made-up
 * host: N status files of about 10 KiB (the size of a real one) in a
 * directory, and a fake /proc tree with N QEMU processes of 2 vCPU threads
 * each (cmdline, comm, stat).  For N in 50, 200, 400, 1000 it measures
 *
 *   event:  what one inotify event on one status file costs: the old way
 *           (every guest looked up again, each lookup reading the whole
 *           directory) and the new (re-read the one file into the index,
 *           look up that one guest);
 *   resync: every guest looked up: the old way (a directory read per guest)
 *           and the new (the index built once, then a lookup per guest).
 *
 * No root needed: the trees are files under $TMPDIR (default /dev/shm, so
 * the disk is not what is measured).  Usage: bench-discovery [MAX_GUESTS]
 * [RUNS]; the old event and resync are run once per size (they are the
 * quadratic ones).
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench-args.h"
#include "daemon/vcpu-threads.h"

static char root[PATH_MAX - 256];

static void put(const char *content, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(const char *content, const char *fmt, ...)
{
        char path[PATH_MAX], dir[PATH_MAX];
        va_list ap;
        FILE *f;

        va_start(ap, fmt);
        vsnprintf(path, sizeof(path), fmt, ap);
        va_end(ap);
        snprintf(dir, sizeof(dir), "%s", path);
        for (char *p = dir + 1; *p; p++)
                if (*p == '/') {
                        *p = '\0';
                        mkdir(dir, 0755);
                        *p = '/';
                }
        f = fopen(path, "w");
        if (!f || fputs(content, f) < 0 || fclose(f) != 0) {
                perror(path);
                exit(1);
        }
}

static void uuid_of(unsigned i, char out[37])
{
        snprintf(out, 37, "%08x-1111-4222-8333-%012x", 0xabc00000u + i, i);
}

static void make_guest(unsigned i)
{
        char uuid[37], buf[16384], cmd[256];
        int pid = 100000 + (int)i * 4;
        size_t len = 0;

        uuid_of(i, uuid);
        len += (size_t)snprintf(buf + len, sizeof(buf) - len,
                                "<domstatus state='running' reason='booted' pid='%d'>\n"
                                "  <taint flag='high-privileges'/>\n"
                                "  <monitor path='/var/lib/libvirt/qemu/domain-%u-g%u/monitor.sock' type='unix'/>\n"
                                "  <vcpus>\n    <vcpu id='0' pid='%d'/>\n    <vcpu id='1' pid='%d'/>\n  </vcpus>\n",
                                pid, i, i, pid + 1, pid + 2);
        /* libvirt's status files carry qemuCaps and the whole live XML:
         * about 10 KiB. */
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "  <qemuCaps>\n");
        for (unsigned k = 0; len < 8500 && k < 400; k++)
                len += (size_t)snprintf(buf + len, sizeof(buf) - len, "    <flag name='capability-%u'/>\n", k);
        len += (size_t)snprintf(buf + len, sizeof(buf) - len,
                                "  </qemuCaps>\n  <domain type='qemu' id='%u'>\n    <name>g%u</name>\n"
                                "    <uuid>%s</uuid>\n    <memory unit='KiB'>65536</memory>\n"
                                "    <vcpu placement='static'>2</vcpu>\n  </domain>\n</domstatus>\n",
                                i, i, uuid);
        put(buf, "%s/status/g%u.xml", root, i);
        put("", "%s/status/g%u.pid", root, i);
        snprintf(cmd, sizeof(cmd), "/usr/bin/qemu-system-x86_64%c-uuid%c%s", 0, 0, uuid);
        /* fputs would stop at the first NUL: write the cmdline by hand. */
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/proc/%d/cmdline", root, pid);
        put("", "%s", path);
        FILE *f = fopen(path, "w");
        fwrite(cmd, 1, strlen("/usr/bin/qemu-system-x86_64") + 1 + strlen("-uuid") + 1 + 36 + 1, f);
        fclose(f);
        for (int v = 0; v < 2; v++) {
                char comm[32], stat[256];
                snprintf(comm, sizeof(comm), "CPU %d/TCG\n", v);
                put(comm, "%s/proc/%d/task/%d/comm", root, pid, pid + 1 + v);
                snprintf(stat, sizeof(stat), "%d (CPU %d/TCG) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n",
                         pid + 1 + v, v, pid + 1 + v);
                put(stat, "%s/proc/%d/task/%d/stat", root, pid, pid + 1 + v);
        }
}

static double now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void find_one(const struct vcpu_threads_source *src, unsigned i)
{
        struct vcpu_threads t = {};
        char uuid[37];
        int r;

        uuid_of(i, uuid);
        r = vcpu_threads_find(src, uuid, &t);
        if (r < 0 || t.n != 2 || t.origin != VCPU_THREADS_STATUS_FILE) {
                fprintf(stderr, "guest %u: found %zu threads (r=%d)\n", i, t.n, r);
                exit(1);
        }
        vcpu_threads_done(&t);
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
        qsort(v, n, sizeof(*v), cmp_double);
        return v[n / 2];
}

static const char usage[] =
        "usage: bench-discovery [MAX_GUESTS] [RUNS]\n"
        "  status-file discovery at 50, 200, 400, 1000 guests (up to MAX_GUESTS, default 1000):\n"
        "  one inotify event and one resync, old (a directory read per lookup) and new (the index)\n";

int main(int argc, char **argv)
{
        static const unsigned sizes[] = { 50, 200, 400, 1000 };
        unsigned long max_guests, runs;
        char dir[PATH_MAX], proc[PATH_MAX];

        if (bench_wants_help(argc, argv, usage))
                return 0;
        if (!bench_arg_count(argc, argv, 1, "MAX_GUESTS", 1000, 1, 100000, &max_guests) ||
            !bench_arg_count(argc, argv, 2, "RUNS", 21, 1, 10000, &runs))
                return 2;
        snprintf(root, sizeof(root), "%s/bench-discovery-XXXXXX",
                 getenv("TMPDIR") ?: (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"));
        if (!mkdtemp(root)) {
                perror("mkdtemp");
                return 1;
        }
        snprintf(dir, sizeof(dir), "%s/status", root);
        snprintf(proc, sizeof(proc), "%s/proc", root);
        struct vcpu_threads_source src = { .status_dir = dir, .proc_root = proc };
        double *t = calloc(runs, sizeof(*t));
        unsigned made = 0;

        printf("| guests | event, old (every guest, directory per lookup) | event, new (one file, indexed) "
               "| resync, old | resync, new (index + lookups) | resync new per guest |\n");
        printf("|---|---|---|---|---|---|\n");
        for (size_t s = 0; s < sizeof(sizes) / sizeof(*sizes) && sizes[s] <= max_guests; s++) {
                unsigned n = sizes[s];
                struct status_index *ix;
                char before[37], after[37], name[64];

                for (; made < n; made++)
                        make_guest(made);

                /* old event == old resync: the manager re-discovered every guest */
                double t0 = now_ms();
                for (unsigned i = 0; i < n; i++)
                        find_one(&src, i);
                double old_resync = now_ms() - t0;

                if (status_index_new(&src, &ix) < 0)
                        return 1;
                struct vcpu_threads_source isrc = src;
                isrc.index = ix;
                for (unsigned r = 0; r < (runs < 5 ? runs : 5); r++) {
                        t0 = now_ms();
                        if (status_index_rebuild(ix) != (int)n) {
                                fprintf(stderr, "index holds %zu files, not %u\n", status_index_size(ix), n);
                                return 1;
                        }
                        for (unsigned i = 0; i < n; i++)
                                find_one(&isrc, i);
                        t[r] = now_ms() - t0;
                }
                double new_resync = median(t, runs < 5 ? runs : 5);

                for (unsigned r = 0; r < runs; r++) {
                        unsigned i = (r * 7919u) % n;
                        snprintf(name, sizeof(name), "g%u.xml", i);
                        t0 = now_ms();
                        if (status_index_update(ix, name, before, after) < 0 || !after[0]) {
                                fprintf(stderr, "update of %s failed\n", name);
                                return 1;
                        }
                        find_one(&isrc, i);
                        t[r] = now_ms() - t0;
                }
                double new_event = median(t, (unsigned)runs);
                status_index_free(ix);

                printf("| %u | %.1f ms | %.3f ms | %.1f ms | %.1f ms | %.1f us |\n", n, old_resync, new_event,
                       old_resync, new_resync, new_resync * 1000.0 / n);
                fflush(stdout);
        }
        free(t);
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        return system(cmd) == 0 ? 0 : 1;
}
