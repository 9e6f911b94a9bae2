/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "lib/util.h"
#include "message-ids.h"

static enum log_target log_target = LOG_TARGET_CONSOLE;
static int log_max_level = LOG_INFO;

static const char *const log_target_names[] = {
        [LOG_TARGET_AUTO] = "auto",
        [LOG_TARGET_JOURNAL] = "journal",
        [LOG_TARGET_CONSOLE] = "console",
};

DEFINE_STRING_TABLE(log_target, enum log_target, log_target_names)

/* Under systemd, $JOURNAL_STREAM names the device:inode of stderr when it is
 * the journal: then structured logging is right; on a terminal it is not. */
static int stderr_is_journal(void)
{
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return 0;
        if (fstat(STDERR_FILENO, &st) < 0)
                return 0;
        return st.st_dev == dev && st.st_ino == ino;
}

void log_setup(enum log_target target, int max_level)
{
        if (target == LOG_TARGET_AUTO)
                target = stderr_is_journal() || !isatty(STDERR_FILENO) ? LOG_TARGET_JOURNAL
                                                                         : LOG_TARGET_CONSOLE;
        /* Without a journald socket, fall back to the console rather than
         * silently dropping decisions. */
        if (target == LOG_TARGET_JOURNAL && access("/run/systemd/journal/socket", F_OK) < 0)
                target = LOG_TARGET_CONSOLE;
        log_target = target;
        log_max_level = max_level;
}

int log_get_max_level(void)
{
        return log_max_level;
}

void log_set_max_level(int level)
{
        log_max_level = level;
}

static const char *level_prefix(int level)
{
        switch (level) {
        case LOG_DEBUG: return "debug: ";
        case LOG_WARNING: return "warning: ";
        case LOG_ERR: case LOG_CRIT: case LOG_ALERT: case LOG_EMERG: return "error: ";
        default: return "";
        }
}

#define MAX_FIELDS 24

/* The console and stderr get the message with control characters escaped
 * (a domain name with a newline or an escape sequence must not forge a line
 * or drive the terminal); journal fields keep the exact bytes. */
static void console_write(int level, const char *msg)
{
        char *safe = escape_text(msg, 0);

        fprintf(stderr, "%s%s\n", level_prefix(level), safe ? safe : "(out of memory escaping a message)");
        free(safe);
}

static int log_emit(int level, int error, const char *message_id, const struct log_domain *d,
                    const char *const *fields, const char *fmt, va_list ap)
{
        int saved_errno = errno;
        char *msg = NULL;

        if (error < 0)
                error = -error;
        if (level > log_max_level)
                return -error;

        /* %m means the passed error, as in systemd. */
        errno = error;
        if (vasprintf(&msg, fmt, ap) < 0) {
                errno = saved_errno;
                return -error;
        }

        if (log_target == LOG_TARGET_CONSOLE) {
                console_write(level, msg);
        } else {
                struct iovec iov[MAX_FIELDS];
                char *owned[MAX_FIELDS];
                size_t n = 0, n_owned = 0;

#define ADD_FMT(...) do {                                                             \
                char *_s = NULL;                                                      \
                if (n < MAX_FIELDS && asprintf(&_s, __VA_ARGS__) >= 0) {              \
                        owned[n_owned++] = _s;                                        \
                        iov[n++] = (struct iovec){ _s, strlen(_s) };                  \
                }                                                                     \
        } while (0)
                ADD_FMT("MESSAGE=%s", msg);
                ADD_FMT("PRIORITY=%d", level);
                ADD_FMT("SYSLOG_IDENTIFIER=%s", "vcpuspreadd");
                if (message_id)
                        ADD_FMT("MESSAGE_ID=%s", message_id);
                if (error)
                        ADD_FMT("ERRNO=%d", error);
                if (d && d->name)
                        ADD_FMT("VCPUSPREAD_DOMAIN=%s", d->name);
                if (d && d->uuid)
                        ADD_FMT("VCPUSPREAD_UUID=%s", d->uuid);
#undef ADD_FMT
                for (size_t i = 0; fields && fields[i] && n < MAX_FIELDS; i++)
                        iov[n++] = (struct iovec){ (void *)fields[i], strlen(fields[i]) };
                if (sd_journal_sendv(iov, (int)n) < 0)
                        console_write(level, msg);
                for (size_t i = 0; i < n_owned; i++)
                        free(owned[i]);
        }
        free(msg);
        errno = saved_errno;
        return -error;
}

int log_full_errno(int level, int error, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = log_emit(level, error, NULL, NULL, NULL, fmt, ap);
        va_end(ap);
        return r;
}

int log_struct(int level, int error, const char *message_id, const struct log_domain *d,
               const char *const *fields, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = log_emit(level, error, message_id, d, fields, fmt, ap);
        va_end(ap);
        return r;
}

int log_vcpu_move(const struct vcpu_move_log *mv)
{
        enum { N_FIELDS = 8 };
        char *owned[N_FIELDS] = {};
        const char *fields[N_FIELDS + 1] = {};
        int n = 0, r;

        n += asprintf(&owned[n], "VCPUSPREAD_VCPU=%u", mv->vcpu) >= 0;
        n += asprintf(&owned[n], "VCPUSPREAD_TID=%d", mv->tid) >= 0;
        n += asprintf(&owned[n], "VCPUSPREAD_CPUS_FROM=%s", mv->from) >= 0;
        n += asprintf(&owned[n], "VCPUSPREAD_CPUS_TO=%s", mv->to) >= 0;
        n += asprintf(&owned[n], "VCPUSPREAD_REASON=%s", mv->reason) >= 0;
        n += asprintf(&owned[n], "VCPUSPREAD_DRY_RUN=%d", mv->dry_run) >= 0;
        n += asprintf(&owned[n], "VCPUSPREAD_LOAD=%.3f", mv->load) >= 0;
        n += asprintf(&owned[n], "VCPUSPREAD_WAIT_MS=%.1f", mv->wait_ms) >= 0;
        for (int i = 0; i < n; i++)
                fields[i] = owned[i];

        if (mv->error < 0)
                r = log_struct(LOG_ERR, mv->error, MSGID_APPLY_FAILED, &mv->domain, fields,
                               "%s vcpu%u (tid %d): cannot move %s -> %s: %s; retrying in %u s", mv->domain.name,
                               mv->vcpu, mv->tid, mv->from, mv->to,
                               mv->error_text && mv->error_text[0] ? mv->error_text : strerror(-mv->error),
                               mv->retry_sec);
        else
                r = log_struct(LOG_INFO, 0, MSGID_VCPU_MOVED, &mv->domain, fields, "%s%s vcpu%u (tid %d): %s -> %s (%s%s%s)",
                               mv->dry_run ? "would move: " : "", mv->domain.name, mv->vcpu, mv->tid, mv->from,
                               mv->to, mv->reason, mv->note ? ", " : "", mv->note ? mv->note : "");
        for (int i = 0; i < n; i++)
                free(owned[i]);
        return r;
}
