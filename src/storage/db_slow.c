/* The slow log's rows (slowlog.h): written once per slow turn by the manager, read by operators
 * (GET /api/admin/slowlog, ocpmctl slowlog). */
#define _GNU_SOURCE
#include "db.h"

#include "db_internal.h"

int db_slow_put(db_t *db, const db_slow_t *r)
{
    if (!db->h)
        return db_failed(db), -1;
    sqlite3_stmt *s = db->st[ST_SLOW_INSERT];
    sqlite3_bind_int64(s, 1, r->execution_id);
    db_bind_text(s, 2, r->owner);
    db_bind_text(s, 3, r->session_id);
    db_bind_text(s, 4, r->pool ? r->pool : "default");
    sqlite3_bind_double(s, 5, r->at);
    sqlite3_bind_double(s, 6, r->elapsed_ms);
    db_bind_text(s, 7, r->step);
    db_bind_text(s, 8, r->tool);
    db_bind_text(s, 9, r->call_id);
    db_bind_text(s, 10, r->input_summary);
    if (r->input_bytes >= 0)
        sqlite3_bind_int64(s, 11, r->input_bytes);
    else
        sqlite3_bind_null(s, 11);
    db_bind_text(s, 12, r->input_sha256);
    if (r->since_last_event_ms >= 0)
        sqlite3_bind_double(s, 13, r->since_last_event_ms);
    else
        sqlite3_bind_null(s, 13);
    db_bind_text(s, 14, r->pending_prompts ? r->pending_prompts : "[]");
    return db_run(db, ST_SLOW_INSERT);
}

json_object *db_slow_list(db_t *db, double since, long long before, long limit, size_t max_bytes, int *more)
{
    if (!db->h)
        return db_failed(db), NULL;
    sqlite3_stmt *s = db->st[ST_SLOW_LIST];
    sqlite3_bind_double(s, 1, since);
    if (before > 0)
        sqlite3_bind_int64(s, 2, before);
    else
        sqlite3_bind_null(s, 2);
    sqlite3_bind_int64(s, 3, limit);
    json_object *a = json_object_new_array();
    int rc;
    long n = 0;
    size_t bytes = 0;
    *more = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        size_t b = db_row_json_bound(s);
        if (n > 0 && bytes + b > max_bytes) { /* the page ends here: the next one starts with this row */
            *more = 1;
            rc = SQLITE_DONE;
            break;
        }
        bytes += b;
        if (++n == limit)
            *more = 1; /* perhaps: the next page says */
        json_object *row = db_row_json(s), *p;
        /* Stored as JSON text by the manager: shown as what it is. */
        if (json_object_object_get_ex(row, "pending_prompts", &p) && json_object_is_type(p, json_type_string))
            json_object_object_add(row, "pending_prompts", json_tokener_parse(json_object_get_string(p)));
        json_object_array_add(a, row);
    }
    return db_rows_done(db, s, rc, a);
}
