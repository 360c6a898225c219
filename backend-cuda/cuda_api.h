/* cuda_api.h - the few CUDA driver API and NVRTC declarations the CUDA
 * backend uses, written out here so that Sloth never includes a CUDA header
 * nor links CUDA: libcuda.so.1, libnvrtc.so.N and libcublas.so.N are opened
 * with dlopen.
 *
 * Every type keeps the ABI of the toolkit's (enums are passed as unsigned
 * int, handles are pointers to the same opaque struct tags). Each function
 * is listed once in an X-macro table; backend-cuda/check_api.c, built by
 * `make check` when the toolkit headers are found (configure --with-cuda=DIR),
 * asserts at compile time that every entry matches <cuda.h>, <nvrtc.h> and
 * <cublas_api.h>.
 *
 * Only the names the toolkit exports are used: the versioned `_v2` symbols
 * (cuMemAlloc_v2, ...) that <cuda.h> maps the plain names to.
 */
#ifndef SLOTH_CUDA_API_H
#define SLOTH_CUDA_API_H

#include <stddef.h>

/* ------------------------------------------------------------------ driver API types */

typedef unsigned int sl_CUresult;          /* enum cudaError_enum */
typedef int sl_CUdevice;                   /* CUdevice (CUdevice_v1) */
typedef unsigned long long sl_CUdeviceptr; /* CUdeviceptr (CUdeviceptr_v2) on 64-bit hosts */
typedef unsigned int sl_CUdevice_attribute; /* enum CUdevice_attribute_enum */
typedef unsigned int sl_CUjit_option;      /* enum CUjit_option_enum */
typedef unsigned int sl_CUfunction_attribute; /* enum CUfunction_attribute_enum */
typedef struct CUctx_st *sl_CUcontext;
typedef struct CUstream_st *sl_CUstream;
typedef struct CUmod_st *sl_CUmodule;
typedef struct CUfunc_st *sl_CUfunction;

/* the enum values used (checked against <cuda.h> by check_api.c) */
#define SL_CUDA_SUCCESS 0
#define SL_CUDA_ERROR_OUT_OF_MEMORY 2
#define SL_CUDA_ERROR_NOT_INITIALIZED 3
#define SL_CUDA_ERROR_STUB_LIBRARY 34
#define SL_CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER 36
#define SL_CUDA_ERROR_DEVICE_UNAVAILABLE 46
#define SL_CUDA_ERROR_NO_DEVICE 100
#define SL_CUDA_ERROR_INVALID_IMAGE 200
#define SL_CUDA_ERROR_NO_BINARY_FOR_GPU 209
#define SL_CUDA_ERROR_INVALID_PTX 218
#define SL_CUDA_ERROR_UNSUPPORTED_PTX_VERSION 222
#define SL_CUDA_ERROR_SYSTEM_DRIVER_MISMATCH 803
#define SL_CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE 804

#define SL_CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK 1
#define SL_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT 16
#define SL_CU_DEVICE_ATTRIBUTE_INTEGRATED 18
#define SL_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR 75
#define SL_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR 76
#define SL_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN 97

#define SL_CU_JIT_ERROR_LOG_BUFFER 5
#define SL_CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES 6

#define SL_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES 8

#define SL_CU_STREAM_NON_BLOCKING 0x1

/* X(name, return type, parameter list): every driver entry point used.
 * All are required; a driver lacking one is reported as too old. */
#define SL_CUDA_DRIVER_FUNCS(X)                                                                             \
  X(cuInit, sl_CUresult, (unsigned int Flags))                                                              \
  X(cuDriverGetVersion, sl_CUresult, (int *driverVersion))                                                  \
  X(cuGetErrorName, sl_CUresult, (sl_CUresult error, const char **pStr))                                    \
  X(cuDeviceGetCount, sl_CUresult, (int *count))                                                            \
  X(cuDeviceGet, sl_CUresult, (sl_CUdevice * device, int ordinal))                                          \
  X(cuDeviceGetName, sl_CUresult, (char *name, int len, sl_CUdevice dev))                                   \
  X(cuDeviceGetAttribute, sl_CUresult, (int *pi, sl_CUdevice_attribute attrib, sl_CUdevice dev))            \
  X(cuDeviceTotalMem_v2, sl_CUresult, (size_t * bytes, sl_CUdevice dev))                                    \
  X(cuDevicePrimaryCtxRetain, sl_CUresult, (sl_CUcontext * pctx, sl_CUdevice dev))                          \
  X(cuDevicePrimaryCtxRelease_v2, sl_CUresult, (sl_CUdevice dev))                                           \
  X(cuCtxGetCurrent, sl_CUresult, (sl_CUcontext * pctx))                                                    \
  X(cuCtxSetCurrent, sl_CUresult, (sl_CUcontext ctx))                                                       \
  X(cuCtxSynchronize, sl_CUresult, (void))                                                                  \
  X(cuStreamCreate, sl_CUresult, (sl_CUstream * phStream, unsigned int Flags))                              \
  X(cuStreamDestroy_v2, sl_CUresult, (sl_CUstream hStream))                                                 \
  X(cuStreamSynchronize, sl_CUresult, (sl_CUstream hStream))                                                \
  X(cuMemAlloc_v2, sl_CUresult, (sl_CUdeviceptr * dptr, size_t bytesize))                                   \
  X(cuMemFree_v2, sl_CUresult, (sl_CUdeviceptr dptr))                                                       \
  X(cuMemcpyHtoDAsync_v2, sl_CUresult,                                                                      \
    (sl_CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount, sl_CUstream hStream))                 \
  X(cuMemcpyDtoHAsync_v2, sl_CUresult,                                                                      \
    (void *dstHost, sl_CUdeviceptr srcDevice, size_t ByteCount, sl_CUstream hStream))                       \
  X(cuMemsetD32Async, sl_CUresult, (sl_CUdeviceptr dstDevice, unsigned int ui, size_t N, sl_CUstream hStream)) \
  X(cuMemsetD8Async, sl_CUresult, (sl_CUdeviceptr dstDevice, unsigned char uc, size_t N, sl_CUstream hStream)) \
  X(cuModuleLoadDataEx, sl_CUresult,                                                                        \
    (sl_CUmodule * module, const void *image, unsigned int numOptions, sl_CUjit_option *options,            \
     void **optionValues))                                                                                  \
  X(cuModuleGetFunction, sl_CUresult, (sl_CUfunction * hfunc, sl_CUmodule hmod, const char *name))          \
  X(cuModuleUnload, sl_CUresult, (sl_CUmodule hmod))                                                        \
  X(cuFuncSetAttribute, sl_CUresult, (sl_CUfunction hfunc, sl_CUfunction_attribute attrib, int value))      \
  X(cuLaunchKernel, sl_CUresult,                                                                            \
    (sl_CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,                  \
     unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ, unsigned int sharedMemBytes,   \
     sl_CUstream hStream, void **kernelParams, void **extra))

/* ------------------------------------------------------------------ NVRTC types */

typedef unsigned int sl_nvrtcResult; /* enum nvrtcResult */
typedef struct _nvrtcProgram *sl_nvrtcProgram;

#define SL_NVRTC_SUCCESS 0
#define SL_NVRTC_ERROR_INVALID_OPTION 5
#define SL_NVRTC_ERROR_COMPILATION 6

/* X(name, return type, parameter list): every NVRTC entry point used. */
#define SL_NVRTC_FUNCS(X)                                                                                   \
  X(nvrtcGetErrorString, const char *, (sl_nvrtcResult result))                                             \
  X(nvrtcVersion, sl_nvrtcResult, (int *major, int *minor))                                                 \
  X(nvrtcGetNumSupportedArchs, sl_nvrtcResult, (int *numArchs))                                             \
  X(nvrtcGetSupportedArchs, sl_nvrtcResult, (int *supportedArchs))                                          \
  X(nvrtcCreateProgram, sl_nvrtcResult,                                                                     \
    (sl_nvrtcProgram * prog, const char *src, const char *name, int numHeaders, const char *const *headers, \
     const char *const *includeNames))                                                                      \
  X(nvrtcDestroyProgram, sl_nvrtcResult, (sl_nvrtcProgram * prog))                                          \
  X(nvrtcCompileProgram, sl_nvrtcResult, (sl_nvrtcProgram prog, int numOptions, const char *const *options)) \
  X(nvrtcGetPTXSize, sl_nvrtcResult, (sl_nvrtcProgram prog, size_t * ptxSizeRet))                           \
  X(nvrtcGetPTX, sl_nvrtcResult, (sl_nvrtcProgram prog, char *ptx))                                         \
  X(nvrtcGetCUBINSize, sl_nvrtcResult, (sl_nvrtcProgram prog, size_t * cubinSizeRet))                       \
  X(nvrtcGetCUBIN, sl_nvrtcResult, (sl_nvrtcProgram prog, char *cubin))                                     \
  X(nvrtcGetProgramLogSize, sl_nvrtcResult, (sl_nvrtcProgram prog, size_t * logSizeRet))                    \
  X(nvrtcGetProgramLog, sl_nvrtcResult, (sl_nvrtcProgram prog, char *log))

/* ------------------------------------------------------------------ cuBLAS types */

typedef unsigned int sl_cublasStatus_t;    /* enum cublasStatus_t */
typedef unsigned int sl_cublasOperation_t; /* enum cublasOperation_t */
typedef struct cublasContext *sl_cublasHandle_t;
typedef unsigned int sl_cudaDataType;        /* enum cudaDataType_t */
typedef unsigned int sl_cublasComputeType_t; /* enum cublasComputeType_t */
typedef int sl_cublasGemmAlgo_t;             /* enum cublasGemmAlgo_t (has -1) */

#define SL_CUBLAS_STATUS_SUCCESS 0
#define SL_CUBLAS_STATUS_ALLOC_FAILED 3
#define SL_CUBLAS_OP_N 0
#define SL_CUBLAS_OP_T 1
#define SL_CUDA_R_16F 2
#define SL_CUBLAS_COMPUTE_32F 68
#define SL_CUBLAS_GEMM_DEFAULT (-1)

/* X(name, return type, parameter list): the cuBLAS entry points used (a
 * cudaStream_t is a CUstream). Loaded on the first matrix product. */
#define SL_CUBLAS_FUNCS(X)                                                                                  \
  X(cublasCreate_v2, sl_cublasStatus_t, (sl_cublasHandle_t * handle))                                       \
  X(cublasDestroy_v2, sl_cublasStatus_t, (sl_cublasHandle_t handle))                                        \
  X(cublasSetStream_v2, sl_cublasStatus_t, (sl_cublasHandle_t handle, sl_CUstream streamId))                \
  X(cublasGetStatusName, const char *, (sl_cublasStatus_t status))                                          \
  X(cublasSgemm_v2, sl_cublasStatus_t,                                                                      \
    (sl_cublasHandle_t handle, sl_cublasOperation_t transa, sl_cublasOperation_t transb, int m, int n, int k, \
     const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta, float *C,     \
     int ldc))                                                                                              \
  X(cublasSgemmStridedBatched, sl_cublasStatus_t,                                                           \
    (sl_cublasHandle_t handle, sl_cublasOperation_t transa, sl_cublasOperation_t transb, int m, int n, int k, \
     const float *alpha, const float *A, int lda, long long int strideA, const float *B, int ldb,            \
     long long int strideB, const float *beta, float *C, int ldc, long long int strideC, int batchCount))   \
  X(cublasDgemm_v2, sl_cublasStatus_t,                                                                      \
    (sl_cublasHandle_t handle, sl_cublasOperation_t transa, sl_cublasOperation_t transb, int m, int n, int k, \
     const double *alpha, const double *A, int lda, const double *B, int ldb, const double *beta, double *C, \
     int ldc))                                                                                              \
  X(cublasDgemmStridedBatched, sl_cublasStatus_t,                                                           \
    (sl_cublasHandle_t handle, sl_cublasOperation_t transa, sl_cublasOperation_t transb, int m, int n, int k, \
     const double *alpha, const double *A, int lda, long long int strideA, const double *B, int ldb,          \
     long long int strideB, const double *beta, double *C, int ldc, long long int strideC, int batchCount)) \
  /* f16 operands, f32 accumulation (alpha and beta are floats) */                                         \
  X(cublasGemmEx, sl_cublasStatus_t,                                                                        \
    (sl_cublasHandle_t handle, sl_cublasOperation_t transa, sl_cublasOperation_t transb, int m, int n, int k, \
     const void *alpha, const void *A, sl_cudaDataType Atype, int lda, const void *B, sl_cudaDataType Btype, \
     int ldb, const void *beta, void *C, sl_cudaDataType Ctype, int ldc, sl_cublasComputeType_t computeType, \
     sl_cublasGemmAlgo_t algo))                                                                             \
  X(cublasGemmStridedBatchedEx, sl_cublasStatus_t,                                                          \
    (sl_cublasHandle_t handle, sl_cublasOperation_t transa, sl_cublasOperation_t transb, int m, int n, int k, \
     const void *alpha, const void *A, sl_cudaDataType Atype, int lda, long long int strideA, const void *B,  \
     sl_cudaDataType Btype, int ldb, long long int strideB, const void *beta, void *C, sl_cudaDataType Ctype, \
     int ldc, long long int strideC, int batchCount, sl_cublasComputeType_t computeType,                     \
     sl_cublasGemmAlgo_t algo))

/* Function-pointer types: sl_<name>_fn */
#define SL_CUDA_FN_TYPEDEF(name, ret, params) typedef ret(*sl_##name##_fn) params;
SL_CUDA_DRIVER_FUNCS(SL_CUDA_FN_TYPEDEF)
SL_NVRTC_FUNCS(SL_CUDA_FN_TYPEDEF)
SL_CUBLAS_FUNCS(SL_CUDA_FN_TYPEDEF)
#undef SL_CUDA_FN_TYPEDEF

/* NVRTC sonames to try, newest first (a driver of major version M takes
 * NVRTC M or older; see cuda.c). */
#define SL_NVRTC_SONAMES {"libnvrtc.so.13", "libnvrtc.so.12"}
/* Options the backend always gives NVRTC (after --gpu-architecture):
 * functions without __device__ (the shared kernels/ sources) are device code. */
#define SL_NVRTC_OPTIONS {"-default-device"}
#define SL_CUBLAS_SONAMES {"libcublas.so.13", "libcublas.so.12"}

#endif
