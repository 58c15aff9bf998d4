/* ws: workspace resolution on a real temporary directory, symlinks included. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ws.h"

static char base[64], root[256], outside[256];

static int setup(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/ocpm-ws-XXXXXX";
    char *d = mkdtemp(tmpl);
    if (!d)
        return -1;
    snprintf(base, sizeof base, "%s", d);
    snprintf(root, sizeof root, "%s/root", d);
    snprintf(outside, sizeof outside, "%s/outside", d);
    mkdir(root, 0700);
    mkdir(outside, 0700);
    char link[300];
    snprintf(link, sizeof link, "%s/escape", root);
    if (symlink(outside, link) != 0)
        return -1;
    snprintf(link, sizeof link, "%s/inner", root);
    mkdir(link, 0700);
    snprintf(link, sizeof link, "%s/alias", root);
    return symlink("inner", link);
}

static int teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_creates_nested(void **state)
{
    (void)state;
    char out[4096], want[600];
    const char *why = NULL;
    assert_int_equal(ws_resolve(root, "team/proj", out, sizeof out, &why), 0);
    char real[4096];
    assert_non_null(realpath(root, real));
    snprintf(want, sizeof want, "%s/team/proj", real);
    assert_string_equal(out, want);
    struct stat st;
    assert_int_equal(stat(out, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    /* Absolute inside the root is the same workspace. */
    char abs[600], out2[4096];
    snprintf(abs, sizeof abs, "%s/team/proj", root);
    assert_int_equal(ws_resolve(root, abs, out2, sizeof out2, &why), 0);
    assert_string_equal(out, out2);
}

static void test_symlink_escape_refused(void **state)
{
    (void)state;
    char out[4096];
    const char *why = NULL;
    assert_int_equal(ws_resolve(root, "escape", out, sizeof out, &why), -1);
    assert_non_null(strstr(why, "symlink"));
    assert_int_equal(ws_resolve(root, "escape/sub", out, sizeof out, &why), -1);
    /* Nothing was created outside. */
    char sub[300];
    snprintf(sub, sizeof sub, "%s/sub", outside);
    assert_int_not_equal(access(sub, F_OK), 0);
    /* A symlink that stays inside is fine. */
    assert_int_equal(ws_resolve(root, "alias", out, sizeof out, &why), 0);
    assert_non_null(strstr(out, "/inner"));
}

static void test_file_is_not_workspace(void **state)
{
    (void)state;
    char f[300], out[4096];
    snprintf(f, sizeof f, "%s/afile", root);
    FILE *fp = fopen(f, "w");
    assert_non_null(fp);
    fclose(fp);
    const char *why = NULL;
    assert_int_equal(ws_resolve(root, "afile", out, sizeof out, &why), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_creates_nested),
        cmocka_unit_test(test_symlink_escape_refused),
        cmocka_unit_test(test_file_is_not_workspace),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
