# MongoDB integration tests. No MongoDB server can be installed on the CI
# machines: test_mongo_dump runs against DSD_TEST_MONGODB_URI when it is set
# (a replica set for the snapshot path) and is reported SKIPPED otherwise;
# test_mongo_wire and test_mongo_broker always run, against the
# wire-protocol double of tests/harness/mongo.py.
dsd_add_integration_test(test_mongo_dump integration/test_mongo_dump.py TIMEOUT 900 LABELS mongo)
dsd_add_integration_test(test_mongo_wire integration/test_mongo_wire.py TIMEOUT 300 LABELS mongo)
dsd_add_integration_test(test_mongo_broker integration/test_mongo_broker.py TIMEOUT 300 LABELS mongo broker)
