# MySQL / MariaDB integration tests: each starts a throwaway MariaDB server
# (tests/harness/mysql.py) and drives the dsd CLI (or the broker) against it.
dsd_add_integration_test(test_mysql_fidelity integration/test_mysql_fidelity.py TIMEOUT 600 LABELS mysql)
dsd_add_integration_test(test_mysql_recipe integration/test_mysql_recipe.py TIMEOUT 600 LABELS mysql)
dsd_add_integration_test(test_mysql_anon integration/test_mysql_anon.py TIMEOUT 600 LABELS mysql)
dsd_add_integration_test(test_mysql_broker integration/test_mysql_broker.py TIMEOUT 600 LABELS mysql broker)

# The benchmark is not run in CI; its script is only checked for syntax.
add_test(NAME bench_mysql_syntax COMMAND bash -n ${CMAKE_SOURCE_DIR}/bench/mysql.sh)
set_tests_properties(bench_mysql_syntax PROPERTIES LABELS "unit;bench")
dsd_add_integration_test(test_mysql_tls integration/test_mysql_tls.py TIMEOUT 600 LABELS mysql)
dsd_add_integration_test(test_mysql_snapshot integration/test_mysql_snapshot.py TIMEOUT 600 LABELS mysql)
