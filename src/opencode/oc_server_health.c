/* The server's upkeep: health checks (and its RSS with each), recycling, idle workspaces disposed,
 * its models read whenever it becomes ready. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "oc_server_internal.h"

static long oc_server_read_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "re");
    long kb = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* Like PHP-FPM's pm.max_requests: past server_max_messages or server_max_rss the server drains
 * (new messages wait, the ones in flight finish) and is replaced. */
void oc_server_maybe_recycle(oc_server_t *s)
{
    const conf_t *c = s->cfg.conf;
    if (s->state != OC_SERVER_READY)
        return;
    const char *why = NULL;
    if (c->server_max_messages > 0 && s->messages >= (unsigned long)c->server_max_messages)
        why = "server_max_messages";
    else if (c->server_max_rss > 0 && s->rss_kb * 1024L > c->server_max_rss)
        why = "server_max_rss";
    if (!why)
        return;
    log_info("recycling the opencode server", "server=%d reason=%s messages=%lu rssKb=%ld inFlight=%ld", s->cfg.index, why, s->messages,
             s->rss_kb, s->in_flight);
    s->recycling = 1;
    s->restart_reason = why;
    oc_server_set_state(s, OC_SERVER_DRAINING);
    if (s->in_flight == 0 && s->answers == 0)
        oc_server_terminate(s, why);
}

/* ---- models: GET /config/providers, then GET /config for the default ---------------------------- */

static void oc_server_config_done(void *ctx, int err, const char *errmsg, long status, const char *body, size_t len)
{
    (void)len;
    oc_server_t *s = ctx;
    json_object *cfg = !err && status == 200 ? json_tokener_parse(body) : NULL;
    int n = s->providers ? oc_models_set_providers(s->cfg.models, s->providers, cfg) : -1;
    if (n < 0)
        log_warn("cannot read the opencode server's models", "status=%ld error=%s", status, log_q(err ? errmsg : ""));
    else
        log_info("opencode models listed", "count=%d default=%s", n, log_q(oc_models_default(s->cfg.models)));
    json_object_put(cfg);
    json_object_put(s->providers);
    s->providers = NULL;
}

static void oc_server_providers_done(void *ctx, int err, const char *errmsg, long status, const char *body,
                                     size_t len)
{
    (void)len;
    oc_server_t *s = ctx;
    json_object_put(s->providers);
    s->providers = !err && status == 200 ? json_tokener_parse(body) : NULL;
    if (!s->providers) {
        log_warn("cannot read the opencode server's models", "status=%ld error=%s", status, log_q(err ? errmsg : ""));
        return;
    }
    char url[96];
    snprintf(url, sizeof url, "%s/config", s->base);
    http_opts_t o = {.method = "GET", .url = url, .userpwd = s->userpwd, .timeout_ms = 30000,
                     .max_body = 4u << 20, .done = oc_server_config_done, .ctx = s};
    if (!http_request(s->cfg.http, &o)) {
        json_object_put(s->providers);
        s->providers = NULL;
    }
}

static void oc_server_fetch_models(oc_server_t *s)
{
    char url[96];
    snprintf(url, sizeof url, "%s/config/providers", s->base);
    http_opts_t o = {.method = "GET", .url = url, .userpwd = s->userpwd, .timeout_ms = 30000,
                     .max_body = 16u << 20, .done = oc_server_providers_done, .ctx = s};
    http_request(s->cfg.http, &o);
}

/* ---- health ----------------------------------------------------------------------------------------- */

static void oc_server_became_ready(oc_server_t *s)
{
    uv_timer_stop(&s->start_timer);
    log_info("opencode server ready", "server=%d pid=%ld port=%d latencyMs=%.1f", s->cfg.index, (long)oc_server_pid(s), s->port,
             s->last_latency_ms);
    if (s->cfg.event)
        s->cfg.event(s->cfg.ctx, "server_ready", NULL);
    oc_server_subscribe(s);
    oc_server_fetch_models(s);
    oc_server_set_state(s, OC_SERVER_READY);
}

static void oc_server_health_done(void *ctx, int err, const char *errmsg, long status, const char *body, size_t len)
{
    (void)len;
    oc_server_t *s = ctx;
    s->health_req = NULL;
    s->last_health = clock_now();
    s->last_latency_ms = (s->last_health - s->health_sent) * 1000.0;
    int ok = 0;
    if (!err && status == 200) {
        json_object *o = json_tokener_parse(body), *h;
        ok = o && json_object_object_get_ex(o, "healthy", &h) && json_object_get_boolean(h);
        json_object_put(o);
    }
    pid_t pid = oc_server_pid(s);
    if (pid > 0)
        s->rss_kb = oc_server_read_rss_kb(pid);
    if (ok) {
        s->failures = 0;
        s->healthy = 1;
        s->suspect = 0;
        if (s->state == OC_SERVER_STARTING && s->listening)
            oc_server_became_ready(s);
        oc_server_maybe_recycle(s);
    } else if (s->state == OC_SERVER_READY && s->in_flight > 0 &&
               (clock_now() - s->last_event_at) * 1000.0 < s->cfg.conf->health_timeout_ms) {
        /* Busy, not hung: a saturated server answers health checks late while its event stream
         * still shows prompts progressing. Killing it would fail every prompt in flight. */
        log_warn("opencode server health check slow; its event stream shows progress",
                 "server=%d pid=%ld inFlight=%ld error=%s", s->cfg.index, (long)pid, s->in_flight, log_q(err ? errmsg : "unhealthy answer"));
    } else {
        s->healthy = 0;
        s->failures++;
        log_warn("opencode server health check failed", "server=%d pid=%ld failures=%d status=%ld error=%s", s->cfg.index, (long)pid,
                 s->failures, status, log_q(err ? errmsg : "unhealthy answer"));
        if (s->state == OC_SERVER_READY && s->failures >= s->cfg.conf->health_failures) {
            log_error("opencode server unhealthy; killing it", "server=%d pid=%ld failures=%d", s->cfg.index, (long)pid, s->failures);
            oc_server_kill(s, "health", SIGKILL);
        }
    }
    oc_server_changed(s);
}

void oc_server_suspect(oc_server_t *s, const char *why)
{
    if (s->suspect || s->state != OC_SERVER_READY)
        return;
    s->suspect = 1;
    log_warn("opencode server request failed; checking its health before the next message", "server=%d pid=%ld error=%s",
             s->cfg.index, (long)oc_server_pid(s), log_q(why));
    oc_server_health_check(s);
}

void oc_server_health_check(oc_server_t *s)
{
    if (s->health_req || oc_server_pid(s) <= 0)
        return;
    const conf_t *c = s->cfg.conf;
    char url[96];
    snprintf(url, sizeof url, "%s/global/health", s->base);
    http_opts_t o = {.method = "GET", .url = url, .userpwd = s->userpwd, .timeout_ms = c->health_timeout_ms,
                     .connect_timeout_ms = c->health_timeout_ms, .max_body = 65536, .done = oc_server_health_done,
                     .ctx = s};
    s->health_sent = clock_now();
    s->health_req = http_request(s->cfg.http, &o);
}

static void oc_server_health_tick(uv_timer_t *t)
{
    oc_server_t *s = t->data;
    /* Waiting messages are looked at on every tick (fallback_wait), whatever the state. */
    oc_server_changed(s);
    if (s->state == OC_SERVER_READY || s->state == OC_SERVER_DRAINING ||
        (s->state == OC_SERVER_STARTING && s->listening))
        oc_server_health_check(s);
}

/* ---- idle workspaces -------------------------------------------------------------------------------- */

oc_server_dir_t *oc_server_dir(oc_server_t *s, const char *path)
{
    for (oc_server_dir_t *d = s->dirs; d; d = d->next)
        if (strcmp(d->path, path) == 0)
            return d;
    oc_server_dir_t *d = calloc(1, sizeof *d);
    if (!d || !(d->path = strdup(path))) {
        free(d);
        return NULL;
    }
    d->next = s->dirs;
    s->dirs = d;
    return d;
}

void oc_server_dirs_free(oc_server_t *s)
{
    while (s->dirs) {
        oc_server_dir_t *d = s->dirs;
        s->dirs = d->next;
        free(d->path);
        free(d);
    }
}

static void oc_server_dispose_done(void *ctx, int err, const char *errmsg, long status, const char *body, size_t len)
{
    (void)body;
    (void)len;
    char *path = ctx;
    if (err || status != 200)
        log_warn("cannot dispose an idle workspace", "workspace=%s status=%ld error=%s", log_q(path), status,
                 log_q(err ? errmsg : ""));
    else
        log_info("idle workspace disposed in the opencode server", "workspace=%s", log_q(path));
    free(path);
}

static int oc_server_dir_busy(const oc_server_t *s, const char *path)
{
    for (const backend_job_t *m = s->msgs; m; m = m->next)
        if (strcmp(m->workspace, path) == 0)
            return 1;
    return 0;
}

/* Dispose workspaces idle for instance_idle_timeout, and forget them: an entry not loaded in the
 * server holds nothing worth keeping (one per workspace ever used would grow without end). */
static void oc_server_dispose_tick(uv_timer_t *t)
{
    oc_server_t *s = t->data;
    if (s->state != OC_SERVER_READY)
        return;
    double now = clock_now();
    for (oc_server_dir_t **pd = &s->dirs, *d; (d = *pd);) {
        int idle = (now - d->last_used) * 1000.0 >= s->cfg.conf->instance_idle_timeout_ms;
        if (oc_server_dir_busy(s, d->path) || (d->loaded && !idle)) {
            pd = &d->next;
            continue;
        }
        if (d->loaded) {
            char enc[3 * 4096], url[3 * 4096 + 128];
            oc_server_urlencode(d->path, enc, sizeof enc);
            snprintf(url, sizeof url, "%s/instance/dispose?directory=%s", s->base, enc);
            http_opts_t o = {.method = "POST", .url = url, .userpwd = s->userpwd, .timeout_ms = 30000,
                             .max_body = 65536, .done = oc_server_dispose_done, .ctx = strdup(d->path),
                             .drop = free};
            if (!o.ctx || !http_request(s->cfg.http, &o)) {
                free(o.ctx);
                pd = &d->next; /* try again at the next tick */
                continue;
            }
        }
        *pd = d->next;
        free(d->path);
        free(d);
    }
}

void oc_server_health_start(oc_server_t *s)
{
    const conf_t *c = s->cfg.conf;
    uint64_t hb = (uint64_t)c->heartbeat_interval_ms;
    uv_timer_start(&s->health_timer, oc_server_health_tick, hb < 200 ? hb : 200, hb);
    uint64_t di = (uint64_t)(c->instance_idle_timeout_ms / 2);
    if (di > 30000)
        di = 30000;
    if (di < 50)
        di = 50;
    uv_timer_start(&s->dispose_timer, oc_server_dispose_tick, di, di);
}
