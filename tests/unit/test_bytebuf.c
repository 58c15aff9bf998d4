/* bytebuf: appends across growth, always NUL-terminated, empty adds, freeing. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "bytebuf.h"

static void test_grows(void **state)
{
    (void)state;
    bytebuf_t b = {0};
    assert_int_equal(bytebuf_add(&b, "", 0), 0);
    assert_non_null(b.data);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    char chunk[1000];
    for (int i = 0; i < 100; i++) { /* 100 kB: several doublings from 4 kB */
        memset(chunk, 'a' + i % 26, sizeof chunk);
        assert_int_equal(bytebuf_add(&b, chunk, sizeof chunk), 0);
        assert_int_equal(b.data[b.len], '\0');
        assert_true(b.cap > b.len);
    }
    assert_int_equal(b.len, 100000);
    assert_int_equal(b.data[0], 'a');
    assert_int_equal(b.data[99999], 'a' + 99 % 26);
    assert_int_equal(b.data[4095], 'a' + 4 % 26);
    assert_int_equal(b.data[4096], 'a' + 4 % 26);
    bytebuf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len + b.cap, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_grows)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
