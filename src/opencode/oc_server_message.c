/* Messages on the server, the backend (backend.h): the opencode session created lazily, the
 * message posted, its answer read (a provider failure still answers 200: info.error says so),
 * held until the event stream has delivered the turn when someone streams, aborted on stop. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "oc_server_internal.h"
#include "valid.h"

static void oc_server_msg_closed(uv_handle_t *h)
{
    backend_job_t *msg = h->data;
    free(msg->pending);
    free(msg->pending_text);
    free(msg->pending_error);
    free(msg->workspace);
    free(msg->oc_sid);
    free(msg->body);
    free(msg);
}

/* Take msg out of the in-flight list (once). */
static void oc_server_msg_unlink(backend_job_t *msg)
{
    oc_server_t *s = msg->server;
    msg->finished = 1;
    if (msg->prev)
        msg->prev->next = msg->next;
    else
        s->msgs = msg->next;
    if (msg->next)
        msg->next->prev = msg->prev;
    s->in_flight--;
}

static void oc_server_msg_finish(backend_job_t *msg, const backend_result_t *r)
{
    oc_server_t *s = msg->server;
    if (msg->finished)
        return;
    oc_server_msg_unlink(msg);
    oc_server_dir_t *d = oc_server_dir(s, msg->workspace);
    if (d)
        d->last_used = clock_now();
    uv_timer_stop(&msg->timer);
    msg->ev.done(msg->ctx, r);
    uv_close((uv_handle_t *)&msg->timer, oc_server_msg_closed);
    if (s->state == OC_SERVER_DRAINING && s->in_flight == 0 && s->answers == 0)
        oc_server_terminate(s, s->restart_reason ? s->restart_reason : "recycle");
}

void oc_server_fail_all(oc_server_t *s, const char *why)
{
    while (s->msgs) {
        backend_job_t *msg = s->msgs;
        http_cancel(msg->req);
        msg->req = NULL;
        backend_result_t r = {.stopped = msg->stopped, .error = why};
        oc_server_msg_finish(msg, &r); /* unlinks msg */
    }
}

static void oc_server_msg_idle_wait_cb(uv_timer_t *t)
{
    backend_job_t *msg = t->data;
    if (msg->pending)
        oc_server_msg_finish(msg, msg->pending);
}

/* Keep a copy of the answer until the turn's events are out (or OC_SERVER_IDLE_WAIT_MS). */
static void oc_server_msg_hold(backend_job_t *msg, const backend_result_t *r)
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
    msg->held_at = clock_now();
    uv_timer_stop(&msg->timer);
    uv_timer_start(&msg->timer, oc_server_msg_idle_wait_cb, OC_SERVER_IDLE_WAIT_MS, 0);
}

/* Remember an assistant message the stream reports completed. */
static void oc_server_note_completed(backend_job_t *m, json_object *props)
{
    json_object *info, *id, *tm, *done;
    if (json_object_object_get_ex(props, "info", &info) && json_object_object_get_ex(info, "id", &id) &&
        json_object_object_get_ex(info, "time", &tm) && json_object_object_get_ex(tm, "completed", &done) &&
        !json_object_is_type(done, json_type_null))
        snprintf(m->completed_mid, sizeof m->completed_mid, "%s", json_object_get_string(id));
}

static int oc_server_turn_seen(const backend_job_t *m)
{
    return m->idle_seen || (m->answer_mid[0] && strcmp(m->answer_mid, m->completed_mid) == 0);
}

void oc_server_msg_event(backend_job_t *m, const char *type, json_object *props)
{
    m->ev.event(m->ctx, type, props);
    if (strcmp(type, "session.idle") == 0)
        m->idle_seen = 1;
    else if (strcmp(type, "message.updated") == 0)
        oc_server_note_completed(m, props);
    if (m->pending && oc_server_turn_seen(m)) {
        log_debug("held answer released: the stream delivered the turn", "server=%d heldMs=%.1f event=%s",
                  m->server->cfg.index, (clock_now() - m->held_at) * 1000.0, type);
        oc_server_msg_finish(m, m->pending);
    }
}

/* The text parts of an answer, in order, joined by newlines (malloc'd, may be NULL). */
static char *oc_server_answer_text(json_object *parts, size_t *len)
{
    size_t tl = 0;
    char *text = NULL;
    for (size_t i = 0; parts && json_object_is_type(parts, json_type_array) && i < json_object_array_length(parts);
         i++) {
        json_object *p = json_object_array_get_idx(parts, i), *t, *tx;
        if (!json_object_object_get_ex(p, "type", &t) || strcmp(json_object_get_string(t), "text") != 0 ||
            !json_object_object_get_ex(p, "text", &tx) || !json_object_is_type(tx, json_type_string))
            continue;
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
    *len = tl;
    return text;
}

/* Read an answer's info: its error (a provider failure inside a 200), usage, message id. */
static void oc_server_answer_info(backend_job_t *msg, json_object *info, backend_result_t *r, char *buf, size_t blen)
{
    json_object *e, *x, *d, *tok, *mid;
    if (info && json_object_object_get_ex(info, "error", &e) && e && !json_object_is_type(e, json_type_null)) {
        const char *name = json_object_object_get_ex(e, "name", &x) ? json_object_get_string(x) : NULL;
        const char *m = json_object_object_get_ex(e, "data", &d) && json_object_object_get_ex(d, "message", &x)
                            ? json_object_get_string(x)
                            : NULL;
        snprintf(buf, blen, "%s%s%s", name ? name : "error", m ? ": " : "", m ? m : "");
        r->error = buf;
        if (name && strcmp(name, "MessageAbortedError") == 0 && !r->stopped)
            r->stopped = BACKEND_STOP_ABORT;
    } else {
        r->ok = !r->stopped;
    }
    if (info && json_object_object_get_ex(info, "tokens", &tok) && json_object_is_type(tok, json_type_object)) {
        r->has_usage = 1;
        if (json_object_object_get_ex(tok, "input", &x))
            r->tokens_in = valid_tokens(json_object_get_int64(x));
        if (json_object_object_get_ex(tok, "output", &x))
            r->tokens_out = valid_tokens(json_object_get_int64(x));
        if (json_object_object_get_ex(info, "cost", &x))
            r->cost = valid_cost(json_object_get_double(x));
    }
    if (info && json_object_object_get_ex(info, "id", &mid) && json_object_is_type(mid, json_type_string))
        snprintf(msg->answer_mid, sizeof msg->answer_mid, "%s", json_object_get_string(mid));
}

static void oc_server_msg_answer(void *ctx, int err, const char *errmsg, long status, const char *body, size_t len)
{
    (void)len;
    backend_job_t *msg = ctx;
    oc_server_t *s = msg->server;
    msg->req = NULL;
    backend_result_t r = {.stopped = msg->stopped};
    char buf[512];
    json_object *o = NULL, *info = NULL, *parts = NULL;
    if (err) {
        snprintf(buf, sizeof buf, "opencode server request failed: %s", errmsg);
        r.error = buf;
        if (!msg->stopped)
            oc_server_suspect(s, errmsg);
    } else if (status != 200) {
        snprintf(buf, sizeof buf, "opencode server answered HTTP %ld", status);
        r.error = buf;
    } else if (!(o = json_tokener_parse(body)) || !json_object_is_type(o, json_type_object)) {
        r.error = "opencode server sent an answer that is not JSON";
    }
    if (r.error) {
        json_object_put(o);
        oc_server_msg_finish(msg, &r);
        return;
    }
    json_object_object_get_ex(o, "info", &info);
    json_object_object_get_ex(o, "parts", &parts);
    oc_server_answer_info(msg, info, &r, buf, sizeof buf);
    char *text = oc_server_answer_text(parts, &r.text_len);
    r.text = text;
    s->messages++;
    s->messages_total++;
    if (msg->ordered && !oc_server_turn_seen(msg) && !msg->stopped && s->events_req)
        oc_server_msg_hold(msg, &r);
    else
        oc_server_msg_finish(msg, &r);
    free(text);
    json_object_put(o);
    oc_server_maybe_recycle(s);
}

/* Forget a message that never got going: no callback (start then returns NULL). */
static void oc_server_msg_discard(backend_job_t *msg)
{
    oc_server_msg_unlink(msg);
    uv_close((uv_handle_t *)&msg->timer, oc_server_msg_closed);
}

static int oc_server_msg_post(backend_job_t *msg)
{
    oc_server_t *s = msg->server;
    msg->idle_seen = 0;
    msg->completed_mid[0] = msg->answer_mid[0] = '\0';
    char enc[3 * 4096], url[3 * 4096 + 160];
    oc_server_urlencode(msg->workspace, enc, sizeof enc);
    snprintf(url, sizeof url, "%s/session/%s/message?directory=%s", s->base, msg->oc_sid, enc);
    http_opts_t o = {.method = "POST", .url = url, .body = msg->body, .userpwd = s->userpwd,
                     .max_body = OC_SERVER_ANSWER_MAX, .done = oc_server_msg_answer, .ctx = msg};
    msg->req = http_request(s->cfg.http, &o);
    return msg->req ? 0 : -1;
}

static void oc_server_session_created(void *ctx, int err, const char *errmsg, long status, const char *body,
                                      size_t len)
{
    (void)len;
    backend_job_t *msg = ctx;
    msg->req = NULL;
    json_object *o = (!err && status == 200) ? json_tokener_parse(body) : NULL, *id;
    const char *sid = o && json_object_object_get_ex(o, "id", &id) ? json_object_get_string(id) : NULL;
    /* The id goes into URLs and logs: only a plain one is taken (the server is the agent too). */
    if (sid && !valid_id(sid))
        sid = NULL;
    if (err && !msg->stopped)
        oc_server_suspect(msg->server, errmsg);
    if (!sid || msg->stopped) {
        char buf[256];
        snprintf(buf, sizeof buf, "cannot create an opencode session: %s",
                 err ? errmsg : status != 200 ? "bad status" : msg->stopped ? "stopped" : "no id");
        backend_result_t r = {.error = buf, .stopped = msg->stopped};
        json_object_put(o);
        oc_server_msg_finish(msg, &r);
        return;
    }
    msg->oc_sid = strdup(sid);
    json_object_put(o);
    msg->ev.session(msg->ctx, msg->oc_sid);
    if (oc_server_msg_post(msg) != 0) {
        backend_result_t r = {.error = "cannot send the message to the opencode server"};
        oc_server_msg_finish(msg, &r);
    }
}

static void oc_server_msg_grace_cb(uv_timer_t *t)
{
    backend_job_t *msg = t->data;
    /* The server did not answer after the abort (it may never): give up on it. */
    http_cancel(msg->req);
    msg->req = NULL;
    backend_result_t r = {.stopped = msg->stopped, .error = "the opencode server did not answer after the abort"};
    oc_server_msg_finish(msg, &r);
}

static void oc_server_abort_done(void *ctx, int err, const char *errmsg, long status, const char *body, size_t len)
{
    (void)body;
    (void)len;
    char *oc_sid = ctx;
    if (err || status != 200)
        log_warn("the opencode server refused an abort", "opencodeSessionId=%s status=%ld error=%s", oc_sid, status,
                 log_q(err ? errmsg : ""));
    else
        log_debug("abort sent to the opencode server", "opencodeSessionId=%s", oc_sid);
    free(oc_sid);
}

/* Abort (or time out, or shut down) a message: POST .../abort, then give up after the grace. */
static void oc_server_msg_stop(backend_job_t *msg, backend_stop_t why)
{
    oc_server_t *s = msg->server;
    if (msg->finished || msg->stopped || msg->pending)
        return;
    msg->stopped = why;
    if (msg->oc_sid && oc_server_pid(s) > 0) {
        char enc[3 * 4096], url[3 * 4096 + 160];
        oc_server_urlencode(msg->workspace, enc, sizeof enc);
        snprintf(url, sizeof url, "%s/session/%s/abort?directory=%s", s->base, msg->oc_sid, enc);
        http_opts_t o = {.method = "POST", .url = url, .userpwd = s->userpwd, .timeout_ms = 10000,
                         .max_body = 65536, .done = oc_server_abort_done, .ctx = strdup(msg->oc_sid), .drop = free};
        if (!o.ctx || !http_request(s->cfg.http, &o))
            free(o.ctx);
    }
    uv_timer_stop(&msg->timer);
    uv_timer_start(&msg->timer, oc_server_msg_grace_cb, (uint64_t)(msg->grace_ms > 0 ? msg->grace_ms : 1), 0);
}

static void oc_server_msg_timeout_cb(uv_timer_t *t) { oc_server_msg_stop(t->data, BACKEND_STOP_TIMEOUT); }

/* The body of POST /session/{id}/message: the text, the model, the agent. The model is always
 * named (the configured default when the message names none): the server keeps a session's last
 * one, so a message that named another must not decide what the next one uses. */
static char *oc_server_msg_body(const oc_server_t *s, const backend_request_t *rq)
{
    const char *model = rq->model ? rq->model : oc_models_default(s->cfg.models);
    json_object *b = json_object_new_object(), *parts = json_object_new_array(), *p = json_object_new_object();
    json_object_object_add(p, "type", json_object_new_string("text"));
    json_object_object_add(p, "text", json_object_new_string(rq->text));
    json_object_array_add(parts, p);
    json_object_object_add(b, "parts", parts);
    const char *slash = model ? strchr(model, '/') : NULL;
    if (slash) {
        json_object *mo = json_object_new_object();
        json_object_object_add(mo, "providerID", json_object_new_string_len(model, (int)(slash - model)));
        json_object_object_add(mo, "modelID", json_object_new_string(slash + 1));
        json_object_object_add(b, "model", mo);
    }
    if (rq->agent)
        json_object_object_add(b, "agent", json_object_new_string(rq->agent));
    char *body = strdup(json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(b);
    return body;
}

/* A conversation that is new begins with POST /session (its id comes back through ev.session). */
static int oc_server_msg_begin(backend_job_t *msg)
{
    oc_server_t *s = msg->server;
    if (msg->oc_sid)
        return oc_server_msg_post(msg);
    char enc[3 * 4096], url[3 * 4096 + 128];
    oc_server_urlencode(msg->workspace, enc, sizeof enc);
    snprintf(url, sizeof url, "%s/session?directory=%s", s->base, enc);
    http_opts_t o = {.method = "POST", .url = url, .body = "{\"title\":\"ocpm\"}", .userpwd = s->userpwd,
                     .timeout_ms = 60000, .max_body = 1u << 20, .done = oc_server_session_created, .ctx = msg};
    msg->req = http_request(s->cfg.http, &o);
    return msg->req ? 0 : -1;
}

static backend_job_t *oc_server_msg_start(void *self, const backend_request_t *rq, const backend_events_t *ev,
                                          void *ctx, long *pid, char **argv_json, char *err, size_t errlen)
{
    oc_server_t *s = self;
    *argv_json = NULL;
    if (s->state != OC_SERVER_READY || oc_server_pid(s) <= 0) {
        snprintf(err, errlen, "the opencode server is not ready");
        return NULL;
    }
    backend_job_t *msg = calloc(1, sizeof *msg);
    if (!msg) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    msg->server = s;
    msg->ev = *ev;
    msg->ctx = ctx;
    msg->grace_ms = rq->grace_ms;
    msg->ordered = rq->ordered_events;
    msg->workspace = strdup(rq->workspace);
    msg->oc_sid = rq->oc_session ? strdup(rq->oc_session) : NULL;
    msg->body = oc_server_msg_body(s, rq);
    uv_timer_init(s->cfg.loop, &msg->timer);
    msg->timer.data = msg;
    msg->next = s->msgs;
    if (s->msgs)
        s->msgs->prev = msg;
    s->msgs = msg;
    s->in_flight++;
    oc_server_dir_t *d = oc_server_dir(s, rq->workspace);
    if (d) {
        d->loaded = 1;
        d->last_used = clock_now();
    }
    if (!msg->workspace || !msg->body || (rq->oc_session && !msg->oc_sid) || oc_server_msg_begin(msg) != 0) {
        oc_server_msg_discard(msg);
        snprintf(err, errlen, "cannot send the message to the opencode server");
        return NULL;
    }
    uv_timer_start(&msg->timer, oc_server_msg_timeout_cb, (uint64_t)rq->timeout_ms, 0);
    *pid = oc_server_pid(s);
    return msg;
}

typedef struct oc_server_answer {
    oc_server_t *server;
    backend_answered_fn done;
    void *ctx;
    char id[72];
} oc_server_answer_t;

static void oc_server_answer_done(void *ctx, int err, const char *errmsg, long status, const char *body, size_t len)
{
    (void)body;
    (void)len;
    oc_server_answer_t *a = ctx;
    char why[160] = "";
    if (err)
        snprintf(why, sizeof why, "the opencode server could not be reached: %s", errmsg);
    else if (status != 200)
        snprintf(why, sizeof why, "the opencode server refused the answer (HTTP %ld)", status);
    if (why[0])
        log_warn("the opencode server did not take an answer to a prompt", "request=%s reason=%s", a->id, log_q(why));
    else
        log_debug("answer taken by the opencode server", "request=%s", a->id);
    oc_server_t *s = a->server;
    s->answers--;
    a->done(a->ctx, !why[0], why);
    free(a);
    /* A recycle waits for answers too: the server must not go before it has answered. */
    if (s->state == OC_SERVER_DRAINING && s->in_flight == 0 && s->answers == 0)
        oc_server_terminate(s, s->restart_reason ? s->restart_reason : "recycle");
}

/* A prompt's answer: POST /permission/{id}/reply {reply, message?}, /question/{id}/reply {answers}
 * or /question/{id}/reject. The turn goes on when opencode has it (its events say so). */
static int oc_server_msg_prompt_reply(backend_job_t *msg, const char *kind, const char *id, json_object *reply,
                                      backend_answered_fn done, void *ctx)
{
    oc_server_t *s = msg->server;
    oc_server_answer_t *a;
    if (msg->finished || oc_server_pid(s) <= 0 || !valid_id(id) || !(a = calloc(1, sizeof *a)))
        return -1;
    a->server = s;
    a->done = done;
    a->ctx = ctx;
    snprintf(a->id, sizeof a->id, "%s", id);
    json_object *b = json_object_new_object(), *v;
    const char *action = "reply";
    if (strcmp(kind, "permission") == 0) {
        static const char *const keys[] = {"reply", "message"};
        for (size_t i = 0; i < 2; i++)
            if (json_object_object_get_ex(reply, keys[i], &v))
                json_object_object_add(b, keys[i], json_object_get(v));
    } else if (json_object_object_get_ex(reply, "answers", &v)) {
        json_object_object_add(b, "answers", json_object_get(v));
    } else {
        action = "reject";
    }
    char enc[3 * 4096], url[3 * 4096 + 256];
    oc_server_urlencode(msg->workspace, enc, sizeof enc);
    snprintf(url, sizeof url, "%s/%s/%s/%s?directory=%s", s->base, kind, id, action, enc);
    http_opts_t o = {.method = "POST", .url = url,
                     .body = json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
                     .userpwd = s->userpwd, .timeout_ms = 10000, .max_body = 65536,
                     .done = oc_server_answer_done, .ctx = a, .drop = free};
    int rc = http_request(s->cfg.http, &o) ? 0 : -1;
    if (rc != 0)
        free(a);
    else
        s->answers++;
    json_object_put(b);
    return rc;
}

/* Ready and below server_max_inflight; draining (a replacement comes) or stopping: wait; starting
 * or restarting: down (a fallback may run the message); FATAL: so until an operator restarts it. */
static backend_state_t oc_server_backend_state(void *self)
{
    oc_server_t *s = self;
    switch (s->state) {
    case OC_SERVER_READY:
        if (oc_server_pid(s) <= 0) /* exited; its supervisor is about to say so */
            return BACKEND_DOWN;
        if (s->suspect) /* a request failed: wait for the health check sent then */
            return BACKEND_WAIT;
        return s->in_flight < s->cfg.conf->server_max_inflight ? BACKEND_READY : BACKEND_FULL;
    case OC_SERVER_DRAINING:
    case OC_SERVER_STOPPING:
        return BACKEND_WAIT;
    case OC_SERVER_STARTING: /* a planned replacement waits for its successor; a restart falls back */
        return s->replacing ? BACKEND_WAIT : BACKEND_DOWN;
    case OC_SERVER_FATAL:
        return BACKEND_FATAL;
    default:
        return BACKEND_DOWN;
    }
}

static long oc_server_backend_capacity(void *self)
{
    const oc_server_t *s = self;
    return s->cfg.conf->server_max_inflight;
}

static long oc_server_backend_load(void *self) { return oc_server_in_flight(self); }

const backend_ops_t oc_server_backend = {
    .mode = "server",
    .label = "server",
    .summarises_changes = 1,
    .state = oc_server_backend_state,
    .capacity = oc_server_backend_capacity,
    .load = oc_server_backend_load,
    .start = oc_server_msg_start,
    .stop = oc_server_msg_stop,
    .answer = oc_server_msg_prompt_reply,
};
