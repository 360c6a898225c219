/* check_api.c - compile-time proof that backend-cuda/cuda_api.h matches the
 * CUDA toolkit: every function-pointer type the backend declares must be
 * compatible with the prototype in <cuda.h>, <nvrtc.h> and (when present)
 * <cublas_api.h>, and every enum value it spells out must equal the
 * toolkit's. Built by `make check` only when configure found the toolkit
 * headers (--with-cuda=DIR, default /usr/local/cuda); a mismatch fails the
 * build. The program itself only prints a TAP line. */
#include <cuda.h>
#include <nvrtc.h>

#include "cuda_api.h"

#include <stdio.h>

#define CHECK_FN(name, ret, params)                                                        \
  _Static_assert(__builtin_types_compatible_p(__typeof__(&name), sl_##name##_fn),         \
                 #name ": the declaration in cuda_api.h does not match the toolkit's");
SL_CUDA_DRIVER_FUNCS(CHECK_FN)
SL_NVRTC_FUNCS(CHECK_FN)

#define CHECK_VALUE(name) _Static_assert(SL_##name == name, #name ": value differs from the toolkit's");
CHECK_VALUE(CUDA_SUCCESS)
CHECK_VALUE(CUDA_ERROR_OUT_OF_MEMORY)
CHECK_VALUE(CUDA_ERROR_NOT_INITIALIZED)
CHECK_VALUE(CUDA_ERROR_STUB_LIBRARY)
CHECK_VALUE(CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER)
CHECK_VALUE(CUDA_ERROR_DEVICE_UNAVAILABLE)
CHECK_VALUE(CUDA_ERROR_NO_DEVICE)
CHECK_VALUE(CUDA_ERROR_INVALID_IMAGE)
CHECK_VALUE(CUDA_ERROR_NO_BINARY_FOR_GPU)
CHECK_VALUE(CUDA_ERROR_INVALID_PTX)
CHECK_VALUE(CUDA_ERROR_UNSUPPORTED_PTX_VERSION)
CHECK_VALUE(CUDA_ERROR_SYSTEM_DRIVER_MISMATCH)
CHECK_VALUE(CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE)
CHECK_VALUE(CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK)
CHECK_VALUE(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
CHECK_VALUE(CU_DEVICE_ATTRIBUTE_INTEGRATED)
CHECK_VALUE(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
CHECK_VALUE(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
CHECK_VALUE(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
CHECK_VALUE(CU_JIT_ERROR_LOG_BUFFER)
CHECK_VALUE(CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES)
CHECK_VALUE(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)
CHECK_VALUE(CU_STREAM_NON_BLOCKING)
CHECK_VALUE(NVRTC_SUCCESS)
CHECK_VALUE(NVRTC_ERROR_INVALID_OPTION)
CHECK_VALUE(NVRTC_ERROR_COMPILATION)

#if __has_include(<cublas_api.h>) /* a toolkit may come without cuBLAS */
#include <cublas_api.h>
SL_CUBLAS_FUNCS(CHECK_FN)
CHECK_VALUE(CUBLAS_STATUS_SUCCESS)
CHECK_VALUE(CUBLAS_STATUS_ALLOC_FAILED)
CHECK_VALUE(CUBLAS_OP_N)
CHECK_VALUE(CUBLAS_OP_T)
CHECK_VALUE(CUDA_R_16F)
CHECK_VALUE(CUBLAS_COMPUTE_32F)
CHECK_VALUE(CUBLAS_GEMM_DEFAULT)
_Static_assert(__builtin_types_compatible_p(cublasHandle_t, sl_cublasHandle_t), "cublasHandle_t");
_Static_assert(__builtin_types_compatible_p(cudaStream_t, sl_CUstream), "cudaStream_t is a CUstream");
#define CHECKED_CUBLAS "yes"
#else
#define CHECKED_CUBLAS "no (no cublas_api.h)"
#endif

/* the scalar types: same size and signedness as the toolkit's */
_Static_assert(__builtin_types_compatible_p(CUdevice, sl_CUdevice), "CUdevice");
_Static_assert(__builtin_types_compatible_p(CUdeviceptr, sl_CUdeviceptr), "CUdeviceptr");
_Static_assert(__builtin_types_compatible_p(CUcontext, sl_CUcontext), "CUcontext");
_Static_assert(__builtin_types_compatible_p(CUstream, sl_CUstream), "CUstream");
_Static_assert(__builtin_types_compatible_p(CUmodule, sl_CUmodule), "CUmodule");
_Static_assert(__builtin_types_compatible_p(CUfunction, sl_CUfunction), "CUfunction");
_Static_assert(__builtin_types_compatible_p(nvrtcProgram, sl_nvrtcProgram), "nvrtcProgram");
_Static_assert(sizeof(CUresult) == sizeof(sl_CUresult), "CUresult");
_Static_assert(sizeof(nvrtcResult) == sizeof(sl_nvrtcResult), "nvrtcResult");

int main(void) {
  printf("1..1\nok 1 - cuda_api.h matches the toolkit headers (CUDA_VERSION %d; cuBLAS checked: %s)\n", CUDA_VERSION,
         CHECKED_CUBLAS);
  return 0;
}
