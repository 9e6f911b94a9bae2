/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Reading a small file whole: the one helper daemon/ has for it. */

#include <stddef.h>

/*
 * The whole of @fd, or of the file at @path, into a NUL-terminated malloc'ed
 * buffer; *@len (when not NULL) excludes the NUL.  Returns 0, -EFBIG when the
 * content is longer than @max bytes, -ENOMEM or the errno of open/read.
 */
int read_fd_full(int fd, size_t max, char **out, size_t *len);
int read_file_full(const char *path, size_t max, char **out, size_t *len);
