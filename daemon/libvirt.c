/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The libvirt adapter: one connection kept alive across libvirtd restarts,
 * lifecycle and tunable events turned into lv_callbacks, and the running
 * domains, whose live XML domain-xml.c interprets.
 *
 * Only read-only, guest-neutral APIs are used: list, lookup, XML description,
 * bulk vCPU statistics.
 * Never virDomainQemuMonitorCommand (taints the guest), never pinning APIs.
 *
 * Threads: the loop thread owns struct lv_conn.  Every call that waits for
 * libvirtd runs as a job on the worker (libvirt-worker.c) and reports back
 * through the job's done(), on the loop.  libvirt's close callback can run
 * on either thread and only sets an atomic and signals an eventfd.  Event
 * callbacks (lifecycle, tunable) are dispatched by libvirt from a timer on
 * the loop; they queue a job too, so that the manager sees them in order
 * after the lookups queued before them.
 */
#include "libvirt.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "cpulist.h"
#include "lib/defaults.h"
#include "log.h"
#include "lib/util.h"
#include "libvirt-worker.h"
#include "macro.h"
#include "message-ids.h"

#define KEEPALIVE_INTERVAL_S 5
#define KEEPALIVE_COUNT 3u
#define BACKOFF_FIRST_USEC (1ULL * 1000000)
#define BACKOFF_MAX_USEC (30ULL * 1000000)
/* An open gets what keepalive gives an open connection: 5 s x 3 and one
 * more interval, then its socket is shut down and the attempt retried. */
#define OPEN_TIMEOUT_USEC ((uint64_t)KEEPALIVE_INTERVAL_S * (KEEPALIVE_COUNT + 1) * 1000000)
#define WATCH_INTERVAL_USEC (500 * 1000ULL)
#define WORKER_EXIT_WAIT_USEC (2 * 1000 * 1000ULL)

/* ---------------------------------------------------------------------------
 * Connection
 */

struct lv_conn {
        sd_event *event;
        char *uri;
        struct lv_callbacks cb;
        void *userdata;
        struct lv_worker *worker;

        virConnectPtr conn;             /* NULL while disconnected; loop thread */
        enum lv_conn_state state;
        int lifecycle_id;               /* -1 when not registered */
        int tunable_id;

        /* Set by close_cb on any thread, read on the loop. */
        virConnectPtr lost_conn;
        int close_reason;               /* VIR_CONNECT_CLOSE_REASON_* */
        int lost_fd;                    /* eventfd close_cb signals */
        sd_event_source *lost_source;

        sd_event_source *retry;         /* reconnect timer */
        uint64_t backoff_usec;
        sd_event_source *watch;         /* checks the worker for a hung call */
        bool unresponsive;
        bool open_cut;                  /* this attempt's socket was shut down */
        int open_first_handle;          /* bridge watches from here on are this attempt's */
        bool list_pending;
        bool stats_pending;
        bool failing;                   /* a failure is logged; stay quiet until connected */
        bool freeing;
        unsigned failed_attempts;
        char last_error[320];
};

static void libvirt_error_to_debug(void *userdata, virErrorPtr error)
{
        /* libvirt prints every error to stderr by default; the ones that
         * matter are reported with context by us, the rest is for -v. */
        if (error && error->message)
                log_debug("libvirt: %s", error->message);
}

/* The error a failed libvirt call on @conn should turn into; @err gets
 * libvirt's message.  Worker thread (libvirt's last error is per thread). */
static int libvirt_failure(virConnectPtr conn, const char *what, char *err, size_t errlen)
{
        snprintf(err, errlen, "%s: %s", what, virGetLastErrorMessage());
        switch (virGetLastErrorCode()) {
        case VIR_ERR_NO_DOMAIN:
        case VIR_ERR_OPERATION_INVALID:         /* e.g. the domain is not running */
                return -ENOENT;
        case VIR_ERR_INVALID_ARG:
                return -EINVAL;
        }
        if (!conn || virConnectIsAlive(conn) != 1)
                return -ENOTCONN;
        return -EIO;
}

const char *lv_conn_uri(struct lv_conn *c)
{
        return c->uri;
}

const char *lv_conn_last_error(struct lv_conn *c)
{
        return c->last_error;
}

bool lv_conn_is_alive(struct lv_conn *c)
{
        /* Our own state, not virConnectIsAlive(): that takes the driver's
         * lock, and the loop never waits for libvirt. */
        return c && c->conn && c->state == LV_CONNECTED &&
               __atomic_load_n(&c->lost_conn, __ATOMIC_ACQUIRE) != c->conn;
}

enum lv_conn_state lv_conn_state(struct lv_conn *c)
{
        return c->state;
}

bool lv_conn_unresponsive(struct lv_conn *c, uint64_t *since_usec, const char **what)
{
        uint64_t since = lv_worker_busy_since(c->worker, what);

        if (since_usec)
                *since_usec = since;
        return c->unresponsive;
}

const char *lv_conn_state_text(struct lv_conn *c)
{
        if (!c)
                return "disconnected";
        if (c->unresponsive)
                return "unresponsive";
        switch (c->state) {
        case LV_CONNECTING: return c->failed_attempts ? "disconnected" : "connecting";
        case LV_CONNECTED: return lv_conn_is_alive(c) ? "connected" : "disconnected";
        default: return "disconnected";
        }
}

/* ---- events from libvirt ---- */

static const char *const started_details[] = {
        [VIR_DOMAIN_EVENT_STARTED_BOOTED] = "booted",
        [VIR_DOMAIN_EVENT_STARTED_MIGRATED] = "migrated",
        [VIR_DOMAIN_EVENT_STARTED_RESTORED] = "restored",
        [VIR_DOMAIN_EVENT_STARTED_FROM_SNAPSHOT] = "from-snapshot",
        [VIR_DOMAIN_EVENT_STARTED_WAKEUP] = "wakeup",
};

static const char *const resumed_details[] = {
        [VIR_DOMAIN_EVENT_RESUMED_UNPAUSED] = "unpaused",
        [VIR_DOMAIN_EVENT_RESUMED_MIGRATED] = "migrated",
        [VIR_DOMAIN_EVENT_RESUMED_FROM_SNAPSHOT] = "from-snapshot",
        [VIR_DOMAIN_EVENT_RESUMED_POSTCOPY] = "postcopy",
        [VIR_DOMAIN_EVENT_RESUMED_POSTCOPY_FAILED] = "postcopy-failed",
};

static const char *const stopped_details[] = {
        [VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN] = "shutdown",
        [VIR_DOMAIN_EVENT_STOPPED_DESTROYED] = "destroyed",
        [VIR_DOMAIN_EVENT_STOPPED_CRASHED] = "crashed",
        [VIR_DOMAIN_EVENT_STOPPED_MIGRATED] = "migrated",
        [VIR_DOMAIN_EVENT_STOPPED_SAVED] = "saved",
        [VIR_DOMAIN_EVENT_STOPPED_FAILED] = "failed",
        [VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT] = "from-snapshot",
};

/*
 * The lifecycle events that say whether QEMU runs: STARTED and RESUMED (its
 * vCPU threads exist and run), STOPPED (they are gone; the detail says why:
 * shutdown, destroyed, crashed, migrated, ...).  CRASHED and SHUTDOWN are not
 * forwarded: when QEMU really exits a STOPPED follows, and when it does not
 * (on_crash='preserve', a guest reboot) the vCPUs and their pins live on.
 * Suspend keeps threads and pins, so it is not forwarded either.
 * Fills @text with "event/detail"; returns false for events to ignore.
 */
static bool lifecycle_describe(int event, int detail, enum lv_domain_event *kind, char *text,
                               size_t textlen)
{
        const char *const *details;
        size_t n_details;
        const char *name;

        switch (event) {
        case VIR_DOMAIN_EVENT_STARTED:
                *kind = LV_DOMAIN_STARTED;
                name = "started";
                details = started_details;
                n_details = ELEMENTSOF(started_details);
                break;
        case VIR_DOMAIN_EVENT_RESUMED:
                *kind = LV_DOMAIN_STARTED;
                name = "resumed";
                details = resumed_details;
                n_details = ELEMENTSOF(resumed_details);
                break;
        case VIR_DOMAIN_EVENT_STOPPED:
                *kind = LV_DOMAIN_STOPPED;
                name = "stopped";
                details = stopped_details;
                n_details = ELEMENTSOF(stopped_details);
                break;
        default:
                return false;
        }
        if (detail >= 0 && (size_t)detail < n_details && details[detail])
                snprintf(text, textlen, "%s/%s", name, details[detail]);
        else    /* a detail newer than this table */
                snprintf(text, textlen, "%s/%d", name, detail);
        return true;
}

static void event_job_submit(struct lv_conn *c, virDomainPtr dom, const char *uuid,
                             enum lv_domain_event kind, const char *text, int vcpu, const char *cpulist);

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
        struct lv_conn *c = opaque;
        char uuid[VIR_UUID_STRING_BUFLEN], text[64];
        enum lv_domain_event kind;

        if (!lifecycle_describe(event, detail, &kind, text, sizeof(text)) ||
            virDomainGetUUIDString(dom, uuid) < 0)
                return 0;
        log_debug("libvirt event for domain %s (%s): %s", virDomainGetName(dom), uuid, text);
        event_job_submit(c, dom, uuid, kind, text, -1, NULL);
        return 0;
}

/* "cputune.vcpupin12" -> 12; only the exact form libvirt documents. */
static int vcpupin_param_vcpu(const char *field, unsigned *vcpu)
{
        static const char prefix[] = "cputune.vcpupin";
        const char *p;

        if (strncmp(field, prefix, sizeof(prefix) - 1) != 0)
                return -EINVAL;
        p = field + sizeof(prefix) - 1;
        if (!isdigit((unsigned char)*p))
                return -EINVAL;
        unsigned long v;
        if (parse_ulong(p, UINT_MAX, &v) < 0)
                return -EINVAL;
        *vcpu = (unsigned)v;
        return 0;
}

static void on_tunable(virConnectPtr conn, virDomainPtr dom, virTypedParameterPtr params,
                       int nparams, void *opaque)
{
        struct lv_conn *c = opaque;
        char uuid[VIR_UUID_STRING_BUFLEN];
        unsigned vcpu;

        if (virDomainGetUUIDString(dom, uuid) < 0)
                return;
        for (int i = 0; i < nparams; i++) {
                if (params[i].type != VIR_TYPED_PARAM_STRING ||
                    vcpupin_param_vcpu(params[i].field, &vcpu) < 0)
                        continue;
                log_debug("libvirt tunable event for %s (%s): %s = %s", virDomainGetName(dom),
                          uuid, params[i].field, params[i].value.s);
                event_job_submit(c, NULL, uuid, LV_DOMAIN_STARTED, NULL, (int)vcpu, params[i].value.s);
        }
}

/* ---- describing domains (worker thread) ---- */

/* A domain whose live XML cannot be interpreted: said on the loop. */
struct xml_warning {
        char name[256];
        char uuid[VIR_UUID_STRING_BUFLEN];
        char reason[256];
};

/* @dom's live XML interpreted into @out; -ENOENT if it is not running,
 * -EINVAL (and @warn filled) when its XML cannot be interpreted. */
static int describe_domain(virConnectPtr conn, virDomainPtr dom, struct lv_domain *out,
                           struct xml_warning *warn, char *err, size_t errlen)
{
        _cleanup_free_ char *xml = NULL;
        int r;

        xml = virDomainGetXMLDesc(dom, 0);
        if (!xml)
                return libvirt_failure(conn, "reading the live XML", err, errlen);
        r = lv_domain_parse_xml(xml, out, warn->reason, sizeof(warn->reason));
        if (r == -EINVAL) {
                snprintf(warn->name, sizeof(warn->name), "%s", virDomainGetName(dom) ?: "?");
                if (virDomainGetUUIDString(dom, warn->uuid) < 0)
                        warn->uuid[0] = '\0';
                return r;
        }
        if (r < 0)
                return r;
        /* Stopped between listing and reading: its XML is the inactive one. */
        if (out->id < 0) {
                lv_domain_done(out);
                return -ENOENT;
        }
        return 0;
}

/* The adapter is the only place that can name the domain and the reason;
 * the daemon leaves such a guest alone.  Loop thread. */
static void log_xml_warning(const struct xml_warning *w)
{
        struct log_domain ld = { .name = w->name, .uuid = w->uuid[0] ? w->uuid : NULL };

        log_struct(LOG_WARNING, EINVAL, NULL, &ld, NULL,
                   "Ignoring domain %s: cannot interpret its live XML: %s", w->name, w->reason);
}

/* ---- jobs ---- */

/* A job got an answer from libvirtd (or a refusal: it is down, not hung). */
static void mark_responsive(struct lv_conn *c)
{
        if (!c->unresponsive || c->freeing)
                return;
        c->unresponsive = false;
        log_struct(LOG_NOTICE, 0, MSGID_LIBVIRT_CONN, NULL, NULL, "libvirt at %s answers again", c->uri);
        if (c->cb.state_changed)
                c->cb.state_changed(c->userdata);
}

/* A job's last reference can be the connection's last one, and dropping
 * that is a call to libvirtd (the close RPC): always on the worker. */
static void drop_conn(virConnectPtr *conn)
{
        if (*conn)
                virConnectClose(*conn);
        *conn = NULL;
}

struct list_job {
        struct lv_job job;
        struct lv_conn *c;
        virConnectPtr conn;             /* a reference of its own */
        lv_domains_cb cb;
        void *userdata;
        int r;
        struct lv_domain *doms;
        size_t n;
        struct xml_warning *warnings;
        size_t n_warnings;
        char err[256];
};

static void list_run(struct lv_job *j)
{
        struct list_job *lj = (struct list_job *)j;
        virDomainPtr *doms = NULL;
        int n;

        n = virConnectListAllDomains(lj->conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        if (n < 0) {
                lj->r = libvirt_failure(lj->conn, "listing domains", lj->err, sizeof(lj->err));
                drop_conn(&lj->conn);
                return;
        }
        lj->doms = calloc(n > 0 ? (size_t)n : 1, sizeof(*lj->doms));
        lj->warnings = calloc(n > 0 ? (size_t)n : 1, sizeof(*lj->warnings));
        if (!lj->doms || !lj->warnings)
                lj->r = -ENOMEM;
        for (int i = 0; i < n; i++) {
                if (lj->r >= 0) {
                        int q = describe_domain(lj->conn, doms[i], &lj->doms[lj->n],
                                                &lj->warnings[lj->n_warnings], lj->err, sizeof(lj->err));
                        if (q >= 0)
                                lj->n++;
                        else if (q == -EINVAL)
                                lj->n_warnings++;
                        else if (q != -ENOENT)
                                lj->r = q;
                        /* One answer per domain: a long listing is not a hang. */
                        lv_worker_progress(lj->c->worker);
                }
                virDomainFree(doms[i]);
        }
        free(doms);
        drop_conn(&lj->conn);
}

static void list_done(struct lv_job *j, bool cancelled)
{
        struct list_job *lj = (struct list_job *)j;
        struct lv_conn *c = lj->c;

        c->list_pending = false;
        if (!cancelled && lj->r >= 0)
                mark_responsive(c);
        if (!cancelled && !c->freeing) {
                for (size_t i = 0; i < lj->n_warnings; i++)
                        log_xml_warning(&lj->warnings[i]);
                if (lj->r < 0) {
                        snprintf(c->last_error, sizeof(c->last_error), "%s", lj->err);
                        lv_domains_free(lj->doms, lj->n);
                        lj->cb(lj->userdata, lj->r, NULL, 0);
                } else {
                        lj->cb(lj->userdata, 0, lj->doms, lj->n);
                }
        } else {
                lv_domains_free(lj->doms, lj->n);
        }
        free(lj->warnings);
        drop_conn(&lj->conn);           /* only when it never ran: the daemon exits */
        free(lj);
}

int lv_list_domains_async(struct lv_conn *c, lv_domains_cb cb, void *userdata)
{
        struct list_job *lj;

        if (!lv_conn_is_alive(c)) {
                snprintf(c->last_error, sizeof(c->last_error), "not connected to %s", c->uri);
                return -ENOTCONN;
        }
        if (c->list_pending)
                return -EBUSY;
        lj = calloc(1, sizeof(*lj));
        if (!lj)
                return -ENOMEM;
        *lj = (struct list_job){ .job = { .run = list_run, .done = list_done, .what = "listing domains" },
                                 .c = c, .conn = c->conn, .cb = cb, .userdata = userdata };
        virConnectRef(c->conn);
        c->list_pending = true;
        lv_worker_submit(c->worker, &lj->job);
        return 0;
}

/*
 * vCPU counters of every running guest: one call for all of them.  NOWAIT:
 * a guest busy in a job (a migration, a snapshot) is reported without what
 * needs its QEMU monitor, KVM's counters among them (libvirt reads those
 * with QMP query-stats under the job), instead of the call waiting for the
 * job to end; the manager treats a record without them as a gap.  Only the
 * RPC runs here; freeing the records is local.
 */
struct stats_job {
        struct lv_job job;
        struct lv_conn *c;
        virConnectPtr conn;             /* a reference of its own */
        lv_vcpu_stats_cb cb;
        void *userdata;
        int r;
        struct lv_vcpu_stats *doms;
        size_t n;
        uint64_t when_usec;
        char err[256];
};

void lv_vcpu_stats_free(struct lv_vcpu_stats *d, size_t n)
{
        for (size_t i = 0; d && i < n; i++)
                free(d[i].vcpus);
        free(d);
}

/* QEMU's own limit is 4096 vCPUs (x86, q35): ids beyond this are not believed. */
#define STATS_MAX_VCPUS 16384

/* One record into @out; -ENOMEM, or 0 (a record it cannot read is left empty). */
static int stats_record(virDomainStatsRecordPtr rec, struct lv_vcpu_stats *out)
{
        if (virDomainGetUUIDString(rec->dom, out->uuid) < 0)
                return 0;
        /* -EINVAL: a counter libvirt sent as a string: none of the record. */
        int r = kvm_stats_parse_alloc(rec->params, rec->nparams, STATS_MAX_VCPUS, &out->vcpus, &out->n_vcpus);
        return r == -ENOMEM ? r : 0;
}

static void stats_run(struct lv_job *j)
{
        struct stats_job *sj = (struct stats_job *)j;
        virDomainStatsRecordPtr *recs = NULL;
        int n;

        n = virConnectGetAllDomainStats(sj->conn, VIR_DOMAIN_STATS_VCPU,
                                        &recs, VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE |
                                                       VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT);
        sj->when_usec = monotonic_usec();
        if (n < 0) {
                sj->r = libvirt_failure(sj->conn, "reading the vCPU statistics", sj->err, sizeof(sj->err));
                drop_conn(&sj->conn);
                return;
        }
        sj->doms = calloc(n > 0 ? (size_t)n : 1, sizeof(*sj->doms));
        if (!sj->doms)
                sj->r = -ENOMEM;
        for (int i = 0; i < n && sj->r >= 0; i++)
                if ((sj->r = stats_record(recs[i], &sj->doms[sj->n])) >= 0 && sj->doms[sj->n].uuid[0])
                        sj->n++;
        if (sj->r < 0)
                snprintf(sj->err, sizeof(sj->err), "reading the vCPU statistics: out of memory");
        virDomainStatsRecordListFree(recs);
        drop_conn(&sj->conn);
}

static void stats_done(struct lv_job *j, bool cancelled)
{
        struct stats_job *sj = (struct stats_job *)j;
        struct lv_conn *c = sj->c;

        c->stats_pending = false;
        if (!cancelled && sj->r >= 0)
                mark_responsive(c);
        if (!cancelled && !c->freeing) {
                if (sj->r < 0) {
                        snprintf(c->last_error, sizeof(c->last_error), "%s", sj->err);
                        lv_vcpu_stats_free(sj->doms, sj->n);
                        sj->cb(sj->userdata, sj->r, NULL, 0, sj->when_usec);
                } else {
                        sj->cb(sj->userdata, 0, sj->doms, sj->n, sj->when_usec);
                }
        } else {
                lv_vcpu_stats_free(sj->doms, sj->n);
        }
        drop_conn(&sj->conn);           /* only when it never ran: the daemon exits */
        free(sj);
}

int lv_vcpu_stats_async(struct lv_conn *c, lv_vcpu_stats_cb cb, void *userdata)
{
        struct stats_job *sj;

        if (!lv_conn_is_alive(c)) {
                snprintf(c->last_error, sizeof(c->last_error), "not connected to %s", c->uri);
                return -ENOTCONN;
        }
        if (c->stats_pending)
                return -EBUSY;
        sj = calloc(1, sizeof(*sj));
        if (!sj)
                return -ENOMEM;
        *sj = (struct stats_job){ .job = { .run = stats_run, .done = stats_done, .what = "reading vCPU statistics" },
                                  .c = c, .conn = c->conn, .cb = cb, .userdata = userdata };
        virConnectRef(c->conn);
        c->stats_pending = true;
        lv_worker_submit(c->worker, &sj->job);
        return 0;
}

/* A lifecycle or tunable event, delivered in order; a start is looked up
 * first. */
struct event_job {
        struct lv_job job;
        struct lv_conn *c;
        virConnectPtr conn;
        virDomainPtr dom;               /* STARTED lifecycle events only */
        char uuid[VIR_UUID_STRING_BUFLEN];
        enum lv_domain_event kind;
        char detail[64];
        int vcpu;                       /* >= 0: a tunable event pinned this vCPU */
        char *cpulist;
        uint64_t received_usec;
        int r;
        bool have_domain;
        struct lv_domain domain;
        struct xml_warning warning;
        char err[256];
};

static void event_run(struct lv_job *j)
{
        struct event_job *ej = (struct event_job *)j;
        int r;

        if (!ej->dom) {
                drop_conn(&ej->conn);
                return;
        }
        r = virDomainIsActive(ej->dom);
        if (r < 0)
                r = libvirt_failure(ej->conn, "asking whether the domain runs", ej->err, sizeof(ej->err));
        else if (r == 0)
                r = -ENOENT;
        else
                r = describe_domain(ej->conn, ej->dom, &ej->domain, &ej->warning, ej->err, sizeof(ej->err));
        ej->have_domain = r == 0;
        ej->r = r;
        virDomainFree(ej->dom);         /* holds a reference on the connection */
        ej->dom = NULL;
        drop_conn(&ej->conn);
}

static void event_done(struct lv_job *j, bool cancelled)
{
        struct event_job *ej = (struct event_job *)j;
        struct lv_conn *c = ej->c;

        if (!cancelled && ej->dom == NULL && (ej->r == 0 || ej->r == -ENOENT || ej->r == -EINVAL))
                mark_responsive(c);
        if (!cancelled && !c->freeing) {
                if (ej->vcpu >= 0) {
                        if (c->cb.vcpu_pinned)
                                c->cb.vcpu_pinned(c->userdata, ej->uuid, (unsigned)ej->vcpu, ej->cpulist);
                } else {
                        struct lv_domain_event_info ev = {
                                .uuid = ej->uuid, .event = ej->kind, .detail = ej->detail,
                                .dom = ej->have_domain ? &ej->domain : NULL,
                                .error = ej->kind == LV_DOMAIN_STARTED && !ej->have_domain ? ej->r : 0,
                                .error_text = ej->err,
                                .received_usec = ej->received_usec,
                        };
                        if (ej->r == -EINVAL)
                                log_xml_warning(&ej->warning);
                        else if (c->cb.domain_event)
                                c->cb.domain_event(c->userdata, &ev);
                }
        }
        if (ej->have_domain)
                lv_domain_done(&ej->domain);
        if (ej->dom)
                virDomainFree(ej->dom);
        drop_conn(&ej->conn);
        free(ej->cpulist);
        free(ej);
}

static void event_job_submit(struct lv_conn *c, virDomainPtr dom, const char *uuid,
                             enum lv_domain_event kind, const char *text, int vcpu, const char *cpulist)
{
        struct event_job *ej;

        if (!c->conn)
                return;
        ej = calloc(1, sizeof(*ej));
        if (!ej || (cpulist && !(ej->cpulist = strdup(cpulist)))) {
                free(ej);
                log_error("Out of memory queueing a libvirt event for %s; the next resync catches up", uuid);
                return;
        }
        ej->job = (struct lv_job){ .run = event_run, .done = event_done, .what = "looking up a started domain" };
        ej->c = c;
        ej->conn = c->conn;
        virConnectRef(c->conn);
        snprintf(ej->uuid, sizeof(ej->uuid), "%s", uuid);
        ej->kind = kind;
        snprintf(ej->detail, sizeof(ej->detail), "%s", text ?: "");
        ej->vcpu = vcpu;
        ej->received_usec = monotonic_usec();
        if (dom && kind == LV_DOMAIN_STARTED && vcpu < 0) {
                virDomainRef(dom);
                ej->dom = dom;
        }
        lv_worker_submit(c->worker, &ej->job);
}

/* ---- connect / lose / reconnect ---- */

struct connect_job {
        struct lv_job job;
        struct lv_conn *c;
        char *uri;
        virConnectPtr conn;             /* the result */
        int lifecycle_id, tunable_id;
        char err[256];
};

static void on_close(virConnectPtr conn, int reason, void *opaque)
{
        struct lv_conn *c = opaque;
        uint64_t one = 1;

        /* Any thread, from inside libvirt's I/O handling: tell the loop. */
        __atomic_store_n(&c->close_reason, reason, __ATOMIC_RELAXED);
        __atomic_store_n(&c->lost_conn, conn, __ATOMIC_RELEASE);
        (void) !write(c->lost_fd, &one, sizeof(one));
}

static void connect_run(struct lv_job *j)
{
        struct connect_job *cj = (struct connect_job *)j;
        virConnectPtr conn;

        conn = virConnectOpen(cj->uri);
        if (!conn) {
                snprintf(cj->err, sizeof(cj->err), "%s", virGetLastErrorMessage());
                return;
        }
        /* A libvirtd that hangs (not just dies) is noticed after 5 s x 3.
         * Before this the open itself is watched by on_watch(). */
        if (virConnectSetKeepAlive(conn, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT) < 0)
                log_debug("Keepalive not available on %s: %s", cj->uri, virGetLastErrorMessage());
        if (virConnectRegisterCloseCallback(conn, on_close, cj->c, NULL) < 0) {
                libvirt_failure(conn, "registering the close callback", cj->err, sizeof(cj->err));
                goto fail;
        }
        cj->lifecycle_id = virConnectDomainEventRegisterAny(
                conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), cj->c, NULL);
        if (cj->lifecycle_id < 0) {
                libvirt_failure(conn, "subscribing to lifecycle events", cj->err, sizeof(cj->err));
                goto fail;
        }
        cj->tunable_id = virConnectDomainEventRegisterAny(
                conn, NULL, VIR_DOMAIN_EVENT_ID_TUNABLE, VIR_DOMAIN_EVENT_CALLBACK(on_tunable), cj->c, NULL);
        if (cj->tunable_id < 0) {
                libvirt_failure(conn, "subscribing to tunable events", cj->err, sizeof(cj->err));
                goto fail;
        }
        cj->conn = conn;
        return;
fail:
        if (cj->lifecycle_id >= 0)
                (void) virConnectDomainEventDeregisterAny(conn, cj->lifecycle_id);
        (void) virConnectUnregisterCloseCallback(conn, on_close);
        virConnectClose(conn);
}

/* Deregister and close @conn on the worker: both are calls to libvirtd. */
struct close_job {
        struct lv_job job;
        virConnectPtr conn;
        int lifecycle_id, tunable_id;
};

static void close_run(struct lv_job *j)
{
        struct close_job *cl = (struct close_job *)j;

        /* Event callbacks hold a reference on the connection: without
         * deregistering, virConnectClose would not free it.  On a dead
         * connection the remote half fails, the local half still goes. */
        if (cl->lifecycle_id >= 0)
                (void) virConnectDomainEventDeregisterAny(cl->conn, cl->lifecycle_id);
        if (cl->tunable_id >= 0)
                (void) virConnectDomainEventDeregisterAny(cl->conn, cl->tunable_id);
        (void) virConnectUnregisterCloseCallback(cl->conn, on_close);
        virConnectClose(cl->conn);
}

static void close_done(struct lv_job *j, bool cancelled)
{
        free(j);
}

static void disconnect(struct lv_conn *c)
{
        struct close_job *cl;

        if (!c->conn)
                return;
        cl = calloc(1, sizeof(*cl));
        if (cl) {
                *cl = (struct close_job){ .job = { .run = close_run, .done = close_done, .what = "closing the connection" },
                                          .conn = c->conn, .lifecycle_id = c->lifecycle_id,
                                          .tunable_id = c->tunable_id };
                lv_worker_submit(c->worker, &cl->job);
        } else {
                log_error("Out of memory closing the libvirt connection; leaking it");
        }
        c->conn = NULL;
        c->lifecycle_id = c->tunable_id = -1;
}

static const char *close_reason_str(int reason)
{
        switch (reason) {
        case VIR_CONNECT_CLOSE_REASON_ERROR: return "I/O error";
        case VIR_CONNECT_CLOSE_REASON_EOF: return "end of file: libvirtd went away";
        case VIR_CONNECT_CLOSE_REASON_KEEPALIVE: return "keepalive timeout";
        case VIR_CONNECT_CLOSE_REASON_CLIENT: return "closed by client";
        default: return "unknown reason";
        }
}

static int schedule_retry(struct lv_conn *c);

static int on_lost(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct lv_conn *c = userdata;
        uint64_t n;

        (void) !read(c->lost_fd, &n, sizeof(n));
        if (!c->conn || __atomic_load_n(&c->lost_conn, __ATOMIC_ACQUIRE) != c->conn)
                return 0;  /* an old connection's late word */
        log_struct(LOG_WARNING, 0, MSGID_LIBVIRT_CONN, NULL, NULL,
                   "Lost connection to libvirt at %s (%s), reconnecting", c->uri,
                   close_reason_str(__atomic_load_n(&c->close_reason, __ATOMIC_RELAXED)));
        disconnect(c);
        /* The loss is the one message; retries stay quiet until one works. */
        c->state = LV_DISCONNECTED;
        c->failing = true;
        c->failed_attempts = 0;
        c->backoff_usec = BACKOFF_FIRST_USEC;
        (void) schedule_retry(c);
        if (c->cb.disconnected)
                c->cb.disconnected(c->userdata);
        return 0;
}

static void connect_done(struct lv_job *j, bool cancelled)
{
        struct connect_job *cj = (struct connect_job *)j;
        struct lv_conn *c = cj->c;
        bool first_failure;

        free(cj->uri);
        if (cancelled || c->freeing) {
                if (cj->conn) {
                        /* The worker is going away: let libvirt drop it locally. */
                        (void) virConnectUnregisterCloseCallback(cj->conn, on_close);
                        virConnectClose(cj->conn);
                }
                free(cj);
                return;
        }
        if (cj->conn || !c->open_cut)
                mark_responsive(c);
        if (cj->conn) {
                c->conn = cj->conn;
                c->lifecycle_id = cj->lifecycle_id;
                c->tunable_id = cj->tunable_id;
                c->state = LV_CONNECTED;
                if (c->failed_attempts > 0)
                        log_struct(LOG_NOTICE, 0, MSGID_LIBVIRT_CONN, NULL, NULL,
                                   "Connected to libvirt at %s after %u failed attempt%s", c->uri,
                                   c->failed_attempts, c->failed_attempts == 1 ? "" : "s");
                else
                        log_struct(LOG_INFO, 0, MSGID_LIBVIRT_CONN, NULL, NULL,
                                   "Connected to libvirt at %s", c->uri);
                c->failing = false;
                c->failed_attempts = 0;
                c->backoff_usec = BACKOFF_FIRST_USEC;
                free(cj);
                if (c->cb.connected)
                        c->cb.connected(c->userdata);
                return;
        }

        snprintf(c->last_error, sizeof(c->last_error), "%s%s", c->open_cut ? "no answer, gave up: " : "", cj->err);
        free(cj);
        first_failure = c->failed_attempts++ == 0 && !c->failing;
        if (!c->failing)
                log_struct(LOG_WARNING, 0, MSGID_LIBVIRT_CONN, NULL, NULL,
                           "Cannot connect to libvirt at %s, retrying in the background: %s",
                           c->uri, c->last_error);
        else
                log_debug("Still cannot connect to libvirt at %s: %s", c->uri, c->last_error);
        c->failing = true;
        c->state = LV_DISCONNECTED;
        if (c->failed_attempts > 1)
                c->backoff_usec = c->backoff_usec * 2 > BACKOFF_MAX_USEC ? BACKOFF_MAX_USEC
                                                                         : c->backoff_usec * 2;
        (void) schedule_retry(c);
        if (first_failure && c->cb.disconnected)
                c->cb.disconnected(c->userdata);
}

static int start_connect(struct lv_conn *c)
{
        struct connect_job *cj = calloc(1, sizeof(*cj));

        if (!cj || !(cj->uri = strdup(c->uri))) {
                free(cj);
                return -ENOMEM;
        }
        cj->job = (struct lv_job){ .run = connect_run, .done = connect_done, .what = "connecting" };
        cj->c = c;
        cj->lifecycle_id = cj->tunable_id = -1;
        c->state = LV_CONNECTING;
        c->open_cut = false;
        /* Only the worker opens connections and it runs one job at a time:
         * the watches added from now until the open returns are its. */
        c->open_first_handle = lv_event_bridge_next_handle();
        lv_worker_submit(c->worker, &cj->job);
        return 0;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct lv_conn *c = userdata;
        int r = start_connect(c);

        if (r < 0) {
                log_error_errno(r, "Cannot retry connecting to %s: %m", c->uri);
                (void) schedule_retry(c);
        }
        return 0;
}

static int schedule_retry(struct lv_conn *c)
{
        uint64_t now;
        int r;

        r = sd_event_now(c->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                goto fail;
        if (!c->retry) {
                r = sd_event_add_time(c->event, &c->retry, CLOCK_MONOTONIC, now + c->backoff_usec,
                                      10 * 1000, on_retry, c);
                if (r < 0)
                        goto fail;
                (void) sd_event_source_set_description(c->retry, "libvirt-reconnect");
                return 0;
        }
        r = sd_event_source_set_time(c->retry, now + c->backoff_usec);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->retry, SD_EVENT_ONESHOT);
        if (r >= 0)
                return 0;
fail:
        return log_error_errno(r, "Cannot schedule reconnection to %s: %m", c->uri);
}

/*
 * Twice a second: has the worker's current call waited too long?  Past
 * LV_UNRESPONSIVE_USEC libvirt is "unresponsive" (said once, and again when
 * it answers).  An open past OPEN_TIMEOUT_USEC has its socket shut down,
 * which ends it with an error: the keepalive an open connection has.
 */
static int on_watch(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct lv_conn *c = userdata;
        const char *what = NULL;
        uint64_t since = lv_worker_busy_since(c->worker, &what), now;

        (void) sd_event_source_set_time(s, usec + WATCH_INTERVAL_USEC);
        sd_event_now(c->event, CLOCK_MONOTONIC, &now);
        if (since && now - since >= LV_UNRESPONSIVE_USEC && !c->unresponsive) {
                c->unresponsive = true;
                log_struct(LOG_WARNING, 0, MSGID_LIBVIRT_CONN, NULL, NULL,
                           "libvirt at %s is unresponsive: no answer for %.0f s (%s); keeping the current placement and waiting for it",
                           c->uri, (double)(now - since) / 1e6, what ?: "?");
                if (c->cb.state_changed)
                        c->cb.state_changed(c->userdata);
        }
        if (since && c->state == LV_CONNECTING && !c->open_cut && now - since >= OPEN_TIMEOUT_USEC &&
            what && strcmp(what, "connecting") == 0) {
                int n = lv_event_bridge_shutdown_handles(c->open_first_handle);
                c->open_cut = true;
                log_struct(LOG_WARNING, 0, MSGID_LIBVIRT_CONN, NULL, NULL,
                           "libvirt at %s accepted the connection but has not answered for %.0f s; %s",
                           c->uri, (double)(now - since) / 1e6,
                           n > 0 ? "closing it and trying again" : "still waiting");
        }
        return 0;
}

int lv_conn_new(sd_event *e, const char *uri, const struct lv_callbacks *cb, void *userdata,
                struct lv_conn **out)
{
        struct lv_conn *c;
        uint64_t now;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->lost_fd = -1;
        c->uri = strdup(uri ? uri : DEFAULT_CONNECT);
        if (!c->uri) {
                free(c);
                return -ENOMEM;
        }
        c->event = sd_event_ref(e);
        c->cb = *cb;
        c->userdata = userdata;
        c->lifecycle_id = c->tunable_id = -1;
        c->backoff_usec = BACKOFF_FIRST_USEC;
        virSetErrorFunc(NULL, libvirt_error_to_debug);

        c->lost_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        r = c->lost_fd < 0 ? -errno : 0;
        if (r >= 0)
                r = sd_event_add_io(e, &c->lost_source, c->lost_fd, EPOLLIN, on_lost, c);
        if (r >= 0) {
                (void) sd_event_source_set_description(c->lost_source, "libvirt-lost");
                sd_event_now(e, CLOCK_MONOTONIC, &now);
                r = sd_event_add_time(e, &c->watch, CLOCK_MONOTONIC, now + WATCH_INTERVAL_USEC, 100 * 1000,
                                      on_watch, c);
        }
        if (r >= 0) {
                (void) sd_event_source_set_description(c->watch, "libvirt-watch");
                r = sd_event_source_set_enabled(c->watch, SD_EVENT_ON);
        }
        if (r >= 0)
                r = lv_worker_new(e, &c->worker);
        if (r >= 0)
                r = start_connect(c);
        if (r < 0) {
                lv_conn_free(c);
                return r;
        }
        *out = c;
        return 0;
}

void lv_conn_free(struct lv_conn *c)
{
        if (!c)
                return;
        c->freeing = true;
        if (c->worker) {
                disconnect(c);
                /* A worker stuck in libvirtd still refers to @c: leave both. */
                if (!lv_worker_free(c->worker, WORKER_EXIT_WAIT_USEC))
                        return;
        }
        sd_event_source_unref(c->retry);
        sd_event_source_unref(c->watch);
        sd_event_source_unref(c->lost_source);
        if (c->lost_fd >= 0)
                close(c->lost_fd);
        sd_event_unref(c->event);
        free(c->uri);
        free(c);
}

/* ---- waiting, for programs and tests outside the loop ---- */

#define WAIT_USEC (60ULL * 1000000)

bool lv_conn_wait_connected(struct lv_conn *c, uint64_t timeout_usec)
{
        uint64_t end = monotonic_usec() + timeout_usec;

        while (c->state == LV_CONNECTING && monotonic_usec() < end)
                (void) sd_event_run(c->event, end - monotonic_usec());
        return lv_conn_is_alive(c);
}

struct list_wait {
        bool done;
        int r;
        struct lv_domain *doms;
        size_t n;
};

static void on_listed(void *userdata, int r, struct lv_domain *doms, size_t n)
{
        struct list_wait *w = userdata;

        *w = (struct list_wait){ .done = true, .r = r, .doms = doms, .n = n };
}

int lv_list_domains(struct lv_conn *c, struct lv_domain **out, size_t *n_out)
{
        struct list_wait w = {};
        uint64_t end = monotonic_usec() + WAIT_USEC;
        int r = lv_list_domains_async(c, on_listed, &w);

        if (r < 0)
                return r;
        while (!w.done && monotonic_usec() < end)
                (void) sd_event_run(c->event, end - monotonic_usec());
        if (!w.done)
                return -ETIMEDOUT;      /* the job still refers to w: never return before it is done */
        if (w.r < 0)
                return w.r;
        *out = w.doms;
        *n_out = w.n;
        return 0;
}

struct get_job {
        struct lv_job job;
        virConnectPtr conn;
        char uuid[VIR_UUID_STRING_BUFLEN];
        int r;
        bool done;
        struct lv_domain dom;
        struct xml_warning warning;
        char err[256];
};

static void get_run(struct lv_job *j)
{
        struct get_job *gj = (struct get_job *)j;
        virDomainPtr dom = virDomainLookupByUUIDString(gj->conn, gj->uuid);
        int r;

        if (!dom) {
                gj->r = libvirt_failure(gj->conn, "looking up the domain", gj->err, sizeof(gj->err));
                drop_conn(&gj->conn);
                return;
        }
        r = virDomainIsActive(dom);
        if (r < 0)
                r = libvirt_failure(gj->conn, "asking whether the domain runs", gj->err, sizeof(gj->err));
        else if (r == 0)
                r = -ENOENT;
        else
                r = describe_domain(gj->conn, dom, &gj->dom, &gj->warning, gj->err, sizeof(gj->err));
        virDomainFree(dom);
        gj->r = r;
        drop_conn(&gj->conn);
}

static void get_done(struct lv_job *j, bool cancelled)
{
        struct get_job *gj = (struct get_job *)j;

        gj->done = true;
        if (cancelled)
                gj->r = -ECANCELED;
}

int lv_get_domain(struct lv_conn *c, const char *uuid, struct lv_domain *out)
{
        struct get_job *gj;
        uint64_t end = monotonic_usec() + WAIT_USEC;
        int r;

        if (!lv_conn_is_alive(c)) {
                snprintf(c->last_error, sizeof(c->last_error), "not connected to %s", c->uri);
                return -ENOTCONN;
        }
        gj = calloc(1, sizeof(*gj));
        if (!gj)
                return -ENOMEM;
        gj->job = (struct lv_job){ .run = get_run, .done = get_done, .what = "looking up a domain" };
        gj->conn = c->conn;
        virConnectRef(gj->conn);
        snprintf(gj->uuid, sizeof(gj->uuid), "%s", uuid);
        lv_worker_submit(c->worker, &gj->job);
        while (!gj->done && monotonic_usec() < end)
                (void) sd_event_run(c->event, end - monotonic_usec());
        if (!gj->done)
                return -ETIMEDOUT;      /* leaks @gj: the worker may still use it */
        r = gj->r;
        if (r == -EINVAL)
                log_xml_warning(&gj->warning);
        if (r < 0)
                snprintf(c->last_error, sizeof(c->last_error), "%s", gj->err);
        else
                *out = gj->dom;
        free(gj);
        return r;
}
