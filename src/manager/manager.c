#define _GNU_SOURCE
#include "manager.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <grp.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"
#include "control.h"
#include "storage_retry.h"
#include "execution.h"
#include "http.h"
#include "log.h"
#include "oc_models.h"
#include "op.h"
#include "pool.h"
#include "proc.h"
#include "prune.h"
#include "session.h"
#include "oc_server.h"
#include "user.h"
#include "workspace.h"
#include "clock.h"

extern char **environ;

#define MANAGER_PROBE_TIMEOUT_MS 30000

void manager_touch(manager_t *m) { m->last_activity = clock_now(); }

void manager_event(manager_t *m, const char *kind, const char *detail)
{
    if (m->db && db_event(m->db, clock_now(), kind, detail) != 0)
        log_error("cannot record manager event", "kind=%s error=%s", kind, log_q(db_errmsg(m->db)));
}

/* The signals the manager handles, and what each does. Handlers only note
 * the signal (libuv's own handler writes to a pipe); the work happens here
 * in the loop. */
typedef void (*manager_sig_fn)(manager_t *m, int signum);
static void manager_on_chld(manager_t *m, int signum);
static void manager_on_stop(manager_t *m, int signum);
static void manager_on_hup(manager_t *m, int signum);

static const struct {
    int signum;
    manager_sig_fn fn;
} manager_signals[] = {
    {SIGCHLD, manager_on_chld},
    {SIGTERM, manager_on_stop},
    {SIGINT, manager_on_stop},
    {SIGHUP, manager_on_hup},
};
#define MANAGER_NSIG (sizeof manager_signals / sizeof manager_signals[0])

static uv_signal_t sig_handles[MANAGER_NSIG];

static uv_timer_t drain_timer;
/* How often to look for processes the agent left behind (adopted by ocpmd, the subreaper). */
#define MANAGER_SWEEP_MS 2000
static uv_timer_t sweep_timer;

static void manager_sweep_tick(uv_timer_t *t)
{
    (void)t;
    int n = proc_sweep();
    if (n > 0)
        log_warn("killed processes the agent left behind", "count=%d", n);
}
static int fcgi_fd = -1;
static int lock_fd = -1;
static char lock_path[4200];
static double shutdown_deadline;
static int killed_runs;

static void manager_on_chld(manager_t *m, int signum)
{
    (void)m;
    (void)signum;
    proc_reap();
}

static void manager_on_hup(manager_t *m, int signum)
{
    (void)signum;
    int rc = log_reopen();
    if (rc != 0)
        log_error("cannot reopen log file", "file=%s error=%s", log_q(m->conf->log_file), log_q(strerror(-rc)));
    else
        log_info("log file reopened", "file=%s", log_q(m->conf->log_file));
}

static void manager_close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Last phase: responders are gone; close every handle so uv_run returns. */
static void manager_after_pool(void *ctx)
{
    manager_t *m = ctx;
    log_info("responders stopped", NULL);
    control_close_all();
    http_shutdown();
    prune_close();
    storage_retry_close();
    pool_free(m->pool);
    m->pool = NULL;
    uv_walk(m->loop, manager_close_handle, NULL);
}

static void manager_after_server(manager_t *m)
{
    pool_stop(m->pool, manager_after_pool, m);
}

/* Poll (every 50 ms) until the in-flight runs are done, killing them once
 * shutdown_timeout has passed. */
static void manager_drain_tick(uv_timer_t *t)
{
    manager_t *m = t->data;
    if (m->running > 0) {
        if (!killed_runs && clock_now() >= shutdown_deadline) {
            killed_runs = 1;
            log_warn("shutdown_timeout passed; killing running opencode processes", "running=%ld", m->running);
            execution_shutdown_kill(m);
        }
        return;
    }
    uv_timer_stop(t);
    oc_server_stop(m, manager_after_server);
}

static void manager_on_stop(manager_t *m, int signum)
{
    if (m->stopping) {
        if (!killed_runs) {
            log_warn("second stop signal; killing running opencode processes now", "signal=%d", signum);
            killed_runs = 1;
            execution_shutdown_kill(m);
        }
        return;
    }
    m->stopping = 1;
    log_info("OpenCode process manager stopping", "signal=%s running=%ld queued=%ld",
             signum == SIGTERM ? "SIGTERM" : "SIGINT", m->running, m->queued);
    manager_event(m, "manager_stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    execution_shutdown_cancel(m);
    shutdown_deadline = clock_now() + m->conf->shutdown_timeout_ms / 1000.0;
    drain_timer.data = m;
    uv_timer_start(&drain_timer, manager_drain_tick, 0, 50);
}

static void manager_signal_cb(uv_signal_t *h, int signum)
{
    manager_t *m = h->data;
    for (size_t i = 0; i < MANAGER_NSIG; i++)
        if (manager_signals[i].signum == signum)
            manager_signals[i].fn(m, signum);
}

/* The singleton guard: an exclusive flock on state_dir/ocpmd.lock. */
static int manager_lock(const conf_t *c, char *err, size_t errlen)
{
    snprintf(lock_path, sizeof lock_path, "%s/ocpmd.lock", c->state_dir);
    lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd < 0) {
        snprintf(err, errlen, "cannot open lock file %s: %s", lock_path, strerror(errno));
        return -1;
    }
    if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        char other[32] = "";
        ssize_t n = pread(lock_fd, other, sizeof other - 1, 0);
        if (n > 0)
            other[strcspn(other, "\n")] = '\0';
        snprintf(err, errlen, "another ocpmd (pid %s) is already running on state_dir %s", n > 0 ? other : "?",
                 c->state_dir);
        close(lock_fd);
        lock_fd = -1;
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(lock_fd, 0) != 0 || pwrite(lock_fd, pid, (size_t)n, 0) != n) {
        snprintf(err, errlen, "cannot write lock file %s: %s", lock_path, strerror(errno));
        return -1;
    }
    return 0;
}

/* The FastCGI socket, like PHP-FPM's listen.owner/group/mode: ocpmd's, in fcgi_socket_group (the
 * web server's; never the agent's, agent_setup checked), with fcgi_socket_mode. */
static int manager_fcgi_listen(const conf_t *c, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", c->fcgi_socket);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    gid_t group = getegid();
    if (c->fcgi_socket_group[0]) {
        struct group *g = getgrnam(c->fcgi_socket_group);
        if (!g) {
            snprintf(err, errlen, "fcgi_socket_group %s does not exist", c->fcgi_socket_group);
            close(fd);
            return -1;
        }
        group = g->gr_gid;
    }
    unlink(c->fcgi_socket);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || chown(c->fcgi_socket, geteuid(), group) != 0 ||
        chmod(c->fcgi_socket, (mode_t)c->fcgi_socket_mode) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "FastCGI socket %s: %s", c->fcgi_socket, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Run opencode with argv as the agent (the shared server's home) and capture its output.
 * Blocking, at start-up only. */
static int manager_probe_run(manager_t *m, char *const *argv, char *out, size_t outlen)
{
    agent_launch_t as;
    char err[256];
    if (agent_launch(&as, NULL, -1, err, sizeof err) != 0) {
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

/* Ask opencode for its version and whether `serve` exists. Blocking, at
 * start-up only. */
static void manager_probe(manager_t *m)
{
    char out[512];
    char *vargv[] = {(char *)m->conf->opencode_bin, "--version", NULL};
    int st = manager_probe_run(m, vargv, out, sizeof out);
    if (st == 0) {
        out[strcspn(out, "\r\n")] = '\0';
        snprintf(m->version, sizeof m->version, "%s", out);
        m->available = 1;
    } else {
        log_error("OpenCode process manager initialization failed",
                  "reason=\"opencode --version failed\" opencode_bin=%s status=%d", log_q(m->conf->opencode_bin), st);
        return;
    }
    char *sargv[] = {(char *)m->conf->opencode_bin, "serve", "--help", NULL};
    st = manager_probe_run(m, sargv, out, sizeof out);
    m->serve_supported = st == 0;
}

typedef struct manager_load {
    const conf_t *conf;
    int n;
} manager_load_t;

/* The models opencode offers (per-session mode; a server reports its own when it is ready). */
static void manager_probe_models(manager_t *m)
{
    static char out[1 << 16];
    char *argv[] = {(char *)m->conf->opencode_bin, "models", NULL};
    if (!m->available)
        return;
    int st = manager_probe_run(m, argv, out, sizeof out);
    int n = st == 0 ? oc_models_set_lines(out) : -1;
    if (n < 0)
        log_warn("cannot list opencode's models; messages naming a model are refused until it can",
                 "status=%d", st);
    else
        log_info("opencode models listed", "count=%d default=%s", n,
                 log_q(oc_models_default() ? oc_models_default() : ""));
}

static void manager_load_session(void *ctx, const db_session_t *s)
{
    manager_load_t *l = ctx;
    if (session_add(s->id, s->owner, s->workspace, workspace_name(l->conf->workspace_root, s->owner, s->workspace),
                 s->oc_session_id, s->created_at, s->last_activity, s->message_count) &&
        user_add(s->owner, USER_SESSIONS, 1) == 0)
        l->n++;
}

/* auto: try the server and keep it if it becomes healthy within server_start_timeout;
 * server: the same, but failing is fatal; per-session: never start one. Blocks start-up (the
 * loop runs only the server's own handles meanwhile). */
static int manager_choose_mode(manager_t *m, char *err, size_t errlen)
{
    const conf_t *c = m->conf;
    const char *why = NULL;
    if (c->mode == MODE_PER_SESSION) {
        why = "mode = per-session";
    } else if (!m->available && c->mode == MODE_AUTO) {
        why = "opencode is not available";
    } else if (!m->serve_supported && c->mode == MODE_AUTO) {
        why = "opencode serve is not supported";
    } else if (oc_server_start(m, err, errlen) != 0) {
        why = "opencode serve did not start";
    } else {
        while (oc_server_state() == OC_SERVER_STARTING)
            uv_run(m->loop, UV_RUN_ONCE);
        if (oc_server_state() != OC_SERVER_READY)
            why = "opencode serve did not become healthy within server_start_timeout";
    }
    if (!why) {
        oc_server_on_change(execution_schedule);
        log_info("OpenCode server mode enabled", "pid=%ld", (long)oc_server_pid());
        manager_event(m, "mode", "server");
        return 0;
    }
    if (c->mode == MODE_SERVER) {
        snprintf(err, errlen, "mode = server, but %s", why);
        oc_server_disable();
        return -1;
    }
    oc_server_disable();
    if (c->mode == MODE_AUTO)
        log_info("OpenCode does not support server mode, will use per-session approach", "reason=%s", log_q(why));
    else
        log_info("per-session mode by configuration", NULL);
    manager_probe_models(m);
    manager_event(m, "mode", "per-session");
    return 0;
}

static void manager_pool_event(void *ctx, const char *kind, const char *detail)
{
    manager_event(ctx, kind, detail);
}

static int manager_init(manager_t *m, char *err, size_t errlen)
{
    const conf_t *c = m->conf;
    if (mkdir(c->state_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create state_dir %s: %s", c->state_dir, strerror(errno));
        return -1;
    }
    if (manager_lock(c, err, errlen) != 0)
        return -1;
    m->child_env = proc_env_filter(environ, c->pass_env);
    if (!m->child_env) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (agent_init(c, m->child_env, err, errlen) != 0)
        return -1;
    m->db = db_open(c->db_path, c->store_prompts, c->stored_text_limit, err, errlen);
    if (!m->db)
        return -1;
    /* Prompts live in these files: ocpmd's alone (a file made before umask 077 is brought in line). */
    static const char *const sides[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < sizeof sides / sizeof sides[0]; i++) {
        char p[PATH_MAX + 8];
        snprintf(p, sizeof p, "%s%s", c->db_path, sides[i]);
        chmod(p, 0600);
    }
    db_set_busy_timeout(m->db, c->db_busy_timeout_ms);
    int interrupted = 0;
    if (db_mark_interrupted(m->db, clock_now(), &interrupted) != 0) {
        snprintf(err, errlen, "cannot recover executions: %s", db_errmsg(m->db));
        return -1;
    }
    if (interrupted)
        log_warn("executions left by a previous manager marked interrupted", "count=%d", interrupted);
    manager_event(m, "manager_start", OCPM_VERSION);
    if (session_table_init(4096) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    manager_load_t load = {.conf = c};
    if (db_session_each(m->db, manager_load_session, &load) != 0) {
        snprintf(err, errlen, "cannot load sessions: %s", db_errmsg(m->db));
        return -1;
    }
    int loaded = load.n;
    m->sessions = loaded;
    for (size_t i = 0; i < MANAGER_NSIG; i++) {
        uv_signal_init(m->loop, &sig_handles[i]);
        sig_handles[i].data = m;
        uv_signal_start(&sig_handles[i], manager_signal_cb, manager_signals[i].signum);
    }
    uv_timer_init(m->loop, &drain_timer);
    /* A process that escapes its run (setsid, a double fork) comes back to ocpmd, not to init,
     * and the sweep ends it: nothing the agent starts outlives its run. */
    if (proc_become_subreaper() != 0)
        log_warn("cannot become the subreaper of the agent's processes", "error=%s", log_q(strerror(errno)));
    uv_timer_init(m->loop, &sweep_timer);
    uv_timer_start(&sweep_timer, manager_sweep_tick, MANAGER_SWEEP_MS, MANAGER_SWEEP_MS);
    if (http_init(m->loop) != 0) {
        snprintf(err, errlen, "cannot initialise libcurl");
        return -1;
    }
    manager_probe(m);
    if (manager_choose_mode(m, err, errlen) != 0)
        return -1;
    fcgi_fd = manager_fcgi_listen(c, err, errlen);
    if (fcgi_fd < 0)
        return -1;
    if (control_listen(m, c->control_socket, op_dispatch, err, errlen) != 0)
        return -1;
    pool_config_t pc = {.loop = m->loop, .conf = c, .exe = m->exe, .listen_fd = fcgi_fd, .event = manager_pool_event,
                        .event_ctx = m};
    m->pool = pool_start(&pc, err, errlen);
    if (!m->pool)
        return -1;
    execution_set_message_capacity(pool_message_capacity(m->pool));
    prune_init(m);
    storage_retry_init(m);
    log_info("sessions loaded", "count=%d", loaded);
    return 0;
}

int manager_run(const conf_t *conf, const char *exe)
{
    manager_t m = {.conf = conf};
    uv_loop_t loop;
    snprintf(m.exe, sizeof m.exe, "%s", exe);
    m.started_at = m.last_activity = clock_now();
    signal(SIGPIPE, SIG_IGN);
    /* Nothing ocpmd writes is for anyone else (the database holds every prompt); the few files
     * that are (sockets, the agent's directories) get their modes explicitly. */
    umask(077);
    /* A write past RLIMIT_FSIZE must fail with EFBIG (the database reports it), not kill us. */
    signal(SIGXFSZ, SIG_IGN);
    log_info("Initializing OpenCode process manager...", "version=%s pid=%ld state_dir=%s", OCPM_VERSION,
             (long)getpid(), log_q(conf->state_dir));
    if (uv_loop_init(&loop) != 0) {
        log_error("OpenCode process manager initialization failed", "reason=\"cannot create event loop\"");
        return 1;
    }
    m.loop = &loop;
    char err[1024] = "";
    int rc = 0;
    if (manager_init(&m, err, sizeof err) != 0) {
        char q[1100];
        log_error("OpenCode process manager initialization failed", "reason=%s", log_quote(q, sizeof q, err));
        if (m.db)
            manager_event(&m, "error", err);
        rc = 1;
        control_close_all();
        http_shutdown();
            m.pool = NULL;
        uv_walk(&loop, manager_close_handle, NULL);
        if (fcgi_fd >= 0) /* we held the lock, so the socket is ours */
            unlink(conf->fcgi_socket);
    } else {
        m.ready = 1;
        log_info("OpenCode process manager initialized",
                 "mode=%s available=%s version=%s serverModeSupported=%s responders=%ld threads=%ld "
                 "maxConcurrentRuns=%ld fcgiSocket=%s",
                 oc_server_state() != OC_SERVER_OFF ? "server" : "per-session", m.available ? "true" : "false", log_q(m.version),
                 m.serve_supported ? "true" : "false", conf->responders,
                 conf->responder_threads, conf->max_concurrent_runs, log_q(conf->fcgi_socket));
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (rc == 0) {
        manager_event(&m, "manager_stop", "clean");
        log_info("OpenCode process manager stopped", "executions=%llu", (unsigned long long)m.finished);
        unlink(conf->fcgi_socket);
        unlink(conf->control_socket);
    }
    if (fcgi_fd >= 0)
        close(fcgi_fd);
    uv_loop_close(&loop);
    storage_retry_final();
    pool_free(m.pool);
    session_table_free();
    user_table_free();
    agent_free();
    oc_models_free();
    proc_env_free(m.child_env);
    db_close(m.db);
    /* The lock file stays: unlinking it would let two managers lock two files. */
    if (lock_fd >= 0)
        close(lock_fd);
    return rc;
}
