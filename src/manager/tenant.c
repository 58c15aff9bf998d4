/* tenant: the pools of the configuration (manager.h's tenant_t), what they hold together, and
 * which pool a user's sessions live in. */
#define _GNU_SOURCE
#include "tenant.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "proc.h"

extern char **environ;

/* An env_file's variables at most (its provider keys, a few settings). */
#define TENANT_ENV_FILE_MAX 256

long tenant_running(const tenant_t *ts, int count)
{
    long n = 0;
    for (int i = 0; i < count; i++)
        n += ts[i].scheduler ? scheduler_running(ts[i].scheduler) : 0;
    return n;
}

void tenant_slow_sweep(tenant_t *ts, int count, double now)
{
    for (int i = 0; i < count; i++)
        if (ts[i].scheduler)
            scheduler_slow_sweep(ts[i].scheduler, now);
}

long tenant_slowlog_shortest(const tenant_t *ts, int count)
{
    long shortest = 0;
    for (int i = 0; i < count; i++) {
        long t = ts[i].conf->slowlog_timeout_ms;
        if (t > 0 && (shortest == 0 || t < shortest))
            shortest = t;
    }
    return shortest;
}

long tenant_queued(const tenant_t *ts, int count)
{
    long n = 0;
    for (int i = 0; i < count; i++)
        n += ts[i].scheduler ? scheduler_queued(ts[i].scheduler) : 0;
    return n;
}

unsigned long long tenant_finished(const tenant_t *ts, int count)
{
    unsigned long long n = 0;
    for (int i = 0; i < count; i++)
        n += ts[i].scheduler ? scheduler_finished(ts[i].scheduler) : 0;
    return n;
}

unsigned long long tenant_failed(const tenant_t *ts, int count)
{
    unsigned long long n = 0;
    for (int i = 0; i < count; i++)
        n += ts[i].scheduler ? scheduler_failed(ts[i].scheduler) : 0;
    return n;
}

unsigned long long tenant_spawned(const tenant_t *ts, int count)
{
    unsigned long long n = 0;
    for (int i = 0; i < count; i++)
        n += ts[i].runner ? oc_runner_spawned(ts[i].runner) : 0;
    return n;
}

int tenant_servers(const tenant_t *ts, int count)
{
    int n = 0;
    for (int i = 0; i < count; i++)
        n += ts[i].nservers;
    return n;
}

/* Does the space-separated list name user exactly? */
static int tenant_lists(const char *list, const char *user)
{
    size_t n = strlen(user);
    for (const char *p = list; *p;) {
        p += strspn(p, " ");
        size_t w = strcspn(p, " ");
        if (w && w == n && strncmp(p, user, n) == 0)
            return 1;
        p += w;
    }
    return 0;
}

tenant_t *tenant_of_user(tenant_t *ts, int n, const conf_t *conf, const char *user)
{
    if (conf->nsections == 0)
        return &ts[0];
    for (int i = 0; i < n; i++)
        if (*user && tenant_lists(ts[i].conf->pool_users, user))
            return &ts[i];
    for (int i = 0; i < n; i++)
        if (strcmp(ts[i].conf->pool_name, conf->default_pool) == 0)
            return &ts[i];
    return NULL;
}

tenant_t *tenant_of(tenant_t *ts, int n, const session_t *s)
{
    int i = session_pool(s);
    return i >= 0 && i < n ? &ts[i] : NULL;
}

/* The file holds provider keys: ocpmd's or root's, and readable by nobody else (another pool's
 * agent reads /etc and whatever else is world-readable). Returns 0 or -1 with err. */
static int tenant_env_file_safe(int fd, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return snprintf(err, errlen, "env_file %s is not a regular file", path), -1;
    if (st.st_uid != 0 && st.st_uid != geteuid())
        return snprintf(err, errlen, "env_file %s belongs to uid %ld, neither root nor ocpmd", path, (long)st.st_uid), -1;
    if ((st.st_mode & 0007) || ((st.st_mode & 0070) && st.st_gid != 0))
        return snprintf(err, errlen, "env_file %s is readable by others (mode %04o): make it 0600", path,
                        (unsigned)(st.st_mode & 07777)), -1;
    return 0;
}

int tenant_check_env_file(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return snprintf(err, errlen, "env_file %s: %s", path, strerror(errno)), -1;
    int rc = tenant_env_file_safe(fd, path, err, errlen);
    close(fd);
    return rc;
}

/* Add env_file's NAME=VALUE lines to *env (replacing what pass_env let through of the same name). */
static int tenant_env_file(const char *path, char ***env, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!f) {
        snprintf(err, errlen, "env_file %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (tenant_env_file_safe(fd, path, err, errlen) != 0) {
        fclose(f);
        return -1;
    }
    size_t n = 0;
    while ((*env)[n])
        n++;
    char **out = realloc(*env, (n + TENANT_ENV_FILE_MAX + 1) * sizeof *out);
    if (!out) {
        fclose(f);
        return snprintf(err, errlen, "out of memory"), -1;
    }
    *env = out;
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0, added = 0;
    while (rc == 0 && getline(&line, &cap, f) >= 0) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        const char *s = line + strspn(line, " \t");
        if (!*s || *s == '#')
            continue;
        size_t klen = strcspn(s, "=");
        if (!s[klen] || klen == 0 || strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") != klen ||
            added == TENANT_ENV_FILE_MAX) {
            snprintf(err, errlen, "env_file %s:%d: expected NAME=VALUE (at most %d)", path, lineno, TENANT_ENV_FILE_MAX);
            rc = -1;
            break;
        }
        for (size_t i = 0; i < n; i++)
            if (out[i] && strncmp(out[i], s, klen + 1) == 0) {
                free(out[i]);
                out[i] = out[--n];
                out[n] = NULL;
                break;
            }
        if (!(out[n] = strdup(s))) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        } else {
            out[++n] = NULL;
            added++;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

int tenant_init(tenant_t *t, uv_loop_t *loop, char *err, size_t errlen)
{
    const conf_t *c = t->conf;
    t->child_env = proc_env_filter(environ, c->pass_env);
    if (!t->child_env)
        return snprintf(err, errlen, "out of memory"), -1;
    if (c->env_file[0] && tenant_env_file(c->env_file, &t->child_env, err, errlen) != 0)
        return -1;
    if (agent_init(t->agent, c, t->child_env, err, errlen) != 0)
        return -1;
    oc_runner_config_t rc = {.loop = loop, .agent = t->agent, .bin = c->opencode_bin,
                             .stderr_tail = (size_t)c->stderr_tail_bytes, .answer_max = 1u << 20,
                             .permission_policy = c->permission_policy};
    t->runner = oc_runner_new(&rc);
    t->models = oc_models_new();
    if (!t->runner || !t->models)
        return snprintf(err, errlen, "out of memory"), -1;
    log_info("pool ready", "pool=%s workspace_root=%s agent_home=%s servers=%ld maxConcurrentRuns=%ld", c->pool_name,
             log_q(c->workspace_root), log_q(c->agent_home), c->servers, c->max_concurrent_runs);
    return 0;
}

void tenant_free(tenant_t *t)
{
    scheduler_free(t->scheduler);
    t->scheduler = NULL;
    oc_runner_free(t->runner);
    t->runner = NULL;
    oc_models_free(t->models);
    t->models = NULL;
    proc_env_free(t->child_env);
    t->child_env = NULL;
}
