# bench.mk - benchmarks (`make bench` builds and runs them) and the accuracy
# test of the CPU math kernels.
#
# Each benchmark prints one "figure value unit" line per figure. They are
# built by `make` (noinst) but never run by `make check`.
#   bench/bench_elementwise         fused vs unfused vs C loop, cheap and transcendental chains
#   bench/bench_elementwise ops     each math op alone: kernels/cpu_math.cl vs POCL builtins
#   bench/bench_overhead            recording an op, a cached sync of a 100-node graph
#   bench/vectorization.sh          which ops keep a fused kernel vectorized (ymm count in POCL's .so)

# ------------------------------------------------------------------ benchmarks
bench_programs = bench/bench_elementwise$(EXEEXT) bench/bench_overhead$(EXEEXT)
noinst_PROGRAMS += bench/bench_elementwise bench/bench_overhead
noinst_HEADERS += bench/bench_util.h bench/bench_loops.h

# The C baselines, compiled on their own with -O3 -ffast-math and the host's
# instruction set, so that gcc vectorizes sinf/expf/... with glibc's libmvec.
# `make bench BENCH_ARCH_CFLAGS=` builds them for the generic target instead.
BENCH_ARCH_CFLAGS = -march=native
noinst_LIBRARIES = bench/libbenchloops.a
bench_libbenchloops_a_SOURCES = bench/bench_loops.c
bench_libbenchloops_a_CFLAGS = $(AM_CFLAGS) $(OPENMP_CFLAGS) -O3 -ffast-math $(BENCH_ARCH_CFLAGS)

bench_bench_elementwise_SOURCES = bench/bench_elementwise.c
bench_bench_elementwise_CFLAGS = $(AM_CFLAGS) $(OPENMP_CFLAGS)
bench_bench_elementwise_LDFLAGS = $(OPENMP_CFLAGS)
bench_bench_elementwise_LDADD = libsloth.la bench/libbenchloops.a

bench_bench_overhead_SOURCES = bench/bench_overhead.c
bench_bench_overhead_LDADD = libsloth.la

# probe_ops + vectorization.sh: which ops keep fused kernels vectorized on POCL
noinst_PROGRAMS += bench/probe_ops
bench_probe_ops_SOURCES = bench/probe_ops.c
bench_probe_ops_LDADD = libsloth.la
EXTRA_DIST += bench/vectorization.sh

bench: $(bench_programs)
	@for p in $(bench_programs); do \
	  echo "# $$p"; \
	  ./$$p || exit 1; \
	done
.PHONY: bench

# ------------------------------------------------------------------ tests of kernels/
check_PROGRAMS += tests/test_cpu_math
tests_test_cpu_math_SOURCES = tests/test_cpu_math.c
tests_test_cpu_math_LDADD = libsloth.la
