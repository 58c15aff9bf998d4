/* uvbuf: the read buffer every libuv stream of ocpm reads into (a child's pipe, a control
 * connection): malloc'd for the read, freed by the read callback whatever it got. */
#ifndef OCPM_UVBUF_H
#define OCPM_UVBUF_H

#include <uv.h>

/* A uv_alloc_cb: suggested bytes, or an empty buffer when out of memory (libuv then reports
 * UV_ENOBUFS to the read callback). */
void uvbuf_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

#endif
