# op-correctness tests: every op against the naive C reference (tests/ref.h),
# and random op graphs checked the same way
check_PROGRAMS += tests/test_ops tests/test_random_graph
tests_test_ops_SOURCES = tests/test_ops.c tests/ref.h
tests_test_ops_LDADD = libsloth.la -lm
tests_test_random_graph_SOURCES = tests/test_random_graph.c tests/ref.h
tests_test_random_graph_LDADD = libsloth.la -lm
