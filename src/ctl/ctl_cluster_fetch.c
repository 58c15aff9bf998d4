/* ctl_cluster_fetch: one GET per node, all at once with libcurl's multi interface (ctl_cluster.h).
 * Every node is untrusted: its answer is bounded (the caller's max, CTL_CLUSTER_TOTAL_MAX for all), timed out, and must be one
 * JSON object; anything else marks that node, never the others. */
#define _GNU_SOURCE
#include "ctl_cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "bytebuf.h"

#define CTL_CONNECT_MS 2000L

typedef struct ctl_transfer {
    CURL *h;
    bytebuf_t body;
    size_t max;
    size_t *total; /* every transfer's bytes together, bounded by CTL_CLUSTER_TOTAL_MAX */
    int too_big;
} ctl_transfer_t;

static size_t ctl_fetch_write(char *data, size_t size, size_t nmemb, void *ctx)
{
    ctl_transfer_t *t = ctx;
    size_t n = size * nmemb;
    if (n > t->max - t->body.len || n > (size_t)CTL_CLUSTER_TOTAL_MAX - *t->total) {
        t->too_big = 1;
        return 0; /* libcurl ends the transfer: CURLE_WRITE_ERROR */
    }
    *t->total += n;
    return bytebuf_add(&t->body, data, n) == 0 ? n : 0;
}

/* The node's answer, once its transfer ended with code: r->body, or r->error. */
static void ctl_fetch_done(ctl_transfer_t *t, CURLcode code, ctl_reply_t *r)
{
    long status = 0;
    curl_easy_getinfo(t->h, CURLINFO_RESPONSE_CODE, &status);
    json_object *v = NULL;
    if (t->body.len && memchr(t->body.data, '\0', t->body.len) == NULL) {
        json_tokener *tok = json_tokener_new();
        if (tok)
            json_tokener_set_flags(tok, JSON_TOKENER_VALIDATE_UTF8); /* a C1 control hides in no bad byte */
        v = tok ? json_tokener_parse_ex(tok, t->body.data, (int)t->body.len) : NULL;
        if (v && (json_tokener_get_error(tok) != json_tokener_success || json_tokener_get_parse_end(tok) != t->body.len))
            json_object_put(v), v = NULL; /* one object and nothing after */
        json_tokener_free(tok);
    }
    json_object *e, *msg;
    if (t->too_big || code == CURLE_FILESIZE_EXCEEDED) /* by its Content-Length, or as it came */
        snprintf(r->error, sizeof r->error, "its answer is larger than %zu MB, or the nodes' answers together than %ld MB",
                 t->max >> 20, CTL_CLUSTER_TOTAL_MAX >> 20);
    else if (code != CURLE_OK)
        snprintf(r->error, sizeof r->error, "%s", curl_easy_strerror(code));
    else if (status < 200 || status > 299)
        snprintf(r->error, sizeof r->error, "HTTP %ld%s%.200s", status,
                 v && json_object_object_get_ex(v, "error", &e) && json_object_object_get_ex(e, "message", &msg) ? ": " : "",
                 v && json_object_object_get_ex(v, "error", &e) && json_object_object_get_ex(e, "message", &msg)
                     ? json_object_get_string(msg) : "");
    else if (!v || !json_object_is_type(v, json_type_object))
        snprintf(r->error, sizeof r->error, "its answer is not a JSON object");
    else
        r->body = json_object_get(v), r->bytes = t->body.len;
    json_object_put(v);
}

static CURL *ctl_fetch_easy(ctl_transfer_t *t, const char *url, long timeout_ms, struct curl_slist *hdr)
{
    CURL *h = curl_easy_init();
    if (!h)
        return NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < CTL_CONNECT_MS ? timeout_ms : CTL_CONNECT_MS);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)t->max);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, ctl_fetch_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(h, CURLOPT_PRIVATE, t);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "ocpmctl");
    t->h = h;
    return h;
}

/* Runs the transfers of m until each ended, filling out[] (t[i] is node i's). */
static void ctl_fetch_run(CURLM *m, ctl_transfer_t *t, ctl_reply_t *out)
{
    int running = 1;
    while (running) {
        if (curl_multi_perform(m, &running) != CURLM_OK)
            break;
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)))
            if (msg->msg == CURLMSG_DONE) {
                ctl_transfer_t *x = NULL;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
                ctl_fetch_done(x, msg->data.result, &out[x - t]);
            }
        if (running && curl_multi_poll(m, NULL, 0, 1000, NULL) != CURLM_OK)
            break;
    }
}

int ctl_cluster_fetch(const ctl_cluster_t *cl, char *const *paths, long timeout_ms, size_t max_bytes, ctl_reply_t *out,
                      char *err, size_t errlen)
{
    size_t total = 0;
    size_t n = ctl_cluster_count(cl);
    static int ready;
    if (!ready && curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return snprintf(err, errlen, "cannot start libcurl"), -1;
    ready = 1;
    CURLM *m = curl_multi_init();
    ctl_transfer_t *t = calloc(n, sizeof *t);
    struct curl_slist *hdr = curl_slist_append(NULL, "Accept: application/json");
    int rc = m && t && hdr ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!paths[i])
            continue;
        ctl_replies_clear(&out[i], 1);
        char url[CTL_CLUSTER_URL_MAX + 4096];
        snprintf(url, sizeof url, "%s%s", ctl_cluster_url(cl, i), paths[i]);
        t[i].max = max_bytes < (size_t)CTL_CLUSTER_BODY_MAX ? max_bytes : (size_t)CTL_CLUSTER_BODY_MAX;
        t[i].total = &total;
        if (!ctl_fetch_easy(&t[i], url, timeout_ms, hdr) || curl_multi_add_handle(m, t[i].h) != CURLM_OK)
            rc = -1;
    }
    if (rc == 0)
        ctl_fetch_run(m, t, out);
    else
        snprintf(err, errlen, "cannot start libcurl's transfers");
    for (size_t i = 0; t && i < n; i++) {
        if (t[i].h) {
            if (rc == 0 && !out[i].body && !*out[i].error)
                snprintf(out[i].error, sizeof out[i].error, "the transfer did not end");
            curl_multi_remove_handle(m, t[i].h);
            curl_easy_cleanup(t[i].h);
        }
        bytebuf_free(&t[i].body);
    }
    free(t);
    curl_slist_free_all(hdr);
    if (m)
        curl_multi_cleanup(m);
    return rc;
}

void ctl_replies_clear(ctl_reply_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_object_put(r[i].body);
        r[i].body = NULL;
        r[i].bytes = 0;
        r[i].error[0] = '\0';
    }
}
