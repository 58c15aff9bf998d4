/* tenant: the pools of the configuration, as the manager runs them.
 *
 * A pool is a [NAME] section of the file (like PHP-FPM's [www]); without sections there is one,
 * "default", of the global settings. Each has its own settings (conf_pool), its own agent (user,
 * home, environment with its env_file, sandbox), its own per-message runner, opencode servers and
 * scheduler (its max_concurrent_runs, policies and limits). Users map to pools by the pools'
 * `users` lists, else default_pool; every session belongs to the pool it was created in, for
 * good. "tenant" in the code, so that it is not mistaken for the responders' pool (pool.h). */
#ifndef OCPM_TENANT_H
#define OCPM_TENANT_H

#include "agent.h"
#include "conf.h"
#include "oc_models.h"
#include "oc_run.h"
#include "oc_server.h"
#include "scheduler.h"
#include "session.h"

struct manager;

/* One pool: its settings and its agent (main's), and what runs its messages. */
typedef struct tenant {
    struct manager *m;       /* its manager, for the callbacks of what it runs */
    int index;
    const conf_t *conf;      /* its settings: the global ones with its section on top */
    agent_t *agent;          /* its user, home and sandbox */
    char **child_env;        /* its agents' environment: pass_env from ocpmd's, then env_file */
    oc_runner_t *runner;     /* `opencode run` per message: the per-session backend, the servers' fallback */
    oc_models_t *models;     /* the models opencode offers it (with its keys) */
    oc_server_t *servers[CONF_SERVERS_MAX]; /* its opencode servers (server mode; else none) */
    int nservers;
    scheduler_t *scheduler;
    unsigned long long tokens, executions; /* what its finished executions reported, since the start */
    double cost;
} tenant_t;

/* What runs, waits, has finished or failed, in all the pools (ts[0..n)). */
long tenant_running(const tenant_t *ts, int n);
long tenant_queued(const tenant_t *ts, int n);
unsigned long long tenant_finished(const tenant_t *ts, int n);
unsigned long long tenant_failed(const tenant_t *ts, int n);
unsigned long long tenant_spawned(const tenant_t *ts, int n);
/* The slow log's sweep over every pool's running turns (slowlog.h). */
void tenant_slow_sweep(tenant_t *ts, int n, double now);
/* The shortest slowlog_timeout of the pools (0: none set). */
long tenant_slowlog_shortest(const tenant_t *ts, int n);
/* opencode servers in all the pools (0: per-session mode everywhere). */
int tenant_servers(const tenant_t *ts, int n);
/* The pool a REMOTE_USER's sessions live in (its pool's users list, else default_pool), or NULL
 * when none takes them. */
tenant_t *tenant_of_user(tenant_t *ts, int n, const conf_t *conf, const char *user);
/* The pool a session lives in, or NULL when its pool is no longer configured. */
tenant_t *tenant_of(tenant_t *ts, int n, const session_t *s);
/* Is env_file path safe to hold provider keys (a regular file of root's or ocpmd's, readable by
 * nobody else)? 0, or -1 with why: ocpmd -t and the start refuse one that is not. */
int tenant_check_env_file(const char *path, char *err, size_t errlen);
/* Set up pool t (its environment, agent directories, runner) before it starts anything. */
int tenant_init(tenant_t *t, uv_loop_t *loop, char *err, size_t errlen);
void tenant_free(tenant_t *t);

#endif
