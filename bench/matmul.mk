# matmul.mk - GEMM paths: the matmul benchmark (`make bench` runs the C part,
# `make bench-matmul` adds numpy's figures and the ratios), the CLBlast tuning
# tool, and the test that runs products through both paths.

# ------------------------------------------------------------------ benchmark
# bench_matmul reads sloth's own buffers and queue (internal headers) to call
# CLBlast directly on them.
noinst_PROGRAMS += bench/bench_matmul
bench_programs += bench/bench_matmul$(EXEEXT)
bench_bench_matmul_SOURCES = bench/bench_matmul.c
bench_bench_matmul_CFLAGS = $(AM_CFLAGS) $(OPENCL_CFLAGS) $(CLBLAST_CFLAGS) $(CBLAS_CFLAGS)
bench_bench_matmul_LDADD = libsloth.la $(OPENCL_LIBS) $(CLBLAST_LIBS) $(CBLAS_LIBS) -lm
EXTRA_DIST += bench/bench_matmul.py bench/matmul.sh

bench-matmul: bench/bench_matmul$(EXEEXT)
	$(SHELL) $(srcdir)/bench/matmul.sh ./bench/bench_matmul$(EXEEXT) $(srcdir)/bench/bench_matmul.py
.PHONY: bench-matmul

# ------------------------------------------------------------------ tuning tool
# tools/sloth-tune-gemm runs CLBlast's tuner (clblast-utils) on a device and
# caches the best parameters; never run by make check or CI (minutes).
bin_PROGRAMS += tools/sloth-tune-gemm
tools_sloth_tune_gemm_SOURCES = tools/sloth-tune-gemm.c
tools_sloth_tune_gemm_CFLAGS = $(AM_CFLAGS) $(OPENCL_CFLAGS) $(CLBLAST_CFLAGS)
tools_sloth_tune_gemm_LDADD = libsloth.la $(OPENCL_LIBS) $(CLBLAST_LIBS)

# ------------------------------------------------------------------ tests
check_PROGRAMS += tests/test_gemm_paths
tests_test_gemm_paths_SOURCES = tests/test_gemm_paths.c
tests_test_gemm_paths_LDADD = libsloth.la -lm
tests_test_gemm_paths_CFLAGS = $(AM_CFLAGS) $(OPENCL_CFLAGS)

# test_matmul again, forced onto the CLBlast path (auto picks the host BLAS
# on CPU devices)
TESTS += tests/matmul_clblast.sh
EXTRA_DIST += tests/matmul_clblast.sh
