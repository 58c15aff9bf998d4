/* bytebuf: a growing buffer of bytes, always NUL-terminated, for what libcurl's write callbacks
 * gather (an HTTP answer: the manager's calls to opencode, ocpmctl's to the nodes). */
#ifndef OCPM_BYTEBUF_H
#define OCPM_BYTEBUF_H

#include <stddef.h>

typedef struct bytebuf {
    char *data; /* malloc'd, data[len] == '\0' once anything was added; NULL before */
    size_t len, cap;
} bytebuf_t;

/* Appends n bytes of p (capacity doubling from 4 kB). 0, or -1 when out of memory (b unchanged). */
int bytebuf_add(bytebuf_t *b, const void *p, size_t n);
void bytebuf_free(bytebuf_t *b);

#endif
