#define _GNU_SOURCE
#include "api_internal.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "clock.h"
#include "inflight.h"

/* The i-th server of all the pools' (pool order, then number): its number in its pool, and the pool. */
static int api_server_index(const manager_t *m, int i, const tenant_t **t)
{
    for (int p = 0; p < m->ntenants; p++) {
        if (i < m->tenants[p].nservers) {
            *t = &m->tenants[p];
            return i;
        }
        i -= m->tenants[p].nservers;
    }
    *t = &m->tenants[0];
    return 0;
}

static const oc_server_t *api_server_at(const manager_t *m, int i)
{
    const tenant_t *t = NULL;
    int k = api_server_index(m, i, &t);
    return t->servers[k];
}

static json_object *api_server_json(const manager_t *m, int i)
{
    const tenant_t *t = NULL;
    int k = api_server_index(m, i, &t);
    json_object *o = oc_server_status_json(t->servers[k]);
    json_object_object_add(o, "pool", json_object_new_string(t->conf->pool_name));
    return o;
}

/* Each pool: its name, how it runs, what it holds now and what it did since the start. */
static json_object *api_status_pools(const manager_t *m)
{
    json_object *a = json_object_new_array();
    for (int i = 0; i < m->ntenants; i++) {
        const tenant_t *t = &m->tenants[i];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(t->conf->pool_name));
        json_object_object_add(o, "default", json_object_new_boolean(m->conf->nsections == 0 ||
                                                                     strcmp(t->conf->pool_name, m->conf->default_pool) == 0));
        json_object_object_add(o, "mode", json_object_new_string(t->nservers ? "server" : "per-session"));
        json_object_object_add(o, "servers", json_object_new_int(t->nservers));
        json_object_object_add(o, "maxConcurrentRuns", json_object_new_int64(t->conf->max_concurrent_runs));
        json_object_object_add(o, "running", json_object_new_int64(scheduler_running(t->scheduler)));
        json_object_object_add(o, "queued", json_object_new_int64(scheduler_queued(t->scheduler)));
        json_object_object_add(o, "executions", json_object_new_int64((int64_t)t->executions));
        json_object_object_add(o, "tokens", json_object_new_int64((int64_t)t->tokens));
        json_object_object_add(o, "cost", json_object_new_double(t->cost));
        long models = oc_models_count(t->models);
        json_object_object_add(o, "modelsKnown", models >= 0 ? json_object_new_int64(models) : NULL);
        json_object_object_add(o, "agentIsolation", agent_status_json(t->agent));
        json_object_array_add(a, o);
    }
    return a;
}

/* The process manager's part of the status document: the original design's fields. */
static json_object *api_status_process_manager(const manager_t *m, double now)
{
    int server = tenant_servers(m->tenants, m->ntenants), running = 0;
    for (int i = 0; i < server; i++)
        running |= oc_server_pid(api_server_at(m, i)) > 0;
    json_object *pm = json_object_new_object();
    json_object_object_add(pm, "isRunning", json_object_new_boolean(running));
    json_object_object_add(pm, "isReady", json_object_new_boolean(m->ready && !m->stopping));
    json_object_object_add(pm, "pendingRequests", json_object_new_int64(tenant_queued(m->tenants, m->ntenants)));
    json_object_object_add(pm, "activeSessions", json_object_new_int64((int64_t)session_count(m->sessions)));
    json_object_object_add(pm, "lastActivity", json_object_new_int64((int64_t)(m->last_activity * 1000.0)));
    json_object_object_add(pm, "idleTime", json_object_new_int64((int64_t)((now - m->last_activity) * 1000.0)));
    json_object_object_add(pm, "mode", json_object_new_string(server ? "server" : "per-session"));
    json_object_object_add(pm, "description",
                           json_object_new_string(!server ? "Each message spawns separate OpenCode process"
                                                  : server == 1 ? "All sessions share one persistent OpenCode server"
                                                                     : "Sessions are placed on persistent OpenCode servers"));
    return pm;
}

/* ocpm's additions beside the original fields. */
static json_object *api_status_ocpm(const manager_t *m, double now)
{
    json_object *x = json_object_new_object();
    json_object_object_add(x, "node", json_object_new_string(m->conf->node_name));
    json_object_object_add(x, "pid", json_object_new_int64(getpid()));
    json_object_object_add(x, "startedAt", json_object_new_int64((int64_t)(m->started_at * 1000.0)));
    json_object_object_add(x, "uptimeSeconds", json_object_new_double(now - m->started_at));
    json_object_object_add(x, "configuredMode", json_object_new_string(conf_mode_name(m->conf->mode)));
    json_object_object_add(x, "serverModeSupported", json_object_new_boolean(m->serve_supported));
    json_object_object_add(x, "fallback", json_object_new_boolean(m->conf->fallback));
    json_object_object_add(x, "shuttingDown", json_object_new_boolean(m->stopping));
    json_object_object_add(x, "draining", json_object_new_boolean(m->draining));
    json_object_object_add(x, "drainingSince",
                           m->draining ? json_object_new_int64((int64_t)(m->drained_at * 1000.0)) : NULL);
    json_object_object_add(x, "maxConcurrentRuns", json_object_new_int64(m->conf->max_concurrent_runs));
    json_object_object_add(x, "processesSpawned", json_object_new_int64((int64_t)tenant_spawned(m->tenants, m->ntenants)));
    json_object_object_add(x, "executionsFinished", json_object_new_int64((int64_t)tenant_finished(m->tenants, m->ntenants)));
    json_object_object_add(x, "executionsFailed", json_object_new_int64((int64_t)tenant_failed(m->tenants, m->ntenants)));
    json_object_object_add(x, "requests", json_object_new_int64((int64_t)control_requests(m->control)));
    json_object_object_add(x, "responders", pool_status_json(m->pool));
    json_object_object_add(x, "database", storage_retry_status_json(m->storage));
    json_object_object_add(x, "agentIsolation", agent_status_json(m->tenants[0].agent));
    json_object_object_add(x, "pools", api_status_pools(m));
    json_object_object_add(x, "promptsPending", json_object_new_int64(ask_pending(m->asks)));
    json_object *hooks = json_object_new_object();
    json_object_object_add(hooks, "enabled", json_object_new_boolean(m->webhook != NULL));
    json_object_object_add(hooks, "pending", json_object_new_int64(webhook_pending(m->webhook)));
    json_object_object_add(hooks, "delivered", json_object_new_int64((int64_t)webhook_delivered(m->webhook)));
    json_object_object_add(hooks, "failed", json_object_new_int64((int64_t)webhook_failed(m->webhook)));
    json_object_object_add(x, "webhooks", hooks);
    long models = oc_models_count(m->tenants[0].models);
    json_object_object_add(x, "modelsKnown", models >= 0 ? json_object_new_int64(models) : NULL);
    /* Heap in use as glibc's malloc sees it (RSS also holds what malloc keeps for reuse); null where
     * another allocator answers (AddressSanitizer's reports 0). */
    struct mallinfo2 mi = mallinfo2();
    json_object_object_add(x, "heapInUseBytes", mi.uordblks ? json_object_new_int64((int64_t)mi.uordblks) : NULL);
    return x;
}

static json_object *api_status_json(const manager_t *m)
{
    double now = clock_now();
    json_object *o = json_object_new_object();
    json_object_object_add(o, "available", json_object_new_boolean(m->available));
    json_object_object_add(o, "version", m->available ? json_object_new_string(m->version) : NULL);
    json_object_object_add(o, "runningProcesses", json_object_new_int64(tenant_running(m->tenants, m->ntenants)));
    json_object_object_add(o, "activeStreams", json_object_new_int64(control_streams(m->control)));
    json_object_object_add(o, "processManager", api_status_process_manager(m, now));
    /* server: the first (the original single server's place); servers: every one. */
    int n = tenant_servers(m->tenants, m->ntenants);
    if (n)
        json_object_object_add(o, "server", api_server_json(m, 0));
    json_object *servers = json_object_new_array();
    for (int i = 0; i < n; i++)
        json_object_array_add(servers, api_server_json(m, i));
    json_object_object_add(o, "servers", servers);
    json_object_object_add(o, "ocpm", api_status_ocpm(m, now));
    return o;
}

void api_status(void *ctx, control_conn_t *c, const api_call_t *call)
{
    json_object *v;
    int full = json_object_object_get_ex(call->args, "full", &v);
    if (!full && json_object_object_get_ex(call->args, "limit", NULL))
        return control_error(c, 400, "invalid_parameter", "limit applies to ?full only"), (void)0;
    json_object *o = api_status_json(ctx);
    if (full)
        api_status_sessions(ctx, o, call->user, (long)api_num(call, "limit", API_STATUS_SESSIONS_DEFAULT));
    control_reply(c, 200, o, NULL);
}

static json_object *api_health_json(const manager_t *m, int *code)
{
    json_object *o = json_object_new_object();
    int ok = m->ready && !m->stopping;
    json_object_object_add(o, "status", json_object_new_string(ok ? "ok" : "stopping"));
    json_object_object_add(o, "available", json_object_new_boolean(m->available));
    *code = ok ? 200 : 503;
    return o;
}

/* Why new work would not be served now: each reason's code (what anyone may read) and, for
 * operators, its sentence and the pool it concerns. */
typedef struct api_ready {
    json_object *codes, *details;
} api_ready_t;

static void api_ready_add(api_ready_t *r, const char *code, const char *message, const char *pool)
{
    size_t i = 0, n = json_object_array_length(r->codes);
    while (i < n && strcmp(json_object_get_string(json_object_array_get_idx(r->codes, i)), code) != 0)
        i++;
    if (i == n)
        json_object_array_add(r->codes, json_object_new_string(code));
    json_object *d = json_object_new_object();
    json_object_object_add(d, "code", json_object_new_string(code));
    json_object_object_add(d, "message", json_object_new_string(message));
    if (pool)
        json_object_object_add(d, "pool", json_object_new_string(pool));
    json_object_array_add(r->details, d);
}

/* Each pool in server mode has a server taking messages, or may fall back to per-message runs. */
static void api_ready_pools(const manager_t *m, api_ready_t *r)
{
    for (int p = 0; p < m->ntenants; p++) {
        const tenant_t *t = &m->tenants[p];
        int ready = t->nservers == 0 || t->conf->fallback;
        for (int i = 0; i < t->nservers && !ready; i++)
            ready = oc_server_state(t->servers[i]) == OC_SERVER_READY;
        if (!ready) {
            char why[320], fatal[160] = "";
            size_t o = 0;
            for (int i = 0; i < t->nservers && o < sizeof fatal; i++)
                if (oc_server_state(t->servers[i]) == OC_SERVER_FATAL)
                    o += (size_t)snprintf(fatal + o, sizeof fatal - o, "%s%d", o ? ", " : "", i);
            snprintf(why, sizeof why, "the pool has no server taking messages and fallback is off%s%s%s",
                     o ? " (FATAL: server " : "", fatal, o ? "; fix the cause, then ocpmctl server restart)" : "");
            api_ready_add(r, "no_server_ready", why, t->conf->pool_name);
        }
    }
}

/* Readiness (liveness is /api/health): 200 only when new work would be served right now, else 503
 * with every reason, for a load balancer or the cluster's front to stop sending work here. Anyone
 * reads the codes; the details name the pools, so only operators (/api/admin/ready) read them. */
static json_object *api_ready_json(const manager_t *m, int details, int *code)
{
    api_ready_t r = {json_object_new_array(), json_object_new_array()};
    if (!m->ready)
        api_ready_add(&r, "starting", "the manager is not initialised yet", NULL);
    if (m->stopping)
        api_ready_add(&r, "shutting_down", "the manager is stopping", NULL);
    if (m->draining)
        api_ready_add(&r, "draining", "an operator drained the manager (ocpmctl drain): new sessions and messages are refused", NULL);
    if (m->ready && !m->available)
        api_ready_add(&r, "opencode_unavailable", "opencode --version failed at start: every message would fail", NULL);
    if (m->storage && !storage_retry_ok(m->storage))
        api_ready_add(&r, "database_unavailable", "writes to the database are failing or waiting", NULL);
    api_ready_pools(m, &r);
    int ok = json_object_array_length(r.codes) == 0;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "ready", json_object_new_boolean(ok));
    json_object_object_add(o, "reasons", r.codes);
    if (details)
        json_object_object_add(o, "details", r.details);
    else
        json_object_put(r.details);
    *code = ok ? 200 : 503;
    return o;
}

void api_ready(void *ctx, control_conn_t *c, const api_call_t *call)
{
    (void)call;
    int code;
    json_object *o = api_ready_json(ctx, 0, &code);
    control_reply(c, code, o, NULL);
}

void api_admin_ready(void *ctx, control_conn_t *c, const api_call_t *call)
{
    (void)call;
    int code;
    json_object *o = api_ready_json(ctx, 1, &code);
    control_reply(c, code, o, NULL);
}

void api_health(void *ctx, control_conn_t *c, const api_call_t *call)
{
    (void)call;
    int code;
    json_object *o = api_health_json(ctx, &code);
    control_reply(c, code, o, NULL);
}

/* How each metric is read from the manager. */
#define API_M(ctx) ((const manager_t *)(ctx))
static double api_m_running(const void *c) { return (double)tenant_running(API_M(c)->tenants, API_M(c)->ntenants); }
static double api_m_queued(const void *c) { return (double)tenant_queued(API_M(c)->tenants, API_M(c)->ntenants); }
static double api_m_streams(const void *c) { return (double)control_streams(API_M(c)->control); }
static double api_m_sessions(const void *c) { return (double)session_count(API_M(c)->sessions); }
static double api_m_spawned(const void *c) { return (double)tenant_spawned(API_M(c)->tenants, API_M(c)->ntenants); }
static double api_m_requests(const void *c) { return (double)control_requests(API_M(c)->control); }
static double api_m_resp_restarts(const void *c) { return (double)pool_restarts(API_M(c)->pool); }
static double api_m_resp_inflight(const void *c) { (void)c; return (double)inflight_total(); }
static double api_m_resp_refused(const void *c) { (void)c; return (double)inflight_refused(); }
static double api_m_db_failures(const void *c) { return (double)storage_retry_failures(API_M(c)->storage); }
static double api_m_db_pending(const void *c) { return (double)storage_retry_pending(API_M(c)->storage); }
static double api_m_tokens(const void *c) { return (double)budget_tokens_total(API_M(c)->budget); }
static double api_m_cost(const void *c) { return budget_cost_total(API_M(c)->budget); }
static double api_m_prompts(const void *c) { return (double)ask_pending(API_M(c)->asks); }
static double api_m_hooks_pending(const void *c) { return (double)webhook_pending(API_M(c)->webhook); }
static double api_m_hooks_delivered(const void *c) { return (double)webhook_delivered(API_M(c)->webhook); }
static double api_m_hooks_failed(const void *c) { return (double)webhook_failed(API_M(c)->webhook); }
static double api_m_draining(const void *c) { return API_M(c)->draining ? 1 : 0; }
static int api_m_servers(const void *c) { return tenant_servers(API_M(c)->tenants, API_M(c)->ntenants); }
static double api_m_server_up(const void *c, int i)
{
    const oc_server_t *s = api_server_at(API_M(c), i);
    return oc_server_state(s) != OC_SERVER_OFF && oc_server_pid(s) > 0;
}
static double api_m_server_healthy(const void *c, int i) { return oc_server_healthy(api_server_at(API_M(c), i)); }
static double api_m_server_restarts(const void *c, int i)
{
    return (double)oc_server_restarts(api_server_at(API_M(c), i));
}
static double api_m_server_rss(const void *c, int i)
{
    return api_m_server_up(c, i) ? (double)oc_server_rss_bytes(api_server_at(API_M(c), i)) : 0;
}
static double api_m_server_fatal(const void *c, int i)
{
    return oc_server_state(api_server_at(API_M(c), i)) == OC_SERVER_FATAL;
}
/* The state gauge: one sample per server and state (OC_SERVER_NSTATES of each), 1 for its state. */
static int api_m_server_states(const void *c) { return api_m_servers(c) * OC_SERVER_NSTATES; }
static double api_m_server_state(const void *c, int i)
{
    return (int)oc_server_state(api_server_at(API_M(c), i / OC_SERVER_NSTATES)) == i % OC_SERVER_NSTATES;
}
static void api_m_server_state_labels(const void *c, int i, char *out, size_t len);
static double api_m_server_inflight(const void *c, int i)
{
    return (double)oc_server_in_flight(api_server_at(API_M(c), i));
}
static void api_m_server_labels(const void *c, int i, char *out, size_t len)
{
    const tenant_t *t = NULL;
    int k = api_server_index(API_M(c), i, &t);
    char pool[2 * CONF_POOL_NAME_MAX + 1];
    snprintf(out, len, "pool=\"%s\",server=\"%d\"", metrics_escape(t->conf->pool_name, pool, sizeof pool), k);
}
static void api_m_server_state_labels(const void *c, int i, char *out, size_t len)
{
    char l[96];
    api_m_server_labels(c, i / OC_SERVER_NSTATES, l, sizeof l);
    snprintf(out, len, "%s,state=\"%s\"", l, oc_server_state_name((oc_server_state_t)(i % OC_SERVER_NSTATES)));
}
static int api_m_pools(const void *c) { return API_M(c)->ntenants; }
static const tenant_t *api_m_pool(const void *c, int i) { return &API_M(c)->tenants[i]; }
static double api_m_pool_running(const void *c, int i) { return (double)scheduler_running(api_m_pool(c, i)->scheduler); }
static double api_m_pool_queued(const void *c, int i) { return (double)scheduler_queued(api_m_pool(c, i)->scheduler); }
static double api_m_pool_execs(const void *c, int i) { return (double)api_m_pool(c, i)->executions; }
static double api_m_pool_tokens(const void *c, int i) { return (double)api_m_pool(c, i)->tokens; }
static double api_m_pool_cost(const void *c, int i) { return api_m_pool(c, i)->cost; }
static void api_m_pool_labels(const void *c, int i, char *out, size_t len)
{
    char pool[2 * CONF_POOL_NAME_MAX + 1];
    snprintf(out, len, "pool=\"%s\"", metrics_escape(api_m_pool(c, i)->conf->pool_name, pool, sizeof pool));
}
#define API_PER_SERVER(fn) api_m_servers, fn, api_m_server_labels
#define API_PER_POOL(fn) api_m_pools, fn, api_m_pool_labels

static const metric_t api_metric_table[] = {
    {"ocpm_running_processes", METRIC_GAUGE, "Executions running now.", api_m_running, NULL, NULL, NULL},
    {"ocpm_draining", METRIC_GAUGE, "1 while an operator drains the manager (ocpmctl drain): new work is refused.",
     api_m_draining, NULL, NULL, NULL},
    {"ocpm_queued_messages", METRIC_GAUGE, "Messages waiting to start.", api_m_queued, NULL, NULL, NULL},
    {"ocpm_active_streams", METRIC_GAUGE, "Clients streaming events now.", api_m_streams, NULL, NULL, NULL},
    {"ocpm_sessions", METRIC_GAUGE, "Sessions known (not deleted).", api_m_sessions, NULL, NULL, NULL},
    {"ocpm_processes_spawned_total", METRIC_COUNTER, "opencode run processes started.", api_m_spawned, NULL, NULL, NULL},
    {"ocpm_requests_total", METRIC_COUNTER, "Requests the manager answered.", api_m_requests, NULL, NULL, NULL},
    {"ocpm_responder_restarts_total", METRIC_COUNTER, "FastCGI responders respawned after dying.",
     api_m_resp_restarts, NULL, NULL, NULL},
    {"ocpm_responder_requests_in_flight", METRIC_GAUGE, "Requests the responder pool is serving now.",
     api_m_resp_inflight, NULL, NULL, NULL},
    {"ocpm_responder_refused_total", METRIC_COUNTER, "Requests answered 503 because the pool was full.",
     api_m_resp_refused, NULL, NULL, NULL},
    {"ocpm_db_write_failures_total", METRIC_COUNTER, "Database writes that failed (busy, full, removed...).",
     api_m_db_failures, NULL, NULL, NULL},
    {"ocpm_db_pending_writes", METRIC_GAUGE, "Final execution records waiting to be written again.",
     api_m_db_pending, NULL, NULL, NULL},
    {"ocpm_tokens_total", METRIC_COUNTER, "Tokens (in and out) finished executions reported.", api_m_tokens, NULL, NULL, NULL},
    {"ocpm_cost_total", METRIC_COUNTER, "Cost finished executions reported, in the provider's currency.", api_m_cost, NULL, NULL, NULL},
    {"ocpm_prompts_pending", METRIC_GAUGE, "Permission and question prompts waiting for an answer.", api_m_prompts, NULL, NULL, NULL},
    {"ocpm_webhook_pending", METRIC_GAUGE, "Webhook deliveries being tried.", api_m_hooks_pending, NULL, NULL, NULL},
    {"ocpm_webhook_delivered_total", METRIC_COUNTER, "Webhook deliveries a receiver accepted.", api_m_hooks_delivered, NULL, NULL, NULL},
    {"ocpm_webhook_failed_total", METRIC_COUNTER, "Webhook deliveries given up after webhook_attempts tries.",
     api_m_hooks_failed, NULL, NULL, NULL},
    {"ocpm_server_up", METRIC_GAUGE, "1 when the opencode server's process runs (server mode).", NULL,
     API_PER_SERVER(api_m_server_up)},
    {"ocpm_server_healthy", METRIC_GAUGE, "1 when the opencode server passed its last health check.", NULL,
     API_PER_SERVER(api_m_server_healthy)},
    {"ocpm_server_restarts_total", METRIC_COUNTER, "opencode server restarts after failures.", NULL,
     API_PER_SERVER(api_m_server_restarts)},
    {"ocpm_server_fatal", METRIC_GAUGE,
     "1 when the opencode server is FATAL: restarted too often, left down until ocpmctl server restart.", NULL,
     API_PER_SERVER(api_m_server_fatal)},
    {"ocpm_server_state", METRIC_GAUGE, "1 for the opencode server's current state (off, starting, ready, draining, "
     "backoff, stopping, fatal).", NULL, api_m_server_states, api_m_server_state, api_m_server_state_labels},
    {"ocpm_server_rss_bytes", METRIC_GAUGE, "Resident memory of the opencode server.", NULL,
     API_PER_SERVER(api_m_server_rss)},
    {"ocpm_server_messages_in_flight", METRIC_GAUGE, "Messages on the opencode server now.", NULL,
     API_PER_SERVER(api_m_server_inflight)},
    {"ocpm_pool_running_processes", METRIC_GAUGE, "Executions running now in the pool.", NULL,
     API_PER_POOL(api_m_pool_running)},
    {"ocpm_pool_queued_messages", METRIC_GAUGE, "Messages waiting to start in the pool.", NULL,
     API_PER_POOL(api_m_pool_queued)},
    {"ocpm_pool_executions_total", METRIC_COUNTER, "Executions the pool finished since the manager started.", NULL,
     API_PER_POOL(api_m_pool_execs)},
    {"ocpm_pool_tokens_total", METRIC_COUNTER, "Tokens (in and out) the pool's executions reported since the start.",
     NULL, API_PER_POOL(api_m_pool_tokens)},
    {"ocpm_pool_cost_total", METRIC_COUNTER, "Cost the pool's executions reported since the start.", NULL,
     API_PER_POOL(api_m_pool_cost)},
};

static char *api_metrics_text(const manager_t *m, metrics_format_t f)
{
    return metrics_render(m->metrics, api_metric_table, sizeof api_metric_table / sizeof api_metric_table[0], m, f);
}

void api_metrics(void *ctx, control_conn_t *c, const api_call_t *call)
{
    metrics_format_t f = call->openmetrics ? METRICS_OPENMETRICS : METRICS_PROMETHEUS;
    char *text = api_metrics_text(ctx, f);
    if (!text)
        return control_error(c, 500, "internal", "out of memory"), (void)0;
    control_reply_text(c, 200, f == METRICS_OPENMETRICS ? METRICS_OPENMETRICS_TYPE : METRICS_PROMETHEUS_TYPE, text);
    free(text);
}

/* The responders' own counts in the status document (pool_status_json's flat "responders"
 * object): the responder answering from the snapshot writes their current values (snapshot.h). */
static const struct {
    const char *key;
    int kind;
} api_live_fields[] = {
    {"\"inFlight\":", SNAPSHOT_LIVE_INFLIGHT},
    {"\"messagesInFlight\":", SNAPSHOT_LIVE_MESSAGES},
    {"\"refused\":", SNAPSHOT_LIVE_REFUSED},
};

/* Copy text into out with the live fields' numbers widened to SNAPSHOT_LIVE_WIDTH (out has room
 * for that); returns the new length and fills live. */
static size_t api_publish_live(const char *text, size_t n, char *out, snapshot_live_t *live, int *nlive)
{
    const char *obj = strstr(text, "\"responders\":{"), *end = obj ? strchr(obj, '}') : NULL;
    size_t o = 0, at = 0;
    *nlive = 0;
    for (size_t i = 0; end && i < sizeof api_live_fields / sizeof api_live_fields[0]; i++) {
        const char *k = strstr(obj, api_live_fields[i].key);
        if (!k || k > end || (size_t)(k - text) < at)
            continue;
        const char *num = k + strlen(api_live_fields[i].key);
        size_t digits = strspn(num, "-0123456789");
        if (digits == 0 || digits > SNAPSHOT_LIVE_WIDTH)
            continue;
        memcpy(out + o, text + at, (size_t)(num - text) - at);
        o += (size_t)(num - text) - at;
        long long v = strtoll(num, NULL, 10);
        live[*nlive] = (snapshot_live_t){.offset = o, .kind = api_live_fields[i].kind,
                                         .base = api_live_fields[i].kind == SNAPSHOT_LIVE_REFUSED ? inflight_refused_before() : 0};
        (*nlive)++;
        o += (size_t)snprintf(out + o, SNAPSHOT_LIVE_WIDTH + 1, "%*lld", SNAPSHOT_LIVE_WIDTH, v);
        at = (size_t)(num - text) + digits;
    }
    memcpy(out + o, text + at, n - at);
    return o + n - at;
}

/* A JSON document as the responder writes the manager's reply (resp_write_json). */
static void api_publish_json(int doc, int code, json_object *o)
{
    size_t n;
    const char *text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    char *b = malloc(n + 2 + SNAPSHOT_LIVE_MAX * SNAPSHOT_LIVE_WIDTH);
    snapshot_live_t live[SNAPSHOT_LIVE_MAX];
    int nlive = 0;
    if (b) {
        size_t len = doc == SNAPSHOT_STATUS ? api_publish_live(text, n, b, live, &nlive) : (memcpy(b, text, n), n);
        b[len] = '\n';
        snapshot_put(doc, code, "application/json", b, len + 1, live, nlive);
    }
    free(b);
    json_object_put(o);
}

void api_publish(struct manager *m, int doc)
{
    int code;
    char *text;
    switch (doc) {
    case SNAPSHOT_STATUS:
        api_publish_json(SNAPSHOT_STATUS, 200, api_status_json(m));
        break;
    case SNAPSHOT_HEALTH: {
        json_object *h = api_health_json(m, &code);
        api_publish_json(SNAPSHOT_HEALTH, code, h);
        break;
    }
    case SNAPSHOT_READY: {
        json_object *r = api_ready_json(m, 0, &code);
        api_publish_json(SNAPSHOT_READY, code, r);
        break;
    }
    case SNAPSHOT_METRICS:
    case SNAPSHOT_METRICS_OM: {
        /* Both expositions are published (each a few kilobytes, rendered from the same table in
         * the same turn, at most once a second), so a responder answers either without the manager. */
        int om = doc == SNAPSHOT_METRICS_OM;
        if ((text = api_metrics_text(m, om ? METRICS_OPENMETRICS : METRICS_PROMETHEUS)))
            snapshot_put(doc, 200, om ? METRICS_OPENMETRICS_TYPE : METRICS_PROMETHEUS_TYPE, text, strlen(text), NULL, 0);
        free(text);
        break;
    }
    }
}
