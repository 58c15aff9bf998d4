#define _GNU_SOURCE
#include "db.h"

#include <stdio.h>
#include <stdlib.h>

#include "db_internal.h"

/* The k-th smallest value (0-based) of statement st over [since, until), or -1. */
static double db_nth(db_t *db, int st, double since, double until, long k)
{
    sqlite3_stmt *s = db->st[st];
    sqlite3_bind_double(s, 1, since);
    sqlite3_bind_double(s, 2, until);
    sqlite3_bind_int64(s, 3, k);
    double v = -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_double(s, 0);
    sqlite3_reset(s);
    return v;
}

/* p50/p95/p99 (nearest rank) and the mean of a column with n values. */
static json_object *db_percentiles(db_t *db, int st, double since, double until, long n, double mean)
{
    static const struct {
        const char *name;
        double p;
    } ps[] = {{"p50", 0.50}, {"p95", 0.95}, {"p99", 0.99}};
    json_object *o = json_object_new_object();
    for (size_t i = 0; i < 3; i++) {
        long rank = (long)(ps[i].p * n + 0.999999); /* ceil, 1-based */
        json_object_object_add(o, ps[i].name, n ? json_object_new_double(db_nth(db, st, since, until, rank - 1)) : NULL);
    }
    json_object_object_add(o, "mean", n ? json_object_new_double(mean) : NULL);
    json_object_object_add(o, "count", json_object_new_int64(n));
    return o;
}

/* The agent's tool calls in the range, by tool and status (the most used first). */
static json_object *db_stats_tools(db_t *db, double since, double until)
{
    json_object *tools = json_object_new_array();
    sqlite3_stmt *s = db->st[ST_TOOL_COUNTS];
    sqlite3_bind_double(s, 1, since);
    sqlite3_bind_double(s, 2, until);
    while (sqlite3_step(s) == SQLITE_ROW) {
        json_object *t = json_object_new_object();
        json_object_object_add(t, "tool", json_object_new_string((const char *)sqlite3_column_text(s, 0)));
        json_object_object_add(t, "status", json_object_new_string((const char *)sqlite3_column_text(s, 1)));
        json_object_object_add(t, "calls", json_object_new_int64(sqlite3_column_int64(s, 2)));
        json_object_array_add(tools, t);
    }
    sqlite3_reset(s);
    return tools;
}

/* Executions, tokens and cost in the range, by pool. */
static json_object *db_stats_pools(db_t *db, double since, double until)
{
    json_object *pools = json_object_new_object();
    sqlite3_stmt *s = db->st[ST_STATS_POOLS];
    sqlite3_bind_double(s, 1, since);
    sqlite3_bind_double(s, 2, until);
    while (sqlite3_step(s) == SQLITE_ROW) {
        json_object *p = json_object_new_object(), *tok = json_object_new_object();
        json_object_object_add(p, "executions", json_object_new_int64(sqlite3_column_int64(s, 1)));
        json_object_object_add(p, "succeeded", json_object_new_int64(sqlite3_column_int64(s, 2)));
        json_object_object_add(tok, "in", json_object_new_int64(sqlite3_column_int64(s, 3)));
        json_object_object_add(tok, "out", json_object_new_int64(sqlite3_column_int64(s, 4)));
        json_object_object_add(p, "tokens", tok);
        json_object_object_add(p, "cost", json_object_new_double(sqlite3_column_double(s, 5)));
        json_object_object_add(p, "mean_ms", sqlite3_column_type(s, 6) == SQLITE_NULL
                                                 ? NULL : json_object_new_double(sqlite3_column_double(s, 6)));
        json_object_object_add(pools, (const char *)sqlite3_column_text(s, 0), p);
    }
    sqlite3_reset(s);
    return pools;
}

json_object *db_stats(db_t *db, double since, double until)
{
    json_object *o = json_object_new_object(), *by_status = json_object_new_object(),
                *by_mode = json_object_new_object();
    json_object_object_add(o, "since", json_object_new_double(since));
    json_object_object_add(o, "until", json_object_new_double(until));
    sqlite3_stmt *s = db->st[ST_STATS_COUNTS];
    sqlite3_bind_double(s, 1, since);
    sqlite3_bind_double(s, 2, until);
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(s, 0), *st = (const char *)sqlite3_column_text(s, 1);
        int64_t n = sqlite3_column_int64(s, 2);
        json_object *v;
        int64_t cur = json_object_object_get_ex(by_status, st, &v) ? json_object_get_int64(v) : 0;
        json_object_object_add(by_status, st, json_object_new_int64(cur + n));
        cur = json_object_object_get_ex(by_mode, mode, &v) ? json_object_get_int64(v) : 0;
        json_object_object_add(by_mode, mode, json_object_new_int64(cur + n));
    }
    sqlite3_reset(s);
    s = db->st[ST_STATS_TOTALS];
    sqlite3_bind_double(s, 1, since);
    sqlite3_bind_double(s, 2, until);
    if (sqlite3_step(s) != SQLITE_ROW) {
        sqlite3_reset(s);
        json_object_put(by_status);
        json_object_put(by_mode);
        json_object_put(o);
        return NULL;
    }
    long total = (long)sqlite3_column_int64(s, 0), nd = (long)sqlite3_column_int64(s, 1),
         nw = (long)sqlite3_column_int64(s, 3);
    double md = sqlite3_column_double(s, 2), mw = sqlite3_column_double(s, 4);
    json_object *rss = json_object_new_object(), *tok = json_object_new_object();
    json_object_object_add(rss, "peak", sqlite3_column_type(s, 5) == SQLITE_NULL ? NULL
                                            : json_object_new_int64(sqlite3_column_int64(s, 5)));
    json_object_object_add(rss, "mean", sqlite3_column_type(s, 6) == SQLITE_NULL ? NULL
                                            : json_object_new_double(sqlite3_column_double(s, 6)));
    json_object_object_add(tok, "in", json_object_new_int64(sqlite3_column_int64(s, 7)));
    json_object_object_add(tok, "out", json_object_new_int64(sqlite3_column_int64(s, 8)));
    double cost = sqlite3_column_double(s, 9);
    sqlite3_reset(s);
    json_object_object_add(o, "total", json_object_new_int64(total));
    json_object_object_add(o, "by_status", by_status);
    json_object_object_add(o, "by_mode", by_mode);
    /* Sorting a short range is cheapest; past DB_STATS_WALK rows, walking the value index wins. */
    int walk = total > DB_STATS_WALK;
    json_object_object_add(o, "duration_ms", db_percentiles(db, walk ? ST_STATS_DURATION_AT_WALK : ST_STATS_DURATION_AT,
                                                            since, until, nd, md));
    json_object_object_add(o, "queue_wait_ms", db_percentiles(db, walk ? ST_STATS_WAIT_AT_WALK : ST_STATS_WAIT_AT,
                                                              since, until, nw, mw));
    json_object_object_add(o, "peak_rss_kb", rss);
    json_object_object_add(o, "tokens", tok);
    json_object_object_add(o, "cost", json_object_new_double(cost));
    json_object *busy = json_object_new_array();
    s = db->st[ST_STATS_BUSIEST];
    sqlite3_bind_double(s, 1, since);
    sqlite3_bind_double(s, 2, until);
    while (sqlite3_step(s) == SQLITE_ROW) {
        json_object *b = json_object_new_object();
        json_object_object_add(b, "session_id", json_object_new_string((const char *)sqlite3_column_text(s, 0)));
        json_object_object_add(b, "executions", json_object_new_int64(sqlite3_column_int64(s, 1)));
        json_object_object_add(b, "failed", json_object_new_int64(sqlite3_column_int64(s, 2)));
        json_object_object_add(b, "mean_ms", sqlite3_column_type(s, 3) == SQLITE_NULL ? NULL
                                                 : json_object_new_double(sqlite3_column_double(s, 3)));
        const char *owner = (const char *)sqlite3_column_text(s, 4);
        json_object_object_add(b, "owner", owner && *owner ? json_object_new_string(owner) : NULL);
        json_object_array_add(busy, b);
    }
    sqlite3_reset(s);
    json_object_object_add(o, "busiest_sessions", busy);
    json_object_object_add(o, "tool_calls", db_stats_tools(db, since, until));
    json_object_object_add(o, "by_pool", db_stats_pools(db, since, until));
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
    if (sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, db->h ? sqlite3_errmsg(db->h) : "cannot open");
        db_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db->h, 5000);
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
