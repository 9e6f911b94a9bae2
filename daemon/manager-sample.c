/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Sampling: each vCPU's CPU use and run-queue wait, each host CPU's busy
 * and steal time, then a re-plan with the new loads. */
#include "manager-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "message-ids.h"
#include "util.h"

static void vcpu_sample(struct manager *m, struct managed_guest *g, struct managed_vcpu *v, double window_s)
{
        struct thread_counters c;
        int r = sampler_read_thread(m->sampler, v->tid, &c);

        if (r < 0) {
                if (r != -ESRCH && r != -EOPNOTSUPP)
                        log_debug_errno(r, "%s vcpu%u (tid %d): cannot sample: %m", g->name, v->vcpu, (int)v->tid);
                return;  /* a vanished thread is found out by the next resync */
        }
        if (thread_load_update(&v->tl, &c, window_s) != THREAD_LOAD_UPDATED)
                return;
        /* The engine turns these into demand (vcpu_demand). */
        v->util = v->tl.util.value;
        v->wait = v->tl.wait.value;
        v->wait_ms = v->tl.last_wait_ms;
        v->sampled = true;
}

/* Busy and steal time per host CPU, for status: the operator sees a CPU
 * that another hypervisor layer takes away. */
static void host_sample(struct manager *m, double window_s)
{
        size_t n = m->topo->n_pus;

        if (sampler_read_host(m->sampler, m->host_counters, &n) < 0)
                return;
        uint64_t when = monotonic_ns();
        for (size_t i = 0; i < n; i++) {
                int p = topology_pu_dense(m->topo, m->host_counters[i].cpu);
                if (p >= 0)
                        host_cpu_load_update(&m->host_load[p], &m->host_counters[i], when, window_s);
        }
}

static int on_sample_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct manager *m = userdata;
        double window_s = (double)m->config.load_window_usec / 1e6;

        sd_event_source_set_time(s, usec + m->config.sample_interval_usec);
        /* CPU hotplug: one small read of sysfs per tick. */
        manager_check_cpus(m);
        host_sample(m, window_s);
        for (size_t i = 0; i < m->n_guests; i++) {
                struct managed_guest *g = m->guests[i];
                for (size_t k = 0; k < g->n_vcpus; k++)
                        vcpu_sample(m, g, &g->vcpus[k], window_s);
        }
        /* Policy=auto: the guests' modes from this interval's figures. */
        manager_auto_interval(m);
        /* Re-plan with the new loads: the engine only moves what clears the
         * hysteresis, and at most MovesPerInterval= vCPUs. */
        if (lv_conn_is_alive(m->lv))
                manager_plan_and_apply(m);
        manager_metrics_interval(m);
        return 0;
}

int manager_start_sampling(struct manager *m)
{
        struct sampler_config sc = {
                .use_taskstats = true,
                .enable_delayacct = m->config.task_delay_accounting,
        };
        uint64_t now;
        int r;

        r = sampler_new(&sc, &m->sampler);
        if (r < 0)
                return log_error_errno(r, "cannot set up load sampling: %m");
        m->host_load = calloc(m->topo->n_pus, sizeof(*m->host_load));
        m->host_counters = calloc(m->topo->n_pus, sizeof(*m->host_counters));
        if (!m->host_load || !m->host_counters)
                return log_error_errno(-ENOMEM, "out of memory");
        log_struct(sampler_source(m->sampler) == SAMPLER_NONE ? LOG_WARNING : LOG_INFO, 0, MSGID_DAEMON_STATE,
                   NULL, NULL, "load sampling: %s", sampler_description(m->sampler));
        if (sampler_source(m->sampler) == SAMPLER_NONE)
                return 0;  /* placement still works, with every vCPU counted as busy */
        r = manager_auto_start(m);
        if (r < 0)
                return r;
        sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        r = sd_event_add_time(m->event, &m->sample_timer, CLOCK_MONOTONIC, now + m->config.sample_interval_usec,
                              0, on_sample_timer, m);
        if (r < 0)
                return log_error_errno(r, "cannot arm the sampling timer: %m");
        return sd_event_source_set_enabled(m->sample_timer, SD_EVENT_ON);
}
