/* The API's handlers (api_sessions.c, api_history.c, api_operator.c, api_prompts.c, api_drain.c)
 * and what they share. Each is called by api_dispatch with the manager as ctx, after its row's checks passed. */
#ifndef OCPM_API_INTERNAL_H
#define OCPM_API_INTERNAL_H

#include "api.h"
#include "manager.h"

/* api_sessions.c */
void api_session_create(void *ctx, control_conn_t *c, const api_call_t *call);
void api_session_list(void *ctx, control_conn_t *c, const api_call_t *call);
void api_session_get(void *ctx, control_conn_t *c, const api_call_t *call);
void api_session_delete(void *ctx, control_conn_t *c, const api_call_t *call);
void api_session_abort(void *ctx, control_conn_t *c, const api_call_t *call);
void api_message(void *ctx, control_conn_t *c, const api_call_t *call);
void api_session_diff(void *ctx, control_conn_t *c, const api_call_t *call);
/* api_prompts.c */
void api_permission_list(void *ctx, control_conn_t *c, const api_call_t *call);
void api_question_list(void *ctx, control_conn_t *c, const api_call_t *call);
void api_permission_reply(void *ctx, control_conn_t *c, const api_call_t *call);
void api_question_reply(void *ctx, control_conn_t *c, const api_call_t *call);
void api_exec_events(void *ctx, control_conn_t *c, const api_call_t *call);
/* api_history.c */
void api_exec_list(void *ctx, control_conn_t *c, const api_call_t *call);
void api_exec_get(void *ctx, control_conn_t *c, const api_call_t *call);
void api_admin_exec_list(void *ctx, control_conn_t *c, const api_call_t *call);
void api_admin_slowlog(void *ctx, control_conn_t *c, const api_call_t *call);
void api_admin_session_list(void *ctx, control_conn_t *c, const api_call_t *call);
void api_stats(void *ctx, control_conn_t *c, const api_call_t *call);
void api_usage(void *ctx, control_conn_t *c, const api_call_t *call);
void api_prune(void *ctx, control_conn_t *c, const api_call_t *call);
void api_reload(void *ctx, control_conn_t *c, const api_call_t *call);
/* api_operator.c */
void api_status(void *ctx, control_conn_t *c, const api_call_t *call);
void api_health(void *ctx, control_conn_t *c, const api_call_t *call);
void api_ready(void *ctx, control_conn_t *c, const api_call_t *call);
void api_admin_ready(void *ctx, control_conn_t *c, const api_call_t *call);
void api_metrics(void *ctx, control_conn_t *c, const api_call_t *call);
/* api_status_full.c: `?full`: the sessions, at most limit of them (1..1000; the busiest first),
 * added to the status document o. user: the caller (REMOTE_USER); "" or NULL (the operator route
 * reached without a user, or ocpmctl) lists everyone's, a user name only that user's own. */
#define API_STATUS_SESSIONS_DEFAULT 100
void api_status_sessions(manager_t *m, json_object *o, const char *user, long limit);
/* api_servers.c */
void api_server_restart(void *ctx, control_conn_t *c, const api_call_t *call);

/* api_drain.c */
void api_drain(void *ctx, control_conn_t *c, const api_call_t *call);
void api_undrain(void *ctx, control_conn_t *c, const api_call_t *call);
/* While the manager drains: answer c 503 draining (with Retry-After) and return -1; else 0. what
 * names the refused work for the message ("sessions", "messages"). */
int api_refuse_draining(manager_t *m, control_conn_t *c, const char *what);

/* The caller's session named by the path, or NULL after answering 404. */
session_t *api_session_of(manager_t *m, control_conn_t *c, const api_call_t *call);
/* A string argument, or NULL. */
const char *api_arg(const api_call_t *call, const char *key);
/* A number argument, or def. */
double api_num(const api_call_t *call, const char *key, double def);
/* Answer c for a database call that failed (503 storage_unavailable, with the cause and whether
 * retrying soon helps). */
void api_storage_error(manager_t *m, control_conn_t *c, const char *what);
/* 200 with a page of rows under key and next_cursor: the last row's id when more may follow, else
 * null (the page's rows are the answer's). */
void api_reply_page(control_conn_t *c, const char *key, json_object *rows, int more);
/* {key: rows, "next_cursor": next} (both taken). */
json_object *api_page_json(const char *key, json_object *rows, json_object *next);

/* api_read.c: a read that may take seconds runs on libuv's thread pool over a read-only connection
 * of its own (WAL lets it read beside the writer), so the loop goes on. fn gets a copy of the call's
 * args and returns the answer's body, or NULL with err; c gets 200 with it, or 503
 * storage_unavailable with what (logged with err). A client gone meanwhile gets nothing. */
typedef json_object *(*api_read_fn)(db_t *ro, json_object *args, char *err, size_t errlen);
void api_read(manager_t *m, control_conn_t *c, const api_call_t *call, api_read_fn fn, const char *what);

#endif
