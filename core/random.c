/* random.c - distributions and dropout on top of the Philox draws
 * (sloth_rand, sloth_randn in ops.c). Every parameter is a scalar kernel
 * argument: a new probability or standard deviation compiles nothing. */
#include "internal.h"

sloth_tensor *sloth_uniform(double lo, double hi, int rank, const int64_t *shape) {
  if (!(lo <= hi)) {
    sloth__fail(SLOTH_E_INVALID, "uniform: lo (%g) must not exceed hi (%g)", lo, hi);
    return NULL;
  }
  sloth_scope_begin();
  sloth_tensor *r = sloth_keep(sloth_add_scalar(sloth_mul_scalar(sloth_rand(rank, shape), hi - lo), lo));
  sloth_scope_end();
  return r;
}

sloth_tensor *sloth_normal(double mean, double std, int rank, const int64_t *shape) {
  if (!(std >= 0)) {
    sloth__fail(SLOTH_E_INVALID, "normal: std (%g) must be >= 0", std);
    return NULL;
  }
  sloth_scope_begin();
  sloth_tensor *r = sloth_keep(sloth_add_scalar(sloth_mul_scalar(sloth_randn(rank, shape), std), mean));
  sloth_scope_end();
  return r;
}

sloth_tensor *sloth_bernoulli(double p, int rank, const int64_t *shape) {
  if (!(p >= 0 && p <= 1)) {
    sloth__fail(SLOTH_E_INVALID, "bernoulli: p (%g) must be in [0, 1]", p);
    return NULL;
  }
  sloth_scope_begin();
  sloth_tensor *u = sloth_rand(rank, shape);
  sloth_tensor *r = sloth_keep(sloth_lt(u, sloth_scalar(p, SLOTH_F32)));
  sloth_scope_end();
  return r;
}

sloth_tensor *sloth_dropout(sloth_tensor *x, double p, int training) {
  if (!sloth_retain(x)) return NULL;
  if (!(p >= 0 && p < 1)) {
    sloth_release(x);
    sloth__fail(SLOTH_E_INVALID, "dropout: p (%g) must be in [0, 1)", p);
    return NULL;
  }
  if (!training) return x; /* the retained reference is the result */
  sloth_release(x);
  sloth_scope_begin();
  sloth_tensor *keep = sloth_ge(sloth_rand(sloth_rank(x), sloth_shape(x)), sloth_scalar(p, SLOTH_F32));
  sloth_tensor *r = sloth_keep(sloth_where(keep, sloth_mul_scalar(x, 1.0 / (1.0 - p)), sloth_scalar(0, sloth_dtype_of(x))));
  sloth_scope_end();
  return r;
}
