/* The scheduler's two files (scheduler.c: the queue and the routing; execution.c: one execution's
 * life) and what they share. Nothing outside src/manager/scheduler.c and execution.c includes it. */
#ifndef OCPM_SCHEDULER_INTERNAL_H
#define OCPM_SCHEDULER_INTERNAL_H

#include "changes.h"
#include "project.h"
#include "scheduler.h"
#include "turn.h"

#define EXECUTION_WAITERS_MAX 8

typedef struct execution execution_t;

struct scheduler {
    scheduler_config_t cfg;
    execution_t *head, *tail; /* every waiting execution, oldest first */
    execution_t *live;        /* every execution not yet finished (queued, starting, running) */
    long running, queued;
    long stand_ins; /* of those running, the fallback's runs standing in for a server */
    long placed[CONF_SERVERS_MAX];   /* this pool's sessions placed on each server */
    long reserved[CONF_SERVERS_MAX]; /* executions begun for each server, not yet handed to it */
    char last_owner[257]; /* the owner whose message started last (the round robin's place) */
    long message_capacity;
    unsigned long long finished, failed;
    int stopping;
};

struct execution {
    scheduler_t *sch;
    db_exec_t rec;
    char session_id[65];
    char *owner, *prompt, *model, *agent, *argv_json, *error, *stderr_tail, *oc_sid, *answer;
    size_t answer_len;
    const backend_t *backend; /* where it runs, once started */
    backend_job_t *job;       /* its job there */
    int stand_in;             /* >= 0: a fallback run standing in for that server (its agent home) */
    int reserved_on;          /* >= 0: begun for that server, not handed to it yet (its workspace prepares) */
    project_job_t *project;   /* making the workspace a repository before the start */
    execution_t *waits_project; /* another execution makes its workspace a repository: it waits for that */
    int project_waiters;        /* executions that wait for this one's preparation */
    int workspace_fd;         /* the checked workspace (O_PATH), while starting */
    int holds_slot;           /* counted in running */
    int starting;             /* inside its backend's start() */
    long queued_bytes;        /* counted against the queue bounds while it waits */
    backend_stop_t stop_why;
    control_conn_t *waiters[EXECUTION_WAITERS_MAX];
    int waiter_stream[EXECUTION_WAITERS_MAX];
    int nwaiters;
    execution_t *qprev, *qnext; /* the scheduler's FIFO */
    execution_t *live_prev, *live_next;
    turn_t *turn; /* what the agent did: events sent, tool calls, changes */
    int prompts;  /* permission and question prompts raised so far */
    int concluding;              /* its job ended: it waits for answers landing and its change count */
    int over_budget;             /* stopped at user_turn_cost_max */
    int unstartable;             /* its session's queue disagrees: never picked (logged once) */
    exec_status_t final_status;  /* how the job ended, once concluding */
    changes_job_t *changes;      /* counting the files the turn changed (changes.h) */
    int unsaved;                /* the final record waits in storage_retry */
    int slow_logged;            /* reported by the slow log (once) */
    double last_event_at;       /* opencode's last event (kept only while slowlog_timeout is set) */
};

/* A new queued execution, recorded in the database. NULL with err (why) when it cannot be. */
execution_t *execution_new(scheduler_t *s, session_t *sess, const char *text, const char *model, const char *agent,
                           const char **err);
/* Count bytes of its text against the queue bounds while it waits. */
int execution_hold_bytes(execution_t *e, long bytes);
/* execution_events.c: opencode's events for e (the backend's event callback): read for the audit,
 * prompts made records, the rest sent on. */
void execution_on_event(void *ctx, const char *type, json_object *data);
/* Conclude e when its job has ended and nothing it waits for is left (answers, a change count). */
void execution_maybe_conclude(execution_t *e);
/* A waiter's connection went away (control.h's detach). */
void execution_detach(void *ctx, control_conn_t *c);
/* Send an event to e's streaming clients (kept in its turn, with the next id). */
void execution_emit(execution_t *e, const char *event, json_object *data);
/* c follows e's events: those after after now, then the rest live, then done. -1: no room. */
int execution_follow(execution_t *e, control_conn_t *c, long long after);
/* c waits for e (a stream when stream is set). Returns -1 when e has no room for another. */
int execution_add_waiter(execution_t *e, control_conn_t *c, int stream);
/* Take a run slot and start e on b: check the workspace, make it a project, hand it to b. stand_in:
 * the server a fallback run stands in for (its agent home), or -1. */
void execution_begin(execution_t *e, const backend_t *b, int stand_in);
/* Stop e wherever it is in its start or its run; its end follows (at once or after the grace). */
void execution_stop(execution_t *e, backend_stop_t why);
/* Set e's error unless it has one (the first cause is the one recorded). */
void execution_set_error(execution_t *e, const char *msg);
/* The one finish path: record, count, answer everyone waiting, free e. */
void execution_finish(execution_t *e, exec_status_t status);

/* The workspace is ready: hand the message to its backend. */
void execution_launch(execution_t *e);
/* Fail e before its run started: log logmsg with why, record what (the client's words). */
void execution_fail_start(execution_t *e, const char *logmsg, const char *why, const char *what);

/* execution_project.c: make e's workspace (checked, not a repository yet) a git repository as the
 * agent, then launch e; executions of the same workspace that begin meanwhile wait for that one
 * preparation instead of racing it (two `git init` on one directory fail on git's locks). */
#define EXECUTION_PROJECT_TIMEOUT_MS 30000
#define EXECUTION_ERR_PROJECT "the workspace could not be made its own project; the manager's log says why"
void execution_prepare(execution_t *e, session_t *sess);
/* The preparation of e's workspace ended: ok > 0, launch what waits for it; 0, fail it with why;
 * < 0 (e was stopped before it ended), prepare again for them. */
void execution_release_waiters(execution_t *e, int ok, const char *why);

/* execution_slow.c: the slow log's look at one pool's running turns (scheduler_slow_sweep). */

/* scheduler.c: remove e from the FIFO (it starts, or is cancelled). */
void scheduler_unlink(scheduler_t *s, execution_t *e);
/* e is handed to its server, or ends before: it no longer holds a place there. */
void scheduler_unreserve(scheduler_t *s, execution_t *e);

#endif
