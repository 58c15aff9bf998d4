/* run: one `opencode run` process for one message (per-session mode).
 *
 * Spawns, without a shell, in its own process group, with PDEATHSIG, stdin
 * on /dev/null and the allowlisted environment:
 *   opencode run --format json --dir WS [--session S] [--model M] [--agent A] -- TEXT
 * ("--" keeps a text that starts with '-' a message). Reads stdout as JSON
 * lines as they come and keeps a bounded tail of stderr. Finishes once the
 * process has exited and both pipes are drained (or a drain window passed:
 * grandchildren holding the pipes are killed with the group). */
#ifndef OCPM_RUN_H
#define OCPM_RUN_H

#include <sys/resource.h>
#include <sys/types.h>

#include <uv.h>

#include "ocev.h"

typedef struct run run_t;

typedef enum { RUN_STOP_ABORT = 1, RUN_STOP_TIMEOUT, RUN_STOP_SHUTDOWN } run_stop_t;

typedef struct run_spec {
    const char *bin, *workspace, *oc_session, *model, *agent, *text;
    char *const *env;
    long timeout_ms, grace_ms;
    size_t stderr_tail;
    long rlimit_as, rlimit_nofile, rlimit_cpu_s;
} run_spec_t;

typedef struct run_result {
    int has_exit, exit_code, signal;
    struct rusage ru;
    run_stop_t stopped;  /* 0, or why ocpm stopped it */
    const char *stderr_tail;
    long dropped_lines;  /* stdout lines over the line limit or not JSON */
} run_result_t;

typedef struct run_ops {
    void (*event)(void *ctx, const ocev_t *ev);
    void (*done)(void *ctx, const run_result_t *r); /* last call; run is freed after it */
} run_ops_t;

/* Start. On success *pid and *argv_json (malloc'd; the message shown as
 * "<message>") are set. Returns NULL with err on failure. */
run_t *run_start(uv_loop_t *loop, const run_spec_t *spec, const run_ops_t *ops, void *ctx, pid_t *pid,
                 char **argv_json, char *err, size_t errlen);
/* Stop it: SIGTERM to the group, SIGKILL after the grace period. */
void run_stop(run_t *r, run_stop_t why);

#endif
