/* turn: tool calls read from both backends' events (one record per call id, its last state
 * winning), changes from opencode's summary, event ids and the bounds on what is kept. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "turn.h"

static turn_t *new_turn(long max_events, long max_bytes, long max_input, int store)
{
    turn_limits_t lim = {.max_events = max_events, .max_event_bytes = max_bytes, .max_input_bytes = max_input,
                         .store_prompts = store};
    turn_t *t = turn_new(&lim);
    assert_non_null(t);
    return t;
}

static void observe(turn_t *t, const char *type, const char *json)
{
    json_object *o = json_tokener_parse(json);
    assert_non_null(o);
    turn_observe(t, type, o);
    json_object_put(o);
}

static const char *field(json_object *tools, size_t i, const char *key)
{
    json_object *v = json_object_object_get(json_object_array_get_idx(tools, i), key);
    return v ? json_object_get_string(v) : NULL;
}

static void test_tool_calls_from_both_shapes(void **state)
{
    (void)state;
    turn_t *t = new_turn(100, 1 << 20, 1024, 1);
    /* opencode run: a tool_use line; a server: the same part, updated as it goes. */
    observe(t, "tool_use", "{\"part\":{\"type\":\"tool\",\"tool\":\"bash\",\"callID\":\"c1\",\"state\":{\"status\":"
                           "\"completed\",\"input\":{\"command\":\"ls\"},\"output\":\"abc\",\"time\":{\"start\":1000,"
                           "\"end\":1250}}}}");
    observe(t, "message.part.updated", "{\"part\":{\"type\":\"tool\",\"tool\":\"read\",\"callID\":\"c2\",\"state\":"
                                       "{\"status\":\"running\",\"input\":{\"filePath\":\"/etc/x\"}}}}");
    observe(t, "message.part.updated", "{\"part\":{\"type\":\"text\",\"text\":\"not a tool\"}}");
    observe(t, "message.part.updated", "{\"part\":{\"type\":\"tool\",\"tool\":\"read\",\"callID\":\"c2\",\"state\":"
                                       "{\"status\":\"error\",\"input\":{\"filePath\":\"/etc/x\"},\"error\":\"no\"}}}");
    observe(t, "message.part.updated", "{\"part\":{\"type\":\"tool\",\"tool\":\"gr\\\"ep\",\"callID\":\"c3\","
                                       "\"state\":{\"status\":\"running\",\"input\":{}}}}");
    json_object *tools = turn_tools_json(t);
    assert_int_equal(json_object_array_length(tools), 3);
    assert_string_equal(field(tools, 0, "tool"), "bash");
    assert_string_equal(field(tools, 0, "status"), "completed");
    assert_string_equal(field(tools, 0, "outputBytes"), "3");
    assert_string_equal(field(tools, 0, "durationMs"), "250.0");
    assert_string_equal(field(tools, 1, "status"), "error"); /* the last state wins */
    assert_string_equal(field(tools, 1, "error"), "no");
    /* A name that could break a label or a log is replaced; a call the turn left running is an error. */
    assert_string_equal(field(tools, 2, "tool"), "invalid-name");
    assert_string_equal(field(tools, 2, "status"), "error");
    assert_string_equal(field(tools, 2, "error"), "the turn ended before the tool finished");
    assert_string_equal(turn_tool_name(t, "c2"), "read");
    assert_null(turn_tool_name(t, "nope"));
    json_object_put(tools);
    turn_free(t);
}

static void test_inputs_kept_or_digested(void **state)
{
    (void)state;
    const char *ev = "{\"part\":{\"type\":\"tool\",\"tool\":\"bash\",\"callID\":\"c1\",\"state\":{\"status\":"
                     "\"completed\",\"input\":{\"command\":\"echo secret\"}}}}";
    for (int store = 0; store < 2; store++) {
        turn_t *t = new_turn(100, 1 << 20, 1024, store);
        observe(t, "tool_use", ev);
        json_object *tools = turn_tools_json(t);
        if (store)
            assert_string_equal(field(tools, 0, "input"), "{ \"command\": \"echo secret\" }");
        else
            assert_null(field(tools, 0, "input"));
        assert_string_equal(field(tools, 0, "inputBytes"), "25");
        assert_int_equal(strlen(field(tools, 0, "inputSha256")), 64);
        json_object_put(tools);
        turn_free(t);
    }
    turn_t *t = new_turn(100, 1 << 20, 10, 1); /* larger than tool_input_max_bytes: digest only */
    observe(t, "tool_use", ev);
    json_object *tools = turn_tools_json(t);
    assert_null(field(tools, 0, "input"));
    json_object_put(tools);
    turn_free(t);
}

static void test_changes_from_the_summary(void **state)
{
    (void)state;
    turn_t *t = new_turn(100, 1 << 20, 1024, 1);
    long long c[3];
    assert_int_equal(turn_changes(t, c), 0);
    observe(t, "message.updated", "{\"info\":{\"role\":\"assistant\",\"summary\":{\"diffs\":[{}]}}}");
    assert_int_equal(turn_changes(t, c), 0); /* only the user message carries the turn's summary */
    observe(t, "message.updated", "{\"info\":{\"role\":\"user\",\"summary\":{\"diffs\":[{\"additions\":3,"
                                  "\"deletions\":1},{\"additions\":2,\"deletions\":0}]}}}");
    assert_int_equal(turn_changes(t, c), 1);
    assert_int_equal(c[0], 2);
    assert_int_equal(c[1], 5);
    assert_int_equal(c[2], 1);
    turn_free(t);
}

typedef struct seen {
    long long ids[16];
    int n;
} seen_t;

static void collect(void *ctx, const db_event_t *ev)
{
    seen_t *s = ctx;
    assert_true(s->n < 16);
    s->ids[s->n++] = ev->seq;
}

static void test_ids_and_bounds(void **state)
{
    (void)state;
    turn_t *t = new_turn(3, 1 << 20, 1024, 1);
    const char *d = "{}";
    for (int i = 1; i <= 5; i++)
        assert_int_equal(turn_log(t, "message.part.delta", d), i);
    assert_int_equal(turn_log(t, "done", d), 6); /* always kept, past the bound */
    assert_int_equal(turn_last_id(t), 6);
    seen_t s = {0};
    assert_int_equal(turn_replay(t, 0, collect, &s), 1); /* 4 and 5 were not kept */
    assert_int_equal(s.n, 4);
    assert_int_equal(s.ids[0], 1);
    assert_int_equal(s.ids[2], 3);
    assert_int_equal(s.ids[3], 6);
    s.n = 0;
    assert_int_equal(turn_replay(t, 2, collect, &s), 1);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.ids[0], 3);
    turn_free(t);
    /* The byte bound the same way. */
    t = new_turn(100, 10, 1024, 1);
    turn_log(t, "message.part.updated", "{\"text\":\"more than ten bytes\"}");
    s.n = 0;
    assert_int_equal(turn_replay(t, 0, collect, &s), 1);
    assert_int_equal(s.n, 0);
    turn_free(t);
}

/* Costs come from the agent's events: nothing negative, infinite, NaN or absurd counts; a long turn's
 * many messages all count. */
static void test_costs(void **state)
{
    (void)state;
    turn_t *t = new_turn(100, 1 << 20, 1024, 1);
    static const char *const bad[] = {"-5", "NaN", "1e300", "\"3\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char ev[96];
        snprintf(ev, sizeof ev, "{\"part\":{\"cost\":%s}}", bad[i]);
        observe(t, "step_finish", ev);
    }
    assert_true(turn_cost(t) == 0);
    observe(t, "step_finish", "{\"part\":{\"cost\":0.25}}");
    for (int i = 0; i < 100; i++) {
        char ev[128];
        snprintf(ev, sizeof ev, "{\"info\":{\"role\":\"assistant\",\"id\":\"msg_%d\",\"cost\":0.01}}", i);
        observe(t, "message.updated", ev);
        observe(t, "message.updated", ev); /* updates of one message count once */
    }
    assert_true(turn_cost(t) > 1.2499 && turn_cost(t) < 1.2501);
    turn_free(t);
}

/* What the turn is doing now (the slow log's view): the latest call not ended, else the last part. */
static void test_now(void **state)
{
    (void)state;
    turn_t *t = new_turn(100, 1 << 20, 1024, 1);
    turn_now_t n;
    turn_now(t, &n);
    assert_null(n.step);
    assert_null(n.tool);
    assert_int_equal(n.input_bytes, -1);
    observe(t, "message.part.updated", "{\"part\":{\"type\":\"step-start\"}}");
    observe(t, "message.part.updated", "{\"part\":{\"type\":\"text\",\"text\":\"\"}}");
    turn_now(t, &n);
    assert_string_equal(n.step, "text");
    observe(t, "message.part.updated", "{\"part\":{\"type\":\"tool\",\"tool\":\"bash\",\"callID\":\"c1\","
                                       "\"state\":{\"status\":\"running\",\"input\":{\"command\":\"make\"}}}}");
    observe(t, "message.part.updated", "{\"part\":{\"type\":\"reasoning\"}}");
    turn_now(t, &n); /* a running call wins over what came after it */
    assert_string_equal(n.step, "tool");
    assert_string_equal(n.tool, "bash");
    assert_string_equal(n.call_id, "c1");
    assert_string_equal(n.input, "{\"command\":\"make\"}");
    assert_int_equal(n.input_bytes, 18);
    assert_int_equal(strlen(n.input_sha256), 64);
    observe(t, "message.part.updated", "{\"part\":{\"type\":\"tool\",\"tool\":\"bash\",\"callID\":\"c1\","
                                       "\"state\":{\"status\":\"completed\",\"input\":{\"command\":\"make\"}}}}");
    turn_now(t, &n); /* every call ended: the model has the turn */
    assert_null(n.step);
    assert_null(n.tool);
    observe(t, "text", "{\"part\":{\"type\":\"text\"}}"); /* opencode run's shape */
    turn_now(t, &n);
    assert_string_equal(n.step, "text");
    turn_free(t);
    /* store_prompts = no: the call, its size and digest, never its input */
    t = new_turn(100, 1 << 20, 1024, 0);
    observe(t, "tool_use", "{\"part\":{\"tool\":\"read\",\"callID\":\"c2\",\"state\":{\"status\":\"pending\","
                           "\"input\":{\"filePath\":\"/etc/hostname\"}}}}");
    turn_now(t, &n);
    assert_string_equal(n.tool, "read");
    assert_null(n.input);
    assert_true(n.input_bytes > 0);
    assert_non_null(n.input_sha256);
    turn_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tool_calls_from_both_shapes),
        cmocka_unit_test(test_inputs_kept_or_digested),
        cmocka_unit_test(test_changes_from_the_summary),
        cmocka_unit_test(test_ids_and_bounds),
        cmocka_unit_test(test_costs),
        cmocka_unit_test(test_now),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
