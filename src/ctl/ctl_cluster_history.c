/* ctl_cluster_history: one page of history merged from the nodes' pages (ctl_cluster.h). A k-way
 * merge: each node's page is newest first already; the merge takes the newest head each time. */
#define _GNU_SOURCE
#include "ctl_cluster.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ctl_head {
    json_object *rows; /* the node's page, NULL: it did not answer */
    size_t at, n;
    int more; /* its page said more follow (next_cursor not null) */
} ctl_head_t;

/* queued_at: a number, else NaN (the row is refused). */
static double ctl_row_when(json_object *row)
{
    json_object *v;
    return json_object_object_get_ex(row, "queued_at", &v) &&
                   (json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int))
               ? json_object_get_double(v) : NAN;
}

/* id: an integer, else 0 (the row is refused). */
static long long ctl_row_id(json_object *row)
{
    json_object *v;
    return json_object_object_get_ex(row, "id", &v) && json_object_is_type(v, json_type_int) ? json_object_get_int64(v)
                                                                                             : 0;
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

/* A node's page read from before (0: its newest): its rows, which end at the first that is not an
 * object with a positive id below the one before it (below `before` for the first) and a finite
 * queued_at, and whether more follow (next_cursor not null). */
static void ctl_head_of(json_object *page, long long before, ctl_head_t *h)
{
    json_object *rows, *next;
    *h = (ctl_head_t){0};
    if (!page || !json_object_object_get_ex(page, "executions", &rows) || !json_object_is_type(rows, json_type_array))
        return;
    h->rows = rows;
    h->n = json_object_array_length(rows);
    long long last = before > 0 ? before : LLONG_MAX;
    for (size_t i = 0; i < h->n; i++) {
        json_object *r = json_object_array_get_idx(rows, i);
        long long id = json_object_is_type(r, json_type_object) ? ctl_row_id(r) : 0;
        if (id <= 0 || id >= last || !isfinite(ctl_row_when(r)))
            h->n = i; /* a hostile node's rows end at the first that is not one */
        last = id;
    }
    h->more = json_object_object_get_ex(page, "next_cursor", &next) && next != NULL;
}

int ctl_history_check(json_object *page, long long before, char *why, size_t whylen)
{
    ctl_head_t h;
    ctl_head_of(page, before, &h);
    if (!h.rows)
        return snprintf(why, whylen, "its answer holds no executions"), -1;
    if (h.more && h.n == 0)
        return snprintf(why, whylen, "%s", json_object_array_length(h.rows) ? "its page does not go on from the cursor"
                                                                            : "an empty page with a next_cursor"), -1;
    return 0;
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
        ctl_head_of(pages[i], before[i], &h[i]);
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
