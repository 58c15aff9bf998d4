/* sandbox: Landlock rulesets for the agent's processes.
 *
 * Every opencode process (and the git that prepares a workspace) runs inside a Landlock domain
 * built here: it may read and execute what the ruleset lists as readable (the system, the opencode
 * binary, the agent's read-only configuration), read and write what it lists as writable (its
 * workspace, its own opencode data), and nothing else on the file system. Where the kernel offers
 * scoping (Landlock ABI 6), it may also not signal processes outside its domain (ocpmd, other runs)
 * nor connect to abstract Unix sockets outside it.
 *
 * The ruleset is built in the parent (paths are opened there) and entered in the child between
 * fork and exec with sandbox_enter(), which only makes system calls. Limits: Landlock does not
 * mediate connect() on named Unix sockets or TCP on kernels before ABI 4 (ocpm does not restrict
 * the network at all: the agent needs its model); file modes and the agent's own uid stop it there. */
#ifndef OCPM_SANDBOX_H
#define OCPM_SANDBOX_H

#include <stddef.h>

/* The kernel's Landlock ABI version, 0 when Landlock is unavailable (probed once). */
int sandbox_abi(void);
/* A new ruleset (close-on-exec fd), or -1 with errno. */
int sandbox_ruleset(void);
/* Allow reading (and executing) beneath path, or reading and writing when write is set. A path
 * that does not exist is skipped (returns 1); 0 on success, -1 with errno. */
int sandbox_allow(int ruleset, const char *path, int write);
/* The same for an open file descriptor (O_PATH is enough), so that a rule binds to the inode the
 * caller checked rather than to whatever the path names later. */
int sandbox_allow_fd(int ruleset, int fd, int write);
/* Child side: no new privileges, then restrict this process (and what it executes) to the
 * ruleset. Async-signal-safe. Returns 0 or -1 with errno. */
int sandbox_enter(int ruleset);

#endif
