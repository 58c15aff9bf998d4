#define _GNU_SOURCE
#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "inflight.h"
#include "snapshot.h"
#include "log.h"
#include "supervisor.h"

#define POOL_EX_CONFIG 78

/* How responders are kept alive. */
static const supervisor_policy_t pool_policy = {
    .backoff_min_ms = 100,
    .backoff_max_ms = 30000,
    .stable_ms = 10000, /* a responder that lived this long is healthy: its next death starts over */
    .fatal_exit = POOL_EX_CONFIG,
    .stop_grace_ms = 5000,
    .own_group = 0,     /* in the manager's group: a terminal's Ctrl-C they ignore (responder.h) */
    .relay_stdout = 0,
    .line_max = 4096,   /* responders' log lines stay below PIPE_BUF */
    .lines_per_s = 0,
};

typedef struct pool_slot {
    struct pool *pool;
    int index;
    char index_s[16];
    char *argv[4];
    supervisor_t *sup;
} pool_slot_t;

struct pool {
    pool_config_t cfg;
    pool_slot_t *slots;
    int nslots;
    int inflight_fd, settings_fd, snapshot_fd;
    long cap_all, cap_msg;
    int stopping, alive_stops;
    void (*stop_done)(void *ctx);
    void *stop_ctx;
};

static int pool_build(void *ctx, proc_spec_t *spec, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    pool_slot_t *s = ctx;
    spec->file = s->pool->cfg.exe;
    spec->argv = s->argv;
    spec->fd[0] = s->pool->cfg.listen_fd;
    spec->fd[3] = s->pool->inflight_fd;
    spec->fd[4] = s->pool->settings_fd;
    spec->fd[5] = s->pool->snapshot_fd;
    return 0;
}

static void pool_line(void *ctx, int is_stderr, const char *line, size_t len, int cut)
{
    (void)ctx;
    (void)is_stderr;
    (void)cut;
    /* A responder's lines are already whole log lines: pass them on as they are. */
    char buf[4200];
    if (len >= sizeof buf - 1)
        len = sizeof buf - 2;
    memcpy(buf, line, len);
    buf[len] = '\n';
    log_raw(buf, len + 1);
}

static void pool_started(void *ctx, pid_t pid)
{
    pool_slot_t *s = ctx;
    log_debug("responder started", "responder=%d pid=%ld", s->index, (long)pid);
}

static supervisor_restart_t pool_exited(void *ctx, pid_t pid, int status, const char *err, long delay_ms)
{
    pool_slot_t *s = ctx;
    pool_t *p = s->pool;
    inflight_reset(s->index); /* what it was serving died with it */
    if (p->stopping)
        return SUPERVISOR_RESTART_NEVER;
    if (pid == 0) {
        log_error("cannot start responder", "responder=%d error=%s retryMs=%ld", s->index, log_q(err), delay_ms);
        return SUPERVISOR_RESTART_BACKOFF;
    }
    char detail[128];
    if (status >= 0 && WIFSIGNALED(status))
        snprintf(detail, sizeof detail, "responder=%d pid=%ld signal=%d", s->index, (long)pid, WTERMSIG(status));
    else
        snprintf(detail, sizeof detail, "responder=%d pid=%ld exit=%d", s->index, (long)pid,
                 status >= 0 ? WEXITSTATUS(status) : -1);
    if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == POOL_EX_CONFIG) {
        log_error("responder exited with a configuration error; not respawning", "%s", detail);
        if (p->cfg.event)
            p->cfg.event(p->cfg.event_ctx, "responder_fatal", detail);
        return SUPERVISOR_RESTART_NEVER;
    }
    log_warn("responder died; respawning", "%s delayMs=%ld", detail, delay_ms);
    if (p->cfg.event)
        p->cfg.event(p->cfg.event_ctx, "responder_respawn", detail);
    return SUPERVISOR_RESTART_BACKOFF;
}

static const supervisor_ops_t pool_ops = {
    .build = pool_build, .started = pool_started, .exited = pool_exited, .line = pool_line};

/* The settings every responder reads from fd 4: sealed, so none can change them for the others. */
/* The same file opened again for reading only: a descriptor a responder could not map writable. */
static int pool_read_only(int fd)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return open(path, O_RDONLY | O_CLOEXEC);
}

static int pool_settings_fd(const pool_t *p)
{
    pool_settings_t rs;
    memset(&rs, 0, sizeof rs); /* padding too: the file is written whole */
    rs.conf = *p->cfg.conf;
    rs.slots = p->nslots;
    rs.capacity = p->cap_all;
    rs.message_capacity = p->cap_msg;
    int fd = memfd_create("ocpm-responder-settings", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -1;
    if (write(fd, &rs, sizeof rs) != (ssize_t)sizeof rs ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

pool_t *pool_start(const pool_config_t *cfg, char *err, size_t errlen)
{
    pool_t *p = calloc(1, sizeof *p);
    int n = (int)cfg->conf->responders;
    if (!p || !(p->slots = calloc((size_t)n, sizeof *p->slots))) {
        free(p);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->cfg = *cfg;
    p->nslots = n;
    /* The pool's capacity, and a reserve kept free of messages for status, health, history and
     * aborts: a quarter of it, at most 8. */
    p->cap_all = cfg->conf->responders * cfg->conf->responder_threads;
    long reserve = p->cap_all / 4 > 8 ? 8 : p->cap_all / 4;
    p->cap_msg = p->cap_all - reserve;
    p->inflight_fd = inflight_create(n);
    p->settings_fd = p->inflight_fd >= 0 ? pool_settings_fd(p) : -1;
    int snap = p->settings_fd >= 0 ? snapshot_create() : -1;
    p->snapshot_fd = snap >= 0 ? pool_read_only(snap) : -1;
    if (snap >= 0)
        close(snap); /* the mapping stays */
    if (p->snapshot_fd < 0) {
        snprintf(err, errlen, "cannot create the responders' shared pages: %s", strerror(errno));
        if (p->inflight_fd >= 0)
            close(p->inflight_fd);
        if (p->settings_fd >= 0)
            close(p->settings_fd);
        free(p->slots);
        free(p);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        pool_slot_t *s = &p->slots[i];
        s->pool = p;
        s->index = i;
        snprintf(s->index_s, sizeof s->index_s, "%d", i);
        s->argv[0] = (char *)cfg->exe;
        s->argv[1] = "--responder";
        s->argv[2] = s->index_s;
        s->argv[3] = NULL;
        char name[32];
        snprintf(name, sizeof name, "responder %d", i);
        s->sup = supervisor_new(cfg->loop, name, &pool_policy, &pool_ops, s);
        if (!s->sup) {
            snprintf(err, errlen, "out of memory");
            pool_free(p);
            return NULL;
        }
        supervisor_start(s->sup);
    }
    return p;
}

static int pool_alive(const pool_t *p)
{
    int n = 0;
    for (int i = 0; i < p->nslots; i++)
        n += p->slots[i].sup && supervisor_pid(p->slots[i].sup) > 0;
    return n;
}

static void pool_slot_stopped(void *ctx)
{
    pool_t *p = ((pool_slot_t *)ctx)->pool;
    if (--p->alive_stops == 0 && p->stop_done)
        p->stop_done(p->stop_ctx);
}

void pool_stop(pool_t *p, void (*done)(void *ctx), void *ctx)
{
    p->stopping = 1;
    p->stop_done = done;
    p->stop_ctx = ctx;
    p->alive_stops = p->nslots + 1;
    for (int i = 0; i < p->nslots; i++)
        supervisor_stop(p->slots[i].sup, pool_slot_stopped);
    /* The +1 above keeps done from running before every supervisor was asked. */
    pool_slot_stopped(&p->slots[0]);
}

void pool_free(pool_t *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->nslots; i++)
        supervisor_free(p->slots[i].sup);
    inflight_detach();
    if (p->inflight_fd >= 0)
        close(p->inflight_fd);
    if (p->settings_fd >= 0)
        close(p->settings_fd);
    snapshot_detach();
    if (p->snapshot_fd >= 0)
        close(p->snapshot_fd);
    free(p->slots);
    free(p);
}

long pool_restarts(const pool_t *p)
{
    long n = 0;
    for (int i = 0; i < p->nslots; i++)
        n += supervisor_restarts(p->slots[i].sup);
    return n;
}

long pool_message_capacity(const pool_t *p) { return p->cap_msg; }

json_object *pool_status_json(const pool_t *p)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "configured", json_object_new_int(p->nslots));
    json_object_object_add(o, "alive", json_object_new_int(pool_alive(p)));
    json_object_object_add(o, "threads", json_object_new_int64(p->cfg.conf->responder_threads));
    json_object_object_add(o, "restarts", json_object_new_int64(pool_restarts(p)));
    json_object_object_add(o, "capacity", json_object_new_int64(p->cap_all));
    json_object_object_add(o, "messageCapacity", json_object_new_int64(p->cap_msg));
    json_object_object_add(o, "inFlight", json_object_new_int64(inflight_total()));
    json_object_object_add(o, "messagesInFlight", json_object_new_int64(inflight_messages()));
    json_object_object_add(o, "refused", json_object_new_int64(inflight_refused()));
    return o;
}
