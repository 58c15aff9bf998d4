/* project: each workspace its own opencode project.
 *
 * opencode takes the enclosing git repository of a directory as its project (else "/"), loads
 * opencode.json, agents and commands from every directory between the two, and names the project
 * after the repository's first commit (a repository without a commit is the shared "global"
 * project). So before a workspace is used, it is made a git repository with a first commit of its
 * own (a random nonce in its message): nothing above the workspace is ever read, and no two
 * workspaces share a project. git runs as the agent, in the agent's sandbox, so the repository is
 * the agent's and ocpmd never writes where the agent could have planted a link.
 *
 * The check (workspace_check's has_git) runs before every message; a workspace whose .git the agent
 * removed is made a repository again before its next message runs. */
#ifndef OCPM_PROJECT_H
#define OCPM_PROJECT_H

#include <uv.h>

#include "agent.h"

typedef struct project_job project_job_t;
/* ok: the workspace is a repository with a commit; else error says why. */
typedef void (*project_done_fn)(void *ctx, int ok, const char *error);

/* Start making the workspace (workspace_fd from workspace_check, workspace_path its path) of owner a repository.
 * done is called exactly once from the loop, unless project_cancel comes first. NULL with err
 * when nothing could start. */
project_job_t *project_prepare(uv_loop_t *loop, const agent_t *agent, const char *git_bin, const char *owner,
                               int workspace_fd,
                               const char *workspace_path, long timeout_ms, project_done_fn done, void *ctx, char *err,
                               size_t errlen);
/* Stop it: its git is killed and done is not called. */
void project_cancel(project_job_t *j);

#endif
