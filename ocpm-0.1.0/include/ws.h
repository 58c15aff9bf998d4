/* ws: resolve a workspace name to a directory under workspace_root.
 *
 * The name has passed valid_workspace(). Each segment is walked from the
 * root: missing directories are created (0700), and after every step the
 * real path must still lie under the real root, so a symlink that points
 * outside is refused before anything is created beyond it. Limit: a local
 * user who can write inside the root can still race this walk; the root is
 * meant to be owned by ocpmd alone. */
#ifndef OCPM_WS_H
#define OCPM_WS_H

#include <stddef.h>

/* Returns 0 and the absolute real path in out, or -1 with why. */
int ws_resolve(const char *root, const char *name, char *out, size_t outlen, const char **why);

#endif
