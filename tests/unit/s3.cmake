# Unit tests of the s3 module (cmocka), and dsd_s3tool, the test-only CLI
# that tests/integration/test_s3_*.py use to drive the S3 code against real
# S3 servers. dsd_s3tool lands in the top of the build directory
# (DSD_BUILD_DIR/dsd_s3tool).
if(TARGET dsd_s3)
  dsd_add_test(test_sigv4 SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_sigv4.c
               LIBS dsd_s3)
  dsd_add_test(test_s3_xml SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_s3_xml.c
               LIBS dsd_s3)
  dsd_add_test(test_s3_client
               SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_s3_client.c
               LIBS dsd_s3)
  add_executable(dsd_s3tool ${CMAKE_SOURCE_DIR}/tests/unit/s3tool.c)
  target_link_libraries(dsd_s3tool PRIVATE dsd_s3 Threads::Threads)
  set_target_properties(dsd_s3tool PROPERTIES
                        RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
endif()
