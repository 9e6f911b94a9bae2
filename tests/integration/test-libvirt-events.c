/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The libvirt adapter against the real libvirtd and real TCG guests (no guest
 * OS): events arrive through the sd-event bridge within a second, live XML is
 * read back correctly, and the connection survives libvirtd being killed and
 * restarted.
 *
 * This test kills the shared libvirtd (by the pid in its pid file) and starts
 * it again at once; other tests sharing it tolerate that.  Its guests are
 * named "libvirt-events-PID-N" and destroyed at exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "cpulist.h"
#include "libvirt.h"
#include "log.h"
#include "macro.h"
#include "tap.h"

#define URI "qemu:///system"
#define LIBVIRTD_PIDFILE "/run/libvirtd.pid"

static sd_event *loop;

struct seen_event {
        char uuid[VIR_UUID_STRING_BUFLEN];
        enum lv_domain_event ev;
        char detail[64];
        uint64_t at;
};

struct seen_pin {
        char uuid[VIR_UUID_STRING_BUFLEN];
        unsigned vcpu;
        char cpulist[64];
        uint64_t at;
};

struct recorder {
        int connected, disconnected;
        uint64_t connected_at, disconnected_at;
        struct seen_event events[64];
        int n_events;
        struct seen_pin pins[16];
        int n_pins;
};

static uint64_t now_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void on_connected(void *userdata)
{
        struct recorder *r = userdata;

        r->connected++;
        r->connected_at = now_usec();
}

static void on_disconnected(void *userdata)
{
        struct recorder *r = userdata;

        r->disconnected++;
        r->disconnected_at = now_usec();
}

static void on_domain_event(void *userdata, const struct lv_domain_event_info *info)
{
        struct recorder *r = userdata;
        const char *uuid = info->uuid, *detail = info->detail;
        enum lv_domain_event ev = info->event;
        struct seen_event *e;

        if (r->n_events == (int)ELEMENTSOF(r->events))
                return;
        e = &r->events[r->n_events++];
        snprintf(e->uuid, sizeof(e->uuid), "%s", uuid);
        e->ev = ev;
        snprintf(e->detail, sizeof(e->detail), "%s", detail);
        e->at = now_usec();
}

static void on_vcpu_pinned(void *userdata, const char *uuid, unsigned vcpu, const char *cpulist)
{
        struct recorder *r = userdata;
        struct seen_pin *p;

        if (r->n_pins == (int)ELEMENTSOF(r->pins))
                return;
        p = &r->pins[r->n_pins++];
        snprintf(p->uuid, sizeof(p->uuid), "%s", uuid);
        p->vcpu = vcpu;
        snprintf(p->cpulist, sizeof(p->cpulist), "%s", cpulist);
        p->at = now_usec();
}

static const struct lv_callbacks callbacks = {
        .connected = on_connected,
        .disconnected = on_disconnected,
        .domain_event = on_domain_event,
        .vcpu_pinned = on_vcpu_pinned,
};

/* Run the loop until @cond holds or @ms pass; evaluates to @cond. */
#define RUN_UNTIL(cond, ms)                                                           \
        ({                                                                            \
                uint64_t _deadline = now_usec() + (uint64_t)(ms) * 1000;              \
                while (!(cond) && now_usec() < _deadline)                             \
                        (void) sd_event_run(loop, 20 * 1000);                         \
                (cond);                                                               \
        })

/* The first event of kind @ev for @uuid, with @detail unless that is NULL. */
static const struct seen_event *find_event(const struct recorder *r, const char *uuid,
                                           enum lv_domain_event ev, const char *detail)
{
        for (int i = 0; i < r->n_events; i++)
                if (strcmp(r->events[i].uuid, uuid) == 0 && r->events[i].ev == ev &&
                    (!detail || strcmp(r->events[i].detail, detail) == 0))
                        return &r->events[i];
        return NULL;
}

static const struct seen_pin *find_pin(const struct recorder *r, const char *uuid, unsigned vcpu)
{
        for (int i = 0; i < r->n_pins; i++)
                if (strcmp(r->pins[i].uuid, uuid) == 0 && r->pins[i].vcpu == vcpu)
                        return &r->pins[i];
        return NULL;
}

/* ---- guests ---- */

static int guest_seq;

static virDomainPtr start_guest(virConnectPtr admin, const char *cpuset, char *uuid, uint64_t *created_at)
{
        char xml[1024], name[64];
        virDomainPtr dom;

        snprintf(name, sizeof(name), "libvirt-events-%d-%d", (int)getpid(), ++guest_seq);
        snprintf(xml, sizeof(xml),
                 "<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory>"
                 "<vcpu current='2'%s%s%s>4</vcpu>"
                 "<os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/></features>"
                 "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>",
                 name, cpuset ? " cpuset='" : "", cpuset ? cpuset : "", cpuset ? "'" : "");
        dom = virDomainCreateXML(admin, xml, 0);
        *created_at = now_usec();
        if (!dom) {
                fprintf(stderr, "cannot start guest %s: %s\n", name, virGetLastErrorMessage());
                return NULL;
        }
        virDomainGetUUIDString(dom, uuid);
        return dom;
}

/* Destroy every guest this process started, whatever state the test is in. */
static void destroy_my_guests(void)
{
        virConnectPtr c = virConnectOpen(URI);
        char name[64];

        if (!c)
                return;
        for (int i = 1; i <= guest_seq; i++) {
                snprintf(name, sizeof(name), "libvirt-events-%d-%d", (int)getpid(), i);
                virDomainPtr d = virDomainLookupByName(c, name);
                if (d) {
                        (void) virDomainDestroy(d);
                        virDomainFree(d);
                }
        }
        virConnectClose(c);
}

/* ---- libvirtd ---- */

static pid_t libvirtd_pid(void)
{
        char buf[64], path[64], comm[64] = "";
        FILE *f;
        long pid;

        f = fopen(LIBVIRTD_PIDFILE, "re");
        if (!f)
                return -1;
        if (!fgets(buf, sizeof(buf), f) || (pid = strtol(buf, NULL, 10)) <= 1) {
                fclose(f);
                return -1;
        }
        fclose(f);
        /* A stale pid file must not make us signal some other process. */
        snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
        f = fopen(path, "re");
        if (!f)
                return -1;
        if (!fgets(comm, sizeof(comm), f))
                comm[0] = '\0';
        fclose(f);
        comm[strcspn(comm, "\n")] = '\0';
        return strcmp(comm, "libvirtd") == 0 ? (pid_t)pid : -1;
}

static int start_libvirtd(void)
{
        /* Started as by hand on this machine; meson's MALLOC_PERTURB_ is not
         * for it, and its output must not hold meson's pipes open. */
        return system("env -u MALLOC_PERTURB_ libvirtd -d </dev/null >>/tmp/libvirt-events-libvirtd.log 2>&1");
}

static void ensure_libvirtd(void)
{
        if (libvirtd_pid() > 0)
                return;
        fprintf(stderr, "# libvirtd not running, starting it again\n");
        (void) start_libvirtd();
}

static void at_exit(void)
{
        ensure_libvirtd();
        destroy_my_guests();
}

/* ---- tests ---- */

static void check_listed(struct lv_conn *c, const char *uuid, virDomainPtr dom, bool pinned,
                         const char *restriction)
{
        struct lv_domain *doms = NULL;
        size_t n = 0;
        int r = lv_list_domains(c, &doms, &n);
        const struct lv_domain *d = NULL;

        CHECK(r == 0, "lv_list_domains: %d (%s)", r, lv_conn_last_error(c));
        for (size_t i = 0; i < n; i++)
                if (strcmp(doms[i].uuid, uuid) == 0)
                        d = &doms[i];
        CHECK(d != NULL, "guest %s not listed among %zu domains", uuid, n);
        if (d) {
                CHECK(strcmp(d->name, virDomainGetName(dom)) == 0, "name '%s'", d->name);
                CHECK((unsigned)d->id == virDomainGetID(dom), "id %d, libvirt says %u", d->id, virDomainGetID(dom));
                CHECK(d->n_vcpus == 2 && d->max_vcpus == 4, "vcpus %u/%u", d->n_vcpus, d->max_vcpus);
                CHECK(d->operator_pinned == pinned, "operator_pinned %d (%s)", d->operator_pinned,
                      d->operator_reason ? d->operator_reason : "no reason");
                if (pinned)
                        CHECK(d->operator_reason && strstr(d->operator_reason, "vcpu='1'"),
                              "reason '%s'", d->operator_reason);
                _cleanup_free_ char *s = d->restriction ? cpulist_format(d->restriction) : NULL;
                CHECK(restriction ? s && strcmp(s, restriction) == 0 : !d->restriction,
                      "restriction '%s', expected '%s'", s ? s : "(none)", restriction ? restriction : "(none)");
        }
        lv_domains_free(doms, n);
}

/* Reading a guest the way the adapter does must not taint it (a QEMU
 * monitor command would: "Domain id=N is tainted: custom-monitor"). */
static void check_not_tainted(const char *name)
{
        char path[256], line[1024];
        bool tainted = false;
        FILE *f;

        snprintf(path, sizeof(path), "/var/log/libvirt/qemu/%s.log", name);
        f = fopen(path, "re");
        CHECK(f != NULL, "no guest log %s", path);
        if (!f)
                return;
        while (fgets(line, sizeof(line), f))
                if (strstr(line, "tainted"))
                        tainted = true;
        fclose(f);
        CHECK(!tainted, "%s says the guest is tainted", path);
}

static void test_guest_lifecycle(struct lv_conn *c, struct recorder *rec, virConnectPtr admin)
{
        char uuid[VIR_UUID_STRING_BUFLEN] = "";
        const struct seen_event *ev;
        const struct seen_pin *pin;
        struct lv_domain d;
        uint64_t created_at;
        virDomainPtr dom;
        int r;

        /* libvirt prints cpuset '0-1,^0' back as '1'. */
        dom = start_guest(admin, "0-1,^0", uuid, &created_at);
        CHECK(dom != NULL, "guest did not start");
        if (!dom)
                return;

        /* libvirt sends started/booted and resumed/unpaused for one start. */
        CHECK(RUN_UNTIL(find_event(rec, uuid, LV_DOMAIN_STARTED, "started/booted"), 1000),
              "no started/booted event within 1 s of virDomainCreateXML returning");
        ev = find_event(rec, uuid, LV_DOMAIN_STARTED, "started/booted");
        if (ev)
                fprintf(stderr, "# started/booted event %.1f ms after virDomainCreateXML returned\n",
                        ev->at > created_at ? (double)(ev->at - created_at) / 1000 : 0.0);
        CHECK(!find_event(rec, uuid, LV_DOMAIN_STOPPED, NULL), "STOPPED reported for a running guest");

        check_listed(c, uuid, dom, false, "1");
        r = lv_get_domain(c, uuid, &d);
        CHECK(r == 0, "lv_get_domain: %d (%s)", r, lv_conn_last_error(c));
        if (r == 0) {
                CHECK(strcmp(d.uuid, uuid) == 0 && d.n_vcpus == 2 && !d.operator_pinned,
                      "lv_get_domain: %s %u vcpus pinned=%d", d.uuid, d.n_vcpus, d.operator_pinned);
                lv_domain_done(&d);
        }
        r = lv_get_domain(c, "00000000-0000-4000-8000-000000000000", &d);
        CHECK(r == -ENOENT, "unknown uuid: %d (%s)", r, lv_conn_last_error(c));

        /* The operator pins vCPU 1 to host CPU 1 while the guest runs. */
        unsigned char cpumap = 1u << 1;
        CHECK(virDomainPinVcpuFlags(dom, 1, &cpumap, 1, VIR_DOMAIN_AFFECT_LIVE) == 0,
              "virDomainPinVcpuFlags: %s", virGetLastErrorMessage());
        CHECK(RUN_UNTIL(find_pin(rec, uuid, 1), 1000), "no vcpu_pinned for vCPU 1 within 1 s");
        pin = find_pin(rec, uuid, 1);
        if (pin)
                CHECK(strcmp(pin->cpulist, "1") == 0, "pinned to '%s'", pin->cpulist);
        CHECK(!find_pin(rec, uuid, 0), "vCPU 0 reported pinned but was not touched");
        check_listed(c, uuid, dom, true, "1");

        CHECK(virDomainDestroy(dom) == 0, "destroy: %s", virGetLastErrorMessage());
        CHECK(RUN_UNTIL(find_event(rec, uuid, LV_DOMAIN_STOPPED, NULL), 1000), "no STOPPED event within 1 s");
        ev = find_event(rec, uuid, LV_DOMAIN_STOPPED, NULL);
        if (ev)
                CHECK(strcmp(ev->detail, "stopped/destroyed") == 0, "detail '%s'", ev->detail);
        r = lv_get_domain(c, uuid, &d);
        CHECK(r == -ENOENT, "destroyed guest: lv_get_domain %d", r);
        check_not_tainted(virDomainGetName(dom));
        virDomainFree(dom);
}

/* Count lines of @path containing @needle, and those also starting with @prefix. */
static void count_lines(const char *path, const char *needle, const char *prefix, int *n, int *n_prefixed)
{
        FILE *f = fopen(path, "re");
        char line[1024];

        *n = *n_prefixed = 0;
        if (!f)
                return;
        while (fgets(line, sizeof(line), f))
                if (strstr(line, needle)) {
                        (*n)++;
                        if (strncmp(line, prefix, strlen(prefix)) == 0)
                                (*n_prefixed)++;
                }
        fclose(f);
}

/* An unreachable libvirt is not an error: lv_conn_new succeeds, retries at
 * 1 s and 3 s, then 7 s (backoff 1, 2, 4, ...) and says so once.  5 s leaves
 * 2 s of slack either way on a loaded host. */
static void test_unreachable_logs_once(void)
{
        const char *uri = "qemu+unix:///system?socket=/nonexistent/libvirt-sock";
        char path[] = "/tmp/libvirt-events-log-XXXXXX";
        struct recorder rec = { 0 };
        struct lv_conn *c = NULL;
        struct lv_domain *doms;
        size_t n;
        int fd, saved, r, lines, warnings;

        fd = mkstemp(path);
        CHECK(fd >= 0, "mkstemp");
        if (fd < 0)
                return;
        fflush(stderr);
        saved = dup(STDERR_FILENO);
        dup2(fd, STDERR_FILENO);
        log_setup(LOG_TARGET_CONSOLE, LOG_DEBUG);

        r = lv_conn_new(loop, uri, &callbacks, &rec, &c);
        bool alive = c && lv_conn_is_alive(c);
        RUN_UNTIL(false, 5000);
        int listed = c ? lv_list_domains(c, &doms, &n) : 0;
        lv_conn_free(c);

        fflush(stderr);
        dup2(saved, STDERR_FILENO);
        close(saved);
        close(fd);
        log_setup(LOG_TARGET_CONSOLE, LOG_INFO);

        count_lines(path, uri, "warning: ", &lines, &warnings);
        unlink(path);
        CHECK(r == 0, "lv_conn_new with libvirt unreachable: %d", r);
        CHECK(!alive, "connection alive to a socket that does not exist");
        CHECK(listed == -ENOTCONN, "lv_list_domains while unreachable: %d", listed);
        CHECK(rec.connected == 0, "connected called %d times", rec.connected);
        CHECK(warnings == 1, "%d warnings about %s, expected exactly one", warnings, uri);
        CHECK(lines == 3, "%d attempts logged in 5 s, expected 3 (t=0, 1 s, 3 s)", lines);
}

/* Kill libvirtd, expect disconnected; start it again, expect connected again
 * within the backoff, and events flowing on the new connection. */
static void test_reconnect(struct lv_conn *c, struct recorder *rec)
{
        struct recorder rec2 = { 0 };
        struct lv_conn *c2 = NULL;
        struct lv_domain *doms;
        size_t n;
        pid_t pid = libvirtd_pid();
        int connected_before = rec->connected, r;
        uint64_t killed_at, restarted_at;

        CHECK(pid > 0, "no running libvirtd behind %s", LIBVIRTD_PIDFILE);
        if (pid <= 0)
                return;

        CHECK(kill(pid, SIGTERM) == 0, "kill libvirtd %d: %m", (int)pid);
        killed_at = now_usec();
        CHECK(RUN_UNTIL(rec->disconnected == 1, 5000), "no disconnected callback within 5 s of killing libvirtd");
        if (rec->disconnected)
                fprintf(stderr, "# disconnected %.1f ms after SIGTERM to libvirtd\n",
                        (double)(rec->disconnected_at - killed_at) / 1000);
        CHECK(!lv_conn_is_alive(c), "connection still alive");
        r = lv_list_domains(c, &doms, &n);
        CHECK(r == -ENOTCONN, "lv_list_domains while down: %d", r);

        /* The old daemon must be gone before a new one can take its pid file. */
        CHECK(RUN_UNTIL(kill(pid, 0) < 0 && errno == ESRCH, 15000), "libvirtd %d did not exit", (int)pid);
        fprintf(stderr, "# libvirtd exited %.1f s after SIGTERM\n", (double)(now_usec() - killed_at) / 1e6);

        /* A connection manager created while libvirtd is down. */
        r = lv_conn_new(loop, NULL, &callbacks, &rec2, &c2);
        CHECK(r == 0, "lv_conn_new with libvirtd down: %d", r);
        CHECK(c2 && !lv_conn_is_alive(c2), "connected to a libvirtd that is down");

        r = start_libvirtd();
        restarted_at = now_usec();
        CHECK(r == 0, "libvirtd -d failed: %d", r);

        /* Retries come 1, 3, 7, 15, 31 s after the loss; libvirtd is up within
         * seconds, so one of them gets through well inside 35 s. */
        CHECK(RUN_UNTIL(rec->connected == connected_before + 1 && rec2.connected == 1, 35000),
              "not reconnected within 35 s (connected %d -> %d, new manager %d)", connected_before,
              rec->connected, rec2.connected);
        if (rec->connected > connected_before)
                fprintf(stderr, "# reconnected %.1f s after the loss, %.1f s after libvirtd -d\n",
                        (double)(rec->connected_at - rec->disconnected_at) / 1e6,
                        (double)(rec->connected_at - restarted_at) / 1e6);
        CHECK(lv_conn_is_alive(c) && lv_conn_is_alive(c2), "not alive after reconnecting");
        /* The second manager's first attempt failed: that is its one disconnected. */
        CHECK(rec->disconnected == 1 && rec2.disconnected == 1, "disconnected %d / %d",
              rec->disconnected, rec2.disconnected);

        /* Events flow on the new connection: a guest started now is seen. */
        virConnectPtr admin = virConnectOpen(URI);
        CHECK(admin != NULL, "reopening the admin connection: %s", virGetLastErrorMessage());
        if (admin) {
                char uuid[VIR_UUID_STRING_BUFLEN] = "";
                uint64_t created_at;
                virDomainPtr dom = start_guest(admin, NULL, uuid, &created_at);

                CHECK(dom != NULL, "guest did not start after reconnecting");
                if (dom) {
                        CHECK(RUN_UNTIL(find_event(rec, uuid, LV_DOMAIN_STARTED, "started/booted") &&
                                        find_event(&rec2, uuid, LV_DOMAIN_STARTED, "started/booted"), 1000),
                              "no STARTED event within 1 s on the reconnected connections");
                        check_listed(c2, uuid, dom, false, NULL);
                        (void) virDomainDestroy(dom);
                        CHECK(RUN_UNTIL(find_event(rec, uuid, LV_DOMAIN_STOPPED, "stopped/destroyed"), 1000),
                              "no STOPPED event after reconnecting");
                        virDomainFree(dom);
                }
                virConnectClose(admin);
        }
        lv_conn_free(c2);
}

int main(void)
{
        struct recorder rec = { 0 };
        struct lv_conn *c = NULL;
        virConnectPtr admin;
        int r;

        log_setup(LOG_TARGET_CONSOLE, LOG_INFO);
        if (sd_event_new(&loop) < 0 || lv_event_bridge_register(loop) < 0) {
                fprintf(stderr, "cannot set up the event loop\n");
                return 1;
        }

        admin = geteuid() == 0 ? virConnectOpen(URI) : NULL;
        if (!admin) {
                fprintf(stderr, "# needs root and a running libvirtd at %s: %s\n", URI,
                        geteuid() == 0 ? virGetLastErrorMessage() : "not root");
                return getenv("CI") ? 1 : 77;
        }
        atexit(at_exit);

        r = lv_conn_new(loop, NULL, &callbacks, &rec, &c);
        CHECK(r == 0, "lv_conn_new: %d", r);
        CHECK(strcmp(lv_conn_uri(c), URI) == 0, "default URI '%s'", lv_conn_uri(c));
        /* The open runs on the worker: never inside lv_conn_new. */
        CHECK(rec.connected == 0, "connected called from inside lv_conn_new");
        CHECK(lv_conn_wait_connected(c, 5000000), "not connected within 5 s");
        CHECK(RUN_UNTIL(rec.connected == 1, 1000), "connected callback not called");

        test_guest_lifecycle(c, &rec, admin);
        virConnectClose(admin);
        test_unreachable_logs_once();
        test_reconnect(c, &rec);

        lv_conn_free(c);
        /* Let the deferred free callbacks run. */
        for (int i = 0; i < 10; i++)
                (void) sd_event_run(loop, 0);
        return test_result();
}
