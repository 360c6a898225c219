/*
 * philox.cl - the Philox4x32-10 counter-based generator (Salmon et al.,
 * "Parallel random numbers: as easy as 1, 2, 3", SC 2011), shared by the
 * OpenCL C and CUDA C dialects. Included in a generated kernel only when it
 * draws random numbers.
 *
 * Element i of a draw with key (seed_lo, seed_hi) and stream offset `off`
 * uses counter (i / 4, 0, off, 0) and takes word i % 4 (uniform) or, for
 * normals, counter (i / 2, 0, off, 0) and the word pair i % 2 (Box-Muller).
 * The seed and offset are kernel arguments, so a new step draws new numbers
 * without compiling, and every backend gives the same numbers.
 */
#ifdef __CUDACC_RTC__
typedef unsigned int sl_u32;
#define sl_mulhi(a, b) __umulhi(a, b)
#else
typedef uint sl_u32;
/* a widening multiply rather than mul_hi, which POCL keeps scalar */
#define sl_mulhi(a, b) ((sl_u32)(((ulong)(a) * (ulong)(b)) >> 32))
#endif

typedef struct sl_philox4 {
  sl_u32 v[4];
} sl_philox4;

/* one round and its key bump, written out ten times below: with a loop
 * over the rounds POCL kept the element loop around it scalar */
#define SL_PHILOX_ROUND                                                 \
  {                                                                     \
    const sl_u32 h0 = sl_mulhi(0xD2511F53u, c0), l0 = 0xD2511F53u * c0; \
    const sl_u32 h1 = sl_mulhi(0xCD9E8D57u, c2), l1 = 0xCD9E8D57u * c2; \
    c0 = h1 ^ c1 ^ k0;                                                  \
    c2 = h0 ^ c3 ^ k1;                                                  \
    c1 = l1;                                                            \
    c3 = l0;                                                            \
    k0 += 0x9E3779B9u;                                                  \
    k1 += 0xBB67AE85u;                                                  \
  }

static inline sl_philox4 sl_philox(sl_u32 c0, sl_u32 c1, sl_u32 c2, sl_u32 c3, sl_u32 k0, sl_u32 k1) {
  SL_PHILOX_ROUND SL_PHILOX_ROUND SL_PHILOX_ROUND SL_PHILOX_ROUND SL_PHILOX_ROUND
  SL_PHILOX_ROUND SL_PHILOX_ROUND SL_PHILOX_ROUND SL_PHILOX_ROUND SL_PHILOX_ROUND
  sl_philox4 out;
  out.v[0] = c0;
  out.v[1] = c1;
  out.v[2] = c2;
  out.v[3] = c3;
  return out;
}

/* 24 random bits to a float in [0, 1) */
static inline float sl_u32_to_unit(sl_u32 x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }

static inline float sl_rand_uniform(long i, int seed_lo, int seed_hi, int off) {
  sl_philox4 r = sl_philox((sl_u32)(i >> 2), (sl_u32)(i >> 34), (sl_u32)off, 0u, (sl_u32)seed_lo, (sl_u32)seed_hi);
  /* the word by two bit tests: an indexed word would put r in memory, and
   * a chain of w == k tests kept POCL from vectorizing the element loop */
  const int w = (int)(i & 3);
  const sl_u32 lo = (w & 1) ? r.v[1] : r.v[0], hi = (w & 1) ? r.v[3] : r.v[2];
  return sl_u32_to_unit((w & 2) ? hi : lo);
}

static inline float sl_rand_normal(long i, int seed_lo, int seed_hi, int off) {
  sl_philox4 r = sl_philox((sl_u32)(i >> 1), (sl_u32)(i >> 33), (sl_u32)off, 0u, (sl_u32)seed_lo, (sl_u32)seed_hi);
  const bool odd = (i & 1) != 0;
  float u1 = 1.0f - sl_u32_to_unit(odd ? r.v[2] : r.v[0]); /* (0, 1]: log is finite */
  float u2 = sl_u32_to_unit(odd ? r.v[3] : r.v[1]);
  return sqrt(-2.0f * sl_log(u1)) * sl_cos(6.2831853071795864f * u2);
}
