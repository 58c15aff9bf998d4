/* workspace: workspaces, one tree per owner under workspace_root.
 *
 *   workspace_root/            ocpmd's, 0711
 *     <owner-dir>/             ocpmd's, 0711 (agent_owner_dir: a user's name, or '@' and a digest)
 *       <name>/...             ocpmd's above the leaf, 0711
 *         <leaf>/              the agent's, 0700: the workspace (its own git repository, see project.h)
 *
 * A name means a different directory for every owner, so no user can name, probe or reach another
 * user's workspace. Names have passed valid_workspace() (relative segments only). No symlink is
 * followed anywhere below the root: a link on the path is refused, at creation and again before
 * every run (workspace_check), because the agent owns its leaf and could swap it for a link. */
#ifndef OCPM_WORKSPACE_H
#define OCPM_WORKSPACE_H

#include <stddef.h>

#include "agent.h"

/* Where owner's workspace `name` is (or would be), without making anything. Returns 0 or -1 with why. */
int workspace_path(const char *root, const char *owner, const char *name, char *out, size_t outlen, const char **why);
/* Make (or find) owner's workspace `name`. Returns 0 and its absolute path in out, or -1 with why
 * (a sentence for the client). */
int workspace_resolve(const agent_t *agent, const char *root, const char *owner, const char *name, char *out, size_t outlen, const char **why);
/* The name a workspace path stands for (what clients see): the path below root/<owner-dir>/, or
 * below root/ for a workspace made before workspaces had owners. Points into path. */
const char *workspace_name(const char *root, const char *owner, const char *path);
/* Before a run: is path still a workspace (a directory under root reached without any symlink,
 * ocpmd's directories above, the agent's at the leaf; one of ocpmd's own at the leaf is handed to
 * the agent)? Returns an O_PATH descriptor of the leaf (the caller closes it; the sandbox binds to
 * it), with *has_git telling whether it holds a repository; or -1 with why. */
int workspace_check(const agent_t *agent, const char *root, const char *path, int *has_git, const char **why);

#endif
