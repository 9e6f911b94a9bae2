/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvirt's status file, through the public lookup: the input is written as
 * the one status file of a private directory and looked up by the UUID the
 * seeds carry, against an empty /proc (so every listed thread fails its
 * check, and the fallback finds nothing).
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "log.h"
#include "vcpu-threads.h"

#define UUID "8f4c2a51-3d1e-4b7a-9c60-1e2d3f4a5b6c"

static char dir[64], status_dir[80], proc[80], file[100];

static void setup(void)
{
        snprintf(dir, sizeof(dir), "%s/fuzz-status-XXXXXX", getenv("TMPDIR") ?: "/tmp");
        if (!mkdtemp(dir))
                abort();
        snprintf(status_dir, sizeof(status_dir), "%s/qemu", dir);
        snprintf(proc, sizeof(proc), "%s/proc", dir);
        snprintf(file, sizeof(file), "%s/guest.xml", status_dir);
        if (mkdir(status_dir, 0700) < 0 || mkdir(proc, 0700) < 0)
                abort();
        log_set_max_level(LOG_CRIT);
}

static void teardown(void)
{
        unlink(file);
        rmdir(status_dir);
        rmdir(proc);
        rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct vcpu_threads_source src = { .status_dir = status_dir, .proc_root = proc };
        struct vcpu_threads t = {};
        int fd;

        if (!dir[0]) {
                setup();
                atexit(teardown);
        }
        fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, data, size) != (ssize_t)size)
                abort();
        close(fd);
        if (vcpu_threads_find(&src, UUID, &t) == 0)
                vcpu_threads_done(&t);
        return 0;
}
