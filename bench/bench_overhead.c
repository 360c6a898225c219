/* bench_overhead.c - host-side costs of the lazy runtime.
 *
 *   record_op_ns          recording one op (validation, IR node, hash,
 *                         tensor handle): median over batches of 50 ops in a
 *                         chain (below SLOTH_MAX_DEPTH, so nothing syncs)
 *   release_op_ns         releasing those tensors (sloth_scope_end), per op
 *   record_op_trimmed_ns  one long chain of 20000 ops with the default
 *                         SLOTH_MAX_DEPTH (100): recording plus the cached
 *                         syncs that trimming adds, per op
 *   cached_sync_us        sloth_sync + sloth_wait of a 100-node graph whose
 *                         plan is cached (walk, hash, lookup, launch of one
 *                         fused kernel over 16 floats, wait)
 *   cached_sync_host_us   the same without the wait: what the host spends
 *   cached_sync_1node_us  sync + wait of a 1-node graph: the launch floor
 *   sync_lower_us         the runtime's own lower_ns per cached 100-node sync
 *                         (walk, hash, lookup)
 *   cached_sync_vs_1node  cached_sync_us / cached_sync_1node_us
 *
 * Env: BENCH_REPS (default 301 syncs; batches are 10x that).
 */
#include "bench_util.h"

#define CHAIN 50
#define GRAPH 100

static sloth_tensor *op(int i, sloth_tensor *t, sloth_tensor *y) {
  switch (i % 5) {
  case 0: return sloth_add(t, y);
  case 1: return sloth_mul(t, y);
  case 2: return sloth_neg(t);
  case 3: return sloth_maximum(t, y);
  default: return sloth_sub(t, y);
  }
}

/* A chain of n ops on x; returns the last (kept), intermediates released. */
static sloth_tensor *chain(sloth_tensor *x, sloth_tensor *y, int n) {
  sloth_scope_begin();
  sloth_tensor *t = x;
  for (int i = 0; i < n; i++) t = op(i, t, y);
  BENCH_CHECK(t);
  sloth_keep(t);
  sloth_scope_end();
  return t;
}

/* Median microseconds of a cached sync of an n-node graph (wait: with sloth_wait). */
static double time_sync(sloth_tensor *x, sloth_tensor *y, int n, int reps, int wait, double *lower_us) {
  for (int w = 0; w < 3; w++) { /* compiles, then warms the plan cache */
    sloth_tensor *t = chain(x, y, n);
    BENCH_CHECK(sloth_sync(&t, 1) == SLOTH_OK && sloth_wait() == SLOTH_OK);
    sloth_release(t);
  }
  double *v = malloc((size_t)reps * sizeof *v);
  int64_t miss0 = sloth_counter("plan_cache_miss"), lower0 = sloth_counter("lower_ns");
  for (int r = 0; r < reps; r++) {
    sloth_tensor *t = chain(x, y, n);
    double t0 = bench_now();
    BENCH_CHECK(sloth_sync(&t, 1) == SLOTH_OK);
    if (wait) BENCH_CHECK(sloth_wait() == SLOTH_OK);
    v[r] = bench_now() - t0;
    if (!wait) BENCH_CHECK(sloth_wait() == SLOTH_OK);
    sloth_release(t);
  }
  if (sloth_counter("plan_cache_miss") != miss0) fprintf(stderr, "warning: plan cache misses during the timed syncs\n");
  if (lower_us) *lower_us = (double)(sloth_counter("lower_ns") - lower0) / reps / 1e3;
  double m = bench_median(v, reps);
  free(v);
  return m * 1e6;
}

int main(void) {
  int reps = bench_reps(301);
  if (sloth_init(NULL) != SLOTH_OK) {
    fprintf(stderr, "bench_overhead: no device: %s\n", sloth_last_error());
    return 77;
  }
  float h[16];
  for (int i = 0; i < 16; i++) h[i] = 1.0f + 0.01f * (float)i;
  int64_t shape[1] = {16};
  sloth_tensor *x = sloth_from_host(h, SLOTH_F32, 1, shape), *y = sloth_from_host(h, SLOTH_F32, 1, shape);
  BENCH_CHECK(x && y);

  /* recording, in batches below the depth bound */
  int batches = 10 * reps;
  double *rec = malloc((size_t)batches * sizeof *rec), *rel = malloc((size_t)batches * sizeof *rel);
  int64_t trim0 = sloth_counter("graph_trim");
  for (int b = 0; b < batches; b++) {
    sloth_scope_begin();
    sloth_tensor *t = x;
    double t0 = bench_now();
    for (int i = 0; i < CHAIN; i++) t = op(i, t, y);
    double t1 = bench_now();
    BENCH_CHECK(t);
    sloth_scope_end();
    double t2 = bench_now();
    rec[b] = (t1 - t0) / CHAIN;
    rel[b] = (t2 - t1) / CHAIN;
  }
  if (sloth_counter("graph_trim") != trim0) fprintf(stderr, "warning: graph trimmed while recording short chains\n");
  bench_figure("record_op_ns", bench_median(rec, batches) * 1e9, "ns");
  bench_figure("release_op_ns", bench_median(rel, batches) * 1e9, "ns");
  free(rec), free(rel);

  /* one long chain: trimming syncs every SLOTH_MAX_DEPTH ops */
  {
    enum { LONG = 20000 };
    sloth_tensor *warm = chain(x, y, 1000); /* compiles the trimmed plans */
    sloth_release(warm);
    trim0 = sloth_counter("graph_trim");
    double t0 = bench_now();
    sloth_tensor *t = chain(x, y, LONG);
    BENCH_CHECK(sloth_wait() == SLOTH_OK);
    double dt = bench_now() - t0;
    sloth_release(t);
    bench_figure("record_op_trimmed_ns", dt / LONG * 1e9, "ns");
    bench_figure("record_op_trims", (double)(sloth_counter("graph_trim") - trim0), "syncs");
  }

  double lower_us;
  double with_wait = time_sync(x, y, GRAPH, reps, 1, &lower_us);
  double host = time_sync(x, y, GRAPH, reps, 0, NULL);
  double floor1 = time_sync(x, y, 1, reps, 1, NULL);
  bench_figure("cached_sync_us", with_wait, "us");
  bench_figure("cached_sync_host_us", host, "us");
  bench_figure("cached_sync_1node_us", floor1, "us");
  bench_figure("sync_lower_us", lower_us, "us");
  bench_figure("cached_sync_vs_1node", with_wait / floor1, "x");

  sloth_release(x);
  sloth_release(y);
  sloth_shutdown();
  return 0;
}
