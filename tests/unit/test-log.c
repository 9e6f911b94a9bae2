/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* log_vcpu_move(): the message of a move, a dry run and a failure, and the
 * error it hands back.  On the console only MESSAGE is printed; the journal
 * fields are checked by the integration tests against a real journald. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "tap.h"

/* What @mv prints on the console. */
static char *console_line(const struct vcpu_move_log *mv, int *ret)
{
        static char buf[512];
        FILE *f = tmpfile();
        int saved = dup(STDERR_FILENO);
        size_t n;

        fflush(stderr);
        dup2(fileno(f), STDERR_FILENO);
        *ret = log_vcpu_move(mv);
        fflush(stderr);
        dup2(saved, STDERR_FILENO);
        close(saved);
        rewind(f);
        n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = '\0';
        fclose(f);
        return buf;
}

int main(void)
{
        struct vcpu_move_log mv = {
                .domain = { .name = "web1", .uuid = "0b7d4a3e-5f1c-4c2a-9e8b-3f6d2a1c0e9f" },
                .vcpu = 2, .tid = 4711, .from = "0-15", .to = "6", .reason = "new-guest",
                .load = 0.5, .wait_ms = 1.25,
        };
        int r;
        char *s;

        log_setup(LOG_TARGET_CONSOLE, LOG_DEBUG);

        s = console_line(&mv, &r);
        CHECK(r == 0 && strcmp(s, "web1 vcpu2 (tid 4711): 0-15 -> 6 (new-guest)\n") == 0, "move: %d '%s'", r, s);

        mv.dry_run = true;
        s = console_line(&mv, &r);
        CHECK(r == 0 && strcmp(s, "would move: web1 vcpu2 (tid 4711): 0-15 -> 6 (new-guest)\n") == 0,
              "dry run: '%s'", s);

        mv.dry_run = false;
        mv.error = -EACCES;
        mv.error_text = "cpuset.cpus: Permission denied";
        mv.retry_sec = 30;
        s = console_line(&mv, &r);
        CHECK(r == -EACCES, "a failure hands back its error: %d", r);
        CHECK(strcmp(s, "error: web1 vcpu2 (tid 4711): cannot move 0-15 -> 6: cpuset.cpus: Permission denied; "
                        "retrying in 30 s\n") == 0, "failure: '%s'", s);

        mv.error_text = NULL;
        s = console_line(&mv, &r);
        CHECK(strstr(s, ": cannot move 0-15 -> 6: Permission denied; retrying in 30 s\n") != NULL,
              "no reason: strerror: '%s'", s);
        return test_result();
}
