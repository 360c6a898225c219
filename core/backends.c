/* backends.c - the list of compiled-in backends. */
#ifdef HAVE_CONFIG_H
#include "config.h" /* SLOTH_WITH_CUDA (configure --with-cuda, the default) */
#endif
#include "internal.h"

extern const sloth__backend sloth__opencl_backend;
#ifdef SLOTH_WITH_CUDA
extern const sloth__backend sloth__cuda_backend;
#endif

/* SLOTH_DEVICE's default takes the first GPU in this order. */
const sloth__backend *const sloth__backends[] = {
#ifdef SLOTH_WITH_CUDA
    &sloth__cuda_backend,
#endif
    &sloth__opencl_backend,
};
const int sloth__backend_count = (int)(sizeof sloth__backends / sizeof sloth__backends[0]);
