#define _GNU_SOURCE
#include "frame.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct frame_decoder {
    char *buf;
    size_t len, cap, max;
};

frame_decoder_t *frame_decoder_new(size_t max)
{
    frame_decoder_t *d = calloc(1, sizeof *d);
    if (d)
        d->max = max && max < FRAME_MAX ? max : FRAME_MAX;
    return d;
}

void frame_decoder_free(frame_decoder_t *d)
{
    if (!d)
        return;
    free(d->buf);
    free(d);
}

frame_rc_t frame_feed(frame_decoder_t *d, const void *data, size_t len)
{
    if (len == 0) /* nothing to add (and no buffer yet to add it to) */
        return FRAME_OK;
    if (d->len + len > d->cap) {
        size_t cap = d->cap ? d->cap : 4096;
        while (cap < d->len + len)
            cap *= 2;
        char *nb = realloc(d->buf, cap);
        if (!nb)
            return FRAME_ERROR;
        d->buf = nb;
        d->cap = cap;
    }
    memcpy(d->buf + d->len, data, len);
    d->len += len;
    return FRAME_OK;
}

frame_rc_t frame_next(frame_decoder_t *d, json_object **out, const char **why)
{
    *out = NULL;
    if (d->len < FRAME_HDR)
        return FRAME_AGAIN;
    const unsigned char *h = (const unsigned char *)d->buf;
    uint32_t n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    if (n == 0 || n > d->max) {
        *why = n == 0 ? "empty frame" : "frame over size limit";
        return FRAME_ERROR;
    }
    if (d->len < FRAME_HDR + (size_t)n)
        return FRAME_AGAIN;
    const char *body = d->buf + FRAME_HDR;
    if (memchr(body, '\0', n)) {
        *why = "NUL byte in frame";
        return FRAME_ERROR;
    }
    json_tokener *tok = json_tokener_new_ex(64);
    if (!tok) {
        *why = "out of memory";
        return FRAME_ERROR;
    }
    json_object *obj = json_tokener_parse_ex(tok, body, (int)n);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!obj || jerr != json_tokener_success || used != n || !json_object_is_type(obj, json_type_object)) {
        json_object_put(obj);
        *why = "frame is not one JSON object";
        return FRAME_ERROR;
    }
    size_t rest = d->len - FRAME_HDR - n;
    memmove(d->buf, d->buf + FRAME_HDR + n, rest);
    d->len = rest;
    if (rest == 0) {
        /* Idle, it holds nothing: the manager keeps one decoder per responder thread (hundreds). */
        free(d->buf);
        d->buf = NULL;
        d->cap = 0;
    }
    *out = obj;
    return FRAME_OK;
}

char *frame_encode(json_object *obj, size_t *len)
{
    size_t n;
    const char *s = json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    if (!s || n == 0 || n > FRAME_MAX)
        return NULL;
    char *buf = malloc(FRAME_HDR + n);
    if (!buf)
        return NULL;
    buf[0] = (char)(n >> 24);
    buf[1] = (char)(n >> 16);
    buf[2] = (char)(n >> 8);
    buf[3] = (char)n;
    memcpy(buf + FRAME_HDR, s, n);
    *len = FRAME_HDR + n;
    return buf;
}

int frame_write_fd(int fd, json_object *obj)
{
    size_t len;
    char *buf = frame_encode(obj, &len);
    if (!buf)
        return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t w = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            free(buf);
            return -1;
        }
        off += (size_t)w;
    }
    free(buf);
    return 0;
}

frame_rc_t frame_read_fd(int fd, frame_decoder_t *d, json_object **out, int timeout_ms)
{
    for (;;) {
        const char *why;
        frame_rc_t rc = frame_next(d, out, &why);
        if (rc != FRAME_AGAIN)
            return rc;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, timeout_ms);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            return FRAME_ERROR;
        if (pr == 0)
            return FRAME_AGAIN;
        char buf[16384];
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return FRAME_ERROR;
        if (frame_feed(d, buf, (size_t)r) != FRAME_OK)
            return FRAME_ERROR;
    }
}
