/* Who the responders run as (responder_user): they parse every request, hostile ones included, so
 * under root they get a user of their own (PHP-FPM's pool user), with no capability. They need
 * only what they inherit (the FastCGI socket, the shared pages) and the control socket, which is
 * made theirs; its directories must let them reach it. */
#define _GNU_SOURCE
#include "pool.h"

#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* May uid (with gid alone: the responders drop supplementary groups) search every directory above
 * path? */
static int pool_user_reaches(const char *path, uid_t uid, gid_t gid)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    for (char *slash = strrchr(dir, '/'); slash; slash = strrchr(dir, '/')) {
        *slash = '\0';
        struct stat st;
        if (stat(*dir ? dir : "/", &st) != 0)
            return 0;
        mode_t x = st.st_uid == uid ? S_IXUSR : st.st_gid == gid ? S_IXGRP : S_IXOTH;
        if (!(st.st_mode & x))
            return 0;
    }
    return 1;
}

static void pool_user_self(pool_user_t *out)
{
    struct passwd *pw = getpwuid(geteuid());
    *out = (pool_user_t){.uid = -1, .gid = -1};
    snprintf(out->name, sizeof out->name, "%s", pw ? pw->pw_name : "self");
}

int pool_user_resolve(const conf_t *c, const uid_t *agents, int nagents, pool_user_t *out, char *err, size_t errlen)
{
    int automatic = !c->responder_user[0];
    /* Automatic: a user of their own under root only. An unprivileged manager with capabilities
     * keeps them as its own user (they hold none after exec): signalling another user's process
     * would need CAP_KILL too. */
    const char *name = !automatic ? c->responder_user : geteuid() == 0 ? CONF_RESPONDER_USER_DEFAULT : "self";
    if (strcmp(name, "self") == 0)
        return pool_user_self(out), 0;
    struct passwd *pw = getpwnam(name);
    if (!pw)
        return snprintf(err, errlen, "responder_user %s does not exist (scripts/setup creates it: useradd --system "
                                     "--home-dir /nonexistent --shell /usr/sbin/nologin %s)", name, name), -1;
    if (pw->pw_uid == 0 || pw->pw_uid == geteuid())
        return snprintf(err, errlen, "responder_user %s is root or ocpmd's own user; say responder_user = self if "
                                     "that is meant", name), -1;
    for (int i = 0; i < nagents; i++)
        if (pw->pw_uid == agents[i])
            return snprintf(err, errlen, "responder_user %s is an agent's user: the agent would be the pool", name), -1;
    if (!pool_user_reaches(c->control_socket, pw->pw_uid, pw->pw_gid)) {
        if (!automatic)
            return snprintf(err, errlen, "responder_user %s cannot reach control_socket %s (a directory above it is "
                                         "not searchable by it)", name, c->control_socket), -1;
        log_warn("responders run as ocpmd's own user: the responder user cannot reach the control socket",
                 "user=%s control_socket=%s", name, log_q(c->control_socket));
        return pool_user_self(out), 0;
    }
    *out = (pool_user_t){.uid = (long)pw->pw_uid, .gid = (long)pw->pw_gid};
    snprintf(out->name, sizeof out->name, "%s", name);
    return 0;
}
