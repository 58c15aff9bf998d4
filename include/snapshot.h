/* snapshot: the manager's answers to the status, health and metrics routes, published in a shared
 * mapping so the responders answer them without a round trip to the manager (PHP-FPM's status page
 * reads its scoreboard the same way; here the documents are already rendered).
 *
 * Exact, not merely recent: every reply or event the manager writes to a responder first marks the
 * documents stale, and the manager publishes each again before its loop sleeps (status and health
 * at most every SNAPSHOT_MIN_MS, metrics every SNAPSHOT_METRICS_MS: rendering them is the dearer
 * part; stale meanwhile). While one is stale, responders ask the manager for it as before. So a
 * client that saw the answer to anything it did never reads a document from before it; a change
 * nobody asked for (a server that died, a timer) shows once the document is due again. Fields that
 * move with the clock (uptime, idle time) are as of publication, renewed at least every second; the
 * responders' own counts are written live (below).
 *
 * One writer (the manager's loop thread), many readers (responder threads): each document is a
 * sequence lock over its bytes; a reader that races a write retries, then asks the manager. */
#ifndef OCPM_SNAPSHOT_H
#define OCPM_SNAPSHOT_H

#include <stddef.h>

/* SNAPSHOT_METRICS_OM: the metrics as OpenMetrics (metrics.h), for clients whose Accept asks for it. */
/* SNAPSHOT_READY: /api/ready (reason codes only), which a cluster's front asks before each new session. */
enum { SNAPSHOT_STATUS, SNAPSHOT_HEALTH, SNAPSHOT_METRICS, SNAPSHOT_METRICS_OM, SNAPSHOT_READY, SNAPSHOT_DOCS };
#define SNAPSHOT_MIN_MS 10
#define SNAPSHOT_METRICS_MS 1000
/* A document older than this is not answered from: the manager renews them every second, so one
 * this old means a manager stuck or stopped, and its health must not be answered for it. */
#define SNAPSHOT_MAX_AGE_MS 3000

/* Manager: create and map the shared snapshot (a memfd, close-on-exec). Returns its fd or -1. */
int snapshot_create(void);
/* Responder: map the snapshot passed as fd. Returns 0 or -1. */
int snapshot_attach(int fd);
void snapshot_detach(void);

/* A number in a published JSON document that moves without the manager (the responders' own
 * counts, inflight.h): a field of SNAPSHOT_LIVE_WIDTH bytes at offset, where the responder writes
 * base + the in-flight page's count of kind, right-aligned after spaces (still JSON). So a status
 * read from the snapshot counts the request reading it, as one the manager answers does. */
enum { SNAPSHOT_LIVE_INFLIGHT, SNAPSHOT_LIVE_MESSAGES, SNAPSHOT_LIVE_REFUSED };
typedef struct snapshot_live {
    size_t offset;
    int kind;
    long long base;
} snapshot_live_t;
#define SNAPSHOT_LIVE_MAX 4
#define SNAPSHOT_LIVE_WIDTH 20

/* Manager: publish a document with its live fields (at most SNAPSHOT_LIVE_MAX). A body larger than
 * the document's room is not published (the responders then ask the manager for it). */
void snapshot_put(int doc, int status, const char *content_type, const char *body, size_t len,
                  const snapshot_live_t *live, int nlive);
/* Manager: every document is out of date (stale) / the document just put is current (fresh). */
void snapshot_stale(void);
void snapshot_fresh(int doc);
int snapshot_is_stale(int doc);

/* Responder: a copy of the document when it is published and fresh: 0, with *body malloc'd (the
 * caller frees it), the status and the content type; -1 otherwise (ask the manager). */
int snapshot_get(int doc, int *status, char *content_type, size_t ctlen, char **body, size_t *len);

#endif
