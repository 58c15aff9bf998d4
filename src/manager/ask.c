#define _GNU_SOURCE
#include "ask.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "valid.h"

/* A prompt's request (what opencode asked, as stored and shown) is cut to this: the agent writes
 * its metadata, so a larger one keeps only what names the request. */
#define ASK_REQUEST_MAX (64u << 10)

struct ask {
    ask_book_t *book;
    char kind[16], id[72], owner[257], session_id[65], replied_by[257], status[16];
    int64_t exec_id;
    char *request, *reply;
    double asked_at, replied_at;
    ask_answer_fn answer;
    void *job;
    ask_emit_fn emit;
    void *ectx;
    uv_timer_t timer;
    int closing;
    ask_t *prev, *next;
};

struct ask_book {
    ask_config_t cfg;
    ask_t *pending;
    long npending;
    unsigned long long local_ids; /* ids of prompts ocpm names itself (opencode run gives none) */
};

ask_book_t *ask_book_new(const ask_config_t *cfg)
{
    ask_book_t *b = calloc(1, sizeof *b);
    if (b)
        b->cfg = *cfg;
    return b;
}

static void ask_closed(uv_handle_t *h)
{
    ask_t *a = h->data;
    free(a->request);
    free(a->reply);
    free(a);
}

/* Out of the pending list; freed once its timer has closed. */
static void ask_drop(ask_t *a)
{
    ask_book_t *b = a->book;
    if (a->prev)
        a->prev->next = a->next;
    else
        b->pending = a->next;
    if (a->next)
        a->next->prev = a->prev;
    b->npending--;
    a->closing = 1;
    uv_timer_stop(&a->timer);
    uv_close((uv_handle_t *)&a->timer, ask_closed);
}

void ask_book_free(ask_book_t *b)
{
    if (!b)
        return;
    while (b->pending)
        ask_drop(b->pending);
    free(b);
}

long ask_pending(const ask_book_t *b) { return b ? b->npending : 0; }

static db_prompt_t ask_row(const ask_t *a)
{
    return (db_prompt_t){.id = a->id,
                         .kind = a->kind,
                         .owner = a->owner,
                         .session_id = a->session_id,
                         .status = a->status,
                         .request = a->request,
                         .reply = a->reply,
                         .replied_by = a->replied_by[0] ? a->replied_by : NULL,
                         .execution_id = a->exec_id,
                         .asked_at = a->asked_at,
                         .replied_at = a->replied_at};
}

static int ask_store(ask_t *a)
{
    db_prompt_t row = ask_row(a);
    if (db_prompt_put(a->book->cfg.db, &row) == 0)
        return 0;
    log_error("cannot record a prompt", "kind=%s id=%s executionId=%lld error=%s", a->kind, a->id,
              (long long)a->exec_id, log_q(db_errmsg(a->book->cfg.db)));
    return -1;
}

/* Tell the execution's clients (and for a new prompt, the webhook) what a is now. */
static void ask_announce(ask_t *a, const char *what)
{
    char event[32];
    snprintf(event, sizeof event, "%s.%s", a->kind, what);
    db_prompt_t row = ask_row(a);
    json_object *rec = db_prompt_record(&row);
    if (a->emit)
        a->emit(a->ectx, event, rec);
    if (strcmp(what, "asked") == 0 && a->book->cfg.notify)
        a->book->cfg.notify(a->book->cfg.ctx, event, a->exec_id, rec);
    json_object_put(rec);
}

/* Settle a: its reply (what opencode was sent), status and who decided; stored and announced. */
static void ask_settle(ask_t *a, const char *status, json_object *reply, const char *by)
{
    free(a->reply);
    a->reply = reply ? strdup(json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN)) : NULL;
    snprintf(a->status, sizeof a->status, "%s", status);
    snprintf(a->replied_by, sizeof a->replied_by, "%s", by);
    a->replied_at = clock_now();
    ask_store(a);
    log_info("prompt answered", "kind=%s id=%s executionId=%lld sessionId=%s status=%s by=%s", a->kind, a->id,
             (long long)a->exec_id, a->session_id, status, log_q(by));
    ask_announce(a, "replied");
}

/* The reply that refuses kind. */
static json_object *ask_rejection(const char *kind)
{
    json_object *r = json_object_new_object();
    if (strcmp(kind, "permission") == 0)
        json_object_object_add(r, "reply", json_object_new_string("reject"));
    else
        json_object_object_add(r, "reject", json_object_new_boolean(1));
    return r;
}

/* Send reply to opencode and settle a with status (the caller then drops a). */
static int ask_decide(ask_t *a, const char *status, json_object *reply, const char *by)
{
    if (a->answer && a->answer(a->job, a->kind, a->id, reply) != 0)
        return -1;
    ask_settle(a, status, reply, by);
    return 0;
}

static void ask_timeout_cb(uv_timer_t *t)
{
    ask_t *a = t->data;
    json_object *r = ask_rejection(a->kind);
    if (ask_decide(a, "timeout", r, "timeout") == 0)
        ask_drop(a);
    else /* opencode could not be told: the turn's own timeout ends it, and the prompt is lost with it */
        log_warn("could not reject a prompt that timed out", "kind=%s id=%s", a->kind, a->id);
    json_object_put(r);
}

/* The request as stored: what opencode asked, the tool it is about. */
static char *ask_request(const char *kind, json_object *props, const char *tool_name)
{
    static const char *const permission_keys[] = {"permission", "patterns", "always", "metadata", NULL};
    static const char *const question_keys[] = {"questions", NULL};
    const char *const *keys = strcmp(kind, "permission") == 0 ? permission_keys : question_keys;
    json_object *o = json_object_new_object(), *v, *tool = NULL;
    for (size_t i = 0; keys[i]; i++)
        if (json_object_object_get_ex(props, keys[i], &v))
            json_object_object_add(o, keys[i], json_object_get(v));
    json_object *t = json_object_new_object();
    json_object_object_add(t, "name", tool_name ? json_object_new_string(tool_name) : NULL);
    json_object_object_get_ex(props, "tool", &tool);
    json_object_object_add(t, "callId", tool && json_object_object_get_ex(tool, "callID", &v) &&
                                                json_object_is_type(v, json_type_string)
                                            ? json_object_get(v)
                                            : NULL);
    json_object_object_add(o, "tool", t);
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (strlen(s) > ASK_REQUEST_MAX) {
        json_object_object_del(o, "metadata");
        json_object_object_del(o, "questions");
        json_object_object_add(o, "truncated", json_object_new_boolean(1));
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    }
    char *out = strdup(s);
    json_object_put(o);
    return out;
}

void ask_raised(ask_book_t *b, const char *kind, json_object *props, const ask_origin_t *from, const char *tool_name)
{
    const conf_t *cf = b->cfg.conf;
    json_object *v;
    const char *oc_id = json_object_object_get_ex(props, "id", &v) && json_object_is_type(v, json_type_string)
                            ? json_object_get_string(v)
                            : NULL;
    ask_t *a = calloc(1, sizeof *a);
    if (!a)
        return;
    a->book = b;
    snprintf(a->kind, sizeof a->kind, "%s", kind);
    /* opencode's id goes into URLs: only a plain one is taken (the server is the agent's too). */
    if (oc_id && valid_id(oc_id))
        snprintf(a->id, sizeof a->id, "%s", oc_id);
    else
        snprintf(a->id, sizeof a->id, "%.3s_ocpm_%lld_%llu", kind, (long long)from->exec_id, ++b->local_ids);
    snprintf(a->owner, sizeof a->owner, "%s", from->owner);
    snprintf(a->session_id, sizeof a->session_id, "%s", from->session_id);
    snprintf(a->status, sizeof a->status, "pending");
    a->exec_id = from->exec_id;
    a->answer = from->answer;
    a->job = from->job;
    a->emit = from->emit;
    a->ectx = from->ectx;
    a->asked_at = clock_now();
    a->request = ask_request(kind, props, tool_name);
    uv_timer_init(b->cfg.loop, &a->timer);
    a->timer.data = a;
    a->next = b->pending;
    if (b->pending)
        b->pending->prev = a;
    b->pending = a;
    b->npending++;
    if (!a->request) {
        ask_drop(a);
        return;
    }
    ask_store(a);
    log_info("the agent asks", "kind=%s id=%s executionId=%lld sessionId=%s", kind, a->id, (long long)a->exec_id,
             a->session_id);
    ask_announce(a, "asked");
    const char *decided = json_object_object_get_ex(props, "decided", &v) ? json_object_get_string(v) : NULL;
    int permission = strcmp(kind, "permission") == 0;
    if (!a->answer) {
        /* opencode run decided alone: recorded as it did. */
        json_object *r = ask_rejection(kind);
        int allowed = decided && strcmp(decided, "allow") == 0;
        if (allowed)
            json_object_object_add(r, "reply", json_object_new_string("once"));
        ask_settle(a, allowed ? "allowed" : "rejected", r, "opencode");
        json_object_put(r);
        ask_drop(a);
        return;
    }
    if (permission && strcmp(cf->permission_policy, "ask") != 0) {
        int allow = strcmp(cf->permission_policy, "allow") == 0;
        json_object *r = json_object_new_object();
        json_object_object_add(r, "reply", json_object_new_string(allow ? "once" : "reject"));
        if (ask_decide(a, allow ? "allowed" : "rejected", r, "policy") == 0)
            ask_drop(a);
        else
            log_warn("could not answer a prompt by policy", "kind=%s id=%s", kind, a->id);
        json_object_put(r);
        return;
    }
    uv_timer_start(&a->timer, ask_timeout_cb,
                   (uint64_t)(permission ? cf->permission_timeout_ms : cf->question_timeout_ms), 0);
}

static ask_t *ask_find(ask_book_t *b, const char *kind, const char *owner, const char *session_id, const char *id)
{
    for (ask_t *a = b->pending; a; a = a->next)
        if (strcmp(a->id, id) == 0 && strcmp(a->kind, kind) == 0 && strcmp(a->owner, owner) == 0 &&
            strcmp(a->session_id, session_id) == 0)
            return a;
    return NULL;
}

int ask_reply(ask_book_t *b, const char *kind, const char *owner, const char *session_id, const char *id,
              json_object *args, json_object **record, char *why, size_t whylen)
{
    *record = NULL;
    ask_t *a = ask_find(b, kind, owner, session_id, id);
    if (!a) {
        char status[16];
        int rc = db_prompt_status(b->cfg.db, owner, kind, session_id, id, status, sizeof status);
        if (rc < 0)
            return snprintf(why, whylen, "%s", db_errmsg(b->cfg.db)), 503;
        if (rc > 0)
            return snprintf(why, whylen, "no such %s", kind), 404;
        return snprintf(why, whylen, "this %s is no longer pending (status %s)", kind, status), 409;
    }
    json_object *v;
    const char *status;
    if (strcmp(kind, "permission") == 0) {
        json_object_object_get_ex(args, "reply", &v);
        status = strcmp(json_object_get_string(v), "reject") == 0 ? "rejected" : "allowed";
    } else {
        status = json_object_object_get_ex(args, "reject", &v) ? "rejected" : "answered";
    }
    char by[257];
    snprintf(by, sizeof by, "%s", *owner ? owner : "anonymous");
    if (ask_decide(a, status, args, by) != 0)
        return snprintf(why, whylen, "the opencode server could not be told; try again"), 502;
    db_prompt_t row = ask_row(a);
    *record = db_prompt_record(&row);
    ask_drop(a);
    return 200;
}

void ask_turn_ended(ask_book_t *b, int64_t exec_id)
{
    if (!b)
        return;
    ask_t *a = b->pending;
    while (a) {
        ask_t *next = a->next;
        if (a->exec_id == exec_id) {
            ask_settle(a, "lost", NULL, "ocpm");
            ask_drop(a);
        }
        a = next;
    }
}
