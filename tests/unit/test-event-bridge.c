/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The libvirt -> sd-event bridge, driven through libvirt's own public
 * virEvent* API (which calls the registered implementation), on pipes and
 * timers: no libvirtd needed.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/libvirt.h>

#include "libvirt.h"
#include "tap.h"

static sd_event *loop;

struct watch_rec {
        int calls;
        int last_events;
        int last_fd;
        bool remove_self;
        int id;
};

static void on_watch(int id, int fd, int events, void *opaque)
{
        struct watch_rec *w = opaque;
        char buf[16];

        w->calls++;
        w->last_events = events;
        w->last_fd = fd;
        if (events & VIR_EVENT_HANDLE_READABLE)
                (void) !read(fd, buf, sizeof(buf));
        if (w->remove_self)
                CHECK(virEventRemoveHandle(id) == 0, "remove from inside the callback failed");
}

static int freed;
static bool in_remove;

static void on_free(void *opaque)
{
        CHECK(!in_remove, "free callback ran synchronously inside remove");
        freed++;
}

static uint64_t now_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Run the loop until @cond holds or @ms pass, at least one iteration;
 * evaluates to @cond.  Positive checks wait generously (this host is often
 * loaded by other tests); "must not happen" checks use short windows. */
#define RUN_UNTIL(cond, ms)                                                           \
        ({                                                                            \
                uint64_t _deadline = now_usec() + (uint64_t)(ms) * 1000;              \
                do                                                                    \
                        (void) sd_event_run(loop, 10 * 1000);                         \
                while (!(cond) && now_usec() < _deadline);                            \
                (cond);                                                               \
        })
#define run_for(ms) ((void) RUN_UNTIL(false, ms))
#define PATIENCE_MS 2000

static void test_mapping(void)
{
        static const struct { int lv; uint32_t ep; } map[] = {
                { VIR_EVENT_HANDLE_READABLE, EPOLLIN },
                { VIR_EVENT_HANDLE_WRITABLE, EPOLLOUT },
                { VIR_EVENT_HANDLE_ERROR, EPOLLERR },
                { VIR_EVENT_HANDLE_HANGUP, EPOLLHUP },
        };
        int all_lv = 0;
        uint32_t all_ep = 0;

        for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
                CHECK(lv_event_to_epoll(map[i].lv) == map[i].ep, "to_epoll(%d)", map[i].lv);
                CHECK(lv_event_from_epoll(map[i].ep) == map[i].lv, "from_epoll(%u)", map[i].ep);
                all_lv |= map[i].lv;
                all_ep |= map[i].ep;
        }
        CHECK(lv_event_to_epoll(all_lv) == all_ep, "combined to_epoll");
        CHECK(lv_event_from_epoll(all_ep) == all_lv, "combined from_epoll");
        CHECK(lv_event_to_epoll(0) == 0, "no events");
        CHECK(lv_event_from_epoll(EPOLLRDHUP) == VIR_EVENT_HANDLE_HANGUP, "RDHUP is a hangup");
}

static void test_handles(void)
{
        struct watch_rec w = { 0 };
        int p[2], id;

        CHECK(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0, "pipe");
        id = virEventAddHandle(p[0], VIR_EVENT_HANDLE_READABLE, on_watch, &w, on_free);
        CHECK(id > 0, "add handle returned %d", id);

        run_for(20);
        CHECK(w.calls == 0, "idle pipe reported %d times", w.calls);

        CHECK(write(p[1], "x", 1) == 1, "write");
        RUN_UNTIL(w.calls > 0, PATIENCE_MS);
        run_for(20);
        CHECK(w.calls == 1, "readable pipe reported %d times", w.calls);
        CHECK(w.last_events == VIR_EVENT_HANDLE_READABLE, "events %d", w.last_events);
        CHECK(w.last_fd == p[0], "fd %d", w.last_fd);

        /* events == 0 must silence the watch even though data is waiting. */
        virEventUpdateHandle(id, 0);
        CHECK(write(p[1], "y", 1) == 1, "write");
        w.calls = 0;
        run_for(30);
        CHECK(w.calls == 0, "disabled watch reported %d times", w.calls);

        virEventUpdateHandle(id, VIR_EVENT_HANDLE_READABLE);
        RUN_UNTIL(w.calls > 0, PATIENCE_MS);
        run_for(20);
        CHECK(w.calls == 1, "re-enabled watch reported %d times", w.calls);

        /* The writer goes away: a hangup, even though only READABLE was asked. */
        close(p[1]);
        w.calls = 0;
        RUN_UNTIL(w.calls > 0, PATIENCE_MS);
        CHECK(w.calls >= 1 && (w.last_events & VIR_EVENT_HANDLE_HANGUP),
              "hangup not reported (calls %d, events %d)", w.calls, w.last_events);

        /* epoll reports a hangup even for an empty mask: 0 must still silence. */
        virEventUpdateHandle(id, 0);
        w.calls = 0;
        run_for(20);
        CHECK(w.calls == 0, "watch with events 0 reported a hangup %d times", w.calls);

        freed = 0;
        in_remove = true;
        CHECK(virEventRemoveHandle(id) == 0, "remove");
        in_remove = false;
        CHECK(freed == 0, "free callback ran inside remove");
        w.calls = 0;
        RUN_UNTIL(freed > 0, PATIENCE_MS);
        run_for(20);
        CHECK(freed == 1, "free callback ran %d times", freed);
        CHECK(w.calls == 0, "removed watch still reported");
        CHECK(virEventRemoveHandle(id) == -1, "second remove succeeded");
        close(p[0]);
}

static void test_writable_and_self_removal(void)
{
        struct watch_rec w = { .remove_self = true };
        int p[2], id;

        CHECK(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0, "pipe");
        id = virEventAddHandle(p[1], VIR_EVENT_HANDLE_WRITABLE, on_watch, &w, on_free);
        CHECK(id > 0, "add handle returned %d", id);
        freed = 0;
        RUN_UNTIL(freed > 0, PATIENCE_MS);
        run_for(20);
        CHECK(w.calls == 1, "self-removing watch called %d times", w.calls);
        CHECK(w.last_events == VIR_EVENT_HANDLE_WRITABLE, "events %d", w.last_events);
        CHECK(freed == 1, "free callback ran %d times", freed);
        close(p[0]);
        close(p[1]);
}

/* Two watches on one fd: libvirt allows it, epoll alone would not. */
static void test_same_fd_twice(void)
{
        struct watch_rec a = { 0 }, b = { 0 };
        int p[2], ida, idb;

        CHECK(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0, "pipe");
        ida = virEventAddHandle(p[1], VIR_EVENT_HANDLE_WRITABLE, on_watch, &a, NULL);
        idb = virEventAddHandle(p[1], VIR_EVENT_HANDLE_WRITABLE, on_watch, &b, NULL);
        CHECK(ida > 0 && idb > 0 && ida != idb, "ids %d %d", ida, idb);
        RUN_UNTIL(a.calls > 0 && b.calls > 0, PATIENCE_MS);
        CHECK(a.calls >= 1 && b.calls >= 1, "calls %d %d", a.calls, b.calls);
        CHECK(b.last_fd == p[1], "second watch reported fd %d, not libvirt's %d", b.last_fd, p[1]);
        CHECK(virEventRemoveHandle(ida) == 0 && virEventRemoveHandle(idb) == 0, "remove");
        close(p[0]);
        close(p[1]);
}

struct timer_rec {
        int calls;
        uint64_t at[16];        /* when the first calls came */
        int then_interval;      /* applied from inside the callback, unless -2 */
        bool remove_self;
};

static void on_timer(int id, void *opaque)
{
        struct timer_rec *t = opaque;

        if (t->calls < 16)
                t->at[t->calls] = now_usec();
        t->calls++;
        if (t->then_interval != -2)
                virEventUpdateTimeout(id, t->then_interval);
        if (t->remove_self) {
                in_remove = true;
                CHECK(virEventRemoveTimeout(id) == 0, "remove timeout from its callback");
                in_remove = false;
        }
}

static void test_timeouts(void)
{
        struct timer_rec zero = { .then_interval = -2 }, off = { .then_interval = -2 },
                         periodic = { .then_interval = -2 }, once = { .then_interval = -1 };
        int idz, ido, idp, idonce;

        /* 0: every iteration, and it must not block the loop. */
        idz = virEventAddTimeout(0, on_timer, &zero, NULL);
        CHECK(idz > 0, "add timeout 0");
        for (int i = 0; i < 5; i++)
                CHECK(sd_event_run(loop, 1000 * 1000) > 0, "loop blocked with a 0 timeout pending");
        CHECK(zero.calls == 5, "0 timeout fired %d times in 5 iterations", zero.calls);

        /* -1: never; and 0 -> -1 stops it. */
        virEventUpdateTimeout(idz, -1);
        ido = virEventAddTimeout(-1, on_timer, &off, NULL);
        CHECK(ido > 0, "add timeout -1");
        zero.calls = 0;
        run_for(50);
        CHECK(zero.calls == 0 && off.calls == 0, "disabled timeouts fired %d/%d", zero.calls, off.calls);

        /* 40 ms: fires again and again, never sooner than 40 ms apart (35:
         * the re-arm, just before the callback runs, may be preempted).
         * Counted from when it was added, not from the loop's last wakeup:
         * 20 ms after that wakeup, a timeout armed from the stale timestamp
         * fired after 20 ms. */
        usleep(20 * 1000);
        uint64_t added = now_usec();
        idp = virEventAddTimeout(40, on_timer, &periodic, NULL);
        CHECK(RUN_UNTIL(periodic.calls >= 4, PATIENCE_MS), "40 ms timeout fired %d times", periodic.calls);
        CHECK(periodic.at[0] >= added + 40000, "40 ms timeout fired after %.1f ms",
              (double)(periodic.at[0] - added) / 1000);
        for (int i = 1; i < 4; i++)
                CHECK(periodic.at[i] >= periodic.at[i - 1] + 35000, "40 ms timeout fired %.1f ms after the last",
                      (double)(periodic.at[i] - periodic.at[i - 1]) / 1000);
        virEventUpdateTimeout(idp, -1);
        periodic.calls = 0;
        run_for(100);
        CHECK(periodic.calls == 0, "disabled periodic timeout fired %d times", periodic.calls);

        /* -1 -> 20 ms re-arms it from now. */
        usleep(20 * 1000);
        uint64_t rearmed = now_usec();
        virEventUpdateTimeout(idp, 20);
        CHECK(RUN_UNTIL(periodic.calls >= 1, PATIENCE_MS), "re-armed timeout did not fire");
        CHECK(periodic.at[0] >= rearmed + 20000, "re-armed 20 ms timeout fired after %.1f ms",
              (double)(periodic.at[0] - rearmed) / 1000);
        virEventUpdateTimeout(idp, -1);

        /* 0 switched to a period and back. */
        virEventUpdateTimeout(idz, 30);
        zero.calls = 0;
        CHECK(RUN_UNTIL(zero.calls >= 2, PATIENCE_MS), "0 -> 30 ms timeout fired %d times", zero.calls);
        CHECK(zero.at[1] >= zero.at[0] + 25000, "0 -> 30 ms timeout fired %.1f ms apart",
              (double)(zero.at[1] - zero.at[0]) / 1000);
        virEventUpdateTimeout(idz, 0);
        zero.calls = 0;
        for (int i = 0; i < 3; i++)
                (void) sd_event_run(loop, 1000 * 1000);
        CHECK(zero.calls == 3, "30 ms -> 0 timeout fired %d times in 3 iterations", zero.calls);

        /* A one-shot the way libvirt uses them: fire at 0, disable itself. */
        idonce = virEventAddTimeout(0, on_timer, &once, NULL);
        RUN_UNTIL(once.calls > 0, PATIENCE_MS);
        run_for(30);
        CHECK(once.calls == 1, "self-disabling timeout fired %d times", once.calls);

        freed = 0;
        in_remove = true;
        CHECK(virEventRemoveTimeout(idz) == 0 && virEventRemoveTimeout(ido) == 0 &&
              virEventRemoveTimeout(idp) == 0 && virEventRemoveTimeout(idonce) == 0, "remove");
        in_remove = false;
        CHECK(virEventRemoveTimeout(idz) == -1, "second remove succeeded");
        run_for(20);
}

/* A 0 timeout left on must not starve watches (sd-event dispatches one
 * source per iteration). */
static void test_zero_timeout_is_fair(void)
{
        struct timer_rec t = { .then_interval = -2 };
        struct watch_rec w = { 0 };
        int p[2], tid, wid;

        CHECK(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0, "pipe");
        tid = virEventAddTimeout(0, on_timer, &t, NULL);
        (void) sd_event_run(loop, 0);
        wid = virEventAddHandle(p[1], VIR_EVENT_HANDLE_WRITABLE, on_watch, &w, NULL);
        for (int i = 0; i < 10; i++)
                (void) sd_event_run(loop, 0);
        CHECK(w.calls >= 4, "watch dispatched %d times in 10 iterations beside a 0 timeout", w.calls);
        CHECK(t.calls >= 4, "0 timeout dispatched %d times in 10 iterations beside a watch", t.calls);
        virEventRemoveTimeout(tid);
        virEventRemoveHandle(wid);
        close(p[0]);
        close(p[1]);
}

static void test_timeout_self_removal(void)
{
        struct timer_rec t = { .then_interval = -2, .remove_self = true };
        int id;

        freed = 0;
        id = virEventAddTimeout(10, on_timer, &t, on_free);
        CHECK(id > 0, "add timeout");
        RUN_UNTIL(freed > 0, PATIENCE_MS);
        run_for(30);
        CHECK(t.calls == 1, "self-removing timeout fired %d times", t.calls);
        CHECK(freed == 1, "free callback ran %d times", freed);
}

/* libvirt calls the bridge from its worker thread too: the changes take
 * effect on the loop, callbacks and free callbacks run on the loop thread. */
struct thread_op {
        int op;                         /* 0 add, 1 update, 2 remove, 3 add timeout */
        int fd, id, events;
        void *rec;
        int result;
};

static pthread_t loop_thread_id;
static bool callback_off_loop;

static void on_watch_thread_check(int id, int fd, int events, void *opaque)
{
        if (!pthread_equal(pthread_self(), loop_thread_id))
                callback_off_loop = true;
        on_watch(id, fd, events, opaque);
}

static void on_free_thread_check(void *opaque)
{
        if (!pthread_equal(pthread_self(), loop_thread_id))
                callback_off_loop = true;
        freed++;
}

static int timer_calls;
static void on_timer_thread_check(int id, void *opaque)
{
        if (!pthread_equal(pthread_self(), loop_thread_id))
                callback_off_loop = true;
        timer_calls++;
}

static void *thread_op_main(void *userdata)
{
        struct thread_op *op = userdata;

        switch (op->op) {
        case 0:
                op->result = virEventAddHandle(op->fd, op->events, on_watch_thread_check, op->rec, on_free_thread_check);
                break;
        case 1:
                virEventUpdateHandle(op->id, op->events);
                break;
        case 2:
                op->result = virEventRemoveHandle(op->id);
                break;
        case 3:
                op->result = virEventAddTimeout(10, on_timer_thread_check, NULL, on_free_thread_check);
                break;
        case 4:
                op->result = virEventRemoveTimeout(op->id);
                break;
        }
        return NULL;
}

static int in_thread(struct thread_op op)
{
        pthread_t t;

        pthread_create(&t, NULL, thread_op_main, &op);
        pthread_join(t, NULL);
        return op.result;
}

static void test_from_another_thread(void)
{
        struct watch_rec w = { 0 };
        int p[2], id, tid;

        loop_thread_id = pthread_self();
        CHECK(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0, "pipe");
        id = in_thread((struct thread_op){ .op = 0, .fd = p[0], .events = VIR_EVENT_HANDLE_READABLE, .rec = &w });
        CHECK(id > 0, "add handle from a thread returned %d", id);
        CHECK(write(p[1], "x", 1) == 1, "write");
        CHECK(RUN_UNTIL(w.calls > 0, PATIENCE_MS), "watch added from a thread never reported");

        in_thread((struct thread_op){ .op = 1, .id = id, .events = 0 });
        run_for(20);            /* the loop applies the change */
        CHECK(write(p[1], "y", 1) == 1, "write");
        w.calls = 0;
        run_for(50);
        CHECK(w.calls == 0, "watch switched off from a thread reported %d times", w.calls);

        in_thread((struct thread_op){ .op = 1, .id = id, .events = VIR_EVENT_HANDLE_READABLE });
        CHECK(RUN_UNTIL(w.calls > 0, PATIENCE_MS), "watch switched on again from a thread never reported");

        freed = 0;
        CHECK(in_thread((struct thread_op){ .op = 2, .id = id }) == 0, "remove from a thread");
        CHECK(freed == 0, "free callback ran before the loop did");
        CHECK(RUN_UNTIL(freed == 1, PATIENCE_MS), "free callback of a watch removed from a thread: %d", freed);

        timer_calls = 0;
        tid = in_thread((struct thread_op){ .op = 3 });
        CHECK(tid > 0, "add timeout from a thread returned %d", tid);
        CHECK(RUN_UNTIL(timer_calls >= 2, PATIENCE_MS), "timeout added from a thread fired %d times", timer_calls);
        freed = 0;
        CHECK(in_thread((struct thread_op){ .op = 4, .id = tid }) == 0, "remove timeout from a thread");
        CHECK(RUN_UNTIL(freed == 1, PATIENCE_MS), "free callback of a timeout removed from a thread: %d", freed);
        CHECK(!callback_off_loop, "a callback ran off the loop thread");
        close(p[0]);
        close(p[1]);
}

int main(void)
{
        CHECK(sd_event_new(&loop) >= 0, "sd_event_new");
        CHECK(lv_event_bridge_register(loop) == 0, "register");
        CHECK(lv_event_bridge_register(loop) == 0, "registering the same loop twice");

        test_mapping();
        test_handles();
        test_writable_and_self_removal();
        test_same_fd_twice();
        test_timeouts();
        test_zero_timeout_is_fair();
        test_timeout_self_removal();
        test_from_another_thread();
        return test_result();
}
