/* test_cpu_math.c - accuracy of log, sin, cos, tanh and pow against
 * double-precision libm, over many points and the special values.
 *
 * On a CPU device these ops run kernels/cpu_math.cl (vectorizable
 * polynomial forms); the test runs twice: as built for the device, and with
 * SLOTH_BUILD_OPTIONS=-DSL_NO_FMA, the path taken on CPUs without FMA. On a
 * GPU it checks the builtins against the same bounds. */
#include "sloth.h"
#include "tap.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static uint32_t rng = 12345;
static uint32_t next_u32(void) {
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}
static float uniform(float lo, float hi) { return lo + (hi - lo) * (float)(next_u32() >> 8) * (1.0f / 16777216.0f); }

static float f32_from_bits(uint32_t b) {
  float f;
  memcpy(&f, &b, 4);
  return f;
}

/* Runs op (unary, or binary when op2) over n points; NULL on failure. */
static float *run(sloth_tensor *(*op)(sloth_tensor *), sloth_tensor *(*op2)(sloth_tensor *, sloth_tensor *),
                  const float *x, const float *y, long n) {
  int64_t shape[1] = {n};
  float *out = malloc((size_t)n * sizeof *out);
  sloth_scope_begin();
  sloth_tensor *tx = sloth_from_host(x, SLOTH_F32, 1, shape);
  sloth_tensor *ty = y ? sloth_from_host(y, SLOTH_F32, 1, shape) : NULL;
  sloth_tensor *r = op2 ? op2(tx, ty) : op(tx);
  int rc = r ? sloth_to_host(r, out, (size_t)n * sizeof *out) : -1;
  sloth_scope_end();
  if (rc != SLOTH_OK) {
    diag("run failed: %s", sloth_last_error());
    free(out);
    return NULL;
  }
  return out;
}

/* One float ulp at the magnitude of v (v's own float spacing). */
static double ulp_of(double v) {
  v = fabs(v);
  if (v < FLT_MIN) return ldexp(1.0, -149);
  int e;
  frexp(v, &e);
  return ldexp(1.0, e - 24);
}

/* Both NaN, or equal including the sign of zeros and infinities. */
static int same(float got, double want) {
  if (isnan(want)) return isnan(got);
  return (double)got == want && !signbit(got) == !signbit(want);
}

typedef struct errs {
  double max_ulp, max_abs;
  float worst_x, worst_y;
  long special_bad;
} errs;

/* Compares got with ref(x[, y]) in double; finite results count in ulps and
 * absolute error, non-finite ones must match exactly. */
static errs compare(const float *got, const float *x, const float *y, long n, double (*ref1)(double),
                    double (*ref2)(double, double)) {
  errs e = {0, 0, 0, 0, 0};
  for (long i = 0; i < n; i++) {
    double want = ref2 ? ref2(x[i], y[i]) : ref1(x[i]);
    double wantf = (double)(float)want; /* inf when past the float range */
    if (!isfinite(wantf) || !isfinite(got[i])) {
      if (!same(got[i], wantf)) {
        if (e.special_bad++ < 5) diag("  x=%a%s%a: got %a, want %a", x[i], y ? " y=" : "", y ? y[i] : 0.0f, got[i], wantf);
      }
      continue;
    }
    double a = fabs((double)got[i] - want), u = a / ulp_of(want);
    if (u > e.max_ulp) e.max_ulp = u, e.worst_x = x[i], e.worst_y = y ? y[i] : 0;
    if (a > e.max_abs) e.max_abs = a;
  }
  return e;
}

static double ref_tanh(double v) { return tanh(v); }
static double ref_exp(double v) { return exp(v); }
static double ref_sigmoid(double v) { return 1.0 / (1.0 + exp(-v)); }
static double ref_log(double v) { return log(v); }
static double ref_sin(double v) { return sin(v); }
static double ref_cos(double v) { return cos(v); }
static double ref_pow(double a, double b) { return pow(a, b); }

#define N (1L << 20)

static void test_log(void) {
  float *x = malloc(N * sizeof *x);
  /* every binade of the positive floats, subnormals included, then [0.5, 2) */
  for (long i = 0; i < N / 2; i++) x[i] = f32_from_bits((uint32_t)(1 + (uint64_t)i * 0x7f7fffffu / (N / 2)));
  for (long i = N / 2; i < N; i++) x[i] = uniform(0.5f, 2.0f);
  x[0] = 1.0f, x[1] = FLT_MIN, x[2] = FLT_MAX, x[3] = f32_from_bits(1), x[4] = nextafterf(1.0f, 2.0f);
  x[5] = nextafterf(1.0f, 0.0f);
  float *got = run(sloth_log, NULL, x, NULL, N);
  if (!got) {
    ok(0, "log runs");
    free(x);
    return;
  }
  errs e = compare(got, x, NULL, N, ref_log, NULL);
  ok(e.max_ulp <= 3 && !e.special_bad, "log: max %.2f ulp over all positive binades (worst x=%a)", e.max_ulp, e.worst_x);
  free(got);
  const float sp[] = {0.0f, -0.0f, -1.0f, -FLT_MIN, INFINITY, -INFINITY, NAN, 1.0f};
  got = run(sloth_log, NULL, sp, NULL, 8);
  int good = got != NULL;
  for (int i = 0; good && i < 8; i++)
    if (!same(got[i], log(sp[i]))) {
      diag("  log(%a) = %a, want %a", sp[i], got[i], log(sp[i]));
      good = 0;
    }
  ok(good, "log: 0, -0, negatives, inf, -inf, NaN, 1");
  free(got);
  free(x);
}

static void test_sincos(const char *name, sloth_tensor *(*op)(sloth_tensor *), double (*ref)(double)) {
  float *x = malloc(N * sizeof *x);
  static const float ranges[] = {3.2f, 1e2f, 1e4f};
  for (int r = 0; r < 3; r++) {
    float lim = ranges[r];
    for (long i = 0; i < N; i++) x[i] = uniform(-lim, lim);
    /* points next to multiples of pi/2, where the reduction cancels */
    for (long i = 0; i < N / 8; i++) {
      double k = floor((double)uniform(-lim, lim) / M_PI_2);
      x[i] = (float)(k * M_PI_2);
    }
    float *got = run(op, NULL, x, NULL, N);
    if (!got) {
      ok(0, "%s runs", name);
      continue;
    }
    errs e = compare(got, x, NULL, N, ref, NULL);
    ok(e.max_abs <= 1e-6 && !e.special_bad, "%s: |x| <= %g: max abs error %.3g (worst x=%a)", name, lim, e.max_abs,
       e.worst_x);
    free(got);
  }
  /* small arguments: relative accuracy */
  for (long i = 0; i < N; i++) x[i] = uniform(-1.0f, 1.0f) * ldexpf(1.0f, -(int)(next_u32() % 40));
  float *got = run(op, NULL, x, NULL, N);
  if (got) {
    errs e = compare(got, x, NULL, N, ref, NULL);
    ok(e.max_ulp <= 4, "%s: |x| <= 1: max %.2f ulp (worst x=%a)", name, e.max_ulp, e.worst_x);
    free(got);
  }
  /* larger arguments: reported, and bounded */
  static const float big[] = {1e5f, 1e6f, 1e7f, 1e9f, 1e20f, FLT_MAX};
  for (int r = 0; r < 6; r++) {
    for (long i = 0; i < N / 16; i++) x[i] = uniform(-1.0f, 1.0f) * big[r];
    got = run(op, NULL, x, NULL, N / 16);
    if (!got) continue;
    errs e = compare(got, x, NULL, N / 16, ref, NULL);
    int bounded = 1;
    for (long i = 0; i < N / 16; i++) bounded &= got[i] >= -1.0f && got[i] <= 1.0f;
    diag("%s: |x| <= %g: max abs error %.3g", name, big[r], e.max_abs);
    ok(bounded, "%s: results in [-1, 1] for |x| <= %g", name, big[r]);
    free(got);
  }
  const float sp[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, FLT_MIN, -f32_from_bits(1)};
  got = run(op, NULL, sp, NULL, 7);
  int good = got != NULL;
  for (int i = 0; good && i < 7; i++)
    if (!same(got[i], (float)ref(sp[i]))) {
      diag("  %s(%a) = %a, want %a", name, sp[i], got[i], ref(sp[i]));
      good = 0;
    }
  ok(good, "%s: 0, -0, inf, -inf, NaN, tiny", name);
  free(got);
  free(x);
}

static void test_tanh(void) {
  float *x = malloc(N * sizeof *x);
  for (long i = 0; i < N / 2; i++) x[i] = uniform(-12.0f, 12.0f);
  for (long i = N / 2; i < N; i++) x[i] = uniform(-1.0f, 1.0f) * ldexpf(1.0f, -(int)(next_u32() % 30));
  float *got = run(sloth_tanh, NULL, x, NULL, N);
  if (got) {
    errs e = compare(got, x, NULL, N, ref_tanh, NULL);
    ok(e.max_ulp <= 4, "tanh: max %.2f ulp (worst x=%a)", e.max_ulp, e.worst_x);
    free(got);
  } else ok(0, "tanh runs");
  const float sp[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 100.0f, -100.0f};
  got = run(sloth_tanh, NULL, sp, NULL, 7);
  int good = got != NULL;
  for (int i = 0; good && i < 7; i++)
    if (!same(got[i], tanh(sp[i]))) {
      diag("  tanh(%a) = %a, want %a", sp[i], got[i], tanh(sp[i]));
      good = 0;
    }
  ok(good, "tanh: 0, -0, inf, -inf, NaN, +-100");
  free(got);
  free(x);
}

/* Unary op over uniform points in [lo, hi) and small ones, then special values. */
static void test_unary(const char *name, sloth_tensor *(*op)(sloth_tensor *), double (*ref)(double), float lo, float hi,
                       double max_ulp, const float *sp, int nsp) {
  float *x = malloc(N * sizeof *x);
  for (long i = 0; i < N / 2; i++) x[i] = uniform(lo, hi);
  for (long i = N / 2; i < N; i++) x[i] = uniform(-1.0f, 1.0f) * ldexpf(1.0f, -(int)(next_u32() % 40));
  float *got = run(op, NULL, x, NULL, N);
  if (got) {
    errs e = compare(got, x, NULL, N, ref, NULL);
    ok(e.max_ulp <= max_ulp && !e.special_bad, "%s: max %.2f ulp over [%g, %g] (worst x=%a)", name, e.max_ulp, lo, hi,
       e.worst_x);
    free(got);
  } else ok(0, "%s runs", name);
  got = run(op, NULL, sp, NULL, nsp);
  int good = got != NULL;
  for (int i = 0; good && i < nsp; i++)
    if (!same(got[i], (float)ref(sp[i]))) {
      diag("  %s(%a) = %a, want %a", name, sp[i], got[i], (float)ref(sp[i]));
      good = 0;
    }
  ok(good, "%s: special values", name);
  free(got);
  free(x);
}

static void test_pow(void) {
  float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
  for (long i = 0; i < N; i++) {
    switch (i % 4) {
    case 0: x[i] = uniform(0.0f, 4.0f), y[i] = uniform(-20.0f, 20.0f); break;
    case 1: x[i] = uniform(0.0f, 1e6f), y[i] = uniform(-6.0f, 6.0f); break;
    case 2: x[i] = -uniform(0.0f, 10.0f), y[i] = (float)((int)(next_u32() % 41) - 20); break; /* negative ** integer */
    default: x[i] = uniform(0.5f, 1.5f), y[i] = uniform(-300.0f, 300.0f); break;           /* near under/overflow */
    }
  }
  float *got = run(NULL, sloth_pow, x, y, N);
  if (got) {
    errs e = compare(got, x, y, N, NULL, ref_pow);
    ok(e.max_ulp <= 2 && !e.special_bad, "pow: max %.2f ulp (worst x=%a y=%a)", e.max_ulp, e.worst_x, e.worst_y);
    free(got);
  } else ok(0, "pow runs");
  /* the C99 special cases: every pair of these */
  const float v[] = {0.0f, -0.0f, 1.0f, -1.0f, 2.0f, -2.0f, 0.5f, -0.5f, 3.0f, -3.0f, 2.5f, -2.5f,
                     INFINITY, -INFINITY, NAN, FLT_MIN, FLT_MAX};
  enum { NV = sizeof v / sizeof v[0] };
  float sx[NV * NV], sy[NV * NV];
  for (int i = 0; i < NV; i++)
    for (int j = 0; j < NV; j++) sx[i * NV + j] = v[i], sy[i * NV + j] = v[j];
  got = run(NULL, sloth_pow, sx, sy, NV * NV);
  int bad = got == NULL;
  for (int i = 0; got && i < NV * NV; i++) {
    double want = (double)(float)pow(sx[i], sy[i]);
    int good = isfinite(want) && want != 0 ? fabs(got[i] - want) <= ulp_of(want) : same(got[i], want);
    if (!good && bad++ < 8) diag("  pow(%a, %a) = %a, want %a", sx[i], sy[i], got[i], want);
  }
  ok(!bad, "pow: special cases (%d x %d pairs)", NV, NV);
  free(got);
  free(x), free(y);
}

static void run_all(void) {
  static const float exp_sp[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 88.72f, 88.73f, -87.0f, -100.0f, -103.9f, -104.0f, -200.0f};
  test_unary("exp", sloth_exp, ref_exp, -104.0f, 88.7f, 2, exp_sp, sizeof exp_sp / sizeof exp_sp[0]);
  static const float sig_sp[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 100.0f, -80.0f};
  test_unary("sigmoid", sloth_sigmoid, ref_sigmoid, -80.0f, 20.0f, 3, sig_sp, sizeof sig_sp / sizeof sig_sp[0]);
  test_log();
  test_sincos("sin", sloth_sin, ref_sin);
  test_sincos("cos", sloth_cos, ref_cos);
  test_tanh();
  test_pow();
}

int main(void) {
  if (sloth_init(NULL) != SLOTH_OK) skip_all(sloth_last_error());
  sloth_device_info info;
  sloth_device_current(&info);
  diag("device: %s (%s)", info.name, info.is_gpu ? "GPU: builtins" : "CPU: kernels/cpu_math.cl");
  run_all();
  if (!info.is_gpu) {
    /* again with the path for CPUs without FMA (the device is reopened and
     * reads SLOTH_BUILD_OPTIONS again) */
    const char *old = getenv("SLOTH_BUILD_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof opts, "%s -DSL_NO_FMA", old ? old : "");
    sloth_shutdown();
    setenv("SLOTH_BUILD_OPTIONS", opts, 1);
    diag("again with SLOTH_BUILD_OPTIONS=%s", opts);
    run_all();
  }
  sloth_shutdown();
  return tap_done();
}
