/* execution: one message's life, from queued to finished, as clients and the history see it.
 *
 * The scheduler (scheduler.h) decides when an execution starts and on which backend; this module
 * is what happens to it: the record written at each change, the workspace checked and prepared,
 * the backend's events passed to streaming clients, one finish path whatever ended it, and the
 * answer built from memory (the record as written, not read back). */
#ifndef OCPM_EXECUTION_H
#define OCPM_EXECUTION_H

#include <json-c/json.h>

/* How the client that sent a message waits for it. */
typedef enum {
    EXECUTION_WAIT_SYNC = 0, /* one reply at the end */
    EXECUTION_WAIT_STREAM,   /* SSE events as they come, then "done" */
    EXECUTION_WAIT_ASYNC,    /* not at all: 202 with its Location at once */
} execution_wait_t;

/* An execution row as an ordinary user may see it: no argv, pid or stderr (operators' routes keep
 * them), the unauthenticated owner as null. Modifies and returns o. */
json_object *execution_public(json_object *o);

#endif
