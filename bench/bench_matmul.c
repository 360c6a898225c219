/* bench_matmul.c - sloth_matmul against a direct CLBlast call on the same
 * device and the same buffers, square sizes 256 to 2048.
 *
 *   matmul_clblast_default_gflops_nN  CLBlastSgemm on sloth's own cl_mem
 *                                     buffers and queue, CLBlast's default
 *                                     parameters (measured before anything
 *                                     could apply tuned ones)
 *   matmul_clblast_tuned_gflops_nN    the same call after the device's cached
 *                                     tuned parameters are applied (only when
 *                                     tools/sloth-tune-gemm wrote some)
 *   matmul_cblas_gflops_nN            cblas_sgemm on malloc'ed host memory:
 *                                     the host BLAS alone (builds with it),
 *                                     timed alternately with sloth_matmul
 *   matmul_sloth_gflops_nN            sloth_matmul + sync + wait, plan cached
 *   matmul_sloth_vs_clblast_nN        sloth / CLBlast default (target >= 0.95)
 *   matmul_sloth_vs_cblas_nN          sloth / cblas_sgemm, from the alternate
 *                                     runs (what the host path costs on top)
 *
 * GFLOP/s = 2 n^3 / median time, after warm-up calls (the first CLBlast call
 * compiles its kernels: seconds on a cold POCL cache). SLOTH_GEMM picks
 * sloth's path as usual; bench/matmul.sh adds numpy's figures.
 *
 * Env: BENCH_SIZES (default "256 512 1024 2048"), BENCH_SECONDS (time spent
 * per figure, default 1.5; at least BENCH_MIN_REPS = 5 calls, at most 50).
 */
#include "config.h"

#include "bench_util.h"

#include "../backend-opencl/opencl.h"

#include <clblast_c.h>
#include <math.h>

#ifdef SLOTH_HAVE_CBLAS
#include <cblas.h>
#endif

#define MAX_REPS 50
#define MIN_REPS 5

static double budget_s(void) {
  const char *v = getenv("BENCH_SECONDS");
  double s = v && *v ? atof(v) : 1.5;
  return s > 0 ? s : 1.5;
}

/* Median seconds of fn(ctx): warm-up calls first, then at least MIN_REPS
 * timed calls and as many more as fit in the budget. With fn2, the two are
 * timed alternately (so that a busy machine slows both alike) and *median2
 * gets fn2's median. */
static double median_times(void (*fn)(void *), void (*fn2)(void *), void *ctx, int warmups, double *median2) {
  for (int w = 0; w < warmups; w++) {
    fn(ctx);
    if (fn2) fn2(ctx);
  }
  double v[MAX_REPS], v2[MAX_REPS], start = bench_now(), budget = budget_s() * (fn2 ? 2 : 1);
  int n = 0;
  while (n < MAX_REPS && (n < MIN_REPS || bench_now() - start < budget)) {
    double t0 = bench_now();
    fn(ctx);
    double t1 = bench_now();
    if (fn2) fn2(ctx);
    v2[n] = bench_now() - t1;
    v[n++] = t1 - t0;
  }
  if (fn2) *median2 = bench_median(v2, n);
  return bench_median(v, n);
}

static double median_time(void (*fn)(void *), void *ctx, int warmups) {
  return median_times(fn, NULL, ctx, warmups, NULL);
}

typedef struct ctx {
  int64_t n;
  sloth_tensor *a, *b, *c;
  cl_mem A, B, C;
  cl_command_queue queue;
  float *ha, *hb, *hc;
} ctx;

static void clblast_call(void *p) {
  ctx *x = p;
  size_t n = (size_t)x->n;
  CLBlastStatusCode s = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, n, n, n, 1.0f, x->A, 0, n,
                                     x->B, 0, n, 0.0f, x->C, 0, n, &x->queue, NULL);
  if (s != CLBlastSuccess || clFinish(x->queue) != CL_SUCCESS) {
    fprintf(stderr, "CLBlastSgemm failed (%d)\n", (int)s);
    exit(1);
  }
}

static void sloth_call(void *p) {
  ctx *x = p;
  sloth_tensor *c = sloth_matmul(x->a, x->b);
  BENCH_CHECK(c && sloth_sync(&c, 1) == SLOTH_OK && sloth_wait() == SLOTH_OK);
  sloth_release(c);
}

#ifdef SLOTH_HAVE_CBLAS
static void cblas_call(void *p) {
  ctx *x = p;
  int n = (int)x->n;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, x->ha, n, x->hb, n, 0.0f, x->hc, n);
}
#endif

static cl_mem buffer_of(sloth_tensor *t) {
  BENCH_CHECK(sloth_sync(&t, 1) == SLOTH_OK && sloth_wait() == SLOTH_OK);
  BENCH_CHECK(t->node->materialized && t->node->buf);
  return (cl_mem)t->node->buf->mem;
}

/* Largest |got - want| relative to the largest |want|. */
static double rel_err(const float *got, const float *want, size_t n) {
  double e = 0, m = 0;
  for (size_t i = 0; i < n; i++) {
    e = fmax(e, fabs((double)got[i] - want[i]));
    m = fmax(m, fabs((double)want[i]));
  }
  return m > 0 ? e / m : e;
}

static void figure_n(const char *what, int64_t n, double value, const char *unit) {
  char name[128];
  snprintf(name, sizeof name, "matmul_%s_n%lld", what, (long long)n);
  bench_figure(name, value, unit);
}

int main(void) {
  BENCH_CHECK(sloth_init(NULL) == SLOTH_OK);
  sloth_device_info info;
  sloth_device_current(&info);
  if (strcmp(info.backend, "opencl") != 0) {
    printf("# bench_matmul compares with CLBlast: needs an OpenCL device (SLOTH_DEVICE=opencl[:N]), not %s\n", info.backend);
    return 0;
  }
  sloth__device *dev = sloth__rt.dev;
  printf("# device: %s (%s), %s\n", info.name, info.version, info.is_gpu ? "GPU" : "not a GPU");
  printf("# sloth GEMM path: %s (SLOTH_GEMM=%s)\n", sloth__opencl_gemm_path_name(dev),
         getenv("SLOTH_GEMM") ? getenv("SLOTH_GEMM") : "auto");
  const char *ot = getenv("OPENBLAS_NUM_THREADS");
  printf("# OPENBLAS_NUM_THREADS=%s\n", ot ? ot : "(unset)");

  int64_t sizes[16];
  int nsizes = 0;
  const char *env = getenv("BENCH_SIZES");
  char *list = strdup(env && *env ? env : "256 512 1024 2048"), *save = NULL;
  for (char *tok = strtok_r(list, " ,", &save); tok && nsizes < 16; tok = strtok_r(NULL, " ,", &save))
    if (atoll(tok) > 0) sizes[nsizes++] = atoll(tok);
  free(list);

  ctx cx[16];
  /* Inputs, and one sloth result kept as the C buffer for the direct calls. */
  for (int i = 0; i < nsizes; i++) {
    ctx *x = &cx[i];
    int64_t n = x->n = sizes[i];
    size_t nn = (size_t)(n * n);
    x->ha = malloc(nn * sizeof(float)), x->hb = malloc(nn * sizeof(float)), x->hc = malloc(nn * sizeof(float));
    BENCH_CHECK(x->ha && x->hb && x->hc);
    unsigned r = 12345u + (unsigned)n;
    for (size_t j = 0; j < nn; j++) {
      r = r * 1103515245u + 12345u;
      x->ha[j] = (float)((r >> 9) & 0xffff) / 65536.0f - 0.5f;
      r = r * 1103515245u + 12345u;
      x->hb[j] = (float)((r >> 9) & 0xffff) / 65536.0f - 0.5f;
    }
    x->a = sloth_from_host(x->ha, SLOTH_F32, 2, (int64_t[]){n, n});
    x->b = sloth_from_host(x->hb, SLOTH_F32, 2, (int64_t[]){n, n});
    x->c = sloth_full(0.0, SLOTH_F32, 2, (int64_t[]){n, n});
    BENCH_CHECK(x->a && x->b && x->c);
    x->A = buffer_of(x->a), x->B = buffer_of(x->b), x->C = buffer_of(x->c);
    x->queue = dev->queue;
  }

  /* 1. CLBlast with its defaults, before sloth could apply tuned parameters
   * (they are process wide, applied at sloth's first CLBlast GEMM). */
  double clblast_default[16];
  for (int i = 0; i < nsizes; i++) {
    double t = median_time(clblast_call, &cx[i], 2);
    clblast_default[i] = 2.0 * pow((double)cx[i].n, 3) / t * 1e-9;
    figure_n("clblast_default_gflops", cx[i].n, clblast_default[i], "GFLOP/s");
  }

  /* 2. The same calls with the cached tuned parameters, if any. */
  int tuned = sloth__clblast_tuning_load(dev->device);
  char path[1200];
  if (sloth__clblast_tuning_path(dev->device, path, sizeof path) == SLOTH_OK)
    printf("# CLBlast tuning cache %s: %s\n", path, tuned > 0 ? "applied" : "none (run tools/sloth-tune-gemm)");
  if (tuned > 0)
    for (int i = 0; i < nsizes; i++) {
      double t = median_time(clblast_call, &cx[i], 2);
      figure_n("clblast_tuned_gflops", cx[i].n, 2.0 * pow((double)cx[i].n, 3) / t * 1e-9, "GFLOP/s");
    }

  /* 3. sloth_matmul: trace, cached plan, GEMM, wait. Checked against cblas /
   * the CLBlast result first. */
  int status = 0;
  for (int i = 0; i < nsizes; i++) {
    ctx *x = &cx[i];
    size_t nn = (size_t)(x->n * x->n);
    float *want = malloc(nn * sizeof(float)), *got = malloc(nn * sizeof(float));
    BENCH_CHECK(want && got);
    clblast_call(x);
    BENCH_CHECK(clEnqueueReadBuffer(x->queue, x->C, CL_TRUE, 0, nn * sizeof(float), want, 0, NULL, NULL) == CL_SUCCESS);
    sloth_tensor *c = sloth_matmul(x->a, x->b);
    BENCH_CHECK(c && sloth_to_host(c, got, nn * sizeof(float)) == SLOTH_OK);
    sloth_release(c);
    double err = rel_err(got, want, nn);
    if (!(err < 1e-4)) {
      fprintf(stderr, "n=%lld: sloth_matmul differs from CLBlast (relative error %g)\n", (long long)x->n, err);
      status = 1;
    }
    free(want), free(got);

    double flop = 2.0 * pow((double)x->n, 3);
#ifdef SLOTH_HAVE_CBLAS
    /* timed alternately with cblas_sgemm on host memory: the host BLAS alone */
    double tc = 0, t = median_times(sloth_call, cblas_call, x, 2, &tc);
    figure_n("cblas_gflops", x->n, flop / tc * 1e-9, "GFLOP/s");
#else
    double t = median_time(sloth_call, x, 2);
#endif
    double g = flop / t * 1e-9;
    figure_n("sloth_gflops", x->n, g, "GFLOP/s");
    figure_n("sloth_vs_clblast", x->n, g / clblast_default[i], "ratio");
#ifdef SLOTH_HAVE_CBLAS
    figure_n("sloth_vs_cblas", x->n, tc / t, "ratio");
#endif
  }

  for (int i = 0; i < nsizes; i++) {
    sloth_release(cx[i].a), sloth_release(cx[i].b), sloth_release(cx[i].c);
    free(cx[i].ha), free(cx[i].hb), free(cx[i].hc);
  }
  sloth_shutdown();
  return status;
}
