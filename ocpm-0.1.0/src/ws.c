#define _GNU_SOURCE
#include "ws.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int ws_inside(const char *root, const char *path)
{
    size_t n = strlen(root);
    return strncmp(path, root, n) == 0 && (path[n] == '/' || (n == 1 && root[0] == '/'));
}

int ws_resolve(const char *root, const char *name, char *out, size_t outlen, const char **why)
{
    char real_root[PATH_MAX];
    if (mkdir(root, 0700) != 0 && errno != EEXIST) {
        *why = "cannot create workspace_root";
        return -1;
    }
    if (!realpath(root, real_root)) {
        *why = "workspace_root is not reachable";
        return -1;
    }
    const char *rel = name;
    if (name[0] == '/') {
        /* valid_workspace() checked it starts with root + "/". */
        size_t rl = strlen(root);
        while (rl > 1 && root[rl - 1] == '/')
            rl--;
        rel = name + rl + 1;
    }
    char cur[PATH_MAX];
    snprintf(cur, sizeof cur, "%s", real_root);
    char seg[NAME_MAX + 1];
    const char *p = rel;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0 || n > NAME_MAX) {
            *why = "invalid workspace segment";
            return -1;
        }
        memcpy(seg, p, n);
        seg[n] = '\0';
        char next[PATH_MAX];
        if ((size_t)snprintf(next, sizeof next, "%s/%s", cur, seg) >= sizeof next) {
            *why = "workspace path too long";
            return -1;
        }
        struct stat st;
        if (lstat(next, &st) != 0) {
            if (errno != ENOENT || (mkdir(next, 0700) != 0 && errno != EEXIST)) {
                *why = "cannot create workspace directory";
                return -1;
            }
        }
        char r[PATH_MAX];
        if (!realpath(next, r)) {
            *why = "workspace path does not resolve (dangling symlink?)";
            return -1;
        }
        if (!ws_inside(real_root, r)) {
            *why = "workspace escapes workspace_root through a symlink";
            return -1;
        }
        if (stat(r, &st) != 0 || !S_ISDIR(st.st_mode)) {
            *why = "workspace is not a directory";
            return -1;
        }
        snprintf(cur, sizeof cur, "%s", r);
        if (!e)
            break;
        p = e + 1;
    }
    if (strcmp(cur, real_root) == 0) {
        *why = "workspace must be below workspace_root, not the root itself";
        return -1;
    }
    if (strlen(cur) >= outlen) {
        *why = "workspace path too long";
        return -1;
    }
    memcpy(out, cur, strlen(cur) + 1);
    return 0;
}
