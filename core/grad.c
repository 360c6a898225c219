/* grad.c - the gradient rule of every op (named in ops.def's last column).
 *
 * A rule gets the op's node, its value (out), its operands (in[]) and the
 * gradient of its output (g), and sets gin[i] for each operand i with
 * need[i]. Rules run inside a scope opened by the autograd engine
 * (autograd.c), which takes its own reference to each gin[i] (which may be
 * g itself) and releases every temporary, so rules compose public ops freely
 * and never retain or release. Operands are already broadcast and promoted
 * (ops.c makes both explicit as nodes), so an elementwise rule's gradients
 * have its operands' shapes; EXPAND's rule sums broadcast axes back. */
#include "internal.h"
#include "strided.h"

#include <math.h>
#include <string.h>

#define X a->in[0]
#define Y a->in[1]
#define G a->g
#define OUT a->out

static sloth_tensor *zero_like_scalar(sloth_tensor *t) { return sloth_scalar(0, sloth_dtype_of(t)); }

/* g * f, the chain rule of a unary op */
static int chain(sloth__grad_args *a, sloth_tensor *f) {
  if (a->need[0]) a->gin[0] = sloth_mul(G, f);
  return a->need[0] && !a->gin[0] ? sloth_last_status() : SLOTH_OK;
}

/* Sets gin[i] = v when needed; fails if v is NULL (a failed op). */
static int give(sloth__grad_args *a, int i, sloth_tensor *v) {
  if (!a->need[i]) return SLOTH_OK;
  a->gin[i] = v;
  return v ? SLOTH_OK : sloth_last_status();
}

int grad_none(sloth__grad_args *a) {
  (void)a;
  return SLOTH_OK;
}

/* ------------------------------------------------------------------ unary */

int grad_neg(sloth__grad_args *a) { return give(a, 0, sloth_neg(G)); }
int grad_abs(sloth__grad_args *a) { return chain(a, sloth_sign(X)); }
int grad_exp(sloth__grad_args *a) { return chain(a, OUT); }
int grad_log(sloth__grad_args *a) { return give(a, 0, sloth_div(G, X)); }
int grad_sqrt(sloth__grad_args *a) { return give(a, 0, sloth_div(sloth_mul_scalar(G, 0.5), OUT)); }
/* d x^-1/2 = -1/2 x^-3/2 = -1/2 out^3 */
int grad_rsqrt(sloth__grad_args *a) { return chain(a, sloth_mul_scalar(sloth_mul(OUT, sloth_square(OUT)), -0.5)); }
int grad_sin(sloth__grad_args *a) { return chain(a, sloth_cos(X)); }
int grad_cos(sloth__grad_args *a) { return chain(a, sloth_neg(sloth_sin(X))); }
int grad_tanh(sloth__grad_args *a) { return chain(a, sloth_sub(sloth_scalar(1, SLOTH_F32), sloth_square(OUT))); }
/* 2/sqrt(pi) exp(-x^2) */
int grad_erf(sloth__grad_args *a) {
  return chain(a, sloth_mul_scalar(sloth_exp(sloth_neg(sloth_square(X))), 1.1283791670955126));
}
int grad_sigmoid(sloth__grad_args *a) { return chain(a, sloth_mul(OUT, sloth_sub(sloth_scalar(1, SLOTH_F32), OUT))); }
int grad_relu(sloth__grad_args *a) {
  return give(a, 0, sloth_where(sloth_gt(X, zero_like_scalar(X)), G, zero_like_scalar(G)));
}
int grad_square(sloth__grad_args *a) { return chain(a, sloth_mul_scalar(X, 2)); }
int grad_reciprocal(sloth__grad_args *a) { return chain(a, sloth_neg(sloth_square(OUT))); }
/* float -> float casts pass the gradient back in the operand's dtype; from
 * integers nothing flows (the engine never asks: integers need no gradient) */
int grad_cast(sloth__grad_args *a) { return give(a, 0, sloth_cast(G, sloth_dtype_of(X))); }

/* 0.5 (1 + erf(x / sqrt 2)) + x phi(x) */
int grad_gelu(sloth__grad_args *a) {
  sloth_tensor *cdf = sloth_mul_scalar(sloth_add_scalar(sloth_erf(sloth_mul_scalar(X, 0.70710678118654752)), 1), 0.5);
  sloth_tensor *pdf = sloth_mul_scalar(sloth_exp(sloth_mul_scalar(sloth_square(X), -0.5)), 0.3989422804014327);
  return chain(a, sloth_add(cdf, sloth_mul(X, pdf)));
}
/* out = x s(u), u = k (x + c x^3): s(u) + x s(u) (1 - s(u)) k (1 + 3 c x^2) */
int grad_gelu_tanh(sloth__grad_args *a) {
  const double k = 1.5957691216057308, c = 0.044715;
  sloth_tensor *x2 = sloth_square(X);
  sloth_tensor *s = sloth_sigmoid(sloth_mul_scalar(sloth_add(X, sloth_mul_scalar(sloth_mul(x2, X), c)), k));
  sloth_tensor *ds = sloth_mul(s, sloth_sub(sloth_scalar(1, SLOTH_F32), s));
  sloth_tensor *du = sloth_mul_scalar(sloth_add_scalar(sloth_mul_scalar(x2, 3 * c), 1), k);
  return chain(a, sloth_add(s, sloth_mul(X, sloth_mul(ds, du))));
}
/* s (1 + x (1 - s)) */
int grad_silu(sloth__grad_args *a) {
  sloth_tensor *s = sloth_sigmoid(X);
  return chain(a, sloth_mul(s, sloth_add_scalar(sloth_mul(X, sloth_sub(sloth_scalar(1, SLOTH_F32), s)), 1)));
}
/* in[1] is the slope */
int grad_leaky_relu(sloth__grad_args *a) {
  return give(a, 0, sloth_where(sloth_gt(X, zero_like_scalar(X)), G, sloth_mul(G, Y)));
}
/* in[1], in[2] are the bounds: the gradient passes where x is inside them */
int grad_clamp(sloth__grad_args *a) {
  sloth_tensor *inside = sloth_logical_and(sloth_ge(X, Y), sloth_le(X, a->in[2]));
  return give(a, 0, sloth_where(inside, G, zero_like_scalar(G)));
}

/* ------------------------------------------------------------------ binary */

int grad_add(sloth__grad_args *a) {
  int rc = give(a, 0, a->need[0] ? G : NULL);
  return rc ? rc : give(a, 1, a->need[1] ? G : NULL);
}
int grad_sub(sloth__grad_args *a) {
  int rc = give(a, 0, a->need[0] ? G : NULL);
  return rc ? rc : give(a, 1, a->need[1] ? sloth_neg(G) : NULL);
}
int grad_mul(sloth__grad_args *a) {
  int rc = give(a, 0, a->need[0] ? sloth_mul(G, Y) : NULL);
  return rc ? rc : give(a, 1, a->need[1] ? sloth_mul(G, X) : NULL);
}
/* d(x/y)/dy = -out / y */
int grad_div(sloth__grad_args *a) {
  int rc = give(a, 0, a->need[0] ? sloth_div(G, Y) : NULL);
  return rc ? rc : give(a, 1, a->need[1] ? sloth_neg(sloth_div(sloth_mul(G, OUT), Y)) : NULL);
}
/* x^y: y x^(y-1) and out log x (x > 0; NaN elsewhere, as in PyTorch); like
 * PyTorch, 0 where y == 0 (x^0 is constant) and, for y, where x == 0 and
 * y >= 0 (0^y is constant there), not 0 * inf */
int grad_pow(sloth__grad_args *a) {
  sloth_tensor *z = zero_like_scalar(G);
  int rc = give(a, 0, a->need[0] ? sloth_where(sloth_eq(Y, zero_like_scalar(Y)), z,
                                               sloth_mul(G, sloth_mul(Y, sloth_pow(X, sloth_sub_scalar(Y, 1)))))
                                 : NULL);
  sloth_tensor *flat = a->need[1] ? sloth_logical_and(sloth_eq(X, zero_like_scalar(X)), sloth_ge(Y, zero_like_scalar(Y))) : NULL;
  return rc ? rc : give(a, 1, a->need[1] ? sloth_where(flat, z, sloth_mul(G, sloth_mul(OUT, sloth_log(X)))) : NULL);
}
/* the larger operand gets the gradient; a tie splits it evenly (PyTorch) */
static int grad_select2(sloth__grad_args *a, double sign) {
  sloth_tensor *w = sloth_mul_scalar(sloth_add_scalar(sloth_mul_scalar(sloth_sign(sloth_sub(X, Y)), sign), 1), 0.5);
  int rc = give(a, 0, a->need[0] ? sloth_mul(G, w) : NULL);
  return rc ? rc : give(a, 1, a->need[1] ? sloth_sub(G, sloth_mul(G, w)) : NULL);
}
int grad_maximum(sloth__grad_args *a) { return grad_select2(a, 1); }
int grad_minimum(sloth__grad_args *a) { return grad_select2(a, -1); }
/* in[0] is the condition */
int grad_where(sloth__grad_args *a) {
  sloth_tensor *z = zero_like_scalar(G);
  int rc = give(a, 1, a->need[1] ? sloth_where(X, G, z) : NULL);
  return rc ? rc : give(a, 2, a->need[2] ? sloth_where(X, z, G) : NULL);
}

/* ------------------------------------------------------------------ views */

int grad_reshape(sloth__grad_args *a) { return give(a, 0, sloth_reshape(G, sloth_rank(X), sloth_shape(X))); }

int grad_permute(sloth__grad_args *a) {
  int inv[SLOTH_MAX_RANK];
  for (int d = 0; d < a->node->rank; d++) inv[a->node->attrs.perm[d]] = d;
  return give(a, 0, sloth_permute(G, inv));
}

/* broadcast axes (size 1 in the operand, same rank) sum back */
int grad_expand(sloth__grad_args *a) {
  int axes[SLOTH_MAX_RANK], n = 0;
  const int64_t *in = sloth_shape(X);
  for (int d = 0; d < a->node->rank; d++)
    if (in[d] != a->node->shape[d]) axes[n++] = d;
  if (n == 0) return give(a, 0, G);
  return give(a, 0, sloth_sum(G, axes, n, 1));
}

/* step 1: pad back; other steps: add at the positions start + i step */
int grad_slice(sloth__grad_args *a) {
  const sloth__node *x = a->node;
  int axis = x->attrs.axis, rank = x->rank;
  int64_t len = sloth_dim(X, axis), count = x->shape[axis], start = x->attrs.start, step = x->attrs.step;
  if (step == 1) {
    int64_t pads[2 * SLOTH_MAX_RANK] = {0};
    pads[2 * axis] = start;
    pads[2 * axis + 1] = len - start - count;
    return give(a, 0, sloth_pad(G, pads, 0));
  }
  int64_t shape[SLOTH_MAX_RANK];
  for (int d = 0; d < rank; d++) shape[d] = d == axis ? count : 1;
  sloth_tensor *pos = sloth_add_scalar(sloth_mul_scalar(sloth_arange(0, (double)count, 1, SLOTH_I32), (double)step), (double)start);
  sloth_tensor *index = sloth_expand(sloth_reshape(pos, rank, shape), rank, x->shape);
  sloth_tensor *zeros = sloth_zeros(sloth_dtype_of(X), rank, sloth_shape(X));
  return give(a, 0, sloth_scatter_add(zeros, axis, index, G));
}

int grad_pad(sloth__grad_args *a) {
  const sloth__node *x = a->node;
  sloth_tensor *g = G;
  for (int d = 0; d < x->rank; d++) {
    int64_t before = x->attrs.v[d], after = x->attrs.v[x->rank + d];
    if (before || after) g = sloth_slice(g, d, before, x->shape[d] - after, 1);
  }
  return give(a, 0, g);
}

/* element (i0, i1, ...) of the view is element offset + sum(i_d stride_d) of
 * the operand. A window view (conv, pooling) gathers: each operand element
 * sums the view elements that read it (sloth__window_adjoint). Any other
 * view adds every gradient element at its flat position, atomically. */
int grad_as_strided(sloth__grad_args *a) {
  const sloth__node *x = a->node;
  int rank = x->rank, nloop;
  sloth_tensor *adj = sloth__window_adjoint(G, x, &nloop);
  if (nloop >= 0) {
    if (!adj) return sloth_last_status();
    int axes[SLOTH_MAX_RANK];
    for (int d = 0; d < nloop; d++) axes[d] = d;
    return give(a, 0, nloop ? sloth_sum(adj, axes, nloop, 0) : adj);
  }
  sloth_tensor *flat = sloth_scalar((double)x->attrs.start, SLOTH_I32);
  for (int d = 0; d < rank; d++) {
    int64_t shape[SLOTH_MAX_RANK];
    for (int e = 0; e < rank; e++) shape[e] = e == d ? x->shape[d] : 1;
    sloth_tensor *pos = sloth_mul_scalar(sloth_arange(0, (double)x->shape[d], 1, SLOTH_I32), (double)x->attrs.v[d]);
    flat = sloth_add(flat, sloth_reshape(pos, rank, shape));
  }
  int64_t n = sloth__numel(rank, x->shape), total = sloth_numel(X);
  sloth_tensor *index = sloth_reshape(sloth_expand(flat, rank, x->shape), 1, &n);
  sloth_tensor *sum = sloth_scatter_add(sloth_zeros(sloth_dtype_of(X), 1, &total), 0, index, sloth_reshape(G, 1, &n));
  return give(a, 0, sloth_reshape(sum, sloth_rank(X), sloth_shape(X)));
}

/* Each view element (k, X) of the adjoint is one element of its operand
 * (the window view's elements), so the adjoint of the adjoint is that
 * window view again, read from the gradient [loop dims..., operand
 * shape...]: view coordinate c lands at loop position k(c) and operand
 * position X(c) = origin + sum mult_d c_d along map[d]. */
int grad_window_adjoint(sloth__grad_args *a) {
  const sloth__node *n = a->node, *in = n->in[0];
  int m = 0, base_rank;
  for (int d = 0; d < in->rank; d++) m += n->attrs.axes_mask >> d & 1;
  base_rank = n->rank - m;
  const int64_t *base_shape = n->shape + m;
  int map[SLOTH_MAX_RANK];
  int64_t mult[SLOTH_MAX_RANK], origin[SLOTH_MAX_RANK], rs[SLOTH_MAX_RANK], st = 1;
  sloth__window_map(in->rank, in->shape, n->attrs.start, n->attrs.v, base_rank, base_shape, map, mult, origin);
  for (int e = n->rank - 1; e >= 0; e--) { /* row-major strides of the adjoint */
    rs[e] = st;
    st *= n->shape[e];
  }
  int64_t strides[SLOTH_MAX_RANK], offset = 0;
  for (int e = 0; e < base_rank; e++) offset += origin[e] * rs[m + e];
  for (int d = 0, k = 0; d < in->rank; d++) {
    strides[d] = map[d] >= 0 ? mult[d] * rs[m + map[d]] : 0;
    if (n->attrs.axes_mask >> d & 1) strides[d] += rs[k++];
  }
  return give(a, 0, sloth_as_strided(G, in->rank, in->shape, strides, offset));
}

/* in[1] holds the indices along attrs.axis */
int grad_gather(sloth__grad_args *a) {
  sloth_tensor *zeros = sloth_zeros(sloth_dtype_of(X), sloth_rank(X), sloth_shape(X));
  return give(a, 0, sloth_scatter_add(zeros, a->node->attrs.axis, Y, G));
}

int grad_concat(sloth__grad_args *a) {
  int axis = a->node->attrs.axis;
  int64_t n0 = sloth_dim(X, axis), n = a->node->shape[axis];
  int rc = give(a, 0, a->need[0] ? sloth_slice(G, axis, 0, n0, 1) : NULL);
  return rc ? rc : give(a, 1, a->need[1] ? sloth_slice(G, axis, n0, n, 1) : NULL);
}

/* ------------------------------------------------------------------ reductions */

/* The output gradient (or value) reshaped with the reduced axes kept as 1,
 * broadcast back over the operand's shape. */
static sloth_tensor *spread(sloth__grad_args *a, sloth_tensor *t) {
  int rank = sloth_rank(X);
  const int64_t *shape = sloth_shape(X);
  int64_t kept[SLOTH_MAX_RANK];
  for (int d = 0; d < rank; d++) kept[d] = (a->node->attrs.axes_mask >> d & 1) ? 1 : shape[d];
  return sloth_expand(sloth_reshape(t, rank, kept), rank, shape);
}

static double reduced_count(sloth__grad_args *a) {
  double n = 1;
  for (int d = 0; d < sloth_rank(X); d++)
    if (a->node->attrs.axes_mask >> d & 1) n *= (double)sloth_shape(X)[d];
  return n;
}

int grad_sum(sloth__grad_args *a) { return give(a, 0, spread(a, G)); }
int grad_mean(sloth__grad_args *a) { return give(a, 0, sloth_mul_scalar(spread(a, G), 1.0 / reduced_count(a))); }
/* the product of the others: out / x where the reduced slice has no zero;
 * with zeros, the product p of the nonzero elements goes to a zero that is
 * the only one of its slice, and 0 to every other element (out / x would be
 * 0 / 0). Both cases are p / nz, nz = x with zeros replaced by 1, where the
 * slice's zero count equals the element's own (0 or 1). */
int grad_prod(sloth__grad_args *a) {
  int axes[SLOTH_MAX_RANK], n = 0;
  for (int d = 0; d < sloth_rank(X); d++)
    if (a->node->attrs.axes_mask >> d & 1) axes[n++] = d;
  sloth_tensor *zero = sloth_eq(X, zero_like_scalar(X));
  sloth_tensor *nz = sloth_where(zero, sloth_scalar(1, sloth_dtype_of(X)), X);
  sloth_tensor *p = spread(a, sloth_prod(nz, axes, n, 1));
  sloth_tensor *count = spread(a, sloth_sum(sloth_cast(zero, SLOTH_I32), axes, n, 1));
  sloth_tensor *others = sloth_where(sloth_eq(count, sloth_cast(zero, SLOTH_I32)), sloth_div(p, nz), zero_like_scalar(X));
  return give(a, 0, sloth_mul(spread(a, G), others));
}

/* the gradient goes to the elements equal to the result, split among ties */
static int grad_extremum(sloth__grad_args *a) {
  int axes[SLOTH_MAX_RANK], n = 0;
  for (int d = 0; d < sloth_rank(X); d++)
    if (a->node->attrs.axes_mask >> d & 1) axes[n++] = d;
  sloth_tensor *hit = sloth_cast(sloth_eq(X, spread(a, OUT)), sloth_dtype_of(X));
  sloth_tensor *ties = sloth_sum(hit, axes, n, 1);
  return give(a, 0, sloth_div(sloth_mul(hit, spread(a, G)), ties));
}
int grad_max(sloth__grad_args *a) { return grad_extremum(a); }
int grad_min(sloth__grad_args *a) { return grad_extremum(a); }

/* the reverse cumulative sum: flip, cumsum, flip */
int grad_cumsum(sloth__grad_args *a) {
  int axis = a->node->attrs.axis;
  int64_t n = a->node->shape[axis];
  sloth_tensor *r = sloth_cumsum(sloth_slice(G, axis, n - 1, -n - 1, -1), axis);
  return give(a, 0, sloth_slice(r, axis, n - 1, -n - 1, -1));
}

/* in[0] indices, in[1] values: each value went to one position */
int grad_scatter_add(sloth__grad_args *a) { return give(a, 1, sloth_gather(G, a->node->attrs.axis, X)); }

/* ------------------------------------------------------------------ matrix products */

static sloth_tensor *T(sloth_tensor *t) { return sloth_transpose(t, -1, -2); }

/* Does n swap its operand's last two dims (and nothing else)? */
static bool is_transpose(const sloth__node *n) {
  if (n->op != OP_PERMUTE || n->rank < 2) return false;
  for (int d = 0; d < n->rank - 2; d++)
    if (n->attrs.perm[d] != d) return false;
  return n->attrs.perm[n->rank - 2] == n->rank - 1 && n->attrs.perm[n->rank - 1] == n->rank - 2;
}

/* dX = G Y^T, dY = X^T G (the operands share their batch dimensions:
 * ops.c broadcasts them first). For an operand that is a transpose (a linear
 * layer's x W^T), the gradient is computed as the transpose of a GEMM,
 * (Y G^T)^T or (G^T X)^T: the GEMM then writes it in the layout of the
 * tensor under the transpose (W's), and the update reads it contiguously
 * instead of through a strided gather. */
int grad_matmul(sloth__grad_args *a) {
  const sloth__node *n = a->node;
  sloth_tensor *gx = NULL, *gy = NULL;
  if (a->need[0]) gx = is_transpose(n->in[0]) ? T(sloth_matmul(Y, T(G))) : sloth_matmul(G, T(Y));
  if (a->need[1]) gy = is_transpose(n->in[1]) ? T(sloth_matmul(T(G), X)) : sloth_matmul(T(X), G);
  int rc = give(a, 0, gx);
  return rc ? rc : give(a, 1, gy);
}
