/*
 * hash.c - streaming SHA-256 over OpenSSL's EVP interface (see hash.h).
 */
#include "core/hash.h"

#include <openssl/evp.h>

#include "core/error.h"

int dsd_sha256_init(dsd_sha256_t *h) {
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  h->ctx = NULL;
  if (c == NULL)
    return DSD_ENOMEM;
  if (EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
    EVP_MD_CTX_free(c);
    return DSD_EINTERNAL;
  }
  h->ctx = c;
  return 0;
}

int dsd_sha256_update(dsd_sha256_t *h, const void *data, size_t len) {
  if (h->ctx == NULL)
    return DSD_EINTERNAL;
  if (len == 0)
    return 0;
  return EVP_DigestUpdate(h->ctx, data, len) == 1 ? 0 : DSD_EINTERNAL;
}

int dsd_sha256_final_hex(dsd_sha256_t *h, char *hex) {
  static const char digits[] = "0123456789abcdef";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  int rc = 0;

  hex[0] = '\0';
  if (h->ctx == NULL)
    return DSD_EINTERNAL;
  if (EVP_DigestFinal_ex(h->ctx, md, &mdlen) != 1 || mdlen != 32) {
    rc = DSD_EINTERNAL;
    goto cleanup;
  }
  for (unsigned i = 0; i < mdlen; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  hex[2 * mdlen] = '\0';
cleanup:
  dsd_sha256_free(h);
  return rc;
}

void dsd_sha256_free(dsd_sha256_t *h) {
  if (h->ctx != NULL)
    EVP_MD_CTX_free(h->ctx);
  h->ctx = NULL;
}

int dsd_sha256_hex(const void *data, size_t len, char *hex) {
  dsd_sha256_t h;
  int rc = dsd_sha256_init(&h);
  if (rc < 0)
    return rc;
  rc = dsd_sha256_update(&h, data, len);
  if (rc < 0) {
    dsd_sha256_free(&h);
    return rc;
  }
  return dsd_sha256_final_hex(&h, hex);
}
