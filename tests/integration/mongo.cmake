# MongoDB integration tests. No MongoDB server can be installed on the CI
# machines: these tests run against DSD_TEST_MONGODB_URI when it is set
# (a replica set for the snapshot path) and are reported SKIPPED otherwise.
dsd_add_integration_test(test_mongo_dump integration/test_mongo_dump.py TIMEOUT 900 LABELS mongo)
dsd_add_integration_test(test_mongo_wire integration/test_mongo_wire.py TIMEOUT 300 LABELS mongo)
