#define _GNU_SOURCE
#include "manager_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* The lock file stays when ocpmd stops: unlinking it would let two managers lock two files. */
int manager_lock(const conf_t *c, char *err, size_t errlen)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/ocpmd.lock", c->state_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open lock file %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char other[32] = "";
        ssize_t n = pread(fd, other, sizeof other - 1, 0);
        if (n > 0)
            other[strcspn(other, "\n")] = '\0';
        snprintf(err, errlen, "another ocpmd (pid %s) is already running on state_dir %s", n > 0 ? other : "?",
                 c->state_dir);
        close(fd);
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        snprintf(err, errlen, "cannot write lock file %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* The FastCGI socket, like PHP-FPM's listen.owner/group/mode: ocpmd's, in fcgi_socket_group (the
 * web server's; never the agent's, agent_setup checked), with fcgi_socket_mode. It is made whole
 * under a name of its own (fcgi_socket.new), then renamed into place (manager_fcgi_publish):
 * nginx never meets a socket that has not its mode yet, and at a reload the new one replaces the
 * old in one step, once the responders behind it run (pool.h). */
static int manager_fcgi_temp(const conf_t *c, struct sockaddr_un *sa)
{
    *sa = (struct sockaddr_un){.sun_family = AF_UNIX};
    return snprintf(sa->sun_path, sizeof sa->sun_path, "%s.new", c->fcgi_socket) >= (int)sizeof sa->sun_path ? -1 : 0;
}

int manager_fcgi_prepare(const conf_t *c, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    if (manager_fcgi_temp(c, &sa) != 0) {
        snprintf(err, errlen, "FastCGI socket %s: the path is too long", c->fcgi_socket);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    gid_t group = getegid();
    if (c->fcgi_socket_group[0]) {
        struct group *g = getgrnam(c->fcgi_socket_group);
        if (!g) {
            snprintf(err, errlen, "fcgi_socket_group %s does not exist", c->fcgi_socket_group);
            close(fd);
            return -1;
        }
        group = g->gr_gid;
    }
    unlink(sa.sun_path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || chown(sa.sun_path, geteuid(), group) != 0 ||
        chmod(sa.sun_path, (mode_t)c->fcgi_socket_mode) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "FastCGI socket %s: %s", sa.sun_path, strerror(errno));
        unlink(sa.sun_path);
        close(fd);
        return -1;
    }
    return fd;
}

int manager_fcgi_publish(const conf_t *c, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    if (manager_fcgi_temp(c, &sa) == 0 && rename(sa.sun_path, c->fcgi_socket) == 0)
        return 0;
    snprintf(err, errlen, "FastCGI socket %s: %s", c->fcgi_socket, strerror(errno));
    unlink(sa.sun_path);
    return -1;
}

void manager_fcgi_discard(const conf_t *c)
{
    struct sockaddr_un sa;
    if (manager_fcgi_temp(c, &sa) == 0)
        unlink(sa.sun_path);
}

int manager_fcgi_listen(const conf_t *c, char *err, size_t errlen)
{
    int fd = manager_fcgi_prepare(c, err, errlen);
    if (fd >= 0 && manager_fcgi_publish(c, err, errlen) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}
