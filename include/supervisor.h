/* supervisor: one child process ocpmd keeps alive (a responder, the opencode server).
 *
 * Like nginx's ngx_spawn_process with its respawn flag, the policy is data: the supervisor spawns
 * the child (its spec built afresh by the owner each time), relays its output line by line (one
 * policy for an over-long line: linebuf.h; at most lines_per_s a second, the rest counted and
 * said), watches its exit, and restarts it after a delay that doubles while it keeps dying young
 * (from backoff_min_ms to backoff_max_ms; a child that lived stable_ms starts over), unless it
 * exited with fatal_exit (a configuration error: restarting would only loop) or the owner says
 * otherwise. Stopping sends SIGTERM (to the group when the child leads one) and SIGKILL after
 * stop_grace_ms. Every callback runs in the loop. */
#ifndef OCPM_SUPERVISOR_H
#define OCPM_SUPERVISOR_H

#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <uv.h>

#include "proc.h"

typedef struct supervisor supervisor_t;

typedef enum {
    SUPERVISOR_RESTART_BACKOFF, /* after the policy's delay */
    SUPERVISOR_RESTART_NOW,     /* at once (a planned replacement) */
    SUPERVISOR_RESTART_NEVER,   /* leave it down */
} supervisor_restart_t;

typedef struct supervisor_policy {
    long backoff_min_ms, backoff_max_ms;
    long stable_ms;
    int fatal_exit;     /* an exit status that is never restarted, or -1 */
    long stop_grace_ms;
    int own_group;      /* the child leads its own process group; signals go to the group */
    int relay_stdout;   /* relay stdout too (stderr always is) */
    size_t line_max;    /* output lines are cut here */
    long lines_per_s;   /* output lines relayed per second at most; 0: all */
} supervisor_policy_t;

typedef struct supervisor_ops {
    /* Fill spec for the next start: file, argv, envp, fds 0 and 3, identity. The supervisor sets
     * stdout/stderr, the group and the parent-death signal. Returns 0 or -1 with err. */
    int (*build)(void *ctx, proc_spec_t *spec, char *err, size_t errlen);
    /* After each attempt to spawn (successful or not): free what build made. May be NULL. */
    void (*built)(void *ctx);
    /* The child runs (pid). May be NULL. */
    void (*started)(void *ctx, pid_t pid);
    /* The child exited (status as from waitpid, or -1 when it vanished; pid 0 when it could not
     * be started at all, err saying why). delay_ms is what BACKOFF would wait. Returns what next
     * (ignored while stopping: it is called then too, before the stop's done). */
    supervisor_restart_t (*exited)(void *ctx, pid_t pid, int status, const char *err, long delay_ms);
    /* One line of output. */
    void (*line)(void *ctx, int is_stderr, const char *line, size_t len, int cut);
} supervisor_ops_t;

supervisor_t *supervisor_new(uv_loop_t *loop, const char *name, const supervisor_policy_t *policy,
                             const supervisor_ops_t *ops, void *ctx);
/* Start the child now. A spawn that fails is reported to exited (pid 0) and retried per its answer. */
void supervisor_start(supervisor_t *s);
/* Signal the running child (its group with own_group). */
void supervisor_signal(supervisor_t *s, int sig);
/* Stop for good: no restart, SIGTERM, SIGKILL after the grace; done(ctx) once the child is gone
 * and its pipes are closed (at once when none runs). */
void supervisor_stop(supervisor_t *s, void (*done)(void *ctx));
/* The same with another signal and grace (0: no SIGKILL): a child asked to finish its work first
 * (a responder replaced at a reload, SIGQUIT) gets as long as that work lasts. */
void supervisor_retire(supervisor_t *s, int sig, long grace_ms, void (*done)(void *ctx));
/* Close the supervisor's handles (after stop's done, or before the loop ends); it frees itself
 * once they are closed. */
void supervisor_free(supervisor_t *s);
pid_t supervisor_pid(const supervisor_t *s);
/* Restarts after a death (not NOW replacements) since the start. */
long supervisor_restarts(const supervisor_t *s);
/* When the running child started (unix seconds), 0 when none runs. */
double supervisor_started_at(const supervisor_t *s);

#endif
