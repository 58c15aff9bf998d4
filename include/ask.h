/* ask: the agent's permission and question prompts, from the moment opencode raises one until
 * someone (the session's owner, the policy, the timeout) answers it or the turn ends without an
 * answer.
 *
 * Each prompt is a record owned by the session's owner, written to the database when asked and
 * when it changes, and announced to the execution's streaming clients (`permission.asked`,
 * `permission.replied`, `question.asked`, `question.replied`) and to the webhook. Statuses:
 * pending, then allowed / answered / rejected / timeout / lost (the turn or the server went away
 * first). A prompt whose backend cannot be answered (`opencode run` decides on its own) is recorded
 * as opencode decided it. Pending prompts are in memory; a reply looks there first. */
#ifndef OCPM_ASK_H
#define OCPM_ASK_H

#include <stdint.h>

#include <json-c/json.h>
#include <uv.h>

#include "conf.h"
#include "db.h"

typedef struct ask_book ask_book_t;
typedef struct ask ask_t;

/* Send an answer to opencode: kind "permission" or "question", opencode's request id, the reply
 * as opencode takes it. Returns 0 when it was sent. */
typedef int (*ask_answer_fn)(void *job, const char *kind, const char *id, json_object *reply);
/* An event for the execution's clients (the record borrowed for the call). */
typedef void (*ask_emit_fn)(void *ectx, const char *event, json_object *record);

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
    const char *owner, *session_id;
    int64_t exec_id;
    ask_answer_fn answer;
    void *job;
    ask_emit_fn emit;
    void *ectx;
} ask_origin_t;

ask_book_t *ask_book_new(const ask_config_t *cfg);
void ask_book_free(ask_book_t *b);

/* opencode raised kind ("permission" or "question") with its event's properties, about the tool
 * call tool_name (NULL: not known). Applies the policy, starts the timeout, records and announces it. */
void ask_raised(ask_book_t *b, const char *kind, json_object *props, const ask_origin_t *from, const char *tool_name);

/* The owner answers: for a permission {"reply": once|always|reject, "message"?}, for a question
 * {"answers": [[label...]...]} or {"reject": true} (checked by the API). Returns the HTTP status:
 * 200 (*record set, the caller's), 404 (no such prompt of this owner and session), 409 (no longer
 * pending: *record holds why), 502 (opencode could not be told), 503 (storage). */
int ask_reply(ask_book_t *b, const char *kind, const char *owner, const char *session_id, const char *id,
              json_object *args, json_object **record, char *why, size_t whylen);

/* The execution's job ended: its pending prompts are lost (announced to it one last time: call this
 * while it can still emit). */
void ask_turn_ended(ask_book_t *b, int64_t exec_id);

/* Prompts pending now. */
long ask_pending(const ask_book_t *b);

#endif
