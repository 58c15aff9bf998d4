#define _GNU_SOURCE
#include "db.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"
#include "valid.h"

/* Statistics over [since, until) by queued_at. The whole UTC days inside the range come from the
 * day rollups, the whole hours around them from the hour rollups (stats_* tables, kept by triggers:
 * db_schema.c), and only the partial hours at the edges from the rows: the cost follows the periods,
 * not the rows, and percentiles come from the histograms (db_tally.c states the error). A range
 * with no whole hour reads its rows, once, and is exact. The rollups hold final executions: rows
 * still queued or running in the whole hours are read from the rows too (few: the status index). */

static const char *db_col_text(sqlite3_stmt *s, int i) { return (const char *)sqlite3_column_text(s, i); }

static double db_stats_fin(double v) { return v > 1e15 ? 1e15 : v < -1e15 ? -1e15 : v; }

static void db_stats_bind(db_t *db, int st, double a, double b, int span)
{
    sqlite3_stmt *s = db->st[st];
    sqlite3_reset(s);
    sqlite3_bind_double(s, 1, a);
    sqlite3_bind_double(s, 2, b);
    if (span)
        sqlite3_bind_int(s, 3, span);
}

/* Rows (ST_STATS_ROWS or ST_STATS_LIVE) in [a, b), one at a time. */
static int db_stats_rows(db_t *db, db_tally_t *t, int st, double a, double b)
{
    db_stats_bind(db, st, a, b, 0);
    sqlite3_stmt *s = db->st[st];
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int has_d = sqlite3_column_type(s, 5) != SQLITE_NULL, has_w = sqlite3_column_type(s, 6) != SQLITE_NULL,
            has_r = sqlite3_column_type(s, 7) != SQLITE_NULL;
        double d = sqlite3_column_double(s, 5), w = sqlite3_column_double(s, 6);
        const char *status = db_col_text(s, 2);
        /* Bounded as the rollups' triggers bound them (DB_FIN, DB_TOKENS, DB_COST), so both agree. */
        db_tally_group_t g = {.n = 1, .nd = has_d, .nw = has_w, .nr = has_r, .sum_d = has_d ? db_stats_fin(d) : 0,
                              .sum_w = has_w ? db_stats_fin(w) : 0,
                              .sum_r = has_r ? db_stats_fin(sqlite3_column_double(s, 7)) : 0,
                              .max_r = has_r ? sqlite3_column_int64(s, 7) : -1,
                              .tokens_in = valid_tokens(sqlite3_column_int64(s, 8)),
                              .tokens_out = valid_tokens(sqlite3_column_int64(s, 9)),
                              .cost = valid_cost(sqlite3_column_double(s, 10))};
        int failed = status && (!strcmp(status, "failed") || !strcmp(status, "timeout") || !strcmp(status, "interrupted"));
        if (db_tally_group(t, db_col_text(s, 0), db_col_text(s, 1), status, &g) != 0 ||
            db_tally_session(t, db_col_text(s, 3), db_col_text(s, 4), 1, failed, has_d, has_d ? db_stats_fin(d) : 0) != 0 ||
            (has_d && db_tally_value(t, DB_TALLY_DURATION, d) != 0) ||
            (has_w && db_tally_value(t, DB_TALLY_WAIT, w) != 0))
            break;
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Tool calls (ST_STATS_TOOL_ROWS, ST_STATS_TOOL_LIVE, or ST_STATS_TOOLS with span) in [a, b). */
static int db_stats_tools(db_t *db, db_tally_t *t, int st, double a, double b, int span)
{
    db_stats_bind(db, st, a, b, span);
    sqlite3_stmt *s = db->st[st];
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (db_tally_tool(t, db_col_text(s, 0), db_col_text(s, 1), sqlite3_column_int64(s, 2)) != 0)
            break;
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* The rollups of span's periods starting in [a, b) (nothing when a >= b). */
static int db_stats_rollups(db_t *db, db_tally_t *t, int span, double a, double b)
{
    if (!(a < b))
        return 0;
    int rc;
    sqlite3_stmt *s = db->st[ST_STATS_ROLLUP];
    db_stats_bind(db, ST_STATS_ROLLUP, a, b, span);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        db_tally_group_t g = {.n = sqlite3_column_int64(s, 3), .nd = sqlite3_column_int64(s, 4),
                              .sum_d = sqlite3_column_double(s, 5), .nw = sqlite3_column_int64(s, 6),
                              .sum_w = sqlite3_column_double(s, 7), .nr = sqlite3_column_int64(s, 8),
                              .sum_r = sqlite3_column_double(s, 9),
                              .max_r = sqlite3_column_type(s, 10) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 10),
                              .tokens_in = sqlite3_column_int64(s, 11), .tokens_out = sqlite3_column_int64(s, 12),
                              .cost = sqlite3_column_double(s, 13)};
        if (db_tally_group(t, db_col_text(s, 0), db_col_text(s, 1), db_col_text(s, 2), &g) != 0)
            break;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return -1;
    s = db->st[ST_STATS_HIST];
    db_stats_bind(db, ST_STATS_HIST, a, b, span);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        db_tally_bucket(t, sqlite3_column_int(s, 0), sqlite3_column_int(s, 1), sqlite3_column_int64(s, 2));
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return -1;
    s = db->st[ST_STATS_SESSIONS];
    db_stats_bind(db, ST_STATS_SESSIONS, a, b, span);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (db_tally_session(t, db_col_text(s, 0), db_col_text(s, 1), sqlite3_column_int64(s, 2),
                             sqlite3_column_int64(s, 3), sqlite3_column_int64(s, 4), sqlite3_column_double(s, 5)) != 0)
            break;
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return -1;
    return db_stats_tools(db, t, ST_STATS_TOOLS, a, b, span);
}

/* Rows and their tool calls in [a, b): every row (ST_STATS_ROWS) or the ones not final (ST_STATS_LIVE). */
static int db_stats_range(db_t *db, db_tally_t *t, int live, double a, double b)
{
    if (!(a < b))
        return 0;
    return db_stats_rows(db, t, live ? ST_STATS_LIVE : ST_STATS_ROWS, a, b) ||
           db_stats_tools(db, t, live ? ST_STATS_TOOL_LIVE : ST_STATS_TOOL_ROWS, a, b, 0);
}

json_object *db_stats(db_t *db, double since, double until) { return db_stats_opt(db, since, until, 0); }

json_object *db_stats_opt(db_t *db, double since, double until, int histograms)
{
    /* Whole hours [h0, h1) and, inside them, whole days [d0, d1) (d0 == d1: none). */
    double h0 = ceil(since / 3600) * 3600, h1 = floor(until / 3600) * 3600;
    int whole = since < until && h0 < h1;
    double d0 = whole ? ceil(h0 / 86400) * 86400 : 0, d1 = whole ? floor(h1 / 86400) * 86400 : 0;
    if (!(d0 < d1))
        d0 = d1 = h1;
    db_tally_t *t = db_tally_new(!whole);
    if (!t)
        return NULL;
    /* One read transaction: every statement below sees the same snapshot (WAL), so an execution that
     * finishes meanwhile is neither missed nor counted twice between the rows and the rollups. */
    int in_tx = sqlite3_exec(db->h, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
    int rc = whole ? db_stats_range(db, t, 0, since, h0) || db_stats_rollups(db, t, 3600, h0, d0) ||
                         db_stats_rollups(db, t, 86400, d0, d1) || db_stats_rollups(db, t, 3600, d1, h1) ||
                         db_stats_range(db, t, 1, h0, h1) || db_stats_range(db, t, 0, h1, until)
                   : db_stats_range(db, t, 0, since, until);
    if (in_tx)
        sqlite3_exec(db->h, "COMMIT", NULL, NULL, NULL);
    json_object *o = rc ? NULL : db_tally_json(t, since, until, histograms);
    db_tally_free(t);
    return o;
}

int db_prune(db_t *db, double before, long batch, long *deleted)
{
    *deleted = 0;
    /* Executions take their tool calls, events and prompts with them (ON DELETE CASCADE). */
    static const int sts[] = {ST_PRUNE_EXECS, ST_PRUNE_EVENTS, ST_PRUNE_HOOKS};
    for (size_t i = 0; i < sizeof sts / sizeof sts[0]; i++) {
        sqlite3_bind_double(db->st[sts[i]], 1, before);
        sqlite3_bind_int64(db->st[sts[i]], 2, batch);
        if (db_run(db, sts[i]) != 0)
            return -1;
        *deleted += sqlite3_changes(db->h);
    }
    return 0;
}

db_t *db_open_readonly(const char *path, char *err, size_t errlen)
{
    db_t *db = calloc(1, sizeof *db);
    if (!db) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, db->h ? sqlite3_errmsg(db->h) : "cannot open");
        db_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db->h, 5000);
    /* Readers scan ranges of rows: mapped, a page is read in place instead of copied in by pread
     * (a fifth of a stats call). Read-only, so a page is never written through the map. */
    sqlite3_exec(db->h, "PRAGMA mmap_size = 1073741824", NULL, NULL, NULL);
    sqlite3_stmt *s;
    int version = -1;
    if (sqlite3_prepare_v2(db->h, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK) {
        if (sqlite3_step(s) == SQLITE_ROW)
            version = sqlite3_column_int(s, 0);
        sqlite3_finalize(s);
    }
    if (version < 0) {
        snprintf(err, errlen, "%s: not a readable SQLite database (%s)", path, sqlite3_errmsg(db->h));
        db_close(db);
        return NULL;
    }
    if (version != db_nmigrations) {
        snprintf(err, errlen, "%s: not an ocpm database of this version (schema %d, expected %d)", path, version,
                 db_nmigrations);
        db_close(db);
        return NULL;
    }
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(db->h, db_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &db->st[i], NULL) != SQLITE_OK) {
            snprintf(err, errlen, "%s: not an ocpm database (%s)", path, sqlite3_errmsg(db->h));
            db_close(db);
            return NULL;
        }
    }
    return db;
}

json_object *db_query_json(db_t *db, const char *sql)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->h, sql, -1, &s, NULL) != SQLITE_OK)
        return NULL;
    json_object *a = json_object_new_array();
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        json_object_array_add(a, db_row_json(s));
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        json_object_put(a);
        return NULL;
    }
    return a;
}
