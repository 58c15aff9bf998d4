#define _GNU_SOURCE
#include "api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "exec_status.h"
#include "log.h"
#include "valid.h"

static const api_field_t api_session_create_body[] = {
    {"id", API_FIELD_ID, false},
    {"workspace", API_FIELD_WORKSPACE, false},
    {NULL, 0, false},
};
static const api_field_t api_session_put_body[] = {
    {"workspace", API_FIELD_WORKSPACE, false},
    {NULL, 0, false},
};
static const api_field_t api_message_body[] = {
    {"text", API_FIELD_TEXT, true},
    {"model", API_FIELD_MODEL, false},
    {"agent", API_FIELD_AGENT, false},
    {NULL, 0, false},
};
static const api_field_t api_execution_query[] = {
    {"session", API_FIELD_ID, false},  {"status", API_FIELD_STATUS, false}, {"mode", API_FIELD_MODE, false},
    {"since", API_FIELD_TIME, false},  {"until", API_FIELD_TIME, false},    {"before", API_FIELD_CURSOR, false},
    {"limit", API_FIELD_LIMIT, false}, {NULL, 0, false},
};
static const api_field_t api_session_query[] = {
    {"after", API_FIELD_ID, false},
    {"limit", API_FIELD_LIMIT, false},
    {NULL, 0, false},
};
#define API_OWNER_MAX 256 /* a user name's bound (request.c) */
static const api_field_t api_admin_session_query[] = {
    {"after", API_FIELD_SESSION_KEY, false},
    {"limit", API_FIELD_LIMIT, false},
    {NULL, 0, false},
};
static const api_field_t api_stats_query[] = {
    {"since", API_FIELD_TIME, false},
    {"until", API_FIELD_TIME, false},
    {"histograms", API_FIELD_TRUE, false},
    {NULL, 0, false},
};
static const api_field_t api_prompt_query[] = {
    {"status", API_FIELD_PROMPT_STATUS, false},
    {NULL, 0, false},
};
static const api_field_t api_permission_reply_body[] = {
    {"reply", API_FIELD_REPLY, true},
    {"message", API_FIELD_NOTE, false},
    {NULL, 0, false},
};
static const api_field_t api_question_reply_body[] = {
    {"answers", API_FIELD_ANSWERS, false},
    {"reject", API_FIELD_TRUE, false},
    {NULL, 0, false},
};
static const api_field_t api_events_query[] = {
    {"after", API_FIELD_SEQ, false},
    {NULL, 0, false},
};
static const api_field_t api_slowlog_query[] = {
    {"since", API_FIELD_TIME, false},
    {"before", API_FIELD_CURSOR, false},
    {"limit", API_FIELD_LIMIT, false},
    {NULL, 0, false},
};
static const api_field_t api_server_restart_args[] = {
    {"pool", API_FIELD_ID, false},
    {"server", API_FIELD_SERVER, false},
    {NULL, 0, false},
};
static const api_field_t api_status_query[] = {
    {"full", API_FIELD_TRUE, false},
    {"limit", API_FIELD_LIMIT, false},
    {NULL, 0, false},
};
static const api_field_t api_prune_args[] = {
    {"before", API_FIELD_TIME, true},
    {NULL, 0, false},
};

const api_route_t api_routes[] = {
    {"GET", "/api/opencode/status", "status", NULL, api_status_query, API_SNAPSHOT(SNAPSHOT_STATUS), api_status,
     "the manager's status document; `?full` adds the sessions and their state (at most `limit`, default 100)"},
    {"GET", "/api/health", "health", NULL, NULL, API_SNAPSHOT(SNAPSHOT_HEALTH), api_health,
     "200 while accepting, 503 while stopping"},
    {"GET", "/api/ready", "ready", NULL, NULL, API_SNAPSHOT(SNAPSHOT_READY), api_ready,
     "200 when new work would be served now, else 503 with the reasons"},
    {"POST", "/api/sessions", "session.create", api_session_create_body, NULL, 0, api_session_create,
     "create a session bound to a workspace (idempotent)"},
    {"PUT", "/api/sessions/{id}", "session.put", api_session_put_body, NULL, 0, api_session_create,
     "create the session of this id (as POST with an id; what a cluster's front routes by the id)"},
    {"GET", "/api/sessions", "session.list", NULL, api_session_query, 0, api_session_list,
     "your sessions, a page at a time"},
    {"GET", "/api/sessions/{id}", "session.get", NULL, NULL, 0, api_session_get, "one session"},
    {"DELETE", "/api/sessions/{id}", "session.delete", NULL, NULL, 0, api_session_delete,
     "delete a session; its running and waiting messages are aborted"},
    {"POST", "/api/sessions/{id}/messages", "message", api_message_body, NULL, API_WAITS, api_message,
     "send a message: wait for the answer, stream it, or not wait"},
    {"POST", "/api/sessions/{id}/abort", "session.abort", NULL, NULL, 0, api_session_abort,
     "abort the running message and cancel the waiting ones"},
    {"GET", "/api/sessions/{id}/permissions", "permission.list", NULL, api_prompt_query, 0, api_permission_list,
     "the agent's permission requests in this session, oldest first"},
    {"POST", "/api/sessions/{id}/permissions/{rid}", "permission.reply", api_permission_reply_body, NULL, 0,
     api_permission_reply, "answer a pending permission request"},
    {"GET", "/api/sessions/{id}/questions", "question.list", NULL, api_prompt_query, 0, api_question_list,
     "the agent's questions in this session, oldest first"},
    {"POST", "/api/sessions/{id}/questions/{rid}", "question.reply", api_question_reply_body, NULL, 0,
     api_question_reply, "answer a pending question (answers, or reject)"},
    {"GET", "/api/sessions/{id}/diff", "session.diff", NULL, NULL, 0, api_session_diff,
     "the files the agent changed in the session's workspace (server mode)"},
    {"GET", "/api/executions", "exec.list", NULL, api_execution_query, 0, api_exec_list,
     "your executions, newest first, a page at a time"},
    {"GET", "/api/executions/{n}", "exec.get", NULL, NULL, 0, api_exec_get,
     "one of your executions, with its tool calls, changes and prompts"},
    {"GET", "/api/executions/{n}/events", "exec.events", NULL, api_events_query, API_FOLLOWS, api_exec_events,
     "its events as SSE from after (or Last-Event-ID), then live ones until done"},
    {"GET", "/api/usage", "usage", NULL, NULL, 0, api_usage, "your usage today and your bounds (budgets)"},
    {"GET", "/api/stats", "stats", NULL, api_stats_query, API_OPERATOR, api_stats,
     "counts, durations, resources, tokens: everyone's; `?histograms` adds the percentiles' histograms, which add "
     "up across nodes"},
    {"GET", "/api/admin/sessions", "admin.session.list", NULL, api_admin_session_query, API_OPERATOR,
     api_admin_session_list, "everyone's sessions with their counts (as ocpmctl sessions), a page at a time"},
    {"GET", "/api/admin/executions", "admin.exec.list", NULL, api_execution_query, API_OPERATOR, api_admin_exec_list,
     "everyone's executions, every field"},
    {"GET", "/api/admin/slowlog", "admin.slowlog", NULL, api_slowlog_query, API_OPERATOR, api_admin_slowlog,
     "turns that passed slowlog_timeout (slow_turns), newest first, a page at a time"},
    {"GET", "/metrics", "metrics", NULL, NULL, API_OPERATOR | API_OPENMETRICS | API_SNAPSHOT(SNAPSHOT_METRICS),
     api_metrics, "Prometheus metrics (OpenMetrics when Accept asks for it)"},
    {"GET", "/api/admin/ready", "admin.ready", NULL, NULL, API_OPERATOR, api_admin_ready,
     "/api/ready with each reason's details (the pool, why)"},
    {NULL, NULL, "prune", api_prune_args, NULL, API_OPERATOR, api_prune,
     "delete finished history older than a time (ocpmctl prune)"},
    {NULL, NULL, "reload", NULL, NULL, API_OPERATOR, api_reload,
     "read the settings again and replace the responders, as SIGHUP does (ocpmctl reload)"},
    {NULL, NULL, "drain", NULL, NULL, API_OPERATOR, api_drain,
     "refuse new sessions and messages (503 draining) while what was taken finishes (ocpmctl drain)"},
    {NULL, NULL, "undrain", NULL, NULL, API_OPERATOR, api_undrain,
     "take new sessions and messages again (ocpmctl undrain)"},
    {NULL, NULL, "server.restart", api_server_restart_args, NULL, API_OPERATOR, api_server_restart,
     "restart opencode servers: the FATAL ones, or the one named (ocpmctl server restart)"},
};
const size_t api_nroutes = sizeof api_routes / sizeof api_routes[0];

/* The path segment kinds a pattern may hold, and what a bad one is told. */
static const struct {
    const char *placeholder;
    const char *must;
} api_segments[] = {
    {"{id}", "ids must match [A-Za-z0-9_-]{1,64}"},
    {"{n}", "execution ids are positive 64-bit integers"},
    {"{rid}", "prompt ids must match [A-Za-z0-9_-]{1,64}"},
};

static bool api_segment_ok(size_t kind, const char *seg)
{
    if (kind != 1)
        return valid_id(seg);
    /* Decimal digits only (leading zeros allowed: 007 is 7), above 0, within 64 bits. */
    char *end;
    errno = 0;
    long long n = strtoll(seg, &end, 10);
    return seg[0] >= '0' && seg[0] <= '9' && !errno && !*end && n > 0;
}

/* Does path match pattern? Copies the placeholders' segments (the first into id, {rid} into sub)
 * and flags one that is not valid, so the caller answers 400 before anything reaches the manager. */
static bool api_path_matches(const char *pattern, const char *path, char *id, char *sub, const char **bad)
{
    const size_t idlen = VALID_ID_MAX + 2;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        size_t k = 0;
        while (k < sizeof api_segments / sizeof api_segments[0] &&
               strncmp(p, api_segments[k].placeholder, strlen(api_segments[k].placeholder)) != 0)
            k++;
        if (k == sizeof api_segments / sizeof api_segments[0]) {
            if (*p++ != *s++)
                return false;
            continue;
        }
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0)
            return false;
        char *into = k == 2 ? sub : id;
        size_t keep = n < idlen - 1 ? n : idlen - 1;
        memcpy(into, s, keep);
        into[keep] = '\0';
        if (keep < n || !api_segment_ok(k, into))
            *bad = api_segments[k].must;
        p += strlen(api_segments[k].placeholder);
        s += n;
    }
    /* One spelling only (no trailing slash): what nginx's locations match is what runs. */
    return !*p && !*s;
}

int api_match(const char *method, const char *path, const api_route_t **out, char *id, char *sub, const char **why,
              char *allow, size_t allowlen)
{
    bool path_seen = false;
    size_t ao = 0;
    if (allowlen)
        allow[0] = '\0';
    *out = NULL;
    for (size_t i = 0; i < api_nroutes; i++) {
        char seg[VALID_ID_MAX + 2] = "", seg2[VALID_ID_MAX + 2] = "";
        const char *bad = NULL;
        if (!api_routes[i].method || !api_path_matches(api_routes[i].pattern, path, seg, seg2, &bad))
            continue;
        if (bad) {
            *why = bad;
            return 400;
        }
        path_seen = true;
        if (strcmp(api_routes[i].method, method) == 0) {
            snprintf(id, VALID_ID_MAX + 1, "%s", seg);
            snprintf(sub, VALID_ID_MAX + 1, "%s", seg2);
            *out = &api_routes[i];
            return 0;
        }
        if (ao < allowlen) {
            int w = snprintf(allow + ao, allowlen - ao, "%s%s", ao ? ", " : "", api_routes[i].method);
            if (w > 0)
                ao += (size_t)w;
        }
    }
    return path_seen ? 405 : 404;
}

/* A question's answers: one array of chosen labels per question. */
static const char *api_check_answers(json_object *v)
{
    if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) == 0 || json_object_array_length(v) > 64)
        return "must be an array of 1 to 64 arrays of labels";
    for (size_t i = 0; i < json_object_array_length(v); i++) {
        json_object *q = json_object_array_get_idx(v, i);
        if (!json_object_is_type(q, json_type_array) || json_object_array_length(q) > 64)
            return "must hold one array of at most 64 labels per question";
        for (size_t k = 0; k < json_object_array_length(q); k++) {
            json_object *l = json_object_array_get_idx(q, k);
            const char *s = json_object_is_type(l, json_type_string) ? json_object_get_string(l) : NULL;
            size_t n = s ? (size_t)json_object_get_string_len(l) : 0;
            if (!s || n == 0 || n > 1024 || strlen(s) != n || !valid_utf8(s, n))
                return "labels must be UTF-8 strings of 1 to 1024 bytes";
        }
    }
    return NULL;
}

/* Numbers: limits and cursors are integers, times are numbers; none negative. */
static const char *api_check_number(const api_field_t *f, json_object *v)
{
    if (f->kind == API_FIELD_TIME) {
        if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
            return "must be unix seconds";
        return json_object_get_double(v) >= 0 ? NULL : "must not be negative";
    }
    if (!json_object_is_type(v, json_type_int))
        return "must be an integer";
    int64_t n = json_object_get_int64(v);
    if (f->kind == API_FIELD_CURSOR)
        return n >= 1 ? NULL : "must be a positive execution id";
    if (f->kind == API_FIELD_SEQ)
        return n >= 0 ? NULL : "must be an event id (0 or more)";
    _Static_assert(CONF_SERVERS_MAX == 16, "the message below says 0 to 15");
    if (f->kind == API_FIELD_SERVER)
        return n >= 0 && n < CONF_SERVERS_MAX ? NULL : "must be a server's number (0 to 15)";
    return n >= 1 && n <= 1000 ? NULL : "must be between 1 and 1000";
}

const char *api_check_value(const api_field_t *f, json_object *v, long max_message_bytes)
{
    if (f->kind == API_FIELD_LIMIT || f->kind == API_FIELD_CURSOR || f->kind == API_FIELD_TIME ||
        f->kind == API_FIELD_SEQ || f->kind == API_FIELD_SERVER)
        return api_check_number(f, v);
    if (f->kind == API_FIELD_ANSWERS)
        return api_check_answers(v);
    if (f->kind == API_FIELD_TRUE)
        return json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v) ? NULL : "must be true";
    if (!json_object_is_type(v, json_type_string))
        return "must be a string";
    const char *s = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    if (strlen(s) != len || !valid_utf8(s, len))
        return "must be valid UTF-8 without NUL bytes";
    const char *why = NULL;
    switch (f->kind) {
    case API_FIELD_ID:
        return valid_id(s) ? NULL : "must match [A-Za-z0-9_-]{1,64}";
    case API_FIELD_WORKSPACE:
        return valid_workspace(s, &why) ? NULL : why;
    case API_FIELD_TEXT:
        if (len == 0)
            return "must not be empty";
        return (long)len <= max_message_bytes ? NULL : "is longer than max_message_bytes";
    case API_FIELD_MODEL:
        return valid_model(s) ? NULL : "must look like provider/model";
    case API_FIELD_AGENT:
        return valid_id(s) && s[0] != '-' ? NULL : "must match [A-Za-z0-9_][A-Za-z0-9_-]{0,63}";
    case API_FIELD_STATUS:
        return exec_status_parse(s) >= 0 ? NULL : "is not an execution status";
    case API_FIELD_MODE:
        return strcmp(s, "server") == 0 || strcmp(s, "per-session") == 0 ? NULL : "must be server or per-session";
    case API_FIELD_REPLY:
        return strcmp(s, "once") == 0 || strcmp(s, "always") == 0 || strcmp(s, "reject") == 0
                   ? NULL
                   : "must be once, always or reject";
    case API_FIELD_NOTE:
        return len <= 4096 ? NULL : "is longer than 4096 bytes";
    case API_FIELD_SESSION_KEY: {
        const char *slash = strrchr(s, '/');
        if (!slash || !valid_id(slash + 1))
            return "must be OWNER/ID (a next_cursor)";
        char owner[API_OWNER_MAX + 1];
        size_t ol = (size_t)(slash - s);
        if (ol > API_OWNER_MAX)
            return "names an owner longer than 256 bytes";
        memcpy(owner, s, ol);
        owner[ol] = '\0';
        return !ol || valid_token(owner, API_OWNER_MAX) ? NULL : "names an owner that is not printable text";
    }
    case API_FIELD_PROMPT_STATUS: {
        static const char *const st[] = {"pending", "allowed", "answered", "rejected", "timeout", "lost"};
        for (size_t i = 0; i < sizeof st / sizeof st[0]; i++)
            if (strcmp(s, st[i]) == 0)
                return NULL;
        return "must be pending, allowed, answered, rejected, timeout or lost";
    }
    default:
        return NULL;
    }
}

const char *api_check_fields(const api_field_t *fields, json_object *obj, long max_message_bytes, const char **name,
                             const char **code)
{
    json_object_object_foreach(obj, key, val)
    {
        const api_field_t *f = NULL;
        for (const api_field_t *p = fields; p && p->name; p++)
            if (strcmp(p->name, key) == 0)
                f = p;
        *name = key;
        if (!f)
            return *code = "unknown_field", "is not a field of this endpoint";
        const char *why = api_check_value(f, val, max_message_bytes);
        if (why)
            return *code = "invalid_field", why;
    }
    for (const api_field_t *p = fields; p && p->name; p++)
        if (p->required && !json_object_object_get_ex(obj, p->name, NULL))
            return *name = p->name, *code = "missing_field", "is required";
    return NULL;
}

static const api_route_t *api_route_by_op(const char *op)
{
    for (size_t i = 0; i < api_nroutes; i++)
        if (strcmp(api_routes[i].op, op) == 0)
            return &api_routes[i];
    return NULL;
}

/* The frame against its row: user, id segment, arguments. NULL when fine, else why (c answered). */
static int api_check_frame(const api_route_t *r, json_object *f, long max_message_bytes, api_call_t *call,
                           control_conn_t *c)
{
    json_object *v, *args;
    if (json_object_object_get_ex(f, "user", &v) && json_object_is_type(v, json_type_string))
        call->user = json_object_get_string(v);
    else if (!(r->flags & API_OPERATOR))
        return control_error(c, 400, "bad_frame", "request frame lacks its user"), -1;
    if (!json_object_object_get_ex(f, "args", &args) || !json_object_is_type(args, json_type_object))
        return control_error(c, 400, "bad_frame", "request frame lacks its args"), -1;
    call->args = args;
    const char *seg = r->pattern ? strchr(r->pattern, '{') : NULL;
    if (seg) {
        size_t k = strncmp(seg, "{n}", 3) == 0;
        if (!json_object_object_get_ex(f, "id", &v) || !json_object_is_type(v, json_type_string) ||
            !api_segment_ok(k, json_object_get_string(v)))
            return control_error(c, 400, "invalid_id", api_segments[k].must), -1;
        call->id = json_object_get_string(v);
    }
    if (r->pattern && strstr(r->pattern, "{rid}")) {
        if (!json_object_object_get_ex(f, "sub", &v) || !json_object_is_type(v, json_type_string) ||
            !api_segment_ok(2, json_object_get_string(v)))
            return control_error(c, 400, "invalid_id", api_segments[2].must), -1;
        call->sub = json_object_get_string(v);
    }
    const char *name = NULL, *code = NULL;
    const char *why = api_check_fields(r->body ? r->body : r->query, args, max_message_bytes, &name, &code);
    if (why) {
        char msg[160];
        snprintf(msg, sizeof msg, "field \"%.64s\" %s", name, why);
        return control_error(c, 400, code, msg), -1;
    }
    if (r->flags & API_WAITS) {
        call->stream = json_object_object_get_ex(f, "stream", &v) && json_object_get_boolean(v);
        call->async = json_object_object_get_ex(f, "async", &v) && json_object_get_boolean(v);
    }
    if (r->flags & API_OPENMETRICS)
        call->openmetrics = json_object_object_get_ex(f, "openmetrics", &v) && json_object_get_boolean(v);
    return 0;
}

void api_dispatch(void *ctx, control_conn_t *c, json_object *frame)
{
    manager_t *m = ctx;
    json_object *op;
    const api_route_t *r = NULL;
    if (json_object_object_get_ex(frame, "op", &op) && json_object_is_type(op, json_type_string))
        r = api_route_by_op(json_object_get_string(op));
    if (!r) {
        log_warn("malformed request frame", "reason=%s", "\"unknown or missing op\"");
        control_error(c, 404, "unknown_op", "unknown operation");
        return;
    }
    api_call_t call = {0};
    if (api_check_frame(r, frame, m->conf->max_message_bytes, &call, c) != 0)
        return;
    r->handler(m, c, &call);
}

/* The fields of a row, for the docs: `name` (kind), required ones marked. */
static void api_doc_fields(FILE *f, const api_field_t *fields)
{
    static const char *const kinds[] = {
        [API_FIELD_ID] = "id",         [API_FIELD_WORKSPACE] = "workspace", [API_FIELD_TEXT] = "text",
        [API_FIELD_MODEL] = "model",   [API_FIELD_AGENT] = "agent",         [API_FIELD_STATUS] = "status",
        [API_FIELD_LIMIT] = "1..1000", [API_FIELD_MODE] = "mode",           [API_FIELD_TIME] = "unix seconds",
        [API_FIELD_CURSOR] = "execution id", [API_FIELD_SEQ] = "event id", [API_FIELD_REPLY] = "once/always/reject",
        [API_FIELD_NOTE] = "text", [API_FIELD_ANSWERS] = "[[label]]", [API_FIELD_TRUE] = "true",
        [API_FIELD_PROMPT_STATUS] = "prompt status", [API_FIELD_SERVER] = "server number",
        [API_FIELD_SESSION_KEY] = "owner/id"};
    if (!fields || !fields->name)
        return (void)fputs("-", f);
    for (const api_field_t *p = fields; p->name; p++)
        fprintf(f, "%s`%s`%s (%s)", p == fields ? "" : ", ", p->name, p->required ? "*" : "", kinds[p->kind]);
}

int api_doc_write(FILE *f, const char *format)
{
    if (strcmp(format, "md") != 0)
        return -1;
    fputs("| method | path | body | query | who | what |\n| --- | --- | --- | --- | --- | --- |\n", f);
    for (size_t i = 0; i < api_nroutes; i++) {
        const api_route_t *r = &api_routes[i];
        if (!r->method)
            continue;
        fprintf(f, "| %s | `%s` | ", r->method, r->pattern);
        api_doc_fields(f, r->body);
        fputs(" | ", f);
        api_doc_fields(f, r->query);
        fprintf(f, " | %s | %s%s |\n", r->flags & API_OPERATOR ? "operator" : "user", r->summary,
                r->flags & API_WAITS     ? " (`Accept: text/event-stream` streams; `Prefer: respond-async` returns 202)"
                : r->flags & API_FOLLOWS ? " (always SSE)"
                                         : "");
    }
    return 0;
}
