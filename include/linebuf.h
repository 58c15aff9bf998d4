/* linebuf: a child's output cut into lines, with one policy for a line that is too long.
 *
 * Bytes are fed as they arrive; each complete line (without its '\n', and without a '\r' before
 * it) goes to the callback. A line longer than max is cut: its first max bytes go to the callback
 * with cut set, the rest up to its '\n' is dropped. The buffer grows as needed up to max, so a
 * consumer of large lines (opencode's JSON events, up to megabytes) and one of log lines (a few
 * kilobytes) use the same code with different bounds. */
#ifndef OCPM_LINEBUF_H
#define OCPM_LINEBUF_H

#include <stddef.h>

typedef struct linebuf linebuf_t;
typedef void (*linebuf_fn)(void *ctx, const char *line, size_t len, int cut);

/* NULL when out of memory. */
linebuf_t *linebuf_new(size_t max, linebuf_fn fn, void *ctx);
void linebuf_free(linebuf_t *b);
/* Returns 0, or -1 when out of memory (the line in progress is then cut). */
int linebuf_feed(linebuf_t *b, const char *data, size_t len);
/* End of output: a last line without '\n' goes to the callback. */
void linebuf_flush(linebuf_t *b);
/* Lines cut since the start. */
long linebuf_cut_lines(const linebuf_t *b);

#endif
