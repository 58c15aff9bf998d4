/* ctl_cluster_file: the cluster file of ocpmctl --cluster (ctl_cluster.h). */
#define _GNU_SOURCE
#include "ctl_cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ctl_node {
    char name[CTL_CLUSTER_NAME_MAX + 1];
    char url[CTL_CLUSTER_URL_MAX + 1];
} ctl_node_t;

struct ctl_cluster {
    ctl_node_t *nodes;
    size_t n;
};

#define CTL_FILE_MAX (1L << 20) /* a file of 256 nodes is far smaller */

static int ctl_name_ok(const char *s, size_t n)
{
    if (n < 1 || n > CTL_CLUSTER_NAME_MAX || s[0] == '-' || s[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
    return 1;
}

/* http:// or https://, a host, printable ASCII without spaces (it goes into libcurl as is). */
static const char *ctl_url_bad(const char *s, size_t n)
{
    size_t scheme = strncmp(s, "http://", 7) == 0 ? 7 : strncmp(s, "https://", 8) == 0 ? 8 : 0;
    if (!scheme)
        return "the URL must start with http:// or https://";
    if (n > CTL_CLUSTER_URL_MAX)
        return "the URL is longer than 1024 bytes";
    if (n == scheme || s[scheme] == '/')
        return "the URL names no host";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return "the URL holds a byte that is not printable ASCII";
    for (size_t i = scheme; i < n && s[i] != '/'; i++)
        if (s[i] == '?' || s[i] == '#' || s[i] == '@')
            return "the URL's host part holds '?', '#' or '@'";
    if (memchr(s, '?', n) || memchr(s, '#', n))
        return "the URL must be a base URL (no query or fragment)";
    return NULL;
}

/* One line (not NUL-terminated, len bytes): 0 added or nothing to add, -1 with err. */
static int ctl_cluster_line(ctl_cluster_t *cl, const char *line, size_t len, const char *path, int lineno, char *err,
                            size_t errlen)
{
    const char *p = line, *end = line + len;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
        p++;
    if (p == end || *p == '#')
        return 0;
    const char *name = p;
    while (p < end && *p != ' ' && *p != '\t')
        p++;
    size_t nlen = (size_t)(p - name);
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    const char *url = p;
    while (p < end && *p != ' ' && *p != '\t' && *p != '\r')
        p++;
    size_t ulen = (size_t)(p - url);
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
        p++;
    const char *bad = !ctl_name_ok(name, nlen) ? "the name must match [a-z0-9-]{1,32}, no '-' first or last"
                      : !ulen                   ? "expected NAME URL"
                      : p != end                ? "expected NAME URL and nothing after"
                                                : ctl_url_bad(url, ulen);
    while (!bad && ulen > 0 && url[ulen - 1] == '/')
        ulen--;
    if (!bad && cl->n >= CTL_CLUSTER_MAX)
        bad = "more than 256 nodes";
    for (size_t i = 0; !bad && i < cl->n; i++) {
        if (strlen(cl->nodes[i].name) == nlen && memcmp(cl->nodes[i].name, name, nlen) == 0)
            bad = "this name is taken by an earlier line";
        else if (strlen(cl->nodes[i].url) == ulen && memcmp(cl->nodes[i].url, url, ulen) == 0)
            bad = "this URL is taken by an earlier line";
    }
    if (bad)
        return snprintf(err, errlen, "%s:%d: %s", path, lineno, bad), -1;
    ctl_node_t *grown = realloc(cl->nodes, (cl->n + 1) * sizeof *grown);
    if (!grown)
        return snprintf(err, errlen, "%s:%d: out of memory", path, lineno), -1;
    cl->nodes = grown;
    snprintf(cl->nodes[cl->n].name, sizeof cl->nodes[cl->n].name, "%.*s", (int)nlen, name);
    snprintf(cl->nodes[cl->n].url, sizeof cl->nodes[cl->n].url, "%.*s", (int)ulen, url);
    cl->n++;
    return 0;
}

ctl_cluster_t *ctl_cluster_parse(const char *text, const char *path, char *err, size_t errlen)
{
    ctl_cluster_t *cl = calloc(1, sizeof *cl);
    if (!cl)
        return snprintf(err, errlen, "out of memory"), NULL;
    int lineno = 0;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (ctl_cluster_line(cl, p, len, path, ++lineno, err, errlen) != 0)
            return ctl_cluster_free(cl), NULL;
        p += len + (nl != NULL);
    }
    if (!cl->n)
        return snprintf(err, errlen, "%s: names no node", path), ctl_cluster_free(cl), NULL;
    return cl;
}

ctl_cluster_t *ctl_cluster_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return snprintf(err, errlen, "%s: %m", path), NULL;
    char *text = malloc(CTL_FILE_MAX + 1);
    size_t n = text ? fread(text, 1, CTL_FILE_MAX + 1, f) : 0;
    int failed = ferror(f);
    fclose(f);
    ctl_cluster_t *cl = NULL;
    if (!text)
        snprintf(err, errlen, "out of memory");
    else if (failed)
        snprintf(err, errlen, "%s: cannot read it", path);
    else if (n > CTL_FILE_MAX)
        snprintf(err, errlen, "%s: larger than 1 MB", path);
    else if (memchr(text, '\0', n))
        snprintf(err, errlen, "%s: holds a NUL byte", path);
    else
        text[n] = '\0', cl = ctl_cluster_parse(text, path, err, errlen);
    free(text);
    return cl;
}

void ctl_cluster_free(ctl_cluster_t *cl)
{
    if (cl)
        free(cl->nodes);
    free(cl);
}

size_t ctl_cluster_count(const ctl_cluster_t *cl) { return cl->n; }
const char *ctl_cluster_name(const ctl_cluster_t *cl, size_t i) { return cl->nodes[i].name; }
const char *ctl_cluster_url(const ctl_cluster_t *cl, size_t i) { return cl->nodes[i].url; }

int ctl_cluster_find(const ctl_cluster_t *cl, const char *name, size_t len)
{
    for (size_t i = 0; i < cl->n; i++)
        if (strlen(cl->nodes[i].name) == len && memcmp(cl->nodes[i].name, name, len) == 0)
            return (int)i;
    return -1;
}
