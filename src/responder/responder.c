#define _GNU_SOURCE
#include "responder.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <fcgiapp.h>
#include <json-c/json.h>

#include "frame.h"
#include "inflight.h"
#include "log.h"
#include "pool.h"
#include "request.h"
#include "snapshot.h"

/* malloc arenas for all the threads (mallopt below). */
#define RESP_ARENAS 2
/* How long in-flight requests may take to finish after SIGTERM. */
#define RESP_STOP_GRACE_S 30

/* This responder: its place in the pool and the manager's settings (fd 4). */
typedef struct responder {
    int index;
    pid_t manager; /* the parent that published the snapshot */
    pool_settings_t s;
    atomic_int busy;
    atomic_int stopping;
    atomic_int threads; /* threads still taking requests */
} responder_t;

typedef struct resp_thread {
    responder_t *r;
    int ctl;
    frame_decoder_t *dec;
} resp_thread_t;

/* The settings the manager sealed into fd: its own conf_t, as it parsed it (the same binary). */
static int responder_read_settings(int fd, pool_settings_t *s)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size != (off_t)sizeof *s || pread(fd, s, sizeof *s, 0) != (ssize_t)sizeof *s)
        return -1;
    return s->conf.responder_threads >= 1 && s->slots >= 1 ? 0 : -1;
}

static int resp_connect(resp_thread_t *t)
{
    if (t->ctl >= 0)
        return 0;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", t->r->s.conf.control_socket);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    t->ctl = fd;
    frame_decoder_free(t->dec);
    t->dec = frame_decoder_new(FRAME_MAX);
    if (!t->dec) {
        close(fd);
        t->ctl = -1;
        return -1;
    }
    return 0;
}

static void resp_disconnect(resp_thread_t *t)
{
    if (t->ctl >= 0)
        close(t->ctl);
    t->ctl = -1;
    frame_decoder_free(t->dec);
    t->dec = NULL;
}

/* libfcgi's own FCGX_FPrintF knows fewer formats than libc: format here. */
static void resp_printf(FCGX_Stream *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void resp_printf(FCGX_Stream *out, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0)
        FCGX_PutStr(buf, n < (int)sizeof buf ? n : (int)sizeof buf - 1, out);
}

static const char *resp_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 421: return "Misdirected Request";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "";
    }
}

/* Write one whole JSON response. headers may be NULL. */
static void resp_write_json(FCGX_Request *r, int status, json_object *headers, json_object *body)
{
    resp_printf(r->out, "Status: %d %s\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n", status,
                 resp_reason(status));
    if (headers && json_object_is_type(headers, json_type_object)) {
        json_object_object_foreach(headers, k, v)
        {
            const char *s = json_object_get_string(v);
            /* Header names and values come from the manager; refuse line breaks all the same. */
            if (!strpbrk(k, "\r\n:") && s && !strpbrk(s, "\r\n"))
                resp_printf(r->out, "%s: %s\r\n", k, s);
        }
    }
    size_t n;
    const char *text = json_object_to_json_string_length(body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    resp_printf(r->out, "Content-Length: %zu\r\n\r\n", n + 1);
    FCGX_PutStr(text, (int)n, r->out);
    FCGX_PutS("\n", r->out);
}

/* An error answer; header (e.g. "Allow") with its value when both are given. */
static void resp_error_h(FCGX_Request *r, int status, const char *code, const char *message, const char *header,
                         const char *value)
{
    json_object *b = json_object_new_object(), *e = json_object_new_object(), *h = NULL;
    json_object_object_add(e, "code", json_object_new_string(code));
    json_object_object_add(e, "message", json_object_new_string(message));
    json_object_object_add(b, "error", e);
    if (header && value && *value) {
        h = json_object_new_object();
        json_object_object_add(h, header, json_object_new_string(value));
    }
    resp_write_json(r, status, h, b);
    json_object_put(b);
    json_object_put(h);
}

static void resp_error(FCGX_Request *r, int status, const char *code, const char *message, const char *allow)
{
    resp_error_h(r, status, code, message, "Allow", allow);
}

/* The pool is full: say so at once (the spare thread's job). */
static void resp_busy(FCGX_Request *r, const char *what)
{
    resp_error_h(r, 503, "server_busy", what, "Retry-After", "1");
}

static const char *resp_frame_str(json_object *f, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(f, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

/* Relay a stream: events as SSE, heartbeats while quiet. Returns when the
 * manager ends it, the manager goes away, or the client does. */
static void resp_stream(FCGX_Request *r, resp_thread_t *t)
{
    resp_printf(r->out, "Status: 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                         "X-Accel-Buffering: no\r\n\r\n");
    FCGX_PutS(": stream open\n\n", r->out);
    if (FCGX_FFlush(r->out) != 0) {
        resp_disconnect(t); /* the manager drops the waiter when the conn closes */
        return;
    }
    for (;;) {
        json_object *f = NULL;
        frame_rc_t rc = frame_read_fd(t->ctl, t->dec, &f, (int)t->r->s.conf.sse_heartbeat_ms);
        if (rc == FRAME_AGAIN) {
            FCGX_PutS(": heartbeat\n\n", r->out);
            if (FCGX_FFlush(r->out) != 0) {
                log_info("client went away during a stream", NULL);
                resp_disconnect(t);
                return;
            }
            continue;
        }
        if (rc == FRAME_ERROR) {
            FCGX_PutS("event: error\ndata: {\"error\":{\"code\":\"manager_unavailable\",\"message\":\"the manager "
                      "closed the stream\"}}\n\n",
                      r->out);
            FCGX_FFlush(r->out);
            resp_disconnect(t);
            return;
        }
        const char *type = resp_frame_str(f, "t");
        if (type && strcmp(type, "end") == 0) {
            json_object_put(f);
            return;
        }
        const char *ev = resp_frame_str(f, "event");
        json_object *data = NULL;
        json_object_object_get_ex(f, "data", &data);
        if (type && strcmp(type, "event") == 0 && ev && !strpbrk(ev, "\r\n")) {
            const char *d = data ? json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE) : "null";
            json_object *idv;
            if (json_object_object_get_ex(f, "id", &idv) && json_object_is_type(idv, json_type_int))
                resp_printf(r->out, "id: %lld\n", (long long)json_object_get_int64(idv));
            resp_printf(r->out, "event: %s\ndata: ", ev);
            FCGX_PutS(d, r->out);
            FCGX_PutS("\n\n", r->out);
        }
        json_object_put(f);
        if (FCGX_FFlush(r->out) != 0) {
            log_info("client went away during a stream", NULL);
            resp_disconnect(t);
            return;
        }
    }
}

/* The request's body, whole, checked against Content-Length and max_body_bytes. NULL after
 * answering r when it cannot be had. */
static char *resp_read_body(FCGX_Request *r, resp_thread_t *t, long *len_out)
{
    const char *clen = FCGX_GetParam("CONTENT_LENGTH", r->envp);
    long len = 0;
    if (clen && *clen) {
        char *end;
        errno = 0;
        len = strtol(clen, &end, 10);
        if (errno || *end || len < 0)
            return resp_error(r, 400, "bad_request", "invalid Content-Length", NULL), NULL;
    }
    if (len > t->r->s.conf.max_body_bytes) {
        char m[96];
        snprintf(m, sizeof m, "body is larger than %ld bytes", t->r->s.conf.max_body_bytes);
        return resp_error(r, 413, "body_too_large", m, NULL), NULL;
    }
    char *body = malloc((size_t)len + 1);
    if (!body)
        return resp_error(r, 500, "internal", "out of memory", NULL), NULL;
    int got = len ? FCGX_GetStr(body, (int)len, r->in) : 0;
    if (got != len) {
        free(body);
        return resp_error(r, 400, "incomplete_body", "the body ended before Content-Length bytes", NULL), NULL;
    }
    body[len] = '\0';
    *len_out = len;
    return body;
}

/* The request as a manager frame (request.h) and its route, or NULL after answering r. */
static json_object *resp_frame(FCGX_Request *r, resp_thread_t *t, const api_route_t **route)
{
    char **env = r->envp;
    long len = 0;
    char *body = resp_read_body(r, t, &len);
    if (!body)
        return NULL;
    const char *path = FCGX_GetParam("DOCUMENT_URI", env);
    request_in_t in = {
        .method = FCGX_GetParam("REQUEST_METHOD", env),
        .path = path ? path : FCGX_GetParam("SCRIPT_NAME", env),
        .raw_uri = FCGX_GetParam("REQUEST_URI", env),
        .query = FCGX_GetParam("QUERY_STRING", env),
        .content_type = FCGX_GetParam("CONTENT_TYPE", env),
        .accept = FCGX_GetParam("HTTP_ACCEPT", env),
        .prefer = FCGX_GetParam("HTTP_PREFER", env),
        .last_event_id = FCGX_GetParam("HTTP_LAST_EVENT_ID", env),
        .remote_user = FCGX_GetParam("REMOTE_USER", env),
        .node = FCGX_GetParam("HTTP_OCPM_NODE", env),
        .body = body,
        .body_len = (size_t)len,
    };
    request_limits_t lim = {t->r->s.conf.max_body_bytes, t->r->s.conf.max_message_bytes, t->r->s.conf.node_name};
    request_err_t err;
    json_object *frame = request_build(&in, &lim, &err, route);
    free(body);
    if (!frame)
        resp_error(r, err.status, err.code, err.message, err.allow);
    return frame;
}

/* Send the frame to the manager and read its first reply frame, or NULL after answering r. A
 * connection the manager closed earlier is retried once. */
static json_object *resp_forward(FCGX_Request *r, resp_thread_t *t, json_object *frame)
{
    int sent = -1;
    for (int attempt = 0; attempt < 2 && sent != 0; attempt++) {
        if (resp_connect(t) != 0)
            break;
        sent = frame_write_fd(t->ctl, frame);
        if (sent != 0)
            resp_disconnect(t);
    }
    if (sent != 0)
        return resp_error(r, 503, "manager_unavailable", "the manager is not answering", NULL), NULL;
    json_object *f = NULL;
    if (frame_read_fd(t->ctl, t->dec, &f, -1) != FRAME_OK) {
        resp_disconnect(t);
        return resp_error(r, 503, "manager_unavailable", "the manager closed the connection", NULL), NULL;
    }
    return f;
}

/* The manager's answer to the client: a stream, a text reply (metrics) or a JSON reply. */
static void resp_answer(FCGX_Request *r, resp_thread_t *t, json_object *f)
{
    const char *type = resp_frame_str(f, "t");
    json_object *status, *headers = NULL, *b = NULL, *text, *ctype;
    if (type && strcmp(type, "stream") == 0) {
        resp_stream(r, t);
    } else if (type && strcmp(type, "reply") == 0 && json_object_object_get_ex(f, "status", &status) &&
               json_object_object_get_ex(f, "text", &text) && json_object_object_get_ex(f, "content_type", &ctype)) {
        const char *ct = json_object_get_string(ctype);
        int n = json_object_get_string_len(text);
        resp_printf(r->out, "Status: %d %s\r\nContent-Type: %s\r\nCache-Control: no-store\r\nContent-Length: %d\r\n\r\n",
                    json_object_get_int(status), resp_reason(json_object_get_int(status)),
                    strpbrk(ct, "\r\n") ? "text/plain" : ct, n);
        FCGX_PutStr(json_object_get_string(text), n, r->out);
    } else if (type && strcmp(type, "reply") == 0 && json_object_object_get_ex(f, "status", &status) &&
               json_object_object_get_ex(f, "body", &b)) {
        json_object_object_get_ex(f, "headers", &headers);
        resp_write_json(r, json_object_get_int(status), headers, b);
    } else {
        resp_disconnect(t);
        resp_error(r, 502, "bad_manager_reply", "the manager sent an unexpected frame", NULL);
    }
}

/* The manager's published answer for a snapshot route, while it is current and the manager that
 * published it still runs (a responder outliving it must not answer for it). Returns 0 when sent. */
static int resp_from_snapshot(FCGX_Request *r, const responder_t *self, const api_route_t *row, json_object *frame)
{
    int doc = API_SNAPSHOT_DOC(row->flags), status;
    json_object *om;
    /* The metrics come in two expositions; the frame says which the client's Accept prefers. */
    if (doc == SNAPSHOT_METRICS && json_object_object_get_ex(frame, "openmetrics", &om) && json_object_get_boolean(om))
        doc = SNAPSHOT_METRICS_OM;
    char ctype[64], *body;
    size_t len;
    if (doc < 0 || getppid() != self->manager || snapshot_get(doc, &status, ctype, sizeof ctype, &body, &len) != 0)
        return -1;
    resp_printf(r->out, "Status: %d %s\r\nContent-Type: %s\r\nCache-Control: no-store\r\nContent-Length: %zu\r\n\r\n",
                status, resp_reason(status), ctype, len);
    FCGX_PutStr(body, (int)len, r->out);
    free(body);
    return 0;
}

/* Serve one request. *is_message says whether it was counted as a message (inflight). */
static void resp_handle(FCGX_Request *r, resp_thread_t *t, int *is_message)
{
    const api_route_t *row = NULL;
    json_object *frame = resp_frame(r, t, &row);
    if (!frame)
        return;
    /* The published document is the plain one: a query (?full) goes to the manager. */
    json_object *args = json_object_object_get(frame, "args");
    if ((!args || json_object_object_length(args) == 0) && resp_from_snapshot(r, t->r, row, frame) == 0) {
        json_object_put(frame);
        return;
    }
    /* A request whose answer may take minutes (a message) holds its thread: counted apart. */
    if (row->flags & (API_WAITS | API_FOLLOWS)) {
        if (inflight_promote(t->r->index, t->r->s.message_capacity) != 0) {
            json_object_put(frame);
            resp_busy(r, "every responder thread for messages is busy; retry shortly");
            return;
        }
        *is_message = 1;
    }
    json_object *f = resp_forward(r, t, frame);
    json_object_put(frame);
    if (f)
        resp_answer(r, t, f);
    json_object_put(f);
}

static void *resp_thread_main(void *arg)
{
    responder_t *r = arg;
    resp_thread_t t = {.r = r, .ctl = -1};
    FCGX_Request req;
    if (FCGX_InitRequest(&req, 0, 0) != 0) {
        atomic_fetch_sub(&r->threads, 1);
        return NULL;
    }
    while (!atomic_load(&r->stopping)) {
        if (FCGX_Accept_r(&req) < 0)
            break;
        atomic_fetch_add(&r->busy, 1);
        int message = 0;
        if (atomic_load(&r->stopping)) {
            resp_error(&req, 503, "shutting_down", "the responder is stopping", NULL);
        } else if (inflight_enter(r->index, r->s.capacity) != 0) {
            resp_busy(&req, "every responder thread is busy; retry shortly");
        } else {
            resp_handle(&req, &t, &message);
            inflight_leave(r->index, message);
        }
        FCGX_Finish_r(&req);
        atomic_fetch_sub(&r->busy, 1);
    }
    resp_disconnect(&t);
    FCGX_Free(&req, 1);
    atomic_fetch_sub(&r->threads, 1);
    return NULL;
}

/* SIGQUIT, at a reload: the manager has put a new socket in this one's place, so nothing new
 * arrives here. Shutting this one down lets every thread accept what is already queued, then
 * wakes each from accept() (EINVAL, which libfcgi passes on): threads leave as they finish their
 * requests, streams included, however long they last (as nginx's old workers). A request only
 * just accepted is finished like the rest. */
static void responder_retire(responder_t *r)
{
    shutdown(0, SHUT_RDWR);
    struct timespec tick = {0, 20 * 1000 * 1000};
    while (atomic_load(&r->threads) > 0)
        nanosleep(&tick, NULL);
}

int responder_main(int index, int settings_fd)
{
    static responder_t self; /* the process is this responder */
    responder_t *r = &self;
    /* Its threads allocate little and briefly: glibc's arena per thread (up to 8 per core) only
     * spread that over many heaps, which kept growing as more threads took requests. */
    mallopt(M_ARENA_MAX, RESP_ARENAS);
    r->index = index;
    log_set_component("responder");
    signal(SIGPIPE, SIG_IGN);
    if (responder_read_settings(settings_fd, &r->s) != 0) {
        log_error("responder has no settings on its descriptor", "responder=%d fd=%d", index, settings_fd);
        return 78;
    }
    close(settings_fd);
    log_level_t lvl = LOGL_INFO;
    log_level_parse(r->s.conf.log_level, &lvl);
    log_set_level(lvl);
    if (FCGX_Init() != 0 || FCGX_IsCGI()) {
        /* FCGX_IsCGI() is true when fd 0 is not a socket: nothing to serve. */
        log_error("responder has no FastCGI socket on fd 0", "responder=%d", index);
        return 78;
    }
    /* The terminal's Ctrl-C reaches the whole process group: the manager alone decides when the
     * responders stop (it sends SIGTERM), so they ignore SIGINT. */
    signal(SIGINT, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* The in-flight page (fd 3) and one spare thread, which answers 503 when the pool is full. */
    long threads = r->s.conf.responder_threads;
    if (inflight_attach(3, r->s.slots) != 0) {
        log_error("responder cannot map the in-flight page on fd 3", "responder=%d", index);
        return 78;
    }
    if (snapshot_attach(5) != 0) {
        log_error("responder cannot map the manager's snapshot on fd 5", "responder=%d", index);
        return 78;
    }
    close(5);
    r->manager = getppid();
    atomic_store(&r->threads, (int)threads + 1);
    for (long i = 0; i < threads + 1; i++) {
        pthread_t th;
        if (pthread_create(&th, &attr, resp_thread_main, r) != 0) {
            log_error("cannot start responder thread", "responder=%d thread=%ld", index, i);
            return 1;
        }
    }
    pthread_attr_destroy(&attr);
    log_debug("responder ready", "responder=%d threads=%ld", index, threads);
    int sig = 0;
    for (;;) {
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP)
            continue;
        break;
    }
    if (sig == SIGQUIT) {
        responder_retire(r);
        log_debug("responder retired", "responder=%d", index);
        return 0;
    }
    atomic_store(&r->stopping, 1);
    FCGX_ShutdownPending();
    /* Let requests in flight finish; idle threads stay blocked in accept(). */
    struct timespec tick = {0, 20 * 1000 * 1000};
    for (int i = 0; i < RESP_STOP_GRACE_S * 50 && atomic_load(&r->busy) > 0; i++)
        nanosleep(&tick, NULL);
    log_debug("responder stopped", "responder=%d busy=%d", index, atomic_load(&r->busy));
    return 0;
}
