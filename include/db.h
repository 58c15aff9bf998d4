/* db: the manager's SQLite store (sessions, executions, manager_events).
 *
 * The manager is the only writer. Opening sets busy_timeout, WAL and
 * foreign keys, then applies the missing migrations (PRAGMA user_version) in
 * one transaction. Every statement is prepared once at open. Calls return
 * 0 or -1 and never exit; the last SQLite message is in db_errmsg(). */
#ifndef OCPM_DB_H
#define OCPM_DB_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "exec_status.h"

typedef struct db db_t;

/* One execution as the manager knows it. Strings are borrowed for the call. */
typedef struct db_exec {
    int64_t id;
    const char *session_id, *owner, *mode;
    const char *pool; /* the pool it runs in (NULL: "default") */
    exec_status_t status;
    const char *argv_json, *model, *agent;
    const char *prompt;
    size_t prompt_len;
    const char *answer;
    size_t answer_len;
    const char *oc_session_id, *stderr_tail, *error;
    long pid;
    double queued_at, started_at, finished_at; /* unix seconds; 0 = not yet */
    int has_exit, exit_code, signal;
    long peak_rss_kb;
    double cpu_user_ms, cpu_sys_ms;
    int has_usage;
    long long tokens_in, tokens_out;
    double cost;
    int has_changes;
    long long changes[3]; /* files, additions, deletions */
} db_exec_t;

typedef struct db_session {
    const char *id, *owner, *workspace, *oc_session_id;
    double created_at, last_activity;
    long message_count;
    int server; /* the opencode server it is placed on, -1: none yet */
    const char *pool; /* the pool it lives in */
} db_session_t;

typedef struct db_exec_filter {
    const char *owner;      /* NULL: everyone's (operators only) */
    const char *session_id; /* NULL: any */
    const char *status;     /* NULL: any */
    const char *mode;       /* NULL: any */
    double since, until;    /* queued_at range, unix seconds; 0: open */
    long long before;       /* cursor: ids below this; 0: from the newest */
    long limit;
    size_t max_bytes;       /* the page ends early once its rows would pass this as JSON; 0: no bound */
} db_exec_filter_t;

/* One tool call of a turn. output_bytes < 0: not known. Times in unix seconds (0: not known). */
typedef struct db_tool {
    const char *tool, *call_id, *status, *input, *input_sha256, *error;
    long long input_bytes, output_bytes;
    double started_at, ended_at;
} db_tool_t;

/* One event a client was sent: its id within the execution, its name, its data (JSON text). */
typedef struct db_event {
    long long seq;
    const char *type, *data;
} db_event_t;
typedef void (*db_event_fn)(void *ctx, const db_event_t *ev);

/* A permission or question prompt. request and reply are JSON texts (reply NULL while pending). */
typedef struct db_prompt {
    const char *id, *kind, *opencode_id, *owner, *session_id, *status, *request, *reply, *replied_by;
    int64_t execution_id;
    double asked_at, replied_at;
} db_prompt_t;

typedef struct db_webhook {
    const char *delivery, *event, *error;
    int64_t execution_id;
    int delivered, attempts;
    long http_status;
    double created_at, finished_at;
} db_webhook_t;

/* store_prompts: keep prompt/answer text (cut at text_limit bytes) or only
 * their sizes and SHA-256. A database SQLite can only open read-only is refused. */
db_t *db_open(const char *path, int store_prompts, long text_limit, char *err, size_t errlen);
void db_close(db_t *db);
/* How long a write waits for another connection's lock before it fails as busy. The event
 * loop waits with it, so the manager keeps this short. */
void db_set_busy_timeout(db_t *db, long ms);
/* Why the last call failed: SQLite's message, and its class. */
const char *db_errmsg(db_t *db);
typedef enum { DB_FAULT_NONE, DB_FAULT_BUSY, DB_FAULT_FULL, DB_FAULT_READONLY, DB_FAULT_IO, DB_FAULT_OTHER } db_fault_t;
db_fault_t db_fault(db_t *db);
/* Bytes SQLite holds in this process (its page caches included), for the status endpoint. */
long long db_memory_used(void);

/* Is the open file still the one at its path? DB_GONE: it was removed (or the connection is
 * closed); DB_REPLACED: another file took its name. */
typedef enum { DB_IN_PLACE, DB_GONE, DB_REPLACED } db_moved_t;
db_moved_t db_moved(db_t *db);
/* After DB_GONE: copy the still-open database back to its path (SQLite's backup API) and
 * reconnect to it, so no committed row is lost. On failure nothing changed, or (when only the
 * reconnect failed) every call fails until a later db_restore succeeds. */
int db_restore(db_t *db, char *err, size_t errlen);

/* db_turns.c. A finished execution's tool calls (in order) and the events its clients were sent,
 * in one transaction. */
int db_turn_store(db_t *db, int64_t exec_id, const db_tool_t *tools, size_t ntools, const db_event_t *events,
                  size_t nevents);
/* An execution's tool calls as the API shows them (a JSON array), or NULL on failure. */
json_object *db_tool_list(db_t *db, int64_t exec_id);
/* fn for each stored event of an execution with an id above after, in order. */
int db_event_each(db_t *db, int64_t exec_id, long long after, db_event_fn fn, void *ctx);
/* Add what the agent did to an execution's row (as db_exec_get answers it, owner as stored):
 * "tools", "permissions", "questions" (empty arrays when a read fails: then -1). */
int db_exec_add_turn(db_t *db, json_object *row, int64_t exec_id);
/* Insert or replace a prompt (keyed by owner and id). */
int db_prompt_put(db_t *db, const db_prompt_t *p);
/* A prompt as the API shows it (its request's fields merged in). */
json_object *db_prompt_record(const db_prompt_t *p);
/* The owner's prompts of a kind, oldest first; session_id, status, exec_id (0) narrow it. */
json_object *db_prompt_list(db_t *db, const char *owner, const char *kind, const char *session_id,
                            const char *status, int64_t exec_id);
/* A prompt's status into status: 0 found, 1 no such prompt (of that owner, kind and session), -1 error. */
int db_prompt_status(db_t *db, const char *owner, const char *kind, const char *session_id, const char *id,
                     char *status, size_t len);
/* Pending prompts left by a manager that stopped become lost (opencode forgot them with it). */
int db_prompt_lose_pending(db_t *db, double now, int *count);
int db_webhook_record(db_t *db, const db_webhook_t *w);
/* Tokens (in and out) and cost per owner of the executions finished since since. */
typedef void (*db_usage_fn)(void *ctx, const char *owner, long long tokens, double cost);
int db_usage_since(db_t *db, double since, db_usage_fn fn, void *ctx);

/* db_slow.c: the slow log (slowlog.h). One turn past slowlog_timeout, as it stood when it crossed
 * it. Strings are borrowed; tool, call_id, input_summary and input_sha256 may be NULL;
 * input_bytes < 0 and since_last_event_ms < 0: not known. pending_prompts: a JSON array's text. */
typedef struct db_slow {
    int64_t execution_id;
    const char *owner, *session_id, *pool, *step, *tool, *call_id, *input_summary, *input_sha256, *pending_prompts;
    long long input_bytes;
    double at, elapsed_ms, since_last_event_ms;
} db_slow_t;
/* Write one row (an execution has one at most: a second is refused). */
int db_slow_put(db_t *db, const db_slow_t *s);
/* Rows at or after since, newest first, at most limit, below the id before (0: from the newest),
 * as JSON objects (pending_prompts parsed); NULL on failure. */
json_object *db_slow_list(db_t *db, double since, long long before, long limit, size_t max_bytes, int *more);

/* Rows left queued/running by a manager that died become interrupted. */
int db_mark_interrupted(db_t *db, double now, int *count);
int db_event(db_t *db, double now, const char *kind, const char *detail);

int db_session_insert(db_t *db, const db_session_t *s);
int db_session_set_oc(db_t *db, const char *owner, const char *id, const char *oc_session_id);
/* Place a session on opencode server number server (servers). */
int db_session_set_server(db_t *db, const char *owner, const char *id, int server);
int db_session_delete(db_t *db, const char *owner, const char *id, double now);
/* Everyone's sessions from session_summary (the columns of ocpmctl sessions), in (owner, id)
 * order after (after_owner, after_id) (NULLs: from the first), at most limit. When more follow, next
 * is the cursor of the next page, "OWNER/ID" (the anonymous owner is ""), else "". NULL on error. */
json_object *db_session_summary_page(db_t *db, const char *after_owner, const char *after_id, long limit,
                                     char *next, size_t nextlen);
/* Calls fn for every session not deleted. */
int db_session_each(db_t *db, void (*fn)(void *ctx, const db_session_t *s), void *ctx);
/* How many workspaces owner's sessions have made (deleted sessions' included: their directories
 * stay), and whether path is one of them. Returns 0 or -1. */
int db_session_workspaces(db_t *db, const char *owner, const char *path, long *count, int *known);
/* Is the owner's id taken by any session of theirs, deleted ones included? Returns 1, 0 or -1. */
int db_session_exists(db_t *db, const char *owner, const char *id);

/* Insert a queued execution; sets e->id. */
int db_exec_insert(db_t *db, db_exec_t *e);
/* Write every mutable column of e (by e->id). When finished, also bumps the
 * session's last_activity and message_count in the same transaction. */
int db_exec_update(db_t *db, const db_exec_t *e, int finished);
/* One transaction around several writes (an execution's final record and its turn: one commit per
 * message's end). db_exec_update and db_turn_store inside it write without a transaction of their
 * own; after a failure inside, call db_tx_rollback. */
int db_tx_begin(db_t *db);
int db_tx_commit(db_t *db);
void db_tx_rollback(db_t *db);
/* The row e becomes once written, as a JSON object, built from memory (the same shape as
 * db_exec_get's; the text cut and hashed as stored). For the answer to the client who waited. */
json_object *db_exec_json(const db_t *db, const db_exec_t *e);
/* A row as an ordinary user may see it: no argv, pid or stderr (operators' routes keep them), the
 * unauthenticated owner as null. Modifies and returns o. */
json_object *db_exec_public(json_object *o);
/* The row as a JSON object (owner NULL: anyone's, for operators), or NULL (missing, another owner, or error:
 * db_errmsg tells which when it is an error). */
json_object *db_exec_get(db_t *db, int64_t id, const char *owner);
/* A page of rows, newest first. *more (may be NULL) is set when more rows may follow: the page
 * is full, or it ended early at max_bytes (it always holds one row at least). */
json_object *db_exec_list(db_t *db, const db_exec_filter_t *f, int *more);

/* Statistics of executions queued in [since, until): counts by status and mode, exact
 * p50/p95/p99 and mean of duration and queue wait, peak and mean RSS, tokens, cost, and the
 * five busiest sessions. NULL on error. */
json_object *db_stats(db_t *db, double since, double until);
/* The stats histograms' buckets (DB_BUCKET in db_schema.c; db_tally.c reads them back): bucket 0
 * holds v < 0.01 ms, bucket k >= 1 holds 0.01 * RATIO^(k-1) <= v < 0.01 * RATIO^k, the last one
 * everything from there up (about 36 hours). */
#define DB_HIST_BUCKETS 480
#define DB_HIST_RATIO 1.05
/* db_stats, and with histograms set also "histograms": the scheme above and, per metric, its count,
 * sum and the buckets that are not empty ([[bucket, n], ...]), so that several nodes' answers can
 * be added up (ocpmctl --cluster stats) with the same percentiles one node would compute. */
json_object *db_stats_opt(db_t *db, double since, double until, int histograms);
/* p50/p95/p99 (nearest rank), mean, count of n values whose histogram is hist (DB_HIST_BUCKETS
 * counts) and sum is sum: as /api/stats reads them from the rollups ("exact": false, the bound of
 * the error stated, null when a rank fell in the last, unbounded, bucket). */
json_object *db_tally_hist_percentiles(const long long *hist, long long n, double sum);
/* Delete at most `batch` finished executions (and manager events) older than `before`; *deleted
 * says how many. Callers repeat it, yielding between batches. */
int db_prune(db_t *db, double before, long batch, long *deleted);

/* For ocpmctl: open read-only (safe while ocpmd runs). A file that is not an ocpm database of
 * this schema version is refused with a clear error. Writing calls fail on it. */
db_t *db_open_readonly(const char *path, char *err, size_t errlen);
/* Run a read-only query (no parameters: only fixed SQL from ocpmctl's table) to a JSON array. */
json_object *db_query_json(db_t *db, const char *sql);

#endif
