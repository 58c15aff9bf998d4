/* ctl_cluster_front: the front's address for a node, the front's nodes part, Prometheus' configuration. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl_cluster.h"

static void test_addresses(void **state)
{
    (void)state;
    char a[96];
    assert_int_equal(ctl_front_address("http://10.0.0.11:8080", a, sizeof a), 0);
    assert_string_equal(a, "10.0.0.11:8080");
    assert_int_equal(ctl_front_address("http://[fd00::11]:80/", a, sizeof a), 0);
    assert_string_equal(a, "[fd00::11]:80");
    /* Anything nginx would write back otherwise, or could not reach as given, is refused. */
    static const char *const bad[] = {
        "http://node1:8080",        "https://10.0.0.1:443",     "http://10.0.0.01:8080",  "http://10.0.0.1",
        "http://10.0.0.1:08080",    "http://10.0.0.1:0",        "http://10.0.0.1:65536",  "http://10.0.0.1:80/x",
        "http://[FD00::11]:80",     "http://[fd00:0::11]:80",   "http://[fd00::11]",      "http://fd00::11:80",
        "http://10.0.0.1:80?x",     "http://[::1]x:80",         "http://10.0.0.1:8080 ",  "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(ctl_front_address(bad[i], a, sizeof a), -1);
}

static char *written(int (*fn)(const ctl_cluster_t *, FILE *, char *, size_t), const char *text, char *err, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ctl_cluster_t *cl = ctl_cluster_parse(text, "f", err, 256);
    assert_non_null(cl);
    *rc = fn(cl, f, err, 256);
    fclose(f);
    ctl_cluster_free(cl);
    return buf;
}

static void test_front_conf(void **state)
{
    (void)state;
    char err[256];
    int rc;
    char *out = written(ctl_front_conf, "n1 http://127.0.0.1:9001\n# c\nn2 http://[::1]:9002/\n", err, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "upstream ocpm_place {\n    least_conn;"));
    assert_non_null(strstr(out, "    server 127.0.0.1:9001 max_fails=1 fail_timeout=2s;\n    server [::1]:9002 max_fails"));
    assert_non_null(strstr(out, "upstream ocpm_node_n2 {\n    zone ocpm_node_n2 64k;\n    server [::1]:9002;"));
    assert_non_null(strstr(out, "    n1 ocpm_node_n1;\n    n2 ocpm_node_n2;\n"));
    assert_non_null(strstr(out, "    \"[::1]:9002\" n2;\n"));
    assert_non_null(strstr(out, "map $ocpm_placed_addr $ocpm_placed_target {\n    default \"\";\n    \"127.0.0.1:9001\" 127.0.0.1:9001;"));
    assert_non_null(strstr(out, "default '[\"n1\",\"n2\"]';"));
    free(out);
    out = written(ctl_front_conf, "n1 http://127.0.0.1:9001\nn2 http://node2:9001\n", err, &rc);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "node n2: the front needs"));
    free(out);
}

static int prom(const ctl_cluster_t *cl, FILE *f, char *err, size_t n)
{
    return ctl_prometheus_conf(cl, "front.example:80", "/etc/p/pw", f, err, n);
}

static void test_prometheus(void **state)
{
    (void)state;
    char err[256];
    int rc;
    char *out = written(prom, "n1 http://10.0.0.1:80\nweb-2 http://node:80\n", err, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "basic_auth: {username: operator, password_file: \"/etc/p/pw\"}"));
    assert_non_null(strstr(out, "      - targets: [\"front.example:80\"]\n        labels: {node: web-2}\n"));
    assert_non_null(strstr(out, "replacement: /nodes/${1}/metrics"));
    free(out);
    ctl_cluster_t *cl = ctl_cluster_parse("n1 http://10.0.0.1:80\n", "f", err, sizeof err);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(ctl_prometheus_conf(cl, "front\"x:80", "/p", f, err, sizeof err), -1);
    assert_int_equal(ctl_prometheus_conf(cl, "front:80", "relative", f, err, sizeof err), -1);
    assert_int_equal(ctl_prometheus_conf(cl, "front:80", "/a\"}\n", f, err, sizeof err), -1);
    assert_int_equal(ctl_prometheus_conf(cl, "front", "/p", f, err, sizeof err), -1);
    fclose(f);
    assert_int_equal(len, 0);
    free(buf);
    ctl_cluster_free(cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_front_conf),
        cmocka_unit_test(test_prometheus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
