# Unit tests of the dump archive (core/archive.c, core/hash.c).
dsd_add_test(test_archive SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_archive.c LIBS dsd_core)
# The pipeline with a scripted fake dialect (the test brings its own registry,
# so it links pipeline.c directly rather than dsd_dialects).
dsd_add_test(test_pipeline SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_pipeline.c
             ${CMAKE_SOURCE_DIR}/dialects/pipeline.c LIBS dsd_core m)
# The PostgreSQL dump side's pure parts (includes pg_dump.c; no server).
dsd_add_test(test_pipeline_pg SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_pipeline_pg.c
             LIBS dsd_dialects)
