/* test_train.c - short training runs end to end: layers, cross-entropy,
 * sloth_optimizer_minimize, sloth_mark_step.
 *
 *  - an MLP on four Gaussian blobs reaches a low loss and classifies them;
 *  - the second and later steps build no plan and compile no kernel, and
 *    allocate no buffer from the third step on (parameters and optimizer
 *    state are written in place); the parameters' values change;
 *  - a tiny CNN with dropout: the same replay property;
 *  - the trained MLP saved as safetensors and loaded into a fresh model
 *    gives the same logits; a truncated file gives a clear error;
 *  - when Debian's dataset-fashion-mnist is installed (or SLOTH_FMNIST_DIR
 *    names a directory with the IDX files), 512 Fashion-MNIST images train
 *    an MLP below a loss threshold; skipped otherwise. */
#include "sloth.h"
#include "tap.h"
#include "idx.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ data */

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static double rng_uniform(void) {
  rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
  return ((double)(rng_state >> 11) + 0.5) / 9007199254740992.0;
}
static double rng_normal(void) { return sqrt(-2 * log(rng_uniform())) * cos(6.283185307179586 * rng_uniform()); }

enum { BLOB_N = 256, BLOB_D = 16, BLOB_C = 4, BLOB_HIDDEN = 32, BLOB_BATCH = 64 };

/* BLOB_C classes, each a unit Gaussian around its own center (distance
 * about 4 between centers) in BLOB_D dimensions; examples interleaved. */
static void make_blobs(float *x, int32_t *y) {
  float centers[BLOB_C][BLOB_D];
  for (int c = 0; c < BLOB_C; c++)
    for (int d = 0; d < BLOB_D; d++) centers[c][d] = (float)(0.7 * rng_normal());
  for (int i = 0; i < BLOB_N; i++) {
    y[i] = i % BLOB_C;
    for (int d = 0; d < BLOB_D; d++) x[i * BLOB_D + d] = centers[y[i]][d] + (float)rng_normal() * 0.6f;
  }
}

/* ------------------------------------------------------------------ MLP */

typedef struct mlp {
  sloth_linear fc1, fc2;
  sloth_tensor *params[4];
} mlp;

static const char *const mlp_names[4] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};

static int mlp_init(mlp *m, int64_t in, int64_t hidden, int64_t out) {
  memset(m, 0, sizeof *m);
  if (sloth_linear_init(&m->fc1, in, hidden, 1) != SLOTH_OK || sloth_linear_init(&m->fc2, hidden, out, 1) != SLOTH_OK)
    return -1;
  m->params[0] = m->fc1.weight, m->params[1] = m->fc1.bias, m->params[2] = m->fc2.weight, m->params[3] = m->fc2.bias;
  return 0;
}

static void mlp_free(mlp *m) {
  sloth_linear_free(&m->fc1);
  sloth_linear_free(&m->fc2);
}

static sloth_tensor *mlp_forward(const mlp *m, sloth_tensor *x) {
  return sloth_linear_forward(&m->fc2, sloth_relu(sloth_linear_forward(&m->fc1, x)));
}

/* Copies a parameter to the host (malloc'd). */
static float *param_copy(sloth_tensor *p) {
  size_t bytes = (size_t)sloth_numel(p) * sizeof(float);
  float *h = malloc(bytes);
  if (h && sloth_to_host(p, h, bytes) != SLOTH_OK) {
    free(h);
    return NULL;
  }
  return h;
}

/* Logits of x [n, d] (host) as host floats (malloc'd). */
static float *mlp_logits(const mlp *m, const float *x, int64_t n, int64_t d, int64_t classes) {
  float *out = malloc((size_t)(n * classes) * sizeof *out);
  sloth_scope_begin();
  sloth_tensor *l = mlp_forward(m, sloth_from_host(x, SLOTH_F32, 2, (int64_t[]){n, d}));
  int rc = l ? sloth_to_host(l, out, (size_t)(n * classes) * sizeof *out) : sloth_last_status();
  sloth_scope_end();
  if (rc != SLOTH_OK) {
    diag("logits: %s", sloth_last_error());
    free(out);
    return NULL;
  }
  return out;
}

static double accuracy_of(const float *logits, const int32_t *y, int64_t n, int64_t classes) {
  int64_t correct = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t best = 0;
    for (int64_t c = 1; c < classes; c++)
      if (logits[i * classes + c] > logits[i * classes + best]) best = c;
    correct += best == y[i];
  }
  return (double)correct / (double)n;
}

/* One training step on x [b, ...] and labels y [b]; returns the loss tensor
 * (owned by the caller) or NULL. forward builds the logits. */
typedef sloth_tensor *(*forward_fn)(const void *model, sloth_tensor *x);

static sloth_tensor *train_step(const void *model, forward_fn fwd, sloth_optimizer *opt, const float *x, int xrank,
                                const int64_t *xshape, const int32_t *y) {
  sloth_scope_begin();
  sloth_tensor *xt = sloth_from_host(x, SLOTH_F32, xrank, xshape);
  sloth_tensor *yt = sloth_from_host(y, SLOTH_I32, 1, xshape);
  sloth_tensor *loss = sloth_cross_entropy(fwd(model, xt), yt);
  int rc = loss ? sloth_optimizer_minimize(opt, loss) : sloth_last_status();
  if (rc == SLOTH_OK) sloth_keep(loss);
  sloth_scope_end();
  if (rc != SLOTH_OK || sloth_mark_step() != SLOTH_OK) {
    diag("step: %s", sloth_last_error());
    if (rc == SLOTH_OK) sloth_release(loss);
    return NULL;
  }
  return loss;
}

static sloth_tensor *mlp_fwd(const void *m, sloth_tensor *x) { return mlp_forward((const mlp *)m, x); }

/* Replay accounting: counters after step 1 (plans, kernels) and step 2
 * (buffers), compared with the end of the run. */
typedef struct replay {
  int64_t miss, compile, alloc;
  bool have1, have2;
} replay;

static void replay_note(replay *r, int step) {
  if (step == 1) {
    r->miss = sloth_counter("plan_cache_miss"), r->compile = sloth_counter("kernel_compile");
    r->have1 = true;
  } else if (step == 2) {
    r->alloc = sloth_counter("buffer_alloc");
    r->have2 = true;
  }
}

static void replay_check(const replay *r, const char *what, int steps) {
  int64_t miss = sloth_counter("plan_cache_miss") - r->miss, comp = sloth_counter("kernel_compile") - r->compile;
  int64_t alloc = sloth_counter("buffer_alloc") - r->alloc;
  ok(r->have1 && miss == 0 && comp == 0, "%s: steps 2-%d build no plan and compile nothing (%lld plans, %lld kernels)",
     what, steps, (long long)miss, (long long)comp);
  ok(r->have2 && alloc == 0, "%s: steps 3-%d allocate no buffer (%lld allocated): updates are in place", what, steps,
     (long long)alloc);
}

/* ------------------------------------------------------------------ tests */

static char tmpdir_path[256];

static void test_blobs(void) {
  static float x[BLOB_N * BLOB_D];
  static int32_t y[BLOB_N];
  make_blobs(x, y);
  sloth_manual_seed(7);
  mlp m;
  if (!ok(mlp_init(&m, BLOB_D, BLOB_HIDDEN, BLOB_C) == 0, "blobs: MLP %d-%d-%d created", BLOB_D, BLOB_HIDDEN, BLOB_C)) {
    diag("%s", sloth_last_error());
    return;
  }
  float *w_before = param_copy(m.fc1.weight), *b_before = param_copy(m.fc2.bias);
  sloth_optimizer *opt = sloth_sgd_new(m.params, 4, 0.1, 0.9, 0, 0);
  ok(opt != NULL, "blobs: SGD with momentum created");
  if (!opt || !w_before || !b_before) return;

  enum { STEPS = 40 };
  replay r = {0};
  float first = NAN, last = NAN;
  int steps = 0;
  for (int s = 1; s <= STEPS; s++) {
    int b = (s - 1) % (BLOB_N / BLOB_BATCH);
    sloth_optimizer_set_lr(opt, sloth_lr_step(0.1, s - 1, 10, 0.7)); /* StepLR per 10 steps: a kernel argument */
    sloth_tensor *loss = train_step(&m, mlp_fwd, opt, x + b * BLOB_BATCH * BLOB_D, 2,
                                    (int64_t[]){BLOB_BATCH, BLOB_D}, y + b * BLOB_BATCH);
    if (!loss) break;
    steps = s;
    if (s == 1 || s == STEPS) sloth_to_host(loss, s == 1 ? &first : &last, sizeof(float));
    sloth_release(loss);
    replay_note(&r, s);
  }
  ok(steps == STEPS, "blobs: %d steps ran", STEPS);
  diag("blobs: loss %.4f after step 1, %.4f after step %d", first, last, STEPS);
  ok(first > 0.8 && last < 0.15, "blobs: loss falls from %.3f to %.4f (< 0.15)", first, last);
  replay_check(&r, "blobs", STEPS);

  float *w_after = param_copy(m.fc1.weight), *b_after = param_copy(m.fc2.bias);
  int wchanged = 0, bchanged = 0;
  for (int i = 0; w_after && i < BLOB_HIDDEN * BLOB_D; i++) wchanged += w_after[i] != w_before[i];
  for (int i = 0; b_after && i < BLOB_C; i++) bchanged += b_after[i] != b_before[i];
  ok(wchanged > BLOB_HIDDEN * BLOB_D / 2 && bchanged == BLOB_C,
     "blobs: the parameters changed (%d of %d fc1 weights, %d of %d fc2 biases)", wchanged, BLOB_HIDDEN * BLOB_D,
     bchanged, BLOB_C);
  free(w_before), free(b_before), free(w_after), free(b_after);

  float *logits = mlp_logits(&m, x, BLOB_N, BLOB_D, BLOB_C);
  double acc = logits ? accuracy_of(logits, y, BLOB_N, BLOB_C) : 0;
  ok(acc >= 0.97, "blobs: training accuracy %.1f%% (>= 97%%)", 100 * acc);

  /* ------------------------------------------------ save / load round trip */
  char path[512], cut[512];
  snprintf(path, sizeof path, "%s/blobs.safetensors", tmpdir_path);
  snprintf(cut, sizeof cut, "%s/truncated.safetensors", tmpdir_path);
  int rc = sloth_save_safetensors(path, mlp_names, m.params, 4);
  if (!ok(rc == SLOTH_OK, "save: %s written", path)) diag("%s", sloth_last_error());

  sloth_named_tensor *list = NULL;
  int n = 0;
  rc = sloth_load_safetensors(path, &list, &n);
  ok(rc == SLOTH_OK && n == 4, "load: %d tensors read back", n);
  int found = 0;
  for (int i = 0; rc == SLOTH_OK && i < n; i++)
    for (int k = 0; k < 4; k++)
      if (list[i].name && !strcmp(list[i].name, mlp_names[k]) && sloth_numel(list[i].tensor) == sloth_numel(m.params[k]) &&
          sloth_rank(list[i].tensor) == sloth_rank(m.params[k]) && sloth_dtype_of(list[i].tensor) == SLOTH_F32)
        found++;
  ok(found == 4, "load: names, ranks, sizes and dtypes match (%d of 4)", found);
  if (rc == SLOTH_OK) sloth_named_tensors_free(list, n);

  sloth_manual_seed(12345); /* a differently initialized model */
  mlp m2;
  mlp_init(&m2, BLOB_D, BLOB_HIDDEN, BLOB_C);
  float *before_load = mlp_logits(&m2, x, BLOB_N, BLOB_D, BLOB_C);
  rc = sloth_load_safetensors_into(path, mlp_names, m2.params, 4);
  if (!ok(rc == SLOTH_OK, "load into a fresh model")) diag("%s", sloth_last_error());
  float *after_load = mlp_logits(&m2, x, BLOB_N, BLOB_D, BLOB_C);
  ok(logits && before_load && memcmp(logits, before_load, sizeof(float) * BLOB_N * BLOB_C) != 0,
     "the fresh model predicted differently before loading");
  ok(logits && after_load && memcmp(logits, after_load, sizeof(float) * BLOB_N * BLOB_C) == 0,
     "after loading, the fresh model's logits equal the trained model's (bit for bit)");
  free(before_load), free(after_load);

  /* truncated copies: the full header but part of the data, half the
   * header, a bare length prefix, 3 bytes */
  FILE *f = fopen(path, "rb");
  long size = -1;
  unsigned char *bytes = NULL;
  if (f && fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 8 && fseek(f, 0, SEEK_SET) == 0) {
    bytes = malloc((size_t)size);
    if (bytes && fread(bytes, 1, (size_t)size, f) != (size_t)size) size = -1;
  }
  if (f) fclose(f);
  if (ok(bytes && size > 8, "saved file read back (%ld bytes)", size)) {
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | bytes[i];
    long cuts[4] = {size - 1, (long)(8 + hlen / 2), 8, 3};
    const char *what[4] = {"data cut by one byte", "header cut in half", "only the length prefix", "3 bytes"};
    for (int k = 0; k < 4; k++) {
      FILE *o = fopen(cut, "wb");
      if (!o || fwrite(bytes, 1, (size_t)cuts[k], o) != (size_t)cuts[k]) {
        ok(0, "writing a truncated copy");
        if (o) fclose(o);
        continue;
      }
      fclose(o);
      sloth_clear_error();
      list = NULL, n = 0;
      rc = sloth_load_safetensors(cut, &list, &n);
      const char *msg = sloth_last_error();
      ok(rc == SLOTH_E_INVALID && msg && *msg, "truncated file (%s, %ld of %ld bytes): SLOTH_E_INVALID, \"%s\"", what[k],
         cuts[k], size, msg ? msg : "");
      if (rc == SLOTH_OK) sloth_named_tensors_free(list, n);
      sloth_clear_error();
      rc = sloth_load_safetensors_into(cut, mlp_names, m2.params, 4);
      ok(rc != SLOTH_OK && *sloth_last_error(), "truncated file (%s): loading into a model fails too", what[k]);
    }
    float *still = mlp_logits(&m2, x, BLOB_N, BLOB_D, BLOB_C);
    ok(logits && still && memcmp(logits, still, sizeof(float) * BLOB_N * BLOB_C) == 0,
       "failed loads leave the model's weights as they were");
    free(still);
  }
  free(bytes);
  sloth_clear_error();
  ok(sloth_load_safetensors_into("/nonexistent/dir/x.safetensors", mlp_names, m2.params, 4) != SLOTH_OK &&
         strstr(sloth_last_error(), "nonexistent"),
     "a missing file: \"%s\"", sloth_last_error());
  unlink(path);
  unlink(cut);
  free(logits);
  mlp_free(&m2);
  sloth_optimizer_free(opt);
  mlp_free(&m);
}

/* ------------------------------------------------------------------ tiny CNN */

typedef struct cnn {
  sloth_conv2d_layer conv;
  sloth_linear fc;
  sloth_tensor *params[4];
} cnn;

static sloth_tensor *cnn_fwd(const void *mv, sloth_tensor *x) {
  const cnn *m = mv;
  sloth_tensor *h = sloth_max_pool2d(sloth_relu(sloth_conv2d_layer_forward(&m->conv, x)), 2, 2, 2, 2, 0, 0);
  h = sloth_dropout(sloth_flatten(h, 1, -1), 0.25, 1); /* a new draw each step: compiles nothing */
  return sloth_linear_forward(&m->fc, h);
}

static void test_cnn(void) {
  enum { B = 16, S = 8, STEPS = 4 };
  static float x[B * S * S];
  static int32_t y[B];
  /* class 1: bright left half; class 0: bright right half */
  for (int i = 0; i < B; i++) {
    y[i] = i % 2;
    for (int r = 0; r < S; r++)
      for (int c = 0; c < S; c++) x[(i * S + r) * S + c] = (float)((c < S / 2) == (y[i] == 1)) + 0.1f * (float)rng_normal();
  }
  sloth_manual_seed(3);
  cnn m;
  memset(&m, 0, sizeof m);
  if (!ok(sloth_conv2d_layer_init(&m.conv, 1, 4, 3, 3, 1, 0, 1, 1, 1) == SLOTH_OK &&
              sloth_linear_init(&m.fc, 4 * 3 * 3, 2, 1) == SLOTH_OK,
          "cnn: conv(1,4,3) maxpool dropout linear(36,2) created")) {
    diag("%s", sloth_last_error());
    return;
  }
  m.params[0] = m.conv.weight, m.params[1] = m.conv.bias, m.params[2] = m.fc.weight, m.params[3] = m.fc.bias;
  float *w_before = param_copy(m.conv.weight);
  sloth_optimizer *opt = sloth_adam_new(m.params, 4, 0.01, 0.9, 0.999, 1e-8, 0);
  replay r = {0};
  int steps = 0;
  float first = NAN, last = NAN;
  for (int s = 1; s <= STEPS; s++) {
    sloth_tensor *loss = train_step(&m, cnn_fwd, opt, x, 4, (int64_t[]){B, 1, S, S}, y);
    if (!loss) break;
    steps = s;
    if (s == 1 || s == STEPS) sloth_to_host(loss, s == 1 ? &first : &last, sizeof(float));
    sloth_release(loss);
    replay_note(&r, s);
  }
  ok(steps == STEPS && isfinite(first) && isfinite(last), "cnn: %d Adam steps ran (loss %.4f -> %.4f)", STEPS, first,
     last);
  replay_check(&r, "cnn", STEPS);
  float *w_after = param_copy(m.conv.weight);
  int changed = 0;
  for (int i = 0; w_before && w_after && i < 4 * 9; i++) changed += w_before[i] != w_after[i];
  ok(changed == 36, "cnn: every conv weight changed (%d of 36)", changed);
  free(w_before), free(w_after);
  sloth_optimizer_free(opt);
  sloth_conv2d_layer_free(&m.conv);
  sloth_linear_free(&m.fc);
}

/* ------------------------------------------------------------------ Fashion-MNIST */

static void test_fashion_mnist(void) {
  const char *dir = getenv("SLOTH_FMNIST_DIR");
  if (!dir || !*dir) dir = "/usr/share/datasets/fashion-mnist";
  fmnist_set train;
  char err[512];
  if (fmnist_load(dir, "train", &train, err, sizeof err) != 0) {
    diag("Fashion-MNIST part skipped: %s (apt-get install dataset-fashion-mnist)", err);
    ok(1, "# SKIP Fashion-MNIST not installed");
    return;
  }
  ok(train.n == 60000 && train.rows == 28 && train.cols == 28, "Fashion-MNIST: %lld training images of %lldx%lld",
     (long long)train.n, (long long)train.rows, (long long)train.cols);
  enum { N = 512, B = 64, EPOCHS = 6, PX = 784 };
  static float x[N * PX];
  static int32_t y[N];
  for (int i = 0; i < N * PX; i++) x[i] = (float)((train.images[i] / 255.0 - 0.2860) / 0.3530);
  for (int i = 0; i < N; i++) y[i] = train.labels[i];
  fmnist_free(&train);

  sloth_manual_seed(1);
  mlp m;
  mlp_init(&m, PX, 64, 10);
  sloth_optimizer *opt = sloth_sgd_new(m.params, 4, 0.1, 0.9, 0, 0);
  replay r = {0};
  int step = 0;
  double epoch_loss[EPOCHS] = {0};
  for (int e = 0; e < EPOCHS && opt; e++)
    for (int b = 0; b < N / B; b++) {
      sloth_tensor *loss = train_step(&m, mlp_fwd, opt, x + b * B * PX, 2, (int64_t[]){B, PX}, y + b * B);
      if (!loss) goto done;
      float v = NAN;
      sloth_to_host(loss, &v, sizeof v);
      epoch_loss[e] += v / (N / B);
      sloth_release(loss);
      replay_note(&r, ++step);
    }
done:
  diag("Fashion-MNIST 512 images: mean loss per epoch %.3f %.3f %.3f %.3f %.3f %.3f", epoch_loss[0], epoch_loss[1],
       epoch_loss[2], epoch_loss[3], epoch_loss[4], epoch_loss[5]);
  ok(step == EPOCHS * N / B, "Fashion-MNIST: %d steps ran", step);
  ok(epoch_loss[0] > 0.8 && epoch_loss[EPOCHS - 1] < 0.6, "Fashion-MNIST: mean loss %.3f in epoch 1, %.3f in epoch %d (< 0.6)",
     epoch_loss[0], epoch_loss[EPOCHS - 1], EPOCHS);
  replay_check(&r, "Fashion-MNIST", step);
  float *logits = mlp_logits(&m, x, N, PX, 10);
  double acc = logits ? accuracy_of(logits, y, N, 10) : 0;
  ok(acc > 0.8, "Fashion-MNIST: training accuracy %.1f%% on the 512 images (> 80%%)", 100 * acc);
  free(logits);
  sloth_optimizer_free(opt);
  mlp_free(&m);
}

int main(void) {
  if (sloth_init(NULL) != SLOTH_OK) skip_all("no device");
  const char *t = getenv("TMPDIR");
  snprintf(tmpdir_path, sizeof tmpdir_path, "%s/sloth-test-train-XXXXXX", t && *t ? t : "/tmp");
  if (!mkdtemp(tmpdir_path)) {
    printf("Bail out! mkdtemp: %s\n", strerror(errno));
    return 1;
  }
  test_blobs();
  test_cnn();
  test_fashion_mnist();
  rmdir(tmpdir_path);
  return tap_done();
}
