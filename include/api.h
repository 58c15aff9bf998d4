/* api: the one definition of the HTTP API (and of the operations only ocpmctl asks for).
 *
 * One row per route: its method and path pattern, the manager operation it becomes, the fields
 * its body and query string take and their checks, and its handler. The responder matches a
 * request and checks its fields with the row (request.h) before anything reaches the manager; the
 * manager finds the row by its operation, checks the frame against the same row once more (the
 * control socket is the manager's own, but one definition costs nothing to apply twice) and
 * calls the handler, which never re-checks what its row guarantees. Adding an endpoint is adding
 * a row and its handler. docs/api.md's table of routes is generated from these rows. */
#ifndef OCPM_API_H
#define OCPM_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <json-c/json.h>

#include "control.h"
#include "snapshot.h"

/* What a field's value must be. */
typedef enum {
    API_FIELD_ID,        /* valid_id() */
    API_FIELD_WORKSPACE, /* valid_workspace() */
    API_FIELD_TEXT,      /* non-empty UTF-8 up to max_message_bytes */
    API_FIELD_MODEL,     /* valid_model() */
    API_FIELD_AGENT,     /* valid_id(), not starting with '-' (it becomes an argument of opencode) */
    API_FIELD_STATUS,    /* one of the execution statuses */
    API_FIELD_LIMIT,     /* integer 1..1000 */
    API_FIELD_MODE,      /* "server" or "per-session" */
    API_FIELD_TIME,      /* unix seconds (number >= 0) */
    API_FIELD_CURSOR,    /* an execution id (integer >= 1) */
    API_FIELD_SEQ,       /* an event id (integer >= 0) */
    API_FIELD_REPLY,     /* a permission's reply: "once", "always" or "reject" */
    API_FIELD_NOTE,      /* UTF-8 text up to 4096 bytes (may be empty) */
    API_FIELD_ANSWERS,   /* a question's answers: [[label, ...], ...] (labels: UTF-8 up to 1024 bytes) */
    API_FIELD_TRUE,      /* the boolean true */
    API_FIELD_PROMPT_STATUS, /* a prompt's status: pending, allowed, answered, rejected, timeout, lost */
    API_FIELD_SERVER,    /* a server's number in its pool: integer 0..CONF_SERVERS_MAX-1 */
    API_FIELD_SESSION_KEY, /* "OWNER/ID": a session of anyone's (owner "" or printable up to 256 bytes, valid_id()) */
} api_field_kind_t;

typedef struct api_field {
    const char *name;
    api_field_kind_t kind;
    bool required;
} api_field_t;

/* A checked request, as its handler gets it. */
typedef struct api_call {
    const char *user;  /* REMOTE_USER, or "" (nobody authenticated); NULL from ocpmctl: the operator */
    const char *id;    /* the path's {id} or {n}, or NULL */
    const char *sub;   /* the path's {rid} (a prompt's id), or NULL */
    json_object *args; /* the body's and query's fields, checked */
    bool stream;       /* Accept: text/event-stream (routes with API_WAITS) */
    bool async;        /* Prefer: respond-async (routes with API_WAITS) */
    bool openmetrics;  /* Accept prefers OpenMetrics to Prometheus text (routes with API_OPENMETRICS) */
} api_call_t;

/* ctx is the manager (manager.h). The handler answers c, at once or later. */
typedef void (*api_handler_fn)(void *ctx, control_conn_t *c, const api_call_t *call);

#define API_WAITS 1u    /* the client may stream the answer or not wait for it */
#define API_OPERATOR 2u /* everyone's data: the shipped nginx files allow it from localhost only */
#define API_FOLLOWS 4u  /* always answered as a stream that may last the whole turn (holds a thread) */
/* Answered as OpenMetrics when the client's Accept prefers it (metrics_negotiate), from the
 * snapshot's SNAPSHOT_METRICS_OM; the frame then carries "openmetrics": true. */
#define API_OPENMETRICS 8u
/* Answered by the responder from the manager's published document doc (snapshot.h) when it is
 * current and the request has no query (?full goes to the manager), else by the manager: the
 * published document takes no body and holds no user's data. */
#define API_SNAPSHOT(doc) ((unsigned)((doc) + 1) << 4)
#define API_SNAPSHOT_DOC(flags) ((int)(((flags) >> 4) & 0xfu) - 1)

typedef struct api_route {
    const char *method;  /* NULL: no HTTP route (ocpmctl, over the control socket) */
    const char *pattern; /* "{id}" matches a session id segment, "{n}" a positive 64-bit integer, "{rid}"
                          * (after one of those) a prompt's id */
    const char *op;
    const api_field_t *body;  /* NULL: no body allowed (empty or {}) */
    const api_field_t *query; /* NULL: no query parameters allowed */
    unsigned flags;
    api_handler_fn handler;
    const char *summary; /* one line, for the docs */
} api_route_t;

extern const api_route_t api_routes[];
extern const size_t api_nroutes;

/* Match method and path. Returns 0 and the route (with the {id}/{n} segment copied into id and the
 * {rid} one into sub, each "" when the pattern has none), 400 when the path matches but a segment
 * is not valid (*why says what it must be), 404 when no pattern matches, or 405 when one matches
 * with another method (allow then lists the methods that would, comma separated). id and sub have
 * room for VALID_ID_MAX + 1 bytes. */
int api_match(const char *method, const char *path, const api_route_t **out, char *id, char *sub, const char **why,
              char *allow, size_t allowlen);
/* Check one value against its field. NULL when fine, else why (a phrase: "must be a string"). */
const char *api_check_value(const api_field_t *f, json_object *v, long max_message_bytes);
/* Check an object's members against fields: unknown members and missing required ones are refused.
 * Returns NULL, or why, with the offending field's name in *name. */
const char *api_check_fields(const api_field_t *fields, json_object *obj, long max_message_bytes, const char **name,
                             const char **code);

/* The routes as docs/api.md shows them ("md": a table; * marks a required field). Returns 0, or
 * -1 for another format. */
int api_doc_write(FILE *f, const char *format);

/* The control socket's request handler: finds frame.op's row, checks the frame and calls its
 * handler with ctx (the manager). */
void api_dispatch(void *ctx, control_conn_t *c, json_object *frame);

/* Render one published document (snapshot.h) into the snapshot (manager_publish_fn). */
struct manager;
void api_publish(struct manager *m, int doc);

#endif
