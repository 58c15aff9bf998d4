/* libFuzzer target: request parsing and validation. The first byte picks the route and headers;
 * the rest is split at the first NUL into query string and body (the body may hold NULs). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const paths[] = {"/api/sessions", "/api/sessions/s1/messages", "/api/executions",
                                        "/api/sessions/s1", "/api/stats", "/api/admin/executions"};
    static const char *const methods[] = {"GET", "POST", "DELETE", "PUT"};
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    const uint8_t *nul = memchr(data, 0, size);
    size_t qlen = nul ? (size_t)(nul - data) : 0;
    char *query = malloc(qlen + 1);
    memcpy(query, data, qlen);
    query[qlen] = '\0';
    size_t blen = nul ? size - qlen - 1 : size;
    char *body = malloc(blen + 1);
    memcpy(body, nul ? nul + 1 : data, blen);
    body[blen] = '\0';
    request_in_t in = {
        .method = methods[sel & 3],
        .path = paths[(sel >> 2) % 6],
        .query = query,
        .content_type = (sel & 0x40) ? "application/json" : NULL,
        .accept = (sel & 0x80) ? "text/event-stream" : NULL,
        .body = body,
        .body_len = blen,
    };
    request_limits_t lim = {.max_body_bytes = 4096, .max_message_bytes = 1024};
    request_err_t err;
    json_object *f = request_build(&in, &lim, &err, NULL);
    if (!f && (err.status < 400 || err.status > 499 || !err.code || !err.message[0]))
        abort(); /* every refusal is a 4xx with a code and a message */
    json_object_put(f);
    free(query);
    free(body);
    return 0;
}
