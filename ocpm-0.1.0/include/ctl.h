/* ctl: the manager's control socket (AF_UNIX stream, mode 0600).
 *
 * Responder threads each keep one connection and send one request frame at
 * a time. The manager answers with frames of its own, by "t":
 *   {"t":"reply","status":N,"headers":{..},"body":{..}}   the whole answer, or
 *   {"t":"stream"} then {"t":"event","event":NAME,"data":{..}}... then {"t":"end"}
 * A second request before the first is answered, or a malformed frame,
 * closes the connection (logged); the manager carries on. */
#ifndef OCPM_CTL_H
#define OCPM_CTL_H

#include <json-c/json.h>

#include "mgr.h"

typedef struct ctl_conn ctl_conn_t;

/* Called with each request frame; the handler must answer it (now or later)
 * with ctl_reply/ctl_error, or with ctl_stream_start ... ctl_end. */
typedef void (*ctl_request_fn)(mgr_t *m, ctl_conn_t *c, json_object *frame);
/* Called when a connection closes while something waits to answer it. */
typedef void (*ctl_detach_fn)(void *ctx, ctl_conn_t *c);

int ctl_listen(mgr_t *m, const char *path, ctl_request_fn fn, char *err, size_t errlen);
/* Stop accepting; existing connections stay. */
void ctl_stop_listening(void);
/* Close every connection and the listener. */
void ctl_close_all(void);

/* body is taken over. headers may be NULL (taken over too). */
int ctl_reply(ctl_conn_t *c, int status, json_object *body, json_object *headers);
int ctl_error(ctl_conn_t *c, int status, const char *code, const char *message);
/* The same with a Retry-After header (seconds) and, if reason is not NULL, error.reason. */
int ctl_error_retry(ctl_conn_t *c, int status, const char *code, const char *message, const char *reason,
                    long retry_after_s);
/* A reply that is not JSON (the metrics text): {"t":"reply","status","content_type","text"}. */
int ctl_reply_text(ctl_conn_t *c, int status, const char *content_type, const char *text);
int ctl_stream_start(ctl_conn_t *c);
/* data is borrowed. */
int ctl_event(ctl_conn_t *c, const char *event, json_object *data);
int ctl_end(ctl_conn_t *c);

/* Remember who is waiting to answer c, so a closing connection tells them. */
void ctl_set_waiter(ctl_conn_t *c, ctl_detach_fn fn, void *ctx);

#endif
