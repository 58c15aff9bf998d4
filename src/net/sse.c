#define _GNU_SOURCE
#include "sse.h"

#include <stdlib.h>
#include <string.h>

struct sse {
    size_t max;
    sse_event_fn fn;
    void *ctx;
    char *line;          /* the line being read */
    size_t line_len, line_cap;
    char *data;          /* data lines of the event being read */
    size_t data_len, data_cap;
    char event[64];
    int has_data, overflow, last_cr;
    long dropped;
};

sse_t *sse_new(size_t max_event, sse_event_fn fn, void *ctx)
{
    sse_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->max = max_event ? max_event : (1u << 20);
    p->fn = fn;
    p->ctx = ctx;
    return p;
}

void sse_free(sse_t *p)
{
    if (!p)
        return;
    free(p->line);
    free(p->data);
    free(p);
}

long sse_dropped(const sse_t *p) { return p->dropped; }

static int sse_grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    char *n = realloc(*buf, c);
    if (!n)
        return -1;
    *buf = n;
    *cap = c;
    return 0;
}

static void sse_dispatch(sse_t *p)
{
    if (p->has_data && !p->overflow) {
        p->data[p->data_len] = '\0';
        p->fn(p->ctx, p->event[0] ? p->event : "message", p->data, p->data_len);
    } else if (p->overflow) {
        p->dropped++;
    }
    p->data_len = 0;
    p->has_data = 0;
    p->overflow = 0;
    p->event[0] = '\0';
}

static int sse_line(sse_t *p, const char *l, size_t n)
{
    if (n == 0) {
        sse_dispatch(p);
        return 0;
    }
    if (l[0] == ':')
        return 0;
    const char *colon = memchr(l, ':', n);
    size_t flen = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    size_t vlen = colon ? n - flen - 1 : 0;
    if (vlen && *v == ' ') {
        v++;
        vlen--;
    }
    if (flen == 4 && memcmp(l, "data", 4) == 0) {
        if (p->overflow)
            return 0;
        size_t need = p->data_len + (p->has_data ? 1 : 0) + vlen + 1;
        if (need > p->max) {
            p->overflow = 1;
            return 0;
        }
        if (sse_grow(&p->data, &p->data_cap, need) != 0)
            return -1;
        if (p->has_data)
            p->data[p->data_len++] = '\n';
        memcpy(p->data + p->data_len, v, vlen);
        p->data_len += vlen;
        p->has_data = 1;
    } else if (flen == 5 && memcmp(l, "event", 5) == 0) {
        size_t k = vlen < sizeof p->event - 1 ? vlen : sizeof p->event - 1;
        memcpy(p->event, v, k);
        p->event[k] = '\0';
    }
    return 0;
}

int sse_feed(sse_t *p, const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (c == '\n' && p->last_cr) { /* the LF of a CRLF */
            p->last_cr = 0;
            continue;
        }
        p->last_cr = c == '\r';
        if (c == '\r' || c == '\n') {
            if (sse_line(p, p->line ? p->line : "", p->line_len) != 0)
                return -1;
            p->line_len = 0;
            continue;
        }
        if (p->line_len + 1 > p->max) { /* a line past the limit: drop the event */
            p->overflow = 1;
            continue;
        }
        if (sse_grow(&p->line, &p->line_cap, p->line_len + 1) != 0)
            return -1;
        p->line[p->line_len++] = c;
    }
    return 0;
}
