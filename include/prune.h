/* prune: pruning old history without stalling the loop.
 *
 * Rows go in batches of PRUNE_BATCH per transaction, with a turn of the event loop between
 * batches. With history_retention set, a timer prunes what is older (every minute, or a quarter of
 * the retention when that is shorter); an operator's `ocpmctl prune` asks for one pass with its own
 * cutoff. One pass runs at a time. */
#ifndef OCPM_PRUNE_H
#define OCPM_PRUNE_H

#include <uv.h>

#include "db.h"

#define PRUNE_BATCH 500

typedef struct prune prune_t;
typedef void (*prune_done_fn)(void *ctx, long deleted, int failed);

/* retention_ms 0: no timer, passes on request only. */
prune_t *prune_new(uv_loop_t *loop, db_t *db, long retention_ms);
/* A reload changed history_retention: the timer follows it (0 stops it). */
void prune_set_retention(prune_t *p, long retention_ms);
/* Prune finished executions and manager events older than `before`. Returns -1 when a pass
 * already runs. */
int prune_run(prune_t *p, double before, prune_done_fn done, void *ctx);
/* The caller of prune_run went away: finish the pass without calling it back. */
void prune_detach(prune_t *p);
/* Close its timers; it frees itself once they are closed. */
void prune_free(prune_t *p);

#endif
