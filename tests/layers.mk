# layers.mk: initializers and layers (core/layers.c) against naive C references
check_PROGRAMS += tests/test_layers
tests_test_layers_SOURCES = tests/test_layers.c
tests_test_layers_LDADD = libsloth.la -lm
