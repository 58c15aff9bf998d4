#define _GNU_SOURCE
#include "api_internal.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "valid.h"
#include "workspace.h"

const char *api_arg(const api_call_t *call, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(call->args, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

double api_num(const api_call_t *call, const char *key, double def)
{
    json_object *v;
    return json_object_object_get_ex(call->args, key, &v) &&
                   (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double))
               ? json_object_get_double(v)
               : def;
}

void api_storage_error(manager_t *m, control_conn_t *c, const char *what)
{
    char msg[512];
    int retry = 0;
    const char *reason = storage_retry_explain(m->storage, what, msg, sizeof msg, &retry);
    control_error_retry(c, 503, "storage_unavailable", msg, reason, retry ? m->conf->retry_after_s : 0);
}

/* A session the user may see, or NULL after answering 404. Ids are the user's own: another user's
 * session of the same id is simply not there. */
static session_t *api_session_seen(manager_t *m, control_conn_t *c, const api_call_t *call)
{
    session_t *s = session_find(m->sessions, call->user, call->id);
    if (!s)
        control_error(c, 404, "session_not_found", "no such session");
    return s;
}

/* A session the user may work with: seen, and in the pool the user maps to. A session of a pool
 * that is no longer configured, or not the user's pool any more (the operator moved the user), is
 * not touched (409); it can still be read and deleted. */
session_t *api_session_of(manager_t *m, control_conn_t *c, const api_call_t *call)
{
    session_t *s = api_session_seen(m, c, call);
    if (!s)
        return NULL;
    tenant_t *t = tenant_of(m->tenants, m->ntenants, s);
    if (!t)
        return control_error(c, 409, "pool_gone", "this session's pool is no longer configured"), NULL;
    if (t != tenant_of_user(m->tenants, m->ntenants, m->conf, call->user))
        return control_error(c, 409, "pool_changed", "this session lives in a pool you are no longer mapped to"), NULL;
    return s;
}

/* A fresh session id, s_<node>_<24 random hex digits>: at most 2 + 32 + 1 + 24 = 59 bytes, a valid_id
 * in the node form (valid_id_node), so the id alone tells a cluster's front which node holds it. */
static int api_session_new_id(const char *node, char *out, size_t outlen)
{
    unsigned char rnd[12];
    if (getentropy(rnd, sizeof rnd) != 0)
        return -1;
    int o = snprintf(out, outlen, "s_%s_", node);
    for (size_t i = 0; i < sizeof rnd; i++)
        o += snprintf(out + o, outlen - (size_t)o, "%02x", rnd[i]);
    return 0;
}

/* The user's bounds on sessions and workspaces. 0, or -1 after answering c. */
static int api_session_admit(manager_t *m, control_conn_t *c, const char *user, const char *path)
{
    long nws = 0;
    int known = 0;
    if (user_count(m->users, user, USER_SESSIONS) >= m->conf->user_max_sessions)
        return control_error(c, 429, "too_many_sessions", "you have user_max_sessions sessions; delete one first"), -1;
    if (db_session_workspaces(m->db, user, path, &nws, &known) != 0)
        return api_storage_error(m, c, "cannot read sessions"), -1;
    if (!known && nws >= m->conf->user_max_workspaces)
        return control_error(c, 429, "too_many_workspaces",
                             "you have user_max_workspaces workspaces; reuse one by name"), -1;
    return 0;
}

/* With require_node_ids (a cluster), a client's id must be in this node's form: one naming another
 * node reached the wrong node (the front routes by the id; 421, as HTTP says for a misdirected
 * request), one naming none could never be routed to again. 0, or -1 after answering c. */
static int api_session_id_here(const manager_t *m, control_conn_t *c, const char *id)
{
    char node[VALID_NODE_MAX + 1], msg[160];
    if (!m->conf->require_node_ids)
        return 0;
    if (!valid_id_node(id, node))
        return control_error(c, 400, "invalid_session_id",
                             "this node is in a cluster (require_node_ids): a session id must name its node, "
                             "s_<node>_<rest>; or leave id out and one is made"), -1;
    if (strcmp(node, m->conf->node_name) == 0)
        return 0;
    snprintf(msg, sizeof msg, "this session id names node %s; this is node %s", node, m->conf->node_name);
    return control_error(c, 421, "misdirected_session", msg), -1;
}

/* Idempotent: the same id and workspace again is the same session (200); another workspace is a
 * conflict (409), and so is the id of a deleted session. */
void api_session_create(void *ctx, control_conn_t *c, const api_call_t *call)
{
    manager_t *m = ctx;
    char gen[VALID_ID_MAX + 1], path[4096];
    const char *id = call->id ? call->id : api_arg(call, "id"), *why = NULL; /* PUT's path, or POST's body */
    if (!id && api_session_new_id(m->conf->node_name, gen, sizeof gen) != 0)
        return control_error(c, 500, "internal", "no randomness for an id"), (void)0;
    if (id && api_session_id_here(m, c, id) != 0)
        return;
    id = id ? id : gen;
    const char *wsname = api_arg(call, "workspace") ? api_arg(call, "workspace") : id;
    if (m->stopping)
        return control_error(c, 503, "shutting_down", "the manager is shutting down"), (void)0;
    session_t *s = session_find(m->sessions, call->user, id);
    if (s && strcmp(wsname, session_workspace_name(s)) != 0)
        return control_error(c, 409, "session_conflict", "this session id is bound to another workspace"), (void)0;
    if (s)
        return control_reply(c, 200, session_json(s), NULL), (void)0;
    /* Draining refuses new sessions only: the same one again is a read (above), answered as ever. */
    if (api_refuse_draining(m, c, "sessions") != 0)
        return;
    tenant_t *t = tenant_of_user(m->tenants, m->ntenants, m->conf, call->user);
    if (!t)
        return control_error(c, 403, "no_pool", "no pool takes your sessions (see default_pool)"), (void)0;
    int exists = db_session_exists(m->db, call->user, id);
    if (exists != 0)
        return exists < 0 ? api_storage_error(m, c, "cannot read sessions")
                          : (void)control_error(c, 409, "session_deleted",
                                                "this session id belonged to a deleted session");
    if (workspace_path(t->conf->workspace_root, call->user, wsname, path, sizeof path, &why) != 0)
        return control_error(c, 400, "invalid_workspace", why), (void)0;
    if (api_session_admit(m, c, call->user, path) != 0)
        return;
    if (workspace_resolve(t->agent, t->conf->workspace_root, call->user, wsname, path, sizeof path, &why) != 0)
        return control_error(c, 400, "invalid_workspace", why), (void)0;
    double now = clock_now();
    db_session_t row = {.id = id, .owner = call->user, .workspace = path, .created_at = now, .last_activity = now,
                        .pool = t->conf->pool_name};
    if (db_session_insert(m->db, &row) != 0) {
        log_error("cannot record session", "sessionId=%s error=%s", id, log_q(db_errmsg(m->db)));
        return api_storage_error(m, c, "cannot record the session");
    }
    s = session_add(m->sessions, id, call->user, path, wsname, NULL, now, now, 0);
    if (!s || user_add(m->users, call->user, USER_SESSIONS, 1) != 0)
        return control_error(c, 500, "internal", "out of memory"), (void)0;
    session_set_pool(s, t->index);
    manager_touch(m);
    log_info("Session workspace mapped", "sessionId=%s workspace=%s pool=%s", id, log_q(path), t->conf->pool_name);
    control_reply(c, 201, session_json(s), NULL);
}

/* The caller's sessions, in id order, a page at a time: next_cursor is the `after` of the next. */
void api_session_list(void *ctx, control_conn_t *c, const api_call_t *call)
{
    manager_t *m = ctx;
    const char *after = api_arg(call, "after");
    int more = 0;
    json_object *a = session_page(m->sessions, call->user, after ? after : "", (long)api_num(call, "limit", 100), &more);
    if (!a)
        return control_error(c, 500, "internal", "out of memory"), (void)0;
    api_reply_page(c, "sessions", a, more);
}

void api_session_get(void *ctx, control_conn_t *c, const api_call_t *call)
{
    session_t *s = api_session_seen(ctx, c, call);
    if (s)
        control_reply(c, 200, session_json(s), NULL);
}

void api_session_delete(void *ctx, control_conn_t *c, const api_call_t *call)
{
    manager_t *m = ctx;
    session_t *s = api_session_seen(m, c, call);
    if (!s)
        return;
    if (db_session_delete(m->db, session_owner(s), session_id(s), clock_now()) != 0)
        return api_storage_error(m, c, "cannot record the deletion");
    tenant_t *t = tenant_of(m->tenants, m->ntenants, s); /* NULL: its pool is gone, and nothing of it runs */
    int n = t ? scheduler_abort_session(t->scheduler, s, "session deleted") : 0;
    if (t)
        scheduler_forget(t->scheduler, s);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(session_id(s)));
    json_object_object_add(o, "deleted", json_object_new_boolean(1));
    json_object_object_add(o, "aborted", json_object_new_int(n));
    log_info("Session deleted", "sessionId=%s aborted=%d", session_id(s), n);
    user_add(m->users, session_owner(s), USER_SESSIONS, -1);
    session_remove(m->sessions, s);
    control_reply(c, 200, o, NULL);
}

void api_session_abort(void *ctx, control_conn_t *c, const api_call_t *call)
{
    manager_t *m = ctx;
    session_t *s = api_session_of(m, c, call);
    if (!s)
        return;
    int n = scheduler_abort_session(tenant_of(m->tenants, m->ntenants, s)->scheduler, s, "aborted by request");
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(session_id(s)));
    json_object_object_add(o, "aborted", json_object_new_int(n));
    control_reply(c, 200, o, NULL);
}

/* A model must be one opencode offers (refused here, before anything runs). */
void api_message(void *ctx, control_conn_t *c, const api_call_t *call)
{
    manager_t *m = ctx;
    if (api_refuse_draining(m, c, "messages") != 0)
        return;
    session_t *s = api_session_of(m, c, call);
    if (!s)
        return;
    const char *model = api_arg(call, "model");
    int known = model ? oc_models_known(tenant_of(m->tenants, m->ntenants, s)->models, model) : 1;
    if (known < 0)
        return control_error_retry(c, 503, "models_unavailable",
                                   "opencode's list of models is not known yet; retry shortly", NULL,
                                   m->conf->retry_after_s), (void)0;
    if (!known)
        return control_error(c, 400, "unknown_model", "opencode offers no such model"), (void)0;
    scheduler_wait_t how = call->stream ? SCHEDULER_WAIT_STREAM : call->async ? SCHEDULER_WAIT_ASYNC : SCHEDULER_WAIT_SYNC;
    if (scheduler_submit(tenant_of(m->tenants, m->ntenants, s)->scheduler, s, api_arg(call, "text"), model, api_arg(call, "agent"), c, how) >= 0)
        manager_touch(m);
}
