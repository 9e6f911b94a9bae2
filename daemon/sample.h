/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The sampler reads the cumulative counters behind load: per thread the CPU
 * time used and the run-queue wait, per host CPU the /proc/stat ticks.  The
 * arithmetic (intervals, fractions, averages) lives in lib/load.c.
 *
 * Per-thread source, chosen once in sampler_new():
 *  - taskstats over generic netlink (TASKSTATS_CMD_GET): cpu_run_virtual_total
 *    and cpu_delay_total.  Needs CAP_NET_ADMIN and the TASKSTATS family in
 *    our network namespace.
 *  - /proc/TID/schedstat otherwise (run ns, wait ns, timeslices): needs
 *    nothing but a kernel with CONFIG_SCHED_INFO.
 * Both report the same two scheduler counters (sum_exec_runtime and
 * sched_info.run_delay), so they agree to the nanosecond when read at the
 * same moment.  cpu_run_real_total is not used: it is utime+stime, which
 * moves in scheduler ticks (4 ms steps on this host).
 *
 * sampler_description() says which source is used and why, for the daemon to
 * log once; the sampler itself never logs.  Both sources report CPU time and
 * run-queue wait together or not at all (the probe in sampler_new() checks,
 * on the calling thread after it has burnt about 5 ms of CPU: a thread that
 * has not run yet reads zeros with the statistics on).
 *
 * kernel.task_delayacct (5.14+) gates the block-I/O, swap and reclaim delays.
 * On this 6.18 host the two CPU fields are filled with it at 0 (checked:
 * cpu_delay_total equalled schedstat's wait), since sched_info is always
 * kept with CONFIG_SCHED_INFO; older kernels without CONFIG_SCHEDSTATS kept
 * it only with delay accounting on.  The probe catches either case.
 *
 * A sampler is not thread-safe: it owns one netlink socket and one buffer.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "load.h"

struct sampler_config {
        const char *proc_root;          /* NULL: /proc */
        bool use_taskstats;             /* try taskstats first */
        bool enable_delayacct;          /* may write 1 to kernel.task_delayacct */
};

enum sampler_source {
        SAMPLER_TASKSTATS,
        SAMPLER_SCHEDSTAT,
        SAMPLER_NONE,                   /* no usable source: reads fail with -EOPNOTSUPP */
};

const char *sampler_source_to_string(enum sampler_source s);

struct sampler;

/*
 * Pick the source and probe it on the calling thread.  Returns 0 (also when
 * no source works: then sampler_source() is SAMPLER_NONE and the description
 * says why), -ENOMEM.
 */
int sampler_new(const struct sampler_config *config, struct sampler **out);
void sampler_free(struct sampler *s);
static inline void sampler_freep(struct sampler **s)
{
        if (*s)
                sampler_free(*s);
}
#define _cleanup_sampler_ __attribute__((cleanup(sampler_freep)))

enum sampler_source sampler_source(const struct sampler *s);

/* One line for the log: the source, why it was chosen, and the state of
 * kernel.task_delayacct, e.g. "taskstats (generic netlink); ...". */
const char *sampler_description(const struct sampler *s);

/*
 * Read thread @tid's counters into @out (when_ns taken right after the read).
 * Returns 0, -ESRCH when the thread is gone (normal: guests stop, vCPUs are
 * unplugged), -EOPNOTSUPP for SAMPLER_NONE, other negative errno otherwise.
 */
int sampler_read_thread(struct sampler *s, pid_t tid, struct thread_counters *out);

/*
 * Read the per-CPU lines of /proc/stat into @out, of *@n entries; stores the
 * number of CPUs in *@n.  Returns 0, -ENOBUFS when the array is too small
 * (*@n then says how many are needed), other negative errno.
 */
int sampler_read_host(struct sampler *s, struct host_cpu_counters *out, size_t *n);
