/* sha256: FIPS 180-4 SHA-256, for storing a digest of prompts and answers
 * when store_prompts = no. */
#ifndef OCPM_SHA256_H
#define OCPM_SHA256_H

#include <stddef.h>

/* Writes 64 lowercase hex digits and a NUL into hex. */
void sha256_hex(const void *data, size_t len, char hex[65]);

#endif
