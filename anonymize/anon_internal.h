/*
 * anon_internal.h - structures shared by the anonymize/ sources.
 *
 * rules.c parses JSON into dsd_anon_rules_t, plan.c binds rules to a
 * table's columns, transforms.c turns one value into another, hmac.c keys
 * everything, json_walk.c and pgarray.c rewrite structured values. Nothing
 * here is part of the public interface (anonymize.h).
 */
#ifndef DSD_ANONYMIZE_INTERNAL_H
#define DSD_ANONYMIZE_INTERNAL_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The low-level SHA-256 interface is deprecated in OpenSSL 3 but is the only
 * one whose state is a plain struct: copying a precomputed HMAC state is how
 * a value is keyed without any allocation (EVP_MAC allocates per use). */
#ifndef OPENSSL_SUPPRESS_DEPRECATED
#define OPENSSL_SUPPRESS_DEPRECATED
#endif
#include <openssl/sha.h>

#include "anonymize/anonymize.h"

/* ------------------------------------------------------------------ */
/* HMAC-SHA256 with the key schedule precomputed                        */

typedef struct dsd__anon_key {
  SHA256_CTX inner; /* state after absorbing key ^ ipad */
  SHA256_CTX outer; /* state after absorbing key ^ opad */
} dsd__anon_key_t;

void dsd__anon_key_init(dsd__anon_key_t *k, const void *salt, size_t len);
void dsd__anon_key_wipe(dsd__anon_key_t *k);
/* out = HMAC-SHA256(salt, tag || 0x00 || a || b). tag separates strategies;
 * it is a short constant string. b may be NULL with blen 0. */
void dsd__anon_mac(const dsd__anon_key_t *k, const char *tag, const void *a,
                   size_t alen, const void *b, size_t blen,
                   unsigned char out[32]);
/* Fills out[0..n) with a keyed stream for (tag, a): block i is
 * HMAC(salt, tag || 0x00 || a || be32(i)). */
void dsd__anon_stream(const dsd__anon_key_t *k, const char *tag, const void *a,
                      size_t alen, unsigned char *out, size_t n);

/* ------------------------------------------------------------------ */
/* Rules                                                               */

typedef enum {
  DSD__ANON_KEEP = 0,
  DSD__ANON_NULL,
  DSD__ANON_CONSTANT,
  DSD__ANON_HASH,
  DSD__ANON_EMAIL,
  DSD__ANON_NAME,
  DSD__ANON_PHONE,
  DSD__ANON_DIGITS,
  DSD__ANON_MASK,
  DSD__ANON_TRUNCATE,
  DSD__ANON_NOISE,
  DSD__ANON_DATE_SHIFT,
  DSD__ANON_REGEX_REPLACE,
  DSD__ANON_AUTO, /* allow-list default: chosen from the value's type */
  DSD__ANON_NSTRATEGIES
} dsd__anon_strategy_t;

extern const char *const dsd__anon_strategy_names[DSD__ANON_NSTRATEGIES];

typedef enum { DSD__PATH_NAME, DSD__PATH_INDEX, DSD__PATH_ANY } dsd__anon_step_kind_t;

typedef struct dsd__anon_step {
  dsd__anon_step_kind_t kind;
  char *name;   /* NAME */
  size_t index; /* INDEX */
} dsd__anon_step_t;

typedef enum { DSD__NAME_FULL, DSD__NAME_FIRST, DSD__NAME_LAST } dsd__anon_name_part_t;

struct dsd__anon_rule {
  char *column; /* column name or dotted field path */
  dsd__anon_strategy_t strategy;
  /* "path" inside a json column; has_path with nsteps == 0 means "$" */
  bool has_path;
  dsd__anon_step_t *steps;
  size_t nsteps;
  /* constant */
  char *value; /* NULL: the constant is NULL */
  size_t value_len;
  /* hash (0 = default), truncate */
  int length;
  /* mask, phone/digits */
  int keep_first, keep_last;
  char mask_char[5];
  size_t mask_char_len;
  /* email */
  char *domain; /* NULL: example.com */
  bool hash_domain;
  /* name */
  dsd__anon_name_part_t name_part;
  /* noise: exactly one of ratio, amount is > 0 */
  double ratio, amount;
  /* date_shift */
  int max_days;
  char *key_column;
  /* regex_replace */
  bool has_re;
  regex_t re;
  char *replacement;
};

typedef struct dsd__anon_table_rules {
  char *name;
  struct dsd__anon_rule *rules;
  size_t nrules;
} dsd__anon_table_rules_t;

struct dsd_anon_rules {
  bool allow_list; /* "default": "anonymize" */
  bool has_salt, salt_user;
  dsd__anon_key_t key;
  json_t *public_json; /* the rules without the salt */
  dsd__anon_table_rules_t *tables;
  size_t ntables;
};

/* The rule used for unlisted columns in allow-list mode. */
extern const struct dsd__anon_rule dsd__anon_auto_rule;

const dsd__anon_table_rules_t *dsd__anon_find_table(const dsd_anon_rules_t *r,
                                                     const char *table);

/* Writes a key as it appears in error messages: quoted unless it is a
 * plain identifier, as in anonymize.tables."public.t".col. */
void dsd__anon_key_repr(char *dst, size_t dstlen, const char *key);

/* Which strategies a column kind accepts (plan-time check). */
bool dsd__anon_strategy_fits(dsd__anon_strategy_t s, dsd_anon_kind_t kind,
                             bool has_path);

/* ------------------------------------------------------------------ */
/* Transforms                                                          */

typedef struct dsd__anon_ctx {
  const dsd__anon_key_t *key;
  const char *rowkey; /* date_shift key value, NULL when none */
  size_t rowkey_len;
} dsd__anon_ctx_t;

/* Transforms one value. Output replaces out's content. Returns 0 or
 * DSD_EINVAL (input not valid for the type), DSD_ENOMEM. */
int dsd__anon_transform(const dsd__anon_ctx_t *c,
                        const struct dsd__anon_rule *rule,
                        const dsd_anon_type_t *type, const char *in,
                        size_t len, bool is_null, dsd_buf_t *out,
                        bool *out_null);

/* Transforms a scalar (non-array, non-json) value, appending to out.
 * Returns 0, DSD_EINVAL or DSD_ENOMEM. */
int dsd__anon_scalar(const dsd__anon_ctx_t *c, const struct dsd__anon_rule *rule,
                     const dsd_anon_type_t *type, const char *in, size_t len,
                     dsd_buf_t *out);

/* Rewrites JSON text, transforming the values the rule's path selects (all
 * string values when the rule has no path). Appends to out. */
int dsd__anon_json(const dsd__anon_ctx_t *c, const struct dsd__anon_rule *rule,
                   const char *in, size_t len, dsd_buf_t *out);

/* Rewrites a pg array literal element by element. Appends to out. */
int dsd__anon_pgarray(const dsd__anon_ctx_t *c,
                      const struct dsd__anon_rule *rule,
                      const dsd_anon_type_t *type, const char *in, size_t len,
                      dsd_buf_t *out);

/* UTF-8 helpers: characters counted so that every invalid byte is one
 * character (a value is never cut inside a valid sequence). */
size_t dsd__anon_utf8_next(const char *s, size_t len, size_t i);
size_t dsd__anon_utf8_count(const char *s, size_t len);
/* Byte length of the first n characters of s. */
size_t dsd__anon_utf8_prefix(const char *s, size_t len, size_t n);

/* Validates a constant against a type; returns 0 or DSD_EINVAL with a short
 * reason in why. */
int dsd__anon_check_constant(const dsd_anon_type_t *type, const char *v,
                             size_t len, const char **why);

#endif
