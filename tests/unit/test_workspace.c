/* ws: workspaces per owner on a real temporary directory; no symlink anywhere below the root,
 * at creation and at the check before a run. */
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

#include "agent.h"
#include "conf.h"
#include "workspace.h"

static char base[64], root[256], outside[256];
static agent_t *agent;

static int setup(void **state)
{
    (void)state;
    /* The agent as ocpmd's own user: the tests run as whoever runs them. */
    static conf_t c;
    char err[256];
    conf_defaults(&c);
    snprintf(c.agent_user, sizeof c.agent_user, "self");
    if (conf_finish(&c, err, sizeof err) != 0 || !(agent = agent_setup(&c, err, sizeof err)))
        return -1;
    char tmpl[] = "/tmp/ocpm-ws-XXXXXX";
    char *d = mkdtemp(tmpl);
    if (!d)
        return -1;
    snprintf(base, sizeof base, "%s", d);
    snprintf(root, sizeof root, "%s/root", d);
    snprintf(outside, sizeof outside, "%s/outside", d);
    mkdir(root, 0711);
    mkdir(outside, 0700);
    return 0;
}

static int teardown(void **state)
{
    agent_free(agent);
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_creates_nested_per_owner(void **state)
{
    (void)state;
    char out[4096], want[600], real[4096];
    const char *why = NULL;
    assert_int_equal(workspace_resolve(agent, root, "alice", "team/proj", out, sizeof out, &why), 0);
    assert_non_null(realpath(root, real));
    snprintf(want, sizeof want, "%s/alice/team/proj", real);
    assert_string_equal(out, want);
    struct stat st;
    assert_int_equal(stat(out, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0700);
    /* The same name of another owner is another directory. */
    char other[4096];
    assert_int_equal(workspace_resolve(agent, root, "bob", "team/proj", other, sizeof other, &why), 0);
    assert_string_not_equal(out, other);
    /* The unauthenticated owner has a directory no user name can have. */
    assert_int_equal(workspace_resolve(agent, root, "", "p", other, sizeof other, &why), 0);
    assert_non_null(strstr(other, "/@anonymous/p"));
    assert_string_equal(workspace_name(root, "alice", out), "team/proj");
    /* A name is never a server path. */
    assert_int_equal(workspace_resolve(agent, root, "alice", "/etc", other, sizeof other, &why), -1);
}

static void test_owner_dir_names(void **state)
{
    (void)state;
    char a[80], b[80];
    agent_owner_dir("alice", a, sizeof a);
    assert_string_equal(a, "alice");
    agent_owner_dir("", a, sizeof a);
    assert_string_equal(a, "@anonymous");
    /* Names that are not plain become a digest: no '/', no "..", no collision with a plain one. */
    agent_owner_dir("../etc", a, sizeof a);
    assert_int_equal(a[0], '@');
    assert_null(strchr(a, '/'));
    agent_owner_dir("@anonymous", b, sizeof b);
    assert_string_not_equal(b, "@anonymous");
}

static void test_symlinks_refused(void **state)
{
    (void)state;
    char out[4096], link[300], dir[300];
    const char *why = NULL;
    snprintf(dir, sizeof dir, "%s/carol", root);
    mkdir(dir, 0711);
    snprintf(link, sizeof link, "%s/carol/escape", root);
    assert_int_equal(symlink(outside, link), 0);
    assert_int_equal(workspace_resolve(agent, root, "carol", "escape", out, sizeof out, &why), -1);
    assert_non_null(strstr(why, "symlink"));
    assert_int_equal(workspace_resolve(agent, root, "carol", "escape/sub", out, sizeof out, &why), -1);
    char sub[300];
    snprintf(sub, sizeof sub, "%s/sub", outside);
    assert_int_not_equal(access(sub, F_OK), 0); /* nothing was created outside */
    /* Even a link that stays inside is refused: the walk follows none. */
    snprintf(link, sizeof link, "%s/carol/alias", root);
    assert_int_equal(symlink("escape", link), 0);
    assert_int_equal(workspace_resolve(agent, root, "carol", "alias", out, sizeof out, &why), -1);
}

static void test_check_before_a_run(void **state)
{
    (void)state;
    char out[4096];
    const char *why = NULL;
    int has_git = -1;
    assert_int_equal(workspace_resolve(agent, root, "dave", "w", out, sizeof out, &why), 0);
    int fd = workspace_check(agent, root, out, &has_git, &why);
    assert_true(fd >= 0);
    assert_int_equal(has_git, 0);
    close(fd);
    /* A repository with its first commit (as project.c leaves it). */
    char p[4200];
    snprintf(p, sizeof p, "%s/.git", out);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/.git/refs", out);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/.git/refs/heads", out);
    mkdir(p, 0700);
    static const char *const files[] = {"/.git/HEAD", "/.git/refs/heads/main"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s%s", out, files[i]);
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fclose(f);
    }
    fd = workspace_check(agent, root, out, &has_git, &why);
    assert_true(fd >= 0);
    assert_int_equal(has_git, 1);
    close(fd);
    /* Swapped for a symlink after creation: refused, nothing runs. */
    char moved[4200];
    snprintf(moved, sizeof moved, "%s.moved", out);
    assert_int_equal(rename(out, moved), 0);
    assert_int_equal(symlink("/etc", out), 0);
    assert_int_equal(workspace_check(agent, root, out, &has_git, &why), -1);
    assert_non_null(strstr(why, "symlink"));
    /* Gone altogether. */
    unlink(out);
    assert_int_equal(workspace_check(agent, root, out, &has_git, &why), -1);
    assert_non_null(strstr(why, "gone"));
    /* Outside the root. */
    assert_int_equal(workspace_check(agent, root, "/etc", &has_git, &why), -1);
}

static void test_file_is_not_workspace(void **state)
{
    (void)state;
    char f[300], out[4096], dir[300];
    snprintf(dir, sizeof dir, "%s/erin", root);
    mkdir(dir, 0711);
    snprintf(f, sizeof f, "%s/erin/afile", root);
    FILE *fp = fopen(f, "w");
    assert_non_null(fp);
    fclose(fp);
    const char *why = NULL;
    assert_int_equal(workspace_resolve(agent, root, "erin", "afile", out, sizeof out, &why), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_creates_nested_per_owner), cmocka_unit_test(test_owner_dir_names),
        cmocka_unit_test(test_symlinks_refused), cmocka_unit_test(test_check_before_a_run),
        cmocka_unit_test(test_file_is_not_workspace),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
