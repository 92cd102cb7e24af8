# S3 integration tests: the s3 module's code (through dsd_s3tool) against
# real S3 servers started on loopback by tests/harness/s3.py.
# dsd_s3tool is defined in tests/unit/s3.cmake, which is included after
# this file; it is built with the default target.
if(TARGET dsd_s3)
  dsd_add_integration_test(test_s3_s3rver integration/test_s3_s3rver.py
                           TIMEOUT 600 LABELS s3)
  dsd_add_integration_test(test_s3_fauxqs integration/test_s3_fauxqs.py
                           TIMEOUT 600 LABELS s3)
  dsd_add_integration_test(test_s3_faults integration/test_s3_faults.py
                           TIMEOUT 600 LABELS s3)
  dsd_add_integration_test(test_s3_tls integration/test_s3_tls.py
                           TIMEOUT 300 LABELS s3)
endif()
