# The broker resolving `source`/`target` instance names through the Cloud
# Controller (the CC/UAA double of tests/harness/ccdouble.py), with a real
# PostgreSQL: the user flow and refusals (test_broker_cc), cancel and crash
# recovery of the transient service key (test_broker_cc_crash).
dsd_add_integration_test(test_broker_cc integration/test_broker_cc.py
                         TIMEOUT 600 LABELS "broker;cc")
dsd_add_integration_test(test_broker_cc_crash integration/test_broker_cc_crash.py
                         TIMEOUT 900 LABELS "broker;cc")
