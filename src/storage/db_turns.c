/* The agent's side of a turn in the database: its tool calls and the events its clients were sent
 * (written once, when the execution ends), its permission and question prompts (written as they
 * are asked and answered), and the webhook deliveries about it. */
#define _GNU_SOURCE
#include "db.h"

#include <stdio.h>
#include <string.h>

#include "db_internal.h"

static void db_bind_i64(sqlite3_stmt *s, int i, int set, long long v)
{
    if (set)
        sqlite3_bind_int64(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

int db_turn_store(db_t *db, int64_t exec_id, const db_tool_t *tools, size_t ntools, const db_event_t *events,
                  size_t nevents)
{
    if (ntools == 0 && nevents == 0)
        return 0;
    int own = !db_in_tx(db);
    if (own && db_run(db, ST_BEGIN) != 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < ntools; i++) {
        const db_tool_t *t = &tools[i];
        sqlite3_stmt *s = db->st[ST_TOOL_INSERT];
        sqlite3_bind_int64(s, 1, exec_id);
        sqlite3_bind_int64(s, 2, (long long)i + 1);
        db_bind_text(s, 3, t->tool);
        db_bind_text(s, 4, t->call_id);
        db_bind_text(s, 5, t->status);
        db_bind_text(s, 6, t->input);
        db_bind_i64(s, 7, 1, t->input_bytes);
        db_bind_text(s, 8, t->input_sha256);
        db_bind_i64(s, 9, t->output_bytes >= 0, t->output_bytes);
        db_bind_text(s, 10, t->error);
        db_bind_time(s, 11, t->started_at);
        db_bind_time(s, 12, t->ended_at);
        if (t->started_at > 0 && t->ended_at >= t->started_at)
            sqlite3_bind_double(s, 13, (t->ended_at - t->started_at) * 1000.0);
        else
            sqlite3_bind_null(s, 13);
        rc = db_run(db, ST_TOOL_INSERT);
    }
    for (size_t i = 0; rc == 0 && i < nevents; i++) {
        sqlite3_stmt *s = db->st[ST_EVENT_INSERT];
        sqlite3_bind_int64(s, 1, exec_id);
        sqlite3_bind_int64(s, 2, events[i].seq);
        db_bind_text(s, 3, events[i].type);
        db_bind_text(s, 4, events[i].data);
        rc = db_run(db, ST_EVENT_INSERT);
    }
    if (!own)
        return rc;
    if (rc == 0 && db_run(db, ST_COMMIT) == 0)
        return 0;
    db_run(db, ST_ROLLBACK);
    return -1;
}

/* A column as JSON: numbers as numbers, text as a string (or parsed, when json is set). */
static json_object *db_col(sqlite3_stmt *s, int i, int json)
{
    switch (sqlite3_column_type(s, i)) {
    case SQLITE_INTEGER:
        return json_object_new_int64(sqlite3_column_int64(s, i));
    case SQLITE_FLOAT:
        return json_object_new_double(sqlite3_column_double(s, i));
    case SQLITE_TEXT: {
        const char *t = (const char *)sqlite3_column_text(s, i);
        if (json)
            return json_tokener_parse(t);
        return json_object_new_string_len(t, sqlite3_column_bytes(s, i));
    }
    default:
        return NULL;
    }
}

json_object *db_tool_list(db_t *db, int64_t exec_id)
{
    if (!db->h)
        return db_failed(db), NULL;
    /* The API's names for ST_TOOL_LIST's columns; input is JSON text. */
    static const struct {
        const char *name;
        int json;
    } cols[] = {{"tool", 0},        {"callId", 0},      {"status", 0},  {"input", 1},
                {"inputBytes", 0},  {"inputSha256", 0}, {"outputBytes", 0}, {"error", 0},
                {"startedAt", 0},   {"endedAt", 0},     {"durationMs", 0}};
    sqlite3_stmt *s = db->st[ST_TOOL_LIST];
    sqlite3_bind_int64(s, 1, exec_id);
    json_object *a = json_object_new_array();
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        json_object *o = json_object_new_object();
        for (int i = 0; i < (int)(sizeof cols / sizeof cols[0]); i++)
            json_object_object_add(o, cols[i].name, db_col(s, i, cols[i].json));
        json_object_array_add(a, o);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        db_failed(db);
        json_object_put(a);
        return NULL;
    }
    return a;
}

int db_event_each(db_t *db, int64_t exec_id, long long after, db_event_fn fn, void *ctx)
{
    if (!db->h)
        return db_failed(db), -1;
    sqlite3_stmt *s = db->st[ST_EVENT_LIST];
    sqlite3_bind_int64(s, 1, exec_id);
    sqlite3_bind_int64(s, 2, after);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        db_event_t ev = {.seq = sqlite3_column_int64(s, 0),
                         .type = (const char *)sqlite3_column_text(s, 1),
                         .data = (const char *)sqlite3_column_text(s, 2)};
        fn(ctx, &ev);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_failed(db), -1;
    return 0;
}

int db_prompt_put(db_t *db, const db_prompt_t *p)
{
    sqlite3_stmt *s = db->st[ST_PROMPT_PUT];
    db_bind_text(s, 1, p->id);
    db_bind_text(s, 2, p->kind);
    db_bind_text(s, 3, p->owner);
    db_bind_text(s, 4, p->session_id);
    db_bind_i64(s, 5, p->execution_id > 0, p->execution_id);
    db_bind_text(s, 6, p->status);
    db_bind_text(s, 7, p->request);
    db_bind_text(s, 8, p->reply);
    sqlite3_bind_double(s, 9, p->asked_at);
    db_bind_time(s, 10, p->replied_at);
    db_bind_text(s, 11, p->replied_by);
    db_bind_text(s, 12, p->opencode_id);
    return db_run(db, ST_PROMPT_PUT);
}

int db_exec_add_turn(db_t *db, json_object *row, int64_t exec_id)
{
    static const char *const kinds[][2] = {{"permission", "permissions"}, {"question", "questions"}};
    json_object *tools = db_tool_list(db, exec_id), *owner = NULL;
    int rc = tools ? 0 : -1;
    json_object_object_add(row, "tools", tools ? tools : json_object_new_array());
    json_object_object_get_ex(row, "owner", &owner);
    for (size_t i = 0; i < 2; i++) {
        json_object *l = db_prompt_list(db, json_object_get_string(owner), kinds[i][0], NULL, NULL, exec_id);
        rc |= l ? 0 : -1;
        json_object_object_add(row, kinds[i][1], l ? l : json_object_new_array());
    }
    return rc;
}

json_object *db_prompt_record(const db_prompt_t *p)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(p->id));
    json_object_object_add(o, "executionId", p->execution_id > 0 ? json_object_new_int64(p->execution_id) : NULL);
    json_object *req = p->request ? json_tokener_parse(p->request) : NULL;
    if (req && json_object_is_type(req, json_type_object)) {
        json_object_object_foreach(req, k, v) json_object_object_add(o, k, json_object_get(v));
    }
    json_object_put(req);
    json_object_object_add(o, "status", json_object_new_string(p->status));
    json_object *reply = p->reply ? json_tokener_parse(p->reply) : NULL, *v;
    /* A permission's reply is its word ("once", "always", "reject") and an optional message; a
     * question's is its answers, or {"reject": true}. */
    if (reply && strcmp(p->kind, "permission") == 0 && json_object_object_get_ex(reply, "reply", &v)) {
        json_object_object_add(o, "reply", json_object_get(v));
        json_object_object_add(o, "message",
                               json_object_object_get_ex(reply, "message", &v) ? json_object_get(v) : NULL);
        json_object_put(reply);
    } else {
        json_object_object_add(o, "reply", reply);
    }
    json_object_object_add(o, "askedAt", json_object_new_double(p->asked_at));
    json_object_object_add(o, "repliedAt", p->replied_at > 0 ? json_object_new_double(p->replied_at) : NULL);
    json_object_object_add(o, "repliedBy", p->replied_by ? json_object_new_string(p->replied_by) : NULL);
    return o;
}

json_object *db_prompt_list(db_t *db, const char *owner, const char *kind, const char *session_id,
                            const char *status, int64_t exec_id)
{
    if (!db->h)
        return db_failed(db), NULL;
    sqlite3_stmt *s = db->st[ST_PROMPT_LIST];
    db_bind_text(s, 1, owner ? owner : "");
    db_bind_text(s, 2, kind);
    db_bind_text(s, 3, session_id);
    db_bind_text(s, 4, status);
    db_bind_i64(s, 5, exec_id > 0, exec_id);
    json_object *a = json_object_new_array();
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        db_prompt_t p = {.id = (const char *)sqlite3_column_text(s, 0),
                         .kind = kind,
                         .execution_id = sqlite3_column_int64(s, 1),
                         .status = (const char *)sqlite3_column_text(s, 2),
                         .request = (const char *)sqlite3_column_text(s, 3),
                         .reply = (const char *)sqlite3_column_text(s, 4),
                         .asked_at = sqlite3_column_double(s, 5),
                         .replied_at = sqlite3_column_double(s, 6),
                         .replied_by = (const char *)sqlite3_column_text(s, 7)};
        json_object_array_add(a, db_prompt_record(&p));
    }
    return db_rows_done(db, s, rc, a);
}

int db_prompt_status(db_t *db, const char *owner, const char *kind, const char *session_id, const char *id,
                     char *status, size_t len)
{
    if (!db->h)
        return db_failed(db), -1;
    sqlite3_stmt *s = db->st[ST_PROMPT_STATUS];
    db_bind_text(s, 1, owner ? owner : "");
    db_bind_text(s, 2, id);
    db_bind_text(s, 3, kind);
    db_bind_text(s, 4, session_id);
    int rc = sqlite3_step(s), found = rc == SQLITE_ROW;
    if (found)
        snprintf(status, len, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_reset(s);
    if (!found && rc != SQLITE_DONE)
        return db_failed(db), -1;
    return found ? 0 : 1;
}

int db_prompt_lose_pending(db_t *db, double now, int *count)
{
    sqlite3_bind_double(db->st[ST_PROMPT_LOSE], 1, now);
    if (db_run(db, ST_PROMPT_LOSE) != 0)
        return -1;
    *count = sqlite3_changes(db->h);
    return 0;
}

int db_webhook_record(db_t *db, const db_webhook_t *w)
{
    sqlite3_stmt *s = db->st[ST_WEBHOOK_INSERT];
    db_bind_text(s, 1, w->delivery);
    db_bind_text(s, 2, w->event);
    db_bind_i64(s, 3, w->execution_id > 0, w->execution_id);
    db_bind_text(s, 4, w->delivered ? "delivered" : "failed");
    sqlite3_bind_int(s, 5, w->attempts);
    db_bind_i64(s, 6, w->http_status > 0, w->http_status);
    db_bind_text(s, 7, w->error);
    sqlite3_bind_double(s, 8, w->created_at);
    sqlite3_bind_double(s, 9, w->finished_at);
    return db_run(db, ST_WEBHOOK_INSERT);
}

int db_usage_since(db_t *db, double since, db_usage_fn fn, void *ctx)
{
    if (!db->h)
        return db_failed(db), -1;
    sqlite3_stmt *s = db->st[ST_USAGE_SINCE];
    sqlite3_bind_double(s, 1, since);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        fn(ctx, (const char *)sqlite3_column_text(s, 0), (long long)sqlite3_column_double(s, 1),
           sqlite3_column_double(s, 2));
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_failed(db), -1;
    return 0;
}
