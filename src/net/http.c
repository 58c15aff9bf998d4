#define _GNU_SOURCE
#include "http.h"

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "bytebuf.h"
#include "log.h"

struct http_req {
    http_t *h;
    CURL *easy;
    struct curl_slist *headers;
    char *body_copy;
    bytebuf_t body;
    size_t max;
    int too_big;
    http_data_fn data;
    http_done_fn done;
    void *ctx;
    void (*drop)(void *ctx);
    char errbuf[CURL_ERROR_SIZE];
    int cancelled;
    http_req_t *prev, *next;
    http_req_t *deferred; /* on pending_add or pending_free */
};

typedef struct http_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct http *h;
} http_sock_t;

struct http {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    http_req_t *reqs;
    /* libcurl refuses to be called back from its own callbacks (CURLM_RECURSIVE_API_CALL), and a
     * data callback (an SSE event) can finish a message, whose successor then starts a request.
     * While curl runs, new requests and cancellations wait on these lists and are applied when it
     * returns. */
    int in_curl;
    http_req_t *pending_add, *pending_free;
};

/* curl_global_init is for the process, once; every client shares it. */
static int http_clients;

static void http_unlink(http_req_t *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        r->h->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void http_free(http_req_t *r)
{
    if (r->easy) {
        curl_multi_remove_handle(r->h->multi, r->easy);
        curl_easy_cleanup(r->easy);
    }
    curl_slist_free_all(r->headers);
    free(r->body_copy);
    bytebuf_free(&r->body);
    free(r);
}

static void http_check_done(http_t *h)
{
    CURLMsg *msg;
    int pending;
    while ((msg = curl_multi_info_read(h->multi, &pending))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        http_req_t *r = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        CURLcode rc = msg->data.result;
        long status = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        http_unlink(r);
        curl_multi_remove_handle(h->multi, r->easy);
        const char *em = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
        if (r->too_big) {
            rc = CURLE_FILESIZE_EXCEEDED;
            em = "answer larger than the limit";
        }
        r->done(r->ctx, (int)rc, rc ? em : NULL, status, r->body.data ? r->body.data : "", r->body.len);
        http_free(r);
    }
}

/* Apply what was asked while curl ran: cancellations first, then new requests (a request that
 * cannot be added ends in its done callback, as every request does). */
static void http_flush_deferred(http_t *h)
{
    while (h->pending_free) {
        http_req_t *r = h->pending_free;
        h->pending_free = r->deferred;
        http_free(r);
    }
    while (h->pending_add) {
        http_req_t *r = h->pending_add;
        h->pending_add = r->deferred;
        r->deferred = NULL;
        CURLMcode mc = curl_multi_add_handle(h->multi, r->easy);
        if (mc != CURLM_OK) {
            http_unlink(r);
            r->done(r->ctx, CURLE_FAILED_INIT, curl_multi_strerror(mc), 0, "", 0);
            http_free(r);
        }
    }
}

/* Let curl act on a socket (or its timeout), then settle what it finished. */
static void http_drive(http_t *h, curl_socket_t fd, int flags)
{
    int running;
    h->in_curl = 1;
    curl_multi_socket_action(h->multi, fd, flags, &running);
    h->in_curl = 0;
    http_flush_deferred(h);
    http_check_done(h);
}

static void http_sock_closed(uv_handle_t *hd) { free(hd->data); }

static void http_on_poll(uv_poll_t *p, int status, int events)
{
    http_sock_t *s = p->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    http_drive(s->h, s->fd, flags);
}

static int http_on_socket(CURL *easy, curl_socket_t fd, int action, void *userp, void *socketp)
{
    (void)easy;
    http_t *h = userp;
    http_sock_t *s = socketp;
    if (action == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, http_sock_closed);
            curl_multi_assign(h->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        s->fd = fd;
        s->h = h;
        if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        curl_multi_assign(h->multi, fd, s);
    }
    int ev = 0;
    if (action == CURL_POLL_IN || action == CURL_POLL_INOUT)
        ev |= UV_READABLE;
    if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT)
        ev |= UV_WRITABLE;
    uv_poll_start(&s->poll, ev, http_on_poll);
    return 0;
}

static void http_on_timer(uv_timer_t *t)
{
    http_drive(t->data, CURL_SOCKET_TIMEOUT, 0);
}

static int http_on_timeout(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    http_t *h = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&h->timer);
    else
        uv_timer_start(&h->timer, http_on_timer, (uint64_t)(timeout_ms ? timeout_ms : 1), 0);
    return 0;
}

http_t *http_new(uv_loop_t *loop)
{
    if (http_clients == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return NULL;
    http_t *h = calloc(1, sizeof *h);
    if (h)
        h->multi = curl_multi_init();
    if (!h || !h->multi) {
        free(h);
        if (http_clients == 0)
            curl_global_cleanup();
        return NULL;
    }
    http_clients++;
    h->loop = loop;
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http_on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http_on_timeout);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, 64L);
    return h;
}

static void http_timer_closed(uv_handle_t *t) { free(t->data); }

void http_free_client(http_t *h)
{
    if (!h)
        return;
    while (h->pending_free) {
        http_req_t *r = h->pending_free;
        h->pending_free = r->deferred;
        http_free(r);
    }
    h->pending_add = NULL; /* they are on reqs too */
    while (h->reqs) {
        http_req_t *r = h->reqs;
        http_unlink(r);
        if (r->drop)
            r->drop(r->ctx);
        http_free(r);
    }
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    uv_close((uv_handle_t *)&h->timer, http_timer_closed);
    if (--http_clients == 0)
        curl_global_cleanup();
}

static size_t http_on_write(char *p, size_t size, size_t n, void *ud)
{
    http_req_t *r = ud;
    size_t len = size * n;
    if (r->cancelled)
        return 0; /* cancelled from a callback during this very transfer: stop it */
    if (r->data)
        return r->data(r->ctx, p, len) == 0 ? len : 0;
    if (r->body.len + len > r->max) {
        r->too_big = 1;
        return 0;
    }
    return bytebuf_add(&r->body, p, len) == 0 ? len : 0;
}

http_req_t *http_request(http_t *h, const http_opts_t *o)
{
    http_req_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->h = h;
    r->easy = curl_easy_init();
    if (!r->easy) {
        free(r);
        return NULL;
    }
    r->data = o->data;
    r->done = o->done;
    r->ctx = o->ctx;
    r->drop = o->drop;
    r->max = o->max_body ? o->max_body : (64u << 20);
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, o->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, o->https ? "http,https" : "http");
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    if (o->timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 5000L);
    if (o->userpwd) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERPWD, o->userpwd);
    }
    r->headers = curl_slist_append(NULL, "Accept: application/json, text/event-stream");
    for (const char *const *hd = o->headers; hd && *hd; hd++)
        r->headers = curl_slist_append(r->headers, *hd);
    if (o->body) {
        r->headers = curl_slist_append(r->headers, "Content-Type: application/json");
        r->body_copy = strdup(o->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body_copy);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body_copy));
    } else if (strcmp(o->method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
    }
    if (strcmp(o->method, "GET") != 0 && strcmp(o->method, "POST") != 0)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    r->next = h->reqs;
    if (h->reqs)
        h->reqs->prev = r;
    h->reqs = r;
    if (h->in_curl) {
        r->deferred = h->pending_add;
        h->pending_add = r;
        return r;
    }
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        http_unlink(r);
        curl_easy_cleanup(e);
        curl_slist_free_all(r->headers);
        free(r->body_copy);
        free(r);
        return NULL;
    }
    return r;
}

void http_cancel(http_req_t *r)
{
    if (!r)
        return;
    http_t *h = r->h;
    http_unlink(r);
    if (r->drop)
        r->drop(r->ctx);
    for (http_req_t **pp = &h->pending_add; *pp; pp = &(*pp)->deferred)
        if (*pp == r) { /* never reached curl */
            *pp = r->deferred;
            r->deferred = NULL;
            curl_easy_cleanup(r->easy);
            r->easy = NULL;
            break;
        }
    if (h->in_curl && r->easy) {
        r->cancelled = 1;
        r->deferred = h->pending_free;
        h->pending_free = r;
        return;
    }
    http_free(r);
}
