/* fake_libcuda.c - a stand-in libcuda.so.1 for testing the CUDA backend on a
 * machine without a GPU (tests only; never installed).
 *
 * It implements exactly the driver entry points of cuda_api.h, with the
 * checks a real driver makes that matter to the backend: a current context
 * on the calling thread for every call that needs one, a retained primary
 * context, valid streams, device pointers that were allocated and copies
 * within them, dynamic shared memory within the limit or opted in, block
 * sizes within the device's. Device memory is host memory. Modules are the
 * images fake_nvrtc.c makes: a header naming a host shared object built from
 * the kernel's CUDA C, whose launcher runs the grid on the CPU.
 *
 * Knobs (environment):
 *   FAKECUDA_MODE=stub|nodevice|old   cuInit answers CUDA_ERROR_STUB_LIBRARY,
 *                                     CUDA_ERROR_NO_DEVICE, or the driver is CUDA 11.8
 *   FAKECUDA_DRIVER=12040             the version cuDriverGetVersion reports (default 13000)
 *   FAKECUDA_REJECT_CUBIN=1           CUBIN images fail to load (CUDA_ERROR_NO_BINARY_FOR_GPU)
 *   FAKECUDA_CC=86                    the compute capability (default 8.6)
 */
#define _GNU_SOURCE
#include "../cuda_api.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define X(name, ret, params) __attribute__((visibility("default"))) ret name params;
SL_CUDA_DRIVER_FUNCS(X)
#undef X

#define E_INVALID_VALUE 1u
#define E_INVALID_DEVICE 101u
#define E_INVALID_CONTEXT 201u
#define E_INVALID_HANDLE 400u
#define E_NOT_FOUND 500u
#define E_LAUNCH_OUT_OF_RESOURCES 701u

#define NDEV 2
#define SMEM_DEFAULT (48 * 1024)
#define SMEM_OPTIN 101376

struct CUctx_st {
  int device, refcount;
};
struct CUstream_st {
  unsigned magic;
  struct CUctx_st *ctx;
};
struct CUmod_st {
  unsigned magic;
  void *so;
  int fd;
};
struct CUfunc_st {
  struct CUmod_st *mod;
  int (*launch)(unsigned, unsigned, size_t, void **, int (*)(const void *));
  int smem_allowed;
};

typedef struct alloc {
  char *p;
  size_t n;
  struct alloc *next;
} alloc;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int initialized;
static struct CUctx_st primary[NDEV];
static _Thread_local struct CUctx_st *current;
static alloc *allocs;

static const char *env(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

static int cc(void) { return env("FAKECUDA_CC") ? atoi(env("FAKECUDA_CC")) : 86; }

/* a live, retained context current on this thread */
static sl_CUresult need_ctx(void) {
  if (!initialized) return SL_CUDA_ERROR_NOT_INITIALIZED;
  if (!current) return E_INVALID_CONTEXT;
  if (current->refcount <= 0) return E_INVALID_CONTEXT; /* released primary context */
  return SL_CUDA_SUCCESS;
}

/* [p, p+n) inside one allocation */
static int valid_range(sl_CUdeviceptr p, size_t n) {
  for (alloc *a = allocs; a; a = a->next)
    if ((uintptr_t)p >= (uintptr_t)a->p && (uintptr_t)p + n <= (uintptr_t)a->p + a->n) return 1;
  return 0;
}

/* a pointer kernel argument: NULL or the start of an allocation */
static int valid_arg(const void *p) {
  if (!p) return 1;
  for (alloc *a = allocs; a; a = a->next)
    if (a->p == p) return 1;
  return 0;
}

sl_CUresult cuInit(unsigned int flags) {
  const char *mode = env("FAKECUDA_MODE");
  if (flags != 0) return E_INVALID_VALUE;
  if (mode && strcmp(mode, "stub") == 0) return SL_CUDA_ERROR_STUB_LIBRARY;
  if (mode && strcmp(mode, "nodevice") == 0) return SL_CUDA_ERROR_NO_DEVICE;
  initialized = 1;
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuDriverGetVersion(int *v) {
  if (!v) return E_INVALID_VALUE;
  const char *mode = env("FAKECUDA_MODE");
  *v = mode && strcmp(mode, "old") == 0 ? 11080 : env("FAKECUDA_DRIVER") ? atoi(env("FAKECUDA_DRIVER")) : 13000;
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuGetErrorName(sl_CUresult e, const char **s) {
  switch (e) {
  case 0: *s = "CUDA_SUCCESS"; break;
  case E_INVALID_VALUE: *s = "CUDA_ERROR_INVALID_VALUE"; break;
  case SL_CUDA_ERROR_NOT_INITIALIZED: *s = "CUDA_ERROR_NOT_INITIALIZED"; break;
  case E_INVALID_CONTEXT: *s = "CUDA_ERROR_INVALID_CONTEXT"; break;
  case E_INVALID_HANDLE: *s = "CUDA_ERROR_INVALID_HANDLE"; break;
  case E_NOT_FOUND: *s = "CUDA_ERROR_NOT_FOUND"; break;
  case SL_CUDA_ERROR_NO_BINARY_FOR_GPU: *s = "CUDA_ERROR_NO_BINARY_FOR_GPU"; break;
  case E_LAUNCH_OUT_OF_RESOURCES: *s = "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES"; break;
  default: *s = NULL; return E_INVALID_VALUE;
  }
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuDeviceGetCount(int *n) {
  if (!initialized) return SL_CUDA_ERROR_NOT_INITIALIZED;
  *n = NDEV;
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuDeviceGet(sl_CUdevice *d, int ordinal) {
  if (!initialized) return SL_CUDA_ERROR_NOT_INITIALIZED;
  if (ordinal < 0 || ordinal >= NDEV) return E_INVALID_DEVICE;
  *d = ordinal;
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuDeviceGetName(char *name, int len, sl_CUdevice d) {
  if (!initialized) return SL_CUDA_ERROR_NOT_INITIALIZED;
  if (d < 0 || d >= NDEV) return E_INVALID_DEVICE;
  snprintf(name, (size_t)len, "Sloth emulated GPU %d", d);
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuDeviceGetAttribute(int *v, sl_CUdevice_attribute a, sl_CUdevice d) {
  if (!initialized) return SL_CUDA_ERROR_NOT_INITIALIZED;
  if (d < 0 || d >= NDEV) return E_INVALID_DEVICE;
  switch (a) {
  case SL_CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *v = 1024; break;
  case SL_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *v = 4 + d; break;
  case SL_CU_DEVICE_ATTRIBUTE_INTEGRATED: *v = 0; break;
  case SL_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *v = cc() / 10; break;
  case SL_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *v = cc() % 10; break;
  case SL_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: *v = SMEM_OPTIN; break;
  default: return E_INVALID_VALUE;
  }
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuDeviceTotalMem_v2(size_t *bytes, sl_CUdevice d) {
  if (!initialized) return SL_CUDA_ERROR_NOT_INITIALIZED;
  if (d < 0 || d >= NDEV) return E_INVALID_DEVICE;
  *bytes = (size_t)1 << 30;
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuDevicePrimaryCtxRetain(sl_CUcontext *c, sl_CUdevice d) {
  if (!initialized) return SL_CUDA_ERROR_NOT_INITIALIZED;
  if (d < 0 || d >= NDEV) return E_INVALID_DEVICE;
  pthread_mutex_lock(&lock);
  primary[d].device = d;
  primary[d].refcount++;
  pthread_mutex_unlock(&lock);
  *c = &primary[d];
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuDevicePrimaryCtxRelease_v2(sl_CUdevice d) {
  if (!initialized) return SL_CUDA_ERROR_NOT_INITIALIZED;
  if (d < 0 || d >= NDEV) return E_INVALID_DEVICE;
  if (primary[d].refcount <= 0) return E_INVALID_CONTEXT;
  primary[d].refcount--;
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuCtxGetCurrent(sl_CUcontext *c) {
  if (!initialized) return SL_CUDA_ERROR_NOT_INITIALIZED;
  *c = current;
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuCtxSetCurrent(sl_CUcontext c) {
  if (!initialized) return SL_CUDA_ERROR_NOT_INITIALIZED;
  if (c && c->refcount <= 0) return E_INVALID_CONTEXT;
  current = c;
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuCtxSynchronize(void) { return need_ctx(); }

#define STREAM_MAGIC 0x57AEA111u
#define MODULE_MAGIC 0x30D01E00u

static sl_CUresult check_stream(sl_CUstream s) {
  if (!s) return SL_CUDA_SUCCESS; /* the legacy default stream */
  if (s->magic != STREAM_MAGIC) return E_INVALID_HANDLE;
  if (s->ctx != current) return E_INVALID_HANDLE; /* a stream of another context */
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuStreamCreate(sl_CUstream *s, unsigned int flags) {
  sl_CUresult r = need_ctx();
  if (r) return r;
  if (flags > 1) return E_INVALID_VALUE;
  *s = calloc(1, sizeof **s);
  (*s)->magic = STREAM_MAGIC;
  (*s)->ctx = current;
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuStreamDestroy_v2(sl_CUstream s) {
  sl_CUresult r = need_ctx();
  if (!r) r = s ? check_stream(s) : E_INVALID_HANDLE;
  if (r) return r;
  s->magic = 0;
  free(s);
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuStreamSynchronize(sl_CUstream s) {
  sl_CUresult r = need_ctx();
  return r ? r : check_stream(s);
}

sl_CUresult cuMemAlloc_v2(sl_CUdeviceptr *p, size_t n) {
  sl_CUresult r = need_ctx();
  if (r) return r;
  if (n == 0) return E_INVALID_VALUE;
  alloc *a = calloc(1, sizeof *a);
  if (!a || posix_memalign((void **)&a->p, 256, n)) return SL_CUDA_ERROR_OUT_OF_MEMORY;
  memset(a->p, 0xA5, n); /* device memory starts as garbage */
  a->n = n;
  pthread_mutex_lock(&lock);
  a->next = allocs;
  allocs = a;
  pthread_mutex_unlock(&lock);
  *p = (sl_CUdeviceptr)(uintptr_t)a->p;
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuMemFree_v2(sl_CUdeviceptr p) {
  sl_CUresult r = need_ctx();
  if (r) return r;
  pthread_mutex_lock(&lock);
  for (alloc **pp = &allocs; *pp; pp = &(*pp)->next)
    if ((uintptr_t)(*pp)->p == (uintptr_t)p) {
      alloc *a = *pp;
      *pp = a->next;
      pthread_mutex_unlock(&lock);
      free(a->p);
      free(a);
      return SL_CUDA_SUCCESS;
    }
  pthread_mutex_unlock(&lock);
  return E_INVALID_VALUE;
}

sl_CUresult cuMemcpyHtoDAsync_v2(sl_CUdeviceptr dst, const void *src, size_t n, sl_CUstream s) {
  sl_CUresult r = need_ctx();
  if (!r) r = check_stream(s);
  if (r) return r;
  if (!valid_range(dst, n) || !src) return E_INVALID_VALUE;
  memcpy((void *)(uintptr_t)dst, src, n);
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuMemcpyDtoHAsync_v2(void *dst, sl_CUdeviceptr src, size_t n, sl_CUstream s) {
  sl_CUresult r = need_ctx();
  if (!r) r = check_stream(s);
  if (r) return r;
  if (!valid_range(src, n) || !dst) return E_INVALID_VALUE;
  memcpy(dst, (const void *)(uintptr_t)src, n);
  return SL_CUDA_SUCCESS;
}

/* Images from fake_nvrtc.c: "SLOTHEMU", kind ('C' or 'P'), '\0', size (8 bytes), the host .so */
sl_CUresult cuModuleLoadDataEx(sl_CUmodule *m, const void *image, unsigned int nopt, sl_CUjit_option *opt, void **val) {
  sl_CUresult r = need_ctx();
  if (r) return r;
  char *log = NULL;
  size_t logsize = 0;
  for (unsigned i = 0; i < nopt; i++) {
    if (opt[i] == SL_CU_JIT_ERROR_LOG_BUFFER) log = val[i];
    else if (opt[i] == SL_CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES) logsize = (size_t)(uintptr_t)val[i];
    else return E_INVALID_VALUE;
  }
  const char *img = image;
  if (!img || memcmp(img, "SLOTHEMU", 8) != 0 || (img[8] != 'C' && img[8] != 'P')) {
    if (log && logsize) snprintf(log, logsize, "fake libcuda: not an image from the fake NVRTC");
    return SL_CUDA_ERROR_INVALID_IMAGE;
  }
  if (img[8] == 'C' && env("FAKECUDA_REJECT_CUBIN")) {
    if (log && logsize) snprintf(log, logsize, "fake libcuda: CUBINs rejected (FAKECUDA_REJECT_CUBIN)");
    return SL_CUDA_ERROR_NO_BINARY_FOR_GPU;
  }
  uint64_t size;
  memcpy(&size, img + 10, 8);
  int fd = memfd_create("sloth-emu-kernel", 0);
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  /* the fd stays open while the module is loaded: glibc knows a library by
   * its path, so /proc/self/fd/N must not name another one meanwhile */
  void *so = fd >= 0 && write(fd, img + 18, size) == (ssize_t)size ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
  if (!so && fd >= 0) close(fd);
  if (!so) {
    if (log && logsize) snprintf(log, logsize, "fake libcuda: %s", dlerror());
    return SL_CUDA_ERROR_INVALID_IMAGE;
  }
  *m = calloc(1, sizeof **m);
  (*m)->magic = MODULE_MAGIC;
  (*m)->so = so;
  (*m)->fd = fd;
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuModuleGetFunction(sl_CUfunction *f, sl_CUmodule m, const char *name) {
  sl_CUresult r = need_ctx();
  if (r) return r;
  if (!m || m->magic != MODULE_MAGIC) return E_INVALID_HANDLE;
  char sym[256];
  snprintf(sym, sizeof sym, "sloth_emu_launch_%s", name);
  void *fn = dlsym(m->so, sym);
  if (!fn) return E_NOT_FOUND;
  *f = calloc(1, sizeof **f);
  (*f)->mod = m;
  *(void **)&(*f)->launch = fn;
  (*f)->smem_allowed = SMEM_DEFAULT;
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuModuleUnload(sl_CUmodule m) {
  sl_CUresult r = need_ctx();
  if (r) return r;
  if (!m || m->magic != MODULE_MAGIC) return E_INVALID_HANDLE;
  m->magic = 0;
  dlclose(m->so);
  close(m->fd);
  free(m); /* CUfunctions of the module dangle, as they do with a real driver */
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuFuncSetAttribute(sl_CUfunction f, sl_CUfunction_attribute a, int v) {
  sl_CUresult r = need_ctx();
  if (r) return r;
  if (!f || a != SL_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES || v < 0 || v > SMEM_OPTIN) return E_INVALID_VALUE;
  f->smem_allowed = v;
  return SL_CUDA_SUCCESS;
}

sl_CUresult cuLaunchKernel(sl_CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                           unsigned smem, sl_CUstream s, void **params, void **extra) {
  sl_CUresult r = need_ctx();
  if (!r) r = check_stream(s);
  if (r) return r;
  if (!f || !f->mod || f->mod->magic != MODULE_MAGIC) return E_INVALID_HANDLE;
  if (!gx || !gy || !gz || !bx || !by || !bz || gx > 0x7fffffffu || gy > 65535 || gz > 65535) return E_INVALID_VALUE;
  if ((unsigned long long)bx * by * bz > 1024) return E_INVALID_VALUE;
  if (gy != 1 || gz != 1 || by != 1 || bz != 1) return E_INVALID_VALUE; /* the emulator runs 1-D grids only */
  if (smem > (unsigned)f->smem_allowed) return E_LAUNCH_OUT_OF_RESOURCES;
  if (extra || (!params)) return E_INVALID_VALUE; /* Sloth always passes kernelParams */
  switch (f->launch(gx, bx, smem, params, valid_arg)) {
  case 0: return SL_CUDA_SUCCESS;
  case 1: return E_INVALID_VALUE; /* a pointer argument that is no allocation */
  default: return E_LAUNCH_OUT_OF_RESOURCES;
  }
}

/* NVRTC itself opens libcuda.so.1 and asks it for an export table when a
 * driver is present (and crashes when the symbol is missing): say there is none. */
__attribute__((visibility("default"))) sl_CUresult cuGetExportTable(const void **table, const void *id);
sl_CUresult cuGetExportTable(const void **table, const void *id) {
  (void)id;
  if (table) *table = NULL;
  return 801; /* CUDA_ERROR_NOT_SUPPORTED */
}
