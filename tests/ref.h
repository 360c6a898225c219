/* ref.h - the naive C reference for the op tests (header-only).
 *
 * This is the only CPU implementation of the ops in the project. It is
 * written for obviousness, not speed: every tensor is contiguous, every view
 * is a gather through explicit strides, every op loops over output elements.
 * It follows the documented semantics of sloth.h (NumPy broadcasting, the
 * promotion order bool < u8 < i32 < i64 < f16 < f32 < f64, Python slicing,
 * ...), never Sloth's own code.
 *
 * Values are held as doubles, each already converted to the tensor's dtype:
 * an f32 element holds a float value, an f16 element a value of binary16
 * (held as the double it equals), an i32 element an int32 value, a u8
 * element 0..255 and a bool element 0 or 1 (i64 values stay below 2^53 in
 * the tests). Float math is done in float, like the device does it, so most
 * results agree to a few ulps; f16 math is float math rounded to f16 after
 * every op, as eager PyTorch does it (Sloth keeps the f16 values of a fused
 * kernel in float, so f16 results agree to about an f16 ulp); f64 math is
 * done in double.
 *
 * Every function returning a ref_t * returns a new tensor the caller frees
 * with ref_free(), or NULL when Sloth is documented to refuse the request.
 */
#ifndef SLOTH_TEST_REF_H
#define SLOTH_TEST_REF_H

#include <sloth.h>

#include "tap.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REF_FN static __attribute__((unused))

typedef struct ref_t {
  sloth_dtype dt;
  int rank;
  int64_t shape[SLOTH_MAX_RANK];
  int64_t n; /* number of elements */
  double *v; /* n values, row-major */
} ref_t;

/* ------------------------------------------------------------------ basics */

REF_FN int64_t ref_numel(int rank, const int64_t *shape) {
  int64_t n = 1;
  for (int d = 0; d < rank; d++) n *= shape[d];
  return n;
}

REF_FN ref_t *ref_alloc(sloth_dtype dt, int rank, const int64_t *shape) {
  ref_t *r = calloc(1, sizeof *r);
  if (!r) abort();
  r->dt = dt;
  r->rank = rank;
  for (int d = 0; d < rank; d++) r->shape[d] = shape[d];
  r->n = ref_numel(rank, shape);
  r->v = calloc((size_t)(r->n ? r->n : 1), sizeof *r->v);
  if (!r->v) abort();
  return r;
}

REF_FN void ref_free(ref_t *r) {
  if (!r) return;
  free(r->v);
  free(r);
}

REF_FN ref_t *ref_clone(const ref_t *x) {
  ref_t *r = ref_alloc(x->dt, x->rank, x->shape);
  memcpy(r->v, x->v, (size_t)x->n * sizeof *r->v);
  return r;
}

/* Contiguous row-major strides of a shape. */
REF_FN void ref_strides(int rank, const int64_t *shape, int64_t *strides) {
  int64_t s = 1;
  for (int d = rank - 1; d >= 0; d--) {
    strides[d] = s;
    s *= shape[d];
  }
}

/* Coordinates of row-major position i in a shape. */
REF_FN void ref_unravel(int64_t i, int rank, const int64_t *shape, int64_t *coords) {
  for (int d = rank - 1; d >= 0; d--) {
    coords[d] = shape[d] ? i % shape[d] : 0;
    i = shape[d] ? i / shape[d] : 0;
  }
}

REF_FN int ref_same_shape(int ra, const int64_t *a, int rb, const int64_t *b) {
  if (ra != rb) return 0;
  for (int d = 0; d < ra; d++)
    if (a[d] != b[d]) return 0;
  return 1;
}

REF_FN void ref_shape_str(char *buf, size_t len, int rank, const int64_t *shape) {
  size_t u = (size_t)snprintf(buf, len, "[");
  for (int d = 0; d < rank && u < len; d++) u += (size_t)snprintf(buf + u, len - u, d ? ",%lld" : "%lld", (long long)shape[d]);
  if (u < len) snprintf(buf + u, len - u, "]");
}

/* ------------------------------------------------------------------ dtypes */

REF_FN int ref_is_float(sloth_dtype dt) { return dt == SLOTH_F32 || dt == SLOTH_F16 || dt == SLOTH_F64; }

/* IEEE binary16 bits from a float, rounding to nearest even (written from
 * the format's definition: sign, 5 exponent bits biased by 15, 10 fraction
 * bits; subnormals are multiples of 2^-24). */
REF_FN uint16_t ref_f32_to_f16(float f) {
  uint16_t sign = signbit(f) ? 0x8000 : 0;
  double a = fabs((double)f);
  if (isnan(f)) return (uint16_t)(sign | 0x7e00);
  if (a >= 65520.0) return (uint16_t)(sign | 0x7c00); /* past the largest finite (65504) by half an ulp: infinity */
  if (a < 0x1p-14) return (uint16_t)(sign | (uint16_t)nearbyint(a * 0x1p24)); /* subnormal (1024 = the smallest normal) */
  int e;
  double m = frexp(a, &e);                    /* a = m 2^e, m in [0.5, 1) */
  double q = nearbyint(ldexp(m, 11));         /* 11 significant bits, ties to even: 1024..2048 */
  if (q == 2048) q = 1024, e++;
  return (uint16_t)(sign | (uint16_t)((e + 14) << 10) | ((uint16_t)q - 1024));
}

REF_FN double ref_f16_to_double(uint16_t h) {
  int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
  return (h & 0x8000) ? -v : v;
}

/* A value converted to a dtype as C (and OpenCL C) converts it: floats
 * round to float, float to int truncates toward zero (the tests keep such
 * values in range), int to a narrower unsigned type wraps, anything to
 * bool is "!= 0". */
REF_FN double ref_conv(double x, sloth_dtype dt) {
  switch (dt) {
  case SLOTH_F32: return (double)(float)x;
  case SLOTH_F16: return ref_f16_to_double(ref_f32_to_f16((float)x)); /* through float, as the device converts */
  case SLOTH_F64: return x;
  case SLOTH_I64: return isnan(x) ? 0 : trunc(x);
  case SLOTH_I32: {
    if (isnan(x)) return 0;
    int64_t i = (int64_t)trunc(x);
    return (double)(int32_t)(uint32_t)(uint64_t)i;
  }
  case SLOTH_U8: {
    if (isnan(x)) return 0;
    int64_t i = (int64_t)trunc(x);
    return (double)(uint8_t)(uint64_t)i;
  }
  case SLOTH_BOOL: return x != 0;
  default: return x;
  }
}

/* bool < u8 < i32 < i64 < f16 < f32 < f64 */
REF_FN int ref_dtype_rank(sloth_dtype dt) {
  switch (dt) {
  case SLOTH_BOOL: return 0;
  case SLOTH_U8: return 1;
  case SLOTH_I32: return 2;
  case SLOTH_I64: return 3;
  case SLOTH_F16: return 4;
  case SLOTH_F32: return 5;
  default: return 6;
  }
}

REF_FN sloth_dtype ref_promote(sloth_dtype a, sloth_dtype b) { return ref_dtype_rank(a) >= ref_dtype_rank(b) ? a : b; }

/* ------------------------------------------------------------------ host transfer */

REF_FN ref_t *ref_from_host(const void *data, sloth_dtype dt, int rank, const int64_t *shape) {
  ref_t *r = ref_alloc(dt, rank, shape);
  for (int64_t i = 0; i < r->n; i++) {
    switch (dt) {
    case SLOTH_F32: r->v[i] = ((const float *)data)[i]; break;
    case SLOTH_I32: r->v[i] = ((const int32_t *)data)[i]; break;
    case SLOTH_U8: r->v[i] = ((const uint8_t *)data)[i]; break;
    case SLOTH_F16: r->v[i] = ref_f16_to_double(((const uint16_t *)data)[i]); break;
    case SLOTH_I64: r->v[i] = (double)((const int64_t *)data)[i]; break;
    case SLOTH_F64: r->v[i] = ((const double *)data)[i]; break;
    default: r->v[i] = ((const uint8_t *)data)[i] != 0; break;
    }
  }
  return r;
}

/* Writes r's values in its dtype's host layout (the buffer for sloth_from_host). */
REF_FN void *ref_to_host(const ref_t *r) {
  size_t es = sloth_dtype_size(r->dt);
  void *p = malloc((size_t)(r->n ? r->n : 1) * es);
  if (!p) abort();
  for (int64_t i = 0; i < r->n; i++) {
    switch (r->dt) {
    case SLOTH_F32: ((float *)p)[i] = (float)r->v[i]; break;
    case SLOTH_I32: ((int32_t *)p)[i] = (int32_t)r->v[i]; break;
    case SLOTH_F16: ((uint16_t *)p)[i] = ref_f32_to_f16((float)r->v[i]); break;
    case SLOTH_I64: ((int64_t *)p)[i] = (int64_t)r->v[i]; break;
    case SLOTH_F64: ((double *)p)[i] = r->v[i]; break;
    default: ((uint8_t *)p)[i] = (uint8_t)r->v[i]; break;
    }
  }
  return p;
}

/* A Sloth tensor holding r's values. */
REF_FN sloth_tensor *ref_upload(const ref_t *r) {
  void *p = ref_to_host(r);
  sloth_tensor *t = sloth_from_host(p, r->dt, r->rank, r->shape);
  free(p);
  return t;
}

/* Reads a Sloth tensor back (a sync point) into a reference tensor; NULL
 * when the read fails. */
REF_FN ref_t *ref_download(sloth_tensor *t) {
  if (!t) return NULL;
  sloth_dtype dt = sloth_dtype_of(t);
  int rank = sloth_rank(t);
  int64_t shape[SLOTH_MAX_RANK];
  for (int d = 0; d < rank; d++) shape[d] = sloth_dim(t, d);
  ref_t *r = ref_alloc(dt, rank, shape);
  size_t bytes = (size_t)r->n * sloth_dtype_size(dt);
  void *p = malloc(bytes ? bytes : 1);
  if (!p) abort();
  if (sloth_to_host(t, p, bytes) != SLOTH_OK) {
    free(p);
    ref_free(r);
    return NULL;
  }
  ref_t *out = ref_from_host(p, dt, rank, shape);
  free(p);
  ref_free(r);
  return out;
}

/* ------------------------------------------------------------------ creation */

REF_FN ref_t *ref_full(double value, sloth_dtype dt, int rank, const int64_t *shape) {
  ref_t *r = ref_alloc(dt, rank, shape);
  for (int64_t i = 0; i < r->n; i++) r->v[i] = ref_conv(value, dt);
  return r;
}

/* numpy.arange: ceil((stop - start) / step) elements start + i * step. */
REF_FN ref_t *ref_arange(double start, double stop, double step, sloth_dtype dt) {
  if (step == 0 || dt == SLOTH_BOOL) return NULL;
  double len = ceil((stop - start) / step);
  int64_t n = len > 0 ? (int64_t)len : 0;
  ref_t *r = ref_alloc(dt, 1, &n);
  for (int64_t i = 0; i < n; i++) r->v[i] = ref_conv(start + (double)i * step, dt);
  return r;
}

/* ------------------------------------------------------------------ strided gather */

/* The tensor of the given shape whose element at coordinates c is
 * x->v[offset + sum_d c[d] * strides[d]]. Every view is one of these. */
REF_FN ref_t *ref_gather(const ref_t *x, int rank, const int64_t *shape, const int64_t *strides, int64_t offset) {
  ref_t *r = ref_alloc(x->dt, rank, shape);
  int64_t c[SLOTH_MAX_RANK];
  for (int64_t i = 0; i < r->n; i++) {
    ref_unravel(i, rank, shape, c);
    int64_t at = offset;
    for (int d = 0; d < rank; d++) at += c[d] * strides[d];
    if (at < 0 || at >= x->n) {
      fprintf(stderr, "ref_gather: index %lld out of range %lld\n", (long long)at, (long long)x->n);
      abort();
    }
    r->v[i] = x->v[at];
  }
  return r;
}

/* NumPy broadcasting of n shapes; returns 0 if they do not broadcast. */
REF_FN int ref_broadcast_shape(int n, const ref_t *const *xs, int *rank, int64_t *shape) {
  int r = 0;
  for (int i = 0; i < n; i++)
    if (xs[i]->rank > r) r = xs[i]->rank;
  for (int d = 0; d < r; d++) {
    int64_t size = 1;
    for (int i = 0; i < n; i++) {
      int k = d - (r - xs[i]->rank); /* the operand's axis aligned with d, from the right */
      if (k < 0) continue;
      int64_t s = xs[i]->shape[k];
      if (s == 1 || s == size) continue;
      if (size != 1) return 0;
      size = s;
    }
    shape[d] = size;
  }
  *rank = r;
  return 1;
}

/* x broadcast to (rank, shape): missing leading axes and size-1 axes get stride 0. */
REF_FN ref_t *ref_broadcast_to(const ref_t *x, int rank, const int64_t *shape) {
  if (rank < x->rank) return NULL;
  int64_t xs[SLOTH_MAX_RANK], st[SLOTH_MAX_RANK];
  ref_strides(x->rank, x->shape, xs);
  int lead = rank - x->rank;
  for (int d = 0; d < rank; d++) {
    if (d < lead) {
      st[d] = 0;
      continue;
    }
    int64_t have = x->shape[d - lead];
    if (have == shape[d]) st[d] = xs[d - lead];
    else if (have == 1) st[d] = 0;
    else return NULL;
  }
  return ref_gather(x, rank, shape, st, 0);
}

/* ------------------------------------------------------------------ views */

/* One -1 entry is inferred. */
REF_FN ref_t *ref_reshape(const ref_t *x, int rank, const int64_t *shape) {
  int64_t s[SLOTH_MAX_RANK], known = 1;
  int infer = -1;
  for (int d = 0; d < rank; d++) {
    s[d] = shape[d];
    if (s[d] == -1 && infer < 0) infer = d;
    else if (s[d] < 0) return NULL;
    else known *= s[d];
  }
  if (infer >= 0) {
    if (known == 0 || x->n % known) return NULL;
    s[infer] = x->n / known;
  } else if (known != x->n) return NULL;
  ref_t *r = ref_alloc(x->dt, rank, s);
  memcpy(r->v, x->v, (size_t)x->n * sizeof *r->v);
  return r;
}

/* Output axis d is input axis perm[d] (negative entries count from the end). */
REF_FN ref_t *ref_permute(const ref_t *x, const int *perm) {
  int64_t xs[SLOTH_MAX_RANK], st[SLOTH_MAX_RANK], shape[SLOTH_MAX_RANK];
  int used[SLOTH_MAX_RANK] = {0};
  ref_strides(x->rank, x->shape, xs);
  for (int d = 0; d < x->rank; d++) {
    int p = perm[d] < 0 ? perm[d] + x->rank : perm[d];
    if (p < 0 || p >= x->rank || used[p]++) return NULL;
    shape[d] = x->shape[p];
    st[d] = xs[p];
  }
  return ref_gather(x, x->rank, shape, st, 0);
}

REF_FN ref_t *ref_transpose(const ref_t *x, int a, int b) {
  int perm[SLOTH_MAX_RANK];
  if (a < 0) a += x->rank;
  if (b < 0) b += x->rank;
  if (a < 0 || a >= x->rank || b < 0 || b >= x->rank) return NULL;
  for (int d = 0; d < x->rank; d++) perm[d] = d;
  perm[a] = b;
  perm[b] = a;
  return ref_permute(x, perm);
}

/* Like torch.expand: -1 keeps an existing size; new axes lead. */
REF_FN ref_t *ref_expand(const ref_t *x, int rank, const int64_t *shape) {
  if (rank < x->rank) return NULL;
  int64_t s[SLOTH_MAX_RANK];
  int lead = rank - x->rank;
  for (int d = 0; d < rank; d++) s[d] = (shape[d] == -1 && d >= lead) ? x->shape[d - lead] : shape[d];
  return ref_broadcast_to(x, rank, s);
}

/* The length of x[start:stop:step] over an axis of size len, and the
 * adjusted start (CPython's PySlice_AdjustIndices). */
REF_FN int64_t ref_slice_indices(int64_t len, int64_t *start, int64_t *stop, int64_t step) {
  if (*start < 0) {
    *start += len;
    if (*start < 0) *start = step < 0 ? -1 : 0;
  } else if (*start >= len) *start = step < 0 ? len - 1 : len;
  if (*stop < 0) {
    *stop += len;
    if (*stop < 0) *stop = step < 0 ? -1 : 0;
  } else if (*stop >= len) *stop = step < 0 ? len - 1 : len;
  if (step < -INT64_MAX) step = -INT64_MAX; /* as CPython: -step must not overflow */
  if (step < 0) return *stop < *start ? (*start - *stop - 1) / (-step) + 1 : 0;
  return *start < *stop ? (*stop - *start - 1) / step + 1 : 0;
}

REF_FN ref_t *ref_slice(const ref_t *x, int axis, int64_t start, int64_t stop, int64_t step) {
  if (axis < 0) axis += x->rank;
  if (axis < 0 || axis >= x->rank || step == 0) return NULL;
  int64_t xs[SLOTH_MAX_RANK], shape[SLOTH_MAX_RANK], st[SLOTH_MAX_RANK];
  ref_strides(x->rank, x->shape, xs);
  int64_t count = ref_slice_indices(x->shape[axis], &start, &stop, step);
  for (int d = 0; d < x->rank; d++) {
    shape[d] = x->shape[d];
    st[d] = xs[d];
  }
  shape[axis] = count;
  st[axis] = count > 1 ? xs[axis] * step : 0; /* a huge step is fine when it is never taken */
  return ref_gather(x, x->rank, shape, st, count ? start * xs[axis] : 0);
}

REF_FN ref_t *ref_squeeze(const ref_t *x, int axis) {
  if (axis < 0) axis += x->rank;
  if (axis < 0 || axis >= x->rank || x->shape[axis] != 1) return NULL;
  int64_t s[SLOTH_MAX_RANK];
  int r = 0;
  for (int d = 0; d < x->rank; d++)
    if (d != axis) s[r++] = x->shape[d];
  return ref_reshape(x, r, s);
}

REF_FN ref_t *ref_unsqueeze(const ref_t *x, int axis) {
  if (axis < 0) axis += x->rank + 1;
  if (axis < 0 || axis > x->rank || x->rank == SLOTH_MAX_RANK) return NULL;
  int64_t s[SLOTH_MAX_RANK];
  for (int d = 0, i = 0; d <= x->rank; d++) s[d] = d == axis ? 1 : x->shape[i++];
  return ref_reshape(x, x->rank + 1, s);
}

/* Axes start..end (inclusive) merged into one; a rank-0 tensor becomes [1]. */
REF_FN ref_t *ref_flatten(const ref_t *x, int start, int end) {
  if (x->rank == 0) {
    int64_t one = 1;
    return ref_reshape(x, 1, &one);
  }
  if (start < 0) start += x->rank;
  if (end < 0) end += x->rank;
  if (start < 0 || start >= x->rank || end < 0 || end >= x->rank || end < start) return NULL;
  int64_t s[SLOTH_MAX_RANK];
  int r = 0;
  for (int d = 0; d < start; d++) s[r++] = x->shape[d];
  int64_t m = 1;
  for (int d = start; d <= end; d++) m *= x->shape[d];
  s[r++] = m;
  for (int d = end + 1; d < x->rank; d++) s[r++] = x->shape[d];
  return ref_reshape(x, r, s);
}

/* Constant padding: pads[2d] elements before and pads[2d+1] after axis d. */
REF_FN ref_t *ref_pad(const ref_t *x, const int64_t *pads, double value) {
  int64_t shape[SLOTH_MAX_RANK], c[SLOTH_MAX_RANK], xs[SLOTH_MAX_RANK];
  for (int d = 0; d < x->rank; d++) {
    if (pads[2 * d] < 0 || pads[2 * d + 1] < 0) return NULL;
    shape[d] = x->shape[d] + pads[2 * d] + pads[2 * d + 1];
  }
  ref_strides(x->rank, x->shape, xs);
  ref_t *r = ref_alloc(x->dt, x->rank, shape);
  for (int64_t i = 0; i < r->n; i++) {
    ref_unravel(i, r->rank, shape, c);
    int64_t at = 0;
    int inside = 1;
    for (int d = 0; d < x->rank; d++) {
      int64_t k = c[d] - pads[2 * d];
      if (k < 0 || k >= x->shape[d]) inside = 0;
      at += k * xs[d];
    }
    r->v[i] = inside ? x->v[at] : ref_conv(value, x->dt);
  }
  return r;
}

/* Element (i0, i1, ...) is element offset + sum(i_d * strides[d]) of x in
 * row-major order; strides >= 0 and the view inside x. */
REF_FN ref_t *ref_as_strided(const ref_t *x, int rank, const int64_t *shape, const int64_t *strides, int64_t offset) {
  int64_t last = offset;
  for (int d = 0; d < rank; d++) {
    if (strides[d] < 0 || shape[d] < 0) return NULL;
    last += (shape[d] - 1) * strides[d];
  }
  if (ref_numel(rank, shape) > 0 && (offset < 0 || last >= x->n)) return NULL;
  return ref_gather(x, rank, shape, strides, offset);
}

/* ------------------------------------------------------------------ elementwise */

typedef enum ref_unary_op {
  RU_NEG, RU_ABS, RU_EXP, RU_LOG, RU_SQRT, RU_RSQRT, RU_SIN, RU_COS, RU_TANH, RU_SIGMOID,
  RU_RELU, RU_FLOOR, RU_CEIL, RU_ROUND, RU_SQUARE, RU_RECIP, RU_SIGN, RU_NOT, RU_COUNT
} ref_unary_op;

static const char *const ref_unary_names[RU_COUNT] __attribute__((unused)) = {
    "neg", "abs", "exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid",
    "relu", "floor", "ceil", "round", "square", "reciprocal", "sign", "logical_not"};

static sloth_tensor *(*const ref_unary_sloth[RU_COUNT])(sloth_tensor *) __attribute__((unused)) = {
    sloth_neg, sloth_abs, sloth_exp, sloth_log, sloth_sqrt, sloth_rsqrt, sloth_sin, sloth_cos, sloth_tanh, sloth_sigmoid,
    sloth_relu, sloth_floor, sloth_ceil, sloth_round, sloth_square, sloth_reciprocal, sloth_sign, sloth_logical_not};

/* Transcendental ops compute in f32 on integers; f16 and f64 keep their dtype. */
REF_FN int ref_unary_is_math(ref_unary_op op) {
  switch (op) {
  case RU_EXP: case RU_LOG: case RU_SQRT: case RU_RSQRT: case RU_SIN: case RU_COS:
  case RU_TANH: case RU_SIGMOID: case RU_RECIP: return 1;
  default: return 0;
  }
}

/* Result dtype, or -1 where the op refuses the dtype (neg and sign of bool). */
REF_FN int ref_unary_dtype(ref_unary_op op, sloth_dtype in) {
  if (op == RU_NOT) return SLOTH_BOOL;
  if (ref_unary_is_math(op)) return ref_is_float(in) ? in : SLOTH_F32;
  if ((op == RU_NEG || op == RU_SIGN) && in == SLOTH_BOOL) return -1;
  return in;
}

REF_FN double ref_unary_value(ref_unary_op op, double x, sloth_dtype dt) {
  if (op == RU_NOT) return x == 0;
  if (dt == SLOTH_F64) {
    double r;
    switch (op) {
    case RU_NEG: r = -x; break;
    case RU_ABS: r = fabs(x); break;
    case RU_EXP: r = exp(x); break;
    case RU_LOG: r = log(x); break;
    case RU_SQRT: r = sqrt(x); break;
    case RU_RSQRT: r = 1.0 / sqrt(x); break;
    case RU_SIN: r = sin(x); break;
    case RU_COS: r = cos(x); break;
    case RU_TANH: r = tanh(x); break;
    case RU_SIGMOID: r = 1.0 / (1.0 + exp(-x)); break;
    case RU_RELU: r = x > 0 ? x : 0.0; break;
    case RU_FLOOR: r = floor(x); break;
    case RU_CEIL: r = ceil(x); break;
    case RU_ROUND: r = rint(x); break;
    case RU_SQUARE: r = x * x; break;
    case RU_RECIP: r = 1.0 / x; break;
    case RU_SIGN: r = x > 0 ? 1.0 : x < 0 ? -1.0 : x; break;
    default: r = NAN; break;
    }
    return r;
  }
  if (dt == SLOTH_F32 || dt == SLOTH_F16) { /* f16: computed in float, rounded to f16 */
    float f = (float)x, r;
    switch (op) {
    case RU_NEG: r = -f; break;
    case RU_ABS: r = fabsf(f); break;
    case RU_EXP: r = expf(f); break;
    case RU_LOG: r = logf(f); break;
    case RU_SQRT: r = sqrtf(f); break;
    case RU_RSQRT: r = 1.0f / sqrtf(f); break;
    case RU_SIN: r = sinf(f); break;
    case RU_COS: r = cosf(f); break;
    case RU_TANH: r = tanhf(f); break;
    case RU_SIGMOID: r = 1.0f / (1.0f + expf(-f)); break;
    case RU_RELU: r = f > 0 ? f : 0.0f; break;
    case RU_FLOOR: r = floorf(f); break;
    case RU_CEIL: r = ceilf(f); break;
    case RU_ROUND: r = rintf(f); break; /* halves to even */
    case RU_SQUARE: r = f * f; break;
    case RU_RECIP: r = 1.0f / f; break;
    case RU_SIGN: r = f > 0 ? 1.0f : f < 0 ? -1.0f : f; break;
    default: r = NAN; break;
    }
    return ref_conv(r, dt);
  }
  int64_t i = (int64_t)x, r;
  switch (op) {
  case RU_NEG: r = -i; break;
  case RU_ABS: r = i < 0 ? -i : i; break;
  case RU_RELU: r = i > 0 ? i : 0; break;
  case RU_SQUARE: r = i * i; break;
  case RU_SIGN: r = (i > 0) - (i < 0); break;
  default: r = i; break; /* floor, ceil, round of an integer */
  }
  return ref_conv((double)r, dt);
}

REF_FN ref_t *ref_unary(ref_unary_op op, const ref_t *x) {
  int dt = ref_unary_dtype(op, x->dt);
  if (dt < 0) return NULL;
  sloth_dtype compute = op == RU_NOT ? SLOTH_BOOL : (sloth_dtype)dt;
  ref_t *r = ref_alloc((sloth_dtype)dt, x->rank, x->shape);
  for (int64_t i = 0; i < x->n; i++) r->v[i] = ref_unary_value(op, ref_conv(x->v[i], compute), compute);
  return r;
}

REF_FN ref_t *ref_cast(const ref_t *x, sloth_dtype dt) {
  ref_t *r = ref_alloc(dt, x->rank, x->shape);
  for (int64_t i = 0; i < x->n; i++) r->v[i] = ref_conv(x->v[i], dt);
  return r;
}

typedef enum ref_binary_op {
  RB_ADD, RB_SUB, RB_MUL, RB_DIV, RB_POW, RB_MAXIMUM, RB_MINIMUM,
  RB_EQ, RB_NE, RB_LT, RB_LE, RB_GT, RB_GE, RB_AND, RB_OR, RB_COUNT
} ref_binary_op;

static const char *const ref_binary_names[RB_COUNT] __attribute__((unused)) = {
    "add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or"};

static sloth_tensor *(*const ref_binary_sloth[RB_COUNT])(sloth_tensor *, sloth_tensor *) __attribute__((unused)) = {
    sloth_add, sloth_sub, sloth_mul, sloth_div, sloth_pow, sloth_maximum, sloth_minimum,
    sloth_eq, sloth_ne, sloth_lt, sloth_le, sloth_gt, sloth_ge, sloth_logical_and, sloth_logical_or};

REF_FN int ref_binary_is_cmp(ref_binary_op op) { return op >= RB_EQ && op <= RB_GE; }

/* The dtype the operands are converted to before the op. */
REF_FN sloth_dtype ref_binary_compute(ref_binary_op op, sloth_dtype a, sloth_dtype b) {
  if (op == RB_AND || op == RB_OR) return SLOTH_BOOL;
  sloth_dtype p = ref_promote(a, b);
  if ((op == RB_DIV || op == RB_POW) && !ref_is_float(p)) return SLOTH_F32; /* true division, float power */
  return p;
}

REF_FN sloth_dtype ref_binary_dtype(ref_binary_op op, sloth_dtype a, sloth_dtype b) {
  if (ref_binary_is_cmp(op) || op == RB_AND || op == RB_OR) return SLOTH_BOOL;
  return ref_binary_compute(op, a, b);
}

/* a op b with both already converted to the compute dtype ct; the result
 * converted to the result dtype. Integer results wrap like C's unsigned
 * conversion; a bool result of arithmetic is "!= 0" (add = or, mul = and). */
REF_FN double ref_binary_value(ref_binary_op op, double a, double b, sloth_dtype ct) {
  switch (op) {
  case RB_EQ: return a == b;
  case RB_NE: return a != b;
  case RB_LT: return a < b;
  case RB_LE: return a <= b;
  case RB_GT: return a > b;
  case RB_GE: return a >= b;
  case RB_AND: return a != 0 && b != 0;
  case RB_OR: return a != 0 || b != 0;
  default: break;
  }
  if (ct == SLOTH_F64) {
    double r;
    switch (op) {
    case RB_ADD: r = a + b; break;
    case RB_SUB: r = a - b; break;
    case RB_MUL: r = a * b; break;
    case RB_DIV: r = a / b; break;
    case RB_POW: r = pow(a, b); break;
    case RB_MAXIMUM: r = fmax(a, b); break;
    case RB_MINIMUM: r = fmin(a, b); break;
    default: r = NAN; break;
    }
    return r;
  }
  if (ct == SLOTH_F32 || ct == SLOTH_F16) { /* f16: computed in float, rounded to f16 */
    float x = (float)a, y = (float)b, r;
    switch (op) {
    case RB_ADD: r = x + y; break;
    case RB_SUB: r = x - y; break;
    case RB_MUL: r = x * y; break;
    case RB_DIV: r = x / y; break;
    case RB_POW: r = powf(x, y); break;
    case RB_MAXIMUM: r = fmaxf(x, y); break;
    case RB_MINIMUM: r = fminf(x, y); break;
    default: r = NAN; break;
    }
    return ref_conv(r, ct);
  }
  int64_t x = (int64_t)a, y = (int64_t)b, r;
  switch (op) {
  case RB_ADD: r = x + y; break;
  case RB_SUB: r = x - y; break;
  case RB_MUL: r = x * y; break;
  case RB_MAXIMUM: r = x > y ? x : y; break;
  case RB_MINIMUM: r = x < y ? x : y; break;
  default: r = 0; break;
  }
  return ref_conv((double)r, ct);
}

REF_FN ref_t *ref_binary(ref_binary_op op, const ref_t *a, const ref_t *b) {
  const ref_t *xs[2] = {a, b};
  int rank;
  int64_t shape[SLOTH_MAX_RANK];
  if (!ref_broadcast_shape(2, xs, &rank, shape)) return NULL;
  sloth_dtype ct = ref_binary_compute(op, a->dt, b->dt);
  ref_t *ba = ref_broadcast_to(a, rank, shape), *bb = ref_broadcast_to(b, rank, shape);
  ref_t *r = ref_alloc(ref_binary_dtype(op, a->dt, b->dt), rank, shape);
  for (int64_t i = 0; i < r->n; i++) r->v[i] = ref_binary_value(op, ref_conv(ba->v[i], ct), ref_conv(bb->v[i], ct), ct);
  ref_free(ba);
  ref_free(bb);
  return r;
}

/* The scalar ops: the scalar takes the tensor's dtype, unless a fractional
 * (or non-finite) value meets an integer tensor: then it is an f32 scalar. */
REF_FN ref_t *ref_binary_scalar(ref_binary_op op, const ref_t *a, double s) {
  sloth_dtype sdt = a->dt;
  if (!ref_is_float(sdt) && (s != floor(s) || !isfinite(s))) sdt = SLOTH_F32;
  ref_t *sc = ref_full(s, sdt, 0, NULL);
  ref_t *r = ref_binary(op, a, sc);
  ref_free(sc);
  return r;
}

/* where(cond, a, b): cond as bool; a and b promote; all three broadcast. */
REF_FN ref_t *ref_where(const ref_t *c, const ref_t *a, const ref_t *b) {
  const ref_t *xs[3] = {c, a, b};
  int rank;
  int64_t shape[SLOTH_MAX_RANK];
  if (!ref_broadcast_shape(3, xs, &rank, shape)) return NULL;
  sloth_dtype dt = ref_promote(a->dt, b->dt);
  ref_t *bc = ref_broadcast_to(c, rank, shape), *ba = ref_broadcast_to(a, rank, shape), *bb = ref_broadcast_to(b, rank, shape);
  ref_t *r = ref_alloc(dt, rank, shape);
  for (int64_t i = 0; i < r->n; i++) r->v[i] = ref_conv(bc->v[i] != 0 ? ba->v[i] : bb->v[i], dt);
  ref_free(bc);
  ref_free(ba);
  ref_free(bb);
  return r;
}

/* ------------------------------------------------------------------ reductions */

typedef enum ref_reduce_op { RR_SUM, RR_MEAN, RR_MAX, RR_MIN, RR_PROD, RR_ARGMAX, RR_ARGMIN, RR_COUNT } ref_reduce_op;

static const char *const ref_reduce_names[RR_COUNT] __attribute__((unused)) = {"sum", "mean", "max", "min", "prod", "argmax", "argmin"};

/* Calls the Sloth reduction; arg-reductions take axes[0]. */
REF_FN sloth_tensor *ref_reduce_sloth(ref_reduce_op op, sloth_tensor *x, const int *axes, int naxes, int keepdim) {
  switch (op) {
  case RR_SUM: return sloth_sum(x, axes, naxes, keepdim);
  case RR_MEAN: return sloth_mean(x, axes, naxes, keepdim);
  case RR_MAX: return sloth_max(x, axes, naxes, keepdim);
  case RR_MIN: return sloth_min(x, axes, naxes, keepdim);
  case RR_PROD: return sloth_prod(x, axes, naxes, keepdim);
  case RR_ARGMAX: return sloth_argmax(x, axes[0], keepdim);
  default: return sloth_argmin(x, axes[0], keepdim);
  }
}

REF_FN sloth_dtype ref_reduce_dtype(ref_reduce_op op, sloth_dtype in) {
  switch (op) {
  case RR_SUM: case RR_PROD: return ref_is_float(in) || in == SLOTH_I64 ? in : SLOTH_I32;
  case RR_MEAN: return ref_is_float(in) ? in : SLOTH_F32;
  case RR_MAX: case RR_MIN: return in;
  default: return SLOTH_I32;
  }
}

/* Reduction over the listed axes (naxes == 0: all; arg-reductions: exactly
 * one). Sums and products accumulate in double; an empty sum is 0, an empty
 * product 1, an empty mean NaN; max, min and the arg-reductions of an empty
 * axis are refused (NULL). argmax/argmin give the first index of the extreme. */
REF_FN ref_t *ref_reduce(ref_reduce_op op, const ref_t *x, const int *axes, int naxes, int keepdim) {
  int red[SLOTH_MAX_RANK] = {0};
  int arg = op == RR_ARGMAX || op == RR_ARGMIN;
  if (arg && naxes != 1) return NULL;
  for (int i = 0; i < naxes; i++) {
    int a = axes[i] < 0 ? axes[i] + x->rank : axes[i];
    if (a < 0 || a >= x->rank || red[a]) return NULL;
    red[a] = 1;
  }
  if (naxes == 0)
    for (int d = 0; d < x->rank; d++) red[d] = 1;
  int64_t count = 1;
  for (int d = 0; d < x->rank; d++)
    if (red[d]) {
      count *= x->shape[d];
      if (x->shape[d] == 0 && (op == RR_MAX || op == RR_MIN || arg)) return NULL;
    }
  /* output shape, and the same shape with every reduced axis kept as 1 */
  int64_t oshape[SLOTH_MAX_RANK], kshape[SLOTH_MAX_RANK];
  int orank = 0;
  for (int d = 0; d < x->rank; d++) {
    kshape[d] = red[d] ? 1 : x->shape[d];
    if (!red[d]) oshape[orank++] = x->shape[d];
    else if (keepdim) oshape[orank++] = 1;
  }
  sloth_dtype in_dt = op == RR_MEAN && !ref_is_float(x->dt) ? SLOTH_F32 : x->dt;
  ref_t *r = ref_alloc(ref_reduce_dtype(op, x->dt), orank, oshape);
  double *acc = calloc((size_t)(r->n ? r->n : 1), sizeof *acc);
  int64_t *best = calloc((size_t)(r->n ? r->n : 1), sizeof *best);
  char *seen = calloc((size_t)(r->n ? r->n : 1), 1);
  if (!acc || !best || !seen) abort();
  for (int64_t o = 0; o < r->n; o++) acc[o] = op == RR_PROD ? 1 : 0;
  int64_t c[SLOTH_MAX_RANK], ks[SLOTH_MAX_RANK];
  ref_strides(x->rank, kshape, ks);
  int axis = arg ? (axes[0] < 0 ? axes[0] + x->rank : axes[0]) : 0;
  for (int64_t i = 0; i < x->n; i++) {
    ref_unravel(i, x->rank, x->shape, c);
    int64_t o = 0;
    for (int d = 0; d < x->rank; d++)
      if (!red[d]) o += c[d] * ks[d];
    double v = ref_conv(x->v[i], in_dt);
    switch (op) {
    case RR_SUM: case RR_MEAN: acc[o] += v; break;
    case RR_PROD: acc[o] *= v; break;
    case RR_MAX: if (!seen[o] || v > acc[o]) acc[o] = v; break;
    case RR_MIN: if (!seen[o] || v < acc[o]) acc[o] = v; break;
    case RR_ARGMAX: if (!seen[o] || v > acc[o]) { acc[o] = v; best[o] = c[axis]; } break;
    case RR_ARGMIN: if (!seen[o] || v < acc[o]) { acc[o] = v; best[o] = c[axis]; } break;
    default: break;
    }
    seen[o] = 1;
  }
  for (int64_t o = 0; o < r->n; o++) {
    double v = acc[o];
    if (op == RR_MEAN) v = count ? v / (double)count : NAN;
    if (arg) v = (double)best[o];
    r->v[o] = ref_conv(v, r->dt);
  }
  free(acc);
  free(best);
  free(seen);
  return r;
}

/* ------------------------------------------------------------------ matmul */

/* NumPy matmul: a 1-D left operand is a row, a 1-D right operand a column
 * (the added axis is dropped from the result); the batch axes broadcast;
 * integers compute in f32, floats in their promoted dtype (sums accumulated
 * in double). */
REF_FN ref_t *ref_matmul(const ref_t *a, const ref_t *b) {
  if (a->rank == 0 || b->rank == 0) return NULL;
  int64_t as[SLOTH_MAX_RANK + 1] = {0}, bs[SLOTH_MAX_RANK + 1] = {0};
  int ar = a->rank, br = b->rank;
  for (int d = 0; d < ar; d++) as[d] = a->shape[d];
  for (int d = 0; d < br; d++) bs[d] = b->shape[d];
  if (ar == 1) as[1] = as[0], as[0] = 1, ar = 2;
  if (br == 1) bs[1] = 1, br = 2;
  int64_t M = as[ar - 2], K = as[ar - 1], N = bs[br - 1];
  if (bs[br - 2] != K) return NULL;
  /* batch shape: NumPy broadcasting of the leading axes */
  int nb = ar - 2 > br - 2 ? ar - 2 : br - 2;
  if (nb + 2 > SLOTH_MAX_RANK) return NULL;
  int64_t batch[SLOTH_MAX_RANK];
  for (int d = 0; d < nb; d++) {
    int ka = d - (nb - (ar - 2)), kb = d - (nb - (br - 2));
    int64_t sa = ka >= 0 ? as[ka] : 1, sb = kb >= 0 ? bs[kb] : 1;
    if (sa != sb && sa != 1 && sb != 1) return NULL;
    batch[d] = sa == 1 ? sb : sa;
  }
  int64_t nbatch = ref_numel(nb, batch);
  /* both operands broadcast to [batch..., rows, cols] */
  int64_t ta[SLOTH_MAX_RANK], tb[SLOTH_MAX_RANK];
  for (int d = 0; d < nb; d++) ta[d] = tb[d] = batch[d];
  ta[nb] = M, ta[nb + 1] = K, tb[nb] = K, tb[nb + 1] = N;
  ref_t *a2 = ref_reshape(a, ar, as), *b2 = ref_reshape(b, br, bs);
  ref_t *ab = ref_broadcast_to(a2, nb + 2, ta), *bb = ref_broadcast_to(b2, nb + 2, tb);
  int64_t os[SLOTH_MAX_RANK];
  int orank = 0;
  for (int d = 0; d < nb; d++) os[orank++] = batch[d];
  if (a->rank > 1) os[orank++] = M;
  if (b->rank > 1) os[orank++] = N;
  sloth_dtype dt = ref_promote(a->dt, b->dt);
  if (!ref_is_float(dt)) dt = SLOTH_F32;
  ref_t *r = ref_alloc(dt, orank, os);
  for (int64_t q = 0; q < nbatch; q++)
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double acc = 0;
        for (int64_t k = 0; k < K; k++) acc += ref_conv(ab->v[(q * M + i) * K + k], dt) * ref_conv(bb->v[(q * K + k) * N + j], dt);
        r->v[(q * M + i) * N + j] = ref_conv(acc, dt);
      }
  ref_free(a2), ref_free(b2), ref_free(ab), ref_free(bb);
  return r;
}

/* ------------------------------------------------------------------ random data */

/* splitmix64: small, seedable, the same on every platform */
typedef struct ref_rng {
  uint64_t s;
} ref_rng;

REF_FN uint64_t ref_rng_next(ref_rng *g) {
  uint64_t z = (g->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* uniform in [0, n) */
REF_FN int64_t ref_rng_int(ref_rng *g, int64_t n) { return n > 0 ? (int64_t)(ref_rng_next(g) % (uint64_t)n) : 0; }
/* uniform in [0, 1) */
REF_FN double ref_rng_unit(ref_rng *g) { return (double)(ref_rng_next(g) >> 11) * (1.0 / 9007199254740992.0); }

/* Random values in [lo, hi]: multiples of step from lo when step > 0 (so
 * ties, zeros and halves occur), else continuous. Bool tensors get 0/1. */
REF_FN ref_t *ref_random(ref_rng *g, sloth_dtype dt, int rank, const int64_t *shape, double lo, double hi, double step) {
  ref_t *r = ref_alloc(dt, rank, shape);
  for (int64_t i = 0; i < r->n; i++) {
    double v;
    if (dt == SLOTH_BOOL) v = (double)ref_rng_int(g, 2);
    else if (step > 0) v = lo + step * (double)ref_rng_int(g, (int64_t)floor((hi - lo) / step + 1e-9) + 1);
    else v = lo + (hi - lo) * ref_rng_unit(g);
    r->v[i] = ref_conv(v, dt);
  }
  return r;
}

/* ------------------------------------------------------------------ comparison */

/* Compares got with want: same dtype, same shape, and values equal (exactly
 * for integer and bool dtypes and when atol and rtol are both 0; otherwise
 * |got - want| <= atol + rtol * |want|, tap_max_err's rule), NaN matching
 * NaN and an infinity itself. Returns 1 if they match;
 * otherwise writes a description of the first difference to why. */
REF_FN int ref_match(const ref_t *got, const ref_t *want, double atol, double rtol, char *why, size_t whylen) {
  char a[96], b[96];
  if (got->dt != want->dt) {
    snprintf(why, whylen, "dtype %s, want %s", sloth_dtype_name(got->dt), sloth_dtype_name(want->dt));
    return 0;
  }
  if (!ref_same_shape(got->rank, got->shape, want->rank, want->shape)) {
    ref_shape_str(a, sizeof a, got->rank, got->shape);
    ref_shape_str(b, sizeof b, want->rank, want->shape);
    snprintf(why, whylen, "shape %s, want %s", a, b);
    return 0;
  }
  int64_t bad = -1, nbad = 0;
  double worst = 0;
  int exact = atol == 0 && rtol == 0;
  if (want->dt == SLOTH_F32 && !exact) {
    /* the pass criterion for floats is tap_max_err's; the loop below finds the first bad element */
    float *fg = malloc((size_t)(want->n ? want->n : 1) * sizeof *fg), *fw = malloc((size_t)(want->n ? want->n : 1) * sizeof *fw);
    if (!fg || !fw) abort();
    for (int64_t i = 0; i < want->n; i++) fg[i] = (float)got->v[i], fw[i] = (float)want->v[i];
    double e = tap_max_err(fg, fw, (long)want->n, atol, rtol);
    free(fg);
    free(fw);
    if (e <= 1) return 1;
  }
  for (int64_t i = 0; i < want->n; i++) {
    double g = got->v[i], w = want->v[i];
    int same;
    if (isnan(w) || isnan(g)) same = isnan(w) && isnan(g);
    else if (!ref_is_float(want->dt) || exact) same = g == w;
    else if (isinf(w) || isinf(g)) same = g == w;
    else {
      double e = fabs(g - w) / (atol + rtol * fabs(w));
      same = e <= 1;
      if (e > worst) worst = e;
    }
    if (!same) {
      if (bad < 0) bad = i;
      nbad++;
    }
  }
  if (bad < 0) return 1;
  int64_t c[SLOTH_MAX_RANK];
  ref_unravel(bad, want->rank, want->shape, c);
  ref_shape_str(a, sizeof a, want->rank, c);
  snprintf(why, whylen, "%lld of %lld elements differ; first at %s: got %.9g, want %.9g (worst normalized error %.3g)",
           (long long)nbad, (long long)want->n, a, got->v[bad], want->v[bad], worst);
  return 0;
}

#endif
