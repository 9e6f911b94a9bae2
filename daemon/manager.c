/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "manager-internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "build-config.h"
#include "config-load.h"
#include "defaults.h"
#include "cpulist.h"
#include "log.h"
#include "macro.h"
#include "message-ids.h"


#define RESYNC_RETRY_USEC (2 * 1000 * 1000ULL)

static const char *manager_uri(const struct manager *m)
{
        return m->settings.connect_uri ?: m->config.connect ?: DEFAULT_CONNECT;
}

/* Host CPUs a configuration may name: online and allowed, before ReservedCPUs=. */
static int host_cpus(const struct manager *m, hwloc_bitmap_t out)
{
        return topology_usable(m->topo, NULL, out);
}

/*
 * Validate @c against this host and derive the plan parameters and usable
 * CPUs from it.  On success takes @c over (the old configuration is freed);
 * on failure leaves both untouched and writes the reason into @err.
 */
static int manager_take_config(struct manager *m, struct config *c, char *err, size_t errlen)
{
        _cleanup_bitmap_ hwloc_bitmap_t host = hwloc_bitmap_alloc();
        _cleanup_bitmap_ hwloc_bitmap_t usable = hwloc_bitmap_alloc();
        struct config_warnings warnings = {};
        struct config_error cerr = {};
        int r;

        if (!host || !usable)
                return -ENOMEM;
        host_cpus(m, host);
        r = config_check_cpus(c, host, &warnings, &cerr);
        for (size_t i = 0; i < warnings.n; i++)
                log_struct(LOG_WARNING, 0, MSGID_CONFIG, NULL, NULL, "%s", warnings.lines[i]);
        config_warnings_done(&warnings);
        if (r < 0) {
                snprintf(err, errlen, "%s", cerr.text);
                return r;
        }
        r = topology_usable(m->topo, c->reserved_cpus, usable);
        if (r < 0) {
                _cleanup_free_ char *res = cpulist_format(c->reserved_cpus);
                snprintf(err, errlen, "ReservedCPUs=%s leaves no CPU for guests", res ? res : "?");
                return r;
        }

        hwloc_bitmap_copy(m->usable, usable);
        plan_params_default(&m->plan_params);
        m->plan_params.lane_width = c->lane_width;
        m->plan_params.hysteresis = c->hysteresis;
        m->plan_params.moves_per_interval = c->moves_per_interval;
        m->plan_params.min_dwell_usec = c->min_dwell_usec;
        m->plan_params.starvation_wait_usec = c->starvation_wait_usec;
        if (!m->settings.verbose)
                log_set_max_level(c->log_level);
        bool observe = m->settings.observe || c->observe;
        if (m->config.n_files && observe != m->observe)
                log_struct(LOG_NOTICE, 0, MSGID_DAEMON_STATE, NULL, NULL, "%s",
                           observe ? "Mode=observe: from now on nothing is changed, decisions are only logged and exported"
                                   : "Mode=enforce: from now on decisions are applied");
        m->observe = observe;
        m->apply_env.dry_run = observe;
        if (!observe)   /* applying from now on: from the real affinities */
                for (size_t i = 0; i < m->n_guests; i++)
                        for (size_t k = 0; k < m->guests[i]->n_vcpus; k++)
                                vcpu_forget_observed(&m->guests[i]->vcpus[k]);
        config_done(&m->config);
        m->config = *c;
        memset(c, 0, sizeof(*c));
        return 0;
}

void manager_ready(struct manager *m, const char *why)
{
        if (m->ready)
                return;
        m->ready = true;
        manager_update_status(m);
        sd_notify(false, "READY=1");
        log_struct(LOG_INFO, 0, MSGID_DAEMON_STATE, NULL, NULL, "vcpuspreadd %s ready: %s", PACKAGE_VERSION,
                   why);
}


/* ---- timers and signals ------------------------------------------------ */

static int on_resync_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct manager *m = userdata;
        uint64_t next = m->settings.resync_usec;

        manager_check_cpus(m);
        if (lv_conn_is_alive(m->lv))
                manager_resync(m);
        if (m->resync_failed)
                next = RESYNC_RETRY_USEC;
        sd_event_source_set_time(s, usec + next);
        return 0;
}

static int on_terminate(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        struct manager *m = userdata;
        sd_notify(false, "STOPPING=1");
        log_struct(LOG_INFO, 0, MSGID_DAEMON_STATE, NULL, NULL,
                   "received %s, stopping; current pins stay in place", strsignal((int)si->ssi_signo));
        sd_event_exit(m->event, 0);
        return 0;
}

static int on_reload_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        struct manager *m = userdata;
        char err[512] = "";
        manager_reload(m, err, sizeof(err));
        return 0;
}

int manager_reload(struct manager *m, char *err, size_t errlen)
{
        struct config c;
        struct config_error cerr = {};
        _cleanup_free_ char *old_socket = m->config.control_socket ? strdup(m->config.control_socket) : NULL;
        _cleanup_free_ char *old_connect = m->config.connect ? strdup(m->config.connect) : NULL;
        int r;

        sd_notify(false, "RELOADING=1");
        r = config_load(m->settings.config_path, NULL, &c, &cerr);
        if (r >= 0) {
                r = manager_take_config(m, &c, err, errlen);
                if (r < 0)
                        config_done(&c);
        } else {
                snprintf(err, errlen, "%s", cerr.text);
        }
        if (r < 0) {
                log_struct(LOG_ERR, r, MSGID_CONFIG, NULL, NULL,
                           "configuration not reloaded, the previous one stays in force: %s", err);
                manager_metrics_config(m, false);
                sd_notify(false, "READY=1");
                return r;
        }
        manager_metrics_config(m, true);

        if (old_connect && m->config.connect && strcmp(old_connect, m->config.connect) != 0 && !m->settings.connect_uri)
                log_struct(LOG_NOTICE, 0, MSGID_CONFIG, NULL, NULL,
                           "Connect= changed to %s; it takes effect when the daemon restarts", m->config.connect);
        if (old_socket && m->config.control_socket && strcmp(old_socket, m->config.control_socket) != 0)
                log_struct(LOG_NOTICE, 0, MSGID_CONFIG, NULL, NULL,
                           "ControlSocket= changed to %s; it takes effect when the daemon restarts",
                           m->config.control_socket);

        for (size_t i = 0; i < m->n_guests; i++)
                guest_apply_config(m, m->guests[i], false);
        manager_auto_reload(m);
        log_struct(LOG_INFO, 0, MSGID_CONFIG, NULL, NULL, "configuration reloaded (%zu file%s); re-planning",
                   m->config.n_files, m->config.n_files == 1 ? "" : "s");
        manager_schedule_plan(m);
        sd_notify(false, "READY=1");
        return 0;
}

/* ---- lifecycle ---------------------------------------------------------- */

int manager_new(const struct manager_settings *settings, struct config *config, struct manager **out)
{
        _cleanup_(manager_freep) struct manager *m = calloc(1, sizeof(*m));
        char err[2200];
        int r;

        if (!m)
                return log_error_errno(-ENOMEM, "out of memory");
        m->settings = *settings;
        config_init(&m->config);
        m->usable = hwloc_bitmap_alloc();
        if (!m->usable)
                return log_error_errno(-ENOMEM, "out of memory");

        r = topology_load_spec("host", &m->topo, err, sizeof(err));
        if (r < 0)
                return log_error_errno(r, "%s", err);
        r = manager_take_config(m, config, err, sizeof(err));
        if (r < 0)
                return log_struct(LOG_ERR, r, MSGID_CONFIG, NULL, NULL, "invalid configuration: %s", err);
        if (m->observe)
                log_struct(LOG_NOTICE, 0, MSGID_DAEMON_STATE, NULL, NULL,
                           "observing (%s): decisions are logged and exported, nothing is changed",
                           m->settings.observe ? "--observe" : "Mode=observe");

        r = sd_event_default(&m->event);
        if (r < 0)
                return log_error_errno(r, "cannot create the event loop: %m");

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        if ((r = sd_event_add_signal(m->event, NULL, SIGTERM, on_terminate, m)) < 0 ||
            (r = sd_event_add_signal(m->event, NULL, SIGINT, on_terminate, m)) < 0 ||
            (r = sd_event_add_signal(m->event, NULL, SIGHUP, on_reload_signal, m)) < 0)
                return log_error_errno(r, "cannot watch signals: %m");
        /* Pings the service manager at half of WATCHDOG_USEC when it asks. */
        r = sd_event_set_watchdog(m->event, true);
        if (r < 0)
                log_warning_errno(r, "cannot set up the watchdog: %m");

        r = lv_event_bridge_register(m->event);
        if (r < 0)
                return log_error_errno(r, "cannot attach libvirt to the event loop: %m");

        if (!settings->once && m->config.control_socket && *m->config.control_socket) {
                r = control_server_new(m->event, m->config.control_socket, m->config.control_socket_group,
                                       manager_control, m, &m->control);
                if (r < 0)
                        return r;  /* logged */
        }

        /* A test seam: the status directory elsewhere (it need not exist). */
        m->threads_src.status_dir = secure_getenv("VCPUSPREAD_STATUS_DIR");
        manager_watch_status_files(m);

        *out = TAKE_PTR(m);
        return 0;
}

void manager_free(struct manager *m)
{
        if (!m)
                return;
        if (m->lv)
                lv_conn_free(m->lv);
        manager_kvm_free(m);
        for (size_t i = 0; i < m->n_guests; i++)
                guest_free(m->guests[i]);
        free(m->guests);
        manager_metrics_free(m);
        control_server_free(m->control);
        sd_event_source_unref(m->replan_source);
        manager_auto_free(m);
        sd_event_source_unref(m->sample_timer);
        sampler_free(m->sampler);
        free(m->host_load);
        free(m->host_counters);
        sd_event_source_unref(m->resync_timer);
        sd_event_source_unref(m->retry_timer);
        sd_event_source_unref(m->inotify_source);
        sd_event_source_unref(m->statusdir_wait);
        status_index_free(m->status_index);
        free(m->cpus_online);
        sd_event_source_unref(m->statusfile_debounce);
        sd_event_unref(m->event);
        topology_free(m->topo);
        if (m->usable)
                hwloc_bitmap_free(m->usable);
        config_done(&m->config);
        free(m);
}

static int manager_run_once(struct manager *m)
{
        int r;

        /* The connected callback starts the resync; wait for it to finish. */
        if (!lv_conn_wait_connected(m->lv, 30 * 1000000ULL))
                return log_error_errno(-ENOTCONN, "cannot connect to libvirt at %s; is libvirtd running?",
                                       manager_uri(m)),
                       1;
        for (unsigned i = 0; i < 600 && (m->resync_pending || !m->n_resyncs); i++)
                sd_event_run(m->event, 100 * 1000);
        r = m->n_resyncs ? 0 : -ETIMEDOUT;
        /* Give threads of guests that are just starting a moment to appear;
         * the retry timer re-plans when they do. */
        for (unsigned i = 0; r >= 0 && i < THREAD_RETRY_MAX; i++) {
                bool waiting = false;
                for (size_t k = 0; k < m->n_guests; k++)
                        waiting |= m->guests[k]->state == GUEST_NO_THREADS &&
                                   m->guests[k]->thread_retries <= THREAD_RETRY_MAX;
                if (!waiting)
                        break;
                sd_event_run(m->event, THREAD_RETRY_USEC * 2);
        }
        return r < 0 ? 1 : 0;
}

int manager_run(struct manager *m)
{
        int r;

        /* with --once, the connected callback does the pass synchronously */
        r = lv_conn_new(m->event, manager_uri(m), &manager_lv_callbacks, m, &m->lv);
        if (r < 0)
                return log_error_errno(r, "cannot set up the libvirt connection: %m"), 1;
        if (m->settings.once)
                return manager_run_once(m);

        uint64_t now;
        sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        r = sd_event_add_time(m->event, &m->resync_timer, CLOCK_MONOTONIC, now + m->settings.resync_usec, 0,
                              on_resync_timer, m);
        if (r < 0)
                return log_error_errno(r, "cannot arm the resync timer: %m"), 1;
        sd_event_source_set_enabled(m->resync_timer, SD_EVENT_ON);
        r = manager_start_sampling(m);
        if (r < 0)
                return 1;

        /* Ready comes with the first placement, or when the first attempt
         * to connect fails or hangs (on_lv_disconnected, on_lv_state_changed):
         * never later than LV_UNRESPONSIVE_USEC. */
        manager_check_cpus(m);
        r = sd_event_loop(m->event);
        if (r < 0)
                return log_error_errno(r, "event loop failed: %m"), 1;
        return 0;
}
