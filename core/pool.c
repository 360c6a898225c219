/* pool.c - a caching pool of device buffers, bucketed by rounded size.
 *
 * Buffers handed back are kept for reuse instead of being freed: allocation
 * on a device is slow and training steps allocate the same sizes every step.
 * The pool is bounded (SLOTH_POOL_LIMIT_MB, default 1024); past the bound,
 * the oldest cached buffers are freed. */
#include "internal.h"

#include <stdlib.h>

static sloth__dbuf *free_list; /* newest first */
static size_t free_bytes;

static size_t round_size(size_t bytes) {
  if (bytes <= 4096) return (bytes + 255) & ~(size_t)255;
  /* eight steps per power of two: at most 12.5% waste */
  size_t p = 4096;
  while (p < bytes) p <<= 1;
  size_t step = p / 16;
  return (bytes + step - 1) / step * step;
}

static size_t limit_bytes(void) {
  const char *v = sloth__env("SLOTH_POOL_LIMIT_MB");
  return (v ? (size_t)atol(v) : 1024) << 20;
}

static void free_oldest_until(size_t target) {
  while (free_bytes > target && free_list) {
    sloth__dbuf **pp = &free_list; /* the oldest is at the tail */
    while ((*pp)->next) pp = &(*pp)->next;
    sloth__dbuf *b = *pp;
    *pp = NULL;
    free_bytes -= b->bytes;
    sloth__rt.backend->free(sloth__rt.dev, b->mem);
    free(b);
  }
}

size_t sloth__buffer_rounded(size_t bytes) { return bytes ? round_size(bytes) : 0; }

sloth__dbuf *sloth__buffer_get(size_t bytes) {
  if (bytes == 0) return NULL;
  size_t want = round_size(bytes);
  for (sloth__dbuf **pp = &free_list; *pp; pp = &(*pp)->next) {
    sloth__dbuf *b = *pp;
    if (b->bytes == want) {
      *pp = b->next;
      b->next = NULL;
      free_bytes -= b->bytes;
      sloth__count(CTR_BUFFER_REUSE, 1);
      return b;
    }
  }
  if (sloth__rt.info.max_alloc_bytes && want > sloth__rt.info.max_alloc_bytes) {
    sloth__fail(SLOTH_E_NOMEM, "allocation of %zu bytes exceeds the device's maximum single allocation (%llu bytes)",
                bytes, (unsigned long long)sloth__rt.info.max_alloc_bytes);
    return NULL;
  }
  sloth__dbuf *b = sloth__xcalloc(1, sizeof *b);
  if (!b) return NULL;
  if (sloth__rt.backend->alloc(sloth__rt.dev, want, &b->mem) != SLOTH_OK) {
    free_oldest_until(0); /* give back what the pool caches and try once more */
    if (sloth__rt.backend->alloc(sloth__rt.dev, want, &b->mem) != SLOTH_OK) {
      free(b);
      return NULL;
    }
  }
  b->bytes = want;
  sloth__count(CTR_BUFFER_ALLOC, 1);
  return b;
}

void sloth__buffer_put(sloth__dbuf *b) {
  if (!b) return;
  if (!sloth__rt.dev) { /* device already closed: nothing to give back to */
    free(b);
    return;
  }
  b->next = free_list;
  free_list = b;
  free_bytes += b->bytes;
  free_oldest_until(limit_bytes());
}

void sloth__pool_trim(void) { free_oldest_until(0); }
