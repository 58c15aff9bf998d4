/* oc_run: one `opencode run` process for one message (per-session mode).
 *
 * Spawns, without a shell, in its own process group, with PDEATHSIG, as the agent (agent.h: its
 * user, environment and sandbox):
 *   opencode run --format json [--session S] [--model M] [--agent A]   (in the workspace)
 * The message goes to its stdin, which opencode reads to the end: so it never appears in the
 * process table (argv is world-readable in /proc), and the model receives it byte for byte (given
 * as an argument, opencode wraps a message of several words in quotes). Reads stdout as JSON
 * lines as they come and keeps a bounded tail of stderr. Finishes once the process has exited and
 * both pipes are drained (or a drain window passed: grandchildren holding the pipes are killed
 * with the group). */
#ifndef OCPM_OC_RUN_H
#define OCPM_OC_RUN_H

#include <sys/resource.h>
#include <sys/types.h>

#include <uv.h>

#include "agent.h"
#include "oc_event.h"

typedef struct oc_run oc_run_t;

typedef enum { RUN_STOP_ABORT = 1, RUN_STOP_TIMEOUT, RUN_STOP_SHUTDOWN } oc_run_stop_t;

typedef struct run_spec {
    const char *bin, *oc_session, *model, *agent, *text;
    int workspace_fd; /* the checked workspace (O_PATH): the run's working directory */
    const agent_launch_t *as; /* who runs it: identity, environment, sandbox */
    long timeout_ms, grace_ms;
    size_t stderr_tail;
} oc_run_spec_t;

typedef struct run_result {
    int has_exit, exit_code, signal;
    struct rusage ru;
    oc_run_stop_t stopped;  /* 0, or why ocpm stopped it */
    const char *stderr_tail;
    long dropped_lines;  /* stdout lines over the line limit or not JSON */
} oc_run_result_t;

typedef struct run_ops {
    void (*event)(void *ctx, const oc_event_t *ev);
    void (*done)(void *ctx, const oc_run_result_t *r); /* last call; run is freed after it */
} oc_run_ops_t;

/* Start. On success *pid and *argv_json (malloc'd) are set. Returns NULL with err on failure. */
oc_run_t *oc_run_start(uv_loop_t *loop, const oc_run_spec_t *spec, const oc_run_ops_t *ops, void *ctx, pid_t *pid,
                 char **argv_json, char *err, size_t errlen);
/* Stop it: SIGTERM to the group, SIGKILL after the grace period. */
void oc_run_stop(oc_run_t *r, oc_run_stop_t why);

#endif
