# PostgreSQL integration tests: each starts a throwaway PostgreSQL 15
# cluster (tests/harness/pg.py) and drives the dsd CLI against it.
dsd_add_integration_test(test_pg_fidelity integration/test_pg_fidelity.py TIMEOUT 600 LABELS pg)
dsd_add_integration_test(test_pg_recipe integration/test_pg_recipe.py TIMEOUT 600 LABELS pg)
dsd_add_integration_test(test_pg_failure integration/test_pg_failure.py TIMEOUT 600 LABELS pg)

# The benchmark is not run in CI (it takes minutes and a lot of disk); its
# script is only checked for syntax.
add_test(NAME bench_pg_syntax COMMAND bash -n ${CMAKE_SOURCE_DIR}/bench/pg.sh)
set_tests_properties(bench_pg_syntax PROPERTIES LABELS "unit;bench")
