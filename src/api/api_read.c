/* api_read: the reads that may take seconds (statistics, everyone's sessions), on libuv's thread
 * pool over a read-only connection of their own, so the manager's loop goes on (api_internal.h). */
#define _GNU_SOURCE
#include "api_internal.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"

typedef struct api_read_job {
    uv_work_t work;
    control_conn_t *c; /* NULL once the client went away */
    char path[4096];
    api_read_fn fn;
    json_object *args; /* a copy the worker owns: the frame's is freed meanwhile */
    const char *what;
    json_object *result;
    char err[512];
} api_read_job_t;

static void api_read_work(uv_work_t *w)
{
    api_read_job_t *j = w->data;
    db_t *ro = db_open_readonly(j->path, j->err, sizeof j->err);
    if (!ro)
        return;
    j->result = j->fn(ro, j->args, j->err, sizeof j->err);
    db_close(ro);
}

static void api_read_after(uv_work_t *w, int status)
{
    api_read_job_t *j = w->data;
    if (j->c && j->result && status == 0) {
        control_reply(j->c, 200, j->result, NULL);
        j->result = NULL;
    } else if (j->c) {
        log_error(j->what, "error=%s", log_q(j->err));
        control_error(j->c, 503, "storage_unavailable", j->what);
    }
    json_object_put(j->result);
    json_object_put(j->args);
    free(j);
}

static void api_read_detach(void *ctx, control_conn_t *c)
{
    (void)c;
    ((api_read_job_t *)ctx)->c = NULL;
}

void api_read(manager_t *m, control_conn_t *c, const api_call_t *call, api_read_fn fn, const char *what)
{
    api_read_job_t *j = calloc(1, sizeof *j);
    json_object *args = NULL;
    if (!j || json_object_deep_copy(call->args, &args, NULL) != 0) {
        free(j);
        return control_error(c, 500, "internal", "out of memory"), (void)0;
    }
    *j = (api_read_job_t){.c = c, .fn = fn, .args = args, .what = what};
    snprintf(j->path, sizeof j->path, "%s", m->conf->db_path);
    j->work.data = j;
    if (uv_queue_work(m->loop, &j->work, api_read_work, api_read_after) != 0) {
        json_object_put(args);
        free(j);
        return control_error(c, 503, "busy", "cannot schedule the read"), (void)0;
    }
    control_set_waiter(c, api_read_detach, j);
}
