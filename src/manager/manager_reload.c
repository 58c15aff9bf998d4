/* Reload (SIGHUP, ocpmctl reload), as nginx's: the settings are read again exactly as at start
 * (main's loader: the file, the environment, each pool and its agent checked); an invalid file
 * changes nothing. Otherwise every key that can change live is copied into the running settings
 * (conf_apply_live: each module reads them where it uses them), the few the manager holds itself
 * are applied here, the rest are named as needing a restart, and the responders are replaced by
 * a generation that reads the new settings (pool.h) while the old one finishes its requests. */
#define _GNU_SOURCE
#include "manager_internal.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "slowlog.h"
#include "snapshot.h"

typedef struct reload_report {
    const char *pool;      /* the pool whose keys are compared, NULL for the global ones */
    json_object *changed, *restart;
} reload_report_t;

static void manager_reload_key(void *ctx, const char *key, const char *was, const char *now, int live)
{
    reload_report_t *r = ctx;
    char name[128];
    snprintf(name, sizeof name, "%s%s%s", r->pool ? r->pool : "", r->pool ? "." : "", key);
    json_object_array_add(live ? r->changed : r->restart, json_object_new_string(name));
    if (live)
        log_info("setting changed", "key=%s pool=%s was=%s now=%s", key, r->pool ? r->pool : "-", log_q(was),
                 log_q(now));
    else
        log_warn("setting needs a restart to change", "key=%s pool=%s running=%s file=%s", key,
                 r->pool ? r->pool : "-", log_q(was), log_q(now));
}

/* The pools of next matched to the running ones by name; a pool added, removed or renamed needs a
 * restart (its sessions, servers and agent user are made at start). */
static void manager_reload_pools(manager_t *m, const manager_settings_t *next, reload_report_t *r)
{
    manager_settings_t *live = m->settings;
    for (int i = 0; i < live->npools; i++) {
        int j = 0;
        while (j < next->npools && strcmp(next->pools[j]->pool_name, live->pools[i]->pool_name) != 0)
            j++;
        if (j == next->npools)
            continue;
        r->pool = live->pools[i]->pool_name;
        /* Without sections the one pool is the global settings: said once, above. */
        conf_diff(live->pools[i], next->pools[j], 1, live->conf->nsections ? manager_reload_key : NULL, r);
        conf_apply_live(live->pools[i], next->pools[j]);
    }
    r->pool = NULL;
    int same = next->npools == live->npools;
    for (int i = 0; same && i < live->npools; i++)
        same = strcmp(next->pools[i]->pool_name, live->pools[i]->pool_name) == 0;
    if (!same) {
        json_object_array_add(r->restart, json_object_new_string("pools"));
        log_warn("pools added, removed or renamed; a restart is needed to change them", "running=%d file=%d",
                 live->npools, next->npools);
    }
}

/* What the manager holds itself rather than reads where it uses it. */
static void manager_reload_apply(manager_t *m)
{
    const conf_t *c = m->conf;
    log_level_t lvl = LOGL_INFO;
    if (log_level_parse(c->log_level, &lvl) == 0)
        log_set_level(lvl);
    prune_set_retention(m->prune, c->history_retention_ms);
    db_set_busy_timeout(m->db, c->db_busy_timeout_ms);
    slowlog_set_tick(m->slowlog, slowlog_tick_ms(tenant_slowlog_shortest(m->tenants, m->ntenants)));
    if (!m->webhook && c->webhook_url[0] && !(m->webhook = webhook_new(m->loop, m->http, m->db, c)))
        log_error("cannot start webhooks after the reload", "error=\"out of memory\"");
}

static int manager_reload_publish(void *ctx, char *err, size_t errlen)
{
    return manager_fcgi_publish(ctx, err, errlen);
}

/* New responders, on a new socket renamed over the old one's path once they run (fcgi_socket_mode
 * and _group apply to it). On failure the running ones stay, nginx still reaches them, and the
 * log and the answer say so. Returns 0 when replaced. */
static int manager_reload_responders(manager_t *m)
{
    char err[512];
    int fd = -1;
    if (pool_band_free(m->pool) < 0)
        snprintf(err, sizeof err, "three older generations of responders are still finishing their requests");
    else if ((fd = manager_fcgi_prepare(m->conf, err, sizeof err)) >= 0 &&
             pool_reload(m->pool, fd, manager_reload_publish, (void *)m->conf, err, sizeof err) == 0) {
        log_info("responders replaced; the previous ones finish their requests", "responders=%ld",
                 m->conf->responders);
        return 0;
    }
    manager_fcgi_discard(m->conf);
    log_warn("responders not replaced at the reload; the running ones stay", "reason=%s", log_q(err));
    return -1;
}

/* The agents run as they started (agent_user needs a restart): a new fcgi_socket_group must not
 * be one of theirs. */
static int manager_reload_check(manager_t *m, const manager_settings_t *next, char *err, size_t errlen)
{
    for (int i = 0; i < m->ntenants; i++)
        if (agent_check_fcgi_group(m->tenants[i].agent, next->conf, err, errlen) != 0)
            return -1;
    return 0;
}

int manager_reload(manager_t *m, json_object **info, char *err, size_t errlen)
{
    const manager_hooks_t *h = m->hooks;
    log_info("reloading configuration", "file=%s", log_q(m->conf->file[0] ? m->conf->file : "(none)"));
    manager_notify_reloading(m); /* systemd: RELOADING=1, then READY=1 whatever the outcome */
    manager_settings_t next = {0};
    if (h->load(h->ctx, &next, err, errlen) != 0 || manager_reload_check(m, &next, err, errlen) != 0) {
        h->unload(h->ctx, &next);
        log_error("configuration reload failed; nothing changed", "reason=%s", log_q(err));
        manager_event(m, "reload_failed", err);
        manager_notify_ready(m);
        return -1;
    }
    reload_report_t r = {.changed = json_object_new_array(), .restart = json_object_new_array()};
    conf_diff(m->settings->conf, next.conf, 0, manager_reload_key, &r);
    manager_reload_pools(m, &next, &r);
    conf_apply_live(m->settings->conf, next.conf);
    h->unload(h->ctx, &next);
    manager_reload_apply(m);
    int replaced = manager_reload_responders(m) == 0;
    m->reloads++;
    snapshot_stale(); /* the status shows settings */
    size_t nc = json_object_array_length(r.changed), nr = json_object_array_length(r.restart);
    char detail[96];
    snprintf(detail, sizeof detail, "changed=%zu restart_needed=%zu", nc, nr);
    manager_event(m, "reload", detail);
    log_info("configuration reloaded", "changed=%zu restartNeeded=%zu respondersReplaced=%s reloads=%lu", nc, nr,
             replaced ? "yes" : "no", m->reloads);
    manager_notify_ready(m);
    if (info) {
        *info = json_object_new_object();
        json_object_object_add(*info, "changed", r.changed);
        json_object_object_add(*info, "restartNeeded", r.restart);
        json_object_object_add(*info, "respondersReplaced", json_object_new_boolean(replaced));
    } else {
        json_object_put(r.changed);
        json_object_put(r.restart);
    }
    return 0;
}
