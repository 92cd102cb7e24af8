/*
 * sigv4.c - AWS Signature Version 4 signing and presigning (see sigv4.h).
 *
 * The steps follow the S3 API reference literally:
 *   CanonicalRequest = Method \n CanonicalURI \n CanonicalQuery \n
 *                      CanonicalHeaders \n SignedHeaders \n HashedPayload
 *   StringToSign     = "AWS4-HMAC-SHA256" \n amz_date \n scope \n
 *                      hex(SHA256(CanonicalRequest))
 *   SigningKey       = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region),
 *                      service), "aws4_request")
 *   Signature        = hex(HMAC(SigningKey, StringToSign))
 *
 * Intermediate keys live on the stack and are wiped before returning, so the
 * secret does not linger in freed heap memory.
 */
#include "s3/sigv4.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- */
/* Hashing helpers                                                   */
/* ---------------------------------------------------------------- */

static void hex_encode(const unsigned char *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = '\0';
}

void dsd_sigv4_sha256_hex(const void *data, size_t len, char hex[65]) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)data, len, md);
  hex_encode(md, sizeof md, hex);
}

static int hmac256(const void *key, size_t keylen, const void *msg,
                   size_t msglen, unsigned char out[32]) {
  unsigned int outlen = 32;
  if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg,
            msglen, out, &outlen))
    return DSD_EINTERNAL;
  return 0;
}

void dsd_sigv4_amz_date(int64_t t, char out[17]) {
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* ---------------------------------------------------------------- */
/* Encoding                                                          */
/* ---------------------------------------------------------------- */

static bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
         c == '~';
}

int dsd_sigv4_uri_encode(dsd_buf_t *out, const char *s, size_t len,
                         bool keep_slash) {
  static const char digits[] = "0123456789ABCDEF";
  int rc = dsd_buf_reserve(out, len * 3);
  if (rc) return rc;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (unreserved(c) || (keep_slash && c == '/')) {
      rc = dsd_buf_append_char(out, (char)c);
    } else {
      char esc[3] = {'%', digits[c >> 4], digits[c & 15]};
      rc = dsd_buf_append(out, esc, 3);
    }
    if (rc) return rc;
  }
  return 0;
}

int dsd_sigv4_encode_path(dsd_buf_t *out, const char *raw_path) {
  if (!raw_path || !*raw_path) return dsd_buf_append_char(out, '/');
  return dsd_sigv4_uri_encode(out, raw_path, strlen(raw_path), true);
}

typedef struct enc_pair {
  char *name;
  char *value;
} enc_pair_t;

static int cmp_enc_pair(const void *a, const void *b) {
  const enc_pair_t *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  return c ? c : strcmp(x->value, y->value);
}

static char *encode_dup(const char *s, bool keep_slash) {
  dsd_buf_t b = DSD_BUF_INIT;
  if (!s) s = "";
  if (dsd_sigv4_uri_encode(&b, s, strlen(s), keep_slash)) {
    dsd_buf_free(&b);
    return NULL;
  }
  return dsd_buf_steal(&b);
}

int dsd_sigv4_canonical_query(dsd_buf_t *out, const dsd_sigv4_pair_t *q,
                              size_t n) {
  int rc = 0;
  enc_pair_t *pairs = NULL;
  if (n == 0) return 0;
  pairs = calloc(n, sizeof *pairs);
  if (!pairs) return DSD_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    pairs[i].name = encode_dup(q[i].name, false);
    pairs[i].value = encode_dup(q[i].value, false);
    if (!pairs[i].name || !pairs[i].value) {
      rc = DSD_ENOMEM;
      goto cleanup;
    }
  }
  /* Sorting by the encoded names is what S3 does: sort order is by code
   * point of the encoded form. */
  qsort(pairs, n, sizeof *pairs, cmp_enc_pair);
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (i) rc = dsd_buf_append_char(out, '&');
    if (!rc) rc = dsd_buf_append_str(out, pairs[i].name);
    if (!rc) rc = dsd_buf_append_char(out, '=');
    if (!rc) rc = dsd_buf_append_str(out, pairs[i].value);
  }
cleanup:
  for (size_t i = 0; i < n; i++) {
    free(pairs[i].name);
    free(pairs[i].value);
  }
  free(pairs);
  return rc;
}

/* ---------------------------------------------------------------- */
/* Canonical headers                                                 */
/* ---------------------------------------------------------------- */

typedef struct canon_header {
  char *name;  /* lower case */
  char *value; /* trimmed, inner runs of spaces collapsed */
} canon_header_t;

static int cmp_canon_header(const void *a, const void *b) {
  return strcmp(((const canon_header_t *)a)->name,
                ((const canon_header_t *)b)->name);
}

static char *lower_dup(const char *s) {
  char *d = strdup(s);
  if (!d) return NULL;
  for (char *p = d; *p; p++) *p = (char)tolower((unsigned char)*p);
  return d;
}

static char *trim_dup(const char *s) {
  size_t n = strlen(s);
  char *d = malloc(n + 1), *o = d;
  bool space = false;
  if (!d) return NULL;
  while (*s == ' ' || *s == '\t') s++;
  for (; *s; s++) {
    if (*s == ' ' || *s == '\t') {
      space = true;
      continue;
    }
    if (space && o != d) *o++ = ' ';
    space = false;
    *o++ = *s;
  }
  *o = '\0';
  return d;
}

/* ---------------------------------------------------------------- */
/* Signing                                                           */
/* ---------------------------------------------------------------- */

void dsd_sigv4_result_free(dsd_sigv4_result_t *r) {
  if (!r) return;
  free(r->canonical_request);
  free(r->string_to_sign);
  free(r->signed_headers);
  free(r->signature);
  free(r->authorization);
  memset(r, 0, sizeof *r);
}

static int signing_key(const dsd_sigv4_creds_t *c, const char *date8,
                       const char *service, unsigned char key[32]) {
  int rc;
  size_t slen = strlen(c->secret_key);
  char *k0 = malloc(slen + 5);
  unsigned char k1[32], k2[32], k3[32];
  if (!k0) return DSD_ENOMEM;
  memcpy(k0, "AWS4", 4);
  memcpy(k0 + 4, c->secret_key, slen + 1);
  rc = hmac256(k0, slen + 4, date8, 8, k1);
  if (!rc) rc = hmac256(k1, 32, c->region, strlen(c->region), k2);
  if (!rc) rc = hmac256(k2, 32, service, strlen(service), k3);
  if (!rc) rc = hmac256(k3, 32, "aws4_request", 12, key);
  OPENSSL_cleanse(k0, slen + 4);
  OPENSSL_cleanse(k1, sizeof k1);
  OPENSSL_cleanse(k2, sizeof k2);
  OPENSSL_cleanse(k3, sizeof k3);
  free(k0);
  return rc;
}

int dsd_sigv4_sign(const dsd_sigv4_creds_t *creds,
                   const dsd_sigv4_request_t *req, dsd_sigv4_result_t *out,
                   dsd_err_t *err) {
  int rc = 0;
  dsd_buf_t cr = DSD_BUF_INIT, sts = DSD_BUF_INIT, sh = DSD_BUF_INIT,
            auth = DSD_BUF_INIT;
  canon_header_t *hs = NULL;
  size_t nh = req ? req->nheaders : 0;
  const char *service;
  char date8[9], cr_hash[65], sig[65];
  unsigned char key[32], mac[32];

  memset(out, 0, sizeof *out);
  if (!creds || !creds->access_key || !creds->secret_key || !creds->region ||
      !req || !req->method || !req->amz_date ||
      strlen(req->amz_date) != 16 || !req->payload_hash)
    return dsd_err_set(err, DSD_EINVAL, "sigv4: incomplete request to sign");
  service = creds->service ? creds->service : "s3";
  memcpy(date8, req->amz_date, 8);
  date8[8] = '\0';

  hs = calloc(nh ? nh : 1, sizeof *hs);
  if (!hs) {
    rc = DSD_ENOMEM;
    goto cleanup;
  }
  for (size_t i = 0; i < nh; i++) {
    hs[i].name = lower_dup(req->headers[i].name);
    hs[i].value = trim_dup(req->headers[i].value ? req->headers[i].value : "");
    if (!hs[i].name || !hs[i].value) {
      rc = DSD_ENOMEM;
      goto cleanup;
    }
  }
  qsort(hs, nh, sizeof *hs, cmp_canon_header);

  /* Canonical request. */
  rc = dsd_buf_printf(&cr, "%s\n", req->method);
  if (!rc) rc = dsd_sigv4_encode_path(&cr, req->path);
  if (!rc) rc = dsd_buf_append_char(&cr, '\n');
  if (!rc) rc = dsd_sigv4_canonical_query(&cr, req->query, req->nquery);
  if (!rc) rc = dsd_buf_append_char(&cr, '\n');
  for (size_t i = 0; i < nh && !rc; i++) {
    rc = dsd_buf_printf(&cr, "%s:%s\n", hs[i].name, hs[i].value);
    if (!rc && i) rc = dsd_buf_append_char(&sh, ';');
    if (!rc) rc = dsd_buf_append_str(&sh, hs[i].name);
  }
  if (!rc)
    rc = dsd_buf_printf(&cr, "\n%s\n%s", sh.data ? sh.data : "",
                        req->payload_hash);
  if (rc) goto cleanup;

  /* String to sign. */
  dsd_sigv4_sha256_hex(cr.data, cr.len, cr_hash);
  rc = dsd_buf_printf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s",
                      req->amz_date, date8, creds->region, service, cr_hash);
  if (rc) goto cleanup;

  rc = signing_key(creds, date8, service, key);
  if (!rc) rc = hmac256(key, 32, sts.data, sts.len, mac);
  OPENSSL_cleanse(key, sizeof key);
  if (rc) goto cleanup;
  hex_encode(mac, 32, sig);

  rc = dsd_buf_printf(&auth,
                      "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request,"
                      "SignedHeaders=%s,Signature=%s",
                      creds->access_key, date8, creds->region, service,
                      sh.data ? sh.data : "", sig);
  if (rc) goto cleanup;

  out->canonical_request = dsd_buf_steal(&cr);
  out->string_to_sign = dsd_buf_steal(&sts);
  out->signed_headers = dsd_buf_steal(&sh);
  out->signature = strdup(sig);
  out->authorization = dsd_buf_steal(&auth);
  if (!out->canonical_request || !out->string_to_sign ||
      !out->signed_headers || !out->signature || !out->authorization) {
    dsd_sigv4_result_free(out);
    rc = DSD_ENOMEM;
  }

cleanup:
  if (hs) {
    for (size_t i = 0; i < nh; i++) {
      free(hs[i].name);
      free(hs[i].value);
    }
    free(hs);
  }
  dsd_buf_free(&cr);
  dsd_buf_free(&sts);
  dsd_buf_free(&sh);
  dsd_buf_free(&auth);
  if (rc == DSD_ENOMEM) dsd_err_set(err, rc, "sigv4: out of memory");
  return rc;
}

int dsd_sigv4_presign(const dsd_sigv4_creds_t *creds, const char *method,
                      const char *base, const char *host, const char *path,
                      const dsd_sigv4_pair_t *extra_query, size_t nextra,
                      const char *amz_date, uint32_t expires_s,
                      char **url_out, dsd_sigv4_result_t *out,
                      dsd_err_t *err) {
  int rc = 0;
  dsd_sigv4_pair_t *q = NULL;
  dsd_sigv4_result_t res = {0};
  dsd_buf_t url = DSD_BUF_INIT, cred = DSD_BUF_INIT;
  char expires[16], date8[9];
  size_t n = 0;
  const char *service;
  dsd_sigv4_pair_t host_hdr = {"host", host};
  dsd_sigv4_request_t req;

  *url_out = NULL;
  if (!creds || !creds->access_key || !creds->region || !amz_date ||
      strlen(amz_date) != 16 || !base || !host)
    return dsd_err_set(err, DSD_EINVAL, "sigv4: incomplete request to presign");
  if (expires_s == 0 || expires_s > 604800)
    return dsd_err_set(err, DSD_EINVAL,
                       "sigv4: presigned url expiry must be 1..604800 "
                       "seconds HINT: sigv4 allows at most 7 days");
  service = creds->service ? creds->service : "s3";
  memcpy(date8, amz_date, 8);
  date8[8] = '\0';
  snprintf(expires, sizeof expires, "%u", (unsigned)expires_s);
  rc = dsd_buf_printf(&cred, "%s/%s/%s/%s/aws4_request", creds->access_key,
                      date8, creds->region, service);
  if (rc) goto cleanup;

  q = calloc(nextra + 6, sizeof *q);
  if (!q) {
    rc = DSD_ENOMEM;
    goto cleanup;
  }
  for (size_t i = 0; i < nextra; i++) q[n++] = extra_query[i];
  q[n++] = (dsd_sigv4_pair_t){"X-Amz-Algorithm", "AWS4-HMAC-SHA256"};
  q[n++] = (dsd_sigv4_pair_t){"X-Amz-Credential", cred.data};
  q[n++] = (dsd_sigv4_pair_t){"X-Amz-Date", amz_date};
  q[n++] = (dsd_sigv4_pair_t){"X-Amz-Expires", expires};
  if (creds->session_token && *creds->session_token)
    q[n++] = (dsd_sigv4_pair_t){"X-Amz-Security-Token", creds->session_token};
  q[n++] = (dsd_sigv4_pair_t){"X-Amz-SignedHeaders", "host"};

  req = (dsd_sigv4_request_t){
      .method = method,
      .path = path,
      .query = q,
      .nquery = n,
      .headers = &host_hdr,
      .nheaders = 1,
      .payload_hash = DSD_SIGV4_UNSIGNED_PAYLOAD,
      .amz_date = amz_date,
  };
  rc = dsd_sigv4_sign(creds, &req, &res, err);
  if (rc) goto cleanup;

  rc = dsd_buf_append_str(&url, base);
  if (!rc) rc = dsd_sigv4_encode_path(&url, path);
  if (!rc) rc = dsd_buf_append_char(&url, '?');
  if (!rc) rc = dsd_sigv4_canonical_query(&url, q, n);
  if (!rc) rc = dsd_buf_printf(&url, "&X-Amz-Signature=%s", res.signature);
  if (rc) goto cleanup;
  *url_out = dsd_buf_steal(&url);
  if (!*url_out) {
    rc = DSD_ENOMEM;
    goto cleanup;
  }
  if (out) {
    *out = res;
    memset(&res, 0, sizeof res);
  }

cleanup:
  dsd_sigv4_result_free(&res);
  dsd_buf_free(&url);
  dsd_buf_free(&cred);
  free(q);
  if (rc == DSD_ENOMEM) dsd_err_set(err, rc, "sigv4: out of memory");
  return rc;
}
