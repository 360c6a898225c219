/* test_runtime.c - the runtime's promises: fusion, plan and kernel caching,
 * metrics, graph trimming, scopes, errors on bad input, threads, dumps. */
#include <sloth.h>

#include "tap.h"

#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static int64_t ctr(const char *name) { return sloth_counter(name); }

/* counters captured before a step, so a test can read what the step did */
typedef struct snap {
  int64_t launch, compile, hit, miss, trim;
} snap;
static snap take(void) {
  return (snap){ctr("kernel_launch"), ctr("kernel_compile"), ctr("plan_cache_hit"), ctr("plan_cache_miss"), ctr("graph_trim")};
}

static sloth_tensor *vec(const float *data, int64_t n) { return sloth_from_host(data, SLOTH_F32, 1, &n); }

/* y = ((((x*a + 1) * 0.5 - b) ...)): ten elementwise ops on x and a */
static sloth_tensor *chain10(sloth_tensor *x, sloth_tensor *a, double s) {
  sloth_tensor *t = sloth_mul(x, a);
  t = sloth_add_scalar(t, 1.0);
  t = sloth_mul_scalar(t, s);
  t = sloth_sub(t, a);
  t = sloth_abs(t);
  t = sloth_sqrt(t);
  t = sloth_add(t, x);
  t = sloth_maximum(t, a);
  t = sloth_neg(t);
  return sloth_tanh(t);
}

static float chain10_ref(float x, float a, float s) {
  float t = x * a;
  t = t + 1.0f;
  t = t * s;
  t = t - a;
  t = fabsf(t);
  t = sqrtf(t);
  t = t + x;
  t = fmaxf(t, a);
  t = -t;
  return tanhf(t);
}

static void test_fusion(void) {
  enum { N = 1000 };
  float xs[N], as[N], out[N], want[N];
  for (int i = 0; i < N; i++) xs[i] = (float)i / N - 0.3f, as[i] = (float)(i % 7) / 7.0f;
  sloth_scope_begin();
  sloth_tensor *x = vec(xs, N), *a = vec(as, N);
  snap s0 = take();
  sloth_tensor *y = chain10(x, a, 0.5);
  ok(sloth_is_pending(y) == 1, "ops record IR and run nothing");
  ok(ctr("kernel_launch") == s0.launch, "no launch before the sync point");
  ok(sloth_to_host(y, out, sizeof out) == SLOTH_OK, "to_host syncs the chain");
  for (int i = 0; i < N; i++) want[i] = chain10_ref(xs[i], as[i], 0.5f);
  ok(tap_max_err(out, want, N, 1e-5, 1e-5) <= 1, "chain of 10 elementwise ops matches the reference");
  ok(ctr("kernel_launch") - s0.launch == 1, "chain of 10 elementwise ops runs as exactly 1 kernel (%lld)",
     (long long)(ctr("kernel_launch") - s0.launch));

  /* a reduction of an elementwise expression is one kernel */
  snap s1 = take();
  sloth_tensor *r = sloth_sum(sloth_exp(sloth_mul(x, a)), NULL, 0, 0);
  float got, ref = 0;
  ok(sloth_to_host(r, &got, sizeof got) == SLOTH_OK, "sum(exp(x*a)) syncs");
  for (int i = 0; i < N; i++) ref += expf(xs[i] * as[i]);
  ok(fabsf(got - ref) <= 1e-4f * fabsf(ref), "sum(exp(x*a)) = %g, want %g", got, ref);
  ok(ctr("kernel_launch") - s1.launch == 1, "a reduction of an elementwise expression is 1 kernel");

  /* two outputs of the same shape from the same inputs share a kernel */
  snap s2 = take();
  sloth_tensor *p = sloth_add(x, a), *q = sloth_mul(sloth_exp(x), a);
  sloth_tensor *both[2] = {p, q};
  ok(sloth_sync(both, 2) == SLOTH_OK, "sync of two outputs");
  ok(ctr("kernel_launch") - s2.launch == 1, "two same-shape outputs run in one kernel (%lld)",
     (long long)(ctr("kernel_launch") - s2.launch));
  sloth_to_host(q, out, sizeof out);
  for (int i = 0; i < N; i++) want[i] = expf(xs[i]) * as[i];
  ok(tap_max_err(out, want, N, 1e-6, 1e-5) <= 1, "the second output is right");

  /* a node used by two kernels is computed once: e = exp(x) feeds a
   * reduction and an elementwise output, so it is materialized */
  snap s3 = take();
  sloth_tensor *e = sloth_exp(x);
  sloth_tensor *m = sloth_max(e, NULL, 0, 0), *w = sloth_mul_scalar(e, 2.0);
  sloth_tensor *mw[2] = {m, w};
  ok(sloth_sync(mw, 2) == SLOTH_OK, "sync of a shared node's consumers");
  ok(ctr("kernel_launch") - s3.launch == 2, "shared exp(x): reduction and elementwise consumer, 2 kernels (%lld)",
     (long long)(ctr("kernel_launch") - s3.launch));
  ok(sloth_is_pending(e) == 0, "the shared node itself now holds data");
  sloth_to_host(m, &got, sizeof got);
  ok(fabsf(got - expf(xs[N - 1])) < 1e-5f * expf(xs[N - 1]), "max(exp(x)) is right");

  /* a cheap node used by two kernels is computed again in each: c = x + a
   * and its transpose feed two reductions of different shapes, 2 kernels
   * and no buffer for c */
  snap s4 = take();
  int64_t sq[2] = {25, 40};
  sloth_tensor *c = sloth_reshape(sloth_add(x, a), 2, sq);
  sloth_tensor *rows = sloth_sum(c, (int[]){1}, 1, 0), *cols = sloth_max(sloth_transpose(c, 0, 1), (int[]){1}, 1, 0);
  sloth_tensor *rc2[2] = {rows, cols};
  ok(sloth_sync(rc2, 2) == SLOTH_OK, "sync of a cheap shared node's consumers");
  ok(ctr("kernel_launch") - s4.launch == 2, "shared x + a (cheap): computed in both reductions, 2 kernels (%lld)",
     (long long)(ctr("kernel_launch") - s4.launch));
  ok(sloth_is_pending(c) == 1, "the cheap shared node stays pending (no buffer)");
  float rs[25], cs[40];
  int fine = sloth_to_host(rows, rs, sizeof rs) == SLOTH_OK && sloth_to_host(cols, cs, sizeof cs) == SLOTH_OK;
  for (int i = 0; i < 25 && fine; i++) {
    float acc = 0;
    for (int j = 0; j < 40; j++) acc += xs[i * 40 + j] + as[i * 40 + j];
    fine = fabsf(rs[i] - acc) <= 1e-4f * (1 + fabsf(acc));
  }
  for (int j = 0; j < 40 && fine; j++) {
    float mx = -INFINITY;
    for (int i = 0; i < 25; i++) mx = fmaxf(mx, xs[i * 40 + j] + as[i * 40 + j]);
    fine = cs[j] == mx;
  }
  ok(fine, "both reductions of the replicated node are right");

  /* relu's gradient where(x > 0, a, 0) reads two tensors: the broadcast 0
   * is a kernel argument, so the node is replicated too */
  snap s5 = take();
  sloth_tensor *wz = sloth_reshape(sloth_where(sloth_gt(x, sloth_scalar(0, SLOTH_F32)), a, sloth_scalar(0, SLOTH_F32)), 2, sq);
  sloth_tensor *wrows = sloth_sum(wz, (int[]){1}, 1, 0), *wcols = sloth_sum(sloth_transpose(wz, 0, 1), (int[]){1}, 1, 0);
  ok(sloth_sync((sloth_tensor *[]){wrows, wcols}, 2) == SLOTH_OK, "sync of where(x > 0, a, 0)'s consumers");
  ok(ctr("kernel_launch") - s5.launch == 2, "where(x > 0, a, 0) shared by two reductions: 2 kernels (%lld)",
     (long long)(ctr("kernel_launch") - s5.launch));
  fine = sloth_to_host(wrows, rs, sizeof rs) == SLOTH_OK && sloth_to_host(wcols, cs, sizeof cs) == SLOTH_OK;
  for (int i = 0; i < 25 && fine; i++) {
    float acc = 0;
    for (int j = 0; j < 40; j++) acc += xs[i * 40 + j] > 0 ? as[i * 40 + j] : 0;
    fine = fabsf(rs[i] - acc) <= 1e-4f * (1 + fabsf(acc));
  }
  for (int j = 0; j < 40 && fine; j++) {
    float acc = 0;
    for (int i = 0; i < 25; i++) acc += xs[i * 40 + j] > 0 ? as[i * 40 + j] : 0;
    fine = fabsf(cs[j] - acc) <= 1e-4f * (1 + fabsf(acc));
  }
  ok(fine, "both sums of where(x > 0, a, 0) are right");
  sloth_scope_end();

  /* a GEMM reads e = exp(x) through transpose(e), a view another kernel
   * computes too: the GEMM still waits for e's kernel, which must not be
   * merged with m + 1 (same shape, after the GEMM) */
  sloth_scope_begin();
  float es[9], ys[9];
  for (int i = 0; i < 9; i++) es[i] = 0.1f * (float)i, ys[i] = (float)(i % 4);
  int64_t s33[2] = {3, 3};
  sloth_tensor *ex = sloth_exp(sloth_from_host(es, SLOTH_F32, 2, s33)), *ey = sloth_from_host(ys, SLOTH_F32, 2, s33);
  sloth_tensor *et = sloth_transpose(ex, 0, 1);
  sloth_tensor *esum = sloth_sum(et, (int[]){1}, 1, 0), *em = sloth_add_scalar(sloth_matmul(et, ey), 1);
  float mv[9];
  ok(sloth_sync((sloth_tensor *[]){esum, em}, 2) == SLOTH_OK && sloth_to_host(em, mv, sizeof mv) == SLOTH_OK,
     "sync of exp(x)^T read by a sum and by a GEMM");
  int wrong = 0;
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++) {
      float want = 1;
      for (int k = 0; k < 3; k++) want += expf(es[k * 3 + i]) * ys[k * 3 + j];
      wrong += fabsf(mv[i * 3 + j] - want) > 1e-4f * want;
    }
  ok(wrong == 0, "exp(x)^T y + 1 is right: the GEMM ran after exp(x) (%d wrong)", wrong);
  sloth_scope_end();
}

/* Buffers shared inside a step: A = X Y, B = A Y, C = B Y. With only C
 * wanted, C takes A's buffer (A's last reader, the GEMM of B, has run);
 * an intermediate that a tensor or a pending view still holds keeps its own
 * buffer and its value. Small integers: every product is exact. */
enum { SN = 16 };
static void chain_ref(const float *x, const float *y, double out[3][SN * SN]) {
  const float *in = x;
  static float tmp[SN * SN];
  for (int s = 0; s < 3; s++) {
    for (int i = 0; i < SN; i++)
      for (int j = 0; j < SN; j++) {
        double acc = 0;
        for (int k = 0; k < SN; k++) acc += (double)in[i * SN + k] * y[k * SN + j];
        out[s][i * SN + j] = acc;
      }
    for (int i = 0; i < SN * SN; i++) tmp[i] = (float)out[s][i];
    in = tmp;
  }
}

static int matches(sloth_tensor *t, const double *want, int transposed) {
  float got[SN * SN];
  if (sloth_to_host(t, got, sizeof got) != SLOTH_OK) return 0;
  for (int i = 0; i < SN; i++)
    for (int j = 0; j < SN; j++)
      if (got[i * SN + j] != (float)want[transposed ? j * SN + i : i * SN + j]) return 0;
  return 1;
}

static void test_buffer_sharing(void) {
  static float xs[SN * SN], ys[SN * SN];
  static double want[3][SN * SN];
  for (int i = 0; i < SN * SN; i++) xs[i] = (float)(i * 7 % 5) - 2, ys[i] = (float)(i * 3 % 5) - 2;
  chain_ref(xs, ys, want);
  int64_t sh[2] = {SN, SN};
  for (int variant = 0; variant < 3; variant++) {
    sloth_scope_begin();
    sloth_tensor *x = sloth_from_host(xs, SLOTH_F32, 2, sh), *y = sloth_from_host(ys, SLOTH_F32, 2, sh);
    sloth_sync((sloth_tensor *[]){x, y}, 2);
    sloth_tensor *a = sloth_matmul(x, y), *b = sloth_matmul(a, y), *c = sloth_matmul(b, y);
    sloth_tensor *held = variant == 1 ? a : variant == 2 ? sloth_transpose(a, 0, 1) : NULL;
    if (held != a) sloth_release(a); /* variant 0: only c is wanted; 2: only a pending view of A is held */
    sloth_release(b);
    int64_t shared = ctr("buffer_share");
    ok(sloth_sync(&c, 1) == SLOTH_OK && matches(c, want[2], 0), "A Y Y Y right (%s)",
       variant == 0 ? "A and B dropped" : variant == 1 ? "A held" : "A held through a pending transpose");
    shared = ctr("buffer_share") - shared;
    if (variant == 0) ok(shared == 1, "C took A's buffer (%lld shared)", (long long)shared);
    else {
      ok(shared == 0, "A's buffer is not shared while A is held (%lld shared)", (long long)shared);
      ok(matches(held, want[0], variant == 2), "A keeps its value after the step");
      if (variant == 1) ok(sloth_is_pending(a) == 0, "A was materialized by the step");
    }
    sloth_scope_end();
  }
}

static void run_step(const float *xs, const float *as, int64_t n, double s, float *out) {
  sloth_scope_begin();
  sloth_tensor *x = vec(xs, n), *a = vec(as, n);
  sloth_tensor *y = chain10(x, a, s);
  sloth_mark_step();
  sloth_to_host(y, out, (size_t)n * sizeof(float));
  sloth_scope_end();
}

static void test_caching(void) {
  enum { N = 512 };
  float xs[N], as[N], out[N], want[N];
  for (int i = 0; i < N; i++) xs[i] = (float)i / N, as[i] = 0.25f;
  run_step(xs, as, N, 0.5, out);
  snap s0 = take();
  run_step(xs, as, N, 0.5, out);
  ok(ctr("kernel_compile") == s0.compile, "the same step run twice compiles nothing the second time");
  ok(ctr("plan_cache_hit") - s0.hit == 1 && ctr("plan_cache_miss") == s0.miss, "the second run is a plan cache hit");

  snap s1 = take();
  run_step(xs, as, N, 0.75, out);
  ok(ctr("kernel_compile") == s1.compile && ctr("plan_cache_miss") == s1.miss, "a changed scalar compiles nothing and hits the plan");
  for (int i = 0; i < N; i++) want[i] = chain10_ref(xs[i], as[i], 0.75f);
  ok(tap_max_err(out, want, N, 1e-5, 1e-5) <= 1, "the changed scalar is used");

  snap s2 = take();
  run_step(xs, as, N / 2 + 3, 0.5, out);
  ok(ctr("plan_cache_miss") - s2.miss == 1, "a changed batch size builds a new plan");
  ok(ctr("kernel_compile") == s2.compile, "a changed batch size compiles no kernel");
  for (int i = 0; i < N / 2 + 3; i++) want[i] = chain10_ref(xs[i], as[i], 0.5f);
  ok(tap_max_err(out, want, N / 2 + 3, 1e-5, 1e-5) <= 1, "the new batch size computes the right values");
}

static void test_plan_lru(void) {
  /* a bound of 2 plans: a third graph evicts the least recently used */
  setenv("SLOTH_PLAN_CACHE_SIZE", "2", 1);
  float xs[16], out[16];
  for (int i = 0; i < 16; i++) xs[i] = (float)i;
  sloth_tensor *(*ops[3])(sloth_tensor *) = {sloth_exp, sloth_sin, sloth_cos};
  int64_t miss[4];
  for (int step = 0; step < 4; step++) {
    sloth_scope_begin();
    miss[step] = ctr("plan_cache_miss");
    sloth_tensor *y = ops[step % 3](sloth_mul_scalar(vec(xs, 16), 0.01));
    sloth_to_host(y, out, sizeof out);
    miss[step] = ctr("plan_cache_miss") - miss[step];
    sloth_scope_end();
  }
  ok(miss[0] == 1 && miss[1] == 1 && miss[2] == 1, "three new graphs miss");
  ok(miss[3] == 1, "with SLOTH_PLAN_CACHE_SIZE=2 the first graph was evicted");
  setenv("SLOTH_PLAN_CACHE_SIZE", "1024", 1);
  ok(sloth_wait() == SLOTH_OK, "sloth_wait waits for device work");
}

static void test_mark_step_and_trim(void) {
  float ones[64], out[64];
  for (int i = 0; i < 64; i++) ones[i] = 1.0f;
  sloth_scope_begin();
  sloth_tensor *b = vec(ones, 64);
  sloth_tensor *p = sloth_mul_scalar(b, 3.0), *q = sloth_add_scalar(b, 2.0);
  ok(sloth_mark_step() == SLOTH_OK && !sloth_is_pending(p) && !sloth_is_pending(q), "mark_step syncs every live tensor");

  /* a = a + b in a loop with no mark_step: the graph is trimmed */
  snap s0 = take();
  sloth_tensor *a = sloth_zeros(SLOTH_F32, 1, (int64_t[]){64});
  sloth_keep(a);
  sloth_scope_end();
  sloth_scope_begin();
  b = vec(ones, 64);
  for (int i = 0; i < 1000; i++) {
    sloth_tensor *next = sloth_add(a, b);
    sloth_release(a);
    a = sloth_keep(next);
  }
  ok(sloth_to_host(a, out, sizeof out) == SLOTH_OK && out[0] == 1000.0f && out[63] == 1000.0f, "1000 chained adds give %g", out[0]);
  int64_t trims = ctr("graph_trim") - s0.trim;
  ok(trims >= 5, "the growing graph was trimmed automatically (%lld times)", (long long)trims);
  ok(ctr("kernel_compile") - s0.compile <= 4, "trimming a repeated chain compiles a bounded number of kernels (%lld)",
     (long long)(ctr("kernel_compile") - s0.compile));
  sloth_release(a);
  sloth_scope_end();
}

static void expect_error(sloth_tensor *t, sloth_status want, const char *what) {
  ok(t == NULL && sloth_last_status() == want && strlen(sloth_last_error()) > 0, "%s -> NULL, %s: %s", what,
     sloth_status_string(want), sloth_last_error());
  sloth_clear_error();
}

static void test_bad_input(void) {
  float d[12] = {0};
  sloth_scope_begin();
  sloth_tensor *a = sloth_from_host(d, SLOTH_F32, 2, (int64_t[]){3, 4});
  sloth_tensor *b = sloth_from_host(d, SLOTH_F32, 2, (int64_t[]){4, 3});
  sloth_tensor *mask = sloth_from_host(d, SLOTH_BOOL, 2, (int64_t[]){3, 4});
  expect_error(sloth_add(a, b), SLOTH_E_SHAPE, "add of [3,4] and [4,3]");
  expect_error(sloth_add(a, NULL), SLOTH_E_INVALID, "add with NULL");
  expect_error(sloth_sum(a, (int[]){2}, 1, 0), SLOTH_E_INVALID, "sum over axis 2 of a rank-2 tensor");
  expect_error(sloth_sum(a, (int[]){1, -1}, 2, 0), SLOTH_E_INVALID, "sum with a repeated axis");
  expect_error(sloth_permute(a, (int[]){0, 0}), SLOTH_E_INVALID, "permute with a repeated axis");
  expect_error(sloth_reshape(a, 2, (int64_t[]){5, 3}), SLOTH_E_SHAPE, "reshape of 12 elements to [5,3]");
  expect_error(sloth_reshape(a, 2, (int64_t[]){-1, 5}), SLOTH_E_SHAPE, "reshape with an impossible -1");
  expect_error(sloth_expand(a, 2, (int64_t[]){6, 4}), SLOTH_E_SHAPE, "expand of size 3 to 6");
  expect_error(sloth_slice(a, 0, 0, 3, 0), SLOTH_E_INVALID, "slice with step 0");
  expect_error(sloth_squeeze(a, 0), SLOTH_E_SHAPE, "squeeze of a dimension of size 3");
  expect_error(sloth_neg(mask), SLOTH_E_DTYPE, "neg of a bool tensor");
  expect_error(sloth_cast(a, (sloth_dtype)42), SLOTH_E_DTYPE, "cast to an unknown dtype");
  expect_error(sloth_arange(0, 10, 0, SLOTH_F32), SLOTH_E_INVALID, "arange with step 0");
  expect_error(sloth_from_host(d, SLOTH_F32, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}), SLOTH_E_INVALID, "rank 9");
  expect_error(sloth_from_host(d, SLOTH_F32, 1, (int64_t[]){-2}), SLOTH_E_INVALID, "negative size");
  expect_error(sloth_from_host(NULL, SLOTH_F32, 1, (int64_t[]){2}), SLOTH_E_INVALID, "from_host of NULL data");
  expect_error(sloth_max(sloth_zeros(SLOTH_F32, 1, (int64_t[]){0}), NULL, 0, 0), SLOTH_E_SHAPE, "max of an empty tensor");
  /* a chain of calls is checked once: NULL flows through */
  ok(sloth_exp(sloth_add(a, b)) == NULL, "a NULL operand gives NULL down the chain");
  sloth_clear_error();
  float small[2];
  ok(sloth_to_host(a, small, sizeof small) == SLOTH_E_INVALID, "to_host into a buffer of the wrong size fails");
  ok(sloth_sync(NULL, 3) == SLOTH_E_INVALID, "sync of a NULL list fails");
  ok(sloth_init("nosuch") == SLOTH_E_INVALID, "an unknown backend name fails: %s", sloth_last_error());
  ok(sloth_init("opencl:99") == SLOTH_E_DEVICE, "a missing device index fails: %s", sloth_last_error());
  ok(sloth_counter("no_such_counter") == -1, "an unknown counter reads -1");

  /* a released tensor is reported, not a crash */
  sloth_tensor *gone = sloth_add_scalar(a, 1.0);
  sloth_keep(gone); /* out of the scope, released by hand below */
  sloth_release(gone);
  expect_error(sloth_exp(gone), SLOTH_E_INVALID, "an op on a released tensor");
  ok(sloth_rank(gone) == -1, "introspection of a released tensor fails: %s", sloth_last_error());
  sloth_clear_error();

  /* an allocation past the device's maximum single allocation: a clear error */
  sloth_device_info dev;
  sloth_device_current(&dev);
  int64_t big = (int64_t)(dev.max_alloc_bytes / 4) + 1024;
  sloth_tensor *zf = sloth_cast(sloth_zeros(SLOTH_U8, 1, &big), SLOTH_F32);
  ok(sloth_sync(&zf, 1) == SLOTH_E_NOMEM && strstr(sloth_last_error(), "maximum single allocation"),
     "a tensor past the device's maximum allocation fails clearly: %s", sloth_last_error());
  ok(sloth_is_pending(zf) == 1, "and stays pending");
  sloth_clear_error();

  /* the runtime still works afterwards */
  float out[12];
  sloth_tensor *c = sloth_add_scalar(a, 2.0);
  ok(c && sloth_to_host(c, out, sizeof out) == SLOTH_OK && out[0] == 2.0f && out[11] == 2.0f, "the runtime keeps working after errors");
  sloth_scope_end();
}

static void test_scopes(void) {
  sloth_scope_begin();
  sloth_tensor *t = sloth_ones(SLOTH_F32, 1, (int64_t[]){4});
  sloth_tensor *kept = sloth_keep(sloth_mul_scalar(t, 3.0));
  sloth_scope_end();
  ok(sloth_rank(t) == -1, "a tensor made in a scope is released by scope_end");
  sloth_clear_error();
  float out[4];
  ok(sloth_to_host(kept, out, sizeof out) == SLOTH_OK && out[3] == 3.0f, "a kept tensor survives scope_end");
  /* nested: keep moves a tensor to the enclosing scope */
  sloth_scope_begin();
  sloth_scope_begin();
  sloth_tensor *inner = sloth_keep(sloth_ones(SLOTH_I32, 0, NULL));
  sloth_scope_end();
  ok(sloth_rank(inner) == 0, "kept from an inner scope lives on in the outer one");
  sloth_scope_end();
  ok(sloth_rank(inner) == -1, "and the outer scope releases it");
  sloth_clear_error();
  sloth_release(kept);
}

static void test_dump(void) {
  sloth_scope_begin();
  sloth_tensor *x = sloth_arange(0, 6, 1, SLOTH_F32);
  sloth_tensor *y = sloth_sum(sloth_exp(sloth_reshape(x, 2, (int64_t[]){2, 3})), (int[]){1}, 1, 0);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ok(sloth_dump_graph(y, f, SLOTH_DUMP_TEXT) == SLOTH_OK, "text dump");
  fclose(f);
  ok(buf && strstr(buf, "sum(") && strstr(buf, "exp(") && strstr(buf, "reshape(") && strstr(buf, "f32[2]"),
     "text dump names ops, dtypes and shapes");
  free(buf);
  f = open_memstream(&buf, &len);
  ok(sloth_dump_graph(y, f, SLOTH_DUMP_DOT) == SLOTH_OK, "DOT dump");
  fclose(f);
  ok(buf && strncmp(buf, "digraph", 7) == 0 && strstr(buf, "->"), "DOT dump is a digraph with edges");
  free(buf);
  ok(sloth_dump_graph(y, NULL, SLOTH_DUMP_TEXT) == SLOTH_E_INVALID, "dump to NULL fails");
  sloth_scope_end();
}

/* threads: each builds and syncs its own graphs; results must be right */
static void *worker(void *arg) {
  int id = (int)(intptr_t)arg;
  int bad = 0;
  for (int it = 0; it < 20; it++) {
    sloth_scope_begin();
    float xs[100], out[100];
    for (int i = 0; i < 100; i++) xs[i] = (float)(i + id + it);
    sloth_tensor *x = vec(xs, 100);
    sloth_tensor *y = sloth_add_scalar(sloth_mul_scalar(x, 2.0), (double)id);
    if (sloth_to_host(y, out, sizeof out) != SLOTH_OK) bad++;
    for (int i = 0; i < 100; i++)
      if (out[i] != 2.0f * xs[i] + (float)id) bad++;
    sloth_scope_end();
  }
  return (void *)(intptr_t)bad;
}

static void test_threads(void) {
  pthread_t th[4];
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
  int bad = 0;
  for (int i = 0; i < 4; i++) {
    void *r;
    pthread_join(th[i], &r);
    bad += (int)(intptr_t)r;
  }
  ok(bad == 0, "4 threads building and syncing graphs concurrently get the right results");
}

static void test_dump_kernels(const char *dir) {
  DIR *d = opendir(dir);
  int files = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (strstr(e->d_name, ".cl") || strstr(e->d_name, ".cu")) files++;
  if (d) closedir(d);
  ok(files > 0, "SLOTH_DUMP_KERNELS wrote the generated kernels (%d files)", files);
}

int main(void) {
  char dir[] = "/tmp/sloth-kernels-XXXXXX";
  if (!mkdtemp(dir)) return 1;
  setenv("SLOTH_DUMP_KERNELS", dir, 1);
  if (sloth_init(NULL) != SLOTH_OK) skip_all(sloth_last_error());
  test_fusion();
  test_caching();
  test_buffer_sharing();
  test_plan_lru();
  test_mark_step_and_trim();
  test_bad_input();
  test_scopes();
  test_dump();
  test_threads();
  test_dump_kernels(dir);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) diag("could not remove %s", dir);
  sloth_shutdown();
  return tap_done();
}
