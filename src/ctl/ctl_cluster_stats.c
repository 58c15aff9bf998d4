/* ctl_cluster_stats: every node's /api/stats?histograms added up (ctl_cluster.h). Sums add; means
 * are sums over counts; percentiles come from the nodes' histograms added bucket by bucket, read as
 * one node reads its rollups (db_tally_hist_percentiles): never an average of the nodes' percentiles.
 * Every node is hostile: histograms that are not exactly the scheme and shape one node writes mark
 * the node (ctl_stats_check); any other value of the wrong type, negative, not finite or too large,
 * and a row whose name is too long, is left out and counted in "skipped" under its node. */
#define _GNU_SOURCE
#include "ctl_cluster.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

static const char *const ctl_metrics[] = {"duration_ms", "queue_wait_ms"};
#define CTL_NMETRICS (sizeof ctl_metrics / sizeof ctl_metrics[0])

static long long ctl_add(long long a, long long b)
{
    long long r;
    return __builtin_add_overflow(a, b, &r) ? (b > 0 ? LLONG_MAX : LLONG_MIN) : r;
}

/* x as a count: 1 with *v; 0 when x is NULL (absent or null; *v 0); -1 when it is not an integer
 * from 0 to CTL_STATS_COUNT_MAX (*v 0). */
static int ctl_count_of(json_object *x, long long *v)
{
    *v = 0;
    if (!x)
        return 0;
    if (!json_object_is_type(x, json_type_int) || json_object_get_int64(x) < 0 ||
        json_object_get_int64(x) > CTL_STATS_COUNT_MAX)
        return -1;
    return *v = json_object_get_int64(x), 1;
}

static int ctl_count(json_object *obj, const char *path, long long *v)
{
    return ctl_count_of(obj ? ctl_cluster_at(obj, path) : NULL, v);
}

/* The amount (a sum, a cost, a time) at path: as ctl_count_of, a finite number from 0 to
 * CTL_STATS_AMOUNT_MAX. */
static int ctl_amount(json_object *obj, const char *path, double *v)
{
    json_object *x = obj ? ctl_cluster_at(obj, path) : NULL;
    *v = 0;
    if (!x)
        return 0;
    if (!json_object_is_type(x, json_type_int) && !json_object_is_type(x, json_type_double))
        return -1;
    double d = json_object_get_double(x);
    if (!isfinite(d) || d < 0 || d > CTL_STATS_AMOUNT_MAX)
        return -1;
    return *v = d, 1;
}

/* x as a name (tool, status, session, pool, key): a string of at most CTL_STATS_KEY_MAX bytes without
 * NUL, or NULL. */
static const char *ctl_name_of(json_object *x)
{
    if (!x || !json_object_is_type(x, json_type_string))
        return NULL;
    const char *s = json_object_get_string(x);
    size_t len = (size_t)json_object_get_string_len(x);
    return len <= CTL_STATS_KEY_MAX && strlen(s) == len ? s : NULL;
}

static const char *ctl_str(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                                                               : "";
}

/* Into sum (an object of integers by key): every member of add; *bad counts those left out. */
static void ctl_sum_keys(json_object *sum, json_object *add, long long *bad)
{
    if (!add)
        return;
    if (!json_object_is_type(add, json_type_object)) {
        ++*bad;
        return;
    }
    json_object_object_foreach(add, k, v)
    {
        long long c = 0, x;
        json_object *cur;
        if (ctl_count_of(v, &x) != 1 || strlen(k) > CTL_STATS_KEY_MAX) {
            ++*bad;
            continue;
        }
        if (json_object_object_get_ex(sum, k, &cur))
            c = json_object_get_int64(cur);
        json_object_object_add(sum, k, json_object_new_int64(ctl_add(c, x)));
    }
}

/* One metric's histogram of a node: 0, or -1 with why. The shape one node writes: count and sum,
 * buckets [[k, n], ...] with k strictly increasing in [0, DB_HIST_BUCKETS), n from 1, n adding up to
 * count. */
static int ctl_hist_check(json_object *h, const char *metric, char *why, size_t whylen)
{
    long long count, seen = 0, last = -1;
    double sum;
    json_object *b = h ? ctl_cluster_at(h, "buckets") : NULL;
    if (ctl_count(h, "count", &count) != 1 || ctl_amount(h, "sum", &sum) != 1 || !b ||
        !json_object_is_type(b, json_type_array))
        return snprintf(why, whylen, "its histogram %s has no valid count, sum and buckets", metric), -1;
    for (size_t k = 0; k < json_object_array_length(b); k++) {
        json_object *pair = json_object_array_get_idx(b, k);
        long long at, c;
        if (!json_object_is_type(pair, json_type_array) || json_object_array_length(pair) != 2 ||
            ctl_count_of(json_object_array_get_idx(pair, 0), &at) != 1 ||
            ctl_count_of(json_object_array_get_idx(pair, 1), &c) != 1 || at <= last || at >= DB_HIST_BUCKETS || c < 1)
            return snprintf(why, whylen, "its histogram %s has a bad bucket (the %zuth)", metric, k + 1), -1;
        last = at;
        seen = ctl_add(seen, c);
    }
    if (seen != count)
        return snprintf(why, whylen, "its histogram %s holds %lld values, not its count %lld", metric, seen, count), -1;
    return 0;
}

int ctl_stats_check(json_object *doc, char *why, size_t whylen)
{
    json_object *h = ctl_cluster_at(doc, "histograms");
    long long buckets, nr;
    double first, ratio, sum_r;
    if (!h || !ctl_cluster_at(h, "duration_ms.buckets"))
        return snprintf(why, whylen, "its /api/stats has no histograms (an older ocpm)"), -1;
    if (ctl_count(h, "scheme.buckets", &buckets) != 1 || buckets != DB_HIST_BUCKETS ||
        ctl_amount(h, "scheme.first_ms", &first) != 1 || fabs(first - 0.01) > 1e-12 ||
        ctl_amount(h, "scheme.ratio", &ratio) != 1 || fabs(ratio - DB_HIST_RATIO) > 1e-12)
        return snprintf(why, whylen, "its histograms use another bucket scheme"), -1;
    for (size_t m = 0; m < CTL_NMETRICS; m++)
        if (ctl_hist_check(ctl_cluster_at(h, ctl_metrics[m]), ctl_metrics[m], why, whylen) != 0)
            return -1;
    if (ctl_count(h, "peak_rss_kb.count", &nr) < 0 || ctl_amount(h, "peak_rss_kb.sum", &sum_r) < 0)
        return snprintf(why, whylen, "its histogram peak_rss_kb has a bad count or sum"), -1;
    return 0;
}

/* One metric ("duration_ms"): the nodes' histograms (checked by ctl_stats_check) added, their
 * percentiles, and how they were had. */
static json_object *ctl_stats_metric(json_object *const *docs, size_t n, const char *metric)
{
    long long *hist = calloc(DB_HIST_BUCKETS, sizeof *hist), count = 0, c;
    double sum = 0, s;
    if (!hist)
        return NULL;
    char path[64];
    snprintf(path, sizeof path, "histograms.%s", metric);
    for (size_t i = 0; i < n; i++) {
        json_object *h = docs[i] ? ctl_cluster_at(docs[i], path) : NULL, *b = h ? ctl_cluster_at(h, "buckets") : NULL;
        if (!b || !json_object_is_type(b, json_type_array) || ctl_count(h, "count", &c) != 1 ||
            ctl_amount(h, "sum", &s) != 1)
            continue;
        count = ctl_add(count, c);
        sum += s;
        for (size_t k = 0; k < json_object_array_length(b); k++) {
            json_object *pair = json_object_array_get_idx(b, k);
            long long at, x;
            if (json_object_is_type(pair, json_type_array) && json_object_array_length(pair) == 2 &&
                ctl_count_of(json_object_array_get_idx(pair, 0), &at) == 1 && at < DB_HIST_BUCKETS &&
                ctl_count_of(json_object_array_get_idx(pair, 1), &x) == 1)
                hist[at] = ctl_add(hist[at], x);
        }
    }
    json_object *o = db_tally_hist_percentiles(hist, count, sum);
    free(hist);
    if (o)
        json_object_object_add(o, "method", json_object_new_string("the nodes' histograms added up"));
    return o;
}

/* Busiest first (as db_tally orders one node's), then node. */
static int ctl_cmp_busy(const void *a, const void *b)
{
    json_object *x = *(json_object *const *)a, *y = *(json_object *const *)b;
    long long nx, ny;
    ctl_count(x, "executions", &nx), ctl_count(y, "executions", &ny);
    if (nx != ny)
        return nx > ny ? -1 : 1;
    int c = strcmp(ctl_str(x, "session_id"), ctl_str(y, "session_id"));
    c = c ? c : strcmp(ctl_str(x, "owner"), ctl_str(y, "owner"));
    return c ? c : strcmp(ctl_str(x, "node"), ctl_str(y, "node"));
}

/* A node's busiest_sessions row as a new row of the checked members (session_id, owner, executions,
 * failed, mean_ms) and node, or NULL when one is bad. */
static json_object *ctl_busy_row(json_object *r, const char *node)
{
    json_object *owner = ctl_cluster_at(r, "owner");
    const char *sid = ctl_name_of(ctl_cluster_at(r, "session_id")), *own = ctl_name_of(owner);
    long long n, failed;
    double mean;
    if (!sid || (owner && !own) || ctl_count(r, "executions", &n) != 1 || ctl_count(r, "failed", &failed) < 0 ||
        ctl_amount(r, "mean_ms", &mean) < 0)
        return NULL;
    json_object *row = json_object_new_object();
    json_object_object_add(row, "session_id", json_object_new_string(sid));
    json_object_object_add(row, "executions", json_object_new_int64(n));
    json_object_object_add(row, "failed", json_object_new_int64(failed));
    json_object_object_add(row, "mean_ms", ctl_cluster_at(r, "mean_ms") ? json_object_new_double(mean) : NULL);
    json_object_object_add(row, "owner", own ? json_object_new_string(own) : NULL);
    json_object_object_add(row, "node", json_object_new_string(node));
    return row;
}

/* The first five of every node's busiest sessions (each with its node), busiest first. */
static json_object *ctl_stats_busiest(const ctl_cluster_t *cl, json_object *const *docs, long long *bad)
{
    json_object *all = json_object_new_array(), *top = json_object_new_array();
    for (size_t i = 0; i < ctl_cluster_count(cl); i++) {
        json_object *a = docs[i] ? ctl_cluster_at(docs[i], "busiest_sessions") : NULL;
        if (a && !json_object_is_type(a, json_type_array))
            bad[i]++, a = NULL;
        for (size_t k = 0, taken = 0; a && k < json_object_array_length(a) && taken < 5; k++) {
            json_object *row = ctl_busy_row(json_object_array_get_idx(a, k), ctl_cluster_name(cl, i));
            if (row)
                json_object_array_add(all, row), taken++;
            else
                bad[i]++;
        }
    }
    json_object_array_sort(all, ctl_cmp_busy);
    for (size_t i = 0; i < json_object_array_length(all) && i < 5; i++)
        json_object_array_add(top, json_object_get(json_object_array_get_idx(all, i)));
    json_object_put(all);
    return top;
}

/* Into by (tool: {status: calls}): node i's tool_calls rows; a bad row is counted in *bad. */
static void ctl_tools_of(json_object *a, json_object *by, long long *bad)
{
    if (a && !json_object_is_type(a, json_type_array))
        ++*bad, a = NULL;
    for (size_t k = 0; a && k < json_object_array_length(a); k++) {
        json_object *r = json_object_array_get_idx(a, k), *st, *cur;
        const char *tool = ctl_name_of(ctl_cluster_at(r, "tool")), *status = ctl_name_of(ctl_cluster_at(r, "status"));
        long long calls;
        if (!json_object_is_type(r, json_type_object) || !tool || !status || ctl_count(r, "calls", &calls) != 1) {
            ++*bad;
            continue;
        }
        if (!json_object_object_get_ex(by, tool, &st))
            json_object_object_add(by, tool, st = json_object_new_object());
        long long c = json_object_object_get_ex(st, status, &cur) ? json_object_get_int64(cur) : 0;
        json_object_object_add(st, status, json_object_new_int64(ctl_add(c, calls)));
    }
}

/* The same tool and status added up (the most used first: ctl_cmp_calls). */
static json_object *ctl_stats_tools(const ctl_cluster_t *cl, json_object *const *docs, long long *bad)
{
    json_object *by = json_object_new_object(), *out = json_object_new_array();
    for (size_t i = 0; i < ctl_cluster_count(cl); i++)
        ctl_tools_of(docs[i] ? ctl_cluster_at(docs[i], "tool_calls") : NULL, by, &bad[i]);
    json_object_object_foreach(by, tool, st)
    {
        json_object_object_foreach(st, status, calls)
        {
            json_object *t = json_object_new_object();
            json_object_object_add(t, "tool", json_object_new_string(tool));
            json_object_object_add(t, "status", json_object_new_string(status));
            json_object_object_add(t, "calls", json_object_get(calls));
            json_object_array_add(out, t);
        }
    }
    json_object_put(by);
    return out;
}

static int ctl_cmp_calls(const void *a, const void *b)
{
    json_object *p = *(json_object *const *)a, *q = *(json_object *const *)b;
    long long x, y;
    ctl_count(p, "calls", &x), ctl_count(q, "calls", &y);
    int c = strcmp(ctl_str(p, "tool"), ctl_str(q, "tool"));
    return x != y ? (x > y ? -1 : 1) : c ? c : strcmp(ctl_str(p, "status"), ctl_str(q, "status"));
}

/* Into pools: one node's by_pool (executions, succeeded, tokens and cost added by pool). */
static void ctl_pools_of(json_object *pools, json_object *by, long long *bad)
{
    if (by && !json_object_is_type(by, json_type_object))
        ++*bad, by = NULL;
    if (!by)
        return;
    json_object_object_foreach(by, name, p)
    {
        json_object *cur, *one = json_object_new_object();
        long long e, s;
        double cost, was;
        if (strlen(name) > CTL_STATS_KEY_MAX || !json_object_is_type(p, json_type_object) ||
            ctl_count(p, "executions", &e) < 0 || ctl_count(p, "succeeded", &s) < 0 || ctl_amount(p, "cost", &cost) < 0) {
            ++*bad;
            json_object_put(one);
            continue;
        }
        if (!json_object_object_get_ex(pools, name, &cur)) {
            cur = json_object_new_object();
            json_object_object_add(cur, "tokens", json_object_new_object());
            json_object_object_add(pools, name, cur);
        }
        json_object_object_add(one, "executions", json_object_new_int64(e));
        json_object_object_add(one, "succeeded", json_object_new_int64(s));
        ctl_sum_keys(cur, one, bad);
        json_object_put(one);
        ctl_sum_keys(ctl_cluster_at(cur, "tokens"), ctl_cluster_at(p, "tokens"), bad);
        ctl_amount(cur, "cost", &was);
        json_object_object_add(cur, "cost", json_object_new_double(was + cost));
    }
}

/* The node-wide figures (total, cost, peak RSS, since, until). */
typedef struct ctl_sums {
    long long total, peak, nr;
    double cost, sum_r, since, until;
} ctl_sums_t;

/* Into t: one node's node-wide figures; *bad counts the values left out. */
static void ctl_sums_of(json_object *doc, ctl_sums_t *t, long long *bad)
{
    long long v;
    double d;
    *bad += ctl_count(doc, "total", &v) < 0, t->total = ctl_add(t->total, v);
    *bad += ctl_amount(doc, "cost", &d) < 0, t->cost += d;
    if (ctl_count(doc, "peak_rss_kb.peak", &v) == 1 && v > t->peak)
        t->peak = v;
    *bad += ctl_count(doc, "peak_rss_kb.peak", &v) < 0;
    ctl_count(doc, "histograms.peak_rss_kb.count", &v), t->nr = ctl_add(t->nr, v);
    ctl_amount(doc, "histograms.peak_rss_kb.sum", &d), t->sum_r += d;
    *bad += ctl_amount(doc, "since", &d) < 0;
    if (d > 0 && (t->since == 0 || d < t->since))
        t->since = d;
    *bad += ctl_amount(doc, "until", &d) < 0;
    if (d > t->until)
        t->until = d;
}

json_object *ctl_stats_merge(const ctl_cluster_t *cl, json_object *const *docs)
{
    size_t n = ctl_cluster_count(cl);
    json_object *o = json_object_new_object(), *by_status = json_object_new_object(),
                *by_mode = json_object_new_object(), *tok = json_object_new_object(), *rss = json_object_new_object(),
                *pools = json_object_new_object(), *skipped = json_object_new_object();
    long long *bad = calloc(n ? n : 1, sizeof *bad);
    ctl_sums_t t = {.peak = -1};
    if (!bad)
        return json_object_put(o), json_object_put(by_status), json_object_put(by_mode), json_object_put(tok),
               json_object_put(rss), json_object_put(pools), json_object_put(skipped), NULL;
    for (size_t i = 0; i < n; i++) {
        if (!docs[i])
            continue;
        ctl_sums_of(docs[i], &t, &bad[i]);
        ctl_sum_keys(by_status, ctl_cluster_at(docs[i], "by_status"), &bad[i]);
        ctl_sum_keys(by_mode, ctl_cluster_at(docs[i], "by_mode"), &bad[i]);
        ctl_sum_keys(tok, ctl_cluster_at(docs[i], "tokens"), &bad[i]);
        ctl_pools_of(pools, ctl_cluster_at(docs[i], "by_pool"), &bad[i]);
    }
    json_object_object_add(o, "since", json_object_new_double(t.since));
    json_object_object_add(o, "until", json_object_new_double(t.until));
    json_object_object_add(o, "total", json_object_new_int64(t.total));
    json_object_object_add(o, "by_status", by_status);
    json_object_object_add(o, "by_mode", by_mode);
    for (size_t m = 0; m < CTL_NMETRICS; m++)
        json_object_object_add(o, ctl_metrics[m], ctl_stats_metric(docs, n, ctl_metrics[m]));
    json_object_object_add(rss, "peak", t.peak >= 0 ? json_object_new_int64(t.peak) : NULL);
    json_object_object_add(rss, "mean", t.nr > 0 ? json_object_new_double(t.sum_r / (double)t.nr) : NULL);
    json_object_object_add(o, "peak_rss_kb", rss);
    json_object_object_add(o, "tokens", tok);
    json_object_object_add(o, "cost", json_object_new_double(t.cost));
    json_object_object_add(o, "busiest_sessions", ctl_stats_busiest(cl, docs, bad));
    json_object *tools = ctl_stats_tools(cl, docs, bad);
    json_object_array_sort(tools, ctl_cmp_calls);
    json_object_object_add(o, "tool_calls", tools);
    json_object_object_add(o, "by_pool", pools);
    for (size_t i = 0; i < n; i++)
        if (bad[i])
            json_object_object_add(skipped, ctl_cluster_name(cl, i), json_object_new_int64(bad[i]));
    json_object_object_add(o, "skipped", skipped);
    free(bad);
    return o;
}
