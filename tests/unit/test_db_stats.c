/* Unit tests for /api/stats over the rollups (db_stats.c, db_tally.c, migration 8's triggers):
 * pseudo-random (fixed) executions over three days, then every figure of db_stats() compared with the same figure
 * computed the slow way from the rows, for many ranges: counts and sums exactly, percentiles exactly
 * when the answer says so and within its stated error otherwise; again after rows finish, after
 * tool calls come late, after retention deletes rows, and after an operator's own UPDATE. */
#define _GNU_SOURCE
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "db.h"

static char dir[64], path[128];
static db_t *db;
static sqlite3 *raw;
/* Three days from a day's start, plus a little (UTC days and hours line up on multiples of 86400). */
#define T0 1700006400.0
#define SPAN (3 * 86400.0 + 5000)

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/ocpm-stats-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/t.db", dir);
    char err[256];
    db = db_open(path, 1, 64, err, sizeof err);
    if (!db || sqlite3_open(path, &raw) != SQLITE_OK)
        return -1;
    sqlite3_busy_timeout(raw, 5000);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    db_close(db);
    sqlite3_close(raw);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void exec_sql(const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(raw, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", sql, err);
}

static double q_double(const char *fmt, ...)
{
    char sql[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(raw, sql, -1, &s, NULL), SQLITE_OK);
    double v = sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL ? sqlite3_column_double(s, 0)
                                                                                           : NAN;
    sqlite3_finalize(s);
    return v;
}

static double jd(json_object *o, const char *a, const char *b)
{
    json_object *x = NULL, *y = NULL;
    if (!json_object_object_get_ex(o, a, &x))
        return NAN;
    if (!b)
        return x ? json_object_get_double(x) : NAN;
    return json_object_object_get_ex(x, b, &y) && y ? json_object_get_double(y) : NAN;
}

#define W "queued_at >= %.6f AND queued_at < %.6f"

/* Nearest-rank percentile p of col over the range, the slow way. */
static double slow_pct(const char *col, double p, double a, double b)
{
    double n = q_double("SELECT count(%s) FROM executions WHERE " W, col, a, b);
    long rank = (long)ceil(p * n - 1e-9);
    if (rank < 1)
        rank = 1;
    return q_double("SELECT %s FROM executions WHERE " W " AND %s IS NOT NULL ORDER BY %s LIMIT 1 OFFSET %ld", col, a,
                    b, col, col, rank - 1);
}

static void check_pct(json_object *st, const char *key, const char *col, double a, double b)
{
    json_object *o;
    assert_true(json_object_object_get_ex(st, key, &o));
    json_object *ex;
    assert_true(json_object_object_get_ex(o, "exact", &ex));
    int exact = json_object_get_boolean(ex);
    static const struct {
        const char *name;
        double p;
    } ps[] = {{"p50", 0.5}, {"p95", 0.95}, {"p99", 0.99}};
    for (size_t i = 0; i < 3; i++) {
        double want = slow_pct(col, ps[i].p, a, b), got = jd(o, ps[i].name, NULL);
        if (isnan(want)) {
            assert_true(isnan(got));
            continue;
        }
        if (exact)
            assert_true(fabs(got - want) < 1e-9);
        else if (want >= 0.01 && fabs(got - want) > 0.0247 * want)
            fail_msg("%s %s over [%f, %f): %f, exact %f (beyond 2.47%%)", key, ps[i].name, a, b, got, want);
        else if (want < 0.01)
            assert_true(got < 0.01);
    }
    assert_true(fabs(jd(o, "count", NULL) - q_double("SELECT count(%s) FROM executions WHERE " W, col, a, b)) < 0.5);
}

/* Every figure of db_stats over [a, b) against the rows. Returns whether it was exact. */
static int check_range(double a, double b)
{
    json_object *st = db_stats(db, a, b);
    assert_non_null(st);
    assert_true(fabs(jd(st, "total", NULL) - q_double("SELECT count(*) FROM executions WHERE " W, a, b)) < 0.5);
    static const char *const statuses[] = {"succeeded", "failed", "timeout", "running", "queued"};
    for (size_t i = 0; i < 5; i++) {
        double want = q_double("SELECT count(*) FROM executions WHERE " W " AND status = '%s'", a, b, statuses[i]);
        double got = jd(st, "by_status", statuses[i]);
        assert_true(want == 0 ? isnan(got) : fabs(got - want) < 0.5);
    }
    double server = q_double("SELECT count(*) FROM executions WHERE " W " AND mode = 'server'", a, b);
    assert_true(server == 0 ? isnan(jd(st, "by_mode", "server")) : fabs(jd(st, "by_mode", "server") - server) < 0.5);
    assert_true(fabs(jd(st, "tokens", "in") - q_double("SELECT total(tokens_in) FROM executions WHERE " W, a, b)) < 0.5);
    assert_true(fabs(jd(st, "cost", NULL) - q_double("SELECT total(cost) FROM executions WHERE " W, a, b)) < 1e-6);
    double peak = q_double("SELECT max(peak_rss_kb) FROM executions WHERE " W, a, b);
    if (isnan(peak) ? !isnan(jd(st, "peak_rss_kb", "peak")) : jd(st, "peak_rss_kb", "peak") != peak)
        fail_msg("peak over [%f, %f): %f, rows %f", a, b, jd(st, "peak_rss_kb", "peak"), peak);
    double mean = q_double("SELECT avg(duration_ms) FROM executions WHERE " W, a, b);
    assert_true(isnan(mean) ? isnan(jd(st, "duration_ms", "mean")) : fabs(jd(st, "duration_ms", "mean") - mean) < 1e-6);
    check_pct(st, "duration_ms", "duration_ms", a, b);
    check_pct(st, "queue_wait_ms", "queue_wait_ms", a, b);
    /* The busiest: the same sessions, counts and failures, in the same order. */
    json_object *busy;
    assert_true(json_object_object_get_ex(st, "busiest_sessions", &busy));
    sqlite3_stmt *s;
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT session_id, count(*) AS n, sum(status IN ('failed','timeout','interrupted')) FROM executions"
             " WHERE " W " GROUP BY owner, session_id ORDER BY n DESC, session_id, owner LIMIT 5", a, b);
    assert_int_equal(sqlite3_prepare_v2(raw, sql, -1, &s, NULL), SQLITE_OK);
    size_t i = 0;
    for (; sqlite3_step(s) == SQLITE_ROW; i++) {
        json_object *e = json_object_array_get_idx(busy, i), *v;
        assert_non_null(e);
        assert_true(json_object_object_get_ex(e, "session_id", &v));
        assert_string_equal(json_object_get_string(v), (const char *)sqlite3_column_text(s, 0));
        assert_int_equal((long)jd(e, "executions", NULL), sqlite3_column_int64(s, 1));
        assert_int_equal((long)jd(e, "failed", NULL), sqlite3_column_int64(s, 2));
    }
    sqlite3_finalize(s);
    assert_int_equal(json_object_array_length(busy), i);
    /* Tool calls by tool and status. */
    json_object *tools;
    assert_true(json_object_object_get_ex(st, "tool_calls", &tools));
    double calls = 0;
    for (size_t k = 0; k < json_object_array_length(tools); k++)
        calls += jd(json_object_array_get_idx(tools, k), "calls", NULL);
    assert_true(fabs(calls - q_double("SELECT count(*) FROM tool_calls t JOIN executions e ON e.id = t.execution_id"
                                      " WHERE e.queued_at >= %.6f AND e.queued_at < %.6f", a, b)) < 0.5);
    double bash = q_double("SELECT count(*) FROM tool_calls t JOIN executions e ON e.id = t.execution_id WHERE"
                           " e.queued_at >= %.6f AND e.queued_at < %.6f AND t.tool = 'bash' AND t.status = 'completed'",
                           a, b);
    double got_bash = 0;
    for (size_t k = 0; k < json_object_array_length(tools); k++) {
        json_object *t = json_object_array_get_idx(tools, k), *v, *w;
        json_object_object_get_ex(t, "tool", &v);
        json_object_object_get_ex(t, "status", &w);
        if (!strcmp(json_object_get_string(v), "bash") && !strcmp(json_object_get_string(w), "completed"))
            got_bash = jd(t, "calls", NULL);
    }
    assert_true(fabs(got_bash - bash) < 0.5);
    /* By pool. */
    json_object *pools, *beta;
    assert_true(json_object_object_get_ex(st, "by_pool", &pools));
    double nb = q_double("SELECT count(*) FROM executions WHERE " W " AND pool = 'beta'", a, b);
    if (nb > 0) {
        assert_true(json_object_object_get_ex(pools, "beta", &beta));
        assert_true(fabs(jd(beta, "executions", NULL) - nb) < 0.5);
        assert_true(fabs(jd(beta, "succeeded", NULL) -
                         q_double("SELECT count(*) FROM executions WHERE " W " AND pool = 'beta' AND status = 'succeeded'",
                                  a, b)) < 0.5);
    }
    json_object *o, *ex;
    json_object_object_get_ex(st, "duration_ms", &o);
    json_object_object_get_ex(o, "exact", &ex);
    int exact = json_object_get_boolean(ex);
    json_object_put(st);
    return exact;
}

/* Ranges of every shape: all time, exact short ones, whole hours, whole days, edges everywhere. */
static void check_ranges(void)
{
    int exact = 0, approx = 0;
    assert_false(check_range(0, 4e9));                      /* all time: from the rollups */
    assert_true(check_range(T0 + 100, T0 + 3000));          /* no whole hour: exact */
    check_range(T0 + 3600, T0 + 7200);                      /* one whole hour */
    check_range(T0 + 1800, T0 + 86400 * 2 + 1800);          /* hours, two days, hours */
    check_range(T0 - 5, T0 + 86400);                        /* one day and a partial hour before */
    check_range(T0 + 86400 + 10, T0 + SPAN);               /* the tail */
    srand(7);
    for (int i = 0; i < 40; i++) {
        double a = T0 - 3600 + (double)rand() / RAND_MAX * (SPAN + 3600), b = a + (double)rand() / RAND_MAX * (i % 2 ? SPAN : 5400);
        int e = check_range(a, b);
        exact += e;
        approx += !e;
    }
    assert_true(exact > 0);
    assert_true(approx > 0);
}

static void test_rollups_match_rows(void **state)
{
    (void)state;
    /* 4,000 executions over three days: 40 sessions of 8 users, two pools, two modes, durations
     * from 0 to an hour (some NULL), some still running or queued, tool calls on a third. */
    exec_sql("BEGIN;"
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000)"
             " INSERT INTO executions (session_id, owner, mode, status, queued_at, started_at, finished_at,"
             " duration_ms, queue_wait_ms, peak_rss_kb, tokens_in, tokens_out, cost, pool)"
             " SELECT 's' || (((i * 2654435761 + 40503) % 1000003 % 40)), 'u' || (((i * 2654435761 + 81006) % 1000003 % 8)),"
             " CASE WHEN i % 3 THEN 'server' ELSE 'per-session' END,"
             " CASE WHEN i % 97 = 0 THEN 'running' WHEN i % 89 = 0 THEN 'queued' WHEN i % 11 = 0 THEN 'failed'"
             "      WHEN i % 13 = 0 THEN 'timeout' ELSE 'succeeded' END,"
             " 1700006400.0 + ((i * 2654435761 + 121509) % 1000003 % 264200) + (((i * 2654435761 + 162012) % 1000003 % 1000)) / 1000.0, NULL,"
             " 1700006405.0 + ((i * 2654435761 + 121509) % 1000003 % 264200),"
             " CASE WHEN i % 17 = 0 THEN NULL WHEN i % 5 = 0 THEN (((i * 2654435761 + 202515) % 1000003 % 100)) / 1000.0"
             "      ELSE (((i * 2654435761 + 243018) % 1000003 % 3600000)) / 10.0 END,"
             " CASE WHEN i % 19 = 0 THEN NULL ELSE (((i * 2654435761 + 283521) % 1000003 % 20000)) / 100.0 END,"
             " CASE WHEN i % 7 = 0 THEN NULL ELSE ((i * 2654435761 + 324024) % 1000003 % 900000) END, ((i * 2654435761 + 364527) % 1000003 % 5000),"
             " ((i * 2654435761 + 405030) % 1000003 % 3000), (((i * 2654435761 + 445533) % 1000003 % 100)) / 1000.0, CASE WHEN i % 4 THEN 'default' ELSE 'beta' END"
             " FROM n;"
             "INSERT INTO tool_calls (execution_id, seq, tool, status) SELECT id, 1,"
             " CASE WHEN id % 2 THEN 'bash' ELSE 'read' END, CASE WHEN id % 5 THEN 'completed' ELSE 'error' END"
             " FROM executions WHERE id % 3 = 0;"
             "COMMIT;");
    check_ranges();
    /* Rows finish, some tool calls come after their execution finished. */
    exec_sql("UPDATE executions SET status = 'succeeded', duration_ms = 1234.5, finished_at = queued_at + 2"
             " WHERE status = 'running';"
             "INSERT INTO tool_calls (execution_id, seq, tool, status) SELECT id, 2, 'bash', 'completed'"
             " FROM executions WHERE id % 10 = 1;");
    check_ranges();
    /* Retention takes the first day and a half; an operator rewrites some rows by hand. */
    long deleted = 0, more;
    do {
        assert_int_equal(db_prune(db, T0 + 1.5 * 86400, 500, &more), 0);
        deleted += more;
    } while (more > 0);
    assert_true(deleted > 1000);
    exec_sql("UPDATE executions SET status = 'failed', queue_wait_ms = 99 WHERE id % 50 = 0;"
             "DELETE FROM executions WHERE id % 333 = 0;");
    check_ranges();
    /* Nothing left over: every rollup's count is its rows' count. */
    assert_true(q_double("SELECT count(*) FROM stats_rollup WHERE n = 0") == 0);
    assert_true(q_double("SELECT total(n) FROM stats_rollup WHERE span = 86400") ==
                q_double("SELECT count(*) FROM executions WHERE status NOT IN ('queued', 'running')"));
}

/* Tool names are the agent's to choose: 3,000 of them, one execution each side of an hour's edge,
 * merged across the rows and the rollups (this took minutes while each name searched the others). */
static void test_many_tool_names(void **state)
{
    (void)state;
    exec_sql("BEGIN;"
             "INSERT INTO executions (id, session_id, owner, mode, status, queued_at, pool) VALUES"
             " (1, 's', 'u', 'server', 'succeeded', 1700006400.5 + 3600, 'default'),"
             " (2, 's', 'u', 'server', 'succeeded', 1700006400.5 + 3 * 3600 + 10, 'default');"
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)"
             " INSERT INTO tool_calls (execution_id, seq, tool, status) SELECT 1 + i % 2, i, 'tool' || i, 'completed' FROM n;"
             "INSERT INTO tool_calls (execution_id, seq, tool, status) VALUES (1, 40001, 'top', 'completed'),"
             " (1, 40002, 'top', 'completed'), (2, 40003, 'top', 'completed'), (2, 40004, 'top', 'completed'),"
             " (2, 40005, 'top', 'completed');"
             "COMMIT;");
    /* From the hour rollups for the first, the rows at the edge for the second. */
    json_object *st = db_stats(db, T0, T0 + 3 * 3600 + 20), *tools, *v;
    assert_non_null(st);
    assert_true(json_object_object_get_ex(st, "tool_calls", &tools));
    assert_int_equal(json_object_array_length(tools), 100);
    json_object *first = json_object_array_get_idx(tools, 0);
    assert_true(json_object_object_get_ex(first, "tool", &v));
    assert_string_equal(json_object_get_string(v), "top");
    assert_int_equal((long)jd(first, "calls", NULL), 5);
    json_object_put(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rollups_match_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_tool_names, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
