#define _GNU_SOURCE
#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "uvbuf.h"
#include "clock.h"
#include "linebuf.h"
#include "log.h"

/* One of a child's output pipes. Each spawn gets new ones: the last child's pipes may still be
 * draining (EOF can come after the exit) and a libuv handle must not be reused before its close
 * callback has run. A pipe frees itself when closed. */
typedef struct sup_pipe {
    uv_pipe_t pipe;
    linebuf_t *lines;
    int is_stderr;
    struct supervisor *s;
    struct sup_pipe *next;
} sup_pipe_t;

struct supervisor {
    uv_loop_t *loop;
    char name[48];
    supervisor_policy_t policy;
    supervisor_ops_t ops;
    void *ctx;
    pid_t pid;
    double started_at;
    long backoff_ms;
    long restarts;
    int stopping, freeing;
    void (*stop_done)(void *ctx);
    uv_timer_t timer;      /* the restart delay, then the stop grace */
    uv_timer_t rate_timer; /* says how many output lines were dropped */
    double rate_window;
    long rate_lines, rate_dropped;
    sup_pipe_t *pipes;
    int handles; /* open handles (timers and pipes); freed at 0 once freeing */
};

static void supervisor_maybe_free(supervisor_t *s)
{
    if (s->freeing && s->handles == 0)
        free(s);
}

static void supervisor_handle_closed(uv_handle_t *h)
{
    supervisor_t *s = h->data;
    s->handles--;
    supervisor_maybe_free(s);
}

static void supervisor_rate_report(uv_timer_t *t)
{
    supervisor_t *s = t->data;
    char what[96];
    snprintf(what, sizeof what, "%s output dropped", s->name); /* "opencode serve output dropped" */
    if (s->rate_dropped)
        log_warn(what, "lines=%ld reason=%s", s->rate_dropped, log_q("more lines a second than the policy's bound"));
    s->rate_dropped = 0;
}

static void supervisor_line(void *ctx, const char *line, size_t len, int cut)
{
    sup_pipe_t *p = ctx;
    supervisor_t *s = p->s;
    if (s->policy.lines_per_s > 0) {
        double now = clock_now();
        if (now - s->rate_window >= 1.0) {
            s->rate_window = now;
            s->rate_lines = 0;
        }
        if (s->rate_lines >= s->policy.lines_per_s) {
            if (s->rate_dropped++ == 0 && !s->freeing)
                uv_timer_start(&s->rate_timer, supervisor_rate_report, 1000, 0);
            return;
        }
        s->rate_lines++;
    }
    s->ops.line(s->ctx, p->is_stderr, line, len, cut);
}

static void supervisor_pipe_closed(uv_handle_t *h)
{
    sup_pipe_t *p = h->data;
    supervisor_t *s = p->s;
    for (sup_pipe_t **pp = &s->pipes; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    linebuf_free(p->lines);
    free(p);
    s->handles--;
    supervisor_maybe_free(s);
}

static void supervisor_pipe_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    sup_pipe_t *p = st->data;
    if (n > 0)
        linebuf_feed(p->lines, buf->base, (size_t)n);
    free(buf->base);
    if (n < 0) {
        linebuf_flush(p->lines);
        if (!uv_is_closing((uv_handle_t *)&p->pipe))
            uv_close((uv_handle_t *)&p->pipe, supervisor_pipe_closed);
    }
}

/* Relay fd (the read end) line by line. Takes fd over. */
static void supervisor_open_pipe(supervisor_t *s, int fd, int is_stderr)
{
    sup_pipe_t *p = calloc(1, sizeof *p);
    if (p)
        p->lines = linebuf_new(s->policy.line_max, supervisor_line, p);
    if (!p || !p->lines) {
        free(p);
        close(fd); /* the child then gets EPIPE on that stream; it is only its log */
        return;
    }
    p->s = s;
    p->is_stderr = is_stderr;
    uv_pipe_init(s->loop, &p->pipe, 0);
    p->pipe.data = p;
    p->next = s->pipes;
    s->pipes = p;
    s->handles++;
    uv_pipe_open(&p->pipe, fd);
    uv_read_start((uv_stream_t *)&p->pipe, uvbuf_alloc, supervisor_pipe_read);
}

static void supervisor_restart_cb(uv_timer_t *t)
{
    supervisor_t *s = t->data;
    if (!s->stopping && s->pid == 0)
        supervisor_start(s);
}

/* The child is gone (or never started): ask the owner what next, and do it. */
static void supervisor_after(supervisor_t *s, pid_t pid, int status, const char *err)
{
    double lived_ms = s->started_at > 0 ? (clock_now() - s->started_at) * 1000.0 : 0;
    s->pid = 0;
    s->started_at = 0;
    uv_timer_stop(&s->timer);
    long next = lived_ms >= s->policy.stable_ms ? s->policy.backoff_min_ms
                : s->backoff_ms                ? s->backoff_ms * 2
                                               : s->policy.backoff_min_ms;
    if (next > s->policy.backoff_max_ms)
        next = s->policy.backoff_max_ms;
    int fatal = pid > 0 && status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == s->policy.fatal_exit;
    /* The owner hears of every exit (while stopping too, when its answer does not matter). */
    supervisor_restart_t what = s->ops.exited(s->ctx, pid, status, err, next);
    if (s->stopping) {
        void (*done)(void *) = s->stop_done;
        s->stop_done = NULL;
        if (done)
            done(s->ctx);
        return;
    }
    if (fatal || what == SUPERVISOR_RESTART_NEVER)
        return;
    if (what == SUPERVISOR_RESTART_NOW) {
        supervisor_start(s);
        return;
    }
    s->backoff_ms = next;
    s->restarts++;
    uv_timer_start(&s->timer, supervisor_restart_cb, (uint64_t)next, 0);
}

static void supervisor_on_exit(void *ctx, pid_t pid, int status, const struct rusage *ru)
{
    (void)ru;
    supervisor_t *s = ctx;
    /* What the child left behind in its group (helpers, MCP servers) goes with it. */
    if (s->policy.own_group)
        proc_kill_group(pid, SIGKILL);
    supervisor_after(s, pid, status, NULL);
}

void supervisor_start(supervisor_t *s)
{
    if (s->pid > 0 || s->stopping)
        return;
    char err[256] = "";
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    proc_spec_t ps;
    proc_spec_init(&ps, NULL, NULL);
    int rc = s->ops.build(s->ctx, &ps, err, sizeof err);
    if (rc == 0 && ((s->policy.relay_stdout && pipe2(po, O_CLOEXEC) != 0) || pipe2(pe, O_CLOEXEC) != 0)) {
        snprintf(err, sizeof err, "pipe: %s", strerror(errno));
        rc = -1;
    }
    pid_t pid = -1;
    if (rc == 0) {
        ps.fd[1] = s->policy.relay_stdout ? po[1] : PROC_DEVNULL;
        ps.fd[2] = pe[1];
        ps.new_pgroup = s->policy.own_group;
        ps.pdeathsig = s->policy.own_group ? SIGKILL : SIGTERM;
        pid = proc_spawn(&ps, err, sizeof err);
    }
    if (s->ops.built)
        s->ops.built(s->ctx);
    for (int i = 0; i < 2; i++) {
        int *p = i ? pe : po;
        if (p[1] >= 0)
            close(p[1]);
        if (pid <= 0 && p[0] >= 0)
            close(p[0]);
    }
    if (pid <= 0) {
        supervisor_after(s, 0, -1, err);
        return;
    }
    s->pid = pid;
    s->started_at = clock_now();
    if (po[0] >= 0)
        supervisor_open_pipe(s, po[0], 0);
    supervisor_open_pipe(s, pe[0], 1);
    proc_watch(pid, supervisor_on_exit, s);
    if (s->ops.started)
        s->ops.started(s->ctx, pid);
}

supervisor_t *supervisor_new(uv_loop_t *loop, const char *name, const supervisor_policy_t *policy,
                             const supervisor_ops_t *ops, void *ctx)
{
    supervisor_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->loop = loop;
    snprintf(s->name, sizeof s->name, "%s", name);
    s->policy = *policy;
    s->ops = *ops;
    s->ctx = ctx;
    uv_timer_init(loop, &s->timer);
    uv_timer_init(loop, &s->rate_timer);
    s->timer.data = s->rate_timer.data = s;
    s->handles = 2;
    return s;
}

void supervisor_signal(supervisor_t *s, int sig)
{
    if (s->pid <= 0)
        return;
    if (s->policy.own_group)
        proc_kill_group(s->pid, sig);
    else
        kill(s->pid, sig);
}

static void supervisor_grace_cb(uv_timer_t *t)
{
    supervisor_t *s = t->data;
    if (s->pid > 0) {
        log_warn("child did not stop in time; killing", "child=%s pid=%ld", s->name, (long)s->pid);
        supervisor_signal(s, SIGKILL);
    }
}

void supervisor_stop(supervisor_t *s, void (*done)(void *ctx))
{
    supervisor_retire(s, SIGTERM, s->policy.stop_grace_ms, done);
}

void supervisor_retire(supervisor_t *s, int sig, long grace_ms, void (*done)(void *ctx))
{
    s->stopping = 1;
    uv_timer_stop(&s->timer);
    if (s->pid <= 0) {
        if (done)
            done(s->ctx);
        return;
    }
    s->stop_done = done;
    supervisor_signal(s, sig);
    if (grace_ms > 0)
        uv_timer_start(&s->timer, supervisor_grace_cb, (uint64_t)grace_ms, 0);
}

void supervisor_free(supervisor_t *s)
{
    if (!s || s->freeing)
        return;
    s->freeing = 1;
    s->stopping = 1;
    if (s->pid > 0) { /* going away first: the child goes too, and nobody is told */
        proc_unwatch(s->pid);
        supervisor_signal(s, SIGKILL);
    }
    uv_close((uv_handle_t *)&s->timer, supervisor_handle_closed);
    uv_close((uv_handle_t *)&s->rate_timer, supervisor_handle_closed);
    for (sup_pipe_t *p = s->pipes; p; p = p->next)
        if (!uv_is_closing((uv_handle_t *)&p->pipe))
            uv_close((uv_handle_t *)&p->pipe, supervisor_pipe_closed);
}

pid_t supervisor_pid(const supervisor_t *s) { return s->pid; }
long supervisor_restarts(const supervisor_t *s) { return s->restarts; }
double supervisor_started_at(const supervisor_t *s) { return s->started_at; }
