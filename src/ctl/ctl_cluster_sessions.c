/* ctl_cluster_sessions: taking one node's pages of GET /api/admin/sessions (ctl_cluster.h). A node is
 * hostile: it could answer pages without end, pages that do not advance, or more than it was asked;
 * each is caught here, and what is taken from all nodes together is bounded (ctl_budget_t). */
#define _GNU_SOURCE
#include "ctl_cluster.h"

#include <stdio.h>
#include <string.h>

/* Is cursor b ("OWNER/ID", split at its last '/') after cursor a ("" before everything)? Sessions
 * come by (owner, id) in byte order. -1: b is no OWNER/ID. */
static int ctl_cursor_after(const char *a, const char *b)
{
    const char *sb = strrchr(b, '/'), *sa = strrchr(a, '/');
    if (!sb)
        return -1;
    if (!sa)
        return 1;
    size_t la = (size_t)(sa - a), lb = (size_t)(sb - b);
    int c = memcmp(a, b, la < lb ? la : lb);
    if (!c && la != lb)
        c = la < lb ? -1 : 1;
    return (c ? c : strcmp(sa + 1, sb + 1)) < 0;
}

int ctl_sessions_take(ctl_pager_t *p, json_object *page, size_t bytes, const char *node, ctl_budget_t *b, char *why,
                      size_t whylen)
{
    json_object *rows = ctl_cluster_at(page, "sessions"), *next = ctl_cluster_at(page, "next_cursor");
    if (!rows || !json_object_is_type(rows, json_type_array) || (next && !json_object_is_type(next, json_type_string)))
        return snprintf(why, whylen, "its answer holds no sessions"), -1;
    size_t n = json_object_array_length(rows);
    if (n > (size_t)p->asked)
        return snprintf(why, whylen, "its page holds %zu sessions, more than the %ld asked", n, p->asked), -1;
    if (next && n == 0)
        return snprintf(why, whylen, "an empty page with a next_cursor"), -1;
    const char *after = next ? json_object_get_string(next) : NULL;
    int advances = after ? ctl_cursor_after(p->after, after) : 1;
    if (after && (strlen(after) >= sizeof p->after || advances != 1))
        return snprintf(why, whylen, "its next_cursor does not advance past the one before"), -1;
    if (bytes > b->bytes || (long)n > b->rows)
        return snprintf(why, whylen, "stopped: more than %ld sessions or %ld MB in all", CTL_SESSIONS_MAX,
                        CTL_SESSIONS_BYTES_MAX >> 20), -1;
    b->bytes -= bytes;
    b->rows -= (long)n;
    for (size_t k = 0; k < n && p->left > 0; k++) {
        json_object *row = json_object_array_get_idx(rows, k);
        if (!json_object_is_type(row, json_type_object))
            continue;
        json_object_object_add(row, "node", json_object_new_string(node));
        json_object_array_add(p->rows, json_object_get(row));
        p->left--;
    }
    if (!after)
        return 0;
    if (p->left <= 0)
        return p->capped ? (snprintf(why, whylen, "it has more than %ld sessions (see --limit)", CTL_SESSIONS_MAX), -1)
                         : 0;
    snprintf(p->after, sizeof p->after, "%s", after);
    p->asked = p->left < CTL_SESSIONS_PAGE ? p->left : CTL_SESSIONS_PAGE;
    return 1;
}
