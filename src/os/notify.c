/* notify: systemd's notification datagrams (notify.h). */
#define _GNU_SOURCE
#include "notify.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct notify {
    int fd;
    struct sockaddr_un addr;
    socklen_t addrlen;
    uint64_t watchdog_usec;
    char socket[sizeof ((struct sockaddr_un *)0)->sun_path + 1];
};

/* A decimal number, all of s, in (0, max]. */
static int notify_number(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end = NULL;
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v == 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

/* The address: a path ('/', NUL-terminated within sun_path) or an abstract name ('@' becomes the
 * leading NUL; the length, not a terminator, ends it). */
static int notify_address(notify_t *n, const char *s, char *err, size_t errlen)
{
    size_t len = strlen(s), room = sizeof n->addr.sun_path;
    if (s[0] != '/' && s[0] != '@')
        return snprintf(err, errlen, "NOTIFY_SOCKET %s: neither a path nor an abstract socket ('@')", s), -1;
    if (len > room - (s[0] == '/'))
        return snprintf(err, errlen, "NOTIFY_SOCKET is %zu bytes long; a socket address holds %zu", len,
                        room - (s[0] == '/')), -1;
    n->addr.sun_family = AF_UNIX;
    memcpy(n->addr.sun_path, s, len);
    if (s[0] == '@')
        n->addr.sun_path[0] = '\0';
    n->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (s[0] == '/'));
    snprintf(n->socket, sizeof n->socket, "%s", s);
    return 0;
}

/* The watchdog: on when usec is set and the pid, if named, is ours. */
static int notify_watchdog(notify_t *n, const char *usec, const char *pid, pid_t self, char *err, size_t errlen)
{
    unsigned long long v = 0, p = 0;
    if (!usec || !*usec)
        return 0;
    if (notify_number(usec, UINT64_MAX, &v) != 0)
        return snprintf(err, errlen, "WATCHDOG_USEC %s: not a positive number of microseconds", usec), -1;
    if (pid && *pid && notify_number(pid, INT32_MAX, &p) != 0)
        return snprintf(err, errlen, "WATCHDOG_PID %s: not a process id", pid), -1;
    n->watchdog_usec = pid && *pid && (pid_t)p != self ? 0 : v;
    return 0;
}

int notify_open(const char *socket_name, const char *watchdog_usec, const char *watchdog_pid, pid_t self,
                notify_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!socket_name || !*socket_name)
        return 0;
    notify_t *n = calloc(1, sizeof *n);
    if (!n)
        return snprintf(err, errlen, "out of memory"), -1;
    n->fd = -1;
    if (notify_address(n, socket_name, err, errlen) != 0 ||
        notify_watchdog(n, watchdog_usec, watchdog_pid, self, err, errlen) != 0) {
        notify_free(n);
        return -1;
    }
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (n->fd < 0) {
        snprintf(err, errlen, "cannot make a datagram socket: %s", strerror(errno));
        notify_free(n);
        return -1;
    }
    *out = n;
    return 0;
}

int notify_open_env(notify_t **out, char *err, size_t errlen)
{
    static const char *const names[] = {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"};
    char *v[3];
    for (size_t i = 0; i < 3; i++) {
        const char *s = getenv(names[i]);
        v[i] = s ? strdup(s) : NULL;
        unsetenv(names[i]);
        if (s && !v[i]) {
            for (size_t j = 0; j < i; j++)
                free(v[j]);
            *out = NULL;
            return snprintf(err, errlen, "out of memory"), -1;
        }
    }
    int rc = notify_open(v[0], v[1], v[2], getpid(), out, err, errlen);
    for (size_t i = 0; i < 3; i++)
        free(v[i]);
    return rc;
}

void notify_free(notify_t *n)
{
    if (!n)
        return;
    if (n->fd >= 0)
        close(n->fd);
    free(n);
}

int notify_send(notify_t *n, const char *msg)
{
    if (!n)
        return 0;
    ssize_t w;
    do
        w = sendto(n->fd, msg, strlen(msg), MSG_NOSIGNAL, (const struct sockaddr *)&n->addr, n->addrlen);
    while (w < 0 && errno == EINTR);
    return w < 0 ? -errno : 0;
}

uint64_t notify_watchdog_usec(const notify_t *n) { return n ? n->watchdog_usec : 0; }

const char *notify_socket(const notify_t *n) { return n ? n->socket : ""; }
