/* cuda.c - the CUDA backend: the driver API (libcuda.so.1), NVRTC
 * (libnvrtc.so.N) and cuBLAS (libcublas.so.N), all opened at run time with
 * dlopen, so that Sloth builds and runs where CUDA is absent and never links
 * it (docs/cuda.md).
 *
 * Devices:  cuInit, then one entry per CUDA device. A machine without a
 *           driver, with only the toolkit's stub libcuda, or without a GPU
 *           has no CUDA devices, and status() says which of these it is.
 * Context:  the device's primary context (cuDevicePrimaryCtxRetain), the
 *           one the CUDA runtime and libraries such as cuBLAS use too. Every
 *           entry point makes it current on the calling thread first, since
 *           Sloth may be called from any thread.
 * Work:     one stream per device; launches are asynchronous and in order;
 *           write() and read() wait for their copy (as OpenCL's blocking
 *           reads and writes do), finish() waits for the stream.
 * Kernels:  NVRTC compiles the generated CUDA C to a CUBIN for the device's
 *           exact architecture (sm_XY); when that fails (an NVRTC that does
 *           not know the GPU, or a CUBIN the driver rejects) it compiles PTX
 *           for the newest architecture NVRTC knows that the device can run
 *           (compute_XY), which the driver JIT-compiles. Core caches kernels
 *           by source.
 * NVRTC:    the driver's major version M takes NVRTC M or older (a newer
 *           NVRTC's output may need a newer driver): libnvrtc.so.M, then
 *           down to libnvrtc.so.12, the first that compiles for the oldest
 *           GPU (CUDA 13 dropped sm_5x..sm_70). Devices it cannot compile
 *           for are left out of the list.
 *
 * GEMM:     cuBLAS (libcublas.so.M, chosen like NVRTC), opened on the first
 *           matrix product; one handle per device, on the device's stream.
 *           Row-major products are column-major ones with the operands
 *           swapped: C^T = op(B)^T op(A)^T.
 */
#include "../core/internal.h"
#include "cuda_api.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(void *) == sizeof(sl_CUdeviceptr), "the CUDA backend needs a 64-bit host");

/* ------------------------------------------------------------------ the libraries */

static struct {
#define X(name, ret, params) sl_##name##_fn name;
  SL_CUDA_DRIVER_FUNCS(X)
#undef X
} cu;

static struct {
#define X(name, ret, params) sl_##name##_fn name;
  SL_NVRTC_FUNCS(X)
#undef X
} nv;

typedef struct cu_dev_ref {
  sl_CUdevice dev;
  char name[128];
  int sm_count, cc_major, cc_minor, max_threads, smem_optin, integrated;
  size_t mem;
} cu_dev_ref;

static cu_dev_ref *devices;
static int ndevices;
static int driver_version; /* e.g. 12040 for 12.4 */
static char status_msg[512];
static pthread_once_t enumerate_once = PTHREAD_ONCE_INIT;

static const char *cu_error_name(sl_CUresult r) {
  switch (r) { /* the ones worth spelling out even when cuGetErrorName is unusable */
  case SL_CUDA_ERROR_STUB_LIBRARY: return "CUDA_ERROR_STUB_LIBRARY";
  case SL_CUDA_ERROR_NO_DEVICE: return "CUDA_ERROR_NO_DEVICE";
  case SL_CUDA_ERROR_OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
  default: break;
  }
  const char *s = NULL;
  if (cu.cuGetErrorName && cu.cuGetErrorName(r, &s) == SL_CUDA_SUCCESS && s) return s;
  return "CUDA error";
}

#define CU_FAIL(status, r, what) \
  sloth__fail(status, "CUDA: %s failed: %s (%d)", what, cu_error_name(r), (int)(r))

static sloth_status cu_status_of(sl_CUresult r, sloth_status otherwise) {
  return r == SL_CUDA_ERROR_OUT_OF_MEMORY ? SLOTH_E_NOMEM : otherwise;
}

/* The NVRTC entry points of one loaded library, with its architectures. */
typedef struct nvrtc_lib {
  const char *soname;
  int major, minor;
  int *archs, narchs; /* ascending, e.g. 75, 80, ..., 121; none: NVRTC decides */
} nvrtc_lib;

static int int_cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static bool nvrtc_open(const char *soname, nvrtc_lib *lib, char *why, size_t whylen) {
  void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (!h) return false;
#define X(name, ret, params)                                                    \
  if (!(nv.name = (sl_##name##_fn)dlsym(h, #name))) {                           \
    snprintf(why + strlen(why), whylen - strlen(why), "%s lacks %s; ", soname, #name); \
    dlclose(h);                                                                 \
    return false;                                                               \
  }
  SL_NVRTC_FUNCS(X)
#undef X
  memset(lib, 0, sizeof *lib);
  lib->soname = soname;
  nv.nvrtcVersion(&lib->major, &lib->minor);
  int n = 0;
  if (nv.nvrtcGetNumSupportedArchs(&n) == SL_NVRTC_SUCCESS && n > 0 && (lib->archs = calloc((size_t)n, sizeof(int))) &&
      nv.nvrtcGetSupportedArchs(lib->archs) == SL_NVRTC_SUCCESS) {
    lib->narchs = n;
    qsort(lib->archs, (size_t)n, sizeof(int), int_cmp);
  }
  return true; /* never closed: the library stays loaded for the process */
}

static nvrtc_lib nvrtc; /* the one in use (its entry points are in nv) */

/* Loads NVRTC for a driver of major version `major` (0: no driver, take the
 * newest): libnvrtc.so.M for the newest M <= major whose architectures
 * reach down to min_arch (the oldest device; CUDA 13 dropped sm_5x..sm_70),
 * else the newest one found. Returns 0 on success, else leaves a reason in why. */
static int nvrtc_load(int major, int min_arch, char *why, size_t whylen) {
  static const char *const known[] = SL_NVRTC_SONAMES; /* newest first */
  static char future[32];
  const char *names[8];
  int n = 0;
  int newest = atoi(known[0] + strlen("libnvrtc.so."));
  if (major > newest) { /* a driver newer than this code: its own NVRTC first */
    snprintf(future, sizeof future, "libnvrtc.so.%d", major);
    names[n++] = future;
  }
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (!major || atoi(known[i] + strlen("libnvrtc.so.")) <= major) names[n++] = known[i];
  char tried[256] = "";
  *why = '\0';
  nvrtc_lib first = {0}, lib;
  struct { /* the entry points of the first library found, in case none fits better */
#define X(name, ret, params) sl_##name##_fn name;
    SL_NVRTC_FUNCS(X)
#undef X
  } first_fns;
  for (int i = 0; i < n; i++) {
    size_t tl = strlen(tried);
    snprintf(tried + tl, sizeof tried - tl, "%s%s", tl ? ", " : "", names[i]);
    if (!nvrtc_open(names[i], &lib, why, whylen)) continue;
    if (!lib.narchs || lib.archs[0] <= min_arch) {
      nvrtc = lib;
      return 0;
    }
    if (!first.soname) {
      first = lib;
      memcpy(&first_fns, &nv, sizeof nv);
    } else free(lib.archs);
  }
  if (first.soname) {
    nvrtc = first;
    memcpy(&nv, &first_fns, sizeof nv);
    return 0;
  }
  size_t l = strlen(why);
  snprintf(why + l, whylen - l, "tried %s; install the CUDA toolkit's NVRTC (cuda-nvrtc-%d)", n ? tried : "nothing",
           major ? major : newest);
  return -1;
}

static void enumerate(void) {
  void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    snprintf(status_msg, sizeof status_msg, "libcuda.so.1 not found (no NVIDIA driver)");
    return;
  }
#define X(name, ret, params)                                                                                    \
  if (!(cu.name = (sl_##name##_fn)dlsym(h, #name))) {                                                           \
    snprintf(status_msg, sizeof status_msg, "libcuda.so.1 lacks %s: the NVIDIA driver is too old", #name);     \
    memset(&cu, 0, sizeof cu);                                                                                  \
    return;                                                                                                     \
  }
  SL_CUDA_DRIVER_FUNCS(X)
#undef X
  sl_CUresult r = cu.cuInit(0);
  if (r == SL_CUDA_ERROR_STUB_LIBRARY) {
    snprintf(status_msg, sizeof status_msg,
             "libcuda.so.1 is the CUDA toolkit's stub library, not an NVIDIA driver (CUDA_ERROR_STUB_LIBRARY)");
    return;
  }
  if (r == SL_CUDA_ERROR_NO_DEVICE) {
    snprintf(status_msg, sizeof status_msg, "no CUDA device (the NVIDIA driver found none)");
    return;
  }
  if (r != SL_CUDA_SUCCESS) {
    snprintf(status_msg, sizeof status_msg, "cuInit failed: %s (%d)", cu_error_name(r), (int)r);
    return;
  }
  cu.cuDriverGetVersion(&driver_version);
  if (driver_version < 12000) {
    snprintf(status_msg, sizeof status_msg,
             "the NVIDIA driver supports CUDA %d.%d; this backend needs a driver for CUDA 12 or newer",
             driver_version / 1000, driver_version % 1000 / 10);
    return;
  }
  int n = 0;
  r = cu.cuDeviceGetCount(&n);
  if (r != SL_CUDA_SUCCESS || n <= 0) {
    snprintf(status_msg, sizeof status_msg, "no CUDA device%s%s", r != SL_CUDA_SUCCESS ? ": cuDeviceGetCount failed: " : "",
             r != SL_CUDA_SUCCESS ? cu_error_name(r) : "");
    return;
  }
  cu_dev_ref *ds = calloc((size_t)n, sizeof *ds);
  if (!ds) {
    snprintf(status_msg, sizeof status_msg, "out of host memory");
    return;
  }
  int k = 0, min_arch = 1 << 30;
  for (int i = 0; i < n; i++) {
    cu_dev_ref *d = &ds[k];
    if (cu.cuDeviceGet(&d->dev, i) != SL_CUDA_SUCCESS) continue;
    if (cu.cuDeviceGetName(d->name, (int)sizeof d->name - 1, d->dev) != SL_CUDA_SUCCESS)
      snprintf(d->name, sizeof d->name, "CUDA device %d", i);
    cu.cuDeviceGetAttribute(&d->sm_count, SL_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, d->dev);
    cu.cuDeviceGetAttribute(&d->cc_major, SL_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, d->dev);
    cu.cuDeviceGetAttribute(&d->cc_minor, SL_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, d->dev);
    cu.cuDeviceGetAttribute(&d->max_threads, SL_CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, d->dev);
    cu.cuDeviceGetAttribute(&d->smem_optin, SL_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, d->dev);
    cu.cuDeviceGetAttribute(&d->integrated, SL_CU_DEVICE_ATTRIBUTE_INTEGRATED, d->dev);
    cu.cuDeviceTotalMem_v2(&d->mem, d->dev);
    if (d->cc_major * 10 + d->cc_minor < min_arch) min_arch = d->cc_major * 10 + d->cc_minor;
    k++;
  }
  if (k == 0) {
    free(ds);
    snprintf(status_msg, sizeof status_msg, "no CUDA device (cuDeviceGet failed)");
    return;
  }
  char why[256] = "";
  if (nvrtc_load(driver_version / 1000, min_arch, why, sizeof why) != 0) {
    free(ds);
    snprintf(status_msg, sizeof status_msg, "%d CUDA device(s), but no usable NVRTC to compile kernels: %s", k, why);
    return;
  }
  /* keep the devices NVRTC can compile for (cuda:N counts these) */
  int kept = 0;
  for (int i = 0; i < k; i++)
    if (!nvrtc.narchs || ds[i].cc_major * 10 + ds[i].cc_minor >= nvrtc.archs[0]) ds[kept++] = ds[i];
  if (kept == 0) {
    snprintf(status_msg, sizeof status_msg,
             "%d CUDA device(s) of sm_%d, but %s compiles for sm_%d..sm_%d only: install an older NVRTC (cuda-nvrtc-12)",
             k, min_arch, nvrtc.soname, nvrtc.archs[0], nvrtc.archs[nvrtc.narchs - 1]);
    free(ds);
    return;
  }
  devices = ds;
  ndevices = kept;
}

static int cu_device_count(void) {
  pthread_once(&enumerate_once, enumerate);
  return ndevices;
}

static const char *cu_status(void) {
  pthread_once(&enumerate_once, enumerate);
  return status_msg;
}

static int cu_device_info(int index, sloth_device_info *out) {
  pthread_once(&enumerate_once, enumerate);
  if (index < 0 || index >= ndevices) return sloth__fail(SLOTH_E_INVALID, "no CUDA device %d", index);
  const cu_dev_ref *d = &devices[index];
  memset(out, 0, sizeof *out);
  snprintf(out->backend, sizeof out->backend, "cuda");
  out->index = index;
  snprintf(out->name, sizeof out->name, "%s", d->name);
  snprintf(out->vendor, sizeof out->vendor, "NVIDIA");
  snprintf(out->version, sizeof out->version, "CUDA driver %d.%d, NVRTC %d.%d, sm_%d%d", driver_version / 1000,
           driver_version % 1000 / 10, nvrtc.major, nvrtc.minor, d->cc_major, d->cc_minor);
  out->is_gpu = 1;
  out->compute_units = d->sm_count;
  out->fp16 = d->cc_major * 10 + d->cc_minor >= 53;
  out->fp64 = 1;
  out->global_mem_bytes = d->mem;
  out->max_alloc_bytes = d->mem; /* CUDA has no per-allocation limit below the memory size */
  return SLOTH_OK;
}

/* ------------------------------------------------------------------ lifetime */

struct sloth__device {
  sl_CUdevice dev;
  sl_CUcontext ctx;
  sl_CUstream stream;
  int arch;       /* compute capability as 10 * major + minor */
  int cubin_arch; /* sm_XY NVRTC can build a CUBIN for; 0 once CUBINs failed */
  int ptx_arch;   /* compute_XY for the PTX fallback; 0 if NVRTC knows none <= arch */
  int max_threads, smem_optin;
  sl_cublasHandle_t blas; /* created on the first GEMM */
};

struct sloth__kernel {
  sl_CUmodule module;
  sl_CUfunction function;
  size_t smem_allowed; /* dynamic shared memory the function was opted in to */
};

/* sloth__buffer is the CUdeviceptr itself */
static sl_CUdeviceptr dptr(const sloth__buffer *b) { return (sl_CUdeviceptr)(uintptr_t)b; }

/* Makes the device's context current on this thread (the lock serializes
 * Sloth's calls, but they may come from any thread). */
static int ctx_enter(sloth__device *dev) {
  sl_CUcontext cur = NULL;
  if (cu.cuCtxGetCurrent(&cur) == SL_CUDA_SUCCESS && cur == dev->ctx) return SLOTH_OK;
  sl_CUresult r = cu.cuCtxSetCurrent(dev->ctx);
  return r == SL_CUDA_SUCCESS ? SLOTH_OK : CU_FAIL(SLOTH_E_DEVICE, r, "cuCtxSetCurrent");
}

static int cu_open(int index, sloth__device **out) {
  pthread_once(&enumerate_once, enumerate);
  if (index < 0 || index >= ndevices)
    return sloth__fail(SLOTH_E_DEVICE, "no CUDA device %d%s%s", index, *status_msg ? ": " : "", status_msg);
  const cu_dev_ref *d = &devices[index];
  sloth__device *dev = sloth__xcalloc(1, sizeof *dev);
  if (!dev) return SLOTH_E_NOMEM;
  dev->dev = d->dev;
  dev->arch = d->cc_major * 10 + d->cc_minor;
  dev->max_threads = d->max_threads > 0 ? d->max_threads : 1024;
  dev->smem_optin = d->smem_optin;
  /* CUBIN for the exact architecture if NVRTC knows it; PTX for the newest
   * one it knows that the device can run (enumeration kept only devices
   * NVRTC can compile for) */
  for (int i = 0; i < nvrtc.narchs; i++) {
    if (nvrtc.archs[i] == dev->arch) dev->cubin_arch = dev->arch;
    if (nvrtc.archs[i] <= dev->arch && nvrtc.archs[i] > dev->ptx_arch) dev->ptx_arch = nvrtc.archs[i];
  }
  if (!nvrtc.narchs) dev->cubin_arch = dev->ptx_arch = dev->arch; /* no list: let NVRTC decide */
  sl_CUresult r = cu.cuDevicePrimaryCtxRetain(&dev->ctx, dev->dev);
  if (r != SL_CUDA_SUCCESS) {
    free(dev);
    return CU_FAIL(SLOTH_E_DEVICE, r, "cuDevicePrimaryCtxRetain");
  }
  int rc = ctx_enter(dev);
  if (rc == SLOTH_OK) {
    /* non-blocking: no implicit synchronization with other code's work on the legacy default stream */
    r = cu.cuStreamCreate(&dev->stream, SL_CU_STREAM_NON_BLOCKING);
    if (r != SL_CUDA_SUCCESS) rc = CU_FAIL(SLOTH_E_DEVICE, r, "cuStreamCreate");
  }
  if (rc != SLOTH_OK) {
    cu.cuDevicePrimaryCtxRelease_v2(dev->dev);
    free(dev);
    return rc;
  }
  *out = dev;
  return SLOTH_OK;
}

static struct {
#define X(name, ret, params) sl_##name##_fn name;
  SL_CUBLAS_FUNCS(X)
#undef X
} blas;

static void cu_close(sloth__device *dev) {
  if (ctx_enter(dev) == SLOTH_OK) {
    cu.cuStreamSynchronize(dev->stream);
    if (dev->blas) blas.cublasDestroy_v2(dev->blas);
    cu.cuStreamDestroy_v2(dev->stream);
    cu.cuCtxSynchronize();
    cu.cuCtxSetCurrent(NULL); /* releasing the primary context does not unbind it */
  }
  cu.cuDevicePrimaryCtxRelease_v2(dev->dev);
  free(dev);
}

/* ------------------------------------------------------------------ memory */

static int cu_alloc(sloth__device *dev, size_t bytes, sloth__buffer **out) {
  int rc = ctx_enter(dev);
  if (rc != SLOTH_OK) return rc;
  sl_CUdeviceptr p = 0;
  sl_CUresult r = cu.cuMemAlloc_v2(&p, bytes);
  if (r != SL_CUDA_SUCCESS) return CU_FAIL(cu_status_of(r, SLOTH_E_DEVICE), r, "cuMemAlloc");
  *out = (sloth__buffer *)(uintptr_t)p;
  return SLOTH_OK;
}

static void cu_free(sloth__device *dev, sloth__buffer *buf) {
  if (!buf || ctx_enter(dev) != SLOTH_OK) return;
  /* the pool gives buffers back right after enqueuing the kernels that use
   * them: let those finish before the memory can be handed out again */
  cu.cuStreamSynchronize(dev->stream);
  cu.cuMemFree_v2(dptr(buf));
}

static int cu_write(sloth__device *dev, sloth__buffer *buf, size_t off, const void *src, size_t bytes) {
  int rc = ctx_enter(dev);
  if (rc != SLOTH_OK || bytes == 0) return rc;
  sl_CUresult r = cu.cuMemcpyHtoDAsync_v2(dptr(buf) + off, src, bytes, dev->stream);
  if (r != SL_CUDA_SUCCESS) return CU_FAIL(SLOTH_E_DEVICE, r, "cuMemcpyHtoDAsync");
  /* blocking, so that src may be reused (also when it is page-locked) */
  r = cu.cuStreamSynchronize(dev->stream);
  return r == SL_CUDA_SUCCESS ? SLOTH_OK : CU_FAIL(SLOTH_E_DEVICE, r, "cuStreamSynchronize (after a write)");
}

static int cu_read(sloth__device *dev, sloth__buffer *buf, size_t off, void *dst, size_t bytes) {
  int rc = ctx_enter(dev);
  if (rc != SLOTH_OK || bytes == 0) return rc;
  sl_CUresult r = cu.cuMemcpyDtoHAsync_v2(dst, dptr(buf) + off, bytes, dev->stream);
  if (r != SL_CUDA_SUCCESS) return CU_FAIL(SLOTH_E_DEVICE, r, "cuMemcpyDtoHAsync");
  r = cu.cuStreamSynchronize(dev->stream);
  return r == SL_CUDA_SUCCESS ? SLOTH_OK : CU_FAIL(SLOTH_E_DEVICE, r, "cuStreamSynchronize (after a read)");
}

/* ------------------------------------------------------------------ kernels */

/* Splits space-separated options into argv (in place in a copy). */
static int split_options(char *s, const char **argv, int max) {
  int n = 0;
  for (char *p = s; *p && n < max;) {
    while (*p == ' ' || *p == '\t' || *p == '\n') *p++ = '\0';
    if (!*p) break;
    argv[n++] = p;
    while (*p && *p != ' ' && *p != '\t' && *p != '\n') p++;
  }
  return n;
}

/* Compiles source with NVRTC for `arch` to a CUBIN (cubin) or PTX. On
 * success *image holds it (malloc'd). On failure returns the NVRTC result
 * and, for a compile error, has recorded SLOTH_E_COMPILE with the log. */
static sl_nvrtcResult nvrtc_build(const char *source, const char *name, const char *options, int arch, bool cubin,
                                  char **image) {
  *image = NULL;
  char archopt[48];
  snprintf(archopt, sizeof archopt, "--gpu-architecture=%s_%d", cubin ? "sm" : "compute", arch);
  static const char *const fixed[] = SL_NVRTC_OPTIONS;
  const char *argv[64];
  int argc = 0;
  argv[argc++] = archopt;
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) argv[argc++] = fixed[i];
  char *opts = options ? strdup(options) : NULL; /* SLOTH_BUILD_OPTIONS */
  if (opts) argc += split_options(opts, argv + argc, 64 - argc);
  sl_nvrtcProgram prog = NULL;
  sl_nvrtcResult r = nv.nvrtcCreateProgram(&prog, source, "sloth_kernel.cu", 0, NULL, NULL);
  if (r != SL_NVRTC_SUCCESS) {
    free(opts);
    sloth__fail(SLOTH_E_COMPILE, "CUDA: nvrtcCreateProgram failed: %s", nv.nvrtcGetErrorString(r));
    return r;
  }
  r = nv.nvrtcCompileProgram(prog, argc, argv);
  if (r != SL_NVRTC_SUCCESS) {
    size_t len = 0;
    char *log = NULL;
    if (nv.nvrtcGetProgramLogSize(prog, &len) == SL_NVRTC_SUCCESS && (log = calloc(len + 1, 1)))
      nv.nvrtcGetProgramLog(prog, log);
    sloth__fail(SLOTH_E_COMPILE, "CUDA: NVRTC (%s) failed to compile kernel %s for %s: %s\n--- build log ---\n%s",
                nvrtc.soname, name, archopt + strlen("--gpu-architecture="), nv.nvrtcGetErrorString(r),
                log && *log ? log : "(no log)");
    free(log);
  } else {
    size_t size = 0;
    r = cubin ? nv.nvrtcGetCUBINSize(prog, &size) : nv.nvrtcGetPTXSize(prog, &size);
    if (r == SL_NVRTC_SUCCESS && size == 0) r = SL_NVRTC_ERROR_INVALID_OPTION; /* e.g. no CUBIN for a compute_ target */
    if (r == SL_NVRTC_SUCCESS && !(*image = malloc(size))) r = 1;                /* NVRTC_ERROR_OUT_OF_MEMORY */
    if (r == SL_NVRTC_SUCCESS) r = cubin ? nv.nvrtcGetCUBIN(prog, *image) : nv.nvrtcGetPTX(prog, *image);
    if (r != SL_NVRTC_SUCCESS) {
      free(*image);
      *image = NULL;
      sloth__fail(SLOTH_E_COMPILE, "CUDA: NVRTC could not return the %s of kernel %s: %s", cubin ? "CUBIN" : "PTX", name,
                  nv.nvrtcGetErrorString(r));
    }
  }
  nv.nvrtcDestroyProgram(&prog);
  free(opts);
  return r;
}

/* Loads a CUBIN or PTX image and finds the kernel. */
static int load_module(const char *image, const char *name, bool ptx, sloth__kernel *k, sl_CUresult *res) {
  char log[4096] = "";
  sl_CUjit_option opt[2] = {SL_CU_JIT_ERROR_LOG_BUFFER, SL_CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
  void *val[2] = {log, (void *)(uintptr_t)(sizeof log - 1)};
  sl_CUresult r = cu.cuModuleLoadDataEx(&k->module, image, 2, opt, val);
  *res = r;
  if (r != SL_CUDA_SUCCESS)
    return sloth__fail(cu_status_of(r, SLOTH_E_COMPILE), "CUDA: cuModuleLoadDataEx (%s of kernel %s) failed: %s (%d)%s%s%s",
                       ptx ? "PTX" : "CUBIN", name, cu_error_name(r), (int)r,
                       r == SL_CUDA_ERROR_UNSUPPORTED_PTX_VERSION ? " (NVRTC is newer than the driver)" : "",
                       *log ? "\n--- JIT log ---\n" : "", log);
  r = cu.cuModuleGetFunction(&k->function, k->module, name);
  if (r != SL_CUDA_SUCCESS) {
    cu.cuModuleUnload(k->module);
    k->module = NULL;
    *res = r;
    return CU_FAIL(SLOTH_E_COMPILE, r, "cuModuleGetFunction");
  }
  return SLOTH_OK;
}

static int cu_compile(sloth__device *dev, const char *source, const char *name, const char *options,
                      sloth__kernel **out) {
  int rc = ctx_enter(dev);
  if (rc != SLOTH_OK) return rc;
  sloth__kernel *k = sloth__xcalloc(1, sizeof *k);
  if (!k) return SLOTH_E_NOMEM;
  char *image = NULL;
  sl_CUresult res = SL_CUDA_SUCCESS;
  rc = SLOTH_E_COMPILE;
  if (dev->cubin_arch) {
    sl_nvrtcResult r = nvrtc_build(source, name, options, dev->cubin_arch, true, &image);
    if (r == SL_NVRTC_ERROR_COMPILATION) { /* an error in the source: PTX would fail the same way */
      free(k);
      return SLOTH_E_COMPILE;
    }
    if (r == SL_NVRTC_SUCCESS) rc = load_module(image, name, false, k, &res);
    free(image);
    image = NULL;
    if (rc != SLOTH_OK && res == SL_CUDA_ERROR_OUT_OF_MEMORY) {
      free(k);
      return rc;
    }
  }
  if (rc != SLOTH_OK && dev->ptx_arch) {
    char first[512] = ""; /* the first line of why the CUBIN failed */
    if (dev->cubin_arch) snprintf(first, sizeof first, "%.*s", (int)strcspn(sloth_last_error(), "\n"), sloth_last_error());
    sl_nvrtcResult r = nvrtc_build(source, name, options, dev->ptx_arch, false, &image);
    if (r == SL_NVRTC_SUCCESS) rc = load_module(image, name, true, k, &res);
    free(image);
    if (rc == SLOTH_OK) dev->cubin_arch = 0; /* CUBINs do not work here: go straight to PTX from now on */
    else if (*first) {
      char second[12288];
      snprintf(second, sizeof second, "%s", sloth_last_error());
      sloth__fail(SLOTH_E_COMPILE, "%s\n(PTX was the fallback after: %s)", second, first);
    }
  }
  if (rc != SLOTH_OK) {
    free(k);
    return rc == SLOTH_E_NOMEM ? rc : SLOTH_E_COMPILE;
  }
  *out = k;
  return SLOTH_OK;
}

static void cu_kernel_free(sloth__device *dev, sloth__kernel *k) {
  if (ctx_enter(dev) == SLOTH_OK) cu.cuModuleUnload(k->module);
  free(k);
}

static int cu_launch(sloth__device *dev, sloth__kernel *k, const sloth__launch *geom, int nargs, const sloth__karg *args) {
  if (geom->local == 0 || geom->global % geom->local)
    return sloth__fail(SLOTH_E_INVALID, "CUDA: launch of %zu threads in blocks of %zu", geom->global, geom->local);
  size_t blocks = geom->global / geom->local;
  if (blocks > 0x7fffffff || geom->local > (size_t)dev->max_threads)
    return sloth__fail(SLOTH_E_UNSUPPORTED, "CUDA: launch of %zu blocks of %zu threads exceeds the device's limits",
                       blocks, geom->local);
  int rc = ctx_enter(dev);
  if (rc != SLOTH_OK) return rc;
  /* dynamic shared memory beyond the default 48 KiB needs an opt-in per function */
  if (geom->local_mem > 48 * 1024 && geom->local_mem > k->smem_allowed) {
    if (geom->local_mem > (size_t)dev->smem_optin)
      return sloth__fail(SLOTH_E_UNSUPPORTED, "CUDA: %zu bytes of shared memory exceed the device's %d", geom->local_mem,
                         dev->smem_optin);
    sl_CUresult r = cu.cuFuncSetAttribute(k->function, SL_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                          (int)geom->local_mem);
    if (r != SL_CUDA_SUCCESS) return CU_FAIL(SLOTH_E_DEVICE, r, "cuFuncSetAttribute");
    k->smem_allowed = geom->local_mem;
  }
  /* kernelParams: one pointer per parameter, to its value (read during the call) */
  void *pstack[64];
  sl_CUdeviceptr dstack[64];
  void **params = nargs <= 64 ? pstack : malloc((size_t)nargs * sizeof *params);
  sl_CUdeviceptr *ptrs = nargs <= 64 ? dstack : malloc((size_t)nargs * sizeof *ptrs);
  if (!params || !ptrs) {
    if (params != pstack) free(params);
    if (ptrs != dstack) free(ptrs);
    return sloth__fail(SLOTH_E_NOMEM, "out of host memory (launch)");
  }
  for (int i = 0; i < nargs; i++) {
    if (args[i].kind == KARG_BUFFER) {
      ptrs[i] = dptr(args[i].buffer); /* NULL (an unused zero-size operand) gives 0 */
      params[i] = &ptrs[i];
    } else {
      params[i] = (void *)args[i].value;
    }
  }
  /* geom->local_mem is the dynamic shared memory (`extern __shared__ uchar scratch[]`), not an argument */
  sl_CUresult r = cu.cuLaunchKernel(k->function, (unsigned)blocks, 1, 1, (unsigned)geom->local, 1, 1,
                                    (unsigned)geom->local_mem, dev->stream, params, NULL);
  if (params != pstack) free(params);
  if (ptrs != dstack) free(ptrs);
  return r == SL_CUDA_SUCCESS ? SLOTH_OK : CU_FAIL(cu_status_of(r, SLOTH_E_DEVICE), r, "cuLaunchKernel");
}

/* ------------------------------------------------------------------ GEMM (cuBLAS) */

static char blas_status[384];
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void blas_load(void) {
  static const char *const known[] = SL_CUBLAS_SONAMES; /* newest first */
  int major = driver_version / 1000;
  char tried[128] = "";
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
    if (atoi(known[i] + strlen("libcublas.so.")) > major) continue; /* cuBLAS M needs a driver for CUDA M */
    size_t tl = strlen(tried);
    snprintf(tried + tl, sizeof tried - tl, "%s%s", tl ? ", " : "", known[i]);
    void *h = dlopen(known[i], RTLD_NOW | RTLD_LOCAL);
    if (!h) continue;
    const char *missing = NULL;
#define X(name, ret, params) \
  if (!missing && !(blas.name = (sl_##name##_fn)dlsym(h, #name))) missing = #name;
    SL_CUBLAS_FUNCS(X)
#undef X
    if (!missing) return;
    snprintf(blas_status, sizeof blas_status, "%s lacks %s", known[i], missing);
    memset(&blas, 0, sizeof blas);
    dlclose(h);
  }
  if (!*blas_status)
    snprintf(blas_status, sizeof blas_status, "cuBLAS not found (tried %s); install the CUDA toolkit's cuBLAS (libcublas-%d)",
             tried[0] ? tried : "nothing", major);
}

static int blas_fail(sl_cublasStatus_t st, const char *what) {
  return sloth__fail(st == SL_CUBLAS_STATUS_ALLOC_FAILED ? SLOTH_E_NOMEM : SLOTH_E_DEVICE, "CUDA: %s failed: %s (%u)", what,
                     blas.cublasGetStatusName(st), st);
}

/* element `offset` of a buffer of es-byte elements */
static void *eptr(sloth__buffer *b, size_t offset, size_t es) { return (char *)(uintptr_t)dptr(b) + offset * es; }

/* The batches are evenly spaced: one stride (>= 0: 0 for a broadcast
 * operand; cuBLAS documents no negative ones) describes them all. */
static bool evenly(const size_t *offsets, size_t batch, long long *stride) {
  *stride = batch > 1 ? (long long)offsets[1] - (long long)offsets[0] : 0;
  if (*stride < 0) return false;
  for (size_t i = 1; i < batch; i++)
    if ((long long)offsets[i] - (long long)offsets[i - 1] != *stride) return false;
  return true;
}

/* f32 (Sgemm), f64 (Dgemm) and f16 (GemmEx: f16 operands, f32 accumulation,
 * on devices of compute capability 5.3 and up). */
static bool cu_gemm_dtype(sloth__device *dev, sloth_dtype dt) {
  return dt == SLOTH_F32 || dt == SLOTH_F64 || (dt == SLOTH_F16 && dev->arch >= 53);
}

/* One cuBLAS call: one matrix (batch 0), or the strided-batched form with
 * `batch` matrices. Row-major C = op(A) op(B) is column-major C^T = op(B)^T
 * op(A)^T: the buffers as they are, B first, m and n swapped. */
static sl_cublasStatus_t blas_call(sloth__device *dev, const sloth__gemm *g, sl_cublasOperation_t ta, sl_cublasOperation_t tb,
                                   void *A, void *B, void *C, long long sa, long long sb, long long sc, int batch,
                                   const char **what) {
  int m = (int)g->m, n = (int)g->n, k = (int)g->k, lda = (int)g->lda, ldb = (int)g->ldb, ldc = (int)g->ldc;
  if (g->dtype == SLOTH_F64) {
    const double alpha = g->alpha, beta = g->beta;
    *what = batch ? "cublasDgemmStridedBatched" : "cublasDgemm";
    return batch ? blas.cublasDgemmStridedBatched(dev->blas, tb, ta, n, m, k, &alpha, B, ldb, sb, A, lda, sa, &beta, C, ldc,
                                                  sc, batch)
                 : blas.cublasDgemm_v2(dev->blas, tb, ta, n, m, k, &alpha, B, ldb, A, lda, &beta, C, ldc);
  }
  const float alpha = (float)g->alpha, beta = (float)g->beta;
  if (g->dtype == SLOTH_F16) {
    *what = batch ? "cublasGemmStridedBatchedEx" : "cublasGemmEx";
    return batch ? blas.cublasGemmStridedBatchedEx(dev->blas, tb, ta, n, m, k, &alpha, B, SL_CUDA_R_16F, ldb, sb, A,
                                                   SL_CUDA_R_16F, lda, sa, &beta, C, SL_CUDA_R_16F, ldc, sc, batch,
                                                   SL_CUBLAS_COMPUTE_32F, SL_CUBLAS_GEMM_DEFAULT)
                 : blas.cublasGemmEx(dev->blas, tb, ta, n, m, k, &alpha, B, SL_CUDA_R_16F, ldb, A, SL_CUDA_R_16F, lda, &beta,
                                     C, SL_CUDA_R_16F, ldc, SL_CUBLAS_COMPUTE_32F, SL_CUBLAS_GEMM_DEFAULT);
  }
  *what = batch ? "cublasSgemmStridedBatched" : "cublasSgemm";
  return batch ? blas.cublasSgemmStridedBatched(dev->blas, tb, ta, n, m, k, &alpha, B, ldb, sb, A, lda, sa, &beta, C, ldc, sc,
                                                batch)
               : blas.cublasSgemm_v2(dev->blas, tb, ta, n, m, k, &alpha, B, ldb, A, lda, &beta, C, ldc);
}

static int cu_gemm(sloth__device *dev, const sloth__gemm *g, sloth__buffer *a, sloth__buffer *b, sloth__buffer *c) {
  if (!cu_gemm_dtype(dev, g->dtype))
    return sloth__fail(SLOTH_E_UNSUPPORTED, "cuBLAS GEMM: dtype %s not supported", sloth_dtype_name(g->dtype));
  if (g->m == 0 || g->n == 0 || g->batch == 0) return SLOTH_OK;
  int rc = ctx_enter(dev);
  if (rc != SLOTH_OK) return rc;
  const size_t es = sloth_dtype_size(g->dtype);
  if (g->k == 0) { /* an empty sum: C = beta * C = 0 (C is contiguous: batch * m * n) */
    if (g->beta != 0) return sloth__fail(SLOTH_E_UNSUPPORTED, "cuBLAS GEMM: k = 0 with beta != 0");
    sl_CUresult r = g->dtype == SLOTH_F32
                        ? cu.cuMemsetD32Async(dptr(c) + g->c_offsets[0] * es, 0, g->batch * g->m * g->n, dev->stream)
                        : cu.cuMemsetD8Async(dptr(c) + g->c_offsets[0] * es, 0, g->batch * g->m * g->n * es, dev->stream);
    return r == SL_CUDA_SUCCESS ? SLOTH_OK : CU_FAIL(SLOTH_E_DEVICE, r, "cuMemsetD*Async");
  }
  if (g->m > INT32_MAX || g->n > INT32_MAX || g->k > INT32_MAX || g->lda > INT32_MAX || g->ldb > INT32_MAX ||
      g->ldc > INT32_MAX || g->batch > INT32_MAX)
    return sloth__fail(SLOTH_E_UNSUPPORTED, "cuBLAS GEMM: a dimension exceeds 2^31 - 1");
  pthread_once(&blas_once, blas_load);
  if (!blas.cublasCreate_v2) return sloth__fail(SLOTH_E_UNSUPPORTED, "CUDA: no GEMM: %s", blas_status);
  if (!dev->blas) {
    sl_cublasStatus_t st = blas.cublasCreate_v2(&dev->blas);
    if (st != SL_CUBLAS_STATUS_SUCCESS) {
      dev->blas = NULL;
      return blas_fail(st, "cublasCreate");
    }
    st = blas.cublasSetStream_v2(dev->blas, dev->stream);
    if (st != SL_CUBLAS_STATUS_SUCCESS) return blas_fail(st, "cublasSetStream");
  }
  sl_cublasOperation_t ta = g->trans_a ? SL_CUBLAS_OP_T : SL_CUBLAS_OP_N;
  sl_cublasOperation_t tb = g->trans_b ? SL_CUBLAS_OP_T : SL_CUBLAS_OP_N;
  long long sa, sb, sc;
  const char *what = "cuBLAS GEMM";
  sl_cublasStatus_t st;
  if (g->batch == 1)
    st = blas_call(dev, g, ta, tb, eptr(a, g->a_offsets[0], es), eptr(b, g->b_offsets[0], es), eptr(c, g->c_offsets[0], es),
                   0, 0, 0, 0, &what);
  else if (evenly(g->a_offsets, g->batch, &sa) && evenly(g->b_offsets, g->batch, &sb) && evenly(g->c_offsets, g->batch, &sc))
    st = blas_call(dev, g, ta, tb, eptr(a, g->a_offsets[0], es), eptr(b, g->b_offsets[0], es), eptr(c, g->c_offsets[0], es),
                   sa, sb, sc, (int)g->batch, &what);
  else { /* irregular batches: one call each, in order on the stream */
    st = SL_CUBLAS_STATUS_SUCCESS;
    for (size_t i = 0; i < g->batch && st == SL_CUBLAS_STATUS_SUCCESS; i++)
      st = blas_call(dev, g, ta, tb, eptr(a, g->a_offsets[i], es), eptr(b, g->b_offsets[i], es), eptr(c, g->c_offsets[i], es),
                     0, 0, 0, 0, &what);
  }
  return st == SL_CUBLAS_STATUS_SUCCESS ? SLOTH_OK : blas_fail(st, what);
}

static int cu_finish(sloth__device *dev) {
  int rc = ctx_enter(dev);
  if (rc != SLOTH_OK) return rc;
  sl_CUresult r = cu.cuStreamSynchronize(dev->stream);
  return r == SL_CUDA_SUCCESS ? SLOTH_OK : CU_FAIL(SLOTH_E_DEVICE, r, "cuStreamSynchronize");
}

const sloth__backend sloth__cuda_backend = {
    .name = "cuda",
    .dialect = DIALECT_CUDA,
    .device_count = cu_device_count,
    .device_info = cu_device_info,
    .status = cu_status,
    .open = cu_open,
    .close = cu_close,
    .alloc = cu_alloc,
    .free = cu_free,
    .write = cu_write,
    .read = cu_read,
    .compile = cu_compile,
    .kernel_free = cu_kernel_free,
    .launch = cu_launch,
    .finish = cu_finish,
    .gemm = cu_gemm,
    .gemm_dtype = cu_gemm_dtype,
};
