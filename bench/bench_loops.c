/* bench_loops.c - the plain C (OpenMP) baselines of bench_elementwise.
 *
 * Built on its own (bench/libbenchloops.a) with -O3 -ffast-math and the
 * host's instruction set, so that gcc vectorizes the transcendental chain
 * with glibc's libmvec: the best a C programmer gets on this machine without
 * hand-written SIMD. The loops do exactly the arithmetic of the Sloth chains
 * in bench_elementwise.c. */
#include "bench_loops.h"

#include <math.h>

/* -(|max(a*b + a - b, a)| * 0.5 + 1) */
void bench_loop_cheap(const float *restrict a, const float *restrict b, float *restrict out, long n) {
#pragma omp parallel for simd schedule(static)
  for (long i = 0; i < n; i++) {
    float x = a[i], y = b[i];
    float t = x * y;
    t = t + x;
    t = t - y;
    t = fmaxf(t, x);
    t = fabsf(t);
    t = t * 0.5f;
    t = t + 1.0f;
    out[i] = -t;
  }
}

/* tanh(cos(log(exp(sin(a) * b) + a))) * b (no pair that -ffast-math could
 * fold: log(exp(t)) would become t) */
void bench_loop_transcendental(const float *restrict a, const float *restrict b, float *restrict out, long n) {
#pragma omp parallel for simd schedule(static)
  for (long i = 0; i < n; i++) {
    float x = a[i], y = b[i];
    float t = sinf(x);
    t = t * y;
    t = expf(t);
    t = t + x;
    t = logf(t);
    t = cosf(t);
    t = tanhf(t);
    out[i] = t * y;
  }
}

void bench_fill(float *restrict p, long n, float lo, float hi, unsigned seed) {
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n; i++) {
    /* a cheap hash of (i, seed) mapped to [lo, hi): first touch by the
     * threads that later read it */
    unsigned h = (unsigned)i * 2654435761u ^ seed * 40503u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    p[i] = lo + (hi - lo) * (float)(h >> 8) * (1.0f / 16777216.0f);
  }
}
