/* http: HTTP requests from the manager's loop, with libcurl's multi
 * interface driven by libuv (uv_poll per socket, one uv_timer for curl's
 * timeouts). No call blocks the loop, no thread per request; connections
 * are kept alive and reused by the one multi handle.
 *
 * Each request ends in exactly one done callback, unless it is cancelled
 * first (then none). A streaming request (data callback set) hands over its
 * body as it arrives and never buffers it. */
#ifndef OCPM_HTTP_H
#define OCPM_HTTP_H

#include <stddef.h>

#include <uv.h>

typedef struct http http_t;
typedef struct http_req http_req_t;

/* err is 0 on a completed exchange (any status), else a libcurl code with
 * errmsg. body is NUL-terminated (empty for streams). */
typedef void (*http_done_fn)(void *ctx, int err, const char *errmsg, long status, const char *body, size_t len);
/* Streamed body bytes; return non-zero to stop the transfer (done then
 * reports an error). */
typedef int (*http_data_fn)(void *ctx, const char *data, size_t len);

typedef struct http_opts {
    const char *method;   /* "GET", "POST" */
    const char *url;
    const char *body;     /* JSON, or NULL */
    const char *userpwd;  /* "user:password" for Basic auth, or NULL */
    long timeout_ms;      /* whole transfer; 0 = none (streams) */
    long connect_timeout_ms;
    size_t max_body;      /* buffered answers larger than this fail */
    const char *const *headers; /* more request headers ("Name: value"), NULL-terminated, or NULL */
    int https;            /* https:// too (webhooks); else http:// only */
    http_data_fn data;    /* streaming when set */
    http_done_fn done;
    void *ctx;
    /* Called instead of done for a request cancelled or freed with the client before it ended, so a
     * ctx only done would free is freed (NULL: nothing to free). */
    void (*drop)(void *ctx);
} http_opts_t;

/* A client: one multi handle driven by loop. NULL when libcurl cannot start. */
http_t *http_new(uv_loop_t *loop);
/* Cancel everything (no callbacks) and free the client (its timer closes with the loop's next turn). */
void http_free_client(http_t *h);
http_req_t *http_request(http_t *h, const http_opts_t *o);
void http_cancel(http_req_t *r);

#endif
