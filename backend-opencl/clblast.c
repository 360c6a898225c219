/* clblast.c - matrix products on OpenCL devices through CLBlast: Sgemm for
 * one matrix, SgemmStridedBatched when batches are evenly spaced, and
 * SgemmBatched (per-batch offsets) otherwise (Dgemm* for f64, Hgemm* for f16
 * on fp16 devices). Views need no copy: every call
 * takes (buffer, offset, leading dimension) and transpose flags. The first
 * call on a device applies tuned parameters cached by tools/sloth-tune-gemm.
 * (CPU devices normally run GEMM on the host BLAS instead: hostblas.c.) */
#include "opencl.h"

#include <clblast_c.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *clblast_status_name(CLBlastStatusCode s) {
  switch (s) {
  case CLBlastSuccess: return "CLBlastSuccess";
  case CLBlastOpenCLCompilerNotAvailable: return "CLBlastOpenCLCompilerNotAvailable";
  case CLBlastTempBufferAllocFailure: return "CLBlastTempBufferAllocFailure";
  case CLBlastOpenCLOutOfResources: return "CLBlastOpenCLOutOfResources";
  case CLBlastOpenCLOutOfHostMemory: return "CLBlastOpenCLOutOfHostMemory";
  case CLBlastOpenCLBuildProgramFailure: return "CLBlastOpenCLBuildProgramFailure";
  case CLBlastInvalidValue: return "CLBlastInvalidValue";
  case CLBlastInvalidCommandQueue: return "CLBlastInvalidCommandQueue";
  case CLBlastInvalidMemObject: return "CLBlastInvalidMemObject";
  case CLBlastInvalidBinary: return "CLBlastInvalidBinary";
  case CLBlastInvalidBuildOptions: return "CLBlastInvalidBuildOptions";
  case CLBlastInvalidProgram: return "CLBlastInvalidProgram";
  case CLBlastInvalidProgramExecutable: return "CLBlastInvalidProgramExecutable";
  case CLBlastInvalidKernelName: return "CLBlastInvalidKernelName";
  case CLBlastInvalidKernelDefinition: return "CLBlastInvalidKernelDefinition";
  case CLBlastInvalidKernel: return "CLBlastInvalidKernel";
  case CLBlastInvalidArgIndex: return "CLBlastInvalidArgIndex";
  case CLBlastInvalidArgValue: return "CLBlastInvalidArgValue";
  case CLBlastInvalidArgSize: return "CLBlastInvalidArgSize";
  case CLBlastInvalidKernelArgs: return "CLBlastInvalidKernelArgs";
  case CLBlastInvalidLocalNumDimensions: return "CLBlastInvalidLocalNumDimensions";
  case CLBlastInvalidLocalThreadsTotal: return "CLBlastInvalidLocalThreadsTotal";
  case CLBlastInvalidLocalThreadsDim: return "CLBlastInvalidLocalThreadsDim";
  case CLBlastInvalidGlobalOffset: return "CLBlastInvalidGlobalOffset";
  case CLBlastInvalidEventWaitList: return "CLBlastInvalidEventWaitList";
  case CLBlastInvalidEvent: return "CLBlastInvalidEvent";
  case CLBlastInvalidOperation: return "CLBlastInvalidOperation";
  case CLBlastInvalidBufferSize: return "CLBlastInvalidBufferSize";
  case CLBlastInvalidGlobalWorkSize: return "CLBlastInvalidGlobalWorkSize";
  case CLBlastNotImplemented: return "CLBlastNotImplemented";
  case CLBlastInvalidMatrixA: return "CLBlastInvalidMatrixA";
  case CLBlastInvalidMatrixB: return "CLBlastInvalidMatrixB";
  case CLBlastInvalidMatrixC: return "CLBlastInvalidMatrixC";
  case CLBlastInvalidVectorX: return "CLBlastInvalidVectorX";
  case CLBlastInvalidVectorY: return "CLBlastInvalidVectorY";
  case CLBlastInvalidDimension: return "CLBlastInvalidDimension";
  case CLBlastInvalidLeadDimA: return "CLBlastInvalidLeadDimA";
  case CLBlastInvalidLeadDimB: return "CLBlastInvalidLeadDimB";
  case CLBlastInvalidLeadDimC: return "CLBlastInvalidLeadDimC";
  case CLBlastInvalidIncrementX: return "CLBlastInvalidIncrementX";
  case CLBlastInvalidIncrementY: return "CLBlastInvalidIncrementY";
  case CLBlastInsufficientMemoryA: return "CLBlastInsufficientMemoryA";
  case CLBlastInsufficientMemoryB: return "CLBlastInsufficientMemoryB";
  case CLBlastInsufficientMemoryC: return "CLBlastInsufficientMemoryC";
  case CLBlastInsufficientMemoryX: return "CLBlastInsufficientMemoryX";
  case CLBlastInsufficientMemoryY: return "CLBlastInsufficientMemoryY";
  case CLBlastInsufficientMemoryTemp: return "CLBlastInsufficientMemoryTemp";
  case CLBlastInvalidBatchCount: return "CLBlastInvalidBatchCount";
  case CLBlastInvalidOverrideKernel: return "CLBlastInvalidOverrideKernel";
  case CLBlastMissingOverrideParameter: return "CLBlastMissingOverrideParameter";
  case CLBlastInvalidLocalMemUsage: return "CLBlastInvalidLocalMemUsage";
  case CLBlastNoHalfPrecision: return "CLBlastNoHalfPrecision";
  case CLBlastNoDoublePrecision: return "CLBlastNoDoublePrecision";
  case CLBlastInvalidVectorScalar: return "CLBlastInvalidVectorScalar";
  case CLBlastInsufficientMemoryScalar: return "CLBlastInsufficientMemoryScalar";
  case CLBlastDatabaseError: return "CLBlastDatabaseError";
  case CLBlastUnknownError: return "CLBlastUnknownError";
  case CLBlastUnexpectedError: return "CLBlastUnexpectedError";
  }
  return "CLBlast error";
}

/* The batches are evenly spaced: one stride describes them all. */
static bool strided(const size_t *offsets, size_t batch, size_t *stride) {
  *stride = batch > 1 ? offsets[1] - offsets[0] : 0;
  for (size_t i = 1; i < batch; i++)
    if (offsets[i] < offsets[i - 1] || offsets[i] - offsets[i - 1] != *stride) return false;
  return true;
}

/* ------------------------------------------------------------------ tuned parameters
 *
 * tools/sloth-tune-gemm runs CLBlast's tuners on a device and writes the best
 * parameters to $SLOTH_CACHE_DIR (default ~/.cache/sloth), one file per device
 * name + driver version:
 *
 *   sloth clblast tuning 1
 *   device: <CL_DEVICE_NAME>
 *   driver: <CL_DRIVER_VERSION>
 *   Xgemm 32 GEMMK=0 KREG=1 KWG=32 ...       (kernel, precision, parameters)
 *
 * The first CLBlast GEMM on a device applies them with
 * CLBlastOverrideParameters. A missing, unreadable or stale file is skipped
 * silently: CLBlast keeps its defaults. SLOTH_CLBLAST_TUNING=0 skips it too. */

#define TUNING_MAGIC "sloth clblast tuning 1"

static void device_string(cl_device_id d, cl_device_info what, char *out, size_t size) {
  out[0] = '\0';
  if (clGetDeviceInfo(d, what, size - 1, out, NULL) != CL_SUCCESS) out[0] = '\0';
  out[size - 1] = '\0';
}

static const char *cache_dir(char *buf, size_t size) {
  const char *dir = sloth__env("SLOTH_CACHE_DIR");
  if (dir) return dir;
  const char *home = sloth__env("HOME");
  if (!home) return NULL;
  snprintf(buf, size, "%s/.cache/sloth", home);
  return buf;
}

int sloth__clblast_tuning_path(cl_device_id device, char *out, size_t size) {
  char dirbuf[1024], name[256], driver[256];
  const char *dir = cache_dir(dirbuf, sizeof dirbuf);
  if (!dir) return sloth__fail(SLOTH_E_UNSUPPORTED, "no cache directory: set SLOTH_CACHE_DIR or HOME");
  device_string(device, CL_DEVICE_NAME, name, sizeof name);
  device_string(device, CL_DRIVER_VERSION, driver, sizeof driver);
  /* a readable stem plus a hash of the whole key (names get cut and folded) */
  uint64_t h = 1469598103934665603ull;
  for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
  h = (h ^ '\n') * 1099511628211ull;
  for (const char *p = driver; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
  char stem[48];
  size_t n = 0;
  for (const char *p = name; *p && n < sizeof stem - 1; p++) {
    char ch = *p;
    bool keep = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.';
    if (keep) stem[n++] = ch;
    else if (n > 0 && stem[n - 1] != '-') stem[n++] = '-';
  }
  while (n > 0 && stem[n - 1] == '-') n--;
  stem[n] = '\0';
  int len = snprintf(out, size, "%s/clblast-%s-%016llx.txt", dir, n ? stem : "device", (unsigned long long)h);
  if (len < 0 || (size_t)len >= size) return sloth__fail(SLOTH_E_INVALID, "cache path too long");
  return SLOTH_OK;
}

/* mkdir -p of the directory part of path */
static int make_parents(char *path) {
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    int rc = mkdir(path, 0755);
    *p = '/';
    if (rc != 0 && errno != EEXIST) return -1;
  }
  return 0;
}

int sloth__clblast_tuning_save(cl_device_id device, const char *kernel_lines) {
  char path[1200], tmp[1300], name[256], driver[256];
  int rc = sloth__clblast_tuning_path(device, path, sizeof path);
  if (rc != SLOTH_OK) return rc;
  device_string(device, CL_DEVICE_NAME, name, sizeof name);
  device_string(device, CL_DRIVER_VERSION, driver, sizeof driver);
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  if (make_parents(tmp) != 0) return sloth__fail(SLOTH_E_INVALID, "cannot create the directory of %s: %s", path, strerror(errno));
  FILE *f = fopen(tmp, "w");
  if (!f) return sloth__fail(SLOTH_E_INVALID, "cannot write %s: %s", tmp, strerror(errno));
  fprintf(f, "%s\ndevice: %s\ndriver: %s\n%s", TUNING_MAGIC, name, driver, kernel_lines);
  bool bad = ferror(f) != 0;
  if (fclose(f) != 0) bad = true;
  if (bad || rename(tmp, path) != 0) {
    int err = errno;
    unlink(tmp);
    return sloth__fail(SLOTH_E_INVALID, "cannot write %s: %s", path, strerror(err));
  }
  return SLOTH_OK;
}

/* Applies one "Kernel precision NAME=VALUE ..." line; false if malformed or refused. */
static bool apply_line(cl_device_id device, char *line) {
  enum { MAXP = 64 };
  const char *names[MAXP];
  size_t values[MAXP], n = 0;
  char *save = NULL;
  char *kernel = strtok_r(line, " \t\r\n", &save);
  char *prec = strtok_r(NULL, " \t\r\n", &save);
  if (!kernel || !prec) return false;
  CLBlastPrecision precision;
  if (strcmp(prec, "32") == 0) precision = CLBlastPrecisionSingle;
  else if (strcmp(prec, "64") == 0) precision = CLBlastPrecisionDouble;
  else if (strcmp(prec, "16") == 0) precision = CLBlastPrecisionHalf;
  else return false;
  for (char *tok; (tok = strtok_r(NULL, " \t\r\n", &save)) != NULL;) {
    char *eq = strchr(tok, '=');
    if (!eq || eq == tok || n == MAXP) return false;
    *eq = '\0';
    char *end;
    unsigned long long v = strtoull(eq + 1, &end, 10);
    if (*end || end == eq + 1) return false;
    names[n] = tok;
    values[n++] = (size_t)v;
  }
  return n > 0 && CLBlastOverrideParameters(device, kernel, precision, n, names, values) == CLBlastSuccess;
}

int sloth__clblast_tuning_load(cl_device_id device) {
  char path[1200], line[4096], name[256], driver[256];
  if (sloth__clblast_tuning_path(device, path, sizeof path) != SLOTH_OK) {
    sloth__clear_error();
    return 0;
  }
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  device_string(device, CL_DEVICE_NAME, name, sizeof name);
  device_string(device, CL_DRIVER_VERSION, driver, sizeof driver);
  int applied = 0, lineno = 0;
  bool header_ok = true;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = '\0';
    lineno++;
    if (lineno == 1) header_ok = strcmp(line, TUNING_MAGIC) == 0;
    else if (lineno == 2) header_ok = header_ok && strncmp(line, "device: ", 8) == 0 && strcmp(line + 8, name) == 0;
    else if (lineno == 3) header_ok = header_ok && strncmp(line, "driver: ", 8) == 0 && strcmp(line + 8, driver) == 0;
    if (!header_ok) break; /* another format, device or driver version: stale */
    if (lineno <= 3 || line[0] == '#' || line[0] == '\0') continue;
    if (apply_line(device, line)) applied++;
  }
  fclose(f);
  return applied;
}

static void apply_tuning(sloth__device *dev) {
  if (dev->clblast_tuned) return;
  dev->clblast_tuned = true;
  const char *v = sloth__env("SLOTH_CLBLAST_TUNING");
  if (v && strcmp(v, "0") == 0) return;
  sloth__clblast_tuning_load(dev->device);
}

/* The three forms of one precision's GEMM (P: S, D or H; T its scalar type;
 * al, be: alpha and beta as T). */
#define CLBLAST_GEMM(P, T, al, be)                                                                                      \
  do {                                                                                                                  \
    if (g->batch == 1) {                                                                                                \
      routine = "CLBlast" #P "gemm";                                                                                    \
      s = CLBlast##P##gemm(CLBlastLayoutRowMajor, ta, tb, g->m, g->n, g->k, al, A, g->a_offsets[0], g->lda, B,         \
                           g->b_offsets[0], g->ldb, be, C, g->c_offsets[0], g->ldc, &dev->queue, NULL);                 \
    } else if (strided(g->a_offsets, g->batch, &sa) && strided(g->b_offsets, g->batch, &sb) &&                         \
               strided(g->c_offsets, g->batch, &sc)) {                                                                  \
      routine = "CLBlast" #P "gemmStridedBatched";                                                                      \
      s = CLBlast##P##gemmStridedBatched(CLBlastLayoutRowMajor, ta, tb, g->m, g->n, g->k, al, A, g->a_offsets[0],       \
                                         g->lda, sa, B, g->b_offsets[0], g->ldb, sb, be, C, g->c_offsets[0], g->ldc,     \
                                         sc, g->batch, &dev->queue, NULL);                                              \
    } else {                                                                                                            \
      routine = "CLBlast" #P "gemmBatched";                                                                             \
      T *alphas = malloc(g->batch * sizeof *alphas), *betas = malloc(g->batch * sizeof *betas);                         \
      if (!alphas || !betas) {                                                                                          \
        free(alphas), free(betas);                                                                                      \
        return sloth__fail(SLOTH_E_NOMEM, "out of host memory (GEMM batch)");                                          \
      }                                                                                                                 \
      for (size_t i = 0; i < g->batch; i++) alphas[i] = al, betas[i] = be;                                              \
      s = CLBlast##P##gemmBatched(CLBlastLayoutRowMajor, ta, tb, g->m, g->n, g->k, alphas, A, g->a_offsets, g->lda, B,  \
                                  g->b_offsets, g->ldb, betas, C, g->c_offsets, g->ldc, g->batch, &dev->queue, NULL);    \
      free(alphas), free(betas);                                                                                        \
    }                                                                                                                   \
  } while (0)

int sloth__clblast_gemm(sloth__device *dev, const sloth__gemm *g, sloth__buffer *a, sloth__buffer *b, sloth__buffer *c) {
  apply_tuning(dev);
  if (g->dtype != SLOTH_F32 && g->dtype != SLOTH_F64 && g->dtype != SLOTH_F16)
    return sloth__fail(SLOTH_E_UNSUPPORTED, "CLBlast GEMM: dtype %s not supported", sloth_dtype_name(g->dtype));
  if (g->m == 0 || g->n == 0 || g->batch == 0) return SLOTH_OK;
  cl_mem A = (cl_mem)a, B = (cl_mem)b, C = (cl_mem)c;
  const size_t es = sloth_dtype_size(g->dtype);
  if (g->k == 0) { /* an empty sum: C = 0 (C is contiguous: batch * m * n); zero bits are 0.0 in every dtype */
    uint64_t zero = 0;
    cl_int e = clEnqueueFillBuffer(dev->queue, C, &zero, es, g->c_offsets[0] * es, g->batch * g->m * g->n * es, 0, NULL,
                                   NULL);
    return e == CL_SUCCESS ? SLOTH_OK : sloth__fail(SLOTH_E_DEVICE, "OpenCL: clEnqueueFillBuffer failed (%d)", (int)e);
  }
  CLBlastTranspose ta = g->trans_a ? CLBlastTransposeYes : CLBlastTransposeNo;
  CLBlastTranspose tb = g->trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
  CLBlastStatusCode s;
  size_t sa, sb, sc;
  const char *routine;
  if (g->dtype == SLOTH_F64) CLBLAST_GEMM(D, double, g->alpha, g->beta);
  else if (g->dtype == SLOTH_F16) {
    /* Hgemm (fp16 devices only: core computes f16 in f32 elsewhere) */
    const cl_half alpha = sloth__f32_to_f16((float)g->alpha), beta = sloth__f32_to_f16((float)g->beta);
    CLBLAST_GEMM(H, cl_half, alpha, beta);
  } else {
    const float alpha = (float)g->alpha, beta = (float)g->beta;
    CLBLAST_GEMM(S, float, alpha, beta);
  }
  if (s != CLBlastSuccess)
    return sloth__fail(s == CLBlastTempBufferAllocFailure || s == CLBlastOpenCLOutOfResources ? SLOTH_E_NOMEM : SLOTH_E_DEVICE,
                       "%s (m=%zu n=%zu k=%zu batch=%zu) failed: %s (%d)", routine, g->m, g->n, g->k, g->batch,
                       clblast_status_name(s), (int)s);
  return SLOTH_OK;
}
