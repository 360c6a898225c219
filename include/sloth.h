/*
 * sloth.h - the public API of Sloth, a lazy tensor runtime.
 *
 * Quick tour
 * ----------
 *   sloth_tensor *a = sloth_from_host(data, SLOTH_F32, 2, (int64_t[]){4, 5});
 *   sloth_tensor *b = sloth_exp(sloth_mul_scalar(a, 0.5));   // recorded, not run
 *   float out[20];
 *   sloth_to_host(b, out, sizeof out);                       // sync point: runs
 *
 * Ops only record IR nodes. Work runs at a sync point: sloth_mark_step(),
 * sloth_sync(), or reading a tensor back (sloth_to_host). At a sync point the
 * pending graph is hashed and looked up in a cache of compiled plans; a hit
 * launches the cached kernels and compiles nothing.
 *
 * Errors: a function returning a tensor returns NULL and records a message
 * (sloth_last_error()). Every op given a NULL operand returns NULL, so a chain
 * of calls can be checked once at the end. Functions returning int return
 * SLOTH_OK (0) or a negative sloth_status.
 *
 * Ownership: every returned tensor holds one reference owned by the caller.
 * Release it with sloth_release(), or open a scope with sloth_scope_begin():
 * tensors created inside are released by sloth_scope_end() unless passed to
 * sloth_keep(). Ops never take ownership of their operands.
 *
 * Threads: every entry point takes one library-wide lock, so calls from
 * several threads never corrupt state; they are serialized. Scopes are per
 * thread. sloth_last_error() is per thread. A tensor may be used from any
 * thread, but releasing it while another thread still uses it is a bug in
 * the caller, as with free().
 */
#ifndef SLOTH_H
#define SLOTH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLOTH_MAX_RANK 8

/* ------------------------------------------------------------------ tensors */

typedef struct sloth_tensor sloth_tensor;

typedef enum sloth_dtype {
  SLOTH_F32 = 0,
  SLOTH_I32 = 1,
  SLOTH_U8 = 2,
  SLOTH_BOOL = 3,
  SLOTH_F16 = 4, /* IEEE binary16, host data as uint16_t bit patterns; every device
                    stores it, and computes in f32 (see below) */
  SLOTH_I64 = 5,
  SLOTH_F64 = 6, /* devices with fp64 only (sloth_device_info.fp64): elsewhere
                    creating an f64 tensor fails with SLOTH_E_UNSUPPORTED */
  SLOTH_DTYPE_COUNT = 7
} sloth_dtype;
/* Promotion order: bool < u8 < i32 < i64 < f16 < f32 < f64 (an integer with an
 * f16 gives f16, as in PyTorch). f16 is computed in f32 inside a kernel and
 * rounded to f16 where it is stored and at casts (as torch.compile's kernels
 * do), so a fused chain of f16 ops can be more accurate than op-by-op f16;
 * every f16 scalar is rounded to f16; reductions, cumsum and matmul accumulate
 * f16 in f32. Math ops (exp, div, ...) on integers compute in f32; f16 and
 * f64 keep their dtype. */

typedef enum sloth_status {
  SLOTH_OK = 0,
  SLOTH_E_INVALID = -1,    /* bad argument: NULL, bad axis, bad size */
  SLOTH_E_SHAPE = -2,      /* shapes do not match or broadcast */
  SLOTH_E_DTYPE = -3,      /* dtype not allowed for this op */
  SLOTH_E_DEVICE = -4,     /* no device, or the device failed */
  SLOTH_E_NOMEM = -5,      /* host or device memory exhausted */
  SLOTH_E_COMPILE = -6,    /* a generated kernel failed to build */
  SLOTH_E_UNSUPPORTED = -7 /* valid request the device cannot do */
} sloth_status;

const char *sloth_last_error(void);           /* message of the last failure on this thread */
void sloth_clear_error(void);                 /* forget it (an op given NULL keeps an earlier message) */
sloth_status sloth_last_status(void);         /* its code */
const char *sloth_status_string(sloth_status s);
size_t sloth_dtype_size(sloth_dtype dt);
const char *sloth_dtype_name(sloth_dtype dt);

/* Creation. Shapes are int64_t[rank], rank 0..SLOTH_MAX_RANK; sizes may be 0. */
sloth_tensor *sloth_from_host(const void *data, sloth_dtype dt, int rank, const int64_t *shape);
sloth_tensor *sloth_full(double value, sloth_dtype dt, int rank, const int64_t *shape);
sloth_tensor *sloth_zeros(sloth_dtype dt, int rank, const int64_t *shape);
sloth_tensor *sloth_ones(sloth_dtype dt, int rank, const int64_t *shape);
/* [start, stop) by step, like numpy.arange. */
sloth_tensor *sloth_arange(double start, double stop, double step, sloth_dtype dt);
/* A rank-0 tensor whose value is a kernel argument: changing it compiles nothing. */
sloth_tensor *sloth_scalar(double value, sloth_dtype dt);

/* Copies the tensor's elements (row-major) into dst; bytes must equal
 * numel * dtype size. A sync point for the tensor. */
int sloth_to_host(sloth_tensor *t, void *dst, size_t bytes);

/* Introspection */
int sloth_rank(const sloth_tensor *t);
int64_t sloth_dim(const sloth_tensor *t, int axis); /* negative axis counts from the end */
const int64_t *sloth_shape(const sloth_tensor *t);
int64_t sloth_numel(const sloth_tensor *t);
sloth_dtype sloth_dtype_of(const sloth_tensor *t);
uint64_t sloth_tensor_id(const sloth_tensor *t); /* unique, never reused */
int sloth_is_pending(const sloth_tensor *t);      /* 1 if it has IR not yet run */

/* References and scopes */
sloth_tensor *sloth_retain(sloth_tensor *t);
void sloth_release(sloth_tensor *t);
void sloth_scope_begin(void);
void sloth_scope_end(void);
sloth_tensor *sloth_keep(sloth_tensor *t); /* move t out of the innermost scope */

/* ----------------------------------------------------------------- ops */

/* Elementwise unary. Math ops on integer tensors compute in f32. */
sloth_tensor *sloth_neg(sloth_tensor *x);
sloth_tensor *sloth_abs(sloth_tensor *x);
sloth_tensor *sloth_exp(sloth_tensor *x);
sloth_tensor *sloth_log(sloth_tensor *x);
sloth_tensor *sloth_sqrt(sloth_tensor *x);
sloth_tensor *sloth_rsqrt(sloth_tensor *x);
sloth_tensor *sloth_sin(sloth_tensor *x);
sloth_tensor *sloth_cos(sloth_tensor *x);
sloth_tensor *sloth_tanh(sloth_tensor *x);
sloth_tensor *sloth_erf(sloth_tensor *x);
sloth_tensor *sloth_sigmoid(sloth_tensor *x);
sloth_tensor *sloth_relu(sloth_tensor *x);
sloth_tensor *sloth_floor(sloth_tensor *x);
sloth_tensor *sloth_ceil(sloth_tensor *x);
sloth_tensor *sloth_round(sloth_tensor *x);
sloth_tensor *sloth_square(sloth_tensor *x);
sloth_tensor *sloth_reciprocal(sloth_tensor *x);
sloth_tensor *sloth_sign(sloth_tensor *x);
sloth_tensor *sloth_logical_not(sloth_tensor *x);

/* Elementwise binary with NumPy broadcasting and type promotion
 * (bool < u8 < i32 < i64 < f16 < f32 < f64). Comparisons give SLOTH_BOOL. */
sloth_tensor *sloth_add(sloth_tensor *a, sloth_tensor *b);
sloth_tensor *sloth_sub(sloth_tensor *a, sloth_tensor *b);
sloth_tensor *sloth_mul(sloth_tensor *a, sloth_tensor *b);
sloth_tensor *sloth_div(sloth_tensor *a, sloth_tensor *b); /* true division: ints give f32 */
sloth_tensor *sloth_pow(sloth_tensor *a, sloth_tensor *b);
sloth_tensor *sloth_maximum(sloth_tensor *a, sloth_tensor *b);
sloth_tensor *sloth_minimum(sloth_tensor *a, sloth_tensor *b);
sloth_tensor *sloth_eq(sloth_tensor *a, sloth_tensor *b);
sloth_tensor *sloth_ne(sloth_tensor *a, sloth_tensor *b);
sloth_tensor *sloth_lt(sloth_tensor *a, sloth_tensor *b);
sloth_tensor *sloth_le(sloth_tensor *a, sloth_tensor *b);
sloth_tensor *sloth_gt(sloth_tensor *a, sloth_tensor *b);
sloth_tensor *sloth_ge(sloth_tensor *a, sloth_tensor *b);
sloth_tensor *sloth_logical_and(sloth_tensor *a, sloth_tensor *b);
sloth_tensor *sloth_logical_or(sloth_tensor *a, sloth_tensor *b);

/* Scalar operands: the value is a kernel argument (never hashed), typed
 * like the tensor operand. */
sloth_tensor *sloth_add_scalar(sloth_tensor *a, double s);
sloth_tensor *sloth_sub_scalar(sloth_tensor *a, double s);
sloth_tensor *sloth_mul_scalar(sloth_tensor *a, double s);
sloth_tensor *sloth_div_scalar(sloth_tensor *a, double s);
sloth_tensor *sloth_pow_scalar(sloth_tensor *a, double s);

/* where(cond, a, b): cond is cast to bool; a and b promote; all broadcast. */
sloth_tensor *sloth_where(sloth_tensor *cond, sloth_tensor *a, sloth_tensor *b);
sloth_tensor *sloth_cast(sloth_tensor *x, sloth_dtype dt);

/* Views (no copy when run: they become index arithmetic in the consumer). */
sloth_tensor *sloth_reshape(sloth_tensor *x, int rank, const int64_t *shape); /* one -1 allowed */
sloth_tensor *sloth_permute(sloth_tensor *x, const int *perm);
sloth_tensor *sloth_transpose(sloth_tensor *x, int axis0, int axis1);
sloth_tensor *sloth_expand(sloth_tensor *x, int rank, const int64_t *shape);
/* Python-like x[start:stop:step] along axis; negative start/stop count from the
 * end and are clamped; step may be negative but not 0. */
sloth_tensor *sloth_slice(sloth_tensor *x, int axis, int64_t start, int64_t stop, int64_t step);
sloth_tensor *sloth_squeeze(sloth_tensor *x, int axis); /* axis must have size 1 */
sloth_tensor *sloth_unsqueeze(sloth_tensor *x, int axis);
sloth_tensor *sloth_flatten(sloth_tensor *x, int start_axis, int end_axis);

/* Constant padding: pads[2*d] elements before and pads[2*d+1] after
 * dimension d (>= 0), filled with value (a kernel argument). */
sloth_tensor *sloth_pad(sloth_tensor *x, const int64_t *pads, double value);
/* A view of x's elements in row-major order: element (i0, i1, ...) is element
 * offset + sum(i_d * strides[d]) of x. Strides are >= 0 and the view must stay
 * inside x. */
sloth_tensor *sloth_as_strided(sloth_tensor *x, int rank, const int64_t *shape, const int64_t *strides, int64_t offset);

/* Indexing. Indices are i32, i64 or u8. An index out of range never reads out
 * of bounds: the element reads the nearest valid index and the next blocking
 * read (sloth_to_host, sloth_wait) fails with SLOTH_E_INVALID.
 * gather: out[c] = x[c with c[axis] = index[c]], out shaped like index
 * (torch.gather). index_select: the slices of x at 1-D indices along axis.
 * embedding: rows of weight [num, dim] for ids of any shape -> [..., dim]. */
sloth_tensor *sloth_gather(sloth_tensor *x, int axis, sloth_tensor *index);
sloth_tensor *sloth_index_select(sloth_tensor *x, int axis, sloth_tensor *index);
sloth_tensor *sloth_embedding(sloth_tensor *weight, sloth_tensor *ids);
/* scatter_add: x plus, for each position c of index, src[c] added at x's
 * position c with c[axis] = index[c] (torch.Tensor.scatter_add; src
 * broadcasts to index's shape). Atomic adds; i64 accumulates in i64, other
 * integers in i32, f16 in f32 (the result is f16 again). */
sloth_tensor *sloth_scatter_add(sloth_tensor *x, int axis, sloth_tensor *index, sloth_tensor *src);
/* Cumulative sum along an axis (i64 sums in i64, other integers in i32, f16
 * in f32). */
sloth_tensor *sloth_cumsum(sloth_tensor *x, int axis);
/* Joins tensors along an existing axis (concat) or a new one (stack);
 * dtypes promote. */
sloth_tensor *sloth_concat(sloth_tensor *const *xs, int n, int axis);
sloth_tensor *sloth_stack(sloth_tensor *const *xs, int n, int axis);

/* Reductions over a set of axes (naxes == 0 means all axes). sum and prod
 * of integers give i32 (i64 for i64), mean of integers f32; f16 accumulates
 * in f32 and gives f16. */
sloth_tensor *sloth_sum(sloth_tensor *x, const int *axes, int naxes, int keepdim);
sloth_tensor *sloth_mean(sloth_tensor *x, const int *axes, int naxes, int keepdim);
sloth_tensor *sloth_max(sloth_tensor *x, const int *axes, int naxes, int keepdim);
sloth_tensor *sloth_min(sloth_tensor *x, const int *axes, int naxes, int keepdim);
sloth_tensor *sloth_prod(sloth_tensor *x, const int *axes, int naxes, int keepdim);
/* Index of the first max/min along one axis, as SLOTH_I32. */
sloth_tensor *sloth_argmax(sloth_tensor *x, int axis, int keepdim);
sloth_tensor *sloth_argmin(sloth_tensor *x, int axis, int keepdim);

/* Sorting along one axis. argsort gives the SLOTH_I32 positions that sort
 * each line: ascending (descending != 0: descending) by value, NaN after
 * every number (before, descending), equal values in position order, so the
 * result is the same on every backend. sort gives the sorted values and,
 * where indices is not NULL, the positions (a new reference). topk gives the
 * k largest (largest != 0) or smallest along the axis, sorted that way, and
 * their positions; 0 <= k <= the axis length. Gradients flow to x through
 * the values (they are a gather of x at the positions). One work-item sorts
 * a line in place (heap sort): fine on CPUs and for many short lines on
 * GPUs, slow for a few very long lines on a GPU. */
sloth_tensor *sloth_argsort(sloth_tensor *x, int axis, int descending);
sloth_tensor *sloth_sort(sloth_tensor *x, int axis, int descending, sloth_tensor **indices);
sloth_tensor *sloth_topk(sloth_tensor *x, int64_t k, int axis, int largest, sloth_tensor **indices);

/* Matrix product with NumPy semantics: 1-D operands are promoted to a row
 * (left) or a column (right) and the added dimension removed; leading batch
 * dimensions broadcast. Integer operands compute in f32; f64 runs as DGEMM;
 * f16 runs as HGEMM where the device has fp16 arithmetic (CLBlast, cuBLAS
 * with f32 accumulation), elsewhere as an f32 GEMM between casts that fuse
 * into the neighbouring kernels, and gives f16. Runs as one GEMM library call
 * (CLBlast on OpenCL); transposed and sliced operands are read in place. */
sloth_tensor *sloth_matmul(sloth_tensor *a, sloth_tensor *b);

/* ------------------------------------------------------------- random */

/* Counter-based Philox4x32-10 draws: the seed and a per-draw stream offset
 * are kernel arguments, so drawing again compiles nothing, and the same seed
 * gives the same numbers on every backend. The generator starts at seed 0;
 * sloth_manual_seed resets it (seed and stream). All results are f32 except
 * bernoulli (bool). */
void sloth_manual_seed(uint64_t seed);
sloth_tensor *sloth_rand(int rank, const int64_t *shape);  /* uniform on [0, 1) */
sloth_tensor *sloth_randn(int rank, const int64_t *shape); /* standard normal */
sloth_tensor *sloth_uniform(double lo, double hi, int rank, const int64_t *shape);
sloth_tensor *sloth_normal(double mean, double std, int rank, const int64_t *shape);
sloth_tensor *sloth_bernoulli(double p, int rank, const int64_t *shape);
/* Zeroes each element with probability p and scales the rest by 1/(1-p) when
 * training; returns x itself (a new reference) when not. */
sloth_tensor *sloth_dropout(sloth_tensor *x, double p, int training);

/* ------------------------------------------------------------- nn */

/* 2-D convolution, NCHW: x [N, C, H, W], w [O, C/groups, kh, kw], bias [O] or
 * NULL. Runs as im2col (a padded strided view, copied once) and one batched
 * GEMM; the bias add fuses into the kernel after it. */
sloth_tensor *sloth_conv2d(sloth_tensor *x, sloth_tensor *w, sloth_tensor *bias, int stride_h, int stride_w, int pad_h,
                           int pad_w, int dilation_h, int dilation_w, int groups);
/* Pooling over NCHW windows; padding is -inf for max, 0 for avg (counted in
 * the average, like PyTorch's default count_include_pad). max_pool2d's
 * gradient is split evenly among tied maxima of a window (sloth_max's rule;
 * PyTorch gives it all to the first). */
sloth_tensor *sloth_max_pool2d(sloth_tensor *x, int kh, int kw, int stride_h, int stride_w, int pad_h, int pad_w);
sloth_tensor *sloth_avg_pool2d(sloth_tensor *x, int kh, int kw, int stride_h, int stride_w, int pad_h, int pad_w);
/* Output [N, C, oh, ow], any sizes: output row i averages input rows
 * floor(i H / oh) .. ceil((i + 1) H / oh) - 1, as in PyTorch (likewise for
 * columns). Equal windows run as avg_pool2d, unequal ones as two small GEMMs. */
sloth_tensor *sloth_adaptive_avg_pool2d(sloth_tensor *x, int oh, int ow);

/* Activations: elementwise, fuse like any other op; integer inputs compute in
 * f32 (leaky_relu and clamp keep an integer dtype when their scalars are
 * integral). Scalars are kernel arguments: changing them compiles nothing. */
sloth_tensor *sloth_gelu(sloth_tensor *x);      /* exact: 0.5 x (1 + erf(x / sqrt 2)) */
sloth_tensor *sloth_gelu_tanh(sloth_tensor *x); /* 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3) */
sloth_tensor *sloth_silu(sloth_tensor *x);      /* x * sigmoid(x) */
sloth_tensor *sloth_leaky_relu(sloth_tensor *x, double slope); /* x > 0 ? x : slope * x */
/* min(max(x, lo), hi) (hi wins when lo > hi); bounds may be infinite, not
 * NaN; a NaN element gives lo, not NaN as in PyTorch. */
sloth_tensor *sloth_clamp(sloth_tensor *x, double lo, double hi);

/* Softmax along one axis (negative counts from the end), stable: the max
 * along the axis is subtracted first. Integers give f32; f16 computes in f32
 * and gives f16 (so do layer_norm and batch_norm). Three kernels: max, sum of exp, output. */
sloth_tensor *sloth_softmax(sloth_tensor *x, int axis);
sloth_tensor *sloth_log_softmax(sloth_tensor *x, int axis);
/* Normalizes over the last normalized_ndim dimensions (biased variance, like
 * PyTorch); weight and bias (each NULL or shaped like those dimensions)
 * scale and shift the result. */
sloth_tensor *sloth_layer_norm(sloth_tensor *x, int normalized_ndim, sloth_tensor *weight, sloth_tensor *bias, double eps);
/* Batch normalization of x [N, C, ...] per channel C; running_mean,
 * running_var, weight and bias are [C] or NULL. Training: normalizes with the
 * batch statistics over every axis but 1 (biased variance); if running stats
 * are given, *new_running_mean = (1 - momentum) running_mean + momentum mean
 * and *new_running_var likewise with the unbiased variance (tensors are
 * immutable, so the updated statistics are new tensors). Evaluation
 * (training == 0): normalizes with the running stats, which are required;
 * the out-pointers then get new handles of the same values. Either
 * out-pointer may be NULL; each is set to NULL on failure or when there are
 * no running stats. Training needs more than one value per channel. */
sloth_tensor *sloth_batch_norm(sloth_tensor *x, sloth_tensor *running_mean, sloth_tensor *running_var, sloth_tensor *weight,
                               sloth_tensor *bias, int training, double momentum, double eps,
                               sloth_tensor **new_running_mean, sloth_tensor **new_running_var);

/* one_hot(labels, C)[..., c] = (labels[...] == c), as dtype dt; labels are
 * integer (i32, i64 or u8); labels outside [0, C) give a row of zeros. */
sloth_tensor *sloth_one_hot(sloth_tensor *labels, int64_t num_classes, sloth_dtype dt);
/* Losses, all mean-reduced to a rank-0 f32 tensor (f64 when an input is f64). Class scores are [N, C]
 * or [N, C, d1, ...] (class axis 1; [C] with rank-0 labels also works) and
 * labels integer [N] or [N, d1, ...]. A label outside [0, C) is found on the
 * device: the next blocking read (sloth_to_host, sloth_wait) fails with
 * SLOTH_E_INVALID "index out of range", like a gather's. */
sloth_tensor *sloth_nll_loss(sloth_tensor *log_probs, sloth_tensor *labels);
sloth_tensor *sloth_cross_entropy(sloth_tensor *logits, sloth_tensor *labels); /* nll_loss(log_softmax(logits, 1)) */
sloth_tensor *sloth_mse_loss(sloth_tensor *a, sloth_tensor *b);              /* mean((a - b)^2); same shapes */
/* mean(max(x, 0) - x t + log(1 + exp(-|x|))), stable for any x; same shapes. */
sloth_tensor *sloth_binary_cross_entropy_with_logits(sloth_tensor *logits, sloth_tensor *targets);

/* ------------------------------------------------------------- autograd */

/* Reverse-mode gradients over the lazy graph. The gradients are lazy tensors
 * (recorded, not run), so forward, backward and the optimizer update of a
 * training step are one graph, compiled once and replayed every step.
 * grads_out[i] gets d loss / d wrt[i] (a new reference, shaped and typed like
 * wrt[i]; zeros when loss does not depend on it). loss must have one element.
 * Take gradients before the step's sync point: a sync computes tensors and
 * forgets how. The loss itself computed already is SLOTH_E_INVALID; any other
 * tensor computed by an earlier sync is a constant here (like sloth_detach),
 * so nothing flows through it to the tensors it was computed from.
 * Integer and bool tensors carry no gradient. */
int sloth_grad(sloth_tensor *loss, sloth_tensor *const *wrt, int n, sloth_tensor **grads_out);
/* The same from several outputs, each with a seed gradient shaped like it
 * (vector-Jacobian product: grads_out[i] = sum_j seeds[j] . d outputs[j] / d wrt[i]). */
int sloth_vjp(sloth_tensor *const *outputs, sloth_tensor *const *seeds, int noutputs, sloth_tensor *const *wrt, int n,
              sloth_tensor **grads_out);
/* x itself as a value, but gradients do not flow through it. */
sloth_tensor *sloth_detach(sloth_tensor *x);

/* In-place update: dst takes value's elements (same shape; value is cast to
 * dst's dtype). Lazy like any op: at the next sync point the result is
 * written into dst's existing device buffer when nothing else still needs
 * the old elements, so a training step allocates nothing for parameters and
 * optimizer state. Tensors that read dst before the call keep seeing the old
 * elements. */
int sloth_assign(sloth_tensor *dst, sloth_tensor *value);

/* ------------------------------------------------------------- layers */

/* Initializers draw from the Philox generator (sloth_manual_seed makes a run
 * reproducible) and return computed (materialized) f32 tensors.
 * fan_in/fan_out as PyTorch computes them: for a weight [out, in, k...],
 * fan_in = in * prod(k), fan_out = out * prod(k). gain: sqrt(2) for ReLU. */
sloth_tensor *sloth_init_kaiming_uniform(int rank, const int64_t *shape, double gain);
sloth_tensor *sloth_init_kaiming_normal(int rank, const int64_t *shape, double gain);
sloth_tensor *sloth_init_xavier_uniform(int rank, const int64_t *shape, double gain);
sloth_tensor *sloth_init_xavier_normal(int rank, const int64_t *shape, double gain);

/* Layers: plain structs holding their parameters (owned references, or NULL
 * when absent). *_init returns SLOTH_OK or a negative status; *_free
 * releases the parameters. Weights start like PyTorch's defaults (kaiming
 * uniform with a = sqrt(5) for linear and conv, bias uniform in
 * +-1/sqrt(fan_in); ones/zeros for norms; N(0, 1) for embeddings). */
typedef struct sloth_linear {
  sloth_tensor *weight; /* [out, in] */
  sloth_tensor *bias;   /* [out] or NULL */
} sloth_linear;
int sloth_linear_init(sloth_linear *l, int64_t in_features, int64_t out_features, int bias);
sloth_tensor *sloth_linear_forward(const sloth_linear *l, sloth_tensor *x); /* x [..., in] -> [..., out] */
void sloth_linear_free(sloth_linear *l);

typedef struct sloth_conv2d_layer {
  sloth_tensor *weight; /* [out, in/groups, kh, kw] */
  sloth_tensor *bias;   /* [out] or NULL */
  int stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups;
} sloth_conv2d_layer;
int sloth_conv2d_layer_init(sloth_conv2d_layer *l, int64_t in_channels, int64_t out_channels, int kh, int kw, int stride,
                            int padding, int dilation, int groups, int bias);
sloth_tensor *sloth_conv2d_layer_forward(const sloth_conv2d_layer *l, sloth_tensor *x);
void sloth_conv2d_layer_free(sloth_conv2d_layer *l);

/* Training updates running_mean/running_var in place (sloth_assign). */
typedef struct sloth_batch_norm_layer {
  sloth_tensor *weight, *bias;              /* [C] or NULL (affine = 0) */
  sloth_tensor *running_mean, *running_var; /* [C] */
  double momentum, eps;
} sloth_batch_norm_layer;
int sloth_batch_norm_layer_init(sloth_batch_norm_layer *l, int64_t channels, int affine);
sloth_tensor *sloth_batch_norm_layer_forward(sloth_batch_norm_layer *l, sloth_tensor *x, int training);
void sloth_batch_norm_layer_free(sloth_batch_norm_layer *l);

typedef struct sloth_layer_norm_layer {
  sloth_tensor *weight, *bias; /* shaped like the normalized dims, or NULL */
  int normalized_ndim;
  double eps;
} sloth_layer_norm_layer;
int sloth_layer_norm_layer_init(sloth_layer_norm_layer *l, int normalized_ndim, const int64_t *normalized_shape,
                                int affine);
sloth_tensor *sloth_layer_norm_layer_forward(const sloth_layer_norm_layer *l, sloth_tensor *x);
void sloth_layer_norm_layer_free(sloth_layer_norm_layer *l);

typedef struct sloth_embedding_layer {
  sloth_tensor *weight; /* [num, dim] */
} sloth_embedding_layer;
int sloth_embedding_layer_init(sloth_embedding_layer *l, int64_t num_embeddings, int64_t dim);
sloth_tensor *sloth_embedding_layer_forward(const sloth_embedding_layer *l, sloth_tensor *ids);
void sloth_embedding_layer_free(sloth_embedding_layer *l);
/* Dropout has no parameters: sloth_dropout(x, p, training). */

/* ------------------------------------------------------------- optimizers */

/* An optimizer updates its parameters in place (sloth_assign) from their
 * gradients: sloth_optimizer_step records the update lazily, and the next
 * sync point (sloth_mark_step) runs forward, backward and update as one
 * graph. The state updates of one parameter run in one fused kernel. The
 * learning rate is a kernel argument: changing it (schedules) compiles
 * nothing. The optimizer holds references to the parameters. */
typedef struct sloth_optimizer sloth_optimizer;
/* SGD: v = momentum v + (g + wd p); p -= lr (nesterov ? g + wd p + momentum v : v).
 * momentum 0 keeps no state. */
sloth_optimizer *sloth_sgd_new(sloth_tensor *const *params, int n, double lr, double momentum, double weight_decay,
                               int nesterov);
/* Adam (weight_decay adds wd p to the gradient) and AdamW (decoupled: p -= lr wd p). */
sloth_optimizer *sloth_adam_new(sloth_tensor *const *params, int n, double lr, double beta1, double beta2, double eps,
                                double weight_decay);
sloth_optimizer *sloth_adamw_new(sloth_tensor *const *params, int n, double lr, double beta1, double beta2, double eps,
                                 double weight_decay);
/* Records one update; grads[i] is the gradient of params[i] (sloth_grad). */
int sloth_optimizer_step(sloth_optimizer *opt, sloth_tensor *const *grads);
/* Convenience: grads of loss w.r.t. the optimizer's parameters, then a step. */
int sloth_optimizer_minimize(sloth_optimizer *opt, sloth_tensor *loss);
int sloth_optimizer_set_lr(sloth_optimizer *opt, double lr);
double sloth_optimizer_lr(const sloth_optimizer *opt); /* negative for a bad handle */
void sloth_optimizer_free(sloth_optimizer *opt);

/* Learning-rate schedules (pure functions of the epoch or step): StepLR,
 * base gamma^floor(epoch / step_size); cosine annealing from base to
 * min_lr over t_max steps (PyTorch's CosineAnnealingLR closed form). */
double sloth_lr_step(double base_lr, int epoch, int step_size, double gamma);
double sloth_lr_cosine(double base_lr, double min_lr, int t, int t_max);

/* ------------------------------------------------------------- saving */

/* safetensors files (the format of PyTorch's and Hugging Face's safetensors):
 * an 8-byte little-endian header length, a JSON header naming each tensor's
 * dtype, shape and byte range, then the data. Saving syncs the tensors and
 * writes to a temporary file renamed over path, so a crash never leaves a
 * half-written file. Loading checks every offset and length against the file
 * size: a truncated or hostile file gives SLOTH_E_INVALID, never a crash. */
typedef struct sloth_named_tensor {
  char *name;
  sloth_tensor *tensor;
} sloth_named_tensor;
int sloth_save_safetensors(const char *path, const char *const *names, sloth_tensor *const *tensors, int n);
/* Loads every tensor of the file; *out is an array of *n entries (free it with
 * sloth_named_tensors_free, which also releases the tensors). */
int sloth_load_safetensors(const char *path, sloth_named_tensor **out, int *n);
void sloth_named_tensors_free(sloth_named_tensor *list, int n);
/* Loads the named tensors into existing ones (in place, sloth_assign);
 * every name must be in the file with the same shape; dtypes convert. */
int sloth_load_safetensors_into(const char *path, const char *const *names, sloth_tensor *const *tensors, int n);

/* ------------------------------------------------------------- runtime */

/* Selects the device ("opencl", "opencl:N"; NULL reads SLOTH_DEVICE, else the
 * default: the first GPU, else a CPU device). Called implicitly by the first
 * op; calling it later with another device fails while tensors live. */
int sloth_init(const char *device);
/* Releases caches and the device. Does nothing (and records an error) while
 * tensors are alive. */
void sloth_shutdown(void);

int sloth_mark_step(void);                         /* sync every live tensor with pending IR */
int sloth_sync(sloth_tensor *const *tensors, int n); /* sync a chosen set, as one graph */
int sloth_wait(void);                              /* wait for enqueued device work */

typedef struct sloth_device_info {
  char backend[16];      /* "opencl" or "cuda" */
  int index;             /* N in "backend:N" */
  char name[128];
  char vendor[128];
  char version[128];     /* driver / platform version */
  int is_gpu;
  int compute_units;
  int fp16;              /* 1 if half arithmetic is supported */
  int fp64;
  uint64_t global_mem_bytes;
  uint64_t max_alloc_bytes;
} sloth_device_info;

/* Devices of every compiled-in backend, in SLOTH_DEVICE order. */
int sloth_device_count(void);
int sloth_device_get(int i, sloth_device_info *out);
int sloth_device_default(void);          /* index into the list, or negative */
int sloth_device_current(sloth_device_info *out); /* the device in use */
/* Why a backend has no devices (empty string if it has some). */
const char *sloth_backend_status(const char *backend);

/* ------------------------------------------------------------- metrics */

/* Counters: plan_cache_hit, plan_cache_miss, kernel_compile, kernel_cache_hit,
 * kernel_launch, gemm_call, bytes_to_device, bytes_from_device, graph_trim, sync,
 * nodes_created, buffer_alloc, buffer_reuse, buffer_share (a step's slot
 * that took the buffer of an earlier slot of the same step whose value ended
 * within the step). Timers (nanoseconds):
 * trace_ns, lower_ns, compile_ns, execute_ns. */
int64_t sloth_counter(const char *name); /* -1 for an unknown name */
void sloth_metrics_reset(void);
void sloth_metrics_report(FILE *out);    /* one "name: value" per line */

/* ------------------------------------------------------------- debugging */

typedef enum sloth_dump_format { SLOTH_DUMP_TEXT = 0, SLOTH_DUMP_DOT = 1 } sloth_dump_format;
int sloth_dump_graph(const sloth_tensor *t, FILE *out, sloth_dump_format fmt);

#ifdef __cplusplus
}
#endif
#endif
