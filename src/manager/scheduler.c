#define _GNU_SOURCE
#include "scheduler_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

#define SCHEDULER_ERR_FATAL                                                                                    \
    "the opencode server is FATAL (restarted too often) and fallback is off; an operator must run `ocpmctl "     \
    "server restart`"

/* What a waiting message costs beyond its text (the record, the queue node). */
#define SCHEDULER_QUEUED_OVERHEAD 512

static void scheduler_count_placed(void *ctx, session_t *sess);

scheduler_t *scheduler_new(const scheduler_config_t *cfg)
{
    scheduler_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cfg = *cfg;
    /* The sessions placed so far (loaded from the database); kept up to date from here. */
    session_each(s->cfg.sessions, scheduler_count_placed, s);
    return s;
}

void scheduler_unreserve(scheduler_t *s, execution_t *e)
{
    if (e->reserved_on >= 0)
        s->reserved[e->reserved_on]--;
    e->reserved_on = -1;
}

void scheduler_forget(scheduler_t *s, session_t *sess)
{
    int i = session_server(sess);
    if (i >= 0 && i < CONF_SERVERS_MAX && session_pool(sess) == s->cfg.pool_index && s->placed[i] > 0)
        s->placed[i]--;
}

void scheduler_free(scheduler_t *s) { free(s); }

int64_t scheduler_running_id(const session_t *sess)
{
    const execution_t *e = session_running(sess);
    return e ? e->rec.id : 0;
}

void scheduler_set_message_capacity(scheduler_t *s, long capacity) { s->message_capacity = capacity; }
long scheduler_running(const scheduler_t *s) { return s->running; }
long scheduler_queued(const scheduler_t *s) { return s->queued; }
unsigned long long scheduler_finished(const scheduler_t *s) { return s->finished; }
unsigned long long scheduler_failed(const scheduler_t *s) { return s->failed; }

void scheduler_unlink(scheduler_t *s, execution_t *e)
{
    if (e->qprev)
        e->qprev->qnext = e->qnext;
    else if (s->head == e)
        s->head = e->qnext;
    if (e->qnext)
        e->qnext->qprev = e->qprev;
    else if (s->tail == e)
        s->tail = e->qprev;
    e->qprev = e->qnext = NULL;
}

static void scheduler_append(scheduler_t *s, execution_t *e)
{
    e->qprev = s->tail;
    if (s->tail)
        s->tail->qnext = e;
    else
        s->head = e;
    s->tail = e;
    s->queued++;
}

/* Take e out of both queues (the FIFO and its session's). */
static void scheduler_dequeue(scheduler_t *s, execution_t *e, session_t *sess)
{
    scheduler_unlink(s, e);
    if (sess)
        session_unqueue(sess, e);
    s->queued--;
}

/* Where a waiting message may start now. */
typedef struct scheduler_route {
    const backend_t *backend; /* NULL: nowhere yet */
    int server;               /* its session's primary (placed or to be placed) */
    int stand_in;             /* the fallback, standing in for that server: -1 when it is not */
    long limit;               /* how many may run at once on this route: the per-user share's base */
    int expires;              /* waiting for it ends after fallback_wait */
    int fatal;                /* its server is FATAL and fallback is off: refused, expired at once */
} scheduler_route_t;

static int scheduler_placing(const scheduler_t *s) { return s->cfg.primary[0].ops->load != NULL; }

/* Primary i's state, counting the executions begun for it whose workspace still prepares (so a
 * burst of first messages cannot pass its capacity before any reaches it). */
static backend_state_t scheduler_state(const scheduler_t *s, int i)
{
    const backend_t *b = &s->cfg.primary[i];
    backend_state_t st = b->ops->state(b->self);
    long cap = b->ops->capacity(b->self);
    if (st == BACKEND_READY && b->ops->load && cap > 0 && b->ops->load(b->self) + s->reserved[i] >= cap)
        st = BACKEND_FULL;
    return st;
}

/* How busy a primary is, for placement: its state first, then what it runs or will. */
static long long scheduler_rank(const scheduler_t *s, int i)
{
    static const int order[] = {[BACKEND_READY] = 0, [BACKEND_FULL] = 1, [BACKEND_WAIT] = 2, [BACKEND_DOWN] = 3,
                                [BACKEND_FATAL] = 4};
    const backend_t *b = &s->cfg.primary[i];
    return (long long)order[scheduler_state(s, i)] << 40 | (long long)(b->ops->load(b->self) + s->reserved[i]) << 20;
}

static void scheduler_count_placed(void *ctx, session_t *sess)
{
    scheduler_t *s = ctx;
    int i = session_server(sess);
    if (i >= 0 && i < CONF_SERVERS_MAX && session_pool(sess) == s->cfg.pool_index)
        s->placed[i]++;
}

/* The primary a new session goes to: the least loaded (scheduler.h). */
static int scheduler_best(const scheduler_t *s)
{
    int best = 0;
    long long best_rank = 0;
    for (int i = 0; i < s->cfg.nprimary; i++) {
        long placed = s->placed[i] < (1L << 20) ? s->placed[i] : (1L << 20) - 1;
        long long r = scheduler_rank(s, i) + placed;
        if (i == 0 || r < best_rank)
            best = i, best_rank = r;
    }
    return best;
}

/* The primary sess is placed on, or would be now. */
static int scheduler_server_of(const scheduler_t *s, const session_t *sess)
{
    int i = scheduler_placing(s) ? session_server(sess) : 0;
    return i >= 0 && i < s->cfg.nprimary ? i : scheduler_best(s);
}

static scheduler_route_t scheduler_route(const scheduler_t *s, const session_t *sess)
{
    const conf_t *cf = s->cfg.conf;
    scheduler_route_t r = {.server = scheduler_server_of(s, sess), .stand_in = -1, .limit = cf->max_concurrent_runs};
    const backend_t *p = &s->cfg.primary[r.server];
    backend_state_t st = scheduler_state(s, r.server);
    switch (st) {
    case BACKEND_READY:
        r.backend = p;
        break;
    case BACKEND_FULL: /* nothing starts there until one of its jobs ends */
    case BACKEND_WAIT: /* a replacement comes: wait for it, without end */
        break;
    case BACKEND_DOWN:
    case BACKEND_FATAL: /* as down, but waiting for it would be in vain */
        if (s->cfg.fallback.ops && cf->fallback) {
            if (s->stand_ins < cf->fallback_max_runs)
                r.backend = &s->cfg.fallback;
            r.stand_in = r.server;
            if (cf->fallback_max_runs < r.limit)
                r.limit = cf->fallback_max_runs;
        } else {
            r.expires = 1;
            r.fatal = st == BACKEND_FATAL;
        }
        break;
    }
    long cap = r.stand_in < 0 ? p->ops->capacity(p->self) : 0;
    if (cap > 0 && cap < r.limit)
        r.limit = cap;
    return r;
}

static int scheduler_any_fatal(const scheduler_t *s)
{
    for (int i = 0; i < s->cfg.nprimary; i++)
        if (scheduler_state(s, i) == BACKEND_FATAL)
            return 1;
    return 0;
}

/* With nowhere to run and fallback off, a message waits for its server, but not without end; for
 * a FATAL server, not at all (only an operator brings it back). */
static void scheduler_expire(scheduler_t *s, double now)
{
    int fatal = scheduler_any_fatal(s);
    for (execution_t *e = s->head, *next; e; e = next) {
        next = e->qnext;
        if (!fatal && (now - e->rec.queued_at) * 1000.0 <= s->cfg.conf->fallback_wait_ms)
            continue;
        session_t *sess = session_find(s->cfg.sessions, e->owner, e->session_id);
        scheduler_route_t r = sess ? scheduler_route(s, sess) : (scheduler_route_t){.expires = 1};
        if (!r.expires || (!r.fatal && (now - e->rec.queued_at) * 1000.0 <= s->cfg.conf->fallback_wait_ms))
            continue;
        scheduler_dequeue(s, e, sess);
        execution_set_error(e, r.fatal ? SCHEDULER_ERR_FATAL : "the opencode server is unavailable and fallback is off");
        execution_finish(e, EXEC_FAILED);
    }
}

/* No user holds more than user_max_share of the route's slots, nor user_max_running. */
static long scheduler_share(const scheduler_t *s, long limit)
{
    long share = user_share_of(limit, s->cfg.conf->user_max_share);
    if (s->cfg.conf->user_max_running > 0 && s->cfg.conf->user_max_running < share)
        share = s->cfg.conf->user_max_running;
    return share;
}

/* The next message to start and its route: round robin over the owners with one that may start
 * (its session idle, its route open, its owner under share), in the order of their names, from
 * the one after the owner served last; of that owner's, the oldest. So one user's long queue
 * delays another's message by at most one start per slot. NULL: none may start. */
static execution_t *scheduler_next(scheduler_t *s, scheduler_route_t *route)
{
    execution_t *after = NULL, *first = NULL;
    scheduler_route_t ra = {0}, rf = {0};
    for (execution_t *e = s->head; e; e = e->qnext) {
        session_t *sess = session_find(s->cfg.sessions, e->owner, e->session_id);
        if (e->unstartable || !sess || session_running(sess))
            continue;
        /* Only owners that could be first or next are worth a route. */
        int before_first = !first || strcmp(e->owner, first->owner) < 0;
        int next_after = strcmp(e->owner, s->last_owner) > 0 && (!after || strcmp(e->owner, after->owner) < 0);
        if (!before_first && !next_after)
            continue;
        scheduler_route_t r = scheduler_route(s, sess);
        if (!r.backend || user_count(s->cfg.users, e->owner, USER_RUNNING) >= scheduler_share(s, r.limit))
            continue;
        if (before_first)
            first = e, rf = r;
        if (next_after)
            after = e, ra = r;
    }
    *route = after ? ra : rf;
    return after ? after : first;
}

/* Place sess on the route's server for good, the first time it needs one (scheduler.h). */
static void scheduler_place(scheduler_t *s, session_t *sess, int server)
{
    int was = session_server(sess);
    if (!scheduler_placing(s) || was == server)
        return;
    if (was >= 0 && session_oc_id(sess)) {
        log_warn("session placed on a server that no longer exists; its opencode conversation starts anew",
                 "sessionId=%s server=%d servers=%d", session_id(sess), was, s->cfg.nprimary);
        session_set_oc_id(sess, NULL);
        db_session_set_oc(s->cfg.db, session_owner(sess), session_id(sess), NULL);
    }
    if (was >= 0 && was < CONF_SERVERS_MAX && s->placed[was] > 0)
        s->placed[was]--;
    s->placed[server]++;
    session_set_server(sess, server);
    if (db_session_set_server(s->cfg.db, session_owner(sess), session_id(sess), server) != 0)
        log_warn("cannot store a session's server; it may be placed again after a restart",
                 "sessionId=%s server=%d", session_id(sess), server);
    log_info("session placed", "sessionId=%s server=%d", session_id(sess), server);
}

void scheduler_kick(scheduler_t *s)
{
    if (s->stopping)
        return;
    execution_t *e;
    scheduler_route_t r;
    while (s->running < s->cfg.conf->max_concurrent_runs && (e = scheduler_next(s, &r))) {
        session_t *sess = session_find(s->cfg.sessions, e->owner, e->session_id);
        /* The oldest waiting message of its session is the head of the session's queue. */
        if (session_peek(sess) != e) {
            log_error("a session's queue and the scheduler's disagree", "sessionId=%s", e->session_id);
            e->unstartable = 1; /* never picked again: the others go on */
            continue;
        }
        session_dequeue(sess);
        snprintf(s->last_owner, sizeof s->last_owner, "%s", e->owner);
        scheduler_unlink(s, e);
        s->queued--;
        /* Its user's daily budget ran out while it waited: it does not start. */
        char why[160];
        long reset_s;
        if (s->cfg.budget && budget_check(s->cfg.budget, e->owner, clock_now(), why, sizeof why, &reset_s) != 0) {
            execution_set_error(e, why);
            execution_finish(e, EXEC_BUDGET);
            continue;
        }
        scheduler_place(s, sess, r.server);
        if (r.stand_in < 0 && scheduler_placing(s)) {
            e->reserved_on = r.server;
            s->reserved[r.server]++;
        }
        /* Starting may finish (and free) e. */
        execution_begin(e, r.backend, r.stand_in);
    }
    if (!s->cfg.fallback.ops || !s->cfg.conf->fallback)
        scheduler_expire(s, clock_now());
}

/* Answer c with a refusal (nobody to answer when c is NULL). */
static int64_t scheduler_refuse(scheduler_t *s, control_conn_t *c, int status, const char *code, const char *message,
                                const char *reason)
{
    if (c && status == 429)
        control_error_retry(c, status, code, message, reason, s->cfg.conf->retry_after_s);
    else if (c)
        control_error(c, status, code, message);
    return -1;
}

/* The bounds a new message must pass; answers c and returns -1 when it may not be queued. */
static int scheduler_admit(scheduler_t *s, session_t *sess, long bytes, scheduler_wait_t how, control_conn_t *c)
{
    const conf_t *cf = s->cfg.conf;
    const char *owner = session_owner(sess);
    user_table_t *u = s->cfg.users;
    if ((long)session_waiting(sess) >= cf->session_queue_limit)
        return (int)scheduler_refuse(s, c, 429, "queue_full", "this session's queue is full; retry later", "session");
    char why[160];
    long reset_s = 0;
    if (s->cfg.budget && budget_check(s->cfg.budget, owner, clock_now(), why, sizeof why, &reset_s) != 0) {
        if (c)
            control_error_retry(c, 429, "budget_exceeded", why, "budget", reset_s > 0 ? reset_s : 1);
        return -1;
    }
    if (cf->user_queue_limit > 0 && user_count(u, owner, USER_QUEUED) >= cf->user_queue_limit)
        return (int)scheduler_refuse(s, c, 429, "user_limit",
                                     "you have user_queue_limit messages waiting; retry when one has started", "user");
    if (user_count(u, owner, USER_QUEUED_BYTES) + bytes > cf->user_queue_max_bytes)
        return (int)scheduler_refuse(s, c, 429, "queue_full",
                                     "your messages waiting to run are over user_queue_max_bytes; retry later", "user");
    if (user_total(u, USER_QUEUED_BYTES) + bytes > cf->queue_max_bytes)
        return (int)scheduler_refuse(s, c, 429, "queue_full",
                                     "the manager's queue is full (queue_max_bytes); retry later", "manager");
    if (how != SCHEDULER_WAIT_ASYNC && s->message_capacity > 0 &&
        user_count(u, owner, USER_WAITERS) >= user_share_of(s->message_capacity, cf->user_max_share))
        return (int)scheduler_refuse(s, c, 429, "user_busy",
                                     "you hold your share of the pool's message capacity (user_max_share); wait for a "
                                     "message to finish, or send with Prefer: respond-async",
                                     NULL);
    return 0;
}

/* Tell c the message is queued: 202 with its Location, or the stream's first event. */
static void scheduler_ack(execution_t *e, session_t *sess, control_conn_t *c, scheduler_wait_t how)
{
    json_object *info = json_object_new_object();
    json_object_object_add(info, "execution_id", json_object_new_int64(e->rec.id));
    json_object_object_add(info, "session_id", json_object_new_string(e->session_id));
    json_object_object_add(info, "position", json_object_new_int64((int64_t)session_waiting(sess)));
    if (how == SCHEDULER_WAIT_ASYNC) {
        json_object *h = json_object_new_object();
        char loc[64];
        snprintf(loc, sizeof loc, "/api/executions/%lld", (long long)e->rec.id);
        json_object_object_add(h, "Location", json_object_new_string(loc));
        json_object_object_add(info, "status", json_object_new_string("queued"));
        control_reply(c, 202, info, h);
        return;
    }
    if (how == SCHEDULER_WAIT_STREAM) {
        control_stream_start(c);
        execution_emit(e, "queued", info);
    }
    json_object_put(info);
}

int64_t scheduler_submit(scheduler_t *s, session_t *sess, const char *text, const char *model, const char *agent,
                         control_conn_t *c, scheduler_wait_t how)
{
    if (s->stopping)
        return scheduler_refuse(s, c, 503, "shutting_down", "the manager is shutting down", NULL);
    scheduler_route_t r = scheduler_route(s, sess);
    if (r.fatal) {
        char msg[400];
        snprintf(msg, sizeof msg,
                 "opencode server %d of pool %s is FATAL: it was restarted more than server_restart_limit times "
                 "within server_restart_window, and fallback is off; an operator fixes the cause and runs "
                 "`ocpmctl server restart --pool %s %d`",
                 r.server, s->cfg.pool, s->cfg.pool, r.server);
        return scheduler_refuse(s, c, 503, "server_fatal", msg, NULL);
    }
    long bytes = (long)(strlen(text) + (model ? strlen(model) : 0) + (agent ? strlen(agent) : 0)) +
                 SCHEDULER_QUEUED_OVERHEAD;
    if (scheduler_admit(s, sess, bytes, how, c) != 0)
        return -1;
    const char *why = NULL;
    execution_t *e = execution_new(s, sess, text, model, agent, &why);
    if (!e && strcmp(why, "storage") == 0) {
        char msg[512];
        int retry = 0;
        const char *reason = storage_retry_explain(s->cfg.storage, "cannot record the execution; nothing was run",
                                                   msg, sizeof msg, &retry);
        if (c)
            control_error_retry(c, 503, "storage_unavailable", msg, reason, retry ? s->cfg.conf->retry_after_s : 0);
        return -1;
    }
    if (!e)
        return scheduler_refuse(s, c, 500, "internal", why, NULL);
    if (session_enqueue(sess, e) != 0 || execution_hold_bytes(e, bytes) != 0 ||
        (how != SCHEDULER_WAIT_ASYNC && execution_add_waiter(e, c, how == SCHEDULER_WAIT_STREAM) != 0)) {
        session_unqueue(sess, e);
        execution_set_error(e, "out of memory");
        execution_finish(e, EXEC_FAILED);
        return scheduler_refuse(s, c, 500, "internal", "out of memory", NULL);
    }
    int64_t id = e->rec.id;
    scheduler_append(s, e);
    if (c)
        scheduler_ack(e, sess, c, how);
    scheduler_kick(s);
    return id;
}

int scheduler_follow(scheduler_t *s, int64_t id, const char *owner, control_conn_t *c, long long after)
{
    for (execution_t *e = s->live; e; e = e->live_next)
        if (e->rec.id == id && strcmp(e->owner, owner) == 0) {
            /* A follower holds a responder thread as a waiting message does: the same share. */
            if (s->message_capacity > 0 && user_count(s->cfg.users, owner, USER_WAITERS) >=
                                               user_share_of(s->message_capacity, s->cfg.conf->user_max_share))
                return scheduler_refuse(s, c, 429, "user_busy",
                                        "you hold your share of the pool's message capacity (user_max_share)", NULL),
                       -1;
            if (execution_follow(e, c, after) == 0)
                return 1;
            return scheduler_refuse(s, c, 429, "too_many_waiters", "too many clients follow this execution", NULL), -1;
        }
    return 0;
}

int scheduler_abort_session(scheduler_t *s, session_t *sess, const char *reason)
{
    int n = 0;
    execution_t *e;
    while ((e = session_dequeue(sess))) {
        scheduler_unlink(s, e);
        s->queued--;
        execution_set_error(e, reason);
        execution_finish(e, EXEC_ABORTED);
        n++;
    }
    e = session_running(sess);
    if (e && (e->job || e->project || e->waits_project)) {
        execution_set_error(e, reason);
        execution_stop(e, BACKEND_STOP_ABORT);
        n++;
    }
    return n;
}

long scheduler_shutdown(scheduler_t *s)
{
    s->stopping = 1;
    while (s->head) {
        execution_t *e = s->head;
        scheduler_dequeue(s, e, session_find(s->cfg.sessions, e->owner, e->session_id));
        execution_set_error(e, "manager shut down before the run started");
        execution_finish(e, EXEC_ABORTED);
    }
    return s->running;
}

static void scheduler_kill_each(void *ctx, session_t *sess)
{
    (void)ctx;
    execution_t *e = session_running(sess);
    if (e)
        execution_stop(e, BACKEND_STOP_SHUTDOWN);
}

void scheduler_kill_running(scheduler_t *s) { session_each(s->cfg.sessions, scheduler_kill_each, NULL); }
