# cuda.mk - the CUDA backend's tests and build-time checks. The backend
# itself (backend-cuda/cuda.c) is in Makefile.am under WITH_CUDA; it opens
# libcuda.so.1, libnvrtc.so.N and libcublas.so.N with dlopen and never links CUDA.
noinst_HEADERS += backend-cuda/cuda_api.h

# test_nvrtc: compiles the CUDA C of every kernel a representative workload
# generates (SLOTH_DUMP_CUDA) with NVRTC, on any device; skipped without NVRTC.
# test_cuda: runs ops on SLOTH_DEVICE=cuda against the host; skipped without
# a CUDA device (or with --without-cuda).
check_PROGRAMS += tests/test_nvrtc tests/test_cuda
tests_test_nvrtc_SOURCES = tests/test_nvrtc.c
tests_test_nvrtc_LDADD = libsloth.la
tests_test_cuda_SOURCES = tests/test_cuda.c
tests_test_cuda_LDADD = libsloth.la

if WITH_CUDA
if HAVE_CUDA_HEADERS
# Compile-time proof that backend-cuda/cuda_api.h matches <cuda.h>, <nvrtc.h>
# and <cublas_api.h> of the toolkit in $(CUDA_DIR) (headers only: nothing links CUDA).
check_PROGRAMS += backend-cuda/check_api
backend_cuda_check_api_SOURCES = backend-cuda/check_api.c
backend_cuda_check_api_CPPFLAGS = -I$(CUDA_DIR)/include
endif
endif
