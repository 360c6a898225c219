/* ops.c - the public op constructors: validation, broadcasting, type
 * promotion and shape rules. Each builds IR nodes and runs nothing. */
#include "internal.h"
#include "strided.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ helpers */

static bool is_float(sloth_dtype dt) { return sloth__is_float(dt); }

/* bool < u8 < i32 < i64 < f16 < f32 < f64 (PyTorch's order: an integer with
 * an f16 gives f16) */
static sloth_dtype promote(sloth_dtype a, sloth_dtype b) {
  static const int rank_of[SLOTH_DTYPE_COUNT] = {[SLOTH_BOOL] = 0, [SLOTH_U8] = 1, [SLOTH_I32] = 2, [SLOTH_I64] = 3,
                                                 [SLOTH_F16] = 4, [SLOTH_F32] = 5, [SLOTH_F64] = 6};
  return rank_of[a] >= rank_of[b] ? a : b;
}

static bool valid_dtype(sloth_dtype dt) { return (int)dt >= 0 && dt < SLOTH_DTYPE_COUNT; }

static int check_shape(int rank, const int64_t *shape) {
  if (rank < 0 || rank > SLOTH_MAX_RANK) return sloth__fail(SLOTH_E_INVALID, "rank %d out of range 0..%d", rank, SLOTH_MAX_RANK);
  if (rank > 0 && !shape) return sloth__fail(SLOTH_E_INVALID, "NULL shape for rank %d", rank);
  int64_t n = 1;
  for (int i = 0; i < rank; i++) {
    if (shape[i] < 0) return sloth__fail(SLOTH_E_INVALID, "negative size %lld in dimension %d", (long long)shape[i], i);
    if (shape[i] && n > ((int64_t)1 << 56) / shape[i])
      return sloth__fail(SLOTH_E_INVALID, "shape too large: more than 2^56 elements");
    n *= shape[i];
  }
  return SLOTH_OK;
}

int sloth__norm_axis(int axis, int rank, const char *what) {
  int a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) return sloth__fail(SLOTH_E_INVALID, "%s: axis %d out of range for rank %d", what, axis, rank);
  return a;
}

static void shape_str(char *buf, size_t n, int rank, const int64_t *shape) {
  size_t used = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < rank && used < n; i++) used += (size_t)snprintf(buf + used, n - used, i ? ",%lld" : "%lld", (long long)shape[i]);
  if (used < n) snprintf(buf + used, n - used, "]");
}

static bool same_shape(const sloth__node *x, int rank, const int64_t *shape) {
  return x->rank == rank && (rank == 0 || memcmp(x->shape, shape, (size_t)rank * sizeof *shape) == 0);
}

static sloth__node *new_node(sloth__opcode op, sloth_dtype dt, int rank, const int64_t *shape, int nin,
                             sloth__node *const *in, const sloth__attrs *attrs) {
  if (sloth__dtype_supported(dt, sloth__ops[op].name) != SLOTH_OK) return NULL; /* f64 without fp64 */
  return sloth__node_new(op, dt, rank, shape, nin, in, attrs);
}

static sloth__node *reshape_node(sloth__node *x, int rank, const int64_t *shape) {
  if (same_shape(x, rank, shape)) {
    sloth__node_retain(x);
    return x;
  }
  return new_node(OP_RESHAPE, x->dtype, rank, shape, 1, &x, NULL);
}

static sloth__node *cast_node(sloth__node *x, sloth_dtype dt) {
  if (x->dtype == dt) {
    sloth__node_retain(x);
    return x;
  }
  sloth__attrs a = {0};
  a.cast_to = dt;
  return new_node(OP_CAST, dt, x->rank, x->shape, 1, &x, &a);
}

/* Broadcasts x to (rank, shape), which the caller has checked is compatible. */
static sloth__node *broadcast_node(sloth__node *x, int rank, const int64_t *shape) {
  if (same_shape(x, rank, shape)) {
    sloth__node_retain(x);
    return x;
  }
  int64_t padded[SLOTH_MAX_RANK];
  int lead = rank - x->rank;
  for (int i = 0; i < rank; i++) padded[i] = i < lead ? 1 : x->shape[i - lead];
  sloth__node *r = reshape_node(x, rank, padded);
  if (!r || rank == 0 || memcmp(padded, shape, (size_t)rank * sizeof *shape) == 0) return r;
  sloth__node *e = new_node(OP_EXPAND, x->dtype, rank, shape, 1, &r, NULL);
  sloth__node_release(r);
  return e;
}

static int broadcast_shapes(const char *what, int n, sloth__node *const *xs, int *rank, int64_t *shape) {
  int r = 0;
  for (int i = 0; i < n; i++)
    if (xs[i]->rank > r) r = xs[i]->rank;
  for (int d = 0; d < r; d++) shape[d] = 1;
  for (int i = 0; i < n; i++) {
    int lead = r - xs[i]->rank;
    for (int d = 0; d < xs[i]->rank; d++) {
      int64_t s = xs[i]->shape[d], *o = &shape[d + lead];
      if (s == *o || s == 1) continue;
      if (*o == 1) {
        *o = s;
        continue;
      }
      char a[128], b[128];
      shape_str(a, sizeof a, xs[0]->rank, xs[0]->shape);
      shape_str(b, sizeof b, xs[i]->rank, xs[i]->shape);
      return sloth__fail(SLOTH_E_SHAPE, "%s: shapes %s and %s do not broadcast", what, a, b);
    }
  }
  *rank = r;
  return SLOTH_OK;
}

/* Wraps the node in a tensor; materializes it first if its pending graph
 * grew past SLOTH_MAX_DEPTH (a loop like a = a + b without mark_step). */
static sloth_tensor *finish(sloth__node *n, uint64_t t0) {
  if (!n) return NULL;
  if (n->depth > sloth__rt.max_depth && sloth__rt.max_depth > 0) {
    sloth__count(CTR_GRAPH_TRIM, 1);
    if (sloth__sync_nodes(&n, 1) != SLOTH_OK) {
      sloth__node_release(n);
      return NULL;
    }
    n->trimmed = true;
  }
  sloth_tensor *t = sloth__tensor_wrap(n);
  sloth__count(CTR_TRACE_NS, (int64_t)(sloth__now_ns() - t0));
  return t;
}

/* Every public op runs under the lock and starts here. */
#define BEGIN()                                                                                             \
  uint64_t t0 = sloth__now_ns();                                                                           \
  sloth__lock();                                                                                           \
  sloth_tensor *result = NULL;                                                                             \
  if (sloth__ensure_device() != SLOTH_OK) goto out;
#define END()                                                                                               \
  out:                                                                                                      \
  sloth__unlock();                                                                                          \
  (void)t0;                                                                                                 \
  return result;

/* ------------------------------------------------------------------ elementwise */

static sloth_tensor *unary(sloth__opcode op, sloth_tensor *x) {
  BEGIN();
  if (!sloth__tensor_ok(x)) goto out;
  const sloth__op_info *info = &sloth__ops[op];
  sloth_dtype in_dt = x->node->dtype, out_dt = in_dt;
  /* math on integers computes in f32; f16 and f64 keep their dtype */
  if (!is_float(in_dt) && (info->rule == RULE_FLOAT || !info->int_code)) in_dt = out_dt = SLOTH_F32;
  if (info->rule == RULE_LOGIC) in_dt = out_dt = SLOTH_BOOL;
  if ((op == OP_NEG || op == OP_SIGN) && x->node->dtype == SLOTH_BOOL) {
    sloth__fail(SLOTH_E_DTYPE, "%s: not defined for bool tensors (use logical_not)", info->name);
    goto out;
  }
  sloth__node *c = cast_node(x->node, in_dt);
  if (!c) goto out;
  sloth__node *n = new_node(op, out_dt, c->rank, c->shape, 1, &c, NULL);
  sloth__node_release(c);
  result = finish(n, t0);
  END();
}

#define UNARY_FN(fn, op) \
  sloth_tensor *fn(sloth_tensor *x) { return unary(op, x); }
UNARY_FN(sloth_neg, OP_NEG)
UNARY_FN(sloth_abs, OP_ABS)
UNARY_FN(sloth_exp, OP_EXP)
UNARY_FN(sloth_log, OP_LOG)
UNARY_FN(sloth_sqrt, OP_SQRT)
UNARY_FN(sloth_rsqrt, OP_RSQRT)
UNARY_FN(sloth_sin, OP_SIN)
UNARY_FN(sloth_cos, OP_COS)
UNARY_FN(sloth_tanh, OP_TANH)
UNARY_FN(sloth_sigmoid, OP_SIGMOID)
UNARY_FN(sloth_relu, OP_RELU)
UNARY_FN(sloth_floor, OP_FLOOR)
UNARY_FN(sloth_ceil, OP_CEIL)
UNARY_FN(sloth_round, OP_ROUND)
UNARY_FN(sloth_square, OP_SQUARE)
UNARY_FN(sloth_reciprocal, OP_RECIP)
UNARY_FN(sloth_sign, OP_SIGN)
UNARY_FN(sloth_logical_not, OP_NOT)
UNARY_FN(sloth_erf, OP_ERF)
UNARY_FN(sloth_gelu, OP_GELU)
UNARY_FN(sloth_gelu_tanh, OP_GELU_TANH)
UNARY_FN(sloth_silu, OP_SILU)

/* Promotes and broadcasts operands (n of them, the first `ncond` of which are
 * conditions cast to bool), then builds the node. */
static sloth__node *elementwise(sloth__opcode op, int n, sloth__node *const *xs) {
  const sloth__op_info *info = &sloth__ops[op];
  int rank = 0;
  int64_t shape[SLOTH_MAX_RANK];
  if (broadcast_shapes(info->name, n, xs, &rank, shape) != SLOTH_OK) return NULL;
  int first = op == OP_WHERE ? 1 : 0; /* where's condition is not promoted with the values */
  sloth_dtype dt = xs[first]->dtype;
  for (int i = first + 1; i < n; i++) dt = promote(dt, xs[i]->dtype);
  if (info->rule == RULE_LOGIC) dt = SLOTH_BOOL;
  if (!is_float(dt) && (info->rule == RULE_FLOAT || !info->int_code)) dt = SLOTH_F32;
  sloth_dtype out_dt = info->rule == RULE_BOOL ? SLOTH_BOOL : dt;
  sloth__node *ops[3] = {0};
  sloth__node *r = NULL;
  for (int i = 0; i < n; i++) {
    sloth__node *c = cast_node(xs[i], (op == OP_WHERE && i == 0) ? SLOTH_BOOL : dt);
    if (!c) goto done;
    ops[i] = broadcast_node(c, rank, shape);
    sloth__node_release(c);
    if (!ops[i]) goto done;
  }
  r = new_node(op, out_dt, rank, shape, n, ops, NULL);
done:
  for (int i = 0; i < n; i++)
    if (ops[i]) sloth__node_release(ops[i]);
  return r;
}

static sloth_tensor *binary(sloth__opcode op, sloth_tensor *a, sloth_tensor *b) {
  BEGIN();
  if (!sloth__tensor_ok(a) || !sloth__tensor_ok(b)) goto out;
  sloth__node *xs[2] = {a->node, b->node};
  result = finish(elementwise(op, 2, xs), t0);
  END();
}

#define BINARY_FN(fn, op) \
  sloth_tensor *fn(sloth_tensor *a, sloth_tensor *b) { return binary(op, a, b); }
BINARY_FN(sloth_add, OP_ADD)
BINARY_FN(sloth_sub, OP_SUB)
BINARY_FN(sloth_mul, OP_MUL)
BINARY_FN(sloth_div, OP_DIV)
BINARY_FN(sloth_pow, OP_POW)
BINARY_FN(sloth_maximum, OP_MAXIMUM)
BINARY_FN(sloth_minimum, OP_MINIMUM)
BINARY_FN(sloth_eq, OP_EQ)
BINARY_FN(sloth_ne, OP_NE)
BINARY_FN(sloth_lt, OP_LT)
BINARY_FN(sloth_le, OP_LE)
BINARY_FN(sloth_gt, OP_GT)
BINARY_FN(sloth_ge, OP_GE)
BINARY_FN(sloth_logical_and, OP_AND)
BINARY_FN(sloth_logical_or, OP_OR)

/* A scalar operand is a SCALAR node: its value is a kernel argument. It takes
 * the tensor's dtype unless a fractional value meets an integer tensor. */
static sloth__node *scalar_node(double v, sloth_dtype dt) {
  sloth__node *n = new_node(OP_SCALAR, dt, 0, NULL, 0, NULL, NULL);
  if (n) n->scalar = v;
  return n;
}

static sloth_tensor *binary_scalar(sloth__opcode op, sloth_tensor *a, double s) {
  BEGIN();
  if (!sloth__tensor_ok(a)) goto out;
  sloth_dtype dt = a->node->dtype;
  if (!is_float(dt) && (s != floor(s) || !isfinite(s))) dt = SLOTH_F32;
  sloth__node *sn = scalar_node(s, dt);
  if (!sn) goto out;
  sloth__node *xs[2] = {a->node, sn};
  result = finish(elementwise(op, 2, xs), t0);
  sloth__node_release(sn);
  END();
}

sloth_tensor *sloth_add_scalar(sloth_tensor *a, double s) { return binary_scalar(OP_ADD, a, s); }
sloth_tensor *sloth_sub_scalar(sloth_tensor *a, double s) { return binary_scalar(OP_SUB, a, s); }
sloth_tensor *sloth_mul_scalar(sloth_tensor *a, double s) { return binary_scalar(OP_MUL, a, s); }
sloth_tensor *sloth_div_scalar(sloth_tensor *a, double s) { return binary_scalar(OP_DIV, a, s); }
sloth_tensor *sloth_pow_scalar(sloth_tensor *a, double s) { return binary_scalar(OP_POW, a, s); }

/* Activations with scalar parameters (kernel arguments, as above). */
static bool not_bool(const sloth_tensor *x, const char *what) {
  if (x->node->dtype != SLOTH_BOOL) return true;
  sloth__fail(SLOTH_E_DTYPE, "%s: not defined for bool tensors", what);
  return false;
}

sloth_tensor *sloth_leaky_relu(sloth_tensor *x, double slope) {
  sloth__lock();
  sloth_tensor *r = NULL;
  if (sloth__tensor_ok(x) && not_bool(x, "leaky_relu")) r = binary_scalar(OP_LEAKY_RELU, x, slope);
  sloth__unlock();
  return r;
}

sloth_tensor *sloth_clamp(sloth_tensor *x, double lo, double hi) {
  BEGIN();
  if (!sloth__tensor_ok(x) || !not_bool(x, "clamp")) goto out;
  if (isnan(lo) || isnan(hi)) {
    sloth__fail(SLOTH_E_INVALID, "clamp: bounds must not be NaN");
    goto out;
  }
  sloth_dtype dt = x->node->dtype;
  if (!is_float(dt)) { /* fractional bounds make an integer tensor f32, like the *_scalar ops */
    double dmin = dt == SLOTH_I64 ? (double)INT64_MIN : dt == SLOTH_I32 ? (double)INT32_MIN : 0.0;
    double dmax = dt == SLOTH_I64 ? (double)INT64_MAX : dt == SLOTH_I32 ? (double)INT32_MAX : 255.0; /* 2^63 saturates when passed */
    if (lo != floor(lo) && isfinite(lo)) dt = SLOTH_F32;
    if (hi != floor(hi) && isfinite(hi)) dt = SLOTH_F32;
    if (dt != SLOTH_F32) { /* integer bounds: clipped to the dtype's range, so infinities are its limits */
      lo = lo < dmin ? dmin : lo > dmax ? dmax : lo;
      hi = hi < dmin ? dmin : hi > dmax ? dmax : hi;
    }
  }
  sloth__node *xs[3] = {x->node, scalar_node(lo, dt), scalar_node(hi, dt)};
  if (xs[1] && xs[2]) result = finish(elementwise(OP_CLAMP, 3, xs), t0);
  for (int i = 1; i < 3; i++)
    if (xs[i]) sloth__node_release(xs[i]);
  END();
}

sloth_tensor *sloth_where(sloth_tensor *cond, sloth_tensor *a, sloth_tensor *b) {
  BEGIN();
  if (!sloth__tensor_ok(cond) || !sloth__tensor_ok(a) || !sloth__tensor_ok(b)) goto out;
  sloth__node *xs[3] = {cond->node, a->node, b->node};
  result = finish(elementwise(OP_WHERE, 3, xs), t0);
  END();
}

sloth_tensor *sloth_cast(sloth_tensor *x, sloth_dtype dt) {
  BEGIN();
  if (!sloth__tensor_ok(x)) goto out;
  if (!valid_dtype(dt)) {
    sloth__fail(SLOTH_E_DTYPE, "cast: unknown dtype %d", (int)dt);
    goto out;
  }
  result = finish(cast_node(x->node, dt), t0);
  END();
}

sloth_tensor *sloth_detach(sloth_tensor *x) {
  BEGIN();
  if (!sloth__tensor_ok(x)) goto out;
  sloth__node *n = x->node;
  result = finish(new_node(OP_DETACH, n->dtype, n->rank, n->shape, 1, &n, NULL), t0);
  END();
}

/* ------------------------------------------------------------------ in-place update */

/* dst's tensor now names value's expression (cast and broadcast to dst's
 * dtype and shape). When dst held computed elements, the expression's node
 * records them as its target: the executor writes the result into that
 * buffer when nothing else still needs the old elements. A value that is
 * data already, or the target of another assignment, is copied (an identity
 * node), so every target has its own writer. */
int sloth_assign(sloth_tensor *dst, sloth_tensor *value) {
  sloth__lock();
  int rc = SLOTH_OK;
  sloth__node *v = NULL, *c = NULL;
  if (!sloth__tensor_ok(dst) || !sloth__tensor_ok(value)) {
    rc = sloth_last_status();
    goto out;
  }
  sloth__node *d = dst->node, *xs[2] = {d, value->node};
  int rank;
  int64_t shape[SLOTH_MAX_RANK];
  if ((rc = broadcast_shapes("assign", 2, xs, &rank, shape)) != SLOTH_OK) goto out;
  if (!same_shape(d, rank, shape)) {
    char a[128], b[128];
    shape_str(a, sizeof a, d->rank, d->shape);
    shape_str(b, sizeof b, value->node->rank, value->node->shape);
    rc = sloth__fail(SLOTH_E_SHAPE, "assign: a value of shape %s does not fit a tensor of shape %s", b, a);
    goto out;
  }
  if (!(c = cast_node(value->node, d->dtype)) || !(v = broadcast_node(c, d->rank, d->shape))) {
    rc = sloth_last_status() ? sloth_last_status() : SLOTH_E_NOMEM;
    goto out;
  }
  if (sloth__node_is_leaf(v) || v->target || v == d) {
    sloth__attrs a = {0};
    a.cast_to = v->dtype;
    sloth__node *copy = new_node(OP_CAST, v->dtype, v->rank, v->shape, 1, &v, &a);
    if (!copy) {
      rc = SLOTH_E_NOMEM;
      goto out;
    }
    sloth__node_release(v);
    v = copy;
  }
  sloth__node *target = NULL;
  if (d->materialized && d->buf) target = d; /* computed elements: write over them */
  else if (d->target) { /* assigned again before a sync: the new value writes instead */
    target = d->target;
    d->target = NULL;
  }
  if (target && target == d) sloth__node_retain(target);
  v->target = target;
  dst->node = v; /* the tensor takes v's reference */
  v = NULL;
  sloth__node_release(d);
out:
  if (c) sloth__node_release(c);
  if (v) sloth__node_release(v);
  sloth__unlock();
  return rc;
}

/* ------------------------------------------------------------------ creation */

sloth_tensor *sloth_from_host(const void *data, sloth_dtype dt, int rank, const int64_t *shape) {
  BEGIN();
  if (!valid_dtype(dt)) {
    sloth__fail(SLOTH_E_DTYPE, "from_host: unknown dtype %d", (int)dt);
    goto out;
  }
  if (sloth__dtype_supported(dt, "from_host") != SLOTH_OK) goto out; /* before any transfer */
  if (check_shape(rank, shape) != SLOTH_OK) goto out;
  size_t bytes = (size_t)sloth__numel(rank, shape) * sloth_dtype_size(dt);
  if (bytes && !data) {
    sloth__fail(SLOTH_E_INVALID, "from_host: NULL data");
    goto out;
  }
  sloth__dbuf *b = sloth__buffer_get(bytes);
  if (bytes && !b) goto out;
  if (bytes && sloth__rt.backend->write(sloth__rt.dev, b->mem, 0, data, bytes) != SLOTH_OK) {
    sloth__buffer_put(b);
    goto out;
  }
  sloth__count(CTR_BYTES_TO_DEVICE, (int64_t)bytes);
  sloth__node *n = new_node(OP_DATA, dt, rank, shape, 0, NULL, NULL);
  if (!n) {
    sloth__buffer_put(b);
    goto out;
  }
  sloth__node_materialize(n, b);
  result = finish(n, t0);
  END();
}

sloth_tensor *sloth_scalar(double value, sloth_dtype dt) {
  BEGIN();
  if (!valid_dtype(dt)) {
    sloth__fail(SLOTH_E_DTYPE, "scalar: unknown dtype %d", (int)dt);
    goto out;
  }
  result = finish(scalar_node(value, dt), t0);
  END();
}

sloth_tensor *sloth_full(double value, sloth_dtype dt, int rank, const int64_t *shape) {
  BEGIN();
  if (!valid_dtype(dt)) {
    sloth__fail(SLOTH_E_DTYPE, "full: unknown dtype %d", (int)dt);
    goto out;
  }
  if (check_shape(rank, shape) != SLOTH_OK) goto out;
  sloth__node *s = scalar_node(value, dt);
  if (!s) goto out;
  result = finish(broadcast_node(s, rank, shape), t0);
  sloth__node_release(s);
  END();
}

sloth_tensor *sloth_zeros(sloth_dtype dt, int rank, const int64_t *shape) { return sloth_full(0.0, dt, rank, shape); }
sloth_tensor *sloth_ones(sloth_dtype dt, int rank, const int64_t *shape) { return sloth_full(1.0, dt, rank, shape); }

sloth_tensor *sloth_arange(double start, double stop, double step, sloth_dtype dt) {
  BEGIN();
  if (!valid_dtype(dt) || dt == SLOTH_BOOL) {
    sloth__fail(SLOTH_E_DTYPE, "arange: dtype must not be bool");
    goto out;
  }
  if (step == 0 || !isfinite(start) || !isfinite(stop) || !isfinite(step)) {
    sloth__fail(SLOTH_E_INVALID, "arange: step must be non-zero and bounds finite");
    goto out;
  }
  double len = ceil((stop - start) / step);
  int64_t n = len > 0 ? (int64_t)len : 0;
  /* f16: start + i * step in f32, rounded once (an f16 step would be off) */
  sloth_dtype ct = dt == SLOTH_F16 ? SLOTH_F32 : dt;
  sloth__node *in[2] = {scalar_node(start, ct), scalar_node(step, ct)};
  if (in[0] && in[1]) {
    sloth__node *a = new_node(OP_ARANGE, ct, 1, &n, 2, in, NULL), *c = a ? cast_node(a, dt) : NULL;
    if (a) sloth__node_release(a);
    result = finish(c, t0);
  }
  for (int i = 0; i < 2; i++)
    if (in[i]) sloth__node_release(in[i]);
  END();
}

/* ------------------------------------------------------------------ views */

sloth_tensor *sloth_reshape(sloth_tensor *x, int rank, const int64_t *shape) {
  BEGIN();
  if (!sloth__tensor_ok(x)) goto out;
  if (rank < 0 || rank > SLOTH_MAX_RANK || (rank && !shape)) {
    sloth__fail(SLOTH_E_INVALID, "reshape: bad rank %d or NULL shape", rank);
    goto out;
  }
  int64_t s[SLOTH_MAX_RANK], known = 1;
  int infer = -1;
  for (int i = 0; i < rank; i++) {
    s[i] = shape[i];
    if (s[i] == -1 && infer < 0) infer = i;
    else if (s[i] < 0) {
      sloth__fail(SLOTH_E_INVALID, "reshape: bad size %lld in dimension %d", (long long)s[i], i);
      goto out;
    } else known *= s[i];
  }
  int64_t n = sloth__numel(x->node->rank, x->node->shape);
  if (infer >= 0) {
    if (known == 0 || n % known) {
      sloth__fail(SLOTH_E_SHAPE, "reshape: cannot infer dimension %d for %lld elements", infer, (long long)n);
      goto out;
    }
    s[infer] = n / known;
  } else if (known != n) {
    char a[128], b[128];
    shape_str(a, sizeof a, x->node->rank, x->node->shape);
    shape_str(b, sizeof b, rank, s);
    sloth__fail(SLOTH_E_SHAPE, "reshape: %s (%lld elements) cannot become %s", a, (long long)n, b);
    goto out;
  }
  result = finish(reshape_node(x->node, rank, s), t0);
  END();
}

sloth_tensor *sloth_permute(sloth_tensor *x, const int *perm) {
  BEGIN();
  if (!sloth__tensor_ok(x)) goto out;
  int rank = x->node->rank;
  if (rank && !perm) {
    sloth__fail(SLOTH_E_INVALID, "permute: NULL permutation");
    goto out;
  }
  sloth__attrs a = {0};
  int64_t shape[SLOTH_MAX_RANK];
  unsigned seen = 0;
  bool identity = true;
  for (int d = 0; d < rank; d++) {
    int p = perm[d] < 0 ? perm[d] + rank : perm[d];
    if (p < 0 || p >= rank || (seen >> p & 1)) {
      sloth__fail(SLOTH_E_INVALID, "permute: entry %d (%d) is out of range or repeated", d, perm[d]);
      goto out;
    }
    seen |= 1u << p;
    a.perm[d] = p;
    shape[d] = x->node->shape[p];
    identity &= p == d;
  }
  if (identity) {
    sloth__node_retain(x->node);
    result = finish(x->node, t0);
  } else {
    result = finish(new_node(OP_PERMUTE, x->node->dtype, rank, shape, 1, &x->node, &a), t0);
  }
  END();
}

sloth_tensor *sloth_transpose(sloth_tensor *x, int axis0, int axis1) {
  sloth__lock();
  int perm[SLOTH_MAX_RANK];
  sloth_tensor *r = NULL;
  if (sloth__tensor_ok(x)) {
    int rank = x->node->rank;
    int a = sloth__norm_axis(axis0, rank, "transpose"), b = a < 0 ? a : sloth__norm_axis(axis1, rank, "transpose");
    if (a >= 0 && b >= 0) {
      for (int d = 0; d < rank; d++) perm[d] = d;
      perm[a] = b;
      perm[b] = a;
      r = sloth_permute(x, perm);
    }
  }
  sloth__unlock();
  return r;
}

sloth_tensor *sloth_expand(sloth_tensor *x, int rank, const int64_t *shape) {
  BEGIN();
  if (!sloth__tensor_ok(x)) goto out;
  sloth__node *n = x->node;
  if (rank < n->rank || rank > SLOTH_MAX_RANK || (rank && !shape)) {
    sloth__fail(SLOTH_E_SHAPE, "expand: target rank %d is below the tensor's rank %d", rank, n->rank);
    goto out;
  }
  int64_t s[SLOTH_MAX_RANK];
  int lead = rank - n->rank;
  for (int d = 0; d < rank; d++) {
    int64_t have = d < lead ? 1 : n->shape[d - lead];
    s[d] = shape[d] == -1 && d >= lead ? have : shape[d];
    if (s[d] < 0 || (have != 1 && have != s[d])) {
      sloth__fail(SLOTH_E_SHAPE, "expand: dimension %d of size %lld cannot become %lld", d, (long long)have, (long long)shape[d]);
      goto out;
    }
  }
  result = finish(broadcast_node(n, rank, s), t0);
  END();
}

sloth_tensor *sloth_slice(sloth_tensor *x, int axis, int64_t start, int64_t stop, int64_t step) {
  BEGIN();
  if (!sloth__tensor_ok(x)) goto out;
  sloth__node *n = x->node;
  int a = sloth__norm_axis(axis, n->rank, "slice");
  if (a < 0) goto out;
  if (step == 0) {
    sloth__fail(SLOTH_E_INVALID, "slice: step must not be 0");
    goto out;
  }
  /* Python's slice.indices() */
  int64_t len = n->shape[a];
  int64_t lo = step > 0 ? 0 : -1, hi = step > 0 ? len : len - 1;
  if (start < 0) start += len;
  if (stop < 0) stop += len;
  start = start < lo ? lo : start > hi ? hi : start;
  stop = stop < lo ? lo : stop > hi ? hi : stop;
  /* CPython's count, which cannot overflow for any step (|step| <= INT64_MAX) */
  if (step < -INT64_MAX) step = -INT64_MAX;
  int64_t count = step > 0 ? (start < stop ? (stop - start - 1) / step + 1 : 0) : (stop < start ? (start - stop - 1) / -step + 1 : 0);
  if (count == 0) start = 0;
  int64_t shape[SLOTH_MAX_RANK];
  memcpy(shape, n->shape, sizeof shape);
  shape[a] = count;
  if (count == len && step == 1) {
    sloth__node_retain(n);
    result = finish(n, t0);
    goto out;
  }
  sloth__attrs at = {0};
  at.axis = a;
  at.start = start;
  at.step = step;
  result = finish(new_node(OP_SLICE, n->dtype, n->rank, shape, 1, &n, &at), t0);
  END();
}

sloth_tensor *sloth_squeeze(sloth_tensor *x, int axis) {
  BEGIN();
  if (!sloth__tensor_ok(x)) goto out;
  sloth__node *n = x->node;
  int a = sloth__norm_axis(axis, n->rank, "squeeze");
  if (a < 0) goto out;
  if (n->shape[a] != 1) {
    sloth__fail(SLOTH_E_SHAPE, "squeeze: axis %d has size %lld, not 1", axis, (long long)n->shape[a]);
    goto out;
  }
  int64_t s[SLOTH_MAX_RANK];
  int r = 0;
  for (int d = 0; d < n->rank; d++)
    if (d != a) s[r++] = n->shape[d];
  result = finish(reshape_node(n, r, s), t0);
  END();
}

sloth_tensor *sloth_unsqueeze(sloth_tensor *x, int axis) {
  BEGIN();
  if (!sloth__tensor_ok(x)) goto out;
  sloth__node *n = x->node;
  if (n->rank == SLOTH_MAX_RANK) {
    sloth__fail(SLOTH_E_INVALID, "unsqueeze: rank would exceed %d", SLOTH_MAX_RANK);
    goto out;
  }
  int a = sloth__norm_axis(axis, n->rank + 1, "unsqueeze");
  if (a < 0) goto out;
  int64_t s[SLOTH_MAX_RANK];
  for (int d = 0, i = 0; d <= n->rank; d++) s[d] = d == a ? 1 : n->shape[i++];
  result = finish(reshape_node(n, n->rank + 1, s), t0);
  END();
}

sloth_tensor *sloth_flatten(sloth_tensor *x, int start_axis, int end_axis) {
  BEGIN();
  if (!sloth__tensor_ok(x)) goto out;
  sloth__node *n = x->node;
  if (n->rank == 0) {
    int64_t one = 1;
    result = finish(reshape_node(n, 1, &one), t0);
    goto out;
  }
  int a = sloth__norm_axis(start_axis, n->rank, "flatten"), b = a < 0 ? a : sloth__norm_axis(end_axis, n->rank, "flatten");
  if (a < 0 || b < 0) goto out;
  if (b < a) {
    sloth__fail(SLOTH_E_INVALID, "flatten: start axis %d is after end axis %d", start_axis, end_axis);
    goto out;
  }
  int64_t s[SLOTH_MAX_RANK];
  int r = 0;
  for (int d = 0; d < n->rank; d++) {
    if (d <= a || d > b) s[r++] = n->shape[d];
    else s[r - 1] *= n->shape[d];
  }
  result = finish(reshape_node(n, r, s), t0);
  END();
}

sloth_tensor *sloth_pad(sloth_tensor *x, const int64_t *pads, double value) {
  BEGIN();
  if (!sloth__tensor_ok(x)) goto out;
  sloth__node *n = x->node;
  if (n->rank && !pads) {
    sloth__fail(SLOTH_E_INVALID, "pad: NULL pads");
    goto out;
  }
  sloth__attrs at = {0};
  int64_t shape[SLOTH_MAX_RANK];
  bool any = false;
  for (int d = 0; d < n->rank; d++) {
    int64_t b = pads[2 * d], a = pads[2 * d + 1];
    if (b < 0 || a < 0 || b > ((int64_t)1 << 40) || a > ((int64_t)1 << 40)) {
      sloth__fail(SLOTH_E_INVALID, "pad: pads of dimension %d (%lld, %lld) must be >= 0", d, (long long)b, (long long)a);
      goto out;
    }
    at.v[d] = b;
    at.v[n->rank + d] = a;
    shape[d] = n->shape[d] + b + a;
    any |= a || b;
  }
  if (check_shape(n->rank, shape) != SLOTH_OK) goto out;
  sloth__node *v = scalar_node(value, n->dtype);
  if (!v) goto out;
  if (!any) {
    sloth__node_retain(n);
    result = finish(n, t0);
  } else if (sloth__numel(n->rank, n->shape) == 0) {
    result = finish(broadcast_node(v, n->rank, shape), t0); /* nothing to read: all padding */
  } else {
    sloth__node *in[2] = {n, v};
    result = finish(new_node(OP_PAD, n->dtype, n->rank, shape, 2, in, &at), t0);
  }
  sloth__node_release(v);
  END();
}

sloth_tensor *sloth_as_strided(sloth_tensor *x, int rank, const int64_t *shape, const int64_t *strides, int64_t offset) {
  BEGIN();
  if (!sloth__tensor_ok(x)) goto out;
  if (check_shape(rank, shape) != SLOTH_OK) goto out;
  if (rank && !strides) {
    sloth__fail(SLOTH_E_INVALID, "as_strided: NULL strides");
    goto out;
  }
  int64_t numel = sloth__numel(x->node->rank, x->node->shape), last = offset;
  bool empty = sloth__numel(rank, shape) == 0;
  sloth__attrs at = {0};
  at.start = offset;
  for (int d = 0; d < rank; d++) {
    if (strides[d] < 0) {
      sloth__fail(SLOTH_E_INVALID, "as_strided: negative stride %lld in dimension %d", (long long)strides[d], d);
      goto out;
    }
    at.v[d] = strides[d];
    if (!empty) last += (shape[d] - 1) * strides[d];
  }
  if (!empty && (offset < 0 || last >= numel)) {
    sloth__fail(SLOTH_E_INVALID, "as_strided: the view reaches element %lld of a tensor of %lld", (long long)last,
                (long long)numel);
    goto out;
  }
  result = finish(new_node(OP_AS_STRIDED, x->node->dtype, rank, shape, 1, &x->node, &at), t0);
  END();
}

/* The transpose of an as_strided window view (its gradient without
 * atomics): g has the view's shape; the result is [loop dims..., operand
 * shape...], where element (k, X) is g at the view coordinates that reach
 * operand coordinates X with the looped view dims at k, or 0 where none
 * does. Summing over the loop dims gives the gradient of the operand: each
 * operand element gathers its windows (col2im) instead of every window
 * element adding itself atomically. Where an operand dim is reached by
 * several view dims (a window offset and a window position), the longest
 * is solved for, the offset of a non-overlapping window is the remainder,
 * and others are looped (sloth__window_roles). *nloop: the number of loop
 * dims, or -1 (and NULL, no error) when the view is not a window. */
sloth_tensor *sloth__window_adjoint(sloth_tensor *g, const sloth__node *view, int *nloop) {
  *nloop = -1;
  const sloth__node *base = view->in[0];
  int map[SLOTH_MAX_RANK], partner[SLOTH_MAX_RANK];
  int64_t mult[SLOTH_MAX_RANK], origin[SLOTH_MAX_RANK];
  sloth__window_role role[SLOTH_MAX_RANK];
  if (view->op != OP_AS_STRIDED || !sloth__window_roles(view->rank, view->shape, view->attrs.start, view->attrs.v,
                                                         base->rank, base->shape, map, mult, origin, role, partner))
    return NULL;
  sloth__attrs at = {0};
  at.start = view->attrs.start;
  memcpy(at.v, view->attrs.v, sizeof at.v);
  int64_t shape[SLOTH_MAX_RANK];
  int m = 0;
  for (int d = 0; d < view->rank; d++)
    if (role[d] == WINDOW_LOOPED) {
      at.axes_mask |= 1u << d;
      shape[m++] = view->shape[d];
    }
  if (m + base->rank > SLOTH_MAX_RANK) return NULL;
  memcpy(shape + m, base->shape, (size_t)base->rank * sizeof *shape);
  *nloop = m;
  BEGIN();
  if (!sloth__tensor_ok(g)) goto out;
  result = finish(new_node(OP_WINDOW_ADJOINT, g->node->dtype, m + base->rank, shape, 1, &g->node, &at), t0);
  END();
}

/* ------------------------------------------------------------------ indexing */

static bool is_index_dtype(sloth_dtype dt) { return dt == SLOTH_I32 || dt == SLOTH_I64 || dt == SLOTH_U8; }

/* Validates indices for x along axis (gather, scatter_add): an integer
 * tensor of x's rank, no larger than x outside the axis. Returns the
 * normalized axis, or a negative status. */
static int check_indices(const char *what, const sloth__node *n, int axis, const sloth__node *i) {
  int a = sloth__norm_axis(axis, n->rank, what);
  if (a < 0) return a;
  if (!is_index_dtype(i->dtype))
    return sloth__fail(SLOTH_E_DTYPE, "%s: indices must be i32, i64 or u8, not %s", what, sloth_dtype_name(i->dtype));
  if (i->rank != n->rank)
    return sloth__fail(SLOTH_E_SHAPE, "%s: indices of rank %d for a tensor of rank %d", what, i->rank, n->rank);
  for (int d = 0; d < n->rank; d++)
    if (d != a && i->shape[d] > n->shape[d])
      return sloth__fail(SLOTH_E_SHAPE, "%s: indices dimension %d (%lld) exceeds the tensor's (%lld)", what, d,
                         (long long)i->shape[d], (long long)n->shape[d]);
  if (n->shape[a] == 0 && sloth__numel(i->rank, i->shape) > 0)
    return sloth__fail(SLOTH_E_INVALID, "%s: every index is out of range of an empty axis", what);
  return a;
}

/* out[c] = x[c with c[axis] replaced by idx[c]]; idx has the output's shape,
 * no larger than x's in the other dims. */
static sloth__node *gather_node(sloth__node *x, int axis, sloth__node *idx) {
  sloth__attrs at = {0};
  at.axis = axis;
  sloth__node *in[2] = {x, idx};
  return new_node(OP_GATHER, x->dtype, idx->rank, idx->shape, 2, in, &at);
}

sloth_tensor *sloth_gather(sloth_tensor *x, int axis, sloth_tensor *index) {
  BEGIN();
  if (!sloth__tensor_ok(x) || !sloth__tensor_ok(index)) goto out;
  sloth__node *n = x->node, *i = index->node;
  int a = check_indices("gather", n, axis, i);
  if (a < 0) goto out;
  result = finish(gather_node(n, a, i), t0);
  END();
}

sloth_tensor *sloth_index_select(sloth_tensor *x, int axis, sloth_tensor *index) {
  BEGIN();
  if (!sloth__tensor_ok(x) || !sloth__tensor_ok(index)) goto out;
  sloth__node *n = x->node, *i = index->node;
  int a = sloth__norm_axis(axis, n->rank, "index_select");
  if (a < 0) goto out;
  if (!is_index_dtype(i->dtype) || i->rank != 1) {
    sloth__fail(i->rank != 1 ? SLOTH_E_SHAPE : SLOTH_E_DTYPE, "index_select: indices must be a 1-D i32, i64 or u8 tensor");
    goto out;
  }
  if (n->shape[a] == 0 && i->shape[0] > 0) {
    sloth__fail(SLOTH_E_INVALID, "index_select: every index is out of range of an empty axis");
    goto out;
  }
  /* the indices, laid along the axis and broadcast over the other dims */
  int64_t along[SLOTH_MAX_RANK], shape[SLOTH_MAX_RANK];
  for (int d = 0; d < n->rank; d++) {
    along[d] = d == a ? i->shape[0] : 1;
    shape[d] = d == a ? i->shape[0] : n->shape[d];
  }
  sloth__node *r = reshape_node(i, n->rank, along), *e = r ? broadcast_node(r, n->rank, shape) : NULL;
  if (e) result = finish(gather_node(n, a, e), t0);
  if (r) sloth__node_release(r);
  if (e) sloth__node_release(e);
  END();
}

sloth_tensor *sloth_embedding(sloth_tensor *weight, sloth_tensor *ids) {
  sloth__lock();
  sloth_tensor *r = NULL;
  if (sloth__tensor_ok(weight) && sloth__tensor_ok(ids)) {
    if (weight->node->rank != 2) sloth__fail(SLOTH_E_SHAPE, "embedding: weight must be [num, dim]");
    else if (ids->node->rank >= SLOTH_MAX_RANK) sloth__fail(SLOTH_E_SHAPE, "embedding: ids of rank %d are too many", ids->node->rank);
    else {
      int64_t n = sloth__numel(ids->node->rank, ids->node->shape), shape[SLOTH_MAX_RANK];
      memcpy(shape, ids->node->shape, sizeof shape);
      shape[ids->node->rank] = weight->node->shape[1];
      sloth_scope_begin();
      sloth_tensor *rows = sloth_index_select(weight, 0, sloth_reshape(ids, 1, &n));
      r = sloth_keep(sloth_reshape(rows, ids->node->rank + 1, shape));
      sloth_scope_end();
    }
  }
  sloth__unlock();
  return r;
}

sloth_tensor *sloth_concat(sloth_tensor *const *xs, int n, int axis) {
  BEGIN();
  if (n < 1 || !xs) {
    sloth__fail(SLOTH_E_INVALID, "concat: needs at least one tensor");
    goto out;
  }
  for (int k = 0; k < n; k++)
    if (!sloth__tensor_ok(xs[k])) goto out;
  sloth__node *first = xs[0]->node;
  int a = sloth__norm_axis(axis, first->rank, "concat");
  if (a < 0) goto out;
  sloth_dtype dt = first->dtype;
  for (int k = 1; k < n; k++) {
    sloth__node *x = xs[k]->node;
    dt = promote(dt, x->dtype);
    bool fits = x->rank == first->rank;
    for (int d = 0; fits && d < x->rank; d++) fits = d == a || x->shape[d] == first->shape[d];
    if (!fits) {
      char s0[128], s1[128];
      shape_str(s0, sizeof s0, first->rank, first->shape);
      shape_str(s1, sizeof s1, x->rank, x->shape);
      sloth__fail(SLOTH_E_SHAPE, "concat: %s and %s differ outside axis %d", s0, s1, a);
      goto out;
    }
  }
  /* a chain of binary concats; empty pieces are skipped */
  sloth__node *acc = NULL;
  for (int k = 0; k < n; k++) {
    sloth__node *x = cast_node(xs[k]->node, dt);
    if (!x) break;
    if (!acc) {
      acc = x;
      continue;
    }
    if (x->shape[a] == 0 || acc->shape[a] == 0) {
      sloth__node *keep = x->shape[a] == 0 ? acc : x;
      sloth__node_retain(keep);
      sloth__node_release(acc), sloth__node_release(x);
      acc = keep;
      continue;
    }
    int64_t shape[SLOTH_MAX_RANK];
    memcpy(shape, acc->shape, sizeof shape);
    shape[a] += x->shape[a];
    sloth__attrs at = {0};
    at.axis = a;
    sloth__node *in[2] = {acc, x};
    sloth__node *c = new_node(OP_CONCAT, dt, acc->rank, shape, 2, in, &at);
    sloth__node_release(acc), sloth__node_release(x);
    acc = c;
    if (!acc) break;
  }
  if (acc) result = finish(acc, t0);
  END();
}

sloth_tensor *sloth_stack(sloth_tensor *const *xs, int n, int axis) {
  sloth__lock();
  sloth_tensor *r = NULL;
  if (n < 1 || !xs) sloth__fail(SLOTH_E_INVALID, "stack: needs at least one tensor");
  else if (sloth__tensor_ok(xs[0])) {
    int rank = xs[0]->node->rank;
    int a = axis < 0 ? axis + rank + 1 : axis;
    for (int k = 1; k < n && !r; k++) {
      if (!sloth__tensor_ok(xs[k])) goto done;
      if (xs[k]->node->rank != rank || memcmp(xs[k]->node->shape, xs[0]->node->shape, (size_t)rank * sizeof(int64_t))) {
        sloth__fail(SLOTH_E_SHAPE, "stack: tensor %d has another shape than tensor 0", k);
        goto done;
      }
    }
    sloth_tensor **u = sloth__xmalloc((size_t)n * sizeof *u);
    if (!u) goto done;
    sloth_scope_begin();
    for (int k = 0; k < n; k++) u[k] = sloth_unsqueeze(xs[k], a);
    r = sloth_keep(sloth_concat(u, n, a));
    sloth_scope_end();
    free(u);
  }
done:
  sloth__unlock();
  return r;
}

sloth_tensor *sloth_scatter_add(sloth_tensor *x, int axis, sloth_tensor *index, sloth_tensor *src) {
  BEGIN();
  if (!sloth__tensor_ok(x) || !sloth__tensor_ok(index) || !sloth__tensor_ok(src)) goto out;
  sloth__node *n = x->node, *i = index->node;
  int a = check_indices("scatter_add", n, axis, i);
  if (a < 0) goto out;
  /* atomic adds on f32, f64, i32 and i64: smaller integers accumulate in
   * i32, f16 in f32 (cast back at the end) */
  sloth_dtype out_dt = promote(n->dtype, src->node->dtype), dt = out_dt;
  if (dt == SLOTH_F16) dt = SLOTH_F32;
  else if (!is_float(dt) && dt != SLOTH_I64) dt = out_dt = SLOTH_I32;
  sloth__node *pair[2] = {i, src->node};
  int r;
  int64_t shape[SLOTH_MAX_RANK];
  if (broadcast_shapes("scatter_add", 2, pair, &r, shape) != SLOTH_OK) goto out;
  if (r != i->rank || memcmp(shape, i->shape, (size_t)r * sizeof *shape) != 0) {
    sloth__fail(SLOTH_E_SHAPE, "scatter_add: values must broadcast to the indices' shape");
    goto out;
  }
  sloth__node *cs = cast_node(src->node, dt), *bs = cs ? broadcast_node(cs, i->rank, i->shape) : NULL;
  sloth__node *cx = cast_node(n, dt);
  if (bs && cx) {
    sloth__attrs at = {0};
    at.axis = a;
    sloth__node *in[2] = {i, bs};
    sloth__node *sum = new_node(OP_SCATTER_ADD, dt, n->rank, n->shape, 2, in, &at);
    if (sum) {
      sloth__node *xs[2] = {cx, sum};
      sloth__node *r = new_node(OP_ADD, dt, n->rank, n->shape, 2, xs, NULL), *rc = r ? cast_node(r, out_dt) : NULL;
      result = finish(rc, t0);
      if (r) sloth__node_release(r);
      sloth__node_release(sum);
    }
  }
  if (cs) sloth__node_release(cs);
  if (bs) sloth__node_release(bs);
  if (cx) sloth__node_release(cx);
  END();
}

sloth_tensor *sloth_cumsum(sloth_tensor *x, int axis) {
  BEGIN();
  if (!sloth__tensor_ok(x)) goto out;
  sloth__node *n = x->node;
  int a = sloth__norm_axis(axis, n->rank, "cumsum");
  if (a < 0) goto out;
  sloth_dtype dt = is_float(n->dtype) || n->dtype == SLOTH_I64 ? n->dtype : SLOTH_I32; /* f16 sums in f32 in the kernel */
  sloth__node *c = cast_node(n, dt);
  if (!c) goto out;
  sloth__attrs at = {0};
  at.axis = a;
  result = finish(new_node(OP_CUMSUM, dt, n->rank, n->shape, 1, &c, &at), t0);
  sloth__node_release(c);
  END();
}

/* ------------------------------------------------------------------ sorting */

sloth_tensor *sloth_argsort(sloth_tensor *x, int axis, int descending) {
  BEGIN();
  if (!sloth__tensor_ok(x)) goto out;
  sloth__node *n = x->node;
  int a = sloth__norm_axis(axis, n->rank, "argsort");
  if (a < 0) goto out;
  sloth__attrs at = {0};
  at.axis = a;
  at.descending = descending != 0;
  result = finish(new_node(OP_ARGSORT, SLOTH_I32, n->rank, n->shape, 1, &n, &at), t0);
  END();
}

/* The values of x at the first k positions of its argsort (k < 0: all),
 * and those positions. */
static sloth_tensor *sorted(const char *what, sloth_tensor *x, int64_t k, int axis, int descending, sloth_tensor **indices) {
  if (indices) *indices = NULL;
  if (!sloth__tensor_valid(x)) return NULL;
  int a = sloth__norm_axis(axis, sloth_rank(x), what);
  if (a < 0) return NULL;
  if (k > sloth_dim(x, a)) {
    sloth__fail(SLOTH_E_INVALID, "%s: k = %lld but the axis has %lld elements", what, (long long)k, (long long)sloth_dim(x, a));
    return NULL;
  }
  sloth_scope_begin();
  sloth_tensor *pos = sloth_argsort(x, a, descending);
  if (k >= 0) pos = sloth_slice(pos, a, 0, k, 1);
  sloth_tensor *values = sloth_keep(sloth_gather(x, a, pos));
  if (values && indices) *indices = sloth_keep(pos);
  sloth_scope_end();
  return values;
}

sloth_tensor *sloth_sort(sloth_tensor *x, int axis, int descending, sloth_tensor **indices) {
  return sorted("sort", x, -1, axis, descending, indices);
}

sloth_tensor *sloth_topk(sloth_tensor *x, int64_t k, int axis, int largest, sloth_tensor **indices) {
  if (k < 0) {
    if (indices) *indices = NULL;
    sloth__fail(SLOTH_E_INVALID, "topk: k = %lld must be >= 0", (long long)k);
    return NULL;
  }
  return sorted("topk", x, k, axis, largest, indices);
}

/* ------------------------------------------------------------------ reductions */

static sloth_tensor *reduce(sloth__opcode op, sloth_tensor *x, const int *axes, int naxes, int keepdim) {
  BEGIN();
  if (!sloth__tensor_ok(x)) goto out;
  sloth__node *n = x->node;
  const char *name = sloth__ops[op].name;
  if (naxes < 0 || (naxes > 0 && !axes)) {
    sloth__fail(SLOTH_E_INVALID, "%s: bad axes", name);
    goto out;
  }
  uint32_t mask = 0;
  for (int i = 0; i < naxes; i++) {
    int a = sloth__norm_axis(axes[i], n->rank, name);
    if (a < 0) goto out;
    if (mask >> a & 1) {
      sloth__fail(SLOTH_E_INVALID, "%s: axis %d repeated", name, axes[i]);
      goto out;
    }
    mask |= 1u << a;
  }
  if (naxes == 0) mask = (uint32_t)((1u << n->rank) - 1);
  bool arg = op == OP_ARGMAX || op == OP_ARGMIN;
  for (int d = 0; d < n->rank; d++)
    if ((mask >> d & 1) && n->shape[d] == 0 && (arg || op == OP_MAX || op == OP_MIN)) {
      sloth__fail(SLOTH_E_SHAPE, "%s: reduction over an empty axis %d has no identity", name, d);
      goto out;
    }
  sloth_dtype in_dt = n->dtype, out_dt;
  /* f16 accumulates in f32 in the kernel and stays f16 */
  if (op == OP_SUM || op == OP_PROD) in_dt = is_float(in_dt) || in_dt == SLOTH_I64 ? in_dt : SLOTH_I32;
  if (op == OP_MEAN && !is_float(in_dt)) in_dt = SLOTH_F32;
  out_dt = arg ? SLOTH_I32 : in_dt;
  int64_t shape[SLOTH_MAX_RANK];
  int r = 0;
  for (int d = 0; d < n->rank; d++) {
    if (!(mask >> d & 1)) shape[r++] = n->shape[d];
    else if (keepdim) shape[r++] = 1;
  }
  sloth__attrs at = {0};
  at.axes_mask = mask;
  at.keepdim = keepdim != 0;
  sloth__node *c = cast_node(n, in_dt);
  if (!c) goto out;
  result = finish(new_node(op, out_dt, r, shape, 1, &c, &at), t0);
  sloth__node_release(c);
  END();
}

sloth_tensor *sloth_sum(sloth_tensor *x, const int *axes, int naxes, int keepdim) { return reduce(OP_SUM, x, axes, naxes, keepdim); }
sloth_tensor *sloth_mean(sloth_tensor *x, const int *axes, int naxes, int keepdim) { return reduce(OP_MEAN, x, axes, naxes, keepdim); }
sloth_tensor *sloth_max(sloth_tensor *x, const int *axes, int naxes, int keepdim) { return reduce(OP_MAX, x, axes, naxes, keepdim); }
sloth_tensor *sloth_min(sloth_tensor *x, const int *axes, int naxes, int keepdim) { return reduce(OP_MIN, x, axes, naxes, keepdim); }
sloth_tensor *sloth_prod(sloth_tensor *x, const int *axes, int naxes, int keepdim) { return reduce(OP_PROD, x, axes, naxes, keepdim); }
sloth_tensor *sloth_argmax(sloth_tensor *x, int axis, int keepdim) { return reduce(OP_ARGMAX, x, &axis, 1, keepdim); }
sloth_tensor *sloth_argmin(sloth_tensor *x, int axis, int keepdim) { return reduce(OP_ARGMIN, x, &axis, 1, keepdim); }

/* ------------------------------------------------------------------ matrix products */

sloth_tensor *sloth_matmul(sloth_tensor *a, sloth_tensor *b) {
  BEGIN();
  if (!sloth__tensor_ok(a) || !sloth__tensor_ok(b)) goto out;
  sloth__node *x = a->node, *y = b->node;
  if (x->rank == 0 || y->rank == 0) {
    sloth__fail(SLOTH_E_SHAPE, "matmul: operands must have rank >= 1 (got %d and %d)", x->rank, y->rank);
    goto out;
  }
  /* 1-D: a row on the left, a column on the right */
  int64_t s[SLOTH_MAX_RANK];
  sloth__node *x2 = NULL, *y2 = NULL, *xb = NULL, *yb = NULL, *m = NULL;
  if (x->rank == 1) {
    s[0] = 1, s[1] = x->shape[0];
    x2 = reshape_node(x, 2, s);
  } else {
    sloth__node_retain(x);
    x2 = x;
  }
  if (y->rank == 1) {
    s[0] = y->shape[0], s[1] = 1;
    y2 = reshape_node(y, 2, s);
  } else {
    sloth__node_retain(y);
    y2 = y;
  }
  if (!x2 || !y2) goto done;
  int64_t M = x2->shape[x2->rank - 2], K = x2->shape[x2->rank - 1], K2 = y2->shape[y2->rank - 2], N = y2->shape[y2->rank - 1];
  if (K != K2) {
    char sa[128], sb[128];
    shape_str(sa, sizeof sa, x->rank, x->shape);
    shape_str(sb, sizeof sb, y->rank, y->shape);
    sloth__fail(SLOTH_E_SHAPE, "matmul: inner dimensions differ: %s @ %s (%lld vs %lld)", sa, sb, (long long)K, (long long)K2);
    goto done;
  }
  /* broadcast the batch dimensions */
  sloth__node bx = {0}, by = {0};
  bx.rank = x2->rank - 2;
  memcpy(bx.shape, x2->shape, (size_t)bx.rank * sizeof *s);
  by.rank = y2->rank - 2;
  memcpy(by.shape, y2->shape, (size_t)by.rank * sizeof *s);
  sloth__node *pair[2] = {&bx, &by};
  int brank;
  int64_t bshape[SLOTH_MAX_RANK];
  if (broadcast_shapes("matmul batch dimensions", 2, pair, &brank, bshape) != SLOTH_OK) goto done;
  if (brank + 2 > SLOTH_MAX_RANK) {
    sloth__fail(SLOTH_E_SHAPE, "matmul: result rank would exceed %d", SLOTH_MAX_RANK);
    goto done;
  }
  memcpy(s, bshape, (size_t)brank * sizeof *s);
  /* GEMM libraries compute in floating point: integers in f32; f16 where the
   * backend has an f16 GEMM, else in f32 between casts (they fuse into the
   * kernels around the GEMM) */
  sloth_dtype out_dt = promote(x2->dtype, y2->dtype), dt;
  if (!is_float(out_dt)) out_dt = SLOTH_F32;
  dt = out_dt;
  const sloth__backend *be = sloth__rt.backend;
  if (dt != SLOTH_F32 && !(be->gemm_dtype && be->gemm_dtype(sloth__rt.dev, dt))) {
    if (dt == SLOTH_F64) {
      sloth__fail(SLOTH_E_UNSUPPORTED, "matmul: the %s backend has no f64 GEMM on this device", be->name);
      goto done;
    }
    dt = SLOTH_F32;
  }
  sloth__node *cx = cast_node(x2, dt), *cy = cast_node(y2, dt);
  if (cx) {
    s[brank] = M, s[brank + 1] = K;
    xb = broadcast_node(cx, brank + 2, s);
    sloth__node_release(cx);
  }
  if (cy) {
    s[brank] = K, s[brank + 1] = N;
    yb = broadcast_node(cy, brank + 2, s);
    sloth__node_release(cy);
  }
  if (!xb || !yb) goto done;
  s[brank] = M, s[brank + 1] = N;
  sloth__node *ops2[2] = {xb, yb};
  m = new_node(OP_MATMUL, dt, brank + 2, s, 2, ops2, NULL);
  if (m && out_dt != dt) { /* f16 computed in f32 */
    sloth__node *c = cast_node(m, out_dt);
    sloth__node_release(m);
    m = c;
  }
  if (m && (x->rank == 1 || y->rank == 1)) { /* drop the added dimension(s) */
    int r = brank;
    if (x->rank > 1) s[r++] = M;
    if (y->rank > 1) s[r++] = N;
    sloth__node *r2 = reshape_node(m, r, s);
    sloth__node_release(m);
    m = r2;
  }
  if (m) {
    result = finish(m, t0);
    m = NULL;
  }
done:
  if (x2) sloth__node_release(x2);
  if (y2) sloth__node_release(y2);
  if (xb) sloth__node_release(xb);
  if (yb) sloth__node_release(yb);
  if (m) sloth__node_release(m);
  END();
}

/* ------------------------------------------------------------------ random numbers */

void sloth_manual_seed(uint64_t seed) {
  sloth__lock();
  sloth__rt.rng_seed = seed;
  sloth__rt.rng_offset = 0;
  sloth__unlock();
}

/* One draw: a RAND leaf whose seed and stream offset are kernel arguments.
 * Each draw takes the next offset, so draws are independent and a training
 * step that draws again compiles nothing. */
static sloth_tensor *rand_leaf(int dist, int rank, const int64_t *shape) {
  BEGIN();
  if (check_shape(rank, shape) != SLOTH_OK) goto out;
  uint64_t seed = sloth__rt.rng_seed;
  sloth__node *in[3] = {scalar_node((double)(int32_t)(uint32_t)seed, SLOTH_I32),
                        scalar_node((double)(int32_t)(uint32_t)(seed >> 32), SLOTH_I32),
                        scalar_node((double)(int32_t)sloth__rt.rng_offset++, SLOTH_I32)};
  sloth__attrs at = {0};
  at.dist = dist;
  if (in[0] && in[1] && in[2]) result = finish(new_node(OP_RAND, SLOTH_F32, rank, shape, 3, in, &at), t0);
  for (int i = 0; i < 3; i++)
    if (in[i]) sloth__node_release(in[i]);
  END();
}

sloth_tensor *sloth_rand(int rank, const int64_t *shape) { return rand_leaf(SLOTH__RAND_UNIFORM, rank, shape); }
sloth_tensor *sloth_randn(int rank, const int64_t *shape) { return rand_leaf(SLOTH__RAND_NORMAL, rank, shape); }
