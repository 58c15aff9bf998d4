#define _GNU_SOURCE
#include "manager_internal.h"

#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "log.h"
#include "proc.h"

#define MANAGER_PROBE_TIMEOUT_MS 30000

/* Run opencode with argv as pool t's agent (its first server's home, its environment and keys)
 * and capture its output. Blocking, at start-up only. */
static int manager_probe_run(manager_t *m, const tenant_t *t, char *const *argv, char *out, size_t outlen)
{
    agent_launch_t as;
    char err[256];
    if (agent_launch(t->agent, &as, NULL, 0, -1, err, sizeof err) != 0) {
        log_error("cannot prepare the agent for a probe", "error=%s", log_q(err));
        return -1;
    }
    proc_spec_t ps;
    proc_spec_init(&ps, m->conf->opencode_bin, argv);
    ps.cwd = t->conf->workspace_root;
    agent_apply(&as, &ps);
    int st = proc_run_capture(&ps, MANAGER_PROBE_TIMEOUT_MS, out, outlen, err, sizeof err);
    agent_launch_done(&as);
    if (st < 0)
        log_error("cannot run opencode", "command=%s error=%s", argv[1], log_q(err));
    return st;
}

void manager_probe(manager_t *m)
{
    char out[512];
    char *vargv[] = {(char *)m->conf->opencode_bin, "--version", NULL};
    int st = manager_probe_run(m, &m->tenants[0], vargv, out, sizeof out);
    if (st != 0) {
        log_error("OpenCode process manager initialization failed",
                  "reason=\"opencode --version failed\" opencode_bin=%s status=%d", log_q(m->conf->opencode_bin), st);
        return;
    }
    out[strcspn(out, "\r\n")] = '\0';
    snprintf(m->version, sizeof m->version, "%s", out);
    m->available = 1;
    char *sargv[] = {(char *)m->conf->opencode_bin, "serve", "--help", NULL};
    m->serve_supported = manager_probe_run(m, &m->tenants[0], sargv, out, sizeof out) == 0;
}

/* The models opencode offers pool t, with its keys (per-session mode; a server reports its own
 * when it is ready). */
static void manager_probe_models(manager_t *m, tenant_t *t)
{
    static char out[1 << 16];
    char *argv[] = {(char *)m->conf->opencode_bin, "models", NULL};
    if (!m->available)
        return;
    int st = manager_probe_run(m, t, argv, out, sizeof out);
    int n = st == 0 ? oc_models_set_lines(t->models, out) : -1;
    if (n < 0)
        log_warn("cannot list opencode's models; messages naming a model are refused until it can", "pool=%s status=%d",
                 t->conf->pool_name, st);
    else
        log_info("opencode models listed", "pool=%s count=%d default=%s", t->conf->pool_name, n,
                 log_q(oc_models_default(t->models) ? oc_models_default(t->models) : ""));
}

static void manager_server_changed(void *ctx)
{
    tenant_t *t = ctx;
    if (t->scheduler)
        scheduler_kick(t->scheduler);
}

static void manager_server_event(void *ctx, const char *kind, const char *detail)
{
    tenant_t *t = ctx;
    char d[512];
    snprintf(d, sizeof d, "pool=%s %s", t->conf->pool_name, detail);
    manager_event(t->m, kind, d);
}

/* Start a pool's servers and wait (the loop runs only its handles meanwhile) until none is still
 * starting. NULL when at least one is ready (the others keep trying under their supervision), or
 * why not. */
static const char *manager_start_servers(manager_t *m, tenant_t *t, char *err, size_t errlen)
{
    for (int i = 0; i < t->conf->servers; i++) {
        oc_server_config_t sc = {.index = i, .agent = t->agent, .loop = m->loop, .conf = t->conf, .http = m->http,
                                 .models = t->models, .changed = manager_server_changed,
                                 .event = manager_server_event, .ctx = t};
        if (!(t->servers[i] = oc_server_new(&sc)))
            return "out of memory";
        t->nservers = i + 1;
        if (oc_server_start(t->servers[i], err, errlen) != 0)
            return "opencode serve did not start";
    }
    int starting, ready;
    do {
        uv_run(m->loop, UV_RUN_ONCE);
        starting = ready = 0;
        for (int i = 0; i < t->nservers; i++) {
            starting += oc_server_state(t->servers[i]) == OC_SERVER_STARTING;
            ready += oc_server_state(t->servers[i]) == OC_SERVER_READY;
        }
    } while (starting > 0);
    if (ready == 0)
        return "opencode serve did not become healthy within server_start_timeout";
    if (ready < t->nservers)
        log_warn("some opencode servers are not ready; they restart under supervision", "pool=%s ready=%d servers=%d",
                 t->conf->pool_name, ready, t->nservers);
    return NULL;
}

static void manager_scheduler_finished(void *ctx, const char *mode, exec_status_t status, double duration_s,
                                       double queue_wait_s)
{
    tenant_t *t = ctx;
    metrics_observe(t->m->metrics, mode, status, duration_s, queue_wait_s);
    manager_touch(t->m);
}

static void manager_tool_call(void *ctx, const char *tool, const char *status)
{
    metrics_tool_call(ctx, tool, status);
}

static void manager_scheduler_ended(void *ctx, int64_t id, json_object *record, const turn_t *turn)
{
    tenant_t *t = ctx;
    json_object *v;
    t->executions++;
    if (json_object_object_get_ex(record, "tokens_in", &v))
        t->tokens += (unsigned long long)json_object_get_int64(v);
    if (json_object_object_get_ex(record, "tokens_out", &v))
        t->tokens += (unsigned long long)json_object_get_int64(v);
    if (json_object_object_get_ex(record, "cost", &v))
        t->cost += json_object_get_double(v);
    turn_each_tool(turn, manager_tool_call, t->m->metrics);
    webhook_send(t->m->webhook, "execution.finished", id, record);
}

/* A pool's backends: its servers with per-message runs as their fallback, or per-message runs alone. */
static int manager_make_scheduler(manager_t *m, tenant_t *t, char *err, size_t errlen)
{
    scheduler_config_t sc = {.loop = m->loop, .agent = t->agent, .conf = t->conf, .db = m->db, .sessions = m->sessions,
                             .users = m->users, .storage = m->storage, .finished = manager_scheduler_finished,
                             .ended = manager_scheduler_ended, .ctx = t, .asks = m->asks, .budget = m->budget,
                             .pool = t->conf->pool_name, .pool_index = t->index};
    backend_t run = {&oc_run_backend, t->runner};
    for (int i = 0; i < t->nservers; i++)
        sc.primary[i] = (backend_t){&oc_server_backend, t->servers[i]};
    sc.nprimary = t->nservers;
    if (t->nservers) {
        sc.fallback = run;
    } else {
        sc.primary[0] = run;
        sc.nprimary = 1;
    }
    t->scheduler = scheduler_new(&sc);
    if (!t->scheduler)
        return snprintf(err, errlen, "out of memory"), -1;
    return 0;
}

/* One pool's mode. auto: try its servers and keep them if one becomes healthy within
 * server_start_timeout; server: the same, but failing is fatal; per-session: never start one. */
static int manager_choose_pool_mode(manager_t *m, tenant_t *t, char *err, size_t errlen)
{
    const conf_t *c = m->conf;
    const char *why = NULL;
    if (c->mode == MODE_PER_SESSION)
        why = "mode = per-session";
    else if (!m->available && c->mode == MODE_AUTO)
        why = "opencode is not available";
    else if (!m->serve_supported && c->mode == MODE_AUTO)
        why = "opencode serve is not supported";
    else
        why = manager_start_servers(m, t, err, errlen);
    if (!why) {
        for (int i = 0; i < t->nservers; i++)
            log_info("OpenCode server mode enabled", "pool=%s server=%d pid=%ld", t->conf->pool_name, i,
                     (long)oc_server_pid(t->servers[i]));
        return manager_make_scheduler(m, t, err, errlen);
    }
    for (int i = 0; i < t->nservers; i++)
        oc_server_free(t->servers[i]);
    t->nservers = 0;
    if (c->mode == MODE_SERVER)
        return snprintf(err, errlen, "pool %s: mode = server, but %s", t->conf->pool_name, why), -1;
    if (c->mode == MODE_AUTO)
        log_info("OpenCode does not support server mode, will use per-session approach", "pool=%s reason=%s",
                 t->conf->pool_name, log_q(why));
    else
        log_info("per-session mode by configuration", "pool=%s", t->conf->pool_name);
    return manager_make_scheduler(m, t, err, errlen);
}

int manager_choose_mode(manager_t *m, char *err, size_t errlen)
{
    int servers = 0;
    for (int i = 0; i < m->ntenants; i++) {
        if (manager_choose_pool_mode(m, &m->tenants[i], err, errlen) != 0)
            return -1;
        servers += m->tenants[i].nservers;
        if (!m->tenants[i].nservers)
            manager_probe_models(m, &m->tenants[i]);
    }
    manager_event(m, "mode", servers ? "server" : "per-session");
    return 0;
}
