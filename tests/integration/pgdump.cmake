# PostgreSQL dump through the CLI: archive layout, hand restore, verify,
# secrets, failure and cancel cleanup (tests/integration/test_pg_dump_*.py).
dsd_add_integration_test(test_pg_dump_cli integration/test_pg_dump_cli.py TIMEOUT 600 LABELS pg)
