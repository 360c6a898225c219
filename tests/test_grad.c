/* test_grad.c - reverse-mode gradients (sloth_grad, sloth_vjp) against
 * central finite differences, for every differentiable op of the public API
 * on small shapes.
 *
 * Method: for an op (or a short composition) f of some f32 inputs, the scalar
 * loss L = sum(f(inputs) * R) with a fixed random R (so every output element
 * matters). The analytic gradient comes from sloth_grad(L, inputs); the
 * numeric one perturbs one input element at a time on the host, rebuilds the
 * graph from host data and reads L back: (L(x + eps) - L(x - eps)) / 2 eps.
 * Every evaluation is the same graph with other data, so after the first one
 * the plan cache replays it and nothing compiles. Inputs stay away from kinks
 * (relu, abs, clamp, leaky_relu near 0 or their bounds; max/min/maximum/
 * max_pool2d ties), where finite differences mean nothing.
 *
 * Each evaluation syncs L together with its gradients, so the analytic
 * evaluation and every finite-difference one are the same graph: one plan,
 * compiled once per case. Elementwise ops are checked several at a time
 * ("rows": op k on row k of the input, one test point per op). A harness
 * self-test checks that a gradient 5% off is caught. Exact zeros (prod, pow)
 * and ties (max, min, maximum, minimum: split evenly) are checked too.
 *
 * Then the engine's contract: integer inputs get zero gradients of their
 * dtype; sloth_detach stops the gradient; an unrelated tensor gets zeros;
 * intermediates and repeated entries in wrt; sloth_vjp with non-scalar
 * outputs and seeds; a loss already computed by a sync point is refused; bad
 * arguments give negative statuses; a repeated step's gradient graph replays
 * without compiling.
 *
 * Arguments name sections to run (see main); TEST_GRAD_VERBOSE=1 prints the
 * time and kernel compiles of each case. */
#include <sloth.h>

#include "tap.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ data */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* [0, 1) */
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(rng_state >> 11) / 9007199254740992.0;
}
static double uni(double lo, double hi) { return lo + (hi - lo) * urand(); }

static int64_t numel(int rank, const int64_t *s) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= s[i];
  return n;
}

enum { MAXIN = 4 };

/* One f32 input of a case: host values, and whether to check its gradient. */
typedef struct arg {
  int rank;
  int64_t shape[SLOTH_MAX_RANK];
  int64_t n;
  float *v;
  int wrt;
} arg;

static arg mk(int rank, const int64_t *shape, int wrt) {
  arg a;
  memset(&a, 0, sizeof a);
  a.rank = rank;
  if (rank) memcpy(a.shape, shape, (size_t)rank * sizeof *shape);
  a.n = numel(rank, shape);
  a.v = calloc((size_t)(a.n ? a.n : 1), sizeof(float));
  a.wrt = wrt;
  return a;
}
/* uniform in [lo, hi) */
static arg U(int rank, const int64_t *shape, double lo, double hi) {
  arg a = mk(rank, shape, 1);
  for (int64_t i = 0; i < a.n; i++) a.v[i] = (float)uni(lo, hi);
  return a;
}
/* |x| in [lo, hi), random sign: away from a kink at 0 */
static arg AWAY(int rank, const int64_t *shape, double lo, double hi) {
  arg a = mk(rank, shape, 1);
  for (int64_t i = 0; i < a.n; i++) a.v[i] = (float)(uni(lo, hi) * (urand() < 0.5 ? -1 : 1));
  return a;
}
/* distinct values on a grid of spacing step (a shuffled permutation) plus a
 * little noise: no ties, and neighbours at least 0.8 step apart */
static arg DISTINCT(int rank, const int64_t *shape, double step) {
  arg a = mk(rank, shape, 1);
  for (int64_t i = 0; i < a.n; i++) a.v[i] = (float)(((double)i - a.n / 2.0) * step);
  for (int64_t i = a.n - 1; i > 0; i--) {
    int64_t j = (int64_t)(urand() * (double)(i + 1));
    float t = a.v[i];
    a.v[i] = a.v[j];
    a.v[j] = t;
  }
  for (int64_t i = 0; i < a.n; i++) a.v[i] += (float)uni(-0.1 * step, 0.1 * step);
  return a;
}
/* k * step + offset for random integers k in [-m, m] */
static arg GRID(int rank, const int64_t *shape, double step, double offset, int m) {
  arg a = mk(rank, shape, 1);
  for (int64_t i = 0; i < a.n; i++) a.v[i] = (float)((double)((int)(urand() * (2 * m + 1)) - m) * step + offset);
  return a;
}
static arg nograd(arg a) {
  a.wrt = 0;
  return a;
}

#define S(...) ((const int64_t[]){__VA_ARGS__})
#define R_(r, ...) r, S(__VA_ARGS__)

/* What a builder needs besides its f32 inputs. Integer tensors (indices,
 * labels) are made from idx inside the builder, so they are fresh leaves in
 * every evaluation like the inputs. */
typedef struct ctx {
  sloth_tensor *(*u)(sloth_tensor *);
  sloth_tensor *(*b)(sloth_tensor *, sloth_tensor *);
  sloth_tensor *(*s)(sloth_tensor *, double);
  sloth_tensor *(*r)(sloth_tensor *, const int *, int, int);
  sloth_tensor *(*pool)(sloth_tensor *, int, int, int, int, int, int);
  double d[4];
  int i[8];
  int ni, keep;
  int64_t l[16];
  int nl;
  const int32_t *idx; /* integer data */
  int idx_rank;
  int64_t idx_shape[SLOTH_MAX_RANK];
  sloth_dtype idx_dt; /* SLOTH_I32 (default 0 = F32 means i32 here), SLOTH_I64, SLOTH_U8 */
  int variant;
} ctx;

typedef sloth_tensor *(*build_fn)(sloth_tensor *const *x, const ctx *c);

/* The integer tensor of c (i32 by default, or i64 / u8 converted). */
static sloth_tensor *index_tensor(const ctx *c) {
  int64_t n = numel(c->idx_rank, c->idx_shape);
  if (c->idx_dt == SLOTH_I64) {
    int64_t *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = c->idx[i];
    sloth_tensor *t = sloth_from_host(v, SLOTH_I64, c->idx_rank, c->idx_shape);
    free(v);
    return t;
  }
  if (c->idx_dt == SLOTH_U8) {
    uint8_t *v = malloc((size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) v[i] = (uint8_t)c->idx[i];
    sloth_tensor *t = sloth_from_host(v, SLOTH_U8, c->idx_rank, c->idx_shape);
    free(v);
    return t;
  }
  return sloth_from_host(c->idx, SLOTH_I32, c->idx_rank, c->idx_shape);
}

static bool read_f32(sloth_tensor *t, float *out, int64_t n);
static bool close_to(const float *got, const float *want, int n, double tol);

/* ------------------------------------------------------------------ the harness */

static double ATOL = 5e-3, RTOL = 1e-2, EPS = 1e-2;
static int64_t SEED = -1; /* >= 0: sloth_manual_seed(SEED) before every build (dropout) */
static int nseg;                 /* > 0: report each wrt input in nseg equal segments (rows) */
static const char *seg_names[64]; /* their names */
static bool fd_phase;  /* set during the finite-difference evaluations */
static bool expect_bad; /* the harness self-test: the comparison must fail */
static float *Rbuf;
static int64_t Rn;
static double fd_seconds;
static long fd_evals;

static sloth_tensor *forward(build_fn f, const ctx *c, int nin, const arg *in, sloth_tensor **xs) {
  for (int i = 0; i < nin; i++) xs[i] = sloth_from_host(in[i].v, SLOTH_F32, in[i].rank, in[i].shape);
  if (SEED >= 0) sloth_manual_seed((uint64_t)SEED);
  return f(xs, c);
}

/* sum(out * R), R shaped like out */
static sloth_tensor *weighted_loss(sloth_tensor *out) {
  if (!out) return NULL;
  sloth_tensor *r = sloth_from_host(Rbuf, SLOTH_F32, sloth_rank(out), sloth_shape(out));
  return sloth_sum(sloth_mul(sloth_cast(out, SLOTH_F32), r), NULL, 0, 0);
}

/* Builds the forward graph, L and its gradients w.r.t. the inputs with wrt,
 * and syncs L and the gradients as one graph. Every evaluation (the analytic
 * one and each finite-difference one) is the same graph, so the plan compiled
 * for the first replays for the others: finite differences compile nothing.
 * With an (an[k] for the k-th wrt input), checks the gradients' shapes and
 * dtypes and reads them. Returns L, or NAN on failure (a diagnostic says why). */
static double evaluate(build_fn f, const ctx *c, int nin, const arg *in, float **an, const char *name) {
  sloth_tensor *xs[MAXIN], *wrt[MAXIN], *sync[MAXIN + 1] = {NULL};
  int widx[MAXIN], nw = 0;
  float v = NAN;
  bool fine = false;
  sloth_scope_begin();
  sloth_tensor *out = forward(f, c, nin, in, xs);
  if (out && an) { /* the first evaluation draws R */
    Rn = sloth_numel(out);
    free(Rbuf);
    Rbuf = malloc((size_t)(Rn ? Rn : 1) * sizeof *Rbuf);
    for (int64_t i = 0; i < Rn; i++) Rbuf[i] = (float)uni(-1, 1);
  }
  sloth_tensor *L = weighted_loss(out);
  for (int i = 0; i < nin; i++)
    if (in[i].wrt) {
      widx[nw] = i;
      wrt[nw++] = xs[i];
    }
  if (!L) {
    diag("%s: the forward graph does not build: %s", name, sloth_last_error());
    goto out;
  }
  sync[0] = L;
  if (sloth_grad(L, wrt, nw, sync + 1) != SLOTH_OK) {
    diag("%s: sloth_grad: %s", name, sloth_last_error());
    goto out;
  }
  fine = true;
  for (int k = 0; k < nw && an; k++) {
    const arg *a = &in[widx[k]];
    sloth_tensor *g = sync[k + 1];
    if (sloth_dtype_of(g) != SLOTH_F32 || sloth_rank(g) != a->rank ||
        memcmp(sloth_shape(g), a->shape, (size_t)a->rank * sizeof(int64_t)) != 0) {
      diag("%s: the gradient of input %d is not shaped and typed like it", name, widx[k]);
      fine = false;
    }
  }
  if (fine && (sloth_sync(sync, nw + 1) != SLOTH_OK || sloth_to_host(L, &v, sizeof v) != SLOTH_OK)) {
    diag("%s: the evaluation failed: %s", name, sloth_last_error());
    fine = false;
  }
  for (int k = 0; k < nw && an && fine; k++) {
    const arg *a = &in[widx[k]];
    if (sloth_to_host(sync[k + 1], an[k], (size_t)a->n * sizeof(float)) != SLOTH_OK) {
      diag("%s: reading gradient %d failed: %s", name, k, sloth_last_error());
      fine = false;
    }
  }
out:
  for (int k = 0; k < nw; k++) sloth_release(sync[k + 1]);
  sloth_scope_end();
  if (!an) fd_evals++;
  return fine ? v : NAN;
}

#include <time.h>
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Checks d L / d in[i] for every input with wrt against central differences:
 * one test point per such input. Frees the inputs' data. */
static bool verbose;
static void gcheck_(const char *name, build_fn f, const ctx *c, int nin, arg *in);
static void gcheck(const char *name, build_fn f, const ctx *c, int nin, arg *in) {
  double t = now();
  int64_t k0 = sloth_counter("kernel_compile");
  gcheck_(name, f, c, nin, in);
  if (verbose) diag("  %.2f s, %lld kernels compiled: %s", now() - t, (long long)(sloth_counter("kernel_compile") - k0), name);
}
static void gcheck_(const char *name, build_fn f, const ctx *c, int nin, arg *in) {
  float *an[MAXIN] = {NULL};
  int widx[MAXIN], nw = 0;
  sloth_clear_error();
  for (int i = 0; i < nin; i++)
    if (in[i].wrt) {
      widx[nw] = i;
      an[nw++] = malloc((size_t)(in[i].n ? in[i].n : 1) * sizeof(float));
    }
  if (isnan(evaluate(f, c, nin, in, an, name))) {
    ok(0, "%s: analytic gradients", name);
    goto done;
  }
  double t0 = now();
  fd_phase = true;
  for (int k = 0; k < nw; k++) {
    arg *a = &in[widx[k]];
    float *num = malloc((size_t)(a->n ? a->n : 1) * sizeof(float));
    for (int64_t j = 0; j < a->n; j++) {
      float v = a->v[j];
      a->v[j] = (float)(v + EPS);
      double lp = evaluate(f, c, nin, in, NULL, name);
      a->v[j] = (float)(v - EPS);
      double lm = evaluate(f, c, nin, in, NULL, name);
      a->v[j] = v;
      num[j] = (float)((lp - lm) / (2 * EPS));
    }
    if (nseg > 0) { /* one test point per segment (row op) */
      int64_t len = a->n / nseg;
      for (int q = 0; q < nseg; q++) {
        double e = tap_max_err(an[k] + q * len, num + q * len, len, ATOL, RTOL);
        if (!ok(e <= 1, "%s: d/d input %d (%lld elements; err %.3g)", seg_names[q], widx[k], (long long)len, e))
          for (int64_t j = q * len; j < (q + 1) * len; j++)
            diag("  element %lld: input %g, analytic %.6g, numeric %.6g", (long long)(j - q * len), a->v[j], an[k][j], num[j]);
      }
      free(num);
      continue;
    }
    double e = tap_max_err(an[k], num, a->n, ATOL, RTOL);
    if (expect_bad) {
      ok(e > 1 && isfinite(e), "%s: d/d input %d is caught (err %.3g)", name, widx[k], e);
      free(num);
      continue;
    }
    if (!ok(e <= 1, "%s: d/d input %d (%lld elements; err %.3g)", name, widx[k], (long long)a->n, e)) {
      int shown = 0;
      for (int64_t j = 0; j < a->n && shown < 8; j++) {
        double ej = fabs((double)an[k][j] - num[j]) / (ATOL + RTOL * fabs(num[j]));
        if (!(ej <= 1)) {
          diag("  element %lld: analytic %.6g, numeric %.6g", (long long)j, an[k][j], num[j]);
          shown++;
        }
      }
    }
    free(num);
  }
  fd_phase = false;
  fd_seconds += now() - t0;
done:
  for (int k = 0; k < nw; k++) free(an[k]);
  for (int i = 0; i < nin; i++) free(in[i].v);
}

/* shorthands: GC(name, builder, ctx, inputs...) */
#define GC(name, f, c, ...)                                                        \
  do {                                                                             \
    arg in_[] = {__VA_ARGS__};                                                     \
    gcheck(name, f, c, (int)(sizeof in_ / sizeof in_[0]), in_);                    \
  } while (0)

/* ------------------------------------------------------------------ builders */

static sloth_tensor *b_unary(sloth_tensor *const *x, const ctx *c) { return c->u(x[0]); }
static sloth_tensor *b_binary(sloth_tensor *const *x, const ctx *c) { return c->b(x[0], x[1]); }
static sloth_tensor *b_scalar(sloth_tensor *const *x, const ctx *c) { return c->s(x[0], c->d[0]); }
static sloth_tensor *b_reduce(sloth_tensor *const *x, const ctx *c) { return c->r(x[0], c->ni ? c->i : NULL, c->ni, c->keep); }
static sloth_tensor *b_leaky(sloth_tensor *const *x, const ctx *c) { return sloth_leaky_relu(x[0], c->d[0]); }

static sloth_tensor *b_where(sloth_tensor *const *x, const ctx *c) {
  if (c->variant == 1) /* condition computed from the operand itself */
    return sloth_where(sloth_gt(x[0], sloth_scalar(0, SLOTH_F32)), sloth_mul_scalar(x[0], 3), sloth_square(x[0]));
  return sloth_where(index_tensor(c), x[0], x[1]);
}

static sloth_tensor *b_cast(sloth_tensor *const *x, const ctx *c) {
  switch (c->variant) {
  case 0: return sloth_mul(sloth_cast(x[0], SLOTH_F32), x[0]); /* f32 -> f32 (identity), used twice */
  case 1: /* through f64 and back */
    return sloth_cast(sloth_mul(sloth_cast(x[0], SLOTH_F64), sloth_sin(sloth_cast(x[0], SLOTH_F64))), SLOTH_F32);
  default: /* promotion: f32 + f64 -> f64 */
    return sloth_add(sloth_mul(x[0], x[0]), sloth_cast(x[1], SLOTH_F64));
  }
}

static sloth_tensor *b_reshape(sloth_tensor *const *x, const ctx *c) {
  return sloth_mul(sloth_reshape(x[0], c->nl, c->l), sloth_reshape(x[0], c->nl, c->l));
}
static sloth_tensor *b_permute(sloth_tensor *const *x, const ctx *c) { return sloth_sin(sloth_permute(x[0], c->i)); }
static sloth_tensor *b_transpose(sloth_tensor *const *x, const ctx *c) {
  return sloth_add(sloth_transpose(x[0], c->i[0], c->i[1]), x[1]);
}
static sloth_tensor *b_expand(sloth_tensor *const *x, const ctx *c) { return sloth_tanh(sloth_expand(x[0], c->nl, c->l)); }
/* slice(x, axis i0, l0:l1:l2), optionally a second slice (i1, l3:l4:l5) */
static sloth_tensor *b_slice(sloth_tensor *const *x, const ctx *c) {
  sloth_tensor *s = sloth_slice(x[0], c->i[0], c->l[0], c->l[1], c->l[2]);
  if (c->variant == 1) s = sloth_slice(s, c->i[1], c->l[3], c->l[4], c->l[5]);
  return sloth_mul(s, s);
}
static sloth_tensor *b_squeeze(sloth_tensor *const *x, const ctx *c) {
  /* x [2, 1, 3, 2] -> squeeze 1 -> [2, 3, 2] -> unsqueeze -1 -> [2, 3, 2, 1] -> flatten 1..2 -> [2, 6, 1] */
  sloth_tensor *s = sloth_flatten(sloth_unsqueeze(sloth_squeeze(x[0], 1), -1), 1, 2);
  return sloth_mul(s, sloth_exp(s));
}
static sloth_tensor *b_pad(sloth_tensor *const *x, const ctx *c) { return sloth_square(sloth_pad(x[0], c->l, c->d[0])); }
static sloth_tensor *b_strided(sloth_tensor *const *x, const ctx *c) {
  sloth_tensor *v = sloth_as_strided(x[0], c->nl, c->l, c->l + 8, c->i[0]);
  return sloth_mul(v, sloth_cos(v));
}
/* the gradient of b_strided as a function of x: its own gradient goes
 * through the rule of the window adjoint (second order) */
static sloth_tensor *b_strided_grad(sloth_tensor *const *x, const ctx *c) {
  sloth_tensor *g = NULL;
  if (sloth_grad(sloth_sum(b_strided(x, c), NULL, 0, 0), (sloth_tensor *[]){x[0]}, 1, &g) != SLOTH_OK) return NULL;
  return g;
}
static sloth_tensor *b_concat(sloth_tensor *const *x, const ctx *c) {
  sloth_tensor *s = c->variant ? sloth_stack(x, c->ni, c->i[0]) : sloth_concat(x, c->ni, c->i[0]);
  return sloth_mul(s, sloth_sigmoid(s));
}
static sloth_tensor *b_gather(sloth_tensor *const *x, const ctx *c) { return sloth_gather(sloth_exp(x[0]), c->i[0], index_tensor(c)); }
static sloth_tensor *b_index_select(sloth_tensor *const *x, const ctx *c) { return sloth_index_select(x[0], c->i[0], index_tensor(c)); }
static sloth_tensor *b_embedding(sloth_tensor *const *x, const ctx *c) { return sloth_tanh(sloth_embedding(x[0], index_tensor(c))); }
static sloth_tensor *b_scatter(sloth_tensor *const *x, const ctx *c) {
  return sloth_square(sloth_scatter_add(x[0], c->i[0], index_tensor(c), x[1]));
}
static sloth_tensor *b_cumsum(sloth_tensor *const *x, const ctx *c) { return sloth_sin(sloth_cumsum(x[0], c->i[0])); }

static sloth_tensor *b_matmul(sloth_tensor *const *x, const ctx *c) {
  switch (c->variant) {
  case 1: return sloth_matmul(sloth_transpose(x[0], -1, -2), sloth_transpose(x[1], -1, -2)); /* A^T B^T */
  case 2: return sloth_matmul(sloth_slice(x[0], 1, 1, 6, 2), sloth_slice(x[1], 0, 0, 3, 1)); /* strided / offset */
  case 3: return sloth_matmul(x[0], x[0]);                                                   /* a square, both sides */
  default: return sloth_matmul(x[0], x[1]);
  }
}

static sloth_tensor *b_conv(sloth_tensor *const *x, const ctx *c) {
  return sloth_conv2d(x[0], x[1], c->ni > 2 ? x[2] : NULL, c->i[0], c->i[1], c->i[2], c->i[3], c->i[4], c->i[5], c->i[6]);
}
static sloth_tensor *b_pool(sloth_tensor *const *x, const ctx *c) {
  return c->pool(x[0], c->i[0], c->i[1], c->i[2], c->i[3], c->i[4], c->i[5]);
}
/* sort (i[1] < 0) or topk i[1] along axis i[0], descending/largest i[2] */
static sloth_tensor *b_sorted(sloth_tensor *const *x, const ctx *c) {
  sloth_tensor *v = c->i[1] < 0 ? sloth_sort(x[0], c->i[0], c->i[2], NULL) : sloth_topk(x[0], c->i[1], c->i[0], c->i[2], NULL);
  return sloth_mul(v, sloth_sin(v));
}
static sloth_tensor *b_adaptive(sloth_tensor *const *x, const ctx *c) { return sloth_adaptive_avg_pool2d(x[0], c->i[0], c->i[1]); }
static sloth_tensor *b_softmax(sloth_tensor *const *x, const ctx *c) {
  return c->variant ? sloth_log_softmax(x[0], c->i[0]) : sloth_softmax(x[0], c->i[0]);
}
static sloth_tensor *b_layer_norm(sloth_tensor *const *x, const ctx *c) {
  return sloth_layer_norm(x[0], c->i[0], c->ni > 1 ? x[1] : NULL, c->ni > 2 ? x[2] : NULL, 1e-5);
}
static sloth_tensor *b_batch_norm(sloth_tensor *const *x, const ctx *c) {
  int64_t C = sloth_dim(x[0], 1);
  sloth_tensor *rm = NULL, *rv = NULL, *nrm = NULL, *nrv = NULL;
  if (c->variant) {
    rm = sloth_zeros(SLOTH_F32, 1, &C);
    rv = sloth_ones(SLOTH_F32, 1, &C);
  }
  sloth_tensor *y = sloth_batch_norm(x[0], rm, rv, c->ni > 1 ? x[1] : NULL, c->ni > 2 ? x[2] : NULL, 1, 0.1, 1e-5,
                                     c->variant ? &nrm : NULL, c->variant ? &nrv : NULL);
  sloth_release(nrm), sloth_release(nrv);
  return y;
}
static sloth_tensor *b_loss_labels(sloth_tensor *const *x, const ctx *c) {
  return c->variant ? sloth_nll_loss(x[0], index_tensor(c)) : sloth_cross_entropy(x[0], index_tensor(c));
}
static sloth_tensor *b_mse(sloth_tensor *const *x, const ctx *c) { return sloth_mse_loss(x[0], x[1]); }
static sloth_tensor *b_bce(sloth_tensor *const *x, const ctx *c) { return sloth_binary_cross_entropy_with_logits(x[0], x[1]); }
static sloth_tensor *b_dropout(sloth_tensor *const *x, const ctx *c) { return sloth_dropout(sloth_exp(x[0]), c->d[0], 1); }

/* a small network: tanh(x W + b) -> softmax cross-entropy, x reused */
static sloth_tensor *b_mlp(sloth_tensor *const *x, const ctx *c) {
  sloth_tensor *h = sloth_tanh(sloth_add(sloth_matmul(x[0], x[1]), x[2]));
  sloth_tensor *logits = sloth_add(h, sloth_mul(sloth_sum(x[0], (int[]){1}, 1, 1), sloth_scalar(0.3, SLOTH_F32)));
  return sloth_cross_entropy(logits, index_tensor(c));
}

/* the harness self-test: sin(x) for the analytic gradient, sin(1.05 x) for
 * the finite differences, so they must disagree */
static sloth_tensor *b_mismatch(sloth_tensor *const *x, const ctx *c) {
  return sloth_sin(fd_phase ? sloth_mul_scalar(x[0], 1.05) : sloth_mul_scalar(x[0], 1.0));
}

/* ------------------------------------------------------------------ op checks */

static void self_test(void) {
  ctx c = {0};
  expect_bad = true;
  GC("harness self-test: a gradient 5% off", b_mismatch, &c, U(R_(1, 6), 0.2, 1.2));
  expect_bad = false;
}

/* Rows: many elementwise ops checked in one graph (one compile instead of
 * one per op): op k maps row k of an input [K, 12] (and of a second one for
 * binary ops), the rows are concatenated, and the gradient is compared row
 * by row, one test point per op. */
static sloth_tensor *r_leaky1(sloth_tensor *x) { return sloth_leaky_relu(x, 0.1); }
static sloth_tensor *r_leaky2(sloth_tensor *x) { return sloth_leaky_relu(x, -0.5); }
static sloth_tensor *r_clamp1(sloth_tensor *x) { return sloth_clamp(x, -0.5, 0.5); }
static sloth_tensor *r_clamp2(sloth_tensor *x) { return sloth_clamp(x, -INFINITY, 0.3); }
static sloth_tensor *r_clamp3(sloth_tensor *x) { return sloth_clamp(x, 0.2, INFINITY); }
static sloth_tensor *r_adds(sloth_tensor *x) { return sloth_add_scalar(x, 0.7); }
static sloth_tensor *r_subs(sloth_tensor *x) { return sloth_sub_scalar(x, -1.3); }
static sloth_tensor *r_muls(sloth_tensor *x) { return sloth_mul_scalar(x, -2.5); }
static sloth_tensor *r_divs(sloth_tensor *x) { return sloth_div_scalar(x, 0.4); }
static sloth_tensor *r_pows1(sloth_tensor *x) { return sloth_pow_scalar(x, 2.5); }
static sloth_tensor *r_pows2(sloth_tensor *x) { return sloth_pow_scalar(x, -0.5); }
static sloth_tensor *r_pows3(sloth_tensor *x) { return sloth_pow_scalar(x, 3); }
static sloth_tensor *r_cast(sloth_tensor *x) { return sloth_mul(sloth_cast(x, SLOTH_F32), x); }

typedef struct row_op {
  const char *name;
  sloth_tensor *(*u)(sloth_tensor *);
  sloth_tensor *(*b)(sloth_tensor *, sloth_tensor *);
  int dom;  /* domain of the (first) operand, see fill_row */
  int domb; /* of the second */
} row_op;
static const row_op *rows_table;
static int rows_n;
enum { ROW = 12 };

/* 0 [-1.5, 1.5]; 1 |x| in [0.2, 1.5]; 2 [0.5, 2]; 3 [-2.5, 2.5]; 4 [-2, -0.5];
 * 5 a grid 0.1 apart offset 0.05 (never within 0.05 of +-0.5, 0.2 or 0.3 +
 * 0.05k); 6 odd multiples of 0.1, 7 even ones (|odd - even| >= 0.1);
 * 8 |x| in [0.5, 2] */
static void fill_row(float *v, int dom) {
  for (int j = 0; j < ROW; j++) switch (dom) {
    case 1: v[j] = (float)(uni(0.2, 1.5) * (urand() < 0.5 ? -1 : 1)); break;
    case 2: v[j] = (float)uni(0.5, 2); break;
    case 3: v[j] = (float)uni(-2.5, 2.5); break;
    case 4: v[j] = (float)uni(-2, -0.5); break;
    case 5: v[j] = (float)(((int)(urand() * 21) - 10) * 0.1 + 0.05); break;
    case 6: v[j] = (float)(((int)(urand() * 13) - 6) * 0.2 + 0.1); break;
    case 7: v[j] = (float)(((int)(urand() * 13) - 6) * 0.2); break;
    case 8: v[j] = (float)(uni(0.5, 2) * (urand() < 0.5 ? -1 : 1)); break;
    default: v[j] = (float)uni(-1.5, 1.5);
    }
}

static sloth_tensor *b_rows(sloth_tensor *const *x, const ctx *c) {
  sloth_tensor *parts[64];
  for (int k = 0; k < rows_n; k++) {
    sloth_tensor *a = sloth_slice(x[0], 0, k, k + 1, 1);
    parts[k] = rows_table[k].u ? rows_table[k].u(a) : rows_table[k].b(a, sloth_slice(x[1], 0, k, k + 1, 1));
  }
  return sloth_concat(parts, rows_n, 0);
}

static void check_rows_(const row_op *t, int n, bool binary);
/* in chunks: POCL's compile time grows faster than linearly with a kernel's size */
static void check_rows(const row_op *t, int n, bool binary) {
  const int chunk = 5;
  for (int k = 0; k < n; k += chunk) check_rows_(t + k, n - k < chunk ? n - k : chunk, binary);
}
static void check_rows_(const row_op *t, int n, bool binary) {
  rows_table = t;
  rows_n = n;
  arg a = mk(R_(2, n, ROW), 1), b = mk(R_(2, n, ROW), 1);
  for (int k = 0; k < n; k++) {
    fill_row(a.v + k * ROW, t[k].dom);
    fill_row(b.v + k * ROW, t[k].domb);
    seg_names[k] = t[k].name;
  }
  nseg = n;
  ctx c = {0};
  if (binary) GC("rows", b_rows, &c, a, b);
  else {
    free(b.v);
    GC("rows", b_rows, &c, a);
  }
  nseg = 0;
}

static void unary_ops(void) {
  static const row_op t[] = {
      {"neg", sloth_neg, NULL, 0, 0},           {"abs", sloth_abs, NULL, 1, 0},
      {"exp", sloth_exp, NULL, 0, 0},           {"log", sloth_log, NULL, 2, 0},
      {"sqrt", sloth_sqrt, NULL, 2, 0},         {"rsqrt", sloth_rsqrt, NULL, 2, 0},
      {"sin", sloth_sin, NULL, 3, 0},           {"cos", sloth_cos, NULL, 3, 0},
      {"tanh", sloth_tanh, NULL, 0, 0},         {"erf", sloth_erf, NULL, 0, 0},
      {"sigmoid", sloth_sigmoid, NULL, 3, 0},   {"relu", sloth_relu, NULL, 1, 0},
      {"square", sloth_square, NULL, 0, 0},     {"reciprocal", sloth_reciprocal, NULL, 2, 0},
      {"reciprocal of negatives", sloth_reciprocal, NULL, 4, 0},
      {"gelu", sloth_gelu, NULL, 3, 0},         {"gelu_tanh", sloth_gelu_tanh, NULL, 3, 0},
      {"silu", sloth_silu, NULL, 3, 0},         {"leaky_relu(0.1)", r_leaky1, NULL, 1, 0},
      {"leaky_relu(-0.5)", r_leaky2, NULL, 1, 0}, {"clamp(-0.5, 0.5)", r_clamp1, NULL, 5, 0},
      {"clamp(-inf, 0.3)", r_clamp2, NULL, 5, 0}, {"clamp(0.2, inf)", r_clamp3, NULL, 5, 0},
      {"add_scalar", r_adds, NULL, 0, 0},       {"sub_scalar", r_subs, NULL, 0, 0},
      {"mul_scalar", r_muls, NULL, 0, 0},       {"div_scalar", r_divs, NULL, 0, 0},
      {"pow_scalar 2.5", r_pows1, NULL, 2, 0},  {"pow_scalar -0.5", r_pows2, NULL, 2, 0},
      {"pow_scalar 3 of negatives", r_pows3, NULL, 4, 0}, {"cast f32 -> f32 (x * cast(x))", r_cast, NULL, 0, 0},
  };
  check_rows(t, (int)(sizeof t / sizeof t[0]), false);
  /* on their own, on a rank-0 and a rank-3 shape */
  ctx c0 = {.u = sloth_exp};
  GC("exp of a rank-0 tensor", b_unary, &c0, U(0, NULL, -1, 1));
  ctx c1 = {.d = {0.1}};
  GC("leaky_relu(0.1) of [2,3,4]", b_leaky, &c1, AWAY(R_(3, 2, 3, 4), 0.1, 1.5));
}

static void binary_ops(void) {
  struct {
    const char *name;
    sloth_tensor *(*fn)(sloth_tensor *, sloth_tensor *);
    int dom; /* 0 any; 1 b away from 0; 2 a > 0; 3 no ties (grid) */
  } t[] = {{"add", sloth_add, 0},   {"sub", sloth_sub, 0},         {"mul", sloth_mul, 0},        {"div", sloth_div, 1},
           {"pow", sloth_pow, 2},   {"maximum", sloth_maximum, 3}, {"minimum", sloth_minimum, 3}};
  struct {
    const char *what;
    int ra;
    int64_t sa[3];
    int rb;
    int64_t sb[3];
  } shapes[] = {
      {"same shape", 2, {3, 4}, 2, {3, 4}},
      /* both directions at once: a's axis 1 and b's axes 0 and 1 broadcast, b gains a rank */
      {"both broadcast [3,1] [2,1,4]", 2, {3, 1}, 3, {2, 1, 4}},
      {"b broadcast [4]", 2, {3, 4}, 1, {4}},
      {"rank-0 a", 0, {0}, 2, {2, 3}},
  };
  static const row_op rows[] = {
      {"add", NULL, sloth_add, 0, 0},     {"sub", NULL, sloth_sub, 0, 0},
      {"mul", NULL, sloth_mul, 0, 0},     {"div", NULL, sloth_div, 0, 8},
      {"pow", NULL, sloth_pow, 2, 0},     {"maximum", NULL, sloth_maximum, 6, 7},
      {"minimum", NULL, sloth_minimum, 6, 7},
  };
  check_rows(rows, (int)(sizeof rows / sizeof rows[0]), true);
  for (size_t k = 0; k < sizeof t / sizeof t[0]; k++)
    for (size_t s = 1; s < sizeof shapes / sizeof shapes[0]; s++) {
      /* the last two shapes for one op each: every op's rule sees broadcast operands above */
      if (s == 2 && t[k].fn != sloth_maximum) continue;
      if (s == 3 && t[k].fn != sloth_div) continue;
      char name[128];
      snprintf(name, sizeof name, "%s, %s", t[k].name, shapes[s].what);
      ctx c = {.b = t[k].fn};
      arg a, b;
      switch (t[k].dom) {
      case 1:
        a = U(shapes[s].ra, shapes[s].sa, -1.5, 1.5);
        b = AWAY(shapes[s].rb, shapes[s].sb, 0.5, 2);
        break;
      case 2:
        a = U(shapes[s].ra, shapes[s].sa, 0.5, 2);
        b = U(shapes[s].rb, shapes[s].sb, -1.5, 1.5);
        break;
      case 3: /* a on odd multiples of 0.1, b on even: |a - b| >= 0.1 */
        a = GRID(shapes[s].ra, shapes[s].sa, 0.2, 0.1, 6);
        b = GRID(shapes[s].rb, shapes[s].sb, 0.2, 0, 6);
        break;
      default:
        a = U(shapes[s].ra, shapes[s].sa, -1.5, 1.5);
        b = U(shapes[s].rb, shapes[s].sb, -1.5, 1.5);
      }
      GC(name, b_binary, &c, a, b);
    }
  /* where */
  {
    static const int32_t cond[] = {1, 0, 0, 1, 1, 1, 0, 1, 0, 0, 1, 0};
    ctx c = {.idx = cond, .idx_rank = 2, .idx_shape = {3, 4}};
    GC("where(cond, a [3,4], b [4])", b_where, &c, U(R_(2, 3, 4), -1, 1), U(R_(1, 4), -1, 1));
    ctx c1 = {.idx = cond, .idx_rank = 2, .idx_shape = {3, 4}};
    GC("where(cond [3,4], a [3,1], b [])", b_where, &c1, U(R_(2, 3, 1), -1, 1), U(0, NULL, -1, 1));
    ctx c2 = {.variant = 1};
    GC("where(x > 0, 3x, x^2)", b_where, &c2, AWAY(R_(2, 3, 4), 0.1, 1.5));
  }
  /* cast */
  {
    sloth_device_info info;
    if (sloth_device_current(&info) == SLOTH_OK && info.fp64) {
      ctx c1 = {.variant = 1};
      GC("cast f32 -> f64 -> f32", b_cast, &c1, U(R_(2, 3, 4), -1.5, 1.5));
      ctx c2 = {.variant = 2};
      GC("f32 promoted to f64 by an f64 operand", b_cast, &c2, U(R_(2, 3, 4), -1.5, 1.5), U(R_(1, 4), -1, 1));
    } else {
      diag("the device has no fp64: the f64 cast paths are not checked");
    }
  }
}

static void view_ops(void) {
  {
    ctx c = {.nl = 3, .l = {2, -1, 2}};
    GC("reshape [3,4] -> [2,-1,2]", b_reshape, &c, U(R_(2, 3, 4), -1, 1));
  }
  {
    ctx c = {.i = {2, 0, 1}};
    GC("permute [2,3,4] (2,0,1)", b_permute, &c, U(R_(3, 2, 3, 4), -2, 2));
  }
  {
    ctx c2 = {.i = {-1, -2}};
    GC("transpose(-1, -2) [3,5] + y [5,3]", b_transpose, &c2, U(R_(2, 3, 5), -1, 1), U(R_(2, 5, 3), -1, 1));
  }
  {
    ctx c = {.nl = 3, .l = {2, 3, 4}};
    GC("expand [3,1] -> [2,3,4]", b_expand, &c, U(R_(2, 3, 1), -1, 1));
    ctx c2 = {.nl = 3, .l = {3, 2, 4}};
    GC("expand [1,2,1] -> [3,2,4]", b_expand, &c2, U(R_(3, 1, 2, 1), -1, 1));
    ctx c3 = {.nl = 2, .l = {3, 5}};
    GC("expand [] -> [3,5]", b_expand, &c3, U(0, NULL, -1, 1));
  }
  {
    struct {
      const char *name;
      int axis;
      int64_t start, stop, step;
    } s[] = {{"slice axis 1 [1:4:1]", 1, 1, 4, 1},        {"slice axis 0 [1:5:2]", 0, 1, 5, 2},
             {"slice axis 1 [::-1]", 1, -1, -100, -1},    {"slice axis 1 [4:0:-2]", 1, 4, 0, -2},
             {"slice axis 0 [-3:]", 0, -3, 100, 1},        {"slice axis 1 [0:6:3]", 1, 0, 6, 3},
             {"slice axis -1 [3:1:-1]", -1, 3, 1, -1}};
    for (size_t k = 0; k < sizeof s / sizeof s[0]; k++) {
      ctx c = {.i = {s[k].axis}, .l = {s[k].start, s[k].stop, s[k].step}};
      GC(s[k].name, b_slice, &c, U(R_(2, 5, 6), -1.5, 1.5));
    }
    ctx c = {.variant = 1, .i = {0, 1}, .l = {4, -100, -2, 1, 5, 2}};
    GC("slice [4::-2] then [1:5:2] on another axis", b_slice, &c, U(R_(2, 5, 6), -1.5, 1.5));
    ctx c2 = {.variant = 1, .i = {1, 1}, .l = {1, 6, 1, -1, -100, -2}};
    GC("slice [1:6] then [::-2] on the same axis", b_slice, &c2, U(R_(2, 4, 7), -1.5, 1.5));
  }
  {
    ctx c = {0};
    GC("squeeze, unsqueeze, flatten", b_squeeze, &c, U(R_(4, 2, 1, 3, 2), -1, 1));
  }
  {

    ctx c2 = {.l = {0, 0, 2, 0, 1, 1}, .d = {0.5}};
    GC("pad [2,2,3] by (0,0),(2,0),(1,1) with 0.5", b_pad, &c2, U(R_(3, 2, 2, 3), -1, 1));
  }
  {
    /* overlapping windows: [4, 3] windows of step 2 over 10 elements, offset 1 */
    ctx c = {.nl = 2, .l = {4, 3, 0, 0, 0, 0, 0, 0, 2, 1}, .i = {1}};
    GC("as_strided [10] -> [4,3] strides (2,1) offset 1 (overlapping)", b_strided, &c, U(R_(1, 10), -1.5, 1.5));
    /* 2-D windows of a [4,5] tensor: [2,3,2,2] with strides (5,1,5,1) */
    ctx c2 = {.nl = 4, .l = {2, 3, 2, 2, 0, 0, 0, 0, 5, 1, 5, 1}, .i = {0}};
    GC("as_strided [4,5] -> 2x2 windows [2,3,2,2] (overlapping)", b_strided, &c2, U(R_(2, 4, 5), -1.5, 1.5));
    GC("second order: the gradient of as_strided [10] -> [4,3] (window adjoint)", b_strided_grad, &c, U(R_(1, 10), -1.5, 1.5));
    GC("second order: the gradient of 2x2 windows of [4,5]", b_strided_grad, &c2, U(R_(2, 4, 5), -1.5, 1.5));
    /* non-overlapping 2x2 windows of stride 2: the window offset is a remainder, nothing is summed */
    ctx c4 = {.nl = 4, .l = {2, 3, 2, 2, 0, 0, 0, 0, 12, 2, 6, 1}, .i = {0}};
    GC("as_strided [4,6] -> 2x2 windows of stride 2 [2,3,2,2]", b_strided, &c4, U(R_(2, 4, 6), -1.5, 1.5));
    GC("second order: the gradient of 2x2 windows of stride 2", b_strided_grad, &c4, U(R_(2, 4, 6), -1.5, 1.5));
    /* a view whose steps cross rows (stride 7 over rows of 5): not a window,
     * so its gradient takes the scatter path */
    ctx c5 = {.nl = 2, .l = {3, 2, 0, 0, 0, 0, 0, 0, 7, 1}, .i = {1}};
    GC("as_strided [4,5] -> [3,2] strides (7,1) (crosses rows: scatter)", b_strided, &c5, U(R_(2, 4, 5), -1.5, 1.5));
    /* a stride-0 dimension and a sparse view (some elements unread) */
    ctx c3 = {.nl = 2, .l = {3, 2, 0, 0, 0, 0, 0, 0, 0, 4}, .i = {2}};
    GC("as_strided [3,4] -> [3,2] strides (0,4) offset 2", b_strided, &c3, U(R_(2, 3, 4), -1.5, 1.5));
  }
  {
    ctx c = {.ni = 3, .i = {1}};
    GC("concat [2,1,3] [2,3,3] [2,2,3] axis 1", b_concat, &c, U(R_(3, 2, 1, 3), -2, 2), U(R_(3, 2, 3, 3), -2, 2),
       U(R_(3, 2, 2, 3), -2, 2));
    ctx c2 = {.ni = 2, .i = {-1}};
    GC("concat [3,2] [3,4] axis -1", b_concat, &c2, U(R_(2, 3, 2), -2, 2), U(R_(2, 3, 4), -2, 2));
    ctx c3 = {.ni = 3, .i = {0}, .variant = 1};
    GC("stack 3 x [2,3] axis 0", b_concat, &c3, U(R_(2, 2, 3), -2, 2), U(R_(2, 2, 3), -2, 2), U(R_(2, 2, 3), -2, 2));
    ctx c4 = {.ni = 2, .i = {-1}, .variant = 1};
    GC("stack 2 x [2,3] axis -1", b_concat, &c4, U(R_(2, 2, 3), -2, 2), U(R_(2, 2, 3), -2, 2));
  }
}

static void indexing_ops(void) {
  {
    /* x [3,4], indices [2,5] along axis 1 (repeats), smaller along axis 0 */
    static const int32_t idx[] = {0, 3, 3, 1, 0, 2, 2, 2, 1, 3};
    ctx c = {.i = {1}, .idx = idx, .idx_rank = 2, .idx_shape = {2, 5}};
    GC("gather axis 1, repeated indices", b_gather, &c, U(R_(2, 3, 4), -1, 1));
    static const int32_t idx0[] = {2, 0, 1, 2, 2, 2};
    ctx c0 = {.i = {0}, .idx = idx0, .idx_rank = 2, .idx_shape = {2, 3}, .idx_dt = SLOTH_I64};
    GC("gather axis 0, i64 indices", b_gather, &c0, U(R_(2, 3, 4), -1, 1));
  }
  {
    static const int32_t idx[] = {2, 0, 2, 3, 2};
    ctx c = {.i = {1}, .idx = idx, .idx_rank = 1, .idx_shape = {5}};
    GC("index_select axis 1 [2,0,2,3,2]", b_index_select, &c, U(R_(3, 2, 4, 3), -1, 1));
    static const int32_t idx0[] = {1, 1, 0};
    ctx c0 = {.i = {0}, .idx = idx0, .idx_rank = 1, .idx_shape = {3}, .idx_dt = SLOTH_U8};
    GC("index_select axis 0, u8 indices", b_index_select, &c0, U(R_(2, 3, 4), -1, 1));
  }
  {
    static const int32_t ids[] = {4, 0, 4, 2, 1, 4};
    ctx c = {.idx = ids, .idx_rank = 2, .idx_shape = {2, 3}};
    GC("embedding [5,3] with ids [2,3] (repeats, row 3 unused)", b_embedding, &c, U(R_(2, 5, 3), -1, 1));
  }
  {
    /* x [3,4]; indices [2,4] along axis 0 with collisions; src [2,4] */
    static const int32_t idx[] = {0, 2, 2, 1, 0, 2, 1, 1};
    ctx c = {.i = {0}, .idx = idx, .idx_rank = 2, .idx_shape = {2, 4}};
    GC("scatter_add axis 0, x and src", b_scatter, &c, U(R_(2, 3, 4), -1, 1), U(R_(2, 2, 4), -1, 1));
    /* along axis 1, src [2,1] broadcast to the indices [2,3] */
    static const int32_t idx1[] = {3, 3, 0, 1, 2, 1};
    ctx c1 = {.i = {1}, .idx = idx1, .idx_rank = 2, .idx_shape = {2, 3}};
    GC("scatter_add axis 1, src broadcast [2,1]", b_scatter, &c1, U(R_(2, 3, 4), -1, 1), U(R_(2, 2, 1), -1, 1));
  }
  {
    ctx c = {.i = {0}};
    GC("cumsum axis 0", b_cumsum, &c, U(R_(2, 4, 3), -1, 1));
    ctx c1 = {.i = {-1}};
    GC("cumsum axis -1", b_cumsum, &c1, U(R_(3, 2, 2, 5), -1, 1));
  }
}

static void reduction_ops(void) {
  struct {
    const char *name;
    sloth_tensor *(*fn)(sloth_tensor *, const int *, int, int);
    int dom; /* 0 any, 1 distinct, 2 |x| in [0.5, 1.5] */
  } t[] = {{"sum", sloth_sum, 0}, {"mean", sloth_mean, 0}, {"max", sloth_max, 1}, {"min", sloth_min, 1}, {"prod", sloth_prod, 2}};
  struct {
    int n;
    int axes[3];
    int keep;
  } ax[] = {{1, {0}, 0}, {1, {-1}, 1}, {2, {0, 2}, 1}, {2, {2, 1}, 0}, {0, {0}, 0}};
  for (size_t k = 0; k < sizeof t / sizeof t[0]; k++)
    for (size_t a = 0; a < sizeof ax / sizeof ax[0]; a++) {
      int keep = ax[a].n ? ax[a].keep : (int)(k % 2); /* all axes: keepdim 1 for mean and min */
      char name[128];
      int u = snprintf(name, sizeof name, "%s over (", t[k].name);
      for (int i = 0; i < ax[a].n; i++) u += snprintf(name + u, sizeof name - (size_t)u, i ? ",%d" : "%d", ax[a].axes[i]);
      snprintf(name + u, sizeof name - (size_t)u, "%s) keepdim %d of [2,3,4]", ax[a].n ? "" : "all", keep);
      ctx c = {.r = t[k].fn, .ni = ax[a].n, .keep = keep};
      memcpy(c.i, ax[a].axes, sizeof ax[a].axes);
      arg x = t[k].dom == 1 ? DISTINCT(R_(3, 2, 3, 4), 0.1) : t[k].dom == 2 ? AWAY(R_(3, 2, 3, 4), 0.5, 1.5) : U(R_(3, 2, 3, 4), -1, 1);
      GC(name, b_reduce, &c, x);
    }
}

/* Exact zeros, where "out / x" and "out log x" formulas break down: prod is
 * multilinear (central differences are exact at 0), and pow(0, y) = 0 for
 * every y > 0, so its exponent's gradient is 0 there (as in PyTorch). */
static void zero_inputs(void) {
  {
    /* row 0: one zero, row 1: two zeros, row 2: none */
    arg x = AWAY(R_(2, 3, 4), 0.5, 1.5);
    x.v[2] = 0, x.v[4] = 0, x.v[7] = 0;
    ctx c = {.r = sloth_prod, .ni = 1, .i = {1}};
    GC("prod over axis 1 with exact zeros (one, two, none per row)", b_reduce, &c, x);
    arg y = AWAY(R_(2, 2, 3), 0.5, 1.5);
    y.v[4] = 0;
    ctx c2 = {.r = sloth_prod, .ni = 0, .keep = 1};
    GC("prod of all with one exact zero", b_reduce, &c2, y);
  }
  {
    arg a = U(R_(2, 2, 3), 0.5, 2), b = U(R_(2, 2, 3), 1.5, 2.5);
    a.v[1] = 0, a.v[4] = 0;
    ctx c = {.b = sloth_pow};
    GC("pow(a, b) with a = 0 in places, d/db", b_binary, &c, nograd(a), b);
    arg x = U(R_(1, 5), -1, 1);
    x.v[2] = 0;
    ctx c0 = {.s = sloth_pow_scalar, .d = {0}};
    GC("pow_scalar(x, 0) with x = 0 in places", b_scalar, &c0, x);
  }
}

/* Ties: the gradient is split evenly among the tied elements (PyTorch's
 * amax/amin and maximum/minimum), checked exactly. */
static void ties(void) {
  sloth_scope_begin();
  float xv[8] = {1, 3, 3, 2, -1, -1, -1, 0}, gv[8];
  sloth_tensor *x = sloth_from_host(xv, SLOTH_F32, 2, S(2, 4));
  sloth_tensor *g = NULL;
  float want_max[8] = {0, 0.5f, 0.5f, 0, 0, 0, 0, 1};
  ok(sloth_grad(sloth_sum(sloth_max(x, (int[]){1}, 1, 0), NULL, 0, 0), &x, 1, &g) == SLOTH_OK && read_f32(g, gv, 8) &&
         close_to(gv, want_max, 8, 1e-6),
     "max with ties splits the gradient evenly");
  sloth_release(g);
  float third = 1.0f / 3;
  float want_min[8] = {1, 0, 0, 0, third, third, third, 0};
  ok(sloth_grad(sloth_sum(sloth_min(x, (int[]){1}, 1, 0), NULL, 0, 0), &x, 1, &g) == SLOTH_OK && read_f32(g, gv, 8) &&
         close_to(gv, want_min, 8, 1e-6),
     "min with three ties gives a third to each");
  sloth_release(g);
  float yv[8] = {1, 0, 3, 2, -1, 5, -1, 1};
  sloth_tensor *y = sloth_from_host(yv, SLOTH_F32, 2, S(2, 4)), *wrt[2] = {x, y}, *gg[2] = {NULL, NULL};
  float gy[8], wx[8], wy[8];
  for (int i = 0; i < 8; i++) {
    wx[i] = xv[i] > yv[i] ? 1 : xv[i] == yv[i] ? 0.5f : 0;
    wy[i] = 1 - wx[i];
  }
  ok(sloth_grad(sloth_sum(sloth_maximum(x, y), NULL, 0, 0), wrt, 2, gg) == SLOTH_OK && read_f32(gg[0], gv, 8) &&
         read_f32(gg[1], gy, 8) && close_to(gv, wx, 8, 1e-6) && close_to(gy, wy, 8, 1e-6),
     "maximum: ties split, each side gets its share");
  sloth_release(gg[0]), sloth_release(gg[1]);
  ok(sloth_grad(sloth_sum(sloth_minimum(x, y), NULL, 0, 0), wrt, 2, gg) == SLOTH_OK && read_f32(gg[0], gv, 8) &&
         read_f32(gg[1], gy, 8) && close_to(gv, wy, 8, 1e-6) && close_to(gy, wx, 8, 1e-6),
     "minimum: ties split, each side gets its share");
  sloth_release(gg[0]), sloth_release(gg[1]);
  sloth_scope_end();
}

static void matmul_ops(void) {
  ctx c = {0};
  GC("matmul [3,4] @ [4,5]", b_matmul, &c, U(R_(2, 3, 4), -1, 1), U(R_(2, 4, 5), -1, 1));
  GC("matmul batched [2,3,4] @ [2,4,2]", b_matmul, &c, U(R_(3, 2, 3, 4), -1, 1), U(R_(3, 2, 4, 2), -1, 1));
  GC("matmul broadcast batch [2,3,4] @ [4,2]", b_matmul, &c, U(R_(3, 2, 3, 4), -1, 1), U(R_(2, 4, 2), -1, 1));
  GC("matmul broadcast batch [2,1,2,3] @ [3,3,2]", b_matmul, &c, U(R_(4, 2, 1, 2, 3), -1, 1), U(R_(3, 3, 3, 2), -1, 1));
  GC("matmul 1-D @ 2-D [4] @ [4,3]", b_matmul, &c, U(R_(1, 4), -1, 1), U(R_(2, 4, 3), -1, 1));
  GC("matmul 2-D @ 1-D [3,4] @ [4]", b_matmul, &c, U(R_(2, 3, 4), -1, 1), U(R_(1, 4), -1, 1));
  GC("matmul 1-D @ 1-D (dot)", b_matmul, &c, U(R_(1, 5), -1, 1), U(R_(1, 5), -1, 1));
  GC("matmul batched @ 1-D [2,3,4] @ [4]", b_matmul, &c, U(R_(3, 2, 3, 4), -1, 1), U(R_(1, 4), -1, 1));
  GC("matmul 1-D @ batched [3] @ [2,3,4]", b_matmul, &c, U(R_(1, 3), -1, 1), U(R_(3, 2, 3, 4), -1, 1));
  ctx c1 = {.variant = 1};
  GC("matmul transposed operands [4,3]^T @ [5,4]^T", b_matmul, &c1, U(R_(2, 4, 3), -1, 1), U(R_(2, 5, 4), -1, 1));
  GC("matmul batched transposed operands", b_matmul, &c1, U(R_(3, 2, 4, 3), -1, 1), U(R_(3, 2, 2, 4), -1, 1));
  ctx c2 = {.variant = 2};
  GC("matmul sliced operands [3,6][:,1:6:2] @ [4,2][0:3]", b_matmul, &c2, U(R_(2, 3, 6), -1, 1), U(R_(2, 4, 2), -1, 1));
  GC("matmul [3,4] @ [4,2], only d/da requested", b_matmul, &c, U(R_(2, 3, 4), -1, 1), nograd(U(R_(2, 4, 2), -1, 1)));
  GC("matmul [3,4] @ [4,2], only d/db requested", b_matmul, &c, nograd(U(R_(2, 3, 4), -1, 1)), U(R_(2, 4, 2), -1, 1));
  ctx c3 = {.variant = 3};
  GC("matmul x @ x", b_matmul, &c3, U(R_(2, 4, 4), -1, 1));
}

static void nn_ops(void) {
  /* conv2d: stride, padding, dilation, groups; x, w and bias */
  {
    ctx c1 = {.ni = 3, .i = {2, 2, 1, 1, 1, 1, 1}};
    GC("conv2d stride 2 padding 1, bias", b_conv, &c1, U(R_(4, 2, 2, 5, 4), -1, 1), U(R_(4, 3, 2, 3, 3), -1, 1),
       U(R_(1, 3), -1, 1));
    ctx c2 = {.ni = 2, .i = {1, 2, 2, 1, 2, 1, 1}};
    GC("conv2d dilation 2x1, stride 1x2, padding 2x1, no bias", b_conv, &c2, U(R_(4, 1, 2, 5, 5), -1, 1),
       U(R_(4, 2, 2, 3, 2), -1, 1));
    ctx c3 = {.ni = 3, .i = {1, 1, 1, 1, 1, 1, 2}};
    GC("conv2d groups 2 (4 -> 4 channels), padding 1, bias", b_conv, &c3, U(R_(4, 1, 4, 4, 4), -1, 1),
       U(R_(4, 4, 2, 3, 3), -1, 1), U(R_(1, 4), -1, 1));
    ctx c4 = {.ni = 3, .i = {1, 1, 0, 0, 1, 1, 3}};
    GC("conv2d depthwise (groups 3), 2x2 kernel", b_conv, &c4, U(R_(4, 2, 3, 3, 4), -1, 1), U(R_(4, 3, 1, 2, 2), -1, 1),
       U(R_(1, 3), -1, 1));
  }
  /* pooling */
  {
    ctx c = {.pool = sloth_max_pool2d, .i = {2, 2, 2, 2, 0, 0}};
    GC("max_pool2d 2x2 stride 2", b_pool, &c, DISTINCT(R_(4, 1, 2, 4, 4), 0.1));
    GC("max_pool2d 2x2 stride 2 over 5x7 (a row and a column left over)", b_pool, &c, DISTINCT(R_(4, 1, 2, 5, 7), 0.1));
    ctx c1 = {.pool = sloth_max_pool2d, .i = {3, 3, 2, 2, 1, 1}};
    GC("max_pool2d 3x3 stride 2 padding 1 (overlapping)", b_pool, &c1, DISTINCT(R_(4, 2, 1, 5, 5), 0.1));
    ctx c2 = {.pool = sloth_avg_pool2d, .i = {2, 2, 2, 2, 0, 0}};
    GC("avg_pool2d 2x2 stride 2", b_pool, &c2, U(R_(4, 1, 2, 4, 4), -1, 1));
    ctx c3 = {.pool = sloth_avg_pool2d, .i = {3, 2, 1, 2, 1, 1}};
    GC("avg_pool2d 3x2 stride (1,2) padding 1", b_pool, &c3, U(R_(4, 2, 1, 4, 5), -1, 1));
    ctx c4 = {.i = {2, 3}};
    GC("adaptive_avg_pool2d [1,2,4,6] -> (2,3)", b_adaptive, &c4, U(R_(4, 1, 2, 4, 6), -1, 1));
    ctx c5 = {.i = {1, 1}};
    GC("adaptive_avg_pool2d -> (1,1)", b_adaptive, &c5, U(R_(4, 2, 2, 3, 3), -1, 1));
    ctx c6 = {.i = {2, 3}};
    GC("adaptive_avg_pool2d [1,2,5,7] -> (2,3) (windows of different sizes)", b_adaptive, &c6, U(R_(4, 1, 2, 5, 7), -1, 1));
  }
  /* sorting: values are a gather at the sorted positions (distinct values) */
  {
    ctx c = {.i = {1, -1, 0}};
    GC("sort [3,5] along axis 1", b_sorted, &c, DISTINCT(R_(2, 3, 5), 0.1));
    ctx c1 = {.i = {0, -1, 1}};
    GC("sort [4,3] along axis 0, descending", b_sorted, &c1, DISTINCT(R_(2, 4, 3), 0.1));
    ctx c2 = {.i = {-1, 2, 1}};
    GC("topk 2 of [3,6], largest", b_sorted, &c2, DISTINCT(R_(2, 3, 6), 0.1));
  }
  /* softmax */
  {
    ctx c0 = {.i = {0}};
    GC("softmax axis 0 [4,3]", b_softmax, &c0, U(R_(2, 4, 3), -2, 2));
    ctx c1 = {.i = {-1}, .variant = 1};
    GC("log_softmax axis -1 [2,2,4]", b_softmax, &c1, U(R_(3, 2, 2, 4), -2, 2));
  }
  /* normalization */
  {
    ctx c1 = {.i = {2}, .ni = 3};
    GC("layer_norm [2,3,4] over 2 dims, weight and bias", b_layer_norm, &c1, U(R_(3, 2, 3, 4), -1, 1),
       U(R_(2, 3, 4), 0.5, 1.5), U(R_(2, 3, 4), -1, 1));
    ctx c2 = {.i = {1}, .ni = 1};
    GC("layer_norm without affine", b_layer_norm, &c2, U(R_(2, 2, 6), -1, 1));
    ctx c4 = {.ni = 3, .variant = 1};
    GC("batch_norm training [4,3,2], weight, bias and running stats", b_batch_norm, &c4, U(R_(3, 4, 3, 2), -1, 1),
       U(R_(1, 3), 0.5, 1.5), U(R_(1, 3), -1, 1));
    ctx c5 = {.ni = 1};
    GC("batch_norm training [3,2,2,2] without affine", b_batch_norm, &c5, U(R_(4, 3, 2, 2, 2), -1, 1));
  }
  /* losses */
  {
    static const int32_t labels[] = {2, 0, 4, 2};
    ctx c = {.idx = labels, .idx_rank = 1, .idx_shape = {4}};
    GC("cross_entropy [4,5]", b_loss_labels, &c, U(R_(2, 4, 5), -2, 2));
    static const int32_t labels2[] = {0, 3, 1, 2, 2, 0};
    ctx c1 = {.idx = labels2, .idx_rank = 2, .idx_shape = {2, 3}, .idx_dt = SLOTH_I64};
    GC("cross_entropy [2,4,3] with labels [2,3]", b_loss_labels, &c1, U(R_(3, 2, 4, 3), -2, 2));
    ctx c3 = {.idx = labels2, .idx_rank = 2, .idx_shape = {2, 3}, .variant = 1};
    GC("nll_loss [2,4,3] with labels [2,3]", b_loss_labels, &c3, U(R_(3, 2, 4, 3), -2, 0));
    ctx c4 = {0};
    GC("mse_loss", b_mse, &c4, U(R_(2, 3, 4), -1, 1), U(R_(2, 3, 4), -1, 1));
    GC("binary_cross_entropy_with_logits", b_bce, &c4, U(R_(2, 3, 4), -3, 3), U(R_(2, 3, 4), 0, 1));
  }
  /* dropout: the same seed before every evaluation gives the same mask */
  {
    ctx c = {.d = {0.3}};
    SEED = 1234;
    GC("dropout p 0.3 (fixed seed)", b_dropout, &c, U(R_(2, 4, 5), -1, 1));
    SEED = -1;
  }
  /* a composition: matmul, bias, tanh, a reused input, cross-entropy */
  {
    static const int32_t labels[] = {1, 0, 3};
    ctx c = {.idx = labels, .idx_rank = 1, .idx_shape = {3}};
    GC("small network (x W + b, tanh, x reused, cross_entropy)", b_mlp, &c, U(R_(2, 3, 5), -1, 1), U(R_(2, 5, 4), -1, 1),
       U(R_(1, 4), -1, 1));
  }
}

/* ------------------------------------------------------------------ engine contract */

static bool read_f32(sloth_tensor *t, float *out, int64_t n) {
  return t && sloth_dtype_of(t) == SLOTH_F32 && sloth_numel(t) == n && sloth_to_host(t, out, (size_t)n * sizeof(float)) == SLOTH_OK;
}
static bool close_to(const float *got, const float *want, int n, double tol) {
  for (int i = 0; i < n; i++)
    if (!(fabs((double)got[i] - want[i]) <= tol * (1 + fabs(want[i])))) {
      diag("element %d: got %g, want %g", i, got[i], want[i]);
      return false;
    }
  return true;
}

static void integer_inputs(void) {
  sloth_scope_begin();
  int32_t iv[4] = {3, -1, 2, 5};
  uint8_t uv[4] = {1, 0, 1, 1};
  float fv[4] = {0.5f, -1.5f, 2, 0.25f};
  sloth_tensor *xi = sloth_from_host(iv, SLOTH_I32, 1, S(4));
  sloth_tensor *xu = sloth_from_host(uv, SLOTH_U8, 1, S(4));
  sloth_tensor *xb = sloth_ne(xu, sloth_scalar(0, SLOTH_U8)); /* bool */
  sloth_tensor *y = sloth_from_host(fv, SLOTH_F32, 1, S(4));
  /* L = sum(xi * y + xu * y^2 + where(xb, y, 0)): xi promotes to f32 */
  sloth_tensor *L = sloth_sum(sloth_add(sloth_add(sloth_mul(xi, y), sloth_mul(xu, sloth_square(y))),
                                        sloth_where(xb, y, sloth_scalar(0, SLOTH_F32))),
                              NULL, 0, 0);
  sloth_tensor *wrt[4] = {xi, xu, xb, y}, *g[4] = {NULL};
  int rc = sloth_grad(L, wrt, 4, g);
  ok(rc == SLOTH_OK, "grad w.r.t. i32, u8, bool and f32 inputs: %s", rc ? sloth_last_error() : "ok");
  if (rc == SLOTH_OK) {
    int32_t gi[4] = {9, 9, 9, 9};
    uint8_t gu[4] = {9, 9, 9, 9}, gb[4] = {9, 9, 9, 9};
    ok(sloth_dtype_of(g[0]) == SLOTH_I32 && sloth_to_host(g[0], gi, sizeof gi) == SLOTH_OK && !gi[0] && !gi[1] && !gi[2] && !gi[3],
       "the i32 input gets i32 zeros");
    ok(sloth_dtype_of(g[1]) == SLOTH_U8 && sloth_to_host(g[1], gu, sizeof gu) == SLOTH_OK && !gu[0] && !gu[1] && !gu[2] && !gu[3],
       "the u8 input gets u8 zeros");
    ok(sloth_dtype_of(g[2]) == SLOTH_BOOL && sloth_rank(g[2]) == 1 && sloth_dim(g[2], 0) == 4 &&
           sloth_to_host(g[2], gb, sizeof gb) == SLOTH_OK && !gb[0] && !gb[1] && !gb[2] && !gb[3],
       "the bool input gets bool zeros (false)");
    float gy[4], want[4];
    for (int i = 0; i < 4; i++) want[i] = (float)iv[i] + 2.0f * uv[i] * fv[i] + (uv[i] ? 1.0f : 0.0f);
    ok(read_f32(g[3], gy, 4) && close_to(gy, want, 4, 1e-6), "the f32 input's gradient is right beside them");
  }
  for (int i = 0; i < 4; i++) sloth_release(g[i]);
  sloth_scope_end();
}

/* f16: the gradient of an f16 input is f16 (IEEE bits, exact values here) */
static void f16_input(void) {
  sloth_scope_begin();
  uint16_t h[4] = {0x3C00, 0xC000, 0x3800, 0x4200}; /* 1, -2, 0.5, 3 */
  float r[4] = {0.25f, -1.5f, 2, 1};
  sloth_tensor *x = sloth_from_host(h, SLOTH_F16, 1, S(4));
  sloth_tensor *rt = sloth_from_host(r, SLOTH_F32, 1, S(4));
  /* L = sum(x^2 (f16) * r) + sum(cast(x, f32) * r): dL/dx = 2 x r + r */
  sloth_tensor *L = sloth_add(sloth_sum(sloth_mul(sloth_square(x), rt), NULL, 0, 0),
                              sloth_sum(sloth_mul(sloth_cast(x, SLOTH_F32), rt), NULL, 0, 0));
  sloth_tensor *g = NULL;
  int rc = sloth_grad(L, &x, 1, &g);
  uint16_t gh[4] = {0};
  /* 2*1*0.25+0.25 = 0.75; 2*-2*-1.5-1.5 = 4.5; 2*.5*2+2 = 4; 2*3*1+1 = 7 */
  const uint16_t want[4] = {0x3A00, 0x4480, 0x4400, 0x4700};
  ok(rc == SLOTH_OK && sloth_dtype_of(g) == SLOTH_F16 && sloth_to_host(g, gh, sizeof gh) == SLOTH_OK &&
         memcmp(gh, want, sizeof gh) == 0,
     "an f16 input gets an f16 gradient (%04x %04x %04x %04x)", gh[0], gh[1], gh[2], gh[3]);
  sloth_release(g);
  sloth_scope_end();
}

static void detach_and_unrelated(void) {
  sloth_scope_begin();
  float xv[6] = {0.5f, -1, 2, 1.5f, -0.25f, 3}, zv[3] = {1, 2, 3};
  sloth_tensor *x = sloth_from_host(xv, SLOTH_F32, 2, S(2, 3));
  sloth_tensor *z = sloth_from_host(zv, SLOTH_F32, 1, S(3));
  /* L = sum(x * detach(x)) + sum(detach(x^3)): dL/dx = x (not 2x, and no 3x^2) */
  sloth_tensor *d = sloth_detach(x);
  ok(d && !sloth_detach(NULL), "detach gives a tensor, and NULL for NULL");
  sloth_tensor *L = sloth_add(sloth_sum(sloth_mul(x, d), NULL, 0, 0),
                              sloth_sum(sloth_detach(sloth_mul(x, sloth_square(x))), NULL, 0, 0));
  sloth_tensor *wrt[3] = {x, z, d}, *g[3] = {NULL};
  int rc = sloth_grad(L, wrt, 3, g);
  float gx[6], gz[3], gd[6];
  ok(rc == SLOTH_OK && read_f32(g[0], gx, 6) && close_to(gx, xv, 6, 1e-6), "detach stops the gradient: d sum(x detach(x)) / dx = x");
  float zero[6] = {0};
  ok(rc == SLOTH_OK && read_f32(g[1], gz, 3) && close_to(gz, zero, 3, 0) && sloth_rank(g[1]) == 1 && sloth_dim(g[1], 0) == 3,
     "a tensor the loss does not depend on gets zeros of its shape");
  ok(rc == SLOTH_OK && read_f32(g[2], gd, 6) && close_to(gd, xv, 6, 1e-6),
     "the gradient w.r.t. the detached tensor itself flows to it (x)");
  float lv = 0;
  int lrc = sloth_to_host(L, &lv, sizeof lv);
  ok(lrc == SLOTH_OK && fabsf(lv - (0.25f + 1 + 4 + 2.25f + 0.0625f + 9 + 0.125f - 1 + 8 + 3.375f - 0.015625f + 27)) < 1e-4,
     "detach is the identity for values (L = %g)", lv);
  for (int i = 0; i < 3; i++) sloth_release(g[i]);
  /* the gradient w.r.t. the loss itself is 1; n == 0 is fine */
  sloth_tensor *L2 = sloth_sum(sloth_exp(x), NULL, 0, 0), *gl = NULL;
  float one = 0;
  ok(sloth_grad(L2, &L2, 1, &gl) == SLOTH_OK && read_f32(gl, &one, 1) && one == 1.0f, "d L / d L = 1");
  sloth_release(gl);
  ok(sloth_grad(L2, NULL, 0, NULL) == SLOTH_OK, "no tensors requested (n = 0) is fine");
  /* an input used many times accumulates: L = sum(x + x + x * x) */
  sloth_tensor *L3 = sloth_sum(sloth_add(sloth_add(x, x), sloth_mul(x, x)), NULL, 0, 0), *g3 = NULL;
  float want[6];
  for (int i = 0; i < 6; i++) want[i] = 2 + 2 * xv[i];
  ok(sloth_grad(L3, &x, 1, &g3) == SLOTH_OK && read_f32(g3, gx, 6) && close_to(gx, want, 6, 1e-6),
     "gradients of several uses of a tensor add up");
  sloth_release(g3);
  /* a gradient taken twice of the same loss gives the same result */
  sloth_tensor *g4 = NULL, *g5 = NULL;
  float a4[6], a5[6];
  ok(sloth_grad(L3, &x, 1, &g4) == SLOTH_OK && sloth_grad(L3, &x, 1, &g5) == SLOTH_OK && read_f32(g4, a4, 6) &&
         read_f32(g5, a5, 6) && close_to(a4, want, 6, 1e-6) && close_to(a5, want, 6, 1e-6),
     "two sloth_grad calls on one pending loss agree");
  sloth_release(g4), sloth_release(g5);
  /* second order: the gradient is a lazy tensor, so it can be differentiated
   * again: d/dx sum((d sum(x^3)/dx) * 1) = d sum(3x^2)/dx = 6x */
  sloth_tensor *L6 = sloth_sum(sloth_mul(x, sloth_square(x)), NULL, 0, 0), *g6 = NULL, *gg = NULL;
  int rc6 = sloth_grad(L6, &x, 1, &g6);
  int rc7 = rc6 == SLOTH_OK ? sloth_grad(sloth_sum(g6, NULL, 0, 0), &x, 1, &gg) : rc6;
  for (int i = 0; i < 6; i++) want[i] = 6 * xv[i];
  ok(rc7 == SLOTH_OK && read_f32(gg, gx, 6) && close_to(gx, want, 6, 1e-5), "second order: d/dx sum(d sum(x^3)/dx) = 6x");
  sloth_release(g6), sloth_release(gg);
  sloth_scope_end();
}

/* wrt entries that are not inputs: an intermediate, the same tensor twice,
 * and a tensor computed by an earlier sync (a leaf now) */
static void wrt_kinds(void) {
  sloth_scope_begin();
  float xv[4] = {0.5f, -1, 2, 0.25f}, g1[4], g2[4], g3[4], want[4];
  sloth_tensor *x = sloth_from_host(xv, SLOTH_F32, 1, S(4));
  sloth_tensor *y = sloth_mul(x, x);
  sloth_tensor *L = sloth_sum(sloth_sin(y), NULL, 0, 0);
  sloth_tensor *wrt[3] = {y, x, x}, *g[3] = {NULL};
  int rc = sloth_grad(L, wrt, 3, g);
  for (int i = 0; i < 4; i++) want[i] = cosf(xv[i] * xv[i]);
  ok(rc == SLOTH_OK && read_f32(g[0], g1, 4) && close_to(g1, want, 4, 1e-5), "the gradient w.r.t. an intermediate");
  for (int i = 0; i < 4; i++) want[i] = 2 * xv[i] * cosf(xv[i] * xv[i]);
  ok(rc == SLOTH_OK && read_f32(g[1], g2, 4) && read_f32(g[2], g3, 4) && close_to(g2, want, 4, 1e-5) &&
         close_to(g3, want, 4, 1e-5),
     "the same tensor twice in wrt gets its gradient twice");
  for (int i = 0; i < 3; i++) sloth_release(g[i]);
  /* z computed by a sync point is a leaf: requested, it gets its gradient */
  sloth_tensor *z = sloth_exp(x), *gz = NULL;
  float zv[4];
  sloth_to_host(z, zv, sizeof zv);
  sloth_tensor *L2 = sloth_sum(sloth_square(z), NULL, 0, 0);
  for (int i = 0; i < 4; i++) want[i] = 2 * zv[i];
  ok(sloth_grad(L2, &z, 1, &gz) == SLOTH_OK && read_f32(gz, g1, 4) && close_to(g1, want, 4, 1e-6),
     "a tensor computed by an earlier sync, requested, gets its gradient");
  sloth_release(gz);
  sloth_scope_end();
}

static void vjp(void) {
  sloth_scope_begin();
  float xv[6] = {0.5f, -1, 2, 1.5f, -0.25f, 3}, s1v[6] = {1, -2, 0.5f, 3, 1, -1}, s2v[3] = {2, -1, 0.5f};
  float wv[3] = {0.1f, 0.2f, -0.3f};
  sloth_tensor *x = sloth_from_host(xv, SLOTH_F32, 2, S(2, 3));
  sloth_tensor *w = sloth_from_host(wv, SLOTH_F32, 1, S(3));
  sloth_tensor *y1 = sloth_mul(sloth_square(x), w); /* [2,3] */
  sloth_tensor *y2 = sloth_sum(x, (int[]){0}, 1, 0); /* [3] */
  sloth_tensor *seeds[2] = {sloth_from_host(s1v, SLOTH_F32, 2, S(2, 3)), sloth_from_host(s2v, SLOTH_F32, 1, S(3))};
  sloth_tensor *outs[2] = {y1, y2}, *wrt[2] = {x, w}, *g[2] = {NULL};
  int rc = sloth_vjp(outs, seeds, 2, wrt, 2, g);
  float gx[6], gw[3], wx[6], ww[3] = {0};
  for (int i = 0; i < 6; i++) {
    wx[i] = s1v[i] * 2 * xv[i] * wv[i % 3] + s2v[i % 3];
    ww[i % 3] += s1v[i] * xv[i] * xv[i];
  }
  ok(rc == SLOTH_OK && read_f32(g[0], gx, 6) && close_to(gx, wx, 6, 1e-6), "vjp of two non-scalar outputs with seeds: d/dx");
  ok(rc == SLOTH_OK && read_f32(g[1], gw, 3) && close_to(gw, ww, 3, 1e-6), "vjp: d/dw (broadcast operand sums back)");
  sloth_release(g[0]), sloth_release(g[1]);
  /* seeds NULL: ones */
  rc = sloth_vjp(&y1, NULL, 1, &w, 1, g);
  float ones_w[3] = {0};
  for (int i = 0; i < 6; i++) ones_w[i % 3] += xv[i] * xv[i];
  ok(rc == SLOTH_OK && read_f32(g[0], gw, 3) && close_to(gw, ones_w, 3, 1e-6), "vjp without seeds uses ones");
  sloth_release(g[0]);
  /* a seed of the wrong shape */
  sloth_tensor *bad[2] = {seeds[1], seeds[0]};
  g[0] = g[1] = (sloth_tensor *)(uintptr_t)1;
  rc = sloth_vjp(outs, bad, 2, wrt, 2, g);
  ok(rc == SLOTH_E_SHAPE && !g[0] && !g[1], "vjp with a seed not shaped like its output: SLOTH_E_SHAPE, outputs NULL (%s)",
     sloth_last_error());
  sloth_scope_end();
}

static void already_computed(void) {
  sloth_scope_begin();
  float xv[4] = {1, 2, 3, 4};
  sloth_tensor *x = sloth_from_host(xv, SLOTH_F32, 1, S(4));
  sloth_tensor *L = sloth_sum(sloth_square(x), NULL, 0, 0), *g = (sloth_tensor *)(uintptr_t)1;
  float lv = 0;
  ok(sloth_to_host(L, &lv, sizeof lv) == SLOTH_OK && lv == 30, "the loss is read (a sync point)");
  int rc = sloth_grad(L, &x, 1, &g);
  ok(rc == SLOTH_E_INVALID && g == NULL, "grad of a loss already computed by to_host: SLOTH_E_INVALID (%s)", sloth_last_error());
  sloth_tensor *L2 = sloth_sum(sloth_exp(x), NULL, 0, 0);
  sloth_keep(L2);
  ok(sloth_mark_step() == SLOTH_OK, "mark_step computes a second loss");
  g = (sloth_tensor *)(uintptr_t)1;
  rc = sloth_grad(L2, &x, 1, &g);
  ok(rc == SLOTH_E_INVALID && g == NULL, "grad of a loss computed by mark_step: SLOTH_E_INVALID");
  sloth_release(L2);
  /* still fine afterwards, with a new graph from the same leaves */
  sloth_tensor *L3 = sloth_sum(sloth_square(x), NULL, 0, 0);
  float gx[4], want[4] = {2, 4, 6, 8};
  g = NULL;
  ok(sloth_grad(L3, &x, 1, &g) == SLOTH_OK && read_f32(g, gx, 4) && close_to(gx, want, 4, 0), "a rebuilt loss differentiates");
  sloth_release(g);
  sloth_scope_end();
}

/* An intermediate computed by a sync point loses its operands: to autograd
 * it is a constant (documented in sloth.h), so x gets zeros through it. */
static void intermediate_computed(void) {
  sloth_scope_begin();
  float xv[4] = {1, 2, 3, 4}, yv[4];
  sloth_tensor *x = sloth_from_host(xv, SLOTH_F32, 1, S(4));
  sloth_tensor *y = sloth_square(x);
  sloth_to_host(y, yv, sizeof yv);
  sloth_tensor *L = sloth_sum(sloth_exp(y), NULL, 0, 0), *g = NULL;
  int rc = sloth_grad(L, &x, 1, &g);
  float gx[4] = {1, 1, 1, 1};
  ok(rc == SLOTH_OK && read_f32(g, gx, 4) && gx[0] == 0 && gx[1] == 0 && gx[2] == 0 && gx[3] == 0,
     "an intermediate computed by a sync point is a constant: zero gradient through it (rc %d)", rc);
  if (rc == SLOTH_OK) sloth_release(g);
  sloth_scope_end();
}

static void bad_arguments(void) {
  sloth_scope_begin();
  float xv[4] = {1, 2, 3, 4};
  int32_t iv[4] = {1, 2, 3, 4};
  sloth_tensor *x = sloth_from_host(xv, SLOTH_F32, 1, S(4));
  sloth_tensor *xi = sloth_from_host(iv, SLOTH_I32, 1, S(4));
  sloth_tensor *L = sloth_sum(sloth_square(x), NULL, 0, 0), *g[2] = {NULL, NULL};
  sloth_tensor *v = sloth_square(x);
  sloth_tensor *gone = sloth_keep(sloth_exp(x));
  sloth_release(gone);
  sloth_tensor *wrt_null[1] = {NULL}, *wrt_gone[1] = {gone};
  int rc[16], k = 0;
  const char *what[16];
#define BAD(w, call)                                                                               \
  do {                                                                                              \
    g[0] = g[1] = NULL;                                                                             \
    what[k] = w;                                                                                    \
    rc[k] = call;                                                                                   \
    ok(rc[k] < 0 && g[0] == NULL, "bad argument: %s gives %d (%s)", w, rc[k], sloth_status_string(rc[k])); \
                                                                                                    \
    k++;                                                                                            \
  } while (0)
  BAD("NULL loss", sloth_grad(NULL, &x, 1, g));
  BAD("NULL wrt list", sloth_grad(L, NULL, 1, g));
  BAD("NULL grads_out", sloth_grad(L, &x, 1, NULL));
  BAD("n < 0", sloth_grad(L, &x, -1, g));
  BAD("a NULL tensor in wrt", sloth_grad(L, wrt_null, 1, g));
  BAD("a released tensor in wrt", sloth_grad(L, wrt_gone, 1, g));
  BAD("a released loss", sloth_grad(gone, &x, 1, g));
  BAD("a non-scalar loss", sloth_grad(v, &x, 1, g));
  BAD("an integer loss", sloth_grad(sloth_sum(xi, NULL, 0, 0), &xi, 1, g));
  BAD("vjp: NULL outputs", sloth_vjp(NULL, NULL, 1, &x, 1, g));
  BAD("vjp: 0 outputs", sloth_vjp(&v, NULL, 0, &x, 1, g));
  BAD("vjp: n < 0", sloth_vjp(&v, NULL, 1, &x, -2, g));
  BAD("vjp: a NULL seed", sloth_vjp(&v, wrt_null, 1, &x, 1, g));
  BAD("vjp: a released output", sloth_vjp(wrt_gone, NULL, 1, &x, 1, g));
  BAD("vjp: an integer output", sloth_vjp(&xi, NULL, 1, &x, 1, g));
#undef BAD
  (void)what;
  ok(rc[7] == SLOTH_E_SHAPE, "a non-scalar loss is SLOTH_E_SHAPE");
  ok(rc[8] == SLOTH_E_DTYPE, "an integer loss is SLOTH_E_DTYPE");
  ok(rc[5] == SLOTH_E_INVALID && rc[6] == SLOTH_E_INVALID, "released tensors are SLOTH_E_INVALID");
  /* A failed call must leave the caller's grads_out entries alone when it
   * has not taken them over: here the entry holds the only reference to a
   * live tensor. */
  sloth_tensor *held = sloth_keep(sloth_exp(x));
  g[0] = held;
  int rc_held = sloth_grad(L, NULL, 1, g);
  bool alive = sloth_rank(held) == 1;
  ok(rc_held < 0 && alive && g[0] == NULL, "a failed sloth_grad (NULL wrt list) sets grads_out to NULL and releases nothing");
  if (alive) sloth_release(held);
  /* the runtime still works */
  sloth_clear_error();
  float gx[4], want[4] = {2, 4, 6, 8};
  ok(sloth_grad(L, &x, 1, g) == SLOTH_OK && read_f32(g[0], gx, 4) && close_to(gx, want, 4, 0),
     "after the bad calls the same loss differentiates");
  sloth_release(g[0]);
  sloth_scope_end();
}

/* A training-like step: forward, backward, update as one graph. The second
 * identical step replays the plan: no plan cache miss, nothing compiled. */
static void replay(void) {
  float xv[12], wv[8], tv[6];
  for (int i = 0; i < 12; i++) xv[i] = (float)uni(-1, 1);
  for (int i = 0; i < 8; i++) wv[i] = (float)uni(-1, 1);
  for (int i = 0; i < 6; i++) tv[i] = (float)uni(-1, 1);
  sloth_tensor *w = sloth_from_host(wv, SLOTH_F32, 2, S(4, 2));
  int64_t miss[3], compile[3], hit[3];
  float lossv[3];
  bool fine = true;
  for (int step = 0; step < 3; step++) {
    sloth_scope_begin();
    sloth_tensor *x = sloth_from_host(xv, SLOTH_F32, 2, S(3, 4)), *t = sloth_from_host(tv, SLOTH_F32, 2, S(3, 2));
    sloth_tensor *y = sloth_tanh(sloth_matmul(x, w));
    sloth_tensor *L = sloth_mse_loss(sloth_softmax(y, 1), t), *g = NULL;
    miss[step] = sloth_counter("plan_cache_miss");
    compile[step] = sloth_counter("kernel_compile");
    hit[step] = sloth_counter("plan_cache_hit");
    fine &= sloth_grad(L, &w, 1, &g) == SLOTH_OK;
    sloth_tensor *nw = sloth_sub(w, sloth_mul_scalar(g, 0.5));
    sloth_tensor *outs[2] = {L, nw};
    fine &= sloth_sync(outs, 2) == SLOTH_OK && sloth_to_host(L, &lossv[step], sizeof(float)) == SLOTH_OK;
    sloth_release(g);
    sloth_release(w);
    w = sloth_keep(nw);
    sloth_scope_end();
    if (step) {
      miss[step] = sloth_counter("plan_cache_miss") - miss[step];
      compile[step] = sloth_counter("kernel_compile") - compile[step];
      hit[step] = sloth_counter("plan_cache_hit") - hit[step];
    }
  }
  sloth_release(w);
  ok(fine, "three gradient steps run");
  ok(miss[1] == 0 && miss[2] == 0 && compile[1] == 0 && compile[2] == 0 && hit[1] > 0,
     "repeated steps replay the plan (misses %lld %lld, compiles %lld %lld, hits %lld)", (long long)miss[1], (long long)miss[2],
     (long long)compile[1], (long long)compile[2], (long long)hit[1]);
  ok(lossv[2] < lossv[0], "the loss goes down (%g -> %g)", lossv[0], lossv[2]);
}

/* With arguments, runs only the named sections (for debugging): unary binary
 * self unary views indexing reductions zeros ties matmul nn contract. */
static int nsel;
static char **sel;
static bool run(const char *section) {
  if (nsel == 0) return true;
  for (int i = 0; i < nsel; i++)
    if (strcmp(sel[i], section) == 0) return true;
  return false;
}

int main(int argc, char **argv) {
  nsel = argc - 1;
  verbose = getenv("TEST_GRAD_VERBOSE") != NULL;
  sel = argv + 1;
  if (sloth_init(NULL) != SLOTH_OK) skip_all(sloth_last_error());
  double t0 = now();
  struct {
    const char *name;
    void (*fn)(void);
  } sections[] = {{"self", self_test},       {"unary", unary_ops},     {"binary", binary_ops},   {"views", view_ops},   {"indexing", indexing_ops},
                  {"reductions", reduction_ops}, {"zeros", zero_inputs}, {"ties", ties},        {"matmul", matmul_ops},
                  {"nn", nn_ops}};
  for (size_t k = 0; k < sizeof sections / sizeof sections[0]; k++)
    if (run(sections[k].name)) {
      double t = now(), fd = fd_seconds;
      sections[k].fn();
      diag("%s: %.1f s (finite differences %.1f s)", sections[k].name, now() - t, fd_seconds - fd);
    }
  diag("finite differences: %ld evaluations in %.1f s", fd_evals, fd_seconds);
  if (run("contract")) {
    integer_inputs();
    f16_input();
    detach_and_unrelated();
    wrt_kinds();
    vjp();
    already_computed();
    intermediate_computed();
    bad_arguments();
    replay();
  }
  free(Rbuf);
  diag("total %.1f s", now() - t0);
  return tap_done();
}
