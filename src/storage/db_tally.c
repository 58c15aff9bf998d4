/* db_tally: adds up executions for /api/stats, whether they come one row at a time (a short range,
 * the partial days at a long range's edges, the rows not final yet) or as a day's rollup, and turns
 * the sums into the answer. Percentiles are exact (sorted values) when every value was seen, else
 * read from the rollups' histograms: the rank is exact, the value is its bucket's geometric middle,
 * within DB_HIST_RATIO's square root (2.47%) of the exact nearest-rank value. */
#define _GNU_SOURCE
#include "db.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"

/* Executions of one pool, mode and status. */
typedef struct tally_group {
    char *pool, *mode, *status;
    db_tally_group_t sum;
} tally_group_t;

typedef struct tally_session {
    char *key; /* owner '\0' session id */
    size_t owner_len;
    long long n, failed, nd;
    double sum_d;
} tally_session_t;

typedef struct tally_tool {
    char *tool, *status;
    long long calls;
} tally_tool_t;

typedef struct tally_values {
    double *v;
    size_t n, cap;
    long long hist[DB_HIST_BUCKETS];
} tally_values_t;

struct db_tally {
    int exact;
    tally_group_t *groups;
    size_t ngroups;
    tally_tool_t *tools;
    size_t ntools, captools;
    tally_session_t *sessions; /* open addressing, capacity a power of two */
    size_t nsessions, cap;
    tally_values_t values[DB_TALLY_METRICS];
};

/* Saturating: the agent reports its tokens, and a forged count must not overflow the sum. */
static long long tally_add(long long a, long long b)
{
    long long r;
    return __builtin_add_overflow(a, b, &r) ? (b > 0 ? LLONG_MAX : LLONG_MIN) : r;
}

/* g's executions added to s (one group, or the sums of several). */
static void tally_sum(db_tally_group_t *s, const db_tally_group_t *g)
{
    s->n += g->n;
    s->nd += g->nd;
    s->nw += g->nw;
    s->nr += g->nr;
    s->sum_d += g->sum_d;
    s->sum_w += g->sum_w;
    s->sum_r += g->sum_r;
    if (g->max_r > s->max_r)
        s->max_r = g->max_r;
    s->tokens_in = tally_add(s->tokens_in, g->tokens_in);
    s->tokens_out = tally_add(s->tokens_out, g->tokens_out);
    s->cost += g->cost;
}

/* arr (n used of *cap, elem bytes each) with room for one more: itself, or grown (doubling from
 * first); NULL when out of memory (arr and *cap are then as they were). */
static void *tally_room(void *arr, size_t n, size_t *cap, size_t elem, size_t first)
{
    if (n < *cap)
        return arr;
    size_t c = *cap ? *cap * 2 : first;
    void *grown = realloc(arr, c * elem);
    if (grown)
        *cap = c;
    return grown;
}

db_tally_t *db_tally_new(int exact)
{
    db_tally_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->exact = exact;
    t->cap = 64;
    t->sessions = calloc(t->cap, sizeof *t->sessions);
    if (!t->sessions) {
        free(t);
        return NULL;
    }
    return t;
}

void db_tally_free(db_tally_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->ngroups; i++) {
        free(t->groups[i].pool);
        free(t->groups[i].mode);
        free(t->groups[i].status);
    }
    free(t->groups);
    for (size_t i = 0; i < t->ntools; i++) {
        free(t->tools[i].tool);
        free(t->tools[i].status);
    }
    free(t->tools);
    for (size_t i = 0; i < t->cap; i++)
        free(t->sessions[i].key);
    free(t->sessions);
    for (int m = 0; m < DB_TALLY_METRICS; m++)
        free(t->values[m].v);
    free(t);
}

static int tally_same(const char *a, const char *b) { return strcmp(a ? a : "", b ? b : "") == 0; }

int db_tally_group(db_tally_t *t, const char *pool, const char *mode, const char *status, const db_tally_group_t *g)
{
    tally_group_t *x = NULL;
    for (size_t i = 0; i < t->ngroups && !x; i++)
        if (tally_same(t->groups[i].pool, pool) && tally_same(t->groups[i].mode, mode) &&
            tally_same(t->groups[i].status, status))
            x = &t->groups[i];
    if (!x) {
        tally_group_t *grown = realloc(t->groups, (t->ngroups + 1) * sizeof *grown);
        if (!grown)
            return -1;
        t->groups = grown;
        x = &t->groups[t->ngroups];
        *x = (tally_group_t){.pool = strdup(pool ? pool : ""), .mode = strdup(mode ? mode : ""),
                             .status = strdup(status ? status : ""), .sum = {.max_r = -1}};
        t->ngroups++;
        if (!x->pool || !x->mode || !x->status)
            return -1;
    }
    db_tally_group_t *s = &x->sum;
    tally_sum(s, g);
    return 0;
}

static uint64_t tally_hash(const char *k, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
    return h;
}

static int tally_grow(db_tally_t *t)
{
    size_t cap = t->cap * 2;
    tally_session_t *n = calloc(cap, sizeof *n);
    if (!n)
        return -1;
    for (size_t i = 0; i < t->cap; i++) {
        tally_session_t *o = &t->sessions[i];
        if (!o->key)
            continue;
        size_t j = tally_hash(o->key, o->owner_len + 1 + strlen(o->key + o->owner_len + 1)) & (cap - 1);
        while (n[j].key)
            j = (j + 1) & (cap - 1);
        n[j] = *o;
    }
    free(t->sessions);
    t->sessions = n;
    t->cap = cap;
    return 0;
}

int db_tally_session(db_tally_t *t, const char *owner, const char *session, long long n, long long failed, long long nd,
                     double sum_d)
{
    if (2 * (t->nsessions + 1) > t->cap && tally_grow(t) != 0)
        return -1;
    size_t ol = strlen(owner ? owner : ""), sl = strlen(session ? session : ""), len = ol + 1 + sl;
    char key[1024];
    if (len >= sizeof key)
        return -1; /* ids and user names are bounded far below (valid.h) */
    memcpy(key, owner ? owner : "", ol);
    key[ol] = '\0';
    memcpy(key + ol + 1, session ? session : "", sl);
    size_t j = tally_hash(key, len) & (t->cap - 1);
    while (t->sessions[j].key &&
           !(t->sessions[j].owner_len == ol && memcmp(t->sessions[j].key, key, len) == 0 &&
             t->sessions[j].key[len] == '\0'))
        j = (j + 1) & (t->cap - 1);
    tally_session_t *s = &t->sessions[j];
    if (!s->key) {
        if (!(s->key = malloc(len + 1)))
            return -1;
        memcpy(s->key, key, len);
        s->key[len] = '\0';
        s->owner_len = ol;
        t->nsessions++;
    }
    s->n += n;
    s->failed += failed;
    s->nd += nd;
    s->sum_d += sum_d;
    return 0;
}

/* Appended as they come (each source is grouped already: the same tool and status appear at most
 * once per source); tally_tools merges them after one sort. A search per call here was quadratic
 * in the number of tool names, which the agent chooses. */
int db_tally_tool(db_tally_t *t, const char *tool, const char *status, long long calls)
{
    tally_tool_t *tools = tally_room(t->tools, t->ntools, &t->captools, sizeof *t->tools, 16);
    if (!tools)
        return -1;
    t->tools = tools;
    t->tools[t->ntools] = (tally_tool_t){strdup(tool ? tool : ""), strdup(status ? status : ""), calls};
    if (!t->tools[t->ntools].tool || !t->tools[t->ntools].status) {
        free(t->tools[t->ntools].tool);
        free(t->tools[t->ntools].status);
        return -1;
    }
    t->ntools++;
    return 0;
}

/* The bucket of v, as DB_BUCKET computes it in SQL. */
static int tally_bucket_of(double v)
{
    if (!(v >= 0.01))
        return 0;
    double k = 1 + floor(log(v * 100) / log(DB_HIST_RATIO));
    return k >= DB_HIST_BUCKETS - 1 ? DB_HIST_BUCKETS - 1 : (int)k;
}

int db_tally_value(db_tally_t *t, int metric, double v)
{
    tally_values_t *x = &t->values[metric];
    x->hist[tally_bucket_of(v)]++;
    if (!t->exact)
        return 0;
    double *values = tally_room(x->v, x->n, &x->cap, sizeof *x->v, 1024);
    if (!values)
        return -1;
    x->v = values;
    x->v[x->n++] = v;
    return 0;
}

void db_tally_bucket(db_tally_t *t, int metric, int bucket, long long n)
{
    if (metric >= 0 && metric < DB_TALLY_METRICS && bucket >= 0 && bucket < DB_HIST_BUCKETS)
        t->values[metric].hist[bucket] += n;
}

static void tally_swap(double *a, double *b)
{
    double t = *a;
    *a = *b;
    *b = t;
}

/* Puts the k-th smallest of v[lo..hi] at v[k], smaller ones before it, larger after (Hoare's
 * selection, median of three): three ranks of a range cost a few passes, not a sort. */
static void tally_select(double *v, size_t lo, size_t hi, size_t k)
{
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < v[lo])
            tally_swap(&v[mid], &v[lo]);
        if (v[hi] < v[lo])
            tally_swap(&v[hi], &v[lo]);
        if (v[hi] < v[mid])
            tally_swap(&v[hi], &v[mid]);
        double pivot = v[mid];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                tally_swap(&v[i], &v[j]);
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return;
    }
}

/* The value of 0-based rank k: exact from the sorted values, else its bucket's middle (*beyond set
 * when that is the last bucket, which holds everything from about 36 hours up: no bound then). */
static double tally_at(const tally_values_t *x, int exact, long long k, int *beyond)
{
    if (exact) {
        tally_select(x->v, 0, x->n - 1, (size_t)k);
        return x->v[k];
    }
    long long seen = 0;
    for (int b = 0; b < DB_HIST_BUCKETS; b++) {
        seen += x->hist[b];
        if (seen > k) {
            if (b == DB_HIST_BUCKETS - 1)
                *beyond = 1;
            return b == 0 ? 0 : 0.01 * pow(DB_HIST_RATIO, b - 0.5);
        }
    }
    return 0;
}

/* p50/p95/p99 (nearest rank), mean and count of one metric's n values (x: their histogram, and
 * the values themselves when exact). */
static json_object *tally_percentiles_of(tally_values_t *x, int exact, long long n, double sum)
{
    static const struct {
        const char *name;
        double p;
    } ps[] = {{"p50", 0.50}, {"p95", 0.95}, {"p99", 0.99}};
    json_object *o = json_object_new_object();
    int beyond = 0;
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        long long rank = (long long)ceil(ps[i].p * (double)n - 1e-9); /* 1-based */
        if (rank < 1)
            rank = 1;
        json_object_object_add(o, ps[i].name, n ? json_object_new_double(tally_at(x, exact, rank - 1, &beyond)) : NULL);
    }
    json_object_object_add(o, "mean", n ? json_object_new_double(sum / (double)n) : NULL);
    json_object_object_add(o, "count", json_object_new_int64(n));
    json_object_object_add(o, "exact", json_object_new_boolean(exact));
    if (!exact)
        json_object_object_add(o, "max_relative_error", beyond ? NULL : json_object_new_double(DB_TALLY_ERROR));
    return o;
}

static json_object *tally_percentiles(db_tally_t *t, int metric, long long n, double sum)
{
    return tally_percentiles_of(&t->values[metric], t->exact, n, sum);
}

json_object *db_tally_hist_percentiles(const long long *hist, long long n, double sum)
{
    tally_values_t *x = calloc(1, sizeof *x); /* 4 KB of counts: not on the stack */
    if (!x)
        return NULL;
    memcpy(x->hist, hist, sizeof x->hist);
    json_object *o = tally_percentiles_of(x, 0, n, sum);
    free(x);
    return o;
}

/* One metric's part of "histograms": count, sum, and the buckets that are not empty. */
static json_object *tally_hist_json(const tally_values_t *x, long long n, double sum)
{
    json_object *o = json_object_new_object(), *b = json_object_new_array();
    json_object_object_add(o, "count", json_object_new_int64(n));
    json_object_object_add(o, "sum", json_object_new_double(sum));
    for (int k = 0; x && k < DB_HIST_BUCKETS; k++) {
        if (!x->hist[k])
            continue;
        json_object *pair = json_object_new_array();
        json_object_array_add(pair, json_object_new_int(k));
        json_object_array_add(pair, json_object_new_int64(x->hist[k]));
        json_object_array_add(b, pair);
    }
    json_object_object_add(o, "buckets", b);
    return o;
}

/* What adds up across nodes: the bucket scheme (db.h), each metric's histogram, RSS's count and sum. */
static json_object *tally_histograms(const db_tally_t *t, const db_tally_group_t *all)
{
    json_object *o = json_object_new_object(), *scheme = json_object_new_object(), *rss = json_object_new_object();
    json_object_object_add(scheme, "buckets", json_object_new_int(DB_HIST_BUCKETS));
    json_object_object_add(scheme, "first_ms", json_object_new_double(0.01));
    json_object_object_add(scheme, "ratio", json_object_new_double(DB_HIST_RATIO));
    json_object_object_add(scheme, "rule", json_object_new_string("bucket 0: v < first_ms; bucket k: first_ms * "
                                                                  "ratio^(k-1) <= v < first_ms * ratio^k; the last "
                                                                  "holds everything above"));
    json_object_object_add(o, "scheme", scheme);
    json_object_object_add(o, "duration_ms", tally_hist_json(&t->values[DB_TALLY_DURATION], all->nd, all->sum_d));
    json_object_object_add(o, "queue_wait_ms", tally_hist_json(&t->values[DB_TALLY_WAIT], all->nw, all->sum_w));
    json_object_object_add(rss, "count", json_object_new_int64(all->nr));
    json_object_object_add(rss, "sum", json_object_new_double(all->sum_r));
    json_object_object_add(o, "peak_rss_kb", rss);
    return o;
}

static int tally_busier(const tally_session_t *a, const tally_session_t *b)
{
    if (a->n != b->n)
        return a->n > b->n;
    int c = strcmp(a->key + a->owner_len + 1, b->key + b->owner_len + 1);
    return c ? c < 0 : strcmp(a->key, b->key) < 0;
}

/* The DB_TALLY_BUSIEST sessions with the most executions (then by id). */
static json_object *tally_busiest(const db_tally_t *t)
{
    const tally_session_t *top[DB_TALLY_BUSIEST];
    int ntop = 0;
    for (size_t i = 0; i < t->cap; i++) {
        const tally_session_t *s = &t->sessions[i];
        if (!s->key || s->n <= 0)
            continue;
        int at = ntop;
        while (at > 0 && tally_busier(s, top[at - 1]))
            at--;
        if (at >= DB_TALLY_BUSIEST)
            continue;
        if (ntop < DB_TALLY_BUSIEST)
            ntop++;
        memmove(&top[at + 1], &top[at], (size_t)(ntop - 1 - at) * sizeof top[0]);
        top[at] = s;
    }
    json_object *busy = json_object_new_array();
    for (int i = 0; i < ntop; i++) {
        json_object *b = json_object_new_object();
        json_object_object_add(b, "session_id", json_object_new_string(top[i]->key + top[i]->owner_len + 1));
        json_object_object_add(b, "executions", json_object_new_int64(top[i]->n));
        json_object_object_add(b, "failed", json_object_new_int64(top[i]->failed));
        json_object_object_add(b, "mean_ms", top[i]->nd > 0 ? json_object_new_double(round(top[i]->sum_d / (double)top[i]->nd * 10) / 10) : NULL);
        json_object_object_add(b, "owner", top[i]->owner_len ? json_object_new_string(top[i]->key) : NULL);
        json_object_array_add(busy, b);
    }
    return busy;
}

static int tally_cmp_tool(const void *a, const void *b)
{
    const tally_tool_t *x = a, *y = b;
    if (x->calls != y->calls)
        return x->calls < y->calls ? 1 : -1;
    int c = strcmp(x->tool, y->tool);
    return c ? c : strcmp(x->status, y->status);
}

static int tally_cmp_tool_key(const void *a, const void *b)
{
    const tally_tool_t *x = a, *y = b;
    int c = strcmp(x->tool, y->tool);
    return c ? c : strcmp(x->status, y->status);
}

/* The agent's tool calls by tool and status, the most used first (at most DB_TALLY_TOOLS). */
static json_object *tally_tools(db_tally_t *t)
{
    /* Merge the sources' counts of the same tool and status, then order by calls. */
    if (t->ntools > 1) /* qsort's array may not be NULL, even empty */
        qsort(t->tools, t->ntools, sizeof *t->tools, tally_cmp_tool_key);
    size_t n = 0;
    for (size_t i = 0; i < t->ntools; i++) {
        if (n && tally_cmp_tool_key(&t->tools[n - 1], &t->tools[i]) == 0) {
            t->tools[n - 1].calls += t->tools[i].calls;
            free(t->tools[i].tool);
            free(t->tools[i].status);
            continue;
        }
        t->tools[n++] = t->tools[i];
    }
    t->ntools = n;
    if (t->ntools > 1)
        qsort(t->tools, t->ntools, sizeof *t->tools, tally_cmp_tool);
    json_object *tools = json_object_new_array();
    for (size_t i = 0, shown = 0; i < t->ntools && shown < DB_TALLY_TOOLS; i++) {
        if (t->tools[i].calls <= 0)
            continue;
        json_object *o = json_object_new_object();
        json_object_object_add(o, "tool", json_object_new_string(t->tools[i].tool));
        json_object_object_add(o, "status", json_object_new_string(t->tools[i].status));
        json_object_object_add(o, "calls", json_object_new_int64(t->tools[i].calls));
        json_object_array_add(tools, o);
        shown++;
    }
    return tools;
}

static int tally_cmp_pool(const void *a, const void *b)
{
    const tally_group_t *x = a, *y = b;
    return strcmp(x->pool, y->pool);
}

/* Executions, tokens and cost by pool (in the pools' order). */
static json_object *tally_pools(db_tally_t *t)
{
    if (t->ngroups > 1)
        qsort(t->groups, t->ngroups, sizeof *t->groups, tally_cmp_pool);
    json_object *pools = json_object_new_object();
    for (size_t i = 0; i < t->ngroups;) {
        db_tally_group_t p = {0};
        long long succeeded = 0;
        size_t j = i;
        for (; j < t->ngroups && strcmp(t->groups[j].pool, t->groups[i].pool) == 0; j++) {
            const db_tally_group_t *g = &t->groups[j].sum;
            tally_sum(&p, g);
            if (strcmp(t->groups[j].status, "succeeded") == 0)
                succeeded += g->n;
        }
        if (p.n > 0) {
            json_object *o = json_object_new_object(), *tok = json_object_new_object();
            json_object_object_add(o, "executions", json_object_new_int64(p.n));
            json_object_object_add(o, "succeeded", json_object_new_int64(succeeded));
            json_object_object_add(tok, "in", json_object_new_int64(p.tokens_in));
            json_object_object_add(tok, "out", json_object_new_int64(p.tokens_out));
            json_object_object_add(o, "tokens", tok);
            json_object_object_add(o, "cost", json_object_new_double(p.cost));
            json_object_object_add(o, "mean_ms", p.nd > 0 ? json_object_new_double(round(p.sum_d / (double)p.nd * 10) / 10) : NULL);
            json_object_object_add(pools, t->groups[i].pool, o);
        }
        i = j;
    }
    return pools;
}

static void tally_count(json_object *by, const char *key, long long n)
{
    json_object *v;
    long long cur = json_object_object_get_ex(by, key, &v) ? json_object_get_int64(v) : 0;
    json_object_object_add(by, key, json_object_new_int64(cur + n));
}

json_object *db_tally_json(db_tally_t *t, double since, double until, int histograms)
{
    json_object *o = json_object_new_object(), *by_status = json_object_new_object(),
                *by_mode = json_object_new_object();
    db_tally_group_t all = {.max_r = -1};
    for (size_t i = 0; i < t->ngroups; i++) {
        const db_tally_group_t *g = &t->groups[i].sum;
        if (g->n <= 0)
            continue;
        tally_count(by_status, t->groups[i].status, g->n);
        tally_count(by_mode, t->groups[i].mode, g->n);
        tally_sum(&all, g);
    }
    json_object_object_add(o, "since", json_object_new_double(since));
    json_object_object_add(o, "until", json_object_new_double(until));
    json_object_object_add(o, "total", json_object_new_int64(all.n));
    json_object_object_add(o, "by_status", by_status);
    json_object_object_add(o, "by_mode", by_mode);
    json_object_object_add(o, "duration_ms", tally_percentiles(t, DB_TALLY_DURATION, all.nd, all.sum_d));
    json_object_object_add(o, "queue_wait_ms", tally_percentiles(t, DB_TALLY_WAIT, all.nw, all.sum_w));
    json_object *rss = json_object_new_object(), *tok = json_object_new_object();
    json_object_object_add(rss, "peak", all.max_r >= 0 ? json_object_new_int64(all.max_r) : NULL);
    json_object_object_add(rss, "mean", all.nr > 0 ? json_object_new_double(all.sum_r / (double)all.nr) : NULL);
    json_object_object_add(o, "peak_rss_kb", rss);
    json_object_object_add(tok, "in", json_object_new_int64(all.tokens_in));
    json_object_object_add(tok, "out", json_object_new_int64(all.tokens_out));
    json_object_object_add(o, "tokens", tok);
    json_object_object_add(o, "cost", json_object_new_double(all.cost));
    json_object_object_add(o, "busiest_sessions", tally_busiest(t));
    json_object_object_add(o, "tool_calls", tally_tools(t));
    json_object_object_add(o, "by_pool", tally_pools(t));
    if (histograms)
        json_object_object_add(o, "histograms", tally_histograms(t, &all));
    return o;
}
