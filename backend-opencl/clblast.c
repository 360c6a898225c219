/* clblast.c - matrix products on OpenCL devices through CLBlast: Sgemm for
 * one matrix, SgemmStridedBatched when batches are evenly spaced, and
 * SgemmBatched (per-batch offsets) otherwise. Views need no copy: every call
 * takes (buffer, offset, leading dimension) and transpose flags. */
#include "opencl.h"

#include <clblast_c.h>
#include <stdlib.h>

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

int sloth__clblast_gemm(sloth__device *dev, const sloth__gemm *g, sloth__buffer *a, sloth__buffer *b, sloth__buffer *c) {
  if (g->dtype != SLOTH_F32) return sloth__fail(SLOTH_E_UNSUPPORTED, "CLBlast GEMM: dtype %s not supported", sloth_dtype_name(g->dtype));
  if (g->m == 0 || g->n == 0 || g->batch == 0) return SLOTH_OK;
  cl_mem A = (cl_mem)a, B = (cl_mem)b, C = (cl_mem)c;
  if (g->k == 0) { /* an empty sum: C = 0 (C is contiguous: batch * m * n) */
    float zero = 0;
    cl_int e = clEnqueueFillBuffer(dev->queue, C, &zero, sizeof zero, g->c_offsets[0] * sizeof(float),
                                   g->batch * g->m * g->n * sizeof(float), 0, NULL, NULL);
    return e == CL_SUCCESS ? SLOTH_OK : sloth__fail(SLOTH_E_DEVICE, "OpenCL: clEnqueueFillBuffer failed (%d)", (int)e);
  }
  CLBlastTranspose ta = g->trans_a ? CLBlastTransposeYes : CLBlastTransposeNo;
  CLBlastTranspose tb = g->trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
  CLBlastStatusCode s;
  size_t sa, sb, sc;
  const char *routine;
  if (g->batch == 1) {
    routine = "CLBlastSgemm";
    s = CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, g->m, g->n, g->k, g->alpha, A, g->a_offsets[0], g->lda, B,
                     g->b_offsets[0], g->ldb, g->beta, C, g->c_offsets[0], g->ldc, &dev->queue, NULL);
  } else if (strided(g->a_offsets, g->batch, &sa) && strided(g->b_offsets, g->batch, &sb) &&
             strided(g->c_offsets, g->batch, &sc)) {
    routine = "CLBlastSgemmStridedBatched";
    s = CLBlastSgemmStridedBatched(CLBlastLayoutRowMajor, ta, tb, g->m, g->n, g->k, g->alpha, A, g->a_offsets[0], g->lda,
                                   sa, B, g->b_offsets[0], g->ldb, sb, g->beta, C, g->c_offsets[0], g->ldc, sc, g->batch,
                                   &dev->queue, NULL);
  } else {
    routine = "CLBlastSgemmBatched";
    float *alphas = malloc(g->batch * sizeof *alphas), *betas = malloc(g->batch * sizeof *betas);
    if (!alphas || !betas) {
      free(alphas), free(betas);
      return sloth__fail(SLOTH_E_NOMEM, "out of host memory (GEMM batch)");
    }
    for (size_t i = 0; i < g->batch; i++) alphas[i] = g->alpha, betas[i] = g->beta;
    s = CLBlastSgemmBatched(CLBlastLayoutRowMajor, ta, tb, g->m, g->n, g->k, alphas, A, g->a_offsets, g->lda, B,
                            g->b_offsets, g->ldb, betas, C, g->c_offsets, g->ldc, g->batch, &dev->queue, NULL);
    free(alphas), free(betas);
  }
  if (s != CLBlastSuccess)
    return sloth__fail(s == CLBlastTempBufferAllocFailure || s == CLBlastOpenCLOutOfResources ? SLOTH_E_NOMEM : SLOTH_E_DEVICE,
                       "%s (m=%zu n=%zu k=%zu batch=%zu) failed: %s (%d)", routine, g->m, g->n, g->k, g->batch,
                       clblast_status_name(s), (int)s);
  return SLOTH_OK;
}
