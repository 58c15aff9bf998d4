/* libFuzzer target: one line of `opencode run --format json` output. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ocev.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ocev_t ev;
    if (ocev_parse((const char *)data, size, &ev) == 0) {
        if (!ev.type)
            __builtin_trap();
        if (ev.text)
            (void)strlen(ev.text);
        if (ev.error)
            (void)strlen(ev.error);
        ocev_free(&ev);
    }
    return 0;
}
