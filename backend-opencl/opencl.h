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
};

/* sloth__buffer is the cl_mem itself. */

/* GEMM through CLBlast (clblast.c). */
int sloth__clblast_gemm(sloth__device *dev, const sloth__gemm *g, sloth__buffer *a, sloth__buffer *b, sloth__buffer *c);

#endif
