/* opencl.c - the OpenCL backend: devices through the ICD loader, buffers,
 * program builds and asynchronous launches on one in-order queue. */
#include "opencl.h"

#include <stdlib.h>
#include <string.h>

struct sloth__kernel {
  cl_program program;
  cl_kernel kernel;
};

/* sloth__buffer is the cl_mem itself */

static const char *cl_error_name(cl_int e) {
  switch (e) {
  case CL_DEVICE_NOT_FOUND: return "CL_DEVICE_NOT_FOUND";
  case CL_MEM_OBJECT_ALLOCATION_FAILURE: return "CL_MEM_OBJECT_ALLOCATION_FAILURE";
  case CL_OUT_OF_RESOURCES: return "CL_OUT_OF_RESOURCES";
  case CL_OUT_OF_HOST_MEMORY: return "CL_OUT_OF_HOST_MEMORY";
  case CL_BUILD_PROGRAM_FAILURE: return "CL_BUILD_PROGRAM_FAILURE";
  case CL_INVALID_VALUE: return "CL_INVALID_VALUE";
  case CL_INVALID_BUFFER_SIZE: return "CL_INVALID_BUFFER_SIZE";
  case CL_INVALID_BUILD_OPTIONS: return "CL_INVALID_BUILD_OPTIONS";
  case CL_INVALID_KERNEL_ARGS: return "CL_INVALID_KERNEL_ARGS";
  case CL_INVALID_ARG_SIZE: return "CL_INVALID_ARG_SIZE";
  case CL_INVALID_WORK_GROUP_SIZE: return "CL_INVALID_WORK_GROUP_SIZE";
  case CL_INVALID_MEM_OBJECT: return "CL_INVALID_MEM_OBJECT";
  case -1001: return "CL_PLATFORM_NOT_FOUND_KHR (no OpenCL driver installed)";
  default: return "CL error";
  }
}

#define CL_FAIL(status, err, what) sloth__fail(status, "OpenCL: %s failed: %s (%d)", what, cl_error_name(err), (int)(err))

/* ------------------------------------------------------------------ enumeration */

typedef struct cl_dev_ref {
  cl_platform_id platform;
  cl_device_id device;
} cl_dev_ref;

static cl_dev_ref *devices;
static int ndevices = -1;
static char status_msg[256];

static void enumerate(void) {
  if (ndevices >= 0) return;
  ndevices = 0;
  cl_uint np = 0;
  cl_int e = clGetPlatformIDs(0, NULL, &np);
  if (e != CL_SUCCESS || np == 0) {
    snprintf(status_msg, sizeof status_msg, "no OpenCL platform (%s); install an ICD such as pocl-opencl-icd",
             e == CL_SUCCESS ? "none installed" : cl_error_name(e));
    return;
  }
  cl_platform_id *ps = calloc(np, sizeof *ps);
  if (!ps) return;
  clGetPlatformIDs(np, ps, NULL);
  for (cl_uint p = 0; p < np; p++) {
    cl_uint nd = 0;
    if (clGetDeviceIDs(ps[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || nd == 0) continue;
    cl_device_id *ds = calloc(nd, sizeof *ds);
    cl_dev_ref *grown = realloc(devices, (size_t)(ndevices + (int)nd) * sizeof *grown);
    if (!ds || !grown) {
      free(ds);
      break;
    }
    devices = grown;
    clGetDeviceIDs(ps[p], CL_DEVICE_TYPE_ALL, nd, ds, NULL);
    for (cl_uint d = 0; d < nd; d++) devices[ndevices++] = (cl_dev_ref){ps[p], ds[d]};
    free(ds);
  }
  free(ps);
  if (ndevices == 0) snprintf(status_msg, sizeof status_msg, "OpenCL platforms found, but no devices");
}

static int cl_device_count(void) {
  enumerate();
  return ndevices;
}

static const char *cl_status(void) {
  enumerate();
  return status_msg;
}

static int ocl_device_info(int index, sloth_device_info *out) {
  enumerate();
  if (index < 0 || index >= ndevices) return sloth__fail(SLOTH_E_INVALID, "no OpenCL device %d", index);
  cl_device_id d = devices[index].device;
  memset(out, 0, sizeof *out);
  snprintf(out->backend, sizeof out->backend, "opencl");
  out->index = index;
  clGetDeviceInfo(d, CL_DEVICE_NAME, sizeof out->name - 1, out->name, NULL);
  clGetDeviceInfo(d, CL_DEVICE_VENDOR, sizeof out->vendor - 1, out->vendor, NULL);
  char drv[256] = {0}, plat[512] = {0};
  clGetDeviceInfo(d, CL_DRIVER_VERSION, sizeof drv - 1, drv, NULL);
  clGetPlatformInfo(devices[index].platform, CL_PLATFORM_VERSION, sizeof plat - 1, plat, NULL);
  snprintf(out->version, sizeof out->version, "%.60s, driver %.40s", plat, drv);
  cl_device_type type = 0;
  clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof type, &type, NULL);
  out->is_gpu = (type & CL_DEVICE_TYPE_GPU) != 0;
  cl_uint cu = 0;
  clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
  out->compute_units = (int)cu;
  cl_ulong mem = 0, alloc = 0;
  clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL);
  clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof alloc, &alloc, NULL);
  out->global_mem_bytes = mem;
  out->max_alloc_bytes = alloc;
  size_t ext_len = 0;
  clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_len);
  char *ext = calloc(ext_len + 1, 1);
  if (ext) {
    clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, ext_len, ext, NULL);
    out->fp16 = strstr(ext, "cl_khr_fp16") != NULL;
    out->fp64 = strstr(ext, "cl_khr_fp64") != NULL;
    free(ext);
  }
  return SLOTH_OK;
}

/* ------------------------------------------------------------------ lifetime */

static void cl_close(sloth__device *dev);

static int cl_open(int index, sloth__device **out) {
  enumerate();
  if (index < 0 || index >= ndevices) return sloth__fail(SLOTH_E_DEVICE, "no OpenCL device %d", index);
  sloth__device *dev = sloth__xcalloc(1, sizeof *dev);
  if (!dev) return SLOTH_E_NOMEM;
  dev->platform = devices[index].platform;
  dev->device = devices[index].device;
  cl_int e;
  cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)dev->platform, 0};
  dev->context = clCreateContext(props, 1, &dev->device, NULL, NULL, &e);
  if (e != CL_SUCCESS) {
    free(dev);
    return CL_FAIL(SLOTH_E_DEVICE, e, "clCreateContext");
  }
  dev->queue = clCreateCommandQueue(dev->context, dev->device, 0, &e);
  if (e != CL_SUCCESS) {
    clReleaseContext(dev->context);
    free(dev);
    return CL_FAIL(SLOTH_E_DEVICE, e, "clCreateCommandQueue");
  }
  cl_device_type type = 0;
  clGetDeviceInfo(dev->device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
  dev->is_cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
  sloth_device_info info;
  if (ocl_device_info(index, &info) == SLOTH_OK) dev->fp16 = info.fp16, dev->fp64 = info.fp64;
  int rc = sloth__opencl_gemm_choose(dev); /* SLOTH_GEMM: a bad value fails here, at init */
  if (rc != SLOTH_OK) {
    cl_close(dev);
    return rc;
  }
  *out = dev;
  return SLOTH_OK;
}

static void cl_close(sloth__device *dev) {
  clFinish(dev->queue);
  clReleaseCommandQueue(dev->queue);
  clReleaseContext(dev->context);
  free(dev);
}

/* ------------------------------------------------------------------ memory */

static int cl_alloc(sloth__device *dev, size_t bytes, sloth__buffer **out) {
  cl_int e;
  cl_mem m = clCreateBuffer(dev->context, CL_MEM_READ_WRITE, bytes, NULL, &e);
  if (e != CL_SUCCESS) return CL_FAIL(SLOTH_E_NOMEM, e, "clCreateBuffer");
  *out = (sloth__buffer *)m;
  return SLOTH_OK;
}

static void cl_free(sloth__device *dev, sloth__buffer *buf) {
  (void)dev;
  clReleaseMemObject((cl_mem)buf);
}

static int cl_write(sloth__device *dev, sloth__buffer *buf, size_t off, const void *src, size_t bytes) {
  cl_int e = clEnqueueWriteBuffer(dev->queue, (cl_mem)buf, CL_TRUE, off, bytes, src, 0, NULL, NULL);
  return e == CL_SUCCESS ? SLOTH_OK : CL_FAIL(SLOTH_E_DEVICE, e, "clEnqueueWriteBuffer");
}

static int cl_read(sloth__device *dev, sloth__buffer *buf, size_t off, void *dst, size_t bytes) {
  cl_int e = clEnqueueReadBuffer(dev->queue, (cl_mem)buf, CL_TRUE, off, bytes, dst, 0, NULL, NULL);
  return e == CL_SUCCESS ? SLOTH_OK : CL_FAIL(SLOTH_E_DEVICE, e, "clEnqueueReadBuffer");
}

/* ------------------------------------------------------------------ kernels */

static int cl_compile(sloth__device *dev, const char *source, const char *name, const char *options,
                      sloth__kernel **out) {
  cl_int e;
  cl_program prog = clCreateProgramWithSource(dev->context, 1, &source, NULL, &e);
  if (e != CL_SUCCESS) return CL_FAIL(SLOTH_E_COMPILE, e, "clCreateProgramWithSource");
  e = clBuildProgram(prog, 1, &dev->device, options ? options : "", NULL, NULL);
  if (e != CL_SUCCESS) {
    size_t len = 0;
    clGetProgramBuildInfo(prog, dev->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &len);
    char *log = calloc(len + 1, 1);
    if (log) clGetProgramBuildInfo(prog, dev->device, CL_PROGRAM_BUILD_LOG, len, log, NULL);
    sloth__fail(SLOTH_E_COMPILE, "OpenCL: building kernel %s failed: %s (%d)\n--- build log ---\n%s", name,
                cl_error_name(e), (int)e, log ? log : "(no log)");
    free(log);
    clReleaseProgram(prog);
    return SLOTH_E_COMPILE;
  }
  cl_kernel k = clCreateKernel(prog, name, &e);
  if (e != CL_SUCCESS) {
    clReleaseProgram(prog);
    return CL_FAIL(SLOTH_E_COMPILE, e, "clCreateKernel");
  }
  sloth__kernel *r = sloth__xmalloc(sizeof *r);
  if (!r) {
    clReleaseKernel(k);
    clReleaseProgram(prog);
    return SLOTH_E_NOMEM;
  }
  r->program = prog;
  r->kernel = k;
  *out = r;
  return SLOTH_OK;
}

static void cl_kernel_free(sloth__device *dev, sloth__kernel *k) {
  (void)dev;
  clReleaseKernel(k->kernel);
  clReleaseProgram(k->program);
  free(k);
}

static int cl_launch(sloth__device *dev, sloth__kernel *k, const sloth__launch *geom, int nargs, const sloth__karg *args) {
  cl_int e = CL_SUCCESS;
  for (int i = 0; i < nargs && e == CL_SUCCESS; i++) {
    if (args[i].kind == KARG_BUFFER) {
      cl_mem m = (cl_mem)args[i].buffer;
      e = clSetKernelArg(k->kernel, (cl_uint)i, sizeof m, &m);
    } else {
      e = clSetKernelArg(k->kernel, (cl_uint)i, args[i].size, args[i].value);
    }
  }
  if (e == CL_SUCCESS && geom->local_mem) e = clSetKernelArg(k->kernel, (cl_uint)nargs, geom->local_mem, NULL);
  if (e != CL_SUCCESS) return CL_FAIL(SLOTH_E_DEVICE, e, "clSetKernelArg");
  e = clEnqueueNDRangeKernel(dev->queue, k->kernel, 1, NULL, &geom->global, &geom->local, 0, NULL, NULL);
  return e == CL_SUCCESS ? SLOTH_OK : CL_FAIL(SLOTH_E_DEVICE, e, "clEnqueueNDRangeKernel");
}

static int cl_finish(sloth__device *dev) {
  cl_int e = clFinish(dev->queue);
  return e == CL_SUCCESS ? SLOTH_OK : CL_FAIL(SLOTH_E_DEVICE, e, "clFinish");
}

const sloth__backend sloth__opencl_backend = {
    .name = "opencl",
    .dialect = DIALECT_OPENCL,
    .device_count = cl_device_count,
    .device_info = ocl_device_info,
    .status = cl_status,
    .open = cl_open,
    .close = cl_close,
    .alloc = cl_alloc,
    .free = cl_free,
    .write = cl_write,
    .read = cl_read,
    .compile = cl_compile,
    .kernel_free = cl_kernel_free,
    .launch = cl_launch,
    .finish = cl_finish,
    .gemm = sloth__opencl_gemm,
    .gemm_dtype = sloth__opencl_gemm_dtype,
};
