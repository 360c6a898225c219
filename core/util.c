/* util.c - allocation, environment and growable strings. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *sloth__xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) sloth__fail(SLOTH_E_NOMEM, "out of host memory (%zu bytes)", n);
  return p;
}

void *sloth__xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) sloth__fail(SLOTH_E_NOMEM, "out of host memory (%zu x %zu bytes)", n, size);
  return p;
}

const char *sloth__env(const char *name) {
  const char *v = getenv(name);
  return (v && *v) ? v : NULL;
}

void sloth__str_printf(sloth__str *s, const char *fmt, ...) {
  if (s->oom) return;
  for (;;) {
    size_t room = s->cap - s->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->p ? s->p + s->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < room) {
      s->len += (size_t)n;
      return;
    }
    size_t cap = s->cap ? s->cap * 2 : 1024;
    while (cap - s->len <= (size_t)n) cap *= 2;
    char *p = realloc(s->p, cap);
    if (!p) {
      s->oom = true;
      return;
    }
    s->p = p;
    s->cap = cap;
  }
}

void sloth__str_free(sloth__str *s) {
  free(s->p);
  memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------------ dtypes */

/* IEEE binary16 <-> binary32 on the host, rounding to nearest even: f16
 * scalars (kernel arguments), f16 scalar reads and the GEMM's alpha/beta. */
uint16_t sloth__f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu)); /* NaN stays NaN (quiet) */
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* 65520 and up round to infinity */
  if (ax < 0x38800000u) { /* below 2^-14: a subnormal in units of 2^-24 (1024 is the smallest normal) */
    float a;
    memcpy(&a, &ax, sizeof a);
    return (uint16_t)(sign | (uint16_t)nearbyintf(a * 16777216.0f)); /* exact scaling, then ties to even */
  }
  uint32_t r = ax - (112u << 23); /* rebias the exponent (127 -> 15) */
  r += 0xfffu + ((r >> 13) & 1u); /* round the 13 dropped bits to nearest even; a carry bumps the exponent */
  return (uint16_t)(sign | (r >> 13));
}

float sloth__f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
  if (e == 0) {
    float f = ldexpf((float)m, -24);
    return sign ? -f : f;
  }
  bits = sign | (e == 31 ? 0x7f800000u | (m << 13) : ((e + 112u) << 23) | (m << 13));
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* f64 needs fp64 arithmetic on the device (SLOTH_FP64=0 makes any device
 * look like one without it, to test this path). */
int sloth__dtype_supported(sloth_dtype dt, const char *what) {
  if (dt == SLOTH_F64 && sloth__rt.dev && !sloth__rt.info.fp64)
    return sloth__fail(SLOTH_E_UNSUPPORTED,
                       "%s: f64 is unsupported on this device (%s:%d, %s, has no fp64 arithmetic); use f32 instead",
                       what, sloth__rt.info.backend, sloth__rt.info.index, sloth__rt.info.name);
  return SLOTH_OK;
}
