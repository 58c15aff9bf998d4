/* inflight: the pool's shared counters: admission up to the capacity, the lower limit for messages,
 * refusals counted, a dead responder's slot cleared, and the page shared across fork. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "inflight.h"

static void test_limits(void **state)
{
    (void)state;
    int fd = inflight_create(2);
    assert_true(fd >= 0);
    assert_int_equal(inflight_enter(0, 3), 0);
    assert_int_equal(inflight_enter(1, 3), 0);
    assert_int_equal(inflight_enter(1, 3), 0);
    assert_int_equal(inflight_enter(0, 3), -1); /* the pool's total, whichever slot asks */
    assert_int_equal(inflight_total(), 3);
    assert_int_equal(inflight_promote(0, 1), 0);
    assert_int_equal(inflight_promote(1, 1), -1); /* messages have their own, lower limit */
    assert_int_equal(inflight_messages(), 1);
    assert_int_equal(inflight_refused(), 2);
    inflight_leave(0, 1);
    assert_int_equal(inflight_total(), 2);
    assert_int_equal(inflight_messages(), 0);
    inflight_reset(1); /* responder 1 died with two requests */
    assert_int_equal(inflight_total(), 0);
    assert_int_equal(inflight_refused(), 2); /* refusals outlive the slot */
    inflight_detach();
    close(fd);
}

static void test_shared_across_processes(void **state)
{
    (void)state;
    int fd = inflight_create(2);
    assert_true(fd >= 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* A responder maps the same page (here inherited; the pool hands it over as fd 3). */
        inflight_detach();
        int ok = inflight_attach(fd, 2) == 0 && inflight_enter(1, 10) == 0 && inflight_enter(1, 10) == 0;
        _exit(ok ? 0 : 1);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(inflight_total(), 2);
    inflight_detach();
    close(fd);
}

static void test_without_page(void **state)
{
    (void)state;
    /* A responder started by hand, without the page, admits everything. */
    assert_int_equal(inflight_enter(0, 0), 0);
    assert_int_equal(inflight_promote(0, 0), 0);
    assert_int_equal(inflight_total(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_shared_across_processes),
        cmocka_unit_test(test_without_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
