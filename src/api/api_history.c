#define _GNU_SOURCE
#include "api_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

/* A history page ends early past this many bytes of JSON (its cursor continues), so no page comes
 * near the reply frame whatever the rows hold. */
#define API_PAGE_BYTES (4u << 20)

/* History, newest first, with a cursor: next_cursor is the `before` of the next page. A page ends
 * at `limit` rows or API_PAGE_BYTES, whichever comes first. Users see their own rows without
 * server details; operators (owner NULL) see everyone's whole rows. */
void api_reply_page(control_conn_t *c, const char *key, json_object *rows, int more)
{
    size_t n = json_object_array_length(rows);
    json_object *last = n ? json_object_object_get(json_object_array_get_idx(rows, n - 1), "id") : NULL;
    control_reply(c, 200, api_page_json(key, rows, more && last ? json_object_get(last) : NULL), NULL);
}

json_object *api_page_json(const char *key, json_object *rows, json_object *next)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, key, rows);
    json_object_object_add(o, "next_cursor", next);
    return o;
}

static void api_exec_page(manager_t *m, control_conn_t *c, const api_call_t *call, const char *owner)
{
    db_exec_filter_t f = {.owner = owner, .session_id = api_arg(call, "session"), .status = api_arg(call, "status"),
                          .mode = api_arg(call, "mode"), .since = api_num(call, "since", 0),
                          .until = api_num(call, "until", 0), .before = (long long)api_num(call, "before", 0),
                          .limit = (long)api_num(call, "limit", 50), .max_bytes = API_PAGE_BYTES};
    int more = 0;
    json_object *a = db_exec_list(m->db, &f, &more);
    if (!a)
        return api_storage_error(m, c, "cannot read executions");
    size_t n = json_object_array_length(a);
    for (size_t i = 0; owner && i < n; i++)
        db_exec_public(json_object_array_get_idx(a, i));
    api_reply_page(c, "executions", a, more);
}

void api_exec_list(void *ctx, control_conn_t *c, const api_call_t *call) { api_exec_page(ctx, c, call, call->user); }

void api_admin_exec_list(void *ctx, control_conn_t *c, const api_call_t *call) { api_exec_page(ctx, c, call, NULL); }

/* The slow log (slowlog.h), newest first; next_cursor is the `before` of the next page. */
void api_admin_slowlog(void *ctx, control_conn_t *c, const api_call_t *call)
{
    manager_t *m = ctx;
    long limit = (long)api_num(call, "limit", 50);
    int more = 0;
    json_object *a = db_slow_list(m->db, api_num(call, "since", 0), (long long)api_num(call, "before", 0), limit,
                                  API_PAGE_BYTES, &more);
    if (!a)
        return api_storage_error(m, c, "cannot read the slow log");
    api_reply_page(c, "slow_turns", a, more);
}

void api_usage(void *ctx, control_conn_t *c, const api_call_t *call)
{
    manager_t *m = ctx;
    json_object *o = budget_usage_json(m->budget, call->user, clock_now());
    json_object_object_add(o, "user", *call->user ? json_object_new_string(call->user) : NULL);
    control_reply(c, 200, o, NULL);
}

void api_exec_get(void *ctx, control_conn_t *c, const api_call_t *call)
{
    manager_t *m = ctx;
    int64_t id = strtoll(call->id, NULL, 10);
    json_object *o = db_exec_get(m->db, id, call->user);
    if (!o)
        return control_error(c, 404, "execution_not_found", "no such execution"), (void)0;
    /* What its agent did: tool calls (stored when it ends), permission and question prompts. */
    db_exec_add_turn(m->db, o, id);
    control_reply(c, 200, db_exec_public(o), NULL);
}

/* Statistics can take seconds on a large history: a read on the thread pool (api_read.c). */
static json_object *api_stats_read(db_t *ro, json_object *args, char *err, size_t errlen)
{
    json_object *v;
    double since = json_object_object_get_ex(args, "since", &v) ? json_object_get_double(v) : 0;
    double until = json_object_object_get_ex(args, "until", &v) ? json_object_get_double(v) : clock_now() + 1;
    json_object *o = db_stats_opt(ro, since, until, json_object_object_get_ex(args, "histograms", NULL));
    if (!o)
        snprintf(err, errlen, "%s", db_errmsg(ro));
    return o;
}

void api_stats(void *ctx, control_conn_t *c, const api_call_t *call)
{
    api_read(ctx, c, call, api_stats_read, "cannot compute statistics");
}

/* Everyone's sessions by (owner, id), a page at a time; the view adds up each session's executions,
 * so on the thread pool too. next_cursor is the `after` of the next page ("OWNER/ID"). */
static json_object *api_admin_sessions_read(db_t *ro, json_object *args, char *err, size_t errlen)
{
    json_object *v;
    long limit = json_object_object_get_ex(args, "limit", &v) ? (long)json_object_get_int64(v) : 100;
    char owner[1024] = "", next[1024];
    const char *after = json_object_object_get_ex(args, "after", &v) ? json_object_get_string(v) : "/";
    const char *slash = strrchr(after, '/'); /* api_check_value let only OWNER/ID through */
    snprintf(owner, sizeof owner, "%.*s", (int)(slash - after), after);
    json_object *rows = db_session_summary_page(ro, owner, slash + 1, limit, next, sizeof next);
    if (!rows)
        return snprintf(err, errlen, "%s", db_errmsg(ro)), NULL;
    return api_page_json("sessions", rows, *next ? json_object_new_string(next) : NULL);
}

void api_admin_session_list(void *ctx, control_conn_t *c, const api_call_t *call)
{
    api_read(ctx, c, call, api_admin_sessions_read, "cannot read sessions");
}

static void api_prune_done(void *ctx, long deleted, int failed)
{
    control_conn_t *c = ctx;
    if (failed)
        return control_error(c, 503, "storage_unavailable", "pruning failed; see the log"), (void)0;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "deleted", json_object_new_int64(deleted));
    control_reply(c, 200, o, NULL);
}

static void api_prune_detach(void *ctx, control_conn_t *c)
{
    (void)c;
    prune_detach(ctx); /* the pass goes on; nobody waits for its count */
}

/* Control socket only (ocpmctl prune): no HTTP route leads here. */
void api_prune(void *ctx, control_conn_t *c, const api_call_t *call)
{
    manager_t *m = ctx;
    if (prune_run(m->prune, api_num(call, "before", 0), api_prune_done, c) != 0)
        return control_error(c, 409, "busy", "a pruning pass is already running"), (void)0;
    control_set_waiter(c, api_prune_detach, m->prune);
}

/* Control socket only (ocpmctl reload): the same reload as SIGHUP's, answered with what changed,
 * or 400 invalid_configuration with the file's error (nothing changed then). */
void api_reload(void *ctx, control_conn_t *c, const api_call_t *call)
{
    (void)call;
    manager_t *m = ctx;
    char err[1024];
    json_object *info = NULL;
    if (m->stopping)
        return control_error(c, 503, "shutting_down", "the manager is stopping"), (void)0;
    if (manager_reload(m, &info, err, sizeof err) != 0)
        return control_error(c, 400, "invalid_configuration", err), (void)0;
    control_reply(c, 200, info, NULL);
}
