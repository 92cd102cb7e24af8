/*
 * registry.c - which dialects this build has, found by plan name or by the
 * scheme of a connection URI.
 *
 * The table below lists every dialect dsd knows, built or not, so that a
 * request for one that is not compiled in gets "the mysql dialect is not
 * built yet" (DSD_EUNSUPPORTED from the pipeline) instead of a confusing
 * "unknown scheme". dialects/CMakeLists.txt defines DSD_HAVE_<NAME> for
 * each dialect whose sources and client library are present.
 */
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "dialects/dialect.h"
#include "dialects/pg/pg.h"

#ifdef DSD_HAVE_MYSQL
extern const dsd_dialect_t dsd__mysql_dialect;
#endif
#ifdef DSD_HAVE_MONGO
extern const dsd_dialect_t dsd__mongo_dialect;
#endif

static const struct {
  const char *name;
  const char *schemes[4];
  const dsd_dialect_t *dialect; /* NULL: not built */
} dsd__known[] = {
    {"pg", {"postgresql", "postgres", NULL}, &dsd__pg_dialect},
#ifdef DSD_HAVE_MYSQL
    {"mysql", {"mysql", "mariadb", NULL}, &dsd__mysql_dialect},
#else
    {"mysql", {"mysql", "mariadb", NULL}, NULL},
#endif
#ifdef DSD_HAVE_MONGO
    {"mongo", {"mongodb", "mongodb+srv", NULL}, &dsd__mongo_dialect},
#else
    {"mongo", {"mongodb", "mongodb+srv", NULL}, NULL},
#endif
};

#define DSD__NKNOWN (sizeof dsd__known / sizeof dsd__known[0])

const dsd_dialect_t *dsd_dialect_find(const char *name) {
  if (name == NULL)
    return NULL;
  for (size_t i = 0; i < DSD__NKNOWN; i++)
    if (strcmp(dsd__known[i].name, name) == 0)
      return dsd__known[i].dialect;
  return NULL;
}

/* Index in dsd__known of the dialect whose scheme starts uri, or -1. */
static int dsd__scheme_index(const char *uri) {
  const char *colon;
  size_t n;

  if (uri == NULL)
    return -1;
  colon = strstr(uri, "://");
  if (colon == NULL)
    return -1;
  n = (size_t)(colon - uri);
  for (size_t i = 0; i < DSD__NKNOWN; i++)
    for (size_t j = 0; dsd__known[i].schemes[j]; j++)
      if (strlen(dsd__known[i].schemes[j]) == n &&
          strncasecmp(dsd__known[i].schemes[j], uri, n) == 0)
        return (int)i;
  return -1;
}

const dsd_dialect_t *dsd_dialect_for_uri(const char *uri) {
  int i = dsd__scheme_index(uri);
  return i < 0 ? NULL : dsd__known[i].dialect;
}

const char *dsd_dialect_name_for_uri(const char *uri) {
  int i = dsd__scheme_index(uri);
  return i < 0 ? NULL : dsd__known[i].name;
}
