# Unit tests of the MongoDB dialect (dialects/mongo), built when the dialect
# is (mongo-c-driver found). No server: the pure libbson parts, and dump and
# restore driven end to end against a fake server behind dsd__mongo_ops_t.
# The dialect's sources are compiled into the tests directly (as the cc
# tests do) so they do not depend on the other drivers of dsd_dialects.
file(GLOB DSD_MONGO_TEST_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/dialects/mongo/*.c)
if(MONGOC_FOUND AND BSON_FOUND AND DSD_MONGO_TEST_SOURCES AND TARGET dsd_anonymize)
  # The client the integration tests drive a real server with (Python
  # has no MongoDB driver in its standard library); not a ctest test.
  add_executable(test_mongo_tool ${CMAKE_SOURCE_DIR}/tests/unit/test_mongo_tool.c)
  target_link_libraries(test_mongo_tool PRIVATE PkgConfig::MONGOC PkgConfig::BSON)
  foreach(t test_mongo_bson test_mongo_dialect)
    if(EXISTS ${CMAKE_SOURCE_DIR}/tests/unit/${t}.c)
      dsd_add_test(${t}
        SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/${t}.c ${DSD_MONGO_TEST_SOURCES}
        LIBS dsd_core dsd_anonymize PkgConfig::MONGOC PkgConfig::BSON PkgConfig::JANSSON
             PkgConfig::ARCHIVE)
      target_compile_definitions(${t} PRIVATE DSD_HAVE_ANONYMIZE=1 DSD_HAVE_MONGO=1)
    endif()
  endforeach()
endif()
