/* changes: the files a turn changed in its workspace, counted by git, where opencode does not say
 * (`opencode run` prints no diff summary; a server does, and its is used there).
 *
 * Every workspace is a git repository (project.h). After a turn, git runs as the agent, in the
 * agent's sandbox, in the workspace: it adds the whole tree to an index of ocpm's own
 * (.git/ocpm-turn-index: the agent's own index and commits are untouched), writes it as a tree,
 * compares it with the tree the previous counted turn left (refs/ocpm/turn; the first commit's
 * before that) and moves that ref. The counts are files, lines added, lines deleted (a binary file
 * counts as a file with no lines). */
#ifndef OCPM_CHANGES_H
#define OCPM_CHANGES_H

#include <uv.h>

#include "agent.h"

typedef struct changes_job changes_job_t;
/* ok: counts holds files, additions, deletions; else error says why. */
typedef void (*changes_done_fn)(void *ctx, int ok, const long long counts[3], const char *error);

/* Start counting in the workspace (workspace_fd from workspace_check) of owner. done is called
 * exactly once from the loop, unless changes_cancel comes first. NULL with err when nothing could
 * start. */
changes_job_t *changes_count(uv_loop_t *loop, const agent_t *agent, const char *git_bin, const char *owner, int workspace_fd,
                             long timeout_ms, changes_done_fn done, void *ctx, char *err, size_t errlen);
/* Stop it: its git is killed and done is not called. */
void changes_cancel(changes_job_t *j);

#endif
