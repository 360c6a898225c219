/* nn.c - softmax, normalization and losses, composed from public ops.
 *
 * Everything here only records IR; nothing syncs. The graphs are built so
 * the scheduler fuses them well. A node read by two kernels is materialized
 * (core/schedule.c), so a value two kernels need (x - max in softmax, x -
 * mean in the norms) is built twice, as separate nodes: each kernel
 * recomputes it instead of writing it to a buffer of its own. Resulting
 * kernel counts: softmax / log_softmax 3 (max, sum of exp, output);
 * layer_norm and batch_norm 3 (mean, variance, output) plus one for the
 * running statistics in training; cross_entropy 3 (max, sum of exp, the
 * loss: the per-row gather, the scaling by -1/N and the sum are one
 * reduction); mse_loss and binary_cross_entropy_with_logits 1.
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ helpers */

/* A usable tensor handle (records an error otherwise, like any op). */
static void shape_str(char *buf, size_t n, const sloth_tensor *t) {
  int rank = sloth_rank(t);
  const int64_t *shape = sloth_shape(t);
  size_t used = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < rank && used < n; i++) used += (size_t)snprintf(buf + used, n - used, i ? ",%lld" : "%lld", (long long)shape[i]);
  if (used < n) snprintf(buf + used, n - used, "]");
}

static bool same_shape(const sloth_tensor *a, const sloth_tensor *b) {
  int r = sloth_rank(a);
  return r == sloth_rank(b) && memcmp(sloth_shape(a), sloth_shape(b), (size_t)r * sizeof(int64_t)) == 0;
}

static int shape_mismatch(const char *what, const char *na, const sloth_tensor *a, const char *nb, const sloth_tensor *b) {
  char sa[160], sb[160];
  shape_str(sa, sizeof sa, a);
  shape_str(sb, sizeof sb, b);
  return sloth__fail(SLOTH_E_SHAPE, "%s: %s %s and %s %s must have the same shape", what, na, sa, nb, sb);
}

/* x as f32, or f64 for f64 (inside the caller's scope): f16 computes in f32. */
static sloth_tensor *as_float(sloth_tensor *x) {
  sloth_dtype dt = sloth_dtype_of(x);
  return dt == SLOTH_F32 || dt == SLOTH_F64 ? x : sloth_cast(x, SLOTH_F32);
}

/* A result computed in f32 for an f16 input goes back to f16 (the ops whose
 * result has the input's dtype: softmax, normalization). */
static sloth_tensor *like_input(sloth_tensor *y, sloth_tensor *x) {
  return sloth_dtype_of(x) == SLOTH_F16 && sloth_dtype_of(y) == SLOTH_F32 ? sloth_cast(y, SLOTH_F16) : y;
}

static bool bad_eps(const char *what, double eps) {
  if (eps >= 0 && isfinite(eps)) return false;
  sloth__fail(SLOTH_E_INVALID, "%s: eps must be finite and >= 0 (got %g)", what, eps);
  return true;
}

/* ------------------------------------------------------------------ softmax */

static sloth_tensor *softmax(bool log, sloth_tensor *x, int axis) {
  const char *what = log ? "log_softmax" : "softmax";
  if (!sloth__tensor_valid(x)) return NULL;
  int a = sloth__norm_axis(axis, sloth_rank(x), what);
  if (a < 0) return NULL;
  sloth_scope_begin();
  sloth_tensor *xf = as_float(x);
  sloth_tensor *m = sloth_max(xf, &a, 1, 1);
  sloth_tensor *s = sloth_sum(sloth_exp(sloth_sub(xf, m)), &a, 1, 1);
  sloth_tensor *y;
  /* a second x - m node, so that kernels recompute it (see the top of the
   * file); (x - m) - log(s) keeps the precision x - (m + log(s)) loses */
  if (log) y = sloth_sub(sloth_sub(xf, m), sloth_log(s));
  else y = sloth_div(sloth_exp(sloth_sub(xf, m)), s);
  y = sloth_keep(like_input(y, x));
  sloth_scope_end();
  return y;
}

sloth_tensor *sloth_softmax(sloth_tensor *x, int axis) { return softmax(false, x, axis); }
sloth_tensor *sloth_log_softmax(sloth_tensor *x, int axis) { return softmax(true, x, axis); }

/* ------------------------------------------------------------------ normalization */

/* (x - mean) / sqrt(var + eps) over `axes`, with mean and the biased var
 * (two passes: the variance reads x - mean, not E[x^2] - mean^2). Sets *mean
 * and *var (keepdim) in the caller's scope. */
static sloth_tensor *normalize(sloth_tensor *xf, const int *axes, int naxes, double eps, sloth_tensor **mean, sloth_tensor **var) {
  *mean = sloth_mean(xf, axes, naxes, 1);
  *var = sloth_mean(sloth_square(sloth_sub(xf, *mean)), axes, naxes, 1);
  return sloth_mul(sloth_sub(xf, *mean), sloth_rsqrt(sloth_add_scalar(*var, eps)));
}

sloth_tensor *sloth_layer_norm(sloth_tensor *x, int normalized_ndim, sloth_tensor *weight, sloth_tensor *bias, double eps) {
  if (!sloth__tensor_valid(x) || (weight && !sloth__tensor_valid(weight)) || (bias && !sloth__tensor_valid(bias))) return NULL;
  int r = sloth_rank(x), k = normalized_ndim;
  if (k < 1 || k > r) {
    sloth__fail(SLOTH_E_INVALID, "layer_norm: normalized_ndim %d out of range 1..%d (the rank of x)", k, r);
    return NULL;
  }
  if (bad_eps("layer_norm", eps)) return NULL;
  const sloth_tensor *params[2] = {weight, bias};
  for (int i = 0; i < 2; i++) {
    const sloth_tensor *p = params[i];
    if (!p) continue;
    if (sloth_rank(p) != k || memcmp(sloth_shape(p), sloth_shape(x) + (r - k), (size_t)k * sizeof(int64_t)) != 0) {
      char sp[160], sx[160];
      shape_str(sp, sizeof sp, p);
      shape_str(sx, sizeof sx, x);
      sloth__fail(SLOTH_E_SHAPE, "layer_norm: %s %s must be the last %d dimension(s) of x %s", i ? "bias" : "weight", sp, k, sx);
      return NULL;
    }
  }
  int axes[SLOTH_MAX_RANK];
  for (int i = 0; i < k; i++) axes[i] = r - k + i;
  sloth_scope_begin();
  sloth_tensor *mean, *var;
  sloth_tensor *y = normalize(as_float(x), axes, k, eps, &mean, &var);
  if (weight) y = sloth_mul(y, weight);
  if (bias) y = sloth_add(y, bias);
  y = sloth_keep(like_input(y, x));
  sloth_scope_end();
  return y;
}

sloth_tensor *sloth_batch_norm(sloth_tensor *x, sloth_tensor *running_mean, sloth_tensor *running_var, sloth_tensor *weight,
                               sloth_tensor *bias, int training, double momentum, double eps,
                               sloth_tensor **new_running_mean, sloth_tensor **new_running_var) {
  if (new_running_mean) *new_running_mean = NULL;
  if (new_running_var) *new_running_var = NULL;
  sloth_tensor *params[4] = {running_mean, running_var, weight, bias};
  static const char *const names[4] = {"running_mean", "running_var", "weight", "bias"};
  if (!sloth__tensor_valid(x)) return NULL;
  for (int i = 0; i < 4; i++)
    if (params[i] && !sloth__tensor_valid(params[i])) return NULL;
  int r = sloth_rank(x);
  if (r < 2) {
    sloth__fail(SLOTH_E_SHAPE, "batch_norm: x must be [N, C, ...] (rank %d)", r);
    return NULL;
  }
  int64_t C = sloth_dim(x, 1), n = C ? sloth_numel(x) / C : 0;
  for (int i = 0; i < 4; i++) {
    if (!params[i]) continue;
    if (sloth_rank(params[i]) != 1 || sloth_dim(params[i], 0) != C) {
      char sp[160];
      shape_str(sp, sizeof sp, params[i]);
      sloth__fail(SLOTH_E_SHAPE, "batch_norm: %s %s must be [%lld] (the channels of x)", names[i], sp, (long long)C);
      return NULL;
    }
  }
  if (!running_mean != !running_var) {
    sloth__fail(SLOTH_E_INVALID, "batch_norm: give both running_mean and running_var, or neither");
    return NULL;
  }
  if (!training && !running_mean) {
    sloth__fail(SLOTH_E_INVALID, "batch_norm: evaluation mode needs running_mean and running_var");
    return NULL;
  }
  if (training && n <= 1) {
    sloth__fail(SLOTH_E_SHAPE, "batch_norm: training needs more than 1 value per channel (got %lld)", (long long)n);
    return NULL;
  }
  if (bad_eps("batch_norm", eps)) return NULL;
  if (!isfinite(momentum)) {
    sloth__fail(SLOTH_E_INVALID, "batch_norm: momentum must be finite");
    return NULL;
  }
  /* per-channel [C] tensors broadcast as [1, C, 1, ...] */
  int64_t pshape[SLOTH_MAX_RANK];
  for (int d = 0; d < r; d++) pshape[d] = d == 1 ? C : 1;

  sloth_scope_begin();
  sloth_tensor *xf = as_float(x), *y, *rm = NULL, *rv = NULL;
  if (training) {
    int axes[SLOTH_MAX_RANK], na = 0;
    for (int d = 0; d < r; d++)
      if (d != 1) axes[na++] = d;
    sloth_tensor *mean, *var;
    y = normalize(xf, axes, na, eps, &mean, &var);
    if (running_mean) {
      /* running stats use the unbiased variance; the factors are kernel arguments */
      sloth_tensor *bm = sloth_reshape(mean, 1, &C), *bv = sloth_reshape(var, 1, &C);
      rm = sloth_add(sloth_mul_scalar(as_float(running_mean), 1.0 - momentum), sloth_mul_scalar(bm, momentum));
      rv = sloth_add(sloth_mul_scalar(as_float(running_var), 1.0 - momentum),
                     sloth_mul_scalar(bv, momentum * (double)n / (double)(n - 1)));
    }
  } else {
    sloth_tensor *m = sloth_reshape(running_mean, r, pshape), *v = sloth_reshape(running_var, r, pshape);
    y = sloth_mul(sloth_sub(xf, m), sloth_rsqrt(sloth_add_scalar(as_float(v), eps)));
    /* new handles of the unchanged statistics, so the caller's code is the same in both modes */
    rm = sloth_reshape(running_mean, 1, &C);
    rv = sloth_reshape(running_var, 1, &C);
  }
  if (weight) y = sloth_mul(y, sloth_reshape(weight, r, pshape));
  if (bias) y = sloth_add(y, sloth_reshape(bias, r, pshape));
  bool ok = y && (!running_mean || (rm && rv));
  if (ok) {
    y = sloth_keep(like_input(y, x));
    if (rm && new_running_mean) *new_running_mean = sloth_keep(rm);
    if (rv && new_running_var) *new_running_var = sloth_keep(rv);
  }
  sloth_scope_end();
  return ok ? y : NULL;
}

/* ------------------------------------------------------------------ labels */

static bool integer_labels(const char *what, sloth_tensor *labels) {
  sloth_dtype dt = sloth_dtype_of(labels);
  if (dt == SLOTH_I32 || dt == SLOTH_I64 || dt == SLOTH_U8) return true;
  sloth__fail(SLOTH_E_DTYPE, "%s: labels must be an integer tensor (i32, i64 or u8), not %s", what, sloth_dtype_name(dt));
  return false;
}

sloth_tensor *sloth_one_hot(sloth_tensor *labels, int64_t num_classes, sloth_dtype dt) {
  if (!sloth__tensor_valid(labels) || !integer_labels("one_hot", labels)) return NULL;
  if (num_classes < 1 || num_classes > INT32_MAX) {
    sloth__fail(SLOTH_E_INVALID, "one_hot: num_classes must be in 1..2^31-1 (got %lld)", (long long)num_classes);
    return NULL;
  }
  if ((int)dt < 0 || dt >= SLOTH_DTYPE_COUNT) {
    sloth__fail(SLOTH_E_DTYPE, "one_hot: unknown dtype %d", (int)dt);
    return NULL;
  }
  sloth_scope_begin();
  sloth_tensor *classes = sloth_arange(0, (double)num_classes, 1, SLOTH_I32);
  sloth_tensor *y = sloth_cast(sloth_eq(sloth_unsqueeze(labels, -1), classes), dt);
  y = sloth_keep(y);
  sloth_scope_end();
  return y;
}

/* Checks scores [N, C, d...] (or [C]) against labels [N, d...] (or []); sets
 * the class axis. */
static int check_labels(const char *what, sloth_tensor *scores, sloth_tensor *labels, int *class_axis) {
  if (!sloth__tensor_valid(scores) || !sloth__tensor_valid(labels)) return SLOTH_E_INVALID;
  if (!integer_labels(what, labels)) return SLOTH_E_DTYPE;
  int r = sloth_rank(scores);
  if (r < 1) return sloth__fail(SLOTH_E_SHAPE, "%s: scores must be [N, C, ...] or [C] (rank 0)", what);
  int ca = r == 1 ? 0 : 1;
  const int64_t *s = sloth_shape(scores), *l = sloth_shape(labels);
  bool fits = sloth_rank(labels) == r - 1;
  for (int d = 0, j = 0; fits && d < r; d++)
    if (d != ca) fits = s[d] == l[j++];
  if (!fits) {
    char ss[160], sl[160];
    shape_str(ss, sizeof ss, scores);
    shape_str(sl, sizeof sl, labels);
    return sloth__fail(SLOTH_E_SHAPE, "%s: labels %s do not fit scores %s (labels are the scores' shape without axis %d)", what,
                       sl, ss, ca);
  }
  if (s[ca] < 1) return sloth__fail(SLOTH_E_SHAPE, "%s: scores have no classes", what);
  *class_axis = ca;
  return SLOTH_OK;
}

/* -mean over the labels of log_probs[n, labels[n], ...], as one reduction:
 * the selected values are scaled by -1/count (a kernel argument) and summed. */
/* -mean of the log-probabilities at the labels, read with a gather: a
 * label out of range sets the device's error word, so the next blocking
 * read fails with "index out of range" (as PyTorch refuses such a target)
 * instead of the label counting as zero. */
static sloth_tensor *nll(sloth_tensor *log_probs, sloth_tensor *labels, int ca) {
  int64_t count = sloth_numel(labels);
  if (count == 0) return sloth_full(NAN, SLOTH_F32, 0, NULL); /* the mean of nothing, as in PyTorch */
  sloth_tensor *picked = sloth_gather(as_float(log_probs), ca, sloth_unsqueeze(labels, ca));
  return sloth_sum(sloth_mul_scalar(picked, -1.0 / (double)count), NULL, 0, 0); /* one kernel: scaled inside */
}

sloth_tensor *sloth_nll_loss(sloth_tensor *log_probs, sloth_tensor *labels) {
  int ca;
  if (check_labels("nll_loss", log_probs, labels, &ca) != SLOTH_OK) return NULL;
  sloth_scope_begin();
  sloth_tensor *y = sloth_keep(nll(log_probs, labels, ca));
  sloth_scope_end();
  return y;
}

sloth_tensor *sloth_cross_entropy(sloth_tensor *logits, sloth_tensor *labels) {
  int ca;
  if (check_labels("cross_entropy", logits, labels, &ca) != SLOTH_OK) return NULL;
  sloth_scope_begin();
  sloth_tensor *y = sloth_keep(nll(sloth_log_softmax(logits, ca), labels, ca));
  sloth_scope_end();
  return y;
}

/* ------------------------------------------------------------------ regression losses */

sloth_tensor *sloth_mse_loss(sloth_tensor *a, sloth_tensor *b) {
  if (!sloth__tensor_valid(a) || !sloth__tensor_valid(b)) return NULL;
  if (!same_shape(a, b)) {
    shape_mismatch("mse_loss", "input", a, "target", b);
    return NULL;
  }
  sloth_scope_begin();
  sloth_tensor *y = sloth_keep(sloth_mean(sloth_square(sloth_sub(as_float(a), as_float(b))), NULL, 0, 0));
  sloth_scope_end();
  return y;
}

sloth_tensor *sloth_binary_cross_entropy_with_logits(sloth_tensor *logits, sloth_tensor *targets) {
  if (!sloth__tensor_valid(logits) || !sloth__tensor_valid(targets)) return NULL;
  if (!same_shape(logits, targets)) {
    shape_mismatch("binary_cross_entropy_with_logits", "logits", logits, "targets", targets);
    return NULL;
  }
  sloth_scope_begin();
  sloth_tensor *x = as_float(logits), *t = as_float(targets);
  /* max(x, 0) - x t + log(1 + exp(-|x|)): no exp of a positive number */
  sloth_tensor *l = sloth_add(sloth_sub(sloth_relu(x), sloth_mul(x, t)), sloth_log(sloth_add_scalar(sloth_exp(sloth_neg(sloth_abs(x))), 1.0)));
  sloth_tensor *y = sloth_keep(sloth_mean(l, NULL, 0, 0));
  sloth_scope_end();
  return y;
}
