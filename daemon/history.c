/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Per-guest record of what the daemon saw and did, for the report and the metrics. */
#include "history.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/macro.h"
#include "plan-json.h"

#define NSEC_PER_SEC 1000000000ULL

int history_new(uint64_t now_ns, struct history **out)
{
        struct history *h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->start_ns = now_ns;
        *out = h;
        return 0;
}

static void guest_record_free(struct history_guest *g)
{
        if (!g)
                return;
        for (size_t k = 0; k < g->n_vcpus; k++)
                signals_thread_close(&g->vcpus[k].st);
        free(g->vcpus);
        free(g->buckets);
        free(g->name);
        free(g);
}

void history_free(struct history *h)
{
        if (!h)
                return;
        for (size_t i = 0; i < h->n_guests; i++)
                guest_record_free(h->guests[i]);
        free(h->guests);
        free(h);
}

struct history_guest *history_guest_find(struct history *h, const char *uuid)
{
        for (size_t i = 0; i < h->n_guests; i++)
                if (strcasecmp(h->guests[i]->uuid, uuid) == 0)
                        return h->guests[i];
        return NULL;
}

static void guest_drop(struct history *h, size_t i)
{
        if (!h->guests[i]->present)
                h->n_gone--;
        guest_record_free(h->guests[i]);
        memmove(&h->guests[i], &h->guests[i + 1], (h->n_guests - i - 1) * sizeof(*h->guests));
        h->n_guests--;
}

/* Gone guests beyond HISTORY_GONE_MAX, or whose last bucket aged out, are forgotten. */
static void history_prune(struct history *h, uint64_t now_ns)
{
        uint64_t keep_ns = (uint64_t)HISTORY_BUCKETS * HISTORY_BUCKET_SEC * NSEC_PER_SEC;

        for (size_t i = h->n_guests; i-- > 0;) {
                struct history_guest *g = h->guests[i];
                if (!g->present && now_ns > g->last_ns + keep_ns)
                        guest_drop(h, i);
        }
        while (h->n_gone > HISTORY_GONE_MAX) {
                size_t oldest = SIZE_MAX;
                for (size_t i = 0; i < h->n_guests; i++)
                        if (!h->guests[i]->present &&
                            (oldest == SIZE_MAX || h->guests[i]->last_ns < h->guests[oldest]->last_ns))
                                oldest = i;
                guest_drop(h, oldest);
        }
}

struct history_guest *history_guest_get(struct history *h, const char *uuid, const char *name, uint64_t now_ns,
                                        time_t wall)
{
        struct history_guest *g = history_guest_find(h, uuid);

        if (g) {
                if (!g->present) {
                        g->present = true;      /* it started again: the same record goes on */
                        h->n_gone--;
                }
                if (name && (!g->name || strcmp(g->name, name) != 0)) {
                        char *n = strdup(name);
                        if (!n)
                                return NULL;
                        free(g->name);
                        g->name = n;
                }
                return g;
        }

        struct history_guest **gs = realloc(h->guests, (h->n_guests + 1) * sizeof(*gs));
        if (!gs)
                return NULL;
        h->guests = gs;
        g = calloc(1, sizeof(*g));
        if (!g)
                return NULL;
        g->buckets = calloc(HISTORY_BUCKETS, sizeof(*g->buckets));
        g->name = strdup(name ?: "");
        if (!g->buckets || !g->name) {
                guest_record_free(g);
                return NULL;
        }
        snprintf(g->uuid, sizeof(g->uuid), "%s", uuid);
        g->present = true;
        g->first_ns = g->last_ns = now_ns;
        g->first_seen = g->last_seen = wall;
        h->guests[h->n_guests++] = g;
        return g;
}

struct history_vcpu *history_vcpu_get(struct history_guest *g, unsigned vcpu)
{
        size_t lo = 0, hi = g->n_vcpus;

        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (g->vcpus[mid].vcpu == vcpu)
                        return &g->vcpus[mid];
                if (g->vcpus[mid].vcpu < vcpu)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        struct history_vcpu *v = realloc(g->vcpus, (g->n_vcpus + 1) * sizeof(*v));
        if (!v)
                return NULL;
        g->vcpus = v;
        memmove(&v[lo + 1], &v[lo], (g->n_vcpus - lo) * sizeof(*v));
        g->n_vcpus++;
        v[lo] = (struct history_vcpu){ .vcpu = vcpu };
        signals_thread_init(&v[lo].st, 0, 0);
        return &v[lo];
}

void history_guest_gone(struct history *h, const char *uuid)
{
        struct history_guest *g = history_guest_find(h, uuid);

        if (!g || !g->present)
                return;
        g->present = false;
        h->n_gone++;
        /* Its threads are gone; a restart gets new ones and new counters. */
        for (size_t k = 0; k < g->n_vcpus; k++) {
                signals_thread_close(&g->vcpus[k].st);
                g->vcpus[k].have_counters = g->vcpus[k].have_ctxt = false;
        }
        history_prune(h, g->last_ns);
}

/* The bucket of @now_ns, emptied when it last held an older slice. */
static struct history_acc *bucket_at(const struct history *h, struct history_guest *g, uint64_t now_ns)
{
        uint64_t index = (now_ns - h->start_ns) / (HISTORY_BUCKET_SEC * NSEC_PER_SEC) + 1;
        struct history_bucket *b = &g->buckets[index % HISTORY_BUCKETS];

        if (b->index != index)
                *b = (struct history_bucket){ .index = index };
        return &b->acc;
}

static void acc_add(struct history_acc *a, const struct history_acc *d)
{
        a->seconds += d->seconds;
        a->vcpu_seconds += d->vcpu_seconds;
        a->cpu_s += d->cpu_s;
        a->wait_s += d->wait_s;
        a->ctxt_vcpu_s += d->ctxt_vcpu_s;
        a->voluntary += d->voluntary;
        a->involuntary += d->involuntary;
        a->samples += d->samples;
        a->runnable += d->runnable;
        a->stacked += d->stacked;
        a->chance_weighted += d->chance_weighted;
        for (size_t i = 0; i < _ADAPTIVE_MODE_MAX; i++)
                a->mode_s[i] += d->mode_s[i];
        a->moves += d->moves;
        a->observed_moves += d->observed_moves;
        a->apply_errors += d->apply_errors;
        a->mode_changes += d->mode_changes;
}

static void record(const struct history *h, struct history_guest *g, uint64_t now_ns, const struct history_acc *d)
{
        acc_add(&g->total, d);
        if (now_ns >= h->start_ns)
                acc_add(bucket_at(h, g, now_ns), d);
}

static void snap(char *dst, size_t len, const char *s)
{
        snprintf(dst, len, "%s", s ?: "");
}

/* The vCPU's counters folded in; adds its share of the interval to @d. */
static bool vcpu_sample_add(struct history_vcpu *v, const struct history_vcpu_sample *s, uint64_t now_ns,
                            struct history_acc *d)
{
        bool measured = false;

        if (v->tid != s->tid) {
                /* Another thread (a restart, a hot-unplug and plug): new baselines. */
                signals_thread_close(&v->st);
                v->tid = s->tid;
                v->have_counters = v->have_ctxt = false;
                v->kvm = (struct history_kvm){};
        }
        if (s->kvm.known)
                v->kvm = s->kvm;
        if (s->have_counters) {
                if (v->have_counters && s->cpu_ns >= v->cpu_ns && s->wait_ns >= v->wait_ns) {
                        double cpu = (double)(s->cpu_ns - v->cpu_ns) / 1e9, wait = (double)(s->wait_ns - v->wait_ns) / 1e9;
                        v->cpu_s += cpu;
                        v->wait_s += wait;
                        d->cpu_s += cpu;
                        d->wait_s += wait;
                        measured = true;
                }
                v->have_counters = true;
                v->cpu_ns = s->cpu_ns;
                v->wait_ns = s->wait_ns;
        }
        if (s->have_ctxt) {
                if (v->have_ctxt && s->ctxt.voluntary >= v->ctxt.voluntary &&
                    s->ctxt.involuntary >= v->ctxt.involuntary && now_ns > v->ctxt_ns) {
                        d->voluntary += (double)(s->ctxt.voluntary - v->ctxt.voluntary);
                        d->involuntary += (double)(s->ctxt.involuntary - v->ctxt.involuntary);
                        d->ctxt_vcpu_s += (double)(now_ns - v->ctxt_ns) / 1e9;
                }
                v->have_ctxt = true;
                v->ctxt = s->ctxt;
                v->ctxt_ns = now_ns;
        }
        return measured;
}

int history_sample_add(struct history *h, struct history_guest *g, const struct history_sample *s)
{
        struct history_acc d = { .seconds = s->dt_s };
        unsigned counted = 0;

        for (size_t k = 0; k < s->n_vcpus; k++) {
                struct history_vcpu *v = history_vcpu_get(g, s->vcpus[k].vcpu);
                if (!v)
                        return -ENOMEM;
                counted += vcpu_sample_add(v, &s->vcpus[k], s->now_ns, &d);
        }
        d.vcpu_seconds = s->dt_s * counted;
        d.samples = s->tally.samples;
        d.runnable = s->tally.runnable;
        d.stacked = s->tally.stacked;
        d.chance_weighted = s->stacked_chance * s->tally.runnable;
        if ((unsigned)s->mode < _ADAPTIVE_MODE_MAX)
                d.mode_s[s->mode] = s->dt_s;
        if (g->total.seconds > 0 && s->mode != g->mode)
                d.mode_changes = 1;
        record(h, g, s->now_ns, &d);

        g->mode = s->mode;
        snap(g->mode_reason, sizeof(g->mode_reason), s->mode_reason);
        snap(g->policy, sizeof(g->policy), s->policy);
        snap(g->state, sizeof(g->state), s->state);
        g->last_ns = s->now_ns;
        g->last_seen = s->wall;
        g->n_vcpus_sampled = counted;
        g->cpu_share = s->dt_s > 0 ? d.cpu_s / s->dt_s : 0;
        /* The counters are read a little apart from this clock: a share may
         * come out a hair above 1. */
        g->busy = d.vcpu_seconds > 0 ? fmin(1, (d.cpu_s + d.wait_s) / d.vcpu_seconds) : 0;
        g->wait = d.vcpu_seconds > 0 ? fmin(1, d.wait_s / d.vcpu_seconds) : 0;
        return 0;
}

static struct history_moves *moves_slot(struct history_vcpu *v, const char *reason)
{
        for (size_t i = 0; i < v->n_reasons; i++)
                if (strcmp(v->moves[i].reason, reason) == 0)
                        return &v->moves[i];
        /* The vocabulary is small (VCPUSPREAD_REASON); the last slot catches the rest. */
        if (v->n_reasons >= HISTORY_REASONS - 1 && strcmp(reason, "other") != 0)
                return moves_slot(v, "other");
        struct history_moves *m = &v->moves[v->n_reasons++];
        snap(m->reason, sizeof(m->reason), reason);
        return m;
}

int history_move(struct history *h, struct history_guest *g, unsigned vcpu, const char *reason, bool observed,
                 const char *text, uint64_t now_ns)
{
        struct history_vcpu *v = history_vcpu_get(g, vcpu);
        struct history_acc d = {};

        if (!v)
                return -ENOMEM;
        struct history_moves *m = moves_slot(v, reason && *reason ? reason : "other");
        if (observed) {
                m->observed++;
                d.observed_moves = 1;
                h->observed_moves++;
        } else {
                m->applied++;
                d.moves = 1;
                h->moves++;
        }
        record(h, g, now_ns, &d);
        snap(g->last_move, sizeof(g->last_move), text);
        g->observed_last = observed;
        return 0;
}

void history_apply_error(struct history *h, struct history_guest *g, uint64_t now_ns)
{
        struct history_acc d = { .apply_errors = 1 };
        record(h, g, now_ns, &d);
}

void history_window(const struct history *h, const struct history_guest *g, uint64_t now_ns, double window_s,
                    struct history_acc *out)
{
        *out = (struct history_acc){};
        if (window_s <= 0 || now_ns < h->start_ns) {
                *out = g->total;
                return;
        }
        uint64_t now_index = (now_ns - h->start_ns) / (HISTORY_BUCKET_SEC * NSEC_PER_SEC) + 1;
        /* Whole buckets, the current one included: a window is rounded up to them. */
        uint64_t n = (uint64_t)ceil(window_s / HISTORY_BUCKET_SEC);
        if (n < 1)
                n = 1;
        if (n > HISTORY_BUCKETS)
                n = HISTORY_BUCKETS;
        for (uint64_t k = 0; k < n && k < now_index; k++) {
                const struct history_bucket *b = &g->buckets[(now_index - k) % HISTORY_BUCKETS];
                if (b->index == now_index - k)
                        acc_add(out, &b->acc);
        }
}

static double ratio(double a, double b)
{
        return b > 0 ? a / b : NAN;
}

double history_stacked_share(const struct history_acc *a) { return ratio((double)a->stacked, (double)a->runnable); }
double history_stacked_all(const struct history_acc *a) { return ratio((double)a->stacked, (double)a->samples); }
double history_stacked_chance(const struct history_acc *a) { return ratio(a->chance_weighted, (double)a->runnable); }
double history_busy(const struct history_acc *a) { return ratio(a->cpu_s + a->wait_s, a->vcpu_seconds); }
double history_wait(const struct history_acc *a) { return ratio(a->wait_s, a->vcpu_seconds); }
double history_voluntary_hz(const struct history_acc *a) { return ratio(a->voluntary, a->ctxt_vcpu_s); }
double history_involuntary_hz(const struct history_acc *a) { return ratio(a->involuntary, a->ctxt_vcpu_s); }

/* A number, or null when there was nothing to measure. */
static json_object *json_num(double v)
{
        return isfinite(v) ? json_object_new_double(round(v * 1e4) / 1e4) : NULL;
}


static json_object *guest_report(const struct history *h, const struct history_guest *g, uint64_t now_ns,
                                 double window_s)
{
        struct history_acc a;
        json_object *o = json_object_new_object();
        json_object *modes = json_object_new_object();
        json_object *reasons = json_object_new_object();
        json_object *observed = json_object_new_object();

        history_window(h, g, now_ns, window_s, &a);
        json_object_object_add(o, "name", json_object_new_string(g->name));
        json_object_object_add(o, "uuid", json_object_new_string(g->uuid));
        json_object_object_add(o, "running", json_object_new_boolean(g->present));
        json_object_object_add(o, "first_seen", json_utc_time(g->first_seen));
        json_object_object_add(o, "last_seen", json_utc_time(g->last_seen));
        json_object_object_add(o, "policy", json_object_new_string(g->policy));
        json_object_object_add(o, "state", json_object_new_string(g->state));
        json_object_object_add(o, "vcpus", json_object_new_int((int)g->n_vcpus));
        json_object_object_add(o, "seconds", json_num(a.seconds));
        json_object_object_add(o, "samples", json_object_new_int64((int64_t)a.samples));
        json_object_object_add(o, "runnable_samples", json_object_new_int64((int64_t)a.runnable));
        json_object_object_add(o, "stacked_samples", json_object_new_int64((int64_t)a.stacked));
        json_object_object_add(o, "stacked_share", json_num(history_stacked_share(&a)));
        json_object_object_add(o, "stacked_all_share", json_num(history_stacked_all(&a)));
        json_object_object_add(o, "stacked_chance", json_num(history_stacked_chance(&a)));
        json_object_object_add(o, "busy", json_num(history_busy(&a)));
        json_object_object_add(o, "wait", json_num(history_wait(&a)));
        json_object_object_add(o, "cpu_seconds", json_num(a.cpu_s));
        json_object_object_add(o, "wait_seconds", json_num(a.wait_s));
        json_object_object_add(o, "voluntary_hz", json_num(history_voluntary_hz(&a)));
        json_object_object_add(o, "involuntary_hz", json_num(history_involuntary_hz(&a)));
        for (int m = 0; m < _ADAPTIVE_MODE_MAX; m++)
                json_object_object_add(modes, adaptive_mode_to_string(m), json_num(a.mode_s[m]));
        json_object_object_add(o, "mode_seconds", modes);
        json_object_object_add(o, "mode", json_object_new_string(adaptive_mode_to_string(g->mode)));
        if (g->mode_reason[0])
                json_object_object_add(o, "mode_reason", json_object_new_string(g->mode_reason));
        if (g->adaptive)
                json_object_object_add(o, "auto_phase", json_object_new_string(adaptive_phase_to_string(g->phase)));
        json_object_object_add(o, "mode_changes", json_object_new_int64((int64_t)a.mode_changes));
        json_object_object_add(o, "moves", json_object_new_int64((int64_t)a.moves));
        json_object_object_add(o, "observed_moves", json_object_new_int64((int64_t)a.observed_moves));
        json_object_object_add(o, "apply_errors", json_object_new_int64((int64_t)a.apply_errors));
        /* By reason over the guest's lifetime (the buckets keep no reasons). */
        for (size_t k = 0; k < g->n_vcpus; k++)
                for (size_t i = 0; i < g->vcpus[k].n_reasons; i++) {
                        const struct history_moves *mv = &g->vcpus[k].moves[i];
                        json_object *t;
                        if (mv->applied) {
                                int64_t c = json_object_object_get_ex(reasons, mv->reason, &t) ? json_object_get_int64(t) : 0;
                                json_object_object_add(reasons, mv->reason, json_object_new_int64(c + (int64_t)mv->applied));
                        }
                        if (mv->observed) {
                                int64_t c = json_object_object_get_ex(observed, mv->reason, &t) ? json_object_get_int64(t) : 0;
                                json_object_object_add(observed, mv->reason, json_object_new_int64(c + (int64_t)mv->observed));
                        }
                }
        json_object_object_add(o, "lifetime_moves_by_reason", reasons);
        json_object_object_add(o, "lifetime_observed_moves_by_reason", observed);
        if (g->last_move[0]) {
                json_object_object_add(o, "last_decision", json_object_new_string(g->last_move));
                json_object_object_add(o, "last_decision_applied", json_object_new_boolean(!g->observed_last));
        }
        return o;
}

json_object *history_report_json(const struct history *h, uint64_t now_ns, double window_s)
{
        json_object *guests = json_object_new_array();
        uint64_t window_ns = (uint64_t)(window_s * 1e9);

        for (size_t i = 0; i < h->n_guests; i++) {
                const struct history_guest *g = h->guests[i];
                if (!g->present && window_s > 0 && g->last_ns + window_ns < now_ns)
                        continue;
                json_object_array_add(guests, guest_report(h, g, now_ns, window_s));
        }
        return guests;
}
