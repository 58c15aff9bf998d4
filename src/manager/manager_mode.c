#define _GNU_SOURCE
#include "manager_internal.h"

#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "log.h"
#include "proc.h"

#define MANAGER_PROBE_TIMEOUT_MS 30000

/* Run opencode with argv as the agent (the shared server's home) and capture its output.
 * Blocking, at start-up only. */
static int manager_probe_run(manager_t *m, char *const *argv, char *out, size_t outlen)
{
    agent_launch_t as;
    char err[256];
    if (agent_launch(m->agent, &as, NULL, 0, -1, err, sizeof err) != 0) {
        log_error("cannot prepare the agent for a probe", "error=%s", log_q(err));
        return -1;
    }
    proc_spec_t ps;
    proc_spec_init(&ps, m->conf->opencode_bin, argv);
    ps.cwd = m->conf->workspace_root;
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
    int st = manager_probe_run(m, vargv, out, sizeof out);
    if (st != 0) {
        log_error("OpenCode process manager initialization failed",
                  "reason=\"opencode --version failed\" opencode_bin=%s status=%d", log_q(m->conf->opencode_bin), st);
        return;
    }
    out[strcspn(out, "\r\n")] = '\0';
    snprintf(m->version, sizeof m->version, "%s", out);
    m->available = 1;
    char *sargv[] = {(char *)m->conf->opencode_bin, "serve", "--help", NULL};
    m->serve_supported = manager_probe_run(m, sargv, out, sizeof out) == 0;
}

/* The models opencode offers (per-session mode; a server reports its own when it is ready). */
static void manager_probe_models(manager_t *m)
{
    static char out[1 << 16];
    char *argv[] = {(char *)m->conf->opencode_bin, "models", NULL};
    if (!m->available)
        return;
    int st = manager_probe_run(m, argv, out, sizeof out);
    int n = st == 0 ? oc_models_set_lines(m->models, out) : -1;
    if (n < 0)
        log_warn("cannot list opencode's models; messages naming a model are refused until it can", "status=%d", st);
    else
        log_info("opencode models listed", "count=%d default=%s", n,
                 log_q(oc_models_default(m->models) ? oc_models_default(m->models) : ""));
}

static void manager_server_changed(void *ctx)
{
    manager_t *m = ctx;
    if (m->scheduler)
        scheduler_kick(m->scheduler);
}

static void manager_server_event(void *ctx, const char *kind, const char *detail)
{
    manager_event(ctx, kind, detail);
}

/* Start the servers and wait (the loop runs only its handles meanwhile) until none is still
 * starting. NULL when at least one is ready (the others keep trying under their supervision), or
 * why not. */
static const char *manager_start_servers(manager_t *m, char *err, size_t errlen)
{
    for (int i = 0; i < m->conf->servers; i++) {
        oc_server_config_t sc = {.index = i, .agent = m->agent, .loop = m->loop, .conf = m->conf, .http = m->http,
                                 .models = m->models, .changed = manager_server_changed,
                                 .event = manager_server_event, .ctx = m};
        if (!(m->servers[i] = oc_server_new(&sc)))
            return "out of memory";
        m->nservers = i + 1;
        if (oc_server_start(m->servers[i], err, errlen) != 0)
            return "opencode serve did not start";
    }
    int starting, ready;
    do {
        uv_run(m->loop, UV_RUN_ONCE);
        starting = ready = 0;
        for (int i = 0; i < m->nservers; i++) {
            starting += oc_server_state(m->servers[i]) == OC_SERVER_STARTING;
            ready += oc_server_state(m->servers[i]) == OC_SERVER_READY;
        }
    } while (starting > 0);
    if (ready == 0)
        return "opencode serve did not become healthy within server_start_timeout";
    if (ready < m->nservers)
        log_warn("some opencode servers are not ready; they restart under supervision", "ready=%d servers=%d",
                 ready, m->nservers);
    return NULL;
}

static void manager_scheduler_finished(void *ctx, const char *mode, exec_status_t status, double duration_s,
                                       double queue_wait_s)
{
    manager_t *m = ctx;
    metrics_observe(m->metrics, mode, status, duration_s, queue_wait_s);
    manager_touch(m);
}

static void manager_tool_call(void *ctx, const char *tool, const char *status)
{
    metrics_tool_call(ctx, tool, status);
}

static void manager_scheduler_ended(void *ctx, int64_t id, json_object *record, const turn_t *turn)
{
    manager_t *m = ctx;
    turn_each_tool(turn, manager_tool_call, m->metrics);
    webhook_send(m->webhook, "execution.finished", id, record);
}

/* The backends: the server with per-message runs as its fallback, or per-message runs alone. */
static int manager_make_scheduler(manager_t *m, char *err, size_t errlen)
{
    scheduler_config_t sc = {.loop = m->loop, .agent = m->agent, .conf = m->conf, .db = m->db, .sessions = m->sessions,
                             .users = m->users, .storage = m->storage, .finished = manager_scheduler_finished,
                             .ended = manager_scheduler_ended, .ctx = m, .asks = m->asks, .budget = m->budget};
    backend_t run = {&oc_run_backend, m->runner};
    for (int i = 0; i < m->nservers; i++)
        sc.primary[i] = (backend_t){&oc_server_backend, m->servers[i]};
    sc.nprimary = m->nservers;
    if (m->nservers) {
        sc.fallback = run;
    } else {
        sc.primary[0] = run;
        sc.nprimary = 1;
    }
    m->scheduler = scheduler_new(&sc);
    if (!m->scheduler)
        return snprintf(err, errlen, "out of memory"), -1;
    return 0;
}

/* auto: try the server and keep it if it becomes healthy within server_start_timeout; server: the
 * same, but failing is fatal; per-session: never start one. */
int manager_choose_mode(manager_t *m, char *err, size_t errlen)
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
        why = manager_start_servers(m, err, errlen);
    if (!why) {
        for (int i = 0; i < m->nservers; i++)
            log_info("OpenCode server mode enabled", "server=%d pid=%ld", i, (long)oc_server_pid(m->servers[i]));
        manager_event(m, "mode", "server");
        return manager_make_scheduler(m, err, errlen);
    }
    for (int i = 0; i < m->nservers; i++) {
        oc_server_free(m->servers[i]);
    }
    m->nservers = 0;
    if (c->mode == MODE_SERVER)
        return snprintf(err, errlen, "mode = server, but %s", why), -1;
    if (c->mode == MODE_AUTO)
        log_info("OpenCode does not support server mode, will use per-session approach", "reason=%s", log_q(why));
    else
        log_info("per-session mode by configuration", NULL);
    manager_probe_models(m);
    manager_event(m, "mode", "per-session");
    return manager_make_scheduler(m, err, errlen);
}
