/* metrics: the two expositions of one table (Prometheus text, OpenMetrics), which one an Accept
 * header asks for, and label values escaped. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

static double one(const void *ctx) { (void)ctx; return 1; }
static int two(const void *ctx) { (void)ctx; return 2; }
static double at(const void *ctx, int i) { (void)ctx; return i + 5; }
/* Label values that need escaping: a quote, a backslash, a line feed. */
static void labels(const void *ctx, int i, char *out, size_t len)
{
    (void)ctx;
    char v[64];
    snprintf(out, len, "pool=\"%s\"", metrics_escape(i ? "b\\n\"x" : "a\nb", v, sizeof v));
}

static const metric_t table[] = {
    {"t_things_total", METRIC_COUNTER, "Things \"counted\", with a \\ and\na line.", one, NULL, NULL, NULL},
    {"t_size_bytes", METRIC_GAUGE, "A size.", NULL, two, at, labels},
};

static char *render(metrics_format_t f)
{
    metrics_t *mt = metrics_new(1000);
    metrics_observe(mt, "server", EXEC_SUCCEEDED, 0.2, 0.01);
    metrics_tool_call(mt, "bash", "completed");
    char *s = metrics_render(mt, table, 2, NULL, f);
    metrics_free(mt);
    assert_non_null(s);
    return s;
}

static void test_prometheus_text(void **state)
{
    (void)state;
    char *s = render(METRICS_PROMETHEUS);
    assert_non_null(strstr(s, "# HELP t_things_total Things \"counted\", with a \\\\ and\\na line.\n# TYPE t_things_total counter\nt_things_total 1\n"));
    assert_non_null(strstr(s, "t_size_bytes{pool=\"a\\nb\"} 5\nt_size_bytes{pool=\"b\\\\n\\\"x\"} 6\n"));
    assert_non_null(strstr(s, "# TYPE ocpm_executions_total counter\n"));
    assert_null(strstr(s, "# UNIT"));
    assert_null(strstr(s, "# EOF"));
    free(s);
}

static void test_openmetrics(void **state)
{
    (void)state;
    char *s = render(METRICS_OPENMETRICS);
    /* The counter's family loses _total, its sample keeps it; HELP escapes the quote too. */
    assert_non_null(strstr(s, "# HELP t_things Things \\\"counted\\\", with a \\\\ and\\na line.\n# TYPE t_things counter\nt_things_total 1\n"));
    assert_non_null(strstr(s, "# TYPE t_size_bytes gauge\n# UNIT t_size_bytes bytes\n"));
    assert_non_null(strstr(s, "# TYPE ocpm_executions counter\n"));
    assert_non_null(strstr(s, "ocpm_executions_total{mode=\"server\",status=\"succeeded\"} 1\n"));
    assert_non_null(strstr(s, "# UNIT ocpm_execution_duration_seconds seconds\n"));
    assert_non_null(strstr(s, "ocpm_tool_calls_total{tool=\"bash\",status=\"completed\"} 1\n"));
    size_t n = strlen(s);
    assert_true(n > 6 && strcmp(s + n - 6, "# EOF\n") == 0);
    free(s);
}

static void test_negotiate(void **state)
{
    (void)state;
    static const struct {
        const char *accept;
        metrics_format_t want;
    } cases[] = {
        {NULL, METRICS_PROMETHEUS},
        {"", METRICS_PROMETHEUS},
        {"application/openmetrics-text", METRICS_OPENMETRICS},
        {"application/openmetrics-text; version=1.0.0; charset=utf-8", METRICS_OPENMETRICS},
        {"APPLICATION/OpenMetrics-Text", METRICS_OPENMETRICS},
        {"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
         "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
         METRICS_OPENMETRICS},
        {"text/plain, application/openmetrics-text", METRICS_OPENMETRICS}, /* a tie: the one named for it */
        {"text/plain;q=0.9, application/openmetrics-text;q=0.8", METRICS_PROMETHEUS},
        {"application/openmetrics-text;q=0", METRICS_PROMETHEUS},
        {"application/openmetrics-text;q=2", METRICS_PROMETHEUS},
        {"application/openmetrics-text;q=", METRICS_PROMETHEUS},
        {"application/openmetrics-textual", METRICS_PROMETHEUS},
        {"*/*", METRICS_PROMETHEUS},
        {"application/json", METRICS_PROMETHEUS},
        {" application/openmetrics-text ; q=0.5 , text/*;q=0.4", METRICS_OPENMETRICS},
        {",,;,", METRICS_PROMETHEUS},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (metrics_negotiate(cases[i].accept) != cases[i].want)
            fail_msg("Accept %s: got the other format", cases[i].accept ? cases[i].accept : "(none)");
}

static void test_escape_cuts(void **state)
{
    (void)state;
    char out[5];
    assert_string_equal(metrics_escape("ab\"cd", out, sizeof out), "ab\\\"");
    assert_string_equal(metrics_escape("abc\"", out, sizeof out), "abc"); /* never half an escape */
    assert_string_equal(metrics_escape("", out, sizeof out), "");
}

/* A tool the agent calls "other", and more names than there are slots: one "other" label per status. */
static void test_tool_named_other(void **state)
{
    (void)state;
    metrics_t *mt = metrics_new(1000);
    metrics_tool_call(mt, "other", "completed");
    for (int i = 0; i < 80; i++) {
        char name[16];
        snprintf(name, sizeof name, "tool%d", i);
        metrics_tool_call(mt, name, "completed");
    }
    char *s = metrics_render(mt, table, 2, NULL, METRICS_OPENMETRICS);
    metrics_free(mt);
    assert_non_null(s);
    const char *want = "ocpm_tool_calls_total{tool=\"other\",status=\"completed\"}";
    const char *first = strstr(s, want);
    assert_non_null(first);
    assert_null(strstr(first + 1, want));
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prometheus_text),
        cmocka_unit_test(test_openmetrics),
        cmocka_unit_test(test_negotiate),
        cmocka_unit_test(test_escape_cuts),
        cmocka_unit_test(test_tool_named_other),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
