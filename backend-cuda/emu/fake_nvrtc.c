/* fake_nvrtc.c - a stand-in libnvrtc.so.13 for the emulated CUDA device
 * (tests only; never installed; see fake_libcuda.c).
 *
 * nvrtcCompileProgram first hands the program to the real NVRTC when
 * SLOTH_EMU_REAL_NVRTC names it (so the source, the options and the
 * architecture are checked exactly as on a GPU machine, and a compile error
 * gives NVRTC's own log), then compiles the same CUDA C for the host with
 * the C++ compiler ($CXX, default c++) after backend-cuda/emu/cuda_emu.h
 * (SLOTH_EMU_HEADER). The "CUBIN" (for sm_XY) or "PTX" (for compute_XY) it
 * returns is "SLOTHEMU", a kind byte ('C' or 'P'), '\0', the size of the
 * host shared object as 8 bytes, then the shared object itself.
 */
#include "../cuda_api.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define X(name, ret, params) __attribute__((visibility("default"))) ret name params;
SL_NVRTC_FUNCS(X)
#undef X

static struct {
#define X(name, ret, params) sl_##name##_fn name;
  SL_NVRTC_FUNCS(X)
#undef X
} real;
static int real_loaded = -1;

static int load_real(void) {
  if (real_loaded >= 0) return real_loaded;
  real_loaded = 0;
  const char *path = getenv("SLOTH_EMU_REAL_NVRTC");
  void *h = path && *path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
  if (!h) return 0;
  int complete = 1;
#define X(name, ret, params) complete &= (real.name = (sl_##name##_fn)dlsym(h, #name)) != NULL;
  SL_NVRTC_FUNCS(X)
#undef X
  real_loaded = complete;
  return complete;
}

struct _nvrtcProgram {
  char *src, *name, *log;
  char *image; /* header + shared object */
  size_t image_size;
  int cubin; /* compiled for sm_XY */
  sl_nvrtcProgram real;
};

const char *nvrtcGetErrorString(sl_nvrtcResult r) {
  if (load_real()) return real.nvrtcGetErrorString(r);
  switch (r) {
  case SL_NVRTC_SUCCESS: return "NVRTC_SUCCESS";
  case SL_NVRTC_ERROR_INVALID_OPTION: return "NVRTC_ERROR_INVALID_OPTION";
  case SL_NVRTC_ERROR_COMPILATION: return "NVRTC_ERROR_COMPILATION";
  default: return "NVRTC_ERROR";
  }
}

sl_nvrtcResult nvrtcVersion(int *major, int *minor) {
  *major = 13;
  *minor = 0;
  return SL_NVRTC_SUCCESS;
}

static const int archs[] = {75, 80, 86, 87, 89, 90, 100, 120};

sl_nvrtcResult nvrtcGetNumSupportedArchs(int *n) {
  if (load_real()) return real.nvrtcGetNumSupportedArchs(n);
  *n = (int)(sizeof archs / sizeof archs[0]);
  return SL_NVRTC_SUCCESS;
}

sl_nvrtcResult nvrtcGetSupportedArchs(int *a) {
  if (load_real()) return real.nvrtcGetSupportedArchs(a);
  memcpy(a, archs, sizeof archs);
  return SL_NVRTC_SUCCESS;
}

sl_nvrtcResult nvrtcCreateProgram(sl_nvrtcProgram *prog, const char *src, const char *name, int nh,
                                  const char *const *headers, const char *const *includes) {
  if (!prog || !src) return 3; /* NVRTC_ERROR_INVALID_INPUT */
  sl_nvrtcProgram p = calloc(1, sizeof *p);
  p->src = strdup(src);
  p->name = strdup(name ? name : "default_program");
  if (load_real()) {
    sl_nvrtcResult r = real.nvrtcCreateProgram(&p->real, src, name, nh, headers, includes);
    if (r != SL_NVRTC_SUCCESS) {
      free(p->src), free(p->name), free(p);
      return r;
    }
  }
  *prog = p;
  return SL_NVRTC_SUCCESS;
}

sl_nvrtcResult nvrtcDestroyProgram(sl_nvrtcProgram *prog) {
  if (!prog || !*prog) return 4; /* NVRTC_ERROR_INVALID_PROGRAM */
  sl_nvrtcProgram p = *prog;
  if (p->real) real.nvrtcDestroyProgram(&p->real);
  free(p->src), free(p->name), free(p->log), free(p->image), free(p);
  *prog = NULL;
  return SL_NVRTC_SUCCESS;
}

static char *slurp(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
  if (s) s[n] = '\0';
  fclose(f);
  if (size) *size = (size_t)n;
  return s;
}

sl_nvrtcResult nvrtcCompileProgram(sl_nvrtcProgram p, int n, const char *const *opts) {
  if (!p) return 4;
  const char *arch = NULL;
  for (int i = 0; i < n; i++) {
    if (strncmp(opts[i], "--gpu-architecture=", 19) == 0) arch = opts[i] + 19;
    else if (strncmp(opts[i], "-arch=", 6) == 0) arch = opts[i] + 6;
  }
  p->cubin = arch && strncmp(arch, "sm_", 3) == 0;
  free(p->log);
  p->log = NULL;
  if (p->real) {
    sl_nvrtcResult r = real.nvrtcCompileProgram(p->real, n, opts);
    if (r != SL_NVRTC_SUCCESS) {
      size_t len = 0;
      real.nvrtcGetProgramLogSize(p->real, &len);
      p->log = calloc(len + 1, 1);
      real.nvrtcGetProgramLog(p->real, p->log);
      return r;
    }
  } else {
    for (int i = 0; i < n; i++)
      if (strncmp(opts[i], "--gpu-architecture=", 19) != 0 && strncmp(opts[i], "-arch=", 6) != 0 &&
          strncmp(opts[i], "--", 2) != 0 && strncmp(opts[i], "-D", 2) != 0) {
        p->log = strdup("fake nvrtc: unrecognized option\n");
        return SL_NVRTC_ERROR_INVALID_OPTION;
      }
  }
  /* the host build */
  char dir[] = "/tmp/sloth-emu-XXXXXX";
  if (!mkdtemp(dir)) return 11; /* NVRTC_ERROR_INTERNAL_ERROR */
  char cpp[64], so[64], log[64], cmd[1024];
  snprintf(cpp, sizeof cpp, "%s/k.cpp", dir);
  snprintf(so, sizeof so, "%s/k.so", dir);
  snprintf(log, sizeof log, "%s/log", dir);
  FILE *f = fopen(cpp, "w");
  if (!f) return 11;
  const char *header = getenv("SLOTH_EMU_HEADER");
  fprintf(f, "#include \"%s\"\n#line 1 \"%s\"\n%s\n", header ? header : "cuda_emu.h", p->name, p->src);
  int barrier = strstr(p->src, "__syncthreads") != NULL;
  for (const char *s = p->src; (s = strstr(s, "__global__ void "));) { /* a launcher per kernel */
    s += strlen("__global__ void ");
    size_t len = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
    fprintf(f, "SLOTH_EMU_LAUNCHER(%.*s, %s)\n", (int)len, s, barrier ? "true" : "false");
  }
  fclose(f);
  const char *cxx = getenv("CXX");
  snprintf(cmd, sizeof cmd, "%s -std=c++17 -O1 -w -shared -fPIC -o %s %s > %s 2>&1", cxx && *cxx ? cxx : "c++", so, cpp, log);
  int rc = system(cmd);
  sl_nvrtcResult r = SL_NVRTC_SUCCESS;
  size_t size = 0;
  char *bytes = rc == 0 ? slurp(so, &size) : NULL;
  if (!bytes) {
    p->log = slurp(log, NULL);
    r = SL_NVRTC_ERROR_COMPILATION;
  } else {
    p->image_size = 10 + 8 + size;
    p->image = malloc(p->image_size);
    memcpy(p->image, "SLOTHEMU", 8);
    p->image[8] = p->cubin ? 'C' : 'P';
    p->image[9] = '\0';
    uint64_t sz = size;
    memcpy(p->image + 10, &sz, 8);
    memcpy(p->image + 18, bytes, size);
    free(bytes);
  }
  remove(cpp), remove(so), remove(log), rmdir(dir);
  return r;
}

sl_nvrtcResult nvrtcGetPTXSize(sl_nvrtcProgram p, size_t *n) {
  if (!p || !p->image) return 4;
  *n = p->image_size;
  return SL_NVRTC_SUCCESS;
}

sl_nvrtcResult nvrtcGetPTX(sl_nvrtcProgram p, char *out) {
  if (!p || !p->image) return 4;
  memcpy(out, p->image, p->image_size);
  out[8] = 'P';
  return SL_NVRTC_SUCCESS;
}

sl_nvrtcResult nvrtcGetCUBINSize(sl_nvrtcProgram p, size_t *n) {
  if (!p || !p->image) return 4;
  *n = p->cubin ? p->image_size : 0; /* as NVRTC: no CUBIN for a compute_XY target */
  return SL_NVRTC_SUCCESS;
}

sl_nvrtcResult nvrtcGetCUBIN(sl_nvrtcProgram p, char *out) {
  if (!p || !p->image || !p->cubin) return 4;
  memcpy(out, p->image, p->image_size);
  return SL_NVRTC_SUCCESS;
}

sl_nvrtcResult nvrtcGetProgramLogSize(sl_nvrtcProgram p, size_t *n) {
  if (!p) return 4;
  *n = (p->log ? strlen(p->log) : 0) + 1;
  return SL_NVRTC_SUCCESS;
}

sl_nvrtcResult nvrtcGetProgramLog(sl_nvrtcProgram p, char *out) {
  if (!p) return 4;
  strcpy(out, p->log ? p->log : "");
  return SL_NVRTC_SUCCESS;
}
