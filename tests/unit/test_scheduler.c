/* scheduler: the queue and the execution's life against a fake backend, through backend.h, with a
 * real SQLite file and real workspaces; no nginx, no opencode. The fake records what it was asked
 * to start and ends its jobs when a test says so. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent.h"
#include "conf.h"
#include "proc.h"
#include "scheduler.h"
#include "workspace.h"

#define FAKE_JOBS 32

struct backend_job {
    struct fake *fake;
    backend_events_t ev;
    void *ctx;
    char text[64];
    int owner_null; /* the request asked for the shared home */
    int server;     /* ... of this server */
    int ended;
};

typedef struct fake {
    const char *mode;
    backend_state_t state;
    long capacity;
    int fail_start;
    backend_job_t jobs[FAKE_JOBS];
    int njobs;
} fake_t;

static backend_state_t fake_state(void *self) { return ((fake_t *)self)->state; }
static long fake_capacity(void *self) { return ((fake_t *)self)->capacity; }
static long fake_load(void *self)
{
    const fake_t *f = self;
    long n = 0;
    for (int i = 0; i < f->njobs; i++)
        n += !f->jobs[i].ended;
    return n;
}

static backend_job_t *fake_start(void *self, const backend_request_t *rq, const backend_events_t *ev, void *ctx,
                                 long *pid, char **argv_json, char *err, size_t errlen)
{
    fake_t *f = self;
    *argv_json = NULL;
    if (f->fail_start || f->njobs == FAKE_JOBS) {
        snprintf(err, errlen, "the fake refuses");
        return NULL;
    }
    backend_job_t *j = &f->jobs[f->njobs++];
    j->fake = f;
    j->ev = *ev;
    j->ctx = ctx;
    j->owner_null = rq->owner == NULL;
    j->server = rq->server;
    snprintf(j->text, sizeof j->text, "%s", rq->text);
    *pid = 4242;
    return j;
}

static void fake_end(backend_job_t *j, int ok, backend_stop_t stopped, const char *text, const char *error)
{
    assert_false(j->ended);
    j->ended = 1;
    backend_result_t r = {.ok = ok, .stopped = stopped, .text = text, .text_len = text ? strlen(text) : 0,
                          .error = error};
    j->ev.done(j->ctx, &r);
}

static void fake_stop(backend_job_t *j, backend_stop_t why) { fake_end(j, 0, why, NULL, "Aborted"); }

static const backend_ops_t fake_ops = {.mode = "per-session", .label = "standalone", .state = fake_state,
                                       .capacity = fake_capacity, .start = fake_start, .stop = fake_stop,
                                       .summarises_changes = 1};
static const backend_ops_t fake_server_ops = {.mode = "server", .label = "server", .state = fake_state,
                                              .capacity = fake_capacity, .load = fake_load, .start = fake_start,
                                              .stop = fake_stop, .summarises_changes = 1};

typedef struct world {
    char dir[64];
    conf_t conf;
    uv_loop_t loop;
    db_t *db;
    session_table_t *sessions;
    user_table_t *users;
    storage_retry_t *storage;
    scheduler_t *s;
    fake_t primary, second, fallback;
    agent_t *agent;
    budget_t *budget;
    int finished[EXEC_NSTATUS];
} world_t;

static void world_finished(void *ctx, const char *mode, exec_status_t st, double d, double w)
{
    (void)mode, (void)d, (void)w;
    ((world_t *)ctx)->finished[st]++;
}

/* A new session in workspace ws of owner (made, not yet a repository: the first message prepares it). */
static session_t *world_bare_session(world_t *w, const char *owner, const char *id, const char *ws)
{
    char path[4096];
    const char *why = NULL;
    assert_int_equal(workspace_resolve(w->agent, w->conf.workspace_root, owner, ws, path, sizeof path, &why), 0);
    db_session_t row = {.id = id, .owner = owner, .workspace = path, .created_at = 1, .last_activity = 1};
    assert_int_equal(db_session_insert(w->db, &row), 0);
    session_t *s = session_add(w->sessions, id, owner, path, ws, NULL, 1, 1, 0);
    assert_non_null(s);
    return s;
}

static void on_sigchld(uv_signal_t *h, int signum)
{
    (void)h, (void)signum;
    proc_reap();
}

/* A session of owner with a workspace that is already a repository (no git runs). */
static session_t *world_session(world_t *w, const char *owner, const char *id)
{
    session_t *s = world_bare_session(w, owner, id, id);
    char p[4200];
    static const char *const made[] = {"/.git", "/.git/refs", "/.git/refs/heads"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", session_workspace(s), made[i]);
        mkdir(p, 0700);
    }
    static const char *const files[] = {"/.git/HEAD", "/.git/refs/heads/main"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s%s", session_workspace(s), files[i]);
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fclose(f);
    }
    return s;
}

static int world_setup(void **state)
{
    world_t *w = calloc(1, sizeof *w);
    char err[256];
    snprintf(w->dir, sizeof w->dir, "/tmp/ocpm-sched-XXXXXX");
    if (!mkdtemp(w->dir))
        return -1;
    conf_defaults(&w->conf);
    snprintf(w->conf.agent_user, sizeof w->conf.agent_user, "self");
    snprintf(w->conf.state_dir, sizeof w->conf.state_dir, "%s", w->dir);
    snprintf(w->conf.workspace_root, sizeof w->conf.workspace_root, "%s/ws", w->dir);
    mkdir(w->conf.workspace_root, 0711);
    w->conf.max_concurrent_runs = 2;
    w->conf.user_max_share = 100;
    if (conf_finish(&w->conf, err, sizeof err) != 0 || !(w->agent = agent_setup(&w->conf, err, sizeof err)))
        return -1;
    uv_loop_init(&w->loop);
    char path[128];
    snprintf(path, sizeof path, "%s/ocpm.db", w->dir);
    w->db = db_open(path, 1, 1 << 20, err, sizeof err);
    w->sessions = session_table_new(64);
    w->users = user_table_new();
    storage_retry_config_t rc = {.loop = &w->loop, .db = w->db, .db_path = path, .busy_timeout_ms = 1000};
    w->storage = storage_retry_new(&rc);
    w->primary = (fake_t){.state = BACKEND_READY};
    w->second = (fake_t){.state = BACKEND_READY};
    w->fallback = (fake_t){.state = BACKEND_READY};
    *state = w;
    return w->db && w->sessions && w->users && w->storage ? 0 : -1;
}

/* The scheduler over the primary alone, or with the fallback behind a "server" primary (and a
 * second server when with_fallback is 2). */
static void world_start(world_t *w, int with_fallback)
{
    scheduler_config_t sc = {.loop = &w->loop, .agent = w->agent, .conf = &w->conf, .db = w->db, .sessions = w->sessions,
                             .users = w->users, .storage = w->storage, .finished = world_finished, .ctx = w};
    w->budget = budget_new(&w->conf, w->users);
    sc.budget = w->budget;
    sc.primary[0] = (backend_t){with_fallback ? &fake_server_ops : &fake_ops, &w->primary};
    sc.primary[1] = (backend_t){&fake_server_ops, &w->second};
    sc.nprimary = with_fallback == 2 ? 2 : 1;
    if (with_fallback)
        sc.fallback = (backend_t){&fake_ops, &w->fallback};
    w->s = scheduler_new(&sc);
    assert_non_null(w->s);
}

static int world_teardown(void **state)
{
    world_t *w = *state;
    scheduler_free(w->s);
    budget_free(w->budget);
    storage_retry_free(w->storage);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    session_table_free(w->sessions);
    user_table_free(w->users);
    db_close(w->db);
    agent_free(w->agent);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", w->dir);
    int rc = system(cmd);
    free(w);
    return rc == 0 ? 0 : -1;
}

static int64_t submit(world_t *w, session_t *s, const char *text)
{
    int64_t id = scheduler_submit(w->s, s, text, NULL, NULL, NULL, SCHEDULER_WAIT_ASYNC);
    assert_true(id > 0);
    return id;
}

/* The stored status (and error) of an execution. */
static void expect_row(world_t *w, int64_t id, const char *owner, const char *status, const char *error_part)
{
    json_object *row = db_exec_get(w->db, id, owner);
    assert_non_null(row);
    assert_string_equal(json_object_get_string(json_object_object_get(row, "status")), status);
    if (error_part) {
        const char *e = json_object_get_string(json_object_object_get(row, "error"));
        assert_non_null(e);
        if (!strstr(e, error_part))
            fail_msg("error %s lacks %s", e, error_part);
    }
    json_object_put(row);
}

static void test_order_and_global_limit(void **state)
{
    world_t *w = *state;
    world_start(w, 0);
    session_t *a = world_session(w, "alice", "a"), *b = world_session(w, "bob", "b"), *c = world_session(w, "carol", "c");
    submit(w, a, "first");
    submit(w, b, "second");
    int64_t third = submit(w, c, "third");
    /* max_concurrent_runs = 2: the oldest two run, the third waits. */
    assert_int_equal(w->primary.njobs, 2);
    assert_string_equal(w->primary.jobs[0].text, "first");
    assert_string_equal(w->primary.jobs[1].text, "second");
    assert_int_equal(scheduler_running(w->s), 2);
    assert_int_equal(scheduler_queued(w->s), 1);
    expect_row(w, third, "carol", "queued", NULL);
    fake_end(&w->primary.jobs[0], 1, BACKEND_STOP_NONE, "answer one", NULL);
    assert_int_equal(w->primary.njobs, 3);
    assert_string_equal(w->primary.jobs[2].text, "third");
    fake_end(&w->primary.jobs[1], 1, BACKEND_STOP_NONE, NULL, NULL);
    fake_end(&w->primary.jobs[2], 1, BACKEND_STOP_NONE, NULL, NULL);
    assert_int_equal(scheduler_running(w->s), 0);
    assert_int_equal(w->finished[EXEC_SUCCEEDED], 3);
    assert_int_equal(scheduler_finished(w->s), 3);
    assert_int_equal(scheduler_failed(w->s), 0);
}

static void test_session_fifo(void **state)
{
    world_t *w = *state;
    world_start(w, 0);
    session_t *a = world_session(w, "alice", "a");
    submit(w, a, "m1");
    submit(w, a, "m2");
    submit(w, a, "m3");
    /* One message of a session at a time, in the order they came, though slots are free. */
    assert_int_equal(w->primary.njobs, 1);
    for (int i = 0; i < 3; i++) {
        char want[8];
        snprintf(want, sizeof want, "m%d", i + 1);
        assert_int_equal(w->primary.njobs, i + 1);
        assert_string_equal(w->primary.jobs[i].text, want);
        fake_end(&w->primary.jobs[i], 1, BACKEND_STOP_NONE, NULL, NULL);
    }
    assert_int_equal(scheduler_queued(w->s), 0);
}

static void test_abort_while_queued(void **state)
{
    world_t *w = *state;
    world_start(w, 0);
    session_t *a = world_session(w, "alice", "a");
    int64_t m1 = submit(w, a, "m1"), m2 = submit(w, a, "m2"), m3 = submit(w, a, "m3");
    assert_int_equal(scheduler_abort_session(w->s, a, "aborted by request"), 3);
    expect_row(w, m1, "alice", "aborted", "aborted by request");
    expect_row(w, m2, "alice", "aborted", "aborted by request");
    expect_row(w, m3, "alice", "aborted", NULL);
    /* The waiting ones never reached the backend. */
    assert_int_equal(w->primary.njobs, 1);
    assert_int_equal(scheduler_queued(w->s), 0);
    assert_int_equal(scheduler_running(w->s), 0);
    assert_int_equal(w->finished[EXEC_ABORTED], 3);
}

static void test_finish_paths(void **state)
{
    world_t *w = *state;
    world_start(w, 0);
    session_t *a = world_session(w, "alice", "a");
    int64_t ok = submit(w, a, "ok");
    fake_end(&w->primary.jobs[0], 1, BACKEND_STOP_NONE, "the answer", NULL);
    expect_row(w, ok, "alice", "succeeded", NULL);
    json_object *row = db_exec_get(w->db, ok, "alice");
    assert_string_equal(json_object_get_string(json_object_object_get(row, "answer")), "the answer");
    assert_int_equal(json_object_get_int64(json_object_object_get(row, "pid")), 4242);
    json_object_put(row);

    int64_t failed = submit(w, a, "fails");
    fake_end(&w->primary.jobs[1], 0, BACKEND_STOP_NONE, NULL, "the model said no");
    expect_row(w, failed, "alice", "failed", "the model said no");

    int64_t late = submit(w, a, "too slow");
    w->primary.jobs[2].ev.done(w->primary.jobs[2].ctx,
                               &(backend_result_t){.stopped = BACKEND_STOP_TIMEOUT, .error = "Aborted"});
    w->primary.jobs[2].ended = 1;
    expect_row(w, late, "alice", "timeout", "run exceeded run_timeout");

    w->primary.fail_start = 1;
    int64_t refused = submit(w, a, "never starts");
    expect_row(w, refused, "alice", "failed", "could not be started");
    w->primary.fail_start = 0;

    /* The workspace gone: the check before the start fails the message; nothing runs. */
    char ws[4096];
    snprintf(ws, sizeof ws, "%s", session_workspace(a));
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", ws);
    assert_int_equal(system(cmd), 0);
    int njobs = w->primary.njobs;
    int64_t gone = submit(w, a, "no workspace");
    expect_row(w, gone, "alice", "failed", "workspace check failed");
    assert_int_equal(w->primary.njobs, njobs);
    assert_int_equal(scheduler_running(w->s), 0);
    assert_int_equal(scheduler_failed(w->s), 4);
}

static void test_routes_by_backend_state(void **state)
{
    world_t *w = *state;
    world_start(w, 1);
    w->conf.fallback = 1;
    session_t *a = world_session(w, "alice", "a"), *b = world_session(w, "bob", "b");
    /* Replacing (WAIT): nothing starts, anywhere. */
    w->primary.state = BACKEND_WAIT;
    submit(w, a, "waits");
    assert_int_equal(w->primary.njobs + w->fallback.njobs, 0);
    /* Down with fallback on: the per-message backend runs it, in the server's agent home. */
    w->primary.state = BACKEND_DOWN;
    scheduler_kick(w->s);
    assert_int_equal(w->fallback.njobs, 1);
    assert_true(w->fallback.jobs[0].owner_null);
    fake_end(&w->fallback.jobs[0], 1, BACKEND_STOP_NONE, NULL, NULL);
    /* Full: waits for one of the primary's own jobs to end. */
    w->primary.state = BACKEND_FULL;
    submit(w, b, "full");
    assert_int_equal(w->primary.njobs + w->fallback.njobs, 1);
    w->primary.state = BACKEND_READY;
    scheduler_kick(w->s);
    assert_int_equal(w->primary.njobs, 1);
    assert_false(w->primary.jobs[0].owner_null);
    fake_end(&w->primary.jobs[0], 1, BACKEND_STOP_NONE, NULL, NULL);
    /* Down with fallback off: it waits, at most fallback_wait, then fails. */
    w->conf.fallback = 0;
    w->conf.fallback_wait_ms = -1; /* already waited too long when it comes */
    w->primary.state = BACKEND_DOWN;
    int64_t id = submit(w, a, "expires");
    expect_row(w, id, "alice", "failed", "fallback is off");
}

typedef struct find_server {
    const char *owner, *id;
    int server;
} find_server_t;

static void find_server_each(void *ctx, const db_session_t *row)
{
    find_server_t *f = ctx;
    if (strcmp(row->owner, f->owner) == 0 && strcmp(row->id, f->id) == 0)
        f->server = row->server;
}

/* The server a session is placed on, as stored. */
static int stored_server(world_t *w, const char *owner, const char *id)
{
    find_server_t f = {owner, id, -2};
    assert_int_equal(db_session_each(w->db, find_server_each, &f), 0);
    return f.server;
}

static void test_placement(void **state)
{
    world_t *w = *state;
    world_start(w, 2);
    w->conf.fallback = 1;
    w->conf.max_concurrent_runs = 8;
    session_t *a = world_session(w, "alice", "a"), *b = world_session(w, "bob", "b"),
              *c = world_session(w, "carol", "c");
    assert_int_equal(session_server(a), -1);
    /* The least loaded: a ties and takes the first; b finds it busy and takes the second. */
    submit(w, a, "a1");
    submit(w, b, "b1");
    assert_int_equal(w->primary.njobs, 1);
    assert_int_equal(w->second.njobs, 1);
    assert_int_equal(session_server(a), 0);
    assert_int_equal(session_server(b), 1);
    assert_int_equal(stored_server(w, "alice", "a"), 0);
    assert_int_equal(stored_server(w, "bob", "b"), 1);
    fake_end(&w->primary.jobs[0], 1, BACKEND_STOP_NONE, NULL, NULL);
    fake_end(&w->second.jobs[0], 1, BACKEND_STOP_NONE, NULL, NULL);
    /* Both idle with one session each: the first again; then a stays there though it is busier. */
    submit(w, c, "c1");
    assert_int_equal(session_server(c), 0);
    submit(w, a, "a2");
    assert_int_equal(w->primary.njobs, 3);
    assert_int_equal(w->second.njobs, 1);
    fake_end(&w->primary.jobs[1], 1, BACKEND_STOP_NONE, NULL, NULL);
    fake_end(&w->primary.jobs[2], 1, BACKEND_STOP_NONE, NULL, NULL);
    /* Its server down: a's message falls back in that server's home; b's server is not affected. */
    w->primary.state = BACKEND_DOWN;
    submit(w, a, "a3");
    submit(w, b, "b2");
    assert_int_equal(w->fallback.njobs, 1);
    assert_true(w->fallback.jobs[0].owner_null);
    assert_int_equal(w->fallback.jobs[0].server, 0);
    assert_int_equal(w->second.njobs, 2);
    fake_end(&w->fallback.jobs[0], 1, BACKEND_STOP_NONE, NULL, NULL);
    fake_end(&w->second.jobs[1], 1, BACKEND_STOP_NONE, NULL, NULL);
    /* Its server being replaced: a waits; b still runs. */
    w->primary.state = BACKEND_WAIT;
    submit(w, a, "a4");
    submit(w, b, "b3");
    assert_int_equal(w->primary.njobs + w->fallback.njobs, 4);
    assert_int_equal(w->second.njobs, 3);
    w->primary.state = BACKEND_READY;
    scheduler_kick(w->s);
    assert_int_equal(w->primary.njobs, 4);
    fake_end(&w->primary.jobs[3], 1, BACKEND_STOP_NONE, NULL, NULL);
    fake_end(&w->second.jobs[2], 1, BACKEND_STOP_NONE, NULL, NULL);
    /* Placed on a server that no longer exists: placed again, its conversation forgotten. */
    session_set_server(c, 7);
    session_set_oc_id(c, "ses_gone");
    w->second.state = BACKEND_READY;
    submit(w, c, "c2");
    assert_int_not_equal(session_server(c), 7);
    assert_null(session_oc_id(c));
    assert_int_equal(stored_server(w, "carol", "c"), session_server(c));
    fake_t *on = session_server(c) == 0 ? &w->primary : &w->second;
    fake_end(&on->jobs[on->njobs - 1], 1, BACKEND_STOP_NONE, NULL, NULL);
}

/* Three sessions share a new workspace; their first messages begin in one kick. Two `git init` on
 * one directory fail on git's locks: one prepares it, the others wait and start after it. */
static void test_shared_workspace_prepared_once(void **state)
{
    world_t *w = *state;
    char err[256];
    extern char **environ;
    assert_int_equal(agent_init(w->agent, &w->conf, environ, err, sizeof err), 0); /* git runs as the agent */
    world_start(w, 0);
    w->conf.max_concurrent_runs = 4;
    session_t *ss[3];
    for (int i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof id, "t%d", i);
        ss[i] = world_bare_session(w, "alice", id, "team");
    }
    w->primary.state = BACKEND_FULL; /* hold them, then let them go together */
    for (int i = 0; i < 3; i++)
        submit(w, ss[i], "together");
    static uv_signal_t chld; /* git's exit is reaped as the manager does (SIGCHLD, in the loop); closed later */
    uv_signal_init(&w->loop, &chld);
    uv_signal_start(&chld, on_sigchld, SIGCHLD);
    w->primary.state = BACKEND_READY;
    scheduler_kick(w->s);
    assert_int_equal(scheduler_running(w->s), 3);
    time_t deadline = time(NULL) + 30;
    while (w->primary.njobs < 3 && w->finished[EXEC_FAILED] == 0 && time(NULL) < deadline)
        uv_run(&w->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&chld, NULL);
    assert_int_equal(w->finished[EXEC_FAILED], 0);
    assert_int_equal(w->primary.njobs, 3);
    for (int i = 0; i < 3; i++)
        fake_end(&w->primary.jobs[i], 1, BACKEND_STOP_NONE, NULL, NULL);
}

static void test_user_share(void **state)
{
    world_t *w = *state;
    w->conf.user_max_share = 50; /* of 2 slots: one each */
    world_start(w, 0);
    session_t *a1 = world_session(w, "alice", "a1"), *a2 = world_session(w, "alice", "a2");
    session_t *b = world_session(w, "bob", "b");
    submit(w, a1, "alice one");
    submit(w, a2, "alice two");
    submit(w, b, "bob");
    /* Alice's second waits although it came before bob's: she holds her share. */
    assert_int_equal(w->primary.njobs, 2);
    assert_string_equal(w->primary.jobs[1].text, "bob");
    fake_end(&w->primary.jobs[0], 1, BACKEND_STOP_NONE, NULL, NULL);
    assert_string_equal(w->primary.jobs[2].text, "alice two");
    fake_end(&w->primary.jobs[1], 1, BACKEND_STOP_NONE, NULL, NULL);
    fake_end(&w->primary.jobs[2], 1, BACKEND_STOP_NONE, NULL, NULL);
}

static void test_round_robin(void **state)
{
    world_t *w = *state;
    w->conf.max_concurrent_runs = 1;
    world_start(w, 0);
    session_t *a[3];
    for (int i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof id, "a%d", i + 1);
        a[i] = world_session(w, "alice", id);
    }
    session_t *b = world_session(w, "bob", "b"), *c = world_session(w, "carol", "c");
    for (int i = 0; i < 3; i++) {
        char text[8];
        snprintf(text, sizeof text, "a%d", i + 1);
        submit(w, a[i], text);
    }
    submit(w, b, "b");
    submit(w, c, "c");
    /* Bob's and carol's came after all of alice's, yet start right after her first. */
    static const char *const order[] = {"a1", "b", "c", "a2", "a3"};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(w->primary.njobs, i + 1);
        assert_string_equal(w->primary.jobs[i].text, order[i]);
        fake_end(&w->primary.jobs[i], 1, BACKEND_STOP_NONE, NULL, NULL);
    }
}

static void test_user_limits(void **state)
{
    world_t *w = *state;
    w->conf.user_max_running = 1;
    w->conf.user_queue_limit = 1;
    world_start(w, 0);
    session_t *a1 = world_session(w, "alice", "a1"), *a2 = world_session(w, "alice", "a2");
    session_t *a3 = world_session(w, "alice", "a3"), *b = world_session(w, "bob", "b");
    submit(w, a1, "alice one");
    submit(w, a2, "alice two");
    /* One of hers waits (user_max_running = 1 of the two slots): her next is over user_queue_limit. */
    assert_int_equal(scheduler_submit(w->s, a3, "refused", NULL, NULL, NULL, SCHEDULER_WAIT_ASYNC), -1);
    submit(w, b, "bob");
    assert_int_equal(w->primary.njobs, 2);
    assert_string_equal(w->primary.jobs[1].text, "bob");
    fake_end(&w->primary.jobs[0], 1, BACKEND_STOP_NONE, NULL, NULL);
    assert_string_equal(w->primary.jobs[2].text, "alice two");
    fake_end(&w->primary.jobs[1], 1, BACKEND_STOP_NONE, NULL, NULL);
    fake_end(&w->primary.jobs[2], 1, BACKEND_STOP_NONE, NULL, NULL);
    assert_int_equal(scheduler_queued(w->s), 0);
}

/* A turn whose events pass user_turn_cost_max is stopped from inside its own event; a backend whose
 * stop ends the job at once (this fake's) frees the execution there: nothing may touch it after. */
static void test_turn_cost_cap(void **state)
{
    world_t *w = *state;
    w->conf.user_turn_cost_max_micro = 10000; /* 0.01 */
    world_start(w, 0);
    session_t *a = world_session(w, "alice", "a");
    int64_t id = submit(w, a, "spends");
    backend_job_t *j = &w->primary.jobs[0];
    json_object *ev = json_tokener_parse("{\"part\":{\"type\":\"step-finish\",\"cost\":0.5}}");
    j->ev.event(j->ctx, "step_finish", ev);
    json_object_put(ev);
    assert_true(j->ended);
    expect_row(w, id, "alice", "budget_exceeded", "user_turn_cost_max");
    /* What it spent counts, though its result reported no usage. */
    json_object *row = db_exec_get(w->db, id, "alice");
    assert_true(json_object_get_double(json_object_object_get(row, "cost")) > 0.49);
    json_object_put(row);
}

/* A user whose daily budget runs out while messages wait: they do not start. */
static void test_daily_budget_at_start(void **state)
{
    world_t *w = *state;
    w->conf.max_concurrent_runs = 1;
    w->conf.user_daily_cost_micro = 100000; /* 0.1 */
    world_start(w, 0);
    session_t *a1 = world_session(w, "alice", "a1"), *a2 = world_session(w, "alice", "a2");
    submit(w, a1, "first");
    int64_t second = submit(w, a2, "second");
    backend_job_t *j = &w->primary.jobs[0];
    backend_result_t r = {.ok = 1, .has_usage = 1, .tokens_in = 1, .tokens_out = 1, .cost = 1.0};
    j->ended = 1;
    j->ev.done(j->ctx, &r);
    assert_int_equal(w->primary.njobs, 1); /* the second never started */
    expect_row(w, second, "alice", "budget_exceeded", "budget");
    assert_int_equal(scheduler_queued(w->s), 0);
}

static void test_shutdown(void **state)
{
    world_t *w = *state;
    world_start(w, 0);
    session_t *a = world_session(w, "alice", "a");
    submit(w, a, "runs");
    int64_t waiting = submit(w, a, "waits");
    assert_int_equal(scheduler_shutdown(w->s), 1);
    expect_row(w, waiting, "alice", "aborted", "shut down");
    assert_int_equal(scheduler_submit(w->s, a, "late", NULL, NULL, NULL, SCHEDULER_WAIT_ASYNC), -1);
    scheduler_kill_running(w->s);
    assert_int_equal(scheduler_running(w->s), 0);
    assert_int_equal(w->finished[EXEC_INTERRUPTED], 1);
}

static void test_queue_bounds(void **state)
{
    world_t *w = *state;
    w->conf.session_queue_limit = 1;
    world_start(w, 0);
    session_t *a = world_session(w, "alice", "a");
    submit(w, a, "runs");
    submit(w, a, "waits");
    /* The session's queue holds one waiting message: the next is refused, nothing stored. */
    assert_int_equal(scheduler_submit(w->s, a, "refused", NULL, NULL, NULL, SCHEDULER_WAIT_ASYNC), -1);
    assert_int_equal(scheduler_queued(w->s), 1);
    fake_end(&w->primary.jobs[0], 1, BACKEND_STOP_NONE, NULL, NULL);
    fake_end(&w->primary.jobs[1], 1, BACKEND_STOP_NONE, NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_and_global_limit, world_setup, world_teardown),
        cmocka_unit_test_setup_teardown(test_session_fifo, world_setup, world_teardown),
        cmocka_unit_test_setup_teardown(test_abort_while_queued, world_setup, world_teardown),
        cmocka_unit_test_setup_teardown(test_finish_paths, world_setup, world_teardown),
        cmocka_unit_test_setup_teardown(test_routes_by_backend_state, world_setup, world_teardown),
        cmocka_unit_test_setup_teardown(test_placement, world_setup, world_teardown),
        cmocka_unit_test_setup_teardown(test_shared_workspace_prepared_once, world_setup, world_teardown),
        cmocka_unit_test_setup_teardown(test_user_share, world_setup, world_teardown),
        cmocka_unit_test_setup_teardown(test_round_robin, world_setup, world_teardown),
        cmocka_unit_test_setup_teardown(test_user_limits, world_setup, world_teardown),
        cmocka_unit_test_setup_teardown(test_turn_cost_cap, world_setup, world_teardown),
        cmocka_unit_test_setup_teardown(test_daily_budget_at_start, world_setup, world_teardown),
        cmocka_unit_test_setup_teardown(test_shutdown, world_setup, world_teardown),
        cmocka_unit_test_setup_teardown(test_queue_bounds, world_setup, world_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
