/*
 * catalog.c - the broker's catalog: one service, data-service-dump, with
 * one plan per dialect (pg, mysql, mongo).
 *
 * Ids are fixed UUIDs: the platform stores them with every instance, so
 * they must never change between releases. Each plan carries JSON schemas
 * (draft-04, as the OSB spec requires) that describe the same rules
 * params.c enforces; the schemas inform `cf marketplace -e` and the CLI,
 * params.c is what actually decides.
 *
 * dsd_broker_catalog(minor) drops the fields an older API version does not
 * define (instances_retrievable / bindings_retrievable / plan-level
 * plan_updateable arrived in 2.14, maximum_polling_duration in 2.15).
 */
#include <string.h>

#include "broker/broker.h"

static const char *const dsd__pg_schemes[] = {"postgresql", "postgres", NULL};
static const char *const dsd__mysql_schemes[] = {"mysql", NULL};
static const char *const dsd__mongo_schemes[] = {"mongodb", "mongodb+srv", NULL};

static const dsd_broker_plan_t dsd__plans[] = {
    {"pg", "3c1e7a52-0b6d-4e0f-8d21-9f4a6c2b7e10",
     "A logical dump of a PostgreSQL database (optionally anonymized)", dsd__pg_schemes},
    {"mysql", "5d2f8b63-1c7e-4f10-9e32-0a5b7d3c8f21",
     "A logical dump of a MySQL or MariaDB database (optionally anonymized)", dsd__mysql_schemes},
    {"mongo", "7e3a9c74-2d8f-4021-8f43-1b6c8e4d9a32",
     "A logical dump of a MongoDB database (optionally anonymized)", dsd__mongo_schemes},
};

#define DSD__NPLANS (sizeof(dsd__plans) / sizeof(dsd__plans[0]))

/* A dump can take hours; the platform gives up polling after this long. */
#define DSD__MAX_POLLING_S 86400

const dsd_broker_plan_t *dsd_broker_plan_by_id(const char *id) {
  if (id == NULL)
    return NULL;
  for (size_t i = 0; i < DSD__NPLANS; i++)
    if (strcmp(dsd__plans[i].id, id) == 0)
      return &dsd__plans[i];
  return NULL;
}

static json_t *dsd__uri_schema(const dsd_broker_plan_t *p, const char *what) {
  char pattern[128] = "^(";
  for (size_t i = 0; p->schemes[i] != NULL; i++) {
    if (i > 0)
      strcat(pattern, "|");
    /* '+' in mongodb+srv must be escaped in the regular expression */
    for (const char *c = p->schemes[i]; *c; c++) {
      if (*c == '+')
        strcat(pattern, "\\");
      strncat(pattern, c, 1);
    }
  }
  strcat(pattern, ")://");
  char desc[256];
  snprintf(desc, sizeof(desc),
           "connection URI of the %s database (needs DSD_ALLOW_DIRECT_URIS on the broker)", what);
  return json_pack("{s:s, s:s, s:s}", "type", "string", "pattern", pattern, "description", desc);
}

static json_t *dsd__plan_schemas(const dsd_broker_plan_t *p) {
  json_t *create = json_pack(
      "{s:s, s:s, s:{s:{s:s, s:s, s:i}, s:o, s:{s:s, s:s}, s:{s:s, s:[sss], s:s, s:s}},"
      " s:b, s:[{s:[s]}, {s:[s]}]}",
      "$schema", "http://json-schema.org/draft-04/schema#", "type", "object", "properties",
      "source", "type", "string", "description",
      "name of a service instance in the same space to dump (needs DSD_CF_API on the broker)",
      "minLength", 1, "source_uri", dsd__uri_schema(p, "source"), "anonymize", "type", "object",
      "description", "anonymization rules (see README)", "compression", "type", "string", "enum",
      "zstd", "gzip", "none", "default", "zstd", "description", "archive compression",
      "additionalProperties", 0, "oneOf", "required", "source", "required", "source_uri");
  json_t *update = json_pack(
      "{s:s, s:s, s:{s:{s:s, s:s, s:i}, s:o, s:{s:s, s:b, s:s}}, s:b,"
      " s:[{s:[s]}, {s:[s]}]}",
      "$schema", "http://json-schema.org/draft-04/schema#", "type", "object", "properties",
      "target", "type", "string", "description",
      "name of a service instance in the same space to import the dump into", "minLength", 1,
      "target_uri", dsd__uri_schema(p, "target"), "clean", "type", "boolean", "default", 1,
      "description", "replace objects of the dump that already exist in the target",
      "additionalProperties", 0, "oneOf", "required", "target", "required", "target_uri");
  json_t *bind = json_pack("{s:s, s:s, s:{}, s:b}", "$schema",
                           "http://json-schema.org/draft-04/schema#", "type", "object",
                           "properties", "additionalProperties", 0);
  if (create == NULL || update == NULL || bind == NULL) {
    json_decref(create);
    json_decref(update);
    json_decref(bind);
    return NULL;
  }
  return json_pack("{s:{s:{s:o}, s:{s:o}}, s:{s:{s:o}}}", "service_instance", "create",
                   "parameters", create, "update", "parameters", update, "service_binding",
                   "create", "parameters", bind);
}

json_t *dsd_broker_catalog(int minor) {
  json_t *plans = json_array();
  json_t *out = NULL;
  if (plans == NULL)
    goto cleanup;
  for (size_t i = 0; i < DSD__NPLANS; i++) {
    const dsd_broker_plan_t *p = &dsd__plans[i];
    json_t *schemas = dsd__plan_schemas(p);
    json_t *plan = json_pack("{s:s, s:s, s:s, s:b, s:b, s:{s:s, s:[s]}, s:o*}", "id", p->id,
                             "name", p->name, "description", p->description, "free", 1,
                             "bindable", 1, "metadata", "displayName", p->name, "bullets",
                             "streams through an anonymizer into object storage",
                             "schemas", schemas);
    if (plan == NULL)
      goto cleanup;
    if (minor >= 14)
      json_object_set_new(plan, "plan_updateable", json_false());
    if (minor >= 15)
      json_object_set_new(plan, "maximum_polling_duration", json_integer(DSD__MAX_POLLING_S));
    json_array_append_new(plans, plan);
  }
  json_t *svc = json_pack(
      "{s:s, s:s, s:s, s:b, s:b, s:[ssss], s:{s:s, s:s, s:s, s:b}, s:O}", "id",
      DSD_BROKER_SERVICE_ID, "name", "data-service-dump", "description",
      "Database dumps as service instances: dump, anonymize, share and import", "bindable", 1,
      "plan_updateable", 0, "tags", "dump", "backup", "anonymize", "data-service-dump",
      "metadata", "displayName", "Data Service Dump", "longDescription",
      "Create a service instance to take a logical dump of a database; update it to import "
      "the dump into another database; bind it to download the dump",
      "providerDisplayName", "data-service-dump", "shareable", 1, "plans", plans);
  if (svc == NULL)
    goto cleanup;
  if (minor >= 14) {
    json_object_set_new(svc, "instances_retrievable", json_true());
    json_object_set_new(svc, "bindings_retrievable", json_true());
  }
  out = json_pack("{s:[o]}", "services", svc);

cleanup:
  json_decref(plans);
  return out;
}
