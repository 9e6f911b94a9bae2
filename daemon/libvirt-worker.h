/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * One thread that makes every libvirt call that can block (open, close,
 * listing, lookups, XML), one job after another, so the event loop never
 * waits for libvirtd.  A job's run() runs on the worker; its done() runs
 * afterwards on the loop, from an eventfd the worker signals.  The loop
 * asks how long the current job has been running to tell that libvirtd is
 * unresponsive (libvirt.c); the worker itself never gives up on a call: a
 * call on an open connection ends when keepalive closes it, and an open
 * that hangs is cut by libvirt.c shutting its socket down.
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

struct lv_job {
        void (*run)(struct lv_job *j);          /* worker thread */
        /* Loop thread, after run(); with @cancelled when the worker is
         * freed before it ran the job (only free the job then). */
        void (*done)(struct lv_job *j, bool cancelled);
        const char *what;                       /* "connecting", "listing domains", ... */
        struct lv_job *next;                    /* the worker's */
};

struct lv_worker;

int lv_worker_new(sd_event *e, struct lv_worker **out);
/* Waits up to @wait_usec for the queued jobs (a last close, say) to finish;
 * a worker stuck in libvirt after that is left behind, detached, and the
 * jobs it did not finish are leaked: the process is exiting.  Returns
 * false then. */
bool lv_worker_free(struct lv_worker *w, uint64_t wait_usec);
void lv_worker_submit(struct lv_worker *w, struct lv_job *j);
/* CLOCK_MONOTONIC start of the job that runs now (0: idle) and its what. */
uint64_t lv_worker_busy_since(struct lv_worker *w, const char **what);
/* From a job's run(): it got an answer and goes on with another call (a
 * listing reads one XML per domain), so "busy since" starts again. */
void lv_worker_progress(struct lv_worker *w);
/* Jobs submitted whose done() has not run yet, the running one included. */
unsigned lv_worker_pending(struct lv_worker *w);
