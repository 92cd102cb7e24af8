# Unit tests of core/ (errors, logging and redaction, buffers, blob store).
dsd_add_test(test_core_error SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_core_error.c LIBS dsd_core)
dsd_add_test(test_core_redact SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_core_redact.c LIBS dsd_core)
dsd_add_test(test_core_buf SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_core_buf.c LIBS dsd_core)
dsd_add_test(test_core_blob_file SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_core_blob_file.c LIBS dsd_core)
dsd_add_test(test_core_storage_env SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_core_storage_env.c LIBS dsd_core)
