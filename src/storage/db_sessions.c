#define _GNU_SOURCE
#include "db.h"

#include <stdio.h>
#include <string.h>

#include "db_internal.h"

int db_session_insert(db_t *db, const db_session_t *se)
{
    sqlite3_stmt *s = db->st[ST_SESS_INSERT];
    db_bind_text(s, 1, se->id);
    db_bind_text(s, 2, se->owner);
    db_bind_text(s, 3, se->workspace);
    db_bind_text(s, 4, se->oc_session_id);
    sqlite3_bind_double(s, 5, se->created_at);
    sqlite3_bind_double(s, 6, se->last_activity);
    db_bind_text(s, 7, se->pool ? se->pool : "default");
    return db_run(db, ST_SESS_INSERT);
}

int db_session_set_oc(db_t *db, const char *owner, const char *id, const char *oc)
{
    db_bind_text(db->st[ST_SESS_SET_OC], 1, owner);
    db_bind_text(db->st[ST_SESS_SET_OC], 2, id);
    db_bind_text(db->st[ST_SESS_SET_OC], 3, oc);
    return db_run(db, ST_SESS_SET_OC);
}

int db_session_set_server(db_t *db, const char *owner, const char *id, int server)
{
    db_bind_text(db->st[ST_SESS_SET_SERVER], 1, owner);
    db_bind_text(db->st[ST_SESS_SET_SERVER], 2, id);
    sqlite3_bind_int(db->st[ST_SESS_SET_SERVER], 3, server);
    return db_run(db, ST_SESS_SET_SERVER);
}

int db_session_delete(db_t *db, const char *owner, const char *id, double now)
{
    db_bind_text(db->st[ST_SESS_DELETE], 1, owner);
    db_bind_text(db->st[ST_SESS_DELETE], 2, id);
    sqlite3_bind_double(db->st[ST_SESS_DELETE], 3, now);
    return db_run(db, ST_SESS_DELETE);
}

int db_session_each(db_t *db, void (*fn)(void *ctx, const db_session_t *s), void *ctx)
{
    if (!db->h)
        return db_failed(db), -1;
    sqlite3_stmt *s = db->st[ST_SESS_EACH];
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        db_session_t se = {
            .id = (const char *)sqlite3_column_text(s, 0),
            .owner = (const char *)sqlite3_column_text(s, 1),
            .workspace = (const char *)sqlite3_column_text(s, 2),
            .oc_session_id = (const char *)sqlite3_column_text(s, 3),
            .created_at = sqlite3_column_double(s, 4),
            .last_activity = sqlite3_column_double(s, 5),
            .message_count = (long)sqlite3_column_int64(s, 6),
            .server = sqlite3_column_type(s, 7) == SQLITE_NULL ? -1 : sqlite3_column_int(s, 7),
            .pool = (const char *)sqlite3_column_text(s, 8),
        };
        fn(ctx, &se);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

int db_session_exists(db_t *db, const char *owner, const char *id)
{
    if (!db->h)
        return db_failed(db), -1;
    sqlite3_stmt *s = db->st[ST_SESS_EXISTS];
    db_bind_text(s, 1, owner);
    db_bind_text(s, 2, id);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int db_session_workspaces(db_t *db, const char *owner, const char *path, long *count, int *known)
{
    if (!db->h)
        return db_failed(db), -1;
    sqlite3_stmt *s = db->st[ST_SESS_WORKSPACES];
    db_bind_text(s, 1, owner);
    db_bind_text(s, 2, path);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *count = (long)sqlite3_column_int64(s, 0);
        *known = sqlite3_column_int(s, 1);
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_ROW)
        db_failed(db);
    return rc == SQLITE_ROW ? 0 : -1;
}

json_object *db_session_summary_page(db_t *db, const char *after_owner, const char *after_id, long limit,
                                     char *next, size_t nextlen)
{
    /* Read-only readers (ocpmctl, the thread pool's connection) prepare it here: it is not one of
     * the writer's statements. (owner, id) is the view's key, so the cursor is both. */
    static const char sql[] =
        "SELECT id, owner, workspace, opencode_session_id, message_count,"
        " created, last_activity, deleted, executions, succeeded, failed, mean_ms, tokens_in, tokens_out, cost"
        " FROM session_summary AS v WHERE (v.owner, v.id) > (?1, ?2)"
        " ORDER BY v.owner, v.id LIMIT ?3";
    sqlite3_stmt *s;
    char last[1024] = "";
    *next = '\0';
    if (!db->h || sqlite3_prepare_v2(db->h, sql, -1, &s, NULL) != SQLITE_OK)
        return NULL;
    /* No cursor: after ('', '') comes every key but the anonymous owner's empty id, which is not an id. */
    db_bind_text(s, 1, after_owner ? after_owner : "");
    db_bind_text(s, 2, after_id ? after_id : "");
    sqlite3_bind_int64(s, 3, (sqlite3_int64)limit + 1);
    json_object *a = json_object_new_array();
    int rc;
    long n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n++ == limit) {
            snprintf(next, nextlen, "%s", last); /* more follow: the last row's key continues */
            continue;
        }
        json_object *row = db_row_json(s);
        const char *owner = (const char *)sqlite3_column_text(s, 1), *id = (const char *)sqlite3_column_text(s, 0);
        snprintf(last, sizeof last, "%s/%s", owner ? owner : "", id ? id : "");
        if (!owner || !*owner) /* shown as ocpmctl sessions shows it */
            json_object_object_add(row, "owner", json_object_new_string("(anonymous)"));
        json_object_array_add(a, row);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        json_object_put(a);
        return NULL;
    }
    return a;
}
