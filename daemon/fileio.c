/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "macro.h"

int read_fd_full(int fd, size_t max, char **out, size_t *len)
{
        size_t size = 4096, n = 0;
        _cleanup_free_ char *buf = malloc(size);

        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (n + 1 >= size) {
                        if (n >= max)
                                return -EFBIG;
                        char *bigger = realloc(buf, size * 2);
                        if (!bigger)
                                return -ENOMEM;
                        buf = bigger;
                        size *= 2;
                }
                ssize_t k = read(fd, buf + n, size - 1 - n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                n += (size_t)k;
        }
        if (n > max)
                return -EFBIG;
        buf[n] = '\0';
        *out = TAKE_PTR(buf);
        if (len)
                *len = n;
        return 0;
}

int read_file_full(const char *path, size_t max, char **out, size_t *len)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        int r = read_fd_full(fd, max, out, len);
        close(fd);
        return r;
}
