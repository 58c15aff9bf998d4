#define _GNU_SOURCE
#include "prune.h"

#include <stdlib.h>

#include "clock.h"
#include "log.h"

/* Prune every minute, or more often for a short retention (a quarter of it, at least 100 ms). */
#define PRUNE_TICK_MAX_MS 60000

struct prune {
    db_t *db;
    long retention_ms;
    uv_timer_t tick, step;
    int active, closing;
    double cutoff;
    long total;
    prune_done_fn done;
    void *done_ctx;
};

static void prune_finish(prune_t *p, int failed)
{
    p->active = 0;
    if (p->total || failed)
        log_info("history pruned", "deleted=%ld before=%.0f failed=%d", p->total, p->cutoff, failed);
    prune_done_fn fn = p->done;
    p->done = NULL;
    if (fn)
        fn(p->done_ctx, p->total, failed);
}

static void prune_step(uv_timer_t *t)
{
    prune_t *p = t->data;
    long n = 0;
    if (db_prune(p->db, p->cutoff, PRUNE_BATCH, &n) != 0) {
        log_error("cannot prune history", "error=%s", log_q(db_errmsg(p->db)));
        prune_finish(p, 1);
        return;
    }
    p->total += n;
    if (n == 0) {
        prune_finish(p, 0);
        return;
    }
    uv_timer_start(&p->step, prune_step, 1, 0); /* let the loop breathe between batches */
}

int prune_run(prune_t *p, double before, prune_done_fn done, void *ctx)
{
    if (p->active || p->closing)
        return -1;
    p->active = 1;
    p->cutoff = before;
    p->total = 0;
    p->done = done;
    p->done_ctx = ctx;
    uv_timer_start(&p->step, prune_step, 0, 0);
    return 0;
}

static void prune_tick(uv_timer_t *t)
{
    prune_t *p = t->data;
    prune_run(p, clock_now() - p->retention_ms / 1000.0, NULL, NULL);
}

void prune_set_retention(prune_t *p, long retention_ms)
{
    p->retention_ms = retention_ms;
    uv_timer_stop(&p->tick);
    long every = retention_ms / 4;
    if (every > PRUNE_TICK_MAX_MS)
        every = PRUNE_TICK_MAX_MS;
    if (every < 100)
        every = 100;
    if (retention_ms > 0)
        uv_timer_start(&p->tick, prune_tick, every < 1000 ? (uint64_t)every : 1000, (uint64_t)every);
}

prune_t *prune_new(uv_loop_t *loop, db_t *db, long retention_ms)
{
    prune_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->db = db;
    uv_timer_init(loop, &p->tick);
    uv_timer_init(loop, &p->step);
    p->tick.data = p->step.data = p;
    prune_set_retention(p, retention_ms);
    return p;
}

void prune_detach(prune_t *p) { p->done = NULL; }

static void prune_closed(uv_handle_t *h)
{
    prune_t *p = h->data;
    if (--p->closing == 0)
        free(p);
}

void prune_free(prune_t *p)
{
    if (!p)
        return;
    p->done = NULL;
    p->closing = 2;
    uv_close((uv_handle_t *)&p->tick, prune_closed);
    uv_close((uv_handle_t *)&p->step, prune_closed);
}
