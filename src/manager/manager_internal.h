/* The manager's files (manager.c: the lifecycle; manager_mode.c: what opencode can do and which
 * backend runs the messages; manager_listen.c: the lock and the FastCGI socket;
 * manager_snapshot.c: the published documents; manager_notify.c: systemd's notifications) and what
 * they share. */
#ifndef OCPM_MANAGER_INTERNAL_H
#define OCPM_MANAGER_INTERNAL_H

#include <stddef.h>

#include "manager.h"
#include "notify.h"
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
/* The same in two steps (a reload): made under fcgi_socket.new (its fd, or -1 with err), then
 * renamed into place (0, or -1 with err); or discarded. */
int manager_fcgi_prepare(const conf_t *c, char *err, size_t errlen);
int manager_fcgi_publish(const conf_t *c, char *err, size_t errlen);
void manager_fcgi_discard(const conf_t *c);

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

/* manager_notify.c: systemd's notifications (notify.h). Every function is a no-op when ocpmd was
 * not started with $NOTIFY_SOCKET. */
typedef struct manager_notify {
    manager_t *m;
    notify_t *n;            /* NULL: no NOTIFY_SOCKET (or an unusable one, logged) */
    uv_timer_t watchdog;    /* WATCHDOG=1 at half of $WATCHDOG_USEC (started only when asked) */
    uv_timer_t status;      /* looks at the status line once a second, from the first READY */
    char status_sent[256];  /* the last STATUS= sent */
    int ready_once;
    unsigned long failures; /* sends that failed (the first is logged at warn) */
} manager_notify_t;
/* Read (and remove from the environment, before any child is started: responders and opencode
 * must never see it) $NOTIFY_SOCKET and the watchdog's variables; start the watchdog's timer.
 * Sets m->notify to s. Call once the loop exists. */
void manager_notify_start(manager_notify_t *s, manager_t *m);
/* READY=1 and the status line: after init (the servers ready or the fallback decided) and after a
 * reload. Neither this nor RELOADING is sent once the manager is stopping. */
void manager_notify_ready(manager_t *m);
/* RELOADING=1 with MONOTONIC_USEC=, before a reload starts; READY follows when it is done. */
void manager_notify_reloading(manager_t *m);
/* STOPPING=1 at the first stop signal. */
void manager_notify_stopping(manager_t *m);
/* A STATUS= saying why initialization failed (ocpmd exits next). */
void manager_notify_failed(manager_t *m, const char *why);
/* Close the socket, once the loop has ended (its timers are closed with the other handles). */
void manager_notify_free(manager_notify_t *s);

#endif
