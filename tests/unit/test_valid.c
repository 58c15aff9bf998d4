/* valid: ids, UTF-8, workspace names, models. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "valid.h"

static void test_nodes(void **state)
{
    (void)state;
    assert_true(valid_node("n1"));
    assert_true(valid_node("web-01"));
    assert_true(valid_node("0"));
    assert_true(valid_node("abcdefghijklmnopqrstuvwxyz012345")); /* 32 */
    assert_false(valid_node("abcdefghijklmnopqrstuvwxyz0123456"));
    assert_false(valid_node(""));
    assert_false(valid_node("-a"));
    assert_false(valid_node("a-"));
    assert_false(valid_node("A"));
    assert_false(valid_node("a_b"));
    assert_false(valid_node("a.b"));
    char node[VALID_NODE_MAX + 1] = "";
    assert_true(valid_id_node("s_n1_0123456789abcdef01234567", node));
    assert_string_equal(node, "n1");
    assert_true(valid_id_node("s_web-01_mine_too", node));
    assert_string_equal(node, "web-01");
    assert_true(valid_id_node("s_n2_x", NULL));
    assert_false(valid_id_node("s_n1_", node));     /* nothing after the node */
    assert_false(valid_id_node("s_n1", node));      /* no second '_' */
    assert_false(valid_id_node("s__x", node));      /* no node */
    assert_false(valid_id_node("s_N1_x", node));    /* not a node name */
    assert_false(valid_id_node("s_-n_x", node));
    assert_false(valid_id_node("x_n1_x", node));
    assert_false(valid_id_node("demo", node));
    assert_false(valid_id_node("s_abcdefghijklmnopqrstuvwxyz0123456_x", node)); /* node of 33 */
}

static void test_ids(void **state)
{
    (void)state;
    assert_true(valid_id("a"));
    assert_true(valid_id("Session_1-x"));
    char max[65];
    memset(max, 'a', 64);
    max[64] = '\0';
    assert_true(valid_id(max));
    char over[66];
    memset(over, 'a', 65);
    over[65] = '\0';
    assert_false(valid_id(over));
    assert_false(valid_id(""));
    assert_false(valid_id("a b"));
    assert_false(valid_id("a/b"));
    assert_false(valid_id("a.b"));
    assert_false(valid_id("é"));
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(valid_utf8("plain", 5));
    assert_true(valid_utf8("caf\xc3\xa9", 5));
    assert_true(valid_utf8("\xf0\x9f\x98\x80", 4));
    assert_false(valid_utf8("a\0b", 3));               /* NUL */
    assert_false(valid_utf8("\xc3", 1));               /* truncated */
    assert_false(valid_utf8("\xc0\xaf", 2));           /* overlong */
    assert_false(valid_utf8("\xe0\x80\xaf", 3));       /* overlong */
    assert_false(valid_utf8("\xed\xa0\x80", 3));       /* surrogate */
    assert_false(valid_utf8("\xf4\x90\x80\x80", 4));   /* > U+10FFFF */
    assert_false(valid_utf8("\xff", 1));
    assert_false(valid_utf8("\x80", 1));               /* lone continuation */
}

static void test_workspaces(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_true(valid_workspace("proj", &why));
    assert_true(valid_workspace("team/proj-1.v2", &why));
    assert_false(valid_workspace("/srv/ws/proj", &why)); /* a server path is never a name */
    assert_false(valid_workspace("/srv/other", &why));
    assert_false(valid_workspace("/srv/wsx/p", &why));
    assert_false(valid_workspace("/srv/ws/", &why));
    assert_false(valid_workspace("../etc", &why));
    assert_false(valid_workspace("a/../../b", &why));
    assert_false(valid_workspace("a/./b", &why));
    assert_false(valid_workspace("a//b", &why));
    assert_false(valid_workspace("a/", &why));
    assert_false(valid_workspace("", &why));
    assert_false(valid_workspace("a b", &why));
    assert_non_null(why);
}

static void test_models(void **state)
{
    (void)state;
    assert_true(valid_model("openai/gpt-4o"));
    assert_true(valid_model("offline/offline"));
    assert_false(valid_model("noslash"));
    assert_false(valid_model("-m/x"));
    assert_false(valid_model("a/b c"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_nodes),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_workspaces),
        cmocka_unit_test(test_models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
