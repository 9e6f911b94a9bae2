/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The configuration parser: every key, every class of error with its exact
 * message, drop-in order on a real directory, matching, the host check and
 * the print/parse round trip.  argv[1] is the shipped conf/vcpuspreadd.conf,
 * argv[2] man/vcpuspreadd.conf.5: both must cover every key at its default.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "config-load.h"
#include "fileio.h"
#include "lib/config.h"
#include "cpulist.h"
#include "macro.h"
#include "tap.h"

static hwloc_bitmap_t cpus(const char *list)
{
        hwloc_bitmap_t b = hwloc_bitmap_alloc();
        if (cpulist_parse(list, b, NULL, 0) < 0)
                abort();
        return b;
}

static bool cpus_equal(hwloc_const_bitmap_t b, const char *list)
{
        _cleanup_bitmap_ hwloc_bitmap_t want = cpus(list);
        return b && hwloc_bitmap_isequal(b, want);
}

/* Parse @text over the defaults; returns the parser's result. */
static int parse(struct config *c, const char *text, struct config_error *e)
{
        int r = config_init(c);
        if (r < 0)
                abort();
        *e = (struct config_error){ 0 };
        return config_parse_string(c, text, "vcpuspreadd.conf", e);
}

static void expect_error(const char *text, const char *message)
{
        struct config c;
        struct config_error e;
        int r = parse(&c, text, &e);

        CHECK(r == -EINVAL, "accepted: %s", text);
        CHECK(strcmp(e.text, message) == 0, "\n  got:  %s\n  want: %s", e.text, message);
        config_done(&c);
}

static void test_defaults(void)
{
        struct config c;

        CHECK(config_init(&c) == 0, "init");
        CHECK(strcmp(c.connect, "qemu:///system") == 0, "Connect %s", c.connect);
        CHECK(c.sample_interval_usec == USEC_PER_SEC, "SampleIntervalSec %llu",
              (unsigned long long)c.sample_interval_usec);
        CHECK(hwloc_bitmap_iszero(c.reserved_cpus), "ReservedCPUs not empty");
        CHECK(c.default_policy == POLICY_AUTO, "DefaultPolicy %d", c.default_policy);
        CHECK(c.auto_window_usec == 10 * USEC_PER_SEC, "AutoWindowSec");
        CHECK(c.moves_per_interval == 4, "MovesPerInterval %u", c.moves_per_interval);
        CHECK(c.hysteresis == 0.1, "Hysteresis %g", c.hysteresis);
        CHECK(c.lane_width == 0, "LaneWidth %u", c.lane_width);
        CHECK(c.load_window_usec == 5 * USEC_PER_SEC, "LoadWindowSec");
        CHECK(c.min_dwell_usec == 10 * USEC_PER_SEC, "MinDwellSec");
        CHECK(c.starvation_wait_usec == 100 * USEC_PER_MSEC, "StarvationWaitSec");
        CHECK(!c.task_delay_accounting, "TaskDelayAccounting");
        CHECK(strcmp(c.control_socket, "/run/vcpuspreadd/control.sock") == 0, "ControlSocket");
        CHECK(c.control_socket_group == NULL, "ControlSocketGroup");
        CHECK(c.log_level == LOG_INFO, "LogLevel %d", c.log_level);
        CHECK(c.n_domains == 0 && c.n_files == 0, "domains/files");
        CHECK(config_match_domain(&c, "x", NULL) == NULL, "match without sections");
        config_done(&c);
}

static void test_every_key(void)
{
        struct config c;
        struct config_error e;
        int r = parse(&c,
                      "# comment\n"
                      "; also a comment\n"
                      "\n"
                      "[Daemon]\n"
                      "Connect = qemu+ssh://root@host/system\n"
                      "SampleIntervalSec=500ms\n"
                      "ReservedCPUs=0-1,8\n"
                      "DefaultPolicy=spread-cores\n"
                      "MovesPerInterval=7\n"
                      "Hysteresis=0.25\n"
                      "LaneWidth=2\n"
                      "LoadWindowSec=30\n"
                      "MinDwellSec=1min 30s\n"
                      "StarvationWaitSec=250ms\n"
                      "TaskDelayAccounting=yes\n"
                      "ControlSocket=/run/x/ctl.sock\n"
                      "ControlSocketGroup=libvirt\n"
                      "LogLevel=debug\n"
                      "\t[Domain]  \r\n"
                      "Name=web-*\n"
                      "UUID=0B7D4A3E-5F1C-4C2A-9E8B-3F6D2A1C0E9F\n"
                      "Policy=ignore\n"
                      "CPUs=2-5\n"
                      "Override=yes\n",
                      &e);

        CHECK(r == 0, "parse: %s", e.text);
        CHECK(strcmp(c.connect, "qemu+ssh://root@host/system") == 0, "Connect %s", c.connect);
        CHECK(c.sample_interval_usec == 500 * USEC_PER_MSEC, "SampleIntervalSec");
        CHECK(cpus_equal(c.reserved_cpus, "0-1,8"), "ReservedCPUs");
        CHECK(c.reserved_cpus_origin.line == 7 &&
              strcmp(c.reserved_cpus_origin.file, "vcpuspreadd.conf") == 0, "ReservedCPUs origin");
        CHECK(c.default_policy == POLICY_SPREAD_CORES, "DefaultPolicy");
        CHECK(c.moves_per_interval == 7, "MovesPerInterval");
        CHECK(c.hysteresis == 0.25, "Hysteresis %g", c.hysteresis);
        CHECK(c.lane_width == 2, "LaneWidth");
        CHECK(c.load_window_usec == 30 * USEC_PER_SEC, "LoadWindowSec");
        CHECK(c.min_dwell_usec == 90 * USEC_PER_SEC, "MinDwellSec");
        CHECK(c.starvation_wait_usec == 250 * USEC_PER_MSEC, "StarvationWaitSec");
        CHECK(c.task_delay_accounting, "TaskDelayAccounting");
        CHECK(strcmp(c.control_socket, "/run/x/ctl.sock") == 0, "ControlSocket");
        CHECK(c.control_socket_group && strcmp(c.control_socket_group, "libvirt") == 0, "ControlSocketGroup");
        CHECK(c.log_level == LOG_DEBUG, "LogLevel");
        CHECK(c.n_domains == 1, "n_domains %zu", c.n_domains);
        if (c.n_domains == 1) {
                const struct config_domain *d = &c.domains[0];
                CHECK(strcmp(d->name, "web-*") == 0, "Name");
                CHECK(strcmp(d->uuid, "0b7d4a3e-5f1c-4c2a-9e8b-3f6d2a1c0e9f") == 0, "UUID %s", d->uuid);
                CHECK(d->policy_set && d->policy == POLICY_IGNORE, "Policy");
                CHECK(cpus_equal(d->cpus, "2-5"), "CPUs");
                CHECK(d->cpus_origin.line == 23, "CPUs line %u", d->cpus_origin.line);
                CHECK(d->section.line == 19, "section line %u", d->section.line);
                CHECK(d->override, "Override");
        }
        config_done(&c);

        /* The other spellings each key accepts. */
        r = parse(&c, "[Daemon]\nMovesPerInterval=infinity\nHysteresis=10%\nLaneWidth=auto\n"
                      "LoadWindowSec=0\nMinDwellSec=0\nStarvationWaitSec=0\nTaskDelayAccounting=off\n"
                      "LogLevel=err\nDefaultPolicy=ignore\nSampleIntervalSec=10ms\nLaneWidth=8192\n"
                      "[Domain]\nUUID=0b7d4a3e5f1c4c2a9e8b3f6d2a1c0e9f\nOverride=0\nPolicy=spread\n", &e);
        CHECK(r == 0, "parse: %s", e.text);
        CHECK(c.moves_per_interval == 0, "infinity = no limit");
        CHECK(c.hysteresis == 0.1, "10%% = 0.1, got %g", c.hysteresis);
        CHECK(c.lane_width == 8192, "LaneWidth");
        CHECK(c.load_window_usec == 0 && c.min_dwell_usec == 0 && c.starvation_wait_usec == 0, "zeros");
        CHECK(!c.task_delay_accounting && c.log_level == LOG_ERR && c.default_policy == POLICY_IGNORE, "misc");
        CHECK(c.sample_interval_usec == 10 * USEC_PER_MSEC, "SampleIntervalSec min");
        CHECK(c.n_domains == 1 && strcmp(c.domains[0].uuid, "0b7d4a3e-5f1c-4c2a-9e8b-3f6d2a1c0e9f") == 0 &&
              !c.domains[0].name && !c.domains[0].override && c.domains[0].policy == POLICY_SPREAD,
              "UUID without dashes");
        config_done(&c);

        static const struct {
                const char *text;
                int level;
        } levels[] = { { "debug", LOG_DEBUG }, { "info", LOG_INFO }, { "notice", LOG_NOTICE },
                       { "warning", LOG_WARNING }, { "err", LOG_ERR } };
        for (size_t i = 0; i < ELEMENTSOF(levels); i++) {
                char text[64];
                snprintf(text, sizeof(text), "[Daemon]\nLogLevel=%s\n", levels[i].text);
                r = parse(&c, text, &e);
                CHECK(r == 0 && c.log_level == levels[i].level, "LogLevel=%s", levels[i].text);
                config_done(&c);
        }
}

static void test_later_wins_and_reset(void)
{
        struct config c;
        struct config_error e;
        int r = parse(&c, "[Daemon]\nMovesPerInterval=9\nMovesPerInterval=2\nConnect=test:///default\n"
                          "ReservedCPUs=3\nControlSocketGroup=kvm\n"
                          "[Daemon]\nConnect=\nReservedCPUs=\nControlSocketGroup=\n"
                          "[Domain]\nName=a\nPolicy=ignore\nPolicy=\nCPUs=1\nCPUs=\nOverride=yes\nOverride=\n",
                      &e);

        CHECK(r == 0, "parse: %s", e.text);
        CHECK(c.moves_per_interval == 2, "later assignment wins: %u", c.moves_per_interval);
        CHECK(strcmp(c.connect, "qemu:///system") == 0, "Connect= resets: %s", c.connect);
        CHECK(hwloc_bitmap_iszero(c.reserved_cpus), "ReservedCPUs= resets");
        CHECK(c.control_socket_group == NULL, "ControlSocketGroup= resets");
        CHECK(c.n_domains == 1 && !c.domains[0].policy_set && !c.domains[0].cpus && !c.domains[0].override,
              "[Domain] keys reset by empty values");
        config_done(&c);
}

static void test_durations(void)
{
        static const struct {
                const char *s;
                uint64_t usec;
        } ok[] = {
                { "500ms", 500000 }, { "2s", 2000000 }, { "1min", 60000000 }, { "1.5s", 1500000 },
                { "5", 5000000 }, { "0.25", 250000 }, { "1min 30s", 90000000 }, { "1min30s", 90000000 },
                { "1h", 3600000000ull }, { "250us", 250 }, { "250usec", 250 }, { "3 sec", 3000000 },
                { "0", 0 }, { ".5s", 500000 }, { "2d", 172800000000ull }, { "1w", 604800000000ull },
                { "1.0000001s", 1000000 }, { "1s 500ms", 1500000 }, { "7 minutes", 420000000 },
                { "2hr", 7200000000ull }, { "1m", 60000000 }, { "1.5min", 90000000 },
        };
        static const char *const bad[] = {
                "", " ", "-1s", "+1s", "abc", "1x", "1 2", "1min 30", "s", "1.5.5s", "1e3", "nan", "inf",
                "1s-", "0x10", "5 s5",
        };
        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                uint64_t v = 1;
                int r = config_parse_duration(ok[i].s, &v);
                CHECK(r == 0 && v == ok[i].usec, "'%s' -> r=%d %llu, want %llu", ok[i].s, r,
                      (unsigned long long)v, (unsigned long long)ok[i].usec);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                uint64_t v = 7;
                CHECK(config_parse_duration(bad[i], &v) == -EINVAL && v == 7, "'%s' accepted", bad[i]);
        }
        uint64_t v;
        CHECK(config_parse_duration("99999999999999999999s", &v) == -ERANGE, "overflow accepted");
        CHECK(config_parse_duration("40000000w", &v) == -ERANGE, "overflow accepted");

        static const struct {
                uint64_t usec;
                const char *s;
        } fmt[] = { { 0, "0" }, { 1000000, "1s" }, { 500000, "500ms" }, { 90000000, "1min 30s" },
                    { 1500000, "1s 500ms" }, { 3600000001ull, "1h 1us" }, { 86400000000ull, "1d" } };
        for (size_t i = 0; i < ELEMENTSOF(fmt); i++) {
                _cleanup_free_ char *s = config_format_duration(fmt[i].usec);
                CHECK(s && strcmp(s, fmt[i].s) == 0, "%llu formatted as %s", (unsigned long long)fmt[i].usec,
                      s ? s : "(null)");
                CHECK(s && config_parse_duration(s, &v) == 0 && v == fmt[i].usec, "'%s' does not parse back",
                      s ? s : "(null)");
        }
}

static void test_booleans(void)
{
        static const char *const yes[] = { "yes", "true", "on", "1", "YES", "True", "y", "t" };
        static const char *const no[] = { "no", "false", "off", "0", "NO", "Off", "n", "f" };
        static const char *const bad[] = { "", "2", "yess", "enable", "-1", "o" };
        bool b;

        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                CHECK(config_parse_boolean(yes[i], &b) == 0 && b, "'%s'", yes[i]);
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                CHECK(config_parse_boolean(no[i], &b) == 0 && !b, "'%s'", no[i]);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                CHECK(config_parse_boolean(bad[i], &b) == -EINVAL, "'%s' accepted", bad[i]);
}

static void test_value_errors(void)
{
        expect_error("[Daemon]\nConnect=system\n",
                     "vcpuspreadd.conf:2: Connect=system: expected a libvirt URI such as qemu:///system");
        expect_error("[Daemon]\nConnect=qemu:///system extra\n",
                     "vcpuspreadd.conf:2: Connect=qemu:///system extra: expected a libvirt URI such as qemu:///system");
        expect_error("[Daemon]\nSampleIntervalSec=-1s\n",
                     "vcpuspreadd.conf:2: SampleIntervalSec=-1s: expected a duration from 10ms to 1h, "
                     "such as 500ms, 2s or 1min 30s");
        expect_error("[Daemon]\nSampleIntervalSec=5ms\n",
                     "vcpuspreadd.conf:2: SampleIntervalSec=5ms: expected a duration from 10ms to 1h, "
                     "such as 500ms, 2s or 1min 30s");
        expect_error("[Daemon]\nSampleIntervalSec=2h\n",
                     "vcpuspreadd.conf:2: SampleIntervalSec=2h: expected a duration from 10ms to 1h, "
                     "such as 500ms, 2s or 1min 30s");
        expect_error("[Daemon]\nReservedCPUs=5-2\n",
                     "vcpuspreadd.conf:2: ReservedCPUs=5-2: expected a CPU list such as 0-3,8,10-11 "
                     "(range 5-2 is reversed)");
        expect_error("[Daemon]\nDefaultPolicy=pack\n",
                     "vcpuspreadd.conf:2: DefaultPolicy=pack: expected spread, spread-cores, ignore or auto");
        expect_error("[Daemon]\nMovesPerInterval=0\n",
                     "vcpuspreadd.conf:2: MovesPerInterval=0: expected a number of moves from 1 to 1000000, "
                     "or infinity");
        expect_error("[Daemon]\nMovesPerInterval=-3\n",
                     "vcpuspreadd.conf:2: MovesPerInterval=-3: expected a number of moves from 1 to 1000000, "
                     "or infinity");
        expect_error("[Daemon]\nMovesPerInterval=4.5\n",
                     "vcpuspreadd.conf:2: MovesPerInterval=4.5: expected a number of moves from 1 to 1000000, "
                     "or infinity");
        expect_error("[Daemon]\nHysteresis=-0.1\n",
                     "vcpuspreadd.conf:2: Hysteresis=-0.1: expected a share of one CPU from 0 to 1, "
                     "such as 0.1 or 10%");
        expect_error("[Daemon]\nHysteresis=1.5\n",
                     "vcpuspreadd.conf:2: Hysteresis=1.5: expected a share of one CPU from 0 to 1, "
                     "such as 0.1 or 10%");
        expect_error("[Daemon]\nHysteresis=nan\n",
                     "vcpuspreadd.conf:2: Hysteresis=nan: expected a share of one CPU from 0 to 1, "
                     "such as 0.1 or 10%");
        expect_error("[Daemon]\nLaneWidth=0\n",
                     "vcpuspreadd.conf:2: LaneWidth=0: expected a number of CPUs from 1 to 8192, or auto");
        expect_error("[Daemon]\nLaneWidth=wide\n",
                     "vcpuspreadd.conf:2: LaneWidth=wide: expected a number of CPUs from 1 to 8192, or auto");
        expect_error("[Daemon]\nLoadWindowSec=forever\n",
                     "vcpuspreadd.conf:2: LoadWindowSec=forever: expected a duration from 0 to 1h, "
                     "such as 500ms, 2s or 1min 30s");
        expect_error("[Daemon]\nMinDwellSec=2d\n",
                     "vcpuspreadd.conf:2: MinDwellSec=2d: expected a duration from 0 to 1d, "
                     "such as 500ms, 2s or 1min 30s");
        expect_error("[Daemon]\nStarvationWaitSec=1s\n",
                     "vcpuspreadd.conf:2: StarvationWaitSec=1s: expected a wait per second below 1s, "
                     "such as 100ms, or 0 to disable");
        expect_error("[Daemon]\nTaskDelayAccounting=maybe\n",
                     "vcpuspreadd.conf:2: TaskDelayAccounting=maybe: expected yes or no");
        expect_error("[Daemon]\nControlSocket=run/ctl.sock\n",
                     "vcpuspreadd.conf:2: ControlSocket=run/ctl.sock: expected an absolute file name "
                     "of at most 107 bytes");
        char longpath[200] = "[Daemon]\nControlSocket=/";
        memset(longpath + strlen(longpath), 'x', 107);
        expect_error(longpath,
                     "vcpuspreadd.conf:2: ControlSocket=/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx: expected an absolute file name "
                     "of at most 107 bytes");
        expect_error("[Daemon]\nControlSocketGroup=lib virt\n",
                     "vcpuspreadd.conf:2: ControlSocketGroup=lib virt: expected a group name of letters, "
                     "digits, '.', '_' and '-' (at most 32)");
        expect_error("[Daemon]\nLogLevel=verbose\n",
                     "vcpuspreadd.conf:2: LogLevel=verbose: expected debug, info, notice, warning or err");
        expect_error("[Domain]\nName=x\nPolicy=sprad\n",
                     "vcpuspreadd.conf:3: Policy=sprad: expected spread, spread-cores, ignore or auto");
        expect_error("[Domain]\nName=x\nCPUs=0-3,,5\n",
                     "vcpuspreadd.conf:3: CPUs=0-3,,5: expected a CPU list such as 0-3,8,10-11 "
                     "(expected a CPU number at \",5\")");
        expect_error("[Domain]\nUUID=0b7d4a3e-5f1c-4c2a-9e8b\n",
                     "vcpuspreadd.conf:2: UUID=0b7d4a3e-5f1c-4c2a-9e8b: expected a UUID such as "
                     "0b7d4a3e-5f1c-4c2a-9e8b-3f6d2a1c0e9f");
        expect_error("[Domain]\nUUID=0b7d4a3e5-f1c-4c2a-9e8b-3f6d2a1c0e9f\n",
                     "vcpuspreadd.conf:2: UUID=0b7d4a3e5-f1c-4c2a-9e8b-3f6d2a1c0e9f: expected a UUID such as "
                     "0b7d4a3e-5f1c-4c2a-9e8b-3f6d2a1c0e9f");
        expect_error("[Domain]\nName=x\nOverride=always\n",
                     "vcpuspreadd.conf:3: Override=always: expected yes or no");

        /* The example of vcpuspreadd.conf(5), at line 14, with the parts split out. */
        struct config c;
        struct config_error e;
        int r = parse(&c, "\n\n\n\n\n\n\n\n\n\n\n[Domain]\nName=db\nPolicy=sprad\n", &e);
        CHECK(r == -EINVAL, "accepted");
        CHECK(strcmp(e.text, "vcpuspreadd.conf:14: Policy=sprad: expected spread, spread-cores, ignore or auto") == 0,
              "%s", e.text);
        CHECK(strcmp(e.file, "vcpuspreadd.conf") == 0 && e.line == 14 &&
              strcmp(e.message, "Policy=sprad: expected spread, spread-cores, ignore or auto") == 0,
              "parts: %s / %u / %s", e.file, e.line, e.message);
        config_done(&c);
}

static void test_structure_errors(void)
{
        expect_error("[Daemon]\nFoo=bar\n",
                     "vcpuspreadd.conf:2: Foo=bar: unknown key in [Daemon], see vcpuspreadd.conf(5)");
        expect_error("[Daemon]\nSampleInterval=2s\n",
                     "vcpuspreadd.conf:2: SampleInterval=2s: unknown key in [Daemon], did you mean SampleIntervalSec=?");
        expect_error("[Daemon]\nconnect=qemu:///system\n",
                     "vcpuspreadd.conf:2: connect=qemu:///system: unknown key in [Daemon], did you mean Connect=?");
        expect_error("[Domain]\nName=x\nFoo=bar\n",
                     "vcpuspreadd.conf:3: Foo=bar: unknown key in [Domain], expected Name, UUID, Policy, CPUs or Override");
        expect_error("[Domain]\nName=x\nPolcy=spread\n",
                     "vcpuspreadd.conf:3: Polcy=spread: unknown key in [Domain], did you mean Policy=?");
        expect_error("[Daemon]\nPolicy=ignore\n",
                     "vcpuspreadd.conf:2: Policy=ignore: not a [Daemon] key, it belongs in [Domain]");
        expect_error("[Domain]\nName=x\nReservedCPUs=0\n",
                     "vcpuspreadd.conf:3: ReservedCPUs=0: not a [Domain] key, it belongs in [Daemon]");
        expect_error("[Deamon]\n", "vcpuspreadd.conf:1: [Deamon]: unknown section, expected [Daemon] or [Domain]");
        expect_error("[daemon]\n", "vcpuspreadd.conf:1: [daemon]: unknown section, expected [Daemon] or [Domain]");
        expect_error("\n[Daemon\n", "vcpuspreadd.conf:2: \"[Daemon\": expected a section header such as [Daemon]");
        expect_error("Connect=qemu:///system\n",
                     "vcpuspreadd.conf:1: Connect=qemu:///system: setting outside a section, "
                     "expected [Daemon] or [Domain] before it");
        expect_error("[Daemon]\nConnect qemu:///system\n",
                     "vcpuspreadd.conf:2: \"Connect qemu:///system\": expected Key=value, a [Section] header or a comment");
        expect_error("[Daemon]\n=x\n",
                     "vcpuspreadd.conf:2: \"=x\": expected Key=value, a [Section] header or a comment");
        /* A [Domain] without match keys, at the end of the text, before another
         * section, and after its only match key was reset. */
        expect_error("[Daemon]\n[Domain]\nPolicy=ignore\n",
                     "vcpuspreadd.conf:2: [Domain]: expected Name= or UUID= in this section");
        expect_error("[Domain]\nPolicy=ignore\n[Daemon]\n",
                     "vcpuspreadd.conf:1: [Domain]: expected Name= or UUID= in this section");
        expect_error("[Domain]\nName=a\n\n[Domain]\nName=b\nName=\n",
                     "vcpuspreadd.conf:4: [Domain]: expected Name= or UUID= in this section");
}

static void test_matching(void)
{
        struct config c;
        struct config_error e;
        const struct config_domain *d;
        int r = parse(&c,
                      "[Daemon]\nDefaultPolicy=spread-cores\n"
                      "[Domain]\nName=db-[0-9]*\nPolicy=ignore\n"                       /* 0 */
                      "[Domain]\nUUID=AAAAAAAA-bbbb-cccc-dddd-eeeeeeeeeeee\nCPUs=1\n"   /* 1 */
                      "[Domain]\nName=web?\nUUID=11111111-2222-3333-4444-555555555555\n"  /* 2 */
                      "[Domain]\nName=db-*\nPolicy=spread\n"                            /* 3 */
                      "[Domain]\nName=*\nOverride=yes\n",                               /* 4 */
                      &e);

        CHECK(r == 0 && c.n_domains == 5, "parse: %s", e.text);
        if (r < 0 || c.n_domains != 5) {
                config_done(&c);
                return;
        }
        d = config_match_domain(&c, "db-1", NULL);
        CHECK(d == &c.domains[0], "db-1: glob with a bracket expression, first match wins");
        CHECK(config_domain_policy(&c, d) == POLICY_IGNORE, "db-1 policy");
        d = config_match_domain(&c, "db-x", NULL);
        CHECK(d == &c.domains[3], "db-x falls through to db-*");
        d = config_match_domain(&c, "anything", "aaaaaaaa-BBBB-cccc-dddd-eeeeeeeeeeee");
        CHECK(d == &c.domains[1], "UUID matches case-insensitively");
        d = config_match_domain(&c, NULL, "aaaaaaaabbbbccccddddeeeeeeeeeeee");
        CHECK(d == &c.domains[1], "UUID without dashes, name unknown");
        d = config_match_domain(&c, "web1", "11111111-2222-3333-4444-555555555555");
        CHECK(d == &c.domains[2], "Name= and UUID= both match");
        d = config_match_domain(&c, "web1", "11111111-2222-3333-4444-000000000000");
        CHECK(d == &c.domains[4], "Name= matches but UUID= not: next section");
        d = config_match_domain(&c, "web12", "11111111-2222-3333-4444-555555555555");
        CHECK(d == &c.domains[4], "? matches one character only");
        CHECK(config_domain_policy(&c, d) == POLICY_SPREAD_CORES && d->override,
              "unset Policy= inherits DefaultPolicy=");
        CHECK(config_match_domain(&c, NULL, NULL) == NULL, "nothing known: a Name= section cannot match");
        CHECK(config_domain_policy(&c, NULL) == POLICY_SPREAD_CORES, "no section: DefaultPolicy=");
        config_done(&c);

        /* A later text's sections come before an earlier one's. */
        CHECK(parse(&c, "[Domain]\nName=*\nPolicy=spread\n", &e) == 0, "first text");
        CHECK(config_parse_string(&c, "[Domain]\nName=db\nPolicy=ignore\n[Domain]\nName=d*\nCPUs=0\n",
                                  "50-db.conf", &e) == 0, "second text: %s", e.text);
        CHECK(c.n_domains == 3 && strcmp(c.domains[0].name, "db") == 0 && strcmp(c.domains[1].name, "d*") == 0 &&
              strcmp(c.domains[2].name, "*") == 0, "order: later text first, in-text order kept");
        d = config_match_domain(&c, "db", NULL);
        CHECK(d && config_domain_policy(&c, d) == POLICY_IGNORE && strcmp(d->section.file, "50-db.conf") == 0,
              "drop-in section wins");
        config_done(&c);
}

/* ---- files -------------------------------------------------------------- */

static char tmpdir[PATH_MAX];

static void write_file(const char *rel, const char *text)
{
        char path[PATH_MAX * 2];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
        f = fopen(path, "w");
        if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
                perror(path);
                abort();
        }
}

static char *tmp_path(const char *rel)
{
        char *p = NULL;
        if (asprintf(&p, "%s/%s", tmpdir, rel) < 0)
                abort();
        return p;
}

static void test_files(void)
{
        struct config c, untouched;
        struct config_error e = { 0 };
        _cleanup_free_ char *main_path = tmp_path("vcpuspreadd.conf"), *dir = tmp_path("vcpuspreadd.conf.d");
        _cleanup_free_ char *missing = tmp_path("nothing/vcpuspreadd.conf"), *other = tmp_path("other.d");
        _cleanup_free_ char *bad = tmp_path("vcpuspreadd.conf.d/30-bad.conf");
        int r;

        /* Missing main file and no drop-ins: the built-in defaults. */
        r = config_load(missing, NULL, &c, &e);
        CHECK(r == 0, "missing main file: %s", e.text);
        if (r == 0) {
                CHECK(c.n_files == 0 && c.moves_per_interval == 4 && c.n_domains == 0, "defaults");
                config_done(&c);
        }

        CHECK(mkdir(dir, 0755) == 0, "mkdir %s", dir);
        write_file("vcpuspreadd.conf",
                   "[Daemon]\nMovesPerInterval=1\nLogLevel=warning\nHysteresis=0.5\n"
                   "[Domain]\nName=*\nPolicy=spread\n");
        /* Created in neither lexical order nor its reverse, so that a
         * directory returning entries by creation time cannot hide a missing sort. */
        write_file("vcpuspreadd.conf.d/10-a.conf", "[Daemon]\nMovesPerInterval=2\nLogLevel=debug\n"
                                                   "[Domain]\nName=a*\n");
        write_file("vcpuspreadd.conf.d/20-b.conf", "[Daemon]\nMovesPerInterval=3\n[Domain]\nName=b*\n");
        write_file("vcpuspreadd.conf.d/05-z.conf", "[Daemon]\nMovesPerInterval=99\nLaneWidth=3\n");
        /* Not drop-ins: wrong suffix, hidden, a directory. */
        write_file("vcpuspreadd.conf.d/99-x.conf.orig", "[Daemon]\nMovesPerInterval=100\n");
        write_file("vcpuspreadd.conf.d/.99-hidden.conf", "[Daemon]\nMovesPerInterval=101\n");
        write_file("vcpuspreadd.conf.d/README", "garbage\n");
        _cleanup_free_ char *subdir = tmp_path("vcpuspreadd.conf.d/98-dir.conf");
        CHECK(mkdir(subdir, 0755) == 0, "mkdir");

        r = config_load(main_path, NULL, &c, &e);
        CHECK(r == 0, "load: %s", e.text);
        if (r == 0) {
                CHECK(c.moves_per_interval == 3, "20-b.conf read last: %u", c.moves_per_interval);
                CHECK(c.log_level == LOG_DEBUG, "10-a.conf overrides the main file");
                CHECK(c.lane_width == 3, "05-z.conf");
                CHECK(c.hysteresis == 0.5, "main file setting nobody overrides");
                CHECK(c.n_files == 4, "files read: %zu", c.n_files);
                if (c.n_files == 4) {
                        CHECK(strcmp(c.files[0], main_path) == 0, "files[0] %s", c.files[0]);
                        CHECK(strstr(c.files[1], "/05-z.conf") && strstr(c.files[2], "/10-a.conf") &&
                              strstr(c.files[3], "/20-b.conf"), "lexical order");
                }
                CHECK(c.n_domains == 3 && strcmp(c.domains[0].name, "b*") == 0 &&
                      strcmp(c.domains[1].name, "a*") == 0 && strcmp(c.domains[2].name, "*") == 0,
                      "domains: later files first");
                config_done(&c);
        }

        /* An explicit drop-in directory replaces the default one. */
        CHECK(mkdir(other, 0755) == 0, "mkdir");
        write_file("other.d/1.conf", "[Daemon]\nMovesPerInterval=6\n");
        r = config_load(main_path, other, &c, &e);
        CHECK(r == 0 && c.moves_per_interval == 6 && c.lane_width == 0 && c.n_files == 2,
              "explicit drop-in dir: %s", e.text);
        if (r == 0)
                config_done(&c);

        /* Missing main file, drop-ins next to where it would be still apply. */
        _cleanup_free_ char *ghost = tmp_path("ghost.conf");
        r = config_load(ghost, dir, &c, &e);
        CHECK(r == 0 && c.moves_per_interval == 3 && c.n_files == 3, "drop-ins without a main file");
        if (r == 0)
                config_done(&c);

        /* An error in a drop-in names the drop-in; the output is untouched. */
        write_file("vcpuspreadd.conf.d/30-bad.conf", "[Daemon]\n\nSampleIntervalSec=fast\n");
        memset(&untouched, 0xa5, sizeof(untouched));
        memset(&c, 0xa5, sizeof(c));
        r = config_load(main_path, NULL, &c, &e);
        CHECK(r == -EINVAL, "bad drop-in accepted");
        char want[PATH_MAX * 2];
        snprintf(want, sizeof(want), "%s:3: SampleIntervalSec=fast: expected a duration from 10ms to 1h, "
                 "such as 500ms, 2s or 1min 30s", bad);
        CHECK(strcmp(e.text, want) == 0, "\n  got:  %s\n  want: %s", e.text, want);
        CHECK(strcmp(e.file, bad) == 0 && e.line == 3, "file/line: %s %u", e.file, e.line);
        CHECK(memcmp(&c, &untouched, sizeof(c)) == 0, "output changed on failure");
        unlink(bad);

        /* A main file that cannot be read is an error, not defaults. */
        r = config_load(dir, NULL, &c, &e);
        snprintf(want, sizeof(want), "%s: cannot read: Is a directory", dir);
        CHECK(r == -EISDIR && strcmp(e.text, want) == 0 && e.line == 0, "r=%d %s", r, e.text);

        write_file("nul.conf", "[Daemon]\n");
        {
                _cleanup_free_ char *p = tmp_path("nul.conf");
                FILE *f = fopen(p, "a");
                fputc('\0', f);
                fclose(f);
                r = config_load(p, other, &c, &e);
                snprintf(want, sizeof(want), "%s: contains a NUL byte, not a text file", p);
                CHECK(r == -EINVAL && strcmp(e.text, want) == 0, "NUL: %s", e.text);
        }
}

/* ---- host check --------------------------------------------------------- */

static void test_check_cpus(void)
{
        struct config c;
        struct config_error e;
        struct config_warnings w = { 0 };
        _cleanup_bitmap_ hwloc_bitmap_t host = cpus("0-7");
        int r;

        r = parse(&c, "[Daemon]\nReservedCPUs=0,9-10\n"
                      "[Domain]\nName=a\nCPUs=1-3\n"
                      "[Domain]\nName=b\nCPUs=0-1,6-12\n"
                      "[Domain]\nName=c\n", &e);
        CHECK(r == 0, "parse: %s", e.text);
        r = config_check_cpus(&c, host, &w, &e);
        CHECK(r == 0, "check: %s", e.text);
        CHECK(w.n == 2, "warnings: %zu", w.n);
        if (w.n == 2) {
                CHECK(strcmp(w.lines[0], "vcpuspreadd.conf:2: ReservedCPUs=0,9-10: CPUs 9-10 are not on this host "
                                         "(host CPUs: 0-7)") == 0, "%s", w.lines[0]);
                CHECK(strcmp(w.lines[1], "vcpuspreadd.conf:8: CPUs=0-1,6-12: CPUs 0,8-12 are not usable and "
                                         "left out (usable CPUs: 1-7)") == 0, "%s", w.lines[1]);
        }
        config_warnings_done(&w);
        config_done(&c);

        /* One CPU: singular. */
        r = parse(&c, "[Daemon]\nReservedCPUs=8\n[Domain]\nName=a\nCPUs=6-7\n", &e);
        CHECK(r == 0, "parse: %s", e.text);
        _cleanup_bitmap_ hwloc_bitmap_t small = cpus("0-6");
        r = config_check_cpus(&c, small, &w, &e);
        CHECK(r == 0 && w.n == 2, "check: %d %zu %s", r, w.n, e.text);
        if (w.n == 2) {
                CHECK(strcmp(w.lines[0], "vcpuspreadd.conf:2: ReservedCPUs=8: CPU 8 is not on this host "
                                         "(host CPUs: 0-6)") == 0, "%s", w.lines[0]);
                CHECK(strcmp(w.lines[1], "vcpuspreadd.conf:5: CPUs=6-7: CPU 7 is not usable and left out "
                                         "(usable CPUs: 0-6)") == 0, "%s", w.lines[1]);
        }
        config_warnings_done(&w);
        config_done(&c);

        r = parse(&c, "[Domain]\nName=a\nCPUs=0\n[Domain]\nName=b\n\nCPUs=8-15\n", &e);
        CHECK(r == 0, "parse");
        r = config_check_cpus(&c, host, &w, &e);
        CHECK(r == -EINVAL, "guest with no usable CPU accepted");
        CHECK(strcmp(e.text, "vcpuspreadd.conf:7: CPUs=8-15: none of these CPUs is usable, the guest would "
                             "have none (usable CPUs: 0-7)") == 0, "%s", e.text);
        config_warnings_done(&w);
        config_done(&c);

        /* Reserving a CPU a guest asked for alone leaves it none. */
        r = parse(&c, "[Daemon]\nReservedCPUs=0-1\n[Domain]\nUUID=0b7d4a3e5f1c4c2a9e8b3f6d2a1c0e9f\nCPUs=1\n", &e);
        r = config_check_cpus(&c, host, &w, &e);
        CHECK(r == -EINVAL && strcmp(e.text, "vcpuspreadd.conf:5: CPUs=1: none of these CPUs is usable, the guest "
                                             "would have none (usable CPUs: 2-7)") == 0, "%s", e.text);
        config_warnings_done(&w);
        config_done(&c);

        r = parse(&c, "[Daemon]\nReservedCPUs=0-7\n", &e);
        r = config_check_cpus(&c, host, &w, &e);
        CHECK(r == -EINVAL && strcmp(e.text, "vcpuspreadd.conf:2: ReservedCPUs=0-7: leaves no CPU for guests "
                                             "(host CPUs: 0-7)") == 0, "%s", e.text);
        CHECK(w.n == 0, "no warnings");
        config_warnings_done(&w);
        config_done(&c);

        CHECK(config_init(&c) == 0, "init");
        CHECK(config_check_cpus(&c, host, &w, &e) == 0 && w.n == 0, "defaults are clean");
        config_done(&c);
}

/* ---- printing ----------------------------------------------------------- */

/* The text without comment lines (which name files and lines). */
static char *strip_comments(const char *text)
{
        char *out = malloc(strlen(text) + 1), *o = out;

        for (const char *s = text; *s;) {
                size_t len = strcspn(s, "\n") + (s[strcspn(s, "\n")] == '\n');
                if (s[0] != '#') {
                        memcpy(o, s, len);
                        o += len;
                }
                s += len;
        }
        *o = '\0';
        return out;
}

static void test_round_trip(void)
{
        struct config a, b;
        struct config_error e;
        int r = parse(&a,
                      "[Daemon]\nConnect=test:///default\nSampleIntervalSec=1.25s\nReservedCPUs=3,0-1\n"
                      "DefaultPolicy=ignore\nMovesPerInterval=infinity\nHysteresis=0.3\nLaneWidth=4\n"
                      "LoadWindowSec=1min 30s\nMinDwellSec=0\nStarvationWaitSec=999ms\nTaskDelayAccounting=1\n"
                      "ControlSocket=/tmp/s\nControlSocketGroup=wheel\nLogLevel=notice\n"
                      "[Domain]\nName=a b [x]*\nPolicy=spread-cores\nCPUs=2,4-6\nOverride=on\n"
                      "[Domain]\nUUID=0B7D4A3E5F1C4C2A9E8B3F6D2A1C0E9F\n"
                      "[Domain]\nName=z#1\nUUID=11111111-2222-3333-4444-555555555555\nPolicy=ignore\n",
                      &e);
        CHECK(r == 0, "parse: %s", e.text);
        _cleanup_free_ char *first = config_format(&a);
        CHECK(first != NULL, "format");
        if (!first) {
                config_done(&a);
                return;
        }
        r = parse(&b, first, &e);
        CHECK(r == 0, "printed text does not parse: %s\n%s", e.text, first);
        _cleanup_free_ char *second = config_format(&b);
        _cleanup_free_ char *s1 = strip_comments(first), *s2 = strip_comments(second);
        CHECK(strcmp(s1, s2) == 0, "round trip differs:\n%s\n---\n%s", s1, s2);
        CHECK(strstr(first, "\nSampleIntervalSec=1s 250ms\n") && strstr(first, "\nReservedCPUs=0-1,3\n") &&
              strstr(first, "\nMovesPerInterval=infinity\n") && strstr(first, "\nLoadWindowSec=1min 30s\n") &&
              strstr(first, "\nUUID=0b7d4a3e-5f1c-4c2a-9e8b-3f6d2a1c0e9f\n") &&
              strstr(first, "\n# Policy= not set: DefaultPolicy=ignore applies\n") &&
              strstr(first, "\nName=z#1\n"), "printed values:\n%s", first);
        /* Field by field, since both prints could share a bug. */
        CHECK(b.sample_interval_usec == 1250000 && b.hysteresis == 0.3 && b.lane_width == 4 &&
              b.load_window_usec == 90 * USEC_PER_SEC && b.starvation_wait_usec == 999000 &&
              b.task_delay_accounting && b.log_level == LOG_NOTICE && b.moves_per_interval == 0 &&
              b.default_policy == POLICY_IGNORE && cpus_equal(b.reserved_cpus, "0-1,3") &&
              strcmp(b.connect, "test:///default") == 0 && strcmp(b.control_socket, "/tmp/s") == 0 &&
              strcmp(b.control_socket_group, "wheel") == 0, "daemon fields after round trip");
        CHECK(b.n_domains == 3 && strcmp(b.domains[0].name, "a b [x]*") == 0 && b.domains[0].override &&
              b.domains[0].policy == POLICY_SPREAD_CORES && cpus_equal(b.domains[0].cpus, "2,4-6") &&
              !b.domains[1].name && !b.domains[1].policy_set && !b.domains[1].cpus &&
              strcmp(b.domains[2].uuid, "11111111-2222-3333-4444-555555555555") == 0,
              "domain fields after round trip");
        config_done(&a);
        config_done(&b);

        /* Every hysteresis prints back exactly. */
        for (int i = 0; i <= 1000; i++) {
                char text[64];
                snprintf(text, sizeof(text), "[Daemon]\nHysteresis=%d.%03d\n", i / 1000, i % 1000);
                r = parse(&a, text, &e);
                _cleanup_free_ char *t = config_format(&a);
                double h = a.hysteresis;
                config_done(&a);
                r = r < 0 ? r : parse(&b, t, &e);
                CHECK(r == 0 && b.hysteresis == h, "Hysteresis %d/1000 does not round-trip", i);
                config_done(&b);
        }
}

/* ---- the shipped file and man page -------------------------------------- */

static char *slurp(const char *path)
{
        char *text = NULL;
        return read_file_full(path, 1 << 20, &text, NULL) < 0 ? NULL : text;
}

/* Lines "#Key=..." and "#[Section]" are commented-out settings; "# text" is prose. */
static char *uncomment(const char *text)
{
        char *out = malloc(strlen(text) + 1), *o = out;

        for (const char *s = text; *s; s++) {
                bool line_start = s == text || s[-1] == '\n';
                if (line_start && s[0] == '#' && (isupper((unsigned char)s[1]) || s[1] == '['))
                        continue;
                *o++ = *s;
        }
        *o = '\0';
        return out;
}

static void test_shipped(const char *conf_path, const char *man_path)
{
        _cleanup_free_ char *conf = slurp(conf_path), *man = slurp(man_path);
        _cleanup_free_ char *active = NULL, *defaults_text = NULL;
        struct config defaults, shipped, plain;
        struct config_error e;
        int r;

        CHECK(conf != NULL, "cannot read %s", conf_path);
        CHECK(man != NULL, "cannot read %s", man_path);
        if (!conf || !man)
                return;

        /* As shipped, the file changes nothing. */
        r = parse(&plain, conf, &e);
        CHECK(r == 0 && plain.n_domains == 0, "shipped file: %s", e.text);
        config_done(&plain);

        /* Uncommented, it parses, and its [Daemon] values are the defaults. */
        active = uncomment(conf);
        r = parse(&shipped, active, &e);
        CHECK(r == 0, "uncommented shipped file: %s", e.text);
        CHECK(shipped.n_domains == 2, "the [Domain] examples: %zu", shipped.n_domains);
        CHECK(config_init(&defaults) == 0, "init");
        _cleanup_free_ char *a = config_format(&defaults);
        struct config shipped_daemon = shipped;
        shipped_daemon.n_domains = 0;
        _cleanup_free_ char *b = config_format(&shipped_daemon);
        CHECK(a && b && strcmp(a, b) == 0, "shipped values differ from defaults:\n%s---\n%s", b, a);

        /* Every key appears in both, commented out at its default in the file. */
        for (const char *s = a; s && *s;) {
                size_t len = strcspn(s, "\n");
                char line[256], pattern[300];
                char *eq;

                snprintf(line, sizeof(line), "%.*s", (int)len, s);
                s += len + (s[len] == '\n');
                eq = strchr(line, '=');
                if (line[0] == '#' || line[0] == '[' || !eq)
                        continue;
                snprintf(pattern, sizeof(pattern), "\n#%s\n", line);
                CHECK(strstr(conf, pattern), "%s: no line '#%s'", conf_path, line);
                *eq = '\0';
                snprintf(pattern, sizeof(pattern), "\n.BI %s=", line);
                CHECK(strstr(man, pattern), "%s: no '.BI %s=' entry", man_path, line);
        }
        static const char *const domain_keys[] = { "Name", "UUID", "Policy", "CPUs", "Override" };
        for (size_t i = 0; i < ELEMENTSOF(domain_keys); i++) {
                char pattern[64];
                snprintf(pattern, sizeof(pattern), "\n.BI %s=", domain_keys[i]);
                CHECK(strstr(man, pattern), "%s: no '.BI %s=' entry", man_path, domain_keys[i]);
        }
        config_done(&defaults);
        config_done(&shipped);
}

int main(int argc, char **argv)
{
        char template[] = "/tmp/test-config.XXXXXX";

        if (!mkdtemp(template)) {
                perror("mkdtemp");
                return 1;
        }
        snprintf(tmpdir, sizeof(tmpdir), "%s", template);

        test_defaults();
        test_every_key();
        test_later_wins_and_reset();
        test_durations();
        test_booleans();
        test_value_errors();
        test_structure_errors();
        test_matching();
        test_files();
        test_check_cpus();
        test_round_trip();
        if (argc >= 3)
                test_shipped(argv[1], argv[2]);
        else
                CHECK(false, "usage: %s CONF MANPAGE", argv[0]);

        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", tmpdir);
        return test_result();
}
