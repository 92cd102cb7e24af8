# Fuzz targets for untrusted input outside anonymize/ (issue 9):
#   osb_params  OSB request bodies, ids and headers (broker/params.c)
#   s3_xml      S3 response bodies (s3/xml.c)
#   conn_uri    source_uri/target_uri: the broker's host check against how
#               libpq and the mysql driver read the same URI
#   cc_creds    service key credentials JSON (broker/cc_creds.c)
#
# Same pattern as anonymize.cmake: every build (gcc included) links each
# target with fuzz_anon_main.c into a replay driver that runs the checked-in
# corpus once (ctest label "fuzz"); with -DDSD_FUZZ=ON and clang, real
# libFuzzer binaries and a 10-second run each. The sources under test are
# compiled into the libFuzzer binary so coverage instrumentation sees them.
set(_dsd_rel_targets osb_params s3_xml cc_creds)
set(_dsd_rel_libs_osb_params dsd_broker)
set(_dsd_rel_src_osb_params broker/params.c broker/catalog.c)
set(_dsd_rel_libs_s3_xml dsd_s3)
set(_dsd_rel_src_s3_xml s3/xml.c)
set(_dsd_rel_libs_cc_creds dsd_broker)
set(_dsd_rel_src_cc_creds broker/cc_creds.c)
if(MYSQL_FOUND)
  list(APPEND _dsd_rel_targets conn_uri)
  set(_dsd_rel_libs_conn_uri dsd_broker dsd_dialects)
  set(_dsd_rel_src_conn_uri broker/params.c broker/catalog.c dialects/pg/pg_util.c
      dialects/mysql/mysql.c)
endif()

foreach(target ${_dsd_rel_targets})
  set(_corpus ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/${target})
  add_executable(fuzz_${target}_replay
    ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_${target}.c
    ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_anon_main.c)
  target_link_libraries(fuzz_${target}_replay PRIVATE ${_dsd_rel_libs_${target}})
  add_test(NAME fuzz_${target}_replay COMMAND fuzz_${target}_replay ${_corpus})
  set_tests_properties(fuzz_${target}_replay PROPERTIES LABELS "unit;fuzz" TIMEOUT 120)

  if(DSD_FUZZ AND CMAKE_C_COMPILER_ID MATCHES "Clang")
    set(_srcs "")
    foreach(s ${_dsd_rel_src_${target}})
      list(APPEND _srcs ${CMAKE_SOURCE_DIR}/${s})
    endforeach()
    add_executable(fuzz_${target} ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_${target}.c ${_srcs})
    target_compile_options(fuzz_${target} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_options(fuzz_${target} PRIVATE -fsanitize=fuzzer,address,undefined)
    # The libraries still resolve whatever the compiled-in sources call;
    # their copies of those sources are never pulled in (defined here first).
    target_link_libraries(fuzz_${target} PRIVATE ${_dsd_rel_libs_${target}})
    set(_work ${CMAKE_BINARY_DIR}/fuzz-corpus/${target})
    file(MAKE_DIRECTORY ${_work})
    add_test(NAME fuzz_${target}_run
             COMMAND fuzz_${target} -max_total_time=10 -timeout=5 ${_work} ${_corpus})
    set_tests_properties(fuzz_${target}_run PROPERTIES LABELS fuzz TIMEOUT 120)
  endif()
endforeach()
