/* agent: who the agent is, where its files live, and what it may touch.
 *
 * Every opencode process (per-message runs, the server, the start-up probes) and the git that
 * prepares a workspace is "the agent": an untrusted actor with a shell. It runs
 *   - as agent_user/agent_group, never as root and never as ocpmd's own user unless the operator
 *     says agent_user = self (ocpmd switches users when it is root or holds CAP_SETUID and
 *     CAP_SETGID; otherwise the default is self, with a warning and agentIsolation saying so);
 *   - with its own environment: HOME, XDG_*_HOME and TMPDIR in its own home, the operator's
 *     pass_env on top, OPENCODE_CONFIG pointing at a copy ocpm made readable to it;
 *   - inside a Landlock sandbox (sandbox.h) when agent_sandbox is on and the kernel has it: it reads
 *     the system, the opencode binary's directory, its read-only configuration and agent_read_paths;
 *     it writes only its workspace and its home.
 *
 * Its files (agent_home):
 *   agent_home/            ocpmd's, 0711
 *     config/opencode/     ocpmd's, 0755: XDG_CONFIG_HOME, read-only to every agent
 *     users/<owner>/       the agent's, 0700: HOME of one user's per-message runs
 *     server/              the agent's, 0700: HOME of the first opencode server (servers)
 *     server-<n>/          the agent's, 0700: HOME of server n (1 to servers - 1)
 * In per-session mode a run reaches its own workspace and its own user's home only; the shared
 * server (server mode) reaches every workspace, so server mode keeps the agent away from ocpm but
 * not one user's agent from another's files.
 *
 * When workspace_root and agent_home are derived from a state_dir the agent user cannot reach
 * (a clone under /root, say), both move to OCPM_AGENT_FALLBACK_DIR/<hash of state_dir>. */
#ifndef OCPM_AGENT_H
#define OCPM_AGENT_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "conf.h"
#include "proc.h"

/* One agent: a user, a home and an environment (a pool of ocpm's has its own). */
typedef struct agent agent_t;

/* In main(), after conf_finish: resolve the agent user and group of c, refuse unsafe ones, and move
 * derived paths the agent could not reach (in c). Logs what it decided. Returns the agent, or NULL
 * with err. c must outlive it. */
agent_t *agent_setup(conf_t *c, char *err, size_t errlen);

/* In the manager, before anything is spawned: create agent_home's layout, copy the operator's
 * OPENCODE_CONFIG, take the base environment env (already filtered by pass_env). */
int agent_init(agent_t *a, const conf_t *c, char *const *env, char *err, size_t errlen);
void agent_free(agent_t *a);

/* What one agent process needs; agent_launch_done releases it. */
typedef struct agent_launch {
    char **env;
    int sandbox_fd; /* -1: none */
    long uid, gid;  /* -1: ocpmd's own */
    long rlimit_as, rlimit_nofile, rlimit_cpu_s, rlimit_nproc, rlimit_fsize; /* run_rlimit_*; 0: inherited */
    char home[PATH_MAX];
} agent_launch_t;

/* Prepare to start an agent process. owner: whose home (NULL: server number `server`'s, 0 for the
 * first; ignored for a user's). workspace_fd: the
 * workspace it may write (an fd the caller checked, so the sandbox binds to that directory), or
 * -1 for the whole workspace_root (the shared server). Creates the home when missing. */
int agent_launch(const agent_t *a, agent_launch_t *l, const char *owner, int server, int workspace_fd, char *err,
                 size_t errlen);
/* Set one more variable of the launch's environment (at most 4 per launch), replacing the
 * operator's of that name. */
int agent_launch_setenv(agent_launch_t *l, const char *name, const char *value);
/* Put the launch's identity, limits, sandbox and environment into a spawn spec. */
void agent_apply(const agent_launch_t *l, proc_spec_t *ps);
void agent_launch_done(agent_launch_t *l);

/* Does the agent run under a user of its own (not ocpmd's)? */
int agent_separate(const agent_t *a);
/* The owner of the agent's files: its uid and gid (ocpmd's own when it does not switch). */
uid_t agent_uid(const agent_t *a);
gid_t agent_gid(const agent_t *a);
/* The directory name that stands for an owner under workspace_root and agent_home/users: the
 * name itself when it is a plain one ([A-Za-z0-9_][A-Za-z0-9._-]{0,63}), else '@' and a digest;
 * the unauthenticated owner ("") is "@anonymous", which no user name can be. */
void agent_owner_dir(const char *owner, char *out, size_t outlen);
/* Who a directory belongs to: ocpmd alone, ocpmd with the agent's group (read-only to the agent),
 * or the agent. */
typedef enum { AGENT_DIR_OCPM, AGENT_DIR_SHARED, AGENT_DIR_AGENT } agent_dir_t;
/* Make a directory (or check one): not a symlink, a directory, owned as `who` says, with mode. A
 * directory of ocpmd's own is handed over when needed; one someone else made is refused.
 * Returns 0 or -1 with why. */
int agent_mkdir(const agent_t *a, const char *path, agent_dir_t who, mode_t mode, const char **why);

/* agentIsolation for the status document. */
json_object *agent_status_json(const agent_t *a);

/* Is the agent a, as it runs, kept out of c's fcgi_socket_group (it would speak to the pool as
 * anyone)? agent_setup checks it at start; a reload that changes the group checks it again for
 * the agents already running. 0, or -1 with err. */
int agent_check_fcgi_group(const agent_t *a, const conf_t *c, char *err, size_t errlen);

#endif
