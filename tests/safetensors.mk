# safetensors.mk: programs of this fragment (one owner per file)
# saving and loading safetensors files (core/safetensors.c): round trips,
# the exact byte layout, files in the format's conventions, hostile files
check_PROGRAMS += tests/test_safetensors
tests_test_safetensors_SOURCES = tests/test_safetensors.c
tests_test_safetensors_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
tests_test_safetensors_LDADD = libsloth.la $(JANSSON_LIBS)
