/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Logging to journald (structured) or the console.  Functions taking an error
 * return it negated, so an edge can write `return log_error_errno(r, ...)`.
 * Messages name the object and the cause; log an error once, where there is
 * context, not at every level of the stack.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <syslog.h>

enum log_target {
        LOG_TARGET_AUTO,        /* journal if stderr is connected to it or no tty, else console */
        LOG_TARGET_JOURNAL,
        LOG_TARGET_CONSOLE,
};

const char *log_target_to_string(enum log_target t);
int log_target_from_string(const char *s);
void log_setup(enum log_target target, int max_level);
int log_get_max_level(void);
void log_set_max_level(int level);

int log_full_errno(int level, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_debug(...) log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...) log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...) log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, (e), __VA_ARGS__)

/* The guest a structured entry is about; any member may be NULL. */
struct log_domain {
        const char *name;
        const char *uuid;
};

/*
 * A structured entry: MESSAGE_ID, the guest's VCPUSPREAD_DOMAIN and
 * VCPUSPREAD_UUID, then @fields ("KEY=value" strings, NULL-terminated, may
 * be NULL) and MESSAGE from @fmt.  On the console only MESSAGE is printed.
 * Returns -abs(error) like log_full_errno.
 */
int log_struct(int level, int error, const char *message_id, const struct log_domain *d,
               const char *const *fields, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* One vCPU move, or an attempt that failed, for log_vcpu_move(). */
struct vcpu_move_log {
        struct log_domain domain;
        unsigned vcpu;
        int tid;
        const char *from, *to;          /* CPU lists before and after */
        const char *reason;             /* place_reason_to_string(): "new-guest", ... */
        bool dry_run;                   /* planned, not applied */
        double load, wait_ms;           /* the vCPU's recent load and run-queue wait */
        int error;                      /* < 0: the move failed with this */
        const char *error_text;         /* one-line reason; NULL: strerror(-error) */
        unsigned retry_sec;             /* after a failure: when it is tried again */
        const char *note;               /* NULL, or said after the reason: "on the way: ..." */
};

/*
 * The one place that writes the journal entry of a vCPU move: MESSAGE_ID
 * MSGID_VCPU_MOVED (or MSGID_APPLY_FAILED when @mv->error < 0), the guest's
 * fields, VCPUSPREAD_VCPU, _TID, _CPUS_FROM, _CPUS_TO, _REASON, _DRY_RUN,
 * _LOAD and _WAIT_MS, and the message "web1 vcpu2 (tid 4711): 0-15 -> 6
 * (new-guest)".  Returns @mv->error (0 after a move).
 */
int log_vcpu_move(const struct vcpu_move_log *mv);
