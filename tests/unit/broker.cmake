# Unit tests of the broker module (cmocka).
if(TARGET dsd_broker)
  dsd_add_test(test_broker_params
    SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_broker_params.c LIBS dsd_broker)
  dsd_add_test(test_broker_catalog
    SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_broker_catalog.c LIBS dsd_broker)
  dsd_add_test(test_broker_osb
    SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_broker_osb.c LIBS dsd_broker)
endif()
