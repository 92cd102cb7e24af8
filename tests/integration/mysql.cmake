# MySQL / MariaDB integration tests: each starts a throwaway MariaDB server
# (tests/harness/mysql.py) and drives the dsd CLI (or the broker) against it.
dsd_add_integration_test(test_mysql_fidelity integration/test_mysql_fidelity.py TIMEOUT 600 LABELS mysql)
dsd_add_integration_test(test_mysql_recipe integration/test_mysql_recipe.py TIMEOUT 600 LABELS mysql)
dsd_add_integration_test(test_mysql_anon integration/test_mysql_anon.py TIMEOUT 600 LABELS mysql)
dsd_add_integration_test(test_mysql_broker integration/test_mysql_broker.py TIMEOUT 600 LABELS mysql broker)
