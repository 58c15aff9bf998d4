/* ctl_cluster_stats: every node's /api/stats?histograms added up (ctl_cluster.h). Sums add; means
 * are sums over counts; percentiles come from the nodes' histograms added bucket by bucket, read as
 * one node reads its rollups (db_tally_hist_percentiles): never an average of the nodes' percentiles. */
#define _GNU_SOURCE
#include "ctl_cluster.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

static long long ctl_add(long long a, long long b)
{
    long long r;
    return __builtin_add_overflow(a, b, &r) ? (b > 0 ? LLONG_MAX : LLONG_MIN) : r;
}

static long long ctl_int(json_object *obj, const char *path)
{
    json_object *v = ctl_cluster_at(obj, path);
    return v && json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : 0;
}

static double ctl_num(json_object *obj, const char *path)
{
    json_object *v = ctl_cluster_at(obj, path);
    return v && (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double))
               ? json_object_get_double(v) : 0;
}

/* Into sum (an object of integers by key): every integer member of add. */
static void ctl_sum_keys(json_object *sum, json_object *add)
{
    if (!add || !json_object_is_type(add, json_type_object))
        return;
    json_object_object_foreach(add, k, v)
    {
        if (!v || !json_object_is_type(v, json_type_int))
            continue;
        json_object *cur;
        long long c = json_object_object_get_ex(sum, k, &cur) ? json_object_get_int64(cur) : 0;
        json_object_object_add(sum, k, json_object_new_int64(ctl_add(c, json_object_get_int64(v))));
    }
}

/* One metric ("duration_ms"): the nodes' histograms added, their percentiles, and how they were had. */
static json_object *ctl_stats_metric(json_object *const *docs, size_t n, const char *metric)
{
    long long *hist = calloc(DB_HIST_BUCKETS, sizeof *hist), count = 0;
    double sum = 0;
    if (!hist)
        return NULL;
    char path[64];
    snprintf(path, sizeof path, "histograms.%s", metric);
    for (size_t i = 0; i < n; i++) {
        json_object *h = docs[i] ? ctl_cluster_at(docs[i], path) : NULL, *b = h ? ctl_cluster_at(h, "buckets") : NULL;
        count = ctl_add(count, ctl_int(h, "count"));
        sum += ctl_num(h, "sum");
        for (size_t k = 0; b && json_object_is_type(b, json_type_array) && k < json_object_array_length(b); k++) {
            json_object *pair = json_object_array_get_idx(b, k);
            if (!json_object_is_type(pair, json_type_array) || json_object_array_length(pair) != 2)
                continue;
            long long at = json_object_get_int64(json_object_array_get_idx(pair, 0)),
                      c = json_object_get_int64(json_object_array_get_idx(pair, 1));
            if (at >= 0 && at < DB_HIST_BUCKETS && c > 0)
                hist[at] = ctl_add(hist[at], c);
        }
    }
    json_object *o = db_tally_hist_percentiles(hist, count, sum);
    free(hist);
    if (o)
        json_object_object_add(o, "method", json_object_new_string("the nodes' histograms added up"));
    return o;
}

/* busiest_sessions (each with its node) or tool_calls of every node, as one array. */
static json_object *ctl_stats_collect(const ctl_cluster_t *cl, json_object *const *docs, const char *key, int with_node)
{
    json_object *all = json_object_new_array();
    for (size_t i = 0; i < ctl_cluster_count(cl); i++) {
        json_object *a = docs[i] ? ctl_cluster_at(docs[i], key) : NULL;
        for (size_t k = 0; a && json_object_is_type(a, json_type_array) && k < json_object_array_length(a); k++) {
            json_object *r = json_object_array_get_idx(a, k);
            if (!json_object_is_type(r, json_type_object))
                continue;
            if (with_node)
                json_object_object_add(r, "node", json_object_new_string(ctl_cluster_name(cl, i)));
            json_object_array_add(all, json_object_get(r));
        }
    }
    return all;
}

static const char *ctl_str(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                                                               : "";
}

/* Busiest first (as db_tally orders one node's), then node. */
static int ctl_cmp_busy(const void *a, const void *b)
{
    json_object *x = *(json_object *const *)a, *y = *(json_object *const *)b;
    long long nx = ctl_int(x, "executions"), ny = ctl_int(y, "executions");
    if (nx != ny)
        return nx > ny ? -1 : 1;
    int c = strcmp(ctl_str(x, "session_id"), ctl_str(y, "session_id"));
    c = c ? c : strcmp(ctl_str(x, "owner"), ctl_str(y, "owner"));
    return c ? c : strcmp(ctl_str(x, "node"), ctl_str(y, "node"));
}

static json_object *ctl_stats_busiest(const ctl_cluster_t *cl, json_object *const *docs)
{
    json_object *all = ctl_stats_collect(cl, docs, "busiest_sessions", 1), *top = json_object_new_array();
    json_object_array_sort(all, ctl_cmp_busy);
    for (size_t i = 0; i < json_object_array_length(all) && i < 5; i++)
        json_object_array_add(top, json_object_get(json_object_array_get_idx(all, i)));
    json_object_put(all);
    return top;
}

/* The same tool and status added up, the most used first. */
static json_object *ctl_stats_tools(const ctl_cluster_t *cl, json_object *const *docs)
{
    json_object *all = ctl_stats_collect(cl, docs, "tool_calls", 0), *by = json_object_new_object();
    for (size_t i = 0; i < json_object_array_length(all); i++) {
        json_object *r = json_object_array_get_idx(all, i), *cur;
        char key[512];
        snprintf(key, sizeof key, "%s%c%s", ctl_str(r, "tool"), '\x1f', ctl_str(r, "status"));
        long long c = json_object_object_get_ex(by, key, &cur) ? json_object_get_int64(cur) : 0;
        json_object_object_add(by, key, json_object_new_int64(ctl_add(c, ctl_int(r, "calls"))));
    }
    json_object_put(all);
    json_object *out = json_object_new_array();
    json_object_object_foreach(by, k, v)
    {
        json_object *t = json_object_new_object();
        const char *sep = strchr(k, '\x1f');
        json_object_object_add(t, "tool", json_object_new_string_len(k, (int)(sep - k)));
        json_object_object_add(t, "status", json_object_new_string(sep + 1));
        json_object_object_add(t, "calls", json_object_get(v));
        json_object_array_add(out, t);
    }
    json_object_put(by);
    return out;
}

static int ctl_cmp_calls(const void *a, const void *b)
{
    json_object *p = *(json_object *const *)a, *q = *(json_object *const *)b;
    long long x = ctl_int(p, "calls"), y = ctl_int(q, "calls");
    int c = strcmp(ctl_str(p, "tool"), ctl_str(q, "tool"));
    return x != y ? (x > y ? -1 : 1) : c ? c : strcmp(ctl_str(p, "status"), ctl_str(q, "status"));
}

/* by_pool: executions, succeeded, tokens and cost added by pool. */
static json_object *ctl_stats_pools(json_object *const *docs, size_t n)
{
    json_object *pools = json_object_new_object();
    for (size_t i = 0; i < n; i++) {
        json_object *by = docs[i] ? ctl_cluster_at(docs[i], "by_pool") : NULL;
        if (!by || !json_object_is_type(by, json_type_object))
            continue;
        json_object_object_foreach(by, name, p)
        {
            json_object *cur;
            if (!json_object_object_get_ex(pools, name, &cur)) {
                cur = json_object_new_object();
                json_object_object_add(cur, "tokens", json_object_new_object());
                json_object_object_add(pools, name, cur);
            }
            json_object *one = json_object_new_object();
            json_object_object_add(one, "executions", json_object_new_int64(ctl_int(p, "executions")));
            json_object_object_add(one, "succeeded", json_object_new_int64(ctl_int(p, "succeeded")));
            ctl_sum_keys(cur, one);
            json_object_put(one);
            ctl_sum_keys(ctl_cluster_at(cur, "tokens"), ctl_cluster_at(p, "tokens"));
            json_object_object_add(cur, "cost", json_object_new_double(ctl_num(cur, "cost") + ctl_num(p, "cost")));
        }
    }
    return pools;
}

json_object *ctl_stats_merge(const ctl_cluster_t *cl, json_object *const *docs)
{
    size_t n = ctl_cluster_count(cl);
    json_object *o = json_object_new_object(), *by_status = json_object_new_object(),
                *by_mode = json_object_new_object(), *tok = json_object_new_object(), *rss = json_object_new_object();
    long long total = 0, peak = -1, nr = 0;
    double cost = 0, sum_r = 0, since = 0, until = 0;
    for (size_t i = 0; i < n; i++) {
        if (!docs[i])
            continue;
        total = ctl_add(total, ctl_int(docs[i], "total"));
        ctl_sum_keys(by_status, ctl_cluster_at(docs[i], "by_status"));
        ctl_sum_keys(by_mode, ctl_cluster_at(docs[i], "by_mode"));
        ctl_sum_keys(tok, ctl_cluster_at(docs[i], "tokens"));
        cost += ctl_num(docs[i], "cost");
        if (ctl_cluster_at(docs[i], "peak_rss_kb.peak") && ctl_int(docs[i], "peak_rss_kb.peak") > peak)
            peak = ctl_int(docs[i], "peak_rss_kb.peak");
        nr = ctl_add(nr, ctl_int(docs[i], "histograms.peak_rss_kb.count"));
        sum_r += ctl_num(docs[i], "histograms.peak_rss_kb.sum");
        since = ctl_num(docs[i], "since");
        if (ctl_num(docs[i], "until") > until)
            until = ctl_num(docs[i], "until");
    }
    json_object_object_add(o, "since", json_object_new_double(since));
    json_object_object_add(o, "until", json_object_new_double(until));
    json_object_object_add(o, "total", json_object_new_int64(total));
    json_object_object_add(o, "by_status", by_status);
    json_object_object_add(o, "by_mode", by_mode);
    json_object_object_add(o, "duration_ms", ctl_stats_metric(docs, n, "duration_ms"));
    json_object_object_add(o, "queue_wait_ms", ctl_stats_metric(docs, n, "queue_wait_ms"));
    json_object_object_add(rss, "peak", peak >= 0 ? json_object_new_int64(peak) : NULL);
    json_object_object_add(rss, "mean", nr > 0 ? json_object_new_double(sum_r / (double)nr) : NULL);
    json_object_object_add(o, "peak_rss_kb", rss);
    json_object_object_add(o, "tokens", tok);
    json_object_object_add(o, "cost", json_object_new_double(cost));
    json_object_object_add(o, "busiest_sessions", ctl_stats_busiest(cl, docs));
    json_object *tools = ctl_stats_tools(cl, docs);
    json_object_array_sort(tools, ctl_cmp_calls);
    json_object_object_add(o, "tool_calls", tools);
    json_object_object_add(o, "by_pool", ctl_stats_pools(docs, n));
    return o;
}
