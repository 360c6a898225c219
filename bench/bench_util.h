/* bench_util.h - timing helpers shared by the benchmark programs (header-only).
 *
 * Every benchmark prints one line per figure: "name value unit". Times are
 * medians over several repetitions after warm-up runs. */
#ifndef SLOTH_BENCH_UTIL_H
#define SLOTH_BENCH_UTIL_H

#include "sloth.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double bench_now(void) __attribute__((unused));
static double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bench_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Median of n values (sorts them in place). */
static double bench_median(double *v, int n) __attribute__((unused));
static double bench_median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Repetitions: BENCH_REPS in the environment, else the given default. */
static int bench_reps(int dflt) __attribute__((unused));
static int bench_reps(int dflt) {
  const char *v = getenv("BENCH_REPS");
  int n = v && *v ? atoi(v) : dflt;
  return n < 1 ? 1 : n;
}

static void bench_figure(const char *name, double value, const char *unit) __attribute__((unused));
static void bench_figure(const char *name, double value, const char *unit) {
  printf("%s %.3g %s\n", name, value, unit);
  fflush(stdout);
}

/* Exits with a message when a sloth call failed. */
#define BENCH_CHECK(expr)                                                                                   \
  do {                                                                                                      \
    if (!(expr)) {                                                                                          \
      fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, sloth_last_error());           \
      exit(1);                                                                                              \
    }                                                                                                       \
  } while (0)

#endif
