/* prune: pruning old history without stalling the loop.
 *
 * Rows go in batches of PRUNE_BATCH per transaction, with a turn of the event loop between
 * batches. With history_retention set, a timer prunes what is older every minute; an operator's
 * `ocpmctl prune` asks for one pass with its own cutoff. One pass runs at a time. */
#ifndef OCPM_PRUNE_H
#define OCPM_PRUNE_H

#include "manager.h"

#define PRUNE_BATCH 500

typedef void (*prune_done_fn)(void *ctx, long deleted, int failed);

void prune_init(manager_t *m);
/* Prune finished executions and manager events older than `before`. Returns -1 when a pass
 * already runs. */
int prune_prune(manager_t *m, double before, prune_done_fn done, void *ctx);
/* The caller of prune_prune went away: finish the pass without calling it back. */
void prune_detach(void);
void prune_close(void);

#endif
