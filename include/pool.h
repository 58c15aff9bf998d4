/* pool: the manager's pool of FastCGI responder processes.
 *
 * Each responder is this binary re-executed with --responder, the FastCGI
 * listening socket as its fd 0 (libfcgi's convention) and its stderr on a
 * pipe the manager relays into its own log (so SIGHUP's reopen covers it).
 * A responder that dies is respawned after a delay that doubles while it
 * keeps dying young (100 ms up to 30 s), so a crash loop cannot become a
 * fork storm; one that exits with 78 (EX_CONFIG) is not respawned. */
#ifndef OCPM_POOL_H
#define OCPM_POOL_H

#include <json-c/json.h>

#include "manager.h"

int pool_start(manager_t *m, int listen_fd, char *err, size_t errlen);
/* SIGTERM every responder; call done once all have exited (SIGKILL after
 * a grace period). */
void pool_stop(manager_t *m, void (*done)(manager_t *m));
json_object *pool_status_json(void);
long pool_restarts(void);
/* The pool's capacity for messages: responders x threads less the reserve kept for the rest. */
long pool_message_capacity(void);
/* Free what is left after the loop has ended. */
void pool_free(void);

#endif
