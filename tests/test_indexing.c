/* test_indexing.c - gather, index_select, embedding, concat and stack against
 * direct loops; out-of-range indices give an error, never a bad read. */
#include <sloth.h>

#include "tap.h"

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

int main(void) {
  if (sloth_init(NULL) != SLOTH_OK) skip_all(sloth_last_error());
  gather_tests();
  concat_tests();
  scan_scatter_tests();
  return tap_done();
}
