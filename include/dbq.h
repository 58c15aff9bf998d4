/* dbq: the database's bad days: writes it refused, kept and retried; a removed file, restored.
 *
 * The manager never blocks its loop waiting for SQLite for long (db_busy_timeout). When the
 * final record of an execution cannot be written (an operator holds a write lock, the disk is
 * full, the file went away), the record is copied here and retried every second, in order,
 * until it is stored; clients are answered from memory meanwhile. The same tick notices a
 * database file removed while open and copies it back (db_restore). At shutdown one last try
 * is made and every record still unwritten is logged in full ("execution record lost"), so an
 * operator can re-enter it. The queue is bounded (DBQ_MAX); beyond it records are logged the
 * same way. */
#ifndef OCPM_DBQ_H
#define OCPM_DBQ_H

#include <json-c/json.h>

#include "ctl.h"
#include "db.h"
#include "mgr.h"

#define DBQ_MAX 100000

void dbq_init(mgr_t *m);
/* Queue the final state of an execution (deep copy). */
void dbq_exec_final(const db_exec_t *rec);
/* Queue a session's opencode session id. */
void dbq_session_oc(const char *owner, const char *session_id, const char *oc_session_id);
/* Note a failed write for the status page (what failed and when). */
void dbq_note_failure(const char *what);
/* Answer a request whose database call failed: 503 storage_unavailable, "what" as the message
 * with the cause appended; error.reason is busy, full, read-only or io; busy gets Retry-After.
 * Notes the failure. Returns ctl_error's result. */
int dbq_reply_error(ctl_conn_t *c, const char *what);
/* {"ok", "pendingWrites", "writeFailures", "lastError", "lastErrorAt"} for the status endpoint. */
json_object *dbq_status_json(void);
size_t dbq_pending(void);
unsigned long long dbq_failures(void);
/* Stop the timer (the last phase of shutdown). */
void dbq_close(void);
/* After the loop: one last try, then log every record still pending, and free them. */
void dbq_final(void);

#endif
