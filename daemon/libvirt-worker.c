/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "libvirt-worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

struct lv_worker {
        pthread_mutex_t lock;
        pthread_cond_t cond;            /* jobs queued, or stop */
        pthread_cond_t idle;            /* the queue ran empty (for free) */
        pthread_t thread;
        bool started;
        bool stop;
        struct lv_job *queue, **queue_tail;     /* waiting to run */
        struct lv_job *finished, **finished_tail;       /* run, done() not yet called */
        struct lv_job *running;
        uint64_t running_since;
        unsigned pending;               /* loop thread's count: submitted, done() not called */
        int done_fd;
        sd_event_source *done_source;
};

static void *worker_main(void *userdata)
{
        struct lv_worker *w = userdata;
        uint64_t one = 1;

        pthread_mutex_lock(&w->lock);
        for (;;) {
                while (!w->queue && !w->stop)
                        pthread_cond_wait(&w->cond, &w->lock);
                if (!w->queue)
                        break;
                struct lv_job *j = w->queue;
                w->queue = j->next;
                if (!w->queue)
                        w->queue_tail = &w->queue;
                j->next = NULL;
                w->running = j;
                w->running_since = monotonic_usec();
                pthread_mutex_unlock(&w->lock);

                j->run(j);

                pthread_mutex_lock(&w->lock);
                w->running = NULL;
                w->running_since = 0;
                *w->finished_tail = j;
                w->finished_tail = &j->next;
                (void) !write(w->done_fd, &one, sizeof(one));
                if (!w->queue)
                        pthread_cond_broadcast(&w->idle);
        }
        pthread_cond_broadcast(&w->idle);
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

/* Loop thread: call done() of every finished job, in order. */
static void worker_reap(struct lv_worker *w)
{
        struct lv_job *list;

        pthread_mutex_lock(&w->lock);
        list = w->finished;
        w->finished = NULL;
        w->finished_tail = &w->finished;
        pthread_mutex_unlock(&w->lock);
        while (list) {
                struct lv_job *j = list;
                list = j->next;
                j->next = NULL;
                w->pending--;
                j->done(j, false);
        }
}

static int on_done(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct lv_worker *w = userdata;
        uint64_t n;

        (void) !read(w->done_fd, &n, sizeof(n));
        worker_reap(w);
        return 0;
}

int lv_worker_new(sd_event *e, struct lv_worker **out)
{
        struct lv_worker *w = calloc(1, sizeof(*w));
        int r;

        if (!w)
                return -ENOMEM;
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        pthread_cond_init(&w->idle, NULL);
        w->queue_tail = &w->queue;
        w->finished_tail = &w->finished;
        w->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->done_fd < 0) {
                r = -errno;
                goto fail;
        }
        r = sd_event_add_io(e, &w->done_source, w->done_fd, EPOLLIN, on_done, w);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_description(w->done_source, "libvirt-worker-done");
        r = -pthread_create(&w->thread, NULL, worker_main, w);
        if (r < 0)
                goto fail;
        w->started = true;
        *out = w;
        return 0;
fail:
        sd_event_source_unref(w->done_source);
        if (w->done_fd >= 0)
                close(w->done_fd);
        free(w);
        return r;
}

void lv_worker_submit(struct lv_worker *w, struct lv_job *j)
{
        j->next = NULL;
        pthread_mutex_lock(&w->lock);
        *w->queue_tail = j;
        w->queue_tail = &j->next;
        w->pending++;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
}

uint64_t lv_worker_busy_since(struct lv_worker *w, const char **what)
{
        uint64_t since;

        pthread_mutex_lock(&w->lock);
        since = w->running_since;
        if (what)
                *what = w->running ? w->running->what : NULL;
        pthread_mutex_unlock(&w->lock);
        return since;
}

void lv_worker_progress(struct lv_worker *w)
{
        pthread_mutex_lock(&w->lock);
        if (w->running)
                w->running_since = monotonic_usec();
        pthread_mutex_unlock(&w->lock);
}

unsigned lv_worker_pending(struct lv_worker *w)
{
        return w->pending;
}

bool lv_worker_free(struct lv_worker *w, uint64_t wait_usec)
{
        struct timespec deadline;
        bool finished = true;

        if (!w)
                return true;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += (time_t)(wait_usec / 1000000);
        deadline.tv_nsec += (long)(wait_usec % 1000000) * 1000;
        if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        pthread_cond_signal(&w->cond);
        while ((w->queue || w->running) && finished)
                finished = pthread_cond_timedwait(&w->idle, &w->lock, &deadline) == 0;
        finished = !w->queue && !w->running;
        pthread_mutex_unlock(&w->lock);
        if (!finished) {
                /* Stuck in a libvirt call (libvirtd hung): leave it. */
                log_debug("libvirt worker still busy at exit; leaving it behind");
                pthread_detach(w->thread);
                return false;
        }
        pthread_join(w->thread, NULL);
        worker_reap(w);
        sd_event_source_unref(w->done_source);
        close(w->done_fd);
        pthread_cond_destroy(&w->cond);
        pthread_cond_destroy(&w->idle);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return true;
}
