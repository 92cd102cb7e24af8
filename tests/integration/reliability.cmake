# Reliability tests of issue 9: crashes, faults, bad input, valgrind.
dsd_add_integration_test(test_reliability_pg integration/test_reliability_pg.py
                         TIMEOUT 900 LABELS "broker;pg;reliability")
dsd_add_integration_test(test_reliability_s3 integration/test_reliability_s3.py
                         TIMEOUT 900 LABELS "broker;pg;s3;reliability")
dsd_add_integration_test(test_reliability_input integration/test_reliability_input.py
                         TIMEOUT 300 LABELS "broker;reliability")
dsd_add_integration_test(test_valgrind_cycle integration/test_valgrind_cycle.py
                         TIMEOUT 1200 LABELS "valgrind;pg")
