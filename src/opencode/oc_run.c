#define _GNU_SOURCE
#include "oc_run.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "uvbuf.h"
#include "agent.h"
#include "linebuf.h"
#include "oc_event.h"
#include "proc.h"

/* One stdout line larger than this is cut (and so dropped: a cut JSON line is no event). */
#define OC_RUN_LINE_MAX (4u << 20)
/* A stderr line longer than this is not read for permissions (it is still in the tail). */
#define OC_RUN_ERR_LINE_MAX 4096
/* After the process exits, wait this long for its pipes to close. */
#define OC_RUN_DRAIN_MS 2000

struct oc_runner {
    oc_runner_config_t cfg;
    unsigned long long spawned;
};

struct backend_job {
    oc_runner_t *runner;
    backend_events_t ev;
    void *ctx;
    pid_t pid;
    uv_pipe_t out, err, in;
    uv_timer_t timer; /* run timeout, then kill grace, then drain */
    uv_write_t in_req;
    char *prompt;     /* written to stdin, then the pipe is closed */
    int open_handles; /* out, err, in, timer not yet closed */
    int out_open, err_open;
    int exited, done_called;
    long grace_ms;
    backend_stop_t stopped;
    linebuf_t *lines, *err_lines;
    long dropped_lines;
    char *tail;
    size_t tail_len, tail_max;
    /* what the events said */
    int session_told;
    char *answer;
    size_t answer_len;
    char *error;
    int has_usage;
    long long tokens_in, tokens_out;
    double cost;
    /* how the process ended */
    int has_exit, exit_code, signal;
    struct rusage ru;
};

oc_runner_t *oc_runner_new(const oc_runner_config_t *cfg)
{
    oc_runner_t *r = calloc(1, sizeof *r);
    if (r)
        r->cfg = *cfg;
    return r;
}

void oc_runner_free(oc_runner_t *r) { free(r); }
unsigned long long oc_runner_spawned(const oc_runner_t *r) { return r->spawned; }

static void oc_run_maybe_finish(backend_job_t *j);

static void oc_run_handle_closed(uv_handle_t *h)
{
    backend_job_t *j = h->data;
    if (--j->open_handles == 0) {
        linebuf_free(j->lines);
        linebuf_free(j->err_lines);
        free(j->prompt);
        free(j->tail);
        free(j->answer);
        free(j->error);
        free(j);
    }
}

static void oc_run_close_pipe(backend_job_t *j, uv_pipe_t *p, int *flag)
{
    if (!*flag)
        return;
    *flag = 0;
    uv_read_stop((uv_stream_t *)p);
    uv_close((uv_handle_t *)p, oc_run_handle_closed);
}

/* Keep what an event says: the session, the answer's text, usage, the first error. */
static void oc_run_keep(backend_job_t *j, const oc_event_t *e)
{
    if (e->session_id && !j->session_told) {
        j->session_told = 1;
        j->ev.session(j->ctx, e->session_id);
    }
    if (e->text) {
        size_t n = strlen(e->text);
        if (j->answer_len + n + 2 <= j->runner->cfg.answer_max) {
            char *na = realloc(j->answer, j->answer_len + n + 2);
            if (na) {
                j->answer = na;
                if (j->answer_len)
                    j->answer[j->answer_len++] = '\n';
                memcpy(j->answer + j->answer_len, e->text, n + 1);
                j->answer_len += n;
            }
        }
    }
    if (e->has_usage) {
        j->has_usage = 1;
        j->tokens_in += e->tokens_in;
        j->tokens_out += e->tokens_out;
        j->cost += e->cost;
    }
    if (e->error && !j->error)
        j->error = strdup(e->error);
}

static void oc_run_line(void *ctx, const char *line, size_t len, int cut)
{
    backend_job_t *j = ctx;
    oc_event_t e;
    if (len == 0)
        return;
    if (cut || oc_event_parse(line, len, &e) != 0) {
        j->dropped_lines++;
        return;
    }
    oc_run_keep(j, &e);
    /* What opencode prints is the agent's to shape: a line may not pass itself off as a prompt
     * (those come from stderr, under BACKEND_EVENT_DECIDED) or as one of ocpm's own events. */
    if (strncmp(e.type, "permission.", 11) != 0 && strncmp(e.type, "question.", 9) != 0 &&
        strcmp(e.type, BACKEND_EVENT_DECIDED) != 0)
        j->ev.event(j->ctx, e.type, e.obj);
    oc_event_free(&e);
}

static void oc_run_on_out(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    backend_job_t *j = s->data;
    if (n > 0)
        linebuf_feed(j->lines, buf->base, (size_t)n);
    free(buf->base);
    if (n < 0) {
        linebuf_flush(j->lines);
        oc_run_close_pipe(j, &j->out, &j->out_open);
        oc_run_maybe_finish(j);
    }
}

/* A stderr line: opencode run's own word on a permission it decided alone, as
 * "permission requested: P (pattern, ...); auto-rejecting" (colours around it). */
static void oc_run_err_line(void *ctx, const char *line, size_t len, int cut)
{
    backend_job_t *j = ctx;
    static const char lead[] = "permission requested: ", tail[] = "; auto-rejecting";
    char buf[4096];
    if (cut || len >= sizeof buf)
        return;
    /* Without escape sequences (ESC [ ... letter). */
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (line[i] == '\x1b' && i + 1 < len && line[i + 1] == '[') {
            i += 2;
            while (i < len && !((line[i] >= 'A' && line[i] <= 'Z') || (line[i] >= 'a' && line[i] <= 'z')))
                i++;
            continue;
        }
        buf[o++] = line[i];
    }
    buf[o] = '\0';
    char *p = strstr(buf, lead), *end = strstr(buf, tail);
    if (!p || !end || end < p)
        return;
    p += sizeof lead - 1;
    *end = '\0';
    json_object *props = json_object_new_object(), *patterns = json_object_new_array();
    char *open = strrchr(p, '(');
    if (open && end > open && end[-1] == ')') {
        end[-1] = '\0';
        *open = '\0';
        char *save = NULL;
        for (char *pat = strtok_r(open + 1, ",", &save); pat; pat = strtok_r(NULL, ",", &save)) {
            while (*pat == ' ')
                pat++;
            if (*pat)
                json_object_array_add(patterns, json_object_new_string(pat));
        }
    }
    size_t pl = strlen(p);
    while (pl && p[pl - 1] == ' ')
        p[--pl] = '\0';
    json_object_object_add(props, "permission", json_object_new_string(p));
    json_object_object_add(props, "patterns", patterns);
    json_object_object_add(props, "decided", json_object_new_string("reject"));
    j->ev.event(j->ctx, BACKEND_EVENT_DECIDED, props);
    json_object_put(props);
}

/* Keep the last tail_max bytes of stderr, and read its lines. */
static void oc_run_on_err(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    backend_job_t *j = s->data;
    if (n < 0) {
        free(buf->base);
        linebuf_flush(j->err_lines);
        oc_run_close_pipe(j, &j->err, &j->err_open);
        oc_run_maybe_finish(j);
        return;
    }
    linebuf_feed(j->err_lines, buf->base, (size_t)n);
    if (j->tail_max) {
        size_t add = (size_t)n;
        const char *src = buf->base;
        if (add >= j->tail_max) {
            src += add - j->tail_max;
            add = j->tail_max;
            j->tail_len = 0;
        } else if (j->tail_len + add > j->tail_max) {
            size_t drop = j->tail_len + add - j->tail_max;
            memmove(j->tail, j->tail + drop, j->tail_len - drop);
            j->tail_len -= drop;
        }
        memcpy(j->tail + j->tail_len, src, add);
        j->tail_len += add;
        j->tail[j->tail_len] = '\0';
    }
    free(buf->base);
}

static void oc_run_maybe_finish(backend_job_t *j)
{
    if (j->done_called || !j->exited || j->out_open || j->err_open)
        return;
    j->done_called = 1;
    uv_timer_stop(&j->timer);
    /* Keep only valid UTF-8 in the tail: cut a partial first character. */
    size_t skip = 0;
    while (skip < j->tail_len && ((unsigned char)j->tail[skip] & 0xc0) == 0x80)
        skip++;
    char why[96] = "";
    if (!j->stopped && !j->error && !(j->has_exit && j->exit_code == 0)) {
        if (j->has_exit)
            snprintf(why, sizeof why, "opencode exited with status %d", j->exit_code);
        else
            snprintf(why, sizeof why, "opencode was killed by signal %d (%s)", j->signal, strsignal(j->signal));
    }
    backend_result_t r = {
        .ok = !j->stopped && !j->error && j->has_exit && j->exit_code == 0,
        .stopped = j->stopped,
        .error = j->error ? j->error : why[0] ? why : NULL,
        .text = j->answer,
        .text_len = j->answer_len,
        .has_usage = j->has_usage,
        .tokens_in = j->tokens_in,
        .tokens_out = j->tokens_out,
        .cost = j->cost,
        .has_exit = j->has_exit,
        .exit_code = j->exit_code,
        .signal = j->signal,
        .has_rusage = 1,
        .ru = j->ru,
        .stderr_tail = j->tail_len ? j->tail + skip : NULL,
    };
    j->ev.done(j->ctx, &r);
    uv_close((uv_handle_t *)&j->timer, oc_run_handle_closed);
}

static void oc_run_on_drain_timeout(uv_timer_t *t)
{
    backend_job_t *j = t->data;
    /* Something in the group still holds the pipes: kill the group. */
    proc_kill_group(j->pid, SIGKILL);
    oc_run_close_pipe(j, &j->out, &j->out_open);
    oc_run_close_pipe(j, &j->err, &j->err_open);
    oc_run_maybe_finish(j);
}

static void oc_run_on_exit(void *ctx, pid_t pid, int status, const struct rusage *ru)
{
    backend_job_t *j = ctx;
    j->exited = 1;
    j->ru = *ru;
    if (status >= 0 && WIFEXITED(status)) {
        j->has_exit = 1;
        j->exit_code = WEXITSTATUS(status);
    } else if (status >= 0 && WIFSIGNALED(status)) {
        j->signal = WTERMSIG(status);
    }
    /* Orphans of the run (tool helpers) go with it. */
    proc_kill_group(pid, SIGKILL);
    uv_timer_stop(&j->timer);
    uv_timer_start(&j->timer, oc_run_on_drain_timeout, OC_RUN_DRAIN_MS, 0);
    oc_run_maybe_finish(j);
}

static void oc_run_on_kill_timeout(uv_timer_t *t)
{
    backend_job_t *j = t->data;
    if (!j->exited)
        proc_kill_group(j->pid, SIGKILL);
}

static void oc_run_stop(backend_job_t *j, backend_stop_t why)
{
    if (j->exited || j->stopped)
        return;
    j->stopped = why;
    proc_kill_group(j->pid, SIGTERM);
    uv_timer_stop(&j->timer);
    uv_timer_start(&j->timer, oc_run_on_kill_timeout, (uint64_t)(j->grace_ms > 0 ? j->grace_ms : 1), 0);
}

static void oc_run_on_timeout(uv_timer_t *t) { oc_run_stop(t->data, BACKEND_STOP_TIMEOUT); }

/* The message is on its way (or the run went away first): stdin is closed either way, which is
 * the end of the message for opencode. */
static void oc_run_in_written(uv_write_t *w, int status)
{
    (void)status;
    backend_job_t *j = w->data;
    uv_close((uv_handle_t *)&j->in, oc_run_handle_closed);
}

static char *oc_run_argv_json(char *const *argv)
{
    json_object *a = json_object_new_array();
    for (size_t i = 0; argv[i]; i++)
        json_object_array_add(a, json_object_new_string(argv[i]));
    char *s = strdup(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(a);
    return s;
}

static void oc_run_job_free(backend_job_t *j)
{
    linebuf_free(j->lines);
    linebuf_free(j->err_lines);
    free(j->tail);
    free(j->prompt);
    free(j);
}

/* Spawn the process as the agent: its three pipes, its group, its sandbox. */
static pid_t oc_run_spawn(backend_job_t *j, const backend_request_t *rq, char *const *argv, int p[3][2], char *err,
                          size_t errlen)
{
    agent_launch_t as;
    if (agent_launch(j->runner->cfg.agent, &as, rq->owner, rq->server, rq->workspace_fd, err, errlen) != 0)
        return -1;
    if (strcmp(j->runner->cfg.permission_policy, "allow") == 0 && agent_launch_setenv(&as, "OPENCODE_PERMISSION", "{\"*\":\"allow\"}") != 0) {
        agent_launch_done(&as);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    proc_spec_t ps;
    proc_spec_init(&ps, j->runner->cfg.bin, argv);
    /* The working directory is the workspace ocpm checked (its descriptor, not its path), and
     * opencode takes its directory from there: no path in argv for others to read in /proc. */
    ps.cwd_fd = rq->workspace_fd;
    for (int i = 0; i < 3; i++)
        ps.fd[i] = p[i][i == 0 ? 0 : 1];
    ps.new_pgroup = 1;
    ps.pdeathsig = SIGKILL;
    agent_apply(&as, &ps);
    pid_t pid = proc_spawn(&ps, err, errlen);
    agent_launch_done(&as);
    return pid;
}

/* opencode run --format json [--session S] [--model M] [--agent A] (the message goes to stdin). */
static void oc_run_argv(const oc_runner_t *runner, const backend_request_t *rq, const char *argv[16])
{
    size_t n = 0;
    argv[n++] = runner->cfg.bin;
    argv[n++] = "run";
    argv[n++] = "--format";
    argv[n++] = "json";
    const char *opts[][2] = {{"--session", rq->oc_session}, {"--model", rq->model}, {"--agent", rq->agent}};
    for (size_t i = 0; i < 3; i++)
        if (opts[i][1]) {
            argv[n++] = opts[i][0];
            argv[n++] = opts[i][1];
        }
    argv[n] = NULL;
}

static backend_job_t *oc_run_start(void *self, const backend_request_t *rq, const backend_events_t *ev, void *ctx,
                                   long *pid_out, char **argv_json, char *err, size_t errlen)
{
    oc_runner_t *runner = self;
    const char *argv[16];
    oc_run_argv(runner, rq, argv);

    backend_job_t *j = calloc(1, sizeof *j);
    if (j) {
        j->runner = runner;
        j->tail_max = runner->cfg.stderr_tail;
        j->lines = linebuf_new(OC_RUN_LINE_MAX, oc_run_line, j);
        j->err_lines = linebuf_new(OC_RUN_ERR_LINE_MAX, oc_run_err_line, j);
        j->prompt = strdup(rq->text);
        j->tail = j->tail_max ? malloc(j->tail_max + 1) : NULL;
    }
    if (!j || !j->lines || !j->err_lines || !j->prompt || (j->tail_max && !j->tail)) {
        if (j)
            oc_run_job_free(j);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* stdin, stdout, stderr: [i][0] is the read end. */
    int p[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}};
    for (int i = 0; i < 3; i++)
        if (pipe2(p[i], O_CLOEXEC) != 0) {
            snprintf(err, errlen, "pipe: %s", strerror(errno));
            for (int k = 0; k < i; k++)
                close(p[k][0]), close(p[k][1]);
            oc_run_job_free(j);
            return NULL;
        }
    j->pid = oc_run_spawn(j, rq, (char *const *)argv, p, err, errlen);
    close(p[0][0]);
    close(p[1][1]);
    close(p[2][1]);
    if (j->pid < 0) {
        close(p[0][1]);
        close(p[1][0]);
        close(p[2][0]);
        oc_run_job_free(j);
        return NULL;
    }
    runner->spawned++;
    j->ev = *ev;
    j->ctx = ctx;
    j->grace_ms = rq->grace_ms;
    uv_loop_t *loop = runner->cfg.loop;
    uv_pipe_init(loop, &j->out, 0);
    uv_pipe_init(loop, &j->err, 0);
    uv_pipe_init(loop, &j->in, 0);
    uv_timer_init(loop, &j->timer);
    j->out.data = j->err.data = j->in.data = j->timer.data = j->in_req.data = j;
    j->open_handles = 4;
    uv_pipe_open(&j->out, p[1][0]);
    uv_pipe_open(&j->err, p[2][0]);
    uv_pipe_open(&j->in, p[0][1]);
    j->out_open = j->err_open = 1;
    /* The message: written as the pipe takes it (a large one does not block the loop). */
    uv_buf_t msg = uv_buf_init(j->prompt, (unsigned)strlen(j->prompt));
    if (uv_write(&j->in_req, (uv_stream_t *)&j->in, &msg, 1, oc_run_in_written) != 0)
        uv_close((uv_handle_t *)&j->in, oc_run_handle_closed);
    uv_read_start((uv_stream_t *)&j->out, uvbuf_alloc, oc_run_on_out);
    uv_read_start((uv_stream_t *)&j->err, uvbuf_alloc, oc_run_on_err);
    uv_timer_start(&j->timer, oc_run_on_timeout, (uint64_t)rq->timeout_ms, 0);
    proc_watch(j->pid, oc_run_on_exit, j);
    *pid_out = j->pid;
    *argv_json = oc_run_argv_json((char *const *)argv);
    return j;
}

/* Per message, a run can always start: the scheduler bounds how many run at once. */
static backend_state_t oc_run_state(void *self)
{
    (void)self;
    return BACKEND_READY;
}

static long oc_run_capacity(void *self)
{
    (void)self;
    return 0;
}

const backend_ops_t oc_run_backend = {
    .mode = "per-session",
    .label = "standalone",
    .state = oc_run_state,
    .capacity = oc_run_capacity,
    .start = oc_run_start,
    .stop = oc_run_stop,
};
