/* ctl_cluster_history: one page of history merged from the nodes' pages (ctl_cluster.h). A k-way
 * merge: each node's page is newest first already; the merge takes the newest head each time. */
#define _GNU_SOURCE
#include "ctl_cluster.h"

#include <stdlib.h>
#include <string.h>

typedef struct ctl_head {
    json_object *rows; /* the node's page, NULL: it did not answer */
    size_t at, n;
    int more; /* its page said more follow (next_cursor not null) */
} ctl_head_t;

static double ctl_row_when(json_object *row)
{
    json_object *v;
    return json_object_object_get_ex(row, "queued_at", &v) ? json_object_get_double(v) : 0;
}

static long long ctl_row_id(json_object *row)
{
    json_object *v;
    return json_object_object_get_ex(row, "id", &v) ? json_object_get_int64(v) : 0;
}

/* Does row a (node na) come before row b (node nb)? Newer first, then node name, then larger id. */
static int ctl_row_first(const ctl_cluster_t *cl, json_object *a, size_t na, json_object *b, size_t nb)
{
    double ta = ctl_row_when(a), tb = ctl_row_when(b);
    if (ta != tb)
        return ta > tb;
    int c = strcmp(ctl_cluster_name(cl, na), ctl_cluster_name(cl, nb));
    return c ? c < 0 : ctl_row_id(a) > ctl_row_id(b);
}

/* A node's page: its rows (an array of objects with a positive id, else none) and whether more follow. */
static void ctl_head_of(json_object *page, ctl_head_t *h)
{
    json_object *rows, *next;
    *h = (ctl_head_t){0};
    if (!page || !json_object_object_get_ex(page, "executions", &rows) || !json_object_is_type(rows, json_type_array))
        return;
    h->rows = rows;
    h->n = json_object_array_length(rows);
    for (size_t i = 0; i < h->n; i++) {
        json_object *r = json_object_array_get_idx(rows, i);
        if (!json_object_is_type(r, json_type_object) || ctl_row_id(r) <= 0)
            h->n = i; /* a hostile node's rows end at the first that is not one */
    }
    h->more = json_object_object_get_ex(page, "next_cursor", &next) && next != NULL;
}

json_object *ctl_history_merge(const ctl_cluster_t *cl, json_object *const *pages, long limit, long long *before,
                               int *more)
{
    size_t n = ctl_cluster_count(cl);
    ctl_head_t *h = calloc(n, sizeof *h);
    json_object *out = json_object_new_array();
    if (!h)
        return json_object_put(out), NULL;
    *more = 0;
    for (size_t i = 0; i < n; i++) {
        ctl_head_of(pages[i], &h[i]);
        if (!h[i].rows)
            *more = 1; /* it did not answer: its rows are still to come */
    }
    while ((long)json_object_array_length(out) < limit) {
        long best = -1;
        int blocked = 0;
        for (size_t i = 0; i < n; i++) {
            if (h[i].rows && h[i].at == h[i].n && h[i].more)
                blocked = 1; /* its next rows are unseen and could be newer than any head */
            if (!h[i].rows || h[i].at == h[i].n)
                continue;
            json_object *r = json_object_array_get_idx(h[i].rows, h[i].at);
            if (best < 0 || ctl_row_first(cl, r, i, json_object_array_get_idx(h[best].rows, h[best].at), (size_t)best))
                best = (long)i;
        }
        if (blocked || best < 0)
            break;
        json_object *r = json_object_array_get_idx(h[best].rows, h[best].at++);
        json_object_object_add(r, "node", json_object_new_string(ctl_cluster_name(cl, (size_t)best)));
        before[best] = ctl_row_id(r);
        json_object_array_add(out, json_object_get(r));
    }
    for (size_t i = 0; i < n; i++)
        if (h[i].rows && (h[i].at < h[i].n || h[i].more))
            *more = 1;
    free(h);
    return out;
}
