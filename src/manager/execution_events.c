/* One execution's events (execution.c is the rest of its life): every event a client is sent gets
 * its id (turn.h), a client may follow them from any id, and opencode's prompts become records
 * (ask.h), announced in their place. */
#define _GNU_SOURCE
#include "scheduler_internal.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

/* Prompts recorded per turn at most (a real turn asks a few). */
#define EXECUTION_PROMPTS_MAX 256

/* s with every from replaced by to (malloc'd), or NULL when from is not in it. */
static char *execution_replace(const char *s, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to), n = 0;
    if (!fl)
        return NULL;
    for (const char *p = strstr(s, from); p; p = strstr(p + fl, from))
        n++;
    if (!n)
        return NULL;
    char *out = malloc(strlen(s) + n * tl + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = s, *q; (q = strstr(p, from)); p = q + fl) {
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, to, tl);
        o += tl;
        s = q + fl;
    }
    strcpy(o, s);
    return out;
}

/* opencode's events name the server's paths (a session's directory, its cwd and root): clients
 * see the workspace as /workspace and ocpm's other directories as /ocpm, never where they are.
 * s is the event's JSON text; returns it rewritten (malloc'd), or NULL when it names none. */
static char *execution_redact(const execution_t *e, const char *s)
{
    const conf_t *cf = e->sch->cfg.conf;
    session_t *sess = session_find(e->sch->cfg.sessions, e->owner, e->session_id);
    const char *paths[][2] = {{sess ? session_workspace(sess) : "", "/workspace"},
                              {cf->workspace_root, "/ocpm"},
                              {cf->agent_home, "/ocpm"},
                              {cf->state_dir, "/ocpm"}};
    char *cur = NULL;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        char *next = execution_replace(cur ? cur : s, paths[i][0], paths[i][1]);
        if (next) {
            free(cur);
            cur = next;
        }
    }
    return cur;
}

/* The event's text is made once: redacted, kept, and parsed again only when it was rewritten. */
void execution_emit(execution_t *e, const char *event, json_object *data)
{
    const char *s = data ? json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
                         : "null";
    char *text = execution_redact(e, s);
    json_object *clean = text ? json_tokener_parse(text) : NULL;
    long long id = turn_log(e->turn, event, text ? text : s);
    for (int i = 0; i < e->nwaiters; i++)
        if (e->waiter_stream[i])
            control_event(e->waiters[i], id, event, clean ? clean : data);
    json_object_put(clean);
    free(text);
}

static void execution_replay_one(void *ctx, const db_event_t *ev)
{
    json_object *data = json_tokener_parse(ev->data);
    control_event(ctx, ev->seq, ev->type, data);
    json_object_put(data);
}

int execution_follow(execution_t *e, control_conn_t *c, long long after)
{
    if (e->nwaiters >= EXECUTION_WAITERS_MAX)
        return -1;
    if (control_stream_start(c) != 0)
        return 0; /* the client is gone: nothing to follow */
    if (turn_replay(e->turn, after, execution_replay_one, c)) {
        json_object *d = json_object_new_object();
        json_object_object_add(d, "message", json_object_new_string("events past events_max were not kept"));
        control_event(c, 0, "events.truncated", d);
        json_object_put(d);
    }
    /* A write that failed closed c: it must not become a waiter (it is freed with its close). */
    if (control_closing(c) || user_add(e->sch->cfg.users, e->owner, USER_WAITERS, 1) != 0)
        return 0;
    e->waiters[e->nwaiters] = c;
    e->waiter_stream[e->nwaiters] = 1;
    e->nwaiters++;
    control_set_waiter(c, execution_detach, e);
    return 0;
}

/* ask.h: answer a prompt through the backend the execution runs on. */
static int execution_answer(void *ctx, const char *kind, const char *id, json_object *reply, backend_answered_fn done,
                            void *dctx)
{
    execution_t *e = ctx;
    if (!e->job || !e->backend->ops->answer)
        return -1;
    return e->backend->ops->answer(e->job, kind, id, reply, done, dctx);
}

static void execution_emit_cb(void *ctx, const char *event, json_object *record) { execution_emit(ctx, event, record); }

/* An answer reached opencode (or failed to): a turn whose job ended may have waited for it. */
static void execution_landed(void *ctx) { execution_maybe_conclude(ctx); }

static void execution_refused(void *ctx, int ok, const char *why)
{
    (void)ctx;
    (void)ok;
    (void)why;
}

/* A prompt past the turn's bound: refused at once, so the turn never waits for it, and not recorded. */
static void execution_refuse_prompt(execution_t *e, const char *kind, json_object *props)
{
    json_object *id, *r = ask_rejection(kind);
    if (json_object_object_get_ex(props, "id", &id) && json_object_is_type(id, json_type_string))
        execution_answer(e, kind, json_object_get_string(id), r, execution_refused, NULL);
    json_object_put(r);
}

/* opencode's events: read for the audit, passed on to streaming clients; its prompts become
 * ocpm's records (ask.h), announced in their place. */
void execution_on_event(void *ctx, const char *type, json_object *data)
{
    execution_t *e = ctx;
    if (e->sch->cfg.conf->slowlog_timeout_ms > 0) /* for the slow log alone: nothing when it is off */
        e->last_event_at = clock_now();
    turn_observe(e->turn, type, data);
    /* A turn past user_turn_cost_max is stopped (once): recorded budget_exceeded. */
    long cap = e->sch->cfg.conf->user_turn_cost_max_micro;
    if (cap > 0 && !e->over_budget && e->job && turn_cost(e->turn) * 1e6 > (double)cap) {
        e->over_budget = 1;
        log_warn("a turn passed user_turn_cost_max; stopping it", "executionId=%lld sessionId=%s cost=%.6f",
                 (long long)e->rec.id, e->session_id, turn_cost(e->turn));
        /* The stop may end (and free) e at once: nothing of e after it. */
        execution_stop(e, BACKEND_STOP_BUDGET);
        return;
    }
    /* A prompt opencode decided alone is only believed from a backend that cannot be asked. */
    if (strcmp(type, BACKEND_EVENT_DECIDED) == 0 && e->backend->ops->answer)
        return;
    static const char *const prompts[][2] = {
        {"permission.asked", "permission"}, {"question.asked", "question"}, {BACKEND_EVENT_DECIDED, "permission"}};
    static const char *const quiet[] = {"permission.replied", "question.replied", "question.rejected"};
    for (size_t i = 0; i < sizeof prompts / sizeof prompts[0]; i++)
        if (strcmp(type, prompts[i][0]) == 0) {
            /* The agent's server (or its stderr) says what it asks: bounded per turn. */
            if (++e->prompts > EXECUTION_PROMPTS_MAX) {
                if (e->prompts == EXECUTION_PROMPTS_MAX + 1)
                    log_warn("too many prompts in one turn; later ones are rejected, not recorded",
                             "executionId=%lld max=%d", (long long)e->rec.id, EXECUTION_PROMPTS_MAX);
                if (e->backend->ops->answer)
                    execution_refuse_prompt(e, prompts[i][1], data);
                return;
            }
            ask_origin_t from = {.conf = e->sch->cfg.conf, .owner = e->owner, .session_id = e->session_id, .exec_id = e->rec.id,
                                 .answer = e->backend->ops->answer ? execution_answer : NULL, .job = e,
                                 .emit = execution_emit_cb, .ectx = e, .landed = execution_landed};
            json_object *tool, *call;
            const char *name = NULL;
            if (json_object_object_get_ex(data, "tool", &tool) && json_object_object_get_ex(tool, "callID", &call))
                name = turn_tool_name(e->turn, json_object_get_string(call));
            ask_raised(e->sch->cfg.asks, prompts[i][1], data, &from, name);
            return;
        }
    for (size_t i = 0; i < sizeof quiet / sizeof quiet[0]; i++)
        if (strcmp(type, quiet[i]) == 0) {
            json_object *rq;
            if (e->backend->ops->answer && json_object_object_get_ex(data, "requestID", &rq) &&
                json_object_is_type(rq, json_type_string))
                ask_confirmed(e->sch->cfg.asks, e->rec.id, i == 0 ? "permission" : "question",
                              json_object_get_string(rq));
            return;
        }
    execution_emit(e, type, data);
}

