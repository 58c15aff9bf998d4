#define _GNU_SOURCE
#include "changes.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "linebuf.h"
#include "proc.h"
#include "uvbuf.h"

/* A numstat line longer than this (a very long path) still counts, as a file without lines. */
#define CHANGES_LINE_MAX 8192

/* Fixed text, run by sh as the agent with the workspace as its directory; $1 is git. Nothing of
 * the client's or the agent's is in it. */
static const char changes_script[] =
    "set -e\n"
    "export GIT_INDEX_FILE=\"$(\"$1\" rev-parse --git-dir)/ocpm-turn-index\" GIT_CONFIG_NOSYSTEM=1 "
    "GIT_TERMINAL_PROMPT=0\n"
    "\"$1\" add -A .\n"
    "after=$(\"$1\" write-tree)\n"
    "before=$(\"$1\" rev-parse -q --verify 'refs/ocpm/turn^{tree}' || \"$1\" rev-parse 'HEAD^{tree}')\n"
    "\"$1\" update-ref refs/ocpm/turn \"$after\"\n"
    "exec \"$1\" diff-tree -r --numstat \"$before\" \"$after\"\n";

struct changes_job {
    pid_t pid;
    uv_pipe_t out;
    uv_timer_t timer;
    linebuf_t *lines;
    long long counts[3];
    int exited, out_open, status, cancelled, handles;
    changes_done_fn done;
    void *ctx;
};

static void changes_closed(uv_handle_t *h)
{
    changes_job_t *j = h->data;
    if (--j->handles == 0) {
        linebuf_free(j->lines);
        free(j);
    }
}

/* Both the process and its output are done: report once, then close. */
static void changes_maybe_end(changes_job_t *j)
{
    if (!j->exited || j->out_open)
        return;
    uv_timer_stop(&j->timer);
    if (!j->cancelled) {
        int ok = WIFEXITED(j->status) && WEXITSTATUS(j->status) == 0;
        char why[96];
        if (!ok)
            snprintf(why, sizeof why, "git could not count the changes (%s %d)",
                     WIFSIGNALED(j->status) ? "signal" : "status",
                     WIFSIGNALED(j->status) ? WTERMSIG(j->status) : WEXITSTATUS(j->status));
        j->done(j->ctx, ok, j->counts, ok ? NULL : why);
    }
    uv_close((uv_handle_t *)&j->timer, changes_closed);
}

/* "added<TAB>deleted<TAB>path", "-" for a binary file's counts. */
static void changes_line(void *ctx, const char *line, size_t len, int cut)
{
    (void)cut;
    changes_job_t *j = ctx;
    if (len == 0)
        return;
    j->counts[0]++;
    char num[24];
    const char *p = line, *end = line + len;
    for (int k = 1; k <= 2 && p < end; k++) {
        const char *tab = memchr(p, '\t', (size_t)(end - p));
        size_t n = tab ? (size_t)(tab - p) : (size_t)(end - p);
        if (n > 0 && n < sizeof num && p[0] != '-') {
            memcpy(num, p, n);
            num[n] = '\0';
            j->counts[k] += strtoll(num, NULL, 10);
        }
        p = tab ? tab + 1 : end;
    }
}

static void changes_on_out(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    changes_job_t *j = s->data;
    if (n > 0)
        linebuf_feed(j->lines, buf->base, (size_t)n);
    free(buf->base);
    if (n < 0) {
        linebuf_flush(j->lines);
        j->out_open = 0;
        uv_read_stop(s);
        uv_close((uv_handle_t *)s, changes_closed);
        changes_maybe_end(j);
    }
}

static void changes_on_exit(void *ctx, pid_t pid, int status, const struct rusage *ru)
{
    (void)ru;
    changes_job_t *j = ctx;
    proc_kill_group(pid, SIGKILL);
    j->pid = 0;
    j->exited = 1;
    j->status = status < 0 ? (SIGKILL & 0x7f) : status;
    changes_maybe_end(j);
}

static void changes_timeout(uv_timer_t *t)
{
    changes_job_t *j = t->data;
    if (j->pid > 0)
        proc_kill_group(j->pid, SIGKILL);
}

changes_job_t *changes_count(uv_loop_t *loop, const agent_t *agent, const char *git_bin, const char *owner, int workspace_fd,
                             long timeout_ms, changes_done_fn done, void *ctx, char *err, size_t errlen)
{
    changes_job_t *j = calloc(1, sizeof *j);
    int p[2] = {-1, -1};
    if (!j || !(j->lines = linebuf_new(CHANGES_LINE_MAX, changes_line, j)) || pipe2(p, O_CLOEXEC) != 0) {
        if (j)
            linebuf_free(j->lines);
        free(j);
        snprintf(err, errlen, "out of resources: %s", strerror(errno));
        return NULL;
    }
    j->done = done;
    j->ctx = ctx;
    agent_launch_t l;
    if (agent_launch(agent, &l, owner, 0, workspace_fd, err, errlen) != 0) {
        close(p[0]), close(p[1]);
        linebuf_free(j->lines);
        free(j);
        return NULL;
    }
    char *argv[] = {"/bin/sh", "-c", (char *)changes_script, "ocpm-changes", (char *)git_bin, NULL};
    proc_spec_t ps;
    proc_spec_init(&ps, argv[0], argv);
    ps.cwd_fd = workspace_fd;
    ps.fd[1] = p[1];
    ps.new_pgroup = 1;
    ps.pdeathsig = SIGKILL;
    agent_apply(&l, &ps);
    j->pid = proc_spawn(&ps, err, errlen);
    agent_launch_done(&l);
    close(p[1]);
    if (j->pid < 0) {
        close(p[0]);
        linebuf_free(j->lines);
        free(j);
        return NULL;
    }
    uv_pipe_init(loop, &j->out, 0);
    uv_timer_init(loop, &j->timer);
    j->out.data = j->timer.data = j;
    j->handles = 2;
    uv_pipe_open(&j->out, p[0]);
    j->out_open = 1;
    uv_read_start((uv_stream_t *)&j->out, uvbuf_alloc, changes_on_out);
    uv_timer_start(&j->timer, changes_timeout, (uint64_t)timeout_ms, 0);
    proc_watch(j->pid, changes_on_exit, j);
    return j;
}

void changes_cancel(changes_job_t *j)
{
    j->cancelled = 1;
    if (j->pid > 0)
        proc_kill_group(j->pid, SIGKILL);
}
