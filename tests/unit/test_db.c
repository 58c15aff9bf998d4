/* db: migrations, sessions, executions, interruption recovery, prompt hashing, failure classes, a
 * removed file restored from the open connection, on real files. */
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
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>

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
    /* Ids are per owner: bob may have an s1 of his own, and alice's tells him nothing. */
    db_session_t b = {.id = "s1", .owner = "bob", .workspace = "/w/bob/s1", .created_at = 1, .last_activity = 1};
    assert_int_equal(db_session_insert(db, &b), 0);
    assert_int_equal(db_session_exists(db, "alice", "s1"), 1);
    assert_int_equal(db_session_exists(db, "alice", "s2"), 0);
    assert_int_equal(db_session_exists(db, "carol", "s1"), 0);
    assert_int_equal(db_session_set_oc(db, "alice", "s1", "ses_abc"), 0);

    db_exec_t e = {.session_id = "s1", .owner = "alice", .mode = "per-session", .status = EXEC_QUEUED,
                   .prompt = "abcdefgé and a long prompt", .queued_at = 100};
    e.prompt_len = strlen(e.prompt);
    assert_int_equal(db_exec_insert(db, &e), 0);
    assert_true(e.id > 0);
    e.status = EXEC_SUCCEEDED;
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
    /* The answer built from memory is the row as stored, field for field. */
    json_object *mem = db_exec_json(db, &e);
    json_object_object_foreach(row, key, val)
    {
        json_object *mv = json_object_object_get(mem, key);
        if (!json_object_equal(val, mv))
            fail_msg("column %s: stored %s, from memory %s", key, json_object_to_json_string(val),
                     json_object_to_json_string(mv));
    }
    assert_int_equal(json_object_object_length(mem), json_object_object_length(row));
    json_object_put(mem);
    json_object_put(row);
    assert_null(db_exec_get(db, e.id, "mallory")); /* another owner sees nothing */

    db_exec_t q = {.session_id = "s1", .owner = "alice", .mode = "per-session", .status = EXEC_QUEUED,
                   .prompt = "x", .prompt_len = 1, .queued_at = 200};
    assert_int_equal(db_exec_insert(db, &q), 0);
    db_exec_filter_t f = {.owner = "alice", .status = "queued", .limit = 10};
    int more = -1;
    json_object *list = db_exec_list(db, &f, &more);
    assert_int_equal(json_object_array_length(list), 1);
    assert_int_equal(more, 0);
    json_object_put(list);
    int n = 0;
    assert_int_equal(db_mark_interrupted(db, 300, &n), 0);
    assert_int_equal(n, 1);
    row = db_exec_get(db, q.id, "alice");
    assert_string_equal(json_object_get_string(json_object_object_get(row, "status")), "interrupted");
    json_object_put(row);
    assert_int_equal(db_event(db, 1, "manager_start", "test"), 0);
    assert_int_equal(db_session_delete(db, "alice", "s1", 400), 0);
    assert_int_equal(db_session_delete(db, "bob", "s1", 400), 0);
    db_close(db);

    /* Reopening applies no migration twice and keeps everything. */
    db = db_open(path, 1, 8, err, sizeof err);
    assert_non_null(db);
    int live = 0;
    assert_int_equal(db_session_each(db, count_cb, &live), 0);
    assert_int_equal(live, 0); /* deleted sessions are not loaded */
    assert_int_equal(db_session_exists(db, "alice", "s1"), 1);
    f.status = NULL;
    list = db_exec_list(db, &f, NULL);
    assert_int_equal(json_object_array_length(list), 2);
    json_object_put(list);
    /* A page bounded by bytes ends early (never before its first row) and says more follow. */
    f.max_bytes = 1;
    list = db_exec_list(db, &f, &more);
    assert_int_equal(json_object_array_length(list), 1);
    assert_int_equal(more, 1);
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
    db_exec_t e = {.session_id = "s", .owner = "u", .mode = "per-session", .status = EXEC_QUEUED, .prompt = "abc",
                   .prompt_len = 3, .queued_at = 1};
    assert_int_equal(db_exec_insert(db, &e), 0);
    json_object *row = db_exec_get(db, e.id, "u");
    assert_null(json_object_object_get(row, "prompt"));
    assert_string_equal(json_object_get_string(json_object_object_get(row, "prompt_sha256")),
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    json_object_put(row);
    db_close(db);
}

static void usage_cb(void *ctx, const char *owner, long long tokens, double cost)
{
    (void)owner;
    (void)cost;
    *(long long *)ctx = tokens;
}

/* Today's usage is read back at start: counts the agent forged as large as a row holds must not make
 * the sum fail (SQLite's sum() would, with an overflow, and the manager's start with it). */
static void test_usage_never_overflows(void **state)
{
    (void)state;
    char err[256], p2[160];
    snprintf(p2, sizeof p2, "%s/u.db", dir);
    db_t *db = db_open(p2, 1, 1024, err, sizeof err);
    assert_non_null(db);
    db_session_t s = {.id = "s", .owner = "u", .workspace = "/w", .created_at = 1, .last_activity = 1};
    assert_int_equal(db_session_insert(db, &s), 0);
    for (int i = 0; i < 2; i++) {
        db_exec_t e = {.session_id = "s", .owner = "u", .mode = "per-session", .status = EXEC_QUEUED, .prompt = "x",
                       .prompt_len = 1, .queued_at = 100};
        assert_int_equal(db_exec_insert(db, &e), 0);
        e.status = EXEC_SUCCEEDED;
        e.started_at = 100;
        e.finished_at = 101;
        e.has_usage = 1;
        e.tokens_in = e.tokens_out = INT64_MAX;
        e.cost = 1e300;
        assert_int_equal(db_exec_update(db, &e, 1), 0);
    }
    long long tokens = 0;
    assert_int_equal(db_usage_since(db, 50, usage_cb, &tokens), 0);
    assert_true(tokens > 0 && tokens <= 1000000000000000LL);
    /* Retention takes executions with their tool calls and events, and old webhook deliveries. */
    db_tool_t tool = {.tool = "bash", .call_id = "c1", .status = "completed", .input_bytes = 1, .output_bytes = -1};
    db_event_t ev = {.seq = 1, .type = "started", .data = "{}"};
    assert_int_equal(db_turn_store(db, 1, &tool, 1, &ev, 1), 0);
    db_webhook_t hook = {.delivery = "d1", .event = "execution.finished", .execution_id = 1, .delivered = 1,
                         .attempts = 1, .http_status = 204, .created_at = 101, .finished_at = 101};
    assert_int_equal(db_webhook_record(db, &hook), 0);
    long deleted = 0;
    assert_int_equal(db_prune(db, 1000, 100, &deleted), 0);
    assert_int_equal(deleted, 3); /* two executions, one delivery */
    json_object *tools = db_tool_list(db, 1);
    assert_int_equal(json_object_array_length(tools), 0);
    json_object_put(tools);
    db_close(db);
}

static void test_foreign_key_and_bad_path(void **state)
{
    (void)state;
    char err[256];
    db_t *db = db_open(path, 1, 64, err, sizeof err);
    db_exec_t e = {.session_id = "nope", .owner = "u", .mode = "per-session", .status = EXEC_QUEUED, .prompt = "a",
                   .prompt_len = 1, .queued_at = 1};
    assert_int_equal(db_exec_insert(db, &e), -1); /* foreign keys are on */
    db_close(db);
    assert_null(db_open("/nonexistent-dir/x.db", 1, 64, err, sizeof err));
    assert_true(strlen(err) > 0);
}

/* Another connection holding the write lock makes writes fail as busy once the busy timeout has
 * passed; the reason survives the ROLLBACK that follows; writes work again after it lets go. */
static void test_busy_fault(void **state)
{
    (void)state;
    char err[256], p2[160];
    snprintf(p2, sizeof p2, "%s/b.db", dir);
    db_t *db = db_open(p2, 1, 64, err, sizeof err);
    assert_non_null(db);
    db_set_busy_timeout(db, 10);
    db_session_t s = {.id = "s", .owner = "u", .workspace = "/w", .created_at = 1, .last_activity = 1};
    assert_int_equal(db_session_insert(db, &s), 0);
    db_exec_t e = {.session_id = "s", .owner = "u", .mode = "per-session", .status = EXEC_QUEUED, .prompt = "a",
                   .prompt_len = 1, .queued_at = 1};
    assert_int_equal(db_exec_insert(db, &e), 0);
    assert_int_equal(db_fault(db), DB_FAULT_NONE);
    sqlite3 *op;
    assert_int_equal(sqlite3_open(p2, &op), SQLITE_OK);
    assert_int_equal(sqlite3_exec(op, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    e.status = EXEC_SUCCEEDED;
    e.finished_at = 2;
    assert_int_equal(db_exec_update(db, &e, 1), -1);
    assert_int_equal(db_fault(db), DB_FAULT_BUSY);
    assert_non_null(strstr(db_errmsg(db), "locked"));
    db_session_t s2 = {.id = "s2", .owner = "u", .workspace = "/w2", .created_at = 1, .last_activity = 1};
    assert_int_equal(db_session_insert(db, &s2), -1);
    assert_int_equal(db_fault(db), DB_FAULT_BUSY);
    assert_int_equal(sqlite3_exec(op, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(op);
    assert_int_equal(db_exec_update(db, &e, 1), 0);
    assert_int_equal(db_fault(db), DB_FAULT_NONE);
    db_close(db);
}

static long count_rows(const char *file, const char *sql)
{
    sqlite3 *h;
    sqlite3_stmt *st;
    long n = -1;
    if (sqlite3_open_v2(file, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(h);
    return n;
}

/* The file removed under an open connection (with its -wal and -shm) is noticed and copied back
 * with every committed row; a file that took its name is reported as a replacement. */
static void test_removed_and_restored(void **state)
{
    (void)state;
    char err[256], p2[160], side[180];
    snprintf(p2, sizeof p2, "%s/r.db", dir);
    db_t *db = db_open(p2, 1, 64, err, sizeof err);
    assert_non_null(db);
    db_session_t s = {.id = "s", .owner = "u", .workspace = "/w", .created_at = 1, .last_activity = 1};
    assert_int_equal(db_session_insert(db, &s), 0);
    for (int i = 0; i < 3; i++) {
        db_exec_t e = {.session_id = "s", .owner = "u", .mode = "per-session", .status = EXEC_QUEUED,
                       .prompt = "a", .prompt_len = 1, .queued_at = 1};
        assert_int_equal(db_exec_insert(db, &e), 0);
    }
    assert_int_equal(db_moved(db), DB_IN_PLACE);
    unlink(p2);
    snprintf(side, sizeof side, "%s-wal", p2);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", p2);
    unlink(side);
    assert_int_equal(db_moved(db), DB_GONE);
    assert_int_equal(db_restore(db, err, sizeof err), 0);
    assert_int_equal(db_moved(db), DB_IN_PLACE);
    assert_int_equal(count_rows(p2, "SELECT count(*) FROM executions"), 3);
    db_exec_t e = {.session_id = "s", .owner = "u", .mode = "per-session", .status = EXEC_QUEUED, .prompt = "b",
                   .prompt_len = 1, .queued_at = 2};
    assert_int_equal(db_exec_insert(db, &e), 0); /* and it writes to the restored file */
    assert_int_equal(count_rows(p2, "SELECT count(*) FROM executions"), 4);
    /* Another file under the name is not ours to overwrite. */
    char moved[180];
    snprintf(moved, sizeof moved, "%s/elsewhere.db", dir);
    assert_int_equal(rename(p2, moved), 0);
    FILE *f = fopen(p2, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(db_moved(db), DB_REPLACED);
    db_close(db);
}

/* SQLite opens a file it may not write read-only; db_open refuses it instead. As root (which writes
 * read-only files anyway) the open is tried in a child that became nobody. */
static int open_refused(const char *file)
{
    char err[256];
    db_t *db = db_open(file, 1, 64, err, sizeof err);
    if (db) {
        db_close(db);
        return 0;
    }
    return strstr(err, "read-only") != NULL;
}

static void test_read_only_refused(void **state)
{
    (void)state;
    char err[256], p2[160];
    snprintf(p2, sizeof p2, "%s/ro.db", dir);
    db_t *db = db_open(p2, 1, 64, err, sizeof err);
    assert_non_null(db);
    db_close(db);
    assert_int_equal(chmod(p2, 0444), 0);
    if (geteuid() != 0) {
        assert_true(open_refused(p2));
        return;
    }
    assert_int_equal(chmod(dir, 0755), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(setgid(65534) == 0 && setuid(65534) == 0 && open_refused(p2) ? 0 : 1);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_hash_only),
        cmocka_unit_test(test_usage_never_overflows),
        cmocka_unit_test(test_foreign_key_and_bad_path),
        cmocka_unit_test(test_busy_fault),
        cmocka_unit_test(test_removed_and_restored),
        cmocka_unit_test(test_read_only_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
