/* backend: one way of running a message, as the execution sees it.
 *
 * Two implementations: the per-message runner (oc_run.h: an `opencode run` process per message)
 * and the opencode server (oc_server.h: messages over HTTP to a supervised `opencode serve`). An
 * execution starts a job with start(), may stop() it with a reason, and gets its events and then
 * exactly one done() with a result of one shape, whatever the backend. A third backend (a second
 * opencode HTTP API, say) is one new file with one backend_ops_t, and one row in the scheduler's
 * table (scheduler.c). */
#ifndef OCPM_BACKEND_H
#define OCPM_BACKEND_H

#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <json-c/json.h>

/* Why ocpm stopped a job (0: it did not). */
typedef enum {
    BACKEND_STOP_NONE = 0,
    BACKEND_STOP_ABORT,
    BACKEND_STOP_TIMEOUT,
    BACKEND_STOP_SHUTDOWN,
    BACKEND_STOP_BUDGET, /* the turn's cost passed user_turn_cost_max */
} backend_stop_t;

/* Whether a backend can take a message now. */
typedef enum {
    BACKEND_READY, /* yes */
    BACKEND_FULL,  /* not now: at its own limit (server_max_inflight) */
    BACKEND_WAIT,  /* not now, and not elsewhere: it is being replaced (recycling) */
    BACKEND_DOWN,  /* not now: starting or restarting after a failure (a fallback may run it) */
    BACKEND_FATAL, /* not until an operator restarts it (a fallback may run it; without one, refuse) */
} backend_state_t;

typedef struct backend_job backend_job_t;

/* One message to run. Strings are borrowed for the call. */
typedef struct backend_request {
    const char *owner;      /* whose agent home (NULL: server number `server`'s) */
    int server;             /* with owner NULL: the server this run stands in for (its opencode data) */
    const char *workspace;  /* the workspace's path */
    int workspace_fd;       /* the same directory, as checked (O_PATH) */
    const char *oc_session; /* the opencode conversation to continue, or NULL to begin one */
    const char *text, *model, *agent;
    long timeout_ms, grace_ms;
    int ordered_events;     /* done comes after the turn's last event (the server holds its answer for them) */
} backend_request_t;

/* How a job ended. Strings are valid during done() only. */
typedef struct backend_result {
    int ok;                 /* the turn completed */
    backend_stop_t stopped;
    const char *error;      /* why not, when !ok */
    const char *text;       /* the answer's text */
    size_t text_len;
    int has_usage;
    long long tokens_in, tokens_out;
    double cost;
    int has_exit, exit_code, signal; /* a process of its own: how it ended */
    int has_rusage;
    struct rusage ru;
    const char *stderr_tail;
} backend_result_t;

/* Whether opencode took an answer to a prompt (ok), else why not. */
typedef void (*backend_answered_fn)(void *ctx, int ok, const char *why);

/* The event a backend whose opencode decides alone reports a permission with (its props: the
 * permission, patterns, and "decided": "reject" or "allow"); nothing opencode sends may carry it. */
#define BACKEND_EVENT_DECIDED "ocpm.permission.decided"

typedef struct backend_events {
    /* The opencode conversation's id, once known (a new conversation). */
    void (*session)(void *ctx, const char *oc_session_id);
    /* One of opencode's events, for streaming clients (data borrowed). */
    void (*event)(void *ctx, const char *type, json_object *data);
    /* The last call. */
    void (*done)(void *ctx, const backend_result_t *r);
} backend_events_t;

typedef struct backend_ops {
    const char *mode;  /* recorded as the execution's mode: "per-session", "server" */
    const char *label; /* in the log's "Executing OpenCode command (label)": "standalone", "server" */
    int summarises_changes; /* its events carry opencode's summary of the files a turn changed */
    backend_state_t (*state)(void *self);
    /* The most jobs it runs at once (0: no limit of its own; the scheduler's bound applies). */
    long (*capacity)(void *self);
    /* The jobs it runs now (the scheduler places sessions on the least loaded); NULL: not placed. */
    long (*load)(void *self);
    /* Start a job. Returns it, or NULL with err when nothing started (no event will come). On
     * success *pid is the process that runs it and *argv_json (malloc'd, may be NULL) its argv.
     * No event and no done() before it has returned: they come from the loop. */
    backend_job_t *(*start)(void *self, const backend_request_t *rq, const backend_events_t *ev, void *ctx,
                            long *pid, char **argv_json, char *err, size_t errlen);
    /* Stop a job: done() follows (at once, or after the backend's grace). */
    void (*stop)(backend_job_t *job, backend_stop_t why);
    /* Answer a prompt the agent raised in job (ask.h): kind "permission" or "question", opencode's
     * request id, the reply as ocpm's API took it. Returns 0 when it was sent: done then says, once,
     * from the loop, whether opencode took it. NULL: this backend's opencode decides on its own (its
     * events say what it decided). */
    int (*answer)(backend_job_t *job, const char *kind, const char *id, json_object *reply, backend_answered_fn done,
                  void *ctx);
} backend_ops_t;

/* A backend and its instance. */
typedef struct backend {
    const backend_ops_t *ops;
    void *self;
} backend_t;

#endif
