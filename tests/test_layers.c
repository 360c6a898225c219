/* test_layers.c - initializers and layers (core/layers.c) against naive C
 * references: init statistics and bounds, seeding, PyTorch's default
 * parameters, every forward, batch norm's running statistics over two
 * training steps and in evaluation, plan replay across steps, bad input,
 * and (at the end) that nothing leaked. */
#include <sloth.h>

#include "tap.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static unsigned rng = 777;
static float frand(void) { /* [-1, 1) */
  rng = rng * 1103515245u + 12345u;
  return (float)((rng >> 9) & 0xffff) / 32768.0f - 1.0f;
}
static void fill(float *p, int64_t n) {
  for (int64_t i = 0; i < n; i++) p[i] = frand();
}
static int64_t numel(int rank, const int64_t *s) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= s[i];
  return n;
}

enum { BIG = 1 << 18 };
static float A[BIG], B[BIG], G[BIG], R[BIG];

/* Reads f32 tensor t of n elements into out; false if it cannot. */
static bool read(sloth_tensor *t, float *out, int64_t n) {
  return t && sloth_numel(t) == n && sloth_dtype_of(t) == SLOTH_F32 && sloth_to_host(t, out, (size_t)n * sizeof(float)) == SLOTH_OK;
}

static double err_of(sloth_tensor *t, const float *want, int64_t n, double atol, double rtol) {
  return read(t, G, n) ? tap_max_err(G, want, n, atol, rtol) : INFINITY;
}

static bool has_shape(const sloth_tensor *t, int rank, const int64_t *shape) {
  return t && sloth_rank(t) == rank && memcmp(sloth_shape(t), shape, (size_t)rank * sizeof *shape) == 0;
}

static bool all_equal(const float *p, int64_t n, float v) {
  for (int64_t i = 0; i < n; i++)
    if (p[i] != v) return false;
  return true;
}

/* Mean, standard deviation and largest magnitude of n floats. */
static void stats(const float *p, int64_t n, double *mean, double *std, double *maxabs) {
  double s = 0, q = 0, m = 0;
  for (int64_t i = 0; i < n; i++) s += p[i], m = fmax(m, fabs(p[i]));
  *mean = s / (double)n;
  for (int64_t i = 0; i < n; i++) q += (p[i] - *mean) * (p[i] - *mean);
  *std = sqrt(q / (double)n);
  *maxabs = m;
}

/* A computed f32 tensor of the given shape, read into R. */
static bool computed(sloth_tensor *t, int rank, const int64_t *shape) {
  return has_shape(t, rank, shape) && sloth_is_pending(t) == 0 && read(t, R, numel(rank, shape));
}

/* A computed parameter whose elements are drawn within [-bound, bound]. */
static bool param_ok(sloth_tensor *t, int rank, const int64_t *shape, double bound) {
  int64_t n = numel(rank, shape);
  if (!computed(t, rank, shape)) return false;
  double mean, std, maxabs;
  stats(R, n, &mean, &std, &maxabs);
  return maxabs <= bound && std > 0;
}

/* ------------------------------------------------------------------ initializers */

typedef sloth_tensor *init_fn(int rank, const int64_t *shape, double gain);

static void init_case(const char *name, init_fn *fn, bool xavier, bool normal, int rank, const int64_t *shape, double gain) {
  int64_t n = numel(rank, shape), recept = numel(rank - 2, shape + 2);
  double fi = (double)(shape[1] * recept), fo = (double)(shape[0] * recept);
  double std = xavier ? gain * sqrt(2 / (fi + fo)) : gain / sqrt(fi), bound = sqrt(3.0) * std;
  sloth_tensor *t = fn(rank, shape, gain);
  ok(has_shape(t, rank, shape) && sloth_dtype_of(t) == SLOTH_F32 && sloth_is_pending(t) == 0,
     "%s: f32 of the requested shape, already computed", name);
  double mean = NAN, sd = NAN, maxabs = NAN;
  if (read(t, G, n)) stats(G, n, &mean, &sd, &maxabs);
  /* the mean of n draws is within 4 standard errors */
  ok(fabs(mean) < 4 * std / sqrt((double)n) && fabs(sd / std - 1) < 0.02, "%s: mean %.2g ~ 0, std %.5g ~ %.5g (n %lld)", name,
     mean, sd, std, (long long)n);
  if (normal) ok(maxabs > bound && maxabs < 6 * std, "%s: normal tails (max |x| %.3g, std %.3g)", name, maxabs, std);
  else ok(maxabs <= bound && maxabs > 0.999 * bound, "%s: within the bound %.5g (max |x| %.5g)", name, bound, maxabs);
  sloth_release(t);
}

static void initializers(void) {
  int64_t s2[2] = {256, 1024}, s4[4] = {64, 32, 5, 5};
  init_case("kaiming_uniform [256,1024] gain sqrt2", sloth_init_kaiming_uniform, false, false, 2, s2, sqrt(2.0));
  init_case("kaiming_normal [256,1024] gain sqrt2", sloth_init_kaiming_normal, false, true, 2, s2, sqrt(2.0));
  init_case("xavier_uniform [256,1024] gain 1", sloth_init_xavier_uniform, true, false, 2, s2, 1.0);
  init_case("xavier_normal [256,1024] gain 1", sloth_init_xavier_normal, true, true, 2, s2, 1.0);
  init_case("kaiming_uniform [64,32,5,5] gain 1", sloth_init_kaiming_uniform, false, false, 4, s4, 1.0);
  init_case("kaiming_normal [64,32,5,5] gain 0.5", sloth_init_kaiming_normal, false, true, 4, s4, 0.5);
  init_case("xavier_uniform [64,32,5,5] gain 5/3", sloth_init_xavier_uniform, true, false, 4, s4, 5.0 / 3);
  init_case("xavier_normal [64,32,5,5] gain 1", sloth_init_xavier_normal, true, true, 4, s4, 1.0);

  /* seeding */
  int64_t s[2] = {64, 48};
  int64_t n = numel(2, s);
  static float a[64 * 48], b[64 * 48];
  sloth_scope_begin();
  sloth_manual_seed(1234);
  bool ra = read(sloth_init_xavier_normal(2, s, 1), a, n);
  sloth_manual_seed(1234);
  bool rb = read(sloth_init_xavier_normal(2, s, 1), b, n);
  ok(ra && rb && memcmp(a, b, sizeof a) == 0, "the same seed gives the same weights");
  sloth_manual_seed(1235);
  rb = read(sloth_init_xavier_normal(2, s, 1), b, n);
  ok(rb && memcmp(a, b, sizeof a) != 0, "another seed gives other weights");
  rb = read(sloth_init_xavier_normal(2, s, 1), a, n);
  ok(rb && memcmp(a, b, sizeof a) != 0, "a second draw gives other weights");
  sloth_scope_end();

  /* bad input */
  struct {
    int rank;
    const int64_t *shape;
    double gain;
    const char *why;
  } bad[] = {
      {1, (int64_t[]){8}, 1, "rank 1"},
      {0, NULL, 1, "rank 0"},
      {2, NULL, 1, "NULL shape"},
      {9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, 1, "rank 9"},
      {2, (int64_t[]){0, 4}, 1, "a zero size"},
      {3, (int64_t[]){4, 4, -1}, 1, "a negative size"},
      {2, (int64_t[]){4, 4}, -1, "a negative gain"},
      {2, (int64_t[]){4, 4}, NAN, "a NaN gain"},
  };
  init_fn *fns[4] = {sloth_init_kaiming_uniform, sloth_init_kaiming_normal, sloth_init_xavier_uniform, sloth_init_xavier_normal};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    bool all = true;
    for (int k = 0; k < 4; k++) {
      sloth_clear_error();
      all = all && !fns[k](bad[i].rank, bad[i].shape, bad[i].gain) && sloth_last_status() == SLOTH_E_INVALID;
    }
    ok(all, "every initializer refuses %s (%s)", bad[i].why, sloth_last_error());
  }
}

/* ------------------------------------------------------------------ linear */

/* y[m, o] = sum_k x[m, k] w[o, k] + b[o] (in double). */
static void ref_linear(const float *x, const float *w, const float *b, float *y, int64_t M, int64_t in, int64_t out) {
  for (int64_t m = 0; m < M; m++)
    for (int64_t o = 0; o < out; o++) {
      double s = b ? b[o] : 0;
      for (int64_t k = 0; k < in; k++) s += (double)x[m * in + k] * w[o * in + k];
      y[m * out + o] = (float)s;
    }
}

static void linear_case(int rank, const int64_t *xshape, int64_t out, bool bias) {
  int64_t in = xshape[rank - 1], n = numel(rank, xshape), M = n / in;
  int64_t wshape[2] = {out, in}, yshape[SLOTH_MAX_RANK];
  memcpy(yshape, xshape, (size_t)rank * sizeof *yshape);
  yshape[rank - 1] = out;
  static float w[BIG], bv[4096];
  sloth_linear l;
  bool init = sloth_linear_init(&l, in, out, bias) == SLOTH_OK;
  double bound = 1 / sqrt((double)in);
  ok(init && param_ok(l.weight, 2, wshape, bound) && (bias ? param_ok(l.bias, 1, &out, bound) : !l.bias),
     "linear %lld -> %lld%s: weight [out, in] and bias computed, within 1/sqrt(in)", (long long)in, (long long)out,
     bias ? "" : " (no bias)");
  if (!init) return;
  read(l.weight, w, out * in);
  if (bias) read(l.bias, bv, out);
  fill(A, n);
  ref_linear(A, w, bias ? bv : NULL, R, M, in, out);
  sloth_scope_begin();
  sloth_tensor *y = sloth_linear_forward(&l, sloth_from_host(A, SLOTH_F32, rank, xshape));
  int64_t g0 = sloth_counter("gemm_call"), k0 = sloth_counter("kernel_launch");
  bool ran = sloth_sync(&y, 1) == SLOTH_OK;
  int64_t gemms = sloth_counter("gemm_call") - g0, kernels = sloth_counter("kernel_launch") - k0;
  double e = ran ? err_of(y, R, M * out, 1e-5, 1e-4) : INFINITY;
  ok(has_shape(y, rank, yshape) && e <= 1, "linear forward, rank-%d x, %lld -> %lld%s (err %.3g)", rank, (long long)in,
     (long long)out, bias ? " + bias" : "", e);
  /* the transposed weight is read in place: no copy kernel before the GEMM;
   * one kernel after it adds the bias, or (rank > 2) copies the result's
   * reshape back to [..., out] when that view is itself the synced root */
  ok(gemms == 1 && kernels <= (bias || rank > 2 ? 1 : 0), "linear forward is one GEMM%s (%lld GEMMs, %lld kernels)",
     bias ? " and the bias kernel" : "", (long long)gemms, (long long)kernels);
  sloth_scope_end();
  sloth_linear_free(&l);
}

/* The same step with new data of the same shape replays the first plan. */
static void linear_replay(void) {
  sloth_linear l;
  if (sloth_linear_init(&l, 16, 8, 1) != SLOTH_OK) {
    ok(0, "linear replay: init (%s)", sloth_last_error());
    return;
  }
  static float w[128], bv[8];
  read(l.weight, w, 128);
  read(l.bias, bv, 8);
  int64_t miss[2] = {0, 0};
  bool right = true;
  for (int step = 0; step < 2; step++) {
    sloth_scope_begin();
    fill(A, 6 * 16);
    ref_linear(A, w, bv, R, 6, 16, 8);
    int64_t m0 = sloth_counter("plan_cache_miss");
    sloth_tensor *y = sloth_relu(sloth_linear_forward(&l, sloth_from_host(A, SLOTH_F32, 2, (int64_t[]){6, 16})));
    right = right && sloth_mark_step() == SLOTH_OK;
    miss[step] = sloth_counter("plan_cache_miss") - m0;
    for (int i = 0; i < 6 * 8; i++) R[i] = fmaxf(R[i], 0);
    right = right && err_of(y, R, 6 * 8, 1e-5, 1e-4) <= 1;
    sloth_scope_end();
  }
  ok(right && miss[0] <= 1 && miss[1] == 0, "linear + relu, mark_step twice with new data: right, the second step builds no plan "
     "(misses %lld, %lld)", (long long)miss[0], (long long)miss[1]);
  sloth_linear_free(&l);
}

/* A training step on a linear layer: forward, mse loss, gradients and an
 * SGD update written in place, as one graph per step. The gradients match
 * the closed form, and the second step replays the first step's plan (the
 * initializers are not part of it). */
static void linear_training(void) {
  enum { M = 8, IN = 6, OUT = 4 };
  sloth_linear l;
  if (sloth_linear_init(&l, IN, OUT, 1) != SLOTH_OK) {
    ok(0, "linear training: init (%s)", sloth_last_error());
    return;
  }
  static float w[OUT * IN], b[OUT], x[M * IN], t[M * OUT], y[M * OUT], gw[OUT * IN], gb[OUT];
  read(l.weight, w, OUT * IN);
  read(l.bias, b, OUT);
  const double lr = 0.1;
  int64_t miss[2] = {0, 0};
  bool right = true;
  for (int step = 0; step < 2; step++) {
    fill(x, M * IN), fill(t, M * OUT);
    /* reference: loss = mean((y - t)^2), dL/dy = 2 (y - t) / (M OUT) */
    ref_linear(x, w, b, y, M, IN, OUT);
    memset(gw, 0, sizeof gw), memset(gb, 0, sizeof gb);
    for (int m = 0; m < M; m++)
      for (int o = 0; o < OUT; o++) {
        double d = 2.0 * (y[m * OUT + o] - t[m * OUT + o]) / (M * OUT);
        gb[o] += (float)d;
        for (int k = 0; k < IN; k++) gw[o * IN + k] += (float)(d * x[m * IN + k]);
      }
    for (int i = 0; i < OUT * IN; i++) w[i] -= (float)(lr * gw[i]);
    for (int i = 0; i < OUT; i++) b[i] -= (float)(lr * gb[i]);
    sloth_scope_begin();
    sloth_tensor *pred = sloth_linear_forward(&l, sloth_from_host(x, SLOTH_F32, 2, (int64_t[]){M, IN}));
    sloth_tensor *loss = sloth_mse_loss(pred, sloth_from_host(t, SLOTH_F32, 2, (int64_t[]){M, OUT}));
    sloth_tensor *params[2] = {l.weight, l.bias}, *grads[2] = {NULL, NULL};
    right = right && sloth_grad(loss, params, 2, grads) == SLOTH_OK;
    for (int i = 0; i < 2 && right; i++) right = sloth_assign(params[i], sloth_sub(params[i], sloth_mul_scalar(grads[i], lr))) == SLOTH_OK;
    int64_t m0 = sloth_counter("plan_cache_miss");
    right = right && sloth_mark_step() == SLOTH_OK;
    miss[step] = sloth_counter("plan_cache_miss") - m0;
    right = right && err_of(grads[0], gw, OUT * IN, 1e-6, 1e-4) <= 1 &&
            err_of(grads[1], gb, OUT, 1e-6, 1e-4) <= 1 && err_of(l.weight, w, OUT * IN, 1e-6, 1e-4) <= 1 &&
            err_of(l.bias, b, OUT, 1e-6, 1e-4) <= 1;
    sloth_scope_end();
  }
  ok(right, "linear training: gradients of weight and bias and the SGD update match the closed form over 2 steps (%s)",
     right ? "ok" : sloth_last_error());
  ok(miss[1] == 0, "linear training: the second step replays the first step's plan (misses %lld, %lld)", (long long)miss[0],
     (long long)miss[1]);
  sloth_linear_free(&l);
}

/* ------------------------------------------------------------------ conv2d */

static void conv_case(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int k, int stride, int pad, int dil, int groups,
                      bool bias) {
  sloth_conv2d_layer l;
  int64_t wshape[4] = {O, C / groups, k, k};
  double bound = 1 / sqrt((double)(C / groups * k * k));
  bool init = sloth_conv2d_layer_init(&l, C, O, k, k, stride, pad, dil, groups, bias) == SLOTH_OK;
  ok(init && param_ok(l.weight, 4, wshape, bound) && (bias ? param_ok(l.bias, 1, &O, bound) : !l.bias) &&
         l.stride_h == stride && l.stride_w == stride && l.pad_h == pad && l.pad_w == pad && l.dilation_h == dil &&
         l.dilation_w == dil && l.groups == groups,
     "conv2d layer %lld -> %lld, %dx%d, stride %d pad %d dilation %d groups %d%s: geometry and parameters", (long long)C,
     (long long)O, k, k, stride, pad, dil, groups, bias ? "" : ", no bias");
  if (!init) return;
  sloth_scope_begin();
  int64_t xs[4] = {N, C, H, W};
  fill(A, numel(4, xs));
  sloth_tensor *x = sloth_from_host(A, SLOTH_F32, 4, xs);
  sloth_tensor *want = sloth_conv2d(x, l.weight, l.bias, stride, stride, pad, pad, dil, dil, groups);
  sloth_tensor *got = sloth_conv2d_layer_forward(&l, x);
  int64_t n = want ? sloth_numel(want) : 0;
  bool r = want && read(want, R, n);
  bool same = r && read(got, G, n) && memcmp(G, R, (size_t)n * sizeof(float)) == 0;
  ok(has_shape(got, 4, sloth_shape(want)) && same, "conv2d layer forward equals sloth_conv2d with its geometry");
  sloth_scope_end();
  sloth_conv2d_layer_free(&l);
}

/* ------------------------------------------------------------------ batch norm */

/* One training step's reference on x [N, C, S]: y and the running stats
 * updated in place (PyTorch: unbiased variance for running_var). */
static void ref_bn_train(const float *x, float *y, int64_t N, int64_t C, int64_t S, const float *w, const float *b, float *rm,
                         float *rv, double momentum, double eps) {
  int64_t n = N * S;
  for (int64_t c = 0; c < C; c++) {
    double s = 0, q = 0;
    for (int64_t i = 0; i < N; i++)
      for (int64_t j = 0; j < S; j++) s += x[(i * C + c) * S + j];
    double mean = s / (double)n;
    for (int64_t i = 0; i < N; i++)
      for (int64_t j = 0; j < S; j++) q += (x[(i * C + c) * S + j] - mean) * (x[(i * C + c) * S + j] - mean);
    double var = q / (double)n;
    for (int64_t i = 0; i < N; i++)
      for (int64_t j = 0; j < S; j++) {
        int64_t k = (i * C + c) * S + j;
        y[k] = (float)(((double)x[k] - mean) / sqrt(var + eps) * (w ? w[c] : 1) + (b ? b[c] : 0));
      }
    rm[c] = (float)((1 - momentum) * rm[c] + momentum * mean);
    rv[c] = (float)((1 - momentum) * rv[c] + momentum * var * (double)n / (double)(n - 1));
  }
}

static void ref_bn_eval(const float *x, float *y, int64_t N, int64_t C, int64_t S, const float *w, const float *b,
                        const float *rm, const float *rv, double eps) {
  for (int64_t i = 0; i < N; i++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t j = 0; j < S; j++) {
        int64_t k = (i * C + c) * S + j;
        y[k] = (float)(((double)x[k] - rm[c]) / sqrt((double)rv[c] + eps) * (w ? w[c] : 1) + (b ? b[c] : 0));
      }
}

static void batch_norm_case(bool affine) {
  enum { N = 4, C = 3, H = 5, W = 2, S = H * W, NX = N * C * S };
  int64_t xs[4] = {N, C, H, W}, c = C;
  sloth_batch_norm_layer l;
  bool init = sloth_batch_norm_layer_init(&l, C, affine) == SLOTH_OK;
  float rm[C], rv[C], w[C], b[C], got[C];
  bool start = init && l.momentum == 0.1 && l.eps == 1e-5 && has_shape(l.running_mean, 1, &c) &&
               has_shape(l.running_var, 1, &c) && !sloth_is_pending(l.running_mean) && !sloth_is_pending(l.running_var) &&
               read(l.running_mean, rm, C) && all_equal(rm, C, 0) && read(l.running_var, rv, C) && all_equal(rv, C, 1);
  if (affine)
    start = start && read(l.weight, w, C) && all_equal(w, C, 1) && read(l.bias, b, C) && all_equal(b, C, 0) &&
            !sloth_is_pending(l.weight);
  else start = start && !l.weight && !l.bias;
  ok(start, "batch norm%s init: running_mean 0, running_var 1%s, momentum 0.1, eps 1e-5, computed", affine ? "" : " (no affine)",
     affine ? ", weight 1, bias 0" : ", no weight or bias");
  if (!init) return;
  if (affine) { /* non-trivial affine parameters, written in place */
    float wv[C] = {1.5f, -0.5f, 2}, bv[C] = {0.25f, -1, 0.5f};
    memcpy(w, wv, sizeof w), memcpy(b, bv, sizeof b);
    sloth_scope_begin();
    sloth_assign(l.weight, sloth_from_host(w, SLOTH_F32, 1, &c));
    sloth_assign(l.bias, sloth_from_host(b, SLOTH_F32, 1, &c));
    sloth_mark_step(); /* so that the steps' graphs start alike */
    sloth_scope_end();
  }
  sloth_tensor *rm_handle = l.running_mean, *rv_handle = l.running_var;
  int64_t miss[3] = {0, 0, 0};
  for (int step = 0; step < 3; step++) {
    fill(A, NX);
    for (int i = 0; i < NX; i++) A[i] = A[i] * (float)(step + 1) + (float)step; /* moving statistics */
    ref_bn_train(A, R, N, C, S, affine ? w : NULL, affine ? b : NULL, rm, rv, 0.1, 1e-5);
    sloth_scope_begin();
    int64_t m0 = sloth_counter("plan_cache_miss");
    sloth_tensor *y = sloth_batch_norm_layer_forward(&l, sloth_from_host(A, SLOTH_F32, 4, xs), 1);
    bool ran = y && sloth_mark_step() == SLOTH_OK;
    miss[step] = sloth_counter("plan_cache_miss") - m0;
    double e = ran ? err_of(y, R, NX, 1e-5, 1e-4) : INFINITY;
    bool same = l.running_mean == rm_handle && l.running_var == rv_handle && !sloth_is_pending(l.running_mean);
    bool stm = read(l.running_mean, got, C) && tap_max_err(got, rm, C, 1e-6, 1e-5) <= 1;
    bool stv = read(l.running_var, got, C) && tap_max_err(got, rv, C, 1e-6, 1e-5) <= 1;
    ok(e <= 1 && same && stm && stv, "batch norm%s training step %d: output (err %.3g) and running stats (mean %s, var %s, "
       "unbiased) updated in place", affine ? "" : " (no affine)", step + 1, e, stm ? "ok" : "WRONG", stv ? "ok" : "WRONG");
    sloth_scope_end();
  }
  ok(miss[1] == 0 && miss[2] == 0, "batch norm%s training steps 2 and 3 replay step 1's plan (misses %lld, %lld, %lld)",
     affine ? "" : " (no affine)", (long long)miss[0], (long long)miss[1], (long long)miss[2]);
  /* evaluation: the running stats, unchanged */
  fill(A, NX);
  ref_bn_eval(A, R, N, C, S, affine ? w : NULL, affine ? b : NULL, rm, rv, 1e-5);
  sloth_scope_begin();
  sloth_tensor *y = sloth_batch_norm_layer_forward(&l, sloth_from_host(A, SLOTH_F32, 4, xs), 0);
  double e = sloth_mark_step() == SLOTH_OK ? err_of(y, R, NX, 1e-5, 1e-4) : INFINITY;
  bool kept = read(l.running_mean, got, C) && tap_max_err(got, rm, C, 1e-6, 1e-5) <= 1 && read(l.running_var, got, C) &&
              tap_max_err(got, rv, C, 1e-6, 1e-5) <= 1;
  ok(e <= 1 && kept, "batch norm%s evaluation uses the running stats and leaves them (err %.3g)", affine ? "" : " (no affine)", e);
  sloth_scope_end();
  sloth_batch_norm_layer_free(&l);
}

/* ------------------------------------------------------------------ layer norm and embedding */

static void layer_norm_case(bool affine) {
  enum { M = 6, D1 = 3, D2 = 8, D = D1 * D2 };
  int64_t ns[2] = {D1, D2}, xs[3] = {M, D1, D2};
  sloth_layer_norm_layer l;
  bool init = sloth_layer_norm_layer_init(&l, 2, ns, affine) == SLOTH_OK;
  static float w[D], b[D];
  bool start = init && l.normalized_ndim == 2 && l.eps == 1e-5;
  if (affine) start = start && computed(l.weight, 2, ns) && all_equal(R, D, 1) && computed(l.bias, 2, ns) && all_equal(R, D, 0);
  else start = start && !l.weight && !l.bias;
  ok(start, "layer norm%s init: [3, 8]%s, eps 1e-5", affine ? "" : " (no affine)", affine ? ", weight 1, bias 0" : "");
  if (!init) return;
  sloth_scope_begin();
  if (affine) {
    fill(w, D), fill(b, D);
    sloth_assign(l.weight, sloth_from_host(w, SLOTH_F32, 2, ns));
    sloth_assign(l.bias, sloth_from_host(b, SLOTH_F32, 2, ns));
  }
  fill(A, M * D);
  for (int m = 0; m < M; m++) {
    double s = 0, q = 0;
    for (int k = 0; k < D; k++) s += A[m * D + k];
    double mean = s / D;
    for (int k = 0; k < D; k++) q += (A[m * D + k] - mean) * (A[m * D + k] - mean);
    for (int k = 0; k < D; k++)
      R[m * D + k] = (float)((A[m * D + k] - mean) / sqrt(q / D + 1e-5) * (affine ? w[k] : 1) + (affine ? b[k] : 0));
  }
  sloth_tensor *y = sloth_layer_norm_layer_forward(&l, sloth_from_host(A, SLOTH_F32, 3, xs));
  double e = err_of(y, R, M * D, 1e-5, 1e-4);
  ok(has_shape(y, 3, xs) && e <= 1, "layer norm%s forward over the last 2 dims (err %.3g)", affine ? "" : " (no affine)", e);
  sloth_scope_end();
  sloth_layer_norm_layer_free(&l);
}

static void embedding_case(void) {
  enum { NUM = 2000, DIM = 64 };
  sloth_embedding_layer l;
  int64_t ws[2] = {NUM, DIM};
  bool init = sloth_embedding_layer_init(&l, NUM, DIM) == SLOTH_OK;
  double mean = NAN, sd = NAN, maxabs;
  bool r = init && has_shape(l.weight, 2, ws) && !sloth_is_pending(l.weight) && read(l.weight, B, NUM * DIM);
  if (r) stats(B, NUM * DIM, &mean, &sd, &maxabs);
  ok(r && fabs(mean) < 0.02 && fabs(sd - 1) < 0.02, "embedding init: N(0, 1) (mean %.3g, std %.4g)", mean, sd);
  if (!init) return;
  int32_t ids[2][3] = {{0, 5, 1999}, {5, 17, 3}};
  for (int i = 0; i < 6; i++) memcpy(R + i * DIM, B + (int64_t)((int32_t *)ids)[i] * DIM, DIM * sizeof(float));
  sloth_scope_begin();
  sloth_tensor *y = sloth_embedding_layer_forward(&l, sloth_from_host(ids, SLOTH_I32, 2, (int64_t[]){2, 3}));
  ok(has_shape(y, 3, (int64_t[]){2, 3, DIM}) && read(y, G, 6 * DIM) &&
         memcmp(G, R, 6 * DIM * sizeof(float)) == 0, "embedding forward picks the rows of ids [2, 3]");
  sloth_scope_end();
  sloth_embedding_layer_free(&l);
}

/* ------------------------------------------------------------------ lifetimes and bad input */

/* Layers made inside a scope outlive it; free is idempotent; a freed layer
 * refuses to run. */
static void lifetimes(void) {
  sloth_linear l;
  sloth_scope_begin();
  int rc = sloth_linear_init(&l, 4, 3, 1);
  sloth_scope_end();
  float x[4] = {1, 2, 3, 4};
  sloth_scope_begin();
  sloth_tensor *y = sloth_linear_forward(&l, sloth_from_host(x, SLOTH_F32, 1, (int64_t[]){4}));
  ok(rc == SLOTH_OK && has_shape(y, 1, (int64_t[]){3}) && read(y, G, 3), "a layer made inside a scope outlives it (1-D x works)");
  sloth_clear_error();
  ok(!sloth_linear_forward(&l, sloth_from_host(x, SLOTH_F32, 2, (int64_t[]){2, 2})) && sloth_last_status() == SLOTH_E_SHAPE,
     "linear forward refuses x whose last size is not in_features");
  sloth_scope_end();
  sloth_linear_free(&l);
  sloth_linear_free(&l);
  ok(!l.weight && !l.bias, "linear free NULLs the members and runs twice");
  sloth_clear_error();
  sloth_scope_begin();
  ok(!sloth_linear_forward(&l, sloth_from_host(x, SLOTH_F32, 1, (int64_t[]){4})) && sloth_last_status() == SLOTH_E_INVALID,
     "a freed linear layer refuses to run (%s)", sloth_last_error());
  sloth_scope_end();

  sloth_conv2d_layer c = {0};
  sloth_batch_norm_layer bn = {0};
  sloth_layer_norm_layer ln = {0};
  sloth_embedding_layer e = {0};
  sloth_conv2d_layer_free(&c), sloth_batch_norm_layer_free(&bn), sloth_layer_norm_layer_free(&ln), sloth_embedding_layer_free(&e);
  sloth_linear_free(NULL), sloth_conv2d_layer_free(NULL), sloth_batch_norm_layer_free(NULL);
  sloth_layer_norm_layer_free(NULL), sloth_embedding_layer_free(NULL);
  sloth_scope_begin();
  sloth_tensor *x4 = sloth_zeros(SLOTH_F32, 4, (int64_t[]){2, 1, 2, 2});
  sloth_tensor *ids = sloth_zeros(SLOTH_I32, 1, (int64_t[]){2});
  bool refused = !sloth_conv2d_layer_forward(&c, x4) && !sloth_batch_norm_layer_forward(&bn, x4, 1) &&
                 !sloth_layer_norm_layer_forward(&ln, x4) && !sloth_embedding_layer_forward(&e, ids) &&
                 !sloth_linear_forward(NULL, x4) && !sloth_conv2d_layer_forward(NULL, x4) &&
                 !sloth_batch_norm_layer_forward(NULL, x4, 0) && !sloth_layer_norm_layer_forward(NULL, x4) &&
                 !sloth_embedding_layer_forward(NULL, ids);
  ok(refused, "zeroed and NULL layers are freed safely and refuse to run");
  sloth_scope_end();
}

#define GARBAGE(s) memset(&(s), 0x5a, sizeof(s))

static bool refused(int rc, const void *p, size_t n) {
  static const unsigned char zero[256];
  return rc < 0 && sloth_last_status() == rc && memcmp(p, zero, n) == 0;
}

static void bad_input(void) {
  sloth_linear l;
  sloth_conv2d_layer c;
  sloth_batch_norm_layer bn;
  sloth_layer_norm_layer ln;
  sloth_embedding_layer e;
  int64_t ns[2] = {3, 4};
  int rc;
#define BAD(st, call, what)                                                                                                   \
  do {                                                                                                                         \
    GARBAGE(st);                                                                                                               \
    sloth_clear_error();                                                                                                       \
    rc = (call);                                                                                                               \
    ok(refused(rc, &(st), sizeof(st)), "%s: refused (%s), struct zeroed", what, sloth_last_error());                          \
  } while (0)
  BAD(l, sloth_linear_init(&l, 0, 4, 1), "linear in 0");
  BAD(l, sloth_linear_init(&l, 4, -2, 0), "linear out -2");
  BAD(c, sloth_conv2d_layer_init(&c, 0, 4, 3, 3, 1, 0, 1, 1, 1), "conv2d in_channels 0");
  BAD(c, sloth_conv2d_layer_init(&c, 4, -1, 3, 3, 1, 0, 1, 1, 1), "conv2d out_channels -1");
  BAD(c, sloth_conv2d_layer_init(&c, 4, 4, 0, 3, 1, 0, 1, 1, 1), "conv2d kh 0");
  BAD(c, sloth_conv2d_layer_init(&c, 4, 4, 3, -3, 1, 0, 1, 1, 1), "conv2d kw -3");
  BAD(c, sloth_conv2d_layer_init(&c, 4, 4, 3, 3, 0, 0, 1, 1, 1), "conv2d stride 0");
  BAD(c, sloth_conv2d_layer_init(&c, 4, 4, 3, 3, 1, -1, 1, 1, 1), "conv2d padding -1");
  BAD(c, sloth_conv2d_layer_init(&c, 4, 4, 3, 3, 1, 0, 0, 1, 1), "conv2d dilation 0");
  BAD(c, sloth_conv2d_layer_init(&c, 4, 4, 3, 3, 1, 0, 1, 0, 1), "conv2d groups 0");
  BAD(c, sloth_conv2d_layer_init(&c, 6, 4, 3, 3, 1, 0, 1, 4, 1), "conv2d groups 4 with 6 input channels");
  BAD(c, sloth_conv2d_layer_init(&c, 4, 6, 3, 3, 1, 0, 1, 4, 1), "conv2d groups 4 with 6 output channels");
  BAD(bn, sloth_batch_norm_layer_init(&bn, 0, 1), "batch norm channels 0");
  BAD(bn, sloth_batch_norm_layer_init(&bn, -3, 0), "batch norm channels -3");
  BAD(ln, sloth_layer_norm_layer_init(&ln, 0, ns, 1), "layer norm ndim 0");
  BAD(ln, sloth_layer_norm_layer_init(&ln, 9, ns, 1), "layer norm ndim 9");
  BAD(ln, sloth_layer_norm_layer_init(&ln, 2, NULL, 1), "layer norm NULL shape");
  BAD(ln, sloth_layer_norm_layer_init(&ln, 2, (int64_t[]){3, 0}, 0), "layer norm size 0");
  BAD(e, sloth_embedding_layer_init(&e, 0, 4), "embedding num 0");
  BAD(e, sloth_embedding_layer_init(&e, 4, -1), "embedding dim -1");
#undef BAD
  sloth_clear_error();
  ok(sloth_linear_init(NULL, 2, 2, 1) < 0 && sloth_conv2d_layer_init(NULL, 2, 2, 1, 1, 1, 0, 1, 1, 1) < 0 &&
         sloth_batch_norm_layer_init(NULL, 2, 1) < 0 && sloth_layer_norm_layer_init(NULL, 1, ns, 1) < 0 &&
         sloth_embedding_layer_init(NULL, 2, 2) < 0 && sloth_last_status() == SLOTH_E_INVALID,
     "every init refuses a NULL layer");
  /* the runtime keeps working */
  sloth_clear_error();
  float x[3] = {1, -2, 3}, y[3];
  sloth_scope_begin();
  bool works = sloth_to_host(sloth_abs(sloth_from_host(x, SLOTH_F32, 1, (int64_t[]){3})), y, sizeof y) == SLOTH_OK && y[1] == 2 &&
               sloth_linear_init(&l, 3, 2, 1) == SLOTH_OK;
  sloth_scope_end();
  sloth_linear_free(&l);
  ok(works, "after bad input the runtime still computes and makes layers");
}

int main(void) {
  if (sloth_init(NULL) != SLOTH_OK) skip_all(sloth_last_error());
  sloth_manual_seed(42);
  initializers();

  linear_case(2, (int64_t[]){5, 7}, 3, true);
  linear_case(2, (int64_t[]){5, 7}, 3, false);
  linear_case(3, (int64_t[]){2, 4, 33}, 17, true);
  linear_case(3, (int64_t[]){2, 4, 33}, 17, false);
  linear_case(4, (int64_t[]){2, 3, 2, 8}, 5, true);
  linear_case(2, (int64_t[]){64, 300}, 200, true);
  linear_replay();
  linear_training();

  conv_case(2, 3, 9, 9, 8, 3, 1, 1, 1, 1, true);
  conv_case(2, 3, 9, 9, 8, 3, 2, 1, 1, 1, false);
  conv_case(1, 4, 11, 10, 6, 3, 1, 2, 2, 2, true);
  conv_case(2, 4, 6, 6, 4, 1, 1, 0, 1, 4, true);

  batch_norm_case(true);
  batch_norm_case(false);
  layer_norm_case(true);
  layer_norm_case(false);
  embedding_case();

  lifetimes();
  bad_input();

  /* every layer and draw above was released: shutdown finds no live tensor */
  sloth_clear_error();
  sloth_shutdown();
  ok(sloth_last_status() == SLOTH_OK, "no tensor leaked (shutdown %s)", sloth_last_status() ? sloth_last_error() : "ok");
  return tap_done();
}
