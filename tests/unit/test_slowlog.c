/* slowlog: the sweep's period, the input's summary (cut on a character's boundary), and its rows
 * on a real file: one per execution, newest first a page at a time, pruned with their execution. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "slowlog.h"

static void test_tick(void **state)
{
    (void)state;
    assert_int_equal(slowlog_tick_ms(0), 0); /* off: no sweep */
    assert_int_equal(slowlog_tick_ms(300), 75);
    assert_int_equal(slowlog_tick_ms(100), SLOWLOG_TICK_MIN_MS);
    assert_int_equal(slowlog_tick_ms(300000), SLOWLOG_TICK_MAX_MS);
}

static void test_summary(void **state)
{
    (void)state;
    char out[SLOWLOG_INPUT_MAX + 4], in[SLOWLOG_INPUT_MAX + 16];
    assert_null(slowlog_summary(NULL, out, sizeof out));
    assert_null(slowlog_summary("x", out, 8)); /* too small a buffer */
    assert_string_equal(slowlog_summary("{\"command\":\"make\"}", out, sizeof out), "{\"command\":\"make\"}");
    memset(in, 'a', sizeof in - 1);
    in[sizeof in - 1] = '\0';
    assert_int_equal(strlen(slowlog_summary(in, out, sizeof out)), SLOWLOG_INPUT_MAX + 3);
    assert_string_equal(out + SLOWLOG_INPUT_MAX, "...");
    /* "é" (2 bytes) straddling the bound is left out whole */
    memset(in, 'a', SLOWLOG_INPUT_MAX - 1);
    strcpy(in + SLOWLOG_INPUT_MAX - 1, "\xc3\xa9zz");
    slowlog_summary(in, out, sizeof out);
    assert_int_equal(strlen(out), SLOWLOG_INPUT_MAX - 1 + 3);
    assert_string_equal(out + SLOWLOG_INPUT_MAX - 1, "...");
}

static int64_t finished_exec(db_t *db, double at)
{
    db_session_t s = {.id = "s", .owner = "alice", .workspace = "/w/s", .created_at = 1, .last_activity = 1};
    db_session_insert(db, &s); /* the second time: already there */
    db_exec_t e = {.session_id = "s", .owner = "alice", .mode = "server", .status = EXEC_QUEUED, .prompt = "p",
                   .prompt_len = 1, .queued_at = at};
    assert_int_equal(db_exec_insert(db, &e), 0);
    e.status = EXEC_SUCCEEDED;
    e.started_at = at;
    e.finished_at = at + 1;
    assert_int_equal(db_exec_update(db, &e, 1), 0);
    return e.id;
}

static void test_rows(void **state)
{
    (void)state;
    char dir[] = "/tmp/ocpm-slow-XXXXXX", path[64], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/t.db", dir);
    db_t *db = db_open(path, 1, 1024, err, sizeof err);
    assert_non_null(db);
    int64_t old = finished_exec(db, 100), recent = finished_exec(db, 5000);
    db_slow_t r = {.execution_id = old, .owner = "alice", .session_id = "s", .pool = "default", .step = "tool",
                   .tool = "bash", .call_id = "c1", .input_summary = "{\"command\":\"make\"}", .input_bytes = 18,
                   .input_sha256 = "ab", .at = 100.5, .elapsed_ms = 500, .since_last_event_ms = 400,
                   .pending_prompts = "[{\"kind\":\"permission\",\"id\":\"per_1_1\",\"title\":\"read *\"}]"};
    assert_int_equal(db_slow_put(db, &r), 0);
    assert_int_equal(db_slow_put(db, &r), -1); /* once per execution */
    r = (db_slow_t){.execution_id = recent, .owner = "alice", .session_id = "s", .step = "waiting for model",
                    .input_bytes = -1, .at = 5000.5, .elapsed_ms = 500, .since_last_event_ms = -1};
    assert_int_equal(db_slow_put(db, &r), 0);
    int more = 1;
    json_object *a = db_slow_list(db, 0, 0, 10, SIZE_MAX, &more);
    assert_int_equal(json_object_array_length(a), 2);
    assert_int_equal(more, 0);
    json_object *first = json_object_array_get_idx(a, 0), *second = json_object_array_get_idx(a, 1);
    assert_int_equal(json_object_get_int64(json_object_object_get(first, "execution_id")), recent);
    assert_string_equal(json_object_get_string(json_object_object_get(first, "pool")), "default");
    assert_null(json_object_object_get(first, "tool"));
    assert_null(json_object_object_get(first, "since_last_event_ms"));
    json_object *p = json_object_object_get(second, "pending_prompts");
    assert_true(json_object_is_type(p, json_type_array)); /* parsed, not text */
    assert_string_equal(json_object_get_string(json_object_object_get(json_object_array_get_idx(p, 0), "id")),
                        "per_1_1");
    long long cursor = json_object_get_int64(json_object_object_get(first, "id"));
    json_object_put(a);
    a = db_slow_list(db, 0, cursor, 10, SIZE_MAX, &more); /* the next page */
    assert_int_equal(json_object_array_length(a), 1);
    json_object_put(a);
    a = db_slow_list(db, 0, 0, 1, SIZE_MAX, &more); /* a page of limit rows: perhaps more */
    assert_int_equal(json_object_array_length(a), 1);
    assert_int_equal(more, 1);
    json_object_put(a);
    a = db_slow_list(db, 0, 0, 10, 16, &more); /* a page past its bytes ends, after one row at least */
    assert_int_equal(json_object_array_length(a), 1);
    assert_int_equal(more, 1);
    json_object_put(a);
    a = db_slow_list(db, 1000, 0, 10, SIZE_MAX, &more); /* since */
    assert_int_equal(json_object_array_length(a), 1);
    json_object_put(a);
    long deleted = 0; /* retention takes the old execution and its slow row with it */
    assert_int_equal(db_prune(db, 1000, 100, &deleted), 0);
    a = db_slow_list(db, 0, 0, 10, SIZE_MAX, &more);
    assert_int_equal(json_object_array_length(a), 1);
    assert_int_equal(json_object_get_int64(json_object_object_get(json_object_array_get_idx(a, 0), "execution_id")),
                     recent);
    json_object_put(a);
    db_close(db);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tick),
        cmocka_unit_test(test_summary),
        cmocka_unit_test(test_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
