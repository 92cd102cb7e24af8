# Unit tests of anonymize/: rule parsing and planning, value transforms.
dsd_add_test(test_anonymize_rules
  SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_anonymize_rules.c
  LIBS dsd_anonymize)
dsd_add_test(test_anonymize_transforms
  SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_anonymize_transforms.c
  LIBS dsd_anonymize)
