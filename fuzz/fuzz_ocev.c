/* libFuzzer target: one line of `opencode run --format json` output. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "oc_event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    oc_event_t ev;
    if (oc_event_parse((const char *)data, size, &ev) == 0) {
        if (!ev.type)
            __builtin_trap();
        if (ev.text)
            (void)strlen(ev.text);
        if (ev.error)
            (void)strlen(ev.error);
        oc_event_free(&ev);
    }
    return 0;
}
