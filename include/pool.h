/* pool: the manager's pool of FastCGI responder processes.
 *
 * Each responder is this binary re-executed as `ocpmd --responder INDEX`, with the FastCGI
 * listening socket as its fd 0 (libfcgi's convention), the shared in-flight page (inflight.h) as
 * fd 3, its settings as fd 4: the manager's parsed settings in a sealed memory file, read as
 * they are (like nginx's workers inheriting the cycle: nothing printed to argv and parsed again),
 * and the manager's published status, health and metrics (snapshot.h) as fd 5.
 * Its stderr is relayed line by line into the manager's log (so SIGHUP's reopen covers it).
 * Each responder has a supervisor (supervisor.h): one that dies is respawned after a delay that
 * doubles while it keeps dying young (100 ms up to 30 s), so a crash loop cannot become a fork
 * storm; one that exits with 78 (EX_CONFIG) is not respawned.
 *
 * A reload replaces the responders as nginx replaces its workers: a new generation starts with the
 * new settings on a new listening socket that the manager has renamed over the old one's path, so
 * nginx's next connection reaches it; the old generation is sent SIGQUIT and finishes what it
 * serves (its streams too, however long: a stream lasts as long as its turn), then exits. Each generation counts
 * in its own band of the in-flight page, so the pool's limits hold across the two. */
#ifndef OCPM_POOL_H
#define OCPM_POOL_H

#include <json-c/json.h>
#include <uv.h>

#include <sys/types.h>

#include "conf.h"

typedef struct pool pool_t;

/* What each responder reads from its fd 4: the manager's parsed settings, as they are, and its
 * place in the pool. */
typedef struct pool_settings {
    conf_t conf;
    int slots;                       /* responders in the pool (slots of the in-flight page, fd 3) */
    long capacity, message_capacity; /* the pool's limits (inflight.h) */
} pool_settings_t;

/* Told of what operators should find in manager_events (a respawn, a fatal exit). */
typedef void (*pool_event_fn)(void *ctx, const char *kind, const char *detail);

/* Who the responders run as (pool_user.c): uid and gid to switch to, or -1 for ocpmd's own. */
typedef struct pool_user {
    long uid, gid;
    char name[64];
} pool_user_t;
/* responder_user resolved: never root, ocpmd's own user (unless "self") or one of the agents' users
 * (agents, nagents), and one that reaches the control socket. 0, or -1 with err. */
int pool_user_resolve(const conf_t *c, const uid_t *agents, int nagents, pool_user_t *out, char *err, size_t errlen);

typedef struct pool_config {
    uv_loop_t *loop;
    const conf_t *conf;
    const char *exe;   /* this binary */
    int listen_fd;     /* the FastCGI socket (the pool's from pool_start on, closed by it) */
    pool_user_t user;  /* who the responders run as */
    pool_event_fn event;
    void *event_ctx;
} pool_config_t;

/* Start every responder. NULL with err when the pool cannot be set up. */
pool_t *pool_start(const pool_config_t *cfg, char *err, size_t errlen);
/* A band of the in-flight page free for a new generation (>= 0), or -1 while three older
 * generations still finish their requests. */
int pool_band_free(pool_t *p);
/* Replace every responder with one reading the settings as they are now (after a reload),
 * listening on listen_fd (the pool's from now on, whatever the outcome). Once the new ones run,
 * publish(ctx) puts their socket where nginx connects (0, or -1 with err); only then are the old
 * ones retired. Returns 0, or -1 with err (no band free, the new ones could not start, publish
 * failed): the running responders stay then, and nginx still reaches them. */
typedef int (*pool_publish_fn)(void *ctx, char *err, size_t errlen);
int pool_reload(pool_t *p, int listen_fd, pool_publish_fn publish, void *ctx, char *err, size_t errlen);
/* SIGTERM every responder; done(ctx) once all have exited (SIGKILL after a grace period). */
void pool_stop(pool_t *p, void (*done)(void *ctx), void *ctx);
/* Close what is left (after pool_stop's done, or when the loop is torn down early). */
void pool_free(pool_t *p);
json_object *pool_status_json(const pool_t *p);
long pool_restarts(const pool_t *p);
/* The pool's capacity for messages: responders x threads less the reserve kept for the rest. */
long pool_message_capacity(const pool_t *p);

#endif
