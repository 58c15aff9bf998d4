/* oc_server_internal: what the files of the server module share. oc_server.c: the object, its
 * process and states; oc_server_health.c: health, memory, recycling, idle workspaces, models;
 * oc_server_events.c: the event stream; oc_server_message.c: messages (the backend). Not for
 * other modules: they use oc_server.h. */
#ifndef OCPM_OC_SERVER_INTERNAL_H
#define OCPM_OC_SERVER_INTERNAL_H

#include "agent.h"
#include "oc_server.h"
#include "restart_limit.h"
#include "sse.h"
#include "supervisor.h"

/* A server that lived this long was healthy: its next death restarts the backoff. */
#define OC_SERVER_STABLE_MS 60000
#define OC_SERVER_STOP_GRACE_MS 5000
#define OC_SERVER_RESUBSCRIBE_MS 500
#define OC_SERVER_ANSWER_MAX (16u << 20)
/* A workspace's diff larger than this is refused (the client gets 502). */
#define OC_SERVER_DIFF_MAX (8u << 20)
/* The answer to POST .../message can overtake the turn's last events on the event stream: hold
 * it until the stream reports that assistant message completed (message.updated with
 * time.completed) or the session idle, at most this long. */
#define OC_SERVER_IDLE_WAIT_MS 3000

/* A workspace the server has (or had) an instance for. */
typedef struct oc_server_dir {
    char *path;
    double last_used;
    int loaded;
    struct oc_server_dir *next;
} oc_server_dir_t;

/* One message on the server (the backend's job). */
struct backend_job {
    struct oc_server *server;
    backend_events_t ev;
    void *ctx;
    char *workspace, *oc_sid, *body;
    http_req_t *req;
    uv_timer_t timer; /* run_timeout, then the grace after an abort, then the wait for events */
    long grace_ms;
    backend_stop_t stopped;
    int finished;
    int ordered;            /* hold the answer for the turn's events */
    int idle_seen;          /* session.idle seen on the event stream since the prompt was sent */
    char completed_mid[64]; /* the last assistant message the event stream reported completed */
    char answer_mid[64];    /* the assistant message the answer is about */
    backend_result_t *pending; /* the answer, held until the stream has delivered the turn's events */
    char *pending_text, *pending_error;
    double held_at; /* when the answer was held for the stream (clock_now) */
    struct backend_job *prev, *next;
};

struct oc_server {
    oc_server_config_t cfg;
    supervisor_t *sup;
    oc_server_state_t state;
    /* this start: its port and password; its spawn's agent launch, environment and argv */
    int port;
    char password[40], userpwd[64], base[64], port_s[16], pwvar[80];
    agent_launch_t launch;
    char **env;
    char *argv[8];
    /* health */
    int healthy, failures, listening;
    int suspect; /* a request failed below HTTP: no new message until a health check passes */
    double last_health, last_latency_ms, health_sent, last_event_at;
    long rss_kb;
    unsigned long messages, messages_total; /* served by this process, by every process */
    int recycling;
    int replacing; /* a recycled server's successor is starting: messages wait for it (no fallback) */
    const char *restart_reason;
    restart_limit_t *restarts_window; /* restarts after failures within server_restart_window */
    double fatal_at;                  /* when it was declared FATAL (clock_now), 0 when it is not */
    int served;                       /* this process became ready: its death is not a failed start */
    http_req_t *health_req, *events_req;
    sse_t *sse;
    json_object *providers; /* the models' first answer, waiting for the second */
    /* messages and workspaces */
    backend_job_t *msgs;
    long in_flight;
    long answers; /* answers to the agent's prompts on their way: a draining server waits for them too */
    oc_server_dir_t *dirs;
    uv_timer_t health_timer, start_timer, dispose_timer, resub_timer, kill_timer;
    void (*stop_done)(void *ctx);
    void *stop_ctx;
    int freeing, handles;
};

/* oc_server.c */
void oc_server_set_state(oc_server_t *s, oc_server_state_t st);
void oc_server_changed(oc_server_t *s);
/* Signal the process (its group) for why; the exit path does the rest. */
void oc_server_kill(oc_server_t *s, const char *why, int sig);
/* SIGTERM now, SIGKILL after the grace (a recycle once drained). */
void oc_server_terminate(oc_server_t *s, const char *why);
size_t oc_server_urlencode(const char *in, char *out, size_t outlen);

/* oc_server_fatal.c */
/* The process died (detail says how) and would be restarted: declare it FATAL instead when that
 * restart is past server_restart_limit within server_restart_window. Returns 1 when it did (the
 * state is FATAL, logged, recorded). */
int oc_server_fatal_check(oc_server_t *s, const char *detail);

/* oc_server_health.c */
void oc_server_health_check(oc_server_t *s);
/* A request to the server failed below HTTP (refused, reset): it may be dying. New messages wait
 * until a health check (sent now) passes, or its exit is seen. */
void oc_server_suspect(oc_server_t *s, const char *why);
void oc_server_health_start(oc_server_t *s);
void oc_server_maybe_recycle(oc_server_t *s);
oc_server_dir_t *oc_server_dir(oc_server_t *s, const char *path);
void oc_server_dirs_free(oc_server_t *s);

/* oc_server_events.c */
void oc_server_subscribe(oc_server_t *s);
void oc_server_unsubscribe(oc_server_t *s);

/* oc_server_message.c */
/* Fail every message in flight (the server died or was killed). */
void oc_server_fail_all(oc_server_t *s, const char *why);
/* The stream says the message's turn is over: hand over its held answer. */
void oc_server_msg_event(backend_job_t *msg, const char *type, json_object *props);

#endif
