/* tap.h - a minimal TAP producer for the test programs (header-only).
 *
 *   ok(cond, "name %d", i);     one test point
 *   skip_all("why");            the whole program is skipped (exit 0)
 *   return tap_done();          prints the plan, exit status 1 if any failed
 */
#ifndef SLOTH_TAP_H
#define SLOTH_TAP_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int tap_count, tap_failed;

static int ok(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3), unused));
static int ok(int cond, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("%sok %d - ", cond ? "" : "not ", ++tap_count);
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  if (!cond) tap_failed++;
  fflush(stdout);
  return cond;
}

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static void diag(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("# ");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
}

static void skip_all(const char *why) __attribute__((unused, noreturn));
static void skip_all(const char *why) {
  printf("1..0 # SKIP %s\n", why);
  exit(0);
}

static int tap_done(void) __attribute__((unused));
static int tap_done(void) {
  printf("1..%d\n", tap_count);
  return tap_failed ? 1 : 0;
}

/* Largest normalized error |a-b| / (atol + rtol*|b|) over n floats; <= 1 passes. */
static double tap_max_err(const float *got, const float *want, long n, double atol, double rtol) __attribute__((unused));
static double tap_max_err(const float *got, const float *want, long n, double atol, double rtol) {
  double worst = 0;
  for (long i = 0; i < n; i++) {
    if (isnan(want[i]) && isnan(got[i])) continue;
    if (isinf(want[i]) && got[i] == want[i]) continue;
    double e = fabs((double)got[i] - want[i]) / (atol + rtol * fabs(want[i]));
    if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
  }
  return worst;
}

#endif
