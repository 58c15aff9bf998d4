/* sess: the manager's in-memory table of sessions (mirrors the sessions
 * table; loaded at start, written through on change).
 *
 * A session is named by its owner and its id: ids are chosen per owner, so one user's ids say
 * nothing about another's. A session owns its FIFO of executions: at most one runs at a time, the
 * others wait in order. Lookups are O(1) by (owner, id). */
#ifndef OCPM_SESS_H
#define OCPM_SESS_H

#include <stddef.h>

#include <json-c/json.h>

typedef struct sess sess_t;
struct exec;

int sess_table_init(size_t buckets);
void sess_table_free(void);

/* Add a session (from the database or a new create). workspace is its directory, workspace_name
 * what clients see. NULL on no memory. */
sess_t *sess_add(const char *id, const char *owner, const char *workspace, const char *workspace_name,
                 const char *oc_session_id, double created_at, double last_activity, long message_count);
sess_t *sess_find(const char *owner, const char *id);
/* Remove from the table and free; the caller has emptied its queue. */
void sess_remove(sess_t *s);
size_t sess_count(void);
void sess_each(void (*fn)(void *ctx, sess_t *s), void *ctx);

const char *sess_id(const sess_t *s);
const char *sess_owner(const sess_t *s);
const char *sess_workspace(const sess_t *s);
const char *sess_workspace_name(const sess_t *s);
const char *sess_oc_id(const sess_t *s);
int sess_set_oc_id(sess_t *s, const char *oc_session_id);
void sess_note_message(sess_t *s, double at);

/* The queue: the running execution (NULL if none) and the waiting ones. */
struct exec *sess_running(const sess_t *s);
void sess_set_running(sess_t *s, struct exec *e);
size_t sess_waiting(const sess_t *s);
int sess_enqueue(sess_t *s, struct exec *e);
/* Take the oldest waiting execution, or NULL. */
struct exec *sess_dequeue(sess_t *s);
/* Remove a particular waiting execution; returns 1 if it was there. */
int sess_unqueue(sess_t *s, struct exec *e);

/* The session as the API shows it (no server path: the workspace by its name). */
json_object *sess_json(const sess_t *s);
/* One page of owner's sessions in id order, after the id `after` ("" from the start): at most
 * limit, and *more set when others follow. O(sessions) per call. */
json_object *sess_page(const char *owner, const char *after, long limit, int *more);

#endif
