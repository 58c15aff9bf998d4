/* notify: $NOTIFY_SOCKET as a path or an abstract name, what is refused, the watchdog's variables,
 * and the environment emptied of them. Each test owns a datagram socket and reads what was sent. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "notify.h"

/* A receiving socket bound to name ('@': abstract); its fd. */
static int bind_receiver(const char *name)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    memcpy(a.sun_path, name, len);
    if (name[0] == '@')
        a.sun_path[0] = '\0';
    else
        unlink(name);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (name[0] != '@'));
    assert_int_equal(bind(fd, (struct sockaddr *)&a, alen), 0);
    return fd;
}

static void expect_datagram(int fd, const char *want)
{
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void test_path_socket(void **state)
{
    (void)state;
    char path[64], err[256] = "";
    snprintf(path, sizeof path, "/tmp/ocpm-notify-test-%ld", (long)getpid());
    int fd = bind_receiver(path);
    notify_t *n = NULL;
    assert_int_equal(notify_open(path, NULL, NULL, getpid(), &n, err, sizeof err), 0);
    assert_non_null(n);
    assert_string_equal(notify_socket(n), path);
    assert_int_equal(notify_watchdog_usec(n), 0);
    assert_int_equal(notify_send(n, "READY=1"), 0);
    assert_int_equal(notify_send(n, "RELOADING=1\nMONOTONIC_USEC=5"), 0);
    expect_datagram(fd, "READY=1");
    expect_datagram(fd, "RELOADING=1\nMONOTONIC_USEC=5");
    notify_free(n);
    close(fd);
    unlink(path);
}

static void test_abstract_socket(void **state)
{
    (void)state;
    char name[64], err[256] = "";
    snprintf(name, sizeof name, "@ocpm-notify-test-%ld", (long)getpid());
    int fd = bind_receiver(name);
    notify_t *n = NULL;
    assert_int_equal(notify_open(name, NULL, NULL, getpid(), &n, err, sizeof err), 0);
    assert_int_equal(notify_send(n, "STATUS=per-session mode, 0 sessions, 0 running, 0 queued"), 0);
    expect_datagram(fd, "STATUS=per-session mode, 0 sessions, 0 running, 0 queued");
    notify_free(n);
    close(fd);
}

/* Nobody listening: the error comes back to the caller (the manager logs it), nothing exits. */
static void test_no_listener(void **state)
{
    (void)state;
    char err[256] = "";
    notify_t *n = NULL;
    assert_int_equal(notify_open("/nonexistent/ocpm/notify", NULL, NULL, getpid(), &n, err, sizeof err), 0);
    assert_true(notify_send(n, "READY=1") < 0);
    notify_free(n);
}

static void test_refused(void **state)
{
    (void)state;
    char err[256], longpath[200];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    notify_t *n = (notify_t *)&err; /* must be reset to NULL */
    assert_int_equal(notify_open(longpath, NULL, NULL, 1, &n, err, sizeof err), -1);
    assert_null(n);
    assert_non_null(strstr(err, "bytes long"));
    longpath[0] = '@';
    assert_int_equal(notify_open(longpath, NULL, NULL, 1, &n, err, sizeof err), -1);
    /* 107 bytes of path fit (with the NUL); 108 do not. An abstract name may take all 108. */
    longpath[0] = '/';
    longpath[108] = '\0';
    assert_int_equal(notify_open(longpath, NULL, NULL, 1, &n, err, sizeof err), -1);
    longpath[107] = '\0';
    assert_int_equal(notify_open(longpath, NULL, NULL, 1, &n, err, sizeof err), 0);
    notify_free(n);
    longpath[0] = '@';
    longpath[107] = 'a';
    assert_int_equal(notify_open(longpath, NULL, NULL, 1, &n, err, sizeof err), 0);
    notify_free(n);
    static const char *const bad[][3] = {
        {"relative/path", NULL, NULL},
        {"vsock:2:1234", NULL, NULL},
        {"/run/notify", "soon", NULL},
        {"/run/notify", "0", NULL},
        {"/run/notify", "-5", NULL},
        {"/run/notify", "100", "pid"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(notify_open(bad[i][0], bad[i][1], bad[i][2], 1, &n, err, sizeof err), -1);
        assert_null(n);
    }
}

static void test_unset_is_noop(void **state)
{
    (void)state;
    char err[256] = "";
    notify_t *n = (notify_t *)&err;
    assert_int_equal(notify_open(NULL, "1000000", NULL, 1, &n, err, sizeof err), 0);
    assert_null(n);
    assert_int_equal(notify_open("", NULL, NULL, 1, &n, err, sizeof err), 0);
    assert_null(n);
    assert_int_equal(notify_send(NULL, "READY=1"), 0);
    assert_int_equal(notify_watchdog_usec(NULL), 0);
    assert_string_equal(notify_socket(NULL), "");
    notify_free(NULL);
}

static void test_watchdog(void **state)
{
    (void)state;
    char err[256] = "";
    notify_t *n = NULL;
    assert_int_equal(notify_open("@x", "400000", NULL, 42, &n, err, sizeof err), 0);
    assert_int_equal(notify_watchdog_usec(n), 400000);
    notify_free(n);
    assert_int_equal(notify_open("@x", "400000", "42", 42, &n, err, sizeof err), 0);
    assert_int_equal(notify_watchdog_usec(n), 400000);
    notify_free(n);
    /* Meant for another process (the one systemd started, before an exec chain): off, not an error. */
    assert_int_equal(notify_open("@x", "400000", "43", 42, &n, err, sizeof err), 0);
    assert_non_null(n);
    assert_int_equal(notify_watchdog_usec(n), 0);
    notify_free(n);
}

static void test_env_taken(void **state)
{
    (void)state;
    char err[256] = "", name[64];
    snprintf(name, sizeof name, "@ocpm-notify-env-%ld", (long)getpid());
    int fd = bind_receiver(name);
    char pid[32];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    setenv("NOTIFY_SOCKET", name, 1);
    setenv("WATCHDOG_USEC", "2000000", 1);
    setenv("WATCHDOG_PID", pid, 1);
    notify_t *n = NULL;
    assert_int_equal(notify_open_env(&n, err, sizeof err), 0);
    assert_non_null(n);
    assert_int_equal(notify_watchdog_usec(n), 2000000);
    assert_null(getenv("NOTIFY_SOCKET"));
    assert_null(getenv("WATCHDOG_USEC"));
    assert_null(getenv("WATCHDOG_PID"));
    assert_int_equal(notify_send(n, "WATCHDOG=1"), 0);
    expect_datagram(fd, "WATCHDOG=1");
    notify_free(n);
    /* Unusable values are removed too. */
    setenv("NOTIFY_SOCKET", "not-a-path", 1);
    assert_int_equal(notify_open_env(&n, err, sizeof err), -1);
    assert_null(n);
    assert_null(getenv("NOTIFY_SOCKET"));
    assert_int_equal(notify_open_env(&n, err, sizeof err), 0);
    assert_null(n);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_socket),   cmocka_unit_test(test_abstract_socket),
        cmocka_unit_test(test_no_listener),   cmocka_unit_test(test_refused),
        cmocka_unit_test(test_unset_is_noop), cmocka_unit_test(test_watchdog),
        cmocka_unit_test(test_env_taken),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
