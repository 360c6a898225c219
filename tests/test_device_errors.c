/* test_device_errors.c - a kernel that does not build fails at the sync
 * point. It must give a clear error,
 * leave the graph pending, and leave the runtime usable. */
#include <sloth.h>

#include "tap.h"

#include <stdlib.h>
#include <string.h>

int main(void) {
  /* A build option that breaks every generated kernel: the device compiler
   * fails and its log must reach the caller. Data-only work still runs. */
  setenv("SLOTH_BUILD_OPTIONS", "-Dfloat=sloth_no_such_type", 1);
  if (sloth_init(NULL) != SLOTH_OK) skip_all(sloth_last_error());

  float xs[8] = {1, 2, 3, 4, 5, 6, 7, 8}, out[8];
  int64_t n = 8;
  sloth_tensor *x = sloth_from_host(xs, SLOTH_F32, 1, &n);
  sloth_tensor *y = sloth_exp(x);
  int rc = sloth_to_host(y, out, sizeof out);
  ok(rc == SLOTH_E_COMPILE, "a kernel that fails to build gives SLOTH_E_COMPILE at the sync point (%d)", rc);
  const char *msg = sloth_last_error();
  ok(strstr(msg, "build log") != NULL, "the message carries the build log");
  ok(strstr(msg, "kernel source") != NULL && strstr(msg, "exp(") != NULL, "the message carries the kernel source");
  ok(sloth_is_pending(y) == 1, "the graph is left intact (still pending)");
  ok(sloth_counter("plan_cache_miss") >= 1 && sloth_counter("kernel_compile") == 0, "no kernel was counted as compiled");
  ok(sloth_mark_step() == SLOTH_E_COMPILE, "mark_step reports the same failure");
  ok(sloth_to_host(x, out, sizeof out) == SLOTH_OK && out[7] == 8.0f, "data already on the device still reads back");
  sloth_release(y);
  sloth_release(x);

  ok(sloth_to_host(x, out, sizeof out) == SLOTH_E_INVALID, "a released tensor is reported");
  return tap_done();
}
