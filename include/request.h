/* request: turn one HTTP request (as FastCGI parameters) into a manager frame.
 *
 * Everything a client sends is checked here, in the responder, before the
 * manager sees it: route, method, query, content type, body size, JSON shape,
 * field types and values, UTF-8 and NUL bytes. The result is either a frame
 * object or an HTTP error (status, code, message). Pure: no I/O. */
#ifndef OCPM_REQUEST_H
#define OCPM_REQUEST_H

#include <stddef.h>

#include <json-c/json.h>

#include "api.h"

typedef struct request_in {
    const char *method;
    const char *path;         /* DOCUMENT_URI: decoded and normalised by nginx */
    const char *raw_uri;      /* REQUEST_URI as the client sent it, or NULL */
    const char *query;        /* QUERY_STRING, raw */
    const char *content_type; /* may be NULL */
    const char *accept;       /* may be NULL */
    const char *prefer;       /* may be NULL */
    const char *last_event_id; /* Last-Event-ID, may be NULL */
    const char *remote_user;  /* may be NULL or "" (anonymous) */
    const char *node;         /* Ocpm-Node: the node a cluster's front sent it for, or NULL */
    const char *body;
    size_t body_len;
} request_in_t;

typedef struct request_limits {
    long max_body_bytes;
    long max_message_bytes;
    const char *node_name; /* this node's (node_name): a request sent for another is refused, 421 */
} request_limits_t;

typedef struct request_err {
    int status;        /* HTTP status */
    const char *code;  /* stable machine-readable code */
    char message[256]; /* for people */
    char allow[64];    /* for 405 */
} request_err_t;

/* The frame: {"op", "user", "id"?, "args"{...}, "stream"?, "async"?, "openmetrics"?}. "user" is REMOTE_USER, or ""
 * when nginx authenticated nobody (a name no user can have). A path must be spelled exactly as a
 * route is: the client's own spelling (REQUEST_URI) must be the normalised one (no dot segments,
 * no encoded characters, no doubled or trailing slash), so that nginx's locations and the route
 * table can never disagree. Returns NULL and fills err when the request is refused; else the frame,
 * and the route's row in *route unless route is NULL. */
json_object *request_build(const request_in_t *in, const request_limits_t *lim, request_err_t *err,
                           const api_route_t **route);

/* Decode %XX and '+' in place; returns -1 on a bad escape or %00. */
int request_urldecode(char *s);

#endif
