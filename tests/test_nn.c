/* test_nn.c - activations, softmax, normalization and losses against naive C
 * references (double accumulation): several shapes and axes, extreme
 * logits, batch_norm in both modes with its running statistics, kernel
 * counts where fusion is natural, laziness, and bad input. */
#include <sloth.h>

#include "tap.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static unsigned rng = 4242;
static float frand(void) { /* [-0.5, 0.5) */
  rng = rng * 1103515245u + 12345u;
  return (float)((rng >> 9) & 0xffff) / 65536.0f - 0.5f;
}
static void fill(float *p, int64_t n, float scale, float offset) {
  for (int64_t i = 0; i < n; i++) p[i] = frand() * scale + offset;
}
static int64_t numel(int rank, const int64_t *s) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= s[i];
  return n;
}
static const char *shape_s(int rank, const int64_t *s) {
  static char buf[8][64];
  static int k;
  char *b = buf[k++ % 8];
  int u = sprintf(b, "[");
  for (int i = 0; i < rank; i++) u += sprintf(b + u, i ? ",%lld" : "%lld", (long long)s[i]);
  sprintf(b + u, "]");
  return b;
}

enum { BIG = 1 << 17 };
static float X[BIG], X2[BIG], W[1024], B[1024], RM[256], RV[256], G[BIG], R[BIG], G2[256], R2[256], G3[256], R3[256];

static int64_t launches(void) { return sloth_counter("kernel_launch"); }

/* Reads t (f32, n elements) into out and compares with want: the error, or
 * INFINITY if it could not be read. */
static double err_of(sloth_tensor *t, float *out, const float *want, int64_t n, double atol, double rtol) {
  if (!t || sloth_numel(t) != n || sloth_dtype_of(t) != SLOTH_F32) return INFINITY;
  if (sloth_to_host(t, out, (size_t)n * sizeof(float)) != SLOTH_OK) return INFINITY;
  return tap_max_err(out, want, n, atol, rtol);
}

static bool all_finite(const float *p, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(p[i])) return false;
  return true;
}

/* ------------------------------------------------------------------ activations */

static double gelu_ref(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }
static double gelu_tanh_ref(double x) { return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }
static double silu_ref(double x) { return x / (1 + exp(-x)); }

static void activations(void) {
  enum { N = 1000 };
  fill(X, N, 16, 0);
  float ext[] = {-1000, -100, -30, -10, -5, -1e-3f, 0, 1e-3f, 5, 10, 30, 100, 1000};
  memcpy(X, ext, sizeof ext);
  sloth_scope_begin();
  sloth_tensor *x = sloth_from_host(X, SLOTH_F32, 2, (int64_t[]){10, 100});
  struct {
    const char *name;
    sloth_tensor *(*fn)(sloth_tensor *);
    double (*ref)(double);
  } un[] = {{"gelu", sloth_gelu, gelu_ref}, {"gelu_tanh", sloth_gelu_tanh, gelu_tanh_ref}, {"silu", sloth_silu, silu_ref}};
  for (size_t k = 0; k < sizeof un / sizeof un[0]; k++) {
    for (int i = 0; i < N; i++) R[i] = (float)un[k].ref(X[i]);
    int64_t l0 = launches();
    double e = err_of(un[k].fn(x), G, R, N, 1e-6, 1e-5);
    ok(e <= 1 && all_finite(G, N) && launches() - l0 == 1, "%s on [-8, 8] and +-1000 (err %.3g)", un[k].name, e);
  }
  /* dense: gelu's erf is a polynomial on CPU devices (kernels/cpu_math.cl),
   * absolute error <= 5e-7, so gelu's is <= 0.5 |x| 5e-7 */
  {
    enum { D = 120001 };
    static float xd[D], gd[D], rd[D];
    for (int i = 0; i < D; i++) xd[i] = -6.0f + 12.0f * (float)i / (D - 1), rd[i] = (float)gelu_ref(xd[i]);
    sloth_tensor *t = sloth_from_host(xd, SLOTH_F32, 1, (int64_t[]){D});
    double e = err_of(sloth_gelu(t), gd, rd, D, 2e-6, 2e-6);
    ok(e <= 1, "gelu on a dense grid of [-6, 6] within 2e-6 (err %.3g)", e);
  }
  /* integer input computes in f32 */
  int32_t iv[5] = {-2, -1, 0, 1, 3};
  sloth_tensor *xi = sloth_from_host(iv, SLOTH_I32, 1, (int64_t[]){5});
  sloth_tensor *gi = sloth_gelu(xi);
  for (int i = 0; i < 5; i++) R[i] = (float)gelu_ref(iv[i]);
  ok(gi && sloth_dtype_of(gi) == SLOTH_F32 && err_of(gi, G, R, 5, 1e-6, 1e-5) <= 1, "gelu of i32 gives f32");

  double slopes[] = {0.01, 0.2, -0.5};
  for (int k = 0; k < 3; k++) {
    for (int i = 0; i < N; i++) R[i] = X[i] > 0 ? X[i] : (float)(X[i] * slopes[k]);
    int64_t c0 = sloth_counter("kernel_compile");
    double e = err_of(sloth_leaky_relu(x, slopes[k]), G, R, N, 1e-7, 1e-6);
    int64_t dc = sloth_counter("kernel_compile") - c0;
    ok(e <= 1 && (k == 0 || dc == 0), "leaky_relu slope %g (err %.3g)%s", slopes[k], e, k ? ", a new slope compiles nothing" : "");
  }
  sloth_tensor *li = sloth_leaky_relu(xi, 2);
  int32_t io[5];
  ok(li && sloth_dtype_of(li) == SLOTH_I32 && sloth_to_host(li, io, sizeof io) == SLOTH_OK && io[0] == -4 && io[1] == -2 &&
         io[2] == 0 && io[3] == 1 && io[4] == 3,
     "leaky_relu of i32 by 2 stays i32");
  sloth_tensor *lf = sloth_leaky_relu(xi, 0.5);
  float want5[5] = {-1, -0.5f, 0, 1, 3};
  ok(lf && sloth_dtype_of(lf) == SLOTH_F32 && err_of(lf, G, want5, 5, 1e-12, 0) <= 1, "leaky_relu of i32 by 0.5 gives f32");

  double bounds[][2] = {{-1, 2}, {-INFINITY, 0.5}, {-2.5, INFINITY}, {3, -3}, {-INFINITY, INFINITY}};
  for (int k = 0; k < 5; k++) {
    double lo = bounds[k][0], hi = bounds[k][1];
    for (int i = 0; i < N; i++) R[i] = (float)fmin(fmax(X[i], lo), hi);
    double e = err_of(sloth_clamp(x, lo, hi), G, R, N, 1e-12, 0);
    ok(e <= 1, "clamp to [%g, %g]%s", lo, hi, lo > hi ? " (hi wins)" : "");
  }
  sloth_tensor *ci = sloth_clamp(xi, -1, 2);
  ok(ci && sloth_dtype_of(ci) == SLOTH_I32 && sloth_to_host(ci, io, sizeof io) == SLOTH_OK && io[0] == -1 && io[1] == -1 &&
         io[2] == 0 && io[3] == 1 && io[4] == 2,
     "clamp of i32 to [-1, 2] stays i32");
  sloth_tensor *cinf = sloth_clamp(xi, -INFINITY, 0);
  ok(cinf && sloth_dtype_of(cinf) == SLOTH_I32 && sloth_to_host(cinf, io, sizeof io) == SLOTH_OK && io[0] == -2 && io[4] == 0,
     "clamp of i32 to [-inf, 0] stays i32");
  sloth_tensor *cf = sloth_clamp(xi, -1.5, 2.5);
  float wantc[5] = {-1.5f, -1, 0, 1, 2.5f};
  ok(cf && sloth_dtype_of(cf) == SLOTH_F32 && err_of(cf, G, wantc, 5, 1e-12, 0) <= 1, "clamp of i32 to [-1.5, 2.5] gives f32");
  uint8_t u8v[4] = {0, 7, 100, 255}, u8o[4];
  sloth_tensor *cu = sloth_clamp(sloth_from_host(u8v, SLOTH_U8, 1, (int64_t[]){4}), -5, 100);
  ok(cu && sloth_dtype_of(cu) == SLOTH_U8 && sloth_to_host(cu, u8o, 4) == SLOTH_OK && u8o[0] == 0 && u8o[1] == 7 &&
         u8o[2] == 100 && u8o[3] == 100,
     "clamp of u8 to [-5, 100] (bounds clipped to the dtype) stays u8");

  /* a chain of activations is one kernel */
  for (int i = 0; i < N; i++) {
    double v = silu_ref(gelu_ref(X[i] * 0.5));
    v = v > 0 ? v : v * 0.1;
    R[i] = (float)fmin(fmax(v, -0.05), 1.5);
  }
  int64_t l0 = launches();
  sloth_tensor *chain = sloth_clamp(sloth_leaky_relu(sloth_silu(sloth_gelu(sloth_mul_scalar(x, 0.5))), 0.1), -0.05, 1.5);
  double e = err_of(chain, G, R, N, 1e-6, 1e-5);
  ok(e <= 1 && launches() - l0 == 1, "clamp(leaky_relu(silu(gelu(x/2)))) is one kernel (%lld; err %.3g)",
     (long long)(launches() - l0), e);
  sloth_scope_end();
}

/* ------------------------------------------------------------------ softmax */

static void split(int rank, const int64_t *shape, int axis, int64_t *outer, int64_t *len, int64_t *inner) {
  *outer = 1, *inner = 1, *len = shape[axis];
  for (int d = 0; d < axis; d++) *outer *= shape[d];
  for (int d = axis + 1; d < rank; d++) *inner *= shape[d];
}

static void ref_softmax(bool lg, const float *x, float *y, int rank, const int64_t *shape, int axis) {
  int64_t outer, len, inner;
  split(rank, shape, axis, &outer, &len, &inner);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      const float *p = x + o * len * inner + i;
      float *q = y + o * len * inner + i;
      double m = -INFINITY, s = 0;
      for (int64_t j = 0; j < len; j++) m = fmax(m, p[j * inner]);
      for (int64_t j = 0; j < len; j++) s += exp((double)p[j * inner] - m);
      for (int64_t j = 0; j < len; j++)
        q[j * inner] = (float)(lg ? (double)p[j * inner] - m - log(s) : exp((double)p[j * inner] - m) / s);
    }
}

static void softmax_case(int rank, const int64_t *shape, int axis, float scale) {
  int64_t n = numel(rank, shape);
  int a = axis < 0 ? axis + rank : axis;
  fill(X, n, scale, 0);
  sloth_scope_begin();
  sloth_tensor *x = sloth_from_host(X, SLOTH_F32, rank, shape);
  for (int lg = 0; lg < 2; lg++) {
    ref_softmax(lg, X, R, rank, shape, a);
    int64_t l0 = launches();
    sloth_tensor *y = lg ? sloth_log_softmax(x, axis) : sloth_softmax(x, axis);
    bool shape_ok = y && sloth_rank(y) == rank && memcmp(sloth_shape(y), shape, (size_t)rank * sizeof *shape) == 0;
    double e = err_of(y, G, R, n, lg ? 1e-5 : 1e-7, 1e-5);
    int64_t k = launches() - l0;
    ok(shape_ok && e <= 1 && k <= 3, "%s %s axis %d (err %.3g, %lld kernels)", lg ? "log_softmax" : "softmax",
       shape_s(rank, shape), axis, e, (long long)k);
  }
  sloth_scope_end();
}

static void softmax_extreme(void) {
  /* rows that would overflow exp without the max subtracted */
  float v[6][4] = {{1000, -1000, 0, 999},     {-1000, -1000, -1000, -1000}, {1e4f, 1e4f, -1e4f, 0},
                   {1e30f, -1e30f, 0, 1e30f}, {88, 89, 90, 200},            {-200, -150, -100, -1000}};
  int64_t shape[2] = {6, 4};
  memcpy(X, v, sizeof v);
  sloth_scope_begin();
  sloth_tensor *x = sloth_from_host(X, SLOTH_F32, 2, shape);
  for (int lg = 0; lg < 2; lg++) {
    ref_softmax(lg, X, R, 2, shape, 1);
    double e = err_of(lg ? sloth_log_softmax(x, -1) : sloth_softmax(x, -1), G, R, 24, 1e-6, 1e-5);
    ok(e <= 1 && all_finite(G, 24), "%s of logits up to +-1e30 is finite and right (err %.3g)", lg ? "log_softmax" : "softmax",
       e);
  }
  /* along axis 0 too (a non-last axis) */
  ref_softmax(false, X, R, 2, shape, 0);
  double e = err_of(sloth_softmax(x, 0), G, R, 24, 1e-6, 1e-5);
  ok(e <= 1 && all_finite(G, 24), "softmax of extreme logits along axis 0 (err %.3g)", e);
  sloth_scope_end();
}

/* ------------------------------------------------------------------ normalization */

static void ref_layer_norm(const float *x, float *y, int64_t rows, int64_t len, const float *w, const float *b, double eps) {
  for (int64_t r = 0; r < rows; r++) {
    const float *p = x + r * len;
    double m = 0, v = 0;
    for (int64_t j = 0; j < len; j++) m += p[j];
    m /= len;
    for (int64_t j = 0; j < len; j++) v += (p[j] - m) * (p[j] - m);
    v /= len;
    for (int64_t j = 0; j < len; j++) {
      double t = (p[j] - m) / sqrt(v + eps);
      if (w) t *= w[j];
      if (b) t += b[j];
      y[r * len + j] = (float)t;
    }
  }
}

static void layer_norm_case(int rank, const int64_t *shape, int k, bool with_w, bool with_b, double eps, float offset) {
  int64_t n = numel(rank, shape), len = numel(k, shape + rank - k);
  fill(X, n, 4, offset);
  fill(W, len, 2, 1);
  fill(B, len, 1, 0);
  ref_layer_norm(X, R, n / len, len, with_w ? W : NULL, with_b ? B : NULL, eps);
  sloth_scope_begin();
  sloth_tensor *x = sloth_from_host(X, SLOTH_F32, rank, shape);
  sloth_tensor *w = with_w ? sloth_from_host(W, SLOTH_F32, k, shape + rank - k) : NULL;
  sloth_tensor *b = with_b ? sloth_from_host(B, SLOTH_F32, k, shape + rank - k) : NULL;
  int64_t l0 = launches();
  /* around 1000, f32 sums carry ~1e-4 absolute error into the mean */
  double e = err_of(sloth_layer_norm(x, k, w, b, eps), G, R, n, offset ? 1e-3 : 1e-4, 1e-4);
  int64_t kk = launches() - l0;
  ok(e <= 1 && kk <= 3, "layer_norm %s over the last %d%s%s eps %g%s (err %.3g, %lld kernels)", shape_s(rank, shape), k,
     with_w ? " +weight" : "", with_b ? " +bias" : "", eps, offset ? " around 1000" : "", e, (long long)kk);
  sloth_scope_end();
}

/* per channel c of x [N, C, S...] (S = prod of the rest) */
static void ref_batch_stats(const float *x, int64_t N, int64_t C, int64_t S, double *mean, double *var) {
  for (int64_t c = 0; c < C; c++) {
    double m = 0, v = 0;
    for (int64_t i = 0; i < N; i++)
      for (int64_t s = 0; s < S; s++) m += x[(i * C + c) * S + s];
    m /= (double)(N * S);
    for (int64_t i = 0; i < N; i++)
      for (int64_t s = 0; s < S; s++) v += (x[(i * C + c) * S + s] - m) * (x[(i * C + c) * S + s] - m);
    mean[c] = m;
    var[c] = v / (double)(N * S);
  }
}

static void batch_norm_case(int rank, const int64_t *shape, bool training, bool with_wb, bool with_running, double momentum) {
  int64_t n = numel(rank, shape), N = shape[0], C = shape[1], S = n / (N * C);
  double eps = 1e-5, mean[256], var[256];
  fill(X, n, 3, 0.7f);
  fill(W, C, 2, 1);
  fill(B, C, 1, 0);
  fill(RM, C, 1, 0);
  fill(RV, C, 1, 1);
  if (training) ref_batch_stats(X, N, C, S, mean, var);
  else
    for (int64_t c = 0; c < C; c++) mean[c] = RM[c], var[c] = RV[c];
  for (int64_t i = 0; i < N; i++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t s = 0; s < S; s++) {
        int64_t at = (i * C + c) * S + s;
        double t = (X[at] - mean[c]) / sqrt(var[c] + eps);
        R[at] = (float)(with_wb ? t * W[c] + B[c] : t);
      }
  for (int64_t c = 0; c < C; c++) {
    R2[c] = training ? (float)((1 - momentum) * RM[c] + momentum * mean[c]) : RM[c];
    R3[c] = training ? (float)((1 - momentum) * RV[c] + momentum * var[c] * (double)(N * S) / (double)(N * S - 1)) : RV[c];
  }
  sloth_scope_begin();
  sloth_tensor *x = sloth_from_host(X, SLOTH_F32, rank, shape);
  sloth_tensor *w = with_wb ? sloth_from_host(W, SLOTH_F32, 1, &C) : NULL, *b = with_wb ? sloth_from_host(B, SLOTH_F32, 1, &C) : NULL;
  sloth_tensor *rm = with_running ? sloth_from_host(RM, SLOTH_F32, 1, &C) : NULL;
  sloth_tensor *rv = with_running ? sloth_from_host(RV, SLOTH_F32, 1, &C) : NULL;
  sloth_tensor *nm = (sloth_tensor *)1, *nv = (sloth_tensor *)1;
  int64_t l0 = launches(), s0 = sloth_counter("sync");
  sloth_tensor *y = sloth_batch_norm(x, rm, rv, w, b, training, momentum, eps, &nm, &nv);
  bool lazy = y && sloth_is_pending(y) && launches() == l0 && sloth_counter("sync") == s0;
  sloth_tensor *outs[3] = {y, nm, nv};
  int rc = y ? sloth_sync(outs, with_running ? 3 : 1) : -1;
  int64_t kk = launches() - l0;
  double e = rc == SLOTH_OK ? err_of(y, G, R, n, 1e-4, 1e-4) : INFINITY;
  double e2 = 0, e3 = 0;
  if (with_running) {
    e2 = err_of(nm, G2, R2, C, 1e-5, 1e-5);
    e3 = err_of(nv, G3, R3, C, 1e-5, 1e-5);
  }
  bool outs_ok = with_running ? (nm && nv && nm != rm && nv != rv) : (nm == NULL && nv == NULL);
  ok(lazy && rc == SLOTH_OK && e <= 1 && e2 <= 1 && e3 <= 1 && outs_ok,
     "batch_norm %s %s%s%s momentum %g (err %.3g, running mean %.3g, var %.3g; %lld kernels)", training ? "training" : "eval",
     shape_s(rank, shape), with_wb ? " +weight+bias" : "", with_running ? " +running stats" : " (no running stats)", momentum,
     e, e2, e3, (long long)kk);
  if (training && with_running) {
    ok(kk <= 4, "batch_norm training with running stats runs in %lld kernels (mean, var, output, running stats)", (long long)kk);
    /* another momentum is a kernel argument: nothing compiles */
    int64_t c0 = sloth_counter("kernel_compile");
    sloth_tensor *nm2, *nv2;
    sloth_tensor *y2 = sloth_batch_norm(x, rm, rv, w, b, training, momentum / 2, eps, &nm2, &nv2);
    sloth_tensor *o2[3] = {y2, nm2, nv2};
    for (int64_t c = 0; c < C; c++) R2[c] = (float)((1 - momentum / 2) * RM[c] + momentum / 2 * mean[c]);
    ok(y2 && sloth_sync(o2, 3) == SLOTH_OK && err_of(nm2, G2, R2, C, 1e-5, 1e-5) <= 1 &&
           sloth_counter("kernel_compile") == c0,
       "batch_norm with momentum %g compiles nothing new", momentum / 2);
    /* the updated stats feed the next step: a chain of two training steps */
    sloth_tensor *nm3, *nv3;
    sloth_tensor *y3 = sloth_batch_norm(x, nm, nv, w, b, 1, momentum, eps, &nm3, &nv3);
    for (int64_t c = 0; c < C; c++) R2[c] = (float)((1 - momentum) * ((1 - momentum) * RM[c] + momentum * mean[c]) + momentum * mean[c]);
    ok(y3 && err_of(nm3, G2, R2, C, 1e-5, 1e-5) <= 1, "two training steps chain their running stats");
  }
  sloth_scope_end();
}

/* ------------------------------------------------------------------ labels and losses */

static void one_hot_tests(void) {
  sloth_scope_begin();
  int32_t lab[6] = {0, 3, 1, -1, 4, 2};
  sloth_tensor *l = sloth_from_host(lab, SLOTH_I32, 1, (int64_t[]){6});
  sloth_tensor *h = sloth_one_hot(l, 4, SLOTH_F32);
  float want[24] = {0};
  for (int i = 0; i < 6; i++)
    if (lab[i] >= 0 && lab[i] < 4) want[i * 4 + lab[i]] = 1;
  ok(h && sloth_rank(h) == 2 && sloth_dim(h, 1) == 4 && err_of(h, G, want, 24, 1e-12, 0) <= 1,
     "one_hot i32 [6] to f32 [6, 4] (labels -1 and 4 give zero rows)");
  uint8_t lu[6] = {4, 0, 2, 2, 1, 3};
  sloth_tensor *hu = sloth_one_hot(sloth_from_host(lu, SLOTH_U8, 2, (int64_t[]){2, 3}), 5, SLOTH_I32);
  int32_t hi[30];
  bool good = hu && sloth_rank(hu) == 3 && sloth_dtype_of(hu) == SLOTH_I32 && sloth_to_host(hu, hi, sizeof hi) == SLOTH_OK;
  for (int i = 0; good && i < 30; i++) good = hi[i] == (lu[i / 5] == i % 5);
  ok(good, "one_hot u8 [2, 3] to i32 [2, 3, 5]");
  sloth_tensor *hb = sloth_one_hot(l, 4, SLOTH_BOOL);
  uint8_t hbv[24];
  good = hb && sloth_dtype_of(hb) == SLOTH_BOOL && sloth_to_host(hb, hbv, sizeof hbv) == SLOTH_OK;
  for (int i = 0; good && i < 24; i++) good = hbv[i] == (want[i] != 0);
  ok(good, "one_hot to bool");
  sloth_scope_end();
}

/* -mean over labels of lp[n, lab[n], s] for lp [N, C, S] */
static double ref_nll(const float *lp, const int32_t *lab, int64_t N, int64_t C, int64_t S) {
  double acc = 0;
  for (int64_t i = 0; i < N; i++)
    for (int64_t s = 0; s < S; s++) {
      int32_t c = lab[i * S + s];
      if (c >= 0 && c < C) acc -= lp[(i * C + c) * S + s];
    }
  return acc / (double)(N * S);
}

static int32_t LAB[4096];

static void loss_case(int rank, const int64_t *shape, float scale) {
  /* scores [N, C, d...] (or [C]); labels the shape without axis 1 (or 0) */
  int ca = rank == 1 ? 0 : 1;
  int64_t n = numel(rank, shape), C = shape[ca], N = rank == 1 ? 1 : shape[0], S = n / (N * C);
  int64_t lshape[SLOTH_MAX_RANK];
  for (int d = 0, j = 0; d < rank; d++)
    if (d != ca) lshape[j++] = shape[d];
  fill(X, n, scale, 0);
  for (int64_t i = 0; i < N * S; i++) LAB[i] = (int32_t)((rng = rng * 1103515245u + 12345u) >> 16) % (int32_t)C;
  sloth_scope_begin();
  sloth_tensor *x = sloth_from_host(X, SLOTH_F32, rank, shape);
  sloth_tensor *lab = sloth_from_host(LAB, SLOTH_I32, rank - 1, lshape);
  /* nll_loss of raw scores */
  float want = (float)ref_nll(X, LAB, N, C, S), got;
  sloth_tensor *l1 = sloth_nll_loss(x, lab);
  double e = err_of(l1, &got, &want, 1, 1e-5, 1e-5);
  ok(l1 && sloth_rank(l1) == 0 && e <= 1, "nll_loss %s (got %g, want %g)", shape_s(rank, shape), got, want);
  /* cross_entropy = nll_loss(log_softmax over the class axis) */
  ref_softmax(true, X, R, rank, shape, ca);
  want = (float)ref_nll(R, LAB, N, C, S);
  int64_t l0 = launches();
  sloth_tensor *l2 = sloth_cross_entropy(x, lab);
  e = err_of(l2, &got, &want, 1, 1e-5, 1e-5);
  int64_t kk = launches() - l0;
  ok(e <= 1 && kk <= 3, "cross_entropy %s (got %g, want %g; %lld kernels)", shape_s(rank, shape), got, want, (long long)kk);
  sloth_scope_end();
}

static void cross_entropy_extreme(void) {
  sloth_scope_begin();
  float v[4][3] = {{1000, -1000, 0}, {-1000, 1000, 0}, {0, 0, 1000}, {-1e30f, 0, 1e30f}};
  int32_t lab[4] = {0, 0, 1, 2};
  uint8_t labu[4] = {0, 0, 1, 2};
  memcpy(X, v, sizeof v);
  ref_softmax(true, X, R, 2, (int64_t[]){4, 3}, 1);
  float want = (float)ref_nll(R, lab, 4, 3, 1), got;
  sloth_tensor *x = sloth_from_host(X, SLOTH_F32, 2, (int64_t[]){4, 3});
  double e = err_of(sloth_cross_entropy(x, sloth_from_host(lab, SLOTH_I32, 1, (int64_t[]){4})), &got, &want, 1, 1e-5, 1e-5);
  ok(e <= 1 && isfinite(got), "cross_entropy of logits +-1000 and +-1e30 is finite: %g (want %g = (0 + 2000 + 1000 + 0) / 4)",
     got, want);
  e = err_of(sloth_cross_entropy(x, sloth_from_host(labu, SLOTH_U8, 1, (int64_t[]){4})), &got, &want, 1, 1e-5, 1e-5);
  ok(e <= 1, "cross_entropy with u8 labels");
  sloth_scope_end();
}

static void mse_bce(void) {
  sloth_scope_begin();
  int64_t shapes[3][3] = {{7, 0, 0}, {3, 5, 0}, {2, 3, 4}};
  for (int k = 0; k < 3; k++) {
    int rank = k + 1;
    int64_t n = numel(rank, shapes[k]);
    fill(X, n, 4, 0);
    fill(X2, n, 4, 0.5f);
    double acc = 0;
    for (int64_t i = 0; i < n; i++) acc += ((double)X[i] - X2[i]) * ((double)X[i] - X2[i]);
    float want = (float)(acc / n), got;
    sloth_tensor *a = sloth_from_host(X, SLOTH_F32, rank, shapes[k]), *b = sloth_from_host(X2, SLOTH_F32, rank, shapes[k]);
    int64_t l0 = launches();
    double e = err_of(sloth_mse_loss(a, b), &got, &want, 1, 1e-6, 1e-5);
    int64_t kk = launches() - l0;
    ok(e <= 1 && kk == 1, "mse_loss %s (got %g, want %g; %lld kernel)", shape_s(rank, shapes[k]), got, want, (long long)kk);

    /* targets in [0, 1] */
    for (int64_t i = 0; i < n; i++) X2[i] = X2[i] < 0 ? 0 : X2[i] > 1 ? 1 : X2[i];
    acc = 0;
    for (int64_t i = 0; i < n; i++) acc += fmax(X[i], 0) - (double)X[i] * X2[i] + log1p(exp(-fabs(X[i])));
    want = (float)(acc / n);
    b = sloth_from_host(X2, SLOTH_F32, rank, shapes[k]);
    l0 = launches();
    e = err_of(sloth_binary_cross_entropy_with_logits(a, b), &got, &want, 1, 1e-6, 1e-5);
    kk = launches() - l0;
    ok(e <= 1 && kk == 1, "binary_cross_entropy_with_logits %s (got %g, want %g; %lld kernel)", shape_s(rank, shapes[k]), got,
       want, (long long)kk);
  }
  /* extreme logits */
  float xs[10] = {-1000, -100, -20, -1, 0, 1, 20, 100, 1000, 3}, ts[10] = {0, 1, 0.5f, 1, 0, 0.25f, 1, 0, 1, 0.75f};
  double acc = 0;
  for (int i = 0; i < 10; i++) acc += fmax(xs[i], 0) - (double)xs[i] * ts[i] + log1p(exp(-fabs(xs[i])));
  float want = (float)(acc / 10), got;
  sloth_tensor *a = sloth_from_host(xs, SLOTH_F32, 1, (int64_t[]){10}), *b = sloth_from_host(ts, SLOTH_F32, 1, (int64_t[]){10});
  double e = err_of(sloth_binary_cross_entropy_with_logits(a, b), &got, &want, 1, 1e-5, 1e-5);
  ok(e <= 1 && isfinite(got), "binary_cross_entropy_with_logits of logits +-1000 is finite: %g (want %g)", got, want);
  /* integer operands compute in f32 */
  int32_t ia[4] = {1, 2, 3, 4}, ib[4] = {2, 2, 5, 0};
  want = (1 + 0 + 4 + 16) / 4.0f;
  e = err_of(sloth_mse_loss(sloth_from_host(ia, SLOTH_I32, 1, (int64_t[]){4}), sloth_from_host(ib, SLOTH_I32, 1, (int64_t[]){4})),
             &got, &want, 1, 0, 1e-6);
  ok(e <= 1, "mse_loss of i32 tensors (got %g)", got);
  sloth_scope_end();
}

/* ------------------------------------------------------------------ laziness and errors */

static void laziness(void) {
  sloth_scope_begin();
  int64_t shape[2] = {4, 6};
  fill(X, 24, 2, 0);
  int32_t lab[4] = {1, 0, 5, 2};
  sloth_tensor *x = sloth_from_host(X, SLOTH_F32, 2, shape), *l = sloth_from_host(lab, SLOTH_I32, 1, (int64_t[]){4});
  sloth_tensor *w = sloth_ones(SLOTH_F32, 1, (int64_t[]){6}), *c = sloth_ones(SLOTH_F32, 1, (int64_t[]){6});
  sloth_tensor *rm = sloth_zeros(SLOTH_F32, 1, (int64_t[]){6}), *rv = sloth_ones(SLOTH_F32, 1, (int64_t[]){6});
  sloth_tensor *r1, *r2;
  int64_t l0 = launches(), s0 = sloth_counter("sync");
  sloth_tensor *ys[] = {sloth_softmax(x, 1),
                        sloth_log_softmax(x, 0),
                        sloth_layer_norm(x, 1, w, c, 1e-5),
                        sloth_batch_norm(x, rm, rv, NULL, NULL, 1, 0.1, 1e-5, &r1, &r2),
                        sloth_one_hot(l, 6, SLOTH_F32),
                        sloth_nll_loss(x, l),
                        sloth_cross_entropy(x, l),
                        sloth_mse_loss(x, x),
                        sloth_binary_cross_entropy_with_logits(x, x),
                        sloth_gelu(x),
                        sloth_gelu_tanh(x),
                        sloth_silu(x),
                        sloth_leaky_relu(x, 0.1),
                        sloth_clamp(x, 0, 1),
                        r1,
                        r2};
  int n = (int)(sizeof ys / sizeof ys[0]);
  bool pending = true;
  for (int i = 0; i < n; i++) pending &= ys[i] && sloth_is_pending(ys[i]);
  ok(pending && launches() == l0 && sloth_counter("sync") == s0, "every nn op only records IR (no launch, no sync)");
  ok(sloth_sync(ys, n) == SLOTH_OK, "and all of them run together at one sync");
  sloth_scope_end();
}

#define FAILS(expr, status, what)                                                                                           \
  do {                                                                                                                      \
    sloth_clear_error();                                                                                                    \
    sloth_tensor *r_ = (expr);                                                                                              \
    ok(r_ == NULL && sloth_last_status() == (status), "%s: %s", what, sloth_last_error());                                  \
  } while (0)

static void bad_input(void) {
  sloth_scope_begin();
  sloth_tensor *x = sloth_zeros(SLOTH_F32, 2, (int64_t[]){4, 6});
  sloth_tensor *x4 = sloth_zeros(SLOTH_F32, 4, (int64_t[]){2, 3, 4, 4});
  sloth_tensor *c3 = sloth_ones(SLOTH_F32, 1, (int64_t[]){3}), *c5 = sloth_ones(SLOTH_F32, 1, (int64_t[]){5});
  sloth_tensor *lab = sloth_zeros(SLOTH_I32, 1, (int64_t[]){4}), *lab5 = sloth_zeros(SLOTH_I32, 1, (int64_t[]){5});
  sloth_tensor *labf = sloth_zeros(SLOTH_F32, 1, (int64_t[]){4}), *labb = sloth_zeros(SLOTH_BOOL, 1, (int64_t[]){4});
  FAILS(sloth_softmax(x, 2), SLOTH_E_INVALID, "softmax axis 2 of rank 2");
  FAILS(sloth_log_softmax(x, -3), SLOTH_E_INVALID, "log_softmax axis -3 of rank 2");
  FAILS(sloth_softmax(NULL, 0), SLOTH_E_INVALID, "softmax of NULL");
  FAILS(sloth_layer_norm(x, 0, NULL, NULL, 1e-5), SLOTH_E_INVALID, "layer_norm over 0 dims");
  FAILS(sloth_layer_norm(x, 3, NULL, NULL, 1e-5), SLOTH_E_INVALID, "layer_norm over 3 dims of rank 2");
  FAILS(sloth_layer_norm(x, 1, c5, NULL, 1e-5), SLOTH_E_SHAPE, "layer_norm weight [5] for [4, 6]");
  FAILS(sloth_layer_norm(x, 1, NULL, c3, 1e-5), SLOTH_E_SHAPE, "layer_norm bias [3] for [4, 6]");
  FAILS(sloth_layer_norm(x, 1, NULL, NULL, -1), SLOTH_E_INVALID, "layer_norm eps -1");
  sloth_tensor *nm = (sloth_tensor *)1, *nv = (sloth_tensor *)1;
  FAILS(sloth_batch_norm(x4, c5, c5, NULL, NULL, 1, 0.1, 1e-5, &nm, &nv), SLOTH_E_SHAPE, "batch_norm running_mean [5] for 3 channels");
  ok(nm == NULL && nv == NULL, "a failed batch_norm sets the out-pointers to NULL");
  FAILS(sloth_batch_norm(x4, NULL, NULL, c3, c5, 1, 0.1, 1e-5, NULL, NULL), SLOTH_E_SHAPE, "batch_norm bias [5] for 3 channels");
  FAILS(sloth_batch_norm(x4, NULL, NULL, c3, c3, 0, 0.1, 1e-5, NULL, NULL), SLOTH_E_INVALID, "batch_norm eval without running stats");
  FAILS(sloth_batch_norm(x4, c3, NULL, NULL, NULL, 1, 0.1, 1e-5, NULL, NULL), SLOTH_E_INVALID, "batch_norm with running_mean only");
  FAILS(sloth_batch_norm(sloth_zeros(SLOTH_F32, 4, (int64_t[]){1, 3, 1, 1}), NULL, NULL, NULL, NULL, 1, 0.1, 1e-5, NULL, NULL),
        SLOTH_E_SHAPE, "batch_norm training with 1 value per channel");
  FAILS(sloth_batch_norm(c3, NULL, NULL, NULL, NULL, 1, 0.1, 1e-5, NULL, NULL), SLOTH_E_SHAPE, "batch_norm of a rank-1 tensor");
  FAILS(sloth_cross_entropy(x, labf), SLOTH_E_DTYPE, "cross_entropy with f32 labels");
  FAILS(sloth_nll_loss(x, labb), SLOTH_E_DTYPE, "nll_loss with bool labels");
  FAILS(sloth_cross_entropy(x, lab5), SLOTH_E_SHAPE, "cross_entropy with 5 labels for N = 4");
  FAILS(sloth_nll_loss(x, sloth_zeros(SLOTH_I32, 2, (int64_t[]){4, 6})), SLOTH_E_SHAPE, "nll_loss with labels [4, 6] for [4, 6]");
  FAILS(sloth_cross_entropy(sloth_scalar(1, SLOTH_F32), lab), SLOTH_E_SHAPE, "cross_entropy of rank-0 logits");
  FAILS(sloth_one_hot(labf, 3, SLOTH_F32), SLOTH_E_DTYPE, "one_hot of f32 labels");
  FAILS(sloth_one_hot(lab, 0, SLOTH_F32), SLOTH_E_INVALID, "one_hot with 0 classes");
  FAILS(sloth_one_hot(lab, 3, (sloth_dtype)99), SLOTH_E_DTYPE, "one_hot to an unknown dtype");
  FAILS(sloth_mse_loss(x, sloth_zeros(SLOTH_F32, 2, (int64_t[]){6, 4})), SLOTH_E_SHAPE, "mse_loss [4, 6] vs [6, 4]");
  FAILS(sloth_mse_loss(x, sloth_zeros(SLOTH_F32, 1, (int64_t[]){6})), SLOTH_E_SHAPE, "mse_loss [4, 6] vs [6] (no broadcasting)");
  FAILS(sloth_binary_cross_entropy_with_logits(x, lab), SLOTH_E_SHAPE, "binary_cross_entropy_with_logits [4, 6] vs [4]");
  FAILS(sloth_clamp(x, NAN, 1), SLOTH_E_INVALID, "clamp with a NaN bound");
  FAILS(sloth_clamp(labb, 0, 1), SLOTH_E_DTYPE, "clamp of bool");
  FAILS(sloth_leaky_relu(labb, 0.1), SLOTH_E_DTYPE, "leaky_relu of bool");
  FAILS(sloth_gelu(NULL), SLOTH_E_INVALID, "gelu of NULL");
  sloth_clear_error();
  /* labels out of range: the loss is built (values are data), the read
   * fails with a clear error, nothing is read out of bounds; the gradient
   * as well; the error is reported once */
  int32_t badlab[4] = {1, 6, 0, -1};
  sloth_tensor *xl = sloth_from_host((float[24]){0}, SLOTH_F32, 2, (int64_t[]){4, 6});
  sloth_tensor *bl = sloth_from_host(badlab, SLOTH_I32, 1, (int64_t[]){4});
  float lv = 0;
  sloth_tensor *bad_ce = sloth_cross_entropy(xl, bl);
  int lrc = bad_ce ? sloth_to_host(bad_ce, &lv, sizeof lv) : SLOTH_E_INVALID;
  ok(bad_ce && lrc == SLOTH_E_INVALID && strstr(sloth_last_error(), "out of range"),
     "cross_entropy with labels 6 and -1 for 6 classes fails at the read: %s", sloth_last_error());
  sloth_clear_error();
  sloth_tensor *gx = NULL;
  lrc = sloth_grad(sloth_nll_loss(sloth_log_softmax(xl, 1), bl), &xl, 1, &gx);
  float gv[24];
  lrc = lrc == SLOTH_OK ? sloth_to_host(gx, gv, sizeof gv) : lrc;
  ok(lrc == SLOTH_E_INVALID && strstr(sloth_last_error(), "out of range"), "its gradient fails at the read: %s",
     sloth_last_error());
  sloth_clear_error();
  /* the runtime works afterwards */
  float out = NAN;
  sloth_tensor *s = sloth_sum(sloth_softmax(x, 1), NULL, 0, 0);
  int rc = s ? sloth_to_host(s, &out, sizeof out) : -1;
  ok(rc == SLOTH_OK && fabsf(out - 4) < 1e-5f, "the runtime works afterwards (sum of softmax rows %g)", out);
  sloth_scope_end();
}

int main(void) {
  if (sloth_init(NULL) != SLOTH_OK) skip_all(sloth_last_error());
  activations();

  softmax_case(2, (int64_t[]){6, 10}, 1, 4);
  softmax_case(2, (int64_t[]){6, 10}, -1, 20);
  softmax_case(2, (int64_t[]){6, 10}, 0, 4);
  softmax_case(3, (int64_t[]){2, 3, 5}, 1, 8);
  softmax_case(3, (int64_t[]){2, 3, 5}, -3, 8);
  softmax_case(3, (int64_t[]){4, 33, 3}, -2, 8);
  softmax_case(4, (int64_t[]){2, 3, 4, 5}, 2, 8);
  softmax_case(1, (int64_t[]){1}, 0, 1);
  softmax_case(1, (int64_t[]){17}, -1, 50);
  softmax_case(2, (int64_t[]){3, 3000}, -1, 30);
  softmax_case(2, (int64_t[]){1000, 7}, 1, 30);
  softmax_extreme();

  layer_norm_case(2, (int64_t[]){4, 10}, 1, true, true, 1e-5, 0);
  layer_norm_case(3, (int64_t[]){2, 3, 8}, 2, false, false, 1e-5, 0);
  layer_norm_case(3, (int64_t[]){2, 3, 8}, 3, true, false, 1e-3, 0);
  layer_norm_case(2, (int64_t[]){5, 64}, 1, false, true, 1e-5, 1000);
  layer_norm_case(4, (int64_t[]){2, 2, 3, 7}, 1, true, true, 0.1, 0);
  layer_norm_case(2, (int64_t[]){64, 768}, 1, true, true, 1e-5, 0);

  batch_norm_case(4, (int64_t[]){4, 3, 5, 5}, false, true, true, 0.1);
  batch_norm_case(2, (int64_t[]){6, 4}, false, false, true, 0.1);
  batch_norm_case(4, (int64_t[]){4, 3, 5, 5}, true, true, true, 0.1);
  batch_norm_case(2, (int64_t[]){8, 6}, true, false, true, 0.3);
  batch_norm_case(5, (int64_t[]){2, 5, 3, 4, 2}, true, false, true, 1.0);
  batch_norm_case(3, (int64_t[]){2, 4, 3}, true, true, false, 0.1);
  batch_norm_case(4, (int64_t[]){16, 32, 8, 8}, true, true, true, 0.1);

  one_hot_tests();
  loss_case(2, (int64_t[]){7, 5}, 4);
  loss_case(2, (int64_t[]){64, 100}, 10);
  loss_case(3, (int64_t[]){3, 4, 5}, 4);
  loss_case(1, (int64_t[]){6}, 4);
  cross_entropy_extreme();
  mse_bce();

  laziness();
  bad_input();

  sloth_clear_error();
  sloth_shutdown();
  ok(sloth_last_status() == SLOTH_OK, "no tensor is left alive (shutdown succeeds): %s", sloth_last_error());
  return tap_done();
}
