/* scheduler: which waiting message starts next, and where.
 *
 * Messages wait in one FIFO (oldest first) and in their session's own queue: at most one message
 * of a session runs at a time, in the order they came. While fewer than max_concurrent_runs run,
 * the next message starts round robin over the users that have one able to start (its session
 * idle, its user under user_max_share of the slots and under user_max_running), the oldest of
 * that user's: one user's 500 waiting messages delay another's one by at most one start per slot.
 *
 * With several servers, a session is placed on one the first time a message of it starts: the
 * least loaded (ready before full before waiting before down, then fewest messages in flight,
 * then fewest sessions placed, then the lowest number); the placement is stored in the session's
 * row and kept across restarts of ocpm and of the server. A session placed on a server that no
 * longer exists (servers lowered) is placed again, and its opencode conversation starts anew.
 *
 * Where a message runs is decided from its session's server's state (backend.h): READY, it runs
 * there; FULL, it waits until a job there ends; WAIT (that server being replaced), it waits; DOWN
 * (that server starting or restarting after a failure), the fallback backend runs it (at most
 * fallback_max_runs at once in all) when fallback is on, else it waits, at most fallback_wait,
 * then fails. Other servers' sessions are not affected. A run standing in for a server continues
 * that server's conversations, so it uses that server's agent home (its opencode data).
 *
 * Admission, checked when a message is submitted (429 with Retry-After): the session's queue
 * (session_queue_limit), the user's waiting messages (user_queue_limit), bytes of messages waiting
 * in memory, overall (queue_max_bytes) and per
 * user (user_queue_max_bytes), and messages of one user holding responder threads (sync and
 * stream) beyond user_max_share of the pool's message capacity. */
#ifndef OCPM_SCHEDULER_H
#define OCPM_SCHEDULER_H

#include <stdint.h>

#include <uv.h>

#include "ask.h"
#include "agent.h"
#include "backend.h"
#include "budget.h"
#include "conf.h"
#include "control.h"
#include "db.h"
#include "oc_models.h"
#include "session.h"
#include "storage_retry.h"
#include "turn.h"
#include "user.h"

typedef struct scheduler scheduler_t;

/* How the client that sent a message waits for it. */
typedef enum {
    SCHEDULER_WAIT_SYNC = 0, /* one reply at the end */
    SCHEDULER_WAIT_STREAM,   /* SSE events as they come, then "done" */
    SCHEDULER_WAIT_ASYNC,    /* not at all: 202 with its Location at once */
} scheduler_wait_t;

typedef struct scheduler_config {
    uv_loop_t *loop;
    const agent_t *agent; /* who runs its messages (workspaces checked for it, git run as it) */
    const conf_t *conf;
    const char *pool;         /* the pool it schedules for (recorded with each execution) */
    int pool_index;           /* its sessions are those of session_pool() == pool_index */
    db_t *db;
    session_table_t *sessions;
    user_table_t *users;
    storage_retry_t *storage; /* where records the database refused wait */
    /* Where messages run: one backend, or several of the same kind (servers) over which sessions are
     * placed (the backend has a load op): each session on one, stored, for good. */
    backend_t primary[CONF_SERVERS_MAX];
    int nprimary;
    backend_t fallback;       /* ops NULL: none; runs a session's messages while its primary is DOWN */
    /* An execution finished (for the metrics); duration_s < 0 when it never started. */
    void (*finished)(void *ctx, const char *mode, exec_status_t status, double duration_s, double queue_wait_s);
    /* The same execution's final record and what its agent did (for the webhook, the tool metrics). */
    void (*ended)(void *ctx, int64_t id, json_object *record, const turn_t *turn);
    void *ctx;
    ask_book_t *asks; /* the agent's prompts */
    budget_t *budget; /* what each user may spend (NULL: no bounds) */
} scheduler_config_t;

scheduler_t *scheduler_new(const scheduler_config_t *cfg);
/* After scheduler_shutdown has seen every execution end. */
void scheduler_free(scheduler_t *s);
/* The pool's capacity for messages (responders x threads less the reserve), for the per-user share. */
void scheduler_set_message_capacity(scheduler_t *s, long capacity);

/* Queue a message on sess and answer c according to how (text, model and agent are copied). c may
 * be NULL with SCHEDULER_WAIT_ASYNC: nobody is answered. The execution's life (execution.c): the
 * record written at each change, the workspace checked and prepared, the backend's events passed
 * to streaming clients, one finish path whatever ended it, and the answer built from memory (the
 * record as written, not read back). Returns the execution's id, or -1 after
 * answering c with why it was refused. */
int64_t scheduler_submit(scheduler_t *s, session_t *sess, const char *text, const char *model, const char *agent,
                         control_conn_t *c, scheduler_wait_t how);
/* c follows the events of the owner's execution id while it is not finished (replaying those
 * after after first). Returns 1 when it does, 0 when no such execution is live (finished: the
 * caller replays the stored events), -1 after answering c with why it cannot. */
int scheduler_follow(scheduler_t *s, int64_t id, const char *owner, control_conn_t *c, long long after);
/* Start what can start (a backend's state changed, a job ended). */
void scheduler_kick(scheduler_t *s);
/* The session is deleted: it no longer counts as placed on its server. */
void scheduler_forget(scheduler_t *s, session_t *sess);
/* Abort the session's running message and cancel its waiting ones (the session stays). Returns how
 * many executions were affected. */
int scheduler_abort_session(scheduler_t *s, session_t *sess, const char *reason);
/* Shutdown: nothing new starts; everything waiting is cancelled. Returns how many still run. */
long scheduler_shutdown(scheduler_t *s);
/* Shutdown past its timeout: stop what runs (recorded as interrupted). */
void scheduler_kill_running(scheduler_t *s);

/* The slow log (slowlog.h): report each of its running turns that passed its pool's
 * slowlog_timeout at now and was not reported yet (once per execution). */
void scheduler_slow_sweep(scheduler_t *s, double now);
/* The id of the execution sess runs now (0 when none): for the status's session list. */
int64_t scheduler_running_id(const session_t *sess);

long scheduler_running(const scheduler_t *s);
long scheduler_queued(const scheduler_t *s);
unsigned long long scheduler_finished(const scheduler_t *s);
unsigned long long scheduler_failed(const scheduler_t *s);

#endif
