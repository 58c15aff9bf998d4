/* manager: the manager process's shared context and lifecycle.
 *
 * One manager_t exists per ocpmd. It owns the libuv loop, the settings, the
 * database and the counters the status endpoint reports; the modules that
 * do the work (sess, exec, run, ctl, op, pool) are handed it. Like nginx's
 * cycle it is a context record, so its fields are public; its behaviour
 * lives in the modules. */
#ifndef OCPM_MANAGER_H
#define OCPM_MANAGER_H

#include <stdint.h>

#include <uv.h>

#include "conf.h"
#include "db.h"

typedef struct manager {
    uv_loop_t *loop;
    const conf_t *conf;
    db_t *db;
    char **child_env; /* allowlisted environment for opencode */
    struct pool *pool; /* the FastCGI responders */
    char version[128];
    int available;       /* opencode --version worked */
    int serve_supported; /* opencode serve exists */
    int ready;           /* initialised and accepting */
    int stopping;        /* SIGTERM/SIGINT received */
    double started_at;
    double last_activity;
    /* live counts */
    long running;        /* opencode processes running */
    long queued;         /* executions waiting */
    long streams;        /* clients streaming events */
    long sessions;       /* sessions known, not deleted */
    /* totals since start */
    uint64_t spawned, finished, failed, requests;
    char exe[4096];      /* this binary, for spawning responders */
} manager_t;

/* Record a manager event in the log and in manager_events. */
void manager_event(manager_t *m, const char *kind, const char *detail);
/* Note activity for lastActivity/idleTime. */
void manager_touch(manager_t *m);

/* Initialise everything (database, probes, sockets, responders) and run the
 * loop until shutdown completes. Returns 0 on a clean stop. */
int manager_run(const conf_t *conf, const char *exe);

#endif
