/* ask: the agent's permission and question prompts, from the moment opencode raises one until
 * someone (the session's owner, the policy, the timeout) has answered it and opencode has taken the
 * answer, or the turn ends first.
 *
 * Each prompt is a record owned by the session's owner, under an id of ocpm's own (kind, execution,
 * number: nothing the agent says picks or overwrites a record; opencode's id is kept beside it to
 * answer with). It is written to the database when asked and when settled, and announced to the
 * execution's streaming clients (`permission.asked`, `permission.replied`, `question.asked`,
 * `question.replied`) and, when asked, to the webhook. Statuses: pending, then allowed / answered /
 * rejected / timeout / lost. An answer is recorded only once opencode has accepted it: until then
 * the prompt is being answered (a second answer is refused); if opencode refuses it, an owner's
 * answer leaves the prompt pending (the owner is told), and the policy's or the timeout's leaves it
 * lost (opencode does not know it). A prompt whose backend cannot be answered (`opencode run`
 * decides on its own) is recorded as opencode decided it. */
#ifndef OCPM_ASK_H
#define OCPM_ASK_H

#include <stdint.h>

#include <json-c/json.h>
#include <uv.h>

#include "backend.h"
#include "conf.h"
#include "db.h"

typedef struct ask_book ask_book_t;

/* Send an answer to opencode (kind, opencode's request id, the reply as the API took it); done
 * reports whether opencode took it, exactly once, from the loop. Returns -1 when it could not be
 * sent (done is then not called). */
typedef int (*ask_answer_fn)(void *job, const char *kind, const char *id, json_object *reply,
                             backend_answered_fn done, void *ctx);
/* An event for the execution's clients (the record borrowed for the call). */
typedef void (*ask_emit_fn)(void *ectx, const char *event, json_object *record);
/* The end of an owner's answer: an HTTP status (200: record is the updated prompt, borrowed), why. */
typedef void (*ask_replied_fn)(void *rctx, int status, json_object *record, const char *why);

typedef struct ask_config {
    uv_loop_t *loop;
    db_t *db;
    const conf_t *conf;
    /* Every asked prompt, for the webhook (may be NULL). */
    void (*notify)(void *ctx, const char *event, int64_t exec_id, json_object *record);
    void *ctx;
} ask_config_t;

/* Who raised a prompt and how to reach its turn. answer NULL: the backend decided alone (the
 * props say what: "decided": "reject" or "allow"). */
typedef struct ask_origin {
    const conf_t *conf; /* its pool's settings (policy, timeouts); NULL: the book's */
    const char *owner, *session_id;
    int64_t exec_id;
    ask_answer_fn answer;
    void *job;
    ask_emit_fn emit;
    void *ectx;
    /* An answer on its way to opencode has landed (taken or not): the turn may be waiting for it. */
    void (*landed)(void *ectx);
} ask_origin_t;

/* The reply that refuses a prompt of kind, as the API takes it (a new object). */
json_object *ask_rejection(const char *kind);

ask_book_t *ask_book_new(const ask_config_t *cfg);
/* Frees every prompt: call it right before the HTTP client is freed (whose cancelled requests then
 * never report to a prompt that is gone). */
void ask_book_free(ask_book_t *b);

/* opencode raised kind ("permission" or "question") with its event's properties, about the tool
 * call tool_name (NULL: not known). Applies the policy, starts the timeout, records and announces it. */
void ask_raised(ask_book_t *b, const char *kind, json_object *props, const ask_origin_t *from, const char *tool_name);

/* The owner answers: for a permission {"reply": once|always|reject, "message"?}, for a question
 * {"answers": [[label...]...]} or {"reject": true} (checked by the API). Returns 0 when the answer
 * is on its way (done follows, once), or at once an HTTP status: 404 (no such prompt of this owner
 * and session), 409 (no longer pending, or being answered), 502 (opencode cannot be reached), 503
 * (storage), with why. */
int ask_reply(ask_book_t *b, const char *kind, const char *owner, const char *session_id, const char *id,
              json_object *args, ask_replied_fn done, void *rctx, char *why, size_t whylen);

/* opencode's event says it took the answer to its request oc_id (permission.replied,
 * question.replied, question.rejected): the prompt is settled now, whatever becomes of the HTTP
 * answer to ocpm's reply (a server that dies right after taking it must not make it lost). */
void ask_confirmed(ask_book_t *b, int64_t exec_id, const char *kind, const char *oc_id);
/* Answers of execution exec_id on their way to opencode now. Its turn should wait for them (each
 * calls its origin's landed) before it ends: then its record and its stream hold their outcome. */
long ask_answering(const ask_book_t *b, int64_t exec_id);
/* The execution's turn is over: its pending prompts are lost (announced to it one last time: call
 * this while it can still emit). An answer still on its way then reports only to its owner. */
void ask_turn_ended(ask_book_t *b, int64_t exec_id);

/* Execution exec_id's prompts not settled yet, for the slow log: a new JSON array of {kind, id,
 * status (pending or answering), title: what it asks, cut at ASK_TITLE_MAX bytes}, oldest first. */
#define ASK_TITLE_MAX 200
json_object *ask_open_json(const ask_book_t *b, int64_t exec_id);

/* Prompts pending (or being answered) now. */
long ask_pending(const ask_book_t *b);

#endif
