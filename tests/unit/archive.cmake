# Unit tests of the dump archive (core/archive.c, core/hash.c).
dsd_add_test(test_archive SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_archive.c LIBS dsd_core)
