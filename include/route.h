/* route: the HTTP API's table of routes, matched in the responder.
 *
 * Each route names its method, its path pattern ("{id}" matches one id
 * segment), the manager operation it becomes, and the fields its JSON body
 * and query string may carry. Adding an endpoint is adding a row. */
#ifndef OCPM_ROUTE_H
#define OCPM_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

/* What a field's value must be. */
typedef enum {
    FIELD_ID,        /* valid_id() */
    FIELD_WORKSPACE, /* valid_workspace() */
    FIELD_TEXT,      /* non-empty UTF-8 up to max_message_bytes */
    FIELD_MODEL,     /* valid_model() */
    FIELD_AGENT,     /* valid_id(), not starting with '-' (it becomes an argument of opencode) */
    FIELD_STATUS,    /* one of the execution statuses */
    FIELD_LIMIT,     /* integer 1..1000 */
    FIELD_MODE,      /* "server" or "per-session" */
    FIELD_TIME,      /* unix seconds (number >= 0) */
    FIELD_CURSOR,    /* an execution id (integer >= 1) */
} field_kind_t;

typedef struct field {
    const char *name;
    field_kind_t kind;
    bool required;
} field_t;

typedef struct route {
    const char *method;
    const char *pattern;
    const char *op;        /* the manager operation */
    const field_t *body;   /* NULL: no body allowed (empty or {}) */
    const field_t *query;  /* NULL: no query parameters allowed */
} route_t;

/* Match method and path. Returns 0 and the route (with the {id} segment
 * copied into id, or "" when the pattern has none), 400 when the path
 * matches but its id segment is not a valid id, 404 when no pattern matches, or 405 when one matches with another method (allow then lists
 * the methods that would, comma separated). */
int route_match(const char *method, const char *path, const route_t **out, char *id, size_t idlen,
                char *allow, size_t allowlen);

/* Execution statuses, in lifecycle order. */
extern const char *const route_statuses[];
bool route_is_status(const char *s);

#endif
