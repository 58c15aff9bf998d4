/* ocev: real `opencode run --format json` lines (captured from opencode 1.18.33). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "oc_event.h"

static void test_text_and_finish(void **state)
{
    (void)state;
    const char *text = "{\"type\":\"text\",\"timestamp\":1,\"sessionID\":\"ses_df2cdf4b6ffeJ2BbEEeTgXgfdk\","
                       "\"part\":{\"type\":\"text\",\"text\":\"hello there\"}}";
    oc_event_t ev;
    assert_int_equal(oc_event_parse(text, strlen(text), &ev), 0);
    assert_string_equal(ev.type, "text");
    assert_string_equal(ev.session_id, "ses_df2cdf4b6ffeJ2BbEEeTgXgfdk");
    assert_string_equal(ev.text, "hello there");
    oc_event_free(&ev);
    const char *fin = "{\"type\":\"step_finish\",\"sessionID\":\"ses_x\",\"part\":{\"reason\":\"stop\","
                      "\"tokens\":{\"total\":20,\"input\":12,\"output\":8,\"reasoning\":0},\"cost\":0.25}}";
    assert_int_equal(oc_event_parse(fin, strlen(fin), &ev), 0);
    assert_true(ev.has_usage);
    assert_int_equal(ev.tokens_in, 12);
    assert_int_equal(ev.tokens_out, 8);
    assert_true(ev.cost > 0.24 && ev.cost < 0.26);
    assert_null(ev.text);
    oc_event_free(&ev);
}

static void test_error(void **state)
{
    (void)state;
    const char *e = "{\"type\":\"error\",\"sessionID\":\"ses_y\",\"error\":{\"name\":\"APIError\",\"data\":"
                    "{\"message\":\"offline model: injected failure\",\"statusCode\":500}}}";
    oc_event_t ev;
    assert_int_equal(oc_event_parse(e, strlen(e), &ev), 0);
    assert_string_equal(ev.error, "offline model: injected failure");
    oc_event_free(&ev);
    const char *n = "{\"type\":\"error\",\"error\":{\"name\":\"ProviderAuthError\"}}";
    assert_int_equal(oc_event_parse(n, strlen(n), &ev), 0);
    assert_string_equal(ev.error, "ProviderAuthError");
    assert_null(ev.session_id);
    oc_event_free(&ev);
}

static void test_not_events(void **state)
{
    (void)state;
    oc_event_t ev;
    const char *bad[] = {"", "not json", "[1,2]", "{\"type\":3}", "{\"no\":\"type\"}", "{\"type\":\"text\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(oc_event_parse(bad[i], strlen(bad[i]), &ev), -1);
    const char *odd = "{\"type\":\"text\",\"sessionID\":\"../../etc\",\"part\":{\"text\":5}}";
    assert_int_equal(oc_event_parse(odd, strlen(odd), &ev), 0);
    assert_null(ev.session_id); /* not a valid id: never used as --session */
    assert_null(ev.text);
    oc_event_free(&ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_and_finish),
        cmocka_unit_test(test_error),
        cmocka_unit_test(test_not_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
