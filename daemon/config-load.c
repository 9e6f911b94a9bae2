/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Reading the configuration files: the main file, then its drop-ins. */
#include "config-load.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fileio.h"
#include "macro.h"

/* A configuration file larger than this is a mistake, not a configuration. */
#define CONFIG_FILE_MAX (1024 * 1024)

static int read_text(const char *path, char **out, struct config_error *err)
{
        _cleanup_free_ char *buf = NULL;
        size_t len;
        int r = read_file_full(path, CONFIG_FILE_MAX, &buf, &len);

        if (r == -ENOENT)
                return r;
        if (r == -EFBIG)
                config_error_set(err, path, 0, "larger than %d bytes, not a configuration file", CONFIG_FILE_MAX);
        else if (r == -ENOMEM)
                config_error_set(err, path, 0, "out of memory");
        else if (r < 0)
                config_error_set(err, path, 0, "cannot read: %s", strerror(-r));
        if (r < 0)
                return r;
        if (memchr(buf, '\0', len)) {
                config_error_set(err, path, 0, "contains a NUL byte, not a text file");
                return -EINVAL;
        }
        *out = TAKE_PTR(buf);
        return 0;
}

static int load_file(struct config *c, const char *path, bool missing_ok, struct config_error *err)
{
        _cleanup_free_ char *text = NULL;
        char **files;
        int r;

        r = read_text(path, &text, err);
        if (r == -ENOENT && missing_ok)
                return 0;
        if (r == -ENOENT)
                config_error_set(err, path, 0, "cannot open: %s", strerror(ENOENT));
        if (r < 0)
                return r;
        r = config_parse_string(c, text, path, err);
        if (r < 0)
                return r;
        files = realloc(c->files, (c->n_files + 1) * sizeof(*files));
        if (!files)
                return -ENOMEM;
        c->files = files;
        if (!(c->files[c->n_files] = strdup(path)))
                return -ENOMEM;
        c->n_files++;
        return 0;
}

static int compare_names(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names of the *.conf entries of @dir, sorted; none when @dir is missing. */
static int list_dropins(const char *dir, char ***out, size_t *n_out, struct config_error *err)
{
        DIR *d = opendir(dir);
        struct dirent *de;
        char **names = NULL;
        size_t n = 0;
        int r = 0;

        *out = NULL;
        *n_out = 0;
        if (!d) {
                if (errno == ENOENT || errno == ENOTDIR)
                        return 0;
                r = -errno;
                config_error_set(err, dir, 0, "cannot open directory: %s", strerror(-r));
                return r;
        }
        while ((errno = 0, de = readdir(d))) {
                size_t len = strlen(de->d_name);
                char **more;

                /* Hidden files are editor and package-manager leftovers. */
                if (de->d_name[0] == '.' || len <= 5 || strcmp(de->d_name + len - 5, ".conf") != 0)
                        continue;
                more = realloc(names, (n + 1) * sizeof(*names));
                if (!more || !(more[n] = strdup(de->d_name))) {
                        names = more ? more : names;
                        r = -ENOMEM;
                        break;
                }
                names = more;
                n++;
        }
        if (r == 0 && errno != 0) {
                r = -errno;
                config_error_set(err, dir, 0, "cannot read directory: %s", strerror(-r));
        }
        closedir(d);
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        free(names[i]);
                free(names);
                return r;
        }
        if (n > 0)
                qsort(names, n, sizeof(*names), compare_names);
        *out = names;
        *n_out = n;
        return 0;
}

static int load_dropins(struct config *c, const char *dir, struct config_error *err)
{
        char **names;
        size_t n;
        int r;

        r = list_dropins(dir, &names, &n, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *path = NULL;
                struct stat st;

                if (r < 0)
                        goto next;
                if (asprintf(&path, "%s/%s", dir, names[i]) < 0) {
                        path = NULL;
                        r = -ENOMEM;
                        goto next;
                }
                /* A directory or a dangling link named *.conf is no setting. */
                if (stat(path, &st) < 0 ? errno == ENOENT : S_ISDIR(st.st_mode))
                        goto next;
                r = load_file(c, path, false, err);
        next:
                free(names[i]);
        }
        free(names);
        if (r == -ENOMEM)
                config_error_set(err, dir, 0, "out of memory");
        return r;
}

int config_load(const char *main_path, const char *dropin_dir, struct config *out,
                struct config_error *err)
{
        _cleanup_free_ char *default_dir = NULL;
        struct config c;
        int r;

        if (!main_path)
                main_path = CONFIG_MAIN_PATH_DEFAULT;
        if (!dropin_dir) {
                const char *slash = strrchr(main_path, '/');
                int n = slash ? (int)(slash - main_path + 1) : 0;

                if (asprintf(&default_dir, "%.*s%s", n, main_path, DEFAULT_CONFIG_DROPIN_DIRNAME) < 0) {
                        config_error_set(err, main_path, 0, "out of memory");
                        return -ENOMEM;
                }
                dropin_dir = default_dir;
        }

        r = config_init(&c);
        if (r < 0) {
                config_error_set(err, main_path, 0, "out of memory");
                return r;
        }
        r = load_file(&c, main_path, true, err);
        if (r >= 0)
                r = load_dropins(&c, dropin_dir, err);
        if (r < 0) {
                config_done(&c);
                return r;
        }
        *out = c;
        return 0;
}
