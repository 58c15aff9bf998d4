#define _GNU_SOURCE
#include "agent_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "sandbox.h"

/* What the agent may read beside its own files: the system. Missing ones are skipped. */
static const char *const agent_system_paths[] = {
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/proc", "/sys", "/dev",
    "/run/systemd/resolve", /* /etc/resolv.conf points here where systemd-resolved runs */
};

/* The home of one user's runs, or of server `server`: made on first use. */
static int agent_make_home(const agent_t *a, const char *owner, int server, char *home, size_t len, char *err, size_t errlen)
{
    char od[80];
    if (owner) {
        agent_owner_dir(owner, od, sizeof od);
        snprintf(home, len, "%s/users/%s", a->conf->agent_home, od);
    } else if (server > 0) {
        snprintf(home, len, "%s/server-%d", a->conf->agent_home, server);
    } else { /* the first server's: where the only one's always was */
        snprintf(home, len, "%s/server", a->conf->agent_home);
    }
    static const char *const subs[] = {"", "/data", "/cache", "/state", "/tmp"};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        char d[PATH_MAX + 16];
        const char *why = NULL;
        snprintf(d, sizeof d, "%s%s", home, subs[i]);
        if (agent_mkdir(a, d, AGENT_DIR_AGENT, 0700, &why) != 0) {
            snprintf(err, errlen, "agent home %s: %s", d, why);
            return -1;
        }
    }
    return 0;
}

static char *agent_var(const char *name, const char *a, const char *b)
{
    char *s = NULL;
    return asprintf(&s, "%s=%s%s", name, a, b ? b : "") < 0 ? NULL : s;
}

static int agent_build_env(const agent_t *a, agent_launch_t *l)
{
    size_t n = 0;
    while (a->base_env[n])
        n++;
    l->env = calloc(n + 14, sizeof *l->env); /* ours (9), agent_launch_setenv's (4), NULL */
    if (!l->env)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        if (!(l->env[o++] = strdup(a->base_env[i])))
            return -1;
    char cfg[PATH_MAX + 16];
    snprintf(cfg, sizeof cfg, "%s/config", a->conf->agent_home);
    char *own[] = {
        agent_var("HOME", l->home, NULL),
        agent_var("USER", a->name, NULL),
        agent_var("LOGNAME", a->name, NULL),
        agent_var("TMPDIR", l->home, "/tmp"),
        agent_var("XDG_DATA_HOME", l->home, "/data"),
        agent_var("XDG_CACHE_HOME", l->home, "/cache"),
        agent_var("XDG_STATE_HOME", l->home, "/state"),
        agent_var("XDG_CONFIG_HOME", cfg, NULL),
        a->config_copy[0] ? agent_var("OPENCODE_CONFIG", a->config_copy, NULL) : NULL,
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
        if (i < 8 && !own[i])
            rc = -1;
        if (own[i])
            l->env[o++] = own[i];
    }
    return rc;
}

int agent_launch_setenv(agent_launch_t *l, const char *name, const char *value)
{
    char *v = agent_var(name, value, NULL);
    if (!v)
        return -1;
    size_t nl = strlen(name), i = 0;
    for (; l->env[i]; i++)
        if (strncmp(l->env[i], name, nl) == 0 && l->env[i][nl] == '=') {
            free(l->env[i]);
            l->env[i] = v;
            return 0;
        }
    /* agent_build_env left room for a few more. */
    l->env[i] = v;
    l->env[i + 1] = NULL;
    return 0;
}

/* Read the system, the binary, the configuration; write the workspace and the home. */
static int agent_build_sandbox(const agent_t *a, agent_launch_t *l, int workspace_fd, char *err, size_t errlen)
{
    int rs = sandbox_ruleset();
    if (rs < 0) {
        snprintf(err, errlen, "cannot create a Landlock ruleset: %s", strerror(errno));
        return -1;
    }
    l->sandbox_fd = rs;
    char cfg[PATH_MAX + 16];
    snprintf(cfg, sizeof cfg, "%s/config", a->conf->agent_home);
    const char *fail = NULL;
    for (size_t i = 0; i < sizeof agent_system_paths / sizeof agent_system_paths[0] && !fail; i++)
        if (sandbox_allow(rs, agent_system_paths[i], 0) < 0)
            fail = agent_system_paths[i];
    if (!fail && a->opencode_dir[0] && sandbox_allow(rs, a->opencode_dir, 0) < 0)
        fail = a->opencode_dir;
    if (!fail && sandbox_allow(rs, cfg, 0) < 0)
        fail = cfg;
    char extra[sizeof a->conf->agent_read_paths];
    snprintf(extra, sizeof extra, "%s", a->conf->agent_read_paths);
    char *save = NULL;
    for (char *p = strtok_r(extra, " ", &save); p && !fail; p = strtok_r(NULL, " ", &save))
        if (sandbox_allow(rs, p, 0) < 0)
            fail = p;
    char extra_w[sizeof a->conf->agent_write_paths];
    snprintf(extra_w, sizeof extra_w, "%s", a->conf->agent_write_paths);
    save = NULL;
    for (char *p = strtok_r(extra_w, " ", &save); p && !fail; p = strtok_r(NULL, " ", &save))
        if (sandbox_allow(rs, p, 1) < 0)
            fail = p;
    if (!fail && sandbox_allow(rs, l->home, 1) < 0)
        fail = l->home;
    if (!fail && sandbox_allow(rs, "/dev/null", 1) < 0)
        fail = "/dev/null";
    if (!fail && (workspace_fd >= 0 ? sandbox_allow_fd(rs, workspace_fd, 1) : sandbox_allow(rs, a->conf->workspace_root, 1)) < 0)
        fail = "the workspace";
    if (fail) {
        snprintf(err, errlen, "cannot add %s to the sandbox: %s", fail, strerror(errno));
        return -1;
    }
    return 0;
}

int agent_launch(const agent_t *a, agent_launch_t *l, const char *owner, int server, int workspace_fd, char *err, size_t errlen)
{
    memset(l, 0, sizeof *l);
    l->sandbox_fd = -1;
    l->uid = a->switching ? (long)a->uid : -1;
    l->gid = a->switching ? (long)a->gid : -1;
    const conf_t *c = a->conf;
    l->rlimit_as = c->run_rlimit_as;
    l->rlimit_nofile = c->run_rlimit_nofile;
    /* run_rlimit_cpu is a duration in ms; RLIMIT_CPU counts whole seconds (at least 1). */
    l->rlimit_cpu_s = c->run_rlimit_cpu_s > 0 ? (c->run_rlimit_cpu_s + 999) / 1000 : 0;
    /* Counted per user: as ocpmd's own user it would count ocpmd and everything else of that user. */
    l->rlimit_nproc = a->switching ? c->run_rlimit_nproc : 0;
    l->rlimit_fsize = c->run_rlimit_fsize;
    if (agent_make_home(a, owner, server, l->home, sizeof l->home, err, errlen) != 0)
        return -1;
    if (agent_build_env(a, l) != 0) {
        snprintf(err, errlen, "out of memory");
        agent_launch_done(l);
        return -1;
    }
    if (a->sandbox && agent_build_sandbox(a, l, workspace_fd, err, errlen) != 0) {
        agent_launch_done(l);
        return -1;
    }
    return 0;
}

void agent_apply(const agent_launch_t *l, proc_spec_t *ps)
{
    ps->uid = l->uid;
    ps->gid = l->gid;
    ps->rlimit_as = l->rlimit_as;
    ps->rlimit_nofile = l->rlimit_nofile;
    ps->rlimit_cpu = l->rlimit_cpu_s;
    ps->rlimit_nproc = l->rlimit_nproc;
    ps->rlimit_fsize = l->rlimit_fsize;
    ps->sandbox_fd = l->sandbox_fd;
    ps->envp = l->env;
}

void agent_launch_done(agent_launch_t *l)
{
    if (l->sandbox_fd >= 0)
        close(l->sandbox_fd);
    l->sandbox_fd = -1;
    for (char **p = l->env; p && *p; p++)
        free(*p);
    free(l->env);
    l->env = NULL;
}

