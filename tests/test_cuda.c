/* test_cuda.c - the CUDA backend on a real device: a few ops on
 * SLOTH_DEVICE=cuda compared with the host. Skipped (not failed) where there
 * is no CUDA device, with the backend's reason. The whole op suite runs on
 * CUDA too with SLOTH_DEVICE=cuda make check. */
#include <sloth.h>

#include "tap.h"

#include <stdlib.h>
#include <string.h>

static int64_t ctr(const char *name) { return sloth_counter(name); }

static void test_device(void) {
  sloth_device_info d;
  ok(sloth_device_current(&d) == SLOTH_OK, "the current device is known");
  ok(strcmp(d.backend, "cuda") == 0 && d.is_gpu && d.fp64, "it is a CUDA GPU: %s:%d %s (%s)", d.backend, d.index, d.name,
     d.version);
  ok(d.compute_units > 0 && d.global_mem_bytes > 0 && d.max_alloc_bytes > 0, "it has %d SMs and %.1f GiB",
     d.compute_units, d.global_mem_bytes / 1073741824.0);
  ok(sloth_backend_status("cuda")[0] == '\0', "the backend reports no problem");
  ok(sloth_init("cuda:999") != SLOTH_OK, "a missing CUDA device index fails: %s", sloth_last_error());
  sloth_clear_error();
}

/* y = tanh(x * a + b) - exp(-|x|) with a broadcast row b, on n x 64 */
static void test_elementwise(int64_t n) {
  int64_t cols = 64, total = n * cols;
  float *x = malloc((size_t)total * 4), *a = malloc((size_t)total * 4), *b = malloc(64 * 4);
  float *got = malloc((size_t)total * 4), *want = malloc((size_t)total * 4);
  for (int64_t i = 0; i < total; i++) x[i] = (float)(i % 1000) / 250.0f - 2.0f, a[i] = (float)(i % 7) * 0.3f - 1.0f;
  for (int j = 0; j < 64; j++) b[j] = (float)j / 32.0f - 1.0f;
  for (int64_t i = 0; i < total; i++) want[i] = tanhf(x[i] * a[i] + b[i % cols]) - expf(-fabsf(x[i]));
  sloth_scope_begin();
  sloth_tensor *tx = sloth_from_host(x, SLOTH_F32, 2, (int64_t[]){n, cols});
  sloth_tensor *ta = sloth_from_host(a, SLOTH_F32, 2, (int64_t[]){n, cols});
  sloth_tensor *tb = sloth_from_host(b, SLOTH_F32, 1, &cols);
  sloth_tensor *y = sloth_sub(sloth_tanh(sloth_add(sloth_mul(tx, ta), tb)), sloth_exp(sloth_neg(sloth_abs(tx))));
  int rc = sloth_to_host(y, got, (size_t)total * 4);
  ok(rc == SLOTH_OK, "elementwise chain on %lld elements runs%s%s", (long long)total, rc ? ": " : "",
     rc ? sloth_last_error() : "");
  ok(tap_max_err(got, want, total, 1e-5, 1e-5) <= 1, "elementwise chain matches the host (%lld elements)",
     (long long)total);
  sloth_scope_end();
  free(x), free(a), free(b), free(got), free(want);
}

static void test_int_and_bool(void) {
  int32_t xi[12], yi[12], gi[12];
  uint8_t gb[12];
  for (int i = 0; i < 12; i++) xi[i] = i * 37 % 19 - 9, yi[i] = i % 5 - 2;
  sloth_scope_begin();
  sloth_tensor *x = sloth_from_host(xi, SLOTH_I32, 2, (int64_t[]){3, 4});
  sloth_tensor *y = sloth_from_host(yi, SLOTH_I32, 2, (int64_t[]){3, 4});
  sloth_tensor *s = sloth_add(sloth_mul(x, y), sloth_abs(x));
  sloth_tensor *c = sloth_logical_and(sloth_gt(x, y), sloth_ne(y, sloth_zeros(SLOTH_I32, 0, NULL)));
  ok(sloth_to_host(s, gi, sizeof gi) == SLOTH_OK && sloth_to_host(c, gb, sizeof gb) == SLOTH_OK, "int and bool ops run");
  int good = 1;
  for (int i = 0; i < 12; i++) {
    good &= gi[i] == xi[i] * yi[i] + abs(xi[i]);
    good &= gb[i] == (xi[i] > yi[i] && yi[i] != 0);
  }
  ok(good, "int arithmetic and comparisons match the host");
  sloth_scope_end();
}

static void test_reductions(void) {
  enum { R = 37, C = 1000 };
  float *x = malloc(R * C * 4);
  uint8_t *u = malloc(R * C);
  for (int i = 0; i < R * C; i++) x[i] = (float)((i * 7919) % 2003) / 1000.0f - 1.0f, u[i] = (uint8_t)(i * 31 % 251);
  float rows[R], cols[C], want_rows[R], want_cols[C], mean, want_mean = 0;
  int32_t amax[R], want_amax[R], amin_u8[C], want_amin_u8[C];
  for (int r = 0; r < R; r++) {
    double s = 0;
    int best = 0;
    for (int c = 0; c < C; c++) {
      s += x[r * C + c];
      if (x[r * C + c] > x[r * C + best]) best = c;
    }
    want_rows[r] = (float)s;
    want_amax[r] = best;
    want_mean += (float)s;
  }
  want_mean /= R * C;
  for (int c = 0; c < C; c++) {
    float m = x[c];
    int best = 0;
    for (int r = 0; r < R; r++) {
      if (x[r * C + c] > m) m = x[r * C + c];
      if (u[r * C + c] < u[best * C + c]) best = r;
    }
    want_cols[c] = m;
    want_amin_u8[c] = best;
  }
  sloth_scope_begin();
  sloth_tensor *t = sloth_from_host(x, SLOTH_F32, 2, (int64_t[]){R, C});
  sloth_tensor *tu = sloth_from_host(u, SLOTH_U8, 2, (int64_t[]){R, C});
  int rc = sloth_to_host(sloth_sum(t, (int[]){1}, 1, 0), rows, sizeof rows);
  rc |= sloth_to_host(sloth_max(t, (int[]){0}, 1, 0), cols, sizeof cols);
  rc |= sloth_to_host(sloth_mean(t, NULL, 0, 0), &mean, sizeof mean);
  rc |= sloth_to_host(sloth_argmax(t, 1, 0), amax, sizeof amax);
  rc |= sloth_to_host(sloth_argmin(tu, 0, 0), amin_u8, sizeof amin_u8);
  ok(rc == SLOTH_OK, "reductions run%s%s", rc ? ": " : "", rc ? sloth_last_error() : "");
  ok(tap_max_err(rows, want_rows, R, 1e-4, 1e-4) <= 1, "sum over the last axis matches the host");
  ok(memcmp(cols, want_cols, sizeof cols) == 0, "max over the first axis matches the host exactly");
  ok(fabsf(mean - want_mean) <= 1e-5f + 1e-4f * fabsf(want_mean), "mean of all = %g, want %g", mean, want_mean);
  ok(memcmp(amax, want_amax, sizeof amax) == 0, "argmax (f32, last axis) matches the host");
  ok(memcmp(amin_u8, want_amin_u8, sizeof amin_u8) == 0, "argmin (u8, first axis: shared memory alignment) matches the host");
  sloth_scope_end();
  free(x), free(u);
}

static void test_views(void) {
  float x[24], got[24], want[24];
  for (int i = 0; i < 24; i++) x[i] = (float)i;
  sloth_scope_begin();
  sloth_tensor *t = sloth_from_host(x, SLOTH_F32, 3, (int64_t[]){2, 3, 4});
  /* permute to (4, 2, 3), then reverse the first axis */
  sloth_tensor *v = sloth_slice(sloth_permute(t, (int[]){2, 0, 1}), 0, -1, -5, -1);
  ok(sloth_to_host(sloth_add_scalar(v, 0.5), got, sizeof got) == SLOTH_OK, "permute + negative slice runs");
  for (int k = 0; k < 4; k++)
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 3; j++) want[(k * 2 + i) * 3 + j] = x[(i * 3 + j) * 4 + (3 - k)] + 0.5f;
  ok(memcmp(got, want, sizeof got) == 0, "views match the host exactly");
  sloth_scope_end();
}

/* want[b] = A[b] (m x k) @ B[b] (k x n), from strided host arrays */
static void host_matmul(const float *a, int64_t as0, int64_t as1, int64_t as2, const float *b, int64_t bs0, int64_t bs1,
                        int64_t bs2, int batch, int m, int k, int n, float *want) {
  for (int z = 0; z < batch; z++)
    for (int i = 0; i < m; i++)
      for (int j = 0; j < n; j++) {
        double s = 0;
        for (int l = 0; l < k; l++) s += (double)a[z * as0 + i * as1 + l * as2] * b[z * bs0 + l * bs1 + j * bs2];
        want[(z * m + i) * n + j] = (float)s;
      }
}

static void test_matmul(void) {
  enum { M = 33, K = 70, N = 45, B = 3 };
  float *a = malloc(B * M * K * 4), *b = malloc(B * K * N * 4), *got = malloc(B * M * N * 4), *want = malloc(B * M * N * 4);
  for (int i = 0; i < B * M * K; i++) a[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
  for (int i = 0; i < B * K * N; i++) b[i] = (float)((i * 53) % 97) / 48.0f - 1.0f;
  sloth_scope_begin();
  sloth_tensor *ta = sloth_from_host(a, SLOTH_F32, 3, (int64_t[]){B, M, K});
  sloth_tensor *tb = sloth_from_host(b, SLOTH_F32, 3, (int64_t[]){B, K, N});
  sloth_tensor *a0 = sloth_slice(ta, 0, 0, 1, 1), *b0 = sloth_slice(tb, 0, 0, 1, 1);
  a0 = sloth_reshape(a0, 2, (int64_t[]){M, K});
  b0 = sloth_reshape(b0, 2, (int64_t[]){K, N});

  /* one product */
  int rc = sloth_to_host(sloth_matmul(a0, b0), got, M * N * 4);
  host_matmul(a, 0, K, 1, b, 0, N, 1, 1, M, K, N, want);
  ok(rc == SLOTH_OK && tap_max_err(got, want, M * N, 1e-4, 1e-4) <= 1, "matmul [%d,%d] @ [%d,%d] matches the host%s%s", M,
     K, K, N, rc ? ": " : "", rc ? sloth_last_error() : "");

  /* transposed operands are read in place: (B0^T)^T @ (A0^T)^T ... as a^T b^T */
  sloth_tensor *at = sloth_transpose(sloth_reshape(sloth_slice(ta, 0, 0, 1, 1), 2, (int64_t[]){K, M}), 0, 1);
  rc = sloth_to_host(sloth_matmul(at, sloth_transpose(sloth_reshape(sloth_slice(tb, 0, 0, 1, 1), 2, (int64_t[]){N, K}), 0, 1)),
                     got, M * N * 4);
  host_matmul(a, 0, 1, M, b, 0, 1, K, 1, M, K, N, want); /* a read as [K, M], b as [N, K] */
  ok(rc == SLOTH_OK && tap_max_err(got, want, M * N, 1e-4, 1e-4) <= 1, "matmul of transposed views matches the host%s%s",
     rc ? ": " : "", rc ? sloth_last_error() : "");

  /* batched, evenly spaced */
  rc = sloth_to_host(sloth_matmul(ta, tb), got, B * M * N * 4);
  host_matmul(a, M * K, K, 1, b, K * N, N, 1, B, M, K, N, want);
  ok(rc == SLOTH_OK && tap_max_err(got, want, B * M * N, 1e-4, 1e-4) <= 1, "batched matmul matches the host%s%s",
     rc ? ": " : "", rc ? sloth_last_error() : "");

  /* batched against one broadcast matrix */
  rc = sloth_to_host(sloth_matmul(ta, b0), got, B * M * N * 4);
  host_matmul(a, M * K, K, 1, b, 0, N, 1, B, M, K, N, want);
  ok(rc == SLOTH_OK && tap_max_err(got, want, B * M * N, 1e-4, 1e-4) <= 1, "batched @ broadcast matmul matches the host%s%s",
     rc ? ": " : "", rc ? sloth_last_error() : "");

  /* batches in reverse order (a negative batch stride) */
  rc = sloth_to_host(sloth_matmul(sloth_slice(ta, 0, -1, -B - 1, -1), tb), got, B * M * N * 4);
  host_matmul(a + (B - 1) * M * K, -M * K, K, 1, b, K * N, N, 1, B, M, K, N, want);
  ok(rc == SLOTH_OK && tap_max_err(got, want, B * M * N, 1e-4, 1e-4) <= 1, "matmul of reversed batches matches the host%s%s",
     rc ? ": " : "", rc ? sloth_last_error() : "");

  /* an empty sum (k = 0) gives zeros */
  sloth_tensor *e = sloth_matmul(sloth_zeros(SLOTH_F32, 2, (int64_t[]){M, 0}), sloth_zeros(SLOTH_F32, 2, (int64_t[]){0, N}));
  for (int i = 0; i < M * N; i++) got[i] = 1;
  rc = sloth_to_host(e, got, M * N * 4);
  int zeros = rc == SLOTH_OK;
  for (int i = 0; i < M * N; i++) zeros &= got[i] == 0;
  ok(zeros, "matmul with k = 0 gives zeros%s%s", rc ? ": " : "", rc ? sloth_last_error() : "");
  sloth_scope_end();
  free(a), free(b), free(got), free(want);
}

static void test_scalars_compile_once(void) {
  float x[256], got[256];
  for (int i = 0; i < 256; i++) x[i] = (float)i;
  sloth_scope_begin();
  sloth_tensor *t = sloth_from_host(x, SLOTH_F32, 1, (int64_t[]){256});
  int good = 1;
  int64_t compiles = 0;
  for (int step = 0; step < 4; step++) {
    if (step == 1) compiles = ctr("kernel_compile");
    sloth_tensor *y = sloth_mul_scalar(sloth_add_scalar(t, step), 0.5 * step);
    good &= sloth_to_host(y, got, sizeof got) == SLOTH_OK;
    for (int i = 0; i < 256; i++) good &= got[i] == (x[i] + step) * (float)(0.5 * step);
  }
  ok(good, "scalar kernel arguments give the right values");
  ok(ctr("kernel_compile") == compiles, "new scalar values compile nothing");
  ok(sloth_wait() == SLOTH_OK, "sloth_wait");
  sloth_scope_end();
}

int main(void) {
  const char *why = sloth_backend_status("cuda");
  if (why && *why) {
    char msg[600];
    snprintf(msg, sizeof msg, "no CUDA device: %s", why);
    skip_all(msg);
  }
  int rc = sloth_init("cuda");
  ok(rc == SLOTH_OK, "sloth_init(\"cuda\")%s%s", rc ? ": " : "", rc ? sloth_last_error() : "");
  if (rc != SLOTH_OK) return tap_done();
  test_device();
  test_elementwise(3);
  test_elementwise(20000); /* 1.28M elements: many blocks */
  test_int_and_bool();
  test_reductions();
  test_views();
  test_matmul();
  test_scalars_compile_once();
  sloth_shutdown();
  ok(sloth_init("cuda:0") == SLOTH_OK, "the device opens again after shutdown");
  test_elementwise(5);
  sloth_shutdown();
  return tap_done();
}
