/* restart_limit: supervisord's FATAL rule, with the clock injected (times are arguments). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "restart_limit.h"

/* Limit 2 in 30 s: the third restart within the window is refused. */
static void test_third_within_window_is_fatal(void **state)
{
    (void)state;
    restart_limit_t *r = restart_limit_new(2, 30000);
    assert_non_null(r);
    assert_int_equal(restart_limit_note(r, 100.0), 0);
    assert_int_equal(restart_limit_note(r, 101.0), 0);
    assert_int_equal(restart_limit_count(r, 101.0), 2);
    assert_int_equal(restart_limit_note(r, 103.0), 1);
    assert_int_equal(restart_limit_note(r, 129.9), 1); /* the first is still within the window */
    restart_limit_free(r);
}

/* Restarts spaced wider than the window never add up, however many there are. */
static void test_spaced_restarts_never_fatal(void **state)
{
    (void)state;
    restart_limit_t *r = restart_limit_new(2, 30000);
    double t = 1000.0;
    for (int i = 0; i < 100; i++, t += 15.1) /* two per window at most: 15.1 s apart */
        assert_int_equal(restart_limit_note(r, t), 0);
    restart_limit_free(r);
    r = restart_limit_new(1, 30000);
    for (int i = 0; i < 100; i++, t += 30.001) /* just over the window apart: the old one has left it */
        assert_int_equal(restart_limit_note(r, t), 0);
    assert_int_equal(restart_limit_note(r, t - 29.0), 1);
    restart_limit_free(r);
}

/* The window slides: after a burst is refused, waiting out the oldest lets one more through. */
static void test_window_slides(void **state)
{
    (void)state;
    restart_limit_t *r = restart_limit_new(3, 10000);
    assert_int_equal(restart_limit_note(r, 0.0), 0);
    assert_int_equal(restart_limit_note(r, 5.0), 0);
    assert_int_equal(restart_limit_note(r, 6.0), 0);
    assert_int_equal(restart_limit_note(r, 9.0), 1);
    assert_int_equal(restart_limit_count(r, 9.0), 3);
    assert_int_equal(restart_limit_note(r, 10.0), 0); /* the one at 0 left the window */
    assert_int_equal(restart_limit_note(r, 11.0), 1);
    assert_int_equal(restart_limit_count(r, 30.0), 0);
    restart_limit_free(r);
}

/* An operator's reset gives the whole limit back; 0 means no limit; bounds are checked. */
static void test_reset_unlimited_bounds(void **state)
{
    (void)state;
    restart_limit_t *r = restart_limit_new(1, 60000);
    assert_int_equal(restart_limit_note(r, 1.0), 0);
    assert_int_equal(restart_limit_note(r, 2.0), 1);
    restart_limit_reset(r);
    assert_int_equal(restart_limit_count(r, 2.0), 0);
    assert_int_equal(restart_limit_note(r, 2.0), 0);
    restart_limit_free(r);
    r = restart_limit_new(0, 60000);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(restart_limit_note(r, (double)i / 1000.0), 0);
    restart_limit_free(r);
    assert_null(restart_limit_new(-1, 1000));
    assert_null(restart_limit_new(RESTART_LIMIT_MAX + 1, 1000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_third_within_window_is_fatal),
        cmocka_unit_test(test_spaced_restarts_never_fatal),
        cmocka_unit_test(test_window_slides),
        cmocka_unit_test(test_reset_unlimited_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
