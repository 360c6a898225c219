/* hostblas.c - matrix products on CPU OpenCL devices through the host's CBLAS
 * (OpenBLAS), and the choice between that path and CLBlast.
 *
 * On a CPU device (POCL) an OpenCL buffer is host memory: clEnqueueMapBuffer
 * hands back a pointer to it without a copy. Mapping waits for the work queued
 * before (the queue is in order), cblas_sgemm (cblas_dgemm for f64) runs on
 * the mapped pointers, and the unmap is queued before any later work. On this machine's two cores that
 * runs near OpenBLAS's own speed (~170 GFLOP/s from n = 512), where CLBlast's
 * kernels compiled by POCL reach 10-15 GFLOP/s with default parameters and
 * ~25-50 tuned: see docs/gemm.md for the measurements.
 *
 * OpenBLAS is opened with dlopen when the device opens, not linked: its
 * idle worker threads spin for 2^28 cycles (~0.1 s) after every call, and
 * on a small machine a spinning worker takes a core from the OpenCL kernels
 * that run between GEMMs (CNN training step 23 ms -> 20.6 ms, and the slow
 * outliers gone, with the spin cut). OpenBLAS reads OPENBLAS_THREAD_TIMEOUT
 * only when it loads, so it is set to 4 (2^4 cycles) before the dlopen
 * unless the environment already sets it. In a process that has OpenBLAS
 * loaded already (numpy, say), the dlopen finds that copy as it is.
 *
 * SLOTH_GEMM picks the path when the device is opened:
 *   auto     (default) host BLAS on CPU devices when built with it and its
 *            library loads, else CLBlast
 *   clblast  always CLBlast
 *   host     always the host BLAS (on a GPU this maps = copies each operand)
 * Any other value makes sloth_init (or the first op) fail with SLOTH_E_INVALID. */
#include "config.h" /* SLOTH_HAVE_CBLAS (configure found OpenBLAS) */
#include "opencl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifdef SLOTH_HAVE_CBLAS
#include <cblas.h> /* the enums and prototypes; the functions come from dlsym */
#include <dlfcn.h>
#include <pthread.h>

static struct {
  __typeof__(cblas_sgemm) *sgemm;
  __typeof__(cblas_dgemm) *dgemm;
  char why[256]; /* why no library loaded */
} cblas;
static pthread_once_t cblas_once = PTHREAD_ONCE_INIT;

static void cblas_load(void) {
  static const char *const sonames[] = {"libopenblas.so.0", "libopenblas.so", "libcblas.so.3", "libblas.so.3"};
  setenv("OPENBLAS_THREAD_TIMEOUT", "4", 0); /* keeps a value the user set */
  for (size_t i = 0; i < sizeof sonames / sizeof sonames[0]; i++) {
    void *h = dlopen(sonames[i], RTLD_NOW | RTLD_LOCAL);
    if (!h) continue;
    cblas.sgemm = (__typeof__(cblas_sgemm) *)dlsym(h, "cblas_sgemm");
    cblas.dgemm = (__typeof__(cblas_dgemm) *)dlsym(h, "cblas_dgemm");
    if (cblas.sgemm && cblas.dgemm) return; /* stays loaded for the process */
    cblas.sgemm = NULL, cblas.dgemm = NULL;
    dlclose(h);
  }
  snprintf(cblas.why, sizeof cblas.why, "no CBLAS library with cblas_sgemm and cblas_dgemm found (tried %s, %s, %s, %s: "
                                         "apt-get install libopenblas0)", sonames[0], sonames[1], sonames[2], sonames[3]);
}
#endif

/* Whether the host BLAS is there: built with it and its library loads. */
static bool host_blas(const char **why) {
#ifdef SLOTH_HAVE_CBLAS
  pthread_once(&cblas_once, cblas_load);
  *why = cblas.why;
  return cblas.sgemm != NULL;
#else
  *why = "this build has no host CBLAS (install libopenblas-dev and reconfigure)";
  return false;
#endif
}

int sloth__opencl_gemm_choose(sloth__device *dev) {
  const char *v = sloth__env("SLOTH_GEMM");
  const char *why = "";
  /* the library is loaded only where it will serve (not for a GPU on auto) */
  if (!v || strcasecmp(v, "auto") == 0) {
    dev->gemm_path = dev->is_cpu && host_blas(&why) ? SLOTH__GEMM_HOST : SLOTH__GEMM_CLBLAST;
  } else if (strcasecmp(v, "clblast") == 0) {
    dev->gemm_path = SLOTH__GEMM_CLBLAST;
  } else if (strcasecmp(v, "host") == 0) {
    if (!host_blas(&why)) return sloth__fail(SLOTH_E_UNSUPPORTED, "SLOTH_GEMM=host: %s", why);
    dev->gemm_path = SLOTH__GEMM_HOST;
  } else {
    return sloth__fail(SLOTH_E_INVALID, "SLOTH_GEMM='%s' is not a GEMM path: use auto, clblast or host", v);
  }
  return SLOTH_OK;
}

const char *sloth__opencl_gemm_path_name(const sloth__device *dev) {
  return dev && dev->gemm_path == SLOTH__GEMM_HOST ? "host" : "clblast";
}

int sloth__opencl_gemm(sloth__device *dev, const sloth__gemm *g, sloth__buffer *a, sloth__buffer *b, sloth__buffer *c) {
  if (dev->gemm_path == SLOTH__GEMM_HOST) return sloth__host_gemm(dev, g, a, b, c);
  return sloth__clblast_gemm(dev, g, a, b, c);
}

bool sloth__opencl_gemm_dtype(sloth__device *dev, sloth_dtype dt) {
  switch (dt) {
  case SLOTH_F32: return true;
  case SLOTH_F64: return dev->fp64;
  case SLOTH_F16: return dev->gemm_path == SLOTH__GEMM_CLBLAST && dev->fp16;
  default: return false;
  }
}

#ifndef SLOTH_HAVE_CBLAS

int sloth__host_gemm(sloth__device *dev, const sloth__gemm *g, sloth__buffer *a, sloth__buffer *b, sloth__buffer *c) {
  (void)dev, (void)g, (void)a, (void)b, (void)c;
  return sloth__fail(SLOTH_E_UNSUPPORTED, "host GEMM: this build has no host CBLAS");
}

#else

/* One buffer mapped for the call: the union of the element ranges its
 * operands touch. A and B may be the same buffer (x @ x^T). */
typedef struct mapping {
  cl_mem mem;
  size_t lo, hi; /* elements */
  cl_map_flags flags;
  char *p;       /* mapped pointer to element lo */
} mapping;

static void touch(mapping *maps, int *nmaps, cl_mem mem, size_t lo, size_t hi, cl_map_flags flags) {
  for (int i = 0; i < *nmaps; i++)
    if (maps[i].mem == mem) {
      if (lo < maps[i].lo) maps[i].lo = lo;
      if (hi > maps[i].hi) maps[i].hi = hi;
      maps[i].flags |= flags;
      return;
    }
  maps[(*nmaps)++] = (mapping){mem, lo, hi, flags, NULL};
}

/* element `offset` (of es bytes) of a mapped buffer */
static void *at(const mapping *maps, int nmaps, cl_mem mem, size_t offset, size_t es) {
  for (int i = 0; i < nmaps; i++)
    if (maps[i].mem == mem) return maps[i].p + (offset - maps[i].lo) * es;
  return NULL;
}

/* Element range [lo, hi) that `batch` matrices of rows x cols with leading
 * dimension ld at the given offsets cover. */
static void extent(const size_t *offsets, size_t batch, size_t rows, size_t cols, size_t ld, size_t *lo, size_t *hi) {
  *lo = SIZE_MAX, *hi = 0;
  for (size_t i = 0; i < batch; i++) {
    size_t end = offsets[i] + (rows - 1) * ld + cols;
    if (offsets[i] < *lo) *lo = offsets[i];
    if (end > *hi) *hi = end;
  }
}

/* A leading dimension that CBLAS accepts: at least the row length. When the
 * matrix has a single row its ld is never used, so any value will do. */
static bool fix_ld(size_t *ld, size_t rows, size_t cols) {
  size_t need = cols ? cols : 1;
  if (*ld >= need) return true;
  if (rows <= 1) {
    *ld = need;
    return true;
  }
  return false;
}

/* How much of the shared dimension one CBLAS call takes. A small output
 * over a long shared dimension (a convolution's weight gradient sums over
 * every pixel of the batch: 16x9 outputs over 43264 products) ran at 12
 * GFLOP/s in one OpenBLAS call and ~3x faster as a sum of calls over 4096
 * products each; everything else is one call. */
static size_t k_chunk(size_t m, size_t n, size_t k) {
  const size_t chunk = 4096;
  return m * n <= 16384 && k >= 2 * chunk ? chunk : k;
}

int sloth__host_gemm(sloth__device *dev, const sloth__gemm *g, sloth__buffer *a, sloth__buffer *b, sloth__buffer *c) {
  if (g->dtype != SLOTH_F32 && g->dtype != SLOTH_F64)
    return sloth__fail(SLOTH_E_UNSUPPORTED, "host GEMM: dtype %s not supported", sloth_dtype_name(g->dtype));
  const size_t es = sloth_dtype_size(g->dtype);
  const bool dbl = g->dtype == SLOTH_F64;
  if (g->m == 0 || g->n == 0 || g->batch == 0) return SLOTH_OK;
  if (g->m > INT32_MAX || g->n > INT32_MAX || g->k > INT32_MAX)
    return sloth__fail(SLOTH_E_UNSUPPORTED, "host GEMM: a dimension exceeds CBLAS's int (m=%zu n=%zu k=%zu)", g->m, g->n, g->k);
  /* stored shapes: A is m x k (k x m transposed), B is k x n (n x k transposed) */
  size_t ar = g->trans_a ? g->k : g->m, ac = g->trans_a ? g->m : g->k;
  size_t br = g->trans_b ? g->n : g->k, bc = g->trans_b ? g->k : g->n;
  size_t lda = g->lda, ldb = g->ldb, ldc = g->ldc;
  if (g->k > 0 && (!fix_ld(&lda, ar, ac) || !fix_ld(&ldb, br, bc)))
    return sloth__fail(SLOTH_E_INVALID, "host GEMM: leading dimension too small (lda=%zu ldb=%zu, m=%zu n=%zu k=%zu)",
                       g->lda, g->ldb, g->m, g->n, g->k);
  if (!fix_ld(&ldc, g->m, g->n))
    return sloth__fail(SLOTH_E_INVALID, "host GEMM: ldc=%zu < n=%zu", g->ldc, g->n);
  if (lda > INT32_MAX || ldb > INT32_MAX || ldc > INT32_MAX)
    return sloth__fail(SLOTH_E_UNSUPPORTED, "host GEMM: a leading dimension exceeds CBLAS's int");

  mapping maps[3];
  int nmaps = 0;
  size_t lo, hi;
  if (g->k > 0) {
    extent(g->a_offsets, g->batch, ar, ac, lda, &lo, &hi);
    touch(maps, &nmaps, (cl_mem)a, lo, hi, CL_MAP_READ);
    extent(g->b_offsets, g->batch, br, bc, ldb, &lo, &hi);
    touch(maps, &nmaps, (cl_mem)b, lo, hi, CL_MAP_READ);
  }
  extent(g->c_offsets, g->batch, g->m, g->n, ldc, &lo, &hi);
  touch(maps, &nmaps, (cl_mem)c, lo, hi, CL_MAP_READ | CL_MAP_WRITE);

  /* The queue is in order: the blocking map of the last buffer waits for all
   * the work queued before this call, including the earlier maps. */
  int rc = SLOTH_OK;
  int mapped = 0;
  for (; mapped < nmaps; mapped++) {
    cl_int e;
    mapping *mp = &maps[mapped];
    mp->p = clEnqueueMapBuffer(dev->queue, mp->mem, mapped == nmaps - 1 ? CL_TRUE : CL_FALSE, mp->flags,
                               mp->lo * es, (mp->hi - mp->lo) * es, 0, NULL, NULL, &e);
    if (e != CL_SUCCESS) {
      rc = sloth__fail(SLOTH_E_DEVICE, "host GEMM: clEnqueueMapBuffer failed (%d)", (int)e);
      break;
    }
  }

  if (rc == SLOTH_OK) {
    if (g->k == 0) { /* an empty sum: C = beta * C, as CBLAS would do */
      for (size_t z = 0; z < g->batch; z++) {
        void *C = at(maps, nmaps, (cl_mem)c, g->c_offsets[z], es);
        for (size_t i = 0; i < g->m; i++)
          for (size_t j = 0; j < g->n; j++) {
            if (dbl) ((double *)C)[i * ldc + j] = g->beta == 0 ? 0.0 : g->beta * ((double *)C)[i * ldc + j];
            else ((float *)C)[i * ldc + j] = g->beta == 0 ? 0.0f : (float)g->beta * ((float *)C)[i * ldc + j];
          }
      }
    } else {
      enum CBLAS_TRANSPOSE ta = g->trans_a ? CblasTrans : CblasNoTrans, tb = g->trans_b ? CblasTrans : CblasNoTrans;
      const size_t kc = k_chunk(g->m, g->n, g->k);
      for (size_t z = 0; z < g->batch; z++) {
        char *A = at(maps, nmaps, (cl_mem)a, g->a_offsets[z], es), *B = at(maps, nmaps, (cl_mem)b, g->b_offsets[z], es);
        void *C = at(maps, nmaps, (cl_mem)c, g->c_offsets[z], es);
        for (size_t k0 = 0; k0 < g->k; k0 += kc) {
          const size_t kn = g->k - k0 < kc ? g->k - k0 : kc;
          /* chunk k0 of the shared dim: columns of A (rows when stored transposed), rows of B (columns) */
          const char *Ak = A + (g->trans_a ? k0 * lda : k0) * es, *Bk = B + (g->trans_b ? k0 : k0 * ldb) * es;
          const double beta = k0 == 0 ? g->beta : 1.0; /* later chunks add to the first */
          if (dbl)
            cblas.dgemm(CblasRowMajor, ta, tb, (int)g->m, (int)g->n, (int)kn, g->alpha, (const double *)Ak, (int)lda,
                        (const double *)Bk, (int)ldb, beta, C, (int)ldc);
          else
            cblas.sgemm(CblasRowMajor, ta, tb, (int)g->m, (int)g->n, (int)kn, (float)g->alpha, (const float *)Ak, (int)lda,
                        (const float *)Bk, (int)ldb, (float)beta, C, (int)ldc);
        }
      }
    }
  }

  for (int i = 0; i < mapped; i++) {
    cl_int e = clEnqueueUnmapMemObject(dev->queue, maps[i].mem, maps[i].p, 0, NULL, NULL);
    if (e != CL_SUCCESS && rc == SLOTH_OK) rc = sloth__fail(SLOTH_E_DEVICE, "host GEMM: clEnqueueUnmapMemObject failed (%d)", (int)e);
  }
  return rc;
}

#endif
