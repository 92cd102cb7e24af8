/*
 * hash.h - streaming SHA-256 (OpenSSL EVP) with hex output.
 *
 * Used by the archive writer (sha256 of the compressed object and of every
 * logical stream), by `dsd verify` and by tests. A dsd_sha256_t owns its
 * EVP context: init it, update it any number of times, then final (which
 * frees the context) or free (to discard).
 */
#ifndef DSD_CORE_HASH_H
#define DSD_CORE_HASH_H

#include <stddef.h>

#define DSD_SHA256_HEX_LEN 64

typedef struct dsd_sha256 {
  void *ctx; /* EVP_MD_CTX *, owned */
} dsd_sha256_t;

/* Returns 0 or DSD_ENOMEM. */
int dsd_sha256_init(dsd_sha256_t *h);
/* Returns 0 or DSD_EINTERNAL. */
int dsd_sha256_update(dsd_sha256_t *h, const void *data, size_t len);
/* Writes 64 hex digits and a NUL into hex (at least 65 bytes) and frees
 * the context. Returns 0 or DSD_EINTERNAL. */
int dsd_sha256_final_hex(dsd_sha256_t *h, char *hex);
/* Frees the context without a result; safe on a zeroed or finished h. */
void dsd_sha256_free(dsd_sha256_t *h);
/* One-shot: hex digest of data[0..len). Returns 0 or a negative code. */
int dsd_sha256_hex(const void *data, size_t len, char *hex);

#endif
