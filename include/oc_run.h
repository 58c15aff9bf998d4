/* oc_run: the per-message backend (backend.h): one `opencode run` process for each message.
 *
 * Spawns, without a shell, in its own process group, with PDEATHSIG, as the agent (agent.h: its
 * user, environment, limits and sandbox), in the workspace (its checked descriptor as the working
 * directory, which opencode takes for its directory):
 *   opencode run --format json [--session S] [--model M] [--agent A]
 * The message goes to its stdin, which opencode reads to the end: so it never appears in the
 * process table (argv is world-readable in /proc), and the model receives it byte for byte (given
 * as an argument, opencode wraps a message of several words in quotes). Reads stdout as JSON lines
 * as they come (oc_event.h): the first session id, the text parts (the answer, up to answer_max),
 * usage, errors; every event is passed on for streams. Keeps a bounded tail of stderr, and reads
 * it for the permissions opencode rejected on its own ("permission requested: P (patterns);
 * auto-rejecting"), each passed on as a permission.asked event with "decided": "reject". The job ends
 * once the process has exited and both pipes are drained (or a drain window passed: grandchildren
 * holding the pipes are killed with the group). A stop sends SIGTERM to the group, SIGKILL after
 * the grace. */
#ifndef OCPM_OC_RUN_H
#define OCPM_OC_RUN_H

#include <stddef.h>

#include <uv.h>

#include "backend.h"
#include "agent.h"

typedef struct oc_runner oc_runner_t;

typedef struct oc_runner_config {
    uv_loop_t *loop;
    const agent_t *agent; /* who runs it */
    const char *bin;     /* opencode_bin */
    size_t stderr_tail;  /* stderr_tail_bytes */
    size_t answer_max;   /* the answer's text is cut here */
    /* The pool's permission_policy as it is now (a reload may change it): "allow" gives each run
     * OPENCODE_PERMISSION={"*":"allow"}. */
    const char *permission_policy;
} oc_runner_config_t;

oc_runner_t *oc_runner_new(const oc_runner_config_t *cfg);
void oc_runner_free(oc_runner_t *r);
/* Runs started since the start. */
unsigned long long oc_runner_spawned(const oc_runner_t *r);

extern const backend_ops_t oc_run_backend;

#endif
