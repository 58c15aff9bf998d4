/* The operator's restart of opencode servers (ocpmctl server restart): clears FATAL. Not an HTTP
 * route: only the control socket reaches it (api.c's row has no method). */
#define _GNU_SOURCE
#include "api_internal.h"

#include <stdio.h>
#include <string.h>

/* Restart server i of pool t (its answer's row goes to done or skipped). named: the operator
 * named this server, so any state is restarted (graceful when ready); else only a FATAL one. */
static void api_restart_one(tenant_t *t, int i, int named, json_object *done, json_object *skipped)
{
    oc_server_t *srv = t->servers[i];
    const char *was = oc_server_state_name(oc_server_state(srv));
    json_object *row = json_object_new_object();
    json_object_object_add(row, "pool", json_object_new_string(t->conf->pool_name));
    json_object_object_add(row, "server", json_object_new_int(i));
    json_object_object_add(row, "was", json_object_new_string(was));
    char why[200] = "";
    const char *action = NULL;
    if (!named && oc_server_state(srv) != OC_SERVER_FATAL)
        snprintf(why, sizeof why, "not fatal (name the server to restart it anyway)");
    else
        action = oc_server_restart(srv, why, sizeof why);
    json_object_object_add(row, action ? "action" : "why", json_object_new_string(action ? action : why));
    json_object_array_add(action ? done : skipped, row);
}

/* args: pool (every pool when absent), server (every FATAL server of the pool when absent). */
void api_server_restart(void *ctx, control_conn_t *c, const api_call_t *call)
{
    manager_t *m = ctx;
    if (m->stopping) /* a server started now would only be stopped again */
        return control_error(c, 503, "shutting_down", "the manager is stopping"), (void)0;
    const char *pool = api_arg(call, "pool");
    int server = (int)api_num(call, "server", -1);
    tenant_t *only = NULL;
    for (int p = 0; pool && p < m->ntenants; p++)
        if (strcmp(m->tenants[p].conf->pool_name, pool) == 0)
            only = &m->tenants[p];
    if (pool && !only)
        return control_error(c, 404, "no_such_pool", "no pool of that name is configured"), (void)0;
    if (server >= 0 && !only && m->ntenants > 1)
        return control_error(c, 400, "missing_pool", "name the pool (--pool NAME) of the server to restart"), (void)0;
    if (!only && server >= 0)
        only = &m->tenants[0];
    if (only && only->nservers == 0)
        return control_error(c, 409, "no_servers", "this pool runs a process per message: it has no servers"), (void)0;
    if (only && server >= only->nservers) {
        char msg[96];
        snprintf(msg, sizeof msg, "the pool has %d servers, numbered from 0", only->nservers);
        return control_error(c, 404, "no_such_server", msg), (void)0;
    }
    json_object *done = json_object_new_array(), *skipped = json_object_new_array();
    for (int p = 0; p < m->ntenants; p++) {
        tenant_t *t = &m->tenants[p];
        if (only && t != only)
            continue;
        for (int i = 0; i < t->nservers; i++)
            if (server < 0 || i == server)
                api_restart_one(t, i, server >= 0, done, skipped);
    }
    if (server >= 0 && json_object_array_length(done) == 0) {
        json_object *why = json_object_object_get(json_object_array_get_idx(skipped, 0), "why");
        control_error(c, 409, "server_busy", json_object_get_string(why));
        json_object_put(done);
        json_object_put(skipped);
        return;
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "restarted", done);
    json_object_object_add(o, "skipped", skipped);
    control_reply(c, 200, o, NULL);
}
