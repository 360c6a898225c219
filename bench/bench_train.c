/* bench_train.c - the time of one training step (forward, cross-entropy,
 * gradients, SGD update, sloth_mark_step) of the two models of
 * examples/fashion-mnist, on synthetic data:
 *   mlp: Linear(784,256) ReLU Linear(256,10), batch 128, SGD lr 0.1
 *   cnn: Conv2d(1,C1,3) ReLU Conv2d(C1,C2,3) ReLU MaxPool2d(2) Dropout(0.25)
 *        Flatten Linear(C2*144,128) ReLU Dropout(0.5) Linear(128,10),
 *        batch 64, SGD lr 0.01; C1,C2 = 16,32 (BENCH_CNN_CHANNELS=32,64 gives
 *        the net of PyTorch's lazy tensor tutorial)
 * bench/bench_train.py times the same steps in PyTorch (eager and lazy);
 * bench/train.sh (make bench-train) runs both and prints the ratios.
 *
 * The input and labels are uploaded once; every step keeps its loss alive
 * (a root of the step's graph, like the loss a Python loop holds). After
 * warm-up steps, BENCH_REPS runs (default 7) of BENCH_STEPS steps each are
 * timed up to sloth_wait(); the figure is the median step time:
 *   train_step_mlp_sloth_ms X ms
 * plus the plans built and kernels compiled by the timed steps (must be 0).
 * BENCH_UPLOAD=1 uploads the input batch every step (sloth_from_host), as a
 * training loop does.
 *
 * usage: bench/bench_train [mlp|cnn|all]   (default all) */
#include "bench_util.h"

#include <math.h>

typedef struct net {
  bool cnn;
  sloth_conv2d_layer conv1, conv2;
  sloth_linear fc1, fc2;
  sloth_tensor *params[8];
  int n;
} net;

static void net_init(net *m, bool cnn, int c1, int c2) {
  memset(m, 0, sizeof *m);
  m->cnn = cnn;
  if (cnn) {
    BENCH_CHECK(sloth_conv2d_layer_init(&m->conv1, 1, c1, 3, 3, 1, 0, 1, 1, 1) == SLOTH_OK);
    BENCH_CHECK(sloth_conv2d_layer_init(&m->conv2, c1, c2, 3, 3, 1, 0, 1, 1, 1) == SLOTH_OK);
    BENCH_CHECK(sloth_linear_init(&m->fc1, (int64_t)c2 * 144, 128, 1) == SLOTH_OK);
    BENCH_CHECK(sloth_linear_init(&m->fc2, 128, 10, 1) == SLOTH_OK);
    m->params[m->n++] = m->conv1.weight, m->params[m->n++] = m->conv1.bias;
    m->params[m->n++] = m->conv2.weight, m->params[m->n++] = m->conv2.bias;
  } else {
    BENCH_CHECK(sloth_linear_init(&m->fc1, 784, 256, 1) == SLOTH_OK);
    BENCH_CHECK(sloth_linear_init(&m->fc2, 256, 10, 1) == SLOTH_OK);
  }
  m->params[m->n++] = m->fc1.weight, m->params[m->n++] = m->fc1.bias;
  m->params[m->n++] = m->fc2.weight, m->params[m->n++] = m->fc2.bias;
}

static void net_free(net *m) {
  sloth_conv2d_layer_free(&m->conv1);
  sloth_conv2d_layer_free(&m->conv2);
  sloth_linear_free(&m->fc1);
  sloth_linear_free(&m->fc2);
}

static sloth_tensor *net_forward(const net *m, sloth_tensor *x) {
  if (!m->cnn) return sloth_linear_forward(&m->fc2, sloth_relu(sloth_linear_forward(&m->fc1, x)));
  sloth_tensor *h = sloth_relu(sloth_conv2d_layer_forward(&m->conv1, x));
  h = sloth_max_pool2d(sloth_relu(sloth_conv2d_layer_forward(&m->conv2, h)), 2, 2, 2, 2, 0, 0);
  h = sloth_flatten(sloth_dropout(h, 0.25, 1), 1, -1);
  h = sloth_dropout(sloth_relu(sloth_linear_forward(&m->fc1, h)), 0.5, 1);
  return sloth_linear_forward(&m->fc2, h);
}

/* One training step; returns the loss (kept alive until the next step). */
/* BENCH_UPLOAD=1: upload the batch again every step (as a training loop
 * does) instead of reusing the device copy */
static const float *upload_x;
static int64_t upload_shape[4];

static sloth_tensor *step(const net *m, sloth_optimizer *opt, sloth_tensor *x, sloth_tensor *y) {
  sloth_scope_begin();
  if (upload_x) x = sloth_from_host(upload_x, SLOTH_F32, m->cnn ? 4 : 2, upload_shape);
  sloth_tensor *loss = sloth_cross_entropy(net_forward(m, x), y);
  BENCH_CHECK(loss && sloth_optimizer_minimize(opt, loss) == SLOTH_OK);
  sloth_keep(loss);
  sloth_scope_end();
  BENCH_CHECK(sloth_mark_step() == SLOTH_OK);
  return loss;
}

static void bench_model(const char *name, bool cnn, int c1, int c2) {
  const int64_t batch = cnn ? 64 : 128;
  const double lr = cnn ? 0.01 : 0.1;
  const int warm = cnn ? 5 : 20, reps = bench_reps(7);
  const char *s = getenv("BENCH_STEPS");
  int steps = s && *s ? atoi(s) : (cnn ? 10 : 50);
  if (steps < 1) steps = 1;

  sloth_manual_seed(0);
  net m;
  net_init(&m, cnn, c1, c2);
  sloth_optimizer *opt = sloth_sgd_new(m.params, m.n, lr, 0, 0, 0);
  BENCH_CHECK(opt);
  int64_t feat = 784;
  float *xh = malloc((size_t)(batch * feat) * sizeof *xh);
  int32_t *yh = malloc((size_t)batch * sizeof *yh);
  uint64_t r = 88172645463325252ull;
  for (int64_t i = 0; i < batch * feat; i++) {
    r ^= r << 13, r ^= r >> 7, r ^= r << 17;
    xh[i] = (float)((double)(r >> 11) / 9007199254740992.0 * 2 - 1);
  }
  for (int64_t i = 0; i < batch; i++) yh[i] = (int32_t)(i % 10);
  sloth_tensor *x = cnn ? sloth_from_host(xh, SLOTH_F32, 4, (int64_t[]){batch, 1, 28, 28})
                        : sloth_from_host(xh, SLOTH_F32, 2, (int64_t[]){batch, feat});
  sloth_tensor *y = sloth_from_host(yh, SLOTH_I32, 1, &batch);
  BENCH_CHECK(x && y && sloth_sync((sloth_tensor *[]){x, y}, 2) == SLOTH_OK);
  const char *up = getenv("BENCH_UPLOAD");
  if (up && atoi(up) > 0) {
    upload_x = xh;
    memcpy(upload_shape, sloth_shape(x), (size_t)sloth_rank(x) * sizeof(int64_t));
  }

  sloth_tensor *loss = NULL;
  double t_first = bench_now();
  for (int i = 0; i < warm; i++) {
    sloth_release(loss);
    loss = step(&m, opt, x, y);
    if (i == 0) {
      BENCH_CHECK(sloth_wait() == SLOTH_OK);
      t_first = bench_now() - t_first;
    }
  }
  BENCH_CHECK(sloth_wait() == SLOTH_OK);
  int64_t miss0 = sloth_counter("plan_cache_miss"), comp0 = sloth_counter("kernel_compile");
  int64_t alloc0 = sloth_counter("buffer_alloc"), launch0 = sloth_counter("kernel_launch");
  int64_t gemm0 = sloth_counter("gemm_call"), trace0 = sloth_counter("trace_ns");
  int64_t lower0 = sloth_counter("lower_ns"), exec0 = sloth_counter("execute_ns");
  double *t = malloc((size_t)reps * sizeof *t);
  for (int k = 0; k < reps; k++) {
    double t0 = bench_now();
    for (int i = 0; i < steps; i++) {
      sloth_release(loss);
      loss = step(&m, opt, x, y);
    }
    BENCH_CHECK(sloth_wait() == SLOTH_OK);
    t[k] = (bench_now() - t0) / steps;
  }
  float lv = NAN;
  BENCH_CHECK(sloth_to_host(loss, &lv, sizeof lv) == SLOTH_OK);
  sloth_release(loss);
  double total = (double)reps * steps;
  int64_t miss = sloth_counter("plan_cache_miss") - miss0, comp = sloth_counter("kernel_compile") - comp0;
  double tmin = t[0], tmax = t[0];
  for (int k = 1; k < reps; k++) tmin = t[k] < tmin ? t[k] : tmin, tmax = t[k] > tmax ? t[k] : tmax;
  double med = bench_median(t, reps);

  char fig[64];
  snprintf(fig, sizeof fig, "train_step_%s_sloth_ms", name);
  bench_figure(fig, 1e3 * med, "ms");
  printf("# %s sloth: batch %lld, median of %d runs of %d steps after %d warm-up steps (first step %.2f s); min %.3g "
         "ms, max %.3g ms; loss %.4f\n",
         name, (long long)batch, reps, steps, warm, t_first, 1e3 * tmin, 1e3 * tmax, lv);
  printf("# %s sloth per step: %.0f kernel launches, %.0f GEMM calls, %.0f buffers allocated; host time: trace %.0f us, "
         "lower %.0f us, execute %.0f us\n",
         name, (double)(sloth_counter("kernel_launch") - launch0) / total,
         (double)(sloth_counter("gemm_call") - gemm0) / total, (double)(sloth_counter("buffer_alloc") - alloc0) / total,
         1e-3 * (double)(sloth_counter("trace_ns") - trace0) / total,
         1e-3 * (double)(sloth_counter("lower_ns") - lower0) / total,
         1e-3 * (double)(sloth_counter("execute_ns") - exec0) / total);
  snprintf(fig, sizeof fig, "train_step_%s_sloth_recompiles", name);
  bench_figure(fig, (double)(miss + comp), "count");
  if (miss || comp)
    printf("# warning: %s: the timed steps built %lld plans and compiled %lld kernels (want 0)\n", name,
           (long long)miss, (long long)comp);
  if (!isfinite(lv)) printf("# warning: %s: the loss is not finite\n", name);
  free(t);
  free(xh), free(yh);
  upload_x = NULL;
  sloth_release(x), sloth_release(y);
  sloth_optimizer_free(opt);
  net_free(&m);
}

int main(int argc, char **argv) {
  const char *which = argc > 1 ? argv[1] : "all";
  if (strcmp(which, "mlp") && strcmp(which, "cnn") && strcmp(which, "all")) {
    fprintf(stderr, "usage: %s [mlp|cnn|all]\n", argv[0]);
    return 2;
  }
  int c1 = 16, c2 = 32;
  const char *ch = getenv("BENCH_CNN_CHANNELS");
  if (ch && *ch && (sscanf(ch, "%d,%d", &c1, &c2) != 2 || c1 < 1 || c2 < 1)) {
    fprintf(stderr, "BENCH_CNN_CHANNELS must be C1,C2 (e.g. 32,64)\n");
    return 2;
  }
  BENCH_CHECK(sloth_init(NULL) == SLOTH_OK);
  sloth_device_info d;
  if (sloth_device_current(&d) == SLOTH_OK) printf("# device: %s:%d %s\n", d.backend, d.index, d.name);
  if (strcmp(which, "cnn")) bench_model("mlp", false, c1, c2);
  if (strcmp(which, "mlp")) bench_model("cnn", true, c1, c2);
  sloth_shutdown();
  return 0;
}
