#define _GNU_SOURCE
#include "scheduler_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

/* What a waiting message costs beyond its text (the record, the queue node). */
#define SCHEDULER_QUEUED_OVERHEAD 512

scheduler_t *scheduler_new(const scheduler_config_t *cfg)
{
    scheduler_t *s = calloc(1, sizeof *s);
    if (s)
        s->cfg = *cfg;
    return s;
}

void scheduler_free(scheduler_t *s) { free(s); }

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

/* Where waiting messages may start now. */
typedef struct scheduler_route {
    const backend_t *backend; /* NULL: nowhere yet */
    int shared_home;          /* the fallback, standing in for the primary */
    long limit;               /* how many may run at once on this route */
    int expires;              /* waiting for it ends after fallback_wait */
} scheduler_route_t;

static scheduler_route_t scheduler_route(const scheduler_t *s)
{
    const conf_t *cf = s->cfg.conf;
    const backend_t *p = &s->cfg.primary;
    scheduler_route_t r = {.limit = cf->max_concurrent_runs};
    switch (p->ops->state(p->self)) {
    case BACKEND_READY:
        r.backend = p;
        break;
    case BACKEND_FULL: /* nothing starts until one of its jobs ends */
        r.limit = 0;
        break;
    case BACKEND_WAIT: /* a replacement comes: wait for it, without end */
        break;
    case BACKEND_DOWN:
        if (s->cfg.fallback.ops && cf->fallback) {
            r.backend = &s->cfg.fallback;
            r.shared_home = 1;
            if (cf->fallback_max_runs < r.limit)
                r.limit = cf->fallback_max_runs;
        } else {
            r.expires = 1;
        }
        break;
    }
    if (r.backend) {
        long cap = r.backend->ops->capacity(r.backend->self);
        if (cap > 0 && cap < r.limit)
            r.limit = cap;
    }
    return r;
}

/* With nowhere to run and fallback off, a message waits for the server, but not without end. */
static void scheduler_expire(scheduler_t *s, double now)
{
    for (execution_t *e = s->head, *next; e; e = next) {
        next = e->qnext;
        if ((now - e->rec.queued_at) * 1000.0 <= s->cfg.conf->fallback_wait_ms)
            continue;
        scheduler_dequeue(s, e, session_find(s->cfg.sessions, e->owner, e->session_id));
        execution_set_error(e, "the opencode server is unavailable and fallback is off");
        execution_finish(e, EXEC_FAILED);
    }
}

/* The next message to start: round robin over the owners with one that may start (its session idle,
 * its owner under share), in the order of their names, from the one after the owner served last;
 * of that owner's, the oldest. So one user's long queue delays another's message by at most one
 * start per slot. NULL: none may start. */
static execution_t *scheduler_next(scheduler_t *s, long share)
{
    execution_t *after = NULL, *first = NULL;
    for (execution_t *e = s->head; e; e = e->qnext) {
        session_t *sess = session_find(s->cfg.sessions, e->owner, e->session_id);
        if (e->unstartable || !sess || session_running(sess) ||
            user_count(s->cfg.users, e->owner, USER_RUNNING) >= share)
            continue;
        if (!first || strcmp(e->owner, first->owner) < 0)
            first = e;
        if (strcmp(e->owner, s->last_owner) > 0 && (!after || strcmp(e->owner, after->owner) < 0))
            after = e;
    }
    return after ? after : first;
}

void scheduler_kick(scheduler_t *s)
{
    if (s->stopping)
        return;
    scheduler_route_t r = scheduler_route(s);
    if (!r.backend) {
        if (r.expires)
            scheduler_expire(s, clock_now());
        return;
    }
    /* No user holds more than user_max_share of the route's slots, nor user_max_running. */
    long share = user_share_of(r.limit, s->cfg.conf->user_max_share);
    if (s->cfg.conf->user_max_running > 0 && s->cfg.conf->user_max_running < share)
        share = s->cfg.conf->user_max_running;
    execution_t *e;
    while (s->running < r.limit && (e = scheduler_next(s, share))) {
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
        /* Starting may finish (and free) e. */
        execution_begin(e, r.backend, r.shared_home);
    }
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
    if (e && (e->job || e->project)) {
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
