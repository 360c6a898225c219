/* test_gemm_paths.c - the two GEMM paths of the OpenCL backend: the same
 * products through CLBlast and through the host's CBLAS on mapped buffers
 * (SLOTH_GEMM=clblast / host, the device reopened in between) give the same
 * results; SLOTH_GEMM's choice and its errors; the CLBlast tuning cache. */
#include "config.h"

#include <sloth.h>

#include "../backend-opencl/opencl.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned rng;
static float frand(void) {
  rng = rng * 1103515245u + 12345u;
  return (float)((rng >> 9) & 0xffff) / 65536.0f - 0.5f;
}

static sloth_tensor *rand_tensor(int rank, const int64_t *shape, float *keep) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= shape[i];
  float *buf = keep ? keep : malloc((size_t)n * sizeof *buf);
  for (int64_t i = 0; i < n; i++) buf[i] = frand();
  sloth_tensor *t = sloth_from_host(buf, SLOTH_F32, rank, shape);
  if (!keep) free(buf);
  return t;
}

/* Reopens the device with SLOTH_GEMM=value (NULL: unset). */
static int reopen(const char *value) {
  if (value) setenv("SLOTH_GEMM", value, 1);
  else unsetenv("SLOTH_GEMM");
  sloth_shutdown();
  return sloth_init(NULL);
}

static const char *path_in_use(void) {
  return sloth__rt.dev ? sloth__opencl_gemm_path_name(sloth__rt.dev) : "(no device)";
}

/* Reopens the device with SLOTH_GEMM=path; true when that path is in use. */
static bool use_path(const char *path) {
  return reopen(path) == SLOTH_OK && strcmp(path_in_use(), path) == 0;
}

/* ------------------------------------------------------------------ the products */

#define NCASES 11
static const char *const case_names[NCASES] = {
    "64x64 @ 64x64",
    "A^T @ B^T read in place (33x17 @ 17x65)",
    "sliced A: every other row, a column window (lda > k)",
    "A viewed from row 3 on (offset into the buffer)",
    "[4,M,K] @ [4,K,N] evenly spaced batches",
    "[2,1,M,K] @ [3,K,N] broadcast batches (per-batch offsets)",
    "[K] @ [K,N]",
    "x @ x^T: both operands in one buffer",
    "300x200 @ 200x100",
    "[3,0] @ [0,4]: an empty sum",
    "relu(x @ W + b): the epilogue after the GEMM",
};

/* Builds case i from fixed data, syncs it and copies the result to out;
 * returns the number of elements, or -1 with the error recorded. */
static int64_t run_case(int i, float *out, size_t cap) {
  rng = 1000u + (unsigned)i;
  sloth_scope_begin();
  sloth_tensor *r = NULL;
  switch (i) {
  case 0: r = sloth_matmul(rand_tensor(2, (int64_t[]){64, 64}, NULL), rand_tensor(2, (int64_t[]){64, 64}, NULL)); break;
  case 1: {
    sloth_tensor *at = rand_tensor(2, (int64_t[]){17, 33}, NULL), *bt = rand_tensor(2, (int64_t[]){65, 17}, NULL);
    r = sloth_matmul(sloth_transpose(at, 0, 1), sloth_transpose(bt, 0, 1));
    break;
  }
  case 2: {
    sloth_tensor *wide = rand_tensor(2, (int64_t[]){66, 40}, NULL), *b = rand_tensor(2, (int64_t[]){17, 65}, NULL);
    r = sloth_matmul(sloth_slice(sloth_slice(wide, 1, 5, 22, 1), 0, 0, 66, 2), b);
    break;
  }
  case 3: {
    sloth_tensor *a = rand_tensor(2, (int64_t[]){40, 24}, NULL), *b = rand_tensor(2, (int64_t[]){24, 31}, NULL);
    r = sloth_matmul(sloth_slice(a, 0, 3, 40, 1), b);
    break;
  }
  case 4: r = sloth_matmul(rand_tensor(3, (int64_t[]){4, 9, 13}, NULL), rand_tensor(3, (int64_t[]){4, 13, 11}, NULL)); break;
  case 5: r = sloth_matmul(rand_tensor(4, (int64_t[]){2, 1, 7, 3}, NULL), rand_tensor(3, (int64_t[]){3, 3, 5}, NULL)); break;
  case 6: r = sloth_matmul(rand_tensor(1, (int64_t[]){9}, NULL), rand_tensor(2, (int64_t[]){9, 4}, NULL)); break;
  case 7: {
    sloth_tensor *x = rand_tensor(2, (int64_t[]){37, 29}, NULL);
    r = sloth_matmul(x, sloth_transpose(x, 0, 1));
    break;
  }
  case 8: {
    sloth_tensor *a = rand_tensor(2, (int64_t[]){300, 200}, NULL), *b = rand_tensor(2, (int64_t[]){200, 100}, NULL);
    r = sloth_matmul(a, b);
    break;
  }
  case 9: r = sloth_matmul(sloth_zeros(SLOTH_F32, 2, (int64_t[]){3, 0}), sloth_zeros(SLOTH_F32, 2, (int64_t[]){0, 4})); break;
  case 10: {
    sloth_tensor *x = rand_tensor(2, (int64_t[]){16, 8}, NULL), *w = rand_tensor(2, (int64_t[]){8, 12}, NULL);
    r = sloth_relu(sloth_add(sloth_matmul(x, w), rand_tensor(1, (int64_t[]){12}, NULL)));
    break;
  }
  }
  int64_t n = r ? sloth_numel(r) : -1;
  if (n >= 0 && ((size_t)n > cap || sloth_to_host(r, out, (size_t)n * sizeof(float)) != SLOTH_OK)) n = -1;
  sloth_scope_end();
  return n;
}

/* Independent references for the cases the layouts make easy to get wrong. */
static void ref_gemm(const float *a, int64_t ars, int64_t acs, const float *b, int64_t brs, int64_t bcs, float *c, int64_t M,
                     int64_t K, int64_t N) {
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double acc = 0;
      for (int64_t k = 0; k < K; k++) acc += (double)a[i * ars + k * acs] * b[k * brs + j * bcs];
      c[i * N + j] = (float)acc;
    }
}

static bool reference(int i, float *want) {
  static float a[300 * 200], b[200 * 100];
  rng = 1000u + (unsigned)i;
  switch (i) {
  case 3: /* a [40,24] from row 3, b [24,31] */
    for (int k = 0; k < 40 * 24; k++) a[k] = frand();
    for (int k = 0; k < 24 * 31; k++) b[k] = frand();
    ref_gemm(a + 3 * 24, 24, 1, b, 31, 1, want, 37, 24, 31);
    return true;
  case 7: /* x [37,29] @ x^T */
    for (int k = 0; k < 37 * 29; k++) a[k] = frand();
    ref_gemm(a, 29, 1, a, 1, 29, want, 37, 29, 37);
    return true;
  case 8:
    for (int k = 0; k < 300 * 200; k++) a[k] = frand();
    for (int k = 0; k < 200 * 100; k++) b[k] = frand();
    ref_gemm(a, 200, 1, b, 100, 1, want, 300, 200, 100);
    return true;
  }
  return false;
}

#define CAP (300 * 100)
static float results[2][NCASES][CAP];
static int64_t counts[2][NCASES];

static void both_paths(void) {
  static const char *const paths[2] = {"clblast", "host"};
  for (int p = 0; p < 2; p++) {
    bool on = use_path(paths[p]);
    ok(on, "SLOTH_GEMM=%s: the device opens with the %s path", paths[p], paths[p]);
    for (int i = 0; i < NCASES; i++) {
      counts[p][i] = on ? run_case(i, results[p][i], CAP) : -1;
      if (counts[p][i] < 0) ok(0, "%s path, %s: %s", paths[p], case_names[i], on ? sloth_last_error() : "path not available");
    }
  }
  static float want[CAP];
  for (int i = 0; i < NCASES; i++) {
    if (counts[0][i] < 0 || counts[1][i] < 0) continue;
    double e = counts[0][i] == counts[1][i] ? tap_max_err(results[1][i], results[0][i], counts[0][i], 1e-5, 1e-4) : INFINITY;
    ok(e <= 1, "%s: host BLAS = CLBlast (normalized difference %.3g)", case_names[i], e);
    if (reference(i, want)) {
      double ec = tap_max_err(results[0][i], want, counts[0][i], 1e-4, 1e-4);
      double eh = tap_max_err(results[1][i], want, counts[1][i], 1e-4, 1e-4);
      ok(ec <= 1, "%s: CLBlast = reference (normalized error %.3g)", case_names[i], ec);
      ok(eh <= 1, "%s: host BLAS = reference (normalized error %.3g)", case_names[i], eh);
    }
  }
}

/* ------------------------------------------------------------------ the choice */

static void choice_and_errors(void) {
  /* auto: the host BLAS on CPU devices when the build has it */
  ok(reopen(NULL) == SLOTH_OK, "SLOTH_GEMM unset: the device opens");
  bool want_host = false;
#ifdef SLOTH_HAVE_CBLAS
  want_host = sloth__rt.dev && sloth__rt.dev->is_cpu;
#endif
  const char *want = want_host ? "host" : "clblast";
  ok(strcmp(path_in_use(), want) == 0, "SLOTH_GEMM unset picks %s on this %s device", want,
     sloth__rt.dev && sloth__rt.dev->is_cpu ? "CPU" : "non-CPU");
  ok(reopen("auto") == SLOTH_OK && strcmp(path_in_use(), want) == 0, "SLOTH_GEMM=auto is the default");
  ok(reopen("CLBlast") == SLOTH_OK && strcmp(path_in_use(), "clblast") == 0, "values are case-insensitive");

  /* a bad value fails at init, and at the first op that opens the device */
  int rc = reopen("fastest");
  ok(rc == SLOTH_E_INVALID && strstr(sloth_last_error(), "SLOTH_GEMM") && strstr(sloth_last_error(), "fastest"),
     "SLOTH_GEMM=fastest: sloth_init fails: %s", sloth_last_error());
  sloth_clear_error();
  float one = 1;
  sloth_tensor *t = sloth_from_host(&one, SLOTH_F32, 1, (int64_t[]){1});
  ok(t == NULL && sloth_last_status() == SLOTH_E_INVALID && strstr(sloth_last_error(), "SLOTH_GEMM"),
     "SLOTH_GEMM=fastest: the first op fails with the same message");
  sloth_release(t);

#ifndef SLOTH_HAVE_CBLAS
  ok(reopen("host") == SLOTH_E_UNSUPPORTED && strstr(sloth_last_error(), "CBLAS"),
     "SLOTH_GEMM=host without a host BLAS in the build: %s", sloth_last_error());
#endif
  ok(reopen(NULL) == SLOTH_OK, "the device opens again once SLOTH_GEMM is fixed");
}

/* ------------------------------------------------------------------ the tuning cache */

static void tuning_cache(void) {
  char dir[] = "/tmp/sloth-test-tuning-XXXXXX";
  if (!mkdtemp(dir)) {
    ok(0, "mkdtemp");
    return;
  }
  char sub[sizeof dir + 16];
  snprintf(sub, sizeof sub, "%s/a/b", dir); /* created on save */
  setenv("SLOTH_CACHE_DIR", sub, 1);
  cl_device_id d = sloth__rt.dev->device;
  char path[1200], line[512];
  ok(sloth__clblast_tuning_path(d, path, sizeof path) == SLOTH_OK && strncmp(path, sub, strlen(sub)) == 0,
     "the cache file lives under SLOTH_CACHE_DIR: %s", path);
  ok(sloth__clblast_tuning_load(d) == 0, "no cache file: nothing applied, no error");

  /* Xaxpy: a kernel no GEMM uses, so overriding it changes nothing here */
  ok(sloth__clblast_tuning_save(d, "Xaxpy 32 VW=1 WGS=64 WPT=1\nXgemm 32 NOT_A_PARAMETER\n# a comment\n") == SLOTH_OK,
     "save writes the file (directories created)");
  FILE *f = fopen(path, "r");
  ok(f && fgets(line, sizeof line, f) && strcmp(line, "sloth clblast tuning 1\n") == 0, "it starts with the format line");
  if (f) fclose(f);
  ok(sloth__clblast_tuning_load(d) == 1, "load applies the valid line and skips the malformed one");

  /* a file for another driver version is stale: skipped */
  f = fopen(path, "r+");
  if (f) {
    fgets(line, sizeof line, f);
    fgets(line, sizeof line, f);
    fputs("driver: another version\n", f);
    fclose(f);
  }
  ok(sloth__clblast_tuning_load(d) == 0, "a cache file of another driver version is ignored");

  setenv("SLOTH_CACHE_DIR", "/proc/sloth-not-writable", 1);
  ok(sloth__clblast_tuning_save(d, "Xaxpy 32 VW=1 WGS=64 WPT=1\n") < 0, "an unwritable directory: save fails: %s",
     sloth_last_error());
  ok(sloth__clblast_tuning_load(d) == 0, "an unwritable directory: load skips silently");
  unsetenv("SLOTH_CACHE_DIR");
  unlink(path);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) diag("could not remove %s", dir);
}

int main(void) {
  const char *timeout = getenv("OPENBLAS_THREAD_TIMEOUT");
  char timeout_before[32] = "";
  if (timeout) snprintf(timeout_before, sizeof timeout_before, "%s", timeout);
  if (sloth_init(NULL) != SLOTH_OK) skip_all(sloth_last_error());
  sloth_device_info info;
  sloth_device_current(&info);
  if (strcmp(info.backend, "opencl") != 0) skip_all("the GEMM paths belong to the OpenCL backend");
  diag("device: %s", info.name);
#ifdef SLOTH_HAVE_CBLAS
  if (strcmp(path_in_use(), "host") == 0) { /* OpenBLAS was loaded with a short spin, or as the user set it */
    timeout = getenv("OPENBLAS_THREAD_TIMEOUT");
    ok(timeout && strcmp(timeout, timeout_before[0] ? timeout_before : "4") == 0,
       "OPENBLAS_THREAD_TIMEOUT is %s when OpenBLAS loads (was %s)", timeout ? timeout : "unset",
       timeout_before[0] ? timeout_before : "unset");
  }
  both_paths();
#else
  diag("built without a host CBLAS: only the CLBlast path and the errors are tested");
#endif
  choice_and_errors();
  tuning_cache();
  return tap_done();
}
