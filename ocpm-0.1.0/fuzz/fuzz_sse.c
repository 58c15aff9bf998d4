/* libFuzzer target: the SSE parser, fed byte runs of varying size. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sse.h"

static void on_event(void *ctx, const char *event, const char *data, size_t len)
{
    (void)ctx;
    if (strlen(data) > len || !event)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sse_t *p = sse_new(256, on_event, NULL);
    size_t off = 0, step = 1;
    while (off < size) {
        size_t n = size - off < step ? size - off : step;
        sse_feed(p, (const char *)data + off, n);
        off += n;
        step = step * 3 % 17 + 1;
    }
    sse_free(p);
    return 0;
}
