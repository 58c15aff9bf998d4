/* execution: the life of one execution (one message), from queued to finished.
 *
 * Messages wait in their session's FIFO; the scheduler starts the oldest
 * waiting message of each idle session while fewer than max_concurrent_runs
 * run, and no user holds more than user_max_share of the slots. Before a
 * message runs, its workspace is checked again (workspace_check) and made its own
 * project when it is not (project.h); a failed check fails the message and
 * runs nothing. Each change is written to SQLite. Clients wait on an
 * execution in one of three ways: sync (one reply at the end), stream (SSE
 * events as they come, then "done"), or not at all (async: 202 at once).
 *
 * Bounds checked at submission (429 with Retry-After): bytes of messages
 * waiting in memory, overall (queue_max_bytes) and per user
 * (user_queue_max_bytes); messages of one user holding responder threads
 * (sync and stream) beyond user_max_share of the pool's message capacity. */
#ifndef OCPM_EXECUTION_H
#define OCPM_EXECUTION_H

#include "control.h"
#include "manager.h"
#include "session.h"

typedef struct execution execution_t;

typedef enum { EXECUTION_WAIT_SYNC = 0, EXECUTION_WAIT_STREAM, EXECUTION_WAIT_ASYNC } execution_wait_t;

/* Queue a message on s and answer c according to how. text/model/agent are
 * copied. Returns 0, or -1 after answering c with the error. */
/* The pool's capacity for messages (responders x threads less the reserve), for the per-user share. */
void execution_set_message_capacity(long cap);
/* An execution row as an ordinary user may see it: no argv, pid or stderr (operators' routes keep
 * them), the unauthenticated owner as null. Modifies and returns o. */
json_object *execution_public(json_object *o);
int execution_submit(manager_t *m, session_t *s, const char *text, const char *model, const char *agent, control_conn_t *c,
                execution_wait_t how);
/* Start what can start: the oldest waiting message of each idle session, by the route the
 * server's state allows (server, per-message process, or wait). Also fails messages that waited
 * past fallback_wait for a server when fallback is off. */
void execution_schedule(manager_t *m);
/* Abort the session's running message and cancel its waiting ones.
 * Returns how many executions were affected. */
int execution_abort_session(manager_t *m, session_t *s, const char *reason);
/* Shutdown: cancel everything waiting; stop running ones with `why`
 * recorded as interrupted. Returns how many still run. */
long execution_shutdown_cancel(manager_t *m);
void execution_shutdown_kill(manager_t *m);

#endif
