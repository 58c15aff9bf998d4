/* control: the manager's control socket (AF_UNIX stream, mode 0600).
 *
 * Responder threads each keep one connection and send one request frame at
 * a time. The manager answers with frames of its own, by "t":
 *   {"t":"reply","status":N,"headers":{..},"body":{..}}   the whole answer, or
 *   {"t":"stream"} then {"t":"event","event":NAME,"data":{..}}... then {"t":"end"}
 * A second request before the first is answered, or a malformed frame,
 * closes the connection (logged); the manager carries on. */
#ifndef OCPM_CONTROL_H
#define OCPM_CONTROL_H

#include <json-c/json.h>
#include <uv.h>

typedef struct control control_t;
typedef struct control_conn control_conn_t;

/* Called with each request frame; the handler must answer it (now or later)
 * with control_reply/control_error, or with control_stream_start ... control_end. */
typedef void (*control_request_fn)(void *ctx, control_conn_t *c, json_object *frame);
/* Called when a connection closes while something waits to answer it. */
typedef void (*control_detach_fn)(void *ctx, control_conn_t *c);

/* Listen on path (mode 0600). NULL with err when it cannot. */
control_t *control_listen(uv_loop_t *loop, const char *path, control_request_fn fn, void *ctx, char *err,
                          size_t errlen);
/* Close every connection and the listener; it frees itself once they are closed. */
void control_free(control_t *ctl);
/* Clients streaming now, and requests answered since the start. */
long control_streams(const control_t *ctl);
unsigned long long control_requests(const control_t *ctl);

/* body is taken over. headers may be NULL (taken over too). */
int control_reply(control_conn_t *c, int status, json_object *body, json_object *headers);
int control_error(control_conn_t *c, int status, const char *code, const char *message);
/* The same with a Retry-After header (seconds) and, if reason is not NULL, error.reason. */
int control_error_retry(control_conn_t *c, int status, const char *code, const char *message, const char *reason,
                    long retry_after_s);
/* A reply that is not JSON (the metrics text): {"t":"reply","status","content_type","text"}. */
int control_reply_text(control_conn_t *c, int status, const char *content_type, const char *text);
int control_stream_start(control_conn_t *c);
/* data is borrowed. */
int control_event(control_conn_t *c, long long id, const char *event, json_object *data);
/* The connection is going away (a write failed, the peer left): nothing more reaches it. */
int control_closing(const control_conn_t *c);
int control_end(control_conn_t *c);

/* Who is at the other end of c (SO_PEERCRED), for operators' commands in the log: 0 with its uid
 * and pid, or -1. */
int control_peer(const control_conn_t *c, long *uid, long *pid);

/* Remember who is waiting to answer c, so a closing connection tells them. */
void control_set_waiter(control_conn_t *c, control_detach_fn fn, void *ctx);

#endif
