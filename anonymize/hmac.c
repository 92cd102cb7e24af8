/*
 * hmac.c - HMAC-SHA256 keyed by the anonymization salt.
 *
 * Every transform derives its output from HMAC-SHA256(salt, tag || 0 ||
 * value). The inner and outer SHA-256 states after absorbing the padded key
 * are computed once per rules object; keying a value then copies two small
 * structs onto the stack, so it needs no allocation and no lock, and the raw
 * salt need not be kept at all (it cannot be printed from these states).
 * tests/unit/test_anonymize_transforms.c checks the result against
 * OpenSSL's one-shot HMAC().
 */
#include "anonymize/anon_internal.h"

#include <string.h>

#include <openssl/crypto.h>

void dsd__anon_key_init(dsd__anon_key_t *k, const void *salt, size_t len) {
  unsigned char block[64];
  unsigned char pad[64];

  memset(block, 0, sizeof(block));
  if (len > sizeof(block)) {
    /* RFC 2104: keys longer than the block are hashed first. */
    SHA256(salt, len, block);
  } else if (len > 0) {
    memcpy(block, salt, len);
  }
  for (size_t i = 0; i < 64; i++) pad[i] = block[i] ^ 0x36;
  SHA256_Init(&k->inner);
  SHA256_Update(&k->inner, pad, 64);
  for (size_t i = 0; i < 64; i++) pad[i] = block[i] ^ 0x5c;
  SHA256_Init(&k->outer);
  SHA256_Update(&k->outer, pad, 64);
  OPENSSL_cleanse(block, sizeof(block));
  OPENSSL_cleanse(pad, sizeof(pad));
}

void dsd__anon_key_wipe(dsd__anon_key_t *k) { OPENSSL_cleanse(k, sizeof(*k)); }

void dsd__anon_mac(const dsd__anon_key_t *k, const char *tag, const void *a,
                   size_t alen, const void *b, size_t blen,
                   unsigned char out[32]) {
  SHA256_CTX c;
  unsigned char inner[32];
  static const unsigned char zero = 0;

  c = k->inner;
  SHA256_Update(&c, tag, strlen(tag));
  SHA256_Update(&c, &zero, 1);
  if (alen > 0) SHA256_Update(&c, a, alen);
  if (blen > 0) SHA256_Update(&c, b, blen);
  SHA256_Final(inner, &c);
  c = k->outer;
  SHA256_Update(&c, inner, sizeof(inner));
  SHA256_Final(out, &c);
  OPENSSL_cleanse(&c, sizeof(c));
}

void dsd__anon_stream(const dsd__anon_key_t *k, const char *tag, const void *a,
                      size_t alen, unsigned char *out, size_t n) {
  unsigned char block[32];
  uint32_t i = 0;

  while (n > 0) {
    unsigned char ctr[4] = {(unsigned char)(i >> 24), (unsigned char)(i >> 16),
                            (unsigned char)(i >> 8), (unsigned char)i};
    size_t take = n < sizeof(block) ? n : sizeof(block);
    dsd__anon_mac(k, tag, a, alen, ctr, sizeof(ctr), block);
    memcpy(out, block, take);
    out += take;
    n -= take;
    i++;
  }
}
