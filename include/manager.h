/* manager: the manager process (ocpmd): its context and its lifecycle.
 *
 * One manager_t exists per ocpmd, made by manager_run and passed to whatever serves a request (the
 * API's handlers, the status page, the metrics). Like nginx's cycle it is a record of the objects
 * the manager is made of, so its fields are public; their behaviour lives in their own modules,
 * none of which knows the manager (nothing below this header includes it). */
#ifndef OCPM_MANAGER_H
#define OCPM_MANAGER_H

#include <uv.h>

#include "agent.h"
#include "ask.h"
#include "budget.h"
#include "conf.h"
#include "control.h"
#include "db.h"
#include "http.h"
#include "metrics.h"
#include "pool.h"
#include "prune.h"
#include "slowlog.h"
#include "scheduler.h"
#include "session.h"
#include "tenant.h"
#include "storage_retry.h"
#include "user.h"
#include "webhook.h"

/* What ocpmd runs with, read at start and again at each reload: the global settings, each pool's,
 * each pool's agent. */
typedef struct manager_settings {
    conf_t *conf;
    conf_t *pools[CONF_POOLS_MAX];
    agent_t *agents[CONF_POOLS_MAX];
    int npools;
} manager_settings_t;

typedef struct manager manager_t;
/* Render one of the published documents (snapshot.h: status, health, metrics) and put it. */
typedef void (*manager_publish_fn)(manager_t *m, int doc);

/* What main gives the manager: the API (api.h) wired so that neither includes the other, and the
 * reading of the settings (main's, so that a reload reads exactly what a start does). */
typedef struct manager_hooks {
    control_request_fn dispatch; /* requests on the control socket, with the manager as ctx */
    manager_publish_fn publish;  /* the published documents */
    /* Read the settings again into *out (made whole and checked, nothing running touched): 0, or -1
     * with err. unload releases what load made, in both cases. */
    int (*load)(void *ctx, manager_settings_t *out, char *err, size_t errlen);
    void (*unload)(void *ctx, manager_settings_t *s);
    void *ctx;
} manager_hooks_t;

struct manager {
    uv_loop_t *loop;
    const conf_t *conf;
    manager_settings_t *settings; /* the running settings (conf and the pools' confs are these) */
    const manager_hooks_t *hooks;
    unsigned long reloads;  /* reloads that applied */
    db_t *db;
    session_table_t *sessions;
    user_table_t *users;
    http_t *http;
    tenant_t tenants[CONF_POOLS_MAX];
    int ntenants;
    int servers_stopping;   /* shutdown: servers not yet stopped */
    storage_retry_t *storage;
    prune_t *prune;
    slowlog_t *slowlog;     /* the slow log's sweep (slowlog.h) */
    control_t *control;
    pool_t *pool;           /* the FastCGI responders */
    metrics_t *metrics;
    ask_book_t *asks;       /* the agent's permission and question prompts */
    budget_t *budget;       /* what each user may spend */
    webhook_t *webhook;     /* NULL without webhook_url */
    struct manager_notify *notify; /* systemd's notifications (manager_notify.c) */
    char version[128];      /* opencode --version */
    int available;          /* opencode --version worked */
    int serve_supported;    /* opencode serve exists */
    int ready;              /* initialised and accepting */
    int stopping;           /* SIGTERM/SIGINT received */
    /* ocpmctl drain: new sessions and messages are refused (503 draining) while what was taken
     * (running and queued) finishes, until ocpmctl undrain. In memory: a restarted manager takes
     * work again (the restart is the end of the maintenance). */
    int draining;
    double drained_at;      /* when the drain began, unix seconds (0 when not draining) */
    double started_at, last_activity;
    char exe[4096];         /* this binary, for spawning responders */
};

/* Record a manager event in the log and in manager_events. */
void manager_event(manager_t *m, const char *kind, const char *detail);
/* Note activity for lastActivity/idleTime. */
void manager_touch(manager_t *m);

/* Initialise everything (database, probes, sockets, responders) and run the loop until shutdown
 * completes. Returns 0 on a clean stop. */
int manager_run(manager_settings_t *settings, const char *exe, const manager_hooks_t *hooks);

/* Reload (SIGHUP, ocpmctl reload): read the settings again; when they are valid, apply the keys
 * that can change live (conf_key_live), name the others in the log as needing a restart, and
 * replace the responders (pool.h). An invalid file changes nothing: -1 with err. On success, info
 * (when not NULL) gets {"changed": [keys], "restartNeeded": [keys]}, the caller's to put. */
int manager_reload(manager_t *m, json_object **info, char *err, size_t errlen);



#endif
