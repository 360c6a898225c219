/* demo.c - builds a lazy expression, syncs it on the default device and
 * prints the result and the runtime metrics. */
#include <sloth.h>

#include <stdio.h>
#include <stdlib.h>

static int die(const char *what) {
  fprintf(stderr, "demo: %s: %s\n", what, sloth_last_error());
  return 1;
}

int main(void) {
  if (sloth_init(NULL) != SLOTH_OK) return die("init");
  sloth_device_info dev;
  sloth_device_current(&dev);
  printf("device: %s:%d  %s (%s)\n", dev.backend, dev.index, dev.name, dev.version);

  float host[12];
  for (int i = 0; i < 12; i++) host[i] = (float)i - 5.5f;
  int64_t shape[2] = {3, 4};
  sloth_scope_begin();
  sloth_tensor *x = sloth_from_host(host, SLOTH_F32, 2, shape);
  /* y = relu(tanh(x * 0.5) + 0.25); nothing runs yet */
  sloth_tensor *y = sloth_relu(sloth_add_scalar(sloth_tanh(sloth_mul_scalar(x, 0.5)), 0.25));
  /* row sums of exp(-|x|), fused with the reduction */
  int axis = 1;
  sloth_tensor *rows = sloth_sum(sloth_exp(sloth_neg(sloth_abs(x))), &axis, 1, 0);
  if (!y || !rows) return die("building the graph");
  printf("pending graph of y:\n");
  sloth_dump_graph(y, stdout, SLOTH_DUMP_TEXT);

  sloth_tensor *both[2] = {y, rows};
  if (sloth_sync(both, 2) != SLOTH_OK) return die("sync");
  float out[12], sums[3];
  if (sloth_to_host(y, out, sizeof out) != SLOTH_OK || sloth_to_host(rows, sums, sizeof sums) != SLOTH_OK)
    return die("to_host");
  printf("y =\n");
  for (int r = 0; r < 3; r++) printf("  %8.4f %8.4f %8.4f %8.4f\n", out[4 * r], out[4 * r + 1], out[4 * r + 2], out[4 * r + 3]);
  printf("row sums of exp(-|x|) = %.4f %.4f %.4f\n", sums[0], sums[1], sums[2]);
  sloth_scope_end();
  printf("metrics:\n");
  sloth_metrics_report(stdout);
  sloth_shutdown();
  return 0;
}
