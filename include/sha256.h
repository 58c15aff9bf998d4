/* sha256: FIPS 180-4 SHA-256, for storing a digest of prompts and answers when store_prompts =
 * no, and HMAC-SHA256 (RFC 2104), which signs webhook deliveries. */
#ifndef OCPM_SHA256_H
#define OCPM_SHA256_H

#include <stddef.h>

/* Writes 64 lowercase hex digits and a NUL into hex. */
void sha256_hex(const void *data, size_t len, char hex[65]);
/* HMAC-SHA256 of data with key, as 64 lowercase hex digits and a NUL. */
void hmac_sha256_hex(const void *key, size_t keylen, const void *data, size_t len, char hex[65]);

#endif
