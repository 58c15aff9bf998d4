/* ctl_cluster: ocpmctl --cluster FILE, several ocpm nodes seen as one (docs/operations.md, "The
 * cluster as one"). The file names the nodes; every node is asked at once over HTTP (libcurl's multi
 * interface); the answers are merged. A node that cannot be reached or answers something else than
 * the JSON expected is marked with its error, never a failure of the whole command: the exit status
 * says whether every node answered (CTL_CLUSTER_PARTIAL). The parsers and merges are pure (no I/O),
 * for the unit tests (tests/unit/test_ctl_cluster.c). */
#ifndef OCPM_CTL_CLUSTER_H
#define OCPM_CTL_CLUSTER_H

#include <stddef.h>
#include <stdio.h>

#include <json-c/json.h>

#include "ctl.h"

#define CTL_CLUSTER_MAX 256          /* nodes in one file */
#define CTL_CLUSTER_NAME_MAX 32      /* [a-z0-9-]{1,32}, no '-' first or last */
#define CTL_CLUSTER_URL_MAX 1024
#define CTL_CLUSTER_BODY_MAX (64L << 20) /* bytes of one node's answer (a history page); more is refused */
#define CTL_CLUSTER_SMALL_MAX (4L << 20) /* the same for a status document, stats, a page of sessions */
/* Bytes of all nodes' answers to one round together: parsed JSON takes some 40 times its text, so
 * this bounds what hostile nodes can make ocpmctl hold (nodes past it are marked). */
#define CTL_CLUSTER_TOTAL_MAX (256L << 20)
#define CTL_CLUSTER_PARTIAL 1        /* exit status: printed, but some node did not answer */

/* ctl_cluster_file.c: the file, one `NAME URL` a line; blank lines and `#` comments ignored. */
typedef struct ctl_cluster ctl_cluster_t;
/* The nodes of the file at path, or NULL with err naming path:line and what is wrong. */
ctl_cluster_t *ctl_cluster_load(const char *path, char *err, size_t errlen);
/* The same from text (path only names it in err). */
ctl_cluster_t *ctl_cluster_parse(const char *text, const char *path, char *err, size_t errlen);
void ctl_cluster_free(ctl_cluster_t *cl);
size_t ctl_cluster_count(const ctl_cluster_t *cl);
const char *ctl_cluster_name(const ctl_cluster_t *cl, size_t i);
/* The base URL without a trailing '/': paths such as /api/stats are appended to it. */
const char *ctl_cluster_url(const ctl_cluster_t *cl, size_t i);
/* The index of the node called name, or -1. */
int ctl_cluster_find(const ctl_cluster_t *cl, const char *name, size_t len);

/* ctl_cluster_fetch.c: one GET per node, all at once. */
typedef struct ctl_reply {
    json_object *body; /* the answer's JSON object, or NULL with error */
    size_t bytes;      /* the answer's length (with body) */
    char error[256];
} ctl_reply_t;
/* The whole of a command ends within CTL_DEADLINE_TIMES x --timeout: a node still being asked then
 * is marked. */
#define CTL_DEADLINE_TIMES 6
/* GET url(i) + paths[i] for every node whose paths[i] is not NULL (the others' replies are left
 * as they are), each within timeout_ms (connecting within 2 s) and max_bytes, all of them within
 * CTL_CLUSTER_TOTAL_MAX. Returns 0, or -1 when libcurl itself could not start (err). */
int ctl_cluster_fetch(const ctl_cluster_t *cl, char *const *paths, long timeout_ms, size_t max_bytes, ctl_reply_t *out,
                      char *err, size_t errlen);
/* Frees the bodies and clears the errors of n replies. */
void ctl_replies_clear(ctl_reply_t *r, size_t n);

/* ctl_cluster_cursor.c: history's cursor across nodes, `NAME:ID,NAME:ID` (ID: the last execution id
 * taken from that node, its next page's `before`; 0: nothing taken yet, its next page starts from its
 * newest). A node absent from the text is read from its newest too (before[i] 0); a negative or
 * malformed ID, an unknown node or one named twice is refused (-1, err; before[] all 0). */
int ctl_cursor_parse(const ctl_cluster_t *cl, const char *s, long long *before, char *err, size_t errlen);
/* The text of before[] (count nodes): every node of the file in its order, `NAME:0` for one nothing
 * was taken from, so it is never "" (a node whose rows are still to come is never forgotten).
 * malloc'd; NULL: out of memory. */
char *ctl_cursor_format(const ctl_cluster_t *cl, const long long *before);

/* ctl_cluster_history.c: one page merged from the nodes' pages (pages[i]: node i's answer to
 * /api/admin/executions with before[i], NULL when it did not answer). Rows newest first by queued_at,
 * then node name, then id (newest first); each gets "node". At most limit rows; it stops early
 * where a node's page ran out while that node has more (its unseen rows could be newer). before[i]
 * advances to the last id taken from node i; a node that did not answer keeps its own. *more: some
 * node may have rows not taken yet (or did not answer). */
json_object *ctl_history_merge(const ctl_cluster_t *cl, json_object *const *pages, long limit, long long *before,
                               int *more);
/* Whether node's page read from before (0: its newest) can be merged: it holds an executions array,
 * and when its next_cursor says more follow, at least one row that goes on from before (ids below
 * it, decreasing). 0, or -1 with why (the node is to be marked: its place in the cursor is kept). */
int ctl_history_check(json_object *page, long long before, char *why, size_t whylen);

/* ctl_cluster_sessions.c: one node's pages of GET /api/admin/sessions. Bounds: at most
 * CTL_SESSIONS_MAX rows per node (or --limit) and in all, at most CTL_SESSIONS_BYTES_MAX bytes of
 * answers in all, pages of CTL_SESSIONS_PAGE rows. */
#define CTL_SESSIONS_MAX 1000000L
#define CTL_SESSIONS_BYTES_MAX (256L << 20)
#define CTL_SESSIONS_PAGE 1000L
typedef struct ctl_pager {
    json_object *rows; /* the rows taken from the node, each with "node" (an array the caller owns) */
    long left;         /* rows still to take from it */
    long asked;        /* rows its next page is asked for: min(left, CTL_SESSIONS_PAGE) */
    int capped;        /* left came from CTL_SESSIONS_MAX, not --limit: more than that is an error */
    char after[1024];  /* the cursor ("OWNER/ID") its next page starts after; "" for the first page */
} ctl_pager_t;
typedef struct ctl_budget {
    long rows;    /* rows that may still be taken from all nodes */
    size_t bytes; /* bytes of answers that may still be taken */
} ctl_budget_t;
/* Node's page (bytes long) into p, charged to b: 1 when its next page is to be asked (after p->after,
 * p->asked rows), 0 when the node is done (no next_cursor, or --limit reached), -1 with why when the
 * node is to be marked: no sessions array, more rows than asked, an empty page with a next_cursor, a
 * next_cursor that is not an OWNER/ID after the one before (a node paging without end or in a
 * circle), the budget spent, or more than CTL_SESSIONS_MAX rows while capped. */
int ctl_sessions_take(ctl_pager_t *p, json_object *page, size_t bytes, const char *node, ctl_budget_t *b, char *why,
                      size_t whylen);

/* ctl_cluster_stats.c: /api/stats?histograms of every node (docs[i], NULL when it did not answer)
 * added up: counts, tokens, cost summed, means from sums and counts, percentiles from the summed
 * histograms (db_tally_hist_percentiles), the busiest sessions (with node) and tools by key. A value
 * of a node that is not a count (an integer from 0 to CTL_STATS_COUNT_MAX) or an amount (a finite
 * number from 0 to CTL_STATS_AMOUNT_MAX) where one is expected, or a row whose name (tool, status,
 * session, pool, key) is longer than CTL_STATS_KEY_MAX bytes, is left out and counted in
 * "skipped": {"NAME": n} (only nodes with some). NULL: out of memory. */
#define CTL_STATS_COUNT_MAX (1LL << 50)
#define CTL_STATS_AMOUNT_MAX 1e15
#define CTL_STATS_KEY_MAX 256
json_object *ctl_stats_merge(const ctl_cluster_t *cl, json_object *const *docs);
/* Whether a node's /api/stats?histograms can be merged: its histograms exist, use the bucket scheme
 * of db.h (DB_HIST_BUCKETS, 0.01 ms, DB_HIST_RATIO), and each metric's buckets are valid indices in
 * increasing order whose counts add up to its count. 0, or -1 with why (the node is to be marked). */
int ctl_stats_check(json_object *doc, char *why, size_t whylen);
/* ctl_cluster_status.c: totals over the status documents that came (docs[i] NULL: missing), and one
 * summary row per node (name, url, ok, error, mode, sessions, running, queued, draining, ...). */
json_object *ctl_status_totals(const ctl_cluster_t *cl, json_object *const *docs);
json_object *ctl_status_row(const ctl_cluster_t *cl, size_t i, json_object *doc, const char *error);

/* ctl_cluster_front.c: the cluster file, written for the front and for Prometheus. */
/* A node's URL as the front's address for it: http://ADDRESS:PORT[/], ADDRESS an IPv4 or bracketed
 * IPv6 address exactly as inet_ntop (and so nginx's $upstream_addr) writes it, PORT 1..65535 with no
 * leading zero; addr gets "ADDRESS:PORT". 0, or -1 for anything else (a name, a path, https). */
int ctl_front_address(const char *url, char *addr, size_t addrlen);
/* The nodes' part of nginx/ocpm-cluster.conf.in: ocpm_place, an upstream per node, the maps. 0, or -1
 * with err (a URL that is no front address). */
int ctl_front_conf(const ctl_cluster_t *cl, FILE *f, char *err, size_t errlen);
/* A Prometheus scrape configuration: every node through front (HOST:PORT) at /nodes/NAME/metrics,
 * labelled node, as the front's operator with the password in password_file (an absolute path). */
#define CTL_PROMETHEUS_PASSWORD_FILE "/etc/prometheus/ocpm-operator.password"
int ctl_prometheus_conf(const ctl_cluster_t *cl, const char *front, const char *password_file, FILE *f, char *err,
                        size_t errlen);

/* ctl_cluster.c: the commands with --cluster (the `cluster` column of ctl.c's table). */
/* obj's member at a dotted path ("ocpm.node"), or NULL (a node's answer may lack anything). */
json_object *ctl_cluster_at(json_object *obj, const char *path);
/* (The commands themselves, ctl_cluster_status and the others, are declared in ctl.h.) */

#endif
