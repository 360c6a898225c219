/* opencl.h - what the files of the OpenCL backend share. */
#ifndef SLOTH_OPENCL_H
#define SLOTH_OPENCL_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "../core/internal.h"

struct sloth__device {
  cl_platform_id platform;
  cl_device_id device;
  cl_context context;
  cl_command_queue queue;
  bool is_cpu;        /* CL_DEVICE_TYPE_CPU: buffers live in host memory */
  bool fp16, fp64;    /* cl_khr_fp16, cl_khr_fp64 */
  int gemm_path;      /* SLOTH__GEMM_CLBLAST or SLOTH__GEMM_HOST, chosen at open (hostblas.c) */
  bool clblast_tuned; /* the tuning cache was looked up (clblast.c) */
};

/* Where matrix products run (SLOTH_GEMM=auto|clblast|host). */
enum { SLOTH__GEMM_CLBLAST, SLOTH__GEMM_HOST };

/* sloth__buffer is the cl_mem itself. */

/* GEMM through CLBlast (clblast.c). */
int sloth__clblast_gemm(sloth__device *dev, const sloth__gemm *g, sloth__buffer *a, sloth__buffer *b, sloth__buffer *c);
/* Tuned CLBlast parameters cached per device (clblast.c): the cache file's
 * path, and its contents written tmp-then-rename (tools/sloth-tune-gemm). */
int sloth__clblast_tuning_path(cl_device_id device, char *out, size_t size);
int sloth__clblast_tuning_save(cl_device_id device, const char *kernel_lines);
/* Applies a device's cached parameters (CLBlastOverrideParameters, process
 * wide); returns how many kernels got tuned ones, 0 when none are cached. */
int sloth__clblast_tuning_load(cl_device_id device);

/* GEMM through the host's CBLAS on mapped buffers (hostblas.c), and the
 * backend's gemm entry, which picks the path chosen at open. */
int sloth__opencl_gemm_choose(sloth__device *dev);
const char *sloth__opencl_gemm_path_name(const sloth__device *dev);
int sloth__host_gemm(sloth__device *dev, const sloth__gemm *g, sloth__buffer *a, sloth__buffer *b, sloth__buffer *c);
int sloth__opencl_gemm(sloth__device *dev, const sloth__gemm *g, sloth__buffer *a, sloth__buffer *b, sloth__buffer *c);
/* The dtypes gemm takes: f32; f64 on fp64 devices (CLBlast Dgemm, or the
 * host's cblas_dgemm); f16 through CLBlast Hgemm on fp16 devices (the host
 * path has no f16 GEMM: core then computes in f32). */
bool sloth__opencl_gemm_dtype(sloth__device *dev, sloth_dtype dt);

#endif
