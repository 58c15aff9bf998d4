/* frame: length-prefixed JSON messages between responders and the manager.
 *
 * Wire format: a 4-byte big-endian length N (1..FRAME_MAX), then N bytes of
 * UTF-8 JSON whose top level is an object. Anything else is malformed, and a
 * malformed frame closes the connection that sent it. */
#ifndef OCPM_FRAME_H
#define OCPM_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

/* A history row (stored_text_limit <= 1 MiB of prompt and of answer, escaped up to 6 bytes a byte)
 * and a message reply (the record and the answer) fit with room to spare. */
#define FRAME_MAX (32u << 20)
#define FRAME_HDR 4

typedef enum { FRAME_OK = 0, FRAME_AGAIN = 1, FRAME_ERROR = -1 } frame_rc_t;

typedef struct frame_decoder frame_decoder_t;

frame_decoder_t *frame_decoder_new(size_t max);
void frame_decoder_free(frame_decoder_t *d);
/* Append received bytes. Returns FRAME_ERROR when out of memory. */
frame_rc_t frame_feed(frame_decoder_t *d, const void *data, size_t len);
/* Take the next complete frame: FRAME_OK with *out (caller puts it),
 * FRAME_AGAIN when more bytes are needed, FRAME_ERROR with a reason. */
frame_rc_t frame_next(frame_decoder_t *d, json_object **out, const char **why);

/* Serialise obj into a new buffer (header included). Returns NULL if the
 * JSON is over FRAME_MAX. *len receives the total size. Free with free(). */
char *frame_encode(json_object *obj, size_t *len);

/* Blocking helpers for the responder's threads (EINTR retried).
 * frame_read_fd waits at most timeout_ms (-1 = forever): FRAME_AGAIN on
 * timeout, FRAME_ERROR on EOF or malformed input. */
int frame_write_fd(int fd, json_object *obj);
frame_rc_t frame_read_fd(int fd, frame_decoder_t *d, json_object **out, int timeout_ms);

#endif
