/* bench_elementwise.c - fused vs unfused elementwise chains vs a C loop.
 *
 * Two chains of 8 elementwise ops over two inputs a, b of 16M floats:
 *   cheap:          -(|max(a*b + a - b, a)| * 0.5 + 1)
 *   transcendental: tanh(cos(log(exp(sin(a) * b) + a))) * b
 * each run three ways:
 *   fused    record the 8 ops, sync once (one kernel; the plan is cached by
 *            the warm-up, so this times recording + a cached sync + the run)
 *   unfused  the same ops with a sync after each (8 kernels)
 *   cloop    the same arithmetic as a C loop with OpenMP (bench_loops.c,
 *            -O3 -ffast-math: gcc vectorizes sinf/expf/... with libmvec)
 * GB/s always counts the bytes of the whole chain once: two inputs read and
 * one output written (12 bytes per element), whatever each way really moves,
 * so the three figures compare as times.
 *
 * Usage: bench_elementwise [cheap|transcendental|ops]...   (default: the two chains)
 *   ops: each math op alone (one kernel over 4M floats), with the CPU math
 *        of kernels/cpu_math.cl and again with the builtins (SLOTH_CPU_MATH=0):
 *        op_NAME_ms, op_NAME_builtin_ms, op_NAME_speedup
 * Env:   BENCH_N (elements, default 16777216), BENCH_REPS (default 11).
 */
#include "bench_loops.h"
#include "bench_util.h"

#include <math.h>

typedef sloth_tensor *(*step_fn)(int i, sloth_tensor *t, sloth_tensor *a, sloth_tensor *b);

static sloth_tensor *cheap_step(int i, sloth_tensor *t, sloth_tensor *a, sloth_tensor *b) {
  switch (i) {
  case 0: return sloth_mul(a, b);
  case 1: return sloth_add(t, a);
  case 2: return sloth_sub(t, b);
  case 3: return sloth_maximum(t, a);
  case 4: return sloth_abs(t);
  case 5: return sloth_mul_scalar(t, 0.5);
  case 6: return sloth_add_scalar(t, 1.0);
  default: return sloth_neg(t);
  }
}

static sloth_tensor *transcendental_step(int i, sloth_tensor *t, sloth_tensor *a, sloth_tensor *b) {
  switch (i) {
  case 0: return sloth_sin(a);
  case 1: return sloth_mul(t, b);
  case 2: return sloth_exp(t);
  case 3: return sloth_add(t, a);
  case 4: return sloth_log(t);
  case 5: return sloth_cos(t);
  case 6: return sloth_tanh(t);
  default: return sloth_mul(t, b);
  }
}

typedef struct chain {
  const char *name;
  step_fn step;
  void (*loop)(const float *, const float *, float *, long);
  float a_lo, a_hi, b_lo, b_hi; /* input ranges (keep log and sqrt defined) */
  double tol;                  /* max |fused - cloop| / (1 + |cloop|) accepted */
} chain;

static const chain chains[] = {
    {"elementwise", cheap_step, bench_loop_cheap, -2.0f, 2.0f, -2.0f, 2.0f, 1e-5},
    {"transcendental", transcendental_step, bench_loop_transcendental, 1.0f, 2.0f, 0.5f, 1.5f, 1e-4},
};

#define NOPS 8

/* The whole chain recorded, then one sync: one fused kernel. */
static sloth_tensor *run_fused(const chain *c, sloth_tensor *a, sloth_tensor *b) {
  sloth_tensor *t = NULL;
  sloth_scope_begin();
  for (int i = 0; i < NOPS; i++) t = c->step(i, t, a, b);
  BENCH_CHECK(t);
  sloth_keep(t);
  sloth_scope_end();
  BENCH_CHECK(sloth_sync(&t, 1) == SLOTH_OK);
  return t;
}

/* A sync after every op: one kernel per op. */
static sloth_tensor *run_unfused(const chain *c, sloth_tensor *a, sloth_tensor *b) {
  sloth_tensor *t = NULL;
  for (int i = 0; i < NOPS; i++) {
    sloth_tensor *u = c->step(i, t, a, b);
    BENCH_CHECK(u);
    BENCH_CHECK(sloth_sync(&u, 1) == SLOTH_OK);
    sloth_release(t);
    t = u;
  }
  return t;
}

typedef sloth_tensor *(*run_fn)(const chain *, sloth_tensor *, sloth_tensor *);

/* Median seconds of one run (recording, sync, and waiting for the device). */
static double time_sloth(run_fn run, const chain *c, sloth_tensor *a, sloth_tensor *b, int reps, int64_t *launches) {
  for (int w = 0; w < 2; w++) { /* warm-up: compiles, fills the plan cache and the buffer pool */
    sloth_tensor *t = run(c, a, b);
    BENCH_CHECK(sloth_wait() == SLOTH_OK);
    sloth_release(t);
  }
  double *v = malloc((size_t)reps * sizeof *v);
  int64_t l0 = sloth_counter("kernel_launch"), c0 = sloth_counter("kernel_compile");
  for (int r = 0; r < reps; r++) {
    double t0 = bench_now();
    sloth_tensor *t = run(c, a, b);
    BENCH_CHECK(sloth_wait() == SLOTH_OK);
    v[r] = bench_now() - t0;
    sloth_release(t);
  }
  *launches = (sloth_counter("kernel_launch") - l0) / reps;
  if (sloth_counter("kernel_compile") != c0) fprintf(stderr, "warning: %s compiled during the timed runs\n", c->name);
  double m = bench_median(v, reps);
  free(v);
  return m;
}

static double time_loop(const chain *c, const float *a, const float *b, float *out, long n, int reps) {
  c->loop(a, b, out, n);
  double *v = malloc((size_t)reps * sizeof *v);
  for (int r = 0; r < reps; r++) {
    double t0 = bench_now();
    c->loop(a, b, out, n);
    v[r] = bench_now() - t0;
  }
  double m = bench_median(v, reps);
  free(v);
  return m;
}

static int bench_chain(const chain *c, long n, int reps) {
  size_t bytes = (size_t)n * sizeof(float);
  float *ha = malloc(bytes), *hb = malloc(bytes), *ref = malloc(bytes), *got = malloc(bytes);
  if (!ha || !hb || !ref || !got) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  bench_fill(ha, n, c->a_lo, c->a_hi, 1);
  bench_fill(hb, n, c->b_lo, c->b_hi, 2);
  int64_t shape[1] = {n};
  sloth_tensor *a = sloth_from_host(ha, SLOTH_F32, 1, shape), *b = sloth_from_host(hb, SLOTH_F32, 1, shape);
  BENCH_CHECK(a && b);

  int64_t lf, lu;
  double tf = time_sloth(run_fused, c, a, b, reps, &lf);
  double tu = time_sloth(run_unfused, c, a, b, reps, &lu);
  double tc = time_loop(c, ha, hb, ref, n, reps);

  /* the three ways must compute the same thing */
  sloth_tensor *t = run_fused(c, a, b);
  BENCH_CHECK(sloth_to_host(t, got, bytes) == SLOTH_OK);
  sloth_release(t);
  double worst = 0;
  for (long i = 0; i < n; i++) {
    double e = fabs((double)got[i] - ref[i]) / (1.0 + fabs(ref[i]));
    if (!(e <= worst)) worst = e;
  }
  if (!(worst <= c->tol)) {
    fprintf(stderr, "%s: fused result differs from the C loop: max error %g > %g\n", c->name, worst, c->tol);
    return 1;
  }

  double gb = 3.0 * (double)bytes / 1e9;
  char name[128];
#define FIG(suffix, value, unit)                                                                            \
  do {                                                                                                      \
    snprintf(name, sizeof name, "%s_%s", c->name, suffix);                                                 \
    bench_figure(name, value, unit);                                                                        \
  } while (0)
  FIG("fused_gbps", gb / tf, "GB/s");
  FIG("unfused_gbps", gb / tu, "GB/s");
  FIG("cloop_gbps", gb / tc, "GB/s");
  FIG("fused_ms", tf * 1e3, "ms");
  FIG("unfused_ms", tu * 1e3, "ms");
  FIG("cloop_ms", tc * 1e3, "ms");
  FIG("fused_vs_cloop", tc / tf, "x");
  FIG("fused_vs_unfused", tu / tf, "x");
  FIG("fused_kernels", (double)lf, "launches");
  FIG("unfused_kernels", (double)lu, "launches");
#undef FIG
  sloth_release(a);
  sloth_release(b);
  free(ha), free(hb), free(ref), free(got);
  return 0;
}

/* ------------------------------------------------------------------ ops alone */

typedef struct math_op {
  const char *name;
  sloth_tensor *(*unary)(sloth_tensor *);
  sloth_tensor *(*binary)(sloth_tensor *, sloth_tensor *);
} math_op;

static const math_op math_ops[] = {
    {"exp", sloth_exp, NULL},   {"log", sloth_log, NULL},         {"sin", sloth_sin, NULL},
    {"cos", sloth_cos, NULL},   {"tanh", sloth_tanh, NULL},       {"sigmoid", sloth_sigmoid, NULL},
    {"pow", NULL, sloth_pow},   {"sqrt", sloth_sqrt, NULL},
};
enum { NMATH = sizeof math_ops / sizeof math_ops[0] };

/* Median seconds of each op alone over a (in [0.5, 2)) and b (in [-2, 2)). */
static void time_ops(long n, int reps, double *out) {
  size_t bytes = (size_t)n * sizeof(float);
  float *ha = malloc(bytes), *hb = malloc(bytes);
  bench_fill(ha, n, 0.5f, 2.0f, 3);
  bench_fill(hb, n, -2.0f, 2.0f, 4);
  int64_t shape[1] = {n};
  sloth_tensor *a = sloth_from_host(ha, SLOTH_F32, 1, shape), *b = sloth_from_host(hb, SLOTH_F32, 1, shape);
  BENCH_CHECK(a && b);
  double *v = malloc((size_t)reps * sizeof *v);
  for (int k = 0; k < NMATH; k++) {
    const math_op *m = &math_ops[k];
    for (int r = -1; r < reps; r++) { /* r = -1: compiles */
      double t0 = bench_now();
      sloth_tensor *t = m->unary ? m->unary(a) : m->binary(a, b);
      BENCH_CHECK(t && sloth_sync(&t, 1) == SLOTH_OK && sloth_wait() == SLOTH_OK);
      if (r >= 0) v[r] = bench_now() - t0;
      sloth_release(t);
    }
    out[k] = bench_median(v, reps);
  }
  free(v);
  sloth_release(a), sloth_release(b);
  free(ha), free(hb);
}

static int bench_ops(int reps) {
  const char *nv = getenv("BENCH_N");
  long n = nv && *nv ? atol(nv) / 4 : 4L << 20;
  sloth_device_info info;
  BENCH_CHECK(sloth_device_current(&info) == SLOTH_OK);
  if (info.is_gpu) {
    fprintf(stderr, "bench_elementwise ops: the device is a GPU: no CPU math to compare\n");
    return 0;
  }
  double mine[NMATH], builtin[NMATH];
  time_ops(n, reps, mine);
  /* the builtins: reopen the device with SLOTH_CPU_MATH=0 */
  const char *old = getenv("SLOTH_CPU_MATH");
  char *saved = old ? strdup(old) : NULL;
  sloth_shutdown();
  setenv("SLOTH_CPU_MATH", "0", 1);
  BENCH_CHECK(sloth_init(NULL) == SLOTH_OK);
  time_ops(n, reps, builtin);
  sloth_shutdown();
  if (saved) setenv("SLOTH_CPU_MATH", saved, 1);
  else unsetenv("SLOTH_CPU_MATH");
  free(saved);
  BENCH_CHECK(sloth_init(NULL) == SLOTH_OK);
  char name[64];
  for (int k = 0; k < NMATH; k++) {
    snprintf(name, sizeof name, "op_%s_ms", math_ops[k].name);
    bench_figure(name, mine[k] * 1e3, "ms");
    snprintf(name, sizeof name, "op_%s_builtin_ms", math_ops[k].name);
    bench_figure(name, builtin[k] * 1e3, "ms");
    snprintf(name, sizeof name, "op_%s_speedup", math_ops[k].name);
    bench_figure(name, builtin[k] / mine[k], "x");
  }
  return 0;
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
  const char *nv = getenv("BENCH_N");
  long n = nv && *nv ? atol(nv) : 16L << 20;
  int reps = bench_reps(11);
  if (sloth_init(NULL) != SLOTH_OK) {
    fprintf(stderr, "bench_elementwise: no device: %s\n", sloth_last_error());
    return 77;
  }
  int rc = 0;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "ops") == 0) rc |= bench_ops(bench_reps(5));
  for (size_t k = 0; k < sizeof chains / sizeof chains[0]; k++) {
    bool want = argc < 2;
    for (int i = 1; i < argc; i++)
      want |= strcmp(argv[i], chains[k].name) == 0 || (strcmp(argv[i], "cheap") == 0 && k == 0);
    if (want) rc |= bench_chain(&chains[k], n, reps);
  }
  sloth_shutdown();
  return rc;
}
