/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "load.h"
#include "tap.h"

/* The expected values below were computed by hand (or with a calculator:
 * 1 - e^-1 = 0.6321205588285577), not with the code under test. */
#define NEAR(a, b) (fabs((a) - (b)) < 1e-12)

static void test_alpha(void)
{
        CHECK(NEAR(ewma_alpha(1, 1), 0.6321205588285577), "%.17g", ewma_alpha(1, 1));
        CHECK(NEAR(ewma_alpha(0.5, 1), 0.3934693402873666), "%.17g", ewma_alpha(0.5, 1));
        CHECK(NEAR(ewma_alpha(2, 1), 0.8646647167633873), "%.17g", ewma_alpha(2, 1));
        CHECK(NEAR(ewma_alpha(0.1, 2), 0.04877057549928599), "%.17g", ewma_alpha(0.1, 2));
        CHECK(ewma_alpha(0, 5) == 0, "no time, no weight");
        CHECK(ewma_alpha(-1, 5) == 0, "negative time, no weight");
        CHECK(ewma_alpha(1, 0) == 1, "window 0: no smoothing");
        CHECK(ewma_alpha(NAN, 1) == 0, "NaN interval ignored");
}

static void test_ewma(void)
{
        struct ewma e = {};

        ewma_add(&e, 0.75, 1, 10);
        CHECK(e.primed && e.value == 0.75, "first sample taken as is: %g", e.value);
        ewma_add(&e, 0.25, 0, 10);
        CHECK(e.value == 0.75, "zero interval changes nothing: %g", e.value);

        /* Irregular intervals: two half steps weigh what one whole step does. */
        struct ewma halves = { .value = 0, .primed = true }, whole = halves;
        ewma_add(&halves, 1, 0.5, 1);
        ewma_add(&halves, 1, 0.5, 1);
        ewma_add(&whole, 1, 1, 1);
        CHECK(NEAR(halves.value, 0.6321205588285577), "halves %.17g", halves.value);
        CHECK(NEAR(whole.value, 0.6321205588285577), "whole %.17g", whole.value);

        /* A long gap: the new value dominates. */
        struct ewma gap = { .value = 0, .primed = true };
        ewma_add(&gap, 1, 2, 1);
        CHECK(NEAR(gap.value, 0.8646647167633873), "gap %.17g", gap.value);
}

static void test_schedstat_parse(void)
{
        struct thread_counters c = { .when_ns = 42 };

        CHECK(schedstat_parse("1158346 0 1\n", &c) == 0, "real line");
        CHECK(c.cpu_ns == 1158346 && c.wait_ns == 0 && c.timeslices == 1,
              "%llu %llu %llu", (unsigned long long)c.cpu_ns, (unsigned long long)c.wait_ns,
              (unsigned long long)c.timeslices);
        CHECK(c.when_ns == 42, "when_ns left alone");

        CHECK(schedstat_parse("627483598 378130310 109", &c) == 0, "no newline");
        CHECK(c.cpu_ns == 627483598 && c.wait_ns == 378130310 && c.timeslices == 109, "values");

        CHECK(schedstat_parse("18446744073709551615 0 0\n", &c) == 0 && c.cpu_ns == UINT64_MAX, "max");
        CHECK(schedstat_parse("18446744073709551616 0 0\n", &c) == -EINVAL, "overflow rejected");
        CHECK(schedstat_parse("1 2\n", &c) == -EINVAL, "two fields rejected");
        CHECK(schedstat_parse("1 2 3 4\n", &c) == -EINVAL, "four fields rejected");
        CHECK(schedstat_parse("-1 2 3\n", &c) == -EINVAL, "sign rejected");
        CHECK(schedstat_parse("1 2 x\n", &c) == -EINVAL, "junk rejected");
        CHECK(schedstat_parse("", &c) == -EINVAL, "empty rejected");
}

#define SEC 1000000000ull
#define MS 1000000ull

static void test_thread_load(void)
{
        struct thread_load l = {};
        struct thread_counters c = { .cpu_ns = 5 * SEC, .wait_ns = 1 * SEC, .timeslices = 10, .when_ns = 1 * SEC };

        CHECK(thread_load_update(&l, &c, 1) == THREAD_LOAD_BASELINE, "first is baseline");
        CHECK(!l.util.primed, "no average from a baseline");

        /* 0.5 s: 250 ms CPU, 100 ms waiting. */
        c.when_ns += SEC / 2;
        c.cpu_ns += 250 * MS;
        c.wait_ns += 100 * MS;
        CHECK(thread_load_update(&l, &c, 1) == THREAD_LOAD_UPDATED, "updated");
        CHECK(l.last_dt_s == 0.5, "dt %g", l.last_dt_s);
        CHECK(l.last_util == 0.5, "util %g", l.last_util);
        CHECK(NEAR(l.last_wait, 0.2), "wait %g", l.last_wait);
        CHECK(l.last_wait_ms == 100, "wait ms %g", l.last_wait_ms);
        CHECK(l.util.value == 0.5 && NEAR(l.wait.value, 0.2), "first interval primes the averages");

        /* 1 s fully busy, no wait: util 0.5 + (1-e^-1)*0.5, wait 0.2*e^-1. */
        c.when_ns += SEC;
        c.cpu_ns += SEC;
        CHECK(thread_load_update(&l, &c, 1) == THREAD_LOAD_UPDATED, "updated");
        CHECK(l.last_util == 1 && l.last_wait == 0 && l.last_wait_ms == 0, "busy interval");
        CHECK(NEAR(l.util.value, 0.8160602794142788), "util avg %.17g", l.util.value);
        CHECK(NEAR(l.wait.value, 0.07357588823428847), "wait avg %.17g", l.wait.value);

        /* Same instant again: ignored, nothing moves. */
        struct thread_load before = l;
        CHECK(thread_load_update(&l, &c, 1) == THREAD_LOAD_NO_TIME, "no time");
        CHECK(memcmp(&before, &l, sizeof(l)) == 0, "state unchanged");

        /* Counters slightly ahead of the clock (read jitter) clamp to 1;
         * wait ms is the raw amount. */
        c.when_ns += SEC;
        c.cpu_ns += 1200 * MS;
        c.wait_ns += 2000 * MS;
        CHECK(thread_load_update(&l, &c, 1) == THREAD_LOAD_UPDATED, "updated");
        CHECK(l.last_util == 1 && l.last_wait == 1, "clamped %g %g", l.last_util, l.last_wait);
        CHECK(l.last_wait_ms == 2000, "wait ms %g", l.last_wait_ms);

        /* The thread id now names a younger thread: counters go backwards. */
        double util_avg = l.util.value;
        c.when_ns += SEC;
        c.cpu_ns = 1 * MS;
        c.wait_ns = 0;
        CHECK(thread_load_update(&l, &c, 1) == THREAD_LOAD_RESET, "reset");
        CHECK(l.resets == 1, "resets %u", l.resets);
        CHECK(l.util.value == util_avg, "average kept across a reset");
        CHECK(l.last_util == 1, "no interval computed across a reset");

        /* Only wait going backwards is a reset too. */
        struct thread_load w = {};
        struct thread_counters d = { .cpu_ns = 10, .wait_ns = 10, .when_ns = 1 };
        thread_load_update(&w, &d, 1);
        d.cpu_ns = 20;
        d.wait_ns = 5;
        d.when_ns = 2;
        CHECK(thread_load_update(&w, &d, 1) == THREAD_LOAD_RESET, "wait backwards is a reset");

        /* From the new baseline: 1 s with 250 ms CPU. */
        c.when_ns += SEC;
        c.cpu_ns += 250 * MS;
        CHECK(thread_load_update(&l, &c, 1) == THREAD_LOAD_UPDATED, "updated after reset");
        CHECK(l.last_util == 0.25, "util %g", l.last_util);

        /* Window 0: the average is the last interval. */
        struct thread_load raw = {};
        struct thread_counters r = { .when_ns = SEC };
        thread_load_update(&raw, &r, 0);
        r.when_ns += SEC;
        r.cpu_ns += 300 * MS;
        thread_load_update(&raw, &r, 0);
        r.when_ns += SEC;
        r.cpu_ns += 700 * MS;
        thread_load_update(&raw, &r, 0);
        CHECK(NEAR(raw.util.value, 0.7), "window 0 util avg %.17g", raw.util.value);
}

/* Trimmed from this host's /proc/stat (the intr line is much longer). */
static const char stat_before[] =
        "cpu  19117 0 15703 94328 1039 0 570 0 0 0\n"
        "cpu0 6820 0 5624 52549 130 0 156 0 0 0\n"
        "cpu1 12297 0 10078 41779 909 0 414 0 0 0\n"
        "intr 459949 0 0 0 0 0 0 0 0 0 0 0 0\n"
        "ctxt 840462\n"
        "btime 1764169000\n"
        "processes 5120\n"
        "procs_running 1\n"
        "procs_blocked 0\n"
        "softirq 1 2 3 4 5 6 7 8 9 10 11\n";

/* One second later.  cpu0: 30 user + 5 system + 3 irq + 2 softirq busy,
 * 10 steal, 50 idle, iowait went backwards (the kernel lets it).  cpu1: 100
 * ticks of idle and iowait only; its guest ticks are part of user, not extra. */
static const char stat_after[] =
        "cpu  19157 0 15708 94428 1039 3 572 10 0 0\n"
        "cpu0 6850 0 5629 52599 120 3 158 10 0 0\n"
        "cpu1 12297 0 10078 41869 919 0 414 0 7 0\n"
        "intr 459999 0 0 0\n";

static void test_proc_stat_parse(void)
{
        struct host_cpu_counters c[4];
        size_t n = 0;

        CHECK(proc_stat_parse(stat_before, c, 4, &n) == 0, "parse");
        CHECK(n == 2, "n %zu", n);
        CHECK(c[0].cpu == 0 && c[0].user == 6820 && c[0].nice == 0 && c[0].system == 5624 &&
              c[0].idle == 52549 && c[0].iowait == 130 && c[0].irq == 0 && c[0].softirq == 156 &&
              c[0].steal == 0 && c[0].guest == 0 && c[0].guest_nice == 0, "cpu0 fields");
        CHECK(c[1].cpu == 1 && c[1].user == 12297 && c[1].idle == 41779 && c[1].softirq == 414,
              "cpu1 fields");

        /* Offline CPUs leave gaps; numbers are kept. */
        CHECK(proc_stat_parse("cpu 1 1 1 1\ncpu0 1 2 3 4 5 6 7 8 9 10\ncpu5 9 9 9 9 9 9 9 9\n",
                              c, 4, &n) == 0, "gaps");
        CHECK(n == 2 && c[0].cpu == 0 && c[1].cpu == 5, "cpu numbers %u %u", c[0].cpu, c[1].cpu);
        CHECK(c[0].guest == 9 && c[0].guest_nice == 10 && c[0].steal == 8, "all ten fields");
        CHECK(c[1].steal == 9 && c[1].guest == 0, "eight fields, guest missing");

        /* Linux 2.4 had four fields. */
        CHECK(proc_stat_parse("cpu0 1 2 3 4\n", c, 4, &n) == 0 && n == 1 && c[0].idle == 4 &&
              c[0].iowait == 0, "four fields");

        CHECK(proc_stat_parse(stat_before, c, 1, &n) == -ENOBUFS && n == 2, "too small: n %zu", n);
        CHECK(c[0].cpu == 0 && c[0].user == 6820, "the first entries are still filled");
        CHECK(proc_stat_parse("cpu0 1 2 3\n", c, 4, &n) == -EINVAL, "three fields rejected");
        CHECK(proc_stat_parse("cpu0 1 2 x 4\n", c, 4, &n) == -EINVAL, "junk rejected");
        CHECK(proc_stat_parse("cpu0 1 2 3 4 5 6 7 8 9 10 11\n", c, 4, &n) == -EINVAL, "eleven fields rejected");
        CHECK(proc_stat_parse("cpu0x 1 2 3 4\n", c, 4, &n) == -EINVAL, "bad cpu number rejected");
        CHECK(proc_stat_parse("intr 1 2\nctxt 3\n", c, 4, &n) == -EINVAL && n == 0, "no cpu lines");
        CHECK(proc_stat_parse("", c, 4, &n) == -EINVAL, "empty");
}

static void test_host_cpu_load(void)
{
        struct host_cpu_counters a[2], b[2];
        struct host_cpu_load l[2] = {};
        size_t n;

        CHECK(proc_stat_parse(stat_before, a, 2, &n) == 0, "before");
        CHECK(proc_stat_parse(stat_after, b, 2, &n) == 0, "after");

        CHECK(host_cpu_load_update(&l[0], &a[0], 1 * SEC, 1) == 1, "baseline");
        CHECK(host_cpu_load_update(&l[1], &a[1], 1 * SEC, 1) == 1, "baseline");

        CHECK(host_cpu_load_update(&l[0], &b[0], 2 * SEC, 1) == 0, "cpu0 updated");
        /* busy 40, steal 10, idle 50, iowait -10 -> 0: total 100 */
        CHECK(NEAR(l[0].last_busy, 0.4), "busy %.17g", l[0].last_busy);
        CHECK(NEAR(l[0].last_steal, 0.1), "steal %.17g", l[0].last_steal);
        CHECK(NEAR(l[0].busy.value, 0.4) && NEAR(l[0].steal.value, 0.1), "averages primed");

        CHECK(host_cpu_load_update(&l[1], &b[1], 2 * SEC, 1) == 0, "cpu1 updated");
        CHECK(l[1].last_busy == 0 && l[1].last_steal == 0, "idle cpu: %g %g", l[1].last_busy, l[1].last_steal);

        /* Second interval on cpu0, fully busy for 2 s: avg 0.4 + (1-e^-2)*0.6. */
        struct host_cpu_counters c0 = b[0];
        c0.user += 200;
        CHECK(host_cpu_load_update(&l[0], &c0, 4 * SEC, 1) == 0, "updated");
        CHECK(l[0].last_busy == 1 && l[0].last_steal == 0, "busy interval");
        CHECK(NEAR(l[0].busy.value, 0.4 + 0.8646647167633873 * 0.6), "avg %.17g", l[0].busy.value);

        /* No tick passed: not an interval, the next one covers both. */
        CHECK(host_cpu_load_update(&l[0], &c0, 5 * SEC, 1) == 1, "no tick");
        c0.idle += 100;
        CHECK(host_cpu_load_update(&l[0], &c0, 6 * SEC, 0) == 0, "updated");
        CHECK(l[0].last_busy == 0, "idle interval");
        CHECK(l[0].busy.value == 0, "window 0: the average is the interval: %g", l[0].busy.value);

        CHECK(host_cpu_load_update(&l[0], &b[1], 7 * SEC, 1) == -EINVAL, "another CPU's counters");
}

int main(void)
{
        test_alpha();
        test_ewma();
        test_schedstat_parse();
        test_thread_load();
        test_proc_stat_parse();
        test_host_cpu_load();
        return test_result();
}
