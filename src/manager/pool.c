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

/* Generations alive at once: the current one and up to three still finishing their requests. */
#define POOL_BANDS 4

typedef struct pool_gen pool_gen_t;

typedef struct pool_slot {
    pool_gen_t *gen;
    int index; /* its slot of the in-flight page: band * responders + its place */
    char index_s[16];
    char *argv[4];
    supervisor_t *sup;
} pool_slot_t;

/* One generation of responders: the same settings, the same listening socket. */
struct pool_gen {
    struct pool *pool;
    int band;
    int listen_fd, settings_fd;
    pool_slot_t *slots;
    int retiring, running; /* running: slots whose child has not yet been seen gone after a stop */
    pool_gen_t *next;      /* the older generations still finishing */
};

struct pool {
    pool_config_t cfg;
    int nslots;               /* responders per generation */
    pool_gen_t *cur, *old;
    int inflight_fd, snapshot_fd;
    long cap_all, cap_msg;
    long restarts_before;     /* respawns of the generations gone */
    int stopping, alive_stops;
    void (*stop_done)(void *ctx);
    void *stop_ctx;
};

static int pool_build(void *ctx, proc_spec_t *spec, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    pool_slot_t *s = ctx;
    spec->file = s->gen->pool->cfg.exe;
    spec->argv = s->argv;
    spec->fd[0] = s->gen->listen_fd;
    spec->fd[3] = s->gen->pool->inflight_fd;
    spec->fd[4] = s->gen->settings_fd;
    spec->fd[5] = s->gen->pool->snapshot_fd;
    spec->uid = s->gen->pool->cfg.user.uid;
    spec->gid = s->gen->pool->cfg.user.gid;
    /* The responder waits for these with sigwait: one sent while it starts (a stop, a reload's
     * SIGQUIT) waits for it rather than killing it half-started. */
    static const int stop_signals[] = {SIGTERM, SIGQUIT, SIGHUP};
    spec->blocked = stop_signals;
    spec->nblocked = sizeof stop_signals / sizeof stop_signals[0];
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
    pool_t *p = s->gen->pool;
    inflight_reset(s->index); /* what it was serving died with it */
    if (s->gen->retiring && status >= 0 && WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL)
        log_warn("responder of an older generation died before it finished", "responder=%d pid=%ld signal=%d",
                 s->index, (long)pid, WTERMSIG(status));
    if (p->stopping || s->gen->retiring)
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
    rs.slots = p->nslots * POOL_BANDS;
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

static void pool_gen_free(pool_gen_t *g)
{
    if (!g)
        return;
    for (int i = 0; g->slots && i < g->pool->nslots; i++)
        supervisor_free(g->slots[i].sup);
    if (g->listen_fd >= 0)
        close(g->listen_fd);
    if (g->settings_fd >= 0)
        close(g->settings_fd);
    free(g->slots);
    free(g);
}

/* A generation in band, listening on listen_fd (its own from now on), every responder started. */
static pool_gen_t *pool_gen_start(pool_t *p, int band, int listen_fd, char *err, size_t errlen)
{
    pool_gen_t *g = calloc(1, sizeof *g);
    if (!g) {
        close(listen_fd);
        return snprintf(err, errlen, "out of memory"), NULL;
    }
    *g = (pool_gen_t){.pool = p, .band = band, .listen_fd = listen_fd, .settings_fd = pool_settings_fd(p)};
    if (g->settings_fd < 0 || !(g->slots = calloc((size_t)p->nslots, sizeof *g->slots))) {
        snprintf(err, errlen, "cannot create the responders' settings: %s", strerror(errno));
        pool_gen_free(g);
        return NULL;
    }
    for (int i = 0; i < p->nslots; i++) {
        pool_slot_t *s = &g->slots[i];
        s->gen = g;
        s->index = band * p->nslots + i;
        snprintf(s->index_s, sizeof s->index_s, "%d", s->index);
        s->argv[0] = (char *)p->cfg.exe;
        s->argv[1] = "--responder";
        s->argv[2] = s->index_s;
        s->argv[3] = NULL;
        char name[32];
        snprintf(name, sizeof name, "responder %d", s->index);
        if (!(s->sup = supervisor_new(p->cfg.loop, name, &pool_policy, &pool_ops, s))) {
            snprintf(err, errlen, "out of memory");
            pool_gen_free(g);
            return NULL;
        }
    }
    for (int i = 0; i < p->nslots; i++)
        supervisor_start(g->slots[i].sup);
    return g;
}

pool_t *pool_start(const pool_config_t *cfg, char *err, size_t errlen)
{
    pool_t *p = calloc(1, sizeof *p);
    if (!p) {
        close(cfg->listen_fd);
        return snprintf(err, errlen, "out of memory"), NULL;
    }
    p->cfg = *cfg;
    p->inflight_fd = p->snapshot_fd = -1;
    p->nslots = (int)cfg->conf->responders;
    /* The pool's capacity, and a reserve kept free of messages for status, health, history and
     * aborts: a quarter of it, at most 8. */
    p->cap_all = cfg->conf->responders * cfg->conf->responder_threads;
    long reserve = p->cap_all / 4 > 8 ? 8 : p->cap_all / 4;
    p->cap_msg = p->cap_all - reserve;
    p->inflight_fd = inflight_create(p->nslots * POOL_BANDS);
    int snap = p->inflight_fd >= 0 ? snapshot_create() : -1;
    p->snapshot_fd = snap >= 0 ? pool_read_only(snap) : -1;
    if (snap >= 0)
        close(snap); /* the mapping stays */
    if (p->snapshot_fd < 0) {
        snprintf(err, errlen, "cannot create the responders' shared pages: %s", strerror(errno));
        close(cfg->listen_fd);
        pool_free(p);
        return NULL;
    }
    if (!(p->cur = pool_gen_start(p, 0, cfg->listen_fd, err, errlen))) {
        pool_free(p);
        return NULL;
    }
    return p;
}

/* Forget the generations whose responders have all gone (not from within their callbacks: the
 * supervisors are still at work there). */
static void pool_sweep_old(pool_t *p)
{
    for (pool_gen_t **g = &p->old; *g;) {
        if ((*g)->running > 0) {
            g = &(*g)->next;
            continue;
        }
        pool_gen_t *gone = *g;
        *g = gone->next;
        for (int i = 0; i < p->nslots; i++)
            p->restarts_before += supervisor_restarts(gone->slots[i].sup);
        pool_gen_free(gone);
    }
}

static void pool_slot_retired(void *ctx)
{
    pool_slot_t *s = ctx;
    pool_gen_t *g = s->gen;
    g->running--;
    log_debug("responder of an older generation done", "responder=%d left=%d", s->index, g->running);
    /* Nothing accepts there any more: whatever still waits in its queue is refused now, not left
     * to hang (the supervisors are freed at the next reload, outside their own callbacks). */
    if (g->running == 0 && g->listen_fd >= 0) {
        close(g->listen_fd);
        g->listen_fd = -1;
    }
}

int pool_band_free(pool_t *p)
{
    pool_sweep_old(p);
    int used[POOL_BANDS] = {0};
    used[p->cur->band] = 1;
    for (pool_gen_t *g = p->old; g; g = g->next)
        used[g->band] = 1;
    for (int band = 0; band < POOL_BANDS; band++)
        if (!used[band])
            return band;
    return -1;
}

int pool_reload(pool_t *p, int listen_fd, pool_publish_fn publish, void *ctx, char *err, size_t errlen)
{
    int band = pool_band_free(p);
    if (band < 0) {
        close(listen_fd);
        return snprintf(err, errlen, "%d older generations of responders are still finishing their requests",
                        POOL_BANDS - 1), -1;
    }
    pool_gen_t *g = pool_gen_start(p, band, listen_fd, err, errlen);
    if (!g)
        return -1;
    if (publish(ctx, err, errlen) != 0) { /* nginx still reaches the running ones: they stay */
        g->retiring = 1;
        g->running = p->nslots;
        g->next = p->old;
        p->old = g;
        for (int i = 0; i < p->nslots; i++)
            supervisor_stop(g->slots[i].sup, pool_slot_retired);
        return -1;
    }
    pool_gen_t *was = p->cur;
    p->cur = g;
    was->retiring = 1;
    was->running = p->nslots;
    was->next = p->old;
    p->old = was;
    /* No bound but their requests', as nginx's worker_shutdown_timeout by default: a stream lasts
     * as long as its turn and the wait before it. */
    for (int i = 0; i < p->nslots; i++)
        supervisor_retire(was->slots[i].sup, SIGQUIT, 0, pool_slot_retired);
    return 0;
}

static int pool_alive(const pool_gen_t *g)
{
    int n = 0;
    for (int i = 0; g && i < g->pool->nslots; i++)
        n += g->slots[i].sup && supervisor_pid(g->slots[i].sup) > 0;
    return n;
}

static void pool_slot_stopped(void *ctx)
{
    pool_t *p = ((pool_slot_t *)ctx)->gen->pool;
    if (--p->alive_stops == 0 && p->stop_done)
        p->stop_done(p->stop_ctx);
}

static void pool_gen_stop(pool_gen_t *g)
{
    for (int i = 0; i < g->pool->nslots; i++) {
        g->pool->alive_stops++;
        supervisor_stop(g->slots[i].sup, pool_slot_stopped);
    }
}

void pool_stop(pool_t *p, void (*done)(void *ctx), void *ctx)
{
    p->stopping = 1;
    p->stop_done = done;
    p->stop_ctx = ctx;
    p->alive_stops = 1; /* until every supervisor was asked: done never runs before */
    pool_gen_stop(p->cur);
    for (pool_gen_t *g = p->old; g; g = g->next)
        pool_gen_stop(g);
    pool_slot_stopped(&p->cur->slots[0]);
}

void pool_free(pool_t *p)
{
    if (!p)
        return;
    pool_gen_free(p->cur);
    while (p->old) {
        pool_gen_t *g = p->old;
        p->old = g->next;
        pool_gen_free(g);
    }
    inflight_detach();
    if (p->inflight_fd >= 0)
        close(p->inflight_fd);
    snapshot_detach();
    if (p->snapshot_fd >= 0)
        close(p->snapshot_fd);
    free(p);
}

long pool_restarts(const pool_t *p)
{
    long n = p->restarts_before;
    for (int i = 0; p->cur && i < p->nslots; i++)
        n += supervisor_restarts(p->cur->slots[i].sup);
    for (const pool_gen_t *g = p->old; g; g = g->next)
        for (int i = 0; i < p->nslots; i++)
            n += supervisor_restarts(g->slots[i].sup);
    return n;
}

long pool_message_capacity(const pool_t *p) { return p->cap_msg; }

json_object *pool_status_json(const pool_t *p)
{
    int retiring = 0;
    for (const pool_gen_t *g = p->old; g; g = g->next)
        retiring += pool_alive(g);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "configured", json_object_new_int(p->nslots));
    json_object_object_add(o, "user", json_object_new_string(p->cfg.user.name));
    json_object_object_add(o, "alive", json_object_new_int(pool_alive(p->cur)));
    json_object_object_add(o, "retiring", json_object_new_int(retiring));
    json_object_object_add(o, "threads", json_object_new_int64(p->cfg.conf->responder_threads));
    json_object_object_add(o, "restarts", json_object_new_int64(pool_restarts(p)));
    json_object_object_add(o, "capacity", json_object_new_int64(p->cap_all));
    json_object_object_add(o, "messageCapacity", json_object_new_int64(p->cap_msg));
    json_object_object_add(o, "inFlight", json_object_new_int64(inflight_total()));
    json_object_object_add(o, "messagesInFlight", json_object_new_int64(inflight_messages()));
    json_object_object_add(o, "refused", json_object_new_int64(inflight_refused()));
    return o;
}
