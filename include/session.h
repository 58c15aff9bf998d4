/* session: the manager's in-memory table of sessions (mirrors the sessions
 * table; loaded at start, written through on change).
 *
 * A session is named by its owner and its id: ids are chosen per owner, so one user's ids say
 * nothing about another's. A session owns its FIFO of executions: at most one runs at a time, the
 * others wait in order. Lookups are O(1) by (owner, id). */
#ifndef OCPM_SESSION_H
#define OCPM_SESSION_H

#include <stddef.h>

#include <json-c/json.h>

typedef struct session session_t;
typedef struct session_table session_table_t;
struct execution;

session_table_t *session_table_new(size_t buckets);
void session_table_free(session_table_t *t);

/* Add a session (from the database or a new create). workspace is its directory, workspace_name
 * what clients see. NULL on no memory. */
session_t *session_add(session_table_t *t, const char *id, const char *owner, const char *workspace, const char *workspace_name,
                 const char *oc_session_id, double created_at, double last_activity, long message_count);
session_t *session_find(const session_table_t *t, const char *owner, const char *id);
/* Remove from the table and free; the caller has emptied its queue. */
void session_remove(session_table_t *t, session_t *s);
size_t session_count(const session_table_t *t);
void session_each(session_table_t *t, void (*fn)(void *ctx, session_t *s), void *ctx);

const char *session_id(const session_t *s);
const char *session_owner(const session_t *s);
const char *session_workspace(const session_t *s);
const char *session_workspace_name(const session_t *s);
const char *session_oc_id(const session_t *s);
/* Set (or, with NULL, forget) the opencode conversation it continues. */
int session_set_oc_id(session_t *s, const char *oc_session_id);
/* The opencode server the session is placed on (servers), -1 when it has not needed one yet. */
int session_server(const session_t *s);
void session_set_server(session_t *s, int server);
/* The pool it lives in (an index of the manager's pools; -1: its pool is no longer configured). */
int session_pool(const session_t *s);
void session_set_pool(session_t *s, int pool);
void session_note_message(session_t *s, double at);
/* When it was created and last had a message (unix seconds), and how many messages it had. */
double session_created_at(const session_t *s);
double session_last_activity(const session_t *s);
long session_message_count(const session_t *s);

/* The queue: the running execution (NULL if none) and the waiting ones. */
struct execution *session_running(const session_t *s);
void session_set_running(session_t *s, struct execution *e);
size_t session_waiting(const session_t *s);
int session_enqueue(session_t *s, struct execution *e);
/* The oldest waiting execution (it stays), or NULL. */
struct execution *session_peek(const session_t *s);
/* Take the oldest waiting execution, or NULL. */
struct execution *session_dequeue(session_t *s);
/* Remove a particular waiting execution; returns 1 if it was there. */
int session_unqueue(session_t *s, struct execution *e);

/* The session as the API shows it (no server path: the workspace by its name). */
json_object *session_json(const session_t *s);
/* One page of owner's sessions in id order, after the id `after` ("" from the start): at most
 * limit, and *more set when others follow. O(sessions) per call. */
json_object *session_page(const session_table_t *t, const char *owner, const char *after, long limit, int *more);

#endif
