# Cloud Controller / UAA client (broker/cc.c, broker/cc_creds.c).
# The sources are compiled into each target directly so that these tests do
# not depend on the rest of dsd_broker building (nor on how broker/ globs).
set(DSD_CC_SOURCES ${CMAKE_SOURCE_DIR}/broker/cc.c ${CMAKE_SOURCE_DIR}/broker/cc_creds.c)

# cmocka: credential shapes, URL and dialect helpers, error envelopes.
dsd_add_test(test_cc_creds
  SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_cc_creds.c ${CMAKE_SOURCE_DIR}/broker/cc_creds.c
  LIBS dsd_core PkgConfig::JANSSON)
dsd_add_test(test_cc_offline
  SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_cc_offline.c ${CMAKE_SOURCE_DIR}/broker/cc_creds.c
  LIBS dsd_core PkgConfig::JANSSON PkgConfig::CURL)

# Test-only driver of the library, used by tests/integration/test_cc_*.py
# against the CC/UAA double (tests/harness/ccdouble.py).
add_executable(dsd_cctool ${CMAKE_SOURCE_DIR}/tests/unit/cctool.c ${DSD_CC_SOURCES})
target_link_libraries(dsd_cctool PRIVATE dsd_core PkgConfig::JANSSON PkgConfig::CURL
                      Threads::Threads)
set_target_properties(dsd_cctool PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
