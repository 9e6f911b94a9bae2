/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daemon/kvm-stats.c against `virsh domstats --vcpu` text turned back into
 * the typed parameters virConnectGetAllDomainStats() returns (numbers as
 * ULLONG, state/current/maximum as INT, yes/no as BOOLEAN, as libvirt 9.0
 * sends them).
 *
 * The fixtures in fixtures/kvm-stats are HANDWRITTEN in that exact format:
 * this host has no hardware KVM (its kvm module is the shadow-paging
 * kvm_pvm, FACTS.md), so the KVM counters' values are made up, with the
 * counter names libvirt 9.0 printed for a `kvm` domain here
 * (FACTS.md, "Load").  domstats-kvm-later.txt is the same guest a second
 * later with known increments (and vCPU 1's halt_exits going backwards, as
 * after a replug); domstats-tcg.txt is a TCG guest, which has no KVM
 * counters.
 *
 * domstats-kvm-recorded*.txt and domstats-tcg-recorded.txt are RECORDED here
 * (2026-12-01, libvirt 9.0, `virsh domstats --vcpu` 5 s apart) from an
 * OS-less `kvm` domain on kvm_pvm, which is software, not hardware KVM, and
 * an OS-less TCG domain: real names, types and layout (98 parameters per
 * KVM vCPU), counters near zero since no guest OS runs.
 *
 * domstats-kvmfixture-{0,1}.txt are RECORDED, unedited, from the kvm domain
 * vst-kvmfixture-rec1 on this machine, 5.168408 s apart
 * (fixtures/kvm-stats/README): its SeaBIOS halts on vCPU 0, so halt exits
 * and halted time move.  They drive the rate tracker below.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvm-stats.h"
#include "tap.h"

static const char *fixtures;

#define SEC_NS 1000000000ULL

struct params {
        virTypedParameterPtr p;
        int n, max;
};

/* "  vcpu.0.halt_exits.sum=1794" lines of the first domain into typed params. */
static int load(const char *name, struct params *out)
{
        char path[512], line[256];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", fixtures, name);
        *out = (struct params) {};
        f = fopen(path, "r");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f)) {
                char *eq = strchr(line, '=');
                char *key = line;
                int r;

                while (*key == ' ')
                        key++;
                if (!eq || strncmp(key, "vcpu.", 5) != 0)
                        continue;
                *eq = '\0';
                char *val = eq + 1;
                val[strcspn(val, "\n")] = '\0';
                size_t klen = strlen(key);
                if (strcmp(val, "yes") == 0 || strcmp(val, "no") == 0)
                        r = virTypedParamsAddBoolean(&out->p, &out->n, &out->max, key, val[0] == 'y');
                else if ((klen > 6 && strcmp(key + klen - 6, ".state") == 0) || strcmp(key, "vcpu.current") == 0 ||
                         strcmp(key, "vcpu.maximum") == 0)
                        r = virTypedParamsAddInt(&out->p, &out->n, &out->max, key, atoi(val));
                else
                        r = virTypedParamsAddULLong(&out->p, &out->n, &out->max, key, strtoull(val, NULL, 10));
                if (r < 0) {
                        fclose(f);
                        return -EINVAL;
                }
        }
        fclose(f);
        return 0;
}

static void test_kvm(void)
{
        struct params a, b;
        struct kvm_vcpu_stats s[8], t[8];
        size_t n;

        CHECK(load("domstats-kvm.txt", &a) == 0, "fixture");
        CHECK(kvm_stats_parse(a.p, a.n, s, 8, &n) == 0, "parse");
        CHECK(n == 4, "vcpu.maximum=4 sizes the array: %zu", n);
        CHECK(kvm_vcpu_has_kvm_counters(&s[0]) && kvm_vcpu_has_kvm_counters(&s[1]), "KVM counters");
        CHECK(!kvm_vcpu_has(&s[2], KVM_STAT_TIME), "offline vCPU 2: nothing");
        CHECK(s[0].v[KVM_STAT_TIME] == 1410000000 && s[0].v[KVM_STAT_DELAY] == 8579642, "time, delay");
        CHECK(s[0].v[KVM_STAT_HALT_EXITS] == 1794 && s[0].v[KVM_STAT_HALT_WAIT_NS] == 2864230144ULL, "halt");
        CHECK(s[0].v[KVM_STAT_PREEMPTION_REPORTED] == 211 && s[0].v[KVM_STAT_PREEMPTION_OTHER] == 9, "preempt");
        CHECK(s[1].v[KVM_STAT_DIRECTED_YIELD_ATTEMPTED] == 5 &&
              s[1].v[KVM_STAT_DIRECTED_YIELD_SUCCESSFUL] == 4, "yield");
        CHECK(kvm_vcpu_has(&s[0], KVM_STAT_BLOCKING) && s[0].v[KVM_STAT_BLOCKING] == 1, "boolean yes");
        CHECK(kvm_vcpu_has(&s[0], KVM_STAT_GUEST_MODE) && s[0].v[KVM_STAT_GUEST_MODE] == 0, "boolean no");
        CHECK(s[0].v[KVM_STAT_STATE] == 1, "state");

        /* Too small an array: what fits is filled, the size is said. */
        CHECK(kvm_stats_parse(a.p, a.n, s, 1, &n) == -ENOBUFS && n == 4, "ENOBUFS, %zu", n);
        CHECK(s[0].v[KVM_STAT_HALT_EXITS] == 1794, "vCPU 0 still filled");

        CHECK(load("domstats-kvm-later.txt", &b) == 0, "later fixture");
        CHECK(kvm_stats_parse(a.p, a.n, s, 8, &n) == 0 && kvm_stats_parse(b.p, b.n, t, 8, &n) == 0, "both");
        struct kvm_vcpu_rates r;
        CHECK(kvm_vcpu_rates(&s[0], &t[0], 1.0, &r) == 0 && r.kvm, "rates");
        CHECK(r.halt_hz == 100 && r.preempt_hz == 20 && r.yield_hz == 0, "vCPU 0: %g %g %g", r.halt_hz,
              r.preempt_hz, r.yield_hz);
        CHECK(fabs(r.halt_wait_share - 0.5) < 1e-12, "halted half the second: %g", r.halt_wait_share);
        CHECK(kvm_vcpu_rates(&s[1], &t[1], 2.0, &r) == 0, "vCPU 1");
        CHECK(r.halt_hz == 0 && r.yield_hz == 20, "backwards counter counts 0; yield 40 in 2 s: %g %g",
              r.halt_hz, r.yield_hz);
        CHECK(kvm_vcpu_rates(&s[1], &t[1], 0, &r) == -EINVAL, "no time");
        virTypedParamsFree(a.p, a.n);
        virTypedParamsFree(b.p, b.n);
}

static void test_tcg(void)
{
        struct params a;
        struct kvm_vcpu_stats s[4];
        struct kvm_vcpu_rates r;
        size_t n;

        CHECK(load("domstats-tcg.txt", &a) == 0, "fixture");
        CHECK(kvm_stats_parse(a.p, a.n, s, 4, &n) == 0 && n == 2, "parse, %zu", n);
        CHECK(s[1].v[KVM_STAT_DELAY] == 2302177354ULL && kvm_vcpu_has(&s[1], KVM_STAT_TIME), "delay, time");
        CHECK(!kvm_vcpu_has_kvm_counters(&s[0]) && !kvm_vcpu_has(&s[0], KVM_STAT_HALT_EXITS), "TCG: no KVM counters");
        CHECK(kvm_vcpu_rates(&s[0], &s[0], 1, &r) == 0 && !r.kvm, "no rates");
        virTypedParamsFree(a.p, a.n);
}

static void test_odd_params(void)
{
        virTypedParameterPtr p = NULL;
        int n = 0, max = 0;
        struct kvm_vcpu_stats s[2];
        size_t m;

        virTypedParamsAddString(&p, &n, &max, "state.state", "x");
        virTypedParamsAddULLong(&p, &n, &max, "vcpu.0.unknown_counter.sum", 7);
        virTypedParamsAddULLong(&p, &n, &max, "vcpu.x.time", 7);
        virTypedParamsAddULLong(&p, &n, &max, "vcpu.0.time", 7);
        CHECK(kvm_stats_parse(p, n, s, 2, &m) == 0 && m == 1 && s[0].have == 1u << KVM_STAT_TIME,
              "unknown ignored: have %#x", s[0].have);
        virTypedParamsAddString(&p, &n, &max, "vcpu.1.time", "soon");
        CHECK(kvm_stats_parse(p, n, s, 2, &m) == -EINVAL, "a known counter that is not a number");
        struct kvm_vcpu_stats *all = s;
        CHECK(kvm_stats_parse_alloc(p, n, 16, &all, &m) == -EINVAL && !all && m == 0, "alloc: -EINVAL, nothing");
        virTypedParamsFree(p, n);
}

/* The allocating parser: sized by the record, bounded by its caller. */
static void test_parse_alloc(void)
{
        struct params a;
        struct kvm_vcpu_stats *s;
        size_t n;

        CHECK(load("domstats-kvm.txt", &a) == 0, "fixture");
        CHECK(kvm_stats_parse_alloc(a.p, a.n, 16384, &s, &n) == 0 && n == 4, "vcpu.maximum=4: %zu", n);
        CHECK(s[0].v[KVM_STAT_HALT_EXITS] == 1794 && s[1].v[KVM_STAT_HALT_EXITS] == 433 && s[3].have == 0,
              "filled; the offline ones empty");
        free(s);
        CHECK(kvm_stats_parse_alloc(a.p, a.n, 1, &s, &n) == 0 && n == 1 && s[0].v[KVM_STAT_HALT_EXITS] == 1794,
              "bounded to 1: %zu", n);
        free(s);
        CHECK(kvm_stats_parse_alloc(a.p, a.n, 0, &s, &n) == 0 && n == 0, "bounded to 0");
        free(s);
        virTypedParamsFree(a.p, a.n);

        /* More than 8 vCPUs: a second pass; an id past the bound is left out. */
        virTypedParameterPtr p = NULL;
        int np = 0, max = 0;
        virTypedParamsAddULLong(&p, &np, &max, "vcpu.11.halt_exits.sum", 5);
        virTypedParamsAddULLong(&p, &np, &max, "vcpu.11.preemption_reported.sum", 6);
        CHECK(kvm_stats_parse_alloc(p, np, 64, &s, &n) == 0 && n == 12 && kvm_vcpu_has_kvm_counters(&s[11]) &&
              s[11].v[KVM_STAT_HALT_EXITS] == 5, "vCPU 11: %zu entries", n);
        free(s);
        virTypedParamsAddULLong(&p, &np, &max, "vcpu.99999999999999999999.time", 1);    /* wraps strtoul */
        CHECK(kvm_stats_parse_alloc(p, np, 64, &s, &n) == 0 && n == 12, "an id past ULONG_MAX: ignored (%zu)", n);
        free(s);
        virTypedParamsAddULLong(&p, &np, &max, "vcpu.40000.time", 1);
        CHECK(kvm_stats_parse_alloc(p, np, 64, &s, &n) == 0 && n == 64 && s[11].v[KVM_STAT_HALT_EXITS] == 5,
              "an absurd id: bounded, the rest kept (%zu)", n);
        free(s);
        virTypedParamsFree(p, np);
}

static void test_recorded(void)
{
        struct params a, b, c;
        struct kvm_vcpu_stats s[4], t[4];
        struct kvm_vcpu_rates r;
        size_t n;

        CHECK(load("domstats-kvm-recorded.txt", &a) == 0, "recorded fixture");
        CHECK(load("domstats-kvm-recorded-later.txt", &b) == 0, "recorded fixture, 5 s later");
        CHECK(kvm_stats_parse(a.p, a.n, s, 4, &n) == 0 && n == 2, "recorded: parse, %zu", n);
        CHECK(kvm_vcpu_has_kvm_counters(&s[0]) && kvm_vcpu_has_kvm_counters(&s[1]), "recorded: KVM counters");
        /* Every counter the parser knows is in a real record. */
        for (int k = 0; k < _KVM_STAT_MAX; k++)
                CHECK(kvm_vcpu_has(&s[0], (enum kvm_stat)k), "recorded: %s", kvm_stat_name((enum kvm_stat)k));
        CHECK(s[0].v[KVM_STAT_TIME] == 1160000000 && s[0].v[KVM_STAT_DELAY] == 4088561870ULL &&
              s[1].v[KVM_STAT_HALT_EXITS] == 1 && s[0].v[KVM_STAT_PREEMPTION_OTHER] == 495, "recorded values");
        CHECK(s[0].v[KVM_STAT_BLOCKING] == 0 && s[0].v[KVM_STAT_GUEST_MODE] == 0, "recorded booleans");
        CHECK(kvm_stats_parse(b.p, b.n, t, 4, &n) == 0, "later");
        CHECK(kvm_vcpu_rates(&s[0], &t[0], 5, &r) == 0 && r.kvm && r.halt_hz == 0 && r.preempt_hz == 0,
              "recorded rates: an OS-less guest neither halts nor is preempted-reported");
        CHECK(t[0].v[KVM_STAT_TIME] > s[0].v[KVM_STAT_TIME], "time moved");

        CHECK(load("domstats-tcg-recorded.txt", &c) == 0, "recorded TCG fixture");
        CHECK(kvm_stats_parse(c.p, c.n, s, 4, &n) == 0 && n == 2, "recorded TCG: parse");
        CHECK(!kvm_vcpu_has_kvm_counters(&s[0]) && s[0].v[KVM_STAT_DELAY] == 308356744, "recorded TCG");
        virTypedParamsFree(a.p, a.n);
        virTypedParamsFree(b.p, b.n);
        virTypedParamsFree(c.p, c.n);
}

/* CLOCK_REALTIME of the two recorded readings (README), as the tracker's clock. */
#define FIX_T0 1796134396359672700ULL
#define FIX_T1 1796134401528082553ULL

static void test_kvmfixture(void)
{
        struct params a, b;
        struct kvm_vcpu_stats s[2], t[2];
        struct kvm_vcpu_rates r;
        size_t n;
        double dt = (double)(FIX_T1 - FIX_T0) / 1e9;

        CHECK(load("domstats-kvmfixture-0.txt", &a) == 0 && load("domstats-kvmfixture-1.txt", &b) == 0, "fixtures");
        CHECK(kvm_stats_parse(a.p, a.n, s, 2, &n) == 0 && n == 2, "parse, %zu", n);
        CHECK(kvm_stats_parse(b.p, b.n, t, 2, &n) == 0 && n == 2, "parse later");
        for (int k = 0; k < _KVM_STAT_MAX; k++)
                CHECK(kvm_vcpu_has(&s[1], (enum kvm_stat)k), "vcpu 1: %s", kvm_stat_name((enum kvm_stat)k));
        CHECK(s[0].v[KVM_STAT_HALT_EXITS] == 229 && t[0].v[KVM_STAT_HALT_EXITS] == 322, "halt exits as recorded");
        CHECK(kvm_vcpu_rates(&s[0], &t[0], dt, &r) == 0 && r.kvm, "rates");
        CHECK(fabs(r.halt_hz - 93 / dt) < 1e-9, "vCPU 0: 93 halts in %.3f s: %g/s", dt, r.halt_hz);
        CHECK(fabs(r.halt_wait_share - (11216914887.0 - 6155521768.0) / 1e9 / dt) < 1e-9 && r.halt_wait_share > 0.97,
              "vCPU 0 halted %.3f of the window", r.halt_wait_share);
        CHECK(r.preempt_hz == 0 && r.yield_hz == 0 && r.yield_ok_hz == 0, "no preemption reported, no yields");
        CHECK(kvm_vcpu_rates(&s[1], &t[1], dt, &r) == 0 && r.halt_hz == 0 && r.halt_wait_share > 0.99,
              "vCPU 1 (an AP never started): halted all along, %g", r.halt_wait_share);
        virTypedParamsFree(a.p, a.n);
        virTypedParamsFree(b.p, b.n);
}

/* The tracker over the recorded readings: first reading, rates, a gap, a reset. */
static void test_track(void)
{
        struct params a, b;
        struct kvm_vcpu_stats s[2], t[2], none = {};
        struct kvm_vcpu_track tr = {};
        size_t n;
        double dt = (double)(FIX_T1 - FIX_T0) / 1e9;

        CHECK(load("domstats-kvmfixture-0.txt", &a) == 0 && load("domstats-kvmfixture-1.txt", &b) == 0, "fixtures");
        CHECK(kvm_stats_parse(a.p, a.n, s, 2, &n) == 0 && kvm_stats_parse(b.p, b.n, t, 2, &n) == 0, "parse");

        /* First reading: a baseline, no rate, nothing summed yet. */
        CHECK(kvm_vcpu_track_update(&tr, &s[0], FIX_T0) == KVM_TRACK_FIRST, "first reading");
        CHECK(!tr.rates_known && tr.counted && tr.halt_exits == 0 && tr.halt_wait_ns == 0, "no rates yet");
        CHECK(kvm_vcpu_track_update(&tr, &t[0], FIX_T0) == -EINVAL && tr.prev_ns == FIX_T0, "no time passed: refused");

        /* Second: rates over the window, increments summed. */
        CHECK(kvm_vcpu_track_update(&tr, &t[0], FIX_T1) == KVM_TRACK_RATES && tr.rates_known, "second reading");
        CHECK(fabs(tr.rates.halt_hz - 93 / dt) < 1e-9 && fabs(tr.window_s - dt) < 1e-12, "halt rate %g over %g s",
              tr.rates.halt_hz, tr.window_s);
        CHECK(tr.halt_exits == 93 && tr.halt_wait_ns == 11216914887ULL - 6155521768ULL && tr.preemption_reported == 0,
              "sums: %llu halts", (unsigned long long)tr.halt_exits);

        /* The vCPU gone from a reading (offline, or libvirt skipped the
         * counters): rates unknown, baseline and sums kept. */
        CHECK(kvm_vcpu_track_update(&tr, &none, FIX_T1 + 5 * SEC_NS) == KVM_TRACK_NONE, "gone");
        CHECK(!tr.rates_known && tr.halt_exits == 93 && tr.prev_ns == FIX_T1, "baseline kept over the gap");
        /* Back, 10 s after the baseline, 100 more halts: the window spans the gap. */
        struct kvm_vcpu_stats back = t[0];
        back.v[KVM_STAT_HALT_EXITS] += 100;
        CHECK(kvm_vcpu_track_update(&tr, &back, FIX_T1 + 10 * SEC_NS) == KVM_TRACK_RATES, "back");
        CHECK(fabs(tr.rates.halt_hz - 10) < 1e-9 && tr.halt_exits == 193, "100 halts in 10 s: %g/s, sum %llu",
              tr.rates.halt_hz, (unsigned long long)tr.halt_exits);

        /* Counter reset (the vCPU recreated): a new baseline, no rate, sums kept. */
        CHECK(kvm_vcpu_track_update(&tr, &s[1], FIX_T1 + 15 * SEC_NS) == KVM_TRACK_RESET, "reset");
        CHECK(!tr.rates_known && tr.halt_exits == 193 && tr.prev.v[KVM_STAT_HALT_EXITS] == 1, "new baseline");
        CHECK(kvm_vcpu_track_update(&tr, &t[1], FIX_T1 + 20 * SEC_NS) == KVM_TRACK_RATES && tr.rates.halt_hz == 0 &&
              tr.halt_wait_ns == 11216914887ULL - 6155521768ULL + 18228007790ULL - 13094786727ULL,
              "rates from the new baseline");

        /* TCG: never anything. */
        struct params c;
        struct kvm_vcpu_stats g[2];
        struct kvm_vcpu_track tcg = {};
        CHECK(load("domstats-tcg-recorded.txt", &c) == 0 && kvm_stats_parse(c.p, c.n, g, 2, &n) == 0, "TCG");
        CHECK(kvm_vcpu_track_update(&tcg, &g[0], FIX_T0) == KVM_TRACK_NONE &&
              kvm_vcpu_track_update(&tcg, &g[0], FIX_T1) == KVM_TRACK_NONE && !tcg.counted && !tcg.rates_known,
              "TCG vCPU: no baseline, no sums");
        virTypedParamsFree(a.p, a.n);
        virTypedParamsFree(b.p, b.n);
        virTypedParamsFree(c.p, c.n);
}

int main(int argc, char **argv)
{
        fixtures = argc > 1 ? argv[1] : "tests/unit/fixtures/kvm-stats";
        /* The virTypedParams helpers touch libvirt's per-thread error state. */
        if (virInitialize() < 0)
                return 1;
        test_kvm();
        test_tcg();
        test_odd_params();
        test_parse_alloc();
        test_recorded();
        test_kvmfixture();
        test_track();
        return test_result();
}
