/* libFuzzer target: the frame decoder, fed the input in two pieces. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    frame_decoder_t *d = frame_decoder_new(1 << 16);
    size_t half = size / 2;
    frame_feed(d, data, half);
    for (int pass = 0; pass < 2; pass++) {
        for (;;) {
            json_object *o = NULL;
            const char *why = NULL;
            frame_rc_t rc = frame_next(d, &o, &why);
            if (rc != FRAME_OK)
                break;
            size_t len;
            char *again = frame_encode(o, &len); /* what decodes must encode */
            free(again);
            json_object_put(o);
        }
        if (pass == 0)
            frame_feed(d, data + half, size - half);
    }
    frame_decoder_free(d);
    return 0;
}
