/*
 * test_mongo_tool.c - a small MongoDB client for the integration tests
 * (tests/integration/test_mongo_*.py through tests/harness/mongo.py): the
 * tests are Python stdlib only, which has no MongoDB driver, so they run
 * their commands through libmongoc with this tool. Not a unit test and not
 * registered with ctest.
 *
 * The server URI comes from the environment (DSD_MONGO_TOOL_URI), never
 * from argv, since it carries a password.
 *
 *   test_mongo_tool command DB JSON    runs the command (extended JSON; "-"
 *                                      reads it from stdin), prints the
 *                                      reply (relaxed JSON)
 *   test_mongo_tool find DB COLL       prints every document, one per line,
 *                                      sorted by _id (canonical JSON)
 *   test_mongo_tool indexes DB COLL    prints listIndexes, one per line
 *   test_mongo_tool collections DB     prints listCollections, one per line
 *   test_mongo_tool insert DB COLL N   inserts N generated documents
 *                                      {_id: i, n: i, pad: 1 KiB string}
 * Exit status 0, or 1 with the error on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mongoc/mongoc.h>

static int print_cursor(mongoc_cursor_t *cur, int canonical) {
  const bson_t *doc;
  bson_error_t e;
  while (mongoc_cursor_next(cur, &doc)) {
    char *j = canonical ? bson_as_canonical_extended_json(doc, NULL)
                        : bson_as_relaxed_extended_json(doc, NULL);
    puts(j);
    bson_free(j);
  }
  if (mongoc_cursor_error(cur, &e)) {
    fprintf(stderr, "test_mongo_tool: %s\n", e.message);
    mongoc_cursor_destroy(cur);
    return 1;
  }
  mongoc_cursor_destroy(cur);
  return 0;
}

int main(int argc, char **argv) {
  const char *uri = getenv("DSD_MONGO_TOOL_URI");
  mongoc_client_t *client = NULL;
  bson_error_t e;
  int status = 1;

  if (uri == NULL || argc < 3) {
    fprintf(stderr, "usage: DSD_MONGO_TOOL_URI=... test_mongo_tool command|find|indexes|"
                    "collections|insert DB [ARG...]\n");
    return 2;
  }
  mongoc_init();
  client = mongoc_client_new(uri);
  if (client == NULL) {
    fprintf(stderr, "test_mongo_tool: bad uri\n");
    goto cleanup;
  }
  mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
  if (!strcmp(argv[1], "command") && argc == 4) {
    bson_t *cmd, reply;
    char *j, *text = argv[3];
    if (!strcmp(text, "-")) {
      /* Large commands (inserts) exceed what argv can carry. */
      size_t cap = 1 << 16, len = 0, n;
      text = malloc(cap);
      while (text && (n = fread(text + len, 1, cap - len - 1, stdin)) > 0) {
        len += n;
        if (len + 1 == cap)
          text = realloc(text, cap *= 2);
      }
      if (text == NULL)
        goto cleanup;
      text[len] = '\0';
    }
    cmd = bson_new_from_json((const uint8_t *)text, -1, &e);
    if (text != argv[3])
      free(text);
    if (cmd == NULL) {
      fprintf(stderr, "test_mongo_tool: %s\n", e.message);
      goto cleanup;
    }
    if (!mongoc_client_command_simple(client, argv[2], cmd, NULL, &reply, &e)) {
      fprintf(stderr, "test_mongo_tool: %s\n", e.message);
      bson_destroy(&reply);
      bson_destroy(cmd);
      goto cleanup;
    }
    j = bson_as_relaxed_extended_json(&reply, NULL);
    puts(j);
    bson_free(j);
    bson_destroy(&reply);
    bson_destroy(cmd);
    status = 0;
  } else if (!strcmp(argv[1], "find") && argc == 4) {
    mongoc_collection_t *c = mongoc_client_get_collection(client, argv[2], argv[3]);
    bson_t filter = BSON_INITIALIZER;
    bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}");
    status = print_cursor(mongoc_collection_find_with_opts(c, &filter, opts, NULL), 1);
    bson_destroy(opts);
    bson_destroy(&filter);
    mongoc_collection_destroy(c);
  } else if (!strcmp(argv[1], "indexes") && argc == 4) {
    mongoc_collection_t *c = mongoc_client_get_collection(client, argv[2], argv[3]);
    status = print_cursor(mongoc_collection_find_indexes_with_opts(c, NULL), 0);
    mongoc_collection_destroy(c);
  } else if (!strcmp(argv[1], "collections") && argc == 3) {
    mongoc_database_t *d = mongoc_client_get_database(client, argv[2]);
    status = print_cursor(mongoc_database_find_collections_with_opts(d, NULL), 0);
    mongoc_database_destroy(d);
  } else if (!strcmp(argv[1], "insert") && argc == 5) {
    mongoc_collection_t *c = mongoc_client_get_collection(client, argv[2], argv[3]);
    long n = atol(argv[4]);
    char pad[1025];
    memset(pad, 'x', 1024);
    pad[1024] = '\0';
    status = 0;
    for (long i = 0; i < n && status == 0;) {
      mongoc_bulk_operation_t *b = mongoc_collection_create_bulk_operation_with_opts(c, NULL);
      bson_t reply;
      for (long k = 0; k < 1000 && i < n; k++, i++) {
        bson_t *d = BCON_NEW("_id", BCON_INT64(i), "n", BCON_INT64(i), "pad", BCON_UTF8(pad));
        mongoc_bulk_operation_insert(b, d);
        bson_destroy(d);
      }
      if (!mongoc_bulk_operation_execute(b, &reply, &e)) {
        fprintf(stderr, "test_mongo_tool: %s\n", e.message);
        status = 1;
      }
      bson_destroy(&reply);
      mongoc_bulk_operation_destroy(b);
    }
    mongoc_collection_destroy(c);
  } else {
    fprintf(stderr, "test_mongo_tool: unknown command or wrong arguments\n");
    status = 2;
  }
cleanup:
  if (client)
    mongoc_client_destroy(client);
  mongoc_cleanup();
  return status;
}
