#define _GNU_SOURCE
#include "workspace.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

/* The root as a real path (it may be configured through a symlink; nothing below it may be). */
static int workspace_real_root(const char *root, char *out, const char **why)
{
    if (!realpath(root, out)) {
        *why = "workspace_root is not reachable";
        return -1;
    }
    return 0;
}

int workspace_path(const char *root, const char *owner, const char *name, char *out, size_t outlen, const char **why)
{
    char real[PATH_MAX], od[80];
    if (workspace_real_root(root, real, why) != 0)
        return -1;
    agent_owner_dir(owner, od, sizeof od);
    if ((size_t)snprintf(out, outlen, "%s/%s/%s", real, od, name) >= outlen) {
        *why = "workspace path too long";
        return -1;
    }
    return 0;
}

int workspace_resolve(const agent_t *agent, const char *root, const char *owner, const char *name, char *out, size_t outlen, const char **why)
{
    char cur[PATH_MAX], od[80];
    if (workspace_real_root(root, cur, why) != 0)
        return -1;
    if (name[0] == '/') {
        *why = "workspace must be a relative name";
        return -1;
    }
    agent_owner_dir(owner, od, sizeof od);
    size_t used = strlen(cur);
    const char *p = name;
    /* The owner's directory first, then each segment: ocpmd's above the leaf, the agent's at it. */
    for (int first = 1;; first = 0) {
        const char *seg = first ? od : p;
        size_t n = first ? strlen(od) : strcspn(p, "/");
        int leaf = !first && p[n] == '\0';
        if (n == 0 || n > NAME_MAX || used + 1 + n >= sizeof cur) {
            *why = "workspace name too long";
            return -1;
        }
        cur[used++] = '/';
        memcpy(cur + used, seg, n);
        used += n;
        cur[used] = '\0';
        struct stat st;
        int existed = lstat(cur, &st) == 0;
        if (existed && !S_ISDIR(st.st_mode)) {
            *why = S_ISLNK(st.st_mode) ? "workspace path holds a symlink" : "workspace is not a directory";
            return -1;
        }
        if (existed && (st.st_uid == agent_uid(agent)) != leaf && agent_uid(agent) != geteuid()) {
            /* An agent's directory above the leaf is another workspace; one of ocpmd's at the leaf
             * holds other workspaces. Neither may become this one. */
            *why = leaf ? "workspace holds other workspaces" : "workspace lies inside another workspace";
            return -1;
        }
        const char *mwhy = NULL;
        if (agent_mkdir(agent, cur, leaf ? AGENT_DIR_AGENT : AGENT_DIR_OCPM, leaf ? 0700 : 0711, &mwhy) != 0) {
            *why = "cannot create workspace directory";
            return -1;
        }
        if (leaf)
            break;
        if (!first)
            p += n + 1;
    }
    if (used >= outlen) {
        *why = "workspace path too long";
        return -1;
    }
    memcpy(out, cur, used + 1);
    return 0;
}

const char *workspace_name(const char *root, const char *owner, const char *path)
{
    char real[PATH_MAX], od[80];
    const char *r = realpath(root, real) ? real : root;
    size_t n = strlen(r);
    if (strncmp(path, r, n) != 0 || path[n] != '/')
        return path;
    path += n + 1;
    agent_owner_dir(owner, od, sizeof od);
    size_t m = strlen(od);
    if (strncmp(path, od, m) == 0 && path[m] == '/')
        path += m + 1;
    return path;
}

int workspace_check(const agent_t *agent, const char *root, const char *path, int *has_git, const char **why)
{
    char real[PATH_MAX];
    if (workspace_real_root(root, real, why) != 0)
        return -1;
    size_t n = strlen(real);
    if (strncmp(path, real, n) != 0 || path[n] != '/' || !path[n + 1]) {
        *why = "the workspace is no longer under workspace_root";
        return -1;
    }
    int fd = open(real, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        *why = "workspace_root is not reachable";
        return -1;
    }
    char seg[NAME_MAX + 1];
    for (const char *p = path + n + 1; *p;) {
        size_t len = strcspn(p, "/");
        if (len == 0 || len > NAME_MAX) {
            close(fd);
            *why = "the workspace path is malformed";
            return -1;
        }
        memcpy(seg, p, len);
        seg[len] = '\0';
        p += len + (p[len] == '/');
        /* O_NOFOLLOW with O_PATH opens a link itself, which O_DIRECTORY then refuses. */
        int next = openat(fd, seg, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(fd);
        if (next < 0) {
            *why = errno == ENOENT ? "the workspace directory is gone"
                                   : "the workspace path holds a symlink or something that is not a directory";
            return -1;
        }
        fd = next;
        struct stat st;
        if (fstat(fd, &st) != 0) {
            close(fd);
            *why = "the workspace cannot be examined";
            return -1;
        }
        int leaf = *p == '\0';
        uid_t want = leaf ? agent_uid(agent) : geteuid();
        if (st.st_uid != want) {
            /* ocpmd's own directory at the leaf (made before the agent had a user of its own) is
             * handed over; anything else is someone else's. */
            const char *mwhy = NULL;
            if (!(leaf && st.st_uid == geteuid() && agent_mkdir(agent, path, AGENT_DIR_AGENT, 0700, &mwhy) == 0)) {
                close(fd);
                *why = leaf ? "the workspace belongs to another user" : "a directory above the workspace belongs to another user";
                return -1;
            }
        }
    }
    /* A repository with its first commit (project.h): .git a directory of the agent's, HEAD, and
     * the branch ocpm made (or refs packed by the agent's own git). */
    struct stat g, h, r;
    *has_git = fstatat(fd, ".git", &g, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(g.st_mode) && g.st_uid == agent_uid(agent) &&
               fstatat(fd, ".git/HEAD", &h, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(h.st_mode) &&
               (fstatat(fd, ".git/refs/heads/main", &r, AT_SYMLINK_NOFOLLOW) == 0 ||
                fstatat(fd, ".git/packed-refs", &r, AT_SYMLINK_NOFOLLOW) == 0);
    return fd;
}
