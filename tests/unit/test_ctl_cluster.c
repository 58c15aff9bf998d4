/* Unit tests for ocpmctl --cluster's pure parts (ctl_cluster.h): the cluster file, the cursor across
 * nodes, the history merge across pages (a node missing for one page), and the stats merge (the
 * percentiles of two nodes' summed histograms equal one node's over the same executions). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "ctl_cluster.h"
#include "db.h"

static ctl_cluster_t *parse(const char *text, char *err)
{
    return ctl_cluster_parse(text, "f", err, 256);
}

static void test_file_good(void **state)
{
    (void)state;
    char err[256];
    ctl_cluster_t *cl = parse("# nodes\n\nn1 http://127.0.0.1:8081/\n  n-2\thttps://front:8080/nodes/n2//  \r\n", err);
    assert_non_null(cl);
    assert_int_equal(ctl_cluster_count(cl), 2);
    assert_string_equal(ctl_cluster_name(cl, 1), "n-2");
    assert_string_equal(ctl_cluster_url(cl, 0), "http://127.0.0.1:8081");
    assert_string_equal(ctl_cluster_url(cl, 1), "https://front:8080/nodes/n2");
    assert_int_equal(ctl_cluster_find(cl, "n-2", 3), 1);
    assert_int_equal(ctl_cluster_find(cl, "n-", 2), -1);
    ctl_cluster_free(cl);
}

static void test_file_bad(void **state)
{
    (void)state;
    static const struct {
        const char *text, *err;
    } cases[] = {
        {"N1 http://a\n", "f:1: the name must match"},
        {"-n http://a\n", "f:1: the name must match"},
        {"n- http://a\n", "f:1: the name must match"},
        {"abcdefghijabcdefghijabcdefghijabc http://a\n", "f:1: the name must match"},
        {"n1\n", "f:1: expected NAME URL"},
        {"\nn1 ftp://a\n", "f:2: the URL must start with http"},
        {"n1 http://a extra\n", "f:1: expected NAME URL and nothing after"},
        {"n1 http://a\nn1 http://b\n", "f:2: this name is taken"},
        {"n1 http://a\nn2 http://a/\n", "f:2: this URL is taken"},
        {"n1 http://\n", "f:1: the URL names no host"},
        {"n1 http://a/b?x=1\n", "f:1: the URL must be a base URL"},
        {"n1 http://u@a\n", "f:1: the URL's host part"},
        {"n1 http://a\x01b\n", "f:1: the URL holds a byte"},
        {"# nothing\n", "f: names no node"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256] = "";
        assert_null(parse(cases[i].text, err));
        if (strncmp(err, cases[i].err, strlen(cases[i].err)) != 0)
            fail_msg("case %zu: %s", i, err);
    }
    char *big = malloc(300 * 40), err[256];
    size_t off = 0;
    for (int i = 0; i < 257; i++)
        off += (size_t)sprintf(big + off, "n%d http://h%d\n", i, i);
    assert_null(parse(big, err));
    assert_non_null(strstr(err, "f:257: more than 256 nodes"));
    free(big);
}

static void test_cursor(void **state)
{
    (void)state;
    char err[256];
    ctl_cluster_t *cl = parse("n1 http://a\nn2 http://b\nn3 http://c\n", err);
    long long b[3];
    assert_int_equal(ctl_cursor_parse(cl, "n3:7,n1:123", b, err, sizeof err), 0);
    assert_true(b[0] == 123 && b[1] == 0 && b[2] == 7);
    char *s = ctl_cursor_format(cl, b);
    assert_string_equal(s, "n1:123,n2:0,n3:7"); /* every node; 0: nothing taken yet */
    free(s);
    assert_int_equal(ctl_cursor_parse(cl, "n2:0,n1:5", b, err, sizeof err), 0);
    assert_true(b[0] == 5 && b[1] == 0 && b[2] == 0);
    memset(b, 0, sizeof b);
    s = ctl_cursor_format(cl, b);
    assert_string_equal(s, "n1:0,n2:0,n3:0"); /* never "" */
    free(s);
    static const char *const bad[] = {"", "n1", "n1:", "n1:0,n1:0", "n1:0,n1:3", "n1:-3", "n1:-0", "n1:+3", "n1: 3", "n1:12x", "n9:1", "n1:1,n1:2", "n1:1,",
                                      ",n1:1", "n1:99999999999999999999", "n1:1;rm", ":5", "n1:1,n2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (ctl_cursor_parse(cl, bad[i], b, err, sizeof err) == 0)
            fail_msg("cursor \"%s\" was taken", bad[i]);
        assert_true(strncmp(err, "--cursor: ", 10) == 0);
        assert_true(b[0] == 0 && b[1] == 0 && b[2] == 0);
    }
    char *huge = malloc(100001);
    memset(huge, 'a', 100000);
    huge[100000] = '\0';
    assert_int_equal(ctl_cursor_parse(cl, huge, b, err, sizeof err), -1);
    free(huge);
    ctl_cluster_free(cl);
}

/* Node n's page of history before `before` (0: from the newest), limit rows, as /api/admin/executions
 * answers: node n holds ids 1..count[n], queued at times that interleave the nodes (some equal). */
static const long long hcount[2] = {7, 5};
static json_object *history_page(size_t n, long long before, long limit)
{
    json_object *page = json_object_new_object(), *rows = json_object_new_array();
    long long id = before ? before - 1 : hcount[n];
    for (; id >= 1 && (long)json_object_array_length(rows) < limit; id--) {
        json_object *r = json_object_new_object();
        json_object_object_add(r, "id", json_object_new_int64(id));
        json_object_object_add(r, "queued_at", json_object_new_double(n == 0 ? id * 10.0 : id * 13.0 - (id == 5 ? 15 : 0)));
        json_object_array_add(rows, r);
    }
    json_object_object_add(page, "executions", rows);
    json_object_object_add(page, "next_cursor", id >= 1 ? json_object_new_int64(id + 1) : NULL);
    return page;
}

static void test_history_pages(void **state)
{
    (void)state;
    char err[256], seen[2][16] = {{0}};
    ctl_cluster_t *cl = parse("n1 http://a\nn2 http://b\n", err);
    long long before[2] = {0, 0};
    double last = 1e18;
    int more = 1, total = 0;
    for (int page = 0; more && page < 20; page++) {
        json_object *pages[2];
        for (size_t n = 0; n < 2; n++) /* node n2 is down for the second page */
            pages[n] = n == 1 && page == 1 ? NULL : history_page(n, before[n], 3);
        long long was = before[1];
        json_object *rows = ctl_history_merge(cl, pages, 3, before, &more);
        if (page == 1)
            assert_true(before[1] == was && more);
        for (size_t i = 0; i < json_object_array_length(rows); i++) {
            json_object *r = json_object_array_get_idx(rows, i);
            int n = strcmp(json_object_get_string(json_object_object_get(r, "node")), "n2") == 0;
            long long id = json_object_get_int64(json_object_object_get(r, "id"));
            double at = json_object_get_double(json_object_object_get(r, "queued_at"));
            assert_int_equal(seen[n][id]++, 0); /* exactly once */
            if (page != 2) /* after the page without n2, its older rows come late: never skipped */
                assert_true(at <= last);
            last = at;
            total++;
        }
        json_object_put(rows);
        json_object_put(pages[0]);
        json_object_put(pages[1]);
    }
    assert_int_equal(total, 12);
    assert_false(more);
    ctl_cluster_free(cl);
}

/* next_cursor while a node's rows are still to come but nothing was taken from it: a node down, or a
 * hostile node answering an empty page (or rows it already gave) with a cursor. The cursor must not
 * be empty (it was, and a script paging until null lost that node's rows). */
static void test_history_pending(void **state)
{
    (void)state;
    char err[256], why[200];
    ctl_cluster_t *cl = parse("n1 http://a\nn2 http://b\n", err);
    json_object *empty = json_tokener_parse("{\"executions\":[],\"next_cursor\":null}"),
                *hostile = json_tokener_parse("{\"executions\":[],\"next_cursor\":5}"),
                *again = json_tokener_parse("{\"executions\":[{\"id\":9,\"queued_at\":1}],\"next_cursor\":9}");
    assert_int_equal(ctl_history_check(empty, 0, why, sizeof why), 0);
    assert_int_equal(ctl_history_check(hostile, 0, why, sizeof why), -1);
    assert_string_equal(why, "an empty page with a next_cursor");
    assert_int_equal(ctl_history_check(again, 0, why, sizeof why), 0);
    assert_int_equal(ctl_history_check(again, 9, why, sizeof why), -1); /* the same rows again */
    assert_string_equal(why, "its page does not go on from the cursor");
    for (int hostile_node = 0; hostile_node < 2; hostile_node++) {
        long long before[2] = {0, 0};
        int more = 0;
        /* n2 down, or marked by ctl_history_check: the command passes NULL for it either way */
        json_object *pages[2] = {empty, NULL};
        if (hostile_node)
            assert_int_equal(ctl_history_check(hostile, before[1], why, sizeof why), -1);
        json_object *rows = ctl_history_merge(cl, pages, 10, before, &more);
        assert_int_equal(json_object_array_length(rows), 0);
        assert_true(more);
        char *c = ctl_cursor_format(cl, before);
        assert_string_equal(c, "n1:0,n2:0");
        long long back[2] = {7, 7};
        assert_int_equal(ctl_cursor_parse(cl, c, back, err, sizeof err), 0);
        assert_true(back[0] == 0 && back[1] == 0);
        free(c);
        json_object_put(rows);
    }
    json_object_put(empty);
    json_object_put(hostile);
    json_object_put(again);
    ctl_cluster_free(cl);
}

/* Executions i in [from, to) with a step into the database at path (a fresh one). */
static void stats_db(const char *path, int from, int to, int step)
{
    char err[256], sql[1400];
    db_t *db = db_open(path, 1, 64, err, sizeof err);
    assert_non_null(db);
    db_close(db);
    sqlite3 *raw;
    assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE n(i) AS (SELECT %d UNION ALL SELECT i + %d FROM n WHERE i + %d < %d)"
             " INSERT INTO executions (session_id, owner, mode, status, queued_at, finished_at, duration_ms,"
             " queue_wait_ms, peak_rss_kb, tokens_in, tokens_out, cost, pool)"
             " SELECT 's' || (i %% 9), '', 'server', CASE WHEN i %% 7 THEN 'succeeded' ELSE 'failed' END,"
             " 1700006400.0 + (i * 7919 %% 200000), 1700006500.0 + (i * 7919 %% 200000),"
             " (i * 104729 %% 500000) / 10.0, (i * 31 %% 20000) / 100.0, 1000 + i, i %% 50, i %% 70, 0.001, 'default'"
             " FROM n",
             from, step, step, to);
    char *e = NULL;
    if (sqlite3_exec(raw, sql, NULL, NULL, &e) != SQLITE_OK)
        fail_msg("%s", e);
    sqlite3_close(raw);
}

static json_object *stats_of(const char *path)
{
    char err[256];
    db_t *db = db_open_readonly(path, err, sizeof err);
    assert_non_null(db);
    json_object *o = db_stats_opt(db, 1700006400.0, 1700006400.0 + 3 * 86400, 1);
    db_close(db);
    return o;
}

static void test_stats_merge(void **state)
{
    (void)state;
    char dir[] = "/tmp/ocpm-cluster-XXXXXX", p[3][64], err[256];
    assert_non_null(mkdtemp(dir));
    for (int i = 0; i < 3; i++)
        snprintf(p[i], sizeof p[i], "%s/%d.db", dir, i);
    stats_db(p[0], 0, 3000, 1); /* one node holding everything */
    stats_db(p[1], 0, 3000, 2); /* two nodes holding half each */
    stats_db(p[2], 1, 3000, 2);
    json_object *one = stats_of(p[0]), *docs[3] = {stats_of(p[1]), NULL, stats_of(p[2])};
    ctl_cluster_t *cl = parse("n1 http://a\nn2 http://b\nn3 http://c\n", err); /* n2 did not answer */
    json_object *m = ctl_stats_merge(cl, docs);
    static const char *const same[] = {"total", "by_status.succeeded", "by_status.failed", "tokens.in", "tokens.out",
                                       "duration_ms.p50", "duration_ms.p95", "duration_ms.p99", "duration_ms.count",
                                       "queue_wait_ms.p50", "queue_wait_ms.p99", "peak_rss_kb.peak",
                                       "by_pool.default.executions"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        json_object *a = ctl_cluster_at(one, same[i]), *b = ctl_cluster_at(m, same[i]);
        assert_non_null(a);
        assert_non_null(b);
        if (json_object_get_double(a) != json_object_get_double(b))
            fail_msg("%s: one node %s, merged %s", same[i], json_object_get_string(a), json_object_get_string(b));
    }
    double ma = json_object_get_double(ctl_cluster_at(one, "duration_ms.mean")),
           mb = json_object_get_double(ctl_cluster_at(m, "duration_ms.mean"));
    assert_true(ma - mb < 1e-6 && mb - ma < 1e-6);
    assert_false(json_object_get_boolean(ctl_cluster_at(m, "duration_ms.exact")));
    assert_true(json_object_get_double(ctl_cluster_at(m, "duration_ms.max_relative_error")) > 0.02);
    json_object *busy = ctl_cluster_at(m, "busiest_sessions");
    assert_int_equal(json_object_array_length(busy), 5);
    assert_non_null(ctl_cluster_at(json_object_array_get_idx(busy, 0), "node"));
    assert_int_equal(json_object_object_length(ctl_cluster_at(m, "skipped")), 0); /* honest nodes */
    json_object_put(m);
    json_object_put(one);
    json_object_put(docs[0]);
    json_object_put(docs[2]);
    ctl_cluster_free(cl);
    for (int i = 0; i < 3; i++)
        unlink(p[i]);
    rmdir(dir);
}

/* A hostile node's /api/stats: a 600-byte tool name (it once cut the key's separator away: a crash),
 * negative, huge, fractional, NaN and string values, rows of the wrong type; each is left out and
 * counted under its node, the good node's figures stand. */
static void test_stats_hostile(void **state)
{
    (void)state;
    char err[256], why[200], longname[601], *text;
    memset(longname, 't', 600);
    longname[600] = '\0';
    ctl_cluster_t *cl = parse("n1 http://a\nn2 http://b\n", err);
    const char *good = "{\"total\":3,\"cost\":0.5,\"by_status\":{\"succeeded\":3},\"tool_calls\":"
                       "[{\"tool\":\"bash\",\"status\":\"completed\",\"calls\":4}],\"busiest_sessions\":"
                       "[{\"session_id\":\"s\",\"executions\":3,\"failed\":0,\"mean_ms\":1.5,\"owner\":null}]}";
    assert_true(asprintf(&text,
                         "{\"total\":-5,\"cost\":NaN,\"since\":\"x\",\"by_status\":{\"succeeded\":1e300,\"failed\":-1,"
                         "\"x\":2},\"by_mode\":[1],\"tokens\":{\"in\":9223372036854775807},\"peak_rss_kb\":{\"peak\":-7},"
                         "\"tool_calls\":[{\"tool\":\"%s\",\"status\":\"completed\",\"calls\":1},"
                         "{\"tool\":\"bash\",\"status\":\"%s\",\"calls\":1},{\"tool\":\"bash\",\"status\":\"completed\","
                         "\"calls\":-3},{\"tool\":7,\"status\":\"x\",\"calls\":1},{\"tool\":\"bash\",\"status\":"
                         "\"completed\",\"calls\":2},3,{\"tool\":\"a\\u0000b\",\"status\":\"x\",\"calls\":1}],"
                         "\"busiest_sessions\":[{\"session_id\":\"%s\",\"executions\":99},{\"session_id\":\"h\","
                         "\"executions\":\"99\"},{\"session_id\":\"k\",\"executions\":1}],"
                         "\"by_pool\":{\"p\":{\"executions\":-1},\"q\":{\"executions\":2,\"cost\":0.25},\"r\":{\"cost\":Infinity}}}",
                         longname, longname, longname) > 0);
    json_object *docs[2] = {json_tokener_parse(good), json_tokener_parse(text)};
    assert_non_null(docs[0]);
    assert_non_null(docs[1]);
    json_object *m = ctl_stats_merge(cl, docs);
    assert_non_null(m);
    assert_int_equal(json_object_get_int64(ctl_cluster_at(m, "total")), 3);
    assert_true(json_object_get_double(ctl_cluster_at(m, "cost")) == 0.5);
    assert_int_equal(json_object_get_int64(ctl_cluster_at(m, "by_status.succeeded")), 3);
    assert_int_equal(json_object_get_int64(ctl_cluster_at(m, "by_status.x")), 2);
    assert_null(ctl_cluster_at(m, "by_status.failed"));
    assert_null(ctl_cluster_at(m, "tokens.in")); /* above CTL_STATS_COUNT_MAX */
    assert_null(ctl_cluster_at(m, "peak_rss_kb.peak"));
    json_object *tools = ctl_cluster_at(m, "tool_calls");
    assert_int_equal(json_object_array_length(tools), 1);
    assert_int_equal(json_object_get_int64(ctl_cluster_at(json_object_array_get_idx(tools, 0), "calls")), 6);
    json_object *busy = ctl_cluster_at(m, "busiest_sessions");
    assert_int_equal(json_object_array_length(busy), 2);
    assert_string_equal(json_object_get_string(ctl_cluster_at(json_object_array_get_idx(busy, 0), "session_id")), "s");
    assert_int_equal(json_object_get_int64(ctl_cluster_at(m, "by_pool.q.executions")), 2);
    assert_null(ctl_cluster_at(m, "by_pool.p"));
    assert_null(ctl_cluster_at(m, "by_pool.r"));
    assert_null(ctl_cluster_at(m, "skipped.n1"));
    /* total, cost, since, succeeded, failed, by_mode, tokens.in, peak, 6 tool rows, 2 sessions, 2 pools */
    assert_int_equal(json_object_get_int64(ctl_cluster_at(m, "skipped.n2")), 18);
    json_object_put(m);
    assert_int_equal(ctl_stats_check(docs[1], why, sizeof why), -1);
    assert_non_null(strstr(why, "no histograms"));
    static const char *const hists[][2] = {
        {"{\"scheme\":{\"buckets\":480,\"first_ms\":0.01,\"ratio\":1.05},\"duration_ms\":{\"count\":2,\"sum\":3,"
         "\"buckets\":[[1,1],[479,1]]},\"queue_wait_ms\":{\"count\":0,\"sum\":0,\"buckets\":[]},"
         "\"peak_rss_kb\":{\"count\":0,\"sum\":0}}", ""},
        {"{\"scheme\":{\"buckets\":100,\"first_ms\":0.01,\"ratio\":1.05},\"duration_ms\":{\"count\":0,\"sum\":0,"
         "\"buckets\":[]}}", "another bucket scheme"},
        {"{\"scheme\":{\"buckets\":480,\"first_ms\":0.01,\"ratio\":1.1},\"duration_ms\":{\"count\":0,\"sum\":0,"
         "\"buckets\":[]}}", "another bucket scheme"},
        {"{\"scheme\":{\"buckets\":480,\"first_ms\":0.01,\"ratio\":1.05},\"duration_ms\":{\"count\":1,\"sum\":1,"
         "\"buckets\":[[480,1]]}}", "bad bucket"},
        {"{\"scheme\":{\"buckets\":480,\"first_ms\":0.01,\"ratio\":1.05},\"duration_ms\":{\"count\":1,\"sum\":1,"
         "\"buckets\":[[-1,1]]}}", "bad bucket"},
        {"{\"scheme\":{\"buckets\":480,\"first_ms\":0.01,\"ratio\":1.05},\"duration_ms\":{\"count\":2,\"sum\":1,"
         "\"buckets\":[[3,1],[3,1]]}}", "bad bucket"},
        {"{\"scheme\":{\"buckets\":480,\"first_ms\":0.01,\"ratio\":1.05},\"duration_ms\":{\"count\":5,\"sum\":1,"
         "\"buckets\":[[3,1]]}}", "holds 1 values, not its count 5"},
        {"{\"scheme\":{\"buckets\":480,\"first_ms\":0.01,\"ratio\":1.05},\"duration_ms\":{\"count\":1,\"sum\":NaN,"
         "\"buckets\":[[3,1]]}}", "no valid count"},
        {"{\"scheme\":{\"buckets\":480,\"first_ms\":0.01,\"ratio\":1.05},\"duration_ms\":{\"count\":1,\"sum\":1,"
         "\"buckets\":[[3,1]]},\"queue_wait_ms\":{\"count\":1,\"sum\":1,\"buckets\":[[2.5,1]]}}", "bad bucket"},
    };
    for (size_t i = 0; i < sizeof hists / sizeof hists[0]; i++) {
        json_object *d = json_object_new_object();
        json_object_object_add(d, "histograms", json_tokener_parse(hists[i][0]));
        assert_non_null(ctl_cluster_at(d, "histograms"));
        int rc = ctl_stats_check(d, why, sizeof why);
        if (*hists[i][1] ? rc == 0 || !strstr(why, hists[i][1]) : rc != 0)
            fail_msg("histograms %zu: rc %d, %s", i, rc, rc ? why : "");
        json_object_put(d);
    }
    json_object_put(docs[0]);
    json_object_put(docs[1]);
    free(text);
    ctl_cluster_free(cl);
}

/* A page of sessions: n rows named from first, and next_cursor (NULL: none). */
static json_object *sessions_page(int first, int n, const char *next)
{
    json_object *page = json_object_new_object(), *rows = json_object_new_array();
    for (int i = 0; i < n; i++) {
        json_object *r = json_object_new_object();
        char id[32];
        snprintf(id, sizeof id, "s%07d", first + i);
        json_object_object_add(r, "id", json_object_new_string(id));
        json_object_array_add(rows, r);
    }
    json_object_object_add(page, "sessions", rows);
    json_object_object_add(page, "next_cursor", next ? json_object_new_string(next) : NULL);
    return page;
}

/* Feeds page to p; returns ctl_sessions_take's answer. */
static int take(ctl_pager_t *p, json_object *page, ctl_budget_t *b, char *why)
{
    int rc = ctl_sessions_take(p, page, 100, "n1", b, why, 200);
    json_object_put(page);
    return rc;
}

/* A hostile node paging sessions: without end (it grew ocpmctl to gigabytes), an empty page with a
 * cursor (an endless loop), a cursor that stays or goes back, more rows than asked. Each stops. */
static void test_sessions_hostile(void **state)
{
    (void)state;
    char why[200];
    ctl_budget_t b = {.rows = CTL_SESSIONS_MAX, .bytes = CTL_SESSIONS_BYTES_MAX};
    ctl_pager_t p = {.rows = json_object_new_array(), .left = 5, .asked = 2};
    assert_int_equal(take(&p, sessions_page(0, 2, "/s0000001"), &b, why), 1); /* --limit 5 */
    assert_string_equal(p.after, "/s0000001");
    assert_int_equal(p.asked, 3); /* min(left, CTL_SESSIONS_PAGE) */
    assert_int_equal(take(&p, sessions_page(2, 2, "/s0000003"), &b, why), 1);
    assert_int_equal(p.asked, 1);
    assert_int_equal(take(&p, sessions_page(4, 1, "/s0000004"), &b, why), 0); /* the limit: done */
    assert_int_equal(json_object_array_length(p.rows), 5);
    assert_string_equal(json_object_get_string(ctl_cluster_at(json_object_array_get_idx(p.rows, 4), "node")), "n1");
    assert_true(b.rows == CTL_SESSIONS_MAX - 5 && b.bytes == CTL_SESSIONS_BYTES_MAX - 300);
    json_object_put(p.rows);
    static const struct {
        const char *after; /* the cursor before */
        int n;
        const char *next, *why;
    } bad[] = {
        {"", 0, "/x", "an empty page with a next_cursor"},
        {"/s1", 1, "/s1", "does not advance"},
        {"/s1", 1, "/s0", "does not advance"},
        {"b/s1", 1, "a/s9", "does not advance"},
        {"a/s", 1, "a/", "does not advance"},
        {"", 1, "nocursor", "does not advance"},
        {"", 3, NULL, "more than the 2 asked"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = (ctl_pager_t){.rows = json_object_new_array(), .left = 10, .asked = 2};
        snprintf(p.after, sizeof p.after, "%s", bad[i].after);
        if (take(&p, sessions_page(0, bad[i].n, bad[i].next), &b, why) != -1 || !strstr(why, bad[i].why))
            fail_msg("case %zu: %s", i, why);
        json_object_put(p.rows);
    }
    p = (ctl_pager_t){.rows = json_object_new_array(), .left = 10, .asked = 2};
    json_object *odd = json_tokener_parse("{\"sessions\":[],\"next_cursor\":5}");
    assert_int_equal(take(&p, odd, &b, why), -1);
    assert_string_equal(why, "its answer holds no sessions");
    snprintf(p.after, sizeof p.after, "a/z");
    /* by (owner, id), not the cursor's bytes: owner "a" < "a-b", though '-' < '/' */
    assert_int_equal(take(&p, sessions_page(0, 1, "a-b/a"), &b, why), 1);
    assert_int_equal(take(&p, sessions_page(0, 1, "a/zz"), &b, why), -1);
    json_object_put(p.rows);
    /* Without end: a node always has a next page. Capped (no --limit), it is marked at the bound of
     * rows per node; the bound in all stops every node; so does the bound of bytes. */
    ctl_budget_t small = {.rows = 2500, .bytes = CTL_SESSIONS_BYTES_MAX};
    p = (ctl_pager_t){.rows = json_object_new_array(), .left = CTL_SESSIONS_MAX, .asked = 1000, .capped = 1};
    int rc, pages = 0;
    char next[32];
    do {
        snprintf(next, sizeof next, "/s%07d", pages * 1000 + 999);
        rc = take(&p, sessions_page(pages * 1000, 1000, next), &small, why);
        pages++;
    } while (rc == 1 && pages < 100);
    assert_int_equal(rc, -1);
    assert_int_equal(pages, 3);
    assert_non_null(strstr(why, "stopped: more than 1000000 sessions or 256 MB in all"));
    json_object_put(p.rows);
    p = (ctl_pager_t){.rows = json_object_new_array(), .left = 3, .asked = 3, .capped = 1};
    assert_int_equal(take(&p, sessions_page(0, 3, "/s0000002"), &b, why), -1);
    assert_string_equal(why, "it has more than 1000000 sessions (see --limit)");
    json_object_put(p.rows);
    p = (ctl_pager_t){.rows = json_object_new_array(), .left = 3, .asked = 3};
    small = (ctl_budget_t){.rows = 100, .bytes = 99};
    assert_int_equal(take(&p, sessions_page(0, 1, NULL), &small, why), -1);
    json_object_put(p.rows);
}

/* What fd (1 or 2) got while print ran, NUL-terminated (static). */
static const char *captured(int fd, void (*print)(json_object *), json_object *arg)
{
    static char buf[4096];
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(fd == 1 ? stdout : stderr);
    int saved = dup(fd);
    dup2(fileno(tmp), fd);
    print(arg);
    fflush(fd == 1 ? stdout : stderr);
    dup2(saved, fd);
    close(saved);
    rewind(tmp);
    size_t n = fread(buf, 1, sizeof buf - 1, tmp);
    buf[n] = '\0';
    fclose(tmp);
    return buf;
}

static void print_fail(json_object *o)
{
    ctl_fail("node n2 (http://b): HTTP 500: %s", json_object_get_string(o));
}

static void print_table(json_object *o)
{
    static const char *const cols[] = {"node", "error", NULL};
    ctl_print_table(o, cols);
}

static void print_pairs(json_object *o)
{
    ctl_print_pairs(o, "");
}

/* No byte a terminal would act on: C0 controls but the line ends, DEL, a UTF-8 C1 control. */
static void assert_inert(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p < 0x20 && *p != '\n') || *p == 0x7f || (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f))
            fail_msg("byte 0x%02x at %zu of \"%s\"", *p, (size_t)(p - (const unsigned char *)s), s);
}

/* A node's text (an error message, a name, a tool) with terminal escapes, printed in table mode and
 * in error lines: every control character replaced. */
static void test_print_escapes(void **state)
{
    (void)state;
    const char *evil = "\x1b]0;owned\x07\x1b[2J\r\x7f\xc2\x9b" "31mred\nnext line";
    json_object *msg = json_object_new_string(evil);
    const char *out = captured(2, print_fail, msg);
    assert_inert(out);
    assert_non_null(strstr(out, "ocpmctl: node n2 (http://b): HTTP 500: ?]0;owned??[2J????31mred next line\n"));
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out)); /* one line */
    json_object *rows = json_object_new_array(), *row = json_object_new_object();
    json_object_object_add(row, "node", json_object_new_string("n2"));
    json_object_object_add(row, "error", json_object_get(msg));
    json_object_array_add(rows, row);
    assert_inert(captured(1, print_table, rows));
    json_object *pairs = json_object_new_object(), *tool = json_object_new_object(), *arr = json_object_new_array();
    json_object_object_add(tool, "tool", json_object_get(msg));
    json_object_array_add(arr, tool);
    json_object_object_add(pairs, "tool_calls", arr);
    json_object_object_add(pairs, evil, json_object_get(msg));
    assert_inert(captured(1, print_pairs, pairs));
    char text[] = "a\x1b" "b\xc2\x85" "c\xc3\xa9";
    assert_string_equal(ctl_text_clean(text), "a?b??c\xc3\xa9"); /* é stays */
    json_object_put(pairs);
    json_object_put(rows);
    json_object_put(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_good),     cmocka_unit_test(test_file_bad),   cmocka_unit_test(test_cursor),
        cmocka_unit_test(test_history_pages), cmocka_unit_test(test_history_pending), cmocka_unit_test(test_stats_merge),
        cmocka_unit_test(test_stats_hostile), cmocka_unit_test(test_print_escapes),
        cmocka_unit_test(test_sessions_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
