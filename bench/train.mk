# train.mk: programs of this fragment (one owner per file)
#
# Training: the step-time benchmark of the Fashion-MNIST models against
# PyTorch eager and lazy (`make bench` runs the C part, `make bench-train`
# adds PyTorch's figures and the ratios; bench/train.sh), and the training
# test (make check).

# ------------------------------------------------------------------ benchmark
noinst_PROGRAMS += bench/bench_train
bench_programs += bench/bench_train$(EXEEXT)
bench_bench_train_SOURCES = bench/bench_train.c
bench_bench_train_LDADD = libsloth.la -lm
EXTRA_DIST += bench/bench_train.py bench/train.sh

bench-train: bench/bench_train$(EXEEXT)
	$(SHELL) $(srcdir)/bench/train.sh ./bench/bench_train$(EXEEXT) $(srcdir)/bench/bench_train.py
.PHONY: bench-train

# ------------------------------------------------------------------ tests
# a short training run: loss threshold, no compile after step 1, in-place
# updates, safetensors round trip (plus 512 Fashion-MNIST images when
# Debian's dataset-fashion-mnist is installed)
check_PROGRAMS += tests/test_train
tests_test_train_SOURCES = tests/test_train.c
tests_test_train_CFLAGS = $(AM_CFLAGS) -I$(top_srcdir)/examples $(ZLIB_CFLAGS)
tests_test_train_LDADD = libsloth.la $(ZLIB_LIBS) -lm
