/* The agent's side of a turn over HTTP: its permission and question prompts (listed and answered
 * by the session's owner), an execution's events replayed and followed, the session's diff. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "log.h"

static void api_prompt_list(manager_t *m, control_conn_t *c, const api_call_t *call, const char *kind)
{
    if (!api_session_of(m, c, call))
        return;
    json_object *list = db_prompt_list(m->db, call->user, kind, call->id, api_arg(call, "status"), 0);
    if (!list)
        return api_storage_error(m, c, "cannot read prompts");
    json_object *o = json_object_new_object();
    json_object_object_add(o, strcmp(kind, "permission") == 0 ? "permissions" : "questions", list);
    control_reply(c, 200, o, NULL);
}

void api_permission_list(void *ctx, control_conn_t *c, const api_call_t *call)
{
    api_prompt_list(ctx, c, call, "permission");
}

void api_question_list(void *ctx, control_conn_t *c, const api_call_t *call)
{
    api_prompt_list(ctx, c, call, "question");
}

/* How a prompt's answer ended, as the client reads it. */
static void api_prompt_answer(control_conn_t *c, int status, json_object *record, const char *why)
{
    static const struct {
        int status;
        const char *code;
    } codes[] = {{404, "prompt_not_found"}, {409, "not_pending"}, {502, "opencode_unavailable"},
                 {503, "storage_unavailable"}};
    if (status == 200)
        return (void)control_reply(c, 200, json_object_get(record), NULL);
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i].status == status)
            return (void)control_error(c, status, codes[i].code, why);
    control_error(c, 500, "internal", why);
}

/* An answer on its way to opencode, and the client waiting for it (NULL once it went away). */
typedef struct api_answer_job {
    control_conn_t *c;
} api_answer_job_t;

static void api_answer_detach(void *ctx, control_conn_t *c)
{
    (void)c;
    ((api_answer_job_t *)ctx)->c = NULL;
}

static void api_answer_done(void *ctx, int status, json_object *record, const char *why)
{
    api_answer_job_t *j = ctx;
    if (j->c)
        api_prompt_answer(j->c, status, record, why);
    free(j);
}

static void api_prompt_reply(manager_t *m, control_conn_t *c, const api_call_t *call, const char *kind)
{
    if (!api_session_of(m, c, call))
        return;
    /* A question's answer is its answers or a rejection, never both (each field checked by its row). */
    json_object *v;
    if (strcmp(kind, "question") == 0 && json_object_object_get_ex(call->args, "answers", &v) ==
                                             json_object_object_get_ex(call->args, "reject", &v))
        return (void)control_error(c, 400, "invalid_field", "give either answers or \"reject\": true");
    api_answer_job_t *j = calloc(1, sizeof *j);
    if (!j)
        return (void)control_error(c, 500, "internal", "out of memory");
    j->c = c;
    char why[512] = "";
    int st = ask_reply(m->asks, kind, call->user, call->id, call->sub, call->args, api_answer_done, j, why, sizeof why);
    if (st != 0) {
        free(j);
        return api_prompt_answer(c, st, NULL, why);
    }
    /* The answer is recorded when opencode takes it: the client waits for that. */
    control_set_waiter(c, api_answer_detach, j);
}

void api_permission_reply(void *ctx, control_conn_t *c, const api_call_t *call)
{
    api_prompt_reply(ctx, c, call, "permission");
}

void api_question_reply(void *ctx, control_conn_t *c, const api_call_t *call)
{
    api_prompt_reply(ctx, c, call, "question");
}

typedef struct api_replay {
    control_conn_t *c;
    long long last; /* the last id sent (or the client's after) */
    int done;
} api_replay_t;

/* One stored event; a gap before it (events past events_max were not kept) is said first. */
static void api_replay_one(void *ctx, const db_event_t *ev)
{
    api_replay_t *r = ctx;
    if (ev->seq > r->last + 1) {
        json_object *d = json_object_new_object();
        json_object_object_add(d, "message", json_object_new_string("events past events_max were not kept"));
        json_object_object_add(d, "from", json_object_new_int64(r->last + 1));
        json_object_object_add(d, "to", json_object_new_int64(ev->seq - 1));
        control_event(r->c, 0, "events.truncated", d);
        json_object_put(d);
    }
    json_object *data = json_tokener_parse(ev->data);
    control_event(r->c, ev->seq, ev->type, data);
    json_object_put(data);
    r->last = ev->seq;
    if (strcmp(ev->type, "done") == 0)
        r->done = 1;
}

/* A finished execution: its stored events after after, then the end. An execution whose events
 * were not kept (finished before they were, or their write failed) still ends with done, built
 * from its row. */
void api_exec_events(void *ctx, control_conn_t *c, const api_call_t *call)
{
    manager_t *m = ctx;
    int64_t id = strtoll(call->id, NULL, 10);
    long long after = (long long)api_num(call, "after", 0);
    for (int i = 0; i < m->ntenants; i++)
        if (scheduler_follow(m->tenants[i].scheduler, id, call->user, c, after) != 0)
            return;
    json_object *row = db_exec_get(m->db, id, call->user);
    if (!row)
        return (void)control_error(c, 404, "execution_not_found", "no such execution");
    api_replay_t r = {.c = c, .last = after};
    control_stream_start(c);
    if (db_event_each(m->db, id, after, api_replay_one, &r) != 0)
        log_error("cannot read an execution's events", "executionId=%lld error=%s", (long long)id,
                  log_q(db_errmsg(m->db)));
    if (!r.done && after == 0) {
        json_object *b = json_object_new_object(), *answer = NULL;
        json_object_object_get_ex(row, "answer", &answer);
        json_object_object_add(b, "text", json_object_get(answer));
        json_object_object_add(b, "execution", db_exec_public(json_object_get(row)));
        control_event(c, 0, "done", b);
        json_object_put(b);
    }
    json_object_put(row);
    control_end(c);
}

typedef struct api_diff_job {
    control_conn_t *c; /* NULL once the client went away */
    http_req_t *req;
} api_diff_job_t;

static void api_diff_detach(void *ctx, control_conn_t *c)
{
    (void)c;
    api_diff_job_t *j = ctx;
    http_cancel(j->req);
    free(j);
}

/* opencode's [{file, patch, additions, deletions, status}] as {files, additions, deletions}. */
static void api_diff_done(void *ctx, int err, const char *errmsg, long status, const char *body, size_t len)
{
    (void)len;
    api_diff_job_t *j = ctx;
    control_conn_t *c = j->c;
    free(j);
    json_object *a = !err && status == 200 ? json_tokener_parse(body) : NULL;
    if (!a || !json_object_is_type(a, json_type_array)) {
        json_object_put(a);
        log_warn("the opencode server did not give a diff", "status=%ld error=%s", status, log_q(err ? errmsg : ""));
        control_error(c, 502, "opencode_unavailable", "the opencode server did not give the diff");
        return;
    }
    long long add = 0, del = 0;
    for (size_t i = 0; i < json_object_array_length(a); i++) {
        json_object *f = json_object_array_get_idx(a, i), *v;
        if (json_object_object_get_ex(f, "additions", &v))
            add += json_object_get_int64(v);
        if (json_object_object_get_ex(f, "deletions", &v))
            del += json_object_get_int64(v);
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "files", a);
    json_object_object_add(o, "additions", json_object_new_int64(add));
    json_object_object_add(o, "deletions", json_object_new_int64(del));
    control_reply(c, 200, o, NULL);
}

void api_session_diff(void *ctx, control_conn_t *c, const api_call_t *call)
{
    manager_t *m = ctx;
    session_t *s = api_session_of(m, c, call);
    if (!s)
        return;
    tenant_t *t = tenant_of(m->tenants, m->ntenants, s);
    if (!t->nservers)
        return (void)control_error(c, 409, "not_in_server_mode",
                                   "the diff comes from the opencode server; this manager runs a process per message");
    api_diff_job_t *j = calloc(1, sizeof *j);
    if (!j)
        return (void)control_error(c, 500, "internal", "out of memory");
    j->c = c;
    /* The session's server; any can read a workspace's changes for one not placed yet. */
    int server = session_server(s) >= 0 && session_server(s) < t->nservers ? session_server(s) : 0;
    j->req = oc_server_diff(t->servers[server], session_workspace(s), api_diff_done, j);
    if (!j->req) {
        free(j);
        return (void)control_error(c, 503, "server_unavailable", "the opencode server is not ready; retry shortly");
    }
    control_set_waiter(c, api_diff_detach, j);
}
