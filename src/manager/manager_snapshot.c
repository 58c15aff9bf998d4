/* manager_snapshot.c: keeps the documents the responders answer from (snapshot.h) current.
 *
 * Each is published again before the loop waits (a prepare handle: after the timers of this turn
 * and the callbacks of the last), so whatever the manager did in a turn is in the snapshot before
 * it sleeps, at most once per its interval; until then it is marked stale (the responders ask the
 * manager). control.c marks them all stale before every answer it writes. A timer renews them
 * every second for the fields that move with the clock. */
#define _GNU_SOURCE
#include "manager_internal.h"

#include "snapshot.h"

#define MANAGER_SNAPSHOT_RENEW_MS 1000

/* How often each document may be rendered. */
static const uint64_t manager_snapshot_every[SNAPSHOT_DOCS] = {
    [SNAPSHOT_STATUS] = SNAPSHOT_MIN_MS,
    [SNAPSHOT_HEALTH] = SNAPSHOT_MIN_MS,
    [SNAPSHOT_METRICS] = SNAPSHOT_METRICS_MS,
    [SNAPSHOT_METRICS_OM] = SNAPSHOT_METRICS_MS,
    [SNAPSHOT_READY] = SNAPSHOT_MIN_MS,
};

/* Both timers only wake the loop: the prepare that follows publishes. */
static void manager_snapshot_wake(uv_timer_t *t) { (void)t; }

static void manager_snapshot_prepare(uv_prepare_t *h)
{
    manager_snapshot_t *s = h->data;
    uint64_t now = uv_now(h->loop), wait = 0;
    int done[SNAPSHOT_DOCS] = {0};
    for (int d = 0; d < SNAPSHOT_DOCS; d++) {
        uint64_t due = s->last[d] + manager_snapshot_every[d];
        if (!s->published[d] || now >= due) {
            s->publish(s->m, d);
            s->last[d] = now;
            s->published[d] = done[d] = 1;
        } else if (!wait || due - now < wait) {
            wait = due - now;
        }
    }
    /* One not due yet must not be read as it was before what this turn changed: stale until it is. */
    if (wait)
        snapshot_stale();
    for (int d = 0; d < SNAPSHOT_DOCS; d++)
        if (done[d])
            snapshot_fresh(d);
    if (wait && !uv_is_active((uv_handle_t *)&s->later))
        uv_timer_start(&s->later, manager_snapshot_wake, wait, 0);
}

void manager_snapshot_start(manager_snapshot_t *s, manager_t *m, manager_publish_fn publish)
{
    *s = (manager_snapshot_t){.m = m, .publish = publish};
    uv_prepare_init(m->loop, &s->prepare);
    s->prepare.data = s;
    uv_timer_init(m->loop, &s->later);
    uv_timer_init(m->loop, &s->renew);
    /* None of them keeps the loop alive: shutdown ends when the real work does. */
    uv_unref((uv_handle_t *)&s->prepare);
    uv_unref((uv_handle_t *)&s->later);
    uv_unref((uv_handle_t *)&s->renew);
    if (!publish)
        return;
    manager_snapshot_prepare(&s->prepare);
    uv_prepare_start(&s->prepare, manager_snapshot_prepare);
    uv_timer_start(&s->renew, manager_snapshot_wake, MANAGER_SNAPSHOT_RENEW_MS, MANAGER_SNAPSHOT_RENEW_MS);
}
