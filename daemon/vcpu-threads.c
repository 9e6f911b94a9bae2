/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "vcpu-threads.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>


#include "fileio.h"
#include "log.h"
#include "lib/util.h"
#include "macro.h"
#include "xml-util.h"

#define STATUS_DIR_DEFAULT "/run/libvirt/qemu"
#define PROC_ROOT_DEFAULT "/proc"
/* libvirt's status files are ~10 KiB; anything far larger is not one. */
#define STATUS_FILE_MAX (4u << 20)
#define CMDLINE_MAX (1u << 20)

static void closedirp(DIR **d)
{
        if (*d)
                closedir(*d);
}
#define _cleanup_closedir_ _cleanup_(closedirp)

static const char *proc_root(const struct vcpu_threads_source *src)
{
        return src && src->proc_root ? src->proc_root : PROC_ROOT_DEFAULT;
}

const char *vcpu_threads_status_dir(const struct vcpu_threads_source *src)
{
        return src && src->status_dir ? src->status_dir : STATUS_DIR_DEFAULT;
}

bool vcpu_threads_is_status_file(const char *name)
{
        size_t len = strlen(name);

        return len > 4 && strcmp(name + len - 4, ".xml") == 0;
}

static int parse_pid(const char *s, pid_t *out)
{
        unsigned long v;
        int r = parse_ulong(s, INT_MAX, &v);
        if (r < 0)
                return r;
        if (v == 0)
                return -EINVAL;
        *out = (pid_t)v;
        return 0;
}

/* The canonical text form 8-4-4-4-12; anything else never matches. */
/* "CPU 3/KVM" or "CPU 3/TCG", exactly: QEMU's name for vCPU thread 3. */
static bool parse_vcpu_comm(const char *comm, unsigned *vcpu)
{
        unsigned long n = 0;
        const char *p;

        if (strncmp(comm, "CPU ", 4) != 0)
                return false;
        p = comm + 4;
        if (!isdigit((unsigned char)*p))
                return false;
        for (; isdigit((unsigned char)*p); p++) {
                n = n * 10 + (unsigned long)(*p - '0');
                if (n > 1u << 20)
                        return false;
        }
        if (strcmp(p, "/KVM") != 0 && strcmp(p, "/TCG") != 0)
                return false;
        *vcpu = (unsigned)n;
        return true;
}

static int read_thread_comm(const char *proc, pid_t pid, pid_t tid, char comm[static 32])
{
        char path[PATH_MAX];
        char *text = NULL;
        size_t len;
        int r;

        snprintf(path, sizeof(path), "%s/%d/task/%d/comm", proc, (int)pid, (int)tid);
        r = read_file_full(path, 4096, &text, &len);
        if (r < 0)
                return r;
        if (len > 0 && text[len - 1] == '\n')
                text[len - 1] = '\0';
        snprintf(comm, 32, "%s", text);
        free(text);
        return 0;
}

static bool process_exists(const char *proc, pid_t pid)
{
        char path[PATH_MAX];
        struct stat st;

        snprintf(path, sizeof(path), "%s/%d", proc, (int)pid);
        return stat(path, &st) == 0;
}

/* Does process @pid run with `-uuid UUID`?  1 yes, 0 no, negative errno
 * when its cmdline cannot be read (typically: it exited). */
static int cmdline_has_uuid(const char *proc, pid_t pid, const char *uuid)
{
        char path[PATH_MAX];
        _cleanup_free_ char *args = NULL;
        size_t len;
        int r;

        snprintf(path, sizeof(path), "%s/%d/cmdline", proc, (int)pid);
        r = read_file_full(path, CMDLINE_MAX, &args, &len);
        if (r < 0)
                return r;
        /* Arguments are NUL separated; the buffer's extra NUL ends the last. */
        for (size_t i = 0; i < len;) {
                const char *arg = args + i;
                size_t alen = strlen(arg);
                size_t next = i + alen + 1;

                if ((strcmp(arg, "-uuid") == 0 || strcmp(arg, "--uuid") == 0) && next < len &&
                    strcasecmp(args + next, uuid) == 0)
                        return 1;
                i = next;
        }
        return 0;
}

static int threads_append(struct vcpu_threads *t, size_t *cap, unsigned vcpu, pid_t tid,
                          unsigned long long start_time)
{
        if (t->n == *cap) {
                size_t c = *cap ? *cap * 2 : 8;
                struct vcpu_thread *bigger = realloc(t->threads, c * sizeof(*bigger));
                if (!bigger)
                        return -ENOMEM;
                t->threads = bigger;
                *cap = c;
        }
        t->threads[t->n++] = (struct vcpu_thread){ .vcpu = vcpu, .tid = tid, .start_time = start_time };
        return 0;
}

static int thread_cmp(const void *a, const void *b)
{
        const struct vcpu_thread *x = a, *y = b;
        if (x->vcpu != y->vcpu)
                return x->vcpu < y->vcpu ? -1 : 1;
        return x->tid < y->tid ? -1 : x->tid > y->tid;
}

/* Sort by vCPU and drop every vCPU number claimed by two threads: which one
 * is real cannot be told, and a wrong guess would pin a stranger. */
static void threads_sort_unique(struct vcpu_threads *t)
{
        size_t w = 0;

        if (t->n == 0)
                return;  /* qsort(NULL, 0, ...) is undefined */
        qsort(t->threads, t->n, sizeof(*t->threads), thread_cmp);
        for (size_t i = 0; i < t->n;) {
                size_t j = i + 1;
                while (j < t->n && t->threads[j].vcpu == t->threads[i].vcpu)
                        j++;
                if (j - i == 1)
                        t->threads[w++] = t->threads[i];
                else {
                        log_debug("pid %d: %zu threads claim vCPU %u, ignoring them",
                                  (int)t->qemu_pid, j - i, t->threads[i].vcpu);
                        t->n_rejected += j - i;
                }
                i = j;
        }
        t->n = w;
}

/* Fallback: every task of @pid named like a vCPU thread. */
static int threads_from_names(const char *proc, pid_t pid, struct vcpu_threads *t)
{
        char path[PATH_MAX];
        _cleanup_closedir_ DIR *d = NULL;
        struct dirent *de;
        size_t cap = 0;

        snprintf(path, sizeof(path), "%s/%d/task", proc, (int)pid);
        d = opendir(path);
        if (!d)
                return errno == ENOENT ? -ESRCH : -errno;
        t->n = 0;
        while ((de = readdir(d))) {
                char comm[32];
                unsigned vcpu;
                pid_t tid;

                if (parse_pid(de->d_name, &tid) < 0)
                        continue;
                unsigned long long start;

                /* A task that exits between readdir and read is simply not ours. */
                if (read_thread_comm(proc, pid, tid, comm) < 0 || !parse_vcpu_comm(comm, &vcpu) ||
                    vcpu_thread_start_time(proc, pid, tid, &start) < 0)
                        continue;
                int r = threads_append(t, &cap, vcpu, tid, start);
                if (r < 0)
                        return r;
        }
        if (t->n == 0 && !process_exists(proc, pid))
                return -ESRCH;
        t->origin = VCPU_THREADS_THREAD_NAMES;
        threads_sort_unique(t);
        return 0;
}

/* What a status file says about its domain. */
struct status_info {
        pid_t pid;
        bool has_vcpus;                 /* a <vcpus> element was present */
        size_t n;
        struct vcpu_thread *vcpus;      /* as listed, unchecked */
};

static int status_read_vcpus(xmlNode *vcpus, struct status_info *info)
{
        size_t cap = 0;

        for (xmlNode *c = vcpus->children; c; c = c->next) {
                if (c->type != XML_ELEMENT_NODE || xmlStrcmp(c->name, BAD_CAST "vcpu") != 0)
                        continue;
                _cleanup_xml_ xmlChar *id = xmlGetProp(c, BAD_CAST "id");
                _cleanup_xml_ xmlChar *pid = xmlGetProp(c, BAD_CAST "pid");
                unsigned long vcpu;
                pid_t tid;

                /* An entry without a usable thread id cannot be checked: skip it. */
                if (parse_ulong((const char *)id, UINT_MAX, &vcpu) < 0 ||
                    parse_pid((const char *)pid, &tid) < 0)
                        continue;
                if (info->n == cap) {
                        cap = cap ? cap * 2 : 8;
                        struct vcpu_thread *bigger = realloc(info->vcpus, cap * sizeof(*bigger));
                        if (!bigger)
                                return -ENOMEM;
                        info->vcpus = bigger;
                }
                info->vcpus[info->n++] = (struct vcpu_thread){ .vcpu = (unsigned)vcpu, .tid = tid };
        }
        return 0;
}

/* Parse one status file: 0 and its domain's UUID (lower case) in @uuid_out
 * and @info filled, or negative errno when it is not a usable status file. */
static int status_parse_any(const char *buf, size_t len, char uuid_out[static 37], struct status_info *info)
{
        _cleanup_xml_doc_ xmlDoc *doc = NULL;
        xmlNode *root, *domain, *uuid_node;
        size_t n;

        if (len > INT_MAX)
                return -EFBIG;
        doc = xmlReadMemory(buf, (int)len, NULL, NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        if (!doc)
                return -EBADMSG;
        root = xmlDocGetRootElement(doc);
        if (!root || xmlStrcmp(root->name, BAD_CAST "domstatus") != 0)
                return -EBADMSG;
        domain = xml_child(root, "domain");
        uuid_node = xml_child(domain, "uuid");
        if (!uuid_node)
                return -EBADMSG;
        _cleanup_xml_ xmlChar *text = xmlNodeGetContent(uuid_node);
        const char *u = text ? strip_view((const char *)text, &n) : NULL;
        if (!u || n != 36)
                return -EBADMSG;
        for (size_t i = 0; i < n; i++)
                uuid_out[i] = (char)tolower((unsigned char)u[i]);
        uuid_out[n] = '\0';
        if (!uuid_is_dashed(uuid_out))
                return -EBADMSG;

        _cleanup_xml_ xmlChar *pid = xmlGetProp(root, BAD_CAST "pid");
        if (parse_pid((const char *)pid, &info->pid) < 0)
                return -EBADMSG;
        xmlNode *vcpus = xml_child(root, "vcpus");
        info->has_vcpus = vcpus != NULL;
        if (vcpus) {
                int r = status_read_vcpus(vcpus, info);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Parse one status file: 1 when it is @uuid's (and @info is filled), 0 when
 * it belongs to another domain, negative errno when it is not a usable
 * status file. */
static int status_parse(const char *buf, size_t len, const char *uuid, struct status_info *info)
{
        char found[37];
        int r = status_parse_any(buf, len, found, info);

        if (r < 0)
                return r;
        if (strcasecmp(found, uuid) != 0) {
                free(info->vcpus);
                *info = (struct status_info){};
                return 0;
        }
        return 1;
}

/* Find @uuid's status file in @dir.  Entry names come from readdir and are
 * never built from a domain name.  Returns 0 and fills @info / @path_out,
 * -ENOENT when no file matches, negative errno when the directory is
 * unreadable. */
static int status_find(const char *dir, const char *uuid, struct status_info *info, char **path_out)
{
        _cleanup_closedir_ DIR *d = opendir(dir);
        struct dirent *de;

        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                _cleanup_free_ char *buf = NULL;
                size_t len;
                int fd, r;

                if (!vcpu_threads_is_status_file(de->d_name))
                        continue;
                fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
                if (fd < 0)
                        continue;
                r = read_fd_full(fd, STATUS_FILE_MAX, &buf, &len);
                close(fd);
                /* Cheap filter: most files are other domains'. */
                if (r < 0 || !strcasestr(buf, uuid))
                        continue;
                r = status_parse(buf, len, uuid, info);
                if (r < 0)
                        log_debug("%s/%s: not a usable libvirt status file", dir, de->d_name);
                if (r <= 0) {
                        free(info->vcpus);
                        *info = (struct status_info){};
                        continue;
                }
                if (asprintf(path_out, "%s/%s", dir, de->d_name) < 0) {
                        free(info->vcpus);
                        return -ENOMEM;
                }
                return 0;
        }
        return -ENOENT;
}

/* ---- the status index ---- */

#define INDEX_BUCKETS 4096u

struct status_entry {
        char *name;                     /* entry of the directory */
        char uuid[37];                  /* lower case */
        struct status_info info;
        struct status_entry *next_name, *next_uuid;
};

struct status_index {
        char *dir;
        size_t n;
        bool valid;
        struct status_entry *by_name[INDEX_BUCKETS];
        struct status_entry *by_uuid[INDEX_BUCKETS];
};

static unsigned hash_str(const char *p, bool fold)
{
        uint32_t h = 2166136261u;      /* FNV-1a */

        for (; *p; p++) {
                h ^= (uint32_t)(unsigned char)(fold ? tolower((unsigned char)*p) : *p);
                h *= 16777619u;
        }
        return h % INDEX_BUCKETS;
}

int status_index_new(const struct vcpu_threads_source *src, struct status_index **out)
{
        struct status_index *ix = calloc(1, sizeof(*ix));

        if (!ix)
                return -ENOMEM;
        ix->dir = strdup(vcpu_threads_status_dir(src));
        if (!ix->dir) {
                free(ix);
                return -ENOMEM;
        }
        *out = ix;
        return 0;
}

static void entry_free(struct status_entry *e)
{
        free(e->name);
        free(e->info.vcpus);
        free(e);
}

static struct status_entry *index_by_name(const struct status_index *ix, const char *name,
                                          struct status_entry ***slot)
{
        struct status_entry **p = (struct status_entry **)&ix->by_name[hash_str(name, false)];

        for (; *p; p = &(*p)->next_name)
                if (strcmp((*p)->name, name) == 0)
                        break;
        if (slot)
                *slot = p;
        return *p;
}

static const struct status_entry *index_by_uuid(const struct status_index *ix, const char *uuid)
{
        for (const struct status_entry *e = ix->by_uuid[hash_str(uuid, true)]; e; e = e->next_uuid)
                if (strcasecmp(e->uuid, uuid) == 0)
                        return e;
        return NULL;
}

static void index_unlink(struct status_index *ix, struct status_entry *e)
{
        struct status_entry **p;

        for (p = &ix->by_name[hash_str(e->name, false)]; *p; p = &(*p)->next_name)
                if (*p == e) {
                        *p = e->next_name;
                        break;
                }
        for (p = &ix->by_uuid[hash_str(e->uuid, true)]; *p; p = &(*p)->next_uuid)
                if (*p == e) {
                        *p = e->next_uuid;
                        break;
                }
        ix->n--;
}

static void index_clear(struct status_index *ix)
{
        for (unsigned b = 0; b < INDEX_BUCKETS; b++) {
                for (struct status_entry *e = ix->by_name[b], *next; e; e = next) {
                        next = e->next_name;
                        entry_free(e);
                }
                ix->by_name[b] = ix->by_uuid[b] = NULL;
        }
        ix->n = 0;
}

void status_index_free(struct status_index *ix)
{
        if (!ix)
                return;
        index_clear(ix);
        free(ix->dir);
        free(ix);
}

size_t status_index_size(const struct status_index *ix)
{
        return ix ? ix->n : 0;
}

bool status_index_valid(const struct status_index *ix)
{
        return ix && ix->valid;
}

void status_index_invalidate(struct status_index *ix)
{
        index_clear(ix);
        ix->valid = false;
}

/* Read and parse @name of @dirfd into a new entry; -ENOENT when it is gone,
 * other negative errno when it is no usable status file. */
static int entry_read(int dirfd, const char *name, struct status_entry **out)
{
        _cleanup_free_ char *buf = NULL;
        struct status_entry *e;
        size_t len;
        int fd, r;

        fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        r = read_fd_full(fd, STATUS_FILE_MAX, &buf, &len);
        close(fd);
        if (r < 0)
                return r;
        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        r = status_parse_any(buf, len, e->uuid, &e->info);
        if (r >= 0 && !(e->name = strdup(name)))
                r = -ENOMEM;
        if (r < 0) {
                entry_free(e);
                return r;
        }
        *out = e;
        return 0;
}

/* Takes @e over.  A second file claiming a UUID already indexed: the last
 * one read wins (libvirt keeps one file per domain; a rename settles). */
static void index_insert(struct status_index *ix, struct status_entry *e)
{
        unsigned bn = hash_str(e->name, false), bu = hash_str(e->uuid, true);

        e->next_name = ix->by_name[bn];
        ix->by_name[bn] = e;
        e->next_uuid = ix->by_uuid[bu];
        ix->by_uuid[bu] = e;
        ix->n++;
}

int status_index_rebuild(struct status_index *ix)
{
        _cleanup_closedir_ DIR *d = NULL;
        struct dirent *de;

        index_clear(ix);
        ix->valid = false;
        d = opendir(ix->dir);
        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                struct status_entry *e;
                int r;

                if (!vcpu_threads_is_status_file(de->d_name))
                        continue;
                r = entry_read(dirfd(d), de->d_name, &e);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        if (r != -ENOENT)
                                log_debug("%s/%s: not a usable libvirt status file", ix->dir, de->d_name);
                        continue;
                }
                index_insert(ix, e);
        }
        ix->valid = true;
        return (int)(ix->n > INT_MAX ? INT_MAX : ix->n);
}

static bool info_equal(const struct status_info *a, const struct status_info *b)
{
        return a->pid == b->pid && a->has_vcpus == b->has_vcpus && a->n == b->n &&
               (a->n == 0 || memcmp(a->vcpus, b->vcpus, a->n * sizeof(*a->vcpus)) == 0);
}

int status_index_update(struct status_index *ix, const char *name, char old_uuid[static 37],
                        char new_uuid[static 37])
{
        struct status_entry **slot, *old, *e = NULL;
        int dfd, r;

        old_uuid[0] = new_uuid[0] = '\0';
        if (!vcpu_threads_is_status_file(name) || strchr(name, '/'))
                return 0;
        dfd = open(ix->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        r = entry_read(dfd, name, &e);
        close(dfd);
        if (r == -ENOMEM)
                return r;
        old = index_by_name(ix, name, &slot);
        if (old)
                snprintf(old_uuid, 37, "%s", old->uuid);
        if (r < 0) {
                /* Gone, or half written: what it said no longer holds. */
                if (!old)
                        return 0;
                index_unlink(ix, old);
                entry_free(old);
                return 1;
        }
        snprintf(new_uuid, 37, "%s", e->uuid);
        bool same = old && strcmp(old->uuid, e->uuid) == 0 && info_equal(&old->info, &e->info);
        if (old) {
                index_unlink(ix, old);
                entry_free(old);
        }
        index_insert(ix, e);
        return same ? 0 : 1;
}

/* @uuid's entry of the index as a status_info of its own and the path. */
static int status_from_index(const struct status_index *ix, const char *uuid, struct status_info *info,
                             char **path_out)
{
        const struct status_entry *e = index_by_uuid(ix, uuid);

        if (!e)
                return -ENOENT;
        *info = e->info;
        info->vcpus = NULL;
        if (e->info.n) {
                info->vcpus = malloc(e->info.n * sizeof(*info->vcpus));
                if (!info->vcpus)
                        return -ENOMEM;
                memcpy(info->vcpus, e->info.vcpus, e->info.n * sizeof(*info->vcpus));
        }
        if (asprintf(path_out, "%s/%s", ix->dir, e->name) < 0) {
                free(info->vcpus);
                return -ENOMEM;
        }
        return 0;
}

/* ---- start times ---- */

int vcpu_thread_start_time(const char *proc, pid_t pid, pid_t tid, unsigned long long *out)
{
        char path[PATH_MAX];
        _cleanup_free_ char *text = NULL;
        size_t len;
        const char *p;
        int r;

        snprintf(path, sizeof(path), "%s/%d/task/%d/stat", proc ? proc : PROC_ROOT_DEFAULT, (int)pid, (int)tid);
        r = read_file_full(path, 4096, &text, &len);
        if (r == -ENOENT)
                return -ESRCH;
        if (r < 0)
                return r;
        /* "TID (comm) S ppid ...": comm may hold blanks and ')'; fields
         * count from the last ')'.  Field 3 is the state, 22 the start. */
        p = strrchr(text, ')');
        if (!p)
                return -EBADMSG;
        p++;
        for (int field = 3; field <= 22; field++) {
                while (*p == ' ')
                        p++;
                if (!*p)
                        return -EBADMSG;
                if (field == 22) {
                        char *end;
                        errno = 0;
                        unsigned long long v = strtoull(p, &end, 10);
                        if (errno || end == p || (*end && *end != ' ' && *end != '\n'))
                                return -EBADMSG;
                        *out = v;
                        return 0;
                }
                while (*p && *p != ' ')
                        p++;
        }
        return -EBADMSG;
}

/* Keep the status file's threads that really are vCPU @vcpu of info->pid. */
static int threads_from_status(const char *proc, const struct status_info *info,
                               struct vcpu_threads *t)
{
        size_t cap = 0;

        for (size_t i = 0; i < info->n; i++) {
                const struct vcpu_thread *v = &info->vcpus[i];
                char comm[32];
                unsigned named;
                unsigned long long start = 0;
                int r = read_thread_comm(proc, info->pid, v->tid, comm);

                /* The start time read after the name: a thread that the
                 * name check saw and that then exits has no stat either. */
                if (r >= 0)
                        r = vcpu_thread_start_time(proc, info->pid, v->tid, &start);
                if (r < 0 || !parse_vcpu_comm(comm, &named) || named != v->vcpu) {
                        log_debug("status file lists tid %d as vCPU %u of pid %d, but %s%s%s: ignoring it",
                                  (int)v->tid, v->vcpu, (int)info->pid,
                                  r < 0 ? "it is not a task of that process" : "it is named \"",
                                  r < 0 ? "" : comm, r < 0 ? "" : "\"");
                        t->n_rejected++;
                        continue;
                }
                r = threads_append(t, &cap, v->vcpu, v->tid, start);
                if (r < 0)
                        return r;
        }
        if (t->n == 0 && !process_exists(proc, info->pid))
                return -ESRCH;
        t->origin = VCPU_THREADS_STATUS_FILE;
        threads_sort_unique(t);
        return 0;
}

/* The status file route.  -ENOENT (or another error) means: try the
 * fallback; -ESRCH means the process it names is gone. */
static int find_by_status(const struct vcpu_threads_source *src, const char *uuid,
                          struct vcpu_threads *t)
{
        const char *proc = proc_root(src);
        struct status_info info = {};
        _cleanup_free_ char *path = NULL;
        int r;

        if (src && src->index && status_index_valid(src->index))
                r = status_from_index(src->index, uuid, &info, &path);
        else
                r = status_find(vcpu_threads_status_dir(src), uuid, &info, &path);
        if (r < 0)
                return r;
        /* A stale file (libvirtd died with the guest) may name a reused pid:
         * the process must still carry the domain's UUID. */
        r = cmdline_has_uuid(proc, info.pid, uuid);
        if (r <= 0) {
                log_debug("%s names pid %d, which %s", path ? path : "status file", (int)info.pid,
                          r == 0 ? "is another process" : "is gone");
                free(info.vcpus);
                return r == 0 ? -ENOENT : -ESRCH;
        }
        t->qemu_pid = info.pid;
        /* No <vcpus> at all: this libvirt did not record threads, names will do. */
        if (info.has_vcpus && info.n > 0)
                r = threads_from_status(proc, &info, t);
        else
                r = threads_from_names(proc, info.pid, t);
        free(info.vcpus);
        if (r < 0)
                return r;
        t->status_file = TAKE_PTR(path);
        return 0;
}

/* uid 0 or our own, or a user libvirt runs QEMU as: qemu.conf's default
 * user on Debian ("libvirt-qemu") and on Fedora ("qemu"). */
static bool uid_is_qemu_user(uid_t uid)
{
        static const char *const users[] = { "libvirt-qemu", "qemu" };

        if (uid == 0 || uid == geteuid())
                return true;
        for (size_t i = 0; i < ELEMENTSOF(users); i++) {
                struct passwd *pw = getpwnam(users[i]);
                if (pw && pw->pw_uid == uid)
                        return true;
        }
        return false;
}

/* Some line of /proc/PID/cgroup puts it under libvirt's machine tree:
 * "/machine/..." (libvirt without systemd) or "/machine.slice/..." (systemd).
 * Those directories are root's: no other user can move a process there. */
static bool cgroup_is_machine(const char *text)
{
        for (const char *line = text; *line;) {
                const char *eol = strchrnul(line, '\n');
                const char *c1 = memchr(line, ':', (size_t)(eol - line));
                const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(eol - c1 - 1)) : NULL;

                if (c2 && (strncmp(c2 + 1, "/machine/", 9) == 0 || strncmp(c2 + 1, "/machine.slice/", 15) == 0))
                        return true;
                line = *eol ? eol + 1 : eol;
        }
        return false;
}

/*
 * Could @pid be a QEMU that libvirt started?  A command line proves nothing
 * (any user can start a process with "-uuid X"); the fallback trusts only a
 * process that runs as the QEMU user (or root) and sits in a machine cgroup.
 */
static bool process_is_libvirts(const char *proc, pid_t pid)
{
        char path[PATH_MAX];
        _cleanup_free_ char *text = NULL;
        struct stat st;
        size_t len;

        snprintf(path, sizeof(path), "%s/%d", proc, (int)pid);
        if (stat(path, &st) < 0 || !uid_is_qemu_user(st.st_uid))
                return false;
        snprintf(path, sizeof(path), "%s/%d/cgroup", proc, (int)pid);
        if (read_file_full(path, 1u << 16, &text, &len) < 0)
                return false;
        return cgroup_is_machine(text);
}

/* The QEMU process started with `-uuid UUID` that is libvirt's: -ENOENT if
 * none, -ENOTUNIQ if several such claim it. */
static int find_qemu_by_cmdline(const char *proc, const char *uuid, pid_t *out)
{
        _cleanup_closedir_ DIR *d = opendir(proc);
        struct dirent *de;
        pid_t found = 0;

        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                pid_t pid;

                if (parse_pid(de->d_name, &pid) < 0)
                        continue;
                /* Processes come and go while we scan: unreadable is not ours. */
                if (cmdline_has_uuid(proc, pid, uuid) <= 0)
                        continue;
                if (!process_is_libvirts(proc, pid)) {
                        log_debug("pid %d claims -uuid %s but is not libvirt's (user, cgroup): ignoring it",
                                  (int)pid, uuid);
                        continue;
                }
                if (found)
                        return -ENOTUNIQ;
                found = pid;
        }
        if (!found)
                return -ENOENT;
        *out = found;
        return 0;
}

int vcpu_threads_find(const struct vcpu_threads_source *src, const char *uuid,
                      struct vcpu_threads *out)
{
        struct vcpu_threads t = {};
        bool vanished;
        int r;

        if (!uuid_is_dashed(uuid))
                return -EINVAL;

        r = find_by_status(src, uuid, &t);
        if (r == 0) {
                *out = t;
                return 0;
        }
        vcpu_threads_done(&t);
        if (r == -ENOMEM)
                return r;
        if (r != -ENOENT && r != -ESRCH)
                log_debug("No usable libvirt status file for %s (%s), using thread names",
                          uuid, strerror(-r));
        vanished = r == -ESRCH;

        r = find_qemu_by_cmdline(proc_root(src), uuid, &t.qemu_pid);
        if (r == -ENOENT && vanished)
                r = -ESRCH;
        if (r == 0)
                r = threads_from_names(proc_root(src), t.qemu_pid, &t);
        if (r < 0) {
                vcpu_threads_done(&t);
                return r;
        }
        *out = t;
        return 0;
}

void vcpu_threads_done(struct vcpu_threads *t)
{
        free(t->threads);
        free(t->status_file);
        *t = (struct vcpu_threads){};
}

bool vcpu_thread_verify(const struct vcpu_threads_source *src, pid_t pid, pid_t tid,
                        unsigned *vcpu)
{
        char comm[32];
        unsigned n;

        if (pid <= 0 || tid <= 0)
                return false;
        if (read_thread_comm(proc_root(src), pid, tid, comm) < 0 || !parse_vcpu_comm(comm, &n))
                return false;
        if (vcpu)
                *vcpu = n;
        return true;
}
