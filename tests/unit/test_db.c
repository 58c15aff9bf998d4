/* db: migrations, sessions, executions, interruption recovery, prompt hashing, on a real file. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "db.h"

static char dir[64], path[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/ocpm-db-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/t.db", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void count_cb(void *ctx, const db_session_t *s)
{
    (void)s;
    (*(int *)ctx)++;
}

static void test_lifecycle(void **state)
{
    (void)state;
    char err[256];
    db_t *db = db_open(path, 1, 8, err, sizeof err);
    assert_non_null(db);
    db_session_t s = {.id = "s1", .owner = "alice", .workspace = "/w/s1", .created_at = 1, .last_activity = 1};
    assert_int_equal(db_session_insert(db, &s), 0);
    assert_int_equal(db_session_insert(db, &s), -1); /* duplicate id */
    assert_int_equal(db_session_exists(db, "s1"), 1);
    assert_int_equal(db_session_exists(db, "s2"), 0);
    assert_int_equal(db_session_set_oc(db, "s1", "ses_abc"), 0);

    db_exec_t e = {.session_id = "s1", .owner = "alice", .mode = "per-session", .status = "queued",
                   .prompt = "abcdefgé and a long prompt", .queued_at = 100};
    e.prompt_len = strlen(e.prompt);
    assert_int_equal(db_exec_insert(db, &e), 0);
    assert_true(e.id > 0);
    e.status = "succeeded";
    e.started_at = 100.5;
    e.finished_at = 102.5;
    e.has_exit = 1;
    e.peak_rss_kb = 1234;
    e.has_usage = 1;
    e.tokens_in = 10;
    e.tokens_out = 5;
    e.answer = "the answer";
    e.answer_len = 10;
    assert_int_equal(db_exec_update(db, &e, 1), 0);
    json_object *row = db_exec_get(db, e.id, "alice");
    assert_non_null(row);
    assert_string_equal(json_object_get_string(json_object_object_get(row, "status")), "succeeded");
    assert_int_equal(json_object_get_int(json_object_object_get(row, "duration_ms")), 2000);
    assert_int_equal(json_object_get_int(json_object_object_get(row, "queue_wait_ms")), 500);
    /* The prompt was cut at 8 bytes without splitting the é (bytes 8-9); its full size is kept. */
    assert_string_equal(json_object_get_string(json_object_object_get(row, "prompt")), "abcdefg");
    assert_int_equal(json_object_get_int(json_object_object_get(row, "prompt_bytes")), (int)e.prompt_len);
    json_object_put(row);
    assert_null(db_exec_get(db, e.id, "mallory")); /* another owner sees nothing */

    db_exec_t q = {.session_id = "s1", .owner = "alice", .mode = "per-session", .status = "queued",
                   .prompt = "x", .prompt_len = 1, .queued_at = 200};
    assert_int_equal(db_exec_insert(db, &q), 0);
    db_exec_filter_t f = {.owner = "alice", .status = "queued", .limit = 10};
    json_object *list = db_exec_list(db, &f);
    assert_int_equal(json_object_array_length(list), 1);
    json_object_put(list);
    int n = 0;
    assert_int_equal(db_mark_interrupted(db, 300, &n), 0);
    assert_int_equal(n, 1);
    row = db_exec_get(db, q.id, "alice");
    assert_string_equal(json_object_get_string(json_object_object_get(row, "status")), "interrupted");
    json_object_put(row);
    assert_int_equal(db_event(db, 1, "manager_start", "test"), 0);
    assert_int_equal(db_session_delete(db, "s1", 400), 0);
    db_close(db);

    /* Reopening applies no migration twice and keeps everything. */
    db = db_open(path, 1, 8, err, sizeof err);
    assert_non_null(db);
    int live = 0;
    assert_int_equal(db_session_each(db, count_cb, &live), 0);
    assert_int_equal(live, 0); /* deleted sessions are not loaded */
    assert_int_equal(db_session_exists(db, "s1"), 1);
    f.status = NULL;
    list = db_exec_list(db, &f);
    assert_int_equal(json_object_array_length(list), 2);
    json_object_put(list);
    db_close(db);
}

static void test_hash_only(void **state)
{
    (void)state;
    char err[256], p2[160];
    snprintf(p2, sizeof p2, "%s/h.db", dir);
    db_t *db = db_open(p2, 0, 1024, err, sizeof err);
    assert_non_null(db);
    db_session_t s = {.id = "s", .owner = "u", .workspace = "/w", .created_at = 1, .last_activity = 1};
    assert_int_equal(db_session_insert(db, &s), 0);
    db_exec_t e = {.session_id = "s", .owner = "u", .mode = "per-session", .status = "queued", .prompt = "abc",
                   .prompt_len = 3, .queued_at = 1};
    assert_int_equal(db_exec_insert(db, &e), 0);
    json_object *row = db_exec_get(db, e.id, "u");
    assert_null(json_object_object_get(row, "prompt"));
    assert_string_equal(json_object_get_string(json_object_object_get(row, "prompt_sha256")),
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    json_object_put(row);
    db_close(db);
}

static void test_foreign_key_and_bad_path(void **state)
{
    (void)state;
    char err[256];
    db_t *db = db_open(path, 1, 64, err, sizeof err);
    db_exec_t e = {.session_id = "nope", .owner = "u", .mode = "per-session", .status = "queued", .prompt = "a",
                   .prompt_len = 1, .queued_at = 1};
    assert_int_equal(db_exec_insert(db, &e), -1); /* foreign keys are on */
    db_close(db);
    assert_null(db_open("/nonexistent-dir/x.db", 1, 64, err, sizeof err));
    assert_true(strlen(err) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_hash_only),
        cmocka_unit_test(test_foreign_key_and_bad_path),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
