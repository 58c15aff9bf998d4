/* turn: what the agent did in one execution, as its events tell it, in either mode.
 *
 * Every event a client is sent gets an id here (1, 2, ... per execution) and is kept, up to a
 * count and a byte bound, so a client that reconnects can be sent what it missed (events past
 * the bounds are still sent live, not kept; the log then says where it stops). Tool calls are
 * read from the events of both backends (`tool_use` lines of `opencode run`, tool parts of
 * `message.part.updated` from a server), one record per call id, its last state winning. The
 * files changed come from opencode's summary of the turn (server mode: `message.updated` of the
 * user message, `summary.diffs`). When the execution ends, turn_store writes the tool calls and
 * the kept events in one transaction. */
#ifndef OCPM_TURN_H
#define OCPM_TURN_H

#include <stddef.h>

#include <json-c/json.h>

#include "db.h"

typedef struct turn turn_t;

typedef struct turn_limits {
    long max_events;       /* events kept per execution */
    long max_event_bytes;  /* bytes of event data kept per execution */
    long max_input_bytes;  /* a tool call's input kept up to this (bigger: sizes and digest only) */
    int store_prompts;     /* 0: keep only sizes and digests of tool inputs */
} turn_limits_t;

turn_t *turn_new(const turn_limits_t *lim);
void turn_free(turn_t *t);

/* Give the next event its id and keep it (unless past the bounds): data is its JSON text, as sent
 * (copied). Returns the id. */
long long turn_log(turn_t *t, const char *type, const char *data);
/* The last id given (0: none yet). */
long long turn_last_id(const turn_t *t);
/* Read a tool call or a diff summary out of one of opencode's events. */
void turn_observe(turn_t *t, const char *type, json_object *data);

/* fn for each kept event with an id above after, in order. Returns 1 when some event above after
 * was not kept (past the bounds), else 0. */
int turn_replay(const turn_t *t, long long after, db_event_fn fn, void *ctx);

/* What the turn is doing now, as its events last said (for the slow log). Strings are t's, valid
 * until its next event. */
typedef struct turn_now {
    const char *step;         /* "tool", "text", "reasoning", or NULL: no event says (waiting for the model) */
    const char *tool, *call_id; /* the latest call still pending or running (NULL: none) */
    const char *input;        /* its input as kept (NULL: not kept: too large, or store_prompts = no) */
    const char *input_sha256; /* NULL: no input seen */
    long long input_bytes;    /* -1: no input seen */
} turn_now_t;
void turn_now(const turn_t *t, turn_now_t *now);

/* The tool calls so far, as the API shows them (a new JSON array). */
json_object *turn_tools_json(const turn_t *t);
/* The turn's cost so far, as its events report it. */
double turn_cost(const turn_t *t);
/* Tool calls seen so far. */
size_t turn_tool_count(const turn_t *t);
/* The tool of a call seen so far (NULL: none with that id). */
const char *turn_tool_name(const turn_t *t, const char *call_id);
/* The files changed, when opencode said: 1 and counts[files, additions, deletions], else 0. */
int turn_changes(const turn_t *t, long long counts[3]);
/* The tool calls by tool and status, for the metrics: fn(ctx, tool, status) once per call. */
void turn_each_tool(const turn_t *t, void (*fn)(void *ctx, const char *tool, const char *status), void *ctx);

/* Write the tool calls and kept events of execution exec_id (no events with store_prompts = 0:
 * they hold the answer's text and the tools' inputs and outputs). */
int turn_store(const turn_t *t, db_t *db, int64_t exec_id);

#endif
