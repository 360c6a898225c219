/* test_nvrtc.c - the CUDA code generator, checked without a GPU.
 *
 * Runs a representative workload (every elementwise op on every dtype, views,
 * broadcasts, every reduction, where/cast, arange/full, scalars, indexing,
 * joins, padding, scans, random numbers, the nn layer) on whatever device the
 * default picks, with SLOTH_DUMP_CUDA set, so the executor also writes the
 * CUDA C of every kernel it builds; then the same with 64-bit indexing
 * (SLOTH_INDEX_BITS=64). Compiles each dumped .cu with NVRTC (opened with
 * dlopen, with the options the CUDA backend uses) to PTX for a fixed
 * architecture, and checks that float math stays in single precision.
 * Skipped where NVRTC is not installed. The whole test suite is compiled,
 * and run, by `make check-cuda-emu` (backend-cuda/cuda.mk). */
#include <sloth.h>

#include "../backend-cuda/cuda_api.h"
#include "tap.h"
#include "ref.h" /* f16 conversions */

#include <dirent.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
#define X(name, ret, params) sl_##name##_fn name;
  SL_NVRTC_FUNCS(X)
#undef X
} nv;

static const char *load_nvrtc(void) {
  static const char *const names[] = SL_NVRTC_SONAMES;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!h) continue;
    int complete = 1;
#define X(name, ret, params) complete &= (nv.name = (sl_##name##_fn)dlsym(h, #name)) != NULL;
    SL_NVRTC_FUNCS(X)
#undef X
    if (complete) return names[i];
    dlclose(h);
  }
  return NULL;
}

/* ------------------------------------------------------------------ the workload */

static const sloth_dtype dtypes[] = {SLOTH_F32, SLOTH_I32, SLOTH_U8, SLOTH_BOOL, SLOTH_F16, SLOTH_I64, SLOTH_F64};

static sloth_tensor *make(sloth_dtype dt, int rank, const int64_t *shape) {
  int64_t n = 1;
  for (int d = 0; d < rank; d++) n *= shape[d];
  void *data = malloc((size_t)(n ? n : 1) * 8);
  for (int64_t i = 0; i < n; i++) {
    switch (dt) {
    case SLOTH_F32: ((float *)data)[i] = (float)(i % 11) * 0.25f - 1.0f; break;
    case SLOTH_I32: ((int32_t *)data)[i] = (int32_t)(i % 13) - 6; break;
    case SLOTH_F16: ((uint16_t *)data)[i] = ref_f32_to_f16((float)(i % 11) * 0.25f - 1.0f); break;
    case SLOTH_F64: ((double *)data)[i] = (double)(i % 11) * 0.25 - 1.0; break;
    case SLOTH_I64: ((int64_t *)data)[i] = (int64_t)(i % 13) - 6; break;
    case SLOTH_U8: ((uint8_t *)data)[i] = (uint8_t)(i * 7 % 256); break;
    default: ((uint8_t *)data)[i] = (uint8_t)(i % 3 == 0); break;
    }
  }
  sloth_tensor *t = sloth_from_host(data, dt, rank, shape);
  free(data);
  return t;
}

typedef sloth_tensor *(*unary_fn)(sloth_tensor *);
typedef sloth_tensor *(*binary_fn)(sloth_tensor *, sloth_tensor *);

static const unary_fn unaries[] = {sloth_neg,  sloth_abs,     sloth_exp,   sloth_log,        sloth_sqrt,
                                   sloth_rsqrt, sloth_sin,    sloth_cos,   sloth_tanh,       sloth_sigmoid,
                                   sloth_relu, sloth_floor,   sloth_ceil,  sloth_round,      sloth_square,
                                   sloth_reciprocal, sloth_sign, sloth_logical_not};
static const binary_fn binaries[] = {sloth_add, sloth_sub, sloth_mul, sloth_div, sloth_pow,
                                     sloth_maximum, sloth_minimum, sloth_eq, sloth_ne, sloth_lt,
                                     sloth_le, sloth_gt, sloth_ge, sloth_logical_and, sloth_logical_or};

#define N_UNARY (int)(sizeof unaries / sizeof unaries[0])
#define N_BINARY (int)(sizeof binaries / sizeof binaries[0])

static int step(const char *what) {
  int rc = sloth_mark_step();
  if (rc != SLOTH_OK) diag("%s: %s", what, sloth_last_error());
  return rc == SLOTH_OK;
}

/* all: everything; else the parts whose code depends on the index type */
static int workload(int all) {
  int good = 1;
  const int64_t s34[] = {3, 4}, s4[] = {4}, s31[] = {3, 1}, s234[] = {2, 3, 4}, s2345[] = {2, 3, 4, 5};

  /* every unary and binary op, alone, on every dtype (one kernel each) */
  for (size_t t = 0; all && t < sizeof dtypes / sizeof dtypes[0]; t++) {
    sloth_scope_begin();
    sloth_tensor *a = make(dtypes[t], 2, s34), *b = make(dtypes[t], 2, s34);
    for (int i = 0; i < N_UNARY; i++) unaries[i](a);
    for (int i = 0; i < N_BINARY; i++) binaries[i](a, b);
    good &= step(sloth_dtype_name(dtypes[t]));
    sloth_scope_end();
  }

  /* a fused chain of everything, with broadcasts, scalars and mixed dtypes */
  sloth_scope_begin();
  if (all) {
    sloth_tensor *x = make(SLOTH_F32, 2, s34), *row = make(SLOTH_F32, 1, s4), *col = make(SLOTH_I32, 2, s31);
    sloth_tensor *y = sloth_add(x, row);
    for (int i = 0; i < N_UNARY - 1; i++) y = sloth_add(unaries[i](y), sloth_mul_scalar(x, 0.5));
    for (int i = 0; i < N_BINARY; i++) y = sloth_where(binaries[i](y, col), y, sloth_cast(col, SLOTH_F32));
    y = sloth_pow_scalar(sloth_div_scalar(sloth_sub_scalar(y, 1.0), 3.0), 2.0);
    sloth_tensor *s = sloth_scalar(2.5, SLOTH_F32), *si = sloth_scalar(3, SLOTH_I32);
    sloth_mul(y, s);
    sloth_add(col, si);
    sloth_logical_and(sloth_gt(col, si), sloth_lt(x, s));
  }
  good &= step("fused chain");
  sloth_scope_end();

  /* views: reshape, permute, transpose, expand, slice (negative step), squeeze, flatten */
  sloth_scope_begin();
  {
    sloth_tensor *x = make(SLOTH_F32, 3, s234), *i = make(SLOTH_I32, 3, s234);
    sloth_exp(sloth_reshape(x, 2, (int64_t[]){6, 4}));
    sloth_neg(sloth_permute(x, (int[]){2, 0, 1}));
    sloth_add(sloth_transpose(x, 0, 2), sloth_transpose(sloth_cast(i, SLOTH_F32), 0, 2));
    sloth_mul(sloth_expand(make(SLOTH_F32, 3, (int64_t[]){2, 1, 4}), 3, s234), x);
    sloth_abs(sloth_slice(x, 2, 3, -5, -1));
    sloth_sqrt(sloth_slice(sloth_slice(x, 1, 0, 3, 2), 0, 1, 2, 1));
    sloth_squeeze(sloth_unsqueeze(sloth_neg(i), 1), 1);
    sloth_flatten(sloth_permute(sloth_cast(i, SLOTH_U8), (int[]){1, 2, 0}), 0, 2);
    sloth_add(sloth_reshape(sloth_permute(x, (int[]){1, 0, 2}), 2, (int64_t[]){3, 8}), make(SLOTH_F32, 1, (int64_t[]){8}));
  }
  good &= step("views");
  sloth_scope_end();

  /* every reduction on every dtype, over trailing, leading, middle and all axes */
  for (size_t t = 0; t < (all ? sizeof dtypes / sizeof dtypes[0] : 1); t++) {
    sloth_scope_begin();
    sloth_tensor *x = make(dtypes[t], 4, s2345);
    const int last[] = {3}, first[] = {0}, middle[] = {1, 2}, outer2[] = {0, 3};
    const int *sets[] = {last, first, middle, outer2, NULL};
    const int nsets[] = {1, 1, 2, 2, 0};
    for (int s = 0; s < 5; s++) {
      sloth_sum(x, sets[s], nsets[s], 0);
      sloth_mean(x, sets[s], nsets[s], 1);
      sloth_max(x, sets[s], nsets[s], 0);
      sloth_min(x, sets[s], nsets[s], 0);
      sloth_prod(x, sets[s], nsets[s], 0);
    }
    for (int axis = 0; axis < 4; axis++) {
      sloth_argmax(x, axis, 0);
      sloth_argmin(x, axis, 1);
    }
    good &= step("reductions");
    sloth_scope_end();
  }

  /* reductions fused with producers and consumers */
  sloth_scope_begin();
  {
    sloth_tensor *x = make(SLOTH_F32, 3, s234);
    sloth_tensor *m = sloth_max(x, (int[]){2}, 1, 1);
    sloth_tensor *e = sloth_exp(sloth_sub(x, m));
    sloth_div(e, sloth_sum(e, (int[]){2}, 1, 1)); /* softmax */
    sloth_mean(sloth_square(sloth_transpose(x, 1, 2)), (int[]){0, 2}, 2, 0);
    sloth_argmax(sloth_add(x, sloth_cast(make(SLOTH_BOOL, 3, s234), SLOTH_F32)), 1, 0);
  }
  good &= step("fused reductions");
  sloth_scope_end();

  /* indexing, joining, padding, scans, random numbers */
  sloth_scope_begin();
  {
    sloth_tensor *x = make(SLOTH_F32, 3, s234), *xi = make(SLOTH_I32, 3, s234);
    int32_t idx_data[6] = {2, 0, 1, 1, 2, 0};
    sloth_tensor *idx = sloth_from_host(idx_data, SLOTH_I32, 1, (int64_t[]){3});
    sloth_tensor *idx2 = sloth_from_host(idx_data, SLOTH_I32, 3, (int64_t[]){2, 3, 1});
    sloth_index_select(x, 1, idx);
    sloth_gather(x, 2, sloth_expand(idx2, 3, (int64_t[]){2, 3, 1}));
    sloth_embedding(make(SLOTH_F32, 2, (int64_t[]){5, 4}), idx);
    sloth_scatter_add(x, 1, sloth_expand(sloth_reshape(idx, 3, (int64_t[]){1, 3, 1}), 3, s234), sloth_exp(x));
    sloth_scatter_add(xi, 2, sloth_expand(idx2, 3, (int64_t[]){2, 3, 1}), make(SLOTH_I32, 3, (int64_t[]){2, 3, 1}));
    sloth_cumsum(x, 2);
    sloth_cumsum(xi, 0);
    sloth_concat((sloth_tensor *[]){x, sloth_neg(x), sloth_cast(xi, SLOTH_F32)}, 3, 1);
    sloth_stack((sloth_tensor *[]){xi, make(SLOTH_U8, 3, s234)}, 2, 3);
    sloth_pad(x, (int64_t[]){1, 0, 0, 2, 3, 1}, -1.5);
    sloth_pad(sloth_cast(xi, SLOTH_U8), (int64_t[]){0, 0, 1, 1, 0, 0}, 7);
    sloth_as_strided(x, 2, (int64_t[]){4, 3}, (int64_t[]){2, 1}, 1);
    sloth_add(sloth_rand(2, s34), sloth_randn(2, s34));
    sloth_uniform(-1, 2, 1, s4);
    sloth_normal(3, 0.5, 1, s4);
    sloth_bernoulli(0.3, 2, s34);
    sloth_dropout(x, 0.25, 1);
  }
  good &= step("indexing, joining, random");
  sloth_scope_end();

  /* i64 indices, and f16 / i64 / f64 values through indexing, scans, scatters,
   * pads, joins, nn and matmul */
  sloth_scope_begin();
  {
    sloth_tensor *x = make(SLOTH_F32, 3, s234), *h = make(SLOTH_F16, 3, s234), *d = make(SLOTH_F64, 3, s234);
    sloth_tensor *l = make(SLOTH_I64, 3, s234);
    int64_t idx_data[6] = {2, 0, 1, 1, 2, 0};
    sloth_tensor *idx = sloth_from_host(idx_data, SLOTH_I64, 1, (int64_t[]){3});
    sloth_tensor *idx2 = sloth_from_host(idx_data, SLOTH_I64, 3, (int64_t[]){2, 3, 1});
    sloth_index_select(x, 1, idx);
    sloth_index_select(h, 1, idx);
    sloth_gather(d, 2, idx2);
    sloth_embedding(make(SLOTH_F16, 2, (int64_t[]){5, 4}), idx);
    sloth_tensor *ie = sloth_expand(sloth_reshape(idx, 3, (int64_t[]){1, 3, 1}), 3, s234);
    sloth_scatter_add(d, 1, ie, sloth_exp(d));
    sloth_scatter_add(l, 1, ie, l);
    sloth_scatter_add(h, 1, ie, h);
    sloth_cumsum(h, 2);
    sloth_cumsum(d, 1);
    sloth_cumsum(l, 0);
    sloth_concat((sloth_tensor *[]){h, l, d}, 3, 1);
    sloth_pad(h, (int64_t[]){1, 0, 0, 2, 3, 1}, -1.5);
    sloth_pad(d, (int64_t[]){1, 0, 0, 2, 3, 1}, 0.1);
    sloth_where(sloth_gt(h, d), l, h);
    sloth_add_scalar(sloth_mul_scalar(h, 0.1), 3);
    sloth_pow_scalar(d, 0.5);
    sloth_clamp(l, -3, 3e12);
    sloth_softmax(h, 2);
    sloth_log_softmax(d, 1);
    sloth_layer_norm(h, 1, NULL, NULL, 1e-5);
    sloth_gelu(d);
    sloth_gelu_tanh(h);
    sloth_silu(d);
    sloth_leaky_relu(h, 0.1);
    sloth_one_hot(idx, 4, SLOTH_F16);
    sloth_cross_entropy(make(SLOTH_F64, 2, s34), idx);
    sloth_matmul(sloth_relu(make(SLOTH_F16, 2, s34)), sloth_transpose(make(SLOTH_F16, 2, s34), 0, 1));
    sloth_matmul(sloth_relu(make(SLOTH_F64, 2, s34)), sloth_transpose(make(SLOTH_F64, 2, s34), 0, 1));
    sloth_max_pool2d(make(SLOTH_F16, 4, (int64_t[]){1, 2, 4, 4}), 2, 2, 2, 2, 0, 0);
    sloth_avg_pool2d(make(SLOTH_F64, 4, (int64_t[]){1, 2, 4, 4}), 2, 2, 2, 2, 0, 0);
  }
  good &= step("f16, i64, f64");
  sloth_scope_end();

  /* the nn layer: activations, softmax, norms, pooling, convolution, losses */
  sloth_scope_begin();
  {
    sloth_tensor *x = make(SLOTH_F32, 2, s34), *img = make(SLOTH_F32, 4, (int64_t[]){2, 3, 6, 5});
    sloth_gelu(x);
    sloth_gelu_tanh(x);
    sloth_silu(x);
    sloth_leaky_relu(x, 0.1);
    sloth_clamp(x, -0.5, 0.5);
    sloth_softmax(x, 1);
    sloth_log_softmax(x, 0);
    sloth_layer_norm(x, 1, make(SLOTH_F32, 1, s4), make(SLOTH_F32, 1, s4), 1e-5);
    sloth_tensor *rm = NULL, *rv = NULL;
    sloth_batch_norm(img, sloth_zeros(SLOTH_F32, 1, (int64_t[]){3}), sloth_ones(SLOTH_F32, 1, (int64_t[]){3}),
                     make(SLOTH_F32, 1, (int64_t[]){3}), make(SLOTH_F32, 1, (int64_t[]){3}), 1, 0.1, 1e-5, &rm, &rv);
    sloth_max_pool2d(img, 2, 2, 2, 1, 1, 0);
    sloth_avg_pool2d(img, 3, 2, 1, 2, 1, 1);
    sloth_adaptive_avg_pool2d(img, 2, 3);
    sloth_conv2d(img, make(SLOTH_F32, 4, (int64_t[]){4, 3, 3, 3}), make(SLOTH_F32, 1, s4), 1, 2, 1, 1, 1, 1, 1);
    int32_t labels_data[3] = {1, 0, 3};
    sloth_tensor *labels = sloth_from_host(labels_data, SLOTH_I32, 1, (int64_t[]){3});
    sloth_one_hot(labels, 4, SLOTH_F32);
    sloth_cross_entropy(x, labels);
    sloth_nll_loss(sloth_log_softmax(x, 1), labels);
    sloth_mse_loss(x, sloth_neg(x));
    sloth_binary_cross_entropy_with_logits(x, sloth_cast(sloth_gt(x, sloth_zeros(SLOTH_F32, 0, NULL)), SLOTH_F32));
    sloth_matmul(sloth_relu(x), sloth_transpose(x, 0, 1)); /* cuBLAS, but its operands are kernels */
    sloth_tensor *order = NULL;
    sloth_sort(x, 1, 1, &order);
    sloth_topk(sloth_cast(x, SLOTH_I32), 2, 0, 0, NULL);
    sloth_sort(sloth_cast(x, SLOTH_F16), 0, 0, NULL);
  }
  good &= step("nn");
  sloth_scope_end();

  /* creation: arange, full, zeros, ones on every dtype */
  sloth_scope_begin();
  for (size_t t = 0; all && t < sizeof dtypes / sizeof dtypes[0]; t++) {
    int fl = dtypes[t] == SLOTH_F32 || dtypes[t] == SLOTH_F16 || dtypes[t] == SLOTH_F64;
    if (dtypes[t] != SLOTH_BOOL) sloth_mul(sloth_arange(0, 10, 1.5, dtypes[t]), sloth_full(2, dtypes[t], 1, (int64_t[]){fl ? 7 : 10}));
    sloth_add(sloth_zeros(dtypes[t], 2, s34), sloth_ones(dtypes[t], 2, s34));
    sloth_full(3, dtypes[t], 2, s34);
  }
  good &= step("creation");
  sloth_scope_end();
  return good;
}

/* ------------------------------------------------------------------ compiling the dumps */

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
  if (s) s[n] = '\0';
  fclose(f);
  return s;
}

/* Compiles one source; returns 1 on success. *ptx gets the PTX when asked. */
static int compile(const char *src, const char *file, const char *arch, int cubin, char **ptx) {
  sl_nvrtcProgram prog;
  if (nv.nvrtcCreateProgram(&prog, src, file, 0, NULL, NULL) != SL_NVRTC_SUCCESS) return 0;
  char opt[64];
  snprintf(opt, sizeof opt, "--gpu-architecture=%s", arch);
  const char *const fixed[] = SL_NVRTC_OPTIONS; /* what the backend adds */
  const char *opts[8] = {opt};
  int nopts = 1;
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) opts[nopts++] = fixed[i];
  sl_nvrtcResult r = nv.nvrtcCompileProgram(prog, nopts, opts);
  int good = r == SL_NVRTC_SUCCESS;
  if (!good) {
    size_t n = 0;
    nv.nvrtcGetProgramLogSize(prog, &n);
    char *log = calloc(n + 1, 1);
    if (log) nv.nvrtcGetProgramLog(prog, log);
    diag("%s does not compile for %s: %s\n--- log ---\n%s--- source ---\n%s", file, arch, nv.nvrtcGetErrorString(r),
         log ? log : "", src);
    free(log);
  } else {
    size_t n = 0;
    if (cubin) good = nv.nvrtcGetCUBINSize(prog, &n) == SL_NVRTC_SUCCESS && n > 0;
    else if (ptx && nv.nvrtcGetPTXSize(prog, &n) == SL_NVRTC_SUCCESS && (*ptx = calloc(n + 1, 1)))
      nv.nvrtcGetPTX(prog, *ptx);
  }
  nv.nvrtcDestroyProgram(&prog);
  return good;
}

int main(void) {
  const char *lib = load_nvrtc();
  if (!lib) skip_all("NVRTC (libnvrtc.so.13 or .12) not installed");
  int major = 0, minor = 0;
  nv.nvrtcVersion(&major, &minor);
  diag("NVRTC %d.%d from %s", major, minor, lib);

  char dir[] = "/tmp/sloth-nvrtc-XXXXXX";
  if (!mkdtemp(dir)) skip_all("cannot create a temporary directory");
  setenv("SLOTH_DUMP_CUDA", dir, 1);
  if (sloth_init(NULL) != SLOTH_OK) {
    rmdir(dir);
    skip_all("no device to run the workload on");
  }
  sloth_device_info info;
  if (sloth_device_current(&info) == SLOTH_OK) diag("workload runs on %s:%d (%s)", info.backend, info.index, info.name);

  ok(workload(1), "the workload runs");
  /* again with 64-bit index arithmetic, as tensors of 2^31 elements or more
   * get it (where mixing long and int is ambiguous in CUDA) */
  sloth_shutdown();
  setenv("SLOTH_INDEX_BITS", "64", 1);
  ok(workload(0), "the workload's indexing parts run with SLOTH_INDEX_BITS=64");
  unsetenv("SLOTH_INDEX_BITS");

  DIR *d = opendir(dir);
  int files = 0, compiled = 0, single = 0, cubins = 0;
  struct dirent *e;
  while (d && (e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len < 4 || strcmp(e->d_name + len - 3, ".cu") != 0) continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    char *src = read_file(path);
    files++;
    char *ptx = NULL;
    if (src && compile(src, e->d_name, "compute_75", 0, &ptx)) {
      compiled++;
      /* float math must stay float: a float converted to double in the
       * PTX means a math function resolved to its double overload (sinf's
       * own slow path for huge arguments uses doubles, but never this) */
      if (ptx && (!strstr(ptx, "cvt.f64.f32") || strstr(src, "double"))) single++; /* f64 kernels convert on purpose */
      else diag("%s promotes a float to double:\n%s", e->d_name, src);
      /* a few through the CUBIN path too (what the backend does first) */
      if (cubins < 3 && compile(src, e->d_name, "sm_90", 1, NULL)) cubins++;
    }
    free(ptx);
    free(src);
    remove(path);
  }
  if (d) closedir(d);
  rmdir(dir);
  ok(files >= 200, "SLOTH_DUMP_CUDA wrote the CUDA C of the workload's kernels (%d files)", files);
  ok(compiled == files, "NVRTC compiles every generated kernel to PTX for compute_75 (%d of %d)", compiled, files);
  ok(single == compiled, "no kernel promotes a float to double (%d of %d)", single, compiled);
  ok(cubins == 3 || (files < 3 && cubins == files), "NVRTC builds CUBINs for sm_90 without a GPU (%d)", cubins);
  sloth_shutdown();
  return tap_done();
}
