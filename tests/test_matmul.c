/* test_matmul.c - sloth_matmul (GEMM through CLBlast) against a naive loop:
 * awkward sizes, transposed and sliced operands read in place, broadcast
 * batch dimensions, 1-D operands, fused epilogues, bad input. */
#include <sloth.h>

#include "tap.h"
#include "ref.h" /* f16 conversions */

#include <math.h>
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

/* A small output over a long shared dim (a conv's weight gradient): the
 * host path sums it in chunks of the shared dim, in every transpose
 * layout and per batch; K = 9000 leaves a partial last chunk. */
static void long_shared_dim(void) {
  enum { M = 5, K = 9000, N = 3 };
  for (int layout = 0; layout < 4; layout++) {
    int ta = layout & 1, tb = layout & 2;
    sloth_scope_begin();
    sloth_tensor *a = upload(A, 2, ta ? (int64_t[]){K, M} : (int64_t[]){M, K});
    sloth_tensor *b = upload(B, 2, tb ? (int64_t[]){N, K} : (int64_t[]){K, N});
    ref_gemm((mat){A, ta ? 1 : K, ta ? M : 1, 0}, (mat){B, tb ? 1 : N, tb ? K : 1, 0}, C, 1, M, K, N);
    char what[64];
    snprintf(what, sizeof what, "%dx%dx%d with A%s B%s", M, K, N, ta ? "^T" : "", tb ? "^T" : "");
    check(sloth_matmul(ta ? sloth_transpose(a, 0, 1) : a, tb ? sloth_transpose(b, 0, 1) : b), C, M * N, what);
    sloth_scope_end();
  }
  sloth_scope_begin(); /* two batches of 3x9000x3, B^T (A and B hold 2^16 floats) */
  sloth_tensor *a = upload(A, 3, (int64_t[]){2, N, K}), *b = upload(B, 3, (int64_t[]){2, N, K});
  ref_gemm((mat){A, K, 1, N * K}, (mat){B, 1, K, N * K}, C, 2, N, K, N);
  check(sloth_matmul(a, sloth_transpose(b, 1, 2)), C, 2 * N * N, "batched 2 x (3x9000x3) with B^T");
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

/* f64 runs as DGEMM (CLBlast, the host's cblas_dgemm, cuBLAS); f16 as HGEMM
 * where the device has fp16 arithmetic, elsewhere as one f32 GEMM between
 * casts that fuse into the kernels around it. */
static void other_dtypes(void) {
  enum { M = 33, K = 17, N = 65 };
  static double da[2 * M * K], db[2 * K * N], dc[2 * M * N], dgot[2 * M * N];
  sloth_device_info dev;
  sloth_device_current(&dev);
  /* f64: transposed A read in place, then batches evenly and unevenly spaced */
  sloth_scope_begin();
  for (int i = 0; i < 2 * M * K; i++) da[i] = (double)frand() + 1e-9 * frand(); /* digits beyond f32 */
  for (int i = 0; i < 2 * K * N; i++) db[i] = (double)frand() + 1e-9 * frand();
  sloth_tensor *at = sloth_from_host(da, SLOTH_F64, 2, (int64_t[]){K, M}), *b = sloth_from_host(db, SLOTH_F64, 2, (int64_t[]){K, N});
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      long double acc = 0;
      for (int k = 0; k < K; k++) acc += (long double)da[k * M + i] * db[k * N + j];
      dc[i * N + j] = (double)acc;
    }
  int64_t launches = sloth_counter("kernel_launch"), calls = sloth_counter("gemm_call");
  sloth_tensor *c = sloth_matmul(sloth_transpose(at, 0, 1), b);
  int rc = c ? sloth_to_host(c, dgot, sizeof(double) * M * N) : sloth_last_status();
  double worst = 0;
  for (int i = 0; rc == SLOTH_OK && i < M * N; i++) worst = fmax(worst, fabs(dgot[i] - dc[i]) / (1e-13 + 1e-13 * fabs(dc[i])));
  ok(rc == SLOTH_OK && worst <= 1 && sloth_dtype_of(c) == SLOTH_F64, "f64 A^T B in double precision (normalized error %.3g) %s",
     worst, rc ? sloth_last_error() : "");
  ok(sloth_counter("gemm_call") - calls == 1 && sloth_counter("kernel_launch") == launches, "one DGEMM, no copy kernel");
  sloth_tensor *ab = sloth_from_host(da, SLOTH_F64, 3, (int64_t[]){2, M, K}), *bb = sloth_from_host(db, SLOTH_F64, 3, (int64_t[]){2, K, N});
  sloth_tensor *b1 = sloth_from_host(db, SLOTH_F64, 4, (int64_t[]){1, 2, K, N});
  sloth_tensor *a1 = sloth_reshape(ab, 4, (int64_t[]){2, 1, M, K});
  sloth_tensor *cs = sloth_matmul(ab, bb), *cu = sloth_matmul(a1, b1); /* [2,M,N] evenly; [2,2,M,N] broadcast */
  static double want[4 * M * N], got[4 * M * N];
  for (int z = 0; z < 4; z++)
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) {
        long double acc = 0;
        for (int k = 0; k < K; k++) acc += (long double)da[(z / 2) * M * K + i * K + k] * db[(z % 2) * K * N + k * N + j];
        want[(z * M + i) * N + j] = (double)acc;
      }
  int good = cs && cu && sloth_to_host(cs, got, sizeof(double) * 2 * M * N) == SLOTH_OK;
  for (int z = 0; good && z < 2; z++)
    for (int e = 0; e < M * N; e++) good &= fabs(got[z * M * N + e] - want[(3 * z) * M * N + e]) <= 1e-13 * (1 + fabs(got[z * M * N + e]));
  good = good && sloth_to_host(cu, got, sizeof(double) * 4 * M * N) == SLOTH_OK;
  for (int e = 0; good && e < 4 * M * N; e++) good &= fabs(got[e] - want[e]) <= 1e-13 * (1 + fabs(want[e]));
  ok(good, "f64 batched GEMMs (strided and broadcast batches) %s", good ? "" : sloth_last_error());
  double z4[12];
  sloth_tensor *e = sloth_matmul(sloth_zeros(SLOTH_F64, 2, (int64_t[]){3, 0}), sloth_zeros(SLOTH_F64, 2, (int64_t[]){0, 4}));
  ok(e && sloth_to_host(e, z4, sizeof z4) == SLOTH_OK && z4[0] == 0 && z4[11] == 0, "f64 [3,0] @ [0,4] is zeros");
  sloth_scope_end();

  /* f16: operands rounded to f16, products summed in f32 (or by HGEMM), the result rounded to f16 */
  sloth_scope_begin();
  static uint16_t ha[M * K], hb[K * N], hc[M * N];
  static float fa[M * K], fb[K * N], fc[M * N], fgot[M * N], bias[N];
  for (int i = 0; i < M * K; i++) ha[i] = ref_f32_to_f16(frand()), fa[i] = (float)ref_f16_to_double(ha[i]);
  for (int i = 0; i < K * N; i++) hb[i] = ref_f32_to_f16(frand()), fb[i] = (float)ref_f16_to_double(hb[i]);
  for (int i = 0; i < N; i++) bias[i] = (float)ref_f16_to_double(ref_f32_to_f16(frand()));
  ref_gemm((mat){fa, K, 1, 0}, (mat){fb, N, 1, 0}, fc, 1, M, K, N);
  for (int i = 0; i < M * N; i++) fc[i] = (float)ref_f16_to_double(ref_f32_to_f16(fc[i]));
  sloth_tensor *x = sloth_from_host(ha, SLOTH_F16, 2, (int64_t[]){M, K}), *w = sloth_from_host(hb, SLOTH_F16, 2, (int64_t[]){K, N});
  calls = sloth_counter("gemm_call");
  sloth_tensor *y = sloth_matmul(x, w);
  rc = y ? sloth_to_host(y, hc, sizeof hc) : sloth_last_status();
  for (int i = 0; i < M * N; i++) fgot[i] = (float)ref_f16_to_double(hc[i]);
  double err = rc == SLOTH_OK ? tap_max_err(fgot, fc, M * N, 2e-3, 2e-3) : 99;
  ok(rc == SLOTH_OK && err <= 1 && sloth_dtype_of(y) == SLOTH_F16, "f16 matmul gives f16 (normalized error %.3g, %s) %s", err,
     dev.fp16 ? "fp16 device" : "computed in f32", rc ? sloth_last_error() : "");
  ok(sloth_counter("gemm_call") - calls == 1, "one GEMM call");
  /* relu(x @ w + b) in f16: the bias, the activation and the cast to f16
   * fuse into one kernel after the GEMM */
  uint16_t hbias[N];
  for (int i = 0; i < N; i++) hbias[i] = ref_f32_to_f16(bias[i]);
  sloth_tensor *bt = sloth_from_host(hbias, SLOTH_F16, 1, (int64_t[]){N});
  launches = sloth_counter("kernel_launch");
  sloth_tensor *r = sloth_relu(sloth_add(sloth_matmul(x, w), bt));
  rc = r ? sloth_to_host(r, hc, sizeof hc) : sloth_last_status();
  for (int i = 0; i < M * N; i++) {
    float v = (float)ref_f16_to_double(ref_f32_to_f16(fc[i])) + bias[i % N];
    fc[i] = (float)ref_f16_to_double(ref_f32_to_f16(fmaxf((float)ref_f16_to_double(ref_f32_to_f16(v)), 0.0f)));
    fgot[i] = (float)ref_f16_to_double(hc[i]);
  }
  err = rc == SLOTH_OK ? tap_max_err(fgot, fc, M * N, 4e-3, 4e-3) : 99;
  ok(rc == SLOTH_OK && err <= 1, "relu(x @ w + b) in f16 (normalized error %.3g)", err);
  diag("f16 relu(x @ w + b): %lld kernel launches beside the GEMM", (long long)(sloth_counter("kernel_launch") - launches));
  ok(sloth_counter("kernel_launch") - launches <= (dev.fp16 ? 1 : 3),
     "casts fuse: one epilogue kernel (and without fp16, one cast kernel per operand)");
  sloth_scope_end();
}

int main(void) {
  if (sloth_init(NULL) != SLOTH_OK) skip_all(sloth_last_error());
  other_dtypes();
  plain_sizes();
  views_in_place();
  batches();
  long_shared_dim();
  vectors();
  epilogue_and_caching();
  edge_cases();
  return tap_done();
}
