/* storage_retry: the database's bad days: writes it refused, kept and retried; a removed file, restored.
 *
 * The manager never blocks its loop waiting for SQLite for long (db_busy_timeout). When the final
 * record of an execution cannot be written (an operator holds a write lock, the disk is full, the
 * file went away), the record is copied here and retried every second, in order, until it is
 * stored; clients are answered from memory meanwhile. The same tick notices a database file
 * removed while open and copies it back (db_restore). When it is freed (the end of shutdown) one
 * last try is made and every record still unwritten is logged in full ("execution record lost"),
 * so an operator can re-enter it. The queue is bounded (STORAGE_RETRY_MAX); beyond it records are
 * logged the same way. */
#ifndef OCPM_STORAGE_RETRY_H
#define OCPM_STORAGE_RETRY_H

#include <json-c/json.h>
#include <uv.h>

#include "db.h"

#define STORAGE_RETRY_MAX 100000

typedef struct storage_retry storage_retry_t;

typedef struct storage_retry_config {
    uv_loop_t *loop;
    db_t *db;
    const char *db_path;
    long busy_timeout_ms; /* db_busy_timeout, set again after a restore */
    void (*event)(void *ctx, const char *kind, const char *detail); /* for manager_events */
    void *ctx;
} storage_retry_config_t;

storage_retry_t *storage_retry_new(const storage_retry_config_t *cfg);
/* One last try, every record still pending logged, the timer closed (it frees itself). */
void storage_retry_free(storage_retry_t *q);
/* Queue the final state of an execution (deep copy). */
void storage_retry_exec_final(storage_retry_t *q, const db_exec_t *rec);
/* Queue a session's opencode session id. */
void storage_retry_session_oc(storage_retry_t *q, const char *owner, const char *session_id,
                              const char *oc_session_id);
/* Note a failed write for the status page (what failed and when). */
void storage_retry_note_failure(storage_retry_t *q, const char *what);
/* A request whose database call failed: notes the failure, writes "what: cause" into msg and
 * returns the reason (busy, full, read-only, io, error); *retry says whether retrying soon helps. */
const char *storage_retry_explain(storage_retry_t *q, const char *what, char *msg, size_t msglen, int *retry);
/* Writes go through now: nothing waits, the file is in place, no recent failure. */
int storage_retry_ok(const storage_retry_t *q);
/* {"ok", "pendingWrites", "writeFailures", "sqliteMemoryBytes", "lastError", "lastErrorAt"}. */
json_object *storage_retry_status_json(const storage_retry_t *q);
size_t storage_retry_pending(const storage_retry_t *q);
unsigned long long storage_retry_failures(const storage_retry_t *q);

#endif
