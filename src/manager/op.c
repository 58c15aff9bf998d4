#define _GNU_SOURCE
#include "op.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "storage_retry.h"
#include "execution.h"
#include "log.h"
#include "metrics.h"
#include "oc_models.h"
#include "prune.h"
#include "pool.h"
#include "session.h"
#include "oc_server.h"
#include "user.h"
#include "valid.h"
#include "workspace.h"
#include "clock.h"

/* A history page ends early past this many bytes of JSON (its cursor continues), so no page comes
 * near the reply frame whatever the rows hold. */
#define OP_PAGE_BYTES (4u << 20)

typedef struct op_req {
    const char *user;
    const char *id; /* path id, or NULL */
    json_object *args;
    int stream, async;
} op_req_t;

typedef void (*op_fn)(manager_t *m, control_conn_t *c, const op_req_t *r);

static const char *op_arg(const op_req_t *r, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(r->args, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

/* A session the user may see, or NULL after answering 404. Ids are the user's own: another user's
 * session of the same id is simply not there. */
static session_t *op_session(control_conn_t *c, const op_req_t *r)
{
    session_t *s = r->id ? session_find(r->user, r->id) : NULL;
    if (!s) {
        control_error(c, 404, "session_not_found", "no such session");
        return NULL;
    }
    return s;
}

json_object *op_status_json(manager_t *m)
{
    double now = clock_now();
    json_object *o = json_object_new_object();
    json_object_object_add(o, "available", json_object_new_boolean(m->available));
    json_object_object_add(o, "version", m->available ? json_object_new_string(m->version) : NULL);
    json_object_object_add(o, "runningProcesses", json_object_new_int64(m->running));
    json_object_object_add(o, "activeStreams", json_object_new_int64(m->streams));
    json_object *pm = json_object_new_object();
    int server = oc_server_state() != OC_SERVER_OFF;
    json_object_object_add(pm, "isRunning", json_object_new_boolean(server && oc_server_pid() > 0));
    json_object_object_add(pm, "isReady", json_object_new_boolean(m->ready && !m->stopping));
    json_object_object_add(pm, "pendingRequests", json_object_new_int64(m->queued));
    json_object_object_add(pm, "activeSessions", json_object_new_int64((int64_t)session_count()));
    json_object_object_add(pm, "lastActivity", json_object_new_int64((int64_t)(m->last_activity * 1000.0)));
    json_object_object_add(pm, "idleTime", json_object_new_int64((int64_t)((now - m->last_activity) * 1000.0)));
    json_object_object_add(pm, "mode", json_object_new_string(server ? "server" : "per-session"));
    json_object_object_add(pm, "description",
                           json_object_new_string(server ? "All sessions share one persistent OpenCode server"
                                                         : "Each message spawns separate OpenCode process"));
    json_object_object_add(o, "processManager", pm);
    if (server)
        json_object_object_add(o, "server", oc_server_status_json());
    /* Additions beside the original fields. */
    json_object *x = json_object_new_object();
    json_object_object_add(x, "pid", json_object_new_int64(getpid()));
    json_object_object_add(x, "startedAt", json_object_new_int64((int64_t)(m->started_at * 1000.0)));
    json_object_object_add(x, "uptimeSeconds", json_object_new_double(now - m->started_at));
    json_object_object_add(x, "configuredMode", json_object_new_string(conf_mode_name(m->conf->mode)));
    json_object_object_add(x, "serverModeSupported", json_object_new_boolean(m->serve_supported));
    json_object_object_add(x, "fallback", json_object_new_boolean(m->conf->fallback));
    json_object_object_add(x, "shuttingDown", json_object_new_boolean(m->stopping));
    json_object_object_add(x, "maxConcurrentRuns", json_object_new_int64(m->conf->max_concurrent_runs));
    json_object_object_add(x, "processesSpawned", json_object_new_int64((int64_t)m->spawned));
    json_object_object_add(x, "executionsFinished", json_object_new_int64((int64_t)m->finished));
    json_object_object_add(x, "executionsFailed", json_object_new_int64((int64_t)m->failed));
    json_object_object_add(x, "requests", json_object_new_int64((int64_t)m->requests));
    json_object_object_add(x, "responders", pool_status_json(m->pool));
    json_object_object_add(x, "database", storage_retry_status_json());
    json_object_object_add(x, "agentIsolation", agent_status_json());
    json_object_object_add(x, "modelsKnown", oc_models_count() >= 0 ? json_object_new_int64(oc_models_count()) : NULL);
    /* Heap in use as glibc's malloc sees it (RSS also holds what malloc keeps for reuse); null where
     * another allocator answers (AddressSanitizer's reports 0). */
    struct mallinfo2 mi = mallinfo2();
    json_object_object_add(x, "heapInUseBytes", mi.uordblks ? json_object_new_int64((int64_t)mi.uordblks) : NULL);
    json_object_object_add(o, "ocpm", x);
    return o;
}

static void op_status(manager_t *m, control_conn_t *c, const op_req_t *r)
{
    (void)r;
    control_reply(c, 200, op_status_json(m), NULL);
}

static void op_health(manager_t *m, control_conn_t *c, const op_req_t *r)
{
    (void)r;
    json_object *o = json_object_new_object();
    int ok = m->ready && !m->stopping;
    json_object_object_add(o, "status", json_object_new_string(ok ? "ok" : "stopping"));
    json_object_object_add(o, "available", json_object_new_boolean(m->available));
    control_reply(c, ok ? 200 : 503, o, NULL);
}

static void op_session_create(manager_t *m, control_conn_t *c, const op_req_t *r)
{
    const char *id = op_arg(r, "id");
    const char *wsname = op_arg(r, "workspace");
    char gen[VALID_ID_MAX + 1];
    if (!id) {
        unsigned char rnd[12];
        if (getentropy(rnd, sizeof rnd) != 0) {
            control_error(c, 500, "internal", "no randomness for an id");
            return;
        }
        int o = snprintf(gen, sizeof gen, "s_");
        for (size_t i = 0; i < sizeof rnd; i++)
            o += snprintf(gen + o, sizeof gen - (size_t)o, "%02x", rnd[i]);
        id = gen;
    }
    if (!wsname)
        wsname = id;
    if (m->stopping) {
        control_error(c, 503, "shutting_down", "the manager is shutting down");
        return;
    }
    char path[4096];
    const char *why = NULL;
    session_t *s = session_find(r->user, id);
    if (s) {
        /* Idempotent repeat, or a conflict (within the user's own sessions). */
        if (strcmp(wsname, session_workspace_name(s)) != 0) {
            control_error(c, 409, "session_conflict", "this session id is bound to another workspace");
            return;
        }
        control_reply(c, 200, session_json(s), NULL);
        return;
    }
    int exists = db_session_exists(m->db, r->user, id);
    if (exists < 0) {
        storage_retry_reply_error(c, "cannot read sessions");
        return;
    }
    if (exists) {
        control_error(c, 409, "session_deleted", "this session id belonged to a deleted session");
        return;
    }
    if (user_count(r->user, USER_SESSIONS) >= m->conf->user_max_sessions) {
        control_error(c, 429, "too_many_sessions", "you have user_max_sessions sessions; delete one first");
        return;
    }
    long nws = 0;
    int known = 0;
    if (workspace_path(m->conf->workspace_root, r->user, wsname, path, sizeof path, &why) != 0) {
        control_error(c, 400, "invalid_workspace", why);
        return;
    }
    if (db_session_workspaces(m->db, r->user, path, &nws, &known) != 0) {
        storage_retry_reply_error(c, "cannot read sessions");
        return;
    }
    if (!known && nws >= m->conf->user_max_workspaces) {
        control_error(c, 429, "too_many_workspaces", "you have user_max_workspaces workspaces; reuse one by name");
        return;
    }
    if (workspace_resolve(m->conf->workspace_root, r->user, wsname, path, sizeof path, &why) != 0) {
        control_error(c, 400, "invalid_workspace", why);
        return;
    }
    double now = clock_now();
    db_session_t row = {.id = id, .owner = r->user, .workspace = path, .created_at = now, .last_activity = now};
    if (db_session_insert(m->db, &row) != 0) {
        log_error("cannot record session", "sessionId=%s error=%s", id, log_q(db_errmsg(m->db)));
        storage_retry_reply_error(c, "cannot record the session");
        return;
    }
    s = session_add(id, r->user, path, wsname, NULL, now, now, 0);
    if (!s || user_add(r->user, USER_SESSIONS, 1) != 0) {
        control_error(c, 500, "internal", "out of memory");
        return;
    }
    m->sessions = (long)session_count();
    manager_touch(m);
    char q[600];
    log_info("Session workspace mapped", "sessionId=%s workspace=%s", id, log_quote(q, sizeof q, path));
    control_reply(c, 201, session_json(s), NULL);
}

static double op_num(const op_req_t *r, const char *key, double def);

/* The caller's sessions, in id order, a page at a time: next_cursor is the `after` of the next. */
static void op_session_list(manager_t *m, control_conn_t *c, const op_req_t *r)
{
    (void)m;
    const char *after = op_arg(r, "after");
    int more = 0;
    json_object *a = session_page(r->user, after ? after : "", (long)op_num(r, "limit", 100), &more);
    if (!a) {
        control_error(c, 500, "internal", "out of memory");
        return;
    }
    size_t n = json_object_array_length(a);
    json_object *last = n ? json_object_object_get(json_object_array_get_idx(a, n - 1), "id") : NULL;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "sessions", a);
    json_object_object_add(o, "next_cursor", more && last ? json_object_get(last) : NULL);
    control_reply(c, 200, o, NULL);
}

static void op_session_get(manager_t *m, control_conn_t *c, const op_req_t *r)
{
    (void)m;
    session_t *s = op_session(c, r);
    if (s)
        control_reply(c, 200, session_json(s), NULL);
}

static void op_session_delete(manager_t *m, control_conn_t *c, const op_req_t *r)
{
    session_t *s = op_session(c, r);
    if (!s)
        return;
    if (db_session_delete(m->db, session_owner(s), session_id(s), clock_now()) != 0) {
        storage_retry_reply_error(c, "cannot record the deletion");
        return;
    }
    int n = execution_abort_session(m, s, "session deleted");
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(session_id(s)));
    json_object_object_add(o, "deleted", json_object_new_boolean(1));
    json_object_object_add(o, "aborted", json_object_new_int(n));
    log_info("Session deleted", "sessionId=%s aborted=%d", session_id(s), n);
    user_add(session_owner(s), USER_SESSIONS, -1);
    session_remove(s);
    m->sessions = (long)session_count();
    control_reply(c, 200, o, NULL);
}

static void op_session_abort(manager_t *m, control_conn_t *c, const op_req_t *r)
{
    session_t *s = op_session(c, r);
    if (!s)
        return;
    int n = execution_abort_session(m, s, "aborted by request");
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(session_id(s)));
    json_object_object_add(o, "aborted", json_object_new_int(n));
    control_reply(c, 200, o, NULL);
}

static void op_message(manager_t *m, control_conn_t *c, const op_req_t *r)
{
    session_t *s = op_session(c, r);
    if (!s)
        return;
    if (m->stopping) {
        control_error(c, 503, "shutting_down", "the manager is shutting down");
        return;
    }
    const char *text = op_arg(r, "text");
    if (!text || !*text) {
        control_error(c, 400, "missing_field", "body field \"text\" is required");
        return;
    }
    const char *model = op_arg(r, "model");
    int known = model ? oc_models_known(model) : 1;
    if (known < 0) {
        control_error_retry(c, 503, "oc_models_unavailable", "opencode's list of models is not known yet; retry shortly",
                        NULL, m->conf->retry_after_s);
        return;
    }
    if (!known) {
        control_error(c, 400, "unknown_model", "opencode offers no such model");
        return;
    }
    execution_submit(m, s, text, op_arg(r, "model"), op_arg(r, "agent"), c,
                r->stream ? EXECUTION_WAIT_STREAM : r->async ? EXECUTION_WAIT_ASYNC : EXECUTION_WAIT_SYNC);
}

static double op_num(const op_req_t *r, const char *key, double def)
{
    json_object *v;
    return json_object_object_get_ex(r->args, key, &v) &&
                   (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double))
               ? json_object_get_double(v)
               : def;
}

/* History, newest first, with a cursor: next_cursor is the `before` of the next page. A page ends
 * at `limit` rows or OP_PAGE_BYTES, whichever comes first. Users see their own rows without
 * server details; operators (owner NULL) see everyone's whole rows. */
static void op_exec_list_for(manager_t *m, control_conn_t *c, const op_req_t *r, const char *owner)
{
    db_exec_filter_t f = {.owner = owner, .session_id = op_arg(r, "session"), .status = op_arg(r, "status"),
                          .mode = op_arg(r, "mode"), .since = op_num(r, "since", 0), .until = op_num(r, "until", 0),
                          .before = (long long)op_num(r, "before", 0), .limit = (long)op_num(r, "limit", 50),
                          .max_bytes = OP_PAGE_BYTES};
    int more = 0;
    json_object *a = db_exec_list(m->db, &f, &more);
    if (!a) {
        storage_retry_reply_error(c, "cannot read executions");
        return;
    }
    json_object *o = json_object_new_object();
    size_t n = json_object_array_length(a);
    for (size_t i = 0; owner && i < n; i++)
        execution_public(json_object_array_get_idx(a, i));
    json_object *last = n ? json_object_object_get(json_object_array_get_idx(a, n - 1), "id") : NULL;
    json_object_object_add(o, "executions", a);
    json_object_object_add(o, "next_cursor", more && last ? json_object_get(last) : NULL);
    control_reply(c, 200, o, NULL);
}

static void op_exec_list(manager_t *m, control_conn_t *c, const op_req_t *r) { op_exec_list_for(m, c, r, r->user); }
static void op_admin_exec_list(manager_t *m, control_conn_t *c, const op_req_t *r) { op_exec_list_for(m, c, r, NULL); }

/* Statistics can take seconds on a large history, so they run on libuv's thread pool over a
 * read-only connection of their own (WAL lets it read beside the writer); the loop goes on. */
typedef struct op_stats_job {
    uv_work_t work;
    control_conn_t *c; /* NULL once the client went away */
    char path[4096];
    double since, until;
    json_object *result;
    char err[512];
} op_stats_job_t;

static void op_stats_work(uv_work_t *w)
{
    op_stats_job_t *j = w->data;
    db_t *ro = db_open_readonly(j->path, j->err, sizeof j->err);
    if (!ro)
        return;
    j->result = db_stats(ro, j->since, j->until);
    if (!j->result)
        snprintf(j->err, sizeof j->err, "%s", db_errmsg(ro));
    db_close(ro);
}

static void op_stats_after(uv_work_t *w, int status)
{
    op_stats_job_t *j = w->data;
    if (j->c && j->result && status == 0) {
        control_reply(j->c, 200, j->result, NULL);
        j->result = NULL;
    } else if (j->c) {
        log_error("cannot compute statistics", "error=%s", log_q(j->err));
        control_error(j->c, 503, "storage_unavailable", "cannot compute statistics");
    }
    json_object_put(j->result);
    free(j);
}

static void op_stats_detach(void *ctx, control_conn_t *c)
{
    (void)c;
    ((op_stats_job_t *)ctx)->c = NULL;
}

static void op_stats(manager_t *m, control_conn_t *c, const op_req_t *r)
{
    op_stats_job_t *j = calloc(1, sizeof *j);
    if (!j) {
        control_error(c, 500, "internal", "out of memory");
        return;
    }
    j->c = c;
    j->since = op_num(r, "since", 0);
    j->until = op_num(r, "until", clock_now() + 1);
    snprintf(j->path, sizeof j->path, "%s", m->conf->db_path);
    j->work.data = j;
    if (uv_queue_work(m->loop, &j->work, op_stats_work, op_stats_after) != 0) {
        free(j);
        control_error(c, 503, "busy", "cannot schedule the statistics");
        return;
    }
    control_set_waiter(c, op_stats_detach, j);
}

static void op_metrics(manager_t *m, control_conn_t *c, const op_req_t *r)
{
    (void)r;
    char *text = metrics_render(m);
    if (!text) {
        control_error(c, 500, "internal", "out of memory");
        return;
    }
    control_reply_text(c, 200, "text/plain; version=0.0.4; charset=utf-8", text);
    free(text);
}

static void op_prune_done(void *ctx, long deleted, int failed)
{
    control_conn_t *c = ctx;
    if (failed) {
        control_error(c, 503, "storage_unavailable", "pruning failed; see the log");
        return;
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "deleted", json_object_new_int64(deleted));
    control_reply(c, 200, o, NULL);
}

static void op_prune_detach(void *ctx, control_conn_t *c)
{
    (void)ctx;
    (void)c;
    prune_detach(); /* the pass goes on; nobody waits for its count */
}

/* Control socket only (ocpmctl prune): no HTTP route leads here. */
static void op_prune(manager_t *m, control_conn_t *c, const op_req_t *r)
{
    double before = op_num(r, "before", -1);
    if (before < 0) {
        control_error(c, 400, "invalid_field", "prune needs \"before\" (unix seconds)");
        return;
    }
    if (prune_prune(m, before, op_prune_done, c) != 0) {
        control_error(c, 409, "busy", "a pruning pass is already running");
        return;
    }
    control_set_waiter(c, op_prune_detach, NULL);
}

static void op_exec_get(manager_t *m, control_conn_t *c, const op_req_t *r)
{
    char *end;
    errno = 0;
    long long id = r->id ? strtoll(r->id, &end, 10) : 0;
    if (!r->id || errno || *end || id <= 0) {
        control_error(c, 400, "invalid_id", "execution ids are positive 64-bit integers");
        return;
    }
    json_object *o = db_exec_get(m->db, id, r->user);
    if (!o) {
        control_error(c, 404, "execution_not_found", "no such execution");
        return;
    }
    control_reply(c, 200, execution_public(o), NULL);
}

static const struct {
    const char *name;
    op_fn fn;
} op_table[] = {
    {"status", op_status},
    {"health", op_health},
    {"session.create", op_session_create},
    {"session.list", op_session_list},
    {"session.get", op_session_get},
    {"session.delete", op_session_delete},
    {"session.abort", op_session_abort},
    {"message", op_message},
    {"exec.list", op_exec_list},
    {"exec.get", op_exec_get},
    {"stats", op_stats},
    {"admin.exec.list", op_admin_exec_list},
    {"metrics", op_metrics},
    {"prune", op_prune},
};

void op_dispatch(manager_t *m, control_conn_t *c, json_object *f)
{
    json_object *op, *user, *id, *args, *b;
    if (!json_object_object_get_ex(f, "op", &op) || !json_object_is_type(op, json_type_string) ||
        !json_object_object_get_ex(f, "user", &user) || !json_object_is_type(user, json_type_string) ||
        !json_object_object_get_ex(f, "args", &args) || !json_object_is_type(args, json_type_object)) {
        log_warn("malformed request frame", NULL);
        control_error(c, 400, "bad_frame", "request frame lacks op, user or args");
        return;
    }
    op_req_t r = {.user = json_object_get_string(user), .args = args};
    if (json_object_object_get_ex(f, "id", &id)) {
        if (!json_object_is_type(id, json_type_string) || !valid_id(json_object_get_string(id))) {
            control_error(c, 400, "invalid_id", "ids must match [A-Za-z0-9_-]{1,64}");
            return;
        }
        r.id = json_object_get_string(id);
    }
    r.stream = json_object_object_get_ex(f, "stream", &b) && json_object_get_boolean(b);
    r.async = json_object_object_get_ex(f, "async", &b) && json_object_get_boolean(b);
    const char *name = json_object_get_string(op);
    for (size_t i = 0; i < sizeof op_table / sizeof op_table[0]; i++)
        if (strcmp(op_table[i].name, name) == 0) {
            op_table[i].fn(m, c, &r);
            return;
        }
    control_error(c, 404, "unknown_op", "unknown operation");
}
