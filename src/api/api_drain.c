/* Drain (ocpmctl drain, undrain): the manager stops taking new work and finishes what it took.
 *
 * While draining, new sessions and new messages are refused with 503 draining (and Retry-After),
 * the readiness check says draining, and everything else is served: the messages running and
 * those already queued (they were accepted: the client holds a 202 or waits for the answer) run
 * to their end, and reads, streams, prompt replies, aborts and deletes go on. The state is the
 * manager's (manager.h), so responders restarting do not change it; a restarted manager is not
 * draining. For maintenance, and for a cluster's front to move work off this node. */
#define _GNU_SOURCE
#include "api_internal.h"

#include <stdio.h>

#include "clock.h"
#include "log.h"

int api_refuse_draining(manager_t *m, control_conn_t *c, const char *what)
{
    if (!m->draining)
        return 0;
    char msg[160];
    snprintf(msg, sizeof msg, "the manager is draining: no new %s are taken here; retry later or elsewhere", what);
    control_error_retry(c, 503, "draining", msg, NULL, m->conf->retry_after_s);
    return -1;
}

/* Drain or undrain, idempotently; the answer says the state, whether this call changed it, and
 * what is still to finish. A change is logged and recorded with who asked (the frame's user and
 * the control socket's peer) and when. */
static void api_drain_set(manager_t *m, control_conn_t *c, const api_call_t *call, int on)
{
    int changed = m->draining != on;
    long running = tenant_running(m->tenants, m->ntenants), queued = tenant_queued(m->tenants, m->ntenants);
    if (changed) {
        long uid = -1, pid = -1;
        control_peer(c, &uid, &pid);
        m->draining = on;
        m->drained_at = on ? clock_now() : 0;
        char who[192];
        snprintf(who, sizeof who, "by=%s uid=%ld pid=%ld running=%ld queued=%ld",
                 log_q(call->user ? call->user : "operator"), uid, pid, running, queued);
        if (on)
            log_info("Draining: new sessions and messages are refused; running and queued ones finish", "%s", who);
        else
            log_info("Drain ended: new sessions and messages are taken again", "%s", who);
        manager_event(m, on ? "drain" : "undrain", who);
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "draining", json_object_new_boolean(on));
    json_object_object_add(o, "changed", json_object_new_boolean(changed));
    json_object_object_add(o, "since", on ? json_object_new_int64((int64_t)(m->drained_at * 1000.0)) : NULL);
    json_object_object_add(o, "running", json_object_new_int64(running));
    json_object_object_add(o, "queued", json_object_new_int64(queued));
    control_reply(c, 200, o, NULL);
}

void api_drain(void *ctx, control_conn_t *c, const api_call_t *call) { api_drain_set(ctx, c, call, 1); }

void api_undrain(void *ctx, control_conn_t *c, const api_call_t *call) { api_drain_set(ctx, c, call, 0); }
