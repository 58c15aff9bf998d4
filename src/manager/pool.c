#define _GNU_SOURCE
#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "inflight.h"
#include "log.h"
#include "proc.h"
#include "clock.h"

#define POOL_BACKOFF_MIN_MS 100
#define POOL_BACKOFF_MAX_MS 30000
/* A responder that lived this long is healthy: its next death restarts the backoff. */
#define POOL_STABLE_MS 10000
#define POOL_STOP_GRACE_MS 5000
#define POOL_EX_CONFIG 78

typedef struct pool_slot {
    int index;
    pid_t pid;
    double started;
    long backoff_ms;
    uv_timer_t timer;
} pool_slot_t;

static manager_t *pool_mgr;
static pool_slot_t *slots;
static int nslots;
static int pool_listen_fd = -1;
static int log_wfd = -1;
static uv_pipe_t log_pipe;
static char log_buf[8192];
static size_t log_len;
static long restarts;
static int stopping;
static void (*stop_done)(manager_t *);
static uv_timer_t stop_timer;
static int inflight_fd = -1;
static long cap_all, cap_msg;

static void pool_spawn(pool_slot_t *s);

static int pool_alive(void)
{
    int n = 0;
    for (int i = 0; i < nslots; i++)
        n += slots[i].pid > 0;
    return n;
}

long pool_restarts(void) { return restarts; }
long pool_message_capacity(void) { return cap_msg; }

json_object *pool_status_json(void)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "configured", json_object_new_int(nslots));
    json_object_object_add(o, "alive", json_object_new_int(pool_alive()));
    json_object_object_add(o, "threads", json_object_new_int64(pool_mgr ? pool_mgr->conf->responder_threads : 0));
    json_object_object_add(o, "restarts", json_object_new_int64(restarts));
    json_object_object_add(o, "capacity", json_object_new_int64(cap_all));
    json_object_object_add(o, "messageCapacity", json_object_new_int64(cap_msg));
    json_object_object_add(o, "inFlight", json_object_new_int64(inflight_total()));
    json_object_object_add(o, "messagesInFlight", json_object_new_int64(inflight_messages()));
    json_object_object_add(o, "refused", json_object_new_int64(inflight_refused()));
    return o;
}

static void pool_log_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = log_buf + log_len;
    buf->len = sizeof log_buf - log_len;
}

/* Relay whole lines from responders into the manager's log. */
static void pool_log_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    (void)st;
    (void)buf;
    if (n <= 0) {
        if (n < 0)
            uv_read_stop(st);
        return;
    }
    log_len += (size_t)n;
    char *start = log_buf, *nl;
    while ((nl = memchr(start, '\n', log_len - (size_t)(start - log_buf)))) {
        log_raw(start, (size_t)(nl - start + 1));
        start = nl + 1;
    }
    log_len -= (size_t)(start - log_buf);
    memmove(log_buf, start, log_len);
    if (log_len == sizeof log_buf) { /* a line with no end: flush it as is */
        log_raw(log_buf, log_len);
        log_len = 0;
    }
}

static void pool_check_stopped(void)
{
    if (stopping && pool_alive() == 0 && stop_done) {
        void (*fn)(manager_t *) = stop_done;
        stop_done = NULL;
        uv_timer_stop(&stop_timer);
        uv_close((uv_handle_t *)&stop_timer, NULL);
        for (int i = 0; i < nslots; i++)
            uv_close((uv_handle_t *)&slots[i].timer, NULL);
        if (log_wfd >= 0)
            close(log_wfd);
        log_wfd = -1;
        /* The read end is drained and closed once EOF arrives; close it now. */
        uv_close((uv_handle_t *)&log_pipe, NULL);
        fn(pool_mgr);
    }
}

static void pool_respawn_cb(uv_timer_t *t)
{
    pool_spawn(t->data);
}

static void pool_on_exit(void *ctx, pid_t pid, int status, const struct rusage *ru)
{
    (void)ru;
    pool_slot_t *s = ctx;
    s->pid = 0;
    inflight_reset(s->index); /* what it was serving died with it */
    if (stopping) {
        pool_check_stopped();
        return;
    }
    char detail[128];
    if (status >= 0 && WIFSIGNALED(status))
        snprintf(detail, sizeof detail, "responder=%d pid=%ld signal=%d", s->index, (long)pid, WTERMSIG(status));
    else
        snprintf(detail, sizeof detail, "responder=%d pid=%ld exit=%d", s->index, (long)pid,
                 status >= 0 ? WEXITSTATUS(status) : -1);
    if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == POOL_EX_CONFIG) {
        log_error("responder exited with a configuration error; not respawning", "%s", detail);
        manager_event(pool_mgr, "responder_fatal", detail);
        return;
    }
    double lived_ms = (clock_now() - s->started) * 1000.0;
    if (lived_ms >= POOL_STABLE_MS)
        s->backoff_ms = POOL_BACKOFF_MIN_MS;
    else
        s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : POOL_BACKOFF_MIN_MS;
    if (s->backoff_ms > POOL_BACKOFF_MAX_MS)
        s->backoff_ms = POOL_BACKOFF_MAX_MS;
    restarts++;
    log_warn("responder died; respawning", "%s delayMs=%ld", detail, s->backoff_ms);
    manager_event(pool_mgr, "responder_respawn", detail);
    uv_timer_start(&s->timer, pool_respawn_cb, (uint64_t)s->backoff_ms, 0);
}

static void pool_spawn(pool_slot_t *s)
{
    const conf_t *c = pool_mgr->conf;
    char idx[16], threads[16], body[32], msg[32], hb[32], slots_s[16], all_s[32], msg_s[32];
    snprintf(idx, sizeof idx, "%d", s->index);
    snprintf(slots_s, sizeof slots_s, "%d", nslots);
    snprintf(all_s, sizeof all_s, "%ld", cap_all);
    snprintf(msg_s, sizeof msg_s, "%ld", cap_msg);
    snprintf(threads, sizeof threads, "%ld", c->responder_threads);
    snprintf(body, sizeof body, "%ld", c->max_body_bytes);
    snprintf(msg, sizeof msg, "%ld", c->max_message_bytes);
    snprintf(hb, sizeof hb, "%ld", c->sse_heartbeat_ms);
    char *argv[] = {pool_mgr->exe, "--responder", "--index", idx, "--control", (char *)c->control_socket,
                    "--threads", threads, "--max-body", body, "--max-message", msg,
                    "--heartbeat-ms", hb,
                    "--log-level", (char *)c->log_level, "--slots", slots_s, "--capacity", all_s,
                    "--message-capacity", msg_s, NULL};
    proc_spec_t ps;
    proc_spec_init(&ps, pool_mgr->exe, argv);
    ps.fd[0] = pool_listen_fd; /* libfcgi's convention: the listening socket as fd 0 */
    ps.fd[2] = log_wfd;
    ps.fd[3] = inflight_fd;
    ps.pdeathsig = SIGTERM;
    char err[256];
    pid_t pid = proc_spawn(&ps, err, sizeof err);
    if (pid < 0) {
        s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : POOL_BACKOFF_MIN_MS;
        if (s->backoff_ms > POOL_BACKOFF_MAX_MS)
            s->backoff_ms = POOL_BACKOFF_MAX_MS;
        log_error("cannot start responder", "responder=%d error=%s retryMs=%ld", s->index, log_q(err), s->backoff_ms);
        uv_timer_start(&s->timer, pool_respawn_cb, (uint64_t)s->backoff_ms, 0);
        return;
    }
    s->pid = pid;
    s->started = clock_now();
    proc_watch(pid, pool_on_exit, s);
    log_debug("responder started", "responder=%d pid=%ld", s->index, (long)pid);
}

int pool_start(manager_t *m, int listen_fd, char *err, size_t errlen)
{
    pool_mgr = m;
    pool_listen_fd = listen_fd;
    nslots = (int)m->conf->responders;
    slots = calloc((size_t)nslots, sizeof *slots);
    int p[2];
    if (!slots || pipe2(p, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "cannot set up responders: %s", strerror(errno));
        return -1;
    }
    log_wfd = p[1];
    /* The pool's capacity, and a reserve kept free of messages for status, health, history and
     * aborts: a quarter of it, at most 8. */
    cap_all = m->conf->responders * m->conf->responder_threads;
    long reserve = cap_all / 4 > 8 ? 8 : cap_all / 4;
    cap_msg = cap_all - reserve;
    inflight_fd = inflight_create(nslots);
    if (inflight_fd < 0) {
        snprintf(err, errlen, "cannot create the shared in-flight counters: %s", strerror(errno));
        return -1;
    }
    uv_pipe_init(m->loop, &log_pipe, 0);
    uv_pipe_open(&log_pipe, p[0]);
    uv_read_start((uv_stream_t *)&log_pipe, pool_log_alloc, pool_log_read);
    uv_timer_init(m->loop, &stop_timer);
    for (int i = 0; i < nslots; i++) {
        slots[i].index = i;
        uv_timer_init(m->loop, &slots[i].timer);
        slots[i].timer.data = &slots[i];
        pool_spawn(&slots[i]);
    }
    return 0;
}

static void pool_stop_timeout(uv_timer_t *t)
{
    (void)t;
    for (int i = 0; i < nslots; i++)
        if (slots[i].pid > 0) {
            log_warn("responder did not stop in time; killing", "responder=%d pid=%ld", i, (long)slots[i].pid);
            kill(slots[i].pid, SIGKILL);
        }
}

void pool_stop(manager_t *m, void (*done)(manager_t *))
{
    (void)m;
    stopping = 1;
    stop_done = done;
    for (int i = 0; i < nslots; i++) {
        uv_timer_stop(&slots[i].timer);
        if (slots[i].pid > 0)
            kill(slots[i].pid, SIGTERM);
    }
    uv_timer_start(&stop_timer, pool_stop_timeout, POOL_STOP_GRACE_MS, 0);
    pool_check_stopped();
}

void pool_free(void)
{
    inflight_detach();
    if (inflight_fd >= 0)
        close(inflight_fd);
    inflight_fd = -1;
    free(slots);
    slots = NULL;
    nslots = 0;
}
