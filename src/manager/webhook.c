#define _GNU_SOURCE
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "clock.h"
#include "log.h"
#include "sha256.h"

#define WEBHOOK_FIRST_WAIT_MS 1000
#define WEBHOOK_MAX_WAIT_MS 60000
/* A receiver's answer is read up to this (and ignored but for its status). */
#define WEBHOOK_ANSWER_MAX 65536

typedef struct delivery {
    webhook_t *w;
    char id[33], event[32];
    int64_t exec_id;
    char *body;
    int attempts;
    long last_status;
    char last_error[256];
    double created_at;
    http_req_t *req;
    uv_timer_t timer;
    struct delivery *prev, *next;
} delivery_t;

struct webhook {
    uv_loop_t *loop;
    http_t *http;
    db_t *db;
    const conf_t *conf;
    delivery_t *list;
    long pending;
    unsigned long long delivered, failed;
};

webhook_t *webhook_new(uv_loop_t *loop, http_t *http, db_t *db, const conf_t *conf)
{
    if (!conf->webhook_url[0])
        return NULL;
    webhook_t *w = calloc(1, sizeof *w);
    if (w)
        *w = (webhook_t){.loop = loop, .http = http, .db = db, .conf = conf};
    return w;
}

long webhook_pending(const webhook_t *w) { return w ? w->pending : 0; }
unsigned long long webhook_delivered(const webhook_t *w) { return w ? w->delivered : 0; }
unsigned long long webhook_failed(const webhook_t *w) { return w ? w->failed : 0; }

static void webhook_closed(uv_handle_t *h)
{
    delivery_t *d = h->data;
    free(d->body);
    free(d);
}

static void webhook_drop(delivery_t *d)
{
    webhook_t *w = d->w;
    if (d->prev)
        d->prev->next = d->next;
    else
        w->list = d->next;
    if (d->next)
        d->next->prev = d->prev;
    w->pending--;
    http_cancel(d->req);
    d->req = NULL;
    uv_timer_stop(&d->timer);
    uv_close((uv_handle_t *)&d->timer, webhook_closed);
}

void webhook_free(webhook_t *w)
{
    if (!w)
        return;
    while (w->list) {
        log_warn("webhook delivery dropped at shutdown", "delivery=%s event=%s attempts=%d", w->list->id,
                 w->list->event, w->list->attempts);
        webhook_drop(w->list);
    }
    free(w);
}

/* The outcome, recorded once. */
static void webhook_end(delivery_t *d, int delivered)
{
    webhook_t *w = d->w;
    db_webhook_t row = {.delivery = d->id,
                        .event = d->event,
                        .error = delivered || !d->last_error[0] ? NULL : d->last_error,
                        .execution_id = d->exec_id,
                        .delivered = delivered,
                        .attempts = d->attempts,
                        .http_status = d->last_status,
                        .created_at = d->created_at,
                        .finished_at = clock_now()};
    if (delivered)
        w->delivered++;
    else
        w->failed++;
    if (db_webhook_record(w->db, &row) != 0)
        log_error("cannot record a webhook delivery", "delivery=%s error=%s", d->id, log_q(db_errmsg(w->db)));
    if (delivered)
        log_info("webhook delivered", "delivery=%s event=%s attempts=%d status=%ld", d->id, d->event, d->attempts,
                 d->last_status);
    else
        log_warn("webhook delivery failed", "delivery=%s event=%s attempts=%d status=%ld error=%s", d->id, d->event,
                 d->attempts, d->last_status, log_q(d->last_error));
    webhook_drop(d);
}

static void webhook_try(delivery_t *d);

static void webhook_retry_cb(uv_timer_t *t) { webhook_try(t->data); }

static void webhook_done(void *ctx, int err, const char *errmsg, long status, const char *body, size_t len)
{
    (void)body;
    (void)len;
    delivery_t *d = ctx;
    d->req = NULL;
    d->last_status = err ? 0 : status;
    if (!err && status >= 200 && status < 300)
        return webhook_end(d, 1);
    if (err)
        snprintf(d->last_error, sizeof d->last_error, "%s", errmsg);
    else
        snprintf(d->last_error, sizeof d->last_error, "the receiver answered HTTP %ld", status);
    if (d->attempts >= d->w->conf->webhook_attempts)
        return webhook_end(d, 0);
    long wait = WEBHOOK_FIRST_WAIT_MS;
    for (int i = 1; i < d->attempts && wait < WEBHOOK_MAX_WAIT_MS; i++)
        wait *= 2;
    if (wait > WEBHOOK_MAX_WAIT_MS)
        wait = WEBHOOK_MAX_WAIT_MS;
    log_info("webhook delivery will be retried", "delivery=%s event=%s attempts=%d waitMs=%ld error=%s", d->id,
             d->event, d->attempts, wait, log_q(d->last_error));
    uv_timer_start(&d->timer, webhook_retry_cb, (uint64_t)wait, 0);
}

static void webhook_try(delivery_t *d)
{
    webhook_t *w = d->w;
    char event[64], delivery[64], sig[96];
    snprintf(event, sizeof event, "X-Ocpm-Event: %s", d->event);
    snprintf(delivery, sizeof delivery, "X-Ocpm-Delivery: %s", d->id);
    const char *headers[4] = {event, delivery, NULL, NULL};
    if (w->conf->webhook_secret[0]) {
        char hex[65];
        hmac_sha256_hex(w->conf->webhook_secret, strlen(w->conf->webhook_secret), d->body, strlen(d->body), hex);
        snprintf(sig, sizeof sig, "X-Ocpm-Signature: sha256=%s", hex);
        headers[2] = sig;
    }
    d->attempts++;
    http_opts_t o = {.method = "POST", .url = w->conf->webhook_url, .body = d->body, .headers = headers,
                     .https = 1, .timeout_ms = w->conf->webhook_timeout_ms, .max_body = WEBHOOK_ANSWER_MAX,
                     .done = webhook_done, .ctx = d};
    d->req = http_request(w->http, &o);
    if (!d->req)
        webhook_done(d, 1, "cannot start the request", 0, "", 0);
}

void webhook_send(webhook_t *w, const char *event, int64_t exec_id, json_object *data)
{
    if (!w || !w->conf->webhook_url[0]) /* none, or a reload took webhook_url away */
        return;
    delivery_t *d = calloc(1, sizeof *d);
    if (!d)
        return;
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        memset(rnd, 0, sizeof rnd);
    for (int i = 0; i < 16; i++)
        snprintf(d->id + 2 * i, 3, "%02x", rnd[i]);
    d->w = w;
    snprintf(d->event, sizeof d->event, "%s", event);
    d->exec_id = exec_id;
    d->created_at = clock_now();
    json_object *b = json_object_new_object();
    json_object_object_add(b, "event", json_object_new_string(event));
    json_object_object_add(b, "delivery", json_object_new_string(d->id));
    json_object_object_add(b, "at", json_object_new_double(d->created_at));
    json_object_object_add(b, "data", json_object_get(data));
    d->body = strdup(json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(b);
    uv_timer_init(w->loop, &d->timer);
    d->timer.data = d;
    d->next = w->list;
    if (w->list)
        w->list->prev = d;
    w->list = d;
    w->pending++;
    if (!d->body)
        return webhook_drop(d);
    webhook_try(d);
}
