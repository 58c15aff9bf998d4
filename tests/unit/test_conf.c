/* conf: defaults, the file, the environment, every kind of bad value. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"

static void test_defaults_serve_64(void **state)
{
    (void)state;
    conf_t c;
    char err[512];
    conf_defaults(&c);
    assert_int_equal(conf_finish(&c, err, sizeof err), 0);
    assert_true(c.responders * c.responder_threads >= 64);
    assert_int_equal(c.mode, MODE_AUTO);
    assert_int_equal(c.run_timeout_ms, 600000);
    assert_true(c.store_prompts);
    assert_non_null(strstr(c.db_path, "/ocpm.db"));
    assert_non_null(strstr(c.pass_env, "*_API_KEY"));
}

/* node_name: the host's by default; an explicit one must be valid; a host name that is not is made one. */
static void test_node_name(void **state)
{
    (void)state;
    conf_t c;
    char err[512], name[64];
    conf_defaults(&c);
    assert_int_equal(conf_finish(&c, err, sizeof err), 0);
    assert_true(c.node_name[0] != '\0');
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    conf_node_name_from(host, name, sizeof name);
    assert_string_equal(c.node_name, name);
    assert_int_equal(conf_node_name_from("web-01.example.com", name, sizeof name), 0);
    assert_string_equal(name, "web-01");
    assert_int_equal(conf_node_name_from("Web_01", name, sizeof name), 1);
    assert_string_equal(name, "web-01");
    assert_int_equal(conf_node_name_from("-x-", name, sizeof name), 1);
    assert_string_equal(name, "x");
    assert_int_equal(conf_node_name_from("___", name, sizeof name), 1);
    assert_string_equal(name, "node");
    assert_int_equal(conf_node_name_from("", name, sizeof name), 0);
    assert_string_equal(name, "node");
    assert_int_equal(conf_node_name_from("abcdefghijklmnopqrstuvwxyz0123456789", name, sizeof name), 1);
    assert_string_equal(name, "abcdefghijklmnopqrstuvwxyz012345");
    conf_defaults(&c);
    assert_int_equal(conf_set(&c, "node_name", "n2", err, sizeof err), 0);
    assert_int_equal(conf_finish(&c, err, sizeof err), 0);
    assert_string_equal(c.node_name, "n2");
    assert_false(c.derived & CONF_DERIVED_NODE_MADE);
    static const char *const bad[] = {"N2", "n_2", "-n", "n-", "", "abcdefghijklmnopqrstuvwxyz0123456", "a.b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        conf_defaults(&c);
        assert_int_equal(conf_set(&c, "node_name", bad[i], err, sizeof err), -1);
        assert_non_null(strstr(err, "node_name"));
    }
}

static void test_units(void **state)
{
    (void)state;
    long v;
    assert_int_equal(conf_parse_duration_ms("500ms", &v), 0);
    assert_int_equal(v, 500);
    assert_int_equal(conf_parse_duration_ms("30s", &v), 0);
    assert_int_equal(v, 30000);
    assert_int_equal(conf_parse_duration_ms("5m", &v), 0);
    assert_int_equal(v, 300000);
    assert_int_equal(conf_parse_duration_ms("12", &v), 0);
    assert_int_equal(v, 12000);
    assert_int_equal(conf_parse_duration_ms("-1s", &v), -1);
    assert_int_equal(conf_parse_duration_ms("1 s", &v), -1);
    assert_int_equal(conf_parse_duration_ms("1x", &v), -1);
    assert_int_equal(conf_parse_size("64k", &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(conf_parse_size("1m", &v), 0);
    assert_int_equal(v, 1 << 20);
    assert_int_equal(conf_parse_size("99999999999999999999", &v), -1);
}

static void test_bad_values_name_key_and_value(void **state)
{
    (void)state;
    conf_t c;
    char err[512];
    conf_defaults(&c);
    assert_int_equal(conf_set(&c, "responders", "0", err, sizeof err), -1);
    assert_non_null(strstr(err, "responders"));
    assert_non_null(strstr(err, "\"0\""));
    assert_int_equal(conf_set(&c, "mode", "daemon", err, sizeof err), -1);
    assert_non_null(strstr(err, "auto, per-session or server"));
    assert_int_equal(conf_set(&c, "run_timeout", "soon", err, sizeof err), -1);
    assert_int_equal(conf_set(&c, "store_prompts", "maybe", err, sizeof err), -1);
    assert_int_equal(conf_set(&c, "responder_threads", "4k", err, sizeof err), -1);
    assert_int_equal(conf_set(&c, "no_such_key", "1", err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown key"));
    assert_int_equal(conf_set(&c, "max_message_bytes", "2m", err, sizeof err), 0);
    assert_int_equal(conf_finish(&c, err, sizeof err), -1); /* larger than max_body_bytes */
}

/* Amounts (user_daily_cost, user_turn_cost_max): decimals to 6 places, kept in millionths. */
static void test_money(void **state)
{
    (void)state;
    conf_t c;
    char err[256];
    conf_defaults(&c);
    static const struct {
        const char *in;
        long micro;
    } ok[] = {{"0", 0}, {"5", 5000000}, {"0.25", 250000}, {"0.000001", 1}, {"12.5", 12500000}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(conf_set(&c, "user_turn_cost_max", ok[i].in, err, sizeof err), 0);
        assert_int_equal(c.user_turn_cost_max_micro, ok[i].micro);
    }
    static const char *const bad[] = {"0.1234567", "-1", ".5", "1.", "1e3", "abc", "1,5", "1234567890"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(conf_set(&c, "user_daily_cost", bad[i], err, sizeof err), -1);
}

static void test_file_and_env(void **state)
{
    (void)state;
    char path[] = "/tmp/ocpm-conf-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "# comment\n\nstate_dir = /tmp/x\nresponders=2\n  run_timeout = 90s  \nmode = \"per-session\"\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    conf_t c;
    char err[512];
    conf_defaults(&c);
    assert_int_equal(conf_load_file(&c, path, err, sizeof err), 0);
    assert_string_equal(c.state_dir, "/tmp/x");
    assert_int_equal(c.responders, 2);
    assert_int_equal(c.run_timeout_ms, 90000);
    assert_int_equal(c.mode, MODE_PER_SESSION);
    setenv("OCPM_RESPONDERS", "3", 1);
    assert_int_equal(conf_load_env(&c, err, sizeof err), 0);
    assert_int_equal(c.responders, 3);
    setenv("OCPM_RESPONDERS", "lots", 1);
    assert_int_equal(conf_load_env(&c, err, sizeof err), -1);
    assert_non_null(strstr(err, "OCPM_RESPONDERS"));
    unsetenv("OCPM_RESPONDERS");
    assert_int_equal(conf_finish(&c, err, sizeof err), 0);
    assert_string_equal(c.db_path, "/tmp/x/ocpm.db");
    /* A bad line names file and line. */
    FILE *f = fopen(path, "w");
    fputs("responders = 2\nthis line is wrong\n", f);
    fclose(f);
    conf_defaults(&c);
    assert_int_equal(conf_load_file(&c, path, err, sizeof err), -1);
    assert_non_null(strstr(err, ":2:"));
    unlink(path);
}

/* Write text to a fresh file; its path in path (a mkstemp template). */
static void conf_file(char *path, const char *text)
{
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void test_pools(void **state)
{
    (void)state;
    static conf_t c, p;
    char err[512], path[] = "/tmp/ocpm-conf-XXXXXX";
    conf_file(path, "state_dir = /tmp/s\nmax_concurrent_runs = 5\ndefault_pool = b\n"
                    "[a]\nusers = alice  bob\nuser = ua\nservers = auto\n[b]\nmax_concurrent_runs = 2\n");
    conf_defaults(&c);
    assert_int_equal(conf_load_file(&c, path, err, sizeof err), 0);
    assert_int_equal(conf_finish(&c, err, sizeof err), 0);
    assert_int_equal(conf_npools(&c), 2);
    assert_int_equal(c.max_concurrent_runs, 5); /* the sections' settings are theirs alone */
    assert_int_equal(conf_pool(&c, 0, &p, err, sizeof err), 0);
    assert_string_equal(p.pool_name, "a");
    assert_string_equal(p.pool_users, "alice  bob");
    assert_string_equal(p.agent_user, "ua");
    assert_true(p.servers >= 1 && p.servers <= CONF_SERVERS_MAX);
    assert_int_equal(p.max_concurrent_runs, 5);
    assert_string_equal(p.workspace_root, "/tmp/s/pools/a/workspaces");
    assert_string_equal(p.agent_home, "/tmp/s/pools/a/agent");
    assert_int_equal(p.nsections, 0);
    assert_int_equal(conf_pool(&c, 1, &p, err, sizeof err), 0);
    assert_int_equal(p.max_concurrent_runs, 2);
    assert_string_equal(p.pool_users, "");
    assert_string_equal(p.agent_user, "");
    unlink(path);
    /* Without sections: one pool, "default", the global settings and paths. */
    conf_defaults(&c);
    snprintf(c.state_dir, sizeof c.state_dir, "/tmp/s");
    assert_int_equal(conf_finish(&c, err, sizeof err), 0);
    assert_int_equal(conf_npools(&c), 1);
    assert_int_equal(conf_pool(&c, 0, &p, err, sizeof err), 0);
    assert_string_equal(p.pool_name, "default");
    assert_string_equal(p.workspace_root, "/tmp/s/workspaces");
    /* What a section may not hold, and what the sections may not say together. */
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"[a]\nresponders = 2\n", "responders cannot be set per pool"},
        {"[a]\nusers = x\n[b]\nusers = y x\n", "user x is in pools a and b"},
        {"default_pool = z\n[a]\n", "default_pool z is not one of"},
        {"[a b]\n", "a pool's name"},
        {"[a]\n[a]\n", "defined twice"},
        {"group = g\n", "belongs in a pool section"},
        {"[a]\nservers = lots\n", "pool a: invalid value"},
        {"workspace_root = /w\n[a]\n", "pool a: set workspaces"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char b[] = "/tmp/ocpm-conf-XXXXXX";
        conf_file(b, bad[i].text);
        conf_defaults(&c);
        int rc = conf_load_file(&c, b, err, sizeof err);
        if (rc == 0)
            rc = conf_finish(&c, err, sizeof err);
        for (int k = 0; rc == 0 && k < conf_npools(&c); k++)
            rc = conf_pool(&c, k, &p, err, sizeof err);
        unlink(b);
        assert_int_equal(rc, -1);
        if (!strstr(err, bad[i].why))
            fail_msg("%s: got %s", bad[i].text, err);
    }
}

/* A reload's comparison: which keys differ, which of them are live, and the copy of those alone. */
typedef struct diff_seen {
    int n, live;
    char keys[512];
} diff_seen_t;

static void diff_note(void *ctx, const char *key, const char *was, const char *now, int live)
{
    diff_seen_t *d = ctx;
    d->n++;
    d->live += live;
    snprintf(d->keys + strlen(d->keys), sizeof d->keys - strlen(d->keys), "%s%s:%s>%s", d->n > 1 ? " " : "", key,
             was, now);
}

static void test_reload_diff(void **state)
{
    (void)state;
    static conf_t a, b;
    char err[256];
    conf_defaults(&a);
    conf_defaults(&b);
    assert_int_equal(conf_diff(&a, &b, 0, NULL, NULL), 0);
    assert_int_equal(conf_set(&b, "run_timeout", "90s", err, sizeof err), 0);
    assert_int_equal(conf_set(&b, "responders", "7", err, sizeof err), 0);
    assert_int_equal(conf_set(&b, "webhook_secret", "s3cret", err, sizeof err), 0);
    assert_int_equal(conf_set(&b, "fallback", "off", err, sizeof err), 0);
    diff_seen_t d = {0};
    assert_int_equal(conf_diff(&a, &b, 0, diff_note, &d), 4);
    assert_int_equal(d.live, 3); /* responders needs a restart */
    assert_non_null(strstr(d.keys, "responders:4>7"));
    assert_non_null(strstr(d.keys, "run_timeout:600000ms>90000ms"));
    assert_null(strstr(d.keys, "s3cret")); /* secrets are compared, never shown */
    /* Only the keys a pool may set, when asked. */
    assert_int_equal(conf_diff(&a, &b, 1, NULL, NULL), 2);
    assert_true(conf_key_live("max_message_bytes"));
    assert_false(conf_key_live("state_dir"));
    assert_false(conf_key_live("no_such_key"));
    /* A string's bytes past its end are not its value. */
    assert_int_equal(conf_set(&a, "log_level", "error", err, sizeof err), 0);
    assert_int_equal(conf_set(&a, "log_level", "info", err, sizeof err), 0);
    assert_int_equal(conf_diff(&a, &b, 0, NULL, NULL), 4);
    conf_apply_live(&a, &b);
    assert_int_equal(a.run_timeout_ms, 90000);
    assert_int_equal(a.fallback, 0);
    assert_string_equal(a.webhook_secret, "s3cret");
    assert_int_equal(a.responders, 4); /* not live: left as it runs */
    assert_int_equal(conf_diff(&a, &b, 0, NULL, NULL), 1);
    /* The FastCGI socket is made as fcgi_socket.new first: its path leaves room for the suffix. */
    char path[120];
    memset(path, 'x', sizeof path);
    path[0] = '/';
    path[104] = '\0';
    assert_int_equal(conf_set(&a, "fcgi_socket", path, err, sizeof err), 0);
    assert_int_equal(conf_finish(&a, err, sizeof err), -1);
    assert_non_null(strstr(err, "max 103 bytes"));
    path[103] = '\0';
    assert_int_equal(conf_set(&a, "fcgi_socket", path, err, sizeof err), 0);
    assert_int_equal(conf_finish(&a, err, sizeof err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_serve_64),
        cmocka_unit_test(test_units),
        cmocka_unit_test(test_money),
        cmocka_unit_test(test_bad_values_name_key_and_value),
        cmocka_unit_test(test_file_and_env),
        cmocka_unit_test(test_node_name),
        cmocka_unit_test(test_pools),
        cmocka_unit_test(test_reload_diff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
