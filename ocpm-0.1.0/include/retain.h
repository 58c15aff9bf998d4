/* retain: pruning old history without stalling the loop.
 *
 * Rows go in batches of RETAIN_BATCH per transaction, with a turn of the event loop between
 * batches. With history_retention set, a timer prunes what is older every minute; an operator's
 * `ocpmctl prune` asks for one pass with its own cutoff. One pass runs at a time. */
#ifndef OCPM_RETAIN_H
#define OCPM_RETAIN_H

#include "mgr.h"

#define RETAIN_BATCH 500

typedef void (*retain_done_fn)(void *ctx, long deleted, int failed);

void retain_init(mgr_t *m);
/* Prune finished executions and manager events older than `before`. Returns -1 when a pass
 * already runs. */
int retain_prune(mgr_t *m, double before, retain_done_fn done, void *ctx);
/* The caller of retain_prune went away: finish the pass without calling it back. */
void retain_detach(void);
void retain_close(void);

#endif
