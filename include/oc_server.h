/* oc_server: one supervised `opencode serve`, and the manager's HTTP conversation with it.
 *
 * The server runs as `opencode serve --hostname 127.0.0.1 --port P` in its own process group
 * with PDEATHSIG, stdin on /dev/null, its output in the manager's log, and a fresh random
 * OPENCODE_SERVER_PASSWORD each start (Basic auth on every request; never logged, stored or
 * shown). Ready = the "listening on" line and a healthy GET /global/health.
 *
 * Supervision: a health check every heartbeat_interval with its own timeout; health_failures
 * misses in a row, or an exit, kill the group and restart it with a doubling delay (capped at
 * restart_backoff_max). Messages in flight on a server that dies fail at once. Workspaces idle
 * for instance_idle_timeout are disposed. After server_max_messages messages, or once its RSS
 * passes server_max_rss, the server is recycled: new messages wait, the ones in flight finish,
 * then it is replaced; no message fails.
 *
 * Events: one GET /global/event subscription per server, parsed as it arrives and routed by
 * opencode session id to the message running in that session. */
#ifndef OCPM_OC_SERVER_H
#define OCPM_OC_SERVER_H

#include <sys/types.h>

#include <json-c/json.h>

#include "manager.h"
#include "oc_run.h"

typedef enum {
    OC_SERVER_OFF = 0,   /* not used (per-session mode, or auto mode without a server) */
    OC_SERVER_STARTING,  /* spawned; waiting for "listening on" and health */
    OC_SERVER_READY,     /* taking messages */
    OC_SERVER_DRAINING,  /* recycling: no new messages, waiting for the ones in flight */
    OC_SERVER_BACKOFF,   /* died or unhealthy; waiting to restart */
    OC_SERVER_STOPPING,  /* manager shutdown */
} oc_server_state_t;

typedef struct oc_server_msg oc_server_msg_t;

typedef struct oc_server_result {
    int ok;
    oc_run_stop_t stopped;      /* 0, or why ocpm stopped it */
    const char *error;       /* when !ok */
    const char *text;        /* the answer's text parts */
    int has_usage;
    long long tokens_in, tokens_out;
    double cost;
} oc_server_result_t;

typedef struct oc_server_msg_ops {
    void (*session)(void *ctx, const char *oc_session_id); /* a new opencode session was created */
    void (*event)(void *ctx, const char *type, json_object *properties);
    void (*done)(void *ctx, const oc_server_result_t *r); /* last call */
} oc_server_msg_ops_t;

/* Start the server. Returns 0 (state STARTING) or -1 with err. */
int oc_server_start(manager_t *m, char *err, size_t errlen);
oc_server_state_t oc_server_state(void);
/* Give up on server mode (auto mode when the server never became ready). */
void oc_server_disable(void);
pid_t oc_server_pid(void);
/* Messages in flight on the server now. */
long oc_server_in_flight(void);
/* Called whenever the server's readiness changes and on every health tick. */
void oc_server_on_change(void (*fn)(manager_t *m));

/* Send one message. oc_session_id NULL creates the opencode session first. With ordered_events,
 * the answer is held until the event stream has delivered the turn's events (someone streams
 * them and "done" must come last); without, it is handed over as soon as it arrives. */
oc_server_msg_t *oc_server_send(const char *workspace, const char *oc_session_id, const char *text, const char *model,
                    const char *agent, long timeout_ms, long grace_ms, int ordered_events,
                    const oc_server_msg_ops_t *ops, void *ctx);
/* Abort (or time out, or shut down) a message: POST .../abort, then give up after the grace. */
void oc_server_stop_msg(oc_server_msg_t *msg, oc_run_stop_t why);
/* Stop the server (manager shutdown); done is called once it has exited. */
void oc_server_stop(manager_t *m, void (*done)(manager_t *m));
json_object *oc_server_status_json(void);

#endif
