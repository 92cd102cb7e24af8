# Fuzz targets of anonymize/: rules parsing and value transforms.
#
# Always: each target is linked with fuzz_anon_main.c into a plain driver
# that runs the checked-in corpus once (ctest label "fuzz"), so every build,
# gcc included, replays the seeds and any crash reproducers.
# With -DDSD_FUZZ=ON and clang: real libFuzzer binaries, plus a 10-second
# fuzzing run per target in ctest. New inputs go to the build tree, never
# into the source corpus.
foreach(target rules transform)
  set(_corpus ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/anon_${target})
  add_executable(fuzz_anon_${target}_replay
    ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_anon_${target}.c
    ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_anon_main.c)
  target_link_libraries(fuzz_anon_${target}_replay PRIVATE dsd_anonymize)
  add_test(NAME fuzz_anon_${target}_replay COMMAND fuzz_anon_${target}_replay ${_corpus})
  set_tests_properties(fuzz_anon_${target}_replay PROPERTIES LABELS "unit;fuzz" TIMEOUT 120)

  if(DSD_FUZZ AND NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(WARNING "DSD_FUZZ needs clang (-DCMAKE_C_COMPILER=clang): libFuzzer "
                    "target fuzz_anon_${target} not built; its corpus replay still runs")
  elseif(DSD_FUZZ)
    # The library sources are compiled into the target so that libFuzzer's
    # coverage instrumentation sees them; dsd_core stays uninstrumented.
    file(GLOB _anon_sources CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/anonymize/*.c)
    add_executable(fuzz_anon_${target}
      ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_anon_${target}.c ${_anon_sources})
    target_compile_options(fuzz_anon_${target} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_options(fuzz_anon_${target} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(fuzz_anon_${target} PRIVATE dsd_core OpenSSL::Crypto
                          PkgConfig::JANSSON m)
    set(_work ${CMAKE_BINARY_DIR}/fuzz-corpus/anon_${target})
    file(MAKE_DIRECTORY ${_work})
    add_test(NAME fuzz_anon_${target}_run
             COMMAND fuzz_anon_${target} -max_total_time=10 -timeout=5 ${_work} ${_corpus})
    set_tests_properties(fuzz_anon_${target}_run PROPERTIES LABELS fuzz TIMEOUT 120)
  endif()
endforeach()
