#define _GNU_SOURCE
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage_retry.h"
#include "inflight.h"
#include "pool.h"
#include "oc_server.h"

static const char *const modes[] = {"per-session", "server"};
static const char *const statuses[] = {"succeeded", "failed", "timeout", "aborted", "interrupted"};
#define NMODES 2
#define NSTATUS 5

/* Bucket bounds in seconds: from a fast server turn to a long agent run. */
static const double bounds[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
#define NB (sizeof bounds / sizeof bounds[0])

typedef struct hist {
    unsigned long long le[NB + 1]; /* per bucket (not cumulative); last is +Inf */
    double sum;
    unsigned long long count;
} hist_t;

static unsigned long long executions[NMODES][NSTATUS];
static hist_t duration[NMODES], queue_wait;

static int index_of(const char *const *names, int n, const char *v)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], v) == 0)
            return i;
    return -1;
}

static void hist_add(hist_t *h, double v)
{
    size_t i = 0;
    while (i < NB && v > bounds[i])
        i++;
    h->le[i]++;
    h->sum += v;
    h->count++;
}

void metrics_observe(const char *mode, const char *status, double duration_s, double queue_wait_s)
{
    int m = index_of(modes, NMODES, mode), s = index_of(statuses, NSTATUS, status);
    if (m < 0 || s < 0)
        return;
    executions[m][s]++;
    if (duration_s >= 0)
        hist_add(&duration[m], duration_s);
    if (queue_wait_s >= 0)
        hist_add(&queue_wait, queue_wait_s);
}

typedef struct out {
    char *buf;
    size_t len, cap;
    int oom;
} out_t;

static void put(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out_t *o, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf ? o->buf + o->len : NULL, o->buf ? o->cap - o->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->oom = 1;
            return;
        }
        if (o->buf && o->len + (size_t)n < o->cap) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap ? o->cap * 2 : 8192;
        while (cap < o->len + (size_t)n + 1)
            cap *= 2;
        char *nb = realloc(o->buf, cap);
        if (!nb) {
            o->oom = 1;
            return;
        }
        o->buf = nb;
        o->cap = cap;
    }
}

static void meta(out_t *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void hist_put(out_t *o, const char *name, const char *label, const hist_t *h)
{
    unsigned long long cum = 0;
    for (size_t i = 0; i < NB; i++) {
        cum += h->le[i];
        put(o, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, label, *label ? "," : "", bounds[i], cum);
    }
    cum += h->le[NB];
    put(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, label, *label ? "," : "", cum);
    put(o, "%s_sum%s%s%s %.6f\n", name, *label ? "{" : "", label, *label ? "}" : "", h->sum);
    put(o, "%s_count%s%s%s %llu\n", name, *label ? "{" : "", label, *label ? "}" : "", h->count);
}

char *metrics_render(manager_t *m)
{
    out_t o = {0};
    meta(&o, "ocpm_build_info", "gauge", "Build information; the value is always 1.");
    put(&o, "ocpm_build_info{version=\"%s\"} 1\n", OCPM_VERSION);
    meta(&o, "ocpm_start_time_seconds", "gauge", "When the manager started, in unix seconds.");
    put(&o, "ocpm_start_time_seconds %.3f\n", m->started_at);
    meta(&o, "ocpm_executions_total", "counter", "Finished executions by mode and final status.");
    for (int i = 0; i < NMODES; i++)
        for (int j = 0; j < NSTATUS; j++)
            put(&o, "ocpm_executions_total{mode=\"%s\",status=\"%s\"} %llu\n", modes[i], statuses[j],
                executions[i][j]);
    meta(&o, "ocpm_execution_duration_seconds", "histogram", "Run time of finished executions.");
    for (int i = 0; i < NMODES; i++) {
        char label[32];
        snprintf(label, sizeof label, "mode=\"%s\"", modes[i]);
        hist_put(&o, "ocpm_execution_duration_seconds", label, &duration[i]);
    }
    meta(&o, "ocpm_queue_wait_seconds", "histogram", "Time executions waited before they started.");
    hist_put(&o, "ocpm_queue_wait_seconds", "", &queue_wait);
    meta(&o, "ocpm_running_processes", "gauge", "Executions running now.");
    put(&o, "ocpm_running_processes %ld\n", m->running);
    meta(&o, "ocpm_queued_messages", "gauge", "Messages waiting to start.");
    put(&o, "ocpm_queued_messages %ld\n", m->queued);
    meta(&o, "ocpm_active_streams", "gauge", "Clients streaming events now.");
    put(&o, "ocpm_active_streams %ld\n", m->streams);
    meta(&o, "ocpm_sessions", "gauge", "Sessions known (not deleted).");
    put(&o, "ocpm_sessions %ld\n", m->sessions);
    meta(&o, "ocpm_processes_spawned_total", "counter", "opencode run processes started.");
    put(&o, "ocpm_processes_spawned_total %llu\n", (unsigned long long)m->spawned);
    meta(&o, "ocpm_requests_total", "counter", "Requests the manager answered.");
    put(&o, "ocpm_requests_total %llu\n", (unsigned long long)m->requests);
    meta(&o, "ocpm_responder_restarts_total", "counter", "FastCGI responders respawned after dying.");
    put(&o, "ocpm_responder_restarts_total %ld\n", pool_restarts(m->pool));
    meta(&o, "ocpm_responder_requests_in_flight", "gauge", "Requests the responder pool is serving now.");
    put(&o, "ocpm_responder_requests_in_flight %ld\n", inflight_total());
    meta(&o, "ocpm_responder_refused_total", "counter", "Requests answered 503 because the pool was full.");
    put(&o, "ocpm_responder_refused_total %lld\n", inflight_refused());
    meta(&o, "ocpm_db_write_failures_total", "counter", "Database writes that failed (busy, full, removed...).");
    put(&o, "ocpm_db_write_failures_total %llu\n", storage_retry_failures());
    meta(&o, "ocpm_db_pending_writes", "gauge", "Final execution records waiting to be written again.");
    put(&o, "ocpm_db_pending_writes %zu\n", storage_retry_pending());
    json_object *sv = oc_server_status_json(), *v;
    int up = oc_server_state() != OC_SERVER_OFF && oc_server_pid() > 0;
    meta(&o, "ocpm_server_up", "gauge", "1 when an opencode server process runs (server mode).");
    put(&o, "ocpm_server_up %d\n", up);
    meta(&o, "ocpm_server_healthy", "gauge", "1 when the opencode server passed its last health check.");
    put(&o, "ocpm_server_healthy %d\n",
        json_object_object_get_ex(sv, "healthy", &v) && json_object_get_boolean(v) ? 1 : 0);
    meta(&o, "ocpm_server_restarts_total", "counter", "opencode server restarts after failures.");
    put(&o, "ocpm_server_restarts_total %lld\n",
        json_object_object_get_ex(sv, "restarts", &v) ? (long long)json_object_get_int64(v) : 0LL);
    meta(&o, "ocpm_server_rss_bytes", "gauge", "Resident memory of the opencode server.");
    put(&o, "ocpm_server_rss_bytes %lld\n",
        up && json_object_object_get_ex(sv, "rssBytes", &v) ? (long long)json_object_get_int64(v) : 0LL);
    json_object_put(sv);
    if (o.oom) {
        free(o.buf);
        return NULL;
    }
    return o.buf;
}
