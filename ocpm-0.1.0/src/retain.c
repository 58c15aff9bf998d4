#define _GNU_SOURCE
#include "retain.h"

#include "log.h"

/* Prune every minute, or more often for a short retention (a quarter of it, at least 100 ms). */
#define RETAIN_TICK_MAX_MS 60000

static mgr_t *rm;
static uv_timer_t tick, step;
static int active, inited;
static double cutoff;
static long total;
static retain_done_fn done_fn;
static void *done_ctx;

static void retain_finish(int failed)
{
    active = 0;
    if (total || failed)
        log_info("history pruned", "deleted=%ld before=%.0f failed=%d", total, cutoff, failed);
    if (done_fn)
        done_fn(done_ctx, total, failed);
    done_fn = NULL;
}

static void retain_step(uv_timer_t *t)
{
    (void)t;
    long n = 0;
    if (db_prune(rm->db, cutoff, RETAIN_BATCH, &n) != 0) {
        log_error("cannot prune history", "error=\"%s\"", db_errmsg(rm->db));
        retain_finish(1);
        return;
    }
    total += n;
    if (n == 0) {
        retain_finish(0);
        return;
    }
    uv_timer_start(&step, retain_step, 1, 0); /* let the loop breathe between batches */
}

int retain_prune(mgr_t *m, double before, retain_done_fn done, void *ctx)
{
    if (active)
        return -1;
    rm = m;
    active = 1;
    cutoff = before;
    total = 0;
    done_fn = done;
    done_ctx = ctx;
    uv_timer_start(&step, retain_step, 0, 0);
    return 0;
}

static void retain_tick(uv_timer_t *t)
{
    (void)t;
    if (rm->conf->history_retention_ms > 0)
        retain_prune(rm, mgr_now() - rm->conf->history_retention_ms / 1000.0, NULL, NULL);
}

void retain_init(mgr_t *m)
{
    rm = m;
    uv_timer_init(m->loop, &tick);
    uv_timer_init(m->loop, &step);
    inited = 1;
    long every = m->conf->history_retention_ms / 4;
    if (every > RETAIN_TICK_MAX_MS)
        every = RETAIN_TICK_MAX_MS;
    if (every < 100)
        every = 100;
    if (m->conf->history_retention_ms > 0)
        uv_timer_start(&tick, retain_tick, every < 1000 ? (uint64_t)every : 1000, (uint64_t)every);
}

void retain_detach(void) { done_fn = NULL; }

void retain_close(void)
{
    if (!inited)
        return;
    inited = 0;
    if (!uv_is_closing((uv_handle_t *)&tick))
        uv_close((uv_handle_t *)&tick, NULL);
    if (!uv_is_closing((uv_handle_t *)&step))
        uv_close((uv_handle_t *)&step, NULL);
}
