/* The server's event stream: one GET /global/event subscription per server process, parsed as it
 * arrives (sse.h) and routed by opencode session id to the message running in that session. A
 * stream that ends is subscribed again after a short pause, while the server is up. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "oc_server_internal.h"

/* Which opencode session an event is about: properties.sessionID, or that of its part or info. */
static const char *oc_server_event_session(json_object *props)
{
    json_object *v, *x;
    if (json_object_object_get_ex(props, "sessionID", &v) && json_object_is_type(v, json_type_string))
        return json_object_get_string(v);
    static const char *const holders[] = {"part", "info"};
    for (size_t i = 0; i < 2; i++)
        if (json_object_object_get_ex(props, holders[i], &x) && json_object_is_type(x, json_type_object) &&
            json_object_object_get_ex(x, "sessionID", &v) && json_object_is_type(v, json_type_string))
            return json_object_get_string(v);
    return NULL;
}

static void oc_server_on_sse(void *ctx, const char *event, const char *data, size_t len)
{
    (void)event;
    (void)len;
    oc_server_t *s = ctx;
    json_object *o = json_tokener_parse(data), *payload, *type, *props;
    if (!o)
        return;
    if (json_object_object_get_ex(o, "payload", &payload) && json_object_object_get_ex(payload, "type", &type) &&
        json_object_is_type(type, json_type_string) && json_object_object_get_ex(payload, "properties", &props) &&
        json_object_is_type(props, json_type_object)) {
        const char *t = json_object_get_string(type);
        const char *sid = oc_server_event_session(props);
        if (sid && strcmp(t, "sync") != 0)
            for (backend_job_t *m = s->msgs; m; m = m->next)
                if (m->oc_sid && strcmp(m->oc_sid, sid) == 0 && !m->finished) {
                    oc_server_msg_event(m, t, props);
                    break;
                }
    }
    json_object_put(o);
}

static int oc_server_events_data(void *ctx, const char *data, size_t len)
{
    oc_server_t *s = ctx;
    s->last_event_at = clock_now();
    return s->sse ? sse_feed(s->sse, data, len) : -1;
}

static void oc_server_resub_cb(uv_timer_t *t)
{
    oc_server_t *s = t->data;
    if (s->state == OC_SERVER_READY || s->state == OC_SERVER_DRAINING)
        oc_server_subscribe(s);
}

static void oc_server_events_done(void *ctx, int err, const char *errmsg, long status, const char *body, size_t len)
{
    (void)body;
    (void)len;
    oc_server_t *s = ctx;
    s->events_req = NULL;
    log_warn("opencode event stream ended; resubscribing", "server=%d status=%ld error=%s", s->cfg.index, status,
             log_q(err ? errmsg : "closed"));
    uv_timer_start(&s->resub_timer, oc_server_resub_cb, OC_SERVER_RESUBSCRIBE_MS, 0);
}

void oc_server_subscribe(oc_server_t *s)
{
    if (s->events_req)
        return;
    sse_free(s->sse);
    s->sse = sse_new(4u << 20, oc_server_on_sse, s);
    char url[96];
    snprintf(url, sizeof url, "%s/global/event", s->base);
    http_opts_t o = {.method = "GET", .url = url, .userpwd = s->userpwd, .data = oc_server_events_data,
                     .done = oc_server_events_done, .ctx = s};
    s->events_req = http_request(s->cfg.http, &o);
}

void oc_server_unsubscribe(oc_server_t *s)
{
    http_cancel(s->events_req);
    s->events_req = NULL;
    uv_timer_stop(&s->resub_timer);
    sse_free(s->sse);
    s->sse = NULL;
}
