/* sse: an incremental parser for text/event-stream (as opencode serve's
 * /global/event sends it). Feed bytes as they arrive; each complete event
 * (its "data:" lines joined by \n) is handed to the callback. Comments
 * (":...") and unknown fields are ignored; an event larger than the limit
 * is dropped whole (and counted). */
#ifndef OCPM_SSE_H
#define OCPM_SSE_H

#include <stddef.h>

typedef struct sse sse_t;
/* event is "message" when the stream names none. */
typedef void (*sse_event_fn)(void *ctx, const char *event, const char *data, size_t len);

sse_t *sse_new(size_t max_event, sse_event_fn fn, void *ctx);
void sse_free(sse_t *p);
/* Returns 0, or -1 when out of memory. */
int sse_feed(sse_t *p, const char *data, size_t len);
long sse_dropped(const sse_t *p);

#endif
