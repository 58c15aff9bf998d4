/* oc_event: one line of `opencode run --format json` output.
 *
 * Each line is a JSON object with "type" (step_start, text, tool_use,
 * step_finish, error, ...) and "sessionID". The fields ocpm keeps are
 * pulled out here; the whole object stays available for streaming. */
#ifndef OCPM_OC_EVENT_H
#define OCPM_OC_EVENT_H

#include <stddef.h>

#include <json-c/json.h>

typedef struct oc_event {
    json_object *obj;       /* owned; the whole event */
    const char *type;       /* never NULL after a successful parse */
    const char *session_id; /* NULL when absent or not a valid id */
    const char *text;       /* type "text": part.text */
    long long tokens_in, tokens_out;
    double cost;
    int has_usage;          /* type "step_finish" with tokens */
    const char *error;      /* type "error": error.data.message or error.name */
} oc_event_t;

/* Returns 0 and fills ev, or -1 when the line is not a JSON object with a
 * string "type" (the line is then not an event; callers log and go on). */
int oc_event_parse(const char *line, size_t len, oc_event_t *ev);
void oc_event_free(oc_event_t *ev);

#endif
