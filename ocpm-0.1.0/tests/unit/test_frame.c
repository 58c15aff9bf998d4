/* frame codec: round trips, split delivery, and every malformed input. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"

static void feed_raw(frame_decoder_t *d, uint32_t n, const char *body)
{
    unsigned char h[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8),
                          (unsigned char)n};
    frame_feed(d, h, 4);
    frame_feed(d, body, strlen(body));
}

static void test_round_trip_byte_by_byte(void **state)
{
    (void)state;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "op", json_object_new_string("status"));
    size_t len;
    char *buf = frame_encode(o, &len);
    assert_non_null(buf);
    frame_decoder_t *d = frame_decoder_new(0);
    json_object *out = NULL;
    const char *why;
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(frame_next(d, &out, &why), FRAME_AGAIN);
        frame_feed(d, buf + i, 1);
    }
    assert_int_equal(frame_next(d, &out, &why), FRAME_OK);
    assert_string_equal(json_object_get_string(json_object_object_get(out, "op")), "status");
    json_object_put(out);
    assert_int_equal(frame_next(d, &out, &why), FRAME_AGAIN);
    json_object_put(o);
    free(buf);
    frame_decoder_free(d);
}

static void test_two_frames_in_one_read(void **state)
{
    (void)state;
    frame_decoder_t *d = frame_decoder_new(0);
    feed_raw(d, 7, "{\"a\":1}");
    feed_raw(d, 7, "{\"b\":2}");
    json_object *o;
    const char *why;
    assert_int_equal(frame_next(d, &o, &why), FRAME_OK);
    assert_non_null(json_object_object_get(o, "a"));
    json_object_put(o);
    assert_int_equal(frame_next(d, &o, &why), FRAME_OK);
    assert_non_null(json_object_object_get(o, "b"));
    json_object_put(o);
    frame_decoder_free(d);
}

static void expect_error(uint32_t n, const char *body, size_t max)
{
    frame_decoder_t *d = frame_decoder_new(max);
    feed_raw(d, n, body);
    json_object *o = NULL;
    const char *why = NULL;
    assert_int_equal(frame_next(d, &o, &why), FRAME_ERROR);
    assert_null(o);
    assert_non_null(why);
    frame_decoder_free(d);
}

static void test_empty_feed(void **state)
{
    (void)state;
    /* Found by fuzz_frame: feeding nothing to a fresh decoder did pointer arithmetic on NULL. */
    frame_decoder_t *d = frame_decoder_new(0);
    assert_int_equal(frame_feed(d, NULL, 0), FRAME_OK);
    json_object *o;
    const char *why;
    assert_int_equal(frame_next(d, &o, &why), FRAME_AGAIN);
    frame_decoder_free(d);
}

static void test_malformed(void **state)
{
    (void)state;
    expect_error(0, "", 0);                        /* empty */
    expect_error(1u << 30, "", 0);                 /* over FRAME_MAX */
    expect_error(20, "{\"a\":\"01234567890\"}", 8); /* over the decoder's limit */
    expect_error(3, "[1]", 0);                     /* not an object */
    expect_error(5, "{\"a\":", 0);                 /* truncated JSON */
    expect_error(9, "{\"a\":1}xx", 0);             /* trailing bytes */
    frame_decoder_t *d = frame_decoder_new(0);
    unsigned char raw[] = {0, 0, 0, 3, '{', 0, '}'};
    frame_feed(d, raw, sizeof raw);
    json_object *o;
    const char *why;
    assert_int_equal(frame_next(d, &o, &why), FRAME_ERROR); /* NUL byte */
    frame_decoder_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_byte_by_byte),
        cmocka_unit_test(test_two_frames_in_one_read),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_empty_feed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
