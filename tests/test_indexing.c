/* test_indexing.c - gather, index_select, embedding, concat and stack against
 * direct loops; out-of-range indices give an error, never a bad read. */
#include <sloth.h>

#include "tap.h"
#include "ref.h" /* f16 conversions */

#include <math.h>
#include <string.h>

static float X[4096], G[4096], W[4096];

static void fill(float *p, int n) {
  for (int i = 0; i < n; i++) p[i] = (float)((i * 37) % 101) / 10.0f - 5.0f;
}

static int fetch(sloth_tensor *t, float *out, int n) { return t ? sloth_to_host(t, out, (size_t)n * sizeof(float)) : -1; }

static void gather_tests(void) {
  sloth_scope_begin();
  fill(X, 60);
  sloth_tensor *x = sloth_from_host(X, SLOTH_F32, 3, (int64_t[]){3, 4, 5});
  /* along axis 1 with indices [3, 2, 5] (smaller than x along axis 1) */
  int32_t idx[30];
  for (int i = 0; i < 30; i++) idx[i] = (i * 7) % 4;
  sloth_tensor *it = sloth_from_host(idx, SLOTH_I32, 3, (int64_t[]){3, 2, 5});
  sloth_tensor *g = sloth_gather(x, 1, it);
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 2; j++)
      for (int k = 0; k < 5; k++) W[(i * 2 + j) * 5 + k] = X[(i * 4 + idx[(i * 2 + j) * 5 + k]) * 5 + k];
  ok(fetch(g, G, 30) == SLOTH_OK && memcmp(G, W, 30 * sizeof(float)) == 0, "gather along axis 1");
  /* along the last axis of a permuted view */
  int32_t idx2[60];
  for (int i = 0; i < 60; i++) idx2[i] = (i * 5) % 3;
  sloth_tensor *xt = sloth_permute(x, (int[]){2, 1, 0}); /* [5, 4, 3] */
  sloth_tensor *g2 = sloth_gather(xt, 2, sloth_from_host(idx2, SLOTH_I32, 3, (int64_t[]){5, 4, 3}));
  for (int i = 0; i < 5; i++)
    for (int j = 0; j < 4; j++)
      for (int k = 0; k < 3; k++) W[(i * 4 + j) * 3 + k] = X[(idx2[(i * 4 + j) * 3 + k] * 4 + j) * 5 + i];
  ok(fetch(g2, G, 60) == SLOTH_OK && memcmp(G, W, 60 * sizeof(float)) == 0, "gather along the last axis of a permuted view");

  /* index_select rows and columns */
  int32_t rows[4] = {2, 0, 2, 1};
  sloth_tensor *m = sloth_reshape(x, 2, (int64_t[]){3, 20});
  sloth_tensor *r = sloth_index_select(m, 0, sloth_from_host(rows, SLOTH_I32, 1, (int64_t[]){4}));
  for (int i = 0; i < 4; i++) memcpy(W + i * 20, X + rows[i] * 20, 20 * sizeof(float));
  ok(fetch(r, G, 80) == SLOTH_OK && memcmp(G, W, 80 * sizeof(float)) == 0, "index_select rows");
  int32_t cols[3] = {19, 0, 7};
  sloth_tensor *cs = sloth_index_select(m, 1, sloth_from_host(cols, SLOTH_I32, 1, (int64_t[]){3}));
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++) W[i * 3 + j] = X[i * 20 + cols[j]];
  ok(fetch(cs, G, 9) == SLOTH_OK && memcmp(G, W, 9 * sizeof(float)) == 0, "index_select columns");

  /* embedding: ids [2, 3] into a [10, 4] table, one kernel */
  fill(X, 40);
  sloth_tensor *table = sloth_from_host(X, SLOTH_F32, 2, (int64_t[]){10, 4});
  int32_t ids[6] = {9, 0, 3, 3, 1, 8};
  sloth_tensor *idt = sloth_from_host(ids, SLOTH_I32, 2, (int64_t[]){2, 3});
  int64_t launches = sloth_counter("kernel_launch");
  sloth_tensor *e = sloth_embedding(table, idt);
  for (int i = 0; i < 6; i++) memcpy(W + i * 4, X + ids[i] * 4, 4 * sizeof(float));
  ok(e && sloth_rank(e) == 3 && sloth_dim(e, 2) == 4, "embedding of [2, 3] ids is [2, 3, 4]");
  ok(fetch(e, G, 24) == SLOTH_OK && memcmp(G, W, 24 * sizeof(float)) == 0, "embedding rows");
  ok(sloth_counter("kernel_launch") - launches == 1, "the lookup is one kernel");

  /* out of range: an error at the read, never a crash; the runtime goes on */
  int32_t bad[6] = {9, 0, 10, 3, -1, 8};
  sloth_tensor *eb = sloth_embedding(table, sloth_from_host(bad, SLOTH_I32, 2, (int64_t[]){2, 3}));
  int rc = fetch(eb, G, 24);
  ok(rc == SLOTH_E_INVALID && strstr(sloth_last_error(), "out of range"), "an out-of-range id fails at the read: %s",
     sloth_last_error());
  sloth_clear_error();
  ok(fetch(e, G, 24) == SLOTH_OK, "the next read succeeds (the error is reported once)");

  /* bad input */
  ok(sloth_gather(x, 3, it) == NULL && sloth_last_status() == SLOTH_E_INVALID, "gather on a bad axis");
  ok(sloth_gather(x, 1, x) == NULL && sloth_last_status() == SLOTH_E_DTYPE, "float indices: %s", sloth_last_error());
  ok(sloth_index_select(m, 0, it) == NULL && sloth_last_status() == SLOTH_E_SHAPE, "index_select with 3-D indices");
  ok(sloth_embedding(x, idt) == NULL && sloth_last_status() == SLOTH_E_SHAPE, "embedding with a 3-D table");
  sloth_clear_error();
  sloth_scope_end();
}

static void concat_tests(void) {
  sloth_scope_begin();
  float a[6] = {1, 2, 3, 4, 5, 6}, b[4] = {7, 8, 9, 10};
  int32_t c[2] = {11, 12};
  sloth_tensor *ta = sloth_from_host(a, SLOTH_F32, 2, (int64_t[]){2, 3});
  sloth_tensor *tb = sloth_from_host(b, SLOTH_F32, 2, (int64_t[]){2, 2});
  sloth_tensor *tc = sloth_from_host(c, SLOTH_I32, 2, (int64_t[]){2, 1});
  sloth_tensor *e = sloth_zeros(SLOTH_F32, 2, (int64_t[]){2, 0});
  sloth_tensor *parts[4] = {ta, e, tb, tc};
  sloth_tensor *cat = sloth_concat(parts, 4, 1);
  float want[12] = {1, 2, 3, 7, 8, 11, 4, 5, 6, 9, 10, 12};
  ok(cat && sloth_dim(cat, 1) == 6 && sloth_dtype_of(cat) == SLOTH_F32, "concat along axis 1 promotes and sizes");
  ok(fetch(cat, G, 12) == SLOTH_OK && memcmp(G, want, sizeof want) == 0, "concat along axis 1 (with an empty piece)");
  sloth_tensor *rows[2] = {ta, sloth_mul_scalar(ta, 10)};
  sloth_tensor *cat0 = sloth_concat(rows, 2, 0);
  float want0[12] = {1, 2, 3, 4, 5, 6, 10, 20, 30, 40, 50, 60};
  ok(fetch(cat0, G, 12) == SLOTH_OK && memcmp(G, want0, sizeof want0) == 0, "concat of a tensor and an expression along axis 0");
  sloth_tensor *st = sloth_stack(rows, 2, 1); /* [2, 2, 3] */
  float wants[12] = {1, 2, 3, 10, 20, 30, 4, 5, 6, 40, 50, 60};
  ok(st && sloth_rank(st) == 3 && sloth_dim(st, 1) == 2 && fetch(st, G, 12) == SLOTH_OK && memcmp(G, wants, sizeof wants) == 0,
     "stack along a new axis 1");
  sloth_tensor *mis[2] = {ta, sloth_zeros(SLOTH_F32, 2, (int64_t[]){3, 3})};
  ok(sloth_concat(mis, 2, 1) == NULL && sloth_last_status() == SLOTH_E_SHAPE, "concat of mismatched shapes: %s", sloth_last_error());
  ok(sloth_stack(mis, 2, 0) == NULL && sloth_last_status() == SLOTH_E_SHAPE, "stack of mismatched shapes");
  ok(sloth_concat(NULL, 0, 0) == NULL, "concat of nothing");
  sloth_clear_error();
  sloth_scope_end();
}

static void scan_scatter_tests(void) {
  sloth_scope_begin();
  fill(X, 60);
  sloth_tensor *x = sloth_from_host(X, SLOTH_F32, 3, (int64_t[]){3, 4, 5});
  for (int axis = 0; axis < 3; axis++) {
    /* reference: cumulative sum of 2*x along the axis */
    int64_t dims[3] = {3, 4, 5}, st[3] = {20, 5, 1};
    for (int i = 0; i < 60; i++) {
      int64_t c = (i / st[axis]) % dims[axis];
      W[i] = 2 * X[i] + (c ? W[i - st[axis]] : 0);
    }
    sloth_tensor *cs = sloth_cumsum(sloth_mul_scalar(x, 2), axis);
    ok(fetch(cs, G, 60) == SLOTH_OK && tap_max_err(G, W, 60, 1e-5, 1e-5) <= 1, "cumsum of 2x along axis %d", axis);
  }
  int32_t iv[5] = {1, 2, 3, 4, 5}, iw[5];
  sloth_tensor *ci = sloth_cumsum(sloth_from_host(iv, SLOTH_I32, 1, (int64_t[]){5}), -1);
  ok(ci && sloth_dtype_of(ci) == SLOTH_I32 && sloth_to_host(ci, iw, sizeof iw) == SLOTH_OK && iw[4] == 15 && iw[2] == 6,
     "cumsum of i32");

  /* scatter_add of rows, repeated indices accumulate (an embedding gradient) */
  float grad[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  int32_t ids[4] = {2, 0, 2, 4};
  sloth_tensor *g = sloth_from_host(grad, SLOTH_F32, 2, (int64_t[]){4, 3});
  sloth_tensor *it = sloth_expand(sloth_from_host(ids, SLOTH_I32, 2, (int64_t[]){4, 1}), 2, (int64_t[]){4, 3});
  sloth_tensor *base = sloth_ones(SLOTH_F32, 2, (int64_t[]){5, 3});
  sloth_tensor *acc = sloth_scatter_add(base, 0, it, g);
  float want[15] = {5, 6, 7, 1, 1, 1, 1 + 1 + 7, 1 + 2 + 8, 1 + 3 + 9, 1, 1, 1, 11, 12, 13};
  ok(fetch(acc, G, 15) == SLOTH_OK && memcmp(G, want, sizeof want) == 0, "scatter_add rows with repeated indices");
  /* along the last axis, integer values */
  int32_t cols[6] = {0, 0, 1, 2, 2, 2}, vals[6] = {1, 2, 3, 4, 5, 6}, got[6];
  sloth_tensor *si = sloth_scatter_add(sloth_zeros(SLOTH_I32, 2, (int64_t[]){2, 3}), 1,
                                       sloth_from_host(cols, SLOTH_I32, 2, (int64_t[]){2, 3}),
                                       sloth_from_host(vals, SLOTH_I32, 2, (int64_t[]){2, 3}));
  int32_t wi[6] = {3, 3, 0, 0, 0, 15};
  ok(si && sloth_to_host(si, got, sizeof got) == SLOTH_OK && memcmp(got, wi, sizeof wi) == 0, "scatter_add of i32 along axis 1");
  int32_t bad[4] = {2, 0, 5, 4};
  sloth_tensor *itb = sloth_expand(sloth_from_host(bad, SLOTH_I32, 2, (int64_t[]){4, 1}), 2, (int64_t[]){4, 3});
  ok(fetch(sloth_scatter_add(base, 0, itb, g), G, 15) == SLOTH_E_INVALID, "an out-of-range scatter index fails at the read: %s",
     sloth_last_error());
  sloth_clear_error();
  ok(sloth_scatter_add(base, 0, g, g) == NULL && sloth_last_status() == SLOTH_E_DTYPE, "float indices for scatter_add");
  ok(sloth_cumsum(x, 3) == NULL && sloth_last_status() == SLOTH_E_INVALID, "cumsum on a bad axis");
  sloth_clear_error();
  sloth_scope_end();
}

/* i64 indices everywhere indices go, and the new value dtypes through the
 * indexing ops (f16, f64, i64 values) */
static void i64_tests(void) {
  sloth_scope_begin();
  fill(X, 60);
  sloth_tensor *x = sloth_from_host(X, SLOTH_F32, 3, (int64_t[]){3, 4, 5});
  int64_t idx[30];
  for (int i = 0; i < 30; i++) idx[i] = (i * 7) % 4;
  sloth_tensor *g = sloth_gather(x, 1, sloth_from_host(idx, SLOTH_I64, 3, (int64_t[]){3, 2, 5}));
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 2; j++)
      for (int k = 0; k < 5; k++) W[(i * 2 + j) * 5 + k] = X[(i * 4 + idx[(i * 2 + j) * 5 + k]) * 5 + k];
  ok(fetch(g, G, 30) == SLOTH_OK && memcmp(G, W, 30 * sizeof(float)) == 0, "gather with i64 indices");
  int64_t rows[4] = {2, 0, 2, 1};
  sloth_tensor *m = sloth_reshape(x, 2, (int64_t[]){3, 20});
  sloth_tensor *r = sloth_index_select(m, 0, sloth_from_host(rows, SLOTH_I64, 1, (int64_t[]){4}));
  for (int i = 0; i < 4; i++) memcpy(W + i * 20, X + rows[i] * 20, 20 * sizeof(float));
  ok(fetch(r, G, 80) == SLOTH_OK && memcmp(G, W, 80 * sizeof(float)) == 0, "index_select with i64 indices");

  /* embedding with i64 ids into f64 and f16 tables */
  static double dt[40], dg[24];
  uint16_t ht[40], hg[24];
  for (int i = 0; i < 40; i++) dt[i] = i * 0.1 + 1e-12 * i, ht[i] = ref_f32_to_f16((float)(i * 0.25));
  int64_t ids[6] = {9, 0, 3, 3, 1, 8};
  sloth_tensor *idt = sloth_from_host(ids, SLOTH_I64, 2, (int64_t[]){2, 3});
  sloth_tensor *ed = sloth_embedding(sloth_from_host(dt, SLOTH_F64, 2, (int64_t[]){10, 4}), idt);
  sloth_tensor *eh = sloth_embedding(sloth_from_host(ht, SLOTH_F16, 2, (int64_t[]){10, 4}), idt);
  int good = ed && eh && sloth_dtype_of(ed) == SLOTH_F64 && sloth_dtype_of(eh) == SLOTH_F16 &&
             sloth_to_host(ed, dg, sizeof dg) == SLOTH_OK && sloth_to_host(eh, hg, sizeof hg) == SLOTH_OK;
  for (int i = 0; good && i < 24; i++) good = dg[i] == dt[ids[i / 4] * 4 + i % 4] && hg[i] == ht[ids[i / 4] * 4 + i % 4];
  ok(good, "embedding with i64 ids of f64 and f16 tables (exact rows)");

  /* an i64 index past 2^32 must not wrap into range: it reads clamped and fails */
  int64_t huge[6] = {9, 0, ((int64_t)1 << 32) + 1, 3, 1, 8};
  sloth_tensor *eb = sloth_embedding(sloth_from_host(X, SLOTH_F32, 2, (int64_t[]){10, 4}),
                                     sloth_from_host(huge, SLOTH_I64, 2, (int64_t[]){2, 3}));
  int rc = fetch(eb, G, 24);
  ok(rc == SLOTH_E_INVALID && strstr(sloth_last_error(), "out of range"), "an i64 id of 2^32 + 1 fails at the read: %s",
     sloth_last_error());
  sloth_clear_error();

  /* scatter_add with i64 indices: f64 values (atomics on doubles), i64
   * values (64-bit atomics), f16 values (accumulated in f32, result f16) */
  int64_t sid[4] = {2, 0, 2, 4};
  sloth_tensor *it = sloth_expand(sloth_from_host(sid, SLOTH_I64, 2, (int64_t[]){4, 1}), 2, (int64_t[]){4, 3});
  double dv[12], dbase[15], dwant[15], dgot[15];
  int64_t lv[12], lbase[15], lwant[15], lgot[15];
  uint16_t hv[12], hbase[15], hgot[15];
  for (int i = 0; i < 12; i++) dv[i] = 0.5 * i + 1e-10, lv[i] = ((int64_t)3 << 32) * (i + 1), hv[i] = ref_f32_to_f16(0.5f * (float)i);
  for (int i = 0; i < 15; i++) dbase[i] = 1, lbase[i] = -1, hbase[i] = ref_f32_to_f16(1);
  for (int i = 0; i < 15; i++) dwant[i] = 1, lwant[i] = -1;
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 3; j++) dwant[sid[i] * 3 + j] += dv[i * 3 + j], lwant[sid[i] * 3 + j] += lv[i * 3 + j];
  sloth_tensor *sd = sloth_scatter_add(sloth_from_host(dbase, SLOTH_F64, 2, (int64_t[]){5, 3}), 0, it,
                                       sloth_from_host(dv, SLOTH_F64, 2, (int64_t[]){4, 3}));
  sloth_tensor *sl = sloth_scatter_add(sloth_from_host(lbase, SLOTH_I64, 2, (int64_t[]){5, 3}), 0, it,
                                       sloth_from_host(lv, SLOTH_I64, 2, (int64_t[]){4, 3}));
  sloth_tensor *sh = sloth_scatter_add(sloth_from_host(hbase, SLOTH_F16, 2, (int64_t[]){5, 3}), 0, it,
                                       sloth_from_host(hv, SLOTH_F16, 2, (int64_t[]){4, 3}));
  good = sd && sl && sh && sloth_dtype_of(sd) == SLOTH_F64 && sloth_dtype_of(sl) == SLOTH_I64 && sloth_dtype_of(sh) == SLOTH_F16 &&
         sloth_to_host(sd, dgot, sizeof dgot) == SLOTH_OK && sloth_to_host(sl, lgot, sizeof lgot) == SLOTH_OK &&
         sloth_to_host(sh, hgot, sizeof hgot) == SLOTH_OK;
  for (int i = 0; good && i < 15; i++)
    good = fabs(dgot[i] - dwant[i]) <= 1e-14 * fabs(dwant[i]) && lgot[i] == lwant[i] && hgot[i] == ref_f32_to_f16((float)(dwant[i] - 1e-10 * (dwant[i] != 1)));
  ok(good, "scatter_add with i64 indices of f64, i64 (past 2^32) and f16 values %s", good ? "" : sloth_last_error());

  /* cumsum: i64 stays i64 (past 2^32), f16 sums in f32 and gives f16, f64 in double */
  int64_t cl[5] = {(int64_t)3 << 31, (int64_t)3 << 31, 5, -7, (int64_t)1 << 40}, cw[5], cg[5];
  for (int i = 0; i < 5; i++) cw[i] = cl[i] + (i ? cw[i - 1] : 0);
  sloth_tensor *cs = sloth_cumsum(sloth_from_host(cl, SLOTH_I64, 1, (int64_t[]){5}), 0);
  ok(cs && sloth_dtype_of(cs) == SLOTH_I64 && sloth_to_host(cs, cg, sizeof cg) == SLOTH_OK && memcmp(cg, cw, sizeof cw) == 0,
     "cumsum of i64 past 2^32");
  static uint16_t h1[2000], hc[2000];
  for (int i = 0; i < 2000; i++) h1[i] = ref_f32_to_f16(0.1f);
  sloth_tensor *ch = sloth_cumsum(sloth_from_host(h1, SLOTH_F16, 1, (int64_t[]){2000}), 0);
  double step = ref_f16_to_double(h1[0]);
  good = ch && sloth_dtype_of(ch) == SLOTH_F16 && sloth_to_host(ch, hc, sizeof hc) == SLOTH_OK;
  for (int i = 0; good && i < 2000; i += 111) good = fabs(ref_f16_to_double(hc[i]) - step * (i + 1)) <= 1e-3 * step * (i + 1);
  ok(good, "cumsum of 2000 f16 values accumulates in f32 (the f16 prefix sums are within 1e-3)");

  /* one_hot and cross_entropy with i64 labels */
  int64_t labels[3] = {1, 0, 3};
  sloth_tensor *lt = sloth_from_host(labels, SLOTH_I64, 1, (int64_t[]){3});
  sloth_tensor *oh = sloth_one_hot(lt, 4, SLOTH_F32);
  float ohw[12] = {0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1};
  ok(fetch(oh, G, 12) == SLOTH_OK && memcmp(G, ohw, sizeof ohw) == 0, "one_hot of i64 labels");
  float logits[12] = {0.5f, 1, -1, 2, 0, 0, 0, 0, 3, -2, 1, 0.25f}, loss = 0;
  double want_loss = 0;
  for (int n = 0; n < 3; n++) {
    double mx = -1e30, se = 0;
    for (int c = 0; c < 4; c++) mx = fmax(mx, logits[n * 4 + c]);
    for (int c = 0; c < 4; c++) se += exp(logits[n * 4 + c] - mx);
    want_loss += -(logits[n * 4 + labels[n]] - mx - log(se)) / 3;
  }
  sloth_tensor *ce = sloth_cross_entropy(sloth_from_host(logits, SLOTH_F32, 2, (int64_t[]){3, 4}), lt);
  ok(ce && sloth_to_host(ce, &loss, sizeof loss) == SLOTH_OK && fabs(loss - want_loss) < 1e-5, "cross_entropy with i64 labels");

  /* concat promotes through the new dtypes: f16 with i64 gives f16, with f64 f64 */
  uint16_t hh[2] = {ref_f32_to_f16(1.5f), ref_f32_to_f16(-2)};
  int64_t ll[2] = {7, -9};
  sloth_tensor *th = sloth_from_host(hh, SLOTH_F16, 1, (int64_t[]){2}), *tl = sloth_from_host(ll, SLOTH_I64, 1, (int64_t[]){2});
  sloth_tensor *c1 = sloth_concat((sloth_tensor *[]){th, tl}, 2, 0), *c2 = sloth_concat((sloth_tensor *[]){tl, sloth_cast(th, SLOTH_F64)}, 2, 0);
  uint16_t c1g[4];
  double c2g[4];
  good = c1 && c2 && sloth_dtype_of(c1) == SLOTH_F16 && sloth_dtype_of(c2) == SLOTH_F64 && sloth_to_host(c1, c1g, sizeof c1g) == SLOTH_OK &&
         sloth_to_host(c2, c2g, sizeof c2g) == SLOTH_OK && ref_f16_to_double(c1g[0]) == 1.5 && ref_f16_to_double(c1g[3]) == -9 &&
         c2g[0] == 7 && c2g[3] == -2;
  ok(good, "concat of f16 and i64 gives f16, of i64 and f64 gives f64");
  sloth_scope_end();
}

int main(void) {
  if (sloth_init(NULL) != SLOTH_OK) skip_all(sloth_last_error());
  i64_tests();
  gather_tests();
  concat_tests();
  scan_scatter_tests();
  return tap_done();
}
