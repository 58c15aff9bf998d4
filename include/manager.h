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
#include "scheduler.h"
#include "session.h"
#include "tenant.h"
#include "storage_retry.h"
#include "user.h"
#include "webhook.h"

typedef struct manager {
    uv_loop_t *loop;
    const conf_t *conf;
    db_t *db;
    session_table_t *sessions;
    user_table_t *users;
    http_t *http;
    tenant_t tenants[CONF_POOLS_MAX];
    int ntenants;
    int servers_stopping;   /* shutdown: servers not yet stopped */
    storage_retry_t *storage;
    prune_t *prune;
    control_t *control;
    pool_t *pool;           /* the FastCGI responders */
    metrics_t *metrics;
    ask_book_t *asks;       /* the agent's permission and question prompts */
    budget_t *budget;       /* what each user may spend */
    webhook_t *webhook;     /* NULL without webhook_url */
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
} manager_t;

/* Record a manager event in the log and in manager_events. */
void manager_event(manager_t *m, const char *kind, const char *detail);
/* Note activity for lastActivity/idleTime. */
void manager_touch(manager_t *m);

/* Initialise everything (database, probes, sockets, responders) and run the loop until shutdown
 * completes; requests on the control socket go to dispatch, with the manager as its ctx, and the
 * published documents come from publish (the API, api.h: main wires the two, so that neither
 * includes the other). Returns 0 on a clean stop. */
/* Render one of the published documents (snapshot.h: status, health, metrics) and put it. */
typedef void (*manager_publish_fn)(manager_t *m, int doc);
int manager_run(const conf_t *conf, conf_t *const *pools, agent_t *const *agents, int npools, const char *exe,
                control_request_fn dispatch, manager_publish_fn publish);



#endif
