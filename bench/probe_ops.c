/* probe_ops.c - runs a chain of named elementwise ops once, so that the
 * kernel the runtime generates for it is compiled (and left in POCL's cache).
 * bench/vectorization.sh uses it to tell which ops keep a fused kernel
 * vectorized on a CPU device.
 *
 * Usage: probe_ops OP [OP...]     e.g.  probe_ops log sin mul
 * Each op applies to the running value t (initially x, values in [0.5, 2));
 * binary ops take y (values in [0.5, 2)) as second operand. */
#include "bench_util.h"

typedef struct named {
  const char *name;
  sloth_tensor *(*unary)(sloth_tensor *);
  sloth_tensor *(*binary)(sloth_tensor *, sloth_tensor *);
} named;

static const named ops[] = {
    {"neg", sloth_neg, NULL},         {"abs", sloth_abs, NULL},         {"exp", sloth_exp, NULL},
    {"log", sloth_log, NULL},         {"sqrt", sloth_sqrt, NULL},       {"rsqrt", sloth_rsqrt, NULL},
    {"sin", sloth_sin, NULL},         {"cos", sloth_cos, NULL},         {"tanh", sloth_tanh, NULL},
    {"sigmoid", sloth_sigmoid, NULL}, {"relu", sloth_relu, NULL},       {"floor", sloth_floor, NULL},
    {"ceil", sloth_ceil, NULL},       {"round", sloth_round, NULL},     {"square", sloth_square, NULL},
    {"reciprocal", sloth_reciprocal, NULL}, {"sign", sloth_sign, NULL},
    {"gelu", sloth_gelu, NULL},       {"gelu_tanh", sloth_gelu_tanh, NULL}, {"silu", sloth_silu, NULL},
    {"add", NULL, sloth_add},         {"sub", NULL, sloth_sub},         {"mul", NULL, sloth_mul},
    {"div", NULL, sloth_div},         {"pow", NULL, sloth_pow},         {"maximum", NULL, sloth_maximum},
    {"minimum", NULL, sloth_minimum},
};

int main(int argc, char **argv) {
  enum { N = 4096 };
  static float hx[N], hy[N];
  for (int i = 0; i < N; i++) {
    hx[i] = 0.5f + 1.5f * (float)i / N;
    hy[i] = 2.0f - 1.5f * (float)i / N;
  }
  int64_t shape[1] = {N};
  sloth_tensor *x = sloth_from_host(hx, SLOTH_F32, 1, shape), *y = sloth_from_host(hy, SLOTH_F32, 1, shape);
  BENCH_CHECK(x && y);
  sloth_scope_begin();
  sloth_tensor *t = x;
  for (int a = 1; a < argc; a++) {
    const named *op = NULL;
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++)
      if (strcmp(ops[k].name, argv[a]) == 0) op = &ops[k];
    if (!op) {
      fprintf(stderr, "probe_ops: unknown op '%s'\n", argv[a]);
      return 2;
    }
    t = op->unary ? op->unary(t) : op->binary(t, y);
  }
  BENCH_CHECK(t);
  BENCH_CHECK(sloth_to_host(t, hx, sizeof hx) == SLOTH_OK);
  sloth_scope_end();
  sloth_release(x);
  sloth_release(y);
  sloth_shutdown();
  return 0;
}
