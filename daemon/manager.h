/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The Manager owns all daemon state and the one event loop: libvirt events,
 * status-file changes (vCPU hotplug), signals, timers.  Each pass goes
 * discover -> sample -> plan -> apply -> log.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include <hwloc.h>
#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "adaptive.h"
#include "apply.h"
#include "lib/config.h"
#include "control.h"
#include "libvirt.h"
#include "placement.h"
#include "sample.h"
#include "signals.h"
#include "topology.h"
#include "vcpu-threads.h"

/* What the command line decides; the rest comes from the configuration. */
struct manager_settings {
        const char *connect_uri;        /* --connect; NULL: Connect= */
        const char *config_path;        /* --config; NULL: the default file */
        uint64_t resync_usec;           /* periodic full resync (safety net) */
        bool observe;                   /* --observe, --dry-run: as Mode=observe */
        bool once;
        bool verbose;                   /* -v: ignore LogLevel= */
};

enum guest_state {
        GUEST_MANAGED,          /* the daemon places its vCPUs */
        GUEST_OPERATOR,         /* the operator pinned it: left alone */
        GUEST_IGNORED,          /* policy ignore */
        GUEST_NO_THREADS,       /* its vCPU threads could not be found (yet) */
        GUEST_NO_CPUS,          /* its restriction leaves no usable CPU */
};

const char *guest_state_to_string(enum guest_state s);

/* Policy=auto, per vCPU: the signal sampler's files and switch rates
 * (manager-auto.c). */
struct vcpu_auto {
        struct signals_thread st;       /* /proc/PID/task/TID/{stat,status}, kept open */
        bool ctxt_known;                /* last_ctxt holds a reading */
        bool rate_known;                /* voluntary_hz, involuntary_hz are from two readings */
        struct thread_ctxt last_ctxt;
        uint64_t last_ctxt_ns;
        double voluntary_hz, involuntary_hz;    /* last rate measured (status read every Nth interval) */
        /* Rates still to read at every interval after switch_rates_forget():
         * the first is of the transition (a guest whose load is starting
         * still halts part of the time), and held for the 5 intervals to
         * the next due reading it would weigh five times in the window. */
        unsigned fresh_reads;
};

struct managed_vcpu {
        unsigned vcpu;
        pid_t tid;
        unsigned long long start_time;  /* of the thread found (stat field 22): binds tid to it */
        hwloc_bitmap_t current;         /* affinity as last read or written; owned */
        bool operator_pinned;           /* pinned by the operator while we ran */
        bool is_new;                    /* appeared since the last plan (hotplug) */
        bool boot;                      /* found when its guest started */
        bool sampled;                   /* util and wait are measured */
        double util, wait;              /* recent CPU use and run-queue wait, shares of a CPU */
        double wait_ms;                 /* run-queue wait in the last interval */
        struct thread_load tl;          /* sampling state of this thread */
        uint64_t last_move_usec;        /* CLOCK_MONOTONIC of our last move, 0 never */
        uint64_t retry_after_usec;      /* a failed move is not retried (nor logged) before this */
        /* Observing: the affinity the moves logged so far would have made,
         * which the plan starts from (NULL: none logged, or not observing);
         * owned. */
        hwloc_bitmap_t observed;
        /* Last decision, for status and logs. */
        char last_reason[32];
        time_t last_change;
        struct vcpu_auto auto_state;    /* Policy=auto's signals of this thread */
        struct kvm_vcpu_track kvm;      /* kvm guests: KVM's counters and rates (manager-kvm.c) */
};

/*
 * Policy=auto, per guest (manager-auto.c; lib/adaptive.h has the rules).
 * Read by status, metrics and report: @active says whether the rest means
 * anything; @mode is what the engine is told (guest_input.auto_mode).
 */
struct guest_auto {
        bool active;                    /* the guest's policy is auto and it is managed */
        enum adaptive_mode mode;        /* = ag.mode: KERNEL, SPREAD or COSCHED */
        struct adaptive_guest ag;       /* the state machine */
        char reason[48];                /* last event's reason ("stacked-nonblocking", ...); "" none yet */
        enum adaptive_event last_event; /* last event other than NONE */
        char text[512];                 /* last event's one line with the figures */
        char window_text[512];          /* the last KERNEL window that was no candidate, and why */
        time_t since;                   /* wall clock of the last mode change (0: never changed) */
        struct adaptive_input last;     /* the last interval fed to adaptive_step() */
        bool have_last;
        struct signals_tally tally;     /* ticks of the current interval */
        double host_running_sum;        /* /proc/loadavg runnable, summed over the ticks */
        unsigned host_running_ticks;
        bool ticked;                    /* its vCPUs are ticked this interval */
        uint64_t intervals;             /* sampling intervals fed so far */
        uint64_t last_step_ns;          /* now_ns of the last adaptive_step() */
        bool cosched;                   /* handed to daemon/cosched as a gang now */
        bool left_cosched;              /* scratch: left the gangs in this update */
        char *cgroup;                   /* the guest's directory in the cpu hierarchy; owned, may be NULL */
        hwloc_bitmap_t allowed;         /* restriction ∩ usable, as of the last interval; owned, may be NULL */
        uint64_t threads_sig;           /* its vCPU threads when the state machine started */
        /* This interval's adaptive_input fair_share, others_share, others_fair
         * (manager-auto.c, fair_shares_interval()); 0: not known. */
        double fair_share, others_share, others_fair;
};

struct managed_guest {
        char uuid[37];
        char *name;                     /* owned */
        int id;
        enum guest_state state;
        char *state_reason;             /* why it is not managed; owned, may be NULL */
        enum placement_policy policy;   /* from the matching [Domain] or DefaultPolicy= */
        bool override;                  /* [Domain] Override=yes: operator pins don't stop us */
        hwloc_bitmap_t restriction;     /* <vcpu cpuset=...> ∩ [Domain] CPUs=; owned, may be NULL */
        hwloc_bitmap_t xml_restriction; /* <vcpu cpuset=...> alone; owned, may be NULL */
        /* What the cpuset above its vCPUs' cgroups allows, when that is less
         * than the usable CPUs (cgroup v1 after a CPU went offline); owned,
         * may be NULL. */
        hwloc_bitmap_t cgroup_allowed;
        char *xml_pinned;               /* why its live XML says the operator pinned it; owned */
        char *runtime_pinned;           /* operator pinned a vCPU while we ran; owned */
        pid_t qemu_pid;
        bool kvm;                       /* <domain type='kvm'>: KVM's counters are fetched (manager-kvm.c) */
        size_t n_vcpus;
        struct managed_vcpu *vcpus;     /* owned, sorted by vcpu */
        bool is_new;                    /* not planned yet */
        bool seen;                      /* mark for resync */
        bool status_changed;            /* its status file changed: re-discover after the burst */
        unsigned thread_retries;        /* vCPU threads looked for but not found */
        bool name_fallback_logged;      /* said once that the status file failed us */
        uint64_t start_event_usec;      /* CLOCK_MONOTONIC of its start event, until placed */
        struct guest_auto auto_state;   /* Policy=auto: mode, why, signals (manager-auto.c) */
};

struct manager {
        sd_event *event;
        struct manager_settings settings;
        struct config config;
        struct plan_params plan_params;
        struct lv_conn *lv;
        struct control_server *control;
        struct topology *topo;
        hwloc_bitmap_t usable;
        struct apply_env apply_env;
        struct vcpu_threads_source threads_src;

        size_t n_guests;
        struct managed_guest **guests;

        sd_event_source *replan_source;         /* deferred plan after changes */
        sd_event_source *sample_timer;
        struct sampler *sampler;
        /* Busy and steal per host CPU, by dense topology index. */
        struct host_cpu_load *host_load;
        struct host_cpu_counters *host_counters;        /* scratch, n_pus entries */
        struct manager_auto *autom;             /* Policy=auto: signals, co-scheduler (manager-auto.c) */
        sd_event_source *resync_timer;
        sd_event_source *retry_timer;           /* threads not found yet */
        sd_event_source *inotify_source;        /* status files (hotplug) */
        sd_event_source *statusdir_wait;        /* nearest ancestor, until the directory appears */
        sd_event_source *statusfile_debounce;
        struct status_index *status_index;      /* UUID -> status file; rebuilt per resync */
        bool resync_pending;                    /* a listing is on its way */
        bool statusdir_said;                    /* "does not exist yet" logged */
        unsigned statusdir_tries;
        bool resync_again;                      /* asked for while one was pending */
        char *cpus_online;                      /* /sys/devices/system/cpu/online as last read */

        bool ready;                             /* READY=1 sent */
        bool resync_failed;                     /* last resync hit an error: retry soon */
        uint64_t n_moves;                       /* applied since start */
        uint64_t n_resyncs;                     /* full resyncs done (listed, planned, applied) */
        uint64_t n_passes;                      /* planning passes applied */
        char last_change[256];
        int exit_code;
        /* Mode=observe or --observe: sample, decide, log and export, change
         * nothing (no affinity, no cgroup, no co-scheduling).  The one flag
         * every step that would touch the host checks. */
        bool observe;
        struct manager_metrics *metrics;        /* manager-metrics.c: history, counters, MetricsFile= */
        struct manager_kvm *kvm;                /* manager-kvm.c: KVM's counters, fetched for kvm guests */
};

/* Inputs for the engine; entries point into the manager's guests. */
struct plan_inputs {
        struct plan_params params;      /* m->plan_params with now_usec set */
        size_t n;
        struct guest_input *guests;
        struct managed_guest **owner;   /* parallel to guests */
        struct vcpu_input *vcpus;       /* storage for all guests' vcpus */
};

void plan_inputs_done(struct plan_inputs *in);
/* Gather the engine's inputs (guests, vCPUs, parameters with the clock) and
 * plan.  @from_observed: observing, start from what the moves already logged
 * would have made (the daemon's own passes), not from the host as it is
 * (what `vcpuspreadctl plan` shows: everything it would change now). */
int manager_compute_plan(struct manager *m, bool from_observed, struct plan_inputs *in, struct plan *plan);
/* What the engine sees of one vCPU (@from_observed as above). */
struct vcpu_input manager_vcpu_input(const struct managed_vcpu *v, bool from_observed);
/* VCPUSPREAD_REASON of a move: the engine's reason refined with what only
 * the manager knows (a new guest, a hot-plugged vCPU). */
const char *move_reason(const struct managed_guest *g, const struct managed_vcpu *v, enum place_reason r);

/* Re-read the configuration; on error @err says why (file:line) and the
 * old configuration stays in force. */
int manager_reload(struct manager *m, char *err, size_t errlen);

/* The control socket's request handler (manager-control.c). */
json_object *manager_control(void *userdata, const char *command, json_object *request,
                            const struct ucred *peer);

/* Takes @config over on success. */
int manager_new(const struct manager_settings *settings, struct config *config, struct manager **out);
void manager_free(struct manager *m);
static inline void manager_freep(struct manager **m)
{
        manager_free(*m);
}
/* Run the loop until SIGTERM/SIGINT (or, with settings.once, one pass).
 * Returns the process exit status. */
int manager_run(struct manager *m);
