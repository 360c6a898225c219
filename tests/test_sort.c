/* test_sort.c - argsort, sort and topk against a reference sort of each
 * line (the same total order: by value, NaN after every number, ties by
 * position), over dtypes, axes and directions; bad input gives an error. */
#include <sloth.h>

#include "ref.h" /* f16 conversions */
#include "tap.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* the line being sorted by the reference, and the direction */
static const double *key_line;
static bool key_desc;

static int before(const void *pa, const void *pb) {
  int p = *(const int *)pa, q = *(const int *)pb;
  double a = key_line[p], b = key_line[q];
  if (isnan(a) != isnan(b)) return (isnan(a) ? 1 : -1) * (key_desc ? -1 : 1);
  if (!isnan(a) && a != b) return (a < b ? -1 : 1) * (key_desc ? -1 : 1);
  return p < q ? -1 : p > q;
}

/* positions that sort each line of x [outer, len, inner] along the middle */
static void ref_argsort(const double *x, int64_t outer, int64_t len, int64_t inner, bool desc, int32_t *pos) {
  double *line = malloc((size_t)len * sizeof *line);
  int *p = malloc((size_t)len * sizeof *p);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      for (int64_t j = 0; j < len; j++) line[j] = x[(o * len + j) * inner + i], p[j] = (int)j;
      key_line = line;
      key_desc = desc;
      qsort(p, (size_t)len, sizeof *p, before);
      for (int64_t j = 0; j < len; j++) pos[(o * len + j) * inner + i] = p[j];
    }
  free(line), free(p);
}

/* Values with ties (rounded to a grid) and, for floats, a few NaN. */
static void fill(double *v, int64_t n, sloth_dtype dt, unsigned seed) {
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    double r = (double)((seed >> 8) % 41) - 20.0; /* many ties */
    if (dt == SLOTH_F32 || dt == SLOTH_F64 || dt == SLOTH_F16) r /= 4;
    if (dt == SLOTH_U8 || dt == SLOTH_BOOL) r = dt == SLOTH_BOOL ? (r > 0) : r + 20;
    if ((dt == SLOTH_F32 || dt == SLOTH_F64) && (seed >> 20) % 17 == 0) r = NAN;
    v[i] = r;
  }
}

static void to_dtype(const double *v, int64_t n, sloth_dtype dt, void *out) {
  for (int64_t i = 0; i < n; i++) switch (dt) {
    case SLOTH_F32: ((float *)out)[i] = (float)v[i]; break;
    case SLOTH_F64: ((double *)out)[i] = v[i]; break;
    case SLOTH_F16: ((uint16_t *)out)[i] = ref_f32_to_f16((float)v[i]); break;
    case SLOTH_I32: ((int32_t *)out)[i] = (int32_t)v[i]; break;
    case SLOTH_I64: ((int64_t *)out)[i] = (int64_t)v[i] * 1000000007LL; break; /* past 32 bits */
    case SLOTH_U8: case SLOTH_BOOL: ((uint8_t *)out)[i] = (uint8_t)v[i]; break;
    default: break;
    }
}

static void sort_case(sloth_dtype dt, int rank, const int64_t *shape, int axis, bool desc) {
  int64_t n = 1, outer = 1, inner = 1;
  for (int d = 0; d < rank; d++) {
    n *= shape[d];
    if (d < axis) outer *= shape[d];
    if (d > axis) inner *= shape[d];
  }
  int64_t len = shape[axis];
  double *v = malloc((size_t)n * sizeof *v);
  void *host = malloc((size_t)n * 8);
  int32_t *want = malloc((size_t)n * sizeof *want), *got = malloc((size_t)n * sizeof *got);
  fill(v, n, dt, (unsigned)(n * 31 + axis * 7 + desc));
  to_dtype(v, n, dt, host);
  /* the reference sorts what the device holds (f16-rounded, i64-scaled) */
  for (int64_t i = 0; i < n; i++) {
    if (dt == SLOTH_F16) v[i] = ref_f16_to_double(((uint16_t *)host)[i]);
    if (dt == SLOTH_I64) v[i] = (double)((int64_t *)host)[i];
  }
  ref_argsort(v, outer, len, inner, desc, want);
  sloth_scope_begin();
  sloth_tensor *x = sloth_from_host(host, dt, rank, shape);
  sloth_tensor *idx = NULL;
  sloth_tensor *s = sloth_sort(x, axis, desc, &idx);
  bool fine = s && idx && sloth_dtype_of(idx) == SLOTH_I32 && sloth_dtype_of(s) == dt &&
              sloth_to_host(idx, got, (size_t)n * sizeof *got) == SLOTH_OK && memcmp(got, want, (size_t)n * sizeof *got) == 0;
  /* the values are x at the positions */
  void *vals = malloc((size_t)n * 8);
  size_t es = sloth_dtype_size(dt);
  fine = fine && sloth_to_host(s, vals, (size_t)n * es) == SLOTH_OK;
  for (int64_t o = 0; o < outer && fine; o++)
    for (int64_t j = 0; j < len && fine; j++)
      for (int64_t i = 0; i < inner && fine; i++) {
        int64_t at = (o * len + j) * inner + i, from = (o * len + want[at]) * inner + i;
        fine = memcmp((char *)vals + at * es, (char *)host + from * es, es) == 0;
      }
  char dims[64] = "";
  for (int d = 0; d < rank; d++) snprintf(dims + strlen(dims), sizeof dims - strlen(dims), d ? ",%lld" : "%lld", (long long)shape[d]);
  ok(fine, "sort %s [%s] axis %d %s: positions and values", sloth_dtype_name(dt), dims, axis, desc ? "descending" : "ascending");
  sloth_scope_end();
  free(v), free(host), free(want), free(got), free(vals);
}

static void topk_case(int64_t rows, int64_t len, int64_t k, bool largest) {
  double *v = malloc((size_t)(rows * len) * sizeof *v);
  float *host = malloc((size_t)(rows * len) * sizeof *host), *got = malloc((size_t)(rows * (k ? k : 1)) * sizeof *got);
  int32_t *want = malloc((size_t)(rows * len) * sizeof *want), *gi = malloc((size_t)(rows * (k ? k : 1)) * sizeof *gi);
  fill(v, rows * len, SLOTH_F32, (unsigned)(rows + len + k));
  to_dtype(v, rows * len, SLOTH_F32, host);
  ref_argsort(v, rows, len, 1, largest, want);
  sloth_scope_begin();
  sloth_tensor *idx = NULL;
  sloth_tensor *t = sloth_topk(sloth_from_host(host, SLOTH_F32, 2, (int64_t[]){rows, len}), k, -1, largest, &idx);
  bool fine = t && idx && sloth_rank(t) == 2 && sloth_dim(t, 1) == k && sloth_dim(idx, 1) == k;
  if (fine && k > 0)
    fine = sloth_to_host(t, got, (size_t)(rows * k) * sizeof *got) == SLOTH_OK &&
           sloth_to_host(idx, gi, (size_t)(rows * k) * sizeof *gi) == SLOTH_OK;
  for (int64_t r = 0; r < rows && fine; r++)
    for (int64_t j = 0; j < k && fine; j++) {
      int32_t p = want[r * len + j];
      float w = host[r * len + p], g = got[r * k + j];
      fine = gi[r * k + j] == p && (g == w || (isnan(g) && isnan(w)));
    }
  ok(fine, "topk %lld of [%lld, %lld] %s", (long long)k, (long long)rows, (long long)len, largest ? "largest" : "smallest");
  sloth_scope_end();
  free(v), free(host), free(got), free(want), free(gi);
}

static void bad_input(void) {
  sloth_scope_begin();
  sloth_tensor *x = sloth_zeros(SLOTH_F32, 2, (int64_t[]){3, 4});
  sloth_tensor *idx = (sloth_tensor *)1;
  ok(sloth_topk(x, 5, 1, 1, &idx) == NULL && sloth_last_status() == SLOTH_E_INVALID && idx == NULL,
     "topk 5 of 4: %s (indices set to NULL)", sloth_last_error());
  ok(sloth_topk(x, -1, 1, 1, NULL) == NULL && sloth_last_status() == SLOTH_E_INVALID, "topk -1: %s", sloth_last_error());
  ok(sloth_sort(x, 2, 0, NULL) == NULL && sloth_last_status() == SLOTH_E_INVALID, "sort along axis 2 of rank 2: %s",
     sloth_last_error());
  sloth_clear_error();
  ok(sloth_argsort(NULL, 0, 0) == NULL && sloth_last_status() == SLOTH_E_INVALID, "argsort of NULL: %s", sloth_last_error());
  ok(sloth_argsort(sloth_scalar(1, SLOTH_F32), 0, 0) == NULL, "argsort of a rank-0 tensor: %s", sloth_last_error());
  sloth_clear_error();
  /* the runtime works afterwards; empty lines and k = 0 are fine */
  float out[4];
  sloth_tensor *s = sloth_sort(sloth_arange(4, 0, -1, SLOTH_F32), 0, 0, NULL);
  ok(s && sloth_to_host(s, out, sizeof out) == SLOTH_OK && out[0] == 1 && out[3] == 4, "sort [4 3 2 1] after errors");
  sloth_tensor *e = sloth_sort(sloth_zeros(SLOTH_F32, 2, (int64_t[]){3, 0}), 1, 0, NULL);
  ok(e && sloth_numel(e) == 0 && sloth_wait() == SLOTH_OK, "sorting empty lines");
  sloth_scope_end();
}

int main(void) {
  if (sloth_init(NULL) != SLOTH_OK) skip_all(sloth_last_error());
  const sloth_dtype dts[] = {SLOTH_F32, SLOTH_I32, SLOTH_F16, SLOTH_I64, SLOTH_U8, SLOTH_BOOL};
  for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++) {
    sort_case(dts[i], 2, (int64_t[]){7, 13}, 1, false);
    sort_case(dts[i], 2, (int64_t[]){7, 13}, 1, true);
  }
  sloth_device_info info;
  if (sloth_device_current(&info) == SLOTH_OK && info.fp64) sort_case(SLOTH_F64, 2, (int64_t[]){5, 9}, 0, true);
  sort_case(SLOTH_F32, 3, (int64_t[]){4, 6, 5}, 1, false); /* a middle axis: strided lines */
  sort_case(SLOTH_F32, 3, (int64_t[]){4, 6, 5}, 0, true);
  sort_case(SLOTH_F32, 1, (int64_t[]){1}, 0, false);
  sort_case(SLOTH_F32, 1, (int64_t[]){1000}, 0, false); /* a long line */
  sort_case(SLOTH_F32, 2, (int64_t[]){3000, 2}, 1, true); /* many short lines */
  topk_case(5, 20, 3, true);
  topk_case(5, 20, 3, false);
  topk_case(2, 7, 7, true);
  topk_case(4, 9, 0, true);
  topk_case(64, 10, 1, true); /* the top-1 of a classifier's batch */
  bad_input();
  return tap_done();
}
