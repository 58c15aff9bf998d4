#define _GNU_SOURCE
#include "uvbuf.h"

#include <stdlib.h>

void uvbuf_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}
