#define _GNU_SOURCE
#include "prune.h"

#include "log.h"
#include "clock.h"

/* Prune every minute, or more often for a short retention (a quarter of it, at least 100 ms). */
#define PRUNE_TICK_MAX_MS 60000

static manager_t *rm;
static uv_timer_t tick, step;
static int active, inited;
static double cutoff;
static long total;
static prune_done_fn done_fn;
static void *done_ctx;

static void prune_finish(int failed)
{
    active = 0;
    if (total || failed)
        log_info("history pruned", "deleted=%ld before=%.0f failed=%d", total, cutoff, failed);
    if (done_fn)
        done_fn(done_ctx, total, failed);
    done_fn = NULL;
}

static void prune_step(uv_timer_t *t)
{
    (void)t;
    long n = 0;
    if (db_prune(rm->db, cutoff, PRUNE_BATCH, &n) != 0) {
        log_error("cannot prune history", "error=%s", log_q(db_errmsg(rm->db)));
        prune_finish(1);
        return;
    }
    total += n;
    if (n == 0) {
        prune_finish(0);
        return;
    }
    uv_timer_start(&step, prune_step, 1, 0); /* let the loop breathe between batches */
}

int prune_prune(manager_t *m, double before, prune_done_fn done, void *ctx)
{
    if (active)
        return -1;
    rm = m;
    active = 1;
    cutoff = before;
    total = 0;
    done_fn = done;
    done_ctx = ctx;
    uv_timer_start(&step, prune_step, 0, 0);
    return 0;
}

static void prune_tick(uv_timer_t *t)
{
    (void)t;
    if (rm->conf->history_retention_ms > 0)
        prune_prune(rm, clock_now() - rm->conf->history_retention_ms / 1000.0, NULL, NULL);
}

void prune_init(manager_t *m)
{
    rm = m;
    uv_timer_init(m->loop, &tick);
    uv_timer_init(m->loop, &step);
    inited = 1;
    long every = m->conf->history_retention_ms / 4;
    if (every > PRUNE_TICK_MAX_MS)
        every = PRUNE_TICK_MAX_MS;
    if (every < 100)
        every = 100;
    if (m->conf->history_retention_ms > 0)
        uv_timer_start(&tick, prune_tick, every < 1000 ? (uint64_t)every : 1000, (uint64_t)every);
}

void prune_detach(void) { done_fn = NULL; }

void prune_close(void)
{
    if (!inited)
        return;
    inited = 0;
    if (!uv_is_closing((uv_handle_t *)&tick))
        uv_close((uv_handle_t *)&tick, NULL);
    if (!uv_is_closing((uv_handle_t *)&step))
        uv_close((uv_handle_t *)&step, NULL);
}
