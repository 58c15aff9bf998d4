/* manager_snapshot.c: keeps the documents the responders answer from (snapshot.h) current.
 *
 * Published before the loop waits again (a prepare handle: after the timers of this turn and the
 * callbacks of the last), so whatever the manager did in a turn is in the snapshot before it
 * sleeps; at most every SNAPSHOT_MIN_MS, and marked stale in between (the responders then ask the
 * manager). control.c marks it stale before every answer it writes. A timer renews it every
 * second for the fields that move with the clock. */
#define _GNU_SOURCE
#include "manager_internal.h"

#include "snapshot.h"

#define MANAGER_SNAPSHOT_RENEW_MS 1000

static void manager_snapshot_publish(manager_snapshot_t *s)
{
    s->publish(s->m);
    snapshot_fresh();
    s->last = uv_now(s->prepare.loop);
}

/* Both timers only wake the loop: the prepare that follows publishes. */
static void manager_snapshot_wake(uv_timer_t *t) { (void)t; }

static void manager_snapshot_prepare(uv_prepare_t *h)
{
    manager_snapshot_t *s = h->data;
    uint64_t now = uv_now(h->loop);
    if (now - s->last >= SNAPSHOT_MIN_MS) {
        manager_snapshot_publish(s);
        return;
    }
    snapshot_stale();
    if (!uv_is_active((uv_handle_t *)&s->later))
        uv_timer_start(&s->later, manager_snapshot_wake, SNAPSHOT_MIN_MS - (now - s->last), 0);
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
    manager_snapshot_publish(s);
    uv_prepare_start(&s->prepare, manager_snapshot_prepare);
    uv_timer_start(&s->renew, manager_snapshot_wake, MANAGER_SNAPSHOT_RENEW_MS, MANAGER_SNAPSHOT_RENEW_MS);
}
