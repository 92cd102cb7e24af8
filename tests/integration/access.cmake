# Integration tests of the broker's access endpoints (issue 8): dashboard,
# task API, download ranges, operation logs, metrics and health.
dsd_add_integration_test(test_access_api integration/test_access_api.py
                         TIMEOUT 600 LABELS "broker;pg;access")
dsd_add_integration_test(test_access_dashboard integration/test_access_dashboard.py
                         TIMEOUT 600 LABELS "broker;pg;access")
