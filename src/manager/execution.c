#define _GNU_SOURCE
#include "execution.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <unistd.h>

#include "agent.h"
#include "storage_retry.h"
#include "log.h"
#include "metrics.h"
#include "oc_models.h"
#include "project.h"
#include "oc_run.h"
#include "oc_server.h"
#include "user.h"
#include "workspace.h"
#include "clock.h"

/* The answer text kept in memory for the reply, beyond which it is cut. */
#define EXECUTION_ANSWER_MAX (1u << 20)
/* An error message from opencode is cut here (it is stored and shown in history pages). */
#define EXECUTION_ERROR_MAX 4096
#define EXECUTION_WAITERS_MAX 8
/* What a waiting message costs beyond its text (the record, the queue node). */
#define EXECUTION_QUEUED_OVERHEAD 512
/* What a client reads when ocpm itself failed to start a run (the details, which name server paths
 * and tools' output, are in the manager's log). */
#define EXECUTION_ERR_START "the agent could not be started; the manager's log says why"
#define EXECUTION_ERR_PROJECT "the workspace could not be made its own project; the manager's log says why"
/* How long git may take to make a workspace a repository. */
#define EXECUTION_PROJECT_TIMEOUT_MS 30000

struct execution {
    manager_t *m;
    session_t *sess;
    db_exec_t rec;
    char session_id[65];
    char *owner, *prompt, *model, *agent, *argv_json, *error, *stderr_tail, *oc_sid;
    char *answer;
    size_t answer_len;
    oc_run_t *run;       /* per-session mode */
    oc_server_msg_t *smsg;  /* server mode */
    project_job_t *project; /* making the workspace a repository before the start */
    int workspace_fd;        /* the checked workspace (O_PATH), while starting */
    int route;        /* where it runs: EXECUTION_ROUTE_* */
    long queued_bytes; /* counted against the queue bounds while it waits */
    oc_run_stop_t stop_why;
    control_conn_t *waiters[EXECUTION_WAITERS_MAX];
    int waiter_stream[EXECUTION_WAITERS_MAX];
    int nwaiters;
    execution_t *qprev, *qnext; /* global FIFO of waiting executions */
    int unsaved;           /* the final record waits in storage_retry: answer from memory */
};

static execution_t *qhead, *qtail;
static long message_capacity;

enum { EXECUTION_ROUTE_NONE = 0, EXECUTION_ROUTE_SERVER = 1, EXECUTION_ROUTE_RUN = 2 };

void execution_set_message_capacity(long cap) { message_capacity = cap; }

json_object *execution_public(json_object *o)
{
    static const char *const private_keys[] = {"argv", "pid", "stderr_tail"};
    for (size_t i = 0; i < sizeof private_keys / sizeof private_keys[0]; i++)
        json_object_object_del(o, private_keys[i]);
    json_object *ow;
    if (json_object_object_get_ex(o, "owner", &ow) && json_object_is_type(ow, json_type_string) &&
        !*json_object_get_string(ow))
        json_object_object_add(o, "owner", NULL);
    return o;
}


static void execution_free(execution_t *e)
{
    if (e->workspace_fd >= 0)
        close(e->workspace_fd);
    free(e->owner);
    free(e->prompt);
    free(e->model);
    free(e->agent);
    free(e->argv_json);
    free(e->error);
    free(e->stderr_tail);
    free(e->oc_sid);
    free(e->answer);
    free(e);
}

static void execution_sync_rec(execution_t *e)
{
    e->rec.session_id = e->session_id;
    e->rec.owner = e->owner;
    e->rec.prompt = e->prompt;
    e->rec.model = e->model;
    e->rec.agent = e->agent;
    e->rec.argv_json = e->argv_json;
    e->rec.error = e->error;
    e->rec.stderr_tail = e->stderr_tail;
    e->rec.oc_session_id = e->oc_sid;
    e->rec.answer = e->answer;
    e->rec.answer_len = e->answer_len;
}

static void execution_set_error(execution_t *e, const char *msg)
{
    if (e->error || !msg)
        return;
    e->error = strndup(msg, EXECUTION_ERROR_MAX);
}

static session_t *execution_sess(const execution_t *e) { return session_find(e->owner, e->session_id); }

/* Stop counting e's text against the queue bounds (it started, or left the queue). */
static void execution_unqueue_bytes(execution_t *e)
{
    if (!e->queued_bytes)
        return;
    user_add(e->owner, USER_QUEUED_BYTES, -e->queued_bytes);
    e->queued_bytes = 0;
}

/* Write the record. A progress write that fails is only logged (the final one rewrites every
 * column); a final write that fails is handed to storage_retry, which retries it until it is stored. */
static void execution_store(execution_t *e, int finished)
{
    execution_sync_rec(e);
    if (db_exec_update(e->m->db, &e->rec, finished) == 0)
        return;
    log_error("cannot record execution", "executionId=%lld finished=%d error=%s", (long long)e->rec.id,
              finished, log_q(db_errmsg(e->m->db)));
    storage_retry_note_failure("cannot record execution");
    if (finished) {
        e->unsaved = 1;
        storage_retry_exec_final(&e->rec);
    }
}

/* Store the session's opencode session id; storage_retry retries it when the database refuses. */
static void execution_map_oc(execution_t *e, const char *oc_sid)
{
    if (db_session_set_oc(e->m->db, e->owner, e->session_id, oc_sid) == 0)
        return;
    log_error("cannot record opencode session id", "sessionId=%s error=%s", e->session_id,
              log_q(db_errmsg(e->m->db)));
    storage_retry_note_failure("cannot record opencode session id");
    storage_retry_session_oc(e->owner, e->session_id, oc_sid);
}

/* The record as clients see it: the stored row, or (if the store fails) the
 * essentials from memory. */
static json_object *execution_json(execution_t *e)
{
    json_object *o = e->unsaved ? NULL : db_exec_get(e->m->db, e->rec.id, e->owner);
    if (o)
        return execution_public(o);
    {
        const db_exec_t *r = &e->rec;
        o = json_object_new_object();
        json_object_object_add(o, "id", json_object_new_int64(r->id));
        json_object_object_add(o, "session_id", json_object_new_string(e->session_id));
        json_object_object_add(o, "mode", json_object_new_string(r->mode));
        json_object_object_add(o, "status", json_object_new_string(r->status));
        json_object_object_add(o, "queued_at", json_object_new_double(r->queued_at));
        json_object_object_add(o, "started_at", r->started_at > 0 ? json_object_new_double(r->started_at) : NULL);
        json_object_object_add(o, "finished_at",
                               r->finished_at > 0 ? json_object_new_double(r->finished_at) : NULL);
        json_object_object_add(o, "exit_code", r->has_exit ? json_object_new_int(r->exit_code) : NULL);
        json_object_object_add(o, "error", e->error ? json_object_new_string(e->error) : NULL);
        json_object_object_add(o, "storage_error", json_object_new_string(db_errmsg(e->m->db)));
        json_object_object_add(o, "stored", json_object_new_boolean(0));
    }
    return o;
}

static void execution_detach(void *ctx, control_conn_t *c)
{
    execution_t *e = ctx;
    for (int i = 0; i < e->nwaiters; i++)
        if (e->waiters[i] == c) {
            user_add(e->owner, USER_WAITERS, -1);
            e->waiters[i] = e->waiters[e->nwaiters - 1];
            e->waiter_stream[i] = e->waiter_stream[e->nwaiters - 1];
            e->nwaiters--;
            return;
        }
}

static void execution_broadcast(execution_t *e, const char *event, json_object *data)
{
    for (int i = 0; i < e->nwaiters; i++)
        if (e->waiter_stream[i])
            control_event(e->waiters[i], event, data);
}

/* Final answers to everyone waiting. */
static void execution_answer_waiters(execution_t *e)
{
    json_object *rec = execution_json(e);
    int ok = strcmp(e->rec.status, "succeeded") == 0;
    for (int i = 0; i < e->nwaiters; i++) {
        control_conn_t *c = e->waiters[i];
        if (e->waiter_stream[i]) {
            json_object *d = json_object_new_object();
            json_object_object_add(d, "execution", json_object_get(rec));
            json_object_object_add(d, "text", e->answer ? json_object_new_string(e->answer) : NULL);
            control_event(c, "done", d);
            json_object_put(d);
            control_end(c);
        } else {
            json_object *b = json_object_new_object();
            json_object_object_add(b, "execution", json_object_get(rec));
            json_object_object_add(b, "text", e->answer ? json_object_new_string(e->answer) : NULL);
            if (!ok) {
                json_object *er = json_object_new_object();
                json_object_object_add(er, "code", json_object_new_string(
                                                       strcmp(e->rec.status, "timeout") == 0   ? "run_timeout"
                                                       : strcmp(e->rec.status, "aborted") == 0 ? "aborted"
                                                       : strcmp(e->rec.status, "interrupted") == 0
                                                           ? "interrupted"
                                                           : "opencode_failed"));
                json_object_object_add(er, "message",
                                       json_object_new_string(e->error ? e->error : "opencode run failed"));
                json_object_object_add(b, "error", er);
            }
            control_reply(c, ok ? 200 : 502, b, NULL);
        }
    }
    user_add(e->owner, USER_WAITERS, -e->nwaiters);
    e->nwaiters = 0;
    json_object_put(rec);
}

static void execution_qremove(execution_t *e)
{
    if (e->qprev)
        e->qprev->qnext = e->qnext;
    else if (qhead == e)
        qhead = e->qnext;
    if (e->qnext)
        e->qnext->qprev = e->qprev;
    else if (qtail == e)
        qtail = e->qprev;
    e->qprev = e->qnext = NULL;
}

/* Finish e with status; it is no longer running or queued. Frees e. */
static void execution_finish(execution_t *e, const char *status)
{
    manager_t *m = e->m;
    execution_unqueue_bytes(e);
    e->rec.status = status;
    e->rec.finished_at = clock_now();
    execution_store(e, 1);
    metrics_observe(e->rec.mode, status, e->rec.started_at > 0 ? e->rec.finished_at - e->rec.started_at : -1,
                    (e->rec.started_at > 0 ? e->rec.started_at : e->rec.finished_at) - e->rec.queued_at);
    session_t *s = execution_sess(e);
    if (s)
        session_note_message(s, e->rec.finished_at);
    m->finished++;
    if (strcmp(status, "succeeded") != 0)
        m->failed++;
    manager_touch(m);
    execution_answer_waiters(e);
    execution_free(e);
}

static void execution_on_event(void *ctx, const oc_event_t *ev)
{
    execution_t *e = ctx;
    if (ev->session_id && !e->oc_sid) {
        e->oc_sid = strdup(ev->session_id);
        session_t *s = execution_sess(e);
        if (s && !session_oc_id(s)) {
            session_set_oc_id(s, ev->session_id);
            execution_map_oc(e, ev->session_id);
        }
    }
    if (ev->text) {
        size_t n = strlen(ev->text);
        if (e->answer_len + n + 2 <= EXECUTION_ANSWER_MAX) {
            char *na = realloc(e->answer, e->answer_len + n + 2);
            if (na) {
                e->answer = na;
                if (e->answer_len)
                    e->answer[e->answer_len++] = '\n';
                memcpy(e->answer + e->answer_len, ev->text, n + 1);
                e->answer_len += n;
            }
        }
    }
    if (ev->has_usage) {
        e->rec.has_usage = 1;
        e->rec.tokens_in += ev->tokens_in;
        e->rec.tokens_out += ev->tokens_out;
        e->rec.cost += ev->cost;
    }
    if (ev->error)
        execution_set_error(e, ev->error);
    execution_broadcast(e, ev->type, ev->obj);
}

/* The final status for a run ocpm stopped, with the error it records. */
static const char *execution_stopped_status(execution_t *e, oc_run_stop_t why)
{
    char msg[160];
    switch (why) {
    case RUN_STOP_TIMEOUT:
        snprintf(msg, sizeof msg, "run exceeded run_timeout (%ld ms)", e->m->conf->run_timeout_ms);
        execution_set_error(e, msg);
        return "timeout";
    case RUN_STOP_ABORT:
        execution_set_error(e, "aborted by request");
        return "aborted";
    case RUN_STOP_SHUTDOWN:
        execution_set_error(e, "killed at manager shutdown after shutdown_timeout");
        return "interrupted";
    }
    return "failed";
}

/* e no longer holds a run slot (its backend ended, or it never got going). */
static void execution_release(execution_t *e)
{
    e->m->running--;
    user_add(e->owner, USER_RUNNING, -1);
    session_t *s = execution_sess(e);
    if (s && session_running(s) == e)
        session_set_running(s, NULL);
}

static void execution_on_done(void *ctx, const oc_run_result_t *r)
{
    execution_t *e = ctx;
    manager_t *m = e->m;
    e->run = NULL;
    execution_release(e);
    e->rec.has_exit = r->has_exit;
    e->rec.exit_code = r->exit_code;
    e->rec.signal = r->signal;
    e->rec.peak_rss_kb = r->ru.ru_maxrss;
    e->rec.cpu_user_ms = r->ru.ru_utime.tv_sec * 1000.0 + r->ru.ru_utime.tv_usec / 1000.0;
    e->rec.cpu_sys_ms = r->ru.ru_stime.tv_sec * 1000.0 + r->ru.ru_stime.tv_usec / 1000.0;
    if (r->stderr_tail)
        e->stderr_tail = strdup(r->stderr_tail);
    const char *status;
    char msg[256];
    if (r->stopped) {
        status = execution_stopped_status(e, r->stopped);
    } else if (r->has_exit && r->exit_code == 0 && !e->error) {
        status = "succeeded";
    } else {
        status = "failed";
        if (r->has_exit)
            snprintf(msg, sizeof msg, "opencode exited with status %d", r->exit_code);
        else
            snprintf(msg, sizeof msg, "opencode was killed by signal %d (%s)", r->signal, strsignal(r->signal));
        execution_set_error(e, msg);
    }
    double dur = (clock_now() - e->rec.started_at) * 1000.0;
    char pidbuf[32];
    snprintf(pidbuf, sizeof pidbuf, "%ld", e->rec.pid);
    log_info("OpenCode command completed",
             "processId=%s executionId=%lld sessionId=%s status=%s duration=%.0f exitCode=%d signal=%d "
             "peakRssKb=%ld activeProcesses=%ld",
             pidbuf, (long long)e->rec.id, e->session_id, status, dur, r->has_exit ? r->exit_code : -1, r->signal,
             r->ru.ru_maxrss, m->running);
    execution_finish(e, status);
    execution_schedule(m);
}

static void execution_srv_session(void *ctx, const char *oc_sid)
{
    execution_t *e = ctx;
    free(e->oc_sid);
    e->oc_sid = strdup(oc_sid);
    session_t *s = execution_sess(e);
    if (s) {
        session_set_oc_id(s, oc_sid);
        execution_map_oc(e, oc_sid);
    }
}

static void execution_srv_event(void *ctx, const char *type, json_object *props)
{
    execution_broadcast(ctx, type, props);
}

static void execution_srv_done(void *ctx, const oc_server_result_t *r)
{
    execution_t *e = ctx;
    manager_t *m = e->m;
    e->smsg = NULL;
    execution_release(e);
    if (r->text && !e->answer) {
        e->answer = strdup(r->text);
        e->answer_len = e->answer ? strlen(e->answer) : 0;
    }
    if (r->has_usage) {
        e->rec.has_usage = 1;
        e->rec.tokens_in = r->tokens_in;
        e->rec.tokens_out = r->tokens_out;
        e->rec.cost = r->cost;
    }
    /* A stop's own reason first: the server's answer to the abort ("Aborted") is its consequence. */
    const char *status = r->stopped ? execution_stopped_status(e, r->stopped) : r->ok ? "succeeded" : "failed";
    if (r->error)
        execution_set_error(e, r->error);
    log_info("OpenCode command completed",
             "processId=%ld executionId=%lld sessionId=%s mode=server status=%s duration=%.0f activeProcesses=%ld",
             e->rec.pid, (long long)e->rec.id, e->session_id, status, (clock_now() - e->rec.started_at) * 1000.0,
             m->running);
    execution_finish(e, status);
    execution_schedule(m);
}

/* Tell the streaming clients that e started, and how. */
static void execution_announce(execution_t *e)
{
    json_object *d = json_object_new_object();
    json_object_object_add(d, "execution_id", json_object_new_int64(e->rec.id));
    json_object_object_add(d, "mode", json_object_new_string(e->rec.mode));
    execution_broadcast(e, "started", d);
    json_object_put(d);
}

/* Server mode: the message goes to the one opencode server over HTTP. */
static void execution_launch_server(manager_t *m, execution_t *e, session_t *s)
{
    static const oc_server_msg_ops_t ops = {execution_srv_session, execution_srv_event, execution_srv_done};
    e->rec.mode = "server";
    e->rec.pid = oc_server_pid();
    if (session_oc_id(s))
        e->oc_sid = strdup(session_oc_id(s));
    execution_store(e, 0);
    log_info("Executing OpenCode command (server)",
             "processId=%ld executionId=%lld sessionId=%s activeProcesses=%ld queueWaitMs=%.0f", e->rec.pid,
             (long long)e->rec.id, e->session_id, m->running, (e->rec.started_at - e->rec.queued_at) * 1000.0);
    execution_announce(e);
    int streaming = 0;
    for (int i = 0; i < e->nwaiters; i++)
        streaming |= e->waiter_stream[i];
    /* The model always explicit: the server keeps a session's last one, so a message that named
     * another must not decide what the next one uses. */
    const char *model = e->model ? e->model : oc_models_default();
    e->smsg = oc_server_send(session_workspace(s), session_oc_id(s), e->prompt, model, e->agent, m->conf->run_timeout_ms,
                       m->conf->kill_grace_ms, streaming, &ops, e);
    /* oc_server_send calls back only once it has returned a message; NULL means nothing started. */
    if (!e->smsg) {
        execution_release(e);
        execution_set_error(e, "cannot send the message to the opencode server");
        execution_finish(e, "failed");
    }
}

/* Per message: one `opencode run` as the agent, in the checked workspace. */
static void execution_launch_run(manager_t *m, execution_t *e, session_t *s)
{
    static const oc_run_ops_t ops = {execution_on_event, execution_on_done};
    char err[512];
    agent_launch_t as;
    /* A run standing in for the server (fallback) continues the server's conversations, so it
     * uses the server's opencode data; otherwise the owner's own. */
    if (agent_launch(&as, oc_server_state() == OC_SERVER_OFF ? e->owner : NULL, e->workspace_fd, err, sizeof err) != 0) {
        log_error("OpenCode process manager could not start a run", "executionId=%lld error=%s",
                  (long long)e->rec.id, log_q(err));
        execution_release(e);
        execution_set_error(e, EXECUTION_ERR_START);
        execution_finish(e, "failed");
        return;
    }
    oc_run_spec_t spec = {
        .bin = m->conf->opencode_bin,
        .workspace_fd = e->workspace_fd,
        .oc_session = session_oc_id(s),
        .model = e->model,
        .agent = e->agent,
        .text = e->prompt,
        .as = &as,
        .timeout_ms = m->conf->run_timeout_ms,
        .grace_ms = m->conf->kill_grace_ms,
        .stderr_tail = (size_t)m->conf->stderr_tail_bytes,
    };
    pid_t pid = 0;
    e->rec.mode = "per-session";
    e->run = oc_run_start(m->loop, &spec, &ops, e, &pid, &e->argv_json, err, sizeof err);
    agent_launch_done(&as);
    if (!e->run) {
        log_error("OpenCode process manager could not start a run", "executionId=%lld error=%s",
                  (long long)e->rec.id, log_q(err));
        execution_release(e);
        execution_set_error(e, EXECUTION_ERR_START);
        execution_finish(e, "failed");
        return;
    }
    m->spawned++;
    e->rec.pid = pid;
    execution_store(e, 0);
    log_info("Executing OpenCode command (standalone)",
             "processId=%ld executionId=%lld sessionId=%s activeProcesses=%ld queueWaitMs=%.0f", (long)pid,
             (long long)e->rec.id, e->session_id, m->running, (e->rec.started_at - e->rec.queued_at) * 1000.0);
    execution_announce(e);
}

/* The workspace is ready: hand the message to its backend. */
static void execution_launch(execution_t *e)
{
    manager_t *m = e->m;
    session_t *s = execution_sess(e);
    if (!s) { /* the session went away while its workspace was prepared */
        execution_release(e);
        execution_finish(e, "aborted");
        return;
    }
    if (e->route == EXECUTION_ROUTE_SERVER && oc_server_state() == OC_SERVER_READY)
        execution_launch_server(m, e, s);
    else if (e->route == EXECUTION_ROUTE_SERVER) {
        execution_release(e);
        execution_set_error(e, "the opencode server became unavailable before the message started");
        execution_finish(e, "failed");
    } else
        execution_launch_run(m, e, s);
    if (e->run || e->smsg) {
        close(e->workspace_fd);
        e->workspace_fd = -1;
    }
}

static void execution_project_done(void *ctx, int ok, const char *error)
{
    execution_t *e = ctx;
    e->project = NULL;
    if (!ok) {
        log_error("cannot prepare a workspace", "executionId=%lld sessionId=%s error=%s", (long long)e->rec.id,
                  e->session_id, log_q(error));
        execution_release(e);
        execution_set_error(e, EXECUTION_ERR_PROJECT);
        execution_finish(e, "failed");
    } else {
        execution_launch(e);
    }
    execution_schedule(e->m);
}

/* Take a slot and start e: check its workspace again (a failed check fails the message, nothing
 * runs), make it its own project when it is not yet, then launch. */
static void execution_begin(manager_t *m, execution_t *e, session_t *s, int route)
{
    execution_unqueue_bytes(e);
    session_set_running(s, e);
    m->running++;
    user_add(e->owner, USER_RUNNING, 1);
    e->route = route;
    e->rec.started_at = clock_now();
    e->rec.status = "running";
    const char *why = NULL;
    int has_git = 0;
    e->workspace_fd = workspace_check(m->conf->workspace_root, session_workspace(s), &has_git, &why);
    if (e->workspace_fd < 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "workspace check failed: %s; nothing was run", why);
        log_warn("workspace check failed; the message does not run", "executionId=%lld sessionId=%s reason=%s",
                 (long long)e->rec.id, e->session_id, log_q(why));
        execution_release(e);
        execution_set_error(e, msg);
        execution_finish(e, "failed");
        return;
    }
    if (has_git) {
        execution_launch(e);
        return;
    }
    char err[256];
    e->project = project_prepare(m->loop, m->conf->git_bin, e->owner, e->workspace_fd, session_workspace(s),
                                 EXECUTION_PROJECT_TIMEOUT_MS, execution_project_done, e, err, sizeof err);
    if (!e->project) {
        log_error("cannot prepare a workspace", "executionId=%lld sessionId=%s error=%s", (long long)e->rec.id,
                  e->session_id, log_q(err));
        execution_release(e);
        execution_set_error(e, EXECUTION_ERR_PROJECT);
        execution_finish(e, "failed");
    }
}

/* Where a waiting message may run now: the server, a per-message process, or nowhere yet. */
static int execution_route(manager_t *m)
{
    switch (oc_server_state()) {
    case OC_SERVER_OFF:
        return EXECUTION_ROUTE_RUN;
    case OC_SERVER_READY:
        return EXECUTION_ROUTE_SERVER;
    case OC_SERVER_DRAINING: /* recycling: wait for the fresh server */
    case OC_SERVER_STOPPING:
        return EXECUTION_ROUTE_NONE;
    default: /* starting or restarting after a failure */
        return m->conf->fallback ? EXECUTION_ROUTE_RUN : EXECUTION_ROUTE_NONE;
    }
}

/* May e's owner take one more slot on this route? No user holds more than user_max_share. */
static int execution_owner_may_run(manager_t *m, const execution_t *e, int route)
{
    long cap = route == EXECUTION_ROUTE_SERVER && m->conf->server_max_inflight < m->conf->max_concurrent_runs
                   ? m->conf->server_max_inflight
                   : m->conf->max_concurrent_runs;
    return user_count(e->owner, USER_RUNNING) < user_share_of(cap, m->conf->user_max_share);
}

void execution_schedule(manager_t *m)
{
    if (m->stopping)
        return;
    int route = execution_route(m);
    double now = clock_now();
    for (execution_t *e = qhead, *next; e; e = next) {
        next = e->qnext;
        session_t *s = execution_sess(e);
        if (!s)
            continue;
        if (route == EXECUTION_ROUTE_NONE) {
            /* fallback = off: wait for the server, but not without end. */
            if (oc_server_state() != OC_SERVER_DRAINING && (now - e->rec.queued_at) * 1000.0 > m->conf->fallback_wait_ms) {
                execution_qremove(e);
                session_unqueue(s, e);
                m->queued--;
                execution_set_error(e, "the opencode server is unavailable and fallback is off");
                execution_finish(e, "failed");
            }
            continue;
        }
        if (m->running >= m->conf->max_concurrent_runs ||
            (route == EXECUTION_ROUTE_SERVER && oc_server_in_flight() >= m->conf->server_max_inflight) ||
            (route == EXECUTION_ROUTE_RUN && oc_server_state() != OC_SERVER_OFF && m->running >= m->conf->fallback_max_runs))
            break;
        if (session_running(s) || !execution_owner_may_run(m, e, route))
            continue;
        execution_qremove(e);
        session_unqueue(s, e);
        m->queued--;
        execution_begin(m, e, s, route);
        /* Starting may finish (and free) e, and only removes e: next is intact. */
    }
}

/* The bounds a new message must pass; answers c and returns -1 when it may not be queued. */
static int execution_admit(manager_t *m, session_t *s, size_t bytes, execution_wait_t how, control_conn_t *c)
{
    const conf_t *cf = m->conf;
    const char *owner = session_owner(s);
    if ((long)session_waiting(s) >= cf->session_queue_limit)
        return control_error_retry(c, 429, "queue_full", "this session's queue is full; retry later", "session",
                               cf->retry_after_s), -1;
    if (user_count(owner, USER_QUEUED_BYTES) + (long)bytes > cf->user_queue_max_bytes)
        return control_error_retry(c, 429, "queue_full", "your messages waiting to run are over user_queue_max_bytes; "
                               "retry later", "user", cf->retry_after_s), -1;
    if (user_total(USER_QUEUED_BYTES) + (long)bytes > cf->queue_max_bytes)
        return control_error_retry(c, 429, "queue_full", "the manager's queue is full (queue_max_bytes); retry later",
                               "manager", cf->retry_after_s), -1;
    if (how != EXECUTION_WAIT_ASYNC && message_capacity > 0 &&
        user_count(owner, USER_WAITERS) >= user_share_of(message_capacity, cf->user_max_share))
        return control_error_retry(c, 429, "user_busy", "you hold your share of the pool's message capacity "
                               "(user_max_share); wait for a message to finish, or send with Prefer: respond-async",
                               NULL, cf->retry_after_s), -1;
    return 0;
}

int execution_submit(manager_t *m, session_t *s, const char *text, const char *model, const char *agent, control_conn_t *c,
                execution_wait_t how)
{
    size_t bytes = strlen(text) + (model ? strlen(model) : 0) + (agent ? strlen(agent) : 0) + EXECUTION_QUEUED_OVERHEAD;
    if (execution_admit(m, s, bytes, how, c) != 0)
        return -1;
    execution_t *e = calloc(1, sizeof *e);
    if (!e)
        return control_error(c, 500, "internal", "out of memory"), -1;
    e->m = m;
    e->workspace_fd = -1;
    snprintf(e->session_id, sizeof e->session_id, "%s", session_id(s));
    e->owner = strdup(session_owner(s));
    e->prompt = strdup(text);
    e->model = model ? strdup(model) : NULL;
    e->agent = agent ? strdup(agent) : NULL;
    if (!e->owner || !e->prompt || (model && !e->model) || (agent && !e->agent)) {
        execution_free(e);
        return control_error(c, 500, "internal", "out of memory"), -1;
    }
    e->rec.prompt_len = strlen(text);
    e->rec.status = "queued";
    e->rec.mode = "per-session";
    e->rec.queued_at = clock_now();
    execution_sync_rec(e);
    if (db_exec_insert(m->db, &e->rec) != 0) {
        log_error("cannot record execution", "sessionId=%s error=%s", e->session_id, log_q(db_errmsg(m->db)));
        execution_free(e);
        return storage_retry_reply_error(c, "cannot record the execution; nothing was run"), -1;
    }
    if (session_enqueue(s, e) != 0 || user_add(e->owner, USER_QUEUED_BYTES, (long)bytes) != 0) {
        session_unqueue(s, e);
        execution_set_error(e, "out of memory");
        execution_finish(e, "failed");
        return control_error(c, 500, "internal", "out of memory"), -1;
    }
    e->queued_bytes = (long)bytes;
    e->qprev = qtail;
    if (qtail)
        qtail->qnext = e;
    else
        qhead = e;
    qtail = e;
    m->queued++;
    manager_touch(m);

    json_object *info = json_object_new_object();
    json_object_object_add(info, "execution_id", json_object_new_int64(e->rec.id));
    json_object_object_add(info, "session_id", json_object_new_string(e->session_id));
    json_object_object_add(info, "position", json_object_new_int64((int64_t)session_waiting(s)));
    if (how == EXECUTION_WAIT_ASYNC) {
        json_object *h = json_object_new_object();
        char loc[64];
        snprintf(loc, sizeof loc, "/api/executions/%lld", (long long)e->rec.id);
        json_object_object_add(h, "Location", json_object_new_string(loc));
        json_object_object_add(info, "status", json_object_new_string("queued"));
        control_reply(c, 202, info, h);
    } else {
        e->waiters[0] = c;
        e->waiter_stream[0] = how == EXECUTION_WAIT_STREAM;
        e->nwaiters = 1;
        user_add(e->owner, USER_WAITERS, 1);
        control_set_waiter(c, execution_detach, e);
        if (how == EXECUTION_WAIT_STREAM) {
            control_stream_start(c);
            control_event(c, "queued", info);
        }
        json_object_put(info);
    }
    execution_schedule(m);
    return 0;
}

/* Stop e wherever it is in its start: its workspace being prepared, its run, its server message. */
static void execution_stop(execution_t *e, oc_run_stop_t why)
{
    if (e->run)
        oc_run_stop(e->run, why);
    else if (e->smsg)
        oc_server_stop_msg(e->smsg, why);
    else if (e->project && !e->stop_why) {
        e->stop_why = why;
        project_cancel(e->project);
        e->project = NULL;
        execution_release(e);
        execution_finish(e, execution_stopped_status(e, why));
    }
}

int execution_abort_session(manager_t *m, session_t *s, const char *reason)
{
    int n = 0;
    execution_t *e;
    while ((e = session_dequeue(s))) {
        execution_qremove(e);
        m->queued--;
        execution_set_error(e, reason);
        execution_finish(e, "aborted");
        n++;
    }
    e = session_running(s);
    if (e && (e->run || e->smsg || e->project)) {
        execution_set_error(e, reason);
        execution_stop(e, RUN_STOP_ABORT);
        n++;
    }
    return n;
}

static void execution_cancel_each(void *ctx, session_t *s)
{
    manager_t *m = ctx;
    execution_t *e;
    while ((e = session_dequeue(s))) {
        execution_qremove(e);
        m->queued--;
        execution_set_error(e, "manager shut down before the run started");
        execution_finish(e, "aborted");
    }
}

long execution_shutdown_cancel(manager_t *m)
{
    session_each(execution_cancel_each, m);
    return m->running;
}

static void execution_kill_each(void *ctx, session_t *s)
{
    (void)ctx;
    execution_t *e = session_running(s);
    if (e)
        execution_stop(e, RUN_STOP_SHUTDOWN);
}

void execution_shutdown_kill(manager_t *m)
{
    (void)m;
    session_each(execution_kill_each, NULL);
}
