/* The agent's files (agent.c: who it is, its directories, its configuration; agent_launch.c: one
 * process of it, with its home, environment, limits and sandbox) and what they share. */
#ifndef OCPM_AGENT_INTERNAL_H
#define OCPM_AGENT_INTERNAL_H

#include <limits.h>
#include <sys/types.h>

#include "agent.h"

struct agent {
    const conf_t *conf;
    int switching;  /* child processes change user */
    uid_t uid;
    gid_t gid;
    char name[64];
    const char *why_self; /* NULL, "configured" or "cannot switch" */
    int sandbox;          /* Landlock is on for every agent process */
    char **base_env;
    char config_copy[PATH_MAX];
    char opencode_dir[PATH_MAX];
};

/* agent.c: make the directory of the agent's (mkdir -p of its parents, as ocpmd). */
int agent_mkdirs(const char *dir, char *err, size_t errlen);

#endif
