# nn ops (core/nn.c and the activations of the op table) against naive C references
check_PROGRAMS += tests/test_nn
tests_test_nn_SOURCES = tests/test_nn.c
tests_test_nn_LDADD = libsloth.la -lm
