/*
 * transforms.c - the value transforms behind each strategy.
 *
 * Every function here maps one value in its text form to another, keyed by
 * HMAC-SHA256 of the salt (hmac.c), and appends the result to a caller's
 * buffer: no allocation beyond the buffer's growth, no I/O, no shared
 * mutable state, so a rules object can serve many worker threads.
 *
 * The tag passed to the HMAC names the transform, never the table or
 * column: equal values give equal outputs wherever they occur, which is
 * what keeps foreign keys and joins intact. Outputs are made valid for the
 * column type (length in characters, integer range, calendar dates,
 * canonical uuids); see anonymize.h for the strategy list.
 */
#include "anonymize/anon_internal.h"

#include <ctype.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

static const char hexdigits[] = "0123456789abcdef";

/* ------------------------------------------------------------------ */
/* UTF-8                                                               */

size_t dsd__anon_utf8_next(const char *s, size_t len, size_t i) {
  unsigned char c = (unsigned char)s[i];
  size_t n;
  if (c < 0x80) return i + 1;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
  } else {
    return i + 1; /* invalid lead byte: one character on its own */
  }
  if (i + n > len) return i + 1;
  for (size_t k = 1; k < n; k++) {
    if (((unsigned char)s[i + k] & 0xc0) != 0x80) return i + 1;
  }
  return i + n;
}

size_t dsd__anon_utf8_count(const char *s, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < len; i = dsd__anon_utf8_next(s, len, i)) n++;
  return n;
}

size_t dsd__anon_utf8_prefix(const char *s, size_t len, size_t n) {
  size_t i = 0;
  while (i < len && n > 0) {
    i = dsd__anon_utf8_next(s, len, i);
    n--;
  }
  return i;
}

/* Cuts what was appended to out since start to at most max characters. */
static void cap_chars(dsd_buf_t *out, size_t start, int max) {
  size_t keep;
  if (max <= 0 || out->len <= start) return;
  keep = dsd__anon_utf8_prefix(out->data + start, out->len - start, (size_t)max);
  out->len = start + keep;
  out->data[out->len] = '\0';
}

/* ------------------------------------------------------------------ */
/* Text: hash, email, name, mask, truncate, regex_replace               */

static int hash_text(const dsd__anon_ctx_t *c, const struct dsd__anon_rule *rule,
                     const dsd_anon_type_t *t, const char *in, size_t len,
                     dsd_buf_t *out) {
  static const char b62[] =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  unsigned char d[32];
  char s[64];
  size_t n = rule->length > 0 ? (size_t)rule->length : 32;

  dsd__anon_mac(c->key, "hash", in, len, NULL, 0, d);
  if (t->max_len > 0 && (size_t)t->max_len < n) {
    /* A short column gets base-62 digits: 5.9 bits per character instead
     * of 4 keeps more distinct values distinct. */
    n = (size_t)t->max_len;
    for (size_t i = 0; i < n; i++) s[i] = b62[d[i] % 62];
  } else {
    for (size_t i = 0; i < n; i++) s[i] = hexdigits[(d[i / 2] >> (i % 2 ? 0 : 4)) & 0xf];
  }
  return dsd_buf_append(out, s, n);
}

static int email(const dsd__anon_ctx_t *c, const struct dsd__anon_rule *rule,
                 const dsd_anon_type_t *t, const char *in, size_t len,
                 dsd_buf_t *out) {
  unsigned char d[32];
  char buf[300];
  size_t n = 0;
  size_t local = 16;
  const char *domain = rule->domain ? rule->domain : "example.com";
  size_t domlen = rule->hash_domain ? 20 : strlen(domain);

  if (t->max_len > 0 && (size_t)t->max_len < 2 + local + domlen) {
    local = (size_t)t->max_len > 2 + domlen ? (size_t)t->max_len - 2 - domlen : 1;
  }
  dsd__anon_mac(c->key, "email", in, len, NULL, 0, d);
  buf[n++] = 'u';
  for (size_t i = 0; i < local; i++) buf[n++] = hexdigits[(d[i / 2] >> (i % 2 ? 0 : 4)) & 0xf];
  buf[n++] = '@';
  if (rule->hash_domain) {
    const char *at = memrchr(in, '@', len);
    const char *dom = at ? at + 1 : in + len;
    unsigned char dd[32];
    dsd__anon_mac(c->key, "email-domain", dom, (size_t)(in + len - dom), NULL, 0, dd);
    for (size_t i = 0; i < 8; i++) buf[n++] = hexdigits[(dd[i / 2] >> (i % 2 ? 0 : 4)) & 0xf];
    memcpy(buf + n, ".example.com", 12);
    n += 12;
  } else {
    memcpy(buf + n, domain, domlen);
    n += domlen;
  }
  return dsd_buf_append(out, buf, n);
}

/* Small on purpose: the point is plausible-looking test data, not realism.
 * 64 x 64 combinations, so name is NOT injective. */
static const char *const first_names[64] = {
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda",
    "William", "Elizabeth", "David", "Barbara", "Richard", "Susan", "Joseph", "Jessica",
    "Thomas", "Sarah", "Charles", "Karen", "Daniel", "Nancy", "Matthew", "Lisa",
    "Anthony", "Betty", "Mark", "Margaret", "Paul", "Sandra", "Steven", "Ashley",
    "Andrew", "Emily", "Joshua", "Donna", "Kenneth", "Michelle", "Kevin", "Carol",
    "Brian", "Amanda", "George", "Melissa", "Timothy", "Deborah", "Ronald", "Laura",
    "Jason", "Rebecca", "Edward", "Sharon", "Ryan", "Cynthia", "Jacob", "Kathleen",
    "Amira", "Kenji", "Ingrid", "Mateo", "Priya", "Olusegun", "Chloe", "Tomasz"};
static const char *const last_names[64] = {
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
    "Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas",
    "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White",
    "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young",
    "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
    "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell",
    "Carter", "Roberts", "Schmidt", "Novak", "Kowalski", "Dubois", "Rossi", "Tanaka",
    "Okafor", "Silva", "Jensen", "Ivanova", "Murphy", "Khan", "Haddad", "Larsen"};

static int name(const dsd__anon_ctx_t *c, const struct dsd__anon_rule *rule,
                const char *in, size_t len, dsd_buf_t *out) {
  unsigned char d[32];
  const char *f;
  const char *l;

  dsd__anon_mac(c->key, "name", in, len, NULL, 0, d);
  f = first_names[d[0] % 64];
  l = last_names[d[1] % 64];
  switch (rule->name_part) {
  case DSD__NAME_FIRST: return dsd_buf_append_str(out, f);
  case DSD__NAME_LAST: return dsd_buf_append_str(out, l);
  default: return dsd_buf_printf(out, "%s %s", f, l);
  }
}

static int mask(const struct dsd__anon_rule *rule, const char *in, size_t len,
                dsd_buf_t *out) {
  size_t n = dsd__anon_utf8_count(in, len);
  size_t kf = (size_t)rule->keep_first;
  size_t kl = (size_t)rule->keep_last;
  size_t head, tail, masked;
  int rc;

  if (n <= kf + kl) {
    /* Too short to keep anything without showing all of it. */
    kf = 0;
    kl = 0;
  }
  head = dsd__anon_utf8_prefix(in, len, kf);
  tail = dsd__anon_utf8_prefix(in, len, n - kl);
  masked = n - kf - kl;
  rc = dsd_buf_reserve(out, head + masked * rule->mask_char_len + (len - tail));
  if (rc < 0) return rc;
  dsd_buf_append(out, in, head);
  for (size_t i = 0; i < masked; i++) dsd_buf_append(out, rule->mask_char, rule->mask_char_len);
  return dsd_buf_append(out, in + tail, len - tail);
}

static int regex_replace_nul(const struct dsd__anon_rule *rule, const char *in,
                             size_t len, dsd_buf_t *out) {
  regmatch_t m[10];
  size_t off = 0;
  int rc = 0;

  while (off <= len) {
    int flags = REG_STARTEND | (off > 0 ? REG_NOTBOL : 0);
    m[0].rm_so = (regoff_t)off;
    m[0].rm_eo = (regoff_t)len;
    if (regexec(&rule->re, in, 10, m, flags) != 0) break;
    rc = dsd_buf_append(out, in + off, (size_t)m[0].rm_so - off);
    for (const char *p = rule->replacement; rc == 0 && *p; p++) {
      if (p[0] == '\\' && isdigit((unsigned char)p[1])) {
        int g = p[1] - '0';
        if (g <= (int)rule->re.re_nsub && m[g].rm_so >= 0) {
          rc = dsd_buf_append(out, in + m[g].rm_so, (size_t)(m[g].rm_eo - m[g].rm_so));
        }
        p++;
      } else if (p[0] == '\\' && p[1] == '\\') {
        rc = dsd_buf_append_char(out, '\\');
        p++;
      } else {
        rc = dsd_buf_append_char(out, *p);
      }
    }
    if (rc < 0) return rc;
    if (m[0].rm_eo == m[0].rm_so) {
      /* Empty match: step over one character so the loop advances. */
      size_t next;
      if ((size_t)m[0].rm_eo >= len) {
        off = len + 1;
        break;
      }
      next = dsd__anon_utf8_next(in, len, (size_t)m[0].rm_eo);
      rc = dsd_buf_append(out, in + m[0].rm_eo, next - (size_t)m[0].rm_eo);
      if (rc < 0) return rc;
      off = next;
    } else {
      off = (size_t)m[0].rm_eo;
    }
  }
  if (off < len) rc = dsd_buf_append(out, in + off, len - off);
  return rc;
}

/* regexec needs a NUL-terminated string (sanitizers and some libcs read to
 * the NUL even with REG_STARTEND), so the value is copied: on the stack
 * when small, which is the common case. */
static int regex_replace(const struct dsd__anon_rule *rule, const char *in, size_t len,
                         dsd_buf_t *out) {
  char small[512];
  char *copy = len < sizeof(small) ? small : malloc(len + 1);
  int rc;
  if (copy == NULL) return DSD_ENOMEM;
  memcpy(copy, in, len);
  copy[len] = '\0';
  rc = regex_replace_nul(rule, copy, len, out);
  if (copy != small) free(copy);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Digits (phone, digits, hash of numeric and float)                    */

/* Replaces ASCII digits by keyed digits; with leading_nonzero the first
 * significant digit stays 1..9 so a number keeps its magnitude; with
 * stop_at_exp digits after e/E (a float exponent) are kept so the value
 * stays in range. */
static int replace_digits(const dsd__anon_ctx_t *c, const char *tag, const char *in,
                          size_t len, size_t keep_first, bool leading_nonzero,
                          bool stop_at_exp, dsd_buf_t *out) {
  unsigned char stream[32];
  size_t start = out->len;
  size_t ndig = 0;
  bool significant = false;
  bool exp = false;
  int rc = dsd_buf_append(out, in, len);

  if (rc < 0) return rc;
  for (size_t i = 0; i < len; i++) {
    char *p = out->data + start + i;
    if (stop_at_exp && (*p == 'e' || *p == 'E')) exp = true;
    if (exp || !isdigit((unsigned char)*p)) continue;
    if (ndig % sizeof(stream) == 0) {
      /* Block b of the stream is keyed by the whole input and b. */
      size_t b = ndig / sizeof(stream);
      unsigned char ctr[4] = {(unsigned char)(b >> 24), (unsigned char)(b >> 16),
                              (unsigned char)(b >> 8), (unsigned char)b};
      dsd__anon_mac(c->key, tag, in, len, ctr, 4, stream);
    }
    if (ndig >= keep_first) {
      unsigned v = stream[ndig % sizeof(stream)];
      if (leading_nonzero && !significant && *p != '0') {
        *p = (char)('1' + v % 9);
      } else if (leading_nonzero && !significant) {
        /* a leading zero ("0.5") stays zero */
      } else {
        *p = (char)('0' + v % 10);
      }
    }
    if (*p != '0') significant = true;
    ndig++;
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* Integers: a keyed permutation that stays in range                    */

/* The permutation works on magnitude tiers whose bounds are the limits of
 * every integer type (2^7, 2^8, 2^15, 2^16, 2^23, 2^24, 2^31, 2^32, 2^63,
 * 2^64): a value is permuted within its tier, so the result fits every type
 * the input fits, and an int4 foreign key maps like the int8 key it
 * references. Negative values are mirrored (-1 - v) into the same tiers.
 * Within a tier the permutation is a 4-round Feistel network on an even
 * number of bits, cycle-walked into the tier's size. */
static const int tier_bits[] = {7, 8, 15, 16, 23, 24, 31, 32, 63, 64};

static uint64_t feistel(const dsd__anon_ctx_t *c, int tier, unsigned w, uint64_t x) {
  unsigned h = w / 2;
  uint64_t hmask = h == 64 ? ~0ULL : ((1ULL << h) - 1);
  uint64_t l = (x >> h) & hmask;
  uint64_t r = x & hmask;

  for (int round = 0; round < 4; round++) {
    unsigned char in[10];
    unsigned char d[32];
    uint64_t f = 0;
    in[0] = (unsigned char)tier;
    in[1] = (unsigned char)round;
    for (int i = 0; i < 8; i++) in[2 + i] = (unsigned char)(r >> (8 * i));
    dsd__anon_mac(c->key, "int", in, sizeof(in), NULL, 0, d);
    for (int i = 0; i < 8; i++) f |= (uint64_t)d[i] << (8 * i);
    uint64_t nl = r;
    r = (l ^ f) & hmask;
    l = nl;
  }
  return (l << h) | r;
}

static uint64_t permute_u64(const dsd__anon_ctx_t *c, uint64_t v) {
  int tier = 0;
  uint64_t lo = 0;
  uint64_t size;
  unsigned w;
  uint64_t x;

  while (tier < 9 && v >= (1ULL << tier_bits[tier])) {
    lo = 1ULL << tier_bits[tier];
    tier++;
  }
  size = tier_bits[tier] == 64 ? 0 - lo : (1ULL << tier_bits[tier]) - lo; /* 0 - lo wraps */
  /* Smallest even width w with 2^w >= size. */
  w = 2;
  while (w < 64 && (1ULL << w) < size) w += 2;
  x = v - lo;
  do {
    x = feistel(c, tier, w, x);
  } while (w < 64 && x >= size);
  if (w == 64 && size != 0) {
    while (x >= size) x = feistel(c, tier, w, x);
  }
  return lo + x;
}

static void int_range(const dsd_anon_type_t *t, int64_t *min, uint64_t *max) {
  int bits = 64;
  switch (t->kind) {
  case DSD_ANON_INT1: bits = 8; break;
  case DSD_ANON_INT2: bits = 16; break;
  case DSD_ANON_INT3: bits = 24; break;
  case DSD_ANON_INT4: bits = 32; break;
  default: bits = 64; break;
  }
  if (t->is_unsigned) {
    *min = 0;
    *max = bits == 64 ? UINT64_MAX : (1ULL << bits) - 1;
  } else {
    *min = bits == 64 ? INT64_MIN : -(int64_t)(1ULL << (bits - 1));
    *max = (1ULL << (bits - 1)) - 1;
  }
}

/* Parses an integer's text form; neg and magnitude out. */
static int parse_int(const dsd_anon_type_t *t, const char *in, size_t len, bool *neg,
                     uint64_t *mag) {
  size_t i = 0;
  uint64_t v = 0;
  int64_t min;
  uint64_t max;

  *neg = false;
  if (len > 0 && (in[0] == '-' || in[0] == '+')) {
    *neg = in[0] == '-';
    i++;
  }
  if (i == len) return DSD_EINVAL;
  for (; i < len; i++) {
    if (!isdigit((unsigned char)in[i])) return DSD_EINVAL;
    uint64_t dig = (uint64_t)(in[i] - '0');
    if (v > UINT64_MAX / 10 || (v == UINT64_MAX / 10 && dig > UINT64_MAX % 10)) {
      return DSD_EINVAL;
    }
    v = v * 10 + dig;
  }
  int_range(t, &min, &max);
  if (*neg && v == 0) *neg = false;
  if (*neg ? v > (uint64_t)(-(min + 1)) + 1 : v > max) return DSD_EINVAL;
  *mag = v;
  return 0;
}

static int hash_int(const dsd__anon_ctx_t *c, const dsd_anon_type_t *t, const char *in,
                    size_t len, dsd_buf_t *out) {
  bool neg;
  uint64_t v;
  int rc = parse_int(t, in, len, &neg, &v);
  if (rc < 0) return rc;
  if (neg) {
    /* -1 - x for x = -v: the magnitude v - 1 is permuted. */
    uint64_t m = permute_u64(c, v - 1);
    return dsd_buf_printf(out, "-%" PRIu64, m + 1);
  }
  return dsd_buf_printf(out, "%" PRIu64, permute_u64(c, v));
}

/* ------------------------------------------------------------------ */
/* Noise                                                               */

/* A keyed fraction in [-1, 1) from the value. */
static long double noise_fraction(const dsd__anon_ctx_t *c, const char *in, size_t len) {
  unsigned char d[32];
  uint64_t u = 0;
  dsd__anon_mac(c->key, "noise", in, len, NULL, 0, d);
  for (int i = 0; i < 8; i++) u = (u << 8) | d[i];
  return ((long double)(u >> 11) / (long double)(1ULL << 53)) * 2.0L - 1.0L;
}

static bool is_special_number(const char *in, size_t len) {
  /* pg numeric and float text forms of non-finite values stay as they are. */
  return (len >= 3 && (strncasecmp(in, "nan", 3) == 0)) ||
         (len >= 3 && (strncasecmp(in, "inf", 3) == 0)) ||
         (len >= 4 && (strncasecmp(in, "-inf", 4) == 0 || strncasecmp(in, "+inf", 4) == 0));
}

static int parse_ld(const char *in, size_t len, long double *v) {
  char tmp[512];
  char *end;
  if (len == 0 || len >= sizeof(tmp)) return DSD_EINVAL;
  memcpy(tmp, in, len);
  tmp[len] = '\0';
  for (size_t i = 0; i < len; i++) {
    char ch = tmp[i];
    if (!(isdigit((unsigned char)ch) || ch == '-' || ch == '+' || ch == '.' || ch == 'e' ||
          ch == 'E')) {
      return DSD_EINVAL;
    }
  }
  *v = strtold(tmp, &end);
  if (end != tmp + len || !isfinite(*v)) return DSD_EINVAL;
  return 0;
}

static int noise(const dsd__anon_ctx_t *c, const struct dsd__anon_rule *rule,
                 const dsd_anon_type_t *t, const char *in, size_t len, dsd_buf_t *out) {
  long double v, f, nv;
  int rc;

  if (t->kind != DSD_ANON_INT1 && t->kind != DSD_ANON_INT2 && t->kind != DSD_ANON_INT3 &&
      t->kind != DSD_ANON_INT4 && t->kind != DSD_ANON_INT8 && is_special_number(in, len)) {
    return dsd_buf_append(out, in, len);
  }
  rc = parse_ld(in, len, &v);
  if (rc < 0) return rc;
  f = noise_fraction(c, in, len);
  nv = rule->ratio > 0 ? v + fabsl(v) * f * (long double)rule->ratio
                       : v + f * (long double)rule->amount;

  switch (t->kind) {
  case DSD_ANON_INT1:
  case DSD_ANON_INT2:
  case DSD_ANON_INT3:
  case DSD_ANON_INT4:
  case DSD_ANON_INT8: {
    int64_t min;
    uint64_t max;
    bool neg;
    uint64_t mag;
    rc = parse_int(t, in, len, &neg, &mag);
    if (rc < 0) return rc;
    int_range(t, &min, &max);
    nv = roundl(nv);
    if (nv < (long double)min) nv = (long double)min;
    if (nv >= (long double)max) return dsd_buf_printf(out, "%" PRIu64, max);
    if (nv < 0) return dsd_buf_printf(out, "%" PRId64, (int64_t)nv);
    return dsd_buf_printf(out, "%" PRIu64, (uint64_t)nv);
  }
  case DSD_ANON_NUMERIC:
  case DSD_ANON_TEXT: { /* TEXT: a number inside a json document */
    int scale = t->scale;
    size_t start = out->len;
    if (scale < 0) {
      const char *dot = memchr(in, '.', len);
      const char *e = NULL;
      for (size_t i = 0; i < len && !e; i++) {
        if (in[i] == 'e' || in[i] == 'E') e = in + i;
      }
      scale = dot ? (int)((e ? e : in + len) - dot - 1) : 0;
      if (scale > 30) scale = 30;
    }
    if (t->precision > 0) {
      long double lim = powl(10.0L, t->precision - scale) - powl(10.0L, -scale);
      if (nv > lim) nv = lim;
      if (nv < -lim) nv = -lim;
    }
    rc = dsd_buf_printf(out, "%.*Lf", scale, nv);
    if (rc < 0) return rc;
    /* "-0.00" reads oddly and is the same value as "0.00". */
    if (out->data[start] == '-' && strspn(out->data + start + 1, "0.") == out->len - start - 1) {
      memmove(out->data + start, out->data + start + 1, out->len - start);
      out->len--;
    }
    return 0;
  }
  case DSD_ANON_FLOAT: {
    bool single = t->name && (strncasecmp(t->name, "real", 4) == 0 ||
                              strncasecmp(t->name, "float4", 6) == 0 ||
                              strcasecmp(t->name, "float") == 0);
    long double lim = single ? FLT_MAX : DBL_MAX;
    if (nv > lim) nv = lim;
    if (nv < -lim) nv = -lim;
    return dsd_buf_printf(out, single ? "%.9g" : "%.17g", (double)nv);
  }
  default:
    return DSD_EINVAL;
  }
}

/* ------------------------------------------------------------------ */
/* Dates and times                                                     */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static unsigned days_in_month(int64_t y, unsigned m) {
  static const unsigned dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : dim[m - 1];
}

/* Parses "YYYY-MM-DD" at the start of in; *used gets its length. */
static int parse_date(const char *in, size_t len, int64_t *y, unsigned *m, unsigned *d,
                      size_t *used) {
  size_t i = 0;
  int64_t yy = 0;
  while (i < len && isdigit((unsigned char)in[i]) && i < 7) yy = yy * 10 + (in[i++] - '0');
  if (i < 4 || i + 6 > len || in[i] != '-' || !isdigit((unsigned char)in[i + 1]) ||
      !isdigit((unsigned char)in[i + 2]) || in[i + 3] != '-' ||
      !isdigit((unsigned char)in[i + 4]) || !isdigit((unsigned char)in[i + 5])) {
    return DSD_EINVAL;
  }
  *m = (unsigned)((in[i + 1] - '0') * 10 + (in[i + 2] - '0'));
  *d = (unsigned)((in[i + 4] - '0') * 10 + (in[i + 5] - '0'));
  *y = yy;
  *used = i + 6;
  if (*m < 1 || *m > 12 || *d < 1 || *d > days_in_month(yy, *m)) return DSD_EINVAL;
  if (*used < len && isdigit((unsigned char)in[*used])) return DSD_EINVAL;
  return 0;
}

static int date_shift(const dsd__anon_ctx_t *c, const struct dsd__anon_rule *rule,
                      const dsd_anon_type_t *t, const char *in, size_t len,
                      dsd_buf_t *out) {
  int64_t y, ny;
  unsigned m, d, nm, nd;
  size_t used;
  unsigned char h[32];
  uint32_t u;
  int64_t shift, days;
  int64_t miny = t->min_year > 0 ? t->min_year : 1;
  int64_t maxy = t->max_year > 0 ? t->max_year : 9999;
  int max_days = rule->max_days > 0 ? rule->max_days : 30;

  /* Values outside the calendar stay: 'infinity', BC dates, mysql zero
   * dates carry no personal information to shift. */
  if ((len >= 8 && (strncasecmp(in, "infinity", 8) == 0 || strncasecmp(in, "-infinity", 9) == 0)) ||
      (len >= 3 && memcmp(in + len - 3, " BC", 3) == 0) ||
      (len >= 10 && memcmp(in, "0000-00-00", 10) == 0)) {
    return dsd_buf_append(out, in, len);
  }
  if (parse_date(in, len, &y, &m, &d, &used) < 0) return DSD_EINVAL;
  if (c->rowkey != NULL) {
    dsd__anon_mac(c->key, "date_shift", c->rowkey, c->rowkey_len, NULL, 0, h);
  } else {
    dsd__anon_mac(c->key, "date_shift", in, len, NULL, 0, h);
  }
  u = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
  shift = 1 + (int64_t)((u >> 1) % (uint32_t)max_days);
  if (u & 1) shift = -shift;
  days = days_from_civil(y, m, d);
  civil_from_days(days + shift, &ny, &nm, &nd);
  if (ny < miny || ny > maxy) civil_from_days(days - shift, &ny, &nm, &nd);
  if (ny < miny || ny > maxy) {
    ny = y;
    nm = m;
    nd = d;
  }
  if (ny >= 0 && ny <= 9999) {
    /* The common case without printf: this runs once per value. */
    char d10[10] = {(char)('0' + ny / 1000), (char)('0' + ny / 100 % 10),
                    (char)('0' + ny / 10 % 10), (char)('0' + ny % 10), '-',
                    (char)('0' + nm / 10), (char)('0' + nm % 10), '-',
                    (char)('0' + nd / 10), (char)('0' + nd % 10)};
    if (dsd_buf_append(out, d10, sizeof d10) < 0) return DSD_ENOMEM;
  } else if (dsd_buf_printf(out, "%04" PRId64 "-%02u-%02u", ny, nm, nd) < 0) {
    return DSD_ENOMEM;
  }
  return dsd_buf_append(out, in + used, len - used);
}

/* A keyed time of day "HH:MM:SS" in place of the input's; fraction and
 * zone are kept. */
static int time_hash(const dsd__anon_ctx_t *c, const char *in, size_t len, dsd_buf_t *out) {
  size_t i = 0;
  unsigned char d[32];
  uint32_t secs;

  if (i < len && in[i] == '-') i++;
  while (i < len && isdigit((unsigned char)in[i])) i++;
  if (i == 0 || i + 6 > len || in[i] != ':' || !isdigit((unsigned char)in[i + 1]) ||
      !isdigit((unsigned char)in[i + 2]) || in[i + 3] != ':' ||
      !isdigit((unsigned char)in[i + 4]) || !isdigit((unsigned char)in[i + 5])) {
    return DSD_EINVAL;
  }
  i += 6;
  dsd__anon_mac(c->key, "time", in, len, NULL, 0, d);
  secs = ((uint32_t)d[0] << 16 | (uint32_t)d[1] << 8 | d[2]) % 86400;
  if (dsd_buf_printf(out, "%02u:%02u:%02u", secs / 3600, secs / 60 % 60, secs % 60) < 0) {
    return DSD_ENOMEM;
  }
  return dsd_buf_append(out, in + i, len - i);
}

/* ------------------------------------------------------------------ */
/* uuid and bytes                                                      */

static int hash_uuid(const dsd__anon_ctx_t *c, const char *in, size_t len, dsd_buf_t *out) {
  char norm[32];
  size_t n = 0;
  unsigned char d[32];
  char s[36];
  size_t k = 0;

  /* Case, braces and hyphens do not make a different uuid. */
  for (size_t i = 0; i < len; i++) {
    char ch = (char)tolower((unsigned char)in[i]);
    if (isxdigit((unsigned char)ch)) {
      if (n == 32) return DSD_EINVAL;
      norm[n++] = ch;
    } else if (ch != '-' && ch != '{' && ch != '}') {
      return DSD_EINVAL;
    }
  }
  if (n != 32) return DSD_EINVAL;
  dsd__anon_mac(c->key, "uuid", norm, n, NULL, 0, d);
  d[6] = (unsigned char)((d[6] & 0x0f) | 0x40); /* version 4 */
  d[8] = (unsigned char)((d[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s[k++] = '-';
    s[k++] = hexdigits[d[i] >> 4];
    s[k++] = hexdigits[d[i] & 0xf];
  }
  return dsd_buf_append(out, s, 36);
}

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

static int hash_bytes(const dsd__anon_ctx_t *c, const char *in, size_t len, dsd_buf_t *out) {
  bool hex = len >= 2 && in[0] == '\\' && in[1] == 'x';
  size_t n = hex ? (len - 2) / 2 : len;
  size_t start = out->len;
  int rc;

  if (hex) {
    if ((len - 2) % 2 != 0) return DSD_EINVAL;
    for (size_t i = 2; i < len; i++) {
      if (hexval(in[i]) < 0) return DSD_EINVAL;
    }
  }
  rc = dsd_buf_reserve(out, hex ? 2 + 2 * n : n);
  if (rc < 0) return rc;
  if (hex) dsd_buf_append(out, "\\x", 2);
  /* Write the raw bytes at the end, then expand them to hex from the back
   * so no second buffer is needed. */
  out->len += n;
  dsd__anon_stream(c->key, "bytes", in, len, (unsigned char *)out->data + out->len - n, n);
  if (hex) {
    unsigned char *raw = (unsigned char *)out->data + start + 2;
    out->len = start + 2 + 2 * n;
    for (size_t i = n; i-- > 0;) {
      unsigned char b = raw[i];
      raw[2 * i] = (unsigned char)hexdigits[b >> 4];
      raw[2 * i + 1] = (unsigned char)hexdigits[b & 0xf];
    }
  }
  out->data[out->len] = '\0';
  return 0;
}

/* ------------------------------------------------------------------ */
/* Constants                                                           */

int dsd__anon_check_constant(const dsd_anon_type_t *t, const char *v, size_t len,
                             const char **why) {
  int64_t y;
  unsigned m, d;
  size_t used;
  long double ld;
  bool neg;
  uint64_t mag;

  switch (t->kind) {
  case DSD_ANON_TEXT:
    if (t->max_len > 0 && dsd__anon_utf8_count(v, len) > (size_t)t->max_len) {
      *why = "longer than the column";
      return DSD_EINVAL;
    }
    return 0;
  case DSD_ANON_INT1:
  case DSD_ANON_INT2:
  case DSD_ANON_INT3:
  case DSD_ANON_INT4:
  case DSD_ANON_INT8:
    *why = "not an integer in the type's range";
    return parse_int(t, v, len, &neg, &mag);
  case DSD_ANON_NUMERIC:
  case DSD_ANON_FLOAT:
    *why = "not a number";
    return parse_ld(v, len, &ld);
  case DSD_ANON_DATE:
  case DSD_ANON_TIMESTAMP:
  case DSD_ANON_TIMESTAMPTZ:
    *why = "not a YYYY-MM-DD date";
    return parse_date(v, len, &y, &m, &d, &used);
  case DSD_ANON_UUID: {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
      if (isxdigit((unsigned char)v[i])) n++;
      else if (v[i] != '-') n = 99;
    }
    *why = "not a uuid";
    return n == 32 ? 0 : DSD_EINVAL;
  }
  case DSD_ANON_BOOL: {
    static const char *const pg[] = {"t", "f", "true", "false", "yes", "no", "on",
                                     "off", "1", "0", NULL};
    bool mysql = t->name && strncasecmp(t->name, "tinyint", 7) == 0;
    *why = mysql ? "not 0 or 1" : "not a boolean";
    for (size_t i = 0; pg[i]; i++) {
      if (strlen(pg[i]) == len && strncasecmp(pg[i], v, len) == 0 &&
          (!mysql || (len == 1 && (v[0] == '0' || v[0] == '1')))) {
        return 0;
      }
    }
    return DSD_EINVAL;
  }
  case DSD_ANON_JSON: {
    json_error_t e;
    json_t *j = json_loadb(v, len, JSON_DECODE_ANY, &e);
    *why = "not valid json";
    if (j == NULL) return DSD_EINVAL;
    json_decref(j);
    return 0;
  }
  default:
    return 0;
  }
}

/* ------------------------------------------------------------------ */
/* Dispatch                                                            */

static bool kind_is_int(dsd_anon_kind_t k) {
  return k == DSD_ANON_INT1 || k == DSD_ANON_INT2 || k == DSD_ANON_INT3 ||
         k == DSD_ANON_INT4 || k == DSD_ANON_INT8;
}

static int hash_by_type(const dsd__anon_ctx_t *c, const struct dsd__anon_rule *rule,
                        const dsd_anon_type_t *t, const char *in, size_t len,
                        dsd_buf_t *out) {
  if (t->kind == DSD_ANON_TEXT) return hash_text(c, rule, t, in, len, out);
  if (kind_is_int(t->kind)) return hash_int(c, t, in, len, out);
  if (t->kind == DSD_ANON_NUMERIC || t->kind == DSD_ANON_FLOAT) {
    if (is_special_number(in, len)) return dsd_buf_append(out, in, len);
    long double ld;
    if (parse_ld(in, len, &ld) < 0) return DSD_EINVAL;
    return replace_digits(c, "num", in, len, 0, true, true, out);
  }
  if (t->kind == DSD_ANON_UUID) return hash_uuid(c, in, len, out);
  if (t->kind == DSD_ANON_BYTES) return hash_bytes(c, in, len, out);
  return DSD_EINVAL;
}

int dsd__anon_scalar(const dsd__anon_ctx_t *c, const struct dsd__anon_rule *rule,
                     const dsd_anon_type_t *t, const char *in, size_t len,
                     dsd_buf_t *out) {
  size_t start = out->len;
  int rc;

  if (t->kind == DSD_ANON_TEXT && t->fixed_len) {
    /* char(n) pads with spaces that are not part of the value. */
    while (len > 0 && in[len - 1] == ' ') len--;
  }
  switch (rule->strategy) {
  case DSD__ANON_KEEP:
    rc = dsd_buf_append(out, in, len);
    break;
  case DSD__ANON_AUTO:
    switch (t->kind) {
    case DSD_ANON_DATE:
    case DSD_ANON_TIMESTAMP:
    case DSD_ANON_TIMESTAMPTZ:
      rc = date_shift(c, rule, t, in, len, out);
      break;
    case DSD_ANON_TIME:
      rc = time_hash(c, in, len, out);
      break;
    case DSD_ANON_BOOL:
      rc = dsd_buf_append(out, in, len);
      break;
    default:
      rc = hash_by_type(c, rule, t, in, len, out);
      break;
    }
    break;
  case DSD__ANON_HASH:
    rc = hash_by_type(c, rule, t, in, len, out);
    break;
  case DSD__ANON_EMAIL:
    rc = t->kind == DSD_ANON_TEXT ? email(c, rule, t, in, len, out) : DSD_EINVAL;
    break;
  case DSD__ANON_NAME:
    rc = t->kind == DSD_ANON_TEXT ? name(c, rule, in, len, out) : DSD_EINVAL;
    break;
  case DSD__ANON_PHONE:
  case DSD__ANON_DIGITS:
    if (t->kind == DSD_ANON_NUMERIC) {
      long double ld;
      if (parse_ld(in, len, &ld) < 0 && !is_special_number(in, len)) return DSD_EINVAL;
    } else if (t->kind != DSD_ANON_TEXT) {
      return DSD_EINVAL;
    }
    rc = replace_digits(c, "digits", in, len, (size_t)rule->keep_first, false,
                        t->kind == DSD_ANON_NUMERIC, out);
    break;
  case DSD__ANON_MASK:
    rc = t->kind == DSD_ANON_TEXT ? mask(rule, in, len, out) : DSD_EINVAL;
    break;
  case DSD__ANON_TRUNCATE:
    rc = t->kind == DSD_ANON_TEXT
             ? dsd_buf_append(out, in, dsd__anon_utf8_prefix(in, len, (size_t)rule->length))
             : DSD_EINVAL;
    break;
  case DSD__ANON_NOISE:
    rc = noise(c, rule, t, in, len, out);
    break;
  case DSD__ANON_DATE_SHIFT:
    rc = t->kind == DSD_ANON_DATE || t->kind == DSD_ANON_TIMESTAMP ||
                 t->kind == DSD_ANON_TIMESTAMPTZ || t->kind == DSD_ANON_TEXT
             ? date_shift(c, rule, t, in, len, out)
             : DSD_EINVAL;
    break;
  case DSD__ANON_REGEX_REPLACE:
    rc = t->kind == DSD_ANON_TEXT && rule->has_re ? regex_replace(rule, in, len, out)
                                                  : DSD_EINVAL;
    break;
  default:
    rc = DSD_EINVAL;
    break;
  }
  if (rc < 0) {
    out->len = start;
    if (out->data) out->data[start] = '\0';
    return rc;
  }
  if (t->kind == DSD_ANON_TEXT) cap_chars(out, start, t->max_len);
  return 0;
}

int dsd__anon_transform(const dsd__anon_ctx_t *c, const struct dsd__anon_rule *rule,
                        const dsd_anon_type_t *type, const char *in, size_t len,
                        bool is_null, dsd_buf_t *out, bool *out_null) {
  int rc;

  dsd_buf_reset(out);
  *out_null = false;
  if (!rule->has_path || type->kind != DSD_ANON_JSON) {
    if (rule->strategy == DSD__ANON_NULL) {
      *out_null = true;
      return 0;
    }
    if (rule->strategy == DSD__ANON_CONSTANT) {
      if (rule->value == NULL) {
        *out_null = true;
        return 0;
      }
      return dsd_buf_append(out, rule->value, rule->value_len);
    }
  }
  if (is_null) {
    *out_null = true;
    return 0;
  }
  if (rule->strategy == DSD__ANON_KEEP) return dsd_buf_append(out, in, len);
  if (type->kind == DSD_ANON_JSON) {
    rc = dsd__anon_json(c, rule, in, len, out);
  } else if (type->kind == DSD_ANON_ARRAY) {
    rc = dsd__anon_pgarray(c, rule, type, in, len, out);
  } else {
    rc = dsd__anon_scalar(c, rule, type, in, len, out);
  }
  if (rc < 0) dsd_buf_reset(out);
  return rc;
}
