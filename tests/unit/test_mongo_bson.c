/*
 * test_mongo_bson.c - unit tests of the MongoDB dialect's pure libbson parts
 * (dialects/mongo/mongo_bson.c and the URI helpers of mongo.c); no server.
 *
 * Covers: the document splitter (a stream of N documents cut at every
 * chunk size from 1 byte up reassembles into the same N documents, which
 * bson_reader also reads from the concatenated bytes; bad lengths and
 * invalid documents are refused), archive entry names and their escaping,
 * metadata.json compared with a file mongodump wrote (mongo-tools
 * testdata/timeseriesColl.metadata.json) and with mongodump's field rules
 * (options and uuid omitted when empty, indexes [] for a view, uuid as 32
 * hex digits), metadata parsing back, index spec conversion, URI parsing
 * and database selection, and field-path anonymization of nested
 * documents and arrays of documents.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bson/bson.h>

#include "anonymize/anonymize.h"
#include "core/error.h"
#include "dialects/mongo/mongo.h"

/* ------------------------------------------------------------------ */
/* Splitter                                                            */

typedef struct collected {
  bson_t **docs;
  size_t n, cap;
} collected_t;

static int collect(void *data, const bson_t *doc, dsd_err_t *err) {
  collected_t *c = data;
  if (c->n == c->cap) {
    c->cap = c->cap ? c->cap * 2 : 16;
    c->docs = realloc(c->docs, c->cap * sizeof *c->docs);
  }
  c->docs[c->n++] = bson_copy(doc);
  return 0;
}

static void collected_free(collected_t *c) {
  for (size_t i = 0; i < c->n; i++)
    bson_destroy(c->docs[i]);
  free(c->docs);
  memset(c, 0, sizeof *c);
}

/* N documents of varied sizes (some above 1 KiB, nested, every common
 * type) back to back. */
static void make_stream(size_t n, dsd_buf_t *out, bson_t ***docs) {
  *docs = calloc(n, sizeof **docs);
  for (size_t i = 0; i < n; i++) {
    bson_t *d = bson_new(), sub;
    bson_oid_t oid;
    char *big = malloc(i * 37 % 3000 + 1);
    memset(big, 'a' + (int)(i % 26), i * 37 % 3000);
    big[i * 37 % 3000] = '\0';
    bson_oid_init(&oid, NULL);
    BSON_APPEND_OID(d, "_id", &oid);
    BSON_APPEND_INT64(d, "i", (int64_t)i);
    BSON_APPEND_UTF8(d, "pad", big);
    BSON_APPEND_DOCUMENT_BEGIN(d, "address", &sub);
    BSON_APPEND_UTF8(&sub, "city", "Lyon");
    bson_append_document_end(d, &sub);
    BSON_APPEND_DOUBLE(d, "x", (double)i / 3.0);
    dsd_buf_append(out, bson_get_data(d), d->len);
    (*docs)[i] = d;
    free(big);
  }
}

static void test_docsplit_chunk_sizes(void **state) {
  const size_t n = 60;
  dsd_buf_t stream = DSD_BUF_INIT;
  bson_t **docs;
  static const size_t sizes[] = {1, 2, 3, 4, 5, 7, 64, 1000, 4096, 1 << 20};

  make_stream(n, &stream, &docs);
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    dsd__mongo_docsplit_t s = {0};
    collected_t got = {0};
    dsd_err_t err = {0};
    for (size_t off = 0; off < stream.len; off += sizes[k]) {
      size_t len = stream.len - off < sizes[k] ? stream.len - off : sizes[k];
      assert_int_equal(dsd__mongo_docsplit_feed(&s, stream.data + off, len, collect, &got, &err), 0);
    }
    assert_true(dsd__mongo_docsplit_clean(&s));
    assert_int_equal(got.n, n);
    assert_int_equal(s.docs, n);
    for (size_t i = 0; i < n; i++)
      assert_true(bson_equal(got.docs[i], docs[i]));
    collected_free(&got);
    dsd__mongo_docsplit_free(&s);
  }

  /* What mongorestore does with the concatenated file: bson_reader. */
  {
    bson_reader_t *rd = bson_reader_new_from_data((const uint8_t *)stream.data, stream.len);
    const bson_t *d;
    bool eof = false;
    size_t i = 0;
    while ((d = bson_reader_read(rd, &eof)) != NULL) {
      assert_true(i < n);
      assert_true(bson_equal(d, docs[i]));
      i++;
    }
    assert_true(eof);
    assert_int_equal(i, n);
    bson_reader_destroy(rd);
  }
  for (size_t i = 0; i < n; i++)
    bson_destroy(docs[i]);
  free(docs);
  dsd_buf_free(&stream);
}

static void test_docsplit_bad(void **state) {
  dsd__mongo_docsplit_t s = {0};
  collected_t got = {0};
  dsd_err_t err = {0};
  bson_t *d = BCON_NEW("a", BCON_INT32(1));
  uint8_t bad[64];

  /* A length prefix below the minimum. */
  memset(bad, 0, sizeof bad);
  bad[0] = 3;
  assert_int_equal(dsd__mongo_docsplit_feed(&s, bad, 8, collect, &got, &err), DSD_EPROTO);
  assert_non_null(strstr(err.msg, "bad length"));
  dsd__mongo_docsplit_free(&s);

  /* A length above 16 MiB, across two feeds. */
  memset(&s, 0, sizeof s);
  dsd_err_clear(&err);
  bad[0] = 0;
  bad[1] = 0;
  bad[2] = 0;
  bad[3] = 0x7f;
  assert_int_equal(dsd__mongo_docsplit_feed(&s, bad, 2, collect, &got, &err), 0);
  assert_int_equal(dsd__mongo_docsplit_feed(&s, bad + 2, 6, collect, &got, &err), DSD_EPROTO);
  dsd__mongo_docsplit_free(&s);

  /* Right length, broken content (the terminating NUL flipped). */
  memset(&s, 0, sizeof s);
  dsd_err_clear(&err);
  memcpy(bad, bson_get_data(d), d->len);
  bad[d->len - 1] = 1;
  assert_int_equal(dsd__mongo_docsplit_feed(&s, bad, d->len, collect, &got, &err), DSD_EPROTO);
  assert_non_null(strstr(err.msg, "not valid bson"));
  dsd__mongo_docsplit_free(&s);

  /* A cut document is reported as not clean. */
  memset(&s, 0, sizeof s);
  dsd_err_clear(&err);
  assert_int_equal(dsd__mongo_docsplit_feed(&s, bson_get_data(d), d->len - 1, collect, &got, &err), 0);
  assert_false(dsd__mongo_docsplit_clean(&s));
  assert_int_equal(got.n, 0);
  dsd__mongo_docsplit_free(&s);
  bson_destroy(d);
  collected_free(&got);
}

/* ------------------------------------------------------------------ */
/* Names                                                               */

static void test_entry_names(void **state) {
  dsd_buf_t b = DSD_BUF_INIT;
  assert_int_equal(dsd__mongo_entry_name("shop", "orders", ".bson", &b), 0);
  assert_string_equal(b.data, "mongo/shop/orders.bson");
  assert_int_equal(dsd__mongo_entry_name("shop", "a/b%c", ".metadata.json", &b), 0);
  assert_string_equal(b.data, "mongo/shop/a%2Fb%25c.metadata.json");
  assert_int_equal(dsd__mongo_entry_name("shop", "x\ty", "", &b), 0);
  assert_string_equal(b.data, "mongo/shop/x%09y");
  /* Dots and other punctuation stay, as in mongodump's file names. */
  assert_int_equal(dsd__mongo_entry_name("d", "a.b c-d$e", ".bson", &b), 0);
  assert_string_equal(b.data, "mongo/d/a.b c-d$e.bson");
  dsd_buf_free(&b);
}

/* ------------------------------------------------------------------ */
/* metadata.json                                                       */

/* mongodump 100.x output for a time-series collection, from
 * mongo-tools' mongodump/testdata/timeseriesColl.metadata.json. */
static const char mongodump_ts_metadata[] =
    "{\"options\":{\"timeseries\":{\"timeField\":\"ts\",\"metaField\":\"meta\",\"granularity\":"
    "\"seconds\",\"bucketMaxSpanSeconds\":{\"$numberInt\":\"3600\"}}},\"indexes\":[{\"v\":"
    "{\"$numberInt\":\"2\"},\"key\":{\"meta.device\":{\"$numberInt\":\"1\"}},\"name\":"
    "\"meta.device_1\"},{\"v\":{\"$numberInt\":\"2\"},\"key\":{\"ts\":{\"$numberInt\":\"1\"},"
    "\"meta.device\":{\"$numberInt\":\"1\"}},\"name\":\"ts_1_meta.device_1\"},{\"v\":"
    "{\"$numberInt\":\"2\"},\"key\":{\"meta.device\":{\"$numberInt\":\"1\"},\"ts\":"
    "{\"$numberInt\":\"1\"}},\"name\":\"meta.device_1_ts_1\"}],\"collectionName\":"
    "\"timeseriesColl\",\"type\":\"timeseries\"}";

static bson_t *json_doc(const char *j) {
  bson_error_t e;
  bson_t *b = bson_new_from_json((const uint8_t *)j, -1, &e);
  if (b == NULL)
    fail_msg("bad test json: %s", e.message);
  return b;
}

static void assert_keys(const bson_t *b, const char *const *keys) {
  bson_iter_t it;
  size_t i = 0;
  assert_true(bson_iter_init(&it, b));
  while (bson_iter_next(&it)) {
    assert_non_null(keys[i]);
    assert_string_equal(bson_iter_key(&it), keys[i]);
    i++;
  }
  assert_null(keys[i]);
}

static void test_metadata_like_mongodump(void **state) {
  /* What listCollections / listIndexes return for that collection (no
   * info.uuid on a time-series view of its buckets). */
  bson_t *info = json_doc(
      "{\"name\": \"timeseriesColl\", \"type\": \"timeseries\", \"options\": {\"timeseries\": "
      "{\"timeField\": \"ts\", \"metaField\": \"meta\", \"granularity\": \"seconds\", "
      "\"bucketMaxSpanSeconds\": {\"$numberInt\": \"3600\"}}}, \"info\": {\"readOnly\": false}}");
  bson_t *indexes = json_doc(
      "{\"0\": {\"v\": {\"$numberInt\": \"2\"}, \"key\": {\"meta.device\": {\"$numberInt\": \"1\"}},"
      " \"name\": \"meta.device_1\"}, \"1\": {\"v\": {\"$numberInt\": \"2\"}, \"key\": {\"ts\": "
      "{\"$numberInt\": \"1\"}, \"meta.device\": {\"$numberInt\": \"1\"}}, \"name\": "
      "\"ts_1_meta.device_1\"}, \"2\": {\"v\": {\"$numberInt\": \"2\"}, \"key\": {\"meta.device\": "
      "{\"$numberInt\": \"1\"}, \"ts\": {\"$numberInt\": \"1\"}}, \"name\": \"meta.device_1_ts_1\"}}");
  bson_t *want = json_doc(mongodump_ts_metadata), *got;
  char *json = NULL;
  dsd_err_t err = {0};
  static const char *const keys[] = {"options", "indexes", "collectionName", "type", NULL};

  assert_int_equal(dsd__mongo_metadata_json(info, indexes, &json, &err), 0);
  /* Canonical extended JSON, as mongodump writes (MarshalExtJSON canonical). */
  assert_non_null(strstr(json, "\"$numberInt\" : \"3600\""));
  got = json_doc(json);
  assert_true(bson_equal(got, want));
  assert_keys(got, keys);
  bson_destroy(got);
  bson_free(json);
  bson_destroy(want);
  bson_destroy(info);
  bson_destroy(indexes);
}

static void test_metadata_uuid_view_empty_options(void **state) {
  bson_t *info = bson_new(), *indexes, *got, opts = BSON_INITIALIZER, infodoc;
  uint8_t uuid[16];
  char *json = NULL;
  dsd_err_t err = {0};
  bson_iter_t it;
  static const char *const keys[] = {"indexes", "uuid", "collectionName", "type", NULL};
  static const char *const vkeys[] = {"options", "indexes", "collectionName", "type", NULL};

  for (int i = 0; i < 16; i++)
    uuid[i] = (uint8_t)(i * 17);
  BSON_APPEND_UTF8(info, "name", "people");
  BSON_APPEND_UTF8(info, "type", "collection");
  BSON_APPEND_DOCUMENT(info, "options", &opts); /* empty: left out */
  BSON_APPEND_DOCUMENT_BEGIN(info, "info", &infodoc);
  BSON_APPEND_BOOL(&infodoc, "readOnly", false);
  bson_append_binary(&infodoc, "uuid", -1, BSON_SUBTYPE_UUID, uuid, 16);
  bson_append_document_end(info, &infodoc);
  indexes = json_doc("{\"0\": {\"v\": 2, \"key\": {\"_id\": 1}, \"name\": \"_id_\"}}");
  assert_int_equal(dsd__mongo_metadata_json(info, indexes, &json, &err), 0);
  got = json_doc(json);
  assert_keys(got, keys);
  assert_true(bson_iter_init_find(&it, got, "uuid"));
  assert_string_equal(bson_iter_utf8(&it, NULL), "00112233445566778899aabbccddeeff");
  assert_true(bson_iter_init_find(&it, got, "indexes"));
  assert_true(BSON_ITER_HOLDS_ARRAY(&it));
  bson_destroy(got);
  bson_free(json);
  bson_destroy(info);

  /* A view: options viewOn/pipeline, indexes [] whatever is passed. */
  info = json_doc("{\"name\": \"adults\", \"type\": \"view\", \"options\": {\"viewOn\": "
                  "\"people\", \"pipeline\": [{\"$match\": {\"age\": {\"$gte\": 18}}}]}, "
                  "\"info\": {\"readOnly\": true}}");
  assert_int_equal(dsd__mongo_metadata_json(info, indexes, &json, &err), 0);
  got = json_doc(json);
  assert_keys(got, vkeys);
  assert_true(bson_iter_init_find(&it, got, "indexes"));
  {
    uint32_t len;
    const uint8_t *data;
    bson_t arr;
    bson_iter_array(&it, &len, &data);
    bson_init_static(&arr, data, len);
    assert_true(bson_empty(&arr));
  }
  assert_true(bson_iter_init(&it, got));
  assert_true(bson_iter_find_descendant(&it, "options.viewOn", &it));
  assert_string_equal(bson_iter_utf8(&it, NULL), "people");
  bson_destroy(got);
  bson_free(json);
  bson_destroy(info);
  bson_destroy(indexes);

  /* A nameless collection is an error. */
  info = json_doc("{\"type\": \"collection\"}");
  assert_int_equal(dsd__mongo_metadata_json(info, NULL, &json, &err), DSD_EPROTO);
  assert_null(json);
  bson_destroy(info);
}

static void test_metadata_parse(void **state) {
  dsd__mongo_meta_t m;
  dsd_err_t err = {0};
  bson_iter_t it;
  bson_t *want;

  assert_int_equal(dsd__mongo_meta_parse(mongodump_ts_metadata, strlen(mongodump_ts_metadata),
                                         &m, &err), 0);
  assert_string_equal(m.name, "timeseriesColl");
  assert_string_equal(m.type, "timeseries");
  assert_true(bson_iter_init(&it, &m.options));
  assert_true(bson_iter_find_descendant(&it, "timeseries.timeField", &it));
  assert_string_equal(bson_iter_utf8(&it, NULL), "ts");
  assert_int_equal(bson_count_keys(&m.indexes), 3);
  want = json_doc("{\"v\": 2, \"key\": {\"meta.device\": 1}, \"name\": \"meta.device_1\"}");
  assert_true(bson_iter_init_find(&it, &m.indexes, "0"));
  {
    uint32_t len;
    const uint8_t *data;
    bson_t ix;
    bson_iter_document(&it, &len, &data);
    bson_init_static(&ix, data, len);
    assert_true(bson_equal(&ix, want));
  }
  bson_destroy(want);
  dsd__mongo_meta_free(&m);

  /* No collectionName; not JSON. */
  assert_int_equal(dsd__mongo_meta_parse("{\"indexes\": []}", 15, &m, &err), DSD_EPROTO);
  assert_non_null(strstr(err.msg, "collectionName"));
  dsd__mongo_meta_free(&m);
  dsd_err_clear(&err);
  assert_int_equal(dsd__mongo_meta_parse("{nope", 5, &m, &err), DSD_EPROTO);
  dsd__mongo_meta_free(&m);
  /* Default type. */
  assert_int_equal(dsd__mongo_meta_parse("{\"collectionName\": \"c\", \"indexes\": []}", 38, &m, &err), 0);
  assert_string_equal(m.type, "collection");
  dsd__mongo_meta_free(&m);
}

static void test_index_spec(void **state) {
  bson_t *listed, out = BSON_INITIALIZER, *want;

  /* Pre-4.4 servers list "ns", which createIndexes refuses. */
  listed = json_doc("{\"v\": 1, \"unique\": true, \"key\": {\"email\": 1, \"at\": -1}, "
                    "\"name\": \"email_1_at_-1\", \"ns\": \"shop.people\", "
                    "\"partialFilterExpression\": {\"age\": {\"$gt\": 5}}}");
  want = json_doc("{\"v\": 1, \"unique\": true, \"key\": {\"email\": 1, \"at\": -1}, "
                  "\"name\": \"email_1_at_-1\", \"partialFilterExpression\": {\"age\": {\"$gt\": 5}}}");
  assert_int_equal(dsd__mongo_index_spec(listed, &out), 0);
  assert_true(bson_equal(&out, want));
  bson_destroy(listed);
  bson_destroy(want);
  bson_reinit(&out);

  /* Text and TTL indexes keep every option. */
  listed = json_doc("{\"v\": 2, \"key\": {\"_fts\": \"text\", \"_ftsx\": 1}, \"name\": \"t\", "
                    "\"weights\": {\"body\": 1}, \"default_language\": \"english\", "
                    "\"textIndexVersion\": 3}");
  assert_int_equal(dsd__mongo_index_spec(listed, &out), 0);
  assert_true(bson_equal(&out, listed));
  bson_destroy(listed);
  bson_reinit(&out);

  /* The _id index and a clustered index come with the collection. */
  listed = json_doc("{\"v\": 2, \"key\": {\"_id\": 1}, \"name\": \"_id_\"}");
  assert_int_equal(dsd__mongo_index_spec(listed, &out), 1);
  bson_destroy(listed);
  bson_reinit(&out);
  listed = json_doc("{\"v\": 2, \"key\": {\"_id\": 1}, \"name\": \"c\", \"unique\": true, "
                    "\"clustered\": true}");
  assert_int_equal(dsd__mongo_index_spec(listed, &out), 1);
  bson_destroy(listed);
  bson_reinit(&out);

  /* No key: malformed. */
  listed = json_doc("{\"v\": 2, \"name\": \"x\"}");
  assert_true(dsd__mongo_index_spec(listed, &out) < 0);
  bson_destroy(listed);
  bson_destroy(&out);
}

/* ------------------------------------------------------------------ */
/* URI and selection                                                   */

static void test_uri_db(void **state) {
  char *db = NULL;
  dsd_err_t err = {0};

  assert_int_equal(dsd__mongo_uri_db("mongodb://u:sekret-pw@h:27017/shop?authSource=admin", &db,
                                     &err), 0);
  assert_string_equal(db, "shop");
  bson_free(db);
  assert_int_equal(dsd__mongo_uri_db("mongodb://u:sekret-pw@h1,h2/?replicaSet=rs0", &db, &err), 0);
  assert_null(db);
  /* SRV: parsed without a DNS lookup (that happens at connect time). */
  assert_int_equal(dsd__mongo_uri_db("mongodb+srv://u:sekret-pw@cluster0.example.invalid/crm"
                                     "?retryWrites=true", &db, &err), 0);
  assert_string_equal(db, "crm");
  bson_free(db);
  assert_int_equal(dsd__mongo_uri_db("mongodb://h", &db, &err), 0);
  assert_null(db);
  /* Not a mongodb uri; the message must not quote it (it may hold a
   * password). */
  assert_int_equal(dsd__mongo_uri_db("mongodb://u:topsecret99@", &db, &err), DSD_EINVAL);
  assert_null(strstr(err.msg, "topsecret99"));
  assert_non_null(strstr(err.msg, "HINT: "));

  assert_false(dsd__mongo_db_selected("admin"));
  assert_false(dsd__mongo_db_selected("local"));
  assert_false(dsd__mongo_db_selected("config"));
  assert_true(dsd__mongo_db_selected("shop"));
  assert_true(dsd__mongo_db_selected("administration"));
  assert_false(dsd__mongo_coll_selected("system.views"));
  assert_false(dsd__mongo_coll_selected("system.profile"));
  assert_true(dsd__mongo_coll_selected("system.js"));
  assert_true(dsd__mongo_coll_selected("systems"));
  assert_true(dsd__mongo_coll_selected("people"));
}

/* ------------------------------------------------------------------ */
/* Anonymization                                                       */

static dsd_anon_rules_t *rules_from(const char *j) {
  json_error_t je;
  json_t *root = json_loads(j, 0, &je);
  dsd_anon_rules_t *r = NULL;
  dsd_err_t err = {0};
  assert_non_null(root);
  if (dsd_anon_rules_parse(root, &r, &err) != 0)
    fail_msg("rules: %s", err.msg);
  json_decref(root);
  return r;
}

static const char *str_at(const bson_t *b, const char *path) {
  bson_iter_t it, d;
  if (!bson_iter_init(&it, b) || !bson_iter_find_descendant(&it, path, &d))
    return NULL;
  return BSON_ITER_HOLDS_UTF8(&d) ? bson_iter_utf8(&d, NULL) : NULL;
}

static bson_type_t type_at(const bson_t *b, const char *path) {
  bson_iter_t it, d;
  if (!bson_iter_init(&it, b) || !bson_iter_find_descendant(&it, path, &d))
    return BSON_TYPE_EOD;
  return bson_iter_type(&d);
}

static void test_anon_nested_and_arrays(void **state) {
  dsd_anon_rules_t *r = rules_from(
      "{\"salt\": \"a fixed test salt\", \"tables\": {\"shop.people\": {"
      "\"email\": \"email\", \"address.city\": \"hash\", \"items.sku\": \"hash\", "
      "\"tags\": \"hash\", \"age\": {\"strategy\": \"constant\", \"value\": 40}, "
      "\"born\": \"date_shift\", \"notes\": \"null\"}}}");
  dsd_anon_table_plan_t *plan = NULL;
  dsd_err_t err = {0};
  dsd_buf_t scratch = DSD_BUF_INIT;
  bson_t *in = json_doc(
      "{\"_id\": {\"$oid\": \"65a1b2c3d4e5f60718293a4b\"}, \"email\": \"ann@example.org\", "
      "\"name\": \"Ann\", \"address\": {\"city\": \"Lyon\", \"zip\": \"69001\"}, "
      "\"items\": [{\"sku\": \"A-1\", \"qty\": 2}, {\"sku\": \"B-2\", \"qty\": 1}, {\"qty\": 5}], "
      "\"tags\": [\"vip\", \"early\"], \"age\": {\"$numberInt\": \"33\"}, "
      "\"born\": {\"$date\": \"1990-05-17T10:00:00Z\"}, \"notes\": \"call after 6\"}");
  bson_t out = BSON_INITIALIZER, out2 = BSON_INITIALIZER;
  bson_iter_t it;

  assert_int_equal(dsd_anon_plan_table(r, "shop.people", NULL, 0, &plan, &err), 0);
  assert_non_null(plan);
  assert_int_equal(dsd__mongo_anon_doc(plan, in, &out, &scratch, &err), 0);

  /* Untouched fields and structure. */
  assert_int_equal(type_at(&out, "_id"), BSON_TYPE_OID);
  assert_true(bson_iter_init_find(&it, &out, "_id"));
  {
    char hex[25];
    bson_oid_to_string(bson_iter_oid(&it), hex);
    assert_string_equal(hex, "65a1b2c3d4e5f60718293a4b");
  }
  assert_string_equal(str_at(&out, "name"), "Ann");
  assert_string_equal(str_at(&out, "address.zip"), "69001");
  assert_int_equal(bson_count_keys(&out), bson_count_keys(in));
  /* Transformed, types kept. */
  assert_non_null(str_at(&out, "email"));
  assert_string_not_equal(str_at(&out, "email"), "ann@example.org");
  assert_non_null(strstr(str_at(&out, "email"), "@example.com"));
  assert_non_null(str_at(&out, "address.city"));
  assert_string_not_equal(str_at(&out, "address.city"), "Lyon");
  assert_int_equal(type_at(&out, "items"), BSON_TYPE_ARRAY);
  assert_non_null(str_at(&out, "items.0.sku"));
  assert_string_not_equal(str_at(&out, "items.0.sku"), "A-1");
  assert_string_not_equal(str_at(&out, "items.1.sku"), "B-2");
  assert_string_not_equal(str_at(&out, "items.0.sku"), str_at(&out, "items.1.sku"));
  assert_int_equal(type_at(&out, "items.0.qty"), BSON_TYPE_INT32);
  assert_int_equal(type_at(&out, "items.2.sku"), BSON_TYPE_EOD);
  assert_int_equal(type_at(&out, "tags"), BSON_TYPE_ARRAY);
  assert_int_equal(type_at(&out, "tags.0"), BSON_TYPE_UTF8);
  assert_string_not_equal(str_at(&out, "tags.0"), "vip");
  assert_int_equal(type_at(&out, "age"), BSON_TYPE_INT32);
  assert_true(bson_iter_init_find(&it, &out, "age"));
  assert_int_equal(bson_iter_int32(&it), 40);
  assert_int_equal(type_at(&out, "born"), BSON_TYPE_DATE_TIME);
  assert_true(bson_iter_init_find(&it, &out, "born"));
  {
    int64_t ms = bson_iter_date_time(&it), orig = 642938400000LL;
    int64_t diff = ms > orig ? ms - orig : orig - ms;
    assert_true(diff != 0);
    assert_true(diff <= 30LL * 86400 * 1000);
    assert_int_equal(diff % (86400 * 1000), 0); /* time of day kept */
  }
  assert_int_equal(type_at(&out, "notes"), BSON_TYPE_NULL);

  /* Deterministic with a fixed salt: equal input, equal output. */
  assert_int_equal(dsd__mongo_anon_doc(plan, in, &out2, &scratch, &err), 0);
  assert_true(bson_equal(&out, &out2));

  bson_destroy(&out);
  bson_destroy(&out2);
  bson_destroy(in);
  dsd_anon_plan_free(plan);
  dsd_anon_rules_free(r);
  dsd_buf_free(&scratch);
}

static void test_anon_types(void **state) {
  dsd_anon_rules_t *r = rules_from(
      "{\"salt\": \"a fixed test salt\", \"tables\": {\"d.c\": {"
      "\"oid\": \"hash\", \"bin\": \"hash\", \"n64\": \"hash\", \"dbl\": "
      "{\"strategy\": \"noise\", \"ratio\": 0.1}, \"dec\": \"hash\", \"flag\": \"null\", "
      "\"sub\": \"hash\", \"missing_here\": \"hash\", \"nothing\": {\"strategy\": \"constant\", "
      "\"value\": \"x\"}}}}");
  dsd_anon_table_plan_t *plan = NULL;
  dsd_err_t err = {0};
  dsd_buf_t scratch = DSD_BUF_INIT;
  bson_t *in = json_doc(
      "{\"oid\": {\"$oid\": \"65a1b2c3d4e5f60718293a4b\"}, "
      "\"bin\": {\"$binary\": {\"base64\": \"AAECAwQ=\", \"subType\": \"00\"}}, "
      "\"n64\": {\"$numberLong\": \"1234567890123\"}, \"dbl\": 100.5, "
      "\"dec\": {\"$numberDecimal\": \"12.34\"}, \"flag\": true, "
      "\"sub\": {\"a\": \"secret\", \"b\": 2}, \"nothing\": null}");
  bson_t out = BSON_INITIALIZER;
  bson_iter_t it;

  assert_int_equal(dsd_anon_plan_table(r, "d.c", NULL, 0, &plan, &err), 0);
  assert_int_equal(dsd__mongo_anon_doc(plan, in, &out, &scratch, &err), 0);
  assert_int_equal(type_at(&out, "oid"), BSON_TYPE_OID);
  assert_true(bson_iter_init_find(&it, &out, "oid"));
  {
    char hex[25];
    bson_oid_to_string(bson_iter_oid(&it), hex);
    assert_string_not_equal(hex, "65a1b2c3d4e5f60718293a4b");
  }
  assert_int_equal(type_at(&out, "bin"), BSON_TYPE_BINARY);
  assert_true(bson_iter_init_find(&it, &out, "bin"));
  {
    bson_subtype_t st;
    uint32_t len;
    const uint8_t *b;
    bson_iter_binary(&it, &st, &len, &b);
    assert_int_equal(len, 5);
    assert_int_equal(st, BSON_SUBTYPE_BINARY);
    assert_false(memcmp(b, "\x00\x01\x02\x03\x04", 5) == 0);
  }
  assert_int_equal(type_at(&out, "n64"), BSON_TYPE_INT64);
  assert_true(bson_iter_init_find(&it, &out, "n64"));
  assert_true(bson_iter_int64(&it) != 1234567890123LL);
  assert_int_equal(type_at(&out, "dbl"), BSON_TYPE_DOUBLE);
  assert_true(bson_iter_init_find(&it, &out, "dbl"));
  assert_true(bson_iter_double(&it) >= 90.45 && bson_iter_double(&it) <= 110.55);
  assert_int_equal(type_at(&out, "dec"), BSON_TYPE_DECIMAL128);
  assert_int_equal(type_at(&out, "flag"), BSON_TYPE_NULL);
  /* A rule on a whole subdocument: every string inside hashed, the
   * numbers kept, still a document. */
  assert_int_equal(type_at(&out, "sub"), BSON_TYPE_DOCUMENT);
  assert_non_null(str_at(&out, "sub.a"));
  assert_string_not_equal(str_at(&out, "sub.a"), "secret");
  assert_int_equal(type_at(&out, "sub.b"), BSON_TYPE_INT32);
  /* A constant replaces a null. */
  assert_string_equal(str_at(&out, "nothing"), "x");
  bson_destroy(&out);
  bson_destroy(in);
  dsd_anon_plan_free(plan);
  dsd_anon_rules_free(r);
  dsd_buf_free(&scratch);
}

static void test_anon_allow_list(void **state) {
  /* default anonymize: everything not kept is transformed, nested too. */
  dsd_anon_rules_t *r = rules_from(
      "{\"salt\": \"a fixed test salt\", \"default\": \"anonymize\", \"tables\": {\"d.c\": {"
      "\"_id\": \"keep\", \"address.zip\": \"keep\"}}}");
  dsd_anon_table_plan_t *plan = NULL;
  dsd_err_t err = {0};
  dsd_buf_t scratch = DSD_BUF_INIT;
  bson_t *in = json_doc("{\"_id\": 7, \"name\": \"Ann\", \"address\": {\"city\": \"Lyon\", "
                        "\"zip\": \"69001\"}, \"vip\": true}");
  bson_t out = BSON_INITIALIZER;
  bson_iter_t it;

  assert_int_equal(dsd_anon_plan_table(r, "d.c", NULL, 0, &plan, &err), 0);
  assert_non_null(plan);
  assert_int_equal(dsd__mongo_anon_doc(plan, in, &out, &scratch, &err), 0);
  assert_true(bson_iter_init_find(&it, &out, "_id"));
  assert_int_equal(bson_iter_int32(&it), 7);
  assert_string_not_equal(str_at(&out, "name"), "Ann");
  assert_string_not_equal(str_at(&out, "address.city"), "Lyon");
  assert_string_equal(str_at(&out, "address.zip"), "69001");
  assert_int_equal(type_at(&out, "vip"), BSON_TYPE_BOOL); /* booleans kept */
  bson_destroy(&out);
  bson_destroy(in);
  dsd_anon_plan_free(plan);
  dsd_anon_rules_free(r);
  dsd_buf_free(&scratch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_docsplit_chunk_sizes),
      cmocka_unit_test(test_docsplit_bad),
      cmocka_unit_test(test_entry_names),
      cmocka_unit_test(test_metadata_like_mongodump),
      cmocka_unit_test(test_metadata_uuid_view_empty_options),
      cmocka_unit_test(test_metadata_parse),
      cmocka_unit_test(test_index_spec),
      cmocka_unit_test(test_uri_db),
      cmocka_unit_test(test_anon_nested_and_arrays),
      cmocka_unit_test(test_anon_types),
      cmocka_unit_test(test_anon_allow_list),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
