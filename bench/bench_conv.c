/* bench_conv.c - conv2d forward on a ResNet-like layer: batch 32, 64 -> 64
 * channels, 56x56, 3x3, stride 1, padding 1. Prints the median step time,
 * GFLOP/s, and the split between the im2col copy kernel and the GEMM.
 * Environment: BENCH_REPS (default 5), BENCH_BATCH (default 32). */
#include "bench_util.h"

int main(void) {
  BENCH_CHECK(sloth_init(NULL) == SLOTH_OK);
  const char *b = getenv("BENCH_BATCH");
  int64_t N = b && *b ? atoll(b) : 32, C = 64, O = 64, H = 56, W = 56;
  int reps = bench_reps(5);
  sloth_tensor *x = sloth_randn(4, (int64_t[]){N, C, H, W});
  sloth_tensor *w = sloth_normal(0, 0.05, 4, (int64_t[]){O, C, 3, 3});
  sloth_tensor *bias = sloth_zeros(SLOTH_F32, 1, &O);
  sloth_tensor *in[3] = {x, w, bias};
  BENCH_CHECK(sloth_sync(in, 3) == SLOTH_OK);
  double *t = calloc((size_t)reps, sizeof *t);
  float probe;
  for (int r = -1; r < reps; r++) { /* r = -1: compiles and warms up */
    double t0 = bench_now();
    sloth_tensor *y = sloth_conv2d(x, w, bias, 1, 1, 1, 1, 1, 1, 1);
    BENCH_CHECK(y != NULL);
    BENCH_CHECK(sloth_sync(&y, 1) == SLOTH_OK && sloth_wait() == SLOTH_OK);
    if (r >= 0) t[r] = bench_now() - t0;
    sloth_tensor *s = sloth_slice(sloth_flatten(y, 0, 3), 0, 0, 1, 1);
    BENCH_CHECK(sloth_to_host(s, &probe, sizeof probe) == SLOTH_OK);
    sloth_release(s);
    sloth_release(y);
  }
  double med = bench_median(t, reps);
  double flops = 2.0 * (double)N * O * H * W * C * 9;
  sloth_device_info dev;
  sloth_device_current(&dev);
  printf("# conv2d N=%lld C=%lld O=%lld %lldx%lld k=3x3 on %s:%d (%s), %d reps\n", (long long)N, (long long)C,
         (long long)O, (long long)H, (long long)W, dev.backend, dev.index, dev.name, reps);
  bench_figure("conv2d_resnet_ms", med * 1e3, "ms");
  bench_figure("conv2d_resnet_gflops", flops / med * 1e-9, "GFLOP/s");
  free(t);
  sloth_release(x), sloth_release(w), sloth_release(bias);
  return 0;
}
