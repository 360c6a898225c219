/* sloth-tune-gemm - tunes CLBlast's GEMM kernels for one OpenCL device and
 * caches the parameters where Sloth applies them (CLBlastOverrideParameters
 * at the device's first CLBlast GEMM; see backend-opencl/clblast.c).
 *
 * It runs CLBlast's own tuners (Debian's clblast-utils: clblast_tuner_xgemm
 * and clblast_tuner_xgemm_direct) on the device with a time budget, reads the
 * configurations they measured from their output, then checks the best ones
 * with real CLBlastSgemm calls against CLBlast's defaults and keeps only what
 * made them faster. Takes minutes: never run by `make check` or CI.
 *
 * On CPU devices built with a host BLAS, Sloth's GEMM does not use CLBlast
 * at all (SLOTH_GEMM=auto picks the host BLAS), so tuning matters there only
 * with SLOTH_GEMM=clblast. */
#include <sloth.h>

#include <sys/wait.h>

#include "../backend-opencl/opencl.h"

#include <clblast_c.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f) {
  fprintf(f,
          "usage: sloth-tune-gemm [options]\n"
          "Tunes CLBlast's SGEMM kernels for an OpenCL device and caches the parameters\n"
          "in $SLOTH_CACHE_DIR (default ~/.cache/sloth), where Sloth applies them.\n"
          "  --device SPEC    opencl[:N] (default: SLOTH_DEVICE, else Sloth's default device)\n"
          "  --size N         m = n = k the tuners measure (default 512)\n"
          "  --fraction F     explore 1/F of each tuner's configurations (default 16;\n"
          "                   CLBlast 1.5's tuners read -fraction F as 'one in F')\n"
          "  --seconds S      wall-clock budget for each tuner program (default 300)\n"
          "  --kernels LIST   which tuners to run, of xgemm, xgemm_direct, copy_pad,\n"
          "                   transpose_pad, copy_fast, transpose_fast (default: the\n"
          "                   first four); then the direct/indirect switch size is set\n"
          "  --no-verify      keep the tuners' best without timing CLBlastSgemm\n"
          "  --dry-run        print what would be cached, write nothing\n"
          "Needs clblast_tuner_xgemm (apt-get install clblast-utils) on PATH.\n");
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------ running a tuner */

#define MAXP 32

typedef struct best {
  const char *kernel; /* CLBlast's kernel name for CLBlastOverrideParameters */
  double ms;          /* the tuner's time for the best configuration; 0 = none */
  int n;
  char names[MAXP][16];
  size_t values[MAXP];
  int measured;       /* configurations the tuner measured and verified */
} best;

/* Removes ANSI colour escapes in place. */
static void strip_ansi(char *s) {
  char *w = s;
  for (char *r = s; *r;) {
    if (r[0] == '\x1b' && r[1] == '[') {
      r += 2;
      while (*r && *r != 'm') r++;
      if (*r) r++;
    } else {
      *w++ = *r++;
    }
  }
  *w = '\0';
}

/* One line of the tuner's output: the parameter names, or a result row
 *   | ID | total | v1 v2 ... | local | global | OK compile ms | time ms | GFLOPS | results match | */
static void parse_line(char *line, best *b, char (*names)[16], int *nnames) {
  strip_ansi(line);
  const char *tag = "* Parameters explored:";
  if (strncmp(line, tag, strlen(tag)) == 0) {
    *nnames = 0;
    char *save = NULL;
    for (char *tok = strtok_r(line + strlen(tag), " \t\r\n", &save); tok && *nnames < MAXP;
         tok = strtok_r(NULL, " \t\r\n", &save))
      snprintf(names[(*nnames)++], 16, "%s", tok);
    return;
  }
  if (line[0] != '|' || !strstr(line, "results match") || *nnames == 0) return;
  char *field[16];
  int nf = 0;
  char *save = NULL;
  for (char *tok = strtok_r(line, "|", &save); tok && nf < 16; tok = strtok_r(NULL, "|", &save)) field[nf++] = tok;
  /* field: 0 ID, 1 total, 2 params, 3 local, 4 global, 5 compile, 6 time, 7 GFLOPS, 8 status */
  if (nf < 9 || atoi(field[0]) <= 0) return;
  size_t values[MAXP];
  int nv = 0;
  char *p = field[2], *end;
  for (;;) {
    unsigned long long v = strtoull(p, &end, 10);
    if (end == p) break;
    if (nv == MAXP) return;
    values[nv++] = (size_t)v;
    p = end;
  }
  double ms = strtod(field[6], &end);
  if (nv != *nnames || end == field[6] || !(ms > 0)) return;
  b->measured++;
  if (b->ms > 0 && ms >= b->ms) return;
  b->ms = ms;
  b->n = nv;
  for (int i = 0; i < nv; i++) {
    memcpy(b->names[i], names[i], 16);
    b->values[i] = values[i];
  }
}

static int run_tuner(const char *program, int platform, int device, int size, double fraction, int seconds, best *b) {
  char dir[] = "/tmp/sloth-tune-XXXXXX";
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return -1;
  }
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && if command -v stdbuf >/dev/null 2>&1; then lb='stdbuf -oL'; else lb=; fi; "
           "exec timeout -s INT %d $lb %s -platform %d -device %d -precision 32 -m %d -n %d -k %d -fraction %g "
           "-runs 2 2>&1",
           dir, seconds, program, platform, device, size, size, size, fraction);
  printf("# running: %s -platform %d -device %d -precision 32 -m %d -n %d -k %d -fraction %g (at most %d s)\n", program,
         platform, device, size, size, size, fraction, seconds);
  fflush(stdout);
  double t0 = now();
  FILE *p = popen(cmd, "r");
  if (!p) {
    perror("popen");
    return -1;
  }
  char line[8192], names[MAXP][16];
  int nnames = 0;
  while (fgets(line, sizeof line, p)) {
    if (strncmp(line, "* (", 3) == 0) printf("#   %s", line); /* "* (2/4) Tuning ..." */
    parse_line(line, b, names, &nnames);
  }
  int status = pclose(p);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  double gflops = b->ms > 0 ? 2.0 * pow(size, 3) / (b->ms * 1e-3) * 1e-9 : 0;
  printf("# %s: %d configurations measured in %.0f s%s; best %.2f ms (%.1f GFLOP/s)\n", program, b->measured, now() - t0,
         WIFEXITED(status) && WEXITSTATUS(status) == 124 ? " (time budget reached)" : "", b->ms, gflops);
  return b->ms > 0 ? 0 : -1;
}

/* ------------------------------------------------------------------ checking with CLBlastSgemm */

typedef struct bufs {
  cl_mem a, b, c;
  cl_command_queue queue;
} bufs;

/* Median seconds of CLBlastSgemm n x n x n (after a warm-up that compiles). */
static double time_sgemm(bufs *x, size_t n) {
  double v[7];
  int reps = n >= 1024 ? 3 : 7;
  for (int r = -1; r < reps; r++) {
    double t0 = now();
    CLBlastStatusCode s = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, n, n, n, 1.0f, x->a, 0,
                                       n, x->b, 0, n, 0.0f, x->c, 0, n, &x->queue, NULL);
    if (s != CLBlastSuccess || clFinish(x->queue) != CL_SUCCESS) return -1;
    if (r >= 0) v[r] = now() - t0;
  }
  for (int i = 1; i < reps; i++) /* insertion sort */
    for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
      double t = v[j];
      v[j] = v[j - 1], v[j - 1] = t;
    }
  return v[reps / 2];
}

static const size_t check_sizes[] = {256, 512, 1024};
#define NCHECK (sizeof check_sizes / sizeof check_sizes[0])

static double time_all(bufs *x, const char *label, double *per) {
  double total = 0;
  printf("# CLBlastSgemm, %s:", label);
  for (size_t i = 0; i < NCHECK; i++) {
    double t = time_sgemm(x, check_sizes[i]);
    if (t < 0) {
      printf(" n=%zu failed\n", check_sizes[i]);
      return -1;
    }
    per[i] = t;
    total += t;
    printf(" n=%zu %.1f GFLOP/s", check_sizes[i], 2.0 * pow((double)check_sizes[i], 3) / t * 1e-9);
  }
  printf("\n");
  fflush(stdout);
  return total;
}

static void line_of(const best *b, char *out, size_t size) {
  size_t len = (size_t)snprintf(out, size, "%s 32", b->kernel);
  for (int i = 0; i < b->n && len < size; i++)
    if (strcmp(b->names[i], "PRECISION") != 0) len += (size_t)snprintf(out + len, size - len, " %s=%zu", b->names[i], b->values[i]);
  if (len < size - 1) out[len++] = '\n', out[len] = '\0';
}

static bool apply(cl_device_id d, const best *b) {
  const char *names[MAXP];
  size_t values[MAXP], n = 0;
  for (int i = 0; i < b->n; i++)
    if (strcmp(b->names[i], "PRECISION") != 0) names[n] = b->names[i], values[n++] = b->values[i];
  CLBlastStatusCode s = CLBlastOverrideParameters(d, b->kernel, CLBlastPrecisionSingle, n, names, values);
  if (s != CLBlastSuccess) printf("# CLBlastOverrideParameters(%s) refused the parameters (%d)\n", b->kernel, (int)s);
  return s == CLBlastSuccess;
}

static bool set_min_indirect(cl_device_id d, size_t size) {
  const char *names[1] = {"XGEMM_MIN_INDIRECT_SIZE"};
  size_t values[1] = {size};
  return CLBlastOverrideParameters(d, "GemmRoutine", CLBlastPrecisionSingle, 1, names, values) == CLBlastSuccess;
}

/* The tuners this tool can run: clblast_tuner_<name>, the kernel it tunes. */
static const struct tuner {
  const char *name, *kernel;
  bool dflt;
} tuners[] = {
    {"xgemm", "Xgemm", true},            /* the main (indirect) GEMM kernel */
    {"xgemm_direct", "XgemmDirect", true}, /* the direct one, for smaller products */
    {"copy_pad", "Pad", true},            /* helpers of the indirect path */
    {"transpose_pad", "Padtranspose", true},
    {"copy_fast", "Copy", false},
    {"transpose_fast", "Transpose", false},
};
#define NTUNERS ((int)(sizeof tuners / sizeof tuners[0]))

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* progress shows as it happens */
  const char *device = NULL;
  int size = 512, seconds = 300;
  double fraction = 16;
  bool verify = true, dry = false;
  bool want[NTUNERS];
  for (int k = 0; k < NTUNERS; k++) want[k] = tuners[k].dflt;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--device") == 0 && v) device = v, i++;
    else if (strcmp(a, "--size") == 0 && v) size = atoi(v), i++;
    else if (strcmp(a, "--fraction") == 0 && v) fraction = atof(v), i++;
    else if (strcmp(a, "--seconds") == 0 && v) seconds = atoi(v), i++;
    else if (strcmp(a, "--kernels") == 0 && v) {
      for (int k = 0; k < NTUNERS; k++) want[k] = false;
      char list[256], *save = NULL;
      snprintf(list, sizeof list, "%s", v);
      for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int k = 0;
        while (k < NTUNERS && strcmp(tok, tuners[k].name) != 0) k++;
        if (k == NTUNERS) {
          fprintf(stderr, "sloth-tune-gemm: unknown kernel '%s' (see --help)\n", tok);
          return 2;
        }
        want[k] = true;
      }
      i++;
    } else if (strcmp(a, "--no-verify") == 0) verify = false;
    else if (strcmp(a, "--dry-run") == 0) dry = true;
    else {
      usage(stderr);
      return 2;
    }
  }
  if (size < 64 || seconds < 1 || !(fraction >= 1)) {
    fprintf(stderr, "sloth-tune-gemm: --size >= 64, --seconds >= 1, --fraction >= 1\n");
    return 2;
  }
  if (system("command -v clblast_tuner_xgemm >/dev/null 2>&1") != 0) {
    fprintf(stderr, "sloth-tune-gemm: clblast_tuner_xgemm not found: apt-get install clblast-utils\n");
    return 1;
  }
  if (sloth_init(device) != SLOTH_OK) {
    fprintf(stderr, "sloth-tune-gemm: %s\n", sloth_last_error());
    return 1;
  }
  sloth_device_info info;
  sloth_device_current(&info);
  if (strcmp(info.backend, "opencl") != 0) {
    fprintf(stderr, "sloth-tune-gemm: %s:%d is not an OpenCL device\n", info.backend, info.index);
    return 1;
  }
  sloth__device *dev = sloth__rt.dev;

  /* the tuners number platforms, and devices within a platform, as OpenCL lists them */
  cl_uint np = 0;
  clGetPlatformIDs(0, NULL, &np);
  cl_platform_id plats[64];
  clGetPlatformIDs(np < 64 ? np : 64, plats, NULL);
  int pi = -1, di = -1;
  for (cl_uint i = 0; i < np && i < 64; i++)
    if (plats[i] == dev->platform) pi = (int)i;
  cl_uint nd = 0;
  cl_device_id devs[64];
  if (pi >= 0 && clGetDeviceIDs(dev->platform, CL_DEVICE_TYPE_ALL, 64, devs, &nd) == CL_SUCCESS)
    for (cl_uint i = 0; i < nd && i < 64; i++)
      if (devs[i] == dev->device) di = (int)i;
  if (pi < 0 || di < 0) {
    fprintf(stderr, "sloth-tune-gemm: cannot find the device's OpenCL platform/device numbers\n");
    return 1;
  }
  char path[1200];
  if (sloth__clblast_tuning_path(dev->device, path, sizeof path) != SLOTH_OK) {
    fprintf(stderr, "sloth-tune-gemm: %s\n", sloth_last_error());
    return 1;
  }
  printf("# device: opencl:%d %s (%s); OpenCL platform %d, device %d\n# cache file: %s\n", info.index, info.name,
         info.version, pi, di, path);

  /* CLBlast's defaults first: overrides are process wide and cannot be undone */
  bufs x = {.queue = dev->queue};
  size_t maxn = check_sizes[NCHECK - 1], bytes = maxn * maxn * sizeof(float);
  cl_int e1, e2, e3;
  x.a = clCreateBuffer(dev->context, CL_MEM_READ_WRITE, bytes, NULL, &e1);
  x.b = clCreateBuffer(dev->context, CL_MEM_READ_WRITE, bytes, NULL, &e2);
  x.c = clCreateBuffer(dev->context, CL_MEM_READ_WRITE, bytes, NULL, &e3);
  if (e1 != CL_SUCCESS || e2 != CL_SUCCESS || e3 != CL_SUCCESS) {
    fprintf(stderr, "sloth-tune-gemm: clCreateBuffer failed\n");
    return 1;
  }
  float zero = 0;
  clEnqueueFillBuffer(x.queue, x.a, &zero, sizeof zero, 0, bytes, 0, NULL, NULL);
  clEnqueueFillBuffer(x.queue, x.b, &zero, sizeof zero, 0, bytes, 0, NULL, NULL);
  double per_default[NCHECK], per[NCHECK], t_default = 0;
  if (verify && (t_default = time_all(&x, "CLBlast defaults", per_default)) < 0) {
    fprintf(stderr, "sloth-tune-gemm: CLBlastSgemm failed on this device\n");
    return 1;
  }

  char lines[8192] = "";
  double t_best = t_default;
  for (int k = 0; k < NTUNERS; k++) {
    if (!want[k]) continue;
    char program[64];
    snprintf(program, sizeof program, "clblast_tuner_%s", tuners[k].name);
    best tuned = {.kernel = tuners[k].kernel};
    if (run_tuner(program, pi, di, size, fraction, seconds, &tuned) != 0) {
      printf("# %s: no configuration found\n", program);
      continue;
    }
    char line[2048], label[64];
    line_of(&tuned, line, sizeof line);
    printf("# best: %s", line);
    if (verify) {
      if (!apply(dev->device, &tuned)) continue;
      snprintf(label, sizeof label, "with the tuned %s too", tuned.kernel);
      double t = time_all(&x, label, per);
      if (t < 0 || t >= t_best) {
        printf("# %s: no faster than before (%.3f s vs %.3f s over the sizes): not cached\n", tuned.kernel, t, t_best);
        continue; /* (the override stays in this process only) */
      }
      t_best = t;
    }
    strncat(lines, line, sizeof lines - strlen(lines) - 1);
  }
  /* Where CLBlast switches from the direct kernel to the indirect one
   * (m n k >= XGEMM_MIN_INDIRECT_SIZE^3), from both timed at each size. */
  if (verify && lines[0]) {
    double direct[NCHECK], indirect[NCHECK];
    if (set_min_indirect(dev->device, 1) && time_all(&x, "indirect kernel only", indirect) > 0 &&
        set_min_indirect(dev->device, 1 << 15) && time_all(&x, "direct kernel only", direct) > 0) {
      size_t from = 1 << 15; /* the smallest size from which indirect wins at every larger size */
      for (int i = (int)NCHECK - 1; i >= 0 && indirect[i] < direct[i]; i--) from = check_sizes[i];
      double t = 0;
      for (size_t i = 0; i < NCHECK; i++) t += check_sizes[i] >= from ? indirect[i] : direct[i];
      printf("# direct kernel below n=%zu: %.3f s over the sizes (before: %.3f s)\n", from, t, t_best);
      if (t < t_best) {
        char line[128];
        snprintf(line, sizeof line, "GemmRoutine 32 XGEMM_MIN_INDIRECT_SIZE=%zu\n", from);
        strncat(lines, line, sizeof lines - strlen(lines) - 1);
        t_best = t;
      }
    }
  }
  if (verify && t_default > 0) printf("tune_gemm_speedup %.3g x (CLBlastSgemm n=256..1024, total time default / tuned)\n", t_default / t_best);
  if (!lines[0]) {
    printf("# nothing to cache: CLBlast's defaults stay\n");
    return 0;
  }
  if (dry) {
    printf("# --dry-run: would write %s:\n%s", path, lines);
    return 0;
  }
  if (sloth__clblast_tuning_save(dev->device, lines) != SLOTH_OK) {
    fprintf(stderr, "sloth-tune-gemm: %s\n", sloth_last_error());
    return 1;
  }
  printf("# wrote %s\n", path);
  clReleaseMemObject(x.a), clReleaseMemObject(x.b), clReleaseMemObject(x.c);
  return 0;
}
