# Unit tests of the mysql dialect's pure parts: statement splitter, value
# escaping, DEFINER stripping, URI parsing. They link the dialects library,
# which holds the mysql dialect only when libmysqlclient was found.
if(MYSQL_FOUND)
  dsd_add_test(test_mysql_split
    SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_mysql_split.c
    LIBS dsd_dialects)
endif()
