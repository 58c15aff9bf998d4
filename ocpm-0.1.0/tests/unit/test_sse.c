/* sse: events split across reads, CRLF, comments, multi-line data, and the size limit. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sse.h"

static char got[8][256];
static int ngot;

static void on_event(void *ctx, const char *event, const char *data, size_t len)
{
    (void)ctx;
    if (ngot < 8)
        snprintf(got[ngot++], sizeof got[0], "%s|%.*s", event, (int)len, data);
}

static void test_split_feeds(void **state)
{
    (void)state;
    ngot = 0;
    sse_t *p = sse_new(0, on_event, NULL);
    const char *stream = ": hi\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata: line1\ndata: line2\n\ndata:nospace\n\n";
    for (size_t i = 0; stream[i]; i++)
        assert_int_equal(sse_feed(p, stream + i, 1), 0);
    assert_int_equal(ngot, 3);
    assert_string_equal(got[0], "message|{\"a\":1}");
    assert_string_equal(got[1], "x|line1\nline2");
    assert_string_equal(got[2], "message|nospace");
    sse_free(p);
}

static void test_limit_drops_whole_event(void **state)
{
    (void)state;
    ngot = 0;
    sse_t *p = sse_new(16, on_event, NULL);
    const char *s = "data: 0123456789abcdefXYZ\n\ndata: ok\n\n";
    assert_int_equal(sse_feed(p, s, strlen(s)), 0);
    assert_int_equal(ngot, 1);
    assert_string_equal(got[0], "message|ok");
    assert_int_equal(sse_dropped(p), 1);
    sse_free(p);
}

static void test_no_event_without_data(void **state)
{
    (void)state;
    ngot = 0;
    sse_t *p = sse_new(0, on_event, NULL);
    const char *s = "event: lonely\n\n: comment only\n\nretry: 10\n\n";
    assert_int_equal(sse_feed(p, s, strlen(s)), 0);
    assert_int_equal(ngot, 0);
    sse_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_feeds),
        cmocka_unit_test(test_limit_drops_whole_event),
        cmocka_unit_test(test_no_event_without_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
