/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The libvirt adapter: one connection kept alive across libvirtd restarts,
 * lifecycle and tunable events turned into lv_callbacks, and the running
 * domains, whose live XML domain-xml.c interprets.
 *
 * Only read-only, guest-neutral APIs are used: list, lookup, XML description.
 * Never virDomainQemuMonitorCommand (taints the guest), never pinning APIs.
 */
#include "libvirt.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "cpulist.h"
#include "lib/defaults.h"
#include "log.h"
#include "lib/util.h"
#include "macro.h"
#include "message-ids.h"

#define KEEPALIVE_INTERVAL_S 5
#define KEEPALIVE_COUNT 3u
#define BACKOFF_FIRST_USEC (1ULL * 1000000)
#define BACKOFF_MAX_USEC (30ULL * 1000000)

/* ---------------------------------------------------------------------------
 * Connection
 */

struct lv_conn {
        sd_event *event;
        char *uri;
        struct lv_callbacks cb;
        void *userdata;

        virConnectPtr conn;             /* NULL while disconnected */
        int lifecycle_id;               /* -1 when not registered */
        int tunable_id;
        bool close_cb_registered;
        int close_reason;               /* VIR_CONNECT_CLOSE_REASON_*, set by close_cb */

        sd_event_source *retry;         /* reconnect timer */
        uint64_t backoff_usec;
        sd_event_source *notify_connected;
        sd_event_source *handle_lost;
        bool lost;                      /* libvirt closed the connection; teardown pending */
        bool failing;                   /* a failure is logged; stay quiet until connected */
        unsigned failed_attempts;
        char last_error[256];
};

static void libvirt_error_to_debug(void *userdata, virErrorPtr error)
{
        /* libvirt prints every error to stderr by default; the ones that
         * matter are reported with context by us, the rest is for -v. */
        if (error && error->message)
                log_debug("libvirt: %s", error->message);
}

static void record_error(struct lv_conn *c, const char *what)
{
        snprintf(c->last_error, sizeof(c->last_error), "%s: %s", what, virGetLastErrorMessage());
}

/* The error a failed libvirt call on @c should turn into. */
static int libvirt_failure(struct lv_conn *c, const char *what)
{
        record_error(c, what);
        switch (virGetLastErrorCode()) {
        case VIR_ERR_NO_DOMAIN:
        case VIR_ERR_OPERATION_INVALID:         /* e.g. the domain is not running */
                return -ENOENT;
        case VIR_ERR_INVALID_ARG:
                return -EINVAL;
        }
        if (!c->conn || virConnectIsAlive(c->conn) != 1)
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
        return c && c->conn && !c->lost && virConnectIsAlive(c->conn) == 1;
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

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
        struct lv_conn *c = opaque;
        char uuid[VIR_UUID_STRING_BUFLEN], text[64];
        enum lv_domain_event kind;

        if (!lifecycle_describe(event, detail, &kind, text, sizeof(text)) ||
            virDomainGetUUIDString(dom, uuid) < 0)
                return 0;
        log_debug("libvirt event for domain %s (%s): %s", virDomainGetName(dom), uuid, text);
        if (c->cb.domain_event)
                c->cb.domain_event(c->userdata, uuid, kind, text);
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
                if (c->cb.vcpu_pinned)
                        c->cb.vcpu_pinned(c->userdata, uuid, vcpu, params[i].value.s);
        }
}

/* ---- connect / lose / reconnect ---- */

static int schedule_retry(struct lv_conn *c);

static void disconnect(struct lv_conn *c)
{
        if (!c->conn)
                return;
        /* Event callbacks hold a reference on the connection: without
         * deregistering, virConnectClose would not free it.  On a dead
         * connection the remote half fails, the local half still goes. */
        if (c->lifecycle_id >= 0)
                (void) virConnectDomainEventDeregisterAny(c->conn, c->lifecycle_id);
        if (c->tunable_id >= 0)
                (void) virConnectDomainEventDeregisterAny(c->conn, c->tunable_id);
        c->lifecycle_id = c->tunable_id = -1;
        if (c->close_cb_registered)
                (void) virConnectUnregisterCloseCallback(c->conn, NULL);
        c->close_cb_registered = false;
        virConnectClose(c->conn);
        c->conn = NULL;
        c->lost = false;
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

static int on_handle_lost(sd_event_source *s, void *userdata)
{
        struct lv_conn *c = userdata;

        if (!c->lost)
                return 0;
        log_struct(LOG_WARNING, 0, MSGID_LIBVIRT_CONN, NULL, NULL,
                   "Lost connection to libvirt at %s (%s), reconnecting", c->uri,
                   close_reason_str(c->close_reason));
        disconnect(c);
        /* The loss is the one message; retries stay quiet until one works. */
        c->failing = true;
        c->failed_attempts = 0;
        c->backoff_usec = BACKOFF_FIRST_USEC;
        (void) schedule_retry(c);
        if (c->cb.disconnected)
                c->cb.disconnected(c->userdata);
        return 0;
}

static int defer_once(struct lv_conn *c, sd_event_source **slot, sd_event_handler_t handler,
                      const char *description)
{
        int r;

        if (*slot)
                return sd_event_source_set_enabled(*slot, SD_EVENT_ONESHOT);
        r = sd_event_add_defer(c->event, slot, handler, c);
        if (r >= 0)
                (void) sd_event_source_set_description(*slot, description);
        return r;
}

static void on_close(virConnectPtr conn, int reason, void *opaque)
{
        struct lv_conn *c = opaque;
        int r;

        /* Called from inside libvirt's I/O handling: tear down later. */
        c->lost = true;
        c->close_reason = reason;
        r = defer_once(c, &c->handle_lost, on_handle_lost, "libvirt-lost");
        if (r < 0)
                log_error_errno(r, "Cannot schedule reconnection to %s: %m", c->uri);
}

static int on_notify_connected(sd_event_source *s, void *userdata)
{
        struct lv_conn *c = userdata;

        if (c->conn && !c->lost && c->cb.connected)
                c->cb.connected(c->userdata);
        return 0;
}

static int subscribe(struct lv_conn *c)
{
        if (virConnectRegisterCloseCallback(c->conn, on_close, c, NULL) < 0)
                return libvirt_failure(c, "registering the close callback");
        c->close_cb_registered = true;

        c->lifecycle_id = virConnectDomainEventRegisterAny(
                c->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle),
                c, NULL);
        if (c->lifecycle_id < 0)
                return libvirt_failure(c, "subscribing to lifecycle events");

        c->tunable_id = virConnectDomainEventRegisterAny(
                c->conn, NULL, VIR_DOMAIN_EVENT_ID_TUNABLE, VIR_DOMAIN_EVENT_CALLBACK(on_tunable),
                c, NULL);
        if (c->tunable_id < 0)
                return libvirt_failure(c, "subscribing to tunable events");
        return 0;
}

static int try_connect(struct lv_conn *c)
{
        int r;

        c->conn = virConnectOpen(c->uri);
        if (!c->conn) {
                snprintf(c->last_error, sizeof(c->last_error), "%s", virGetLastErrorMessage());
                r = -ECONNREFUSED;
                goto failed;
        }
        /* A libvirtd that hangs (not just dies) is noticed after 5 s x 3. */
        if (virConnectSetKeepAlive(c->conn, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT) < 0)
                log_debug("Keepalive not available on %s: %s", c->uri, virGetLastErrorMessage());
        r = subscribe(c);
        if (r < 0) {
                disconnect(c);
                goto failed;
        }

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
        r = defer_once(c, &c->notify_connected, on_notify_connected, "libvirt-connected");
        if (r < 0)
                log_error_errno(r, "Cannot schedule the resync after connecting to %s: %m", c->uri);
        return 0;

failed:
        c->failed_attempts++;
        if (!c->failing)
                log_struct(LOG_WARNING, 0, MSGID_LIBVIRT_CONN, NULL, NULL,
                           "Cannot connect to libvirt at %s, retrying in the background: %s",
                           c->uri, c->last_error);
        else
                log_debug("Still cannot connect to libvirt at %s: %s", c->uri, c->last_error);
        c->failing = true;
        return r;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct lv_conn *c = userdata;

        if (try_connect(c) >= 0)
                return 0;
        c->backoff_usec = c->backoff_usec * 2 > BACKOFF_MAX_USEC ? BACKOFF_MAX_USEC
                                                                 : c->backoff_usec * 2;
        (void) schedule_retry(c);
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

int lv_conn_new(sd_event *e, const char *uri, const struct lv_callbacks *cb, void *userdata,
                struct lv_conn **out)
{
        struct lv_conn *c;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
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

        if (try_connect(c) < 0)
                (void) schedule_retry(c);
        *out = c;
        return 0;
}

void lv_conn_free(struct lv_conn *c)
{
        if (!c)
                return;
        disconnect(c);
        sd_event_source_unref(c->retry);
        sd_event_source_unref(c->notify_connected);
        sd_event_source_unref(c->handle_lost);
        sd_event_unref(c->event);
        free(c->uri);
        free(c);
}

/* ---- domains ---- */

/* @dom's live XML interpreted into @out; -ENOENT if it is not running. */
static int describe_domain(struct lv_conn *c, virDomainPtr dom, struct lv_domain *out)
{
        _cleanup_free_ char *xml = NULL;
        char err[256] = "";
        int r;

        xml = virDomainGetXMLDesc(dom, 0);
        if (!xml)
                return libvirt_failure(c, "reading the live XML");
        r = lv_domain_parse_xml(xml, out, err, sizeof(err));
        if (r == -EINVAL) {
                const char *name = virDomainGetName(dom);
                struct log_domain ld = { .name = name };
                char uuid[VIR_UUID_STRING_BUFLEN];

                if (virDomainGetUUIDString(dom, uuid) == 0)
                        ld.uuid = uuid;
                /* The adapter is the only place that can name the domain and
                 * the reason; the daemon leaves such a guest alone. */
                log_struct(LOG_WARNING, EINVAL, NULL, &ld, NULL,
                           "Ignoring domain %s: cannot interpret its live XML: %s", name, err);
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

int lv_list_domains(struct lv_conn *c, struct lv_domain **out, size_t *n_out)
{
        virDomainPtr *doms = NULL;
        struct lv_domain *result;
        size_t n_result = 0;
        int n, r = 0;

        if (!lv_conn_is_alive(c)) {
                snprintf(c->last_error, sizeof(c->last_error), "not connected to %s", c->uri);
                return -ENOTCONN;
        }
        n = virConnectListAllDomains(c->conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        if (n < 0)
                return libvirt_failure(c, "listing domains");

        result = calloc(n > 0 ? (size_t)n : 1, sizeof(*result));
        if (!result)
                r = -ENOMEM;
        for (int i = 0; i < n; i++) {
                if (r >= 0) {
                        int q = describe_domain(c, doms[i], &result[n_result]);
                        if (q >= 0)
                                n_result++;
                        else if (q != -ENOENT && q != -EINVAL)
                                r = q;
                }
                virDomainFree(doms[i]);
        }
        free(doms);
        if (r < 0) {
                lv_domains_free(result, n_result);
                return r;
        }
        *out = result;
        *n_out = n_result;
        return 0;
}

int lv_get_domain(struct lv_conn *c, const char *uuid, struct lv_domain *out)
{
        virDomainPtr dom;
        int r;

        if (!lv_conn_is_alive(c)) {
                snprintf(c->last_error, sizeof(c->last_error), "not connected to %s", c->uri);
                return -ENOTCONN;
        }
        dom = virDomainLookupByUUIDString(c->conn, uuid);
        if (!dom)
                return libvirt_failure(c, "looking up the domain");
        r = virDomainIsActive(dom);
        if (r < 0)
                r = libvirt_failure(c, "asking whether the domain runs");
        else if (r == 0)
                r = -ENOENT;
        else
                r = describe_domain(c, dom, out);
        virDomainFree(dom);
        return r;
}
