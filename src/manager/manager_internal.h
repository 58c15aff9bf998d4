/* The manager's files (manager.c: the lifecycle; manager_mode.c: what opencode can do and which
 * backend runs the messages; manager_listen.c: the lock and the FastCGI socket) and what they
 * share. */
#ifndef OCPM_MANAGER_INTERNAL_H
#define OCPM_MANAGER_INTERNAL_H

#include <stddef.h>

#include "manager.h"
#include "snapshot.h"

/* manager_mode.c: ask opencode for its version and whether `serve` exists (blocking, at start-up). */
void manager_probe(manager_t *m);
/* Choose each pool's mode, start its servers in server mode, and make its scheduler with the
 * backends the mode uses. Returns -1 with err when the configured mode cannot be had. */
int manager_choose_mode(manager_t *m, char *err, size_t errlen);

/* manager_listen.c: the singleton guard, an exclusive flock on state_dir/ocpmd.lock (its fd, or
 * -1 with err). */
int manager_lock(const conf_t *c, char *err, size_t errlen);
/* The FastCGI socket: its fd, or -1 with err. */
int manager_fcgi_listen(const conf_t *c, char *err, size_t errlen);

/* manager_snapshot.c: the published status, health and metrics (snapshot.h), renewed as the loop
 * turns. publish renders and puts the documents (NULL: nothing is published). */
typedef struct manager_snapshot {
    manager_t *m;
    manager_publish_fn publish;
    uv_prepare_t prepare;
    uv_timer_t later, renew;
    uint64_t last[SNAPSHOT_DOCS]; /* uv_now of each document's last publication */
    int published[SNAPSHOT_DOCS];
} manager_snapshot_t;
void manager_snapshot_start(manager_snapshot_t *s, manager_t *m, manager_publish_fn publish);

#endif
