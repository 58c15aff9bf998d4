/* ctl_cluster: the commands of ocpmctl --cluster FILE (ctl_cluster.h): each first asks every node
 * for its status document (which says the node's name: a node answering under another name is
 * marked), then asks the nodes that answered for what the command merges. Exit status: 0 every
 * node answered, CTL_CLUSTER_PARTIAL (1) some node is marked, 2 bad input. */
#define _GNU_SOURCE
#include "ctl_cluster.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CTL_PATH_MAX 4096

/* What every command works with: the nodes, what each said last (or its error), the time bound. */
typedef struct ctl_run {
    ctl_cluster_t *cl;
    size_t n;
    ctl_reply_t *status; /* each node's status document, or why it is marked */
    ctl_reply_t *got;    /* the command's own request's answers */
    char **paths;
    long timeout_ms;
    size_t max_bytes; /* of one node's answer to the command's request (CTL_CLUSTER_SMALL_MAX unless said) */
    double deadline; /* CLOCK_MONOTONIC seconds: the command's end (CTL_DEADLINE_TIMES x the timeout) */
} ctl_run_t;

static double ctl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

json_object *ctl_cluster_at(json_object *obj, const char *path)
{
    char key[64];
    while (obj && *path) {
        size_t n = strcspn(path, ".");
        snprintf(key, sizeof key, "%.*s", (int)n, path);
        if (!json_object_is_type(obj, json_type_object) || !json_object_object_get_ex(obj, key, &obj))
            return NULL;
        path += n + (path[n] == '.');
    }
    return obj;
}

static void ctl_run_free(ctl_run_t *r)
{
    if (r->status)
        ctl_replies_clear(r->status, r->n);
    if (r->got)
        ctl_replies_clear(r->got, r->n);
    for (size_t i = 0; r->paths && i < r->n; i++)
        free(r->paths[i]);
    free(r->status);
    free(r->got);
    free(r->paths);
    ctl_cluster_free(r->cl);
}

/* Marks node i with why (its status document dropped). */
static void ctl_run_mark(ctl_run_t *r, size_t i, const char *why)
{
    char copy[sizeof r->status[i].error];
    snprintf(copy, sizeof copy, "%s", why);
    ctl_replies_clear(&r->status[i], 1);
    snprintf(r->status[i].error, sizeof r->status[i].error, "%s", copy);
}

/* Ask node i for path (printf-style; NULL: not this time). */
static void ctl_run_path(ctl_run_t *r, size_t i, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void ctl_run_path(ctl_run_t *r, size_t i, const char *fmt, ...)
{
    free(r->paths[i]);
    r->paths[i] = NULL;
    if (!fmt || !r->status[i].body)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&r->paths[i], fmt, ap) < 0)
        r->paths[i] = NULL;
    va_end(ap);
}

/* One round: every node with a path is asked, within the timeout and the deadline; a node whose answer
 * failed, or that is still asked past the deadline, is marked. 0, or 1 (libcurl). */
static int ctl_run_fetch(ctl_run_t *r)
{
    char err[256];
    long ms = (long)((r->deadline - ctl_now()) * 1000);
    if (ms <= 0) {
        snprintf(err, sizeof err, "the command's deadline (%d x --timeout) passed before it was done", CTL_DEADLINE_TIMES);
        for (size_t i = 0; i < r->n; i++)
            if (r->paths[i])
                ctl_run_mark(r, i, err), ctl_run_path(r, i, NULL);
        return 0;
    }
    if (ctl_cluster_fetch(r->cl, r->paths, ms < r->timeout_ms ? ms : r->timeout_ms, r->max_bytes, r->got, err,
                          sizeof err) != 0)
        return ctl_fail("%s", err);
    int late = ms < r->timeout_ms && ctl_now() + 0.1 >= r->deadline; /* cut short by the deadline (curl may end first) */
    snprintf(err, sizeof err, "the command's deadline (%d x --timeout) passed before it was done", CTL_DEADLINE_TIMES);
    for (size_t i = 0; i < r->n; i++)
        if (r->paths[i] && !r->got[i].body) {
            ctl_run_mark(r, i, late ? err : r->got[i].error);
            ctl_run_path(r, i, NULL); /* asked no more */
        }
    return 0;
}

/* The cluster file, the time bound, and every node's status (a node saying another name is marked).
 * 0, or the exit status. */
static int ctl_run_open(ctl_opts_t *o, ctl_run_t *r)
{
    char err[1200];
    *r = (ctl_run_t){.timeout_ms = 10000, .max_bytes = CTL_CLUSTER_SMALL_MAX};
    if (o->timeout) {
        char *end;
        double s = strtod(o->timeout, &end);
        if (*end || end == o->timeout || !(s > 0 && s <= 3600))
            return ctl_fail("--timeout %s: expected seconds (more than 0, at most 3600)", o->timeout), 2;
        r->timeout_ms = (long)(s * 1000) > 0 ? (long)(s * 1000) : 1;
    }
    r->deadline = ctl_now() + CTL_DEADLINE_TIMES * (double)r->timeout_ms / 1000;
    if (!(r->cl = ctl_cluster_load(o->cluster, err, sizeof err)))
        return ctl_fail("%s", err), 2;
    r->n = ctl_cluster_count(r->cl);
    r->status = calloc(r->n, sizeof *r->status);
    r->got = calloc(r->n, sizeof *r->got);
    r->paths = calloc(r->n, sizeof *r->paths);
    if (!r->status || !r->got || !r->paths)
        return ctl_fail("out of memory");
    for (size_t i = 0; i < r->n; i++)
        r->paths[i] = strdup("/api/opencode/status");
    if (ctl_cluster_fetch(r->cl, r->paths, r->timeout_ms, CTL_CLUSTER_SMALL_MAX, r->status, err, sizeof err) != 0)
        return ctl_fail("%s", err);
    for (size_t i = 0; i < r->n; i++) {
        json_object *name = r->status[i].body ? ctl_cluster_at(r->status[i].body, "ocpm.node") : NULL;
        if (name && (!json_object_is_type(name, json_type_string) ||
                     strcmp(json_object_get_string(name), ctl_cluster_name(r->cl, i)) != 0)) {
            snprintf(err, sizeof err, "it says it is node \"%.64s\"", json_object_get_string(name));
            ctl_run_mark(r, i, err);
        }
    }
    return 0;
}

/* [{"name", "url", "ok", ("error")}] */
static json_object *ctl_run_nodes(const ctl_run_t *r)
{
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < r->n; i++) {
        json_object *x = json_object_new_object();
        json_object_object_add(x, "name", json_object_new_string(ctl_cluster_name(r->cl, i)));
        json_object_object_add(x, "url", json_object_new_string(ctl_cluster_url(r->cl, i)));
        json_object_object_add(x, "ok", json_object_new_boolean(r->status[i].body != NULL));
        if (!r->status[i].body)
            json_object_object_add(x, "error", json_object_new_string(r->status[i].error));
        json_object_array_add(a, x);
    }
    return a;
}

/* Prints o (with "nodes" added) as JSON, or each marked node on stderr; the exit status. */
static int ctl_run_end(ctl_opts_t *o, ctl_run_t *r, json_object *out)
{
    int missing = 0;
    for (size_t i = 0; i < r->n; i++)
        if (!r->status[i].body) {
            missing = 1;
            if (!o->json)
                ctl_fail("node %s (%s): %s", ctl_cluster_name(r->cl, i), ctl_cluster_url(r->cl, i), r->status[i].error);
        }
    if (o->json) {
        json_object_object_add(out, "nodes", ctl_run_nodes(r));
        ctl_print_json(out);
    }
    json_object_put(out);
    ctl_run_free(r);
    return missing ? CTL_CLUSTER_PARTIAL : 0;
}

/* s percent-encoded for a query string (malloc'd). */
static char *ctl_escape(const char *s)
{
    char *out = malloc(strlen(s) * 3 + 1), *p = out;
    for (; out && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-_.~", c))
            *p++ = (char)c;
        else
            p += sprintf(p, "%%%02X", c);
    }
    if (out)
        *p = '\0';
    return out;
}

int ctl_cluster_status(ctl_opts_t *o, int argc, char **argv)
{
    (void)argc, (void)argv;
    ctl_run_t r;
    int rc = ctl_run_open(o, &r);
    if (rc)
        return ctl_run_free(&r), rc;
    json_object *rows = json_object_new_array(), *docs = json_object_new_object(), *out = json_object_new_object();
    json_object **bodies = calloc(r.n, sizeof *bodies);
    for (size_t i = 0; bodies && i < r.n; i++) {
        bodies[i] = r.status[i].body;
        json_object_array_add(rows, ctl_status_row(r.cl, i, bodies[i], r.status[i].error));
        if (bodies[i])
            json_object_object_add(docs, ctl_cluster_name(r.cl, i), json_object_get(bodies[i]));
    }
    json_object *totals = bodies ? ctl_status_totals(r.cl, bodies) : NULL;
    free(bodies);
    if (!o->json) {
        static const char *const cols[] = {"name", "url", "ok", "mode", "ready", "draining", "sessions", "running",
                                           "queued", "servers", "finished", "failed", "error", NULL};
        ctl_print_table(rows, cols);
        ctl_print_pairs(totals, "totals.");
    }
    json_object_object_add(out, "totals", totals);
    json_object_object_add(out, "status", docs);
    json_object_put(rows);
    return ctl_run_end(o, &r, out);
}

/* Newest activity first, then node, then id (as ocpmctl sessions orders one node's). */
static int ctl_cmp_activity(const void *a, const void *b)
{
    json_object *x = *(json_object *const *)a, *y = *(json_object *const *)b;
    static const char *const keys[] = {"last_activity", "node", "owner", "id"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        json_object *p = json_object_object_get(x, keys[k]), *q = json_object_object_get(y, keys[k]);
        int c = strcmp(p ? json_object_get_string(p) : "", q ? json_object_get_string(q) : "");
        if (c)
            return k == 0 ? -c : c;
    }
    return 0;
}

/* Asks node i for the page after its pager's cursor. */
static void ctl_sessions_ask(ctl_run_t *r, size_t i, const ctl_pager_t *p)
{
    char *after = *p->after ? ctl_escape(p->after) : NULL;
    if (*p->after && !after)
        return ctl_run_mark(r, i, "out of memory"), ctl_run_path(r, i, NULL);
    if (after)
        ctl_run_path(r, i, "/api/admin/sessions?limit=%ld&after=%s", p->asked, after);
    else
        ctl_run_path(r, i, "/api/admin/sessions?limit=%ld", p->asked);
    free(after);
}

/* Every node's pages, a round at a time, into pg[i]; a node whose pages go wrong is marked. 0, or 1. */
static int ctl_sessions_page(ctl_run_t *r, ctl_pager_t *pg, long limit, int capped)
{
    ctl_budget_t b = {.rows = CTL_SESSIONS_MAX, .bytes = (size_t)CTL_SESSIONS_BYTES_MAX};
    char why[200];
    int asking = 0, rc = 0;
    for (size_t i = 0; i < r->n; i++) {
        pg[i] = (ctl_pager_t){.rows = json_object_new_array(), .left = limit, .capped = capped};
        pg[i].asked = limit < CTL_SESSIONS_PAGE ? limit : CTL_SESSIONS_PAGE;
        ctl_sessions_ask(r, i, &pg[i]);
        asking |= r->paths[i] != NULL;
    }
    while (asking && (rc = ctl_run_fetch(r)) == 0) { /* one round: the next page of every node */
        asking = 0;
        for (size_t i = 0; i < r->n; i++) {
            if (!r->paths[i] || !r->got[i].body)
                continue;
            int more = ctl_sessions_take(&pg[i], r->got[i].body, r->got[i].bytes, ctl_cluster_name(r->cl, i), &b, why,
                                         sizeof why);
            if (more < 0)
                ctl_run_mark(r, i, why);
            if (more == 1)
                ctl_sessions_ask(r, i, &pg[i]), asking = 1;
            else
                ctl_run_path(r, i, NULL);
        }
    }
    return rc;
}

int ctl_cluster_sessions(ctl_opts_t *o, int argc, char **argv)
{
    (void)argc, (void)argv;
    long limit = CTL_SESSIONS_MAX;
    char *end;
    if (o->limit && ((limit = strtol(o->limit, &end, 10)) <= 0 || limit > CTL_SESSIONS_MAX || *end))
        return ctl_fail("--limit %s: expected a number from 1 to %ld", o->limit, CTL_SESSIONS_MAX), 2;
    ctl_run_t r;
    int rc = ctl_run_open(o, &r);
    if (rc)
        return ctl_run_free(&r), rc;
    ctl_pager_t *pg = calloc(r.n, sizeof *pg);
    if (!pg)
        return ctl_run_free(&r), ctl_fail("out of memory");
    rc = ctl_sessions_page(&r, pg, limit, !o->limit);
    json_object *all = json_object_new_array(), *out = json_object_new_object();
    for (size_t i = 0; i < r.n; i++) { /* a marked node is left out, as in every command */
        for (size_t k = 0; r.status[i].body && k < json_object_array_length(pg[i].rows); k++)
            json_object_array_add(all, json_object_get(json_object_array_get_idx(pg[i].rows, k)));
        json_object_put(pg[i].rows);
    }
    free(pg);
    json_object_array_sort(all, ctl_cmp_activity);
    static const char *const cols[] = {"node", "id", "owner", "executions", "succeeded", "failed", "mean_ms",
                                       "last_activity", "deleted", "workspace", NULL};
    if (!o->json && !rc)
        ctl_print_table(all, cols);
    json_object_object_add(out, "sessions", all);
    return rc ? (json_object_put(out), ctl_run_free(&r), rc) : ctl_run_end(o, &r, out);
}

/* The filters of history as a query string (each escaped), after "limit=N". 0, or 2 after saying why. */
static int ctl_history_query(ctl_opts_t *o, long *limit, char *q, size_t qlen)
{
    char *end;
    *limit = 20;
    if (o->limit && ((*limit = strtol(o->limit, &end, 10)) <= 0 || *limit > 1000 || *end))
        return ctl_fail("--limit %s: expected a number from 1 to 1000", o->limit), 2;
    double since = 0;
    if (o->since && ctl_parse_time(o->since, &since) != 0)
        return ctl_fail("--since %s: expected unix seconds or an age such as 24h", o->since), 2;
    const struct {
        const char *key, *value;
    } f[] = {{"session", o->session}, {"status", o->status}, {"mode", o->mode}};
    size_t off = (size_t)snprintf(q, qlen, "limit=%ld", *limit);
    if (o->since)
        off += (size_t)snprintf(q + off, qlen - off, "&since=%.3f", since);
    for (size_t k = 0; k < sizeof f / sizeof f[0]; k++) {
        char *v = f[k].value ? ctl_escape(f[k].value) : NULL;
        if (v && off < qlen)
            off += (size_t)snprintf(q + off, qlen - off, "&%s=%.200s", f[k].key, v);
        free(v);
    }
    return 0;
}

int ctl_cluster_history(ctl_opts_t *o, int argc, char **argv)
{
    (void)argc, (void)argv;
    char q[1024], err[256];
    long limit;
    ctl_run_t r;
    int rc = ctl_history_query(o, &limit, q, sizeof q);
    if (rc)
        return rc;
    if ((rc = ctl_run_open(o, &r)) != 0)
        return ctl_run_free(&r), rc;
    long long *before = calloc(r.n, sizeof *before);
    json_object **pages = calloc(r.n, sizeof *pages);
    if (!before || !pages || (o->cursor && ctl_cursor_parse(r.cl, o->cursor, before, err, sizeof err) != 0)) {
        free(before), free(pages), ctl_run_free(&r);
        return before && pages ? (ctl_fail("%s", err), 2) : ctl_fail("out of memory");
    }
    for (size_t i = 0; i < r.n; i++)
        if (before[i])
            ctl_run_path(&r, i, "/api/admin/executions?%s&before=%lld", q, before[i]);
        else
            ctl_run_path(&r, i, "/api/admin/executions?%s", q);
    r.max_bytes = CTL_CLUSTER_BODY_MAX; /* a page of executions may hold their prompts and answers */
    rc = ctl_run_fetch(&r);
    for (size_t i = 0; i < r.n; i++) {
        pages[i] = r.status[i].body ? r.got[i].body : NULL;
        if (pages[i] && ctl_history_check(pages[i], before[i], err, sizeof err) != 0)
            ctl_run_mark(&r, i, err), pages[i] = NULL;
    }
    int more = 0;
    json_object *rows = rc ? NULL : ctl_history_merge(r.cl, pages, limit, before, &more), *out = json_object_new_object();
    char *cursor = rows ? ctl_cursor_format(r.cl, before) : NULL;
    if (rows && !o->json) {
        static const char *const cols[] = {"node", "id", "queued", "session_id", "mode", "status", "duration_ms",
                                           "tokens_out", "error", NULL};
        ctl_add_when(rows, "queued_at", "queued");
        ctl_print_table(rows, cols);
        fprintf(stderr, "next_cursor: %s\n", more && cursor ? cursor : "(none: that was the last page)");
    }
    json_object_object_add(out, "executions", rows);
    json_object_object_add(out, "next_cursor", more && cursor ? json_object_new_string(cursor) : NULL);
    free(cursor), free(before), free(pages);
    return rc ? (json_object_put(out), ctl_run_free(&r), rc) : ctl_run_end(o, &r, out);
}

int ctl_cluster_stats(ctl_opts_t *o, int argc, char **argv)
{
    (void)argc, (void)argv;
    double since = 0;
    if (o->since && ctl_parse_time(o->since, &since) != 0)
        return ctl_fail("--since %s: expected unix seconds or an age such as 24h", o->since), 2;
    ctl_run_t r;
    int rc = ctl_run_open(o, &r);
    if (rc)
        return ctl_run_free(&r), rc;
    for (size_t i = 0; i < r.n; i++)
        ctl_run_path(&r, i, "/api/stats?histograms=1&since=%.3f", since);
    if ((rc = ctl_run_fetch(&r)) != 0)
        return ctl_run_free(&r), rc;
    json_object **docs = calloc(r.n, sizeof *docs), *out = json_object_new_object();
    char why[200];
    for (size_t i = 0; docs && i < r.n; i++) {
        docs[i] = r.status[i].body ? r.got[i].body : NULL;
        if (docs[i] && ctl_stats_check(docs[i], why, sizeof why) != 0)
            ctl_run_mark(&r, i, why), docs[i] = NULL;
    }
    json_object *st = docs ? ctl_stats_merge(r.cl, docs) : NULL;
    free(docs);
    if (st && !o->json)
        ctl_print_pairs(st, "");
    json_object_object_add(out, "stats", st);
    return ctl_run_end(o, &r, out);
}
