# tests of the runtime: fusion, caching, metrics, errors, scopes, threads
check_PROGRAMS += tests/test_runtime
tests_test_runtime_SOURCES = tests/test_runtime.c
tests_test_runtime_LDADD = libsloth.la

check_PROGRAMS += tests/test_device_errors
tests_test_device_errors_SOURCES = tests/test_device_errors.c
tests_test_device_errors_LDADD = libsloth.la

check_PROGRAMS += tests/test_matmul
tests_test_matmul_SOURCES = tests/test_matmul.c
tests_test_matmul_LDADD = libsloth.la -lm

check_PROGRAMS += tests/test_conv
tests_test_conv_SOURCES = tests/test_conv.c
tests_test_conv_LDADD = libsloth.la -lm

check_PROGRAMS += tests/test_random
tests_test_random_SOURCES = tests/test_random.c
tests_test_random_LDADD = libsloth.la -lm

check_PROGRAMS += tests/test_indexing
tests_test_indexing_SOURCES = tests/test_indexing.c
tests_test_indexing_LDADD = libsloth.la -lm

check_PROGRAMS += tests/test_sort
tests_test_sort_SOURCES = tests/test_sort.c
tests_test_sort_LDADD = libsloth.la -lm
