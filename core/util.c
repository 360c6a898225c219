/* util.c - allocation, environment and growable strings. */
#include "internal.h"

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
