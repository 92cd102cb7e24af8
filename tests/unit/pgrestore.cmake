# Unit tests of the PostgreSQL restore side: the psql script splitter.
# sqlsplit.c is compiled into the test itself so that the test does not
# depend on the rest of dsd_dialects building.
dsd_add_test(test_sqlsplit
  SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_sqlsplit.c
          ${CMAKE_SOURCE_DIR}/dialects/pg/sqlsplit.c
  LIBS dsd_core)
