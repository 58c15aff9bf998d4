/* oc_server: one supervised `opencode serve`, the server backend (backend.h).
 *
 * The server runs as `opencode serve --hostname 127.0.0.1 --port P` (a free loopback port), as the
 * agent (its user, limits and sandbox: every workspace, the server's home), in its own process
 * group, with PDEATHSIG, stdin on /dev/null, its output in the manager's log (200 lines a second at
 * most), and a fresh random OPENCODE_SERVER_PASSWORD each start (Basic auth on every request; never
 * logged, stored or shown). Ready = the "listening on" line and a healthy GET /global/health; then
 * the event stream is subscribed and the models are read (oc_models.h).
 *
 * Supervision (supervisor.h): a health check every heartbeat_interval with its own timeout;
 * health_failures misses in a row, or an exit, kill the group and restart it with a doubling delay
 * (1 s up to restart_backoff_max). Messages in flight on a server that dies fail at once; the ones
 * waiting are never sent to it: a request that fails below HTTP (refused, reset) holds new messages
 * until a health check, sent at once, passes or the exit is seen. Workspaces
 * idle for instance_idle_timeout are disposed. After server_max_messages messages, or once its RSS
 * passes server_max_rss, the server is recycled: new messages wait, the ones in flight finish, then
 * it is replaced at once and new messages wait for the successor too (a planned replacement costs
 * no fallback process) unless it fails to start; no message fails.
 *
 * Messages: POST /session (lazily, for a new conversation) then POST /session/{id}/message, with the
 * model always named (the server keeps a session's last one). Events: one GET /global/event
 * subscription per server, parsed as it arrives and routed by opencode session id to the message
 * running in that session; with ordered events the answer is held until the stream has delivered
 * the turn's events.
 *
 * FATAL (supervisord's model): a server that would be restarted more than server_restart_limit
 * times within server_restart_window is left down instead (one error line, a server_fatal event);
 * its sessions' messages fall back, or with fallback off are refused at once (503 server_fatal).
 * Only an operator's restart (ocpmctl server restart) starts it again, with the whole limit.
 *
 * An instance type: the manager makes `servers` of them, each with its own number, agent home (and
 * so its own opencode database), port, password and supervision. */
#ifndef OCPM_OC_SERVER_H
#define OCPM_OC_SERVER_H

#include <sys/types.h>

#include <json-c/json.h>
#include <uv.h>

#include "backend.h"
#include "agent.h"
#include "conf.h"
#include "http.h"
#include "oc_models.h"

typedef enum {
    OC_SERVER_OFF = 0,  /* not used (per-session mode, or auto mode without a server) */
    OC_SERVER_STARTING, /* spawned; waiting for "listening on" and health */
    OC_SERVER_READY,    /* taking messages */
    OC_SERVER_DRAINING, /* recycling: no new messages, waiting for the ones in flight */
    OC_SERVER_BACKOFF,  /* died or unhealthy; waiting to restart */
    OC_SERVER_STOPPING, /* manager shutdown */
    OC_SERVER_FATAL,    /* restarted more than server_restart_limit times within server_restart_window:
                         * never restarted again until an operator asks (oc_server_restart) */
} oc_server_state_t;

typedef struct oc_server oc_server_t;

typedef struct oc_server_config {
    int index;             /* its number among the manager's servers (0 up): its home, its label */
    const agent_t *agent;  /* who runs it */
    uv_loop_t *loop;
    const conf_t *conf;
    http_t *http;
    oc_models_t *models;   /* refreshed whenever a server becomes ready */
    void (*changed)(void *ctx);                                    /* readiness changed, or a health tick */
    void (*event)(void *ctx, const char *kind, const char *detail); /* for manager_events */
    void *ctx;
} oc_server_config_t;

oc_server_t *oc_server_new(const oc_server_config_t *cfg);
/* Start the server (state STARTING). Returns 0 or -1 with err. */
int oc_server_start(oc_server_t *s, char *err, size_t errlen);
/* Stop it (manager shutdown); done(ctx) once it has exited. */
void oc_server_stop(oc_server_t *s, void (*done)(void *ctx), void *ctx);
/* Release it (after stop's done); its handles close with the loop's next turns. */
void oc_server_free(oc_server_t *s);

oc_server_state_t oc_server_state(const oc_server_t *s);
pid_t oc_server_pid(const oc_server_t *s);
long oc_server_in_flight(const oc_server_t *s);
int oc_server_healthy(const oc_server_t *s);
long oc_server_restarts(const oc_server_t *s);
long long oc_server_rss_bytes(const oc_server_t *s);
json_object *oc_server_status_json(const oc_server_t *s);
/* Its state's name as the status shows it ("ready", "fatal"...), and every name by state. */
const char *oc_server_state_name(oc_server_state_t st);
#define OC_SERVER_NSTATES (OC_SERVER_FATAL + 1)

/* An operator's restart (ocpmctl server restart). FATAL, or waiting out a restart delay: the
 * restart count is cleared and the server starts now. Ready: it is replaced gracefully, as a
 * recycle (new messages wait, those in flight finish, then a fresh process; no message fails).
 * Returns what was done ("started", "replacing"), or NULL with why nothing was (it is starting,
 * already being replaced, or stopping). */
const char *oc_server_restart(oc_server_t *s, char *why, size_t whylen);

/* Ask the server for a workspace's uncommitted changes (GET /vcs/diff?mode=git: files with their
 * patch and counts); done as http.h says. NULL when the server is not ready (done never comes). */
http_req_t *oc_server_diff(oc_server_t *s, const char *workspace, http_done_fn done, void *ctx);

/* The server as a backend: self is the oc_server_t. */
extern const backend_ops_t oc_server_backend;

#endif
