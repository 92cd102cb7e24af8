# The Cloud Controller client against the CC/UAA double (tests/harness/ccdouble.py),
# driven through dsd_cctool (tests/unit/cc.cmake).
dsd_add_integration_test(test_cc_client integration/test_cc_client.py TIMEOUT 300 LABELS cc)
