/* manager_notify.c: what the manager tells systemd (notify.h), all from the loop.
 *
 * READY=1 once it serves (manager_run calls it after init, when every pool's servers are ready or
 * its fallback decided: manager_choose_mode waits for them) and again after a reload; STATUS= when
 * the line a person reads in `systemctl status` changes, looked at once a second by a timer (so at
 * most one a second, however busy the manager is); RELOADING=1 with MONOTONIC_USEC= (what systemd's
 * Type=notify-reload asks for); STOPPING=1 at the first stop signal; WATCHDOG=1 at half of
 * $WATCHDOG_USEC from a timer of the loop, so that a loop stuck anywhere stops the pings and systemd
 * ends the process. A failed send is logged once at warn (then at debug) and is never fatal. */
#define _GNU_SOURCE
#include "manager_internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "notify.h"

/* How often the status line is looked at (and so at most how often it is sent). */
#define MANAGER_NOTIFY_STATUS_MS 1000

static void manager_notify_send(manager_notify_t *s, const char *msg, int quiet)
{
    int rc = notify_send(s->n, msg);
    if (rc == 0) {
        if (!quiet)
            log_debug("systemd notified", "message=%s", log_q(msg));
        return;
    }
    s->failures++;
    if (s->failures == 1)
        log_warn("cannot notify systemd; later failures are logged at debug", "socket=%s message=%s error=%s",
                 log_q(notify_socket(s->n)), log_q(msg), log_q(strerror(-rc)));
    else
        log_debug("cannot notify systemd", "message=%s error=%s failures=%lu", log_q(msg), log_q(strerror(-rc)),
                  s->failures);
}

/* What `systemctl status` shows: the mode, how many servers take messages when not all do, the
 * sessions, the running and the queued messages. */
static void manager_notify_line(const manager_t *m, char *buf, size_t len)
{
    int servers = tenant_servers(m->tenants, m->ntenants), ready = 0;
    for (int p = 0; p < m->ntenants; p++)
        for (int i = 0; i < m->tenants[p].nservers; i++)
            ready += oc_server_state(m->tenants[p].servers[i]) == OC_SERVER_READY;
    char partial[64] = "";
    if (servers && ready < servers)
        snprintf(partial, sizeof partial, " (%d of %d servers ready)", ready, servers);
    size_t sessions = m->sessions ? session_count(m->sessions) : 0;
    snprintf(buf, len, "STATUS=%s%s mode%s, %zu session%s, %ld running, %ld queued", m->stopping ? "stopping, " : "",
             servers ? "server" : "per-session", partial, sessions, sessions == 1 ? "" : "s",
             tenant_running(m->tenants, m->ntenants), tenant_queued(m->tenants, m->ntenants));
}

static void manager_notify_status(manager_notify_t *s)
{
    char line[sizeof s->status_sent];
    manager_notify_line(s->m, line, sizeof line);
    if (strcmp(line, s->status_sent) == 0)
        return;
    snprintf(s->status_sent, sizeof s->status_sent, "%s", line);
    manager_notify_send(s, line, 0);
}

static void manager_notify_status_tick(uv_timer_t *t) { manager_notify_status(t->data); }

static void manager_notify_watchdog_tick(uv_timer_t *t) { manager_notify_send(t->data, "WATCHDOG=1", 1); }

/* A timer of the loop that does not keep it alive (shutdown ends when the real work does). */
static void manager_notify_timer(manager_notify_t *s, uv_timer_t *t)
{
    uv_timer_init(s->m->loop, t);
    t->data = s;
    uv_unref((uv_handle_t *)t);
}

void manager_notify_start(manager_notify_t *s, manager_t *m)
{
    char err[256] = "";
    *s = (manager_notify_t){.m = m};
    m->notify = s;
    if (notify_open_env(&s->n, err, sizeof err) != 0) {
        log_warn("cannot use NOTIFY_SOCKET; systemd will not hear from ocpmd", "error=%s", log_q(err));
        return;
    }
    if (!s->n)
        return;
    log_info("notifying systemd", "socket=%s watchdogUsec=%llu", log_q(notify_socket(s->n)),
             (unsigned long long)notify_watchdog_usec(s->n));
    manager_notify_timer(s, &s->watchdog);
    manager_notify_timer(s, &s->status);
}

/* The first READY starts the watchdog's pings (systemd watches from then on; before, start-up is
 * bounded by its TimeoutStartSec, and server_start_timeout here). */
static void manager_notify_first_ready(manager_notify_t *s)
{
    uint64_t every = notify_watchdog_usec(s->n) / 2000; /* half the interval, in ms: a late turn still makes it */
    if (notify_watchdog_usec(s->n))
        uv_timer_start(&s->watchdog, manager_notify_watchdog_tick, every ? every : 1, every ? every : 1);
}

void manager_notify_ready(manager_t *m)
{
    manager_notify_t *s = m->notify;
    if (!s || !s->n || m->stopping) /* once STOPPING is said, nothing takes it back */
        return;
    manager_notify_send(s, "READY=1", 0);
    if (!s->ready_once++)
        manager_notify_first_ready(s);
    s->status_sent[0] = '\0'; /* a reload may have said otherwise: say it again */
    manager_notify_status(s);
    /* The next look a full interval after this line: at most one a second, this one included. */
    uv_timer_start(&s->status, manager_notify_status_tick, MANAGER_NOTIFY_STATUS_MS, MANAGER_NOTIFY_STATUS_MS);
}

void manager_notify_reloading(manager_t *m)
{
    manager_notify_t *s = m->notify;
    if (!s || !s->n || m->stopping)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[128];
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
    manager_notify_send(s, msg, 0);
}

void manager_notify_stopping(manager_t *m)
{
    manager_notify_t *s = m->notify;
    if (!s || !s->n)
        return;
    manager_notify_send(s, "STOPPING=1", 0);
    manager_notify_status(s);
    uv_timer_again(&s->status); /* the next look a full interval after this line */
}

void manager_notify_failed(manager_t *m, const char *why)
{
    manager_notify_t *s = m->notify;
    if (!s || !s->n)
        return;
    char msg[sizeof s->status_sent];
    snprintf(msg, sizeof msg, "STATUS=initialization failed: %s", why);
    for (char *c = msg; (c = strchr(c, '\n')); ) /* one line: a newline would start another field */
        *c = ' ';
    manager_notify_send(s, msg, 0);
}

void manager_notify_free(manager_notify_t *s)
{
    notify_free(s->n);
    s->n = NULL;
    if (s->m)
        s->m->notify = NULL;
}
