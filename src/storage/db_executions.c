#define _GNU_SOURCE
#include "db.h"

#include <string.h>

#include "db_internal.h"
#include "sha256.h"

/* A value of a column, as it is stored. */
typedef struct db_val {
    enum { DV_NULL, DV_INT, DV_REAL, DV_TEXT } kind;
    long long i;
    double d;
    const char *s;
    size_t len;
} db_val_t;

/* The stored form of a prompt or answer per store_prompts: the text (cut at text_limit on a
 * UTF-8 boundary) or the SHA-256 of the whole; the byte size either way. which: 0 text, 1 bytes,
 * 2 sha256 (hex written into hex). */
static void db_text_body(const db_t *db, const char *text, size_t len, int which, db_val_t *v, char hex[65])
{
    *v = (db_val_t){DV_NULL};
    if (!text)
        return;
    if (which == 1) {
        *v = (db_val_t){.kind = DV_INT, .i = (long long)len};
    } else if (which == 0 && db->store_prompts) {
        size_t keep = len < (size_t)db->text_limit ? len : (size_t)db->text_limit;
        while (keep > 0 && keep < len && ((unsigned char)text[keep] & 0xc0) == 0x80)
            keep--;
        *v = (db_val_t){.kind = DV_TEXT, .s = text, .len = keep};
    } else if (which == 2 && !db->store_prompts) {
        sha256_hex(text, len, hex);
        *v = (db_val_t){.kind = DV_TEXT, .s = hex, .len = 64};
    }
}

static db_val_t dv_text(const char *s) { return s ? (db_val_t){.kind = DV_TEXT, .s = s, .len = strlen(s)} : (db_val_t){DV_NULL}; }
static db_val_t dv_int(int set, long long i) { return set ? (db_val_t){.kind = DV_INT, .i = i} : (db_val_t){DV_NULL}; }
static db_val_t dv_real(int set, double d) { return set ? (db_val_t){.kind = DV_REAL, .d = d} : (db_val_t){DV_NULL}; }

/* Every column of an execution row, in the table's order, and how it comes from a db_exec_t.
 * Writing (db_exec_update) and the answer built from memory (db_exec_json) both read this table,
 * so the two cannot disagree. update: its parameter in ST_EXEC_UPDATE (0: not written there). */
enum {
    C_ID, C_SESSION, C_OWNER, C_MODE, C_STATUS, C_ARGV, C_PID, C_MODEL, C_AGENT, C_QUEUED, C_STARTED, C_FINISHED,
    C_DURATION, C_WAIT, C_EXIT, C_SIGNAL, C_RSS, C_CPU_USER, C_CPU_SYS, C_TOKENS_IN, C_TOKENS_OUT, C_COST, C_PROMPT,
    C_PROMPT_BYTES, C_PROMPT_SHA, C_ANSWER, C_ANSWER_BYTES, C_ANSWER_SHA, C_OC_SESSION, C_STDERR, C_ERROR,
    C_CHANGES_FILES, C_CHANGES_ADD, C_CHANGES_DEL, C_POOL, C_COUNT
};
static const struct {
    const char *name;
    int update;
} db_exec_columns[C_COUNT] = {
    [C_ID] = {"id", 1},           [C_SESSION] = {"session_id", 0},    [C_OWNER] = {"owner", 0},
    [C_MODE] = {"mode", 2},       [C_STATUS] = {"status", 3},         [C_ARGV] = {"argv", 4},
    [C_PID] = {"pid", 5},         [C_MODEL] = {"model", 0},           [C_AGENT] = {"agent", 0},
    [C_QUEUED] = {"queued_at", 0}, [C_STARTED] = {"started_at", 6},   [C_FINISHED] = {"finished_at", 7},
    [C_DURATION] = {"duration_ms", 8}, [C_WAIT] = {"queue_wait_ms", 9}, [C_EXIT] = {"exit_code", 10},
    [C_SIGNAL] = {"signal", 11},  [C_RSS] = {"peak_rss_kb", 12},      [C_CPU_USER] = {"cpu_user_ms", 13},
    [C_CPU_SYS] = {"cpu_sys_ms", 14}, [C_TOKENS_IN] = {"tokens_in", 15}, [C_TOKENS_OUT] = {"tokens_out", 16},
    [C_COST] = {"cost", 17},      [C_PROMPT] = {"prompt", 0},         [C_PROMPT_BYTES] = {"prompt_bytes", 0},
    [C_PROMPT_SHA] = {"prompt_sha256", 0}, [C_ANSWER] = {"answer", 18}, [C_ANSWER_BYTES] = {"answer_bytes", 19},
    [C_ANSWER_SHA] = {"answer_sha256", 20}, [C_OC_SESSION] = {"opencode_session_id", 21},
    [C_STDERR] = {"stderr_tail", 22}, [C_ERROR] = {"error", 23},
    [C_CHANGES_FILES] = {"changes_files", 24}, [C_CHANGES_ADD] = {"changes_additions", 25},
    [C_CHANGES_DEL] = {"changes_deletions", 26}, [C_POOL] = {"pool", 0},
};

/* Column c of e's row (hex: room for a digest). */
static db_val_t db_exec_column(const db_t *db, const db_exec_t *e, int c, char hex[65])
{
    double start = e->started_at > 0 ? e->started_at : e->finished_at;
    int ran = e->has_exit || e->signal;
    db_val_t v;
    switch (c) {
    case C_ID: return dv_int(1, e->id);
    case C_SESSION: return dv_text(e->session_id);
    case C_OWNER: return dv_text(e->owner);
    case C_MODE: return dv_text(e->mode);
    case C_STATUS: return dv_text(exec_status_name(e->status));
    case C_ARGV: return dv_text(e->argv_json);
    case C_PID: return dv_int(e->pid > 0, e->pid);
    case C_MODEL: return dv_text(e->model);
    case C_AGENT: return dv_text(e->agent);
    case C_QUEUED: return dv_real(1, e->queued_at);
    case C_STARTED: return dv_real(e->started_at > 0, e->started_at);
    case C_FINISHED: return dv_real(e->finished_at > 0, e->finished_at);
    case C_DURATION: return dv_real(e->finished_at > 0, (e->finished_at - start) * 1000.0);
    case C_WAIT: return dv_real(start > 0, (start - e->queued_at) * 1000.0);
    case C_EXIT: return dv_int(e->has_exit, e->exit_code);
    case C_SIGNAL: return dv_int(e->signal != 0, e->signal);
    case C_RSS: return dv_int(e->peak_rss_kb > 0, e->peak_rss_kb);
    case C_CPU_USER: return dv_real(ran, e->cpu_user_ms);
    case C_CPU_SYS: return dv_real(ran, e->cpu_sys_ms);
    case C_TOKENS_IN: return dv_int(e->has_usage, e->tokens_in);
    case C_TOKENS_OUT: return dv_int(e->has_usage, e->tokens_out);
    case C_COST: return dv_real(e->has_usage, e->cost);
    case C_PROMPT: case C_PROMPT_BYTES: case C_PROMPT_SHA:
        db_text_body(db, e->prompt, e->prompt_len, c - C_PROMPT, &v, hex);
        return v;
    case C_ANSWER: case C_ANSWER_BYTES: case C_ANSWER_SHA:
        db_text_body(db, e->answer, e->answer_len, c - C_ANSWER, &v, hex);
        return v;
    case C_OC_SESSION: return dv_text(e->oc_session_id);
    case C_STDERR: return dv_text(e->stderr_tail);
    case C_ERROR: return dv_text(e->error);
    case C_CHANGES_FILES: return dv_int(e->has_changes, e->changes[0]);
    case C_CHANGES_ADD: return dv_int(e->has_changes, e->changes[1]);
    case C_CHANGES_DEL: return dv_int(e->has_changes, e->changes[2]);
    case C_POOL: return dv_text(e->pool ? e->pool : "default");
    }
    return (db_val_t){DV_NULL};
}

static void db_bind_val(sqlite3_stmt *s, int i, const db_val_t *v)
{
    switch (v->kind) {
    case DV_INT: sqlite3_bind_int64(s, i, v->i); break;
    case DV_REAL: sqlite3_bind_double(s, i, v->d); break;
    case DV_TEXT: sqlite3_bind_text(s, i, v->s, (int)v->len, SQLITE_TRANSIENT); break;
    case DV_NULL: sqlite3_bind_null(s, i); break;
    }
}

json_object *db_exec_public(json_object *o)
{
    static const char *const private_keys[] = {"argv", "pid", "stderr_tail"};
    for (size_t i = 0; i < sizeof private_keys / sizeof private_keys[0]; i++)
        json_object_object_del(o, private_keys[i]);
    json_object *ow;
    if (json_object_object_get_ex(o, "owner", &ow) && json_object_is_type(ow, json_type_string) &&
        !*json_object_get_string(ow))
        json_object_object_add(o, "owner", NULL);
    /* The files the turn changed, as one object (null: not known, e.g. still running). */
    static const char *const changes[][2] = {
        {"changes_files", "files"}, {"changes_additions", "additions"}, {"changes_deletions", "deletions"}};
    json_object *ch = NULL, *v;
    for (size_t i = 0; i < 3; i++) {
        if (json_object_object_get_ex(o, changes[i][0], &v) && v) {
            if (!ch)
                ch = json_object_new_object();
            json_object_object_add(ch, changes[i][1], json_object_get(v));
        }
        json_object_object_del(o, changes[i][0]);
    }
    json_object_object_add(o, "changes", ch);
    return o;
}

json_object *db_exec_json(const db_t *db, const db_exec_t *e)
{
    json_object *o = json_object_new_object();
    char hex[65];
    for (int c = 0; c < C_COUNT; c++) {
        db_val_t v = db_exec_column(db, e, c, hex);
        json_object *j = v.kind == DV_INT    ? json_object_new_int64(v.i)
                         : v.kind == DV_REAL ? json_object_new_double(v.d)
                         : v.kind == DV_TEXT ? json_object_new_string_len(v.s, (int)v.len)
                                             : NULL;
        json_object_object_add(o, db_exec_columns[c].name, j);
    }
    return o;
}

int db_exec_insert(db_t *db, db_exec_t *e)
{
    sqlite3_stmt *s = db->st[ST_EXEC_INSERT];
    /* (session_id, owner, mode, status, model, agent, queued_at, prompt, prompt_bytes, prompt_sha256, pool) */
    static const int cols[] = {C_SESSION, C_OWNER, C_MODE, C_STATUS, C_MODEL, C_AGENT, C_QUEUED, C_PROMPT,
                               C_PROMPT_BYTES, C_PROMPT_SHA, C_POOL};
    char hex[65];
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        db_val_t v = db_exec_column(db, e, cols[i], hex);
        db_bind_val(s, (int)i + 1, &v);
    }
    if (db_run(db, ST_EXEC_INSERT) != 0)
        return -1;
    e->id = (int64_t)sqlite3_last_insert_rowid(db->h);
    return 0;
}

int db_exec_update(db_t *db, const db_exec_t *e, int finished)
{
    int own = finished && !db_in_tx(db);
    if (own && db_run(db, ST_BEGIN) != 0)
        return -1;
    sqlite3_stmt *s = db->st[ST_EXEC_UPDATE];
    char hex[65];
    for (int c = 0; c < C_COUNT; c++)
        if (db_exec_columns[c].update) {
            db_val_t v = db_exec_column(db, e, c, hex);
            db_bind_val(s, db_exec_columns[c].update, &v);
        }
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
    if (!own)
        return rc;
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

size_t db_row_json_bound(sqlite3_stmt *s)
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
