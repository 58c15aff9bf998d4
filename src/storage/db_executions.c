#define _GNU_SOURCE
#include "db.h"

#include <string.h>

#include "db_internal.h"
#include "sha256.h"

/* Bind a prompt or answer per store_prompts: text (cut at text_limit on a
 * UTF-8 boundary), byte size, and SHA-256 (only when the text is not kept). */
static void db_bind_text_body(db_t *db, sqlite3_stmt *s, int i, const char *text, size_t len)
{
    if (!text) {
        sqlite3_bind_null(s, i);
        sqlite3_bind_null(s, i + 1);
        sqlite3_bind_null(s, i + 2);
        return;
    }
    sqlite3_bind_int64(s, i + 1, (sqlite3_int64)len);
    if (db->store_prompts) {
        size_t keep = len < (size_t)db->text_limit ? len : (size_t)db->text_limit;
        while (keep > 0 && keep < len && ((unsigned char)text[keep] & 0xc0) == 0x80)
            keep--;
        sqlite3_bind_text(s, i, text, (int)keep, SQLITE_TRANSIENT);
        sqlite3_bind_null(s, i + 2);
    } else {
        char hex[65];
        sha256_hex(text, len, hex);
        sqlite3_bind_null(s, i);
        sqlite3_bind_text(s, i + 2, hex, 64, SQLITE_TRANSIENT);
    }
}

int db_exec_insert(db_t *db, db_exec_t *e)
{
    sqlite3_stmt *s = db->st[ST_EXEC_INSERT];
    db_bind_text(s, 1, e->session_id);
    db_bind_text(s, 2, e->owner);
    db_bind_text(s, 3, e->mode);
    db_bind_text(s, 4, e->status);
    db_bind_text(s, 5, e->model);
    db_bind_text(s, 6, e->agent);
    sqlite3_bind_double(s, 7, e->queued_at);
    db_bind_text_body(db, s, 8, e->prompt, e->prompt_len);
    if (db_run(db, ST_EXEC_INSERT) != 0)
        return -1;
    e->id = (int64_t)sqlite3_last_insert_rowid(db->h);
    return 0;
}

int db_exec_update(db_t *db, const db_exec_t *e, int finished)
{
    if (finished && db_run(db, ST_BEGIN) != 0)
        return -1;
    sqlite3_stmt *s = db->st[ST_EXEC_UPDATE];
    sqlite3_bind_int64(s, 1, e->id);
    db_bind_text(s, 2, e->mode);
    db_bind_text(s, 3, e->status);
    db_bind_text(s, 4, e->argv_json);
    if (e->pid > 0)
        sqlite3_bind_int64(s, 5, e->pid);
    db_bind_time(s, 6, e->started_at);
    db_bind_time(s, 7, e->finished_at);
    if (e->finished_at > 0)
        sqlite3_bind_double(s, 8, (e->finished_at - (e->started_at > 0 ? e->started_at : e->finished_at)) * 1000.0);
    if (e->started_at > 0)
        sqlite3_bind_double(s, 9, (e->started_at - e->queued_at) * 1000.0);
    else if (e->finished_at > 0)
        sqlite3_bind_double(s, 9, (e->finished_at - e->queued_at) * 1000.0);
    if (e->has_exit)
        sqlite3_bind_int(s, 10, e->exit_code);
    if (e->signal)
        sqlite3_bind_int(s, 11, e->signal);
    if (e->peak_rss_kb > 0)
        sqlite3_bind_int64(s, 12, e->peak_rss_kb);
    if (e->has_exit || e->signal) {
        sqlite3_bind_double(s, 13, e->cpu_user_ms);
        sqlite3_bind_double(s, 14, e->cpu_sys_ms);
    }
    if (e->has_usage) {
        sqlite3_bind_int64(s, 15, e->tokens_in);
        sqlite3_bind_int64(s, 16, e->tokens_out);
        sqlite3_bind_double(s, 17, e->cost);
    }
    db_bind_text_body(db, s, 18, e->answer, e->answer_len);
    db_bind_text(s, 21, e->oc_session_id);
    db_bind_text(s, 22, e->stderr_tail);
    db_bind_text(s, 23, e->error);
    int rc = db_run(db, ST_EXEC_UPDATE);
    if (!finished)
        return rc;
    if (rc == 0) {
        sqlite3_stmt *b = db->st[ST_SESS_BUMP];
        db_bind_text(b, 1, e->owner);
        db_bind_text(b, 2, e->session_id);
        sqlite3_bind_double(b, 3, e->finished_at);
        rc = db_run(db, ST_SESS_BUMP);
    }
    if (rc == 0 && db_run(db, ST_COMMIT) == 0)
        return 0;
    db_run(db, ST_ROLLBACK);
    return -1;
}

json_object *db_row_json(sqlite3_stmt *s)
{
    json_object *o = json_object_new_object();
    int n = sqlite3_column_count(s);
    for (int i = 0; i < n; i++) {
        json_object *v = NULL;
        switch (sqlite3_column_type(s, i)) {
        case SQLITE_INTEGER:
            v = json_object_new_int64(sqlite3_column_int64(s, i));
            break;
        case SQLITE_FLOAT:
            v = json_object_new_double(sqlite3_column_double(s, i));
            break;
        case SQLITE_TEXT:
            v = json_object_new_string_len((const char *)sqlite3_column_text(s, i), sqlite3_column_bytes(s, i));
            break;
        default:
            v = NULL;
        }
        json_object_object_add(o, sqlite3_column_name(s, i), v);
    }
    return o;
}

json_object *db_exec_get(db_t *db, int64_t id, const char *owner)
{
    if (!db->h)
        return db_failed(db), NULL;
    sqlite3_stmt *s = db->st[ST_EXEC_GET];
    sqlite3_bind_int64(s, 1, id);
    db_bind_text(s, 2, owner);
    json_object *o = NULL;
    if (sqlite3_step(s) == SQLITE_ROW)
        o = db_row_json(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return o;
}

/* The statement for one combination of history filters, built from fixed fragments only. */
static sqlite3_stmt *db_list_stmt(db_t *db, int mask)
{
    static const struct {
        int bit;
        const char *sql;
    } frags[] = {
        {LF_OWNER, " AND owner = ?1"},       {LF_SESSION, " AND session_id = ?2"}, {LF_STATUS, " AND status = ?3"},
        {LF_MODE, " AND mode = ?4"},         {LF_SINCE, " AND queued_at >= ?5"},  {LF_UNTIL, " AND queued_at < ?6"},
        {LF_BEFORE, " AND id < ?7"},
    };
    if (db->list_st[mask])
        return db->list_st[mask];
    char sql[512] = "SELECT * FROM executions WHERE 1";
    for (size_t i = 0; i < sizeof frags / sizeof frags[0]; i++)
        if (mask & frags[i].bit)
            strcat(sql, frags[i].sql);
    strcat(sql, " ORDER BY id DESC LIMIT ?8");
    if (sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &db->list_st[mask], NULL) != SQLITE_OK)
        return NULL;
    return db->list_st[mask];
}

/* An upper bound of the current row's size as JSON: every byte of text at most 6 (\u00XX), the
 * rest a fixed allowance per column. */
static size_t db_row_json_bound(sqlite3_stmt *s)
{
    size_t n = 2;
    int cols = sqlite3_column_count(s);
    for (int i = 0; i < cols; i++) {
        n += strlen(sqlite3_column_name(s, i)) + 32;
        if (sqlite3_column_type(s, i) != SQLITE_TEXT)
            continue;
        const unsigned char *t = sqlite3_column_text(s, i);
        int len = sqlite3_column_bytes(s, i);
        for (int k = 0; k < len; k++)
            n += t[k] < 0x20 ? 6 : (t[k] == '"' || t[k] == '\\' || t[k] == '/') ? 2 : 1;
    }
    return n;
}

json_object *db_exec_list(db_t *db, const db_exec_filter_t *f, int *more)
{
    if (more)
        *more = 0;
    if (!db->h)
        return db_failed(db), NULL;
    int mask = (f->owner ? LF_OWNER : 0) | (f->session_id ? LF_SESSION : 0) | (f->status ? LF_STATUS : 0) |
               (f->mode ? LF_MODE : 0) | (f->since > 0 ? LF_SINCE : 0) | (f->until > 0 ? LF_UNTIL : 0) |
               (f->before > 0 ? LF_BEFORE : 0);
    sqlite3_stmt *s = db_list_stmt(db, mask);
    if (!s)
        return NULL;
    if (f->owner)
        db_bind_text(s, 1, f->owner);
    if (f->session_id)
        db_bind_text(s, 2, f->session_id);
    if (f->status)
        db_bind_text(s, 3, f->status);
    if (f->mode)
        db_bind_text(s, 4, f->mode);
    if (f->since > 0)
        sqlite3_bind_double(s, 5, f->since);
    if (f->until > 0)
        sqlite3_bind_double(s, 6, f->until);
    if (f->before > 0)
        sqlite3_bind_int64(s, 7, f->before);
    sqlite3_bind_int64(s, 8, f->limit > 0 ? f->limit : 50);
    json_object *a = json_object_new_array();
    int rc;
    long n = 0;
    size_t bytes = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (f->max_bytes) {
            size_t b = db_row_json_bound(s);
            if (n > 0 && bytes + b > f->max_bytes) {
                if (more)
                    *more = 1;
                rc = SQLITE_DONE;
                break;
            }
            bytes += b;
        }
        json_object_array_add(a, db_row_json(s));
        n++;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE) {
        json_object_put(a);
        return NULL;
    }
    if (more && n == (f->limit > 0 ? f->limit : 50))
        *more = 1;
    return a;
}
