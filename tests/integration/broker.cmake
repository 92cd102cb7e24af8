# Integration tests of `dsd serve` (Python harness, tests/harness/broker.py).
dsd_add_integration_test(test_broker_api integration/test_broker_api.py
                         TIMEOUT 300 LABELS broker)
dsd_add_integration_test(test_broker_config integration/test_broker_config.py
                         TIMEOUT 120 LABELS broker)
dsd_add_integration_test(test_broker_s3 integration/test_broker_s3.py
                         TIMEOUT 300 LABELS "broker;s3")
dsd_add_integration_test(test_broker_pg integration/test_broker_pg.py
                         TIMEOUT 600 LABELS "broker;pg")
dsd_add_integration_test(test_broker_recovery integration/test_broker_recovery.py
                         TIMEOUT 600 LABELS "broker;pg")
