#define _GNU_SOURCE
#include "route.h"

#include <stdio.h>
#include <string.h>

#include "valid.h"

const char *const route_statuses[] = {"queued",  "running", "succeeded",   "failed",
                                      "timeout", "aborted", "interrupted", NULL};

static const field_t session_create_body[] = {
    {"id", FIELD_ID, false},
    {"workspace", FIELD_WORKSPACE, false},
    {NULL, 0, false},
};
static const field_t message_body[] = {
    {"text", FIELD_TEXT, true},
    {"model", FIELD_MODEL, false},
    {"agent", FIELD_AGENT, false},
    {NULL, 0, false},
};
static const field_t execution_list_query[] = {
    {"session", FIELD_ID, false},
    {"status", FIELD_STATUS, false},
    {"mode", FIELD_MODE, false},
    {"since", FIELD_TIME, false},
    {"until", FIELD_TIME, false},
    {"before", FIELD_CURSOR, false},
    {"limit", FIELD_LIMIT, false},
    {NULL, 0, false},
};
static const field_t session_list_query[] = {
    {"after", FIELD_ID, false},
    {"limit", FIELD_LIMIT, false},
    {NULL, 0, false},
};
static const field_t stats_query[] = {
    {"since", FIELD_TIME, false},
    {"until", FIELD_TIME, false},
    {NULL, 0, false},
};

static const route_t routes[] = {
    {"GET", "/api/opencode/status", "status", NULL, NULL},
    {"GET", "/api/health", "health", NULL, NULL},
    {"POST", "/api/sessions", "session.create", session_create_body, NULL},
    {"GET", "/api/sessions", "session.list", NULL, session_list_query},
    {"GET", "/api/sessions/{id}", "session.get", NULL, NULL},
    {"DELETE", "/api/sessions/{id}", "session.delete", NULL, NULL},
    {"POST", "/api/sessions/{id}/messages", "message", message_body, NULL},
    {"POST", "/api/sessions/{id}/abort", "session.abort", NULL, NULL},
    {"GET", "/api/executions", "exec.list", NULL, execution_list_query},
    {"GET", "/api/executions/{id}", "exec.get", NULL, NULL},
    /* Operators (localhost only in the shipped nginx configs): everyone's data. */
    {"GET", "/api/stats", "stats", NULL, stats_query},
    {"GET", "/api/admin/executions", "admin.exec.list", NULL, execution_list_query},
    {"GET", "/metrics", "metrics", NULL, NULL},
};

bool route_is_status(const char *s)
{
    for (int i = 0; route_statuses[i]; i++)
        if (strcmp(s, route_statuses[i]) == 0)
            return true;
    return false;
}

/* Does path match pattern? Copies the {id} segment and flags one that is not
 * a valid id, so the caller answers 400 before anything reaches the manager. */
static bool route_path_matches(const char *pattern, const char *path, char *id, size_t idlen, bool *bad_id)
{
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (strncmp(p, "{id}", 4) == 0) {
            const char *e = strchr(s, '/');
            size_t n = e ? (size_t)(e - s) : strlen(s);
            if (n == 0)
                return false;
            size_t keep = n < idlen - 1 ? n : idlen - 1;
            memcpy(id, s, keep);
            id[keep] = '\0';
            if (keep < n || !valid_id(id))
                *bad_id = true;
            p += 4;
            s += n;
            continue;
        }
        if (*p != *s)
            return false;
        p++;
        s++;
    }
    /* One spelling only (no trailing slash): what nginx's locations match is what runs. */
    return !*p && !*s;
}

int route_match(const char *method, const char *path, const route_t **out, char *id, size_t idlen,
                char *allow, size_t allowlen)
{
    size_t n = sizeof routes / sizeof routes[0];
    bool path_seen = false;
    size_t ao = 0;
    if (allowlen)
        allow[0] = '\0';
    *out = NULL;
    for (size_t i = 0; i < n; i++) {
        char seg[VALID_ID_MAX + 2] = "";
        bool bad_id = false;
        if (!route_path_matches(routes[i].pattern, path, seg, sizeof seg, &bad_id))
            continue;
        if (bad_id)
            return 400;
        path_seen = true;
        if (strcmp(routes[i].method, method) == 0) {
            snprintf(id, idlen, "%s", seg);
            *out = &routes[i];
            return 0;
        }
        if (ao < allowlen) {
            int w = snprintf(allow + ao, allowlen - ao, "%s%s", ao ? ", " : "", routes[i].method);
            if (w > 0)
                ao += (size_t)w;
        }
    }
    return path_seen ? 405 : 404;
}
