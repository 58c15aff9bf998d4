#define _GNU_SOURCE
#include "project.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"
#include "proc.h"

#define PROJECT_ERR_MAX 400

struct project_job {
    uv_loop_t *loop;
    const agent_t *agent;
    char *git, *owner, *path;
    int workspace_fd;
    int step;      /* 0: git init, 1: git commit */
    pid_t pid;
    int err_fd;    /* read end of git's stderr */
    int cancelled;
    uv_timer_t timer;
    long timeout_ms;
    project_done_fn done;
    void *ctx;
    char nonce[33];
};

static int project_step(project_job_t *j, char *err, size_t errlen);

static void project_closed(uv_handle_t *h)
{
    project_job_t *j = h->data;
    free(j->git);
    free(j->owner);
    free(j->path);
    free(j);
}

static void project_end(project_job_t *j, int ok, const char *error)
{
    uv_timer_stop(&j->timer);
    if (j->err_fd >= 0)
        close(j->err_fd);
    j->err_fd = -1;
    close(j->workspace_fd);
    if (!j->cancelled)
        j->done(j->ctx, ok, error);
    uv_close((uv_handle_t *)&j->timer, project_closed);
}

static void project_on_exit(void *ctx, pid_t pid, int status, const struct rusage *ru)
{
    (void)ru;
    project_job_t *j = ctx;
    proc_kill_group(pid, SIGKILL);
    j->pid = 0;
    if (j->cancelled) {
        project_end(j, 0, "cancelled");
        return;
    }
    if (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char out[PROJECT_ERR_MAX] = "", msg[PROJECT_ERR_MAX + 96];
        ssize_t n = j->err_fd >= 0 ? read(j->err_fd, out, sizeof out - 1) : 0;
        out[n > 0 ? n : 0] = '\0';
        out[strcspn(out, "\n")] = '\0';
        snprintf(msg, sizeof msg, "cannot make the workspace a git repository (git %s: %s)",
                 j->step == 0 ? "init" : "commit", out[0] ? out : status >= 0 && WIFSIGNALED(status) ? "killed" : "failed");
        project_end(j, 0, msg);
        return;
    }
    if (j->step == 1) {
        project_end(j, 1, NULL);
        return;
    }
    j->step = 1;
    char err[256];
    if (project_step(j, err, sizeof err) != 0)
        project_end(j, 0, err);
}

static void project_timeout(uv_timer_t *t)
{
    project_job_t *j = t->data;
    if (j->pid > 0)
        proc_kill_group(j->pid, SIGKILL);
}

/* Spawn this step's git, as the agent, in the workspace. */
static int project_step(project_job_t *j, char *err, size_t errlen)
{
    char msg[96];
    snprintf(msg, sizeof msg, "ocpm workspace %s", j->nonce);
    char *init[] = {j->git, "init", "-q", "-b", "main", NULL};
    char *commit[] = {j->git, "-c", "user.name=ocpm", "-c", "user.email=ocpm@localhost", "-c", "commit.gpgsign=false",
                      "commit", "-q", "--allow-empty", "--no-verify", "-m", msg, NULL};
    agent_launch_t l;
    if (agent_launch(j->agent, &l, j->owner, 0, j->workspace_fd, err, errlen) != 0)
        return -1;
    /* Only the agent's own git: no system configuration, no prompts. */
    size_t n = 0;
    while (l.env[n])
        n++;
    char **env = calloc(n + 3, sizeof *env);
    int p[2] = {-1, -1};
    if (!env || pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
        free(env);
        agent_launch_done(&l);
        snprintf(err, errlen, "out of resources: %s", strerror(errno));
        return -1;
    }
    memcpy(env, l.env, n * sizeof *env);
    env[n] = "GIT_CONFIG_NOSYSTEM=1";
    env[n + 1] = "GIT_TERMINAL_PROMPT=0";
    proc_spec_t ps;
    proc_spec_init(&ps, j->git, j->step ? commit : init);
    ps.cwd_fd = j->workspace_fd;
    ps.fd[2] = p[1];
    ps.new_pgroup = 1;
    ps.pdeathsig = SIGKILL;
    agent_apply(&l, &ps);
    ps.envp = env;
    j->pid = proc_spawn(&ps, err, errlen);
    close(p[1]);
    free(env);
    agent_launch_done(&l);
    if (j->err_fd >= 0)
        close(j->err_fd);
    j->err_fd = p[0];
    if (j->pid < 0 || proc_watch(j->pid, project_on_exit, j) != 0) {
        if (j->pid > 0)
            proc_kill_group(j->pid, SIGKILL);
        j->pid = 0;
        return -1;
    }
    return 0;
}

project_job_t *project_prepare(uv_loop_t *loop, const agent_t *agent, const char *git_bin, const char *owner,
                               int workspace_fd,
                               const char *workspace_path, long timeout_ms, project_done_fn done, void *ctx, char *err,
                               size_t errlen)
{
    project_job_t *j = calloc(1, sizeof *j);
    unsigned char rnd[16];
    if (!j || !(j->git = strdup(git_bin)) || !(j->owner = strdup(owner)) || !(j->path = strdup(workspace_path)) ||
        getentropy(rnd, sizeof rnd) != 0) {
        if (j) {
            free(j->git);
            free(j->owner);
            free(j->path);
        }
        free(j);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(j->nonce + 2 * i, 3, "%02x", rnd[i]);
    j->loop = loop;
    j->agent = agent;
    j->workspace_fd = dup(workspace_fd);
    j->err_fd = -1;
    j->done = done;
    j->ctx = ctx;
    j->timeout_ms = timeout_ms;
    uv_timer_init(loop, &j->timer);
    j->timer.data = j;
    if (j->workspace_fd < 0 || project_step(j, err, errlen) != 0) {
        if (j->workspace_fd >= 0)
            close(j->workspace_fd);
        j->workspace_fd = -1;
        if (j->err_fd >= 0)
            close(j->err_fd);
        uv_close((uv_handle_t *)&j->timer, project_closed);
        return NULL;
    }
    uv_timer_start(&j->timer, project_timeout, (uint64_t)timeout_ms, 0);
    log_debug("making a workspace its own project", "workspace=%s", log_q(workspace_path));
    return j;
}

void project_cancel(project_job_t *j)
{
    j->cancelled = 1;
    if (j->pid > 0)
        proc_kill_group(j->pid, SIGKILL);
}
