/* linebuf: lines split however the bytes arrive, '\r\n' as '\n', one policy for a line too long. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "linebuf.h"

typedef struct seen {
    char lines[16][64];
    int cut[16];
    int n;
} seen_t;

static void collect(void *ctx, const char *line, size_t len, int cut)
{
    seen_t *s = ctx;
    assert_true(s->n < 16);
    snprintf(s->lines[s->n], sizeof s->lines[0], "%.*s", (int)len, line);
    s->cut[s->n++] = cut;
}

static void test_lines_across_feeds(void **state)
{
    (void)state;
    seen_t s = {0};
    linebuf_t *b = linebuf_new(64, collect, &s);
    assert_non_null(b);
    const char *in = "one\ntw";
    assert_int_equal(linebuf_feed(b, in, strlen(in)), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(linebuf_feed(b, "o\r\nthree\n\nfour", 14), 0);
    assert_int_equal(s.n, 4);
    linebuf_flush(b);
    assert_int_equal(s.n, 5);
    const char *want[] = {"one", "two", "three", "", "four"};
    for (int i = 0; i < 5; i++) {
        assert_string_equal(s.lines[i], want[i]);
        assert_int_equal(s.cut[i], 0);
    }
    linebuf_flush(b); /* nothing left: no empty last line */
    assert_int_equal(s.n, 5);
    linebuf_free(b);
}

static void test_long_line_cut_once(void **state)
{
    (void)state;
    seen_t s = {0};
    linebuf_t *b = linebuf_new(8, collect, &s);
    /* Twenty bytes in three feeds: the first eight are the line, cut; the rest up to '\n' dropped. */
    assert_int_equal(linebuf_feed(b, "abcdefghij", 10), 0);
    assert_int_equal(linebuf_feed(b, "klmnop", 6), 0);
    assert_int_equal(linebuf_feed(b, "qrst\nnext\n", 10), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.lines[0], "abcdefgh");
    assert_int_equal(s.cut[0], 1);
    assert_string_equal(s.lines[1], "next");
    assert_int_equal(s.cut[1], 0);
    assert_int_equal(linebuf_cut_lines(b), 1);
    linebuf_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_across_feeds),
        cmocka_unit_test(test_long_line_cut_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
