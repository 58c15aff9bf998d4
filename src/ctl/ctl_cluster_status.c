/* ctl_cluster_status: what ocpmctl --cluster status shows of each node's status document, and the
 * totals over the nodes that answered (ctl_cluster.h). Both are tables of paths into the document. */
#define _GNU_SOURCE
#include "ctl_cluster.h"

#include <stdio.h>
#include <string.h>

/* How a column is read from the document. */
enum { CTL_VALUE, CTL_LENGTH, CTL_POOLS };

static const struct {
    const char *name; /* in the row and the totals */
    const char *path; /* dotted, into the status document */
    int how;          /* CTL_VALUE: the value; CTL_LENGTH: an array's length; CTL_POOLS: summed over ocpm.pools */
    int total;        /* added up in the totals */
} ctl_status_cols[] = {
    {"mode", "processManager.mode", CTL_VALUE, 0},
    {"draining", "ocpm.draining", CTL_VALUE, 0},
    {"ready", "processManager.isReady", CTL_VALUE, 0},
    {"sessions", "processManager.activeSessions", CTL_VALUE, 1},
    {"running", "running", CTL_POOLS, 1},
    {"queued", "processManager.pendingRequests", CTL_VALUE, 1},
    {"processes", "runningProcesses", CTL_VALUE, 1},
    {"streams", "activeStreams", CTL_VALUE, 1},
    {"servers", "servers", CTL_LENGTH, 1},
    {"finished", "ocpm.executionsFinished", CTL_VALUE, 1},
    {"failed", "ocpm.executionsFailed", CTL_VALUE, 1},
    {"prompts_pending", "ocpm.promptsPending", CTL_VALUE, 1},
    {"max_concurrent_runs", "ocpm.maxConcurrentRuns", CTL_VALUE, 1},
};
#define CTL_NSTATUS (sizeof ctl_status_cols / sizeof ctl_status_cols[0])

/* Column k of doc: a new reference, or NULL. */
static json_object *ctl_status_value(json_object *doc, size_t k)
{
    if (ctl_status_cols[k].how == CTL_VALUE) {
        json_object *v = ctl_cluster_at(doc, ctl_status_cols[k].path);
        return v && !json_object_is_type(v, json_type_object) && !json_object_is_type(v, json_type_array)
                   ? json_object_get(v) : NULL;
    }
    if (ctl_status_cols[k].how == CTL_LENGTH) {
        json_object *a = ctl_cluster_at(doc, ctl_status_cols[k].path);
        return a && json_object_is_type(a, json_type_array) ? json_object_new_int64((int64_t)json_object_array_length(a))
                                                            : NULL;
    }
    json_object *pools = ctl_cluster_at(doc, "ocpm.pools");
    if (!pools || !json_object_is_type(pools, json_type_array))
        return NULL;
    long long sum = 0;
    for (size_t i = 0; i < json_object_array_length(pools); i++) {
        json_object *v = ctl_cluster_at(json_object_array_get_idx(pools, i), ctl_status_cols[k].path);
        if (v && json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0)
            sum += json_object_get_int64(v) < (1LL << 40) ? json_object_get_int64(v) : 0;
    }
    return json_object_new_int64(sum);
}

json_object *ctl_status_row(const ctl_cluster_t *cl, size_t i, json_object *doc, const char *error)
{
    json_object *row = json_object_new_object();
    json_object_object_add(row, "name", json_object_new_string(ctl_cluster_name(cl, i)));
    json_object_object_add(row, "url", json_object_new_string(ctl_cluster_url(cl, i)));
    json_object_object_add(row, "ok", json_object_new_boolean(doc != NULL));
    if (!doc) {
        json_object_object_add(row, "error", json_object_new_string(error));
        return row;
    }
    for (size_t k = 0; k < CTL_NSTATUS; k++)
        json_object_object_add(row, ctl_status_cols[k].name, ctl_status_value(doc, k));
    return row;
}

json_object *ctl_status_totals(const ctl_cluster_t *cl, json_object *const *docs)
{
    json_object *t = json_object_new_object();
    long long answered = 0, draining = 0;
    for (size_t i = 0; i < ctl_cluster_count(cl); i++)
        if (docs[i]) {
            answered++;
            json_object *d = ctl_cluster_at(docs[i], "ocpm.draining");
            draining += d && json_object_get_boolean(d);
        }
    json_object_object_add(t, "nodes", json_object_new_int64((int64_t)ctl_cluster_count(cl)));
    json_object_object_add(t, "answered", json_object_new_int64(answered));
    json_object_object_add(t, "draining", json_object_new_int64(draining));
    for (size_t k = 0; k < CTL_NSTATUS; k++) {
        if (!ctl_status_cols[k].total)
            continue;
        long long sum = 0;
        for (size_t i = 0; i < ctl_cluster_count(cl); i++) {
            json_object *v = docs[i] ? ctl_status_value(docs[i], k) : NULL;
            if (v && json_object_is_type(v, json_type_int) && json_object_get_int64(v) > 0 &&
                json_object_get_int64(v) < (1LL << 40))
                sum += json_object_get_int64(v);
            json_object_put(v);
        }
        json_object_object_add(t, ctl_status_cols[k].name, json_object_new_int64(sum));
    }
    return t;
}
