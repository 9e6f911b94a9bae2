/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vst-notify-listen SOCKET LOG: a stand-in for the service manager's
 * notification socket.  Binds the datagram socket SOCKET and appends one
 * line per datagram to LOG: CLOCK_BOOTTIME milliseconds (/proc/uptime's clock), a blank, the
 * message with newlines as '|'.  Runs until killed.
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char buf[4096];
        FILE *log;
        int fd;

        if (argc != 3 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "usage: vst-notify-listen SOCKET LOG\n");
                return 2;
        }
        strcpy(sa.sun_path, argv[1]);
        unlink(argv[1]);
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                perror(argv[1]);
                return 1;
        }
        log = fopen(argv[2], "a");
        if (!log) {
                perror(argv[2]);
                return 1;
        }
        for (;;) {
                ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
                struct timespec ts;

                if (n < 0)
                        continue;
                buf[n] = '\0';
                for (ssize_t i = 0; i < n; i++)
                        if (buf[i] == '\n')
                                buf[i] = '|';
                clock_gettime(CLOCK_BOOTTIME, &ts);
                fprintf(log, "%lld %s\n", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, buf);
                fflush(log);
        }
}
