#define _GNU_SOURCE
#include "control.h"

#include "snapshot.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uvbuf.h"
#include "frame.h"
#include "log.h"

struct control_conn {
    struct control *ctl;
    uv_pipe_t pipe;
    frame_decoder_t *dec;
    int busy;      /* a request is being answered */
    int streaming; /* between stream start and end */
    int closing;
    control_detach_fn detach;
    void *detach_ctx;
    struct control_conn *prev, *next;
};

typedef struct control_write {
    uv_write_t req;
    char *buf;
} control_write_t;

struct control {
    uv_pipe_t listener;
    int listening;
    control_request_fn handler;
    void *ctx;
    control_conn_t *conns;
    long streams;
    unsigned long long requests;
    int freeing, handles; /* the listener and the connections not yet closed */
};

static void control_maybe_free(control_t *ctl)
{
    if (ctl->freeing && ctl->handles == 0)
        free(ctl);
}

long control_streams(const control_t *ctl) { return ctl->streams; }
unsigned long long control_requests(const control_t *ctl) { return ctl->requests; }

static void control_conn_closed(uv_handle_t *h)
{
    control_conn_t *c = h->data;
    control_t *ctl = c->ctl;
    frame_decoder_free(c->dec);
    free(c);
    ctl->handles--;
    control_maybe_free(ctl);
}

static void control_conn_close(control_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->streaming)
        c->ctl->streams--;
    c->streaming = 0;
    if (c->detach) {
        control_detach_fn fn = c->detach;
        c->detach = NULL;
        fn(c->detach_ctx, c);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        c->ctl->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->pipe, control_conn_closed);
}

static void control_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    control_conn_t *c = s->data;
    if (n < 0) {
        free(buf->base);
        control_conn_close(c);
        return;
    }
    if (n > 0 && frame_feed(c->dec, buf->base, (size_t)n) != FRAME_OK) {
        free(buf->base);
        log_error("control connection out of memory", NULL);
        control_conn_close(c);
        return;
    }
    free(buf->base);
    for (;;) {
        json_object *f;
        const char *why = "";
        frame_rc_t rc = frame_next(c->dec, &f, &why);
        if (rc == FRAME_AGAIN)
            return;
        if (rc == FRAME_ERROR) {
            log_warn("malformed frame, closing connection", "reason=%s", log_q(why));
            control_conn_close(c);
            return;
        }
        if (c->busy) {
            json_object_put(f);
            log_warn("malformed frame, closing connection", "reason=\"request before the last was answered\"");
            control_conn_close(c);
            return;
        }
        c->busy = 1;
        c->ctl->requests++;
        c->ctl->handler(c->ctl->ctx, c, f);
        json_object_put(f);
        if (c->closing)
            return;
    }
}

static void control_accept(uv_stream_t *server, int status)
{
    control_t *ctl = server->data;
    if (status < 0)
        return;
    control_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->ctl = ctl;
    c->dec = frame_decoder_new(FRAME_MAX);
    uv_pipe_init(server->loop, &c->pipe, 0);
    c->pipe.data = c;
    ctl->handles++;
    if (!c->dec || uv_accept(server, (uv_stream_t *)&c->pipe) != 0) {
        uv_close((uv_handle_t *)&c->pipe, control_conn_closed);
        return;
    }
    c->next = ctl->conns;
    if (ctl->conns)
        ctl->conns->prev = c;
    ctl->conns = c;
    uv_read_start((uv_stream_t *)&c->pipe, uvbuf_alloc, control_read);
}

static void control_listener_closed(uv_handle_t *h)
{
    control_t *ctl = h->data;
    ctl->handles--;
    control_maybe_free(ctl);
}

control_t *control_listen(uv_loop_t *loop, const char *path, control_request_fn fn, void *ctx, char *err,
                          size_t errlen)
{
    control_t *ctl = calloc(1, sizeof *ctl);
    if (!ctl) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ctl->handler = fn;
    ctl->ctx = ctx;
    unlink(path); /* the lock file proved no other ocpmd owns it */
    uv_pipe_init(loop, &ctl->listener, 0);
    ctl->listener.data = ctl;
    ctl->handles = 1;
    mode_t old = umask(0177);
    int rc = uv_pipe_bind(&ctl->listener, path);
    umask(old);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&ctl->listener, 256, control_accept);
    if (rc != 0) {
        snprintf(err, errlen, "control socket %s: %s", path, uv_strerror(rc));
        ctl->freeing = 1;
        uv_close((uv_handle_t *)&ctl->listener, control_listener_closed);
        return NULL;
    }
    chmod(path, 0600);
    ctl->listening = 1;
    return ctl;
}

void control_free(control_t *ctl)
{
    if (!ctl)
        return;
    ctl->freeing = 1;
    if (ctl->listening) {
        ctl->listening = 0;
        uv_close((uv_handle_t *)&ctl->listener, control_listener_closed);
    }
    while (ctl->conns)
        control_conn_close(ctl->conns);
    control_maybe_free(ctl);
}

static void control_written(uv_write_t *req, int status)
{
    control_write_t *w = (control_write_t *)req;
    free(w->buf);
    free(w);
    (void)status; /* a failed write shows up as a read error and closes the conn */
}

static int control_send(control_conn_t *c, json_object *frame)
{
    if (c->closing)
        return -1;
    /* Whoever reads this may ask the status next: it must not come from before this answer. */
    snapshot_stale();
    size_t len;
    char *buf = frame_encode(frame, &len);
    control_write_t *w = buf ? malloc(sizeof *w) : NULL;
    if (!w) {
        free(buf);
        log_error("cannot encode reply frame", NULL);
        control_conn_close(c);
        return -1;
    }
    w->buf = buf;
    uv_buf_t b = uv_buf_init(buf, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, control_written) != 0) {
        free(buf);
        free(w);
        control_conn_close(c);
        return -1;
    }
    return 0;
}

static json_object *control_reply_frame(int status)
{
    json_object *f = json_object_new_object();
    json_object_object_add(f, "t", json_object_new_string("reply"));
    json_object_object_add(f, "status", json_object_new_int(status));
    return f;
}

/* Send the final frame of a request: the connection takes the next one. */
static int control_send_final(control_conn_t *c, json_object *f)
{
    c->busy = 0;
    c->detach = NULL;
    int rc = control_send(c, f);
    json_object_put(f);
    return rc;
}

int control_reply(control_conn_t *c, int status, json_object *body, json_object *headers)
{
    json_object *f = control_reply_frame(status);
    if (headers)
        json_object_object_add(f, "headers", headers);
    json_object_object_add(f, "body", body);
    return control_send_final(c, f);
}

int control_reply_text(control_conn_t *c, int status, const char *content_type, const char *text)
{
    json_object *f = control_reply_frame(status);
    json_object_object_add(f, "content_type", json_object_new_string(content_type));
    json_object_object_add(f, "text", json_object_new_string(text));
    return control_send_final(c, f);
}

int control_error_retry(control_conn_t *c, int status, const char *code, const char *message, const char *reason,
                    long retry_after_s)
{
    json_object *e = json_object_new_object(), *b = json_object_new_object(), *h = NULL;
    json_object_object_add(e, "code", json_object_new_string(code));
    json_object_object_add(e, "message", json_object_new_string(message));
    if (reason)
        json_object_object_add(e, "reason", json_object_new_string(reason));
    json_object_object_add(b, "error", e);
    if (retry_after_s > 0) {
        char ra[32];
        snprintf(ra, sizeof ra, "%ld", retry_after_s);
        h = json_object_new_object();
        json_object_object_add(h, "Retry-After", json_object_new_string(ra));
    }
    return control_reply(c, status, b, h);
}

int control_error(control_conn_t *c, int status, const char *code, const char *message)
{
    return control_error_retry(c, status, code, message, NULL, 0);
}

int control_closing(const control_conn_t *c) { return c->closing; }

int control_stream_start(control_conn_t *c)
{
    json_object *f = json_object_new_object();
    json_object_object_add(f, "t", json_object_new_string("stream"));
    int rc = control_send(c, f);
    json_object_put(f);
    if (rc == 0) {
        c->streaming = 1;
        c->ctl->streams++;
    }
    return rc;
}

int control_event(control_conn_t *c, long long id, const char *event, json_object *data)
{
    json_object *f = json_object_new_object();
    json_object_object_add(f, "t", json_object_new_string("event"));
    if (id > 0)
        json_object_object_add(f, "id", json_object_new_int64(id));
    json_object_object_add(f, "event", json_object_new_string(event));
    json_object_object_add(f, "data", json_object_get(data));
    int rc = control_send(c, f);
    json_object_put(f);
    return rc;
}

int control_end(control_conn_t *c)
{
    json_object *f = json_object_new_object();
    json_object_object_add(f, "t", json_object_new_string("end"));
    if (c->streaming) {
        c->streaming = 0;
        c->ctl->streams--;
    }
    return control_send_final(c, f);
}

int control_peer(const control_conn_t *c, long *uid, long *pid)
{
    uv_os_fd_t fd;
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (uv_fileno((const uv_handle_t *)&c->pipe, &fd) != 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return -1;
    *uid = (long)cred.uid;
    *pid = (long)cred.pid;
    return 0;
}

void control_set_waiter(control_conn_t *c, control_detach_fn fn, void *ctx)
{
    c->detach = fn;
    c->detach_ctx = ctx;
}
