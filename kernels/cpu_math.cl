/*
 * cpu_math.cl - vectorizable float math for OpenCL CPU devices.
 *
 * Included at the top of every generated kernel on a CPU device (see
 * core/codegen.c; embedded into the library at build time). The op table
 * (core/ops.def) spells these ops sl_exp, sl_log, sl_sin, sl_cos, sl_tanh, sl_pow,
 * sl_erf;
 * on GPUs and in CUDA they map to the builtins instead.
 *
 * Why: POCL compiles a kernel's work-items into a loop that LLVM vectorizes,
 * but its builtin log, sin, cos, tanh and pow are table-driven or branchy
 * code (or calls) that the vectorizer gives up on, and one of them makes a
 * whole fused kernel scalar: an 8-op chain with log and sin ran 2x slower
 * fused than as 8 kernels. (Its exp vectorizes, without fma; sl_exp serves
 * exp, sigmoid, silu and tanh alike.) Everything here is straight-line code
 * (selects, no branches, no tables, no calls but fabs, copysign and fma where
 * the target has it), so a fused kernel stays a vector loop.
 *
 * Accuracy, measured against double-precision libm by tests/test_cpu_math:
 *   sl_exp     <= 1 ulp; overflow to inf, gradual underflow, NaN -> NaN.
 *   sl_log     <= 1 ulp over all positive floats (subnormals included);
 *              log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN -> NaN.
 *   sl_sin/cos absolute error <= 1e-7 for |x| <= 1e7 with hardware FMA
 *              (two-step 3-part reduction), 5e-6 at |x| ~ 1e9; without FMA
 *              (4-part Cody-Waite) <= 1e-7 for |x| <= 1e4, 1e-6 at 1e5.
 *              Past that the reduction loses accuracy (there is no
 *              Payne-Hanek), but results stay in [-1, 1]; inf and NaN give
 *              NaN; sin(-0) = -0.
 *   sl_tanh    <= 1.3 ulp.
 *   sl_erf     <= 4 ulp for |x| < 1, absolute error <= 5e-7 (<= 8 ulp of
 *              results near +-1) elsewhere; +-1 past |x| = 3.92, NaN -> NaN.
 *              (POCL's builtin erf is a call: gelu ran 30x slower with it.)
 *   sl_pow     log2 and exp2 in double precision where the device has
 *              cl_khr_fp64: <= 0.5 ulp, and the C99 special cases (pow(x, 0)
 *              = 1, pow(1, y) = 1, negative x with integer y, zeros and
 *              infinities). Without fp64 it is the builtin pow.
 * SLOTH_CPU_MATH=0 in the environment turns this file off (builtins again).
 */

/* everything inlines: a call left in the work-item loop would keep it scalar */
#define SL_INLINE static inline __attribute__((always_inline))

/* POCL's rint and floor are software routines (~20 vector instructions).
 * SL_RINT_SMALL is rint for |v| < 2^22; SL_INTEGRAL an integer within 1 of
 * v for any v (floats >= 2^23 are integers). */
#define SL_RINT_SMALL(v) (((v) + 0x1.8p23f) - 0x1.8p23f)
#define SL_INTEGRAL(v) (fabs(v) < 0x1p22f ? SL_RINT_SMALL(v) : fabs(v) < 0x1p23f ? (float)(int)(v) : (v))

/* -DSL_NO_FMA (SLOTH_BUILD_OPTIONS) forces the path for targets without FMA,
 * which tests/test_cpu_math also checks. */
#if !defined(SL_NO_FMA) && \
    (defined(FP_FAST_FMAF) || defined(__FMA__) || defined(__ARM_FEATURE_FMA) || defined(__aarch64__))
#define SL_HAVE_FMA 1
#endif

/* exp: x = n ln2 + g, |g| <= ln2/2, exp(g) by a degree-7 polynomial (Cephes
 * expf); 2^n in two factors so that subnormal results come out right. */
SL_INLINE float sl_exp(float x) {
  const float xc = x > 89.0f ? 89.0f : x < -104.0f ? -104.0f : x; /* NaN passes */
  const float n = SL_RINT_SMALL(xc * 1.44269504089f);
  float g = xc - n * 0.693359375f;
  g = g + n * 2.12194440e-4f;
  const float z = g * g;
  float p = 1.9875691500e-4f;
  p = p * g + 1.3981999507e-3f;
  p = p * g + 8.3334519073e-3f;
  p = p * g + 4.1665795894e-2f;
  p = p * g + 1.6666665459e-1f;
  p = p * g + 5.0000001201e-1f;
  p = p * z + g + 1.0f;
  const int ni = (int)n, n1 = ni >> 1, n2 = ni - n1; /* each in [-76, 64] */
  float r = p * as_float((n1 + 127) << 23) * as_float((n2 + 127) << 23);
  r = x > 88.72283935f ? INFINITY : r;
  r = x < -103.972076f ? 0.0f : r;
  return r;
}

/* log: x = 2^e * m, m in [sqrt(1/2), sqrt(2)), log(x) = e*ln2 + log1p(m - 1),
 * log1p by a degree-9 polynomial (Cephes logf); ln2 split in two parts. */
SL_INLINE float sl_log(float x) {
  const int sub = x < 0x1p-126f; /* subnormal (or <= 0: fixed up below) */
  const float xs = sub ? x * 0x1p25f : x;
  const int ix = as_int(xs);
  int e = ((ix >> 23) & 0xff) - 126 - (sub ? 25 : 0);
  const float m = as_float((ix & 0x007fffff) | 0x3f000000); /* [0.5, 1) */
  const int lo = m < 0.70710678f;
  e = lo ? e - 1 : e;
  const float f = (lo ? m + m : m) - 1.0f; /* exact; [-0.293, 0.414) */
  const float z = f * f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  const float fe = (float)e;
  float y = f * z * p;
  y = y - 2.12194440e-4f * fe;
  y = y - 0.5f * z;
  float r = f + y;
  r = r + 0.693359375f * fe;
  r = x == 0.0f ? -INFINITY : r;
  r = x < 0.0f ? NAN : r;
  r = x == INFINITY ? x : r;
  r = x != x ? x : r;
  return r;
}

/* x = k*pi/2 + r with |r| <= ~pi/4: returns r, and k (mod 4 is what counts) in *n */
#ifdef SL_HAVE_FMA
SL_INLINE float sl__reduce(float x, int *n) {
  /* pi/2 = C1 + C2 + C3 (float parts); fma makes each q*Ci exact. q need
   * not be the nearest integer to x*2/pi: the second step corrects it. */
  const float q = SL_INTEGRAL(x * 0.636619772f);
  float r = fma(-q, 0x1.921fb6p+0f, x);
  r = fma(-q, -0x1.777a5cp-25f, r);
  r = fma(-q, -0x1.ee59dap-50f, r);
  /* x*2/pi was rounded: past |x| ~ 2^20, q can miss the nearest integer and
   * leave |r| > pi/4; a second step brings r back */
  r = fabs(r) >= 0x1p20f ? 0.0f : r; /* |x| past ~2^40: give up, stay finite (NaN stays) */
  const float q2 = SL_RINT_SMALL(r * 0.636619772f);
  r = fma(-q2, 0x1.921fb6p+0f, r);
  r = fma(-q2, -0x1.777a5cp-25f, r);
  *n = (fabs(q) < 0x1p30f ? (int)q : 0) + (int)q2; /* q >= 2^30: a multiple of 4 */
  return r;
}
#else
SL_INLINE float sl__reduce(float x, int *n) {
#pragma OPENCL FP_CONTRACT OFF
  /* Cody-Waite: C1..C3 have <= 11 bits, so q*Ci is exact for |q| < 2^13 */
  const float q = SL_INTEGRAL(x * 0.636619772f);
  float r = x - q * 0x1.92p+0f;
  r = r - q * 0x1.fb4p-12f;
  r = r - q * 0x1.444p-24f;
  r = r - q * 0x1.68c234p-39f;
  *n = fabs(q) < 0x1p30f ? (int)q : 0; /* q >= 2^30 is a multiple of 4 */
  return r;
}
#endif

/* sin and cos: x = q*pi/2 + r with |r| <= pi/4, then the sin or cos
 * polynomial on r (Cephes sinf/cosf) chosen by the quadrant q mod 4. */
SL_INLINE float sl__sincos(float x, int quadrant_shift) {
  int n;
  float r = sl__reduce(x, &n);
  n += quadrant_shift;
  /* past the range of the reduction |r| may be anything: keep the
   * polynomials finite (a NaN r stays NaN) */
  r = fabs(r) > 4.0f ? 0.0f : r;
  const float z = r * r;
  float s = -1.9515295891e-4f;
  s = s * z + 8.3321608736e-3f;
  s = s * z - 1.6666654611e-1f;
  s = s * z * r + r;
  float c = 2.443315711809948e-5f;
  c = c * z - 1.388731625493765e-3f;
  c = c * z + 4.166664568298827e-2f;
  c = c * z * z - 0.5f * z + 1.0f;
  float v = (n & 1) ? c : s;
  v = (n & 2) ? -v : v;
  /* past the range of the reduction |r| may exceed pi/4: stay in [-1, 1]
   * (selects, not clamp(): a NaN must stay NaN) */
  v = v > 1.0f ? 1.0f : v;
  v = v < -1.0f ? -1.0f : v;
  return v;
}

SL_INLINE float sl_sin(float x) {
  const float v = sl__sincos(x, 0);
  return x == 0.0f ? x : v; /* keeps the sign of -0 */
}

SL_INLINE float sl_cos(float x) { return sl__sincos(x, 1); }

/* tanh: odd polynomial for |x| < 0.625 (Cephes tanhf), else
 * 1 - 2/(exp(2|x|) + 1) with the sign of x. */
SL_INLINE float sl_tanh(float x) {
  const float a = fabs(x);
  const float z = a * a;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * a + a;
  const float big = 1.0f - 2.0f / (sl_exp(a + a) + 1.0f);
  return copysign(a < 0.625f ? small : big, x); /* NaN: big, which is NaN */
}

/* erf: x P(x^2) / Q(x^2), degrees 12 and 8 in x (Eigen's float erf
 * coefficients), on |x| < 3.92; erf rounds to +-1 in float beyond. */
SL_INLINE float sl_erf(float x) {
  const float c = fmin(fmax(x, -3.92f), 3.92f), z = c * c;
  float p = -2.72614225801306e-10f;
  p = p * z + 2.77068142495902e-08f;
  p = p * z - 2.10102402082508e-06f;
  p = p * z - 5.69250639462346e-05f;
  p = p * z - 7.34990630326855e-04f;
  p = p * z - 2.95459980854025e-03f;
  p = p * z - 1.60960333262415e-02f;
  float q = -1.45660718464996e-05f;
  q = q * z - 2.13374055278905e-04f;
  q = q * z - 1.68282697438203e-03f;
  q = q * z - 7.37332916720468e-03f;
  q = q * z - 1.42647390514189e-02f;
  const float r = fabs(x) >= 3.92f ? copysign(1.0f, x) : c * (p / q); /* c * p would go subnormal first */
  return x != x ? x : r;
}

#ifdef cl_khr_fp64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
/* pow(x, y) = 2^(y * log2|x|), both steps in double, then the C99 special
 * cases. Only int32 <-> double conversions (AVX2 has no int64 <-> double). */
SL_INLINE float sl_pow(float x, float y) {
  const double ax = fabs((double)x); /* float subnormals are normal doubles */
  const long bits = as_long(ax);
  int e = (int)((bits >> 52) & 0x7ff) - 1023;
  double m = as_double((bits & 0x000fffffffffffffL) | 0x3ff0000000000000L); /* [1, 2) */
  const int hi = m > 1.4142135623730951;
  m = hi ? m * 0.5 : m;
  e = hi ? e + 1 : e;
  /* log(m) = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716 */
  const double s = (m - 1.0) / (m + 1.0), s2 = s * s;
  double t = 1.0 / 15;
  t = t * s2 + 1.0 / 13;
  t = t * s2 + 1.0 / 11;
  t = t * s2 + 1.0 / 9;
  t = t * s2 + 1.0 / 7;
  t = t * s2 + 1.0 / 5;
  t = t * s2 + 1.0 / 3;
  t = t * s2 + 1.0;
  const double lg2 = (double)e + 2.0 * s * t * 1.4426950408889634; /* log2|x| */
  double w = (double)y * lg2;
  w = ax == 0.0 ? -(double)y * INFINITY : w;           /* log2(0) = -inf */
  w = ax == INFINITY ? (double)y * INFINITY : w;       /* log2(inf) = inf */
  w = w > 200.0 ? 200.0 : w;                           /* NaN passes */
  w = w < -200.0 ? -200.0 : w;
  /* 2^w = 2^n * exp(g), g = (w - n) ln2, |g| <= 0.347, degree 9 */
  const double nd = (w + 0x1.8p52) - 0x1.8p52; /* rint, |w| <= 200 */
  const double g = (w - nd) * 0.6931471805599453;
  double p = 1.0 / 362880;
  p = p * g + 1.0 / 40320;
  p = p * g + 1.0 / 5040;
  p = p * g + 1.0 / 720;
  p = p * g + 1.0 / 120;
  p = p * g + 1.0 / 24;
  p = p * g + 1.0 / 6;
  p = p * g + 0.5;
  p = p * g + 1.0;
  p = p * g + 1.0;
  const int n = (int)nd; /* |n| <= 200; NaN gives garbage that p's NaN hides */
  const double scale = as_double((long)(n + 1023) << 52);
  float r = (float)(p * scale);
  /* the sign and the special cases */
  const int yi = (int)(fabs(y) < 0x1p24f ? y : 0.0f);  /* floats >= 2^24 are even */
  const int yint = fabs(y) >= 0x1p24f || (float)yi == y; /* inf counts as integer here */
  const int yodd = yint && (yi & 1);
  r = (x < 0.0f && yodd) ? -r : r;                      /* includes x = -inf */
  r = (x < 0.0f && !yint && x != -INFINITY) ? NAN : r;  /* negative ** non-integer */
  r = (x == 0.0f && yodd) ? copysign(r, x) : r;        /* pow(-0, odd) */
  r = (x != x || y != y) ? x + y : r;
  r = (x == -1.0f && isinf(y)) ? 1.0f : r;
  r = (x == 1.0f || y == 0.0f) ? 1.0f : r;
  return r;
}
#else
#define sl_pow(x, y) pow(x, y)
#endif
