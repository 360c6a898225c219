/* layers.c - weight initializers and the layer structs (linear, conv2d,
 * batch norm, layer norm, embedding), composed from public ops.
 *
 * Parameters are computed when they are made (a sync of their own), so a
 * training step's graph never contains an initializer and the first step's
 * plan is the one every later step replays. A layer owns one reference to
 * each parameter, held in no scope: the caller's sloth_scope_end never
 * frees a layer's weights.
 */
#include "internal.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ initializers */

/* fan_in and fan_out of a weight [out, in, k...], as
 * torch.nn.init._calculate_fan_in_and_fan_out computes them. */
static int fans(const char *what, int rank, const int64_t *shape, double gain, double *fan_in, double *fan_out) {
  if (!shape || rank < 2 || rank > SLOTH_MAX_RANK)
    return sloth__fail(SLOTH_E_INVALID, "%s: needs a shape of rank 2..%d (got rank %d%s)", what, SLOTH_MAX_RANK, rank,
                       shape ? "" : " and a NULL shape");
  double receptive = 1;
  for (int d = 0; d < rank; d++) {
    /* a zero-size dimension makes a fan 0 and the bound infinite */
    if (shape[d] < 1)
      return sloth__fail(SLOTH_E_INVALID, "%s: dimension %d has size %lld (sizes must be >= 1)", what, d, (long long)shape[d]);
    if (d >= 2) receptive *= (double)shape[d];
  }
  if (!(gain >= 0) || !isfinite(gain)) return sloth__fail(SLOTH_E_INVALID, "%s: gain must be finite and >= 0 (got %g)", what, gain);
  *fan_in = (double)shape[1] * receptive;
  *fan_out = (double)shape[0] * receptive;
  return SLOTH_OK;
}

/* A pending draw with mean 0 and standard deviation std: uniform on
 * [-sqrt(3) std, sqrt(3) std] or normal. */
static sloth_tensor *draw(bool normal, double std, int rank, const int64_t *shape) {
  if (normal) return sloth_normal(0.0, std, rank, shape);
  double bound = sqrt(3.0) * std;
  return sloth_uniform(-bound, bound, rank, shape);
}

/* Kaiming: std = gain / sqrt(fan_in); Xavier: gain * sqrt(2 / (fan_in + fan_out)). */
static sloth_tensor *init_weight(const char *what, bool xavier, bool normal, int rank, const int64_t *shape, double gain) {
  double fi, fo;
  if (fans(what, rank, shape, gain, &fi, &fo) != SLOTH_OK) return NULL;
  double std = xavier ? gain * sqrt(2.0 / (fi + fo)) : gain / sqrt(fi);
  sloth_tensor *t = draw(normal, std, rank, shape);
  if (t && sloth_sync(&t, 1) != SLOTH_OK) {
    sloth_release(t);
    return NULL;
  }
  return t;
}

sloth_tensor *sloth_init_kaiming_uniform(int rank, const int64_t *shape, double gain) {
  return init_weight("init_kaiming_uniform", false, false, rank, shape, gain);
}

sloth_tensor *sloth_init_kaiming_normal(int rank, const int64_t *shape, double gain) {
  return init_weight("init_kaiming_normal", false, true, rank, shape, gain);
}

sloth_tensor *sloth_init_xavier_uniform(int rank, const int64_t *shape, double gain) {
  return init_weight("init_xavier_uniform", true, false, rank, shape, gain);
}

sloth_tensor *sloth_init_xavier_normal(int rank, const int64_t *shape, double gain) {
  return init_weight("init_xavier_normal", true, true, rank, shape, gain);
}

/* ------------------------------------------------------------------ parameters */

/* PyTorch's default for linear and conv weights: kaiming_uniform with
 * a = sqrt(5), a gain of sqrt(2 / (1 + a^2)) = sqrt(1/3), which gives the
 * bound 1/sqrt(fan_in); biases are uniform within the same bound. */
#define DEFAULT_WEIGHT_GAIN 0.57735026918962576 /* sqrt(1/3) */

static sloth_tensor *default_weight(int rank, const int64_t *shape) {
  double fi, fo;
  if (fans("layer weight", rank, shape, DEFAULT_WEIGHT_GAIN, &fi, &fo) != SLOTH_OK) return NULL;
  return draw(false, DEFAULT_WEIGHT_GAIN / sqrt(fi), rank, shape);
}

static sloth_tensor *default_bias(int64_t out, double fan_in) {
  double bound = 1.0 / sqrt(fan_in);
  return sloth_uniform(-bound, bound, 1, &out);
}

/* A parameter being made: where the layer keeps it, and its value. */
typedef struct param {
  sloth_tensor **slot;
  sloth_tensor *value;
} param;

/* Computes the values as one graph, then stores a reference to each in its
 * slot. Runs inside the init's private scope: the scope's reference dies at
 * its end, the slot's lives on outside any scope. Nothing is stored unless
 * every value is there and computed. */
static int store_params(const char *what, param *p, int n) {
  sloth_tensor *vals[4] = {NULL}; /* n <= 4 */
  for (int i = 0; i < n; i++) {
    if (!p[i].value) {
      int s = sloth_last_status();
      return s < 0 ? s : sloth__fail(SLOTH_E_NOMEM, "%s: could not make the parameters", what);
    }
    vals[i] = p[i].value;
  }
  int rc = sloth_sync(vals, n);
  if (rc != SLOTH_OK) return rc;
  for (int i = 0; i < n; i++) *p[i].slot = sloth_retain(p[i].value);
  return SLOTH_OK;
}

/* Releases a parameter and forgets it (safe on NULL). */
static void drop(sloth_tensor **t) {
  sloth_release(*t);
  *t = NULL;
}

static int null_layer(const char *what) { return sloth__fail(SLOTH_E_INVALID, "%s: NULL layer", what); }

/* A forward call's layer: given, and initialized (not freed since). */
static bool layer_ready(const char *what, const void *l, bool initialized) {
  if (l && initialized) return true;
  sloth__fail(SLOTH_E_INVALID, l ? "%s: the layer is not initialized (or was freed)" : "%s: NULL layer", what);
  return false;
}

/* ------------------------------------------------------------------ linear */

int sloth_linear_init(sloth_linear *l, int64_t in_features, int64_t out_features, int bias) {
  if (!l) return null_layer("linear_init");
  memset(l, 0, sizeof *l);
  if (in_features < 1 || out_features < 1)
    return sloth__fail(SLOTH_E_INVALID, "linear_init: in_features (%lld) and out_features (%lld) must be >= 1",
                       (long long)in_features, (long long)out_features);
  int64_t shape[2] = {out_features, in_features};
  sloth__lock(); /* the layer's draws take consecutive Philox streams */
  sloth_scope_begin();
  param p[2] = {{&l->weight, default_weight(2, shape)}, {&l->bias, NULL}};
  if (bias) p[1].value = default_bias(out_features, (double)in_features);
  int rc = store_params("linear_init", p, bias ? 2 : 1);
  sloth_scope_end();
  sloth__unlock();
  return rc;
}

/* x [..., in] -> x @ weight^T + bias. The transpose is read in place by the
 * GEMM and the bias add fuses into the kernel after it. Leading dimensions
 * fold into the GEMM's rows: one large product instead of a batch. */
sloth_tensor *sloth_linear_forward(const sloth_linear *l, sloth_tensor *x) {
  if (!layer_ready("linear_forward", l, l && l->weight) || !sloth__tensor_valid(x)) return NULL;
  int r = sloth_rank(x);
  int64_t in = sloth_dim(l->weight, 1), out = sloth_dim(l->weight, 0);
  if (r < 1 || sloth_dim(x, -1) != in) {
    sloth__fail(SLOTH_E_SHAPE, "linear_forward: x must be [..., %lld] (got rank %d, last size %lld)", (long long)in, r,
                (long long)(r ? sloth_dim(x, -1) : 0));
    return NULL;
  }
  int64_t shape[SLOTH_MAX_RANK];
  memcpy(shape, sloth_shape(x), (size_t)r * sizeof *shape);
  shape[r - 1] = out;
  sloth_scope_begin();
  sloth_tensor *x2 = r > 2 ? sloth_reshape(x, 2, (int64_t[]){-1, in}) : x;
  sloth_tensor *y = sloth_matmul(x2, sloth_transpose(l->weight, 0, 1));
  if (l->bias) y = sloth_add(y, l->bias);
  if (r > 2) y = sloth_reshape(y, r, shape);
  y = sloth_keep(y);
  sloth_scope_end();
  return y;
}

void sloth_linear_free(sloth_linear *l) {
  if (!l) return;
  drop(&l->weight);
  drop(&l->bias);
}

/* ------------------------------------------------------------------ conv2d */

static int conv_check(int64_t in, int64_t out, int kh, int kw, int stride, int padding, int dilation, int groups) {
  if (in < 1 || out < 1 || kh < 1 || kw < 1)
    return sloth__fail(SLOTH_E_INVALID, "conv2d_layer_init: channels (%lld, %lld) and kernel size (%d x %d) must be >= 1",
                       (long long)in, (long long)out, kh, kw);
  if (stride < 1 || dilation < 1 || padding < 0)
    return sloth__fail(SLOTH_E_INVALID, "conv2d_layer_init: stride (%d) and dilation (%d) must be >= 1 and padding (%d) >= 0",
                       stride, dilation, padding);
  if (groups < 1 || in % groups || out % groups)
    return sloth__fail(SLOTH_E_INVALID, "conv2d_layer_init: groups (%d) must be >= 1 and divide the channels (%lld in, %lld out)",
                       groups, (long long)in, (long long)out);
  return SLOTH_OK;
}

int sloth_conv2d_layer_init(sloth_conv2d_layer *l, int64_t in_channels, int64_t out_channels, int kh, int kw, int stride,
                            int padding, int dilation, int groups, int bias) {
  if (!l) return null_layer("conv2d_layer_init");
  memset(l, 0, sizeof *l);
  int rc = conv_check(in_channels, out_channels, kh, kw, stride, padding, dilation, groups);
  if (rc != SLOTH_OK) return rc;
  int64_t shape[4] = {out_channels, in_channels / groups, kh, kw};
  sloth__lock();
  sloth_scope_begin();
  param p[2] = {{&l->weight, default_weight(4, shape)}, {&l->bias, NULL}};
  if (bias) p[1].value = default_bias(out_channels, (double)shape[1] * kh * kw);
  rc = store_params("conv2d_layer_init", p, bias ? 2 : 1);
  sloth_scope_end();
  sloth__unlock();
  if (rc != SLOTH_OK) return rc;
  l->stride_h = l->stride_w = stride;
  l->pad_h = l->pad_w = padding;
  l->dilation_h = l->dilation_w = dilation;
  l->groups = groups;
  return SLOTH_OK;
}

sloth_tensor *sloth_conv2d_layer_forward(const sloth_conv2d_layer *l, sloth_tensor *x) {
  if (!layer_ready("conv2d_layer_forward", l, l && l->weight)) return NULL;
  return sloth_conv2d(x, l->weight, l->bias, l->stride_h, l->stride_w, l->pad_h, l->pad_w, l->dilation_h, l->dilation_w,
                      l->groups);
}

void sloth_conv2d_layer_free(sloth_conv2d_layer *l) {
  if (!l) return;
  drop(&l->weight);
  drop(&l->bias);
}

/* ------------------------------------------------------------------ batch norm */

int sloth_batch_norm_layer_init(sloth_batch_norm_layer *l, int64_t channels, int affine) {
  if (!l) return null_layer("batch_norm_layer_init");
  memset(l, 0, sizeof *l);
  if (channels < 1) return sloth__fail(SLOTH_E_INVALID, "batch_norm_layer_init: channels (%lld) must be >= 1", (long long)channels);
  sloth_scope_begin();
  param p[4] = {{&l->running_mean, sloth_zeros(SLOTH_F32, 1, &channels)},
                {&l->running_var, sloth_ones(SLOTH_F32, 1, &channels)},
                {&l->weight, affine ? sloth_ones(SLOTH_F32, 1, &channels) : NULL},
                {&l->bias, affine ? sloth_zeros(SLOTH_F32, 1, &channels) : NULL}};
  int rc = store_params("batch_norm_layer_init", p, affine ? 4 : 2);
  sloth_scope_end();
  if (rc != SLOTH_OK) return rc;
  l->momentum = 0.1;
  l->eps = 1e-5;
  return SLOTH_OK;
}

/* Training normalizes with the batch statistics and writes the updated
 * running statistics into the layer's tensors in place (sloth_assign), so a
 * training step's plan stays the same from step to step; evaluation uses the
 * running statistics unchanged. */
sloth_tensor *sloth_batch_norm_layer_forward(sloth_batch_norm_layer *l, sloth_tensor *x, int training) {
  if (!layer_ready("batch_norm_layer_forward", l, l && l->running_mean)) return NULL;
  sloth_tensor *rm = NULL, *rv = NULL;
  sloth_tensor *y = sloth_batch_norm(x, l->running_mean, l->running_var, l->weight, l->bias, training, l->momentum, l->eps,
                                     training ? &rm : NULL, training ? &rv : NULL);
  if (y && training && (sloth_assign(l->running_mean, rm) != SLOTH_OK || sloth_assign(l->running_var, rv) != SLOTH_OK)) {
    sloth_release(y);
    y = NULL;
  }
  sloth_release(rm);
  sloth_release(rv);
  return y;
}

void sloth_batch_norm_layer_free(sloth_batch_norm_layer *l) {
  if (!l) return;
  drop(&l->weight);
  drop(&l->bias);
  drop(&l->running_mean);
  drop(&l->running_var);
}

/* ------------------------------------------------------------------ layer norm */

int sloth_layer_norm_layer_init(sloth_layer_norm_layer *l, int normalized_ndim, const int64_t *normalized_shape, int affine) {
  if (!l) return null_layer("layer_norm_layer_init");
  memset(l, 0, sizeof *l);
  if (normalized_ndim < 1 || normalized_ndim > SLOTH_MAX_RANK || !normalized_shape)
    return sloth__fail(SLOTH_E_INVALID, "layer_norm_layer_init: needs a normalized shape of 1..%d dimensions (got %d%s)",
                       SLOTH_MAX_RANK, normalized_ndim, normalized_shape ? "" : " and a NULL shape");
  for (int d = 0; d < normalized_ndim; d++)
    if (normalized_shape[d] < 1)
      return sloth__fail(SLOTH_E_INVALID, "layer_norm_layer_init: dimension %d has size %lld (sizes must be >= 1)", d,
                         (long long)normalized_shape[d]);
  int rc = SLOTH_OK;
  if (affine) {
    sloth_scope_begin();
    param p[2] = {{&l->weight, sloth_ones(SLOTH_F32, normalized_ndim, normalized_shape)},
                  {&l->bias, sloth_zeros(SLOTH_F32, normalized_ndim, normalized_shape)}};
    rc = store_params("layer_norm_layer_init", p, 2);
    sloth_scope_end();
  }
  if (rc != SLOTH_OK) return rc;
  l->normalized_ndim = normalized_ndim;
  l->eps = 1e-5;
  return SLOTH_OK;
}

sloth_tensor *sloth_layer_norm_layer_forward(const sloth_layer_norm_layer *l, sloth_tensor *x) {
  /* normalized_ndim is 0 until init succeeds and after free */
  if (!layer_ready("layer_norm_layer_forward", l, l && l->normalized_ndim > 0)) return NULL;
  return sloth_layer_norm(x, l->normalized_ndim, l->weight, l->bias, l->eps);
}

void sloth_layer_norm_layer_free(sloth_layer_norm_layer *l) {
  if (!l) return;
  drop(&l->weight);
  drop(&l->bias);
  l->normalized_ndim = 0;
}

/* ------------------------------------------------------------------ embedding */

int sloth_embedding_layer_init(sloth_embedding_layer *l, int64_t num_embeddings, int64_t dim) {
  if (!l) return null_layer("embedding_layer_init");
  memset(l, 0, sizeof *l);
  if (num_embeddings < 1 || dim < 1)
    return sloth__fail(SLOTH_E_INVALID, "embedding_layer_init: num_embeddings (%lld) and dim (%lld) must be >= 1",
                       (long long)num_embeddings, (long long)dim);
  sloth_scope_begin();
  param p = {&l->weight, sloth_randn(2, (int64_t[]){num_embeddings, dim})};
  int rc = store_params("embedding_layer_init", &p, 1);
  sloth_scope_end();
  return rc;
}

sloth_tensor *sloth_embedding_layer_forward(const sloth_embedding_layer *l, sloth_tensor *ids) {
  if (!layer_ready("embedding_layer_forward", l, l && l->weight)) return NULL;
  return sloth_embedding(l->weight, ids);
}

void sloth_embedding_layer_free(sloth_embedding_layer *l) {
  if (!l) return;
  drop(&l->weight);
}
