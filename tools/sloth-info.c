/* sloth-info - lists backends and devices, their capabilities, and which
 * device the default (SLOTH_DEVICE unset) picks. */
#include <sloth.h>

#include <stdio.h>
#include <string.h>

static const char *const backends[] = {"cuda", "opencl"};

int main(int argc, char **argv) {
  if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    printf("usage: sloth-info\nLists Sloth's backends and devices; SLOTH_DEVICE=backend[:N] selects one.\n");
    return 0;
  }
  for (size_t b = 0; b < sizeof backends / sizeof backends[0]; b++) {
    const char *why = sloth_backend_status(backends[b]);
    printf("backend %-7s %s\n", backends[b], why && *why ? why : "available");
  }
  int n = sloth_device_count();
  int def = sloth_device_default();
  printf("\n%d device(s)\n", n);
  for (int i = 0; i < n; i++) {
    sloth_device_info d;
    if (sloth_device_get(i, &d) != SLOTH_OK) continue;
    printf("%s %s:%d  %s\n", i == def ? "*" : " ", d.backend, d.index, d.name);
    printf("    vendor: %s\n    version: %s\n", d.vendor, d.version);
    printf("    type: %s, compute units: %d, fp16: %s, fp64: %s\n", d.is_gpu ? "GPU" : "CPU/other", d.compute_units,
           d.fp16 ? "yes" : "no", d.fp64 ? "yes" : "no");
    printf("    memory: %.1f GiB, max single allocation: %.1f GiB\n", d.global_mem_bytes / 1073741824.0,
           d.max_alloc_bytes / 1073741824.0);
  }
  if (def >= 0) {
    sloth_device_info d;
    sloth_device_get(def, &d);
    printf("\ndefault device: %s:%d (%s)\n", d.backend, d.index, d.name);
  } else {
    printf("\nno default device: %s\n", sloth_last_error());
  }
  return n > 0 ? 0 : 1;
}
