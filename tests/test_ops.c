/* test_ops.c - every op of sloth.h against the naive C reference (ref.h).
 *
 * Expectations are queued with expect() and checked by flush(), which syncs
 * every queued tensor as one graph first: the same-shaped elementwise
 * results of a batch become one multi-output kernel, which keeps the number
 * of kernels POCL has to compile (and the run time) down. Where a test wants
 * an op alone in its kernel it flushes after each expect().
 *
 * Inputs are small and quantized where ties, zeros or halves matter
 * (comparisons, round, argmax), continuous elsewhere, and always inside the
 * op's domain (log of positives, division by non-zero values, ...).
 */
#include "tap.h"
#include "ref.h"

#include <sloth.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ref_rng rng = {0x51075eedull};

/* ------------------------------------------------------------------ tolerances */

typedef struct tol {
  double atol, rtol;
} tol;
static const tol EXACT = {0, 0};          /* exact results: views, ints, quantized arithmetic */
static const tol ARITH = {1e-6, 1e-6};    /* one rounding of basic arithmetic */
static const tol MATH = {2e-6, 1e-5};     /* exp, log, sin, pow, ... (a few ulps) */
static const tol REDUCE = {1e-5, 1e-5};   /* float sums over a few hundred elements */
/* f16 results: a float result a few ulps off can round to the neighbouring
 * f16 (2^-11 relative), and Sloth keeps fused f16 values in float where the
 * reference rounds after every op; expect() widens any inexact tolerance to
 * this for f16 results */
static const tol HALF = {1e-3, 2e-3};

/* ------------------------------------------------------------------ inputs */

typedef struct pair {
  sloth_tensor *t;
  ref_t *r;
} pair;

/* A reference tensor and the Sloth tensor holding the same values. */
static pair from_ref(ref_t *r) {
  pair p = {ref_upload(r), r};
  if (!p.t) diag("from_host failed: %s", sloth_last_error());
  return p;
}

static pair input(sloth_dtype dt, int rank, const int64_t *shape, double lo, double hi, double step) {
  return from_ref(ref_random(&rng, dt, rank, shape, lo, hi, step));
}

/* Like input() but with every zero replaced by `instead` (for divisors). */
static pair input_nonzero(sloth_dtype dt, int rank, const int64_t *shape, double lo, double hi, double step, double instead) {
  ref_t *r = ref_random(&rng, dt, rank, shape, lo, hi, step);
  for (int64_t i = 0; i < r->n; i++)
    if (r->v[i] == 0) r->v[i] = instead;
  return from_ref(r);
}

static void pair_free(pair p) {
  sloth_release(p.t);
  ref_free(p.r);
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define S(...) NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__)

static const char *shape_name(int rank, const int64_t *shape) {
  static char buf[8][96];
  static int next;
  char *b = buf[next++ % 8];
  ref_shape_str(b, 96, rank, shape);
  return b;
}

/* ------------------------------------------------------------------ expectations */

typedef struct expectation {
  sloth_tensor *t;
  ref_t *want;
  tol tl;
  char name[200];
} expectation;

#define MAX_PENDING 256
static expectation pending[MAX_PENDING];
static int npending;

static void flush(void);

/* Queues "t equals want"; takes both. A NULL t fails (with Sloth's message);
 * a NULL want means the reference could not compute it (a test bug). */
static void expect(sloth_tensor *t, ref_t *want, tol tl, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void expect(sloth_tensor *t, ref_t *want, tol tl, const char *fmt, ...) {
  if (npending == MAX_PENDING) flush();
  expectation *e = &pending[npending++];
  e->t = t;
  e->want = want;
  if (want && want->dt == SLOTH_F16 && (tl.atol || tl.rtol))
    tl = (tol){tl.atol > HALF.atol ? tl.atol : HALF.atol, tl.rtol > HALF.rtol ? tl.rtol : HALF.rtol};
  e->tl = tl;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->name, sizeof e->name, fmt, ap);
  va_end(ap);
  if (!t) diag("%s: op returned NULL: %s", e->name, sloth_last_error());
}

/* Syncs every queued tensor as one graph, then checks each. */
static void flush(void) {
  sloth_tensor *ts[MAX_PENDING];
  int n = 0;
  for (int i = 0; i < npending; i++)
    if (pending[i].t) ts[n++] = pending[i].t;
  if (n && sloth_sync(ts, n) != SLOTH_OK) diag("sloth_sync of %d tensors failed: %s", n, sloth_last_error());
  for (int i = 0; i < npending; i++) {
    expectation *e = &pending[i];
    char why[512] = "";
    int pass = 0;
    if (!e->want) snprintf(why, sizeof why, "the reference refused the case (test bug)");
    else if (e->t) {
      if (sloth_is_pending(e->t)) snprintf(why, sizeof why, "still pending after sloth_sync");
      ref_t *got = ref_download(e->t);
      if (!got) snprintf(why, sizeof why, "to_host failed: %s", sloth_last_error());
      else pass = ref_match(got, e->want, e->tl.atol, e->tl.rtol, why, sizeof why) && !why[0];
      ref_free(got);
    }
    ok(pass, "%s", e->name);
    if (!pass && why[0]) diag("  %s", why);
    sloth_release(e->t);
    ref_free(e->want);
  }
  npending = 0;
}

/* expect() alone in its graph. */
#define CHECK(t, want, tl, ...)            \
  do {                                     \
    flush();                               \
    expect((t), (want), (tl), __VA_ARGS__); \
    flush();                               \
  } while (0)

/* The op must refuse: NULL with the given status. */
static void expect_error(sloth_tensor *t, sloth_status want, const char *what) {
  sloth_status got = sloth_last_status();
  ok(t == NULL && got == want, "%s is refused with %s", what, sloth_status_string(want));
  if (t) {
    diag("  returned a tensor");
    sloth_release(t);
  } else if (got != want)
    diag("  status %s: %s", sloth_status_string(got), sloth_last_error());
  sloth_clear_error();
}

/* ------------------------------------------------------------------ creation */

static void test_creation(void) {
  /* from_host / to_host round trip of every dtype, without any kernel */
  static const double lo[] = {[SLOTH_F32] = -1e6, [SLOTH_I32] = -2e9, [SLOTH_U8] = 0,    [SLOTH_BOOL] = 0,
                              [SLOTH_F16] = -6e4, [SLOTH_I64] = -4e15, [SLOTH_F64] = -1e12};
  static const double hi[] = {[SLOTH_F32] = 1e6, [SLOTH_I32] = 2e9, [SLOTH_U8] = 255,  [SLOTH_BOOL] = 1,
                              [SLOTH_F16] = 6e4, [SLOTH_I64] = 4e15, [SLOTH_F64] = 1e12};
  for (int dt = 0; dt < SLOTH_DTYPE_COUNT; dt++) {
    pair p = input((sloth_dtype)dt, S(3, 5), lo[dt], hi[dt], 0);
    ref_t *want = ref_clone(p.r);
    expect(sloth_retain(p.t), want, EXACT, "from_host/to_host round trip %s", sloth_dtype_name((sloth_dtype)dt));
    pair_free(p);
  }
  flush();

  /* rank 0 and zero-size data */
  float one = 42.5f;
  expect(sloth_from_host(&one, SLOTH_F32, 0, NULL), ref_full(42.5, SLOTH_F32, 0, NULL), EXACT, "from_host rank 0");
  expect(sloth_from_host(NULL, SLOTH_I32, 2, SHAPE(0, 3)), ref_full(0, SLOTH_I32, S(0, 3)), EXACT, "from_host [0,3]");
  flush();

  /* full, zeros, ones */
  expect(sloth_full(2.5, SLOTH_F32, S(2, 3)), ref_full(2.5, SLOTH_F32, S(2, 3)), EXACT, "full f32 [2,3]");
  expect(sloth_full(-7, SLOTH_I32, S(4)), ref_full(-7, SLOTH_I32, S(4)), EXACT, "full i32 [4]");
  expect(sloth_full(3.7, SLOTH_I32, S(2, 2)), ref_full(3.7, SLOTH_I32, S(2, 2)), EXACT, "full i32 3.7 truncates");
  expect(sloth_full(200, SLOTH_U8, S(2, 1, 2)), ref_full(200, SLOTH_U8, S(2, 1, 2)), EXACT, "full u8 [2,1,2]");
  expect(sloth_full(5, SLOTH_BOOL, S(3)), ref_full(1, SLOTH_BOOL, S(3)), EXACT, "full bool (nonzero is true)");
  expect(sloth_full(0.5, SLOTH_BOOL, S(3)), ref_full(1, SLOTH_BOOL, S(3)), EXACT, "full(0.5) bool is true (not truncated)");
  expect(sloth_full(0.5, SLOTH_BOOL, 0, NULL), ref_full(1, SLOTH_BOOL, 0, NULL), EXACT, "full(0.5) bool rank 0 is true");
  expect(sloth_full(-1.25, SLOTH_F32, 0, NULL), ref_full(-1.25, SLOTH_F32, 0, NULL), EXACT, "full rank 0");
  expect(sloth_full(9, SLOTH_F32, S(0, 3)), ref_full(9, SLOTH_F32, S(0, 3)), EXACT, "full [0,3]");
  flush();
  for (int dt = 0; dt < SLOTH_DTYPE_COUNT; dt++) {
    expect(sloth_zeros((sloth_dtype)dt, S(2, 3)), ref_full(0, (sloth_dtype)dt, S(2, 3)), EXACT, "zeros %s", sloth_dtype_name((sloth_dtype)dt));
    expect(sloth_ones((sloth_dtype)dt, S(2, 3)), ref_full(1, (sloth_dtype)dt, S(2, 3)), EXACT, "ones %s", sloth_dtype_name((sloth_dtype)dt));
  }
  flush();

  /* scalar */
  expect(sloth_scalar(2.5, SLOTH_F32), ref_full(2.5, SLOTH_F32, 0, NULL), EXACT, "scalar f32");
  expect(sloth_scalar(-3, SLOTH_I32), ref_full(-3, SLOTH_I32, 0, NULL), EXACT, "scalar i32");
  expect(sloth_scalar(1, SLOTH_BOOL), ref_full(1, SLOTH_BOOL, 0, NULL), EXACT, "scalar bool");
  expect(sloth_scalar(0.1, SLOTH_F16), ref_full(0.1, SLOTH_F16, 0, NULL), EXACT, "scalar f16 (rounded to f16)");
  expect(sloth_scalar(0.1, SLOTH_F64), ref_full(0.1, SLOTH_F64, 0, NULL), EXACT, "scalar f64 (all of double)");
  expect(sloth_scalar(-3e15, SLOTH_I64), ref_full(-3e15, SLOTH_I64, 0, NULL), EXACT, "scalar i64 beyond i32");
  expect(sloth_full(0.1, SLOTH_F16, S(2, 3)), ref_full(0.1, SLOTH_F16, S(2, 3)), EXACT, "full f16 0.1 (a kernel argument)");
  expect(sloth_full(1.0 / 3, SLOTH_F64, S(3)), ref_full(1.0 / 3, SLOTH_F64, S(3)), EXACT, "full f64 1/3");
  expect(sloth_full(5e12, SLOTH_I64, S(2)), ref_full(5e12, SLOTH_I64, S(2)), EXACT, "full i64 5e12");
  expect(sloth_full(1e5, SLOTH_F16, S(2)), ref_full(1e5, SLOTH_F16, S(2)), EXACT, "full f16 1e5 overflows to inf");
  expect(sloth_full(1e-7, SLOTH_F16, S(2)), ref_full(1e-7, SLOTH_F16, S(2)), EXACT, "full f16 1e-7 (subnormal)");
  flush();
  {
    /* a bool scalar used in a kernel: 0.25 is true */
    sloth_tensor *s = sloth_scalar(0.25, SLOTH_BOOL), *z = sloth_zeros(SLOTH_BOOL, S(3));
    ref_t *rs = ref_full(0.25, SLOTH_BOOL, 0, NULL), *rz = ref_full(0, SLOTH_BOOL, S(3));
    expect(sloth_logical_or(z, s), ref_binary(RB_OR, rz, rs), EXACT, "zeros(bool) | scalar(0.25, bool)");
    flush();
    sloth_release(s), sloth_release(z);
    ref_free(rs), ref_free(rz);
  }
  {
    sloth_tensor *s = sloth_scalar(0.75, SLOTH_F32);
    ref_t *rs = ref_full(0.75, SLOTH_F32, 0, NULL);
    pair x = input(SLOTH_F32, S(2, 3), -2, 2, 0);
    expect(sloth_mul(x.t, s), ref_binary(RB_MUL, x.r, rs), ARITH, "tensor * scalar tensor");
    expect(sloth_exp(s), ref_unary(RU_EXP, rs), MATH, "exp(scalar tensor)");
    flush();
    sloth_release(s);
    ref_free(rs);
    pair_free(x);
  }

  /* arange */
  static const struct {
    double a, b, s;
    sloth_dtype dt;
  } ar[] = {
      {0, 10, 1, SLOTH_F32},    {1, 2, 0.1, SLOTH_F32}, {5, -5, -1.5, SLOTH_F32}, {0, 5, 0.5, SLOTH_F32},
      {0, 20, 3, SLOTH_I32},    {10, 0, -2, SLOTH_I32}, {-4, 4, 1, SLOTH_I32},    {0, 200, 7, SLOTH_U8},
      {3, 3, 1, SLOTH_F32},     {5, 0, 1, SLOTH_I32},
      {0, 10, 0.5, SLOTH_F16},  {-2, 2, 0.25, SLOTH_F16}, {0, 3, 0.1, SLOTH_F16}, {0, 1, 0.1, SLOTH_F64}, {5, -5, -1.5, SLOTH_F64},
      {0, 20, 3, SLOTH_I64},    {10, 0, -2, SLOTH_I64},
  };
  for (size_t i = 0; i < sizeof ar / sizeof ar[0]; i++)
    expect(sloth_arange(ar[i].a, ar[i].b, ar[i].s, ar[i].dt), ref_arange(ar[i].a, ar[i].b, ar[i].s, ar[i].dt), ARITH,
           "arange(%g, %g, %g) %s", ar[i].a, ar[i].b, ar[i].s, sloth_dtype_name(ar[i].dt));
  flush();
  {
    /* arange feeding views and arithmetic */
    ref_t *ra = ref_arange(0, 12, 1, SLOTH_F32), *rr = ref_reshape(ra, S(3, 4)), *rt = ref_transpose(rr, 0, 1);
    sloth_tensor *a = sloth_arange(0, 12, 1, SLOTH_F32), *r = sloth_reshape(a, S(3, 4)), *t = sloth_transpose(r, 0, 1);
    expect(sloth_add_scalar(t, 0.5), ref_binary_scalar(RB_ADD, rt, 0.5), ARITH, "transpose(reshape(arange)) + 0.5");
    flush();
    sloth_release(a), sloth_release(r), sloth_release(t);
    ref_free(ra), ref_free(rr), ref_free(rt);
  }
  expect_error(sloth_arange(0, 1, 0, SLOTH_F32), SLOTH_E_INVALID, "arange with step 0");
  expect_error(sloth_arange(0, 3, 1, SLOTH_BOOL), SLOTH_E_DTYPE, "arange of bool");
}

/* ------------------------------------------------------------------ unary */

static int needs_positive(ref_unary_op op) { return op == RU_LOG || op == RU_SQRT || op == RU_RSQRT || op == RU_RECIP; }

static tol unary_tol(ref_unary_op op) { return ref_unary_is_math(op) ? MATH : EXACT; }

static void unary_batch(sloth_dtype dt, int rank, const int64_t *shape, double lo, double hi, double step, double plo, double phi) {
  pair x = input(dt, rank, shape, lo, hi, step);
  pair p = input(dt, rank, shape, plo, phi, step); /* for the ops that need positive input */
  for (int op = 0; op < RU_COUNT; op++) {
    if (dt == SLOTH_BOOL && (op == RU_NEG || op == RU_SIGN)) continue; /* refused, tested below */
    pair *in = needs_positive((ref_unary_op)op) ? &p : &x;
    expect(ref_unary_sloth[op](in->t), ref_unary((ref_unary_op)op, in->r), unary_tol((ref_unary_op)op), "%s %s %s",
           ref_unary_names[op], sloth_dtype_name(dt), shape_name(rank, shape));
  }
  flush();
  pair_free(x);
  pair_free(p);
}

static void test_unary(void) {
  /* every op on f32, quantized by 0.25 so halves (round), integers
   * (floor/ceil) and zeros (sign, relu, logical_not) occur; batched per shape */
  unary_batch(SLOTH_F32, 0, NULL, -3, 3, 0.25, 0.25, 4);
  unary_batch(SLOTH_F32, S(7), -3, 3, 0.25, 0.25, 4);
  unary_batch(SLOTH_F32, S(3, 4), -3.5, 3.5, 0.25, 0.25, 4);
  unary_batch(SLOTH_F32, S(2, 1, 3), -3, 3, 0.25, 0.25, 4);
  /* other dtypes: math ops compute in f32, the others keep the dtype */
  unary_batch(SLOTH_I32, S(3, 4), -9, 9, 1, 1, 12);
  unary_batch(SLOTH_U8, S(3, 4), 0, 255, 1, 1, 12);
  unary_batch(SLOTH_BOOL, S(3, 4), 0, 1, 1, 1, 1);
  unary_batch(SLOTH_I64, S(3, 4), -9, 9, 1, 1, 12);
  /* f16 computes in f32 and rounds to f16; f64 computes in double */
  unary_batch(SLOTH_F16, S(3, 4), -3.5, 3.5, 0.25, 0.25, 4);
  unary_batch(SLOTH_F64, S(3, 4), -3.5, 3.5, 0.25, 0.25, 4);
  /* continuous values */
  unary_batch(SLOTH_F32, S(5, 3), -4, 4, 0, 0.05, 6);
  unary_batch(SLOTH_F16, S(5, 3), -4, 4, 0, 0.05, 6);
  unary_batch(SLOTH_F64, S(5, 3), -4, 4, 0, 0.05, 6);
  /* one op alone in its kernel, on a view */
  {
    pair x = input(SLOTH_F32, S(4, 3), -4, 4, 0);
    ref_t *rt = ref_transpose(x.r, 0, 1);
    sloth_tensor *t = sloth_transpose(x.t, 0, 1);
    CHECK(sloth_tanh(t), ref_unary(RU_TANH, rt), MATH, "tanh alone of transpose [4,3]");
    sloth_release(t);
    ref_free(rt);
    pair_free(x);
  }
  /* round is half to even, also for negative halves */
  {
    float h[] = {-2.5f, -1.5f, -0.5f, 0.5f, 1.5f, 2.5f, 3.5f, -3.49f};
    ref_t *r = ref_from_host(h, SLOTH_F32, S(8));
    pair q = from_ref(r);
    float w[] = {-2, -2, -0.0f, 0, 2, 2, 4, -3};
    expect(sloth_round(q.t), ref_from_host(w, SLOTH_F32, S(8)), EXACT, "round halves to even");
    flush();
    pair_free(q);
  }
  /* IEEE special values: infinities, signed zeros, NaN in and out, overflow
   * and underflow (ops with a NaN rule of their own, like maximum and relu,
   * are left out) */
  {
    static const float sv[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 100.0f, -100.0f, 1e-30f, -1e-30f, 88.0f, 1e30f, -1.5f};
    ref_t *r = ref_from_host(sv, SLOTH_F32, S(12));
    pair q = from_ref(r);
    static const ref_unary_op ops[] = {RU_NEG, RU_ABS, RU_EXP, RU_LOG, RU_SQRT, RU_RSQRT, RU_SIN, RU_COS, RU_TANH,
                                       RU_SIGMOID, RU_FLOOR, RU_CEIL, RU_ROUND, RU_SQUARE, RU_RECIP, RU_SIGN, RU_NOT};
    /* sin and cos on CPU devices are accurate for |x| <= 1e7 only (kernels/cpu_math.cl): 1e4 instead of 1e30 */
    ref_t *r2 = ref_clone(r);
    r2->v[10] = 1e4;
    pair q2 = from_ref(r2);
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
      pair *in = ops[i] == RU_SIN || ops[i] == RU_COS ? &q2 : &q;
      expect(ref_unary_sloth[ops[i]](in->t), ref_unary(ops[i], in->r), MATH, "%s of special values", ref_unary_names[ops[i]]);
    }
    static const float pa[] = {-2, -2, 0, 0, 0, 5, 1, -1, -3, 2, -0.5f, 3, 0.5f, -2, INFINITY, 0.5f};
    static const float pb[] = {3, 2, 0, 2, -1, 0, NAN, INFINITY, -2, 100, 3, 40, -30, 0.5f, -1, INFINITY};
    pair a = from_ref(ref_from_host(pa, SLOTH_F32, S(16))), b = from_ref(ref_from_host(pb, SLOTH_F32, S(16)));
    expect(sloth_pow(a.t, b.t), ref_binary(RB_POW, a.r, b.r), MATH, "pow of special values (negative bases, 0^0, overflow)");
    expect(sloth_div(a.t, b.t), ref_binary(RB_DIV, a.r, b.r), MATH, "div of special values");
    expect(sloth_add(a.t, b.t), ref_binary(RB_ADD, a.r, b.r), EXACT, "add of special values");
    expect(sloth_mul(a.t, b.t), ref_binary(RB_MUL, a.r, b.r), EXACT, "mul of special values");
    flush();
    pair_free(q), pair_free(q2), pair_free(a), pair_free(b);
  }
  pair b = input(SLOTH_BOOL, S(4), 0, 1, 1);
  expect_error(sloth_neg(b.t), SLOTH_E_DTYPE, "neg of bool");
  expect_error(sloth_sign(b.t), SLOTH_E_DTYPE, "sign of bool");
  pair_free(b);
}

/* ------------------------------------------------------------------ binary */

static tol binary_tol(ref_binary_op op) { return (op == RB_DIV || op == RB_POW) ? MATH : EXACT; }

/* every op in `mask` on (a, b), one batch */
static void binary_batch(pair a, pair b, unsigned mask, const char *label) {
  for (int op = 0; op < RB_COUNT; op++) {
    if (!(mask >> op & 1)) continue;
    expect(ref_binary_sloth[op](a.t, b.t), ref_binary((ref_binary_op)op, a.r, b.r), binary_tol((ref_binary_op)op), "%s %s %s x %s %s",
           ref_binary_names[op], label, sloth_dtype_name(a.r->dt), shape_name(a.r->rank, a.r->shape), shape_name(b.r->rank, b.r->shape));
  }
  flush();
}

#define ALL_BINARY ((1u << RB_COUNT) - 1)
#define NO_DIVPOW (ALL_BINARY & ~(1u << RB_DIV) & ~(1u << RB_POW))

/* a > 0 (pow), b != 0 (div), about a third of the elements of b equal to a
 * (ties). Broadcasting does not depend on the op: the broadcast cases run a
 * few (each op costs kernel compile time). */
#define SOME_BINARY ((1u << RB_ADD) | (1u << RB_SUB) | (1u << RB_DIV) | (1u << RB_MAXIMUM) | (1u << RB_LT) | (1u << RB_EQ))
static void binary_case(int ra, const int64_t *sa, int rb, const int64_t *sb, unsigned mask) {
  pair a = input(SLOTH_F32, ra, sa, 0.25, 3, 0.25);
  ref_t *rbv = ref_random(&rng, SLOTH_F32, rb, sb, -2, 2, 0.25);
  for (int64_t i = 0; i < rbv->n; i++) {
    if (i % 3 == 0 && i < a.r->n) rbv->v[i] = a.r->v[i];
    if (rbv->v[i] == 0) rbv->v[i] = 1.75;
  }
  pair b = from_ref(rbv);
  binary_batch(a, b, mask, "f32");
  binary_batch(b, a, (1u << RB_DIV) | (1u << RB_SUB) | (1u << RB_GE), "f32 swapped");
  pair_free(a);
  pair_free(b);
}

static void test_binary(void) {
  /* same shapes */
  binary_case(S(3, 4), S(3, 4), ALL_BINARY);
  {
    /* signed values with zeros: logic ops, comparisons, min/max */
    pair a = input(SLOTH_F32, S(3, 4), -2, 2, 0.5), b = input(SLOTH_F32, S(3, 4), -2, 2, 0.5);
    binary_batch(a, b, NO_DIVPOW, "f32 with zeros");
    pair_free(a);
    pair_free(b);
  }
  /* broadcasting */
  binary_case(S(3, 1), S(1, 4), SOME_BINARY);
  binary_case(S(5), S(2, 3, 5), SOME_BINARY);
  binary_case(S(2, 3, 5), S(5), SOME_BINARY);
  binary_case(0, NULL, S(2, 3), SOME_BINARY);
  binary_case(S(2, 3), 0, NULL, SOME_BINARY);
  binary_case(S(4, 1, 3), S(2, 1), SOME_BINARY);
  binary_case(S(1), S(3, 1, 2), SOME_BINARY);
  /* continuous values */
  {
    pair a = input(SLOTH_F32, S(2, 3), 0.1, 3, 0), b = input(SLOTH_F32, S(3), 0.2, 2.5, 0);
    binary_batch(a, b, ALL_BINARY, "continuous");
    CHECK(sloth_pow(b.t, a.t), ref_binary(RB_POW, b.r, a.r), MATH, "pow alone f32 [3] x [2,3]");
    pair_free(a);
    pair_free(b);
  }
  /* integer dtypes */
  {
    pair a = input(SLOTH_I32, S(3, 4), -20, 20, 1), b = input_nonzero(SLOTH_I32, S(3, 4), -20, 20, 1, 7);
    for (int64_t i = 0; i < 4; i++) b.r->v[i] = a.r->v[i] ? a.r->v[i] : 3; /* ties */
    sloth_release(b.t);
    b.t = ref_upload(b.r);
    binary_batch(a, b, NO_DIVPOW | (1u << RB_DIV), "i32");
    pair_free(a);
    pair_free(b);
    pair pa = input(SLOTH_I32, S(3, 4), 1, 4, 1), pb = input(SLOTH_I32, S(4), -2, 4, 1);
    binary_batch(pa, pb, 1u << RB_POW, "i32");
    pair_free(pa);
    pair_free(pb);
  }
  {
    /* u8 arithmetic wraps modulo 256 */
    pair a = input(SLOTH_U8, S(3, 4), 0, 255, 1), b = input_nonzero(SLOTH_U8, S(3, 4), 0, 255, 1, 9);
    binary_batch(a, b, NO_DIVPOW | (1u << RB_DIV), "u8");
    pair_free(a);
    pair_free(b);
  }
  {
    /* bool: + is or, * is and (NumPy) */
    pair a = input(SLOTH_BOOL, S(2, 4), 0, 1, 1), b = input(SLOTH_BOOL, S(4), 0, 1, 1);
    binary_batch(a, b, NO_DIVPOW & ~(1u << RB_SUB), "bool");
    pair_free(a);
    pair_free(b);
  }
  {
    /* f16 (float math rounded to f16) and f64 (double math), quantized with
     * broadcasting and continuous */
    static const sloth_dtype fdt[] = {SLOTH_F16, SLOTH_F64};
    for (int i = 0; i < 2; i++) {
      pair a = input(fdt[i], S(3, 4), 0.25, 3, 0.25), b = input_nonzero(fdt[i], S(4), -2, 2, 0.25, 1.75);
      binary_batch(a, b, ALL_BINARY, "quantized");
      pair c = input(fdt[i], S(2, 3), 0.1, 3, 0), d = input(fdt[i], S(3), 0.2, 2.5, 0);
      binary_batch(c, d, ALL_BINARY, "continuous");
      pair_free(a), pair_free(b), pair_free(c), pair_free(d);
    }
    /* i64, also beyond the range of i32 */
    pair a = input(SLOTH_I64, S(3, 4), -20, 20, 1), b = input_nonzero(SLOTH_I64, S(3, 4), -20, 20, 1, 7);
    binary_batch(a, b, NO_DIVPOW | (1u << RB_DIV), "i64");
    pair big = input(SLOTH_I64, S(2, 5), -4e12, 4e12, 1), big2 = input(SLOTH_I64, S(5), -4e12, 4e12, 1);
    binary_batch(big, big2,
                 (1u << RB_ADD) | (1u << RB_SUB) | (1u << RB_MAXIMUM) | (1u << RB_MINIMUM) | (1u << RB_LT) | (1u << RB_EQ),
                 "beyond i32");
    pair_free(a), pair_free(b), pair_free(big), pair_free(big2);
  }
  {
    pair a = input(SLOTH_F32, S(2, 3), 0, 1, 0), b = input(SLOTH_F32, S(3, 2), 0, 1, 0);
    expect_error(sloth_add(a.t, b.t), SLOTH_E_SHAPE, "add of [2,3] and [3,2]");
    pair_free(a);
    pair_free(b);
  }
}

/* all pairs of dtypes through a few ops: the result dtype follows
 * bool < u8 < i32 < i64 < f16 < f32 < f64 */
static void test_promotion(void) {
  pair in[SLOTH_DTYPE_COUNT], nz[SLOTH_DTYPE_COUNT];
  for (int dt = 0; dt < SLOTH_DTYPE_COUNT; dt++) {
    /* negative i32 values meet u8 ones: they must compare and add as i32 */
    int fl = ref_is_float((sloth_dtype)dt), neg = dt == SLOTH_I32 || dt == SLOTH_I64;
    in[dt] = input((sloth_dtype)dt, S(2, 3), neg ? -4 : 0, fl ? 4 : 6, fl ? 0.5 : 1);
    nz[dt] = input_nonzero((sloth_dtype)dt, S(3), 1, 5, fl ? 0.5 : 1, 1);
  }
  static const ref_binary_op ops[] = {RB_ADD, RB_MUL, RB_MAXIMUM, RB_MINIMUM, RB_LT, RB_EQ, RB_GE, RB_AND};
  for (int a = 0; a < SLOTH_DTYPE_COUNT; a++)
    for (int b = 0; b < SLOTH_DTYPE_COUNT; b++) {
      for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++)
        expect(ref_binary_sloth[ops[k]](in[a].t, in[b].t), ref_binary(ops[k], in[a].r, in[b].r), EXACT, "%s %s x %s -> %s",
               ref_binary_names[ops[k]], sloth_dtype_name((sloth_dtype)a), sloth_dtype_name((sloth_dtype)b),
               sloth_dtype_name(ref_binary_dtype(ops[k], (sloth_dtype)a, (sloth_dtype)b)));
      if (b != SLOTH_BOOL)
        expect(sloth_div(in[a].t, nz[b].t), ref_binary(RB_DIV, in[a].r, nz[b].r), MATH, "div %s x %s -> %s",
               sloth_dtype_name((sloth_dtype)a), sloth_dtype_name((sloth_dtype)b),
               sloth_dtype_name(ref_binary_dtype(RB_DIV, (sloth_dtype)a, (sloth_dtype)b)));
      if (a != SLOTH_BOOL || b != SLOTH_BOOL)
        expect(sloth_sub(in[a].t, in[b].t), ref_binary(RB_SUB, in[a].r, in[b].r), EXACT, "sub %s x %s", sloth_dtype_name((sloth_dtype)a),
               sloth_dtype_name((sloth_dtype)b));
      if (npending > MAX_PENDING - 12) flush();
    }
  flush();
  for (int dt = 0; dt < SLOTH_DTYPE_COUNT; dt++) {
    pair_free(in[dt]);
    pair_free(nz[dt]);
  }
}

static void test_scalar_ops(void) {
  static const struct {
    ref_binary_op op;
    double s;
  } fs[] = {{RB_ADD, 1.5}, {RB_SUB, -2}, {RB_MUL, 0.5}, {RB_DIV, 4}, {RB_DIV, -0.3}, {RB_POW, 2}, {RB_POW, 0.5}, {RB_POW, -1.5}};
  sloth_tensor *(*fn[])(sloth_tensor *, double) = {[RB_ADD] = sloth_add_scalar, [RB_SUB] = sloth_sub_scalar, [RB_MUL] = sloth_mul_scalar,
                                                   [RB_DIV] = sloth_div_scalar, [RB_POW] = sloth_pow_scalar};
  for (int shape_case = 0; shape_case < 2; shape_case++) {
    pair x = shape_case ? input(SLOTH_F32, S(3, 4), 0.25, 3, 0) : input(SLOTH_F32, 0, NULL, 0.25, 3, 0);
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
      expect(fn[fs[i].op](x.t, fs[i].s), ref_binary_scalar(fs[i].op, x.r, fs[i].s), binary_tol(fs[i].op), "%s_scalar(%g) f32 %s",
             ref_binary_names[fs[i].op], fs[i].s, shape_name(x.r->rank, x.r->shape));
    flush();
    pair_free(x);
  }
  /* f16 and f64 tensors keep their dtype (an f16 scalar is rounded to f16) */
  for (int k = 0; k < 2; k++) {
    sloth_dtype dt = k ? SLOTH_F64 : SLOTH_F16;
    pair x = input(dt, S(3, 4), 0.25, 3, 0);
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
      expect(fn[fs[i].op](x.t, fs[i].s), ref_binary_scalar(fs[i].op, x.r, fs[i].s), binary_tol(fs[i].op), "%s_scalar(%g) %s",
             ref_binary_names[fs[i].op], fs[i].s, sloth_dtype_name(dt));
    flush();
    pair_free(x);
  }
  /* integer tensors: an integral scalar keeps the dtype, a fractional one gives f32 */
  static const struct {
    sloth_dtype dt;
    ref_binary_op op;
    double s;
  } is[] = {
      {SLOTH_I32, RB_ADD, 3},   {SLOTH_I32, RB_ADD, 2.5}, {SLOTH_I32, RB_SUB, 7},    {SLOTH_I32, RB_MUL, -2},
      {SLOTH_I32, RB_MUL, 0.5}, {SLOTH_I32, RB_DIV, 2},   {SLOTH_I32, RB_POW, 2},    {SLOTH_U8, RB_ADD, 250},
      {SLOTH_U8, RB_SUB, 3},    {SLOTH_U8, RB_ADD, -1},   {SLOTH_U8, RB_MUL, 3},     {SLOTH_U8, RB_ADD, 0.5},
      {SLOTH_U8, RB_DIV, 4},    {SLOTH_BOOL, RB_ADD, 1},  {SLOTH_BOOL, RB_MUL, 0},   {SLOTH_BOOL, RB_ADD, 0.5},
      {SLOTH_BOOL, RB_MUL, 2.5},
      {SLOTH_I64, RB_ADD, 3},   {SLOTH_I64, RB_SUB, 5e12}, {SLOTH_I64, RB_MUL, 0.5}, {SLOTH_I64, RB_DIV, 2},
      {SLOTH_I64, RB_POW, 2},
  };
  pair xi[SLOTH_DTYPE_COUNT];
  xi[SLOTH_I32] = input(SLOTH_I32, S(2, 5), -30, 30, 1);
  xi[SLOTH_U8] = input(SLOTH_U8, S(2, 5), 0, 255, 1);
  xi[SLOTH_BOOL] = input(SLOTH_BOOL, S(2, 5), 0, 1, 1);
  xi[SLOTH_I64] = input(SLOTH_I64, S(2, 5), -30, 30, 1);
  for (size_t i = 0; i < sizeof is / sizeof is[0]; i++)
    expect(fn[is[i].op](xi[is[i].dt].t, is[i].s), ref_binary_scalar(is[i].op, xi[is[i].dt].r, is[i].s), binary_tol(is[i].op),
           "%s_scalar(%g) %s -> %s", ref_binary_names[is[i].op], is[i].s, sloth_dtype_name(is[i].dt),
           sloth_dtype_name(ref_binary_dtype(is[i].op, is[i].dt, (is[i].s == floor(is[i].s)) ? is[i].dt : SLOTH_F32)));
  flush();
  pair_free(xi[SLOTH_I32]);
  pair_free(xi[SLOTH_U8]);
  pair_free(xi[SLOTH_BOOL]);
  pair_free(xi[SLOTH_I64]);
}

static void test_where(void) {
  pair c = input(SLOTH_BOOL, S(3, 4), 0, 1, 1);
  pair a = input(SLOTH_F32, S(3, 4), -5, 5, 0), b = input(SLOTH_F32, S(3, 4), -5, 5, 0);
  expect(sloth_where(c.t, a.t, b.t), ref_where(c.r, a.r, b.r), EXACT, "where bool f32 f32 [3,4]");
  /* broadcasting of all three */
  pair c2 = input(SLOTH_F32, S(3, 1), -1, 1, 1); /* non-bool condition: nonzero is true */
  pair a2 = input(SLOTH_I32, S(4), -9, 9, 1);
  pair b2 = input(SLOTH_F32, 0, NULL, -9, 9, 0);
  expect(sloth_where(c2.t, a2.t, b2.t), ref_where(c2.r, a2.r, b2.r), EXACT, "where f32[3,1] i32[4] f32[] -> f32 [3,4]");
  pair c3 = input(SLOTH_I32, 0, NULL, 1, 3, 1);
  pair a3 = input(SLOTH_U8, S(2, 1, 3), 0, 255, 1), b3 = input(SLOTH_BOOL, S(4, 1), 0, 1, 1);
  expect(sloth_where(c3.t, a3.t, b3.t), ref_where(c3.r, a3.r, b3.r), EXACT, "where i32[] u8[2,1,3] bool[4,1] -> u8 [2,4,3]");
  pair c4 = input(SLOTH_U8, S(2, 4, 4), 0, 2, 1);
  expect(sloth_where(c4.t, b3.t, a2.t), ref_where(c4.r, b3.r, a2.r), EXACT, "where u8[2,4,4] bool[4,1] i32[4] -> i32 [2,4,4]");
  flush();
  /* a condition computed in the same kernel */
  sloth_tensor *gt = sloth_gt(a.t, b.t);
  ref_t *rgt = ref_binary(RB_GT, a.r, b.r);
  expect(sloth_where(gt, a.t, b.t), ref_where(rgt, a.r, b.r), EXACT, "where(a > b, a, b)");
  flush();
  sloth_release(gt);
  ref_free(rgt);
  pair *ps[] = {&c, &a, &b, &c2, &a2, &b2, &c3, &a3, &b3, &c4};
  for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) pair_free(*ps[i]);
}

static void test_cast(void) {
  /* sources whose values every target represents: f32 in [0, 200] (quarters:
   * truncation to int), negative f32 only to i32 and bool, i32 wrapping to u8 */
  pair src[SLOTH_DTYPE_COUNT];
  src[SLOTH_F32] = input(SLOTH_F32, S(3, 5), 0, 200, 0.25);
  src[SLOTH_I32] = input(SLOTH_I32, S(3, 5), -300, 300, 1);
  src[SLOTH_U8] = input(SLOTH_U8, S(3, 5), 0, 255, 1);
  src[SLOTH_BOOL] = input(SLOTH_BOOL, S(3, 5), 0, 1, 1);
  src[SLOTH_F16] = input(SLOTH_F16, S(3, 5), 0, 200, 0.25); /* quarters up to 200 are exact in f16 */
  src[SLOTH_F64] = input(SLOTH_F64, S(3, 5), 0, 200, 0.25);
  src[SLOTH_I64] = input(SLOTH_I64, S(3, 5), -300, 300, 1);
  static const sloth_dtype fdt[] = {SLOTH_F32, SLOTH_F16, SLOTH_F64};
  for (int k = 0; k < 3; k++) { /* a zero for the bool casts */
    src[fdt[k]].r->v[0] = 0;
    sloth_release(src[fdt[k]].t);
    src[fdt[k]].t = ref_upload(src[fdt[k]].r);
  }
  for (int a = 0; a < SLOTH_DTYPE_COUNT; a++)
    for (int b = 0; b < SLOTH_DTYPE_COUNT; b++)
      expect(sloth_cast(src[a].t, (sloth_dtype)b), ref_cast(src[a].r, (sloth_dtype)b), EXACT, "cast %s -> %s", sloth_dtype_name((sloth_dtype)a),
             sloth_dtype_name((sloth_dtype)b));
  pair neg = input(SLOTH_F32, S(3, 5), -100, 100, 0);
  expect(sloth_cast(neg.t, SLOTH_I32), ref_cast(neg.r, SLOTH_I32), EXACT, "cast f32 -> i32 truncates toward zero");
  expect(sloth_cast(neg.t, SLOTH_BOOL), ref_cast(neg.r, SLOTH_BOOL), EXACT, "cast negative f32 -> bool");
  /* rounding to f16 (nearest even, subnormals, overflow to infinity) and to f32 */
  {
    static const double fv[] = {0.1, -0.1, 1.0 / 3, 2049, 2051, 65504, 65519.9, 65520, -1e6, 1e-5, 3e-8, 2.98023223876953125e-8,
                                -5.9604644775390625e-8, 1e-9, 0.0, -0.0, 1.00048828125, 1.00146484375};
    const int64_t nf = (int64_t)(sizeof fv / sizeof fv[0]);
    ref_t *r32 = ref_alloc(SLOTH_F32, 1, &nf), *r64 = ref_alloc(SLOTH_F64, 1, &nf);
    for (int64_t i = 0; i < nf; i++) r32->v[i] = ref_conv(fv[i], SLOTH_F32), r64->v[i] = fv[i];
    pair p32 = from_ref(r32), p64 = from_ref(r64);
    expect(sloth_cast(p32.t, SLOTH_F16), ref_cast(p32.r, SLOTH_F16), EXACT, "cast f32 -> f16 rounds to nearest even");
    expect(sloth_cast(p64.t, SLOTH_F32), ref_cast(p64.r, SLOTH_F32), EXACT, "cast f64 -> f32 rounds");
    /* f16 loads of every kind of value: subnormals, the largest finite, infinities, NaN, -0 */
    static const uint16_t hb[] = {0x0001, 0x03ff, 0x0400, 0x3c00, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x8001, 0x8000, 0xc000};
    const int64_t nh = (int64_t)(sizeof hb / sizeof hb[0]);
    pair ph = from_ref(ref_from_host(hb, SLOTH_F16, 1, &nh));
    expect(sloth_cast(ph.t, SLOTH_F32), ref_cast(ph.r, SLOTH_F32), EXACT, "cast f16 -> f32 of special values (loads)");
    expect(sloth_neg(ph.t), ref_unary(RU_NEG, ph.r), EXACT, "neg of f16 special values (load and store)");
    sloth_tensor *h = sloth_cast(p32.t, SLOTH_F16), *l = sloth_cast(p64.t, SLOTH_I64);
    ref_t *rh = ref_cast(p32.r, SLOTH_F16), *rl = ref_cast(p64.r, SLOTH_I64);
    expect(sloth_cast(h, SLOTH_F64), ref_cast(rh, SLOTH_F64), EXACT, "cast f32 -> f16 -> f64");
    pair big = input(SLOTH_I64, 1, &nf, -4e15, 4e15, 0);
    expect(sloth_cast(big.t, SLOTH_F64), ref_cast(big.r, SLOTH_F64), EXACT, "cast i64 beyond 2^32 -> f64");
    expect(sloth_add(l, big.t), ref_binary(RB_ADD, rl, big.r), EXACT, "cast(f64, i64) + i64");
    flush();
    sloth_release(h), sloth_release(l);
    ref_free(rh), ref_free(rl);
    pair_free(p32), pair_free(p64), pair_free(big), pair_free(ph);
  }
  flush();
  /* casts inside expressions */
  sloth_tensor *c0 = sloth_add_scalar(neg.t, 0.5), *c = sloth_cast(c0, SLOTH_I32);
  ref_t *t1 = ref_binary_scalar(RB_ADD, neg.r, 0.5);
  sloth_tensor *d = sloth_mul_scalar(c, 3);
  ref_t *rc = ref_cast(t1, SLOTH_I32);
  expect(d, ref_binary_scalar(RB_MUL, rc, 3), EXACT, "cast(x + 0.5, i32) * 3");
  flush();
  sloth_release(c0), sloth_release(c);
  ref_free(t1), ref_free(rc);
  pair_free(neg);
  for (int a = 0; a < SLOTH_DTYPE_COUNT; a++) pair_free(src[a]);
}

/* ------------------------------------------------------------------ views */

static void test_views(void) {
  /* distinct values, so any index mistake shows */
  ref_t *base = ref_arange(0, 24, 1, SLOTH_F32);
  ref_t *rx = ref_reshape(base, S(2, 3, 4));
  ref_free(base);
  for (int64_t i = 0; i < rx->n; i++) rx->v[i] = rx->v[i] * 1.5 - 7;
  pair x = from_ref(rx);
#define V(call, refcall, ...) CHECK(call, refcall, EXACT, __VA_ARGS__)
  /* reshape */
  V(sloth_reshape(x.t, S(4, 6)), ref_reshape(x.r, S(4, 6)), "reshape [2,3,4] -> [4,6]");
  V(sloth_reshape(x.t, S(24)), ref_reshape(x.r, S(24)), "reshape -> [24]");
  V(sloth_reshape(x.t, S(-1, 4)), ref_reshape(x.r, S(-1, 4)), "reshape -> [-1,4]");
  V(sloth_reshape(x.t, S(2, -1, 2)), ref_reshape(x.r, S(2, -1, 2)), "reshape -> [2,-1,2]");
  V(sloth_reshape(x.t, S(1, 24, 1)), ref_reshape(x.r, S(1, 24, 1)), "reshape -> [1,24,1]");
  /* permute and transpose */
  static const int perms[][3] = {{2, 0, 1}, {1, 2, 0}, {2, 1, 0}, {0, 2, 1}, {0, 1, 2}};
  for (size_t i = 0; i < sizeof perms / sizeof perms[0]; i++)
    V(sloth_permute(x.t, perms[i]), ref_permute(x.r, perms[i]), "permute (%d,%d,%d)", perms[i][0], perms[i][1], perms[i][2]);
  V(sloth_transpose(x.t, 0, 2), ref_transpose(x.r, 0, 2), "transpose 0 2");
  V(sloth_transpose(x.t, -1, -2), ref_transpose(x.r, -1, -2), "transpose -1 -2");
  /* expand */
  pair col = input(SLOTH_F32, S(3, 1), -5, 5, 0);
  V(sloth_expand(col.t, S(2, 3, 4)), ref_expand(col.r, S(2, 3, 4)), "expand [3,1] -> [2,3,4]");
  V(sloth_expand(col.t, S(3, -1)), ref_expand(col.r, S(3, -1)), "expand [3,1] -> [3,-1] (keeps)");
  V(sloth_expand(col.t, S(-1, 5)), ref_expand(col.r, S(-1, 5)), "expand [3,1] -> [-1,5]");
  pair mid = input(SLOTH_F32, S(2, 1, 4), -5, 5, 0);
  V(sloth_expand(mid.t, S(3, 2, 5, 4)), ref_expand(mid.r, S(3, 2, 5, 4)), "expand [2,1,4] -> [3,2,5,4]");
  pair sc = input(SLOTH_F32, 0, NULL, -5, 5, 0);
  V(sloth_expand(sc.t, S(2, 2)), ref_expand(sc.r, S(2, 2)), "expand [] -> [2,2]");
  expect_error(sloth_expand(col.t, S(3, 2, 4)), SLOTH_E_SHAPE, "expand [3,1] -> [3,2,4]");
  /* slice: Python semantics on a [2,5,4] tensor */
  pair y = input(SLOTH_F32, S(2, 5, 4), -9, 9, 0);
  static const struct {
    int axis;
    int64_t a, b, s;
  } sl[] = {
      {1, 1, 4, 1},     {1, 0, 5, 2},   {1, 4, 0, -1}, {1, -1, -6, -1}, {1, -1, -100, -1}, {1, -2, 100, 1}, {1, -100, 2, 1},
      {1, 3, 1, -2},    {1, 2, 2, 1},   {1, 4, 1, 1},  {1, 0, 5, 3},    {-1, 3, -5, -2},   {2, -3, -1, 1},  {0, 1, 2, 1},
      {0, -1, -3, -1},  {1, 100, -100, -3}, {2, 1, 100, 2},
      /* extreme values: Python clamps, and a step larger than the axis takes one element */
      {1, 0, 5, INT64_MAX}, {1, 4, -100, INT64_MIN}, {1, INT64_MIN, INT64_MAX, 2}, {1, INT64_MAX, INT64_MIN, -1},
      {1, 1, 5, INT64_MAX - 1},
  };
  for (size_t i = 0; i < sizeof sl / sizeof sl[0]; i++)
    V(sloth_slice(y.t, sl[i].axis, sl[i].a, sl[i].b, sl[i].s), ref_slice(y.r, sl[i].axis, sl[i].a, sl[i].b, sl[i].s),
      "slice axis %d [%lld:%lld:%lld] of [2,5,4]", sl[i].axis, (long long)sl[i].a, (long long)sl[i].b, (long long)sl[i].s);
  expect_error(sloth_slice(y.t, 1, 0, 5, 0), SLOTH_E_INVALID, "slice with step 0");
  /* squeeze, unsqueeze, flatten */
  pair z = input(SLOTH_F32, S(2, 1, 3), -9, 9, 0);
  V(sloth_squeeze(z.t, 1), ref_squeeze(z.r, 1), "squeeze axis 1 of [2,1,3]");
  V(sloth_squeeze(z.t, -2), ref_squeeze(z.r, -2), "squeeze axis -2 of [2,1,3]");
  V(sloth_unsqueeze(z.t, 0), ref_unsqueeze(z.r, 0), "unsqueeze axis 0");
  V(sloth_unsqueeze(z.t, 3), ref_unsqueeze(z.r, 3), "unsqueeze axis 3 (end)");
  V(sloth_unsqueeze(z.t, -1), ref_unsqueeze(z.r, -1), "unsqueeze axis -1");
  V(sloth_unsqueeze(sc.t, 0), ref_unsqueeze(sc.r, 0), "unsqueeze of rank 0");
  expect_error(sloth_squeeze(z.t, 0), SLOTH_E_SHAPE, "squeeze of an axis of size 2");
  V(sloth_flatten(x.t, 0, 1), ref_flatten(x.r, 0, 1), "flatten 0..1 of [2,3,4]");
  V(sloth_flatten(x.t, 1, 2), ref_flatten(x.r, 1, 2), "flatten 1..2");
  V(sloth_flatten(x.t, 0, -1), ref_flatten(x.r, 0, -1), "flatten 0..-1");
  V(sloth_flatten(sc.t, 0, 0), ref_flatten(sc.r, 0, 0), "flatten of rank 0");
  /* views of every dtype (the loads of u8 and bool) */
  for (int dt = 1; dt < SLOTH_DTYPE_COUNT; dt++) {
    pair w = input((sloth_dtype)dt, S(3, 4), 0, 200, 1);
    ref_t *rs = ref_slice(w.r, 1, 3, -5, -2);
    sloth_tensor *ts = sloth_slice(w.t, 1, 3, -5, -2);
    expect(sloth_transpose(ts, 0, 1), ref_transpose(rs, 0, 1), EXACT, "transpose(slice) of %s", sloth_dtype_name((sloth_dtype)dt));
    sloth_release(ts);
    ref_free(rs);
    pair_free(w);
  }
  flush();
#undef V
  pair_free(x), pair_free(col), pair_free(mid), pair_free(sc), pair_free(y), pair_free(z);
}

/* Non-contiguous view chains feeding elementwise ops and reductions. Each
 * step is applied to both sides; the helpers keep the bookkeeping short. */
#define CHAIN_MAX 128
typedef struct chain {
  sloth_tensor *t[CHAIN_MAX];
  ref_t *r[CHAIN_MAX];
  int n;
} chain;

static pair ch_push(chain *c, sloth_tensor *t, ref_t *r) {
  if (c->n == CHAIN_MAX) {
    fprintf(stderr, "test_ops: chain full (raise CHAIN_MAX)\n");
    abort();
  }
  c->t[c->n] = t;
  c->r[c->n++] = r;
  if (!t) diag("chain step %d returned NULL: %s", c->n, sloth_last_error());
  return (pair){t, r};
}

static void ch_free(chain *c) {
  for (int i = 0; i < c->n; i++) {
    sloth_release(c->t[i]);
    ref_free(c->r[i]);
  }
  c->n = 0;
}

static void test_view_chains(void) {
  chain c = {0};
  ref_t *rx = ref_random(&rng, SLOTH_F32, S(3, 4, 5), -2, 2, 0);
  pair x = ch_push(&c, ref_upload(rx), rx);
  int p201[] = {2, 0, 1}, p102[] = {1, 0, 2}, p10[] = {1, 0};
  /* 1. permute -> slice (negative step) -> slice (step 2) -> reshape -> exp + transposed other */
  {
    pair a = ch_push(&c, sloth_permute(x.t, p201), ref_permute(x.r, p201));                 /* [5,3,4] */
    pair b = ch_push(&c, sloth_slice(a.t, 2, -1, -100, -1), ref_slice(a.r, 2, -1, -100, -1)); /* [5,3,4] reversed */
    pair d = ch_push(&c, sloth_slice(b.t, 0, 1, 5, 2), ref_slice(b.r, 0, 1, 5, 2));         /* [2,3,4] */
    pair e = ch_push(&c, sloth_reshape(d.t, S(6, 4)), ref_reshape(d.r, S(6, 4)));
    ref_t *ro = ref_random(&rng, SLOTH_F32, S(4, 6), -1, 1, 0);
    pair o = ch_push(&c, ref_upload(ro), ro);
    pair ot = ch_push(&c, sloth_transpose(o.t, 0, 1), ref_transpose(o.r, 0, 1));
    pair f = ch_push(&c, sloth_exp(e.t), ref_unary(RU_EXP, e.r));
    expect(sloth_add(f.t, ot.t), ref_binary(RB_ADD, f.r, ot.r), MATH, "exp(reshape(slice(slice(permute(x))))) + transpose(o)");
    int ax0 = 0;
    expect(sloth_sum(f.t, &ax0, 1, 0), ref_reduce(RR_SUM, f.r, &ax0, 1, 0), REDUCE, "sum over axis 0 of that chain");
    flush();
  }
  /* 2. expand -> reshape -> mul with arange */
  {
    ref_t *rcol = ref_random(&rng, SLOTH_F32, S(3, 1), -3, 3, 0);
    pair col = ch_push(&c, ref_upload(rcol), rcol);
    pair ex = ch_push(&c, sloth_expand(col.t, S(2, 3, 4)), ref_expand(col.r, S(2, 3, 4)));
    pair rs = ch_push(&c, sloth_reshape(ex.t, S(6, 4)), ref_reshape(ex.r, S(6, 4)));
    pair ar = ch_push(&c, sloth_arange(0, 4, 1, SLOTH_F32), ref_arange(0, 4, 1, SLOTH_F32));
    expect(sloth_mul(rs.t, ar.t), ref_binary(RB_MUL, rs.r, ar.r), ARITH, "reshape(expand([3,1] -> [2,3,4]), [6,4]) * arange(4)");
    pair rs2 = ch_push(&c, sloth_reshape(ex.t, S(4, 6)), ref_reshape(ex.r, S(4, 6)));
    expect(sloth_neg(rs2.t), ref_unary(RU_NEG, rs2.r), EXACT, "neg(reshape(expand, [4,6])) (rows mix broadcast blocks)");
    /* expand -> permute -> reshape */
    pair row = ch_push(&c, sloth_reshape(col.t, S(1, 3)), ref_reshape(col.r, S(1, 3)));
    pair ex2 = ch_push(&c, sloth_expand(row.t, S(4, 3)), ref_expand(row.r, S(4, 3)));
    pair pt = ch_push(&c, sloth_permute(ex2.t, p10), ref_permute(ex2.r, p10));
    pair rr = ch_push(&c, sloth_reshape(pt.t, S(2, 6)), ref_reshape(pt.r, S(2, 6)));
    ref_t *rd = ref_random(&rng, SLOTH_F32, S(12), -3, 3, 0);
    pair dd = ch_push(&c, ref_upload(rd), rd);
    pair d2 = ch_push(&c, sloth_reshape(dd.t, S(2, 6)), ref_reshape(dd.r, S(2, 6)));
    expect(sloth_add(rr.t, d2.t), ref_binary(RB_ADD, rr.r, d2.r), ARITH, "reshape(permute(expand([1,3] -> [4,3]))) + reshape(data)");
    flush();
  }
  /* 3. slice (negative step) -> permute -> reshape(-1) -> sum */
  {
    pair a = ch_push(&c, sloth_slice(x.t, 2, 4, 0, -2), ref_slice(x.r, 2, 4, 0, -2)); /* [3,4,2] */
    pair b = ch_push(&c, sloth_permute(a.t, p201), ref_permute(a.r, p201));          /* [2,3,4] */
    pair d = ch_push(&c, sloth_reshape(b.t, S(-1)), ref_reshape(b.r, S(-1)));
    expect(sloth_mul_scalar(d.t, 2), ref_binary_scalar(RB_MUL, d.r, 2), ARITH, "reshape(-1) of permute(slice(x, step -2))");
    expect(sloth_sum(d.t, NULL, 0, 0), ref_reduce(RR_SUM, d.r, NULL, 0, 0), REDUCE, "sum of reshape(-1) of permute(slice(x))");
    flush();
  }
  /* 4. transpose -> flatten -> sum over axis 0; permute of permute of permute */
  {
    pair t = ch_push(&c, sloth_transpose(x.t, 0, 2), ref_transpose(x.r, 0, 2)); /* [5,4,3] */
    pair f = ch_push(&c, sloth_flatten(t.t, 1, 2), ref_flatten(t.r, 1, 2));     /* [5,12] */
    int ax0 = 0;
    expect(sloth_sum(f.t, &ax0, 1, 1), ref_reduce(RR_SUM, f.r, &ax0, 1, 1), REDUCE, "sum(flatten(transpose(x)), 0, keepdim)");
    pair p1 = ch_push(&c, sloth_permute(x.t, p201), ref_permute(x.r, p201));
    pair p2 = ch_push(&c, sloth_permute(p1.t, p102), ref_permute(p1.r, p102));
    pair p3 = ch_push(&c, sloth_permute(p2.t, p201), ref_permute(p2.r, p201));
    expect(sloth_abs(p3.t), ref_unary(RU_ABS, p3.r), EXACT, "abs(permute(permute(permute(x))))");
    flush();
  }
  /* 5. slice of slice of slice, then squeeze/unsqueeze/expand */
  {
    pair s1 = ch_push(&c, sloth_slice(x.t, 1, 3, -5, -1), ref_slice(x.r, 1, 3, -5, -1)); /* [3,4,5] */
    pair s2 = ch_push(&c, sloth_slice(s1.t, 1, 1, 4, 2), ref_slice(s1.r, 1, 1, 4, 2));   /* [3,2,5] */
    pair s3 = ch_push(&c, sloth_slice(s2.t, 2, -2, 0, -3), ref_slice(s2.r, 2, -2, 0, -3)); /* [3,2,1] */
    pair sq = ch_push(&c, sloth_squeeze(s3.t, 2), ref_squeeze(s3.r, 2));                    /* [3,2] */
    pair us = ch_push(&c, sloth_unsqueeze(sq.t, 1), ref_unsqueeze(sq.r, 1));                /* [3,1,2] */
    pair ex = ch_push(&c, sloth_expand(us.t, S(3, 4, 2)), ref_expand(us.r, S(3, 4, 2)));
    pair pe = ch_push(&c, sloth_permute(ex.t, p102), ref_permute(ex.r, p102));              /* [4,3,2] */
    pair one = ch_push(&c, sloth_scalar(1, SLOTH_F32), ref_full(1, SLOTH_F32, 0, NULL));
    expect(sloth_sub(pe.t, one.t), ref_binary(RB_SUB, pe.r, one.r), ARITH,
           "permute(expand(unsqueeze(squeeze(slice(slice(slice(x))))))) - 1");
    flush();
  }
  /* 6. views above computed values: z = exp(x) read at two different view positions in one kernel */
  {
    pair sn = ch_push(&c, sloth_sin(x.t), ref_unary(RU_SIN, x.r));
    pair z = ch_push(&c, sloth_mul_scalar(sn.t, 3), ref_binary_scalar(RB_MUL, sn.r, 3));
    pair zt = ch_push(&c, sloth_permute(z.t, p201), ref_permute(z.r, p201));                 /* [5,3,4] */
    pair zs = ch_push(&c, sloth_slice(z.t, 2, 0, 5, 1), ref_slice(z.r, 2, 0, 5, 1));         /* same */
    pair zr = ch_push(&c, sloth_reshape(zs.t, S(5, 3, 4)), ref_reshape(zs.r, S(5, 3, 4)));   /* reinterpreted */
    expect(sloth_sub(zt.t, zr.t), ref_binary(RB_SUB, zt.r, zr.r), MATH, "permute(z) - reshape(z) with z = 3 sin(x) fused");
    flush();
  }
  /* 7. views of reductions: x - max(x, -1, keepdim), softmax */
  {
    int last = -1;
    pair m = ch_push(&c, sloth_max(x.t, &last, 1, 1), ref_reduce(RR_MAX, x.r, &last, 1, 1));
    pair d = ch_push(&c, sloth_sub(x.t, m.t), ref_binary(RB_SUB, x.r, m.r));
    pair e = ch_push(&c, sloth_exp(d.t), ref_unary(RU_EXP, d.r));
    pair s = ch_push(&c, sloth_sum(e.t, &last, 1, 1), ref_reduce(RR_SUM, e.r, &last, 1, 1));
    expect(sloth_div(e.t, s.t), ref_binary(RB_DIV, e.r, s.r), MATH, "softmax over the last axis");
    pair mt = ch_push(&c, sloth_max(x.t, &last, 1, 0), ref_reduce(RR_MAX, x.r, &last, 1, 0)); /* [3,4] */
    pair mtt = ch_push(&c, sloth_transpose(mt.t, 0, 1), ref_transpose(mt.r, 0, 1));          /* [4,3] */
    int a0 = 0;
    expect(sloth_sum(mtt.t, &a0, 1, 0), ref_reduce(RR_SUM, mtt.r, &a0, 1, 0), REDUCE, "sum(transpose(max(x, -1)), 0)");
    flush();
  }
  /* 8. views of a tensor that is already materialized */
  {
    pair z = ch_push(&c, sloth_tanh(x.t), ref_unary(RU_TANH, x.r));
    sloth_sync(&z.t, 1);
    ok(!sloth_is_pending(z.t), "tanh(x) materialized by sloth_sync");
    pair a = ch_push(&c, sloth_slice(z.t, 0, -1, -4, -2), ref_slice(z.r, 0, -1, -4, -2)); /* [2,4,5] */
    pair b = ch_push(&c, sloth_permute(a.t, p102), ref_permute(a.r, p102));              /* [4,2,5] */
    pair d = ch_push(&c, sloth_reshape(b.t, S(8, 5)), ref_reshape(b.r, S(8, 5)));
    expect(sloth_add_scalar(d.t, 1), ref_binary_scalar(RB_ADD, d.r, 1), MATH, "reshape(permute(slice(materialized))) + 1");
    flush();
  }
  /* 9. reshape -> permute -> reshape -> slice, on i32 and bool */
  {
    ref_t *ri = ref_arange(0, 24, 1, SLOTH_I32);
    pair i = ch_push(&c, ref_upload(ri), ri);
    pair a = ch_push(&c, sloth_reshape(i.t, S(2, 3, 4)), ref_reshape(i.r, S(2, 3, 4)));
    pair b = ch_push(&c, sloth_permute(a.t, p102), ref_permute(a.r, p102)); /* [3,2,4] */
    pair d = ch_push(&c, sloth_reshape(b.t, S(3, 8)), ref_reshape(b.r, S(3, 8)));
    pair e = ch_push(&c, sloth_slice(d.t, 1, 7, -9, -3), ref_slice(d.r, 1, 7, -9, -3));
    expect(sloth_mul_scalar(e.t, 2), ref_binary_scalar(RB_MUL, e.r, 2), EXACT, "i32 reshape/permute/reshape/slice chain * 2");
    pair ten = ch_push(&c, sloth_scalar(10, SLOTH_I32), ref_full(10, SLOTH_I32, 0, NULL));
    pair g = ch_push(&c, sloth_gt(b.t, ten.t), ref_binary(RB_GT, b.r, ten.r));
    pair gt = ch_push(&c, sloth_transpose(g.t, 0, 2), ref_transpose(g.r, 0, 2));
    expect(sloth_logical_not(gt.t), ref_unary(RU_NOT, gt.r), EXACT, "not(transpose(permuted i32 > 10))");
    flush();
  }
  ch_free(&c);
}

/* pad and as_strided: views that are not NumPy basic slicing */
static void test_pad_as_strided(void) {
  chain c = {0};
  ref_t *rx = ref_random(&rng, SLOTH_F32, S(2, 3, 4), -2, 2, 0);
  pair x = ch_push(&c, ref_upload(rx), rx);
  static const int64_t pads[][6] = {{1, 0, 0, 2, 0, 0}, {0, 0, 2, 1, 3, 0}, {1, 1, 1, 1, 1, 1}, {0, 3, 0, 0, 0, 1}};
  for (size_t i = 0; i < sizeof pads / sizeof pads[0]; i++) {
    double v = i == 1 ? 0 : -1.5 + (double)i;
    expect(sloth_pad(x.t, pads[i], v), ref_pad(x.r, pads[i], v), EXACT, "pad [2,3,4] by (%lld,%lld),(%lld,%lld),(%lld,%lld) with %g",
           (long long)pads[i][0], (long long)pads[i][1], (long long)pads[i][2], (long long)pads[i][3], (long long)pads[i][4],
           (long long)pads[i][5], v);
  }
  flush();
  /* pad of views and of computed values, then views and ops on the result */
  {
    int p[] = {2, 0, 1};
    pair xp = ch_push(&c, sloth_permute(x.t, p), ref_permute(x.r, p));                          /* [4,2,3] */
    pair xs = ch_push(&c, sloth_slice(xp.t, 0, -1, -100, -2), ref_slice(xp.r, 0, -1, -100, -2));  /* [2,2,3] */
    const int64_t pd[] = {1, 0, 0, 1, 2, 2};
    pair pp = ch_push(&c, sloth_pad(xs.t, pd, 7), ref_pad(xs.r, pd, 7));                        /* [3,3,7] */
    pair pr = ch_push(&c, sloth_reshape(pp.t, S(9, 7)), ref_reshape(pp.r, S(9, 7)));
    expect(sloth_mul_scalar(pr.t, 2), ref_binary_scalar(RB_MUL, pr.r, 2), ARITH, "reshape(pad(slice(permute(x)))) * 2");
    pair ex = ch_push(&c, sloth_exp(x.t), ref_unary(RU_EXP, x.r));
    const int64_t pd2[] = {0, 1, 1, 0, 0, 2};
    pair pe = ch_push(&c, sloth_pad(ex.t, pd2, 0.5), ref_pad(ex.r, pd2, 0.5));                 /* [3,4,6] */
    pair pt = ch_push(&c, sloth_transpose(pe.t, 0, 2), ref_transpose(pe.r, 0, 2));
    int a1 = 1;
    expect(sloth_sum(pt.t, &a1, 1, 0), ref_reduce(RR_SUM, pt.r, &a1, 1, 0), REDUCE, "sum(transpose(pad(exp(x))), 1)");
    expect(sloth_max(pe.t, NULL, 0, 0), ref_reduce(RR_MAX, pe.r, NULL, 0, 0), MATH, "max of pad(exp(x))");
    /* two pads of one tensor with different values in one graph */
    const int64_t pd3[] = {1, 1, 0, 0, 0, 0};
    pair q1 = ch_push(&c, sloth_pad(x.t, pd3, -3), ref_pad(x.r, pd3, -3));
    pair q2 = ch_push(&c, sloth_pad(x.t, pd3, 4), ref_pad(x.r, pd3, 4));
    expect(sloth_add(q1.t, q2.t), ref_binary(RB_ADD, q1.r, q2.r), ARITH, "pad(x, -3) + pad(x, 4)");
    flush();
  }
  for (int dt = 1; dt < SLOTH_DTYPE_COUNT; dt++) {
    pair w = input((sloth_dtype)dt, S(3, 2), 0, 100, 1);
    const int64_t pd[] = {0, 2, 1, 1};
    expect(sloth_pad(w.t, pd, 1), ref_pad(w.r, pd, 1), EXACT, "pad %s [3,2]", sloth_dtype_name((sloth_dtype)dt));
    pair_free(w);
  }
  {
    pair e = input(SLOTH_F32, S(0, 3), 0, 1, 0), s0 = input(SLOTH_F32, 0, NULL, 0, 1, 0);
    const int64_t pd[] = {2, 0, 1, 0};
    expect(sloth_pad(e.t, pd, 3), ref_pad(e.r, pd, 3), EXACT, "pad of a [0,3] tensor is all padding");
    expect(sloth_pad(s0.t, NULL, 3), ref_pad(s0.r, NULL, 3), EXACT, "pad of a rank-0 tensor");
    flush();
    pair_free(e), pair_free(s0);
  }
  /* as_strided: windows, overlaps, stride 0, offsets, on views and computed values */
  {
    static const struct {
      int rank;
      int64_t shape[3], strides[3], offset;
    } as[] = {
        {2, {4, 3}, {1, 1}, 0}, {2, {3, 4}, {8, 1}, 2}, {3, {2, 2, 3}, {12, 0, 4}, 1}, {1, {5}, {5}, 0},
        {2, {2, 6}, {1, 4}, 0}, {0, {0}, {0}, 17},      {2, {0, 3}, {1, 1}, 0},        {3, {2, 3, 2}, {0, 0, 1}, 22},
    };
    int p[] = {1, 2, 0};
    pair xp = ch_push(&c, sloth_permute(x.t, p), ref_permute(x.r, p)); /* [3,4,2]: row-major order of the view */
    pair xe = ch_push(&c, sloth_tanh(x.t), ref_unary(RU_TANH, x.r));
    for (size_t i = 0; i < sizeof as / sizeof as[0]; i++) {
      expect(sloth_as_strided(x.t, as[i].rank, as[i].shape, as[i].strides, as[i].offset),
             ref_as_strided(x.r, as[i].rank, as[i].shape, as[i].strides, as[i].offset), EXACT, "as_strided case %zu of data", i);
      expect(sloth_as_strided(xp.t, as[i].rank, as[i].shape, as[i].strides, as[i].offset),
             ref_as_strided(xp.r, as[i].rank, as[i].shape, as[i].strides, as[i].offset), EXACT, "as_strided case %zu of permute(x)", i);
      expect(sloth_as_strided(xe.t, as[i].rank, as[i].shape, as[i].strides, as[i].offset),
             ref_as_strided(xe.r, as[i].rank, as[i].shape, as[i].strides, as[i].offset), MATH, "as_strided case %zu of tanh(x)", i);
    }
    flush();
    pair w = ch_push(&c, sloth_as_strided(xp.t, 2, SHAPE(5, 4), SHAPE(4, 1), 2), ref_as_strided(xp.r, 2, SHAPE(5, 4), SHAPE(4, 1), 2));
    pair wt = ch_push(&c, sloth_transpose(w.t, 0, 1), ref_transpose(w.r, 0, 1));
    pair ws = ch_push(&c, sloth_slice(wt.t, 1, 4, -100, -2), ref_slice(wt.r, 1, 4, -100, -2));
    int a0 = 0;
    expect(sloth_sum(ws.t, &a0, 1, 0), ref_reduce(RR_SUM, ws.r, &a0, 1, 0), REDUCE, "sum(slice(transpose(as_strided(permute(x)))))");
    flush();
  }
  expect_error(sloth_as_strided(x.t, 1, SHAPE(5), SHAPE(6), 0), SLOTH_E_INVALID, "as_strided past the end");
  expect_error(sloth_pad(x.t, (int64_t[]){0, 0, -1, 0, 0, 0}, 0), SLOTH_E_INVALID, "negative padding");
  /* 10. shared producers and several outputs of one sync: a diamond, an
   * output and its own transpose (same shape, one depends on the other), a
   * reduction of a value that is also an output */
  {
    pair z = ch_push(&c, sloth_exp(x.t), ref_unary(RU_EXP, x.r));
    pair a = ch_push(&c, sloth_add_scalar(z.t, 1), ref_binary_scalar(RB_ADD, z.r, 1));
    pair b = ch_push(&c, sloth_mul_scalar(z.t, 2), ref_binary_scalar(RB_MUL, z.r, 2));
    int a2 = 2;
    pair s = ch_push(&c, sloth_sum(z.t, &a2, 1, 1), ref_reduce(RR_SUM, z.r, &a2, 1, 1));
    pair d = ch_push(&c, sloth_div(a.t, s.t), ref_binary(RB_DIV, a.r, s.r));
    expect(sloth_retain(a.t), ref_clone(a.r), MATH, "diamond: exp(x) + 1");
    expect(sloth_retain(b.t), ref_clone(b.r), MATH, "diamond: exp(x) * 2");
    expect(sloth_retain(s.t), ref_clone(s.r), REDUCE, "diamond: sum(exp(x), 2)");
    expect(sloth_retain(d.t), ref_clone(d.r), MATH, "diamond: (exp(x) + 1) / sum(exp(x), 2)");
    flush();
    ref_t *rq = ref_random(&rng, SLOTH_F32, S(4, 4), -2, 2, 0);
    pair q = ch_push(&c, ref_upload(rq), rq);
    pair y = ch_push(&c, sloth_sin(q.t), ref_unary(RU_SIN, q.r));
    pair yt = ch_push(&c, sloth_transpose(y.t, 0, 1), ref_transpose(y.r, 0, 1));
    pair w = ch_push(&c, sloth_cos(q.t), ref_unary(RU_COS, q.r));
    expect(sloth_retain(y.t), ref_clone(y.r), MATH, "outputs y, transpose(y), cos: y");
    expect(sloth_retain(yt.t), ref_clone(yt.r), MATH, "outputs y, transpose(y), cos: transpose(y)");
    expect(sloth_retain(w.t), ref_clone(w.r), MATH, "outputs y, transpose(y), cos: cos");
    expect(sloth_add(yt.t, w.t), ref_binary(RB_ADD, yt.r, w.r), MATH, "outputs y, transpose(y), cos: transpose(y) + cos");
    flush();
  }
  ch_free(&c);
}

/* ------------------------------------------------------------------ reductions */

static tol red_tol(ref_reduce_op op) { return (op == RR_MAX || op == RR_MIN || op >= RR_ARGMAX) ? EXACT : REDUCE; }

/* tl: the tolerance of x's values, or NULL for exact data */
static void reduce_case_tol(ref_reduce_op op, pair x, const int *axes, int naxes, int keepdim, const char *label, const tol *tl) {
  char ax[64] = "all";
  if (naxes) {
    size_t u = 0;
    ax[0] = 0;
    for (int i = 0; i < naxes; i++) u += (size_t)snprintf(ax + u, sizeof ax - u, i ? ",%d" : "%d", axes[i]);
  }
  tol t = red_tol(op);
  if (tl && op != RR_ARGMAX && op != RR_ARGMIN) t = (tol){t.atol + tl->atol, t.rtol + tl->rtol};
  expect(ref_reduce_sloth(op, x.t, axes, naxes, keepdim), ref_reduce(op, x.r, axes, naxes, keepdim), t, "%s over {%s}%s of %s %s %s",
         ref_reduce_names[op], ax, keepdim ? " keepdim" : "", label, sloth_dtype_name(x.r->dt), shape_name(x.r->rank, x.r->shape));
}

static void reduce_case(ref_reduce_op op, pair x, const int *axes, int naxes, int keepdim, const char *label) {
  reduce_case_tol(op, x, axes, naxes, keepdim, label, NULL);
}

static void test_reductions(void) {
  pair x = input(SLOTH_F32, S(3, 4, 5), -2, 2, 0);
  static const struct {
    int n;
    int axes[3];
  } sets[] = {{1, {0}}, {1, {1}}, {1, {2}}, {1, {-1}}, {2, {0, 2}}, {2, {1, 2}}, {2, {0, 1}}, {2, {2, 0}}, {3, {0, 1, 2}}, {0, {0}}};
  /* sum over every kind of axis set, with and without keepdim */
  for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
    for (int k = 0; k < 2; k++) reduce_case(RR_SUM, x, sets[i].axes, sets[i].n, k, "x");
  flush();
  /* the other reductions over a leading, a middle-and-last, and all axes */
  pair near1 = input(SLOTH_F32, S(3, 4, 5), 0.6, 1.5, 0); /* prod stays moderate */
  for (int op = RR_MEAN; op <= RR_PROD; op++) {
    pair in = op == RR_PROD ? near1 : x;
    reduce_case((ref_reduce_op)op, in, (int[]){0}, 1, 0, "x");
    reduce_case((ref_reduce_op)op, in, (int[]){1, 2}, 2, 1, "x");
    reduce_case((ref_reduce_op)op, in, NULL, 0, 0, "x");
  }
  flush();
  /* arg-reductions, with ties (quantized values): the first index wins */
  pair q = input(SLOTH_F32, S(3, 4, 5), -1, 1, 0.5);
  for (int op = RR_ARGMAX; op <= RR_ARGMIN; op++)
    for (int a = -1; a < 3; a++)
      for (int k = 0; k < 2; k++)
        if (a != 2 || k == 0) reduce_case((ref_reduce_op)op, q, &a, 1, k, "quantized");
  flush();
  /* reductions of elementwise expressions (fused into the reduction) */
  {
    pair y = input(SLOTH_F32, S(4, 5), -1, 1, 0);
    sloth_tensor *e0 = sloth_exp(x.t), *e = sloth_mul(e0, y.t);
    ref_t *re0 = ref_unary(RU_EXP, x.r), *re = ref_binary(RB_MUL, re0, y.r);
    pair ep = {e, re};
    reduce_case_tol(RR_SUM, ep, (int[]){1}, 1, 0, "exp(x) * y[4,5]", &MATH);
    reduce_case_tol(RR_MAX, ep, (int[]){0, 2}, 2, 1, "exp(x) * y[4,5]", &MATH);
    reduce_case_tol(RR_ARGMIN, ep, (int[]){2}, 1, 0, "exp(x) * y[4,5]", &MATH); /* continuous: no near-ties */
    reduce_case_tol(RR_MEAN, ep, NULL, 0, 1, "exp(x) * y[4,5]", &MATH);
    flush();
    sloth_release(e0), sloth_release(e);
    ref_free(re0), ref_free(re);
    pair_free(y);
  }
  /* reductions of permuted and sliced views */
  {
    int p[] = {2, 0, 1};
    sloth_tensor *pt = sloth_permute(x.t, p);
    ref_t *rp = ref_permute(x.r, p);
    pair pp = {pt, rp};
    reduce_case(RR_SUM, pp, (int[]){0}, 1, 0, "permute(x)");
    reduce_case(RR_SUM, pp, (int[]){2}, 1, 1, "permute(x)");
    reduce_case(RR_MIN, pp, (int[]){1, 2}, 2, 0, "permute(x)");
    reduce_case(RR_ARGMAX, pp, (int[]){1}, 1, 0, "permute(x)");
    sloth_tensor *st = sloth_slice(pt, 0, -1, -100, -2);
    ref_t *rs = ref_slice(rp, 0, -1, -100, -2);
    pair sp = {st, rs};
    reduce_case(RR_SUM, sp, (int[]){0, 2}, 2, 0, "slice(permute(x), step -2)");
    flush();
    sloth_release(pt), sloth_release(st);
    ref_free(rp), ref_free(rs);
  }
  /* integer and bool inputs: sum/prod give i32, mean gives f32, max/min keep the dtype */
  {
    pair i = input(SLOTH_I32, S(4, 6), -50, 50, 1);
    pair u = input(SLOTH_U8, S(4, 6), 0, 255, 1);
    pair b = input(SLOTH_BOOL, S(4, 6), 0, 1, 1);
    pair small = input(SLOTH_I32, S(4, 6), -3, 3, 1);
    reduce_case(RR_SUM, i, (int[]){1}, 1, 0, "i");
    reduce_case(RR_MEAN, i, (int[]){0}, 1, 0, "i");
    reduce_case(RR_MAX, i, NULL, 0, 0, "i");
    reduce_case(RR_ARGMIN, i, (int[]){1}, 1, 1, "i");
    reduce_case(RR_PROD, small, (int[]){0}, 1, 0, "small");
    reduce_case(RR_SUM, u, (int[]){1}, 1, 0, "u (no u8 wrap in sum)");
    reduce_case(RR_MIN, u, (int[]){0}, 1, 1, "u");
    reduce_case(RR_MAX, u, (int[]){1}, 1, 0, "u");
    reduce_case(RR_SUM, b, NULL, 0, 0, "b (counts trues)");
    reduce_case(RR_MAX, b, (int[]){1}, 1, 0, "b (any)");
    reduce_case(RR_MIN, b, (int[]){1}, 1, 0, "b (all)");
    reduce_case(RR_ARGMAX, b, (int[]){0}, 1, 0, "b");
    flush();
    pair_free(i), pair_free(u), pair_free(b), pair_free(small);
  }
  /* f16 (accumulated in float, the result f16), f64 (in double), i64 (sum
   * and prod stay i64, mean gives f32) */
  {
    pair h = input(SLOTH_F16, S(4, 6), -2, 2, 0), d = input(SLOTH_F64, S(4, 6), -2, 2, 0);
    pair hq = input(SLOTH_F16, S(4, 6), -1, 1, 0.5), h1 = input(SLOTH_F16, S(4, 6), 0.6, 1.5, 0);
    pair d1 = input(SLOTH_F64, S(4, 6), 0.6, 1.5, 0);
    pair l = input(SLOTH_I64, S(4, 6), -50, 50, 1), lbig = input(SLOTH_I64, S(4, 6), -4e12, 4e12, 1);
    pair *fs[] = {&h, &d};
    for (int k = 0; k < 2; k++) {
      reduce_case(RR_SUM, *fs[k], (int[]){1}, 1, 0, "x");
      reduce_case(RR_SUM, *fs[k], NULL, 0, 1, "x");
      reduce_case(RR_MEAN, *fs[k], (int[]){0}, 1, 0, "x");
      reduce_case(RR_MAX, *fs[k], (int[]){1}, 1, 1, "x");
      reduce_case(RR_MIN, *fs[k], NULL, 0, 0, "x");
      reduce_case(RR_ARGMIN, *fs[k], (int[]){1}, 1, 0, "x");
    }
    reduce_case(RR_PROD, h1, (int[]){1}, 1, 0, "near 1");
    reduce_case(RR_PROD, d1, (int[]){0}, 1, 0, "near 1");
    reduce_case(RR_ARGMAX, hq, (int[]){0}, 1, 0, "quantized");
    reduce_case(RR_SUM, l, (int[]){1}, 1, 0, "l");
    reduce_case(RR_MEAN, l, (int[]){0}, 1, 0, "l");
    reduce_case(RR_MAX, l, NULL, 0, 0, "l");
    reduce_case(RR_ARGMAX, l, (int[]){1}, 1, 1, "l");
    reduce_case(RR_SUM, lbig, (int[]){0}, 1, 0, "beyond i32");
    reduce_case(RR_MIN, lbig, (int[]){1}, 1, 0, "beyond i32");
    flush();
    /* 1500 f16 values summing to ~750: an f16 accumulator would lose most of it */
    pair hbig = input(SLOTH_F16, S(2, 1500), 0, 1, 0);
    reduce_case(RR_SUM, hbig, (int[]){1}, 1, 0, "big");
    reduce_case(RR_MEAN, hbig, NULL, 0, 0, "big");
    flush();
    pair_free(h), pair_free(d), pair_free(hq), pair_free(h1), pair_free(d1), pair_free(l), pair_free(lbig), pair_free(hbig);
  }
  /* sizes that use several work-items per output (tree reduction across
   * lanes) and many outputs of one work-item each */
  {
    pair big = input(SLOTH_F32, S(2, 1000), -1, 1, 0);
    reduce_case(RR_SUM, big, (int[]){1}, 1, 0, "big");
    reduce_case(RR_MAX, big, (int[]){1}, 1, 0, "big");
    reduce_case(RR_MEAN, big, NULL, 0, 0, "big");
    pair ties = input(SLOTH_F32, S(3, 300), 0, 2, 1); /* many equal maxima far apart */
    reduce_case(RR_ARGMAX, ties, (int[]){1}, 1, 0, "ties");
    reduce_case(RR_ARGMIN, ties, (int[]){1}, 1, 0, "ties");
    pair many = input(SLOTH_F32, S(200, 7), -1, 1, 0);
    reduce_case(RR_SUM, many, (int[]){1}, 1, 0, "many rows");
    reduce_case(RR_ARGMAX, many, (int[]){0}, 1, 0, "many rows");
    pair ibig = input(SLOTH_I32, S(3, 777), -1000, 1000, 1);
    reduce_case(RR_SUM, ibig, (int[]){1}, 1, 0, "ibig");
    reduce_case(RR_MIN, ibig, (int[]){1}, 1, 0, "ibig");
    flush();
    pair_free(big), pair_free(ties), pair_free(many), pair_free(ibig);
  }
  /* a reduction of a reduction */
  {
    int a2 = 2, a0 = 0;
    sloth_tensor *m = sloth_max(x.t, &a2, 1, 0);
    ref_t *rm = ref_reduce(RR_MAX, x.r, &a2, 1, 0);
    expect(sloth_sum(m, &a0, 1, 0), ref_reduce(RR_SUM, rm, &a0, 1, 0), REDUCE, "sum(max(x, 2), 0)");
    flush();
    sloth_release(m);
    ref_free(rm);
  }
  expect_error(sloth_sum(x.t, (int[]){3}, 1, 0), SLOTH_E_INVALID, "sum over axis 3 of a rank-3 tensor");
  expect_error(sloth_sum(x.t, (int[]){1, -2}, 2, 0), SLOTH_E_INVALID, "sum over a repeated axis");
  pair_free(x), pair_free(near1), pair_free(q);
}

/* ------------------------------------------------------------------ rank 0 and zero-size */

static void test_rank0_and_empty(void) {
  pair s = input(SLOTH_F32, 0, NULL, 0.5, 2, 0);
  pair m = input(SLOTH_F32, S(2, 3), -2, 2, 0);
  expect(sloth_exp(s.t), ref_unary(RU_EXP, s.r), MATH, "exp of rank 0");
  expect(sloth_add(s.t, s.t), ref_binary(RB_ADD, s.r, s.r), ARITH, "rank 0 + rank 0");
  expect(sloth_sum(s.t, NULL, 0, 0), ref_reduce(RR_SUM, s.r, NULL, 0, 0), EXACT, "sum of rank 0");
  expect(sloth_max(s.t, NULL, 0, 1), ref_reduce(RR_MAX, s.r, NULL, 0, 1), EXACT, "max of rank 0, keepdim");
  expect(sloth_reshape(s.t, S(1, 1)), ref_reshape(s.r, S(1, 1)), EXACT, "reshape rank 0 -> [1,1]");
  flush();
  {
    sloth_tensor *u = sloth_reshape(s.t, S(1, 1, 1));
    sloth_tensor *back = sloth_reshape(u, 0, NULL);
    expect(sloth_neg(back), ref_unary(RU_NEG, s.r), EXACT, "reshape [1,1,1] -> rank 0");
    expect(sloth_sub(m.t, s.t), ref_binary(RB_SUB, m.r, s.r), ARITH, "rank 2 - rank 0");
    int a1 = 1;
    sloth_tensor *r0 = sloth_sum(m.t, NULL, 0, 0);
    ref_t *rr0 = ref_reduce(RR_SUM, m.r, NULL, 0, 0);
    sloth_tensor *rows = sloth_sum(m.t, &a1, 1, 0);
    ref_t *rrows = ref_reduce(RR_SUM, m.r, &a1, 1, 0);
    expect(sloth_div(rows, r0), ref_binary(RB_DIV, rrows, rr0), MATH, "row sums / total (rank 0 result broadcast)");
    flush();
    sloth_release(u), sloth_release(back), sloth_release(r0), sloth_release(rows);
    ref_free(rr0), ref_free(rrows);
  }
  {
    /* reductions of scalar nodes and of broadcast scalars (full) */
    sloth_tensor *sc = sloth_scalar(2.5, SLOTH_F32), *f = sloth_full(1.5, SLOTH_F32, S(2, 3));
    ref_t *rsc = ref_full(2.5, SLOTH_F32, 0, NULL), *rf = ref_full(1.5, SLOTH_F32, S(2, 3));
    int a1 = 1;
    expect(sloth_sum(sc, NULL, 0, 0), ref_reduce(RR_SUM, rsc, NULL, 0, 0), EXACT, "sum of a scalar node");
    expect(sloth_sum(f, &a1, 1, 0), ref_reduce(RR_SUM, rf, &a1, 1, 0), EXACT, "sum over axis 1 of full([2,3])");
    expect(sloth_prod(f, NULL, 0, 1), ref_reduce(RR_PROD, rf, NULL, 0, 1), ARITH, "prod of full([2,3]), keepdim");
    expect(sloth_argmax(f, 1, 0), ref_reduce(RR_ARGMAX, rf, &a1, 1, 0), EXACT, "argmax of a constant is 0");
    flush();
    sloth_release(sc), sloth_release(f);
    ref_free(rsc), ref_free(rf);
  }
  /* zero-size tensors: elementwise, broadcasting, views and reductions */
  pair e = input(SLOTH_F32, S(3, 0), 0, 1, 0);
  pair e2 = input(SLOTH_F32, S(0, 4), 0, 1, 0);
  pair row = input(SLOTH_F32, S(4), 0, 1, 0);
  expect(sloth_exp(e.t), ref_unary(RU_EXP, e.r), EXACT, "exp of [3,0]");
  expect(sloth_add(e2.t, row.t), ref_binary(RB_ADD, e2.r, row.r), EXACT, "[0,4] + [4]");
  expect(sloth_mul(e2.t, s.t), ref_binary(RB_MUL, e2.r, s.r), EXACT, "[0,4] * rank 0");
  expect(sloth_transpose(e.t, 0, 1), ref_transpose(e.r, 0, 1), EXACT, "transpose of [3,0]");
  expect(sloth_reshape(e2.t, S(4, 0, 2)), ref_reshape(e2.r, S(4, 0, 2)), EXACT, "reshape [0,4] -> [4,0,2]");
  expect(sloth_slice(m.t, 1, 2, 2, 1), ref_slice(m.r, 1, 2, 2, 1), EXACT, "empty slice of [2,3]");
  expect(sloth_expand(e2.t, S(2, 0, 4)), ref_expand(e2.r, S(2, 0, 4)), EXACT, "expand [0,4] -> [2,0,4]");
  flush();
  int a0 = 0, a1 = 1;
  expect(sloth_sum(e.t, &a1, 1, 0), ref_reduce(RR_SUM, e.r, &a1, 1, 0), EXACT, "sum over the empty axis of [3,0] is 0");
  expect(sloth_sum(e.t, &a0, 1, 0), ref_reduce(RR_SUM, e.r, &a0, 1, 0), EXACT, "sum over axis 0 of [3,0] is empty");
  expect(sloth_sum(e.t, NULL, 0, 0), ref_reduce(RR_SUM, e.r, NULL, 0, 0), EXACT, "sum of all of [3,0] is 0");
  expect(sloth_sum(e2.t, &a0, 1, 1), ref_reduce(RR_SUM, e2.r, &a0, 1, 1), EXACT, "sum over axis 0 of [0,4], keepdim");
  expect(sloth_prod(e.t, &a1, 1, 0), ref_reduce(RR_PROD, e.r, &a1, 1, 0), EXACT, "prod over an empty axis is 1");
  expect(sloth_mean(e.t, &a1, 1, 0), ref_reduce(RR_MEAN, e.r, &a1, 1, 0), EXACT, "mean over an empty axis is NaN");
  expect(sloth_max(e.t, &a0, 1, 0), ref_reduce(RR_MAX, e.r, &a0, 1, 0), EXACT, "max over the non-empty axis of [3,0]");
  {
    sloth_tensor *ex = sloth_exp(e2.t);
    ref_t *rex = ref_unary(RU_EXP, e2.r);
    expect(sloth_sum(ex, &a0, 1, 0), ref_reduce(RR_SUM, rex, &a0, 1, 0), EXACT, "sum over axis 0 of exp([0,4])");
    sloth_release(ex);
    ref_free(rex);
  }
  flush();
  expect_error(sloth_max(e.t, &a1, 1, 0), SLOTH_E_SHAPE, "max over an empty axis");
  expect_error(sloth_argmin(e2.t, 0, 0), SLOTH_E_SHAPE, "argmin over an empty axis");
  pair_free(s), pair_free(m), pair_free(e), pair_free(e2), pair_free(row);
}

/* ------------------------------------------------------------------ rank 8 and large sizes */

static void test_rank8_and_large(void) {
  /* rank SLOTH_MAX_RANK: views, broadcasting and reductions over several axes */
  pair x = input(SLOTH_F32, S(2, 1, 3, 1, 2, 2, 1, 3), -2, 2, 0);
  pair y = input(SLOTH_F32, S(3, 1, 2, 1, 1), -2, 2, 0);
  int perm[8] = {7, 0, 5, 1, 6, 2, 4, 3};
  sloth_tensor *xp = sloth_permute(x.t, perm);
  ref_t *rxp = ref_permute(x.r, perm);
  expect(sloth_add(x.t, y.t), ref_binary(RB_ADD, x.r, y.r), ARITH, "rank 8 + rank 5 broadcast");
  expect(sloth_exp(xp), ref_unary(RU_EXP, rxp), MATH, "exp of a rank-8 permute");
  int axes[] = {0, 2, 7, 4};
  expect(sloth_sum(x.t, axes, 4, 0), ref_reduce(RR_SUM, x.r, axes, 4, 0), REDUCE, "sum of rank 8 over {0,2,7,4}");
  expect(sloth_max(xp, axes, 4, 1), ref_reduce(RR_MAX, rxp, axes, 4, 1), EXACT, "max of a rank-8 permute over {0,2,7,4}, keepdim");
  expect(sloth_argmin(xp, 2, 0), ref_reduce(RR_ARGMIN, rxp, (int[]){2}, 1, 0), EXACT, "argmin of a rank-8 permute over axis 2");
  sloth_tensor *u = sloth_reshape(x.t, S(2, 3, 2, 2, 3, 1, 1));
  ref_t *ru = ref_reshape(x.r, S(2, 3, 2, 2, 3, 1, 1));
  expect(sloth_unsqueeze(u, 3), ref_unsqueeze(ru, 3), EXACT, "unsqueeze rank 7 -> 8");
  flush();
  expect_error(sloth_unsqueeze(x.t, 0), SLOTH_E_INVALID, "unsqueeze beyond rank 8");
  sloth_release(xp), sloth_release(u);
  ref_free(rxp), ref_free(ru);
  pair_free(x), pair_free(y);
  /* sizes that are not multiples of the work-group size, many work-groups */
  pair big = input(SLOTH_F32, S(100003), -1, 1, 0);
  pair b2 = input(SLOTH_F32, S(317, 331), -1, 1, 0);
  expect(sloth_add_scalar(big.t, 0.5), ref_binary_scalar(RB_ADD, big.r, 0.5), ARITH, "x + 0.5 over 100003 elements");
  expect(sloth_sum(big.t, NULL, 0, 0), ref_reduce(RR_SUM, big.r, NULL, 0, 0), (tol){1e-3, 1e-4}, "sum of 100003 elements");
  expect(sloth_argmax(big.t, 0, 0), ref_reduce(RR_ARGMAX, big.r, (int[]){0}, 1, 0), EXACT, "argmax of 100003 elements");
  int a0 = 0, a1 = 1;
  expect(sloth_sum(b2.t, &a0, 1, 0), ref_reduce(RR_SUM, b2.r, &a0, 1, 0), (tol){1e-4, 1e-4}, "sum over axis 0 of [317,331]");
  expect(sloth_min(b2.t, &a1, 1, 1), ref_reduce(RR_MIN, b2.r, &a1, 1, 1), EXACT, "min over axis 1 of [317,331]");
  sloth_tensor *bt = sloth_transpose(b2.t, 0, 1);
  ref_t *rbt = ref_transpose(b2.r, 0, 1);
  expect(sloth_mul(bt, bt), ref_binary(RB_MUL, rbt, rbt), ARITH, "transpose([317,331])^2");
  flush();
  sloth_release(bt);
  ref_free(rbt);
  pair_free(big), pair_free(b2);
}

/* ------------------------------------------------------------------ matmul */

static void test_matmul(void) {
  static const tol MM = {1e-5, 2e-5};
  static const struct {
    int ra;
    int64_t sa[5];
    int rb;
    int64_t sb[5];
  } cases[] = {
      {2, {3, 4}, 2, {4, 5}},       {1, {4}, 2, {4, 5}},          {2, {3, 4}, 1, {4}},          {1, {6}, 1, {6}},
      {3, {2, 3, 4}, 2, {4, 5}},    {2, {3, 4}, 3, {2, 4, 5}},    {4, {2, 1, 3, 4}, 3, {5, 4, 2}}, {3, {2, 3, 4}, 1, {4}},
      {2, {1, 7}, 2, {7, 1}},       {2, {70, 33}, 2, {33, 20}},   {2, {3, 0}, 2, {0, 4}},       {2, {0, 4}, 2, {4, 3}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pair a = input(SLOTH_F32, cases[i].ra, cases[i].sa, -1, 1, 0), b = input(SLOTH_F32, cases[i].rb, cases[i].sb, -1, 1, 0);
    expect(sloth_matmul(a.t, b.t), ref_matmul(a.r, b.r), MM, "matmul %s @ %s", shape_name(a.r->rank, a.r->shape),
           shape_name(b.r->rank, b.r->shape));
    flush();
    pair_free(a), pair_free(b);
  }
  /* operands that are views: transposed, sliced (any step), expanded, permuted and reshaped */
  pair x = input(SLOTH_F32, S(6, 5), -1, 1, 0), y = input(SLOTH_F32, S(4, 6), -1, 1, 0);
  pair z = input(SLOTH_F32, S(2, 5, 3), -1, 1, 0);
  chain c = {0};
  pair xt = ch_push(&c, sloth_transpose(x.t, 0, 1), ref_transpose(x.r, 0, 1));            /* [5,6] */
  pair yt = ch_push(&c, sloth_transpose(y.t, 0, 1), ref_transpose(y.r, 0, 1));            /* [6,4] */
  expect(sloth_matmul(xt.t, yt.t), ref_matmul(xt.r, yt.r), MM, "matmul transpose @ transpose");
  expect(sloth_matmul(y.t, x.t), ref_matmul(y.r, x.r), MM, "matmul [4,6] @ [6,5]");
  pair xs = ch_push(&c, sloth_slice(x.t, 0, 5, -100, -2), ref_slice(x.r, 0, 5, -100, -2)); /* [3,5], rows reversed */
  pair xs2 = ch_push(&c, sloth_slice(xs.t, 1, 1, 5, 1), ref_slice(xs.r, 1, 1, 5, 1));     /* [3,4] */
  pair ys = ch_push(&c, sloth_slice(y.t, 1, 0, 6, 2), ref_slice(y.r, 1, 0, 6, 2));       /* [4,3] */
  expect(sloth_matmul(xs2.t, ys.t), ref_matmul(xs2.r, ys.r), MM, "matmul of sliced operands (negative and step-2 slices)");
  pair zp = ch_push(&c, sloth_permute(z.t, (int[]){0, 2, 1}), ref_permute(z.r, (int[]){0, 2, 1})); /* [2,3,5] */
  expect(sloth_matmul(zp.t, xt.t), ref_matmul(zp.r, xt.r), MM, "batched matmul of permuted [2,3,5] @ transposed [5,6]");
  pair zr = ch_push(&c, sloth_reshape(zp.t, S(6, 5)), ref_reshape(zp.r, S(6, 5)));        /* needs a copy */
  expect(sloth_matmul(zr.t, xt.t), ref_matmul(zr.r, xt.r), MM, "matmul of reshape(permute) (not a strided view)");
  pair col = input(SLOTH_F32, S(5, 1), -1, 1, 0);
  pair ce = ch_push(&c, sloth_expand(col.t, S(5, 3)), ref_expand(col.r, S(5, 3)));
  expect(sloth_matmul(x.t, ce.t), ref_matmul(x.r, ce.r), MM, "matmul with an expanded (stride 0) operand");
  pair ex = ch_push(&c, sloth_exp(x.t), ref_unary(RU_EXP, x.r));
  expect(sloth_matmul(ex.t, ce.t), ref_matmul(ex.r, ce.r), MM, "matmul of a computed operand");
  flush();
  /* results feeding elementwise ops and reductions */
  {
    pair mm = ch_push(&c, sloth_matmul(y.t, x.t), ref_matmul(y.r, x.r));                   /* [4,5] */
    pair mt = ch_push(&c, sloth_transpose(mm.t, 0, 1), ref_transpose(mm.r, 0, 1));
    pair mr = ch_push(&c, sloth_relu(mt.t), ref_unary(RU_RELU, mt.r));
    expect(sloth_add_scalar(mr.t, 1), ref_binary_scalar(RB_ADD, mr.r, 1), MM, "relu(transpose(matmul)) + 1");
    int a1 = 1;
    expect(sloth_sum(mm.t, &a1, 1, 0), ref_reduce(RR_SUM, mm.r, &a1, 1, 0), MM, "sum(matmul, 1)");
    pair m2 = ch_push(&c, sloth_matmul(mm.t, xt.t), ref_matmul(mm.r, xt.r));               /* [4,6] */
    expect(sloth_mul_scalar(m2.t, 0.5), ref_binary_scalar(RB_MUL, m2.r, 0.5), MM, "matmul(matmul) * 0.5");
    flush();
  }
  /* integer operands compute in f32 */
  pair ia = input(SLOTH_I32, S(3, 4), -5, 5, 1), ib = input(SLOTH_U8, S(4, 2), 0, 9, 1);
  expect(sloth_matmul(ia.t, ib.t), ref_matmul(ia.r, ib.r), EXACT, "matmul i32 @ u8 -> f32");
  flush();
  /* f16 (HGEMM, or an f32 GEMM between casts where the device has no fp16)
   * and f64 (DGEMM); mixed dtypes promote */
  {
    static const tol MM64 = {1e-12, 1e-12};
    pair h = input(SLOTH_F16, S(2, 3, 4), -1, 1, 0), h2 = input(SLOTH_F16, S(4, 5), -1, 1, 0);
    pair d = input(SLOTH_F64, S(3, 4), -1, 1, 0), d2 = input(SLOTH_F64, S(2, 4, 5), -1, 1, 0);
    pair f = input(SLOTH_F32, S(4, 5), -1, 1, 0), l = input(SLOTH_I64, S(4, 5), -3, 3, 1);
    expect(sloth_matmul(h.t, h2.t), ref_matmul(h.r, h2.r), MM, "matmul f16 [2,3,4] @ [4,5]");
    expect(sloth_matmul(d.t, d2.t), ref_matmul(d.r, d2.r), MM64, "matmul f64 [3,4] @ [2,4,5]");
    expect(sloth_matmul(h.t, l.t), ref_matmul(h.r, l.r), MM, "matmul f16 @ i64 -> f16");
    expect(sloth_matmul(d.t, f.t), ref_matmul(d.r, f.r), MM64, "matmul f64 @ f32 -> f64");
    expect(sloth_matmul(h.t, f.t), ref_matmul(h.r, f.r), MM, "matmul f16 @ f32 -> f32");
    flush();
    pair_free(h), pair_free(h2), pair_free(d), pair_free(d2), pair_free(f), pair_free(l);
  }
  pair bad = input(SLOTH_F32, S(5, 4), -1, 1, 0), s0 = input(SLOTH_F32, 0, NULL, -1, 1, 0);
  expect_error(sloth_matmul(y.t, bad.t), SLOTH_E_SHAPE, "matmul with different inner sizes");
  expect_error(sloth_matmul(s0.t, x.t), SLOTH_E_SHAPE, "matmul of a rank-0 tensor");
  ch_free(&c);
  pair_free(x), pair_free(y), pair_free(z), pair_free(col), pair_free(ia), pair_free(ib), pair_free(bad), pair_free(s0);
}

/* A device without fp64: f64 is refused where it is recorded, with a clear
 * message (SLOTH_FP64=0 makes this device look like one). */
static void test_no_fp64(void) {
  setenv("SLOTH_FP64", "0", 1);
  if (sloth_init(NULL) != SLOTH_OK) {
    ok(0, "sloth_init with SLOTH_FP64=0: %s", sloth_last_error());
    return;
  }
  sloth_device_info dev;
  ok(sloth_device_current(&dev) == SLOTH_OK && dev.fp64 == 0, "SLOTH_FP64=0: the device reports no fp64");
  double d[2] = {1, 2};
  sloth_tensor *x = sloth_from_host(d, SLOTH_F64, 1, SHAPE(2));
  ok(!x && sloth_last_status() == SLOTH_E_UNSUPPORTED && strstr(sloth_last_error(), "from_host: f64 is unsupported"),
     "from_host f64 without fp64 is refused: %s", sloth_last_error());
  sloth_clear_error();
  sloth_tensor *f = sloth_from_host((float[]){1, 2}, SLOTH_F32, 1, SHAPE(2));
  sloth_tensor *c = sloth_cast(f, SLOTH_F64);
  ok(!c && sloth_last_status() == SLOTH_E_UNSUPPORTED && strstr(sloth_last_error(), "f64 is unsupported on this device"),
     "cast to f64 without fp64 is refused: %s", sloth_last_error());
  sloth_clear_error();
  expect_error(sloth_scalar(1, SLOTH_F64), SLOTH_E_UNSUPPORTED, "scalar f64 without fp64");
  expect_error(sloth_zeros(SLOTH_F64, 1, SHAPE(3)), SLOTH_E_UNSUPPORTED, "zeros f64 without fp64");
  expect_error(sloth_arange(0, 3, 1, SLOTH_F64), SLOTH_E_UNSUPPORTED, "arange f64 without fp64");
  /* f16 and i64 need nothing of the device */
  sloth_tensor *h = sloth_cast(f, SLOTH_F16), *l = sloth_cast(h, SLOTH_I64);
  int64_t out[2] = {0, 0};
  ok(l && sloth_to_host(l, out, sizeof out) == SLOTH_OK && out[0] == 1 && out[1] == 2, "f16 and i64 still work");
  sloth_release(f), sloth_release(h), sloth_release(l);
  sloth_shutdown();
  unsetenv("SLOTH_FP64");
}

int main(int argc, char **argv) {
  (void)argc, (void)argv;
  if (sloth_init(NULL) != SLOTH_OK) skip_all(sloth_last_error());
  sloth_device_info dev;
  if (sloth_device_current(&dev) == SLOTH_OK) diag("device: %s:%d %s", dev.backend, dev.index, dev.name);
  static const struct {
    const char *name;
    void (*fn)(void);
  } sections[] = {
      {"creation", test_creation}, {"unary", test_unary}, {"binary", test_binary}, {"promotion", test_promotion},
      {"scalar ops", test_scalar_ops}, {"where", test_where}, {"cast", test_cast}, {"views", test_views},
      {"view chains", test_view_chains}, {"pad and as_strided", test_pad_as_strided}, {"reductions", test_reductions}, {"rank 0 and zero-size", test_rank0_and_empty}, {"rank 8 and large sizes", test_rank8_and_large}, {"matmul", test_matmul},
  };
  for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
    int64_t k0 = sloth_counter("kernel_compile");
    sections[i].fn();
    flush();
    diag("%s: %lld kernels compiled", sections[i].name, (long long)(sloth_counter("kernel_compile") - k0));
  }
  diag("kernels compiled: %lld, plans: %lld", (long long)sloth_counter("kernel_compile"), (long long)sloth_counter("plan_cache_miss"));
  sloth_shutdown();
  test_no_fp64();
  return tap_done();
}
