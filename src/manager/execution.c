#define _GNU_SOURCE
#include "scheduler_internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "valid.h"
#include "changes.h"
#include "workspace.h"

/* An error message is cut here (it is stored and shown in history pages). */
#define EXECUTION_ERROR_MAX 4096
/* What a client reads when ocpm itself failed to start a run (the details, which name server paths
 * and tools' output, are in the manager's log). */
#define EXECUTION_ERR_START "the agent could not be started; the manager's log says why"

static void execution_free(execution_t *e)
{
    scheduler_t *s = e->sch;
    if (e->live_prev)
        e->live_prev->live_next = e->live_next;
    else if (s->live == e)
        s->live = e->live_next;
    if (e->live_next)
        e->live_next->live_prev = e->live_prev;
    turn_free(e->turn);
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

/* Point the record's borrowed strings at what e holds now. */
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

void execution_set_error(execution_t *e, const char *msg)
{
    if (e->error || !msg)
        return;
    e->error = strndup(msg, EXECUTION_ERROR_MAX);
}

static session_t *execution_session(const execution_t *e)
{
    return session_find(e->sch->cfg.sessions, e->owner, e->session_id);
}

execution_t *execution_new(scheduler_t *s, session_t *sess, const char *text, const char *model, const char *agent,
                           const char **err)
{
    execution_t *e = calloc(1, sizeof *e);
    if (!e)
        return *err = "out of memory", NULL;
    e->sch = s;
    e->stand_in = -1;
    e->reserved_on = -1;
    e->workspace_fd = -1;
    const conf_t *cf = s->cfg.conf;
    turn_limits_t lim = {.max_events = cf->events_max, .max_event_bytes = cf->events_max_bytes,
                         .max_input_bytes = cf->tool_input_max_bytes, .store_prompts = cf->store_prompts};
    e->turn = turn_new(&lim);
    e->live_next = s->live;
    if (s->live)
        s->live->live_prev = e;
    s->live = e;
    snprintf(e->session_id, sizeof e->session_id, "%s", session_id(sess));
    e->owner = strdup(session_owner(sess));
    e->prompt = strdup(text);
    e->model = model ? strdup(model) : NULL;
    e->agent = agent ? strdup(agent) : NULL;
    if (!e->turn || !e->owner || !e->prompt || (model && !e->model) || (agent && !e->agent)) {
        execution_free(e);
        return *err = "out of memory", NULL;
    }
    e->rec.prompt_len = strlen(text);
    e->rec.status = EXEC_QUEUED;
    e->rec.mode = s->cfg.primary[0].ops->mode;
    e->rec.pool = s->cfg.pool;
    e->rec.queued_at = clock_now();
    execution_sync_rec(e);
    if (db_exec_insert(s->cfg.db, &e->rec) != 0) {
        log_error("cannot record execution", "sessionId=%s error=%s", e->session_id, log_q(db_errmsg(s->cfg.db)));
        execution_free(e);
        return *err = "storage", NULL;
    }
    return e;
}

int execution_hold_bytes(execution_t *e, long bytes)
{
    if (user_add(e->sch->cfg.users, e->owner, USER_QUEUED_BYTES, bytes) != 0)
        return -1;
    if (user_add(e->sch->cfg.users, e->owner, USER_QUEUED, 1) != 0) {
        user_add(e->sch->cfg.users, e->owner, USER_QUEUED_BYTES, -bytes);
        return -1;
    }
    e->queued_bytes = bytes;
    return 0;
}

/* Stop counting e's text against the queue bounds (it started, or left the queue). */
static void execution_release_bytes(execution_t *e)
{
    if (!e->queued_bytes)
        return;
    user_add(e->sch->cfg.users, e->owner, USER_QUEUED_BYTES, -e->queued_bytes);
    user_add(e->sch->cfg.users, e->owner, USER_QUEUED, -1);
    e->queued_bytes = 0;
}

void execution_detach(void *ctx, control_conn_t *c)
{
    execution_t *e = ctx;
    for (int i = 0; i < e->nwaiters; i++)
        if (e->waiters[i] == c) {
            user_add(e->sch->cfg.users, e->owner, USER_WAITERS, -1);
            e->waiters[i] = e->waiters[e->nwaiters - 1];
            e->waiter_stream[i] = e->waiter_stream[e->nwaiters - 1];
            e->nwaiters--;
            return;
        }
}

int execution_add_waiter(execution_t *e, control_conn_t *c, int stream)
{
    if (e->nwaiters >= EXECUTION_WAITERS_MAX || user_add(e->sch->cfg.users, e->owner, USER_WAITERS, 1) != 0)
        return -1;
    e->waiters[e->nwaiters] = c;
    e->waiter_stream[e->nwaiters] = stream;
    e->nwaiters++;
    control_set_waiter(c, execution_detach, e);
    return 0;
}

/* Write the record. A progress write that fails is only logged (the final one rewrites every
 * column); a final write that fails is handed to storage_retry, which retries it until it is stored. */
static void execution_store(execution_t *e, int finished)
{
    db_t *db = e->sch->cfg.db;
    execution_sync_rec(e);
    if (db_exec_update(db, &e->rec, finished) == 0)
        return;
    log_error("cannot record execution", "executionId=%lld finished=%d error=%s", (long long)e->rec.id, finished,
              log_q(db_errmsg(db)));
    storage_retry_note_failure(e->sch->cfg.storage, "cannot record execution");
    if (finished) {
        e->unsaved = 1;
        storage_retry_exec_final(e->sch->cfg.storage, &e->rec);
    }
}

/* The record as clients see it: from memory, the row as it was written (or is still to be). */
static json_object *execution_json(execution_t *e)
{
    execution_sync_rec(e);
    json_object *o = db_exec_public(db_exec_json(e->sch->cfg.db, &e->rec));
    if (e->unsaved) {
        json_object_object_add(o, "stored", json_object_new_boolean(0));
        json_object_object_add(o, "storage_error", json_object_new_string(db_errmsg(e->sch->cfg.db)));
    }
    return o;
}

/* The error code a synchronous client reads for a status that is not success. */
static const char *execution_error_code(exec_status_t st)
{
    static const char *const codes[EXEC_NSTATUS] = {
        [EXEC_TIMEOUT] = "run_timeout", [EXEC_ABORTED] = "aborted", [EXEC_INTERRUPTED] = "interrupted",
        [EXEC_BUDGET] = "budget_exceeded"};
    return codes[st] ? codes[st] : "opencode_failed";
}

/* The final answer, to everyone waiting: the execution and its text (and the error, for a sync
 * client of a failed one). */
/* The final record and the turn (tool calls, events, the stream's last event) in one transaction:
 * one commit per message's end, written before anyone is told. When it fails, each is written on
 * its own as before (the record is retried until stored). Returns the last event's id. */
static long long execution_record_final(execution_t *e)
{
    db_t *db = e->sch->cfg.db;
    json_object *rec = execution_json(e);
    /* The stream's last event, kept with the others (a replay ends the same way). */
    json_object *done = json_object_new_object();
    json_object_object_add(done, "execution", rec);
    json_object_object_add(done, "text", e->answer ? json_object_new_string(e->answer) : NULL);
    long long done_id = turn_log(e->turn, "done", json_object_to_json_string_ext(done, JSON_C_TO_STRING_PLAIN |
                                                                                      JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(done);
    if (db_tx_begin(db) == 0) {
        execution_sync_rec(e);
        if (db_exec_update(db, &e->rec, 1) == 0 && turn_store(e->turn, db, e->rec.id) == 0 && db_tx_commit(db) == 0)
            return done_id;
        db_tx_rollback(db);
    }
    execution_store(e, 1);
    if (turn_store(e->turn, db, e->rec.id) != 0)
        log_error("cannot record the turn's tool calls and events", "executionId=%lld error=%s",
                  (long long)e->rec.id, log_q(db_errmsg(db)));
    return done_id;
}

static void execution_answer_waiters(execution_t *e, long long done_id)
{
    json_object *rec = execution_json(e);
    int ok = e->rec.status == EXEC_SUCCEEDED;
    if (e->sch->cfg.ended)
        e->sch->cfg.ended(e->sch->cfg.ctx, e->rec.id, rec, e->turn);
    /* A copy: a write that fails closes its connection, which detaches it from e->waiters. */
    control_conn_t *waiters[EXECUTION_WAITERS_MAX];
    int stream[EXECUTION_WAITERS_MAX], n = e->nwaiters;
    memcpy(waiters, e->waiters, sizeof waiters);
    memcpy(stream, e->waiter_stream, sizeof stream);
    user_add(e->sch->cfg.users, e->owner, USER_WAITERS, -n);
    e->nwaiters = 0;
    for (int i = 0; i < n; i++) {
        json_object *b = json_object_new_object();
        json_object_object_add(b, "execution", json_object_get(rec));
        json_object_object_add(b, "text", e->answer ? json_object_new_string(e->answer) : NULL);
        if (stream[i]) {
            control_event(waiters[i], done_id, "done", b);
            json_object_put(b);
            control_end(waiters[i]);
            continue;
        }
        if (!ok) {
            json_object *er = json_object_new_object();
            json_object_object_add(er, "code", json_object_new_string(execution_error_code(e->rec.status)));
            json_object_object_add(er, "message", json_object_new_string(e->error ? e->error : "opencode run failed"));
            json_object_object_add(b, "error", er);
        }
        control_reply(waiters[i], ok ? 200 : 502, b, NULL);
    }
    json_object_put(rec);
}

void execution_finish(execution_t *e, exec_status_t status)
{
    scheduler_t *s = e->sch;
    execution_release_waiters(e, -1, NULL); /* e stopped while it prepared their workspace */
    scheduler_unreserve(s, e);
    session_t *sess = execution_session(e);
    execution_release_bytes(e);
    if (e->holds_slot) {
        e->holds_slot = 0;
        s->running--;
        if (e->stand_in >= 0)
            s->stand_ins--;
        user_add(s->cfg.users, e->owner, USER_RUNNING, -1);
        if (sess && session_running(sess) == e)
            session_set_running(sess, NULL);
    }
    e->rec.status = status;
    e->rec.finished_at = clock_now();
    if (!e->rec.has_changes)
        e->rec.has_changes = turn_changes(e->turn, e->rec.changes);
    long long done_id = execution_record_final(e);
    if (s->cfg.finished)
        s->cfg.finished(s->cfg.ctx, e->rec.mode, status,
                        e->rec.started_at > 0 ? e->rec.finished_at - e->rec.started_at : -1,
                        (e->rec.started_at > 0 ? e->rec.started_at : e->rec.finished_at) - e->rec.queued_at);
    if (sess)
        session_note_message(sess, e->rec.finished_at);
    if (s->cfg.budget && e->rec.has_usage)
        budget_spend(s->cfg.budget, e->owner, e->rec.tokens_in + e->rec.tokens_out, e->rec.cost, e->rec.finished_at);
    s->finished++;
    if (status != EXEC_SUCCEEDED)
        s->failed++;
    execution_answer_waiters(e, done_id);
    execution_free(e);
}

/* The status of a job ocpm stopped, and the error it records (unless an earlier cause was). */
static exec_status_t execution_stopped_status(execution_t *e, backend_stop_t why)
{
    static const struct {
        exec_status_t status;
        const char *error;
    } stops[] = {
        [BACKEND_STOP_NONE] = {EXEC_FAILED, NULL},
        [BACKEND_STOP_ABORT] = {EXEC_ABORTED, "aborted by request"},
        [BACKEND_STOP_TIMEOUT] = {EXEC_TIMEOUT, NULL},
        [BACKEND_STOP_SHUTDOWN] = {EXEC_INTERRUPTED, "killed at manager shutdown after shutdown_timeout"},
        [BACKEND_STOP_BUDGET] = {EXEC_BUDGET, "stopped: the turn's cost passed user_turn_cost_max"},
    };
    if (why == BACKEND_STOP_TIMEOUT) {
        char msg[96];
        snprintf(msg, sizeof msg, "run exceeded run_timeout (%ld ms)", e->sch->cfg.conf->run_timeout_ms);
        execution_set_error(e, msg);
    }
    execution_set_error(e, stops[why].error);
    return stops[why].status;
}

/* The session's opencode conversation, once known: remembered, and stored (storage_retry retries
 * it when the database refuses). */
static void execution_on_session(void *ctx, const char *oc_sid)
{
    execution_t *e = ctx;
    if (!e->oc_sid || strcmp(e->oc_sid, oc_sid) != 0) {
        free(e->oc_sid);
        e->oc_sid = strdup(oc_sid);
    }
    session_t *sess = execution_session(e);
    if (!sess || (session_oc_id(sess) && strcmp(session_oc_id(sess), oc_sid) == 0))
        return;
    session_set_oc_id(sess, oc_sid);
    db_t *db = e->sch->cfg.db;
    if (db_session_set_oc(db, e->owner, e->session_id, oc_sid) == 0)
        return;
    log_error("cannot record opencode session id", "sessionId=%s error=%s", e->session_id, log_q(db_errmsg(db)));
    storage_retry_note_failure(e->sch->cfg.storage, "cannot record opencode session id");
    storage_retry_session_oc(e->sch->cfg.storage, e->owner, e->session_id, oc_sid);
}

/* The job ended, however it ended: what it said goes into the record, then the one finish path. */
/* The turn is over and nothing is awaited any more: record, answer, free. */
static void execution_conclude(execution_t *e)
{
    scheduler_t *s = e->sch;
    exec_status_t st = e->final_status;
    ask_turn_ended(s->cfg.asks, e->rec.id);
    log_info("OpenCode command completed",
             "processId=%ld executionId=%lld sessionId=%s mode=%s status=%s duration=%.0f exitCode=%d signal=%d "
             "peakRssKb=%ld activeProcesses=%ld",
             e->rec.pid, (long long)e->rec.id, e->session_id, e->rec.mode, exec_status_name(st),
             (clock_now() - e->rec.started_at) * 1000.0, e->rec.has_exit ? e->rec.exit_code : -1, e->rec.signal,
             e->rec.peak_rss_kb, s->running - 1);
    execution_finish(e, st);
    scheduler_kick(s);
}

void execution_maybe_conclude(execution_t *e)
{
    if (e->concluding && !e->changes && ask_answering(e->sch->cfg.asks, e->rec.id) == 0)
        execution_conclude(e);
}

static void execution_changes_done(void *ctx, int ok, const long long counts[3], const char *error)
{
    execution_t *e = ctx;
    e->changes = NULL;
    if (ok) {
        e->rec.has_changes = 1;
        memcpy(e->rec.changes, counts, sizeof e->rec.changes);
    } else {
        log_warn("cannot count the files a turn changed", "executionId=%lld error=%s", (long long)e->rec.id,
                 log_q(error));
    }
    execution_maybe_conclude(e);
}

/* Where opencode gives no diff summary (opencode run), git counts what the turn's tools changed
 * (changes.h). A turn without a tool call changed nothing. */
static void execution_count_changes(execution_t *e)
{
    if (e->backend->ops->summarises_changes)
        return;
    if (turn_tool_count(e->turn) == 0) {
        e->rec.has_changes = 1;
        return;
    }
    session_t *sess = execution_session(e);
    const char *why = NULL;
    int has_git = 0;
    int fd = sess ? workspace_check(e->sch->cfg.agent, e->sch->cfg.conf->workspace_root, session_workspace(sess), &has_git, &why) : -1;
    char err[256] = "";
    if (fd >= 0 && has_git)
        e->changes = changes_count(e->sch->cfg.loop, e->sch->cfg.agent, e->sch->cfg.conf->git_bin, e->owner, fd,
                                   EXECUTION_PROJECT_TIMEOUT_MS, execution_changes_done, e, err, sizeof err);
    if (fd >= 0)
        close(fd);
    if (!e->changes)
        log_warn("cannot count the files a turn changed", "executionId=%lld error=%s", (long long)e->rec.id,
                 log_q(err[0] ? err : why ? why : "the workspace is not a git repository"));
}

static void execution_on_done(void *ctx, const backend_result_t *r)
{
    execution_t *e = ctx;
    /* backend.h: done never comes before start has returned (e is still being launched). */
    assert(!e->starting);
    e->job = NULL;
    /* The answer as the backend bounded it (oc_run at answer_max, the server at its reply's bound). */
    if (r->text && !e->answer) {
        e->answer = strndup(r->text, r->text_len);
        e->answer_len = e->answer ? strlen(e->answer) : 0;
    }
    if (r->has_usage) {
        e->rec.has_usage = 1;
        e->rec.tokens_in = valid_tokens(r->tokens_in);
        e->rec.tokens_out = valid_tokens(r->tokens_out);
        e->rec.cost = valid_cost(r->cost);
    }
    /* What its events said it spent, when more (a turn stopped before its answer; a server's answer
     * names its last step's cost alone): the budget must see it. */
    if (turn_cost(e->turn) > e->rec.cost) {
        e->rec.has_usage = 1;
        e->rec.cost = valid_cost(turn_cost(e->turn));
    }
    e->rec.has_exit = r->has_exit;
    e->rec.exit_code = r->exit_code;
    e->rec.signal = r->signal;
    if (r->has_rusage) {
        e->rec.peak_rss_kb = r->ru.ru_maxrss;
        e->rec.cpu_user_ms = r->ru.ru_utime.tv_sec * 1000.0 + r->ru.ru_utime.tv_usec / 1000.0;
        e->rec.cpu_sys_ms = r->ru.ru_stime.tv_sec * 1000.0 + r->ru.ru_stime.tv_usec / 1000.0;
    }
    if (r->stderr_tail && !e->stderr_tail)
        e->stderr_tail = strdup(r->stderr_tail);
    /* A stop's own reason first: an error the stop caused ("Aborted") is its consequence. */
    e->final_status = r->stopped ? execution_stopped_status(e, r->stopped) : r->ok ? EXEC_SUCCEEDED : EXEC_FAILED;
    execution_set_error(e, r->error);
    /* The turn ends once the answers on their way to opencode have landed and its changes are counted. */
    e->concluding = 1;
    execution_count_changes(e);
    execution_maybe_conclude(e);
}

/* Tell the streaming clients that e started, and how. */
static void execution_announce(execution_t *e)
{
    json_object *d = json_object_new_object();
    json_object_object_add(d, "execution_id", json_object_new_int64(e->rec.id));
    json_object_object_add(d, "mode", json_object_new_string(e->rec.mode));
    execution_emit(e, "started", d);
    json_object_put(d);
}

/* Fail e before its job started: why for the log, what for the client. */
void execution_fail_start(execution_t *e, const char *logmsg, const char *why, const char *what)
{
    log_error(logmsg, "executionId=%lld sessionId=%s error=%s", (long long)e->rec.id, e->session_id, log_q(why));
    execution_set_error(e, what);
    execution_finish(e, EXEC_FAILED);
}

void execution_launch(execution_t *e)
{
    session_t *sess = execution_session(e);
    if (!sess) { /* the session went away while its workspace was prepared */
        execution_finish(e, EXEC_ABORTED);
        return;
    }
    const backend_t *b = e->backend;
    const conf_t *cf = e->sch->cfg.conf;
    backend_request_t rq = {
        .owner = e->stand_in >= 0 ? NULL : e->owner,
        .server = e->stand_in,
        .workspace = session_workspace(sess),
        .workspace_fd = e->workspace_fd,
        .oc_session = session_oc_id(sess),
        .text = e->prompt,
        .model = e->model,
        .agent = e->agent,
        .timeout_ms = cf->run_timeout_ms,
        .grace_ms = cf->kill_grace_ms,
        /* Always: the turn's tool calls and changes are read from its events, and a client may
         * follow them later (GET /api/executions/{n}/events), so none may be cut off. */
        .ordered_events = 1,
    };
    static const backend_events_t events = {execution_on_session, execution_on_event, execution_on_done};
    char err[512] = "";
    e->rec.mode = b->ops->mode;
    scheduler_unreserve(e->sch, e); /* the backend counts it from here */
    e->starting = 1;
    e->job = b->ops->start(b->self, &rq, &events, e, &e->rec.pid, &e->argv_json, err, sizeof err);
    e->starting = 0;
    close(e->workspace_fd);
    e->workspace_fd = -1;
    if (!e->job) {
        execution_fail_start(e, "OpenCode process manager could not start a run", err, EXECUTION_ERR_START);
        return;
    }
    if (rq.oc_session && !e->oc_sid)
        e->oc_sid = strdup(rq.oc_session);
    execution_store(e, 0);
    char what[64];
    snprintf(what, sizeof what, "Executing OpenCode command (%s)", b->ops->label);
    log_info(what, "processId=%ld executionId=%lld sessionId=%s activeProcesses=%ld queueWaitMs=%.0f", e->rec.pid,
             (long long)e->rec.id, e->session_id, e->sch->running, (e->rec.started_at - e->rec.queued_at) * 1000.0);
    execution_announce(e);
}

void execution_begin(execution_t *e, const backend_t *b, int stand_in)
{
    scheduler_t *s = e->sch;
    session_t *sess = execution_session(e);
    execution_release_bytes(e);
    session_set_running(sess, e);
    s->running++;
    user_add(s->cfg.users, e->owner, USER_RUNNING, 1);
    e->holds_slot = 1;
    e->backend = b;
    e->stand_in = stand_in;
    if (stand_in >= 0)
        s->stand_ins++;
    e->rec.mode = b->ops->mode;
    e->rec.started_at = clock_now();
    e->rec.status = EXEC_RUNNING;
    /* The workspace again, now: a failed check fails the message, and nothing runs. */
    const char *why = NULL;
    int has_git = 0;
    e->workspace_fd = workspace_check(s->cfg.agent, s->cfg.conf->workspace_root, session_workspace(sess), &has_git, &why);
    if (e->workspace_fd < 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "workspace check failed: %s; nothing was run", why);
        log_warn("workspace check failed; the message does not run", "executionId=%lld sessionId=%s reason=%s",
                 (long long)e->rec.id, e->session_id, log_q(why));
        execution_set_error(e, msg);
        execution_finish(e, EXEC_FAILED);
        return;
    }
    if (has_git)
        execution_launch(e);
    else
        execution_prepare(e, sess);
}

void execution_stop(execution_t *e, backend_stop_t why)
{
    if (e->job) {
        e->backend->ops->stop(e->job, why);
    } else if (e->changes) { /* the run is over; only its count remains */
        changes_cancel(e->changes);
        e->changes = NULL;
        execution_maybe_conclude(e);
    } else if ((e->project || e->waits_project) && !e->stop_why) {
        e->stop_why = why;
        if (e->project)
            project_cancel(e->project);
        e->project = NULL;
        if (e->waits_project)
            e->waits_project->project_waiters--;
        e->waits_project = NULL;
        execution_finish(e, execution_stopped_status(e, why));
    }
}
