#define _GNU_SOURCE
#include "manager_internal.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "clock.h"
#include "log.h"
#include "proc.h"
#include "workspace.h"


/* How often to look for processes the agent left behind (adopted by ocpmd, the subreaper). */
#define MANAGER_SWEEP_MS 2000
/* Heap glibc keeps rather than returns to the system (mallopt below). */
#define MANAGER_HEAP_KEEP (1024 * 1024)
/* How often shutdown looks whether the runs are done. */
#define MANAGER_DRAIN_MS 50

void manager_touch(manager_t *m) { m->last_activity = clock_now(); }

void manager_event(manager_t *m, const char *kind, const char *detail)
{
    if (m->db && db_event(m->db, clock_now(), kind, detail) != 0)
        log_error("cannot record manager event", "kind=%s error=%s", kind, log_q(db_errmsg(m->db)));
}

/* What only the manager's lifecycle holds: its handles and the shutdown's progress. */
typedef struct manager_life {
    manager_t *m;
    uv_signal_t signals[5];
    uv_timer_t drain_timer, sweep_timer;
    int fcgi_fd, lock_fd;
    int made_socket; /* the FastCGI socket is ours to remove at the end (we held the lock) */
    double shutdown_deadline, trimmed_at;
    int killed_runs;
    manager_snapshot_t snapshot;
    manager_notify_t notify;
} manager_life_t;

/* The signals the manager handles, and what each does. Handlers only note the signal (libuv's own
 * handler writes to a pipe); the work happens here, in the loop. */
typedef void (*manager_sig_fn)(manager_life_t *l, int signum);
static void manager_on_chld(manager_life_t *l, int signum);
static void manager_on_stop(manager_life_t *l, int signum);
static void manager_on_hup(manager_life_t *l, int signum);
static void manager_on_usr1(manager_life_t *l, int signum);

static const struct {
    int signum;
    const char *name;
    manager_sig_fn fn;
} manager_signals[] = {
    {SIGCHLD, "SIGCHLD", manager_on_chld},
    {SIGTERM, "SIGTERM", manager_on_stop},
    {SIGINT, "SIGINT", manager_on_stop},
    {SIGHUP, "SIGHUP", manager_on_hup},
    {SIGUSR1, "SIGUSR1", manager_on_usr1},
};
#define MANAGER_NSIG (sizeof manager_signals / sizeof manager_signals[0])

static void manager_on_chld(manager_life_t *l, int signum)
{
    (void)l;
    (void)signum;
    proc_reap();
}

/* SIGUSR1: the log files are reopened (logrotate moved them), as nginx's USR1. */
static void manager_on_usr1(manager_life_t *l, int signum)
{
    (void)signum;
    int rc = log_reopen();
    if (rc != 0)
        log_error("cannot reopen log file", "file=%s error=%s", log_q(l->m->conf->log_file), log_q(strerror(-rc)));
    else
        log_info("log file reopened", "file=%s", log_q(l->m->conf->log_file));
}

/* SIGHUP: the settings are read again (manager_reload), and the log reopened as before. */
static void manager_on_hup(manager_life_t *l, int signum)
{
    char err[1024];
    manager_on_usr1(l, signum);
    if (l->m->ready && !l->m->stopping)
        manager_reload(l->m, NULL, err, sizeof err); /* it logs the outcome either way */
}

static void manager_signal_cb(uv_signal_t *h, int signum)
{
    for (size_t i = 0; i < MANAGER_NSIG; i++)
        if (manager_signals[i].signum == signum)
            manager_signals[i].fn(h->data, signum);
}

static void manager_sweep_tick(uv_timer_t *t)
{
    manager_life_t *l = t->data;
    manager_t *m = l->m;
    int n = proc_sweep();
    if (n > 0)
        log_warn("killed processes the agent left behind", "count=%d", n);
    /* Once a burst is over, what it allocated goes back to the system: glibc returns only the top of
     * the heap by itself, so a peak of messages at once would stay in the RSS for good. */
    if (m->last_activity > l->trimmed_at && tenant_running(m->tenants, m->ntenants) == 0 &&
        tenant_queued(m->tenants, m->ntenants) == 0) {
        malloc_trim(0);
        l->trimmed_at = clock_now();
    }
}

static void manager_close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Release the objects that own handles, then close every handle left so uv_run returns. */
static void manager_close_all(manager_t *m)
{
    control_free(m->control);
    m->control = NULL;
    ask_book_free(m->asks); /* pending prompts die with their turns, which are over */
    m->asks = NULL;
    webhook_free(m->webhook); /* before the HTTP client: it cancels its requests */
    m->webhook = NULL;
    for (int t = 0; t < m->ntenants; t++) { /* before the HTTP client: they cancel their requests */
        for (int i = 0; i < m->tenants[t].nservers; i++)
            oc_server_free(m->tenants[t].servers[i]);
        m->tenants[t].nservers = 0;
    }
    http_free_client(m->http);
    m->http = NULL;
    prune_free(m->prune);
    m->prune = NULL;
    slowlog_free(m->slowlog);
    m->slowlog = NULL;
    storage_retry_free(m->storage); /* one last try; what is still unwritten is logged in full */
    m->storage = NULL;
    pool_free(m->pool);
    m->pool = NULL;
    uv_walk(m->loop, manager_close_handle, NULL);
}

/* Shutdown, last phase: the responders are gone. */
static void manager_after_pool(void *ctx)
{
    log_info("responders stopped", NULL);
    manager_close_all(ctx);
}

/* One server stopped; the responders stop after the last. */
static void manager_after_server(void *ctx)
{
    manager_t *m = ctx;
    if (--m->servers_stopping <= 0)
        pool_stop(m->pool, manager_after_pool, m);
}

static void manager_kill_running(manager_t *m)
{
    for (int i = 0; i < m->ntenants; i++)
        scheduler_kill_running(m->tenants[i].scheduler);
}

/* Shutdown, first phase: wait for the running executions, stopping them once shutdown_timeout
 * has passed; then stop the server, then the responders. */
static void manager_drain_tick(uv_timer_t *t)
{
    manager_life_t *l = t->data;
    manager_t *m = l->m;
    long running = tenant_running(m->tenants, m->ntenants);
    if (running > 0) {
        if (!l->killed_runs && clock_now() >= l->shutdown_deadline) {
            l->killed_runs = 1;
            log_warn("shutdown_timeout passed; killing running opencode processes", "running=%ld", running);
            manager_kill_running(m);
        }
        return;
    }
    uv_timer_stop(t);
    m->servers_stopping = 1; /* until every stop below has been asked for */
    for (int p = 0; p < m->ntenants; p++)
        for (int i = 0; i < m->tenants[p].nservers; i++) {
            m->servers_stopping++;
            oc_server_stop(m->tenants[p].servers[i], manager_after_server, m);
        }
    manager_after_server(m);
}

static void manager_on_stop(manager_life_t *l, int signum)
{
    manager_t *m = l->m;
    const char *name = signum == SIGTERM ? "SIGTERM" : "SIGINT";
    if (m->stopping) {
        if (!l->killed_runs) {
            log_warn("second stop signal; killing running opencode processes now", "signal=%d", signum);
            l->killed_runs = 1;
            manager_kill_running(m);
        }
        return;
    }
    m->stopping = 1;
    manager_notify_stopping(m);
    log_info("OpenCode process manager stopping", "signal=%s running=%ld queued=%ld", name,
             tenant_running(m->tenants, m->ntenants), tenant_queued(m->tenants, m->ntenants));
    manager_event(m, "manager_stopping", name);
    for (int i = 0; i < m->ntenants; i++)
        scheduler_shutdown(m->tenants[i].scheduler);
    l->shutdown_deadline = clock_now() + m->conf->shutdown_timeout_ms / 1000.0;
    uv_timer_start(&l->drain_timer, manager_drain_tick, 0, MANAGER_DRAIN_MS);
}

typedef struct manager_load {
    manager_t *m;
    int n;
} manager_load_t;

static void manager_load_session(void *ctx, const db_session_t *s)
{
    manager_load_t *l = ctx;
    int pool = -1; /* a pool no longer configured: the session stays, unusable (tenant_of says NULL) */
    for (int i = 0; i < l->m->ntenants; i++)
        if (strcmp(l->m->tenants[i].conf->pool_name, s->pool ? s->pool : "default") == 0)
            pool = i;
    const char *root = pool >= 0 ? l->m->tenants[pool].conf->workspace_root : "/";
    const char *name = workspace_name(root, s->owner, s->workspace);
    session_t *se = session_add(l->m->sessions, s->id, s->owner, s->workspace, name, s->oc_session_id, s->created_at,
                                s->last_activity, s->message_count);
    if (se) {
        session_set_server(se, s->server);
        session_set_pool(se, pool);
    }
    if (se && user_add(l->m->users, s->owner, USER_SESSIONS, 1) == 0)
        l->n++;
}

static void manager_storage_event(void *ctx, const char *kind, const char *detail) { manager_event(ctx, kind, detail); }

/* The database: opened, its files ocpmd's alone, what a previous manager left running marked
 * interrupted, and the sessions loaded. */
static int manager_init_storage(manager_t *m, char *err, size_t errlen)
{
    const conf_t *c = m->conf;
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
    if (db_mark_interrupted(m->db, clock_now(), &interrupted) != 0)
        return snprintf(err, errlen, "cannot recover executions: %s", db_errmsg(m->db)), -1;
    if (interrupted)
        log_warn("executions left by a previous manager marked interrupted", "count=%d", interrupted);
    int lost = 0;
    if (db_prompt_lose_pending(m->db, clock_now(), &lost) != 0)
        return snprintf(err, errlen, "cannot recover prompts: %s", db_errmsg(m->db)), -1;
    if (lost)
        log_warn("prompts left pending by a previous manager marked lost", "count=%d", lost);
    manager_event(m, "manager_start", OCPM_VERSION);
    manager_load_t load = {.m = m};
    if (db_session_each(m->db, manager_load_session, &load) != 0)
        return snprintf(err, errlen, "cannot load sessions: %s", db_errmsg(m->db)), -1;
    log_info("sessions loaded", "count=%d", load.n);
    storage_retry_config_t rc = {.loop = m->loop, .db = m->db, .db_path = c->db_path,
                                 .busy_timeout_ms = c->db_busy_timeout_ms, .event = manager_storage_event, .ctx = m};
    m->storage = storage_retry_new(&rc);
    m->prune = prune_new(m->loop, m->db, c->history_retention_ms);
    if (!m->storage || !m->prune)
        return snprintf(err, errlen, "out of memory"), -1;
    return 0;
}

/* The loop's own handles: signals, the shutdown's drain timer, the sweep of escaped processes. */
static void manager_init_handles(manager_life_t *l)
{
    manager_t *m = l->m;
    for (size_t i = 0; i < MANAGER_NSIG; i++) {
        uv_signal_init(m->loop, &l->signals[i]);
        l->signals[i].data = l;
        uv_signal_start(&l->signals[i], manager_signal_cb, manager_signals[i].signum);
    }
    uv_timer_init(m->loop, &l->drain_timer);
    l->drain_timer.data = l;
    /* A process that escapes its run (setsid, a double fork) comes back to ocpmd, not to init,
     * and the sweep ends it: nothing the agent starts outlives its run. */
    if (proc_become_subreaper() != 0)
        log_warn("cannot become the subreaper of the agent's processes", "error=%s", log_q(strerror(errno)));
    uv_timer_init(m->loop, &l->sweep_timer);
    l->sweep_timer.data = l;
    uv_timer_start(&l->sweep_timer, manager_sweep_tick, MANAGER_SWEEP_MS, MANAGER_SWEEP_MS);
}

static void manager_pool_event(void *ctx, const char *kind, const char *detail) { manager_event(ctx, kind, detail); }

static void manager_prompt_asked(void *ctx, const char *event, int64_t exec_id, json_object *record)
{
    manager_t *m = ctx;
    webhook_send(m->webhook, event, exec_id, record);
}

static void manager_slow_sweep(void *ctx, double now)
{
    manager_t *m = ctx;
    tenant_slow_sweep(m->tenants, m->ntenants, now);
}

/* What serves clients: the FastCGI socket and its responders, the control socket. */
static int manager_init_front(manager_life_t *l, char *err, size_t errlen)
{
    manager_t *m = l->m;
    const conf_t *c = m->conf;
    l->fcgi_fd = manager_fcgi_listen(c, err, errlen);
    if (l->fcgi_fd < 0)
        return -1;
    l->made_socket = 1;
    m->control = control_listen(m->loop, c->control_socket, m->hooks->dispatch, m, err, errlen);
    if (!m->control)
        return -1;
    pool_config_t pc = {.loop = m->loop, .conf = c, .exe = m->exe, .listen_fd = l->fcgi_fd,
                        .event = manager_pool_event, .event_ctx = m};
    uid_t agents[CONF_POOLS_MAX];
    for (int i = 0; i < m->ntenants; i++)
        agents[i] = agent_uid(m->tenants[i].agent);
    if (pool_user_resolve(c, agents, m->ntenants, &pc.user, err, errlen) != 0)
        return -1;
    /* The responders connect to the control socket: it is theirs (0600; root needs no permission). */
    if (pc.user.uid >= 0 && chown(c->control_socket, (uid_t)pc.user.uid, (gid_t)pc.user.gid) != 0)
        return snprintf(err, errlen, "cannot give control_socket %s to responder_user %s: %s", c->control_socket,
                        pc.user.name, strerror(errno)), -1;
    log_info("responders run as", "user=%s switching=%s", pc.user.name, pc.user.uid >= 0 ? "yes" : "no");
    l->fcgi_fd = -1; /* the pool's now */
    m->pool = pool_start(&pc, err, errlen);
    if (!m->pool)
        return -1;
    manager_snapshot_start(&l->snapshot, m, m->hooks->publish);
    for (int i = 0; i < m->ntenants; i++)
        scheduler_set_message_capacity(m->tenants[i].scheduler, pool_message_capacity(m->pool));
    return 0;
}

static int manager_init(manager_life_t *l, char *err, size_t errlen)
{
    manager_t *m = l->m;
    const conf_t *c = m->conf;
    /* Searchable: nginx reaches the FastCGI socket in it, the responders the control socket. */
    if (mkdir(c->state_dir, 0711) != 0 && errno != EEXIST)
        return snprintf(err, errlen, "cannot create state_dir %s: %s", c->state_dir, strerror(errno)), -1;
    l->lock_fd = manager_lock(c, err, errlen);
    if (l->lock_fd < 0)
        return -1;
    m->sessions = session_table_new(4096);
    m->users = user_table_new();
    m->metrics = metrics_new(m->started_at);
    m->http = http_new(m->loop);
    if (!m->sessions || !m->users || !m->metrics || !m->http)
        return snprintf(err, errlen, "out of memory, or libcurl cannot start"), -1;
    for (int i = 0; i < m->ntenants; i++)
        if (tenant_init(&m->tenants[i], m->loop, err, errlen) != 0)
            return -1;
    if (manager_init_storage(m, err, errlen) != 0)
        return -1;
    m->budget = budget_new(c, m->users);
    if (!m->budget || budget_load(m->budget, m->db, clock_now()) != 0)
        return snprintf(err, errlen, "cannot load today's usage: %s", db_errmsg(m->db)), -1;
    ask_config_t ac = {.loop = m->loop, .db = m->db, .conf = c, .notify = manager_prompt_asked, .ctx = m};
    m->asks = ask_book_new(&ac);
    m->webhook = webhook_new(m->loop, m->http, m->db, c);
    if (!m->asks || (c->webhook_url[0] && !m->webhook))
        return snprintf(err, errlen, "out of memory"), -1;
    manager_init_handles(l);
    manager_probe(m);
    if (manager_choose_mode(m, err, errlen) != 0)
        return -1;
    long tick = slowlog_tick_ms(tenant_slowlog_shortest(m->tenants, m->ntenants));
    if (!(m->slowlog = slowlog_new(m->loop, tick, manager_slow_sweep, m)))
        return snprintf(err, errlen, "out of memory"), -1;
    return manager_init_front(l, err, errlen);
}

/* Everything the loop no longer runs. */
static void manager_free(manager_t *m)
{
    for (int i = 0; i < m->ntenants; i++)
        tenant_free(&m->tenants[i]);
    budget_free(m->budget);
    metrics_free(m->metrics);
    session_table_free(m->sessions);
    user_table_free(m->users);
    db_close(m->db);
}

int manager_run(manager_settings_t *settings, const char *exe, const manager_hooks_t *hooks)
{
    static manager_t m; /* large (the pools); one per process */
    memset(&m, 0, sizeof m);
    const conf_t *conf = settings->conf;
    m.conf = conf;
    m.settings = settings;
    m.hooks = hooks;
    m.ntenants = settings->npools;
    for (int i = 0; i < settings->npools; i++)
        m.tenants[i] = (tenant_t){.m = &m, .index = i, .conf = settings->pools[i], .agent = settings->agents[i]};
    manager_life_t l = {.m = &m, .fcgi_fd = -1, .lock_fd = -1};
    uv_loop_t loop;
    snprintf(m.exe, sizeof m.exe, "%s", exe);
    m.started_at = m.last_activity = clock_now();
    signal(SIGPIPE, SIG_IGN);
    /* Nothing ocpmd writes is for anyone else (the database holds every prompt); the few files
     * that are (sockets, the agent's directories) get their modes explicitly. */
    umask(077);
    /* A write past RLIMIT_FSIZE must fail with EFBIG (the database reports it), not kill us. */
    signal(SIGXFSZ, SIG_IGN);
    /* Every message allocates and frees the same few hundred kB (SQLite's statements and pages,
     * JSON): glibc gave the top of the heap back and mapped large blocks anew each time, and the
     * loop paid page faults, brk and munmap per message. Kept instead, up to these bounds. */
    mallopt(M_TRIM_THRESHOLD, MANAGER_HEAP_KEEP);
    mallopt(M_MMAP_THRESHOLD, MANAGER_HEAP_KEEP / 4);
    log_info("Initializing OpenCode process manager...", "version=%s pid=%ld state_dir=%s node=%s", OCPM_VERSION,
             (long)getpid(), log_q(conf->state_dir), conf->node_name);
    if ((conf->derived & CONF_DERIVED_NODE_HOST) && conf->require_node_ids)
        log_warn("node name taken from the host name in a cluster", "node=%s reason=\"require_node_ids is on: set "
                 "node_name on each node, so that no two share one\"", conf->node_name);
    if (conf->derived & CONF_DERIVED_NODE_MADE)
        log_warn("node name made from the host name", "node=%s reason=\"the host name is not a valid node name; "
                 "set node_name\"", conf->node_name);
    if (uv_loop_init(&loop) != 0) {
        log_error("OpenCode process manager initialization failed", "reason=\"cannot create event loop\"");
        return 1;
    }
    m.loop = &loop;
    manager_notify_start(&l.notify, &m); /* before any child: it takes NOTIFY_SOCKET from the environment */
    char err[1024] = "";
    int rc = 0;
    if (manager_init(&l, err, sizeof err) != 0) {
        log_error("OpenCode process manager initialization failed", "reason=%s", log_q(err));
        manager_event(&m, "error", err);
        manager_notify_failed(&m, err);
        rc = 1;
        manager_close_all(&m);
        if (l.made_socket) /* we held the lock, so the socket is ours */
            unlink(conf->fcgi_socket);
    } else {
        m.ready = 1;
        manager_notify_ready(&m);
        log_info("OpenCode process manager initialized",
                 "mode=%s available=%s version=%s serverModeSupported=%s responders=%ld threads=%ld "
                 "maxConcurrentRuns=%ld fcgiSocket=%s",
                 tenant_servers(m.tenants, m.ntenants) ? "server" : "per-session", m.available ? "true" : "false", log_q(m.version),
                 m.serve_supported ? "true" : "false", conf->responders, conf->responder_threads,
                 conf->max_concurrent_runs, log_q(conf->fcgi_socket));
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (rc == 0) {
        manager_event(&m, "manager_stop", "clean");
        log_info("OpenCode process manager stopped", "executions=%llu", tenant_finished(m.tenants, m.ntenants));
        unlink(conf->fcgi_socket);
        unlink(conf->control_socket);
    }
    if (l.fcgi_fd >= 0)
        close(l.fcgi_fd);
    uv_loop_close(&loop);
    manager_notify_free(&l.notify);
    manager_free(&m);
    if (l.lock_fd >= 0)
        close(l.lock_fd);
    return rc;
}
