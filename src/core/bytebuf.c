#include "bytebuf.h"

#include <stdlib.h>
#include <string.h>

int bytebuf_add(bytebuf_t *b, const void *p, size_t n)
{
    if (n + 1 > b->cap - b->len || !b->data) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown)
            return -1;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

void bytebuf_free(bytebuf_t *b)
{
    free(b->data);
    *b = (bytebuf_t){0};
}
