/*
 * test_broker_catalog.c - the catalog's shape: one service with fixed ids,
 * three plans, draft-04 parameter schemas, and fields gated by API version.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "broker/broker.h"

static const char *str(json_t *o, const char *path) {
  return json_string_value(json_object_get(o, path));
}

static void test_service(void **state) {
  json_t *cat = dsd_broker_catalog(17);
  assert_non_null(cat);
  json_t *svcs = json_object_get(cat, "services");
  assert_int_equal(json_array_size(svcs), 1);
  json_t *s = json_array_get(svcs, 0);
  assert_string_equal(str(s, "id"), DSD_BROKER_SERVICE_ID);
  assert_string_equal(str(s, "name"), "data-service-dump");
  assert_true(json_is_true(json_object_get(s, "bindable")));
  assert_true(json_is_true(json_object_get(s, "instances_retrievable")));
  assert_true(json_is_true(json_object_get(s, "bindings_retrievable")));
  assert_true(json_is_false(json_object_get(s, "plan_updateable")));
  assert_true(json_is_true(json_object_get(json_object_get(s, "metadata"), "shareable")));
  assert_non_null(str(json_object_get(s, "metadata"), "displayName"));
  assert_non_null(str(s, "description"));
  json_t *plans = json_object_get(s, "plans");
  assert_int_equal(json_array_size(plans), 3);
  static const char *names[] = {"pg", "mysql", "mongo"};
  for (size_t i = 0; i < 3; i++) {
    json_t *p = json_array_get(plans, i);
    assert_string_equal(str(p, "name"), names[i]);
    const dsd_broker_plan_t *bp = dsd_broker_plan_by_id(str(p, "id"));
    assert_non_null(bp);
    assert_string_equal(bp->name, names[i]);
    assert_true(json_integer_value(json_object_get(p, "maximum_polling_duration")) >= 86400);
    assert_true(json_is_false(json_object_get(p, "plan_updateable")));
    for (size_t k = 0; k < i; k++)
      assert_string_not_equal(str(p, "id"), str(json_array_get(plans, k), "id"));
  }
  json_decref(cat);
}

static void test_schemas(void **state) {
  json_t *cat = dsd_broker_catalog(17);
  json_t *p = json_array_get(json_object_get(json_array_get(json_object_get(cat, "services"), 0), "plans"), 0);
  json_t *sc = json_object_get(p, "schemas");
  json_t *create = json_object_get(json_object_get(json_object_get(sc, "service_instance"), "create"), "parameters");
  json_t *update = json_object_get(json_object_get(json_object_get(sc, "service_instance"), "update"), "parameters");
  json_t *bind = json_object_get(json_object_get(json_object_get(sc, "service_binding"), "create"), "parameters");
  assert_non_null(create);
  assert_non_null(update);
  assert_non_null(bind);
  assert_string_equal(str(create, "$schema"), "http://json-schema.org/draft-04/schema#");
  assert_string_equal(str(update, "$schema"), "http://json-schema.org/draft-04/schema#");
  json_t *props = json_object_get(create, "properties");
  assert_non_null(json_object_get(props, "source"));
  assert_non_null(json_object_get(props, "source_uri"));
  assert_string_equal(str(json_object_get(props, "anonymize"), "type"), "object");
  json_t *en = json_object_get(json_object_get(props, "compression"), "enum");
  assert_int_equal(json_array_size(en), 3);
  assert_string_equal(json_string_value(json_array_get(en, 0)), "zstd");
  assert_true(json_is_false(json_object_get(create, "additionalProperties")));
  /* pg plan: the URI pattern names the pg schemes */
  assert_non_null(strstr(str(json_object_get(props, "source_uri"), "pattern"), "postgresql"));
  props = json_object_get(update, "properties");
  assert_non_null(json_object_get(props, "target"));
  assert_non_null(json_object_get(props, "target_uri"));
  assert_true(json_is_true(json_object_get(json_object_get(props, "clean"), "default")));
  json_decref(cat);
}

static void test_version_gating(void **state) {
  json_t *cat = dsd_broker_catalog(13);
  json_t *s = json_array_get(json_object_get(cat, "services"), 0);
  assert_null(json_object_get(s, "instances_retrievable"));
  assert_null(json_object_get(s, "bindings_retrievable"));
  json_t *p = json_array_get(json_object_get(s, "plans"), 0);
  assert_null(json_object_get(p, "maximum_polling_duration"));
  assert_null(json_object_get(p, "plan_updateable"));
  json_decref(cat);
  cat = dsd_broker_catalog(14);
  s = json_array_get(json_object_get(cat, "services"), 0);
  assert_non_null(json_object_get(s, "instances_retrievable"));
  p = json_array_get(json_object_get(s, "plans"), 0);
  assert_null(json_object_get(p, "maximum_polling_duration"));
  json_decref(cat);
  assert_null(dsd_broker_plan_by_id("nope"));
  assert_null(dsd_broker_plan_by_id(NULL));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_service),
      cmocka_unit_test(test_schemas),
      cmocka_unit_test(test_version_gating),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
