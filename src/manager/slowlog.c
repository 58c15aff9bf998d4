#define _GNU_SOURCE
#include "slowlog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

struct slowlog {
    uv_timer_t tick;
    slowlog_sweep_fn sweep;
    void *ctx;
};

long slowlog_tick_ms(long shortest)
{
    if (shortest <= 0)
        return 0;
    long t = shortest / 4;
    return t > SLOWLOG_TICK_MAX_MS ? SLOWLOG_TICK_MAX_MS : t < SLOWLOG_TICK_MIN_MS ? SLOWLOG_TICK_MIN_MS : t;
}

static void slowlog_tick(uv_timer_t *t)
{
    slowlog_t *l = t->data;
    l->sweep(l->ctx, clock_now());
}

slowlog_t *slowlog_new(uv_loop_t *loop, long tick_ms, slowlog_sweep_fn sweep, void *ctx)
{
    slowlog_t *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->sweep = sweep;
    l->ctx = ctx;
    uv_timer_init(loop, &l->tick);
    uv_unref((uv_handle_t *)&l->tick); /* a sweep never keeps the loop alive on its own */
    l->tick.data = l;
    slowlog_set_tick(l, tick_ms);
    return l;
}

void slowlog_set_tick(slowlog_t *l, long tick_ms)
{
    uv_timer_stop(&l->tick);
    if (tick_ms > 0)
        uv_timer_start(&l->tick, slowlog_tick, (uint64_t)tick_ms, (uint64_t)tick_ms);
}

static void slowlog_closed(uv_handle_t *h) { free(h->data); }

void slowlog_free(slowlog_t *l)
{
    if (l && !uv_is_closing((uv_handle_t *)&l->tick))
        uv_close((uv_handle_t *)&l->tick, slowlog_closed);
}

char *slowlog_summary(const char *input, char *out, size_t outlen)
{
    if (!input || outlen < SLOWLOG_INPUT_MAX + 4)
        return NULL;
    size_t len = strlen(input), keep = len > SLOWLOG_INPUT_MAX ? SLOWLOG_INPUT_MAX : len;
    while (keep > 0 && keep < len && ((unsigned char)input[keep] & 0xc0) == 0x80)
        keep--;
    memcpy(out, input, keep);
    strcpy(out + keep, keep < len ? "..." : "");
    return out;
}

int slowlog_report(db_t *db, storage_retry_t *storage, const db_slow_t *r, int npending, const char *first_prompt)
{
    log_warn("slow turn",
             "executionId=%lld sessionId=%s pool=%s owner=%s elapsedMs=%.0f step=%s tool=%s callId=%s input=%s "
             "inputBytes=%lld inputSha256=%s sinceLastEventMs=%.0f pendingPrompts=%d prompt=%s",
             (long long)r->execution_id, r->session_id, log_q(r->pool), log_q(r->owner), r->elapsed_ms,
             log_q(r->step), r->tool ? r->tool : "-", log_q(r->call_id), log_q(r->input_summary),
             r->input_bytes, r->input_sha256 ? r->input_sha256 : "-", r->since_last_event_ms, npending,
             log_q(first_prompt));
    if (db_slow_put(db, r) == 0)
        return 0;
    log_error("cannot record a slow turn", "executionId=%lld error=%s", (long long)r->execution_id,
              log_q(db_errmsg(db)));
    if (storage)
        storage_retry_note_failure(storage, "cannot record a slow turn");
    return -1;
}
