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

typedef enum { ASK_PENDING, ASK_ANSWERING, ASK_SETTLED } ask_state_t;

typedef struct ask {
    ask_book_t *book;
    const conf_t *conf; /* its pool's settings: the policy and the timeouts */
    char kind[16], id[72], oc_id[72], owner[257], session_id[65], replied_by[257], status[16];
    int64_t exec_id;
    char *request, *reply;
    double asked_at, replied_at;
    ask_state_t state;
    int awaiting; /* an answer is with opencode: a is freed only after its report */
    int orphan;   /* its turn ended while the answer was on its way: nothing is emitted any more */
    ask_answer_fn answer;
    void *job;
    ask_emit_fn emit;
    void *ectx;
    void (*landed)(void *ectx);
    /* the answer on its way: what it says, who gave it, and who waits for it */
    json_object *proposed;
    char proposed_status[16], proposed_by[257];
    ask_replied_fn replied;
    void *rctx;
    uv_timer_t timer;
    struct ask *prev, *next;
} ask_t;

struct ask_book {
    ask_config_t cfg;
    ask_t *list; /* every prompt not yet freed: pending, being answered, settled awaiting a report */
    long npending; /* not settled */
    unsigned long long numbers; /* the n of ids ocpm gives */
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
    json_object_put(a->proposed);
    free(a);
}

/* A settled prompt leaves the book and is freed once its timer has closed; unless opencode still
 * has to report on an answer (ask_answered releases it then). */
static void ask_release(ask_t *a)
{
    ask_book_t *b = a->book;
    uv_timer_stop(&a->timer);
    if (a->awaiting || uv_is_closing((uv_handle_t *)&a->timer))
        return;
    if (a->prev)
        a->prev->next = a->next;
    else
        b->list = a->next;
    if (a->next)
        a->next->prev = a->prev;
    uv_close((uv_handle_t *)&a->timer, ask_closed);
}

void ask_book_free(ask_book_t *b)
{
    if (!b)
        return;
    while (b->list) {
        b->list->awaiting = 0; /* the HTTP client goes next, without reporting */
        ask_release(b->list);
    }
    free(b);
}

long ask_pending(const ask_book_t *b) { return b ? b->npending : 0; }

static db_prompt_t ask_row(const ask_t *a)
{
    return (db_prompt_t){.id = a->id,
                         .kind = a->kind,
                         .opencode_id = a->oc_id[0] ? a->oc_id : NULL,
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

static void ask_store(ask_t *a)
{
    db_prompt_t row = ask_row(a);
    if (db_prompt_put(a->book->cfg.db, &row) != 0)
        log_error("cannot record a prompt", "kind=%s id=%s executionId=%lld error=%s", a->kind, a->id,
                  (long long)a->exec_id, log_q(db_errmsg(a->book->cfg.db)));
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

/* Settle a: its reply (what opencode was sent), status and who decided; stored and announced; a
 * leaves the book. */
static void ask_settle(ask_t *a, const char *status, json_object *reply, const char *by)
{
    free(a->reply);
    a->reply = reply ? strdup(json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN)) : NULL;
    snprintf(a->status, sizeof a->status, "%s", status);
    snprintf(a->replied_by, sizeof a->replied_by, "%s", by);
    a->replied_at = clock_now();
    a->state = ASK_SETTLED;
    a->book->npending--;
    ask_store(a);
    log_info("prompt answered", "kind=%s id=%s executionId=%lld sessionId=%s status=%s by=%s", a->kind, a->id,
             (long long)a->exec_id, a->session_id, status, log_q(by));
    ask_announce(a, "replied");
    ask_release(a);
}

json_object *ask_rejection(const char *kind)
{
    json_object *r = json_object_new_object();
    if (strcmp(kind, "permission") == 0)
        json_object_object_add(r, "reply", json_object_new_string("reject"));
    else
        json_object_object_add(r, "reject", json_object_new_boolean(1));
    return r;
}

static void ask_timeout_cb(uv_timer_t *t);

static void ask_start_timer(ask_t *a)
{
    const conf_t *cf = a->conf;
    long ms = strcmp(a->kind, "permission") == 0 ? cf->permission_timeout_ms : cf->question_timeout_ms;
    uv_timer_start(&a->timer, ask_timeout_cb, (uint64_t)ms, 0);
}

/* opencode's word on the answer that was on its way. */
static void ask_answer_landed(ask_t *a, int ok, const char *why);

/* opencode's word on an answer; then the turn, which may wait for it, hears of it (last: the turn
 * may end and free what it owns, never a). */
static void ask_answered(void *ctx, int ok, const char *why)
{
    ask_t *a = ctx;
    if (a->state == ASK_SETTLED) { /* opencode's own event said it took the answer first */
        a->awaiting = 0;
        ask_release(a);
        return;
    }
    void (*landed)(void *) = a->orphan ? NULL : a->landed;
    void *ectx = a->ectx;
    ask_answer_landed(a, ok, why);
    if (landed)
        landed(ectx);
}

static void ask_answer_landed(ask_t *a, int ok, const char *why)
{
    a->awaiting = 0;
    ask_replied_fn replied = a->replied;
    void *rctx = a->rctx;
    a->replied = NULL;
    /* opencode took it: recorded as given, even when the turn it unblocked has ended meanwhile. */
    if (ok) {
        json_object *p = a->proposed;
        a->proposed = NULL;
        ask_settle(a, a->proposed_status, p, a->proposed_by);
        if (replied) {
            db_prompt_t row = ask_row(a);
            json_object *rec = db_prompt_record(&row);
            replied(rctx, 200, rec, NULL); /* a is freed by its timer's close, later in the loop */
            json_object_put(rec);
        }
        json_object_put(p);
        return;
    }
    json_object_put(a->proposed);
    a->proposed = NULL;
    if (replied && !a->orphan) { /* the owner may try again; the timeout still stands */
        a->state = ASK_PENDING;
        ask_start_timer(a);
        replied(rctx, 502, NULL, why);
        return;
    }
    /* Refused, with no turn left, or the policy's or the timeout's: opencode does not know it. */
    ask_settle(a, "lost", NULL, "ocpm");
    if (replied)
        replied(rctx, a->orphan ? 409 : 502, NULL, a->orphan ? "the turn ended before opencode took the answer" : why);
}

/* Send reply to opencode: settled with status and by when it takes it (ask_answered). */
static int ask_propose(ask_t *a, const char *status, json_object *reply, const char *by, ask_replied_fn replied,
                       void *rctx)
{
    if (!a->oc_id[0] || a->answer(a->job, a->kind, a->oc_id, reply, ask_answered, a) != 0)
        return -1;
    uv_timer_stop(&a->timer);
    a->state = ASK_ANSWERING;
    a->awaiting = 1;
    a->proposed = json_object_get(reply);
    snprintf(a->proposed_status, sizeof a->proposed_status, "%s", status);
    snprintf(a->proposed_by, sizeof a->proposed_by, "%s", by);
    a->replied = replied;
    a->rctx = rctx;
    return 0;
}

static void ask_timeout_cb(uv_timer_t *t)
{
    ask_t *a = t->data;
    json_object *r = ask_rejection(a->kind);
    if (ask_propose(a, "timeout", r, "timeout", NULL, NULL) != 0)
        ask_settle(a, "lost", NULL, "ocpm"); /* opencode cannot be told: the turn's own timeout ends it */
    json_object_put(r);
}

/* The request as stored: what opencode asked, the tool it is about; bounded. */
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
    /* The call's id as opencode names it: printable and short, or not at all. */
    const char *call = tool && json_object_object_get_ex(tool, "callID", &v) && json_object_is_type(v, json_type_string)
                           ? json_object_get_string(v)
                           : NULL;
    json_object_object_add(t, "callId", call && strlen(call) == (size_t)json_object_get_string_len(v) &&
                                                valid_token(call, 128)
                                            ? json_object_new_string(call)
                                            : NULL);
    json_object_object_add(o, "tool", t);
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (strlen(s) > ASK_REQUEST_MAX) {
        /* Only what names the request, cut on a character's boundary; the rest is the agent's. */
        const char *p = json_object_object_get_ex(o, "permission", &v) && json_object_is_type(v, json_type_string)
                            ? json_object_get_string(v)
                            : NULL;
        json_object *small = json_object_new_object();
        if (p) {
            size_t n = strnlen(p, 256);
            while (n > 0 && n < strlen(p) && ((unsigned char)p[n] & 0xc0) == 0x80)
                n--;
            json_object_object_add(small, "permission", json_object_new_string_len(p, (int)n));
        }
        json_object_object_add(small, "tool", json_object_get(t));
        json_object_object_add(small, "truncated", json_object_new_boolean(1));
        json_object_put(o);
        o = small;
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    }
    char *out = strdup(s);
    json_object_put(o);
    return out;
}

/* A new record in the book: ocpm's id, opencode's beside it. */
static ask_t *ask_new(ask_book_t *b, const char *kind, json_object *props, const ask_origin_t *from,
                      const char *tool_name)
{
    ask_t *a = calloc(1, sizeof *a);
    if (!a || !(a->request = ask_request(kind, props, tool_name))) {
        free(a);
        return NULL;
    }
    json_object *v;
    a->book = b;
    a->conf = from->conf ? from->conf : b->cfg.conf;
    snprintf(a->kind, sizeof a->kind, "%s", kind);
    snprintf(a->id, sizeof a->id, "%.3s_%lld_%llu", kind, (long long)from->exec_id, ++b->numbers);
    /* opencode's id goes into a URL: only a plain one is kept (without it, nothing can be answered). */
    if (json_object_object_get_ex(props, "id", &v) && json_object_is_type(v, json_type_string) &&
        valid_id(json_object_get_string(v)))
        snprintf(a->oc_id, sizeof a->oc_id, "%s", json_object_get_string(v));
    snprintf(a->owner, sizeof a->owner, "%s", from->owner);
    snprintf(a->session_id, sizeof a->session_id, "%s", from->session_id);
    snprintf(a->status, sizeof a->status, "pending");
    a->exec_id = from->exec_id;
    a->answer = from->answer;
    a->job = from->job;
    a->emit = from->emit;
    a->ectx = from->ectx;
    a->landed = from->landed;
    a->asked_at = clock_now();
    uv_timer_init(b->cfg.loop, &a->timer);
    a->timer.data = a;
    a->next = b->list;
    if (b->list)
        b->list->prev = a;
    b->list = a;
    b->npending++;
    return a;
}

void ask_raised(ask_book_t *b, const char *kind, json_object *props, const ask_origin_t *from, const char *tool_name)
{
    ask_t *a = ask_new(b, kind, props, from, tool_name);
    if (!a)
        return;
    ask_store(a);
    log_info("the agent asks", "kind=%s id=%s opencodeId=%s executionId=%lld sessionId=%s", kind, a->id,
             a->oc_id[0] ? a->oc_id : "-", (long long)a->exec_id, a->session_id);
    ask_announce(a, "asked");
    json_object *v;
    if (!a->answer) {
        /* opencode run decided alone: recorded as it did. */
        int allowed = json_object_object_get_ex(props, "decided", &v) && json_object_is_type(v, json_type_string) &&
                      strcmp(json_object_get_string(v), "allow") == 0;
        json_object *r = ask_rejection(kind);
        if (allowed)
            json_object_object_add(r, "reply", json_object_new_string("once"));
        ask_settle(a, allowed ? "allowed" : "rejected", r, "opencode");
        json_object_put(r);
        return;
    }
    const char *policy = a->conf->permission_policy;
    if (strcmp(kind, "permission") == 0 && strcmp(policy, "ask") != 0) {
        int allow = strcmp(policy, "allow") == 0;
        json_object *r = json_object_new_object();
        json_object_object_add(r, "reply", json_object_new_string(allow ? "once" : "reject"));
        if (ask_propose(a, allow ? "allowed" : "rejected", r, "policy", NULL, NULL) != 0)
            ask_settle(a, "lost", NULL, "ocpm");
        json_object_put(r);
        return;
    }
    ask_start_timer(a);
}

static ask_t *ask_find(ask_book_t *b, const char *kind, const char *owner, const char *session_id, const char *id)
{
    for (ask_t *a = b->list; a; a = a->next)
        if (a->state != ASK_SETTLED && strcmp(a->id, id) == 0 && strcmp(a->kind, kind) == 0 &&
            strcmp(a->owner, owner) == 0 && strcmp(a->session_id, session_id) == 0)
            return a;
    return NULL;
}

int ask_reply(ask_book_t *b, const char *kind, const char *owner, const char *session_id, const char *id,
              json_object *args, ask_replied_fn done, void *rctx, char *why, size_t whylen)
{
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
    if (a->state != ASK_PENDING)
        return snprintf(why, whylen, "this %s is being answered", kind), 409;
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
    if (ask_propose(a, status, args, by, done, rctx) != 0)
        return snprintf(why, whylen, "the opencode server cannot be reached now; try again"), 502;
    return 0;
}

void ask_confirmed(ask_book_t *b, int64_t exec_id, const char *kind, const char *oc_id)
{
    for (ask_t *a = b ? b->list : NULL; a; a = a->next) {
        if (a->state != ASK_ANSWERING || a->orphan || a->exec_id != exec_id || strcmp(a->kind, kind) != 0 ||
            strcmp(a->oc_id, oc_id) != 0)
            continue;
        /* Settled now, as answered: the turn no longer waits for the HTTP report, which only frees a. */
        ask_replied_fn replied = a->replied;
        void *rctx = a->rctx;
        json_object *p = a->proposed;
        a->replied = NULL;
        a->proposed = NULL;
        a->landed = NULL;
        ask_settle(a, a->proposed_status, p, a->proposed_by);
        a->emit = NULL;
        if (replied) {
            db_prompt_t row = ask_row(a);
            json_object *rec = db_prompt_record(&row);
            replied(rctx, 200, rec, NULL);
            json_object_put(rec);
        }
        json_object_put(p);
        return;
    }
}

long ask_answering(const ask_book_t *b, int64_t exec_id)
{
    long n = 0;
    for (const ask_t *a = b ? b->list : NULL; a; a = a->next)
        n += a->exec_id == exec_id && a->state == ASK_ANSWERING && !a->orphan;
    return n;
}

void ask_turn_ended(ask_book_t *b, int64_t exec_id)
{
    if (!b)
        return;
    ask_t *a = b->list;
    while (a) {
        ask_t *next = a->next;
        if (a->exec_id != exec_id || a->state == ASK_SETTLED) {
            a = next;
            continue;
        }
        if (a->state == ASK_PENDING) {
            ask_settle(a, "lost", NULL, "ocpm");
        } else { /* being answered: opencode's report settles it; the turn hears no more of it */
            a->orphan = 1;
            a->emit = NULL;
            a->answer = NULL;
            a->job = NULL;
        }
        a = next;
    }
}

/* What a prompt asks, in a line: a permission's name and patterns, a question's first text; cut at
 * ASK_TITLE_MAX bytes, never inside a character. */
static json_object *ask_title(const ask_t *a)
{
    json_object *rq = json_tokener_parse(a->request), *v, *q;
    char title[4 * ASK_TITLE_MAX] = "";
    size_t n = 0;
    if (strcmp(a->kind, "permission") == 0 && json_object_object_get_ex(rq, "permission", &v)) {
        n = (size_t)snprintf(title, sizeof title, "%s", json_object_get_string(v));
        json_object *pats = json_object_object_get_ex(rq, "patterns", &v) ? v : NULL;
        for (size_t i = 0; json_object_is_type(pats, json_type_array) && i < json_object_array_length(pats) &&
                           n < ASK_TITLE_MAX; i++)
            n += (size_t)snprintf(title + n, sizeof title - n, " %s",
                                  json_object_get_string(json_object_array_get_idx(pats, i)));
    } else if (json_object_object_get_ex(rq, "questions", &v) && (q = json_object_array_get_idx(v, 0)) &&
               json_object_object_get_ex(q, "question", &v)) {
        snprintf(title, sizeof title, "%s", json_object_get_string(v));
    }
    json_object_put(rq);
    size_t keep = strnlen(title, ASK_TITLE_MAX);
    while (keep > 0 && ((unsigned char)title[keep] & 0xc0) == 0x80)
        keep--;
    return json_object_new_string_len(title, (int)keep);
}

json_object *ask_open_json(const ask_book_t *b, int64_t exec_id)
{
    json_object *arr = json_object_new_array();
    const ask_t *a = b ? b->list : NULL;
    while (a && a->next) /* the book is newest first: from its end, as the turn asked them */
        a = a->next;
    for (; a; a = a->prev) {
        if (a->exec_id != exec_id || a->state == ASK_SETTLED || a->orphan)
            continue;
        json_object *o = json_object_new_object();
        json_object_object_add(o, "kind", json_object_new_string(a->kind));
        json_object_object_add(o, "id", json_object_new_string(a->id));
        json_object_object_add(o, "status", json_object_new_string(a->state == ASK_PENDING ? "pending" : "answering"));
        json_object_object_add(o, "title", ask_title(a));
        json_object_array_add(arr, o);
    }
    return arr;
}
