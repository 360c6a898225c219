# conv.mk - the conv2d benchmark (`make bench-conv`).
noinst_PROGRAMS += bench/bench_conv
bench_bench_conv_SOURCES = bench/bench_conv.c
bench_bench_conv_LDADD = libsloth.la -lm

bench-conv: bench/bench_conv$(EXEEXT)
	./bench/bench_conv$(EXEEXT)
.PHONY: bench-conv
