/* webhook: ocpm's events POSTed to the operator's URL (webhook_url).
 *
 * Each delivery is {"event", "delivery", "at", "data"} as JSON, with the headers X-Ocpm-Event,
 * X-Ocpm-Delivery and, when webhook_secret is set, X-Ocpm-Signature: sha256=<hex HMAC-SHA256 of
 * the body>. A delivery succeeds on a 2xx answer; otherwise it is tried again after 1 s, 2 s,
 * 4 s ... (at most 60 s between tries) up to webhook_attempts tries, then given up. Its outcome
 * is recorded (webhook_deliveries). Requests run in the loop's HTTP client: nothing waits for them,
 * and the client's answer never does. Deliveries still being tried when the manager stops are
 * logged and dropped. */
#ifndef OCPM_WEBHOOK_H
#define OCPM_WEBHOOK_H

#include <stdint.h>

#include <json-c/json.h>
#include <uv.h>

#include "conf.h"
#include "db.h"
#include "http.h"

typedef struct webhook webhook_t;

/* NULL when webhook_url is empty (webhook_send then does nothing with a NULL w). */
webhook_t *webhook_new(uv_loop_t *loop, http_t *http, db_t *db, const conf_t *conf);
void webhook_free(webhook_t *w);
/* Deliver event about execution exec_id (0: none) with data (copied). */
void webhook_send(webhook_t *w, const char *event, int64_t exec_id, json_object *data);
/* Deliveries being tried now; delivered and given up since the start. */
long webhook_pending(const webhook_t *w);
unsigned long long webhook_delivered(const webhook_t *w);
unsigned long long webhook_failed(const webhook_t *w);

#endif
