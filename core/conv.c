/* conv.c - convolution and pooling, built from views, GEMM and reductions.
 *
 * A window over a padded NCHW input is an as_strided view, so im2col needs
 * no kernel of its own: conv2d is pad -> as_strided -> one GEMM per group
 * (the schedule copies the window view into a contiguous operand once), and
 * pooling is pad -> as_strided -> a reduction over the window axes, fused
 * into one kernel. */
#include "internal.h"

#include <math.h>
#include <stdint.h>

static int64_t out_size(int64_t in, int pad, int dil, int k, int stride) {
  return (in + 2 * (int64_t)pad - (int64_t)dil * (k - 1) - 1) / stride + 1;
}

/* Checks window geometry; on success fills the output size. */
static int window_geometry(const char *what, const sloth_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw, int dh,
                           int dw, int64_t *oh, int64_t *ow) {
  if (sloth_rank(x) != 4) return sloth__fail(SLOTH_E_SHAPE, "%s: input must be [N, C, H, W] (rank %d)", what, sloth_rank(x));
  if (kh < 1 || kw < 1 || sh < 1 || sw < 1 || dh < 1 || dw < 1 || ph < 0 || pw < 0)
    return sloth__fail(SLOTH_E_INVALID, "%s: kernel, stride and dilation must be >= 1 and padding >= 0", what);
  int64_t H = sloth_dim(x, 2), W = sloth_dim(x, 3);
  *oh = out_size(H, ph, dh, kh, sh);
  *ow = out_size(W, pw, dw, kw, sw);
  if (H + 2 * ph < (int64_t)dh * (kh - 1) + 1 || W + 2 * pw < (int64_t)dw * (kw - 1) + 1 || *oh < 1 || *ow < 1)
    return sloth__fail(SLOTH_E_SHAPE, "%s: a %dx%d window (dilation %d,%d) does not fit a %lldx%lld input padded by %d,%d",
                       what, kh, kw, dh, dw, (long long)H, (long long)W, ph, pw);
  return SLOTH_OK;
}

/* The windows of x as [N, C, oh, ow, kh, kw] (or, for conv, grouped
 * differently by the caller) over x padded with `value`. */
static sloth_tensor *padded(sloth_tensor *x, int ph, int pw, double value) {
  int64_t pads[8] = {0, 0, 0, 0, ph, ph, pw, pw};
  return sloth_pad(x, pads, value);
}

sloth_tensor *sloth_conv2d(sloth_tensor *x, sloth_tensor *w, sloth_tensor *bias, int sh, int sw, int ph, int pw, int dh,
                           int dw, int groups) {
  if (!sloth__tensor_valid(x) || !sloth__tensor_valid(w)) return NULL;
  if (sloth_rank(w) != 4) {
    sloth__fail(SLOTH_E_SHAPE, "conv2d: weight must be [O, C/groups, kh, kw] (rank %d)", sloth_rank(w));
    return NULL;
  }
  int64_t N = sloth_dim(x, 0), C = sloth_dim(x, 1), O = sloth_dim(w, 0), Cg = sloth_dim(w, 1);
  int kh = (int)sloth_dim(w, 2), kw = (int)sloth_dim(w, 3);
  int64_t oh, ow;
  if (window_geometry("conv2d", x, kh, kw, sh, sw, ph, pw, dh, dw, &oh, &ow) != SLOTH_OK) return NULL;
  if (groups < 1 || C % groups || O % groups || Cg * groups != C) {
    sloth__fail(SLOTH_E_SHAPE, "conv2d: %lld input channels, %lld output channels and weight [%lld, %lld, ...] do not fit %d groups",
                (long long)C, (long long)O, (long long)O, (long long)Cg, groups);
    return NULL;
  }
  if (bias && (sloth_rank(bias) != 1 || sloth_dim(bias, 0) != O)) {
    sloth__fail(SLOTH_E_SHAPE, "conv2d: bias must be [%lld]", (long long)O);
    return NULL;
  }
  int64_t g = groups, H = sloth_dim(x, 2) + 2 * ph, W = sloth_dim(x, 3) + 2 * pw;
  sloth_scope_begin();
  sloth_tensor *xp = padded(x, ph, pw, 0.0);
  /* cols[g, c, i, j, n, y, x] = xp[n, g*Cg + c, y*sh + i*dh, x*sw + j*dw]:
   * the batch is part of the GEMM's columns, so each group is one large
   * GEMM (64 small per-image GEMMs ran at half the speed on OpenBLAS), and
   * the weight gradient sums over the batch inside its GEMM */
  int64_t shape[7] = {g, Cg, kh, kw, N, oh, ow};
  int64_t strides[7] = {Cg * H * W, H * W, dh * W, dw, C * H * W, sh * W, sw};
  sloth_tensor *cols = sloth_as_strided(xp, 7, shape, strides, 0);
  sloth_tensor *cols2 = sloth_reshape(cols, 3, (int64_t[]){g, Cg * kh * kw, N * oh * ow});
  sloth_tensor *w2 = sloth_reshape(w, 3, (int64_t[]){g, O / g, Cg * kh * kw});
  sloth_tensor *y = sloth_matmul(w2, cols2);
  /* the bias is added in the GEMM's layout: the backward pass then reduces
   * the bias gradient from the [g, O/g, N*oh*ow] copy the weight-gradient
   * GEMM reads, so the output gradient is written once, in that layout */
  if (bias) y = sloth_add(y, sloth_reshape(bias, 3, (int64_t[]){g, O / g, 1}));
  y = sloth_reshape(y, 5, (int64_t[]){g, O / g, N, oh, ow});
  y = sloth_keep(sloth_reshape(sloth_permute(y, (int[]){2, 0, 1, 3, 4}), 4, (int64_t[]){N, O, oh, ow}));
  sloth_scope_end();
  return y;
}

static sloth_tensor *pool(bool max, sloth_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw) {
  int64_t oh, ow;
  if (!sloth__tensor_valid(x)) return NULL;
  if (window_geometry(max ? "max_pool2d" : "avg_pool2d", x, kh, kw, sh, sw, ph, pw, 1, 1, &oh, &ow) != SLOTH_OK) return NULL;
  if (ph * 2 > kh || pw * 2 > kw) {
    sloth__fail(SLOTH_E_INVALID, "%s: padding must be at most half the window", max ? "max_pool2d" : "avg_pool2d");
    return NULL;
  }
  sloth_dtype dt = sloth_dtype_of(x);
  double lowest = sloth__is_float(dt) ? -INFINITY : dt == SLOTH_I32 ? (double)INT32_MIN : dt == SLOTH_I64 ? (double)INT64_MIN : 0.0;
  int64_t N = sloth_dim(x, 0), C = sloth_dim(x, 1), H = sloth_dim(x, 2) + 2 * ph, W = sloth_dim(x, 3) + 2 * pw;
  sloth_scope_begin();
  sloth_tensor *xp = padded(x, ph, pw, max ? lowest : 0.0);
  int64_t shape[6] = {N, C, oh, ow, kh, kw};
  int64_t strides[6] = {C * H * W, H * W, sh * W, sw, W, 1};
  sloth_tensor *win = sloth_as_strided(xp, 6, shape, strides, 0);
  int axes[2] = {4, 5};
  sloth_tensor *y = max ? sloth_max(win, axes, 2, 0) : sloth_mean(win, axes, 2, 0);
  y = sloth_keep(y);
  sloth_scope_end();
  return y;
}

sloth_tensor *sloth_max_pool2d(sloth_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw) {
  return pool(true, x, kh, kw, sh, sw, ph, pw);
}

sloth_tensor *sloth_avg_pool2d(sloth_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw) {
  return pool(false, x, kh, kw, sh, sw, ph, pw);
}

/* The [o, L] matrix that averages the adaptive windows of one axis: row i
 * averages elements floor(i L / o) .. ceil((i + 1) L / o) - 1 (PyTorch's
 * windows, which differ in size when o does not divide L). Built from
 * aranges, so it is part of the graph: no upload, nothing new to compile
 * per step. The bounds are floors of (integer + a half) / o, which stay
 * exact under relaxed float division. */
static sloth_tensor *adaptive_weights(int64_t L, int o, sloth_dtype dt) {
  sloth_tensor *i = sloth_reshape(sloth_arange(0, o, 1, SLOTH_F32), 2, (int64_t[]){o, 1});
  sloth_tensor *h = sloth_reshape(sloth_arange(0, (double)L, 1, SLOTH_F32), 2, (int64_t[]){1, L});
  sloth_tensor *iL = sloth_mul_scalar(i, (double)L);
  sloth_tensor *start = sloth_floor(sloth_div_scalar(sloth_add_scalar(iL, 0.5), o));
  sloth_tensor *end = sloth_floor(sloth_div_scalar(sloth_add_scalar(iL, (double)L + o - 0.5), o));
  sloth_tensor *inside = sloth_logical_and(sloth_ge(h, start), sloth_lt(h, end));
  sloth_tensor *w = sloth_where(inside, sloth_reciprocal(sloth_sub(end, start)), sloth_scalar(0, SLOTH_F32));
  return sloth_cast(w, sloth__is_float(dt) ? dt : SLOTH_F32);
}

sloth_tensor *sloth_adaptive_avg_pool2d(sloth_tensor *x, int oh, int ow) {
  if (!sloth__tensor_valid(x)) return NULL;
  if (sloth_rank(x) != 4 || oh < 1 || ow < 1) {
    sloth__fail(SLOTH_E_INVALID, "adaptive_avg_pool2d: needs an [N, C, H, W] input and output sizes >= 1");
    return NULL;
  }
  int64_t H = sloth_dim(x, 2), W = sloth_dim(x, 3);
  if (H % oh == 0 && W % ow == 0) { /* equal windows: a plain average pool */
    int kh = (int)(H / oh), kw = (int)(W / ow);
    return pool(false, x, kh, kw, kh, kw, 0, 0);
  }
  if ((double)(H + oh) * oh >= 1 << 24 || (double)(W + ow) * ow >= 1 << 24) {
    sloth__fail(SLOTH_E_UNSUPPORTED, "adaptive_avg_pool2d: %lldx%lld to %dx%d is out of the supported range",
                (long long)H, (long long)W, oh, ow);
    return NULL;
  }
  /* windows of different sizes: y = Ah x Aw^T, two small GEMMs */
  sloth_scope_begin();
  sloth_dtype dt = sloth_dtype_of(x);
  sloth_tensor *y = sloth_matmul(sloth_matmul(adaptive_weights(H, oh, dt), x), sloth_transpose(adaptive_weights(W, ow, dt), 0, 1));
  y = sloth_keep(y);
  sloth_scope_end();
  return y;
}
