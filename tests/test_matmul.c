/* test_matmul.c - sloth_matmul (GEMM through CLBlast) against a naive loop:
 * awkward sizes, transposed and sliced operands read in place, broadcast
 * batch dimensions, 1-D operands, fused epilogues, bad input. */
#include <sloth.h>

#include "tap.h"

#include <string.h>

static unsigned rng = 12345;
static float frand(void) {
  rng = rng * 1103515245u + 12345u;
  return (float)((rng >> 9) & 0xffff) / 65536.0f - 0.5f;
}

/* Host matrix with explicit strides, so the reference reads views exactly as
 * the runtime should. */
typedef struct mat {
  const float *p;
  int64_t rs, cs, bs; /* row, column and batch strides, in elements */
} mat;

static void ref_gemm(mat a, mat b, float *c, int64_t batch, int64_t M, int64_t K, int64_t N) {
  for (int64_t z = 0; z < batch; z++)
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double acc = 0;
        for (int64_t k = 0; k < K; k++) acc += (double)a.p[z * a.bs + i * a.rs + k * a.cs] * b.p[z * b.bs + k * b.rs + j * b.cs];
        c[(z * M + i) * N + j] = (float)acc;
      }
}

static sloth_tensor *upload(float *buf, int rank, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= shape[i];
  for (int64_t i = 0; i < n; i++) buf[i] = frand();
  return sloth_from_host(buf, SLOTH_F32, rank, shape);
}

static int check(sloth_tensor *t, const float *want, int64_t n, const char *what) {
  static float got[1 << 18];
  if (!t) return ok(0, "%s: %s", what, sloth_last_error());
  if (sloth_to_host(t, got, (size_t)n * sizeof(float)) != SLOTH_OK) return ok(0, "%s: %s", what, sloth_last_error());
  double e = tap_max_err(got, want, n, 1e-4, 1e-4);
  return ok(e <= 1, "%s (normalized error %.3g)", what, e);
}

static float A[1 << 16], B[1 << 16], C[1 << 18];

static void plain_sizes(void) {
  static const int64_t sizes[][3] = {{1, 1, 1}, {7, 3, 5}, {33, 17, 65}, {64, 64, 64}, {1, 100, 1}, {100, 1, 100}};
  for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
    int64_t M = sizes[t][0], K = sizes[t][1], N = sizes[t][2];
    sloth_scope_begin();
    sloth_tensor *a = upload(A, 2, (int64_t[]){M, K}), *b = upload(B, 2, (int64_t[]){K, N});
    ref_gemm((mat){A, K, 1, 0}, (mat){B, N, 1, 0}, C, 1, M, K, N);
    int64_t calls = sloth_counter("gemm_call");
    check(sloth_matmul(a, b), C, M * N, "matmul");
    diag("%lldx%lldx%lld", (long long)M, (long long)K, (long long)N);
    ok(sloth_counter("gemm_call") - calls == 1, "one GEMM call");
    sloth_scope_end();
  }
}

static void views_in_place(void) {
  int64_t M = 33, K = 17, N = 65;
  sloth_scope_begin();
  /* A stored as [K, M] and transposed; B stored as [N, K] and transposed */
  sloth_tensor *at = upload(A, 2, (int64_t[]){K, M}), *bt = upload(B, 2, (int64_t[]){N, K});
  int64_t launches = sloth_counter("kernel_launch");
  ref_gemm((mat){A, 1, M, 0}, (mat){B, 1, K, 0}, C, 1, M, K, N);
  check(sloth_matmul(sloth_transpose(at, 0, 1), sloth_transpose(bt, 0, 1)), C, M * N, "A^T B^T read in place");
  ok(sloth_counter("kernel_launch") == launches, "transposed operands need no copy kernel");
  sloth_scope_end();

  /* column slice of a wider matrix and every other row */
  sloth_scope_begin();
  int64_t W = 40;
  sloth_tensor *wide = upload(A, 2, (int64_t[]){2 * M, W}), *b = upload(B, 2, (int64_t[]){K, N});
  sloth_tensor *a = sloth_slice(sloth_slice(wide, 1, 5, 5 + K, 1), 0, 0, 2 * M, 2);
  launches = sloth_counter("kernel_launch");
  ref_gemm((mat){A + 5, 2 * W, 1, 0}, (mat){B, N, 1, 0}, C, 1, M, K, N);
  check(sloth_matmul(a, b), C, M * N, "sliced operand (rows step 2, column window) read in place");
  ok(sloth_counter("kernel_launch") == launches, "sliced operands need no copy kernel");
  sloth_scope_end();

  /* an operand that is an expression: materialized first, then the GEMM */
  sloth_scope_begin();
  a = upload(A, 2, (int64_t[]){M, K});
  b = upload(B, 2, (int64_t[]){K, N});
  static float ea[1 << 16];
  for (int64_t i = 0; i < M * K; i++) ea[i] = expf(A[i]);
  ref_gemm((mat){ea, K, 1, 0}, (mat){B, N, 1, 0}, C, 1, M, K, N);
  check(sloth_matmul(sloth_exp(a), b), C, M * N, "matmul(exp(A), B)");
  sloth_scope_end();
}

static void batches(void) {
  int64_t M = 7, K = 3, N = 5;
  sloth_scope_begin();
  /* [2,3,M,K] @ [K,N]: B broadcast over the batch */
  sloth_tensor *a = upload(A, 4, (int64_t[]){2, 3, M, K}), *b = upload(B, 2, (int64_t[]){K, N});
  ref_gemm((mat){A, K, 1, M * K}, (mat){B, N, 1, 0}, C, 6, M, K, N);
  sloth_tensor *c = sloth_matmul(a, b);
  check(c, C, 6 * M * N, "[2,3,M,K] @ [K,N]");
  ok(c && sloth_rank(c) == 4 && sloth_dim(c, 0) == 2 && sloth_dim(c, 1) == 3, "batch dims kept");
  sloth_scope_end();

  /* [2,1,M,K] @ [3,K,N] -> [2,3,M,N]: batch offsets not evenly spaced */
  sloth_scope_begin();
  a = upload(A, 4, (int64_t[]){2, 1, M, K});
  b = upload(B, 3, (int64_t[]){3, K, N});
  for (int z = 0; z < 6; z++) ref_gemm((mat){A + (z / 3) * M * K, K, 1, 0}, (mat){B + (z % 3) * K * N, N, 1, 0}, C + z * M * N, 1, M, K, N);
  check(sloth_matmul(a, b), C, 6 * M * N, "[2,1,M,K] @ [3,K,N] broadcast batches");
  sloth_scope_end();
}

static void vectors(void) {
  int64_t K = 9, N = 4;
  sloth_scope_begin();
  sloth_tensor *v = upload(A, 1, &K), *m = upload(B, 2, (int64_t[]){K, N});
  ref_gemm((mat){A, K, 1, 0}, (mat){B, N, 1, 0}, C, 1, 1, K, N);
  sloth_tensor *r = sloth_matmul(v, m);
  check(r, C, N, "[K] @ [K,N]");
  ok(r && sloth_rank(r) == 1 && sloth_dim(r, 0) == N, "gives [N]");
  sloth_tensor *w = upload(B, 1, &K);
  ref_gemm((mat){A, K, 1, 0}, (mat){B, 1, 1, 0}, C, 1, 1, K, 1);
  r = sloth_matmul(v, w);
  check(r, C, 1, "[K] @ [K] (dot)");
  ok(r && sloth_rank(r) == 0, "gives a scalar");
  sloth_scope_end();
}

static void epilogue_and_caching(void) {
  int64_t M = 16, K = 8, N = 12;
  static float bias[64], want[1 << 12];
  for (int i = 0; i < N; i++) bias[i] = frand();
  sloth_scope_begin();
  sloth_tensor *x = upload(A, 2, (int64_t[]){M, K}), *w = upload(B, 2, (int64_t[]){K, N});
  sloth_tensor *bt = sloth_from_host(bias, SLOTH_F32, 1, &N);
  ref_gemm((mat){A, K, 1, 0}, (mat){B, N, 1, 0}, C, 1, M, K, N);
  for (int64_t i = 0; i < M * N; i++) want[i] = fmaxf(C[i] + bias[i % N], 0.0f);
  for (int rep = 0; rep < 2; rep++) {
    int64_t launches = sloth_counter("kernel_launch"), calls = sloth_counter("gemm_call"),
            compiles = sloth_counter("kernel_compile");
    check(sloth_relu(sloth_add(sloth_matmul(x, w), bt)), want, M * N, "relu(x @ W + b)");
    ok(sloth_counter("gemm_call") - calls == 1 && sloth_counter("kernel_launch") - launches == 1,
       "bias add and activation run in one kernel after the GEMM");
    if (rep == 1) ok(sloth_counter("kernel_compile") == compiles, "the second step compiles nothing");
  }
  sloth_scope_end();
}

static void edge_cases(void) {
  sloth_scope_begin();
  /* K = 0: an empty sum gives zeros */
  sloth_tensor *a = sloth_zeros(SLOTH_F32, 2, (int64_t[]){3, 0}), *b = sloth_zeros(SLOTH_F32, 2, (int64_t[]){0, 4});
  float zeros[12] = {0};
  check(sloth_matmul(a, b), zeros, 12, "[3,0] @ [0,4] is zeros");
  /* integers compute in f32 */
  int32_t ia[6] = {1, 2, 3, 4, 5, 6}, ib[6] = {1, 0, 0, 1, 1, 1};
  sloth_tensor *c = sloth_matmul(sloth_from_host(ia, SLOTH_I32, 2, (int64_t[]){2, 3}), sloth_from_host(ib, SLOTH_I32, 2, (int64_t[]){3, 2}));
  float want[4] = {4, 5, 10, 11};
  check(c, want, 4, "i32 operands");
  ok(c && sloth_dtype_of(c) == SLOTH_F32, "give f32");

  /* bad input */
  sloth_tensor *x = sloth_ones(SLOTH_F32, 2, (int64_t[]){3, 4}), *y = sloth_ones(SLOTH_F32, 2, (int64_t[]){5, 2});
  ok(sloth_matmul(x, y) == NULL && sloth_last_status() == SLOTH_E_SHAPE && strstr(sloth_last_error(), "inner"),
     "mismatched inner dimensions: %s", sloth_last_error());
  ok(sloth_matmul(x, sloth_scalar(2, SLOTH_F32)) == NULL && sloth_last_status() == SLOTH_E_SHAPE, "a rank-0 operand: %s",
     sloth_last_error());
  sloth_tensor *p = sloth_ones(SLOTH_F32, 3, (int64_t[]){2, 3, 4}), *q = sloth_ones(SLOTH_F32, 3, (int64_t[]){3, 4, 5});
  ok(sloth_matmul(p, q) == NULL && sloth_last_status() == SLOTH_E_SHAPE, "batch dims that do not broadcast: %s",
     sloth_last_error());
  ok(sloth_matmul(NULL, q) == NULL, "NULL operand");
  sloth_clear_error();
  float four[12];
  sloth_tensor *ok_after = sloth_matmul(x, sloth_ones(SLOTH_F32, 2, (int64_t[]){4, 4}));
  ok(ok_after && sloth_to_host(ok_after, four, 4 * 12) == SLOTH_OK && four[0] == 4.0f, "the runtime works afterwards");
  sloth_scope_end();
}

int main(void) {
  if (sloth_init(NULL) != SLOTH_OK) skip_all(sloth_last_error());
  plain_sizes();
  views_in_place();
  batches();
  vectors();
  epilogue_and_caching();
  edge_cases();
  return tap_done();
}
