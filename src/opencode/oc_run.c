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

#include "log.h"
#include "proc.h"

/* One stdout line larger than this is dropped (and counted), not kept. */
#define OC_RUN_LINE_MAX (4u << 20)
/* After the process exits, wait this long for its pipes to close. */
#define OC_RUN_DRAIN_MS 2000

struct oc_run {
    uv_loop_t *loop;
    oc_run_ops_t ops;
    void *ctx;
    pid_t pid;
    uv_pipe_t out, err, in;
    uv_timer_t timer;      /* run timeout, then kill grace, then drain */
    uv_write_t in_req;
    char *prompt;          /* written to stdin, then the pipe is closed */
    int open_handles;      /* out, err, in, timer not yet closed */
    int out_open, err_open;
    int exited;
    int done_called;
    long grace_ms;
    oc_run_result_t res;
    char *line;
    size_t line_len, line_cap;
    int line_overflow;
    char *tail;
    size_t tail_len, tail_max;
};

static void oc_run_maybe_finish(oc_run_t *r);

static void oc_run_handle_closed(uv_handle_t *h)
{
    oc_run_t *r = h->data;
    if (--r->open_handles == 0) {
        free(r->prompt);
        free(r->line);
        free(r->tail);
        free(r);
    }
}

static void oc_run_close_pipe(oc_run_t *r, uv_pipe_t *p, int *flag)
{
    if (!*flag)
        return;
    *flag = 0;
    uv_read_stop((uv_stream_t *)p);
    uv_close((uv_handle_t *)p, oc_run_handle_closed);
}

static void oc_run_line(oc_run_t *r, const char *s, size_t n)
{
    while (n && (s[n - 1] == '\r'))
        n--;
    if (n == 0)
        return;
    oc_event_t ev;
    if (oc_event_parse(s, n, &ev) != 0) {
        r->res.dropped_lines++;
        return;
    }
    r->ops.event(r->ctx, &ev);
    oc_event_free(&ev);
}

static void oc_run_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void oc_run_on_out(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    oc_run_t *r = s->data;
    if (n < 0) {
        free(buf->base);
        if (r->line_len && !r->line_overflow)
            oc_run_line(r, r->line, r->line_len);
        r->line_len = 0;
        oc_run_close_pipe(r, &r->out, &r->out_open);
        oc_run_maybe_finish(r);
        return;
    }
    const char *p = buf->base, *end = buf->base + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t chunk = (size_t)((nl ? nl : end) - p);
        if (!r->line_overflow) {
            if (r->line_len + chunk > OC_RUN_LINE_MAX) {
                r->line_overflow = 1;
                r->line_len = 0;
            } else {
                if (r->line_len + chunk > r->line_cap) {
                    size_t cap = r->line_cap ? r->line_cap : 4096;
                    while (cap < r->line_len + chunk)
                        cap *= 2;
                    char *nb = realloc(r->line, cap);
                    if (!nb) {
                        r->line_overflow = 1;
                        r->line_len = 0;
                    } else {
                        r->line = nb;
                        r->line_cap = cap;
                    }
                }
                if (!r->line_overflow) {
                    memcpy(r->line + r->line_len, p, chunk);
                    r->line_len += chunk;
                }
            }
        }
        if (!nl)
            break;
        if (r->line_overflow)
            r->res.dropped_lines++;
        else
            oc_run_line(r, r->line, r->line_len);
        r->line_len = 0;
        r->line_overflow = 0;
        p = nl + 1;
    }
    free(buf->base);
}

static void oc_run_on_err(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    oc_run_t *r = s->data;
    if (n < 0) {
        free(buf->base);
        oc_run_close_pipe(r, &r->err, &r->err_open);
        oc_run_maybe_finish(r);
        return;
    }
    if (r->tail_max) {
        size_t add = (size_t)n;
        const char *src = buf->base;
        if (add >= r->tail_max) {
            src += add - r->tail_max;
            add = r->tail_max;
            r->tail_len = 0;
        } else if (r->tail_len + add > r->tail_max) {
            size_t drop = r->tail_len + add - r->tail_max;
            memmove(r->tail, r->tail + drop, r->tail_len - drop);
            r->tail_len -= drop;
        }
        memcpy(r->tail + r->tail_len, src, add);
        r->tail_len += add;
        r->tail[r->tail_len] = '\0';
    }
    free(buf->base);
}

static void oc_run_maybe_finish(oc_run_t *r)
{
    if (r->done_called || !r->exited || r->out_open || r->err_open)
        return;
    r->done_called = 1;
    uv_timer_stop(&r->timer);
    /* Keep only valid UTF-8 in the tail: cut a partial first character. */
    size_t skip = 0;
    while (skip < r->tail_len && ((unsigned char)r->tail[skip] & 0xc0) == 0x80)
        skip++;
    r->res.stderr_tail = r->tail_len ? r->tail + skip : NULL;
    r->ops.done(r->ctx, &r->res);
    uv_close((uv_handle_t *)&r->timer, oc_run_handle_closed);
}

static void oc_run_on_drain_timeout(uv_timer_t *t)
{
    oc_run_t *r = t->data;
    /* Something in the group still holds the pipes: kill the group. */
    proc_kill_group(r->pid, SIGKILL);
    oc_run_close_pipe(r, &r->out, &r->out_open);
    oc_run_close_pipe(r, &r->err, &r->err_open);
    oc_run_maybe_finish(r);
}

static void oc_run_on_exit(void *ctx, pid_t pid, int status, const struct rusage *ru)
{
    oc_run_t *r = ctx;
    r->exited = 1;
    r->res.ru = *ru;
    if (status >= 0 && WIFEXITED(status)) {
        r->res.has_exit = 1;
        r->res.exit_code = WEXITSTATUS(status);
    } else if (status >= 0 && WIFSIGNALED(status)) {
        r->res.signal = WTERMSIG(status);
    }
    /* Orphans of the run (tool helpers) go with it. */
    proc_kill_group(pid, SIGKILL);
    uv_timer_stop(&r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, oc_run_on_drain_timeout, OC_RUN_DRAIN_MS, 0);
    oc_run_maybe_finish(r);
}

static void oc_run_on_kill_timeout(uv_timer_t *t)
{
    oc_run_t *r = t->data;
    if (!r->exited)
        proc_kill_group(r->pid, SIGKILL);
}

void oc_run_stop(oc_run_t *r, oc_run_stop_t why)
{
    if (r->exited || r->res.stopped)
        return;
    r->res.stopped = why;
    proc_kill_group(r->pid, SIGTERM);
    uv_timer_stop(&r->timer);
    uv_timer_start(&r->timer, oc_run_on_kill_timeout, (uint64_t)(r->grace_ms > 0 ? r->grace_ms : 1), 0);
}

static void oc_run_on_timeout(uv_timer_t *t)
{
    oc_run_stop(t->data, RUN_STOP_TIMEOUT);
}

/* The message is on its way (or the run went away first): stdin is closed either way, which is
 * the end of the message for opencode. */
static void oc_run_in_written(uv_write_t *w, int status)
{
    (void)status;
    oc_run_t *r = w->data;
    uv_close((uv_handle_t *)&r->in, oc_run_handle_closed);
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

oc_run_t *oc_run_start(uv_loop_t *loop, const oc_run_spec_t *spec, const oc_run_ops_t *ops, void *ctx, pid_t *pid,
                 char **argv_json, char *err, size_t errlen)
{
    const char *argv[16];
    size_t n = 0;
    argv[n++] = spec->bin;
    argv[n++] = "run";
    argv[n++] = "--format";
    argv[n++] = "json";
    if (spec->oc_session) {
        argv[n++] = "--session";
        argv[n++] = spec->oc_session;
    }
    if (spec->model) {
        argv[n++] = "--model";
        argv[n++] = spec->model;
    }
    if (spec->agent) {
        argv[n++] = "--agent";
        argv[n++] = spec->agent;
    }
    argv[n] = NULL;

    oc_run_t *r = calloc(1, sizeof *r);
    if (!r || (spec->stderr_tail && !(r->tail = malloc(spec->stderr_tail + 1))) || !(r->prompt = strdup(spec->text))) {
        if (r) {
            free(r->tail);
            free(r->prompt);
        }
        free(r);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->tail_max = spec->stderr_tail;
    /* stdin, stdout, stderr: [i][0] is the read end. */
    int p[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}};
    for (int i = 0; i < 3; i++)
        if (pipe2(p[i], O_CLOEXEC) != 0) {
            snprintf(err, errlen, "pipe: %s", strerror(errno));
            for (int k = 0; k < i; k++)
                close(p[k][0]), close(p[k][1]);
            free(r->tail);
            free(r->prompt);
            free(r);
            return NULL;
        }
    /* The working directory is the workspace ocpm checked (its descriptor, not its path), and
     * opencode takes its directory from there: no path in argv for others to read in /proc. */
    proc_spec_t ps;
    proc_spec_init(&ps, spec->bin, (char *const *)argv);
    ps.cwd_fd = spec->workspace_fd;
    for (int i = 0; i < 3; i++)
        ps.fd[i] = p[i][i == 0 ? 0 : 1];
    ps.new_pgroup = 1;
    ps.pdeathsig = SIGKILL;
    agent_apply(spec->as, &ps);
    r->pid = proc_spawn(&ps, err, errlen);
    close(p[0][0]);
    close(p[1][1]);
    close(p[2][1]);
    if (r->pid < 0) {
        close(p[0][1]);
        close(p[1][0]);
        close(p[2][0]);
        free(r->tail);
        free(r->prompt);
        free(r);
        return NULL;
    }
    r->loop = loop;
    r->ops = *ops;
    r->ctx = ctx;
    r->grace_ms = spec->grace_ms;
    uv_pipe_init(loop, &r->out, 0);
    uv_pipe_init(loop, &r->err, 0);
    uv_pipe_init(loop, &r->in, 0);
    uv_timer_init(loop, &r->timer);
    r->out.data = r->err.data = r->in.data = r->timer.data = r->in_req.data = r;
    r->open_handles = 4;
    uv_pipe_open(&r->out, p[1][0]);
    uv_pipe_open(&r->err, p[2][0]);
    uv_pipe_open(&r->in, p[0][1]);
    r->out_open = r->err_open = 1;
    /* The message: written as the pipe takes it (a large one does not block the loop). */
    uv_buf_t msg = uv_buf_init(r->prompt, (unsigned)strlen(r->prompt));
    if (uv_write(&r->in_req, (uv_stream_t *)&r->in, &msg, 1, oc_run_in_written) != 0)
        uv_close((uv_handle_t *)&r->in, oc_run_handle_closed);
    uv_read_start((uv_stream_t *)&r->out, oc_run_alloc, oc_run_on_out);
    uv_read_start((uv_stream_t *)&r->err, oc_run_alloc, oc_run_on_err);
    uv_timer_start(&r->timer, oc_run_on_timeout, (uint64_t)spec->timeout_ms, 0);
    proc_watch(r->pid, oc_run_on_exit, r);
    *pid = r->pid;
    *argv_json = oc_run_argv_json((char *const *)argv);
    return r;
}
