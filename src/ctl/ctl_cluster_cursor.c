/* ctl_cluster_cursor: history's cursor across nodes, `NAME:ID,NAME:ID` (ctl_cluster.h), ID 0 for a
 * node nothing was taken from yet. A cursor is typed by an operator or pasted from an earlier page:
 * every part is checked, and a bad one is an error, never a page from somewhere else. */
#define _GNU_SOURCE
#include "ctl_cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CTL_CURSOR_MAX (CTL_CLUSTER_MAX * (CTL_CLUSTER_NAME_MAX + 22))

/* One `NAME:ID` (len bytes at p) into before[]: 0, or -1 with err. */
static int ctl_cursor_part(const ctl_cluster_t *cl, const char *p, size_t len, long long *before, char *seen,
                           char *err, size_t errlen)
{
    const char *colon = memchr(p, ':', len);
    if (!colon)
        return snprintf(err, errlen, "\"%.*s\" is not NAME:ID", (int)(len > 64 ? 64 : len), p), -1;
    int i = ctl_cluster_find(cl, p, (size_t)(colon - p));
    if (i < 0)
        return snprintf(err, errlen, "\"%.*s\" is no node of the cluster file", (int)(colon - p > 32 ? 32 : colon - p), p), -1;
    const char *id = colon + 1;
    size_t idlen = len - (size_t)(id - p);
    char digits[24];
    if (idlen == 0 || idlen > 19 || strspn(id, "0123456789") < idlen)
        return snprintf(err, errlen, "node %s: the id must be 0 or a positive integer", ctl_cluster_name(cl, i)), -1;
    memcpy(digits, id, idlen);
    digits[idlen] = '\0';
    errno = 0;
    long long v = strtoll(digits, NULL, 10);
    if (errno || v < 0)
        return snprintf(err, errlen, "node %s: the id must be 0 or a positive integer", ctl_cluster_name(cl, i)), -1;
    if (seen[i])
        return snprintf(err, errlen, "node %s appears twice", ctl_cluster_name(cl, i)), -1;
    seen[i] = 1;
    before[i] = v;
    return 0;
}

int ctl_cursor_parse(const ctl_cluster_t *cl, const char *s, long long *before, char *err, size_t errlen)
{
    size_t n = ctl_cluster_count(cl), len = strlen(s);
    char seen[CTL_CLUSTER_MAX] = {0};
    memset(before, 0, n * sizeof *before);
    if (len == 0 || len > CTL_CURSOR_MAX)
        return snprintf(err, errlen, "--cursor: expected NAME:ID,NAME:ID (a next_cursor)"), -1;
    for (const char *p = s;;) {
        const char *comma = strchr(p, ',');
        size_t plen = comma ? (size_t)(comma - p) : strlen(p);
        char why[160];
        if (ctl_cursor_part(cl, p, plen, before, seen, why, sizeof why) != 0) {
            memset(before, 0, n * sizeof *before);
            return snprintf(err, errlen, "--cursor: %s", why), -1;
        }
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

char *ctl_cursor_format(const ctl_cluster_t *cl, const long long *before)
{
    size_t n = ctl_cluster_count(cl), off = 0;
    char *s = malloc(CTL_CURSOR_MAX + 1);
    if (!s)
        return NULL;
    s[0] = '\0';
    for (size_t i = 0; i < n; i++)
        off += (size_t)snprintf(s + off, CTL_CURSOR_MAX + 1 - off, "%s%s:%lld", off ? "," : "", ctl_cluster_name(cl, i),
                                before[i] > 0 ? before[i] : 0);
    return s;
}
