/* runtime.c - the global lock, device selection and lifetime. */
#include "internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sloth__runtime sloth__rt;

static pthread_mutex_t lock;
static pthread_once_t lock_once = PTHREAD_ONCE_INIT;

static void lock_init(void) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(&lock, &a);
  pthread_mutexattr_destroy(&a);
}

void sloth__lock(void) {
  pthread_once(&lock_once, lock_init);
  pthread_mutex_lock(&lock);
}
void sloth__unlock(void) { pthread_mutex_unlock(&lock); }

/* ------------------------------------------------------------------ device list */

int sloth_device_count(void) {
  int n = 0;
  for (int b = 0; b < sloth__backend_count; b++) {
    int c = sloth__backends[b]->device_count();
    if (c > 0) n += c;
  }
  return n;
}

/* Maps a global device index to (backend, index within backend). */
static int locate(int i, const sloth__backend **be, int *local) {
  if (i < 0) return SLOTH_E_INVALID;
  for (int b = 0; b < sloth__backend_count; b++) {
    int c = sloth__backends[b]->device_count();
    if (c < 0) c = 0;
    if (i < c) {
      *be = sloth__backends[b];
      *local = i;
      return SLOTH_OK;
    }
    i -= c;
  }
  return SLOTH_E_INVALID;
}

int sloth_device_get(int i, sloth_device_info *out) {
  const sloth__backend *be;
  int local;
  if (!out) return sloth__fail(SLOTH_E_INVALID, "sloth_device_get: NULL output");
  if (locate(i, &be, &local) != SLOTH_OK) return sloth__fail(SLOTH_E_INVALID, "no device with index %d", i);
  return be->device_info(local, out);
}

/* The first GPU of the first backend that has one, else the first device. */
int sloth_device_default(void) {
  int n = sloth_device_count();
  sloth_device_info info;
  for (int i = 0; i < n; i++)
    if (sloth_device_get(i, &info) == SLOTH_OK && info.is_gpu) return i;
  return n > 0 ? 0 : sloth__fail(SLOTH_E_DEVICE, "no device found (is an OpenCL driver such as pocl-opencl-icd installed?)");
}

const char *sloth_backend_status(const char *backend) {
  for (int b = 0; b < sloth__backend_count; b++)
    if (backend && strcmp(sloth__backends[b]->name, backend) == 0) return sloth__backends[b]->status();
  return "backend not compiled in";
}

/* Parses "opencl", "opencl:N", "cuda", "cuda:N" into a global index. */
static int parse_device(const char *spec) {
  char name[32];
  int local = 0;
  const char *colon = strchr(spec, ':');
  size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
  if (len == 0 || len >= sizeof name) return sloth__fail(SLOTH_E_INVALID, "bad device name '%s'", spec);
  memcpy(name, spec, len);
  name[len] = '\0';
  if (colon) {
    char *end;
    long v = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || v < 0) return sloth__fail(SLOTH_E_INVALID, "bad device index in '%s'", spec);
    local = (int)v;
  }
  int base = 0;
  for (int b = 0; b < sloth__backend_count; b++) {
    int c = sloth__backends[b]->device_count();
    if (c < 0) c = 0;
    if (strcmp(sloth__backends[b]->name, name) == 0) {
      if (local >= c)
        return sloth__fail(SLOTH_E_DEVICE, "device '%s' not found: backend %s has %d device(s)%s%s", spec, name, c,
                           c == 0 ? ": " : "", c == 0 ? sloth__backends[b]->status() : "");
      return base + local;
    }
    base += c;
  }
  return sloth__fail(SLOTH_E_INVALID, "unknown backend '%s' (known: opencl%s)", name,
                     sloth__backend_count > 1 ? ", cuda" : "");
}

static int open_device(const char *spec) {
  int idx = spec ? parse_device(spec) : sloth_device_default();
  if (idx < 0) return idx;
  const sloth__backend *be;
  int local;
  if (locate(idx, &be, &local) != SLOTH_OK) return sloth__fail(SLOTH_E_DEVICE, "device %d vanished", idx);
  sloth__device *dev;
  int rc = be->open(local, &dev);
  if (rc != SLOTH_OK) return rc;
  sloth__rt.backend = be;
  sloth__rt.dev = dev;
  be->device_info(local, &sloth__rt.info);
  /* SLOTH_FP64=0: treat the device as one without fp64 (f64 is refused), to
   * test that path on any machine */
  const char *fp64 = sloth__env("SLOTH_FP64");
  if (fp64 && strcmp(fp64, "0") == 0) sloth__rt.info.fp64 = 0;
  const char *d = sloth__env("SLOTH_MAX_DEPTH");
  sloth__rt.max_depth = d ? atoi(d) : 100;
  if (sloth__rt.max_depth < 2) sloth__rt.max_depth = 2;
  sloth__rt.dump_kernels_dir = sloth__env("SLOTH_DUMP_KERNELS");
  sloth__rt.build_options = sloth__env("SLOTH_BUILD_OPTIONS");
  return SLOTH_OK;
}

int sloth__ensure_device(void) {
  if (sloth__rt.dev) return SLOTH_OK;
  return open_device(sloth__env("SLOTH_DEVICE"));
}

int sloth_init(const char *device) {
  sloth__lock();
  int rc = SLOTH_OK;
  if (!device) device = sloth__env("SLOTH_DEVICE");
  if (sloth__rt.dev) {
    if (device) {
      int idx = parse_device(device);
      sloth_device_info want;
      if (idx < 0) rc = idx;
      else if (sloth_device_get(idx, &want) == SLOTH_OK &&
               (strcmp(want.backend, sloth__rt.info.backend) != 0 || want.index != sloth__rt.info.index)) {
        if (sloth__tensor_first()) rc = sloth__fail(SLOTH_E_INVALID, "sloth_init: another device is in use while tensors live");
        else {
          sloth_shutdown();
          rc = open_device(device);
        }
      }
    }
  } else {
    rc = open_device(device);
  }
  sloth__unlock();
  return rc;
}

void sloth__executor_shutdown(void);

void sloth_shutdown(void) {
  sloth__lock();
  if (sloth__tensor_first()) {
    /* their buffers belong to the device: closing it would strand them */
    sloth__fail(SLOTH_E_INVALID, "sloth_shutdown: tensors are still alive; release them first");
    sloth__unlock();
    return;
  }
  if (sloth__rt.dev) {
    sloth__rt.backend->finish(sloth__rt.dev);
    sloth__executor_shutdown();
    sloth__pool_trim();
    sloth__rt.backend->close(sloth__rt.dev);
  }
  memset(&sloth__rt, 0, sizeof sloth__rt);
  sloth__unlock();
}

int sloth_device_current(sloth_device_info *out) {
  sloth__lock();
  int rc = out ? sloth__ensure_device() : sloth__fail(SLOTH_E_INVALID, "NULL output");
  if (rc == SLOTH_OK) *out = sloth__rt.info;
  sloth__unlock();
  return rc;
}
