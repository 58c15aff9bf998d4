#define _GNU_SOURCE
#include "oc_server.h"

#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "oc_server_internal.h"

static const char *const oc_server_state_names[] = {"off", "starting", "ready", "draining", "backoff", "stopping", "fatal"};

const char *oc_server_state_name(oc_server_state_t st) { return oc_server_state_names[st]; }

void oc_server_changed(oc_server_t *s)
{
    if (s->cfg.changed)
        s->cfg.changed(s->cfg.ctx);
}

void oc_server_set_state(oc_server_t *s, oc_server_state_t st)
{
    if (s->state == st)
        return;
    log_info("opencode server state", "server=%d from=%s to=%s pid=%ld", s->cfg.index, oc_server_state_names[s->state],
             oc_server_state_names[st], (long)oc_server_pid(s));
    s->state = st;
    if (st == OC_SERVER_READY)
        s->served = 1;
    if (st != OC_SERVER_STARTING && st != OC_SERVER_DRAINING)
        s->replacing = 0; /* the replacement is ready, or failed (then it is down like any) */
    oc_server_changed(s);
}

static void oc_server_record(oc_server_t *s, const char *kind, const char *detail)
{
    if (s->cfg.event)
        s->cfg.event(s->cfg.ctx, kind, detail);
}

size_t oc_server_urlencode(const char *in, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *in && o + 4 < outlen; in++) {
        unsigned char c = (unsigned char)*in;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
            c == '.' || c == '/' || c == '~') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return o;
}

static int oc_server_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* ---- the process, through its supervisor ------------------------------------------------------ */

/* A fresh port and password for each start; the agent's launch for its user, sandbox, limits. */
static int oc_server_build(void *ctx, proc_spec_t *ps, char *err, size_t errlen)
{
    oc_server_t *s = ctx;
    const conf_t *c = s->cfg.conf;
    unsigned char rnd[16];
    if (getentropy(rnd, sizeof rnd) != 0) {
        snprintf(err, errlen, "no randomness for the server password");
        return -1;
    }
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(s->password + 2 * i, 3, "%02x", rnd[i]);
    snprintf(s->userpwd, sizeof s->userpwd, "opencode:%s", s->password);
    s->port = oc_server_free_port();
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", s->port);
    snprintf(s->port_s, sizeof s->port_s, "%d", s->port);
    if (agent_launch(s->cfg.agent, &s->launch, NULL, s->cfg.index, -1, err, errlen) != 0)
        return -1;
    /* The agent's environment plus the password and user (both replaced, never inherited). */
    size_t n = 0;
    while (s->launch.env[n])
        n++;
    s->env = calloc(n + 3, sizeof *s->env);
    if (!s->env) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(s->launch.env[i], "OPENCODE_SERVER_PASSWORD=", 25) != 0 &&
            strncmp(s->launch.env[i], "OPENCODE_SERVER_USERNAME=", 25) != 0)
            s->env[o++] = s->launch.env[i];
    snprintf(s->pwvar, sizeof s->pwvar, "OPENCODE_SERVER_PASSWORD=%s", s->password);
    s->env[o++] = s->pwvar;
    s->env[o++] = "OPENCODE_SERVER_USERNAME=opencode";
    s->env[o] = NULL;
    char *argv[] = {(char *)c->opencode_bin, "serve", "--hostname", "127.0.0.1", "--port", s->port_s, NULL};
    memcpy(s->argv, argv, sizeof argv);
    ps->file = c->opencode_bin;
    ps->argv = s->argv;
    ps->cwd = c->workspace_root;
    agent_apply(&s->launch, ps);
    ps->envp = s->env;
    return 0;
}

static void oc_server_built(void *ctx)
{
    oc_server_t *s = ctx;
    free(s->env);
    s->env = NULL;
    agent_launch_done(&s->launch);
    explicit_bzero(s->pwvar, sizeof s->pwvar);
}

static void oc_server_start_timeout_cb(uv_timer_t *t)
{
    oc_server_t *s = t->data;
    if (s->state != OC_SERVER_STARTING)
        return;
    log_warn("opencode server not ready within server_start_timeout", "server=%d pid=%ld timeoutMs=%ld", s->cfg.index, (long)oc_server_pid(s),
             s->cfg.conf->server_start_timeout_ms);
    oc_server_kill(s, "start timeout", SIGKILL);
}

static void oc_server_started(void *ctx, pid_t pid)
{
    uv_timer_stop(&((oc_server_t *)ctx)->kill_timer); /* a grace meant for the process before */
    oc_server_t *s = ctx;
    s->messages = s->served = 0;
    s->healthy = s->failures = s->listening = 0;
    s->rss_kb = 0;
    log_info("opencode server starting", "server=%d pid=%ld port=%d", s->cfg.index, (long)pid, s->port);
    oc_server_set_state(s, OC_SERVER_STARTING);
    uv_timer_start(&s->start_timer, oc_server_start_timeout_cb, (uint64_t)s->cfg.conf->server_start_timeout_ms, 0);
}

static void oc_server_line(void *ctx, int is_stderr, const char *line, size_t len, int cut)
{
    (void)len;
    oc_server_t *s = ctx;
    log_info("opencode serve output", "server=%d stream=%s line=%s cut=%d", s->cfg.index, is_stderr ? "stderr" : "stdout", log_q(line), cut);
    if (!s->listening && strstr(line, "listening on")) {
        s->listening = 1;
        oc_server_health_check(s);
    }
}

/* The process is gone: its messages fail; recycled, it is replaced at once; stopped or disabled,
 * it stays down; otherwise it restarts after the supervisor's delay. */
static supervisor_restart_t oc_server_exited(void *ctx, pid_t pid, int status, const char *err, long delay_ms)
{
    oc_server_t *s = ctx;
    char detail[200];
    const char *reason = s->restart_reason ? s->restart_reason : "exited";
    if (pid == 0)
        snprintf(detail, sizeof detail, "pid=0 reason=%s", log_q(err));
    else if (status >= 0 && WIFSIGNALED(status))
        snprintf(detail, sizeof detail, "server=%d pid=%ld signal=%d reason=%s", s->cfg.index, (long)pid, WTERMSIG(status), reason);
    else
        snprintf(detail, sizeof detail, "server=%d pid=%ld exit=%d reason=%s", s->cfg.index, (long)pid, status >= 0 ? WEXITSTATUS(status) : -1,
                 reason);
    uv_timer_stop(&s->kill_timer);
    uv_timer_stop(&s->start_timer);
    oc_server_unsubscribe(s);
    http_cancel(s->health_req);
    s->health_req = NULL;
    s->healthy = s->listening = s->suspect = 0;
    for (oc_server_dir_t *d = s->dirs; d; d = d->next)
        d->loaded = 0;
    s->restart_reason = NULL;
    if (s->state == OC_SERVER_STOPPING) {
        log_info("opencode server stopped", "%s", detail);
        oc_server_fail_all(s, "the opencode server was stopped");
        s->state = OC_SERVER_OFF;
        return SUPERVISOR_RESTART_NEVER;
    }
    if (s->state == OC_SERVER_OFF)
        return SUPERVISOR_RESTART_NEVER;
    /* The state first: the messages failed below start their queues' next ones, which must wait
     * for the fresh server (recycling) or go to the fallback (a crash), never to this one. */
    int recycled = s->recycling;
    s->recycling = 0;
    s->replacing = recycled;
    /* Only a failed start counts toward FATAL (supervisord's startretries): a server that was ready
     * and died may have been killed by an agent from a tool call, and that must not let one agent
     * take its pool's server away from everyone. */
    int fatal = !recycled && !s->served && oc_server_fatal_check(s, detail);
    if (recycled) {
        log_info("opencode server recycled; starting a fresh one", "%s", detail);
        oc_server_record(s, "server_recycle", detail);
        oc_server_set_state(s, OC_SERVER_DRAINING);
    } else if (!fatal) {
        log_error("opencode server died; restarting", "%s delayMs=%ld restarts=%ld", detail, delay_ms,
                  oc_server_restarts(s) + 1);
        oc_server_record(s, "server_restart", detail);
        oc_server_set_state(s, OC_SERVER_BACKOFF);
    }
    oc_server_fail_all(s, "the opencode server exited during the message");
    return recycled ? SUPERVISOR_RESTART_NOW : fatal ? SUPERVISOR_RESTART_NEVER : SUPERVISOR_RESTART_BACKOFF;
}

static const supervisor_ops_t oc_server_sup_ops = {.build = oc_server_build,
                                                   .built = oc_server_built,
                                                   .started = oc_server_started,
                                                   .exited = oc_server_exited,
                                                   .line = oc_server_line};

void oc_server_kill(oc_server_t *s, const char *why, int sig)
{
    if (oc_server_pid(s) <= 0)
        return;
    if (!s->restart_reason)
        s->restart_reason = why;
    supervisor_signal(s->sup, sig);
}

static void oc_server_kill_cb(uv_timer_t *t)
{
    oc_server_t *s = t->data;
    if (oc_server_pid(s) > 0) {
        log_warn("opencode server did not stop in time; killing", "server=%d pid=%ld", s->cfg.index, (long)oc_server_pid(s));
        supervisor_signal(s->sup, SIGKILL);
    }
}

void oc_server_terminate(oc_server_t *s, const char *why)
{
    /* A process already gone (its exit is being handled) has nothing left to kill: an armed timer
     * would find its successor instead. */
    if (oc_server_pid(s) <= 0)
        return;
    oc_server_kill(s, why, SIGTERM);
    uv_timer_start(&s->kill_timer, oc_server_kill_cb, OC_SERVER_STOP_GRACE_MS, 0);
}

/* ---- the object -------------------------------------------------------------------------------- */

static void oc_server_handle_closed(uv_handle_t *h)
{
    oc_server_t *s = h->data;
    if (--s->handles == 0 && s->freeing)
        free(s);
}

oc_server_t *oc_server_new(const oc_server_config_t *cfg)
{
    oc_server_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cfg = *cfg;
    const conf_t *c = cfg->conf;
    supervisor_policy_t policy = {
        .backoff_min_ms = 1000,
        .backoff_max_ms = c->restart_backoff_max_ms,
        .stable_ms = OC_SERVER_STABLE_MS,
        .fatal_exit = -1,
        .stop_grace_ms = OC_SERVER_STOP_GRACE_MS,
        .own_group = 1, /* its helpers (MCP servers, LSPs) go with it */
        .relay_stdout = 1,
        .line_max = 2048,
        .lines_per_s = 200, /* a server that floods its output must not fill the manager's disk */
    };
    s->sup = supervisor_new(cfg->loop, "opencode serve", &policy, &oc_server_sup_ops, s);
    s->restarts_window = restart_limit_new(c->server_restart_limit, c->server_restart_window_ms);
    if (!s->sup || !s->restarts_window) {
        if (s->sup)
            supervisor_free(s->sup);
        restart_limit_free(s->restarts_window);
        free(s);
        return NULL;
    }
    uv_timer_t *ts[] = {&s->health_timer, &s->start_timer, &s->dispose_timer, &s->resub_timer, &s->kill_timer};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        uv_timer_init(cfg->loop, ts[i]);
        ts[i]->data = s;
        s->handles++;
    }
    return s;
}

int oc_server_start(oc_server_t *s, char *err, size_t errlen)
{
    supervisor_start(s->sup);
    if (oc_server_pid(s) <= 0 && s->state != OC_SERVER_BACKOFF) {
        snprintf(err, errlen, "cannot start opencode serve");
        return -1;
    }
    oc_server_health_start(s);
    return 0;
}

static void oc_server_quiet(oc_server_t *s)
{
    oc_server_unsubscribe(s);
    http_cancel(s->health_req);
    s->health_req = NULL;
    uv_timer_t *ts[] = {&s->health_timer, &s->dispose_timer, &s->start_timer, &s->kill_timer};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        uv_timer_stop(ts[i]);
}

static void oc_server_stopped(void *ctx)
{
    oc_server_t *s = ctx;
    s->state = OC_SERVER_OFF;
    if (s->stop_done)
        s->stop_done(s->stop_ctx);
}

void oc_server_stop(oc_server_t *s, void (*done)(void *ctx), void *ctx)
{
    oc_server_quiet(s);
    s->stop_done = done;
    s->stop_ctx = ctx;
    if (oc_server_pid(s) > 0) {
        s->state = OC_SERVER_STOPPING;
        log_info("stopping the opencode server", "server=%d pid=%ld", s->cfg.index, (long)oc_server_pid(s));
    }
    supervisor_stop(s->sup, oc_server_stopped);
}

void oc_server_free(oc_server_t *s)
{
    if (!s)
        return;
    oc_server_quiet(s);
    oc_server_fail_all(s, "the opencode server was stopped");
    json_object_put(s->providers);
    oc_server_dirs_free(s);
    supervisor_free(s->sup);
    restart_limit_free(s->restarts_window);
    s->restarts_window = NULL;
    s->freeing = 1;
    uv_timer_t *ts[] = {&s->health_timer, &s->start_timer, &s->dispose_timer, &s->resub_timer, &s->kill_timer};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        uv_close((uv_handle_t *)ts[i], oc_server_handle_closed);
}

oc_server_state_t oc_server_state(const oc_server_t *s) { return s->state; }
pid_t oc_server_pid(const oc_server_t *s) { return supervisor_pid(s->sup); }
long oc_server_in_flight(const oc_server_t *s) { return s->in_flight; }
int oc_server_healthy(const oc_server_t *s) { return s->healthy && s->state == OC_SERVER_READY; }
long oc_server_restarts(const oc_server_t *s) { return supervisor_restarts(s->sup); }
long long oc_server_rss_bytes(const oc_server_t *s) { return oc_server_pid(s) > 0 ? (long long)s->rss_kb * 1024 : 0; }

json_object *oc_server_status_json(const oc_server_t *s)
{
    pid_t pid = oc_server_pid(s);
    double started = supervisor_started_at(s->sup);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "index", json_object_new_int(s->cfg.index));
    json_object_object_add(o, "state", json_object_new_string(oc_server_state_names[s->state]));
    json_object_object_add(o, "pid", pid > 0 ? json_object_new_int64(pid) : NULL);
    json_object_object_add(o, "port", pid > 0 ? json_object_new_int(s->port) : NULL);
    json_object_object_add(o, "startedAt", pid > 0 ? json_object_new_int64((int64_t)(started * 1000)) : NULL);
    json_object_object_add(o, "restarts", json_object_new_int64(oc_server_restarts(s)));
    json_object_object_add(o, "fatalSince", s->fatal_at > 0 ? json_object_new_int64((int64_t)(s->fatal_at * 1000)) : NULL);
    json_object_object_add(o, "healthy", json_object_new_boolean(oc_server_healthy(s)));
    json_object_object_add(o, "lastHealthCheck",
                           s->last_health > 0 ? json_object_new_int64((int64_t)(s->last_health * 1000)) : NULL);
    json_object_object_add(o, "lastHealthLatencyMs",
                           s->last_health > 0 ? json_object_new_double(s->last_latency_ms) : NULL);
    json_object_object_add(o, "consecutiveHealthFailures", json_object_new_int(s->failures));
    json_object_object_add(o, "rssBytes", json_object_new_int64((int64_t)s->rss_kb * 1024));
    json_object_object_add(o, "messagesServed", json_object_new_int64((int64_t)s->messages));
    json_object_object_add(o, "messagesServedTotal", json_object_new_int64((int64_t)s->messages_total));
    json_object_object_add(o, "inFlight", json_object_new_int64(s->in_flight));
    long loaded = 0;
    for (oc_server_dir_t *d = s->dirs; d; d = d->next)
        loaded += d->loaded;
    json_object_object_add(o, "directoriesLoaded", json_object_new_int64(loaded));
    return o;
}

http_req_t *oc_server_diff(oc_server_t *s, const char *workspace, http_done_fn done, void *ctx)
{
    if (s->state != OC_SERVER_READY || oc_server_pid(s) <= 0)
        return NULL;
    char enc[3 * 4096], url[3 * 4096 + 128];
    oc_server_urlencode(workspace, enc, sizeof enc);
    snprintf(url, sizeof url, "%s/vcs/diff?mode=git&directory=%s", s->base, enc);
    http_opts_t o = {.method = "GET", .url = url, .userpwd = s->userpwd, .timeout_ms = 30000,
                     .max_body = OC_SERVER_DIFF_MAX, .done = done, .ctx = ctx};
    return http_request(s->cfg.http, &o);
}
