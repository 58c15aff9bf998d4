/* One workspace made a git repository before its first run, once, however many sessions share it:
 * the first execution that finds it without one prepares it (project.h); those of the same
 * workspace that begin meanwhile wait for that preparation and start when it ends. */
#define _GNU_SOURCE
#include "scheduler_internal.h"

#include <string.h>

#include "log.h"

/* The live execution of s that prepares workspace ws now, if any. */
static execution_t *execution_preparer(scheduler_t *s, const char *ws)
{
    for (execution_t *p = s->live; p; p = p->live_next) {
        if (!p->project)
            continue;
        session_t *ps = session_find(s->cfg.sessions, p->owner, p->session_id);
        if (ps && strcmp(session_workspace(ps), ws) == 0)
            return p;
    }
    return NULL;
}

/* One execution that waits for p's preparation, or NULL. */
static execution_t *execution_waiter(scheduler_t *s, const execution_t *p)
{
    for (execution_t *w = s->live; w; w = w->live_next)
        if (w->waits_project == p)
            return w;
    return NULL;
}

void execution_release_waiters(execution_t *e, int ok, const char *why)
{
    execution_t *w;
    if (e->project_waiters == 0)
        return;
    e->project_waiters = 0;
    /* Each launch or failure may finish (and free) w, and change the list: look again each time. */
    while ((w = execution_waiter(e->sch, e))) {
        w->waits_project = NULL;
        session_t *sess = session_find(w->sch->cfg.sessions, w->owner, w->session_id);
        if (ok > 0)
            execution_launch(w);
        else if (ok < 0 && sess) /* e was stopped: the first waiter prepares, the rest wait for it */
            execution_prepare(w, sess);
        else
            execution_fail_start(w, "cannot prepare a workspace", why ? why : "its session is gone",
                                 EXECUTION_ERR_PROJECT);
    }
}

static void execution_project_done(void *ctx, int ok, const char *error)
{
    execution_t *e = ctx;
    scheduler_t *s = e->sch;
    e->project = NULL;
    execution_release_waiters(e, ok, error);
    if (ok)
        execution_launch(e);
    else
        execution_fail_start(e, "cannot prepare a workspace", error, EXECUTION_ERR_PROJECT);
    scheduler_kick(s);
}

void execution_prepare(execution_t *e, session_t *sess)
{
    scheduler_t *s = e->sch;
    execution_t *p = execution_preparer(s, session_workspace(sess));
    if (p) {
        e->waits_project = p;
        p->project_waiters++;
        log_debug("waiting for the workspace's preparation by another execution",
                  "executionId=%lld sessionId=%s preparer=%lld", (long long)e->rec.id, e->session_id,
                  (long long)p->rec.id);
        return;
    }
    char err[256];
    e->project = project_prepare(s->cfg.loop, s->cfg.agent, s->cfg.conf->git_bin, e->owner, e->workspace_fd,
                                 session_workspace(sess), EXECUTION_PROJECT_TIMEOUT_MS, execution_project_done, e, err,
                                 sizeof err);
    if (!e->project)
        execution_fail_start(e, "cannot prepare a workspace", err, EXECUTION_ERR_PROJECT);
}
