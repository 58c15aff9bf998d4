#define _GNU_SOURCE
#include "linebuf.h"

#include <stdlib.h>
#include <string.h>

struct linebuf {
    char *buf;
    size_t len, cap, max;
    int cutting; /* the current line passed max: the rest of it is dropped */
    long cut_lines;
    linebuf_fn fn;
    void *ctx;
};

linebuf_t *linebuf_new(size_t max, linebuf_fn fn, void *ctx)
{
    linebuf_t *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->max = max ? max : 1;
    b->fn = fn;
    b->ctx = ctx;
    return b;
}

void linebuf_free(linebuf_t *b)
{
    if (!b)
        return;
    free(b->buf);
    free(b);
}

long linebuf_cut_lines(const linebuf_t *b) { return b->cut_lines; }

static void linebuf_emit(linebuf_t *b, int cut)
{
    size_t n = b->len;
    while (n && b->buf[n - 1] == '\r')
        n--;
    b->buf[n] = '\0';
    b->fn(b->ctx, b->buf, n, cut);
    b->len = 0;
}

/* Make room for want bytes (and a NUL); at most max. Returns how many fit. */
static size_t linebuf_room(linebuf_t *b, size_t want)
{
    size_t need = b->len + want;
    if (need > b->max)
        need = b->max;
    if (need + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need + 1)
            cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb)
            return b->cap > b->len + 1 ? b->cap - b->len - 1 : 0;
        b->buf = nb;
        b->cap = cap;
    }
    return need - b->len;
}

int linebuf_feed(linebuf_t *b, const char *data, size_t len)
{
    int rc = 0;
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t chunk = nl ? (size_t)(nl - data) : len;
        if (!b->cutting) {
            size_t fit = linebuf_room(b, chunk);
            if (fit < chunk && b->len + fit < b->max)
                rc = -1; /* out of memory: cut here */
            memcpy(b->buf + b->len, data, fit);
            b->len += fit;
            if (fit < chunk) {
                b->cutting = 1;
                b->cut_lines++;
                linebuf_emit(b, 1);
            }
        }
        if (!nl)
            break;
        if (b->cutting) {
            b->cutting = 0;
        } else {
            if (!b->buf)
                linebuf_room(b, 0); /* an empty first line: a buffer for its NUL */
            if (b->buf)
                linebuf_emit(b, 0);
        }
        data = nl + 1;
        len -= chunk + 1;
    }
    return rc;
}

void linebuf_flush(linebuf_t *b)
{
    if (!b->cutting && b->len)
        linebuf_emit(b, 0);
    b->cutting = 0;
    b->len = 0;
}
