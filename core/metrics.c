/* metrics.c - counters and timers (printed at exit when SLOTH_METRICS=1). */
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const counter_names[CTR_COUNT] = {
    [CTR_PLAN_CACHE_HIT] = "plan_cache_hit",
    [CTR_PLAN_CACHE_MISS] = "plan_cache_miss",
    [CTR_KERNEL_COMPILE] = "kernel_compile",
    [CTR_KERNEL_CACHE_HIT] = "kernel_cache_hit",
    [CTR_KERNEL_LAUNCH] = "kernel_launch",
    [CTR_GEMM_CALL] = "gemm_call",
    [CTR_BYTES_TO_DEVICE] = "bytes_to_device",
    [CTR_BYTES_FROM_DEVICE] = "bytes_from_device",
    [CTR_GRAPH_TRIM] = "graph_trim",
    [CTR_SYNC] = "sync",
    [CTR_NODES_CREATED] = "nodes_created",
    [CTR_BUFFER_ALLOC] = "buffer_alloc",
    [CTR_BUFFER_REUSE] = "buffer_reuse",
    [CTR_BUFFER_SHARE] = "buffer_share",
    [CTR_TRACE_NS] = "trace_ns",
    [CTR_LOWER_NS] = "lower_ns",
    [CTR_COMPILE_NS] = "compile_ns",
    [CTR_EXECUTE_NS] = "execute_ns",
};

static _Atomic int64_t counters[CTR_COUNT];

void sloth__count(sloth__counter_id c, int64_t v) { atomic_fetch_add_explicit(&counters[c], v, memory_order_relaxed); }

uint64_t sloth__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int64_t sloth__counter_value(sloth__counter_id c) { return atomic_load(&counters[c]); }

int64_t sloth_counter(const char *name) {
  if (!name) return -1;
  for (int i = 0; i < CTR_COUNT; i++)
    if (strcmp(name, counter_names[i]) == 0) return atomic_load(&counters[i]);
  return -1;
}

void sloth_metrics_reset(void) {
  for (int i = 0; i < CTR_COUNT; i++) atomic_store(&counters[i], 0);
}

void sloth_metrics_report(FILE *out) {
  if (!out) return;
  for (int i = 0; i < CTR_COUNT; i++) fprintf(out, "%s: %lld\n", counter_names[i], (long long)atomic_load(&counters[i]));
}

static void report_at_exit(void) { sloth_metrics_report(stderr); }

__attribute__((constructor)) static void metrics_init(void) {
  const char *v = sloth__env("SLOTH_METRICS");
  if (v && strcmp(v, "0") != 0) atexit(report_at_exit);
}
