/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* main() for a harness built without libFuzzer: each input once. */
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>

#include "fileio.h"
#include "fuzz.h"

static int run_file(const char *path)
{
        char *buf = NULL;
        size_t len = 0;
        int r = read_file_full(path, 1u << 24, &buf, &len);

        if (r < 0) {
                fprintf(stderr, "%s: cannot read\n", path);
                return 1;
        }
        LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
        free(buf);
        return 0;
}

int main(int argc, char **argv)
{
        int fails = 0, n = 0;

        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
                        DIR *d = opendir(argv[i]);
                        struct dirent *de;
                        while (d && (de = readdir(d))) {
                                char path[4096];
                                if (de->d_name[0] == '.')
                                        continue;
                                snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
                                fails += run_file(path);
                                n++;
                        }
                        if (d)
                                closedir(d);
                } else {
                        fails += run_file(argv[i]);
                        n++;
                }
        }
        printf("%d inputs, %d unreadable\n", n, fails);
        return fails ? 1 : 0;
}
