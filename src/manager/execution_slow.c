/* The slow log's look at one pool's executions (slowlog.h has the contract): what a running turn
 * is doing when it passes slowlog_timeout, read from what the execution already holds (its turn's
 * events and tool calls, its prompts in the ask book), reported once. */
#define _GNU_SOURCE
#include "scheduler_internal.h"

#include <stdio.h>
#include <string.h>

#include "slowlog.h"

/* Where e is in its life when no event says more. */
static const char *execution_slow_step(const execution_t *e, const turn_now_t *now)
{
    if (e->concluding)
        return "ending"; /* its job is over: answers landing, or its changes being counted */
    if (!e->job)
        return "preparing workspace";
    return now->step ? now->step : "waiting for model";
}

static void execution_slow_report(execution_t *e, double now)
{
    scheduler_t *s = e->sch;
    turn_now_t tn;
    turn_now(e->turn, &tn);
    char summary[SLOWLOG_INPUT_MAX + 4];
    json_object *prompts = ask_open_json(s->cfg.asks, e->rec.id);
    int npending = (int)json_object_array_length(prompts);
    /* The row names the first few; the log line says how many there are (the agent may ask many). */
    if (npending > SLOWLOG_PROMPTS_MAX)
        json_object_array_del_idx(prompts, SLOWLOG_PROMPTS_MAX, (size_t)npending - SLOWLOG_PROMPTS_MAX);
    char first[ASK_TITLE_MAX + 128] = "";
    if (npending > 0) {
        json_object *p = json_object_array_get_idx(prompts, 0), *k, *id, *title;
        json_object_object_get_ex(p, "kind", &k);
        json_object_object_get_ex(p, "id", &id);
        json_object_object_get_ex(p, "title", &title);
        snprintf(first, sizeof first, "%s %s: %s", json_object_get_string(k), json_object_get_string(id),
                 json_object_get_string(title));
    }
    double last = e->last_event_at > 0 ? e->last_event_at : e->rec.started_at;
    db_slow_t row = {.execution_id = e->rec.id,
                     .owner = e->owner,
                     .session_id = e->session_id,
                     .pool = s->cfg.pool,
                     .step = execution_slow_step(e, &tn),
                     .tool = e->job ? tn.tool : NULL,
                     .call_id = e->job ? tn.call_id : NULL,
                     .input_summary = e->job ? slowlog_summary(tn.input, summary, sizeof summary) : NULL,
                     .input_sha256 = e->job ? tn.input_sha256 : NULL,
                     .input_bytes = e->job ? tn.input_bytes : -1,
                     .pending_prompts = json_object_to_json_string_ext(prompts, JSON_C_TO_STRING_PLAIN |
                                                                                    JSON_C_TO_STRING_NOSLASHESCAPE),
                     .at = now,
                     .elapsed_ms = (now - e->rec.started_at) * 1000.0,
                     .since_last_event_ms = (now - last) * 1000.0};
    slowlog_report(s->cfg.db, s->cfg.storage, &row, npending, first);
    json_object_put(prompts);
}

void scheduler_slow_sweep(scheduler_t *s, double now)
{
    long timeout = s->cfg.conf->slowlog_timeout_ms;
    if (timeout <= 0)
        return;
    for (execution_t *e = s->live; e; e = e->live_next) {
        /* Running: it holds a slot and has started (a queued message is not a slow turn). */
        if (e->slow_logged || !e->holds_slot || e->rec.started_at <= 0 ||
            (now - e->rec.started_at) * 1000.0 < (double)timeout)
            continue;
        e->slow_logged = 1;
        execution_slow_report(e, now);
    }
}
