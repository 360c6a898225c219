/* test_random.c - the Philox generator: known-answer words, distributions,
 * reproducibility from the seed, no compile for a new draw, dropout. */
#include <sloth.h>

#include "tap.h"

#include <stdint.h>
#include <string.h>

enum { N = 1 << 20 };
static float buf[N];

static int draw(sloth_tensor *t, float *out, int64_t n) {
  int rc = t ? sloth_to_host(t, out, (size_t)n * sizeof(float)) : -1;
  sloth_release(t);
  return rc;
}

int main(void) {
  if (sloth_init(NULL) != SLOTH_OK) skip_all(sloth_last_error());
  int64_t n = N, four = 4;

  /* Philox4x32-10 with key (0, 0) and counter (0, 0, 0, 0) gives
   * 0x6627e8d5 0xe169c58d 0xbc57ac4c 0x9b00dbd8 (the Random123 known-answer
   * vector); seed 0 and the first draw use exactly that block, 24 bits each */
  sloth_manual_seed(0);
  const uint32_t kat[4] = {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u};
  float first[4];
  ok(draw(sloth_rand(1, &four), first, 4) == SLOTH_OK, "a draw of 4");
  int match = 1;
  for (int i = 0; i < 4; i++) match &= first[i] == (float)(kat[i] >> 8) / 16777216.0f;
  ok(match, "the words match the Philox4x32-10 known-answer vector (%.7f %.7f %.7f %.7f)", first[0], first[1], first[2], first[3]);

  /* uniform: range, mean, variance */
  ok(draw(sloth_rand(1, &n), buf, n) == SLOTH_OK, "uniform draw of 2^20");
  double sum = 0, sq = 0, lo = 1, hi = 0;
  for (int i = 0; i < N; i++) sum += buf[i], sq += (double)buf[i] * buf[i], lo = fmin(lo, buf[i]), hi = fmax(hi, buf[i]);
  double mean = sum / N, var = sq / N - mean * mean;
  ok(lo >= 0 && hi < 1, "uniform values lie in [0, 1) (%g .. %g)", lo, hi);
  ok(fabs(mean - 0.5) < 0.002 && fabs(var - 1.0 / 12) < 0.002, "uniform mean %.4f, variance %.4f", mean, var);

  /* a new draw compiles nothing and differs */
  int64_t compiles = sloth_counter("kernel_compile");
  static float again[N];
  ok(draw(sloth_rand(1, &n), again, n) == SLOTH_OK && sloth_counter("kernel_compile") == compiles,
     "a second draw compiles nothing");
  ok(memcmp(buf, again, sizeof buf) != 0, "and gives new numbers");

  /* reproducible from the seed */
  sloth_manual_seed(1234);
  draw(sloth_rand(1, &n), buf, n);
  sloth_manual_seed(1234);
  draw(sloth_rand(1, &n), again, n);
  ok(memcmp(buf, again, sizeof buf) == 0, "the same seed gives the same numbers");
  sloth_manual_seed(1235);
  draw(sloth_rand(1, &n), again, n);
  ok(memcmp(buf, again, sizeof buf) != 0, "another seed gives other numbers");

  /* normal: mean, std, mass within one sigma */
  ok(draw(sloth_normal(2.0, 3.0, 1, &n), buf, n) == SLOTH_OK, "normal(2, 3) draw");
  sum = sq = 0;
  int within = 0, finite = 1;
  for (int i = 0; i < N; i++) {
    sum += buf[i], sq += (double)buf[i] * buf[i];
    within += fabs(buf[i] - 2.0) < 3.0;
    finite &= isfinite(buf[i]);
  }
  mean = sum / N;
  double sd = sqrt(sq / N - mean * mean);
  ok(finite && fabs(mean - 2.0) < 0.01 && fabs(sd - 3.0) < 0.01, "normal mean %.4f, std %.4f", mean, sd);
  ok(fabs((double)within / N - 0.6827) < 0.003, "mass within one sigma %.4f (0.6827)", (double)within / N);

  /* bernoulli and dropout */
  static uint8_t bits[N];
  sloth_tensor *b = sloth_bernoulli(0.3, 1, &n);
  ok(b && sloth_dtype_of(b) == SLOTH_BOOL && sloth_to_host(b, bits, N) == SLOTH_OK, "bernoulli(0.3) is bool");
  sloth_release(b);
  long ones = 0;
  for (int i = 0; i < N; i++) ones += bits[i];
  ok(fabs((double)ones / N - 0.3) < 0.003, "bernoulli frequency %.4f", (double)ones / N);

  sloth_tensor *x = sloth_ones(SLOTH_F32, 1, &n);
  ok(draw(sloth_dropout(x, 0.25, 1), buf, n) == SLOTH_OK, "dropout(0.25) in training");
  long zeros = 0, scaled = 0;
  for (int i = 0; i < N; i++) zeros += buf[i] == 0.0f, scaled += fabsf(buf[i] - 1.0f / 0.75f) < 1e-6f;
  ok(zeros + scaled == N && fabs((double)zeros / N - 0.25) < 0.003, "dropout zeroes %.4f and scales the rest by 1/(1-p)",
     (double)zeros / N);
  compiles = sloth_counter("kernel_compile");
  ok(draw(sloth_dropout(x, 0.5, 1), buf, n) == SLOTH_OK && sloth_counter("kernel_compile") == compiles,
     "a new dropout probability compiles nothing");
  sloth_tensor *same = sloth_dropout(x, 0.5, 0);
  ok(same && draw(same, buf, n) == SLOTH_OK && buf[0] == 1.0f && buf[N - 1] == 1.0f, "dropout when not training is the identity");

  /* bad input */
  ok(sloth_dropout(x, 1.0, 1) == NULL && sloth_last_status() == SLOTH_E_INVALID, "dropout p = 1 fails: %s", sloth_last_error());
  ok(sloth_bernoulli(1.5, 1, &n) == NULL, "bernoulli p > 1 fails");
  ok(sloth_normal(0, -1, 1, &n) == NULL, "normal with a negative std fails");
  ok(sloth_rand(1, (int64_t[]){-3}) == NULL && sloth_last_status() == SLOTH_E_INVALID, "rand of a negative size fails");
  sloth_clear_error();
  ok(draw(sloth_rand(1, &four), first, 4) == SLOTH_OK, "the runtime works afterwards");
  sloth_release(x);
  return tap_done();
}
