/* FATAL, supervisord's model: a server that keeps dying is left down instead of being restarted
 * for ever, and an operator's restart brings it back (oc_server.h). */
#define _GNU_SOURCE
#include <stdio.h>

#include "clock.h"
#include "log.h"
#include "oc_server_internal.h"

/* "30s", or "1500ms" when the window is not whole seconds (settings accept both). */
static void oc_server_window_text(long ms, char *out, size_t len)
{
    if (ms % 1000 == 0)
        snprintf(out, len, "%lds", ms / 1000);
    else
        snprintf(out, len, "%ldms", ms);
}

int oc_server_fatal_check(oc_server_t *s, const char *detail)
{
    double now = clock_now();
    if (restart_limit_note(s->restarts_window, now) == 0)
        return 0;
    const conf_t *c = s->cfg.conf;
    char window[32], what[400];
    oc_server_window_text(c->server_restart_window_ms, window, sizeof window);
    s->fatal_at = now;
    log_error("opencode server FATAL: restarted too often; not restarting it",
              "pool=%s server=%d restarts=%ld window=%s lastExit=%s remedy=%s", c->pool_name, s->cfg.index,
              restart_limit_count(s->restarts_window, now), window, log_q(detail),
              log_q("fix the cause, then: ocpmctl server restart"));
    snprintf(what, sizeof what, "server=%d restarts=%ld window=%s last=%s", s->cfg.index,
             restart_limit_count(s->restarts_window, now), window, log_q(detail));
    if (s->cfg.event)
        s->cfg.event(s->cfg.ctx, "server_fatal", what);
    oc_server_set_state(s, OC_SERVER_FATAL);
    return 1;
}

/* Start a server that is down now, with its restart count cleared. */
static const char *oc_server_start_now(oc_server_t *s, const char *was)
{
    restart_limit_reset(s->restarts_window);
    s->fatal_at = 0;
    log_info("opencode server restart requested by the operator", "pool=%s server=%d was=%s", s->cfg.conf->pool_name,
             s->cfg.index, was);
    if (s->cfg.event) {
        char what[96];
        snprintf(what, sizeof what, "server=%d was=%s", s->cfg.index, was);
        s->cfg.event(s->cfg.ctx, "server_restart_requested", what);
    }
    /* Leaves FATAL at once: if the spawn itself fails, the exit path counts it as any failure. */
    oc_server_set_state(s, OC_SERVER_BACKOFF);
    supervisor_start(s->sup);
    return "started";
}

const char *oc_server_restart(oc_server_t *s, char *why, size_t whylen)
{
    const char *was = oc_server_state_name(s->state);
    switch (s->state) {
    case OC_SERVER_FATAL:
    case OC_SERVER_BACKOFF:
        if (oc_server_pid(s) > 0) /* its exit is being handled: the supervisor restarts it */
            break;
        return oc_server_start_now(s, was);
    case OC_SERVER_READY:
        /* A graceful replacement: the recycle path (no message fails, none falls back). */
        restart_limit_reset(s->restarts_window);
        log_info("opencode server restart requested by the operator; replacing it gracefully",
                 "pool=%s server=%d inFlight=%ld", s->cfg.conf->pool_name, s->cfg.index, s->in_flight);
        s->recycling = 1;
        s->restart_reason = "operator";
        oc_server_set_state(s, OC_SERVER_DRAINING);
        if (s->in_flight == 0 && s->answers == 0)
            oc_server_terminate(s, "operator");
        return "replacing";
    default:
        break;
    }
    snprintf(why, whylen, "opencode server %d of pool %s is %s; nothing to restart now", s->cfg.index,
             s->cfg.conf->pool_name, was);
    return NULL;
}
