#define _GNU_SOURCE
#include "oc_event.h"

#include <string.h>

#include "valid.h"

static json_object *oc_event_path(json_object *o, const char *a, const char *b)
{
    json_object *x = NULL, *y = NULL;
    if (!json_object_object_get_ex(o, a, &x))
        return NULL;
    if (!b)
        return x;
    return json_object_is_type(x, json_type_object) && json_object_object_get_ex(x, b, &y) ? y : NULL;
}

static const char *oc_event_string(json_object *o)
{
    return o && json_object_is_type(o, json_type_string) ? json_object_get_string(o) : NULL;
}

static long long oc_event_int(json_object *o)
{
    return o && (json_object_is_type(o, json_type_int) || json_object_is_type(o, json_type_double))
               ? (long long)json_object_get_int64(o)
               : 0;
}

int oc_event_parse(const char *line, size_t len, oc_event_t *ev)
{
    memset(ev, 0, sizeof *ev);
    if (len == 0 || memchr(line, '\0', len))
        return -1;
    json_tokener *tok = json_tokener_new_ex(64);
    if (!tok)
        return -1;
    json_object *o = json_tokener_parse_ex(tok, line, (int)len);
    int ok = o && json_tokener_get_error(tok) == json_tokener_success;
    json_tokener_free(tok);
    if (!ok || !json_object_is_type(o, json_type_object) || !oc_event_string(oc_event_path(o, "type", NULL))) {
        json_object_put(o);
        return -1;
    }
    ev->obj = o;
    ev->type = oc_event_string(oc_event_path(o, "type", NULL));
    const char *sid = oc_event_string(oc_event_path(o, "sessionID", NULL));
    ev->session_id = sid && valid_id(sid) ? sid : NULL;
    if (strcmp(ev->type, "text") == 0) {
        ev->text = oc_event_string(oc_event_path(o, "part", "text"));
    } else if (strcmp(ev->type, "step_finish") == 0) {
        json_object *part = oc_event_path(o, "part", NULL), *tokens = NULL, *cost = NULL;
        if (part && json_object_is_type(part, json_type_object) &&
            json_object_object_get_ex(part, "tokens", &tokens) && json_object_is_type(tokens, json_type_object)) {
            ev->has_usage = 1;
            ev->tokens_in = valid_tokens(oc_event_int(oc_event_path(tokens, "input", NULL)));
            ev->tokens_out = valid_tokens(oc_event_int(oc_event_path(tokens, "output", NULL)));
        }
        if (part && json_object_object_get_ex(part, "cost", &cost) &&
            (json_object_is_type(cost, json_type_double) || json_object_is_type(cost, json_type_int)))
            ev->cost = valid_cost(json_object_get_double(cost));
    } else if (strcmp(ev->type, "error") == 0) {
        json_object *err = oc_event_path(o, "error", NULL);
        const char *msg = NULL;
        if (err && json_object_is_type(err, json_type_object)) {
            msg = oc_event_string(oc_event_path(err, "data", "message"));
            if (!msg)
                msg = oc_event_string(oc_event_path(err, "message", NULL));
            if (!msg)
                msg = oc_event_string(oc_event_path(err, "name", NULL));
        } else {
            msg = oc_event_string(err);
        }
        ev->error = msg ? msg : "opencode reported an error";
    }
    return 0;
}

void oc_event_free(oc_event_t *ev)
{
    json_object_put(ev->obj);
    memset(ev, 0, sizeof *ev);
}
