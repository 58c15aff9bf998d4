#define _GNU_SOURCE
#include "api_internal.h"

#include <malloc.h>
#include <stdlib.h>
#include <unistd.h>

#include "agent.h"
#include "clock.h"
#include "inflight.h"

/* The process manager's part of the status document: the original design's fields. */
static json_object *api_status_process_manager(const manager_t *m, double now)
{
    int server = m->nservers > 0, running = 0;
    for (int i = 0; i < m->nservers; i++)
        running |= oc_server_pid(m->servers[i]) > 0;
    json_object *pm = json_object_new_object();
    json_object_object_add(pm, "isRunning", json_object_new_boolean(running));
    json_object_object_add(pm, "isReady", json_object_new_boolean(m->ready && !m->stopping));
    json_object_object_add(pm, "pendingRequests", json_object_new_int64(scheduler_queued(m->scheduler)));
    json_object_object_add(pm, "activeSessions", json_object_new_int64((int64_t)session_count(m->sessions)));
    json_object_object_add(pm, "lastActivity", json_object_new_int64((int64_t)(m->last_activity * 1000.0)));
    json_object_object_add(pm, "idleTime", json_object_new_int64((int64_t)((now - m->last_activity) * 1000.0)));
    json_object_object_add(pm, "mode", json_object_new_string(server ? "server" : "per-session"));
    json_object_object_add(pm, "description",
                           json_object_new_string(!server ? "Each message spawns separate OpenCode process"
                                                  : m->nservers == 1 ? "All sessions share one persistent OpenCode server"
                                                                     : "Sessions are placed on persistent OpenCode servers"));
    return pm;
}

/* ocpm's additions beside the original fields. */
static json_object *api_status_ocpm(const manager_t *m, double now)
{
    json_object *x = json_object_new_object();
    json_object_object_add(x, "pid", json_object_new_int64(getpid()));
    json_object_object_add(x, "startedAt", json_object_new_int64((int64_t)(m->started_at * 1000.0)));
    json_object_object_add(x, "uptimeSeconds", json_object_new_double(now - m->started_at));
    json_object_object_add(x, "configuredMode", json_object_new_string(conf_mode_name(m->conf->mode)));
    json_object_object_add(x, "serverModeSupported", json_object_new_boolean(m->serve_supported));
    json_object_object_add(x, "fallback", json_object_new_boolean(m->conf->fallback));
    json_object_object_add(x, "shuttingDown", json_object_new_boolean(m->stopping));
    json_object_object_add(x, "maxConcurrentRuns", json_object_new_int64(m->conf->max_concurrent_runs));
    json_object_object_add(x, "processesSpawned", json_object_new_int64((int64_t)oc_runner_spawned(m->runner)));
    json_object_object_add(x, "executionsFinished", json_object_new_int64((int64_t)scheduler_finished(m->scheduler)));
    json_object_object_add(x, "executionsFailed", json_object_new_int64((int64_t)scheduler_failed(m->scheduler)));
    json_object_object_add(x, "requests", json_object_new_int64((int64_t)control_requests(m->control)));
    json_object_object_add(x, "responders", pool_status_json(m->pool));
    json_object_object_add(x, "database", storage_retry_status_json(m->storage));
    json_object_object_add(x, "agentIsolation", agent_status_json(m->agent));
    json_object_object_add(x, "promptsPending", json_object_new_int64(ask_pending(m->asks)));
    json_object *hooks = json_object_new_object();
    json_object_object_add(hooks, "enabled", json_object_new_boolean(m->webhook != NULL));
    json_object_object_add(hooks, "pending", json_object_new_int64(webhook_pending(m->webhook)));
    json_object_object_add(hooks, "delivered", json_object_new_int64((int64_t)webhook_delivered(m->webhook)));
    json_object_object_add(hooks, "failed", json_object_new_int64((int64_t)webhook_failed(m->webhook)));
    json_object_object_add(x, "webhooks", hooks);
    long models = oc_models_count(m->models);
    json_object_object_add(x, "modelsKnown", models >= 0 ? json_object_new_int64(models) : NULL);
    /* Heap in use as glibc's malloc sees it (RSS also holds what malloc keeps for reuse); null where
     * another allocator answers (AddressSanitizer's reports 0). */
    struct mallinfo2 mi = mallinfo2();
    json_object_object_add(x, "heapInUseBytes", mi.uordblks ? json_object_new_int64((int64_t)mi.uordblks) : NULL);
    return x;
}

void api_status(void *ctx, control_conn_t *c, const api_call_t *call)
{
    (void)call;
    const manager_t *m = ctx;
    double now = clock_now();
    json_object *o = json_object_new_object();
    json_object_object_add(o, "available", json_object_new_boolean(m->available));
    json_object_object_add(o, "version", m->available ? json_object_new_string(m->version) : NULL);
    json_object_object_add(o, "runningProcesses", json_object_new_int64(scheduler_running(m->scheduler)));
    json_object_object_add(o, "activeStreams", json_object_new_int64(control_streams(m->control)));
    json_object_object_add(o, "processManager", api_status_process_manager(m, now));
    /* server: the first (the original single server's place); servers: every one. */
    if (m->nservers)
        json_object_object_add(o, "server", oc_server_status_json(m->servers[0]));
    json_object *servers = json_object_new_array();
    for (int i = 0; i < m->nservers; i++)
        json_object_array_add(servers, oc_server_status_json(m->servers[i]));
    json_object_object_add(o, "servers", servers);
    json_object_object_add(o, "ocpm", api_status_ocpm(m, now));
    control_reply(c, 200, o, NULL);
}

void api_health(void *ctx, control_conn_t *c, const api_call_t *call)
{
    (void)call;
    const manager_t *m = ctx;
    json_object *o = json_object_new_object();
    int ok = m->ready && !m->stopping;
    json_object_object_add(o, "status", json_object_new_string(ok ? "ok" : "stopping"));
    json_object_object_add(o, "available", json_object_new_boolean(m->available));
    control_reply(c, ok ? 200 : 503, o, NULL);
}

/* How each metric is read from the manager. */
#define API_M(ctx) ((const manager_t *)(ctx))
static double api_m_running(const void *c) { return (double)scheduler_running(API_M(c)->scheduler); }
static double api_m_queued(const void *c) { return (double)scheduler_queued(API_M(c)->scheduler); }
static double api_m_streams(const void *c) { return (double)control_streams(API_M(c)->control); }
static double api_m_sessions(const void *c) { return (double)session_count(API_M(c)->sessions); }
static double api_m_spawned(const void *c) { return (double)oc_runner_spawned(API_M(c)->runner); }
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
static int api_m_servers(const void *c) { return API_M(c)->nservers; }
static double api_m_server_up(const void *c, int i)
{
    const oc_server_t *s = API_M(c)->servers[i];
    return oc_server_state(s) != OC_SERVER_OFF && oc_server_pid(s) > 0;
}
static double api_m_server_healthy(const void *c, int i) { return oc_server_healthy(API_M(c)->servers[i]); }
static double api_m_server_restarts(const void *c, int i) { return (double)oc_server_restarts(API_M(c)->servers[i]); }
static double api_m_server_rss(const void *c, int i)
{
    return api_m_server_up(c, i) ? (double)oc_server_rss_bytes(API_M(c)->servers[i]) : 0;
}
static double api_m_server_inflight(const void *c, int i) { return (double)oc_server_in_flight(API_M(c)->servers[i]); }
#define API_PER_SERVER(fn) "server", api_m_servers, fn

static const metric_t api_metric_table[] = {
    {"ocpm_running_processes", METRIC_GAUGE, "Executions running now.", api_m_running, NULL, NULL, NULL},
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
    {"ocpm_server_rss_bytes", METRIC_GAUGE, "Resident memory of the opencode server.", NULL,
     API_PER_SERVER(api_m_server_rss)},
    {"ocpm_server_messages_in_flight", METRIC_GAUGE, "Messages on the opencode server now.", NULL,
     API_PER_SERVER(api_m_server_inflight)},
};

void api_metrics(void *ctx, control_conn_t *c, const api_call_t *call)
{
    (void)call;
    const manager_t *m = ctx;
    char *text = metrics_render(m->metrics, api_metric_table, sizeof api_metric_table / sizeof api_metric_table[0], m);
    if (!text)
        return control_error(c, 500, "internal", "out of memory"), (void)0;
    control_reply_text(c, 200, "text/plain; version=0.0.4; charset=utf-8", text);
    free(text);
}
