#define _GNU_SOURCE
#include "oc_server.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "http.h"
#include "log.h"
#include "oc_models.h"
#include "proc.h"
#include "sse.h"
#include "valid.h"
#include "clock.h"

#define OC_SERVER_BACKOFF_MIN_MS 1000
/* A server that lived this long was healthy: its next death restarts the backoff. */
#define OC_SERVER_STABLE_MS 60000
#define OC_SERVER_STOP_GRACE_MS 5000
#define OC_SERVER_RESUBSCRIBE_MS 500
#define OC_SERVER_ANSWER_MAX (16u << 20)
#define OC_SERVER_OUT_RATE 200
#define OC_SERVER_OUT_LINE 2048
/* The answer to POST .../message can overtake the turn's last events on the event stream: hold
 * it until the stream reports that assistant message completed (message.updated with
 * time.completed) or the session idle, at most this long. */
#define OC_SERVER_IDLE_WAIT_MS 3000

static const char *const oc_server_state_names[] = {"off", "starting", "ready", "draining", "backoff", "stopping"};

typedef struct oc_server_dir {
    char *path;
    double last_used;
    int loaded;
    struct oc_server_dir *next;
} oc_server_dir_t;

struct oc_server_msg {
    oc_server_msg_ops_t ops;
    void *ctx;
    char *workspace, *oc_sid, *body;
    http_req_t *req;
    uv_timer_t timer;  /* run_timeout, then the grace after an abort */
    long grace_ms;
    oc_run_stop_t stopped;
    int finished;
    int ordered;            /* hold the answer for the turn's events */
    int idle_seen;          /* session.idle seen on the event stream since the prompt was sent */
    char completed_mid[64]; /* the last assistant message the event stream reported completed */
    char answer_mid[64];    /* the assistant message the answer is about */
    oc_server_result_t *pending;  /* the answer, held until the stream has delivered the turn's events */
    char *pending_text, *pending_error;
    oc_server_msg_t *prev, *next;
};

/* One of a server process's output pipes. Each spawn gets new ones: the last process's pipes may
 * still be draining (EOF can come after the exit) and a libuv handle must not be reused before
 * its close callback has run. A pipe frees itself when closed. */
typedef struct oc_server_pipe {
    uv_pipe_t pipe;
    char buf[OC_SERVER_OUT_LINE];
    size_t len;
    int is_err;
    struct oc_server_pipe *next; /* all pipes not yet closed, for shutdown */
} oc_server_pipe_t;

static oc_server_pipe_t *oc_server_pipes;

static struct {
    manager_t *m;
    oc_server_state_t state;
    int enabled;
    pid_t pid;
    int port;
    char password[40];
    char userpwd[64];
    char base[64];
    double started_at;
    long restarts;
    long backoff_ms;
    int healthy;
    int failures;
    int listening;
    double last_health;
    double last_latency_ms;
    long rss_kb;
    unsigned long messages;      /* served by this process */
    unsigned long messages_total;
    int recycling;
    const char *restart_reason;
    http_req_t *health_req, *events_req;
    double health_sent;
    double last_event_at;        /* when the event stream last delivered anything */
    sse_t *sse;
    oc_server_msg_t *msgs;
    long in_flight;
    oc_server_dir_t *dirs;
    uv_timer_t health_timer, start_timer, backoff_timer, dispose_timer, resub_timer, kill_timer;
    int timers_init;
    void (*on_change)(manager_t *);
    void (*stop_done)(manager_t *);
} S;

static void oc_server_spawn(void);
static void oc_server_health_check(void);
static void oc_server_subscribe(void);
static void oc_server_msg_finish(oc_server_msg_t *msg, const oc_server_result_t *r);
static void oc_server_close_timers(void);

oc_server_state_t oc_server_state(void) { return S.state; }
pid_t oc_server_pid(void) { return S.pid; }
long oc_server_in_flight(void) { return S.in_flight; }
void oc_server_on_change(void (*fn)(manager_t *)) { S.on_change = fn; }

static void oc_server_changed(void)
{
    if (S.on_change)
        S.on_change(S.m);
}

static void oc_server_set_state(oc_server_state_t st)
{
    if (S.state == st)
        return;
    log_info("opencode server state", "from=%s to=%s pid=%ld", oc_server_state_names[S.state], oc_server_state_names[st],
             (long)S.pid);
    S.state = st;
    oc_server_changed();
}

/* ---- the process ---------------------------------------------------------- */

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

static void oc_server_out_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    oc_server_pipe_t *p = h->data;
    if (p->len >= sizeof p->buf - 1)
        p->len = 0; /* an over-long line: drop what we have */
    buf->base = p->buf + p->len;
    buf->len = sizeof p->buf - 1 - p->len;
}

/* The server's output goes to the log, at most OC_SERVER_OUT_RATE lines a second: a server that floods
 * its stdout must not fill the manager's disk. What is dropped is counted and said when the
 * second is over (a one-shot timer; the manager's shutdown closes it with every handle). */
static struct {
    uv_timer_t timer;
    int timer_ready;
    double window;
    long logged, dropped;
} out_rate;

static void oc_server_out_report(uv_timer_t *t)
{
    (void)t;
    if (out_rate.dropped)
        log_warn("opencode serve output dropped", "lines=%ld reason=\"more than %d lines a second\"",
                 out_rate.dropped, OC_SERVER_OUT_RATE);
    out_rate.dropped = 0;
}

static void oc_server_out_line(oc_server_pipe_t *p, char *line)
{
    double now = clock_now();
    if (now - out_rate.window >= 1.0) {
        out_rate.window = now;
        out_rate.logged = 0;
    }
    if (out_rate.logged < OC_SERVER_OUT_RATE) {
        char q[OC_SERVER_OUT_LINE + 32];
        out_rate.logged++;
        log_info("opencode serve output", "stream=%s line=%s", p->is_err ? "stderr" : "stdout",
                 log_quote(q, sizeof q, line));
    } else if (out_rate.dropped++ == 0) {
        if (!out_rate.timer_ready) {
            uv_timer_init(S.m->loop, &out_rate.timer);
            out_rate.timer_ready = 1;
        }
        if (!uv_is_closing((uv_handle_t *)&out_rate.timer))
            uv_timer_start(&out_rate.timer, oc_server_out_report, 1000, 0);
    }
    if (!S.listening && strstr(line, "listening on")) {
        S.listening = 1;
        oc_server_health_check();
    }
}

static void oc_server_out_closed(uv_handle_t *h)
{
    oc_server_pipe_t *p = h->data, **pp = &oc_server_pipes;
    while (*pp && *pp != p)
        pp = &(*pp)->next;
    if (*pp)
        *pp = p->next;
    free(p);
}

/* Close every server pipe still open (manager shutdown). */
static void oc_server_close_pipes(void)
{
    for (oc_server_pipe_t *p = oc_server_pipes; p; p = p->next)
        if (!uv_is_closing((uv_handle_t *)&p->pipe))
            uv_close((uv_handle_t *)&p->pipe, oc_server_out_closed);
}

static void oc_server_out_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    oc_server_pipe_t *p = st->data;
    if (n < 0) {
        if (!uv_is_closing((uv_handle_t *)&p->pipe))
            uv_close((uv_handle_t *)&p->pipe, oc_server_out_closed);
        return;
    }
    p->len += (size_t)n;
    p->buf[p->len] = '\0';
    char *start = p->buf, *nl;
    while ((nl = strchr(start, '\n'))) {
        *nl = '\0';
        oc_server_out_line(p, start);
        start = nl + 1;
    }
    p->len -= (size_t)(start - p->buf);
    memmove(p->buf, start, p->len);
}

/* Fail every message in flight (the server died or was killed). */
static void oc_server_fail_all(const char *why)
{
    while (S.msgs) {
        oc_server_msg_t *msg = S.msgs;
        http_cancel(msg->req);
        msg->req = NULL;
        oc_server_result_t r = {.ok = 0, .stopped = msg->stopped, .error = why};
        oc_server_msg_finish(msg, &r); /* unlinks msg */
    }
}

static void oc_server_cancel_requests(void)
{
    http_cancel(S.health_req);
    S.health_req = NULL;
    http_cancel(S.events_req);
    S.events_req = NULL;
    uv_timer_stop(&S.resub_timer);
    sse_free(S.sse);
    S.sse = NULL;
}

static void oc_server_backoff_cb(uv_timer_t *t)
{
    (void)t;
    if (S.state == OC_SERVER_BACKOFF)
        oc_server_spawn();
}

static void oc_server_on_exit(void *ctx, pid_t pid, int status, const struct rusage *ru)
{
    (void)ctx;
    (void)ru;
    char detail[160];
    if (status >= 0 && WIFSIGNALED(status))
        snprintf(detail, sizeof detail, "pid=%ld signal=%d reason=%s", (long)pid, WTERMSIG(status),
                 S.restart_reason ? S.restart_reason : "exited");
    else
        snprintf(detail, sizeof detail, "pid=%ld exit=%d reason=%s", (long)pid,
                 status >= 0 ? WEXITSTATUS(status) : -1, S.restart_reason ? S.restart_reason : "exited");
    proc_kill_group(pid, SIGKILL); /* its helpers (MCP servers, LSPs) go with it */
    uv_timer_stop(&S.kill_timer);
    uv_timer_stop(&S.start_timer);
    oc_server_cancel_requests();
    S.pid = 0;
    S.healthy = 0;
    S.listening = 0;
    for (oc_server_dir_t *d = S.dirs; d; d = d->next)
        d->loaded = 0;
    if (S.state == OC_SERVER_STOPPING) {
        log_info("opencode server stopped", "%s", detail);
        oc_server_fail_all("the opencode server was stopped");
        S.state = OC_SERVER_OFF;
        oc_server_close_timers();
        if (S.stop_done) {
            void (*fn)(manager_t *) = S.stop_done;
            S.stop_done = NULL;
            fn(S.m);
        }
        return;
    }
    if (S.state == OC_SERVER_OFF)
        return;
    oc_server_fail_all("the opencode server exited during the message");
    if (S.recycling) {
        S.recycling = 0;
        S.restart_reason = NULL;
        log_info("opencode server recycled; starting a fresh one", "%s", detail);
        manager_event(S.m, "server_recycle", detail);
        oc_server_spawn();
        return;
    }
    double lived_ms = (clock_now() - S.started_at) * 1000.0;
    if (lived_ms >= OC_SERVER_STABLE_MS)
        S.backoff_ms = OC_SERVER_BACKOFF_MIN_MS;
    else
        S.backoff_ms = S.backoff_ms ? S.backoff_ms * 2 : OC_SERVER_BACKOFF_MIN_MS;
    if (S.backoff_ms > S.m->conf->restart_backoff_max_ms)
        S.backoff_ms = S.m->conf->restart_backoff_max_ms;
    S.restarts++;
    S.restart_reason = NULL;
    log_error("opencode server died; restarting", "%s delayMs=%ld restarts=%ld", detail, S.backoff_ms, S.restarts);
    manager_event(S.m, "server_restart", detail);
    oc_server_set_state(OC_SERVER_BACKOFF);
    uv_timer_start(&S.backoff_timer, oc_server_backoff_cb, (uint64_t)S.backoff_ms, 0);
}

/* Kill the server's group; the exit handler does the rest. */
static void oc_server_kill(const char *reason, int sig)
{
    if (S.pid <= 0)
        return;
    if (!S.restart_reason)
        S.restart_reason = reason;
    proc_kill_group(S.pid, sig);
}

static void oc_server_kill_cb(uv_timer_t *t)
{
    (void)t;
    if (S.pid > 0) {
        log_warn("opencode server did not stop in time; killing", "pid=%ld", (long)S.pid);
        proc_kill_group(S.pid, SIGKILL);
    }
}

static void oc_server_start_timeout_cb(uv_timer_t *t)
{
    (void)t;
    if (S.state != OC_SERVER_STARTING)
        return;
    log_warn("opencode server not ready within server_start_timeout", "pid=%ld timeoutMs=%ld", (long)S.pid,
             S.m->conf->server_start_timeout_ms);
    oc_server_kill("start timeout", SIGKILL);
}

static void oc_server_open_pipe(int fd, int is_err)
{
    oc_server_pipe_t *p = calloc(1, sizeof *p);
    if (!p) {
        close(fd); /* the server then gets EPIPE on that stream; it is only its log */
        return;
    }
    p->is_err = is_err;
    uv_pipe_init(S.m->loop, &p->pipe, 0);
    p->pipe.data = p;
    p->next = oc_server_pipes;
    oc_server_pipes = p;
    uv_pipe_open(&p->pipe, fd);
    uv_read_start((uv_stream_t *)&p->pipe, oc_server_out_alloc, oc_server_out_read);
}

/* The server could not be started: the exit path applies the backoff. */
static void oc_server_spawn_failed(const char *err)
{
    S.pid = 0;
    log_error("cannot start the opencode server", "error=%s", log_q(err));
    S.state = OC_SERVER_STARTING;
    oc_server_on_exit(NULL, 0, 127 << 8, &(struct rusage){0});
}

static void oc_server_spawn(void)
{
    const conf_t *c = S.m->conf;
    unsigned char rnd[16];
    if (getentropy(rnd, sizeof rnd) != 0) {
        log_error("no randomness for the server password", NULL);
        return;
    }
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(S.password + 2 * i, 3, "%02x", rnd[i]);
    snprintf(S.userpwd, sizeof S.userpwd, "opencode:%s", S.password);
    S.port = oc_server_free_port();
    snprintf(S.base, sizeof S.base, "http://127.0.0.1:%d", S.port);
    char port[16];
    snprintf(port, sizeof port, "%d", S.port);
    /* The server is the agent too: its user, its sandbox (every workspace, the server's home), its
     * environment plus the password and user (both replaced, never inherited). */
    agent_launch_t as;
    char err[256];
    if (agent_launch(&as, NULL, -1, err, sizeof err) != 0) {
        oc_server_spawn_failed(err);
        return;
    }
    size_t n = 0;
    while (as.env[n])
        n++;
    char **env = calloc(n + 3, sizeof *env);
    char pwvar[80];
    snprintf(pwvar, sizeof pwvar, "OPENCODE_SERVER_PASSWORD=%s", S.password);
    size_t o = 0;
    for (size_t i = 0; env && i < n; i++)
        if (strncmp(as.env[i], "OPENCODE_SERVER_PASSWORD=", 25) != 0 &&
            strncmp(as.env[i], "OPENCODE_SERVER_USERNAME=", 25) != 0)
            env[o++] = as.env[i];
    if (!env) {
        agent_launch_done(&as);
        oc_server_spawn_failed("out of memory");
        return;
    }
    env[o++] = pwvar;
    env[o++] = "OPENCODE_SERVER_USERNAME=opencode";
    env[o] = NULL;
    char *argv[] = {(char *)c->opencode_bin, "serve", "--hostname", "127.0.0.1", "--port", port, NULL};
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0) {
        free(env);
        agent_launch_done(&as);
        oc_server_spawn_failed(strerror(errno));
        return;
    }
    proc_spec_t ps;
    proc_spec_init(&ps, c->opencode_bin, argv);
    ps.cwd = c->workspace_root;
    ps.fd[1] = po[1];
    ps.fd[2] = pe[1];
    ps.new_pgroup = 1;
    ps.pdeathsig = SIGKILL;
    agent_apply(&as, &ps);
    ps.envp = env;
    S.pid = proc_spawn(&ps, err, sizeof err);
    free(env);
    agent_launch_done(&as);
    explicit_bzero(pwvar, sizeof pwvar);
    close(po[1]);
    close(pe[1]);
    if (S.pid < 0) {
        close(po[0]);
        close(pe[0]);
        oc_server_spawn_failed(err);
        return;
    }
    S.started_at = clock_now();
    S.messages = 0;
    S.healthy = 0;
    S.failures = 0;
    S.listening = 0;
    S.rss_kb = 0;
    oc_server_open_pipe(po[0], 0);
    oc_server_open_pipe(pe[0], 1);
    proc_watch(S.pid, oc_server_on_exit, NULL);
    log_info("opencode server starting", "pid=%ld port=%d", (long)S.pid, S.port);
    oc_server_set_state(OC_SERVER_STARTING);
    uv_timer_start(&S.start_timer, oc_server_start_timeout_cb, (uint64_t)c->server_start_timeout_ms, 0);
}

/* ---- health, memory, recycling ---------------------------------------------- */

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

static void oc_server_maybe_recycle(void)
{
    const conf_t *c = S.m->conf;
    if (S.state != OC_SERVER_READY)
        return;
    const char *why = NULL;
    if (c->server_max_messages > 0 && S.messages >= (unsigned long)c->server_max_messages)
        why = "server_max_messages";
    else if (c->server_max_rss > 0 && S.rss_kb * 1024L > c->server_max_rss)
        why = "server_max_rss";
    if (!why)
        return;
    log_info("recycling the opencode server", "reason=%s messages=%lu rssKb=%ld inFlight=%ld", why, S.messages,
             S.rss_kb, S.in_flight);
    S.recycling = 1;
    S.restart_reason = why;
    oc_server_set_state(OC_SERVER_DRAINING);
    if (S.in_flight == 0) {
        oc_server_kill(why, SIGTERM);
        uv_timer_start(&S.kill_timer, oc_server_kill_cb, OC_SERVER_STOP_GRACE_MS, 0);
    }
}

/* The server's models (GET /config/providers, then GET /config for the default): asked each time a
 * server becomes ready, so the list follows the configuration it runs with. */
static json_object *oc_server_providers;

static void oc_server_config_done(void *ctx, int err, const char *errmsg, long status, const char *body, size_t len)
{
    (void)ctx;
    (void)len;
    json_object *cfg = !err && status == 200 ? json_tokener_parse(body) : NULL;
    int n = oc_server_providers ? oc_models_set_providers(oc_server_providers, cfg) : -1;
    if (n < 0)
        log_warn("cannot read the opencode server's models", "status=%ld error=%s", status, log_q(err ? errmsg : ""));
    else
        log_info("opencode models listed", "count=%d default=%s", n, log_q(oc_models_default() ? oc_models_default() : ""));
    json_object_put(cfg);
    json_object_put(oc_server_providers);
    oc_server_providers = NULL;
}

static void oc_server_providers_done(void *ctx, int err, const char *errmsg, long status, const char *body, size_t len)
{
    (void)ctx;
    (void)len;
    json_object_put(oc_server_providers);
    oc_server_providers = !err && status == 200 ? json_tokener_parse(body) : NULL;
    if (!oc_server_providers) {
        log_warn("cannot read the opencode server's models", "status=%ld error=%s", status, log_q(err ? errmsg : ""));
        return;
    }
    char url[96];
    snprintf(url, sizeof url, "%s/config", S.base);
    http_opts_t o = {.method = "GET", .url = url, .userpwd = S.userpwd, .timeout_ms = 30000,
                     .max_body = 4u << 20, .done = oc_server_config_done};
    if (!http_request(&o)) {
        json_object_put(oc_server_providers);
        oc_server_providers = NULL;
    }
}

static void oc_server_fetch_models(void)
{
    char url[96];
    snprintf(url, sizeof url, "%s/config/providers", S.base);
    http_opts_t o = {.method = "GET", .url = url, .userpwd = S.userpwd, .timeout_ms = 30000,
                     .max_body = 16u << 20, .done = oc_server_providers_done};
    http_request(&o);
}

static void oc_server_health_done(void *ctx, int err, const char *errmsg, long status, const char *body, size_t len)
{
    (void)ctx;
    (void)len;
    S.health_req = NULL;
    S.last_health = clock_now();
    S.last_latency_ms = (S.last_health - S.health_sent) * 1000.0;
    int ok = 0;
    if (!err && status == 200) {
        json_object *o = json_tokener_parse(body), *h;
        ok = o && json_object_object_get_ex(o, "healthy", &h) && json_object_get_boolean(h);
        json_object_put(o);
    }
    if (S.pid > 0)
        S.rss_kb = oc_server_read_rss_kb(S.pid);
    if (ok) {
        S.failures = 0;
        S.healthy = 1;
        if (S.state == OC_SERVER_STARTING && S.listening) {
            uv_timer_stop(&S.start_timer);
            S.backoff_ms = S.restarts ? S.backoff_ms : 0;
            log_info("opencode server ready", "pid=%ld port=%d latencyMs=%.1f", (long)S.pid, S.port,
                     S.last_latency_ms);
            manager_event(S.m, "server_ready", NULL);
            oc_server_subscribe();
            oc_server_fetch_models();
            oc_server_set_state(OC_SERVER_READY);
        }
        oc_server_maybe_recycle();
    } else if (S.state == OC_SERVER_READY && S.in_flight > 0 &&
               (clock_now() - S.last_event_at) * 1000.0 < S.m->conf->health_timeout_ms) {
        /* Busy, not hung: a saturated server answers health checks late while its event stream
         * still shows prompts progressing. Killing it would fail every prompt in flight. */
        log_warn("opencode server health check slow; its event stream shows progress", "pid=%ld inFlight=%ld error=%s",
                 (long)S.pid, S.in_flight, log_q(err ? errmsg : "unhealthy answer"));
    } else {
        S.healthy = 0;
        S.failures++;
        log_warn("opencode server health check failed", "pid=%ld failures=%d status=%ld error=%s", (long)S.pid,
                 S.failures, status, log_q(err ? errmsg : "unhealthy answer"));
        if (S.state == OC_SERVER_READY && S.failures >= S.m->conf->health_failures) {
            log_error("opencode server unhealthy; killing it", "pid=%ld failures=%d", (long)S.pid, S.failures);
            oc_server_kill("health", SIGKILL);
        }
    }
    oc_server_changed();
}

static void oc_server_health_check(void)
{
    if (S.health_req || S.pid <= 0)
        return;
    char url[96];
    snprintf(url, sizeof url, "%s/global/health", S.base);
    http_opts_t o = {.method = "GET", .url = url, .userpwd = S.userpwd, .timeout_ms = S.m->conf->health_timeout_ms,
                     .connect_timeout_ms = S.m->conf->health_timeout_ms, .max_body = 65536,
                     .done = oc_server_health_done};
    S.health_sent = clock_now();
    S.health_req = http_request(&o);
}

static void oc_server_health_tick(uv_timer_t *t)
{
    (void)t;
    /* Waiting messages are looked at on every tick (fallback_wait), whatever the state. */
    oc_server_changed();
    if (S.state == OC_SERVER_READY || S.state == OC_SERVER_DRAINING || (S.state == OC_SERVER_STARTING && S.listening))
        oc_server_health_check();
}

/* ---- idle workspaces ----------------------------------------------------------- */

static oc_server_dir_t *oc_server_dir(const char *path)
{
    for (oc_server_dir_t *d = S.dirs; d; d = d->next)
        if (strcmp(d->path, path) == 0)
            return d;
    oc_server_dir_t *d = calloc(1, sizeof *d);
    if (!d || !(d->path = strdup(path))) {
        free(d);
        return NULL;
    }
    d->next = S.dirs;
    S.dirs = d;
    return d;
}

static void oc_server_dispose_done(void *ctx, int err, const char *errmsg, long status, const char *body, size_t len)
{
    (void)body;
    (void)len;
    char *path = ctx;
    char q[600];
    if (err || status != 200)
        log_warn("cannot dispose an idle workspace", "workspace=%s status=%ld error=%s",
                 log_quote(q, sizeof q, path), status, log_q(err ? errmsg : ""));
    else
        log_info("idle workspace disposed in the opencode server", "workspace=%s", log_quote(q, sizeof q, path));
    free(path);
}

static int oc_server_dir_busy(const char *path)
{
    for (oc_server_msg_t *m = S.msgs; m; m = m->next)
        if (strcmp(m->workspace, path) == 0)
            return 1;
    return 0;
}

static size_t oc_server_urlencode(const char *s, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s && o + 4 < outlen; s++) {
        unsigned char c = (unsigned char)*s;
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

/* Dispose workspaces idle for instance_idle_timeout, and forget them: an entry not loaded in the
 * server holds nothing worth keeping (one per workspace ever used would grow without end). */
static void oc_server_dispose_tick(uv_timer_t *t)
{
    (void)t;
    if (S.state != OC_SERVER_READY)
        return;
    double now = clock_now();
    for (oc_server_dir_t **pd = &S.dirs, *d; (d = *pd);) {
        int idle = (now - d->last_used) * 1000.0 >= S.m->conf->instance_idle_timeout_ms;
        if (oc_server_dir_busy(d->path) || (d->loaded && !idle)) {
            pd = &d->next;
            continue;
        }
        if (d->loaded) {
            char enc[3 * 4096], url[3 * 4096 + 128];
            oc_server_urlencode(d->path, enc, sizeof enc);
            snprintf(url, sizeof url, "%s/instance/dispose?directory=%s", S.base, enc);
            http_opts_t o = {.method = "POST", .url = url, .userpwd = S.userpwd, .timeout_ms = 30000,
                             .max_body = 65536, .done = oc_server_dispose_done, .ctx = strdup(d->path)};
            if (!o.ctx || !http_request(&o)) {
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

/* ---- events ------------------------------------------------------------------------ */

static const char *oc_server_event_session(json_object *props)
{
    json_object *v, *x;
    if (json_object_object_get_ex(props, "sessionID", &v) && json_object_is_type(v, json_type_string))
        return json_object_get_string(v);
    static const char *const holders[] = {"part", "info"};
    for (size_t i = 0; i < 2; i++)
        if (json_object_object_get_ex(props, holders[i], &x) && json_object_is_type(x, json_type_object) &&
            json_object_object_get_ex(x, "sessionID", &v) && json_object_is_type(v, json_type_string))
            return json_object_get_string(v);
    return NULL;
}

/* Remember an assistant message the stream reports completed. */
static void oc_server_note_completed(oc_server_msg_t *m, json_object *props)
{
    json_object *info, *id, *tm, *done;
    if (json_object_object_get_ex(props, "info", &info) && json_object_object_get_ex(info, "id", &id) &&
        json_object_object_get_ex(info, "time", &tm) && json_object_object_get_ex(tm, "completed", &done) &&
        !json_object_is_type(done, json_type_null))
        snprintf(m->completed_mid, sizeof m->completed_mid, "%s", json_object_get_string(id));
}

static void oc_server_on_sse(void *ctx, const char *event, const char *data, size_t len)
{
    (void)ctx;
    (void)event;
    json_object *o = json_tokener_parse(data), *payload, *type, *props;
    (void)len;
    if (!o)
        return;
    if (json_object_object_get_ex(o, "payload", &payload) && json_object_object_get_ex(payload, "type", &type) &&
        json_object_is_type(type, json_type_string) && json_object_object_get_ex(payload, "properties", &props) &&
        json_object_is_type(props, json_type_object)) {
        const char *t = json_object_get_string(type);
        const char *sid = oc_server_event_session(props);
        if (sid && strcmp(t, "sync") != 0)
            for (oc_server_msg_t *m = S.msgs; m; m = m->next)
                if (m->oc_sid && strcmp(m->oc_sid, sid) == 0 && !m->finished) {
                    m->ops.event(m->ctx, t, props);
                    if (strcmp(t, "session.idle") == 0)
                        m->idle_seen = 1;
                    else if (strcmp(t, "message.updated") == 0)
                        oc_server_note_completed(m, props);
                    if (m->pending && (m->idle_seen || (m->answer_mid[0] &&
                                                        strcmp(m->answer_mid, m->completed_mid) == 0)))
                        oc_server_msg_finish(m, m->pending);
                    break;
                }
    }
    json_object_put(o);
}

static int oc_server_events_data(void *ctx, const char *data, size_t len)
{
    (void)ctx;
    S.last_event_at = clock_now();
    return S.sse ? sse_feed(S.sse, data, len) : -1;
}

static void oc_server_resub_cb(uv_timer_t *t)
{
    (void)t;
    if (S.state == OC_SERVER_READY || S.state == OC_SERVER_DRAINING)
        oc_server_subscribe();
}

static void oc_server_events_done(void *ctx, int err, const char *errmsg, long status, const char *body, size_t len)
{
    (void)ctx;
    (void)body;
    (void)len;
    S.events_req = NULL;
    log_warn("opencode event stream ended; resubscribing", "status=%ld error=%s", status,
             log_q(err ? errmsg : "closed"));
    uv_timer_start(&S.resub_timer, oc_server_resub_cb, OC_SERVER_RESUBSCRIBE_MS, 0);
}

static void oc_server_subscribe(void)
{
    if (S.events_req)
        return;
    sse_free(S.sse);
    S.sse = sse_new(4u << 20, oc_server_on_sse, NULL);
    char url[96];
    snprintf(url, sizeof url, "%s/global/event", S.base);
    http_opts_t o = {.method = "GET", .url = url, .userpwd = S.userpwd, .data = oc_server_events_data,
                     .done = oc_server_events_done};
    S.events_req = http_request(&o);
}

/* ---- messages ------------------------------------------------------------------------ */

static void oc_server_msg_closed(uv_handle_t *h)
{
    oc_server_msg_t *msg = h->data;
    free(msg->pending);
    free(msg->pending_text);
    free(msg->pending_error);
    free(msg->workspace);
    free(msg->oc_sid);
    free(msg->body);
    free(msg);
}

/* Take msg out of the in-flight list (once). */
static void oc_server_msg_unlink(oc_server_msg_t *msg)
{
    msg->finished = 1;
    if (msg->prev)
        msg->prev->next = msg->next;
    else
        S.msgs = msg->next;
    if (msg->next)
        msg->next->prev = msg->prev;
    S.in_flight--;
}

static void oc_server_msg_finish(oc_server_msg_t *msg, const oc_server_result_t *r)
{
    if (msg->finished)
        return;
    oc_server_msg_unlink(msg);
    oc_server_dir_t *d = oc_server_dir(msg->workspace);
    if (d)
        d->last_used = clock_now();
    uv_timer_stop(&msg->timer);
    msg->ops.done(msg->ctx, r);
    uv_close((uv_handle_t *)&msg->timer, oc_server_msg_closed);
    if (S.state == OC_SERVER_DRAINING && S.in_flight == 0 && S.pid > 0) {
        oc_server_kill(S.restart_reason ? S.restart_reason : "recycle", SIGTERM);
        uv_timer_start(&S.kill_timer, oc_server_kill_cb, OC_SERVER_STOP_GRACE_MS, 0);
    }
}

static void oc_server_msg_idle_wait_cb(uv_timer_t *t)
{
    oc_server_msg_t *msg = t->data;
    if (msg->pending)
        oc_server_msg_finish(msg, msg->pending);
}

/* Keep a copy of the answer until session.idle (or OC_SERVER_IDLE_WAIT_MS). */
static void oc_server_msg_hold(oc_server_msg_t *msg, const oc_server_result_t *r)
{
    msg->pending = malloc(sizeof *msg->pending);
    if (!msg->pending) {
        oc_server_msg_finish(msg, r);
        return;
    }
    *msg->pending = *r;
    msg->pending_text = r->text ? strdup(r->text) : NULL;
    msg->pending_error = r->error ? strdup(r->error) : NULL;
    msg->pending->text = msg->pending_text;
    msg->pending->error = msg->pending_error;
    uv_timer_stop(&msg->timer);
    uv_timer_start(&msg->timer, oc_server_msg_idle_wait_cb, OC_SERVER_IDLE_WAIT_MS, 0);
}

static void oc_server_msg_answer(void *ctx, int err, const char *errmsg, long status, const char *body, size_t len)
{
    oc_server_msg_t *msg = ctx;
    (void)len;
    msg->req = NULL;
    oc_server_result_t r = {.stopped = msg->stopped};
    char buf[512];
    json_object *o = NULL;
    if (err) {
        snprintf(buf, sizeof buf, "opencode server request failed: %s", errmsg);
        r.error = buf;
    } else if (status != 200) {
        snprintf(buf, sizeof buf, "opencode server answered HTTP %ld", status);
        r.error = buf;
    } else if (!(o = json_tokener_parse(body)) || !json_object_is_type(o, json_type_object)) {
        r.error = "opencode server sent an answer that is not JSON";
    } else {
        json_object *info = NULL, *parts = NULL, *e, *x;
        json_object_object_get_ex(o, "info", &info);
        json_object_object_get_ex(o, "parts", &parts);
        if (info && json_object_object_get_ex(info, "error", &e) && e && !json_object_is_type(e, json_type_null)) {
            /* A provider failure still answers 200: info.error says so. */
            const char *name = NULL, *m = NULL;
            json_object *d;
            if (json_object_object_get_ex(e, "name", &x))
                name = json_object_get_string(x);
            if (json_object_object_get_ex(e, "data", &d) && json_object_object_get_ex(d, "message", &x))
                m = json_object_get_string(x);
            snprintf(buf, sizeof buf, "%s%s%s", name ? name : "error", m ? ": " : "", m ? m : "");
            r.error = buf;
            if (name && strcmp(name, "MessageAbortedError") == 0 && !r.stopped)
                r.stopped = RUN_STOP_ABORT;
        } else {
            r.ok = 1;
        }
        json_object *tok;
        if (info && json_object_object_get_ex(info, "tokens", &tok) && json_object_is_type(tok, json_type_object)) {
            r.has_usage = 1;
            if (json_object_object_get_ex(tok, "input", &x))
                r.tokens_in = json_object_get_int64(x);
            if (json_object_object_get_ex(tok, "output", &x))
                r.tokens_out = json_object_get_int64(x);
            if (json_object_object_get_ex(info, "cost", &x))
                r.cost = json_object_get_double(x);
        }
        /* The answer: the text parts, in order. */
        size_t tl = 0;
        char *text = NULL;
        for (size_t i = 0; parts && json_object_is_type(parts, json_type_array) &&
                           i < json_object_array_length(parts); i++) {
            json_object *p = json_object_array_get_idx(parts, i), *t, *tx;
            if (json_object_object_get_ex(p, "type", &t) && strcmp(json_object_get_string(t), "text") == 0 &&
                json_object_object_get_ex(p, "text", &tx) && json_object_is_type(tx, json_type_string)) {
                const char *s = json_object_get_string(tx);
                size_t sl = strlen(s);
                char *nt = realloc(text, tl + sl + 2);
                if (!nt)
                    break;
                text = nt;
                if (tl)
                    text[tl++] = '\n';
                memcpy(text + tl, s, sl + 1);
                tl += sl;
            }
        }
        r.text = text;
        if (r.stopped)
            r.ok = 0;
        S.messages++;
        S.messages_total++;
        json_object *mid;
        if (info && json_object_object_get_ex(info, "id", &mid) && json_object_is_type(mid, json_type_string))
            snprintf(msg->answer_mid, sizeof msg->answer_mid, "%s", json_object_get_string(mid));
        int seen = msg->idle_seen || (msg->answer_mid[0] && strcmp(msg->answer_mid, msg->completed_mid) == 0);
        if (msg->ordered && !seen && !msg->stopped && S.events_req) {
            oc_server_msg_hold(msg, &r);
        } else {
            oc_server_msg_finish(msg, &r);
        }
        free(text);
        json_object_put(o);
        oc_server_maybe_recycle();
        return;
    }
    json_object_put(o);
    oc_server_msg_finish(msg, &r);
}

/* Forget a message that never got going: no callback (oc_server_send then returns NULL). */
static void oc_server_msg_discard(oc_server_msg_t *msg)
{
    oc_server_msg_unlink(msg);
    uv_close((uv_handle_t *)&msg->timer, oc_server_msg_closed);
}

static int oc_server_msg_post(oc_server_msg_t *msg)
{
    msg->idle_seen = 0;
    msg->completed_mid[0] = msg->answer_mid[0] = '\0';
    char enc[3 * 4096], url[3 * 4096 + 160];
    oc_server_urlencode(msg->workspace, enc, sizeof enc);
    snprintf(url, sizeof url, "%s/session/%s/message?directory=%s", S.base, msg->oc_sid, enc);
    http_opts_t o = {.method = "POST", .url = url, .body = msg->body, .userpwd = S.userpwd,
                     .max_body = OC_SERVER_ANSWER_MAX, .done = oc_server_msg_answer, .ctx = msg};
    msg->req = http_request(&o);
    return msg->req ? 0 : -1;
}

static void oc_server_session_created(void *ctx, int err, const char *errmsg, long status, const char *body, size_t len)
{
    oc_server_msg_t *msg = ctx;
    (void)len;
    msg->req = NULL;
    json_object *o = (!err && status == 200) ? json_tokener_parse(body) : NULL, *id;
    const char *sid = o && json_object_object_get_ex(o, "id", &id) ? json_object_get_string(id) : NULL;
    /* The id goes into URLs and logs: only a plain one is taken (the server is the agent too). */
    if (sid && !valid_id(sid))
        sid = NULL;
    if (!sid || msg->stopped) {
        char buf[256];
        snprintf(buf, sizeof buf, "cannot create an opencode session: %s",
                 err ? errmsg : status != 200 ? "bad status" : msg->stopped ? "stopped" : "no id");
        oc_server_result_t r = {.error = buf, .stopped = msg->stopped};
        json_object_put(o);
        oc_server_msg_finish(msg, &r);
        return;
    }
    msg->oc_sid = strdup(sid);
    json_object_put(o);
    msg->ops.session(msg->ctx, msg->oc_sid);
    if (oc_server_msg_post(msg) != 0) {
        oc_server_result_t r = {.error = "cannot send the message to the opencode server"};
        oc_server_msg_finish(msg, &r);
    }
}

static void oc_server_msg_grace_cb(uv_timer_t *t)
{
    oc_server_msg_t *msg = t->data;
    /* The server did not answer after the abort (it may never): give up on it. */
    http_cancel(msg->req);
    msg->req = NULL;
    oc_server_result_t r = {.stopped = msg->stopped, .error = "the opencode server did not answer after the abort"};
    oc_server_msg_finish(msg, &r);
}

static void oc_server_abort_done(void *ctx, int err, const char *errmsg, long status, const char *body, size_t len)
{
    (void)body;
    (void)len;
    char *oc_sid = ctx;
    if (err || status != 200)
        log_warn("the opencode server refused an abort", "opencodeSessionId=%s status=%ld error=%s", oc_sid,
                 status, log_q(err ? errmsg : ""));
    else
        log_debug("abort sent to the opencode server", "opencodeSessionId=%s", oc_sid);
    free(oc_sid);
}

void oc_server_stop_msg(oc_server_msg_t *msg, oc_run_stop_t why)
{
    if (msg->finished || msg->stopped || msg->pending)
        return;
    msg->stopped = why;
    if (msg->oc_sid && S.pid > 0) {
        char enc[3 * 4096], url[3 * 4096 + 160];
        oc_server_urlencode(msg->workspace, enc, sizeof enc);
        snprintf(url, sizeof url, "%s/session/%s/abort?directory=%s", S.base, msg->oc_sid, enc);
        http_opts_t o = {.method = "POST", .url = url, .userpwd = S.userpwd, .timeout_ms = 10000,
                         .max_body = 65536, .done = oc_server_abort_done, .ctx = strdup(msg->oc_sid)};
        if (!o.ctx || !http_request(&o))
            free(o.ctx);
    }
    uv_timer_stop(&msg->timer);
    uv_timer_start(&msg->timer, oc_server_msg_grace_cb, (uint64_t)(msg->grace_ms > 0 ? msg->grace_ms : 1), 0);
}

static void oc_server_msg_timeout_cb(uv_timer_t *t) { oc_server_stop_msg(t->data, RUN_STOP_TIMEOUT); }

oc_server_msg_t *oc_server_send(const char *workspace, const char *oc_sid, const char *text, const char *model,
                    const char *agent, long timeout_ms, long grace_ms, int ordered_events,
                    const oc_server_msg_ops_t *ops, void *ctx)
{
    if (S.state != OC_SERVER_READY)
        return NULL;
    oc_server_msg_t *msg = calloc(1, sizeof *msg);
    if (!msg)
        return NULL;
    msg->ops = *ops;
    msg->ctx = ctx;
    msg->grace_ms = grace_ms;
    msg->ordered = ordered_events;
    msg->workspace = strdup(workspace);
    msg->oc_sid = oc_sid ? strdup(oc_sid) : NULL;
    json_object *b = json_object_new_object(), *parts = json_object_new_array(), *p = json_object_new_object();
    json_object_object_add(p, "type", json_object_new_string("text"));
    json_object_object_add(p, "text", json_object_new_string(text));
    json_object_array_add(parts, p);
    json_object_object_add(b, "parts", parts);
    if (model) {
        const char *slash = strchr(model, '/');
        json_object *mo = json_object_new_object();
        json_object_object_add(mo, "providerID", json_object_new_string_len(model, (int)(slash - model)));
        json_object_object_add(mo, "modelID", json_object_new_string(slash + 1));
        json_object_object_add(b, "model", mo);
    }
    if (agent)
        json_object_object_add(b, "agent", json_object_new_string(agent));
    msg->body = strdup(json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(b);
    uv_timer_init(S.m->loop, &msg->timer);
    msg->timer.data = msg;
    msg->next = S.msgs;
    if (S.msgs)
        S.msgs->prev = msg;
    S.msgs = msg;
    S.in_flight++;
    oc_server_dir_t *d = oc_server_dir(workspace);
    if (d) {
        d->loaded = 1;
        d->last_used = clock_now();
    }
    if (!msg->workspace || !msg->body || (oc_sid && !msg->oc_sid)) {
        oc_server_msg_discard(msg);
        return NULL;
    }
    uv_timer_start(&msg->timer, oc_server_msg_timeout_cb, (uint64_t)timeout_ms, 0);
    if (msg->oc_sid) {
        if (oc_server_msg_post(msg) != 0) {
            oc_server_msg_discard(msg);
            return NULL;
        }
        return msg;
    }
    char enc[3 * 4096], url[3 * 4096 + 128];
    oc_server_urlencode(workspace, enc, sizeof enc);
    snprintf(url, sizeof url, "%s/session?directory=%s", S.base, enc);
    http_opts_t o = {.method = "POST", .url = url, .body = "{\"title\":\"ocpm\"}", .userpwd = S.userpwd,
                     .timeout_ms = 60000, .max_body = 1u << 20, .done = oc_server_session_created, .ctx = msg};
    msg->req = http_request(&o);
    if (!msg->req) {
        oc_server_msg_discard(msg);
        return NULL;
    }
    return msg;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

int oc_server_start(manager_t *m, char *err, size_t errlen)
{
    S.m = m;
    S.enabled = 1;
    if (!S.timers_init) {
        uv_timer_t *ts[] = {&S.health_timer, &S.start_timer, &S.backoff_timer, &S.dispose_timer, &S.resub_timer,
                            &S.kill_timer};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
            uv_timer_init(m->loop, ts[i]);
        S.timers_init = 1;
    }
    oc_server_spawn();
    if (S.pid <= 0 && S.state != OC_SERVER_BACKOFF) {
        snprintf(err, errlen, "cannot start opencode serve");
        return -1;
    }
    uint64_t hb = (uint64_t)m->conf->heartbeat_interval_ms;
    uv_timer_start(&S.health_timer, oc_server_health_tick, hb < 200 ? hb : 200, hb);
    uint64_t di = (uint64_t)(m->conf->instance_idle_timeout_ms / 2);
    if (di > 30000)
        di = 30000;
    if (di < 50)
        di = 50;
    uv_timer_start(&S.dispose_timer, oc_server_dispose_tick, di, di);
    return 0;
}

static void oc_server_close_timers(void)
{
    oc_server_close_pipes();
    json_object_put(oc_server_providers);
    oc_server_providers = NULL;
    if (!S.timers_init)
        return;
    uv_timer_t *ts[] = {&S.health_timer, &S.start_timer, &S.backoff_timer, &S.dispose_timer, &S.resub_timer,
                        &S.kill_timer};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        if (!uv_is_closing((uv_handle_t *)ts[i]))
            uv_close((uv_handle_t *)ts[i], NULL);
    S.timers_init = 0;
    while (S.dirs) {
        oc_server_dir_t *d = S.dirs;
        S.dirs = d->next;
        free(d->path);
        free(d);
    }
}

void oc_server_disable(void)
{
    S.enabled = 0;
    S.state = OC_SERVER_OFF;
    oc_server_cancel_requests();
    if (S.pid > 0) {
        proc_kill_group(S.pid, SIGKILL);
        S.restart_reason = "disabled";
    }
    if (S.timers_init) {
        uv_timer_stop(&S.health_timer);
        uv_timer_stop(&S.dispose_timer);
        uv_timer_stop(&S.start_timer);
        uv_timer_stop(&S.backoff_timer);
    }
}

void oc_server_stop(manager_t *m, void (*done)(manager_t *m))
{
    S.m = m;
    oc_server_cancel_requests();
    if (S.timers_init) {
        uv_timer_stop(&S.health_timer);
        uv_timer_stop(&S.dispose_timer);
        uv_timer_stop(&S.backoff_timer);
        uv_timer_stop(&S.start_timer);
    }
    if (S.pid <= 0) {
        S.state = OC_SERVER_OFF;
        oc_server_close_timers();
        done(S.m);
        return;
    }
    S.state = OC_SERVER_STOPPING;
    S.stop_done = done;
    log_info("stopping the opencode server", "pid=%ld", (long)S.pid);
    proc_kill_group(S.pid, SIGTERM);
    uv_timer_start(&S.kill_timer, oc_server_kill_cb, OC_SERVER_STOP_GRACE_MS, 0);
}

json_object *oc_server_status_json(void)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "state", json_object_new_string(oc_server_state_names[S.state]));
    json_object_object_add(o, "pid", S.pid > 0 ? json_object_new_int64(S.pid) : NULL);
    json_object_object_add(o, "port", S.pid > 0 ? json_object_new_int(S.port) : NULL);
    json_object_object_add(o, "startedAt", S.pid > 0 ? json_object_new_int64((int64_t)(S.started_at * 1000)) : NULL);
    json_object_object_add(o, "restarts", json_object_new_int64(S.restarts));
    json_object_object_add(o, "healthy", json_object_new_boolean(S.healthy && S.state == OC_SERVER_READY));
    json_object_object_add(o, "lastHealthCheck", S.last_health > 0 ? json_object_new_int64((int64_t)(S.last_health * 1000)) : NULL);
    json_object_object_add(o, "lastHealthLatencyMs", S.last_health > 0 ? json_object_new_double(S.last_latency_ms) : NULL);
    json_object_object_add(o, "consecutiveHealthFailures", json_object_new_int(S.failures));
    json_object_object_add(o, "rssBytes", json_object_new_int64((int64_t)S.rss_kb * 1024));
    json_object_object_add(o, "messagesServed", json_object_new_int64((int64_t)S.messages));
    json_object_object_add(o, "messagesServedTotal", json_object_new_int64((int64_t)S.messages_total));
    json_object_object_add(o, "inFlight", json_object_new_int64(S.in_flight));
    long loaded = 0;
    for (oc_server_dir_t *d = S.dirs; d; d = d->next)
        loaded += d->loaded;
    json_object_object_add(o, "directoriesLoaded", json_object_new_int64(loaded));
    return o;
}
