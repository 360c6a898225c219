/* hash.c - 128-bit hashing (XXH3) for IR nodes, graphs and kernel sources. */
#include "internal.h"

#include <stdlib.h>
#include <xxhash.h>

sloth__hash128 sloth__hash_bytes(const void *data, size_t n, uint64_t seed) {
  XXH128_hash_t h = XXH3_128bits_withSeed(data, n, seed);
  return (sloth__hash128){h.low64, h.high64};
}

struct sloth__hasher {
  XXH3_state_t *state;
};

sloth__hasher *sloth__hasher_new(void) {
  sloth__hasher *h = sloth__xmalloc(sizeof *h);
  if (!h) return NULL;
  h->state = XXH3_createState();
  if (!h->state) {
    free(h);
    sloth__fail(SLOTH_E_NOMEM, "out of host memory (hash state)");
    return NULL;
  }
  XXH3_128bits_reset(h->state);
  return h;
}

void sloth__hasher_reset(sloth__hasher *h) { XXH3_128bits_reset(h->state); }
void sloth__hasher_add(sloth__hasher *h, const void *data, size_t n) { XXH3_128bits_update(h->state, data, n); }

sloth__hash128 sloth__hasher_digest(sloth__hasher *h) {
  XXH128_hash_t d = XXH3_128bits_digest(h->state);
  return (sloth__hash128){d.low64, d.high64};
}

void sloth__hasher_free(sloth__hasher *h) {
  if (!h) return;
  XXH3_freeState(h->state);
  free(h);
}
