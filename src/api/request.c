#define _GNU_SOURCE
#include "request.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "metrics.h"
#include "valid.h"

/* JSON bodies deeper than this are refused: no request needs more than 2. */
#define REQUEST_JSON_DEPTH 8
#define REQUEST_USER_MAX 256

static json_object *request_fail(request_err_t *err, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static json_object *request_fail(request_err_t *err, int status, const char *code, const char *fmt, ...)
{
    err->status = status;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return NULL;
}

int request_urldecode(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (*s == '+') {
            *o++ = ' ';
        } else if (*s == '%') {
            char hex[3] = {s[1], s[1] ? s[2] : 0, 0};
            char *end;
            /* Two hex digits exactly (strtol alone would take a sign or a space). */
            if (!isxdigit((unsigned char)hex[0]) || !isxdigit((unsigned char)hex[1]))
                return -1;
            long v = strtol(hex, &end, 16);
            if (*end || v == 0) /* %00 would cut the value short */
                return -1;
            *o++ = (char)v;
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
    return 0;
}

/* Numbers in a query string: decimal digits only (no sign, space, hex, exponent, inf or nan), with
 * one fraction for times. */
static int request_decimal(const char *s, int fraction)
{
    size_t n = strspn(s, "0123456789");
    if (n == 0 || n > 18)
        return 0;
    if (s[n] == '.' && fraction) {
        size_t f = strspn(s + n + 1, "0123456789");
        return f > 0 && f <= 9 && s[n + 1 + f] == '\0';
    }
    return s[n] == '\0';
}

/* Validate obj's members against fields (api_check_fields); unknown members are refused. */
static json_object *request_check_fields(const api_field_t *fields, json_object *obj, const request_limits_t *lim,
                                         const char *where, request_err_t *err)
{
    const char *name = NULL, *code = NULL;
    const char *why = api_check_fields(fields, obj, lim->max_message_bytes, &name, &code);
    if (!why)
        return obj;
    if (strcmp(code, "unknown_field") == 0) {
        char k[64];
        snprintf(k, sizeof k, "%s", name);
        for (char *c = k; *c; c++)
            if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
                *c = '?';
        return request_fail(err, 400, code, "unknown %s field \"%s\"", where, k);
    }
    return request_fail(err, 400, code, "%s field \"%s\" %s", where, name, why);
}

/* A flag (PHP-FPM's `?full`): a field of kind API_FIELD_TRUE, given bare or as =1 or =true. kv is
 * the parameter, eq its '=' or NULL. */
static const api_field_t *request_flag(const api_route_t *r, const char *kv, const char *eq)
{
    size_t n = eq ? (size_t)(eq - kv) : strlen(kv);
    for (const api_field_t *p = r->query; p && p->name; p++)
        if (p->kind == API_FIELD_TRUE && strlen(p->name) == n && strncmp(p->name, kv, n) == 0)
            return p;
    return NULL;
}

/* One query parameter's value as its field takes it: integers, unix seconds, a flag's true, else
 * the string (api_check_fields judges it then). NULL with err when it cannot be one. */
static json_object *request_query_value(const api_route_t *r, const char *kv, const char *val, request_err_t *err)
{
    const api_field_t *fk = NULL;
    for (const api_field_t *p = r->query; p->name; p++)
        if (strcmp(p->name, kv) == 0)
            fk = p;
    char *end;
    errno = 0;
    if (fk && (fk->kind == API_FIELD_LIMIT || fk->kind == API_FIELD_CURSOR || fk->kind == API_FIELD_SEQ)) {
        long long n = strtoll(val, &end, 10);
        if (!request_decimal(val, 0) || errno || *end || end == val)
            return request_fail(err, 400, "invalid_parameter", "query parameter \"%s\" must be an integer", fk->name);
        return json_object_new_int64(n);
    }
    if (fk && fk->kind == API_FIELD_TIME) {
        double t = strtod(val, &end);
        if (!request_decimal(val, 1) || errno || *end || end == val || t != t)
            return request_fail(err, 400, "invalid_parameter", "query parameter \"%s\" must be unix seconds", fk->name);
        return json_object_new_double(t);
    }
    if (fk && fk->kind == API_FIELD_TRUE) {
        if (*val && strcmp(val, "1") != 0 && strcmp(val, "true") != 0)
            return request_fail(err, 400, "invalid_parameter", "query parameter \"%s\" takes no value (or 1, true)",
                                fk->name);
        return json_object_new_boolean(1);
    }
    json_object *v = json_object_new_string(val);
    return v ? v : request_fail(err, 500, "internal", "out of memory");
}

/* Parse the query string into an object of strings (limit becomes an int, a flag true). */
static json_object *request_parse_query(const api_route_t *r, const char *query, const request_limits_t *lim,
                                    request_err_t *err)
{
    json_object *q = json_object_new_object();
    if (!query || !*query)
        return q;
    if (!r->query) {
        json_object_put(q);
        return request_fail(err, 400, "unknown_parameter", "this endpoint takes no query parameters");
    }
    char *copy = strdup(query);
    if (!copy) {
        json_object_put(q);
        return request_fail(err, 500, "internal", "out of memory");
    }
    char *save = NULL;
    for (char *kv = strtok_r(copy, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        const api_field_t *flag = request_flag(r, kv, eq);
        if (!eq && !flag) {
            free(copy);
            json_object_put(q);
            return request_fail(err, 400, "invalid_parameter", "a query parameter has no '=' and value");
        }
        char *val = eq ? eq + 1 : kv + strlen(kv);
        if (eq)
            *eq = '\0';
        if (request_urldecode(kv) != 0 || request_urldecode(val) != 0 || !valid_utf8(kv, strlen(kv)) ||
            !valid_utf8(val, strlen(val))) {
            free(copy);
            json_object_put(q);
            return request_fail(err, 400, "invalid_parameter", "query string is not valid percent-encoded UTF-8");
        }
        if (!*val && !flag)
            continue; /* "?session=" means no filter */
        json_object *v = request_query_value(r, kv, val, err);
        if (!v) {
            free(copy);
            json_object_put(q);
            return NULL;
        }
        if (json_object_object_get_ex(q, kv, NULL)) {
            json_object_put(v);
            free(copy);
            json_object_put(q);
            return request_fail(err, 400, "invalid_parameter", "query parameter repeated");
        }
        json_object_object_add(q, kv, v);
    }
    free(copy);
    if (!request_check_fields(r->query, q, lim, "query", err)) {
        json_object_put(q);
        return NULL;
    }
    return q;
}

/* Content types a JSON body may arrive with. Besides JSON itself: none, and
 * the two that `curl -d` and plain fetch() send by default, so a quick
 * command line works; multipart forms and the like are refused (415). */
static int request_json_type(const char *ct)
{
    static const char *const ok[] = {"application/json", "text/plain", "application/x-www-form-urlencoded"};
    if (!ct || !*ct)
        return 1;
    size_t n = strcspn(ct, "; ");
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (n == strlen(ok[i]) && strncasecmp(ct, ok[i], n) == 0)
            return 1;
    return n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0 && strncasecmp(ct, "application/", 12) == 0;
}

static json_object *request_parse_body(const api_route_t *r, const request_in_t *in, const request_limits_t *lim,
                                   request_err_t *err)
{
    size_t n = in->body_len;
    /* Leading/trailing white space alone counts as no body. */
    const char *b = in->body;
    while (n && (*b == ' ' || *b == '\t' || *b == '\r' || *b == '\n')) {
        b++;
        n--;
    }
    if (n == 0) {
        if (r->body) {
            for (const api_field_t *p = r->body; p->name; p++)
                if (p->required)
                    return request_fail(err, 400, "missing_body", "a JSON object body is required");
        }
        return json_object_new_object();
    }
    if (!request_json_type(in->content_type))
        return request_fail(err, 415, "unsupported_media_type", "body must be application/json");
    if (!valid_utf8(in->body, in->body_len))
        return request_fail(err, 400, "invalid_utf8", "body must be UTF-8 without NUL bytes");
    json_tokener *tok = json_tokener_new_ex(REQUEST_JSON_DEPTH);
    if (!tok)
        return request_fail(err, 500, "internal", "out of memory");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *obj = json_tokener_parse_ex(tok, b, (int)n);
    enum json_tokener_error je = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (obj && je == json_tokener_success) {
        while (end < n && (b[end] == ' ' || b[end] == '\t' || b[end] == '\r' || b[end] == '\n'))
            end++;
    }
    if (!obj || je != json_tokener_success || end != n) {
        json_object_put(obj);
        if (je == json_tokener_error_depth)
            return request_fail(err, 400, "invalid_json", "body JSON is nested too deeply");
        return request_fail(err, 400, "invalid_json", "body is not valid JSON%s%s",
                        je != json_tokener_success ? ": " : "",
                        je != json_tokener_success ? json_tokener_error_desc(je) : " (trailing data)");
    }
    if (!json_object_is_type(obj, json_type_object)) {
        json_object_put(obj);
        return request_fail(err, 400, "invalid_json", "body must be a JSON object");
    }
    if (!r->body && json_object_object_length(obj) > 0) {
        json_object_put(obj);
        return request_fail(err, 400, "unknown_field", "this endpoint takes no body fields");
    }
    if (r->body && !request_check_fields(r->body, obj, lim, "body", err)) {
        json_object_put(obj);
        return NULL;
    }
    return obj;
}

json_object *request_build(const request_in_t *in, const request_limits_t *lim, request_err_t *err,
                           const api_route_t **route)
{
    memset(err, 0, sizeof *err);
    if (!in->method || !in->path)
        return request_fail(err, 400, "bad_request", "missing method or path");
    if (!valid_utf8(in->path, strlen(in->path)))
        return request_fail(err, 400, "invalid_path", "path must be UTF-8");
    if (in->raw_uri) {
        size_t n = strcspn(in->raw_uri, "?");
        if (n != strlen(in->path) || strncmp(in->raw_uri, in->path, n) != 0)
            return request_fail(err, 404, "not_found", "no such endpoint");
    }
    /* A cluster's front names the node it chose (by the session id, or by placement); a node that is
     * not that one (two nodes under one name, an address given to another host) refuses before
     * anything is done, rather than answer for sessions it does not hold or make one in the wrong place. */
    if (in->node && lim->node_name && strcmp(in->node, lim->node_name) != 0)
        return request_fail(err, 421, "misdirected_request", "this request was sent for node %s; this is node %s",
                            valid_node(in->node) ? in->node : "?", lim->node_name);
    char id[VALID_ID_MAX + 1], sub[VALID_ID_MAX + 1];
    const api_route_t *r;
    const char *bad_id = NULL;
    int rc = api_match(in->method, in->path, &r, id, sub, &bad_id, err->allow, sizeof err->allow);
    if (rc == 404)
        return request_fail(err, 404, "not_found", "no such endpoint");
    if (rc == 405)
        return request_fail(err, 405, "method_not_allowed", "method %s is not allowed here",
                        strlen(in->method) < 16 && valid_token(in->method, 16) ? in->method : "?");
    if (rc == 400)
        return request_fail(err, 400, "invalid_id", "%s", bad_id);
    if ((long)in->body_len > lim->max_body_bytes)
        return request_fail(err, 413, "body_too_large", "body is larger than %ld bytes", lim->max_body_bytes);
    const char *user = in->remote_user ? in->remote_user : "";
    if (*user && !valid_token(user, REQUEST_USER_MAX))
        return request_fail(err, 400, "invalid_user", "REMOTE_USER is not a valid user name");

    json_object *query = request_parse_query(r, in->query, lim, err);
    if (!query)
        return NULL;
    /* A reconnecting EventSource says where it stopped in Last-Event-ID; ?after wins. */
    if (in->last_event_id && *in->last_event_id && r->query && r->query[0].kind == API_FIELD_SEQ &&
        !json_object_object_get_ex(query, r->query[0].name, NULL)) {
        char *end;
        errno = 0;
        long long n = strtoll(in->last_event_id, &end, 10);
        if (!request_decimal(in->last_event_id, 0) || errno || *end) {
            json_object_put(query);
            return request_fail(err, 400, "invalid_header", "Last-Event-ID must be an event id");
        }
        json_object_object_add(query, r->query[0].name, json_object_new_int64(n));
    }
    json_object *body = request_parse_body(r, in, lim, err);
    if (!body) {
        json_object_put(query);
        return NULL;
    }
    /* Merge query into args; routes never take both. */
    json_object_object_foreach(query, k, v) json_object_object_add(body, k, json_object_get(v));
    json_object_put(query);

    json_object *f = json_object_new_object();
    json_object_object_add(f, "op", json_object_new_string(r->op));
    json_object_object_add(f, "user", json_object_new_string(user));
    if (*id)
        json_object_object_add(f, "id", json_object_new_string(id));
    if (*sub)
        json_object_object_add(f, "sub", json_object_new_string(sub));
    json_object_object_add(f, "args", body);
    if (r->flags & API_WAITS) {
        if (in->accept && strstr(in->accept, "text/event-stream"))
            json_object_object_add(f, "stream", json_object_new_boolean(1));
        else if (in->prefer && strstr(in->prefer, "respond-async"))
            json_object_object_add(f, "async", json_object_new_boolean(1));
    }
    if ((r->flags & API_OPENMETRICS) && metrics_negotiate(in->accept) == METRICS_OPENMETRICS)
        json_object_object_add(f, "openmetrics", json_object_new_boolean(1));
    if (route)
        *route = r;
    return f;
}
