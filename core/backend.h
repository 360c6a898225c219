/*
 * backend.h - the interface between core and a device backend (OpenCL, CUDA).
 *
 * Core hands a backend only kernel source, buffers, launch geometry and
 * arguments; a backend never sees IR nodes. Every function returning int
 * returns SLOTH_OK or a negative sloth_status and, on failure, has recorded a
 * message with sloth__fail().
 */
#ifndef SLOTH_BACKEND_H
#define SLOTH_BACKEND_H

#include "sloth.h"
#include <stdbool.h>
#include <stddef.h>

typedef struct sloth__device sloth__device;   /* backend-defined */
typedef struct sloth__buffer sloth__buffer;   /* backend-defined */
typedef struct sloth__kernel sloth__kernel;   /* backend-defined */

/* How generated source is spelled for a backend (see codegen.c). */
typedef enum sloth__dialect_id { DIALECT_OPENCL, DIALECT_CUDA } sloth__dialect_id;

typedef enum sloth__karg_kind { KARG_BUFFER, KARG_BYTES } sloth__karg_kind;

typedef struct sloth__karg {
  sloth__karg_kind kind;
  sloth__buffer *buffer; /* KARG_BUFFER; NULL is allowed for an unused zero-size operand */
  size_t size;           /* KARG_BYTES: size of value */
  unsigned char value[8];
} sloth__karg;

typedef struct sloth__launch {
  size_t global;         /* total work-items (1-D), a multiple of local */
  size_t local;          /* work-group / block size */
  size_t local_mem;      /* bytes of dynamic local/shared memory, 0 if none */
} sloth__launch;

/* One GEMM call on row-major matrices, for each batch b:
 *   C[b] (m x n) = alpha * op(A[b]) (m x k) * op(B[b]) (k x n) + beta * C[b]
 * op() transposes when trans_* is set (the matrix is stored k x m / n x k).
 * Offsets are per batch, in elements. dtype is that of A, B and C: f32, or
 * f64 / f16 where the backend's gemm_dtype says so. */
typedef struct sloth__gemm {
  sloth_dtype dtype;
  bool trans_a, trans_b;
  size_t m, n, k;
  size_t lda, ldb, ldc;
  size_t batch;
  const size_t *a_offsets, *b_offsets, *c_offsets;
  double alpha, beta;
} sloth__gemm;

typedef struct sloth__backend {
  const char *name;                 /* "opencl", "cuda" */
  sloth__dialect_id dialect;
  /* Enumeration works without opening anything. */
  int (*device_count)(void);
  int (*device_info)(int index, sloth_device_info *out);
  /* Why there are no devices ("" if there are). */
  const char *(*status)(void);

  int (*open)(int index, sloth__device **out);
  void (*close)(sloth__device *dev);

  /* Raw allocation; core pools buffers on top. bytes > 0. */
  int (*alloc)(sloth__device *dev, size_t bytes, sloth__buffer **out);
  void (*free)(sloth__device *dev, sloth__buffer *buf);
  /* Host -> device, ordered after earlier work; blocking so src may be reused. */
  int (*write)(sloth__device *dev, sloth__buffer *buf, size_t offset, const void *src, size_t bytes);
  /* Device -> host, waits for earlier work. */
  int (*read)(sloth__device *dev, sloth__buffer *buf, size_t offset, void *dst, size_t bytes);

  /* Compiles one kernel named `name` from source. On failure returns
   * SLOTH_E_COMPILE with the build log in the error message. */
  int (*compile)(sloth__device *dev, const char *source, const char *name, const char *options,
                 sloth__kernel **out);
  void (*kernel_free)(sloth__device *dev, sloth__kernel *k);
  /* Enqueues a launch (asynchronous, in order with everything else). */
  int (*launch)(sloth__device *dev, sloth__kernel *k, const sloth__launch *geom, int nargs,
                const sloth__karg *args);
  int (*finish)(sloth__device *dev);
  /* Matrix products through the vendor BLAS (NULL: unsupported). */
  int (*gemm)(sloth__device *dev, const sloth__gemm *g, sloth__buffer *a, sloth__buffer *b, sloth__buffer *c);
  /* Whether gemm takes operands of dtype dt (NULL: f32 only). matmul of f16
   * on a backend that says no runs as an f32 GEMM between casts. */
  bool (*gemm_dtype)(sloth__device *dev, sloth_dtype dt);
} sloth__backend;

/* The compiled-in backends, in the order SLOTH_DEVICE's default looks at them. */
extern const sloth__backend *const sloth__backends[];
extern const int sloth__backend_count;

#endif
