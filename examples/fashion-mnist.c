/* fashion-mnist.c - trains an MLP or a small CNN on Fashion-MNIST with Sloth.
 *
 *   ./examples/fashion-mnist --model mlp            (3 epochs, about 87% test accuracy)
 *   ./examples/fashion-mnist --model cnn            (about 90%)
 *   ./examples/fashion-mnist --help
 *
 * Every training step is one lazy graph: forward, cross-entropy loss,
 * gradients (sloth_optimizer_minimize) and the in-place optimizer update,
 * run by sloth_mark_step. The first step compiles its plan; every later step
 * replays it (the learning rate of the StepLR schedule and the dropout seed
 * are kernel arguments), which the program checks and reports at the end.
 * The weights are saved as safetensors with the names of PyTorch's modules
 * (conv1.weight, fc1.bias, ...), so the file loads into the equivalent
 * torch.nn model with load_state_dict.
 *
 * The data are the IDX files of Debian's dataset-fashion-mnist
 * (/usr/share/datasets/fashion-mnist), gzip-compressed or not. */
#include "sloth.h"
#include "idx.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"
/* Fashion-MNIST's training-set pixel mean and standard deviation (of x / 255) */
#define PIXEL_MEAN 0.2860
#define PIXEL_STD 0.3530
#define CLASSES 10

static const char *const class_names[CLASSES] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/* ------------------------------------------------------------------ options */

typedef struct options {
  const char *data, *model, *optimizer, *device, *save, *load;
  int epochs, batch, eval_batch, limit, lr_step, loss_every, channels[2], hidden;
  double lr, momentum, weight_decay, gamma, dropout;
  uint64_t seed;
  bool lr_set, momentum_set, epochs_set;
} options;

static void usage(FILE *out, const char *prog) {
  fprintf(out,
          "usage: %s [options]\n"
          "\n"
          "Trains a classifier on Fashion-MNIST (60000 training and 10000 test images of\n"
          "28x28 pixels, 10 classes) with Sloth, prints the test accuracy after each epoch,\n"
          "saves the weights (safetensors) and prints the runtime metrics.\n"
          "\n"
          "  --model NAME        mlp (default): 784-256-10, ReLU\n"
          "                      cnn: Conv2d(1,C1,3) ReLU Conv2d(C1,C2,3) ReLU MaxPool2d(2)\n"
          "                      Dropout(0.25) Flatten Linear(C2*144,H) ReLU Dropout(0.5)\n"
          "                      Linear(H,10): the net of PyTorch's lazy tensor tutorial,\n"
          "                      narrowed by default to C1=16, C2=32: the tutorial's 32,64\n"
          "                      (--channels 32,64) doubles the step time, about 0.11 s per\n"
          "                      batch of 64 on a 2-core CPU with POCL\n"
          "  --channels C1,C2    cnn channel counts (default 16,32)\n"
          "  --hidden H          cnn hidden units (default 128)\n"
          "  --dropout P         cnn: the second dropout's probability (default 0.5; the\n"
          "                      first is P/2); 0 turns both off\n"
          "  --epochs N          passes over the training set (default 3)\n"
          "  --batch-size N      training batch size (default 64); the last partial batch\n"
          "                      of an epoch is dropped, so every step has one shape\n"
          "  --optimizer NAME    sgd, adam or adamw (default: sgd for mlp, adam for cnn)\n"
          "  --lr X              learning rate (default: sgd 0.1, adam/adamw 0.001)\n"
          "  --momentum X        sgd momentum (default 0)\n"
          "  --weight-decay X    weight decay (default 0)\n"
          "  --lr-step N         StepLR: multiply the learning rate by --lr-gamma every N\n"
          "                      epochs (default 1)\n"
          "  --lr-gamma X        StepLR factor (default 0.7, as in the tutorial); 1 keeps\n"
          "                      the learning rate constant\n"
          "  --limit N           train on the first N training images only (quick runs;\n"
          "                      default: all)\n"
          "  --eval-batch-size N test batch size (default 500)\n"
          "  --loss-every N      read the loss back every N steps for the running loss\n"
          "                      (default 20; each read waits for the device)\n"
          "  --seed N            seed of the weight initialization, dropout and the\n"
          "                      shuffling (default 1)\n"
          "  --device DEV        device for sloth_init: opencl, opencl:N, cuda, cuda:N\n"
          "                      (default: $SLOTH_DEVICE, else the first GPU, else the CPU)\n"
          "  --data DIR          directory of the IDX files {train,t10k}-{images-idx3,\n"
          "                      labels-idx1}-ubyte[.gz] (default " DEFAULT_DATA ",\n"
          "                      from Debian's dataset-fashion-mnist)\n"
          "  --save PATH         where to save the trained weights (default\n"
          "                      fashion-<model>.safetensors; \"\" or \"-\" saves nothing)\n"
          "  --load PATH         start from the weights in PATH (a file this program\n"
          "                      saved); with --epochs 0 it only evaluates\n"
          "  --help              this text\n"
          "\n"
          "Progress goes to stderr: a bar when stderr is a terminal, otherwise a line\n"
          "every 10%% of an epoch. Results and the metrics report go to stdout.\n",
          prog);
}

static int parse_int(const char *opt, const char *v, long lo, long hi, int *out) {
  char *end;
  errno = 0;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || errno || *end || end == v || x < lo || x > hi) {
    fprintf(stderr, "fashion-mnist: %s needs an integer in [%ld, %ld], got '%s'\n", opt, lo, hi, v ? v : "");
    return -1;
  }
  *out = (int)x;
  return 0;
}

static int parse_double(const char *opt, const char *v, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double x = v ? strtod(v, &end) : 0;
  if (!v || errno || *end || end == v || !(x >= lo && x <= hi)) {
    fprintf(stderr, "fashion-mnist: %s needs a number in [%g, %g], got '%s'\n", opt, lo, hi, v ? v : "");
    return -1;
  }
  *out = x;
  return 0;
}

/* 0: parsed; 1: --help; -1: error (message printed). */
static int parse_options(int argc, char **argv, options *o) {
  *o = (options){.data = DEFAULT_DATA, .model = "mlp", .epochs = 3, .batch = 64,
                 .eval_batch = 500, .lr_step = 1, .loss_every = 20, .channels = {16, 32}, .hidden = 128,
                 .gamma = 0.7, .dropout = 0.5, .seed = 1};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    char *eq = NULL;
    char name[64];
    const char *val = NULL;
    if (strncmp(a, "--", 2) == 0 && (eq = strchr(a, '=')) && (size_t)(eq - a) < sizeof name) {
      memcpy(name, a, (size_t)(eq - a));
      name[eq - a] = 0;
      a = name;
      val = eq + 1;
    }
#define VALUE() (val ? val : (i + 1 < argc ? argv[++i] : NULL))
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
    else if (!strcmp(a, "--data")) { if (!(o->data = VALUE())) goto missing; }
    else if (!strcmp(a, "--model")) { if (!(o->model = VALUE())) goto missing; }
    else if (!strcmp(a, "--optimizer")) { if (!(o->optimizer = VALUE())) goto missing; }
    else if (!strcmp(a, "--device")) { if (!(o->device = VALUE())) goto missing; }
    else if (!strcmp(a, "--save")) { if (!(o->save = VALUE())) goto missing; }
    else if (!strcmp(a, "--load")) { if (!(o->load = VALUE())) goto missing; }
    else if (!strcmp(a, "--epochs")) { if (parse_int(a, VALUE(), 0, 100000, &o->epochs)) return -1; o->epochs_set = true; }
    else if (!strcmp(a, "--batch-size")) { if (parse_int(a, VALUE(), 1, 1 << 20, &o->batch)) return -1; }
    else if (!strcmp(a, "--eval-batch-size")) { if (parse_int(a, VALUE(), 1, 1 << 20, &o->eval_batch)) return -1; }
    else if (!strcmp(a, "--limit")) { if (parse_int(a, VALUE(), 1, 1 << 30, &o->limit)) return -1; }
    else if (!strcmp(a, "--lr-step")) { if (parse_int(a, VALUE(), 1, 1 << 30, &o->lr_step)) return -1; }
    else if (!strcmp(a, "--loss-every")) { if (parse_int(a, VALUE(), 1, 1 << 30, &o->loss_every)) return -1; }
    else if (!strcmp(a, "--hidden")) { if (parse_int(a, VALUE(), 1, 1 << 20, &o->hidden)) return -1; }
    else if (!strcmp(a, "--seed")) {
      int s;
      if (parse_int(a, VALUE(), 0, 0x7fffffff, &s)) return -1;
      o->seed = (uint64_t)s;
    }
    else if (!strcmp(a, "--channels")) {
      const char *v = VALUE();
      int c1, c2, n = 0;
      if (!v || sscanf(v, "%d,%d%n", &c1, &c2, &n) != 2 || v[n] || c1 < 1 || c2 < 1 || c1 > 4096 || c2 > 4096) {
        fprintf(stderr, "fashion-mnist: --channels needs two positive counts C1,C2 (e.g. 32,64), got '%s'\n",
                v ? v : "");
        return -1;
      }
      o->channels[0] = c1, o->channels[1] = c2;
    }
    else if (!strcmp(a, "--lr")) { if (parse_double(a, VALUE(), 0, 1e6, &o->lr)) return -1; o->lr_set = true; }
    else if (!strcmp(a, "--momentum")) { if (parse_double(a, VALUE(), 0, 0.999999, &o->momentum)) return -1; o->momentum_set = true; }
    else if (!strcmp(a, "--weight-decay")) { if (parse_double(a, VALUE(), 0, 1e6, &o->weight_decay)) return -1; }
    else if (!strcmp(a, "--lr-gamma")) { if (parse_double(a, VALUE(), 0, 1e6, &o->gamma)) return -1; }
    else if (!strcmp(a, "--dropout")) { if (parse_double(a, VALUE(), 0, 0.999, &o->dropout)) return -1; }
    else {
      fprintf(stderr, "fashion-mnist: unknown option '%s' (--help lists them)\n", argv[i]);
      return -1;
    }
    continue;
  missing:
    fprintf(stderr, "fashion-mnist: %s needs a value\n", a);
    return -1;
#undef VALUE
  }
  bool cnn = !strcmp(o->model, "cnn");
  if (!cnn && strcmp(o->model, "mlp")) {
    fprintf(stderr, "fashion-mnist: --model must be mlp or cnn, got '%s'\n", o->model);
    return -1;
  }
  if (!o->optimizer) o->optimizer = cnn ? "adam" : "sgd";
  bool sgd = !strcmp(o->optimizer, "sgd");
  if (!sgd && strcmp(o->optimizer, "adam") && strcmp(o->optimizer, "adamw")) {
    fprintf(stderr, "fashion-mnist: --optimizer must be sgd, adam or adamw, got '%s'\n", o->optimizer);
    return -1;
  }
  if (!o->lr_set) o->lr = sgd ? 0.1 : 0.001;
  if (o->momentum_set && !sgd) fprintf(stderr, "fashion-mnist: note: --momentum applies to sgd only\n");
  return 0;
}

/* ------------------------------------------------------------------ model */

typedef struct model {
  bool cnn;
  double dropout;
  sloth_conv2d_layer conv1, conv2;
  sloth_linear fc1, fc2;
  int nparams;
  sloth_tensor *params[8];
  const char *names[8];
} model;

static void model_free(model *m) {
  sloth_conv2d_layer_free(&m->conv1);
  sloth_conv2d_layer_free(&m->conv2);
  sloth_linear_free(&m->fc1);
  sloth_linear_free(&m->fc2);
  memset(m, 0, sizeof *m);
}

static void add_param(model *m, const char *name, sloth_tensor *t) {
  m->names[m->nparams] = name;
  m->params[m->nparams++] = t;
}

static int model_init(model *m, const options *o) {
  memset(m, 0, sizeof *m);
  m->cnn = !strcmp(o->model, "cnn");
  m->dropout = o->dropout;
  int rc;
  if (m->cnn) {
    int c1 = o->channels[0], c2 = o->channels[1];
    if ((rc = sloth_conv2d_layer_init(&m->conv1, 1, c1, 3, 3, 1, 0, 1, 1, 1)) ||
        (rc = sloth_conv2d_layer_init(&m->conv2, c1, c2, 3, 3, 1, 0, 1, 1, 1)) ||
        (rc = sloth_linear_init(&m->fc1, (int64_t)c2 * 12 * 12, o->hidden, 1)) ||
        (rc = sloth_linear_init(&m->fc2, o->hidden, CLASSES, 1)))
      return rc;
    add_param(m, "conv1.weight", m->conv1.weight);
    add_param(m, "conv1.bias", m->conv1.bias);
    add_param(m, "conv2.weight", m->conv2.weight);
    add_param(m, "conv2.bias", m->conv2.bias);
  } else {
    if ((rc = sloth_linear_init(&m->fc1, 28 * 28, 256, 1)) || (rc = sloth_linear_init(&m->fc2, 256, CLASSES, 1)))
      return rc;
  }
  add_param(m, "fc1.weight", m->fc1.weight);
  add_param(m, "fc1.bias", m->fc1.bias);
  add_param(m, "fc2.weight", m->fc2.weight);
  add_param(m, "fc2.bias", m->fc2.bias);
  return SLOTH_OK;
}

static int64_t model_param_count(const model *m) {
  int64_t n = 0;
  for (int i = 0; i < m->nparams; i++) n += sloth_numel(m->params[i]);
  return n;
}

/* x: [B, 784] for the MLP, [B, 1, 28, 28] for the CNN; returns the logits
 * [B, 10]. Call inside a scope: the intermediate tensors are temporaries. */
static sloth_tensor *model_forward(const model *m, sloth_tensor *x, bool training) {
  if (!m->cnn)
    return sloth_linear_forward(&m->fc2, sloth_relu(sloth_linear_forward(&m->fc1, x)));
  sloth_tensor *h = sloth_relu(sloth_conv2d_layer_forward(&m->conv1, x));
  h = sloth_relu(sloth_conv2d_layer_forward(&m->conv2, h));
  h = sloth_max_pool2d(h, 2, 2, 2, 2, 0, 0);
  if (m->dropout > 0) h = sloth_dropout(h, m->dropout / 2, training);
  h = sloth_flatten(h, 1, -1);
  h = sloth_relu(sloth_linear_forward(&m->fc1, h));
  if (m->dropout > 0) h = sloth_dropout(h, m->dropout, training);
  return sloth_linear_forward(&m->fc2, h);
}

/* ------------------------------------------------------------------ helpers */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* splitmix64: the host-side shuffling generator */
static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void shuffle(int32_t *idx, int64_t n, uint64_t *s) {
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)(rng_next(s) % (uint64_t)(i + 1));
    int32_t t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
  }
}

/* Normalized images and labels of the examples idx[0..b) into x and y. */
static void fill_batch(const fmnist_set *s, const int32_t *idx, int64_t b, float *x, int32_t *y) {
  const int64_t px = s->rows * s->cols;
  const float scale = (float)(1.0 / (255.0 * PIXEL_STD)), shift = (float)(PIXEL_MEAN / PIXEL_STD);
  for (int64_t i = 0; i < b; i++) {
    const uint8_t *src = s->images + (int64_t)idx[i] * px;
    float *dst = x + i * px;
    for (int64_t k = 0; k < px; k++) dst[k] = (float)src[k] * scale - shift;
    y[i] = s->labels[idx[i]];
  }
}

static sloth_tensor *batch_input(const model *m, const float *x, int64_t b) {
  if (m->cnn) return sloth_from_host(x, SLOTH_F32, 4, (int64_t[]){b, 1, 28, 28});
  return sloth_from_host(x, SLOTH_F32, 2, (int64_t[]){b, 28 * 28});
}

/* ------------------------------------------------------------------ progress */

typedef struct progress {
  bool tty;
  int epoch, epochs, last_decile;
  int64_t total;
  double start, last_draw;
} progress;

static void progress_start(progress *p, int epoch, int epochs, int64_t total) {
  p->epoch = epoch, p->epochs = epochs, p->total = total;
  p->last_decile = 0;
  p->start = now_s();
  p->last_draw = 0;
}

static void progress_update(progress *p, int64_t done, double loss, bool force) {
  double t = now_s(), el = t - p->start, rate = el > 0 ? (double)done / el : 0;
  char lossbuf[32];
  snprintf(lossbuf, sizeof lossbuf, isnan(loss) ? "-" : "%.4f", loss);
  if (p->tty) {
    if (!force && t - p->last_draw < 0.1 && done < p->total) return;
    p->last_draw = t;
    enum { W = 30 };
    char bar[W + 1];
    int fill = (int)(W * done / (p->total ? p->total : 1));
    for (int i = 0; i < W; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[W] = 0;
    double eta = rate > 0 ? (double)(p->total - done) / rate : 0;
    fprintf(stderr, "\repoch %d/%d [%s] %lld/%lld  %.1f batch/s  loss %s  %s %.0fs ", p->epoch, p->epochs, bar,
            (long long)done, (long long)p->total, rate, lossbuf, done < p->total ? "eta" : "took",
            done < p->total ? eta : el);
    if (done >= p->total) fputc('\n', stderr);
    fflush(stderr);
  } else {
    int decile = (int)(10 * done / (p->total ? p->total : 1));
    if (decile <= p->last_decile && !(force && done >= p->total && p->last_decile < 10)) return;
    p->last_decile = decile;
    fprintf(stderr, "epoch %d/%d: %3d%% %lld/%lld batches, %.1f batch/s, loss %s\n", p->epoch, p->epochs,
            (int)(100 * done / (p->total ? p->total : 1)), (long long)done, (long long)p->total, rate, lossbuf);
  }
}

/* ------------------------------------------------------------------ evaluation */

/* Test accuracy in batches (training mode off: no dropout). Partial last
 * batches are fine here: a new shape builds a plan but compiles no kernel. */
static int evaluate(const model *m, const fmnist_set *s, int eval_batch, double *accuracy, int64_t confusion[CLASSES][CLASSES]) {
  const int64_t px = s->rows * s->cols;
  float *x = malloc((size_t)eval_batch * (size_t)px * sizeof *x);
  int32_t *y = malloc((size_t)eval_batch * sizeof *y), *pred = malloc((size_t)eval_batch * sizeof *pred);
  int32_t *idx = malloc((size_t)eval_batch * sizeof *idx);
  int rc = SLOTH_OK;
  int64_t correct = 0;
  if (!x || !y || !pred || !idx) {
    fprintf(stderr, "fashion-mnist: out of host memory\n");
    rc = SLOTH_E_NOMEM;
    goto out;
  }
  if (confusion) memset(confusion, 0, sizeof(int64_t) * CLASSES * CLASSES);
  for (int64_t start = 0; start < s->n; start += eval_batch) {
    int64_t b = s->n - start < eval_batch ? s->n - start : eval_batch;
    for (int64_t i = 0; i < b; i++) idx[i] = (int32_t)(start + i);
    fill_batch(s, idx, b, x, y);
    sloth_scope_begin();
    sloth_tensor *p = sloth_argmax(model_forward(m, batch_input(m, x, b), false), 1, 0);
    rc = p ? sloth_to_host(p, pred, (size_t)b * sizeof *pred) : sloth_last_status();
    sloth_scope_end();
    if (rc != SLOTH_OK) {
      fprintf(stderr, "fashion-mnist: evaluation failed: %s\n", sloth_last_error());
      goto out;
    }
    for (int64_t i = 0; i < b; i++) {
      correct += pred[i] == y[i];
      if (confusion && pred[i] >= 0 && pred[i] < CLASSES) confusion[y[i]][pred[i]]++;
    }
  }
  *accuracy = s->n ? (double)correct / (double)s->n : 0;
out:
  free(x), free(y), free(pred), free(idx);
  return rc;
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
  options o;
  int pr = parse_options(argc, argv, &o);
  if (pr) {
    if (pr > 0) usage(stdout, argv[0]);
    return pr > 0 ? 0 : 2;
  }
  char err[1024];
  fmnist_set train, test;
  double t_load = now_s();
  if (fmnist_load(o.data, "train", &train, err, sizeof err) != 0 ||
      (fmnist_load(o.data, "t10k", &test, err, sizeof err) != 0 && (fmnist_free(&train), 1))) {
    fprintf(stderr, "fashion-mnist: %s\n", err);
    fprintf(stderr, "fashion-mnist: the data come from Debian's dataset-fashion-mnist (apt-get install "
                    "dataset-fashion-mnist) or --data DIR with the four IDX files\n");
    return 1;
  }
  if (train.rows != 28 || train.cols != 28 || test.rows != 28 || test.cols != 28) {
    fprintf(stderr, "fashion-mnist: images are %lldx%lld, this program needs 28x28\n", (long long)train.rows,
            (long long)train.cols);
    return 1;
  }
  t_load = now_s() - t_load;
  int64_t ntrain = o.limit && o.limit < train.n ? o.limit : train.n;
  int64_t nbatches = ntrain / o.batch;
  if (o.epochs > 0 && nbatches == 0) {
    fprintf(stderr, "fashion-mnist: %lld training images make no full batch of %d\n", (long long)ntrain, o.batch);
    return 2;
  }

  if (sloth_init(o.device) != SLOTH_OK) {
    fprintf(stderr, "fashion-mnist: sloth_init(%s): %s\n", o.device ? o.device : "default", sloth_last_error());
    return 1;
  }
  sloth_device_info dev;
  if (sloth_device_current(&dev) == SLOTH_OK)
    printf("device: %s:%d %s (%s)\n", dev.backend, dev.index, dev.name, dev.is_gpu ? "GPU" : "CPU");
  printf("data: %s: %lld training images (%lld used, %lld batches of %d; %lld dropped), %lld test images; read "
         "in %.2f s\n",
         o.data, (long long)train.n, (long long)ntrain, (long long)nbatches, o.batch,
         (long long)(ntrain - nbatches * o.batch), (long long)test.n, t_load);

  sloth_manual_seed(o.seed);
  model m;
  if (model_init(&m, &o) != SLOTH_OK) {
    fprintf(stderr, "fashion-mnist: model: %s\n", sloth_last_error());
    return 1;
  }
  if (m.cnn)
    printf("model: cnn conv(1,%d,3) conv(%d,%d,3) maxpool(2) fc(%d,%d) fc(%d,10), dropout %g/%g, %lld parameters\n",
           o.channels[0], o.channels[0], o.channels[1], o.channels[1] * 144, o.hidden, o.hidden, o.dropout / 2,
           o.dropout, (long long)model_param_count(&m));
  else
    printf("model: mlp 784-256-10 ReLU, %lld parameters\n", (long long)model_param_count(&m));
  if (o.load) {
    if (sloth_load_safetensors_into(o.load, m.names, m.params, m.nparams) != SLOTH_OK) {
      fprintf(stderr, "fashion-mnist: --load %s: %s\n", o.load, sloth_last_error());
      model_free(&m);
      return 1;
    }
    printf("loaded weights from %s\n", o.load);
  }

  bool sgd = !strcmp(o.optimizer, "sgd");
  sloth_optimizer *opt =
      sgd ? sloth_sgd_new(m.params, m.nparams, o.lr, o.momentum, o.weight_decay, 0)
      : !strcmp(o.optimizer, "adam") ? sloth_adam_new(m.params, m.nparams, o.lr, 0.9, 0.999, 1e-8, o.weight_decay)
                                     : sloth_adamw_new(m.params, m.nparams, o.lr, 0.9, 0.999, 1e-8, o.weight_decay);
  if (!opt) {
    fprintf(stderr, "fashion-mnist: optimizer: %s\n", sloth_last_error());
    model_free(&m);
    return 1;
  }
  if (sgd)
    printf("optimizer: sgd lr %g momentum %g weight decay %g; StepLR every %d epoch(s) x %g\n", o.lr, o.momentum,
           o.weight_decay, o.lr_step, o.gamma);
  else
    printf("optimizer: %s lr %g weight decay %g; StepLR every %d epoch(s) x %g\n", o.optimizer, o.lr,
           o.weight_decay, o.lr_step, o.gamma);
  fflush(stdout);

  const int64_t px = 28 * 28;
  float *xb = malloc((size_t)o.batch * px * sizeof *xb);
  int32_t *yb = malloc((size_t)o.batch * sizeof *yb), *order = malloc((size_t)ntrain * sizeof *order);
  sloth_tensor **pending_loss = calloc((size_t)o.loss_every, sizeof *pending_loss);
  if (!xb || !yb || !order || !pending_loss) {
    fprintf(stderr, "fashion-mnist: out of host memory\n");
    return 1;
  }
  for (int64_t i = 0; i < ntrain; i++) order[i] = (int32_t)i;
  uint64_t rng = o.seed * 0x9e3779b97f4a7c15ull + 12345;

  progress prog = {.tty = isatty(fileno(stderr))};
  int64_t step = 0, miss_after1 = 0, compile_after1 = 0, steps_after1 = 0;
  double train_time = 0, first_step_time = 0, accuracy = 0, running = NAN;
  int status = 0;
  for (int epoch = 1; epoch <= o.epochs && status == 0; epoch++) {
    double lr = sloth_lr_step(o.lr, epoch - 1, o.lr_step, o.gamma);
    sloth_optimizer_set_lr(opt, lr); /* a kernel argument: compiles nothing */
    shuffle(order, ntrain, &rng);
    int64_t miss0 = sloth_counter("plan_cache_miss"), comp0 = sloth_counter("kernel_compile");
    int npending = 0;
    running = NAN; /* shown as "-" until this epoch's first loss is read */
    double loss_sum = 0, t0 = now_s();
    int64_t loss_n = 0;
    progress_start(&prog, epoch, o.epochs, nbatches);
    for (int64_t b = 0; b < nbatches; b++) {
      double ts = now_s();
      fill_batch(&train, order + b * o.batch, o.batch, xb, yb);
      sloth_scope_begin();
      sloth_tensor *x = batch_input(&m, xb, o.batch);
      sloth_tensor *y = sloth_from_host(yb, SLOTH_I32, 1, (int64_t[]){o.batch});
      sloth_tensor *loss = sloth_cross_entropy(model_forward(&m, x, true), y);
      int rc = loss ? sloth_optimizer_minimize(opt, loss) : sloth_last_status();
      bool kept = rc == SLOTH_OK;
      if (kept) sloth_keep(loss); /* a root of every step: the plan is the same whether read or not */
      sloth_scope_end();
      if (rc == SLOTH_OK) rc = sloth_mark_step();
      if (rc != SLOTH_OK) {
        fprintf(stderr, "\nfashion-mnist: step %lld failed: %s\n", (long long)step + 1, sloth_last_error());
        if (kept) sloth_release(loss);
        status = 1;
        break;
      }
      pending_loss[npending++] = loss;
      step++;
      bool last = b + 1 == nbatches;
      if (npending == o.loss_every || last || step == 1) {
        /* reading waits for the device; the steps since the last read ran meanwhile */
        double sum = 0;
        for (int k = 0; k < npending; k++) {
          float v = NAN;
          if (sloth_to_host(pending_loss[k], &v, sizeof v) != SLOTH_OK) {
            fprintf(stderr, "\nfashion-mnist: reading the loss: %s\n", sloth_last_error());
            status = 1;
          }
          sloth_release(pending_loss[k]);
          sum += v;
        }
        running = sum / npending;
        loss_sum += sum;
        loss_n += npending;
        npending = 0;
        if (status) break;
        if (!isfinite(running)) {
          fprintf(stderr, "\nfashion-mnist: the loss is %g at step %lld: diverged (try a smaller --lr)\n", running,
                  (long long)step);
          status = 1;
          break;
        }
      }
      progress_update(&prog, b + 1, running, last); /* draws at most every 0.1 s or 10% */
      if (step == 1) {
        /* the first step built the plan; every later training step must replay it */
        first_step_time = now_s() - ts;
        miss0 = sloth_counter("plan_cache_miss"), comp0 = sloth_counter("kernel_compile");
      }
    }
    for (int k = 0; k < npending; k++) sloth_release(pending_loss[k]);
    if (status) break;
    sloth_wait();
    double te = now_s() - t0;
    train_time += te;
    miss_after1 += sloth_counter("plan_cache_miss") - miss0;
    compile_after1 += sloth_counter("kernel_compile") - comp0;
    steps_after1 += epoch == 1 ? nbatches - 1 : nbatches;

    double tv = now_s();
    if (evaluate(&m, &test, o.eval_batch, &accuracy, NULL) != SLOTH_OK) {
      status = 1;
      break;
    }
    printf("epoch %d/%d: lr %.4g, train loss %.4f, %.1f s (%.1f ms/step, %.0f images/s), test accuracy %.2f%% "
           "(evaluated in %.1f s)\n",
           epoch, o.epochs, lr, loss_sum / (double)(loss_n ? loss_n : 1), te, 1e3 * te / (double)nbatches,
           (double)nbatches * o.batch / te, 100 * accuracy, now_s() - tv);
    fflush(stdout);
  }
  (void)running;

  if (status == 0 && o.epochs == 0) {
    int64_t confusion[CLASSES][CLASSES];
    if (evaluate(&m, &test, o.eval_batch, &accuracy, confusion) != SLOTH_OK) status = 1;
    else {
      printf("test accuracy %.2f%%\n", 100 * accuracy);
      for (int c = 0; c < CLASSES; c++) {
        int64_t n = 0;
        for (int k = 0; k < CLASSES; k++) n += confusion[c][k];
        printf("  %-12s %.1f%%\n", class_names[c], n ? 100.0 * (double)confusion[c][c] / (double)n : 0.0);
      }
    }
  }

  if (status == 0 && o.epochs > 0) {
    char def[64];
    const char *path = o.save;
    if (!path) {
      snprintf(def, sizeof def, "fashion-%s.safetensors", o.model);
      path = def;
    }
    if (*path && strcmp(path, "-")) {
      if (sloth_save_safetensors(path, m.names, m.params, m.nparams) != SLOTH_OK) {
        fprintf(stderr, "fashion-mnist: saving %s: %s\n", path, sloth_last_error());
        status = 1;
      } else
        printf("saved %d tensors to %s\n", m.nparams, path);
    }
    printf("training: %lld steps in %.1f s (first step %.2f s: builds and compiles the plan), final test accuracy "
           "%.2f%%\n",
           (long long)step, train_time, first_step_time, 100 * accuracy);
    printf("metrics:\n");
    sloth_metrics_report(stdout);
    printf("after step 1: %lld training steps, plan_cache_miss %lld, kernel_compile %lld (evaluation excluded; "
           "0 means every step replayed the first step's plan)\n",
           (long long)steps_after1, (long long)miss_after1, (long long)compile_after1);
    if (miss_after1 || compile_after1) {
      fprintf(stderr, "fashion-mnist: training steps after the first built plans or compiled kernels\n");
      status = 1;
    }
  }

  free(xb), free(yb), free(order), free(pending_loss);
  sloth_optimizer_free(opt);
  model_free(&m);
  fmnist_free(&train);
  fmnist_free(&test);
  sloth_shutdown();
  return status;
}
