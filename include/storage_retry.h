/* storage_retry: the database's bad days: writes it refused, kept and retried; a removed file, restored.
 *
 * The manager never blocks its loop waiting for SQLite for long (db_busy_timeout). When the
 * final record of an execution cannot be written (an operator holds a write lock, the disk is
 * full, the file went away), the record is copied here and retried every second, in order,
 * until it is stored; clients are answered from memory meanwhile. The same tick notices a
 * database file removed while open and copies it back (db_restore). At shutdown one last try
 * is made and every record still unwritten is logged in full ("execution record lost"), so an
 * operator can re-enter it. The queue is bounded (STORAGE_RETRY_MAX); beyond it records are logged the
 * same way. */
#ifndef OCPM_STORAGE_RETRY_H
#define OCPM_STORAGE_RETRY_H

#include <json-c/json.h>

#include "control.h"
#include "db.h"
#include "manager.h"

#define STORAGE_RETRY_MAX 100000

void storage_retry_init(manager_t *m);
/* Queue the final state of an execution (deep copy). */
void storage_retry_exec_final(const db_exec_t *rec);
/* Queue a session's opencode session id. */
void storage_retry_session_oc(const char *owner, const char *session_id, const char *oc_session_id);
/* Note a failed write for the status page (what failed and when). */
void storage_retry_note_failure(const char *what);
/* Answer a request whose database call failed: 503 storage_unavailable, "what" as the message
 * with the cause appended; error.reason is busy, full, read-only or io; busy gets Retry-After.
 * Notes the failure. Returns control_error's result. */
int storage_retry_reply_error(control_conn_t *c, const char *what);
/* {"ok", "pendingWrites", "writeFailures", "lastError", "lastErrorAt"} for the status endpoint. */
json_object *storage_retry_status_json(void);
size_t storage_retry_pending(void);
unsigned long long storage_retry_failures(void);
/* Stop the timer (the last phase of shutdown). */
void storage_retry_close(void);
/* After the loop: one last try, then log every record still pending, and free them. */
void storage_retry_final(void);

#endif
