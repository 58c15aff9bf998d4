/* req: routes, methods, bodies, fields and limits, each with its status and code. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "request.h"

static const request_limits_t lim = {.max_body_bytes = 1024, .max_message_bytes = 64};

static json_object *build(const char *method, const char *path, const char *query, const char *body,
                          request_err_t *err)
{
    request_in_t in = {.method = method, .path = path, .query = query, .body = body ? body : "",
                   .body_len = body ? strlen(body) : 0};
    return request_build(&in, &lim, err, NULL);
}

static void expect(const char *method, const char *path, const char *query, const char *body, int status,
                   const char *code)
{
    request_err_t err;
    json_object *f = build(method, path, query, body, &err);
    if (status == 0) {
        assert_non_null(f);
        json_object_put(f);
        return;
    }
    assert_null(f);
    assert_int_equal(err.status, status);
    assert_string_equal(err.code, code);
    assert_true(strlen(err.message) > 0);
}

/* Ocpm-Node: what a cluster's front sends; only this node's name (or none) gets through. */
static void test_node_header(void **state)
{
    (void)state;
    request_limits_t l = {.max_body_bytes = 1024, .max_message_bytes = 64, .node_name = "n1"};
    request_err_t err;
    request_in_t in = {.method = "POST", .path = "/api/sessions", .body = "{}", .body_len = 2, .node = "n1"};
    json_object *f = request_build(&in, &l, &err, NULL);
    assert_non_null(f);
    json_object_put(f);
    in.node = NULL;
    f = request_build(&in, &l, &err, NULL);
    assert_non_null(f);
    json_object_put(f);
    in.node = "n2";
    assert_null(request_build(&in, &l, &err, NULL));
    assert_int_equal(err.status, 421);
    assert_string_equal(err.code, "misdirected_request");
    assert_non_null(strstr(err.message, "node n2; this is node n1"));
    in.node = "\x1b[2J\"}"; /* what the client wrote is not echoed unless it is a node name */
    assert_null(request_build(&in, &l, &err, NULL));
    assert_int_equal(err.status, 421);
    assert_null(strstr(err.message, "\x1b"));
}

static void test_routes(void **state)
{
    (void)state;
    expect("GET", "/api/opencode/status", NULL, NULL, 0, NULL);
    expect("GET", "/api/health", NULL, NULL, 0, NULL);
    expect("GET", "/api/sessions/abc", NULL, NULL, 0, NULL);
    /* One spelling per route: no trailing slash (nginx's locations must match what runs). */
    expect("GET", "/api/sessions/abc/", NULL, NULL, 404, "not_found");
    expect("GET", "/api/opencode/status/", NULL, NULL, 404, "not_found");
    expect("GET", "/api/nope", NULL, NULL, 404, "not_found");
    expect("GET", "/api/sessions/a/b", NULL, NULL, 404, "not_found");
    expect("PUT", "/api/sessions", NULL, NULL, 405, "method_not_allowed");
    expect("GET", "/api/sessions/a.b", NULL, NULL, 400, "invalid_id");
    char longid[100] = "/api/sessions/";
    memset(longid + strlen(longid), 'x', 70);
    expect("GET", longid, NULL, NULL, 400, "invalid_id");
    /* Execution ids are numbers: decimal digits, above 0, in 64 bits; leading zeros are the same id. */
    expect("GET", "/api/executions/7", NULL, NULL, 0, NULL);
    expect("GET", "/api/executions/007", NULL, NULL, 0, NULL);
    expect("GET", "/api/executions/0", NULL, NULL, 400, "invalid_id");
    expect("GET", "/api/executions/-7", NULL, NULL, 400, "invalid_id");
    expect("GET", "/api/executions/+7", NULL, NULL, 400, "invalid_id");
    expect("GET", "/api/executions/7a", NULL, NULL, 400, "invalid_id");
    expect("GET", "/api/executions/99999999999999999999", NULL, NULL, 400, "invalid_id");
    /* ocpmctl's operation has no HTTP route. */
    expect("POST", "/api/prune", NULL, NULL, 404, "not_found");
    request_err_t err;
    assert_null(build("DELETE", "/api/executions", NULL, NULL, &err));
    assert_string_equal(err.allow, "GET");
    /* The client's own spelling must be the normalised one: no dot segment, no encoded slash. */
    static const char *const raw[] = {"/api/opencode/./status", "/api/opencode/status%2F", "/api//opencode/status",
                                      "/api/opencode/%73tatus"};
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
        request_in_t in = {.method = "GET", .path = "/api/opencode/status", .raw_uri = raw[i], .body = ""};
        assert_null(request_build(&in, &lim, &err, NULL));
        assert_int_equal(err.status, 404);
    }
    request_in_t ok = {.method = "GET", .path = "/api/opencode/status", .raw_uri = "/api/opencode/status?", .body = ""};
    json_object *f = request_build(&ok, &lim, &err, NULL);
    assert_non_null(f);
    json_object_put(f);
}

static void test_message_frame(void **state)
{
    (void)state;
    request_in_t in = {.method = "POST", .path = "/api/sessions/s1/messages", .body = "{\"text\":\"--version\"}",
                   .body_len = 20, .accept = "text/event-stream", .remote_user = "alice"};
    request_err_t err;
    json_object *f = request_build(&in, &lim, &err, NULL);
    assert_non_null(f);
    assert_string_equal(json_object_get_string(json_object_object_get(f, "op")), "message");
    assert_string_equal(json_object_get_string(json_object_object_get(f, "user")), "alice");
    assert_string_equal(json_object_get_string(json_object_object_get(f, "id")), "s1");
    json_object *args = json_object_object_get(f, "args");
    assert_string_equal(json_object_get_string(json_object_object_get(args, "text")), "--version");
    assert_true(json_object_get_boolean(json_object_object_get(f, "stream")));
    json_object_put(f);
    in.remote_user = NULL;
    in.accept = NULL;
    in.prefer = "respond-async";
    f = request_build(&in, &lim, &err, NULL);
    /* Nobody authenticated: the owner is "", which no user name can be. */
    assert_string_equal(json_object_get_string(json_object_object_get(f, "user")), "");
    assert_true(json_object_get_boolean(json_object_object_get(f, "async")));
    json_object_put(f);
}

static void test_bad_bodies(void **state)
{
    (void)state;
    const char *p = "/api/sessions/s1/messages";
    expect("POST", p, NULL, "", 400, "missing_body");
    expect("POST", p, NULL, "{", 400, "invalid_json");
    expect("POST", p, NULL, "[\"text\"]", 400, "invalid_json");
    expect("POST", p, NULL, "\"text\"", 400, "invalid_json");
    expect("POST", p, NULL, "{\"text\":\"a\"} x", 400, "invalid_json");
    expect("POST", p, NULL, "{\"text\":[[[[[[[[[[1]]]]]]]]]]}", 400, "invalid_json");
    expect("POST", p, NULL, "{\"text\":1}", 400, "invalid_field");
    expect("POST", p, NULL, "{\"text\":\"\"}", 400, "invalid_field");
    expect("POST", p, NULL, "{\"text\":\"a\\u0000b\"}", 400, "invalid_field");
    expect("POST", p, NULL, "{\"text\":\"\xff\"}", 400, "invalid_utf8");
    expect("POST", p, NULL, "{\"text\":\"a\",\"extra\":1}", 400, "unknown_field");
    expect("POST", p, NULL, "{\"model\":\"a/b\"}", 400, "missing_field");
    expect("POST", p, NULL, "{\"text\":\"a\",\"model\":\"bad model\"}", 400, "invalid_field");
    expect("POST", p, NULL, "{\"text\":\"a\",\"agent\":\"../x\"}", 400, "invalid_field");
    char big[200];
    snprintf(big, sizeof big, "{\"text\":\"%0100d\"}", 0);
    expect("POST", p, NULL, big, 400, "invalid_field"); /* over max_message_bytes */
    char huge[1100];
    memset(huge, ' ', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    expect("POST", p, NULL, huge, 413, "body_too_large");
    expect("POST", "/api/sessions", NULL, "{\"id\":\"a b\"}", 400, "invalid_field");
    expect("POST", "/api/sessions", NULL, "{\"workspace\":\"../x\"}", 400, "invalid_field");
    expect("POST", "/api/sessions", NULL, "{\"workspace\":\"/etc\"}", 400, "invalid_field");
    expect("POST", "/api/sessions", NULL, "{}", 0, NULL);
    expect("POST", "/api/sessions", NULL, "", 0, NULL);
    expect("POST", "/api/sessions/s1/abort", NULL, "{\"x\":1}", 400, "unknown_field");
    request_in_t in = {.method = "POST", .path = p, .body = "{\"text\":\"a\"}", .body_len = 12,
                   .content_type = "multipart/form-data; boundary=x"};
    request_err_t err;
    assert_null(request_build(&in, &lim, &err, NULL));
    assert_int_equal(err.status, 415);
    in.content_type = "application/json; charset=utf-8";
    json_object *f = request_build(&in, &lim, &err, NULL);
    assert_non_null(f);
    json_object_put(f);
}

static void test_query(void **state)
{
    (void)state;
    const char *p = "/api/executions";
    expect("GET", p, "session=s1&status=failed&limit=10", NULL, 0, NULL);
    expect("GET", p, "session=&status=", NULL, 0, NULL);
    expect("GET", p, "limit=0", NULL, 400, "invalid_field");
    expect("GET", p, "limit=abc", NULL, 400, "invalid_parameter");
    expect("GET", p, "status=weird", NULL, 400, "invalid_field");
    expect("GET", p, "session=a%2Fb", NULL, 400, "invalid_field");
    expect("GET", p, "session=%zz", NULL, 400, "invalid_parameter");
    expect("GET", p, "session=%00", NULL, 400, "invalid_parameter");
    expect("GET", p, "other=1", NULL, 400, "unknown_field");
    expect("GET", p, "limit=1&limit=2", NULL, 400, "invalid_parameter");
    expect("GET", p, "session", NULL, 400, "invalid_parameter"); /* a key without = (fuzz_req once crashed on it) */
    expect("GET", p, "&&", NULL, 0, NULL);
    expect("GET", "/api/sessions", "x=1", NULL, 400, "unknown_field");
    expect("GET", "/api/sessions", "after=s1&limit=10", NULL, 0, NULL);
    expect("GET", "/api/health", "x=1", NULL, 400, "unknown_parameter");
    /* Numbers are decimal only, and finite. */
    static const char *const bad_numbers[] = {"since=0x10", "since=inf", "since=nan", "since=1e3", "since=-1",
                                              "since=+1", "since= 1", "limit=0x10", "limit=+5", "limit=%205",
                                              "before=1.5", "until=1."};
    for (size_t i = 0; i < sizeof bad_numbers / sizeof bad_numbers[0]; i++)
        expect("GET", p, bad_numbers[i], NULL, 400, "invalid_parameter");
    expect("GET", p, "since=1795000000.25&until=1795000001&limit=5&before=9", NULL, 0, NULL);
    /* An agent becomes an argument of opencode: it may not look like an option. */
    expect("POST", "/api/sessions/s1/messages", NULL, "{\"text\":\"x\",\"agent\":\"--yolo\"}", 400, "invalid_field");
    expect("POST", "/api/sessions/s1/messages", NULL, "{\"text\":\"x\",\"agent\":\"build\"}", 0, NULL);
}

static void test_bad_user(void **state)
{
    (void)state;
    request_in_t in = {.method = "GET", .path = "/api/sessions", .remote_user = "bad\nuser"};
    request_err_t err;
    assert_null(request_build(&in, &lim, &err, NULL));
    assert_int_equal(err.status, 400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_header),
        cmocka_unit_test(test_routes),      cmocka_unit_test(test_message_frame), cmocka_unit_test(test_bad_bodies),
        cmocka_unit_test(test_query),       cmocka_unit_test(test_bad_user),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
