# PostgreSQL dump through the CLI (tests/integration/test_pg_dump_*.py):
# archive layout, hand restore, verify, secrets, failure and cancel cleanup,
# anonymization, and an s3:// store.
dsd_add_integration_test(test_pg_dump_cli integration/test_pg_dump_cli.py TIMEOUT 600 LABELS pg)
dsd_add_integration_test(test_pg_dump_anon integration/test_pg_dump_anon.py TIMEOUT 600 LABELS pg)
dsd_add_integration_test(test_pg_dump_s3 integration/test_pg_dump_s3.py TIMEOUT 600 LABELS pg s3)
