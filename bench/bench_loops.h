/* bench_loops.h - C baselines for bench_elementwise (see bench_loops.c). */
#ifndef SLOTH_BENCH_LOOPS_H
#define SLOTH_BENCH_LOOPS_H

void bench_loop_cheap(const float *a, const float *b, float *out, long n);
void bench_loop_transcendental(const float *a, const float *b, float *out, long n);
/* Fills p with pseudo-random values in [lo, hi) (OpenMP first touch). */
void bench_fill(float *p, long n, float lo, float hi, unsigned seed);

#endif
