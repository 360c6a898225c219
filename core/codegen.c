/* codegen.c - generates one kernel (OpenCL C or CUDA C) for a scheduled group.
 *
 * The source depends only on op structure, dtypes, ranks and which dimensions
 * have size 1: every size, stride and offset is read from the params buffer P,
 * and every scalar is a kernel argument. So a new batch size builds a new
 * plan but compiles no new kernel.
 *
 * Views never copy: a node is emitted "at an index", and view ops rewrite the
 * index on the way down to the loads. An index is either linear (the row-major
 * position in the node's shape) or a list of per-dimension coordinates.
 */
#include "lower.h"
#include "strided.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/philox.cl.h"   /* sloth__philox_cl: generated from kernels/philox.cl */
#include "kernels/cpu_math.cl.h" /* sloth__cpu_math_cl: generated from kernels/cpu_math.cl */

/* ------------------------------------------------------------------ dialects */

/* Math ops the op table spells sl_* (core/ops.def): each dialect defines them.
 * On OpenCL CPU devices, kernels/cpu_math.cl replaces `math` with
 * vectorizable implementations (see cpu_math_prelude). */
typedef struct dialect {
  const char *prelude;
  const char *math;         /* sl_exp, sl_log, sl_sin, sl_cos, sl_tanh, sl_pow, sl_erf as builtins */
  const char *cpu_math;     /* replacement of `math` on CPU devices, or NULL */
  const char *kernel;       /* function qualifier */
  const char *global;       /* pointer address-space qualifier */
  const char *restrict_kw;
  const char *global_id, *group_id, *local_id, *local_size;
  const char *barrier;
  const char *scratch_param; /* kernel parameter for local memory, or "" */
  const char *scratch_decl;  /* statement declaring it in the body, or "" */
  const char *local;         /* qualifier of pointers into it */
  const char *atomics;       /* sl_atomic_add_f / sl_atomic_add_i, added when a kernel scatters */
  /* Other dtypes: each piece is added only to kernels that use the dtype,
   * so the source of f32/i32/u8/bool kernels does not change. */
  const char *fp64_enable;   /* first line of kernels that use double, or "" */
  const char *math_f64;      /* sld_exp ... (the sl_* math on doubles: ops.def's code is rewritten) */
  const char *atomics64;     /* sl_atomic_add_d / sl_atomic_add_l (scatters of f64 and i64) */
  const char *half_t;        /* storage type of f16 elements: their bits (computed in float) */
  const char *half_fns;      /* slh_f(bits) -> float, slh_h(float) -> bits, slh_round(x): x rounded to f16 */
} dialect;

/* the math of ops.def on doubles (both dialects have double overloads of these) */
#define SL_MATH_F64                                                                                               \
  "#define sld_exp(x) exp(x)\n#define sld_log(x) log(x)\n#define sld_sin(x) sin(x)\n#define sld_cos(x) cos(x)\n" \
  "#define sld_tanh(x) tanh(x)\n#define sld_pow(x, y) pow(x, y)\n#define sld_erf(x) erf(x)\n"                    \
  "#define sld_rsqrt(x) rsqrt(x)\n#define sld_rint(x) rint(x)\n"

static const dialect dialects[] = {
    [DIALECT_OPENCL] =
        {
            .prelude = "#define sl_rsqrt(x) rsqrt(x)\n#define sl_rint(x) rint(x)\n",
            .math = "#define sl_exp(x) exp(x)\n#define sl_log(x) log(x)\n#define sl_sin(x) sin(x)\n#define sl_cos(x) cos(x)\n"
                    "#define sl_tanh(x) tanh(x)\n#define sl_pow(x, y) pow(x, y)\n#define sl_erf(x) erf(x)\n",
            .cpu_math = sloth__cpu_math_cl,
            .kernel = "__kernel void",
            .global = "__global ",
            .restrict_kw = "restrict",
            .global_id = "get_global_id(0)",
            .group_id = "get_group_id(0)",
            .local_id = "get_local_id(0)",
            .local_size = "get_local_size(0)",
            .barrier = "barrier(CLK_LOCAL_MEM_FENCE)",
            .scratch_param = ", __local uchar *scratch",
            .scratch_decl = "",
            .local = "__local ",
            /* OpenCL 1.2 has no float atomic add: a compare-and-swap loop */
            .atomics = "static inline void sl_atomic_add_f(volatile __global float *p, float v) {\n"
                       "  union { uint u; float f; } o, n;\n"
                       "  do { o.f = *p; n.f = o.f + v; } while (atomic_cmpxchg((volatile __global uint *)p, o.u, n.u) != o.u);\n"
                       "}\n#define sl_atomic_add_i(p, v) atomic_add(p, v)\n",
            .fp64_enable = "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n",
            .math_f64 = SL_MATH_F64,
            /* 64-bit atomics: cl_khr_int64_base_atomics (a compare-and-swap loop for doubles) */
            .atomics64 = "#pragma OPENCL EXTENSION cl_khr_int64_base_atomics : enable\n"
                         "static inline void sl_atomic_add_d(volatile __global double *p, double v) {\n"
                         "  union { ulong u; double f; } o, n;\n"
                         "  do { o.f = *p; n.f = o.f + v; } while (atom_cmpxchg((volatile __global ulong *)p, o.u, n.u) != o.u);\n"
                         "}\n#define sl_atomic_add_l(p, v) atom_add(p, v)\n",
            /* f16 as its bits (ushort), converted with integer and float arithmetic that
             * vectorizes (POCL's vload_half / vstore_half kept loops scalar, 10x slower):
             * bits -> float by scaling the shifted bits by 2^112 (exact for normals and
             * subnormals); float -> bits rounding to nearest even, subnormals by adding
             * 0.5 (multiples of 2^-24), 65520 and up to infinity, NaN to a quiet NaN */
            .half_t = "ushort",
            .half_fns =
                "static inline float slh_f(ushort h) {\n"
                "  const uint em = (uint)(h & 0x7fffu) << 13;\n"
                "  const float f = em >= 0x0f800000u ? as_float(em | 0x7f800000u) : as_float(em) * 0x1p112f;\n"
                "  return as_float(as_uint(f) | ((uint)(h & 0x8000u) << 16));\n"
                "}\n"
                "static inline ushort slh_h(float x) {\n"
                "  const uint u = as_uint(x), a = u & 0x7fffffffu;\n"
                "  const uint n = (a + 0xc8000fffu + ((a >> 13) & 1u)) >> 13;\n"
                "  const uint s = as_uint(as_float(a) + 0.5f) - 0x3f000000u;\n"
                "  const uint r = a >= 0x47800000u ? (a > 0x7f800000u ? 0x7e00u : 0x7c00u) : a < 0x38800000u ? s : n;\n"
                "  return (ushort)(r | ((u >> 16) & 0x8000u));\n"
                "}\n"
                "#define slh_round(x) slh_f(slh_h(x))\n",
        },
    [DIALECT_CUDA] =
        {
            .prelude = "typedef unsigned char uchar;\n#define sl_rsqrt(x) rsqrtf(x)\n#define sl_rint(x) rintf(x)\n"
                       "#define INFINITY __int_as_float(0x7f800000)\n",
            .math = "#define sl_exp(x) expf(x)\n#define sl_log(x) logf(x)\n#define sl_sin(x) sinf(x)\n#define sl_cos(x) cosf(x)\n"
                    "#define sl_tanh(x) tanhf(x)\n#define sl_pow(x, y) powf(x, y)\n#define sl_erf(x) erff(x)\n",
            .cpu_math = NULL,
            .kernel = "extern \"C\" __global__ void",
            .global = "",
            .restrict_kw = "__restrict__",
            .global_id = "((size_t)blockIdx.x * blockDim.x + threadIdx.x)",
            .group_id = "((size_t)blockIdx.x)",
            .local_id = "((size_t)threadIdx.x)",
            .local_size = "((size_t)blockDim.x)",
            .barrier = "__syncthreads()",
            .scratch_param = "",
            .scratch_decl = "  extern __shared__ __align__(16) uchar scratch[];\n", /* read as float/int arrays */
            .local = "",
            .atomics = "#define sl_atomic_add_f(p, v) atomicAdd(p, v)\n#define sl_atomic_add_i(p, v) atomicAdd(p, v)\n",
            .fp64_enable = "",
            .math_f64 = SL_MATH_F64,
            .atomics64 = "#define sl_atomic_add_d(p, v) atomicAdd(p, v)\n"
                         "#define sl_atomic_add_l(p, v) atomicAdd((unsigned long long *)(p), (unsigned long long)(v))\n",
            /* f16 as its bits, converted with PTX cvt (no cuda_fp16.h, which NVRTC may not find) */
            .half_t = "unsigned short",
            .half_fns = "static __device__ __forceinline__ float slh_f(unsigned short h) { float f; asm(\"cvt.f32.f16 %0, %1;\" : \"=f\"(f) : \"h\"(h)); return f; }\n"
                        "static __device__ __forceinline__ unsigned short slh_h(float f) { unsigned short h; asm(\"cvt.rn.f16.f32 %0, %1;\" : \"=h\"(h) : \"f\"(f)); return h; }\n"
                        "#define slh_round(x) slh_f(slh_h(x))\n",
        },
};

/* An OpenCL CPU device (POCL): kernels take CPU-friendly shapes. */
static bool cpu_opencl(const dialect *d) {
  return d == &dialects[DIALECT_OPENCL] && sloth__rt.backend && !sloth__rt.info.is_gpu;
}

/* kernels/cpu_math.cl on OpenCL CPU devices (unless SLOTH_CPU_MATH=0): POCL
 * leaves its builtin log/sin/cos/tanh/pow scalar, and one scalar call makes a
 * whole fused kernel scalar. */
static bool use_cpu_math(const dialect *d) {
  if (!d->cpu_math || !cpu_opencl(d)) return false;
  const char *v = sloth__env("SLOTH_CPU_MATH");
  return !v || strcmp(v, "0") != 0;
}

/* ------------------------------------------------------------------ context */

typedef struct position {
  bool linear;
  char *lin;                   /* linear: expression */
  int rank;
  char *c[SLOTH_MAX_RANK];     /* coordinates: expressions */
} position;

typedef struct memo {
  const sloth__node *node;
  char *key;
  int var;
} memo;

typedef struct cg {
  const sloth__graph *g;
  const sloth__schedule *s;
  const dialect *d;
  const char *idx_t;
  sloth__str params_decl; /* loads of P entries */
  sloth__str body;
  sloth__generated *out;
  int nvars;
  memo *memos;
  int nmemos, capmemos;
  const sloth__sched_kernel *k; /* the kernel being generated */
  bool uses_rng;                 /* include kernels/philox.cl */
  bool uses_atomics;             /* include the dialect's atomics */
  bool uses_atomics64;           /* and its 64-bit ones */
  bool uses_half;                /* f16 values: include half_fns */
  bool uses_f64;                 /* doubles: fp64_enable and math_f64 */
  bool oom;
} cg;

static char *xstrdup(cg *c, const char *s) {
  char *r = strdup(s);
  if (!r) c->oom = true;
  return r;
}

static char *fmt(cg *c, const char *f, ...) __attribute__((format(printf, 2, 3)));
static char *fmt(cg *c, const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  char *r = NULL;
  if (vasprintf(&r, f, ap) < 0) {
    r = NULL;
    c->oom = true;
  }
  va_end(ap);
  return r;
}

static void index_free(position *ix) {
  free(ix->lin);
  for (int i = 0; i < ix->rank; i++) free(ix->c[i]);
  memset(ix, 0, sizeof *ix);
}

static char *index_key(cg *c, const position *ix) {
  if (ix->linear) return fmt(c, "L%s", ix->lin);
  sloth__str s = {0};
  sloth__str_printf(&s, "C");
  for (int i = 0; i < ix->rank; i++) sloth__str_printf(&s, "%s;", ix->c[i]);
  if (s.oom) c->oom = true;
  return s.p ? s.p : xstrdup(c, "C");
}

/* A new entry of P; returns its variable name "pN". Values are never shared
 * between entries, so the source does not depend on them. */
static char *param(cg *c, int64_t value) {
  sloth__generated *o = c->out;
  int64_t *p = realloc(o->params, (size_t)(o->nparams + 1) * sizeof *p);
  if (!p) {
    c->oom = true;
    return xstrdup(c, "0");
  }
  o->params = p;
  p[o->nparams] = value;
  sloth__str_printf(&c->params_decl, "  const %s p%d = (%s)P[%d];\n", c->idx_t, o->nparams, c->idx_t, o->nparams);
  return fmt(c, "p%d", o->nparams++);
}

/* A window's step (a conv or pool stride, a ratio of strides) written into
 * the source: it is part of the model, not of the batch, and a literal lets
 * the compiler turn a division by it into shifts or a multiply and keep the
 * loop vectorized (a division by a kernel argument is scalar on CPUs), and
 * read a step of 1 or 2 with plain vector loads instead of gathers. */
static char *window_step(cg *c, int64_t value) {
  return fmt(c, "%lld", (long long)value);
}

static int add_arg(cg *c, sloth__arg_kind kind, int index, sloth_dtype dt) {
  sloth__generated *o = c->out;
  for (int i = 0; i < o->nargs; i++)
    if (o->args[i].kind == kind && o->args[i].index == index) return i;
  sloth__arg *a = realloc(o->args, (size_t)(o->nargs + 1) * sizeof *a);
  if (!a) {
    c->oom = true;
    return 0;
  }
  o->args = a;
  a[o->nargs] = (sloth__arg){kind, index, dt, false};
  return o->nargs++;
}

/* ------------------------------------------------------------------ dtypes
 *
 * A dtype has a compute type (values in registers) and a storage type
 * (buffer elements). They differ for f16: computed in float, stored as its
 * bits, converted by the dialect's slh_f / slh_h (integer arithmetic on
 * OpenCL, which needs no cl_khr_fp16; PTX cvt on CUDA). */

static const char *ctype(cg *c, sloth_dtype dt) {
  switch (dt) {
  case SLOTH_F32: return "float";
  case SLOTH_F16: c->uses_half = true; return "float";
  case SLOTH_F64: c->uses_f64 = true; return "double";
  case SLOTH_I32: return "int";
  case SLOTH_I64: return "long";
  default: return "uchar";
  }
}

static const char *stype(cg *c, sloth_dtype dt) { return dt == SLOTH_F16 ? c->d->half_t : ctype(c, dt); }

/* Element idx of buffer argument arg, as its compute type. */
static char *load_expr(cg *c, sloth_dtype dt, int arg, const char *idx) {
  if (dt != SLOTH_F16) return fmt(c, "a%d[%s]", arg, idx);
  c->uses_half = true;
  return fmt(c, "slh_f(a%d[%s])", arg, idx);
}

/* The statement storing val at element idx of buffer argument arg. */
static char *store_stmt(cg *c, sloth_dtype dt, int arg, const char *idx, const char *val) {
  if (dt != SLOTH_F16) return fmt(c, "a%d[%s] = %s;", arg, idx, val);
  c->uses_half = true;
  return fmt(c, "a%d[%s] = slh_h(%s);", arg, idx, val);
}

static bool ident_char(char ch) { return ch == '_' || (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'); }

/* ops.def's float code for doubles: sl_* math becomes sld_* (double
 * overloads) and float literals lose their f (0.5f -> 0.5), so constants
 * keep double precision. */
static char *double_code(cg *c, const char *code) {
  sloth__str s = {0};
  for (const char *p = code; *p;) {
    bool start = p == code || !ident_char(p[-1]);
    if (start && strncmp(p, "sl_", 3) == 0) {
      sloth__str_printf(&s, "sld_");
      p += 3;
    } else if (start && (p == code || p[-1] != '$') && ((*p >= '0' && *p <= '9') || (*p == '.' && p[1] >= '0' && p[1] <= '9'))) {
      const char *q = p; /* a number: digits, '.', an exponent */
      for (;;) {
        if ((*q >= '0' && *q <= '9') || *q == '.') q++;
        else if ((*q == 'e' || *q == 'E') && (q[1] == '-' || q[1] == '+')) q += 2;
        else if (*q == 'e' || *q == 'E') q++;
        else break;
      }
      sloth__str_printf(&s, "%.*s", (int)(q - p), p);
      p = q;
      if ((*p == 'f' || *p == 'F') && !ident_char(p[1])) p++; /* the float suffix */
    } else sloth__str_printf(&s, "%c", *p++);
  }
  if (s.oom) c->oom = true;
  return s.p ? s.p : xstrdup(c, "");
}

/* The op code for operands of dtype dt (owned by the caller), or NULL. */
static char *op_code(cg *c, const sloth__op_info *info, sloth_dtype dt) {
  const char *code = sloth__is_float(dt) ? info->float_code : info->int_code;
  if (!code) return NULL;
  return dt == SLOTH_F64 ? double_code(c, code) : xstrdup(c, code);
}

/* A scalar kernel argument's type. */
static const char *scalar_type(cg *c, sloth_dtype dt) {
  switch (dt) {
  case SLOTH_F32: case SLOTH_F16: return "float"; /* f16: the f16 value as a float */
  case SLOTH_F64: return ctype(c, dt);
  case SLOTH_I64: return "long";
  default: return "int";
  }
}

/* Coordinates of a linear index over (rank, shape); size-1 dims give "0". */
static void unravel(cg *c, const char *lin, int rank, const int64_t *shape, char **coords) {
  int first = -1, last = -1;
  for (int d = 0; d < rank; d++)
    if (shape[d] != 1) {
      if (first < 0) first = d;
      last = d;
    }
  int64_t stride = 1;
  int64_t strides[SLOTH_MAX_RANK];
  for (int d = rank - 1; d >= 0; d--) {
    strides[d] = stride;
    stride *= shape[d];
  }
  for (int d = 0; d < rank; d++) {
    if (shape[d] == 1) coords[d] = xstrdup(c, "0");
    else if (first == last) coords[d] = fmt(c, "(%s)", lin);
    else if (d == first) {
      char *st = param(c, strides[d]);
      coords[d] = fmt(c, "((%s) / %s)", lin, st);
      free(st);
    } else if (d == last) {
      char *sz = param(c, shape[d]);
      coords[d] = fmt(c, "((%s) %% %s)", lin, sz);
      free(sz);
    } else {
      char *st = param(c, strides[d]), *sz = param(c, shape[d]);
      coords[d] = fmt(c, "(((%s) / %s) %% %s)", lin, st, sz);
      free(st), free(sz);
    }
  }
}

/* Row-major linear position of coordinates over (rank, shape). */
static char *ravel(cg *c, int rank, const int64_t *shape, char *const *coords) {
  sloth__str s = {0};
  int64_t stride = 1;
  int64_t strides[SLOTH_MAX_RANK];
  for (int d = rank - 1; d >= 0; d--) {
    strides[d] = stride;
    stride *= shape[d];
  }
  int terms = 0;
  for (int d = 0; d < rank; d++) {
    if (shape[d] == 1) continue;
    if (d == rank - 1) sloth__str_printf(&s, "%s%s", terms++ ? " + " : "", coords[d]);
    else {
      char *st = param(c, strides[d]);
      sloth__str_printf(&s, "%s%s * %s", terms++ ? " + " : "", coords[d], st);
      free(st);
    }
  }
  if (!terms) sloth__str_printf(&s, "0");
  if (s.oom) c->oom = true;
  char *r = fmt(c, "(%s)", s.p ? s.p : "0");
  sloth__str_free(&s);
  return r;
}

static void to_coords(cg *c, const sloth__node *n, const position *ix, char **coords) {
  if (ix->linear) unravel(c, ix->lin, n->rank, n->shape, coords);
  else
    for (int d = 0; d < n->rank; d++) coords[d] = xstrdup(c, ix->c[d]);
}

static char *to_linear(cg *c, const sloth__node *n, const position *ix) {
  return ix->linear ? xstrdup(c, ix->lin) : ravel(c, n->rank, n->shape, ix->c);
}

/* ------------------------------------------------------------------ emission */

static int emit(cg *c, const sloth__node *n, const position *ix);

/* Notes that variable v holds n's value at ix (emit() reuses it). */
static void remember(cg *c, const sloth__node *n, const position *ix, int v) {
  if (c->nmemos == c->capmemos) {
    int cap = c->capmemos ? c->capmemos * 2 : 32;
    memo *m = realloc(c->memos, (size_t)cap * sizeof *m);
    if (!m) {
      c->oom = true;
      return;
    }
    c->memos = m;
    c->capmemos = cap;
  }
  c->memos[c->nmemos++] = (memo){n, index_key(c, ix), v};
}

/* A variable holding n's value at ix. f16 values live in float registers and
 * are rounded to f16 where stored and where `round_f16` (casts to f16), like
 * torch.compile's kernels: rounding every op was 20x slower on POCL. */
static int new_var_as(cg *c, const sloth__node *n, const position *ix, const char *expr, bool round_f16) {
  int v = c->nvars++;
  if (n->dtype == SLOTH_BOOL) sloth__str_printf(&c->body, "  const uchar v%d = (uchar)((%s) != 0);\n", v, expr);
  else if (n->dtype == SLOTH_F16 && round_f16) {
    c->uses_half = true;
    sloth__str_printf(&c->body, "  const float v%d = slh_round((float)(%s));\n", v, expr);
  }
  else sloth__str_printf(&c->body, "  const %s v%d = (%s)(%s);\n", ctype(c, n->dtype), v, ctype(c, n->dtype), expr);
  remember(c, n, ix, v);
  return v;
}

static int new_var(cg *c, const sloth__node *n, const position *ix, const char *expr) { return new_var_as(c, n, ix, expr, false); }

/* The argument of a node held in a buffer (an input or a materialized slot). */
static int buffer_arg(cg *c, const sloth__node *n) {
  return sloth__graph_is_input(n) ? add_arg(c, ARG_INPUT, -n->order - 1, n->dtype)
                                  : add_arg(c, ARG_MAT, c->s->mat[n->order], n->dtype);
}

/* The argument of the buffer a kernel writes node n's values into. */
static int output_arg(cg *c, const sloth__node *n) {
  int arg = add_arg(c, ARG_MAT, c->s->mat[n->order], n->dtype);
  c->out->args[arg].written = true;
  return arg;
}

/* Loads element ix of a node held in a buffer. */
static int emit_load(cg *c, const sloth__node *n, const position *ix) {
  int arg = buffer_arg(c, n);
  char *lin = to_linear(c, n, ix);
  char *e = load_expr(c, n->dtype, arg, lin);
  int v = new_var(c, n, ix, e);
  free(lin), free(e);
  return v;
}

static char *subst(cg *c, const char *code, int nin, const int *vars) {
  sloth__str s = {0};
  for (const char *p = code; *p; p++) {
    if (*p == '$' && p[1] >= '0' && p[1] < '0' + nin) {
      sloth__str_printf(&s, "v%d", vars[p[1] - '0']);
      p++;
    } else sloth__str_printf(&s, "%c", *p);
  }
  if (s.oom) c->oom = true;
  return s.p;
}

/* A reduction's combine step with named operands. */
static char *combine(cg *c, const char *code, const char *acc, const char *val) {
  sloth__str s = {0};
  for (const char *t = code; *t; t++) {
    if (t[0] == '$' && (t[1] == '0' || t[1] == '1')) {
      sloth__str_printf(&s, "%s", t[1] == '0' ? acc : val);
      t++;
    } else sloth__str_printf(&s, "%c", *t);
  }
  if (s.oom) c->oom = true;
  return s.p;
}

/* n's value at ix: `operand` at `sub` where `cond` holds, else `fallback`.
 * The operand is evaluated inside a branch, so its loads need no clamping
 * into bounds: on a CPU they become masked loads at addresses affine in the
 * loop index, where clamped addresses made gathers (col2im 2x faster). */
static int guarded(cg *c, const sloth__node *n, const position *ix, const char *cond, const sloth__node *operand,
                   const position *sub, const char *fallback) {
  const char *t = ctype(c, n->dtype);
  int r = c->nvars++;
  sloth__str_printf(&c->body, "  %s v%d = (%s)(%s);\n  if (%s) {\n", t, r, t, fallback, cond);
  int memo_mark = c->nmemos; /* values inside the branch are not seen outside it */
  int v = emit(c, operand, sub);
  for (int i = memo_mark; i < c->nmemos; i++) free(c->memos[i].key);
  c->nmemos = memo_mark;
  sloth__str_printf(&c->body, "  v%d = v%d;\n  }\n", r, v);
  remember(c, n, ix, r);
  return r;
}

/* Padding: the operand is read only where the output coordinate falls
 * inside it (guarded), the pad value elsewhere. Only padded dimensions are
 * checked. */
static int emit_pad(cg *c, const sloth__node *n, const position *ix) {
  const sloth__node *in = n->in[0];
  int r = n->rank;
  position sub = {.rank = r};
  char *co[SLOTH_MAX_RANK];
  to_coords(c, n, ix, co);
  sloth__str valid = {0};
  sloth__str_printf(&valid, "1");
  for (int d = 0; d < r; d++) {
    if (n->attrs.v[d] == 0 && n->attrs.v[r + d] == 0) {
      sub.c[d] = co[d];
      continue;
    }
    char *before = param(c, n->attrs.v[d]), *size = param(c, in->shape[d]);
    char *i = fmt(c, "(%s - %s)", co[d], before);
    sloth__str_printf(&valid, " && %s >= 0 && %s < %s", i, i, size);
    sub.c[d] = i;
    free(before), free(size), free(co[d]);
  }
  int pv = emit(c, n->in[1], ix);
  char *fallback = fmt(c, "v%d", pv);
  int r_var = guarded(c, n, ix, valid.p ? valid.p : "1", in, &sub, fallback ? fallback : "0");
  free(fallback);
  sloth__str_free(&valid);
  index_free(&sub);
  return r_var;
}

/* gather: the index is read at the output coordinates and replaces the
 * coordinate along the axis. It is clamped into range so the load stays in
 * bounds; an index out of range sets the error word. */
static int emit_gather(cg *c, const sloth__node *n, const position *ix) {
  const sloth__node *in = n->in[0];
  int a = n->attrs.axis;
  position sub = {.rank = n->rank};
  to_coords(c, n, ix, sub.c);
  int vi = emit(c, n->in[1], ix);
  char *size = param(c, in->shape[a]);
  int err = add_arg(c, ARG_ERROR, 0, SLOTH_I32);
  sloth__str_printf(&c->body, "  if (v%d < 0 || v%d >= %s) a%d[0] = 1;\n", vi, vi, size, err);
  free(sub.c[a]);
  if (n->in[1]->dtype == SLOTH_I64) /* clamped as long: a cast first could wrap a huge index into range */
    sub.c[a] = fmt(c, "(%s)max(min(v%d, (long)%s - 1), (long)0)", c->idx_t, vi, size);
  else sub.c[a] = fmt(c, "max(min((%s)v%d, %s - 1), (%s)0)", c->idx_t, vi, size, c->idx_t);
  free(size);
  int v = emit(c, in, &sub);
  index_free(&sub);
  return v;
}

/* concat(a, b) along an axis: both sides are read at clamped coordinates
 * (in bounds, branch-free) and the side the coordinate falls in is chosen. */
static int emit_concat(cg *c, const sloth__node *n, const position *ix) {
  const sloth__node *a = n->in[0], *b = n->in[1];
  int ax = n->attrs.axis;
  position pa = {.rank = n->rank}, pb = {.rank = n->rank};
  to_coords(c, n, ix, pa.c);
  to_coords(c, n, ix, pb.c);
  char *sa = param(c, a->shape[ax]);
  char *ca = pa.c[ax];
  pa.c[ax] = fmt(c, "min(%s, %s - 1)", ca, sa);
  free(pb.c[ax]);
  pb.c[ax] = fmt(c, "max(%s - %s, (%s)0)", ca, sa, c->idx_t);
  int va = emit(c, a, &pa), vb = emit(c, b, &pb);
  char *e = fmt(c, "%s < %s ? v%d : v%d", ca, sa, va, vb);
  int v = new_var(c, n, ix, e);
  free(e), free(ca), free(sa);
  index_free(&pa);
  index_free(&pb);
  return v;
}

/* The transpose of a window view (ops.c, sloth__window_adjoint): at
 * (k, X), the operand g is read at the view coordinates whose looped dims
 * are k and whose other dims along each operand dim e come from
 * rem = X_e - origin_e - (the looped dims' steps): the solved dim is
 * rem / mult and its split partner rem % mult, where they are in range
 * (and rem divides when there is no partner); elsewhere the value is 0.
 * Steps are literals (window_step). A dim covered one to one needs no
 * division, and one that windows tile exactly no check: both decided from
 * shapes the plan key holds, so no plan mixes forms. */
static int emit_window_adjoint(cg *c, const sloth__node *n, const position *ix) {
  const sloth__node *g = n->in[0];
  int m = 0;
  for (int d = 0; d < g->rank; d++) m += n->attrs.axes_mask >> d & 1;
  int map[SLOTH_MAX_RANK], partner[SLOTH_MAX_RANK];
  int64_t mult[SLOTH_MAX_RANK], origin[SLOTH_MAX_RANK];
  sloth__window_role role[SLOTH_MAX_RANK];
  const int64_t *base_shape = n->shape + m;
  sloth__window_roles(g->rank, g->shape, n->attrs.start, n->attrs.v, n->rank - m, base_shape, map, mult, origin, role,
                      partner);
  char *co[SLOTH_MAX_RANK];
  to_coords(c, n, ix, co);
  position sub = {.rank = g->rank};
  for (int d = 0, k = 0; d < g->rank; d++) sub.c[d] = role[d] == WINDOW_LOOPED ? xstrdup(c, co[k++]) : NULL;
  sloth__str valid = {0};
  sloth__str_printf(&valid, "1");
  bool divides = false, in_range_checked[SLOTH_MAX_RANK] = {0};
  for (int e = 0; e < n->rank - m; e++) {
    int solved = -1;
    bool looped = false;
    for (int d = 0; d < g->rank; d++) {
      if (map[d] == e && role[d] == WINDOW_SOLVED) solved = d;
      if (map[d] == e && role[d] == WINDOW_LOOPED) looped = true;
    }
    if (solved >= 0 && !looped && partner[solved] < 0 && mult[solved] == 1 && origin[e] == 0 &&
        g->shape[solved] == base_shape[e]) { /* one to one */
      sub.c[solved] = xstrdup(c, co[m + e]);
      continue;
    }
    const int t = solved >= 0 ? partner[solved] : -1;
    if (t >= 0 && !looped && origin[e] == 0 && mult[solved] > 1 && g->shape[t] == mult[solved] &&
        g->shape[solved] * mult[solved] == base_shape[e]) {
      /* windows that tile the dim exactly (2x2 pooling of stride 2): every
       * X is (X / mult, X % mult), always in range, so nothing is checked or
       * clamped, and a read of the window view at q * mult + r is X again */
      char *mu = window_step(c, mult[solved]);
      sub.c[solved] = fmt(c, "(%s / %s)", co[m + e], mu);
      sub.c[t] = fmt(c, "(%s %% %s)", co[m + e], mu);
      free(mu);
      divides = true;
      continue;
    }
    char *o = param(c, origin[e]);
    char *rem = fmt(c, "(%s - %s", co[m + e], o);
    free(o);
    for (int d = 0; d < g->rank; d++) {
      if (map[d] != e || role[d] != WINDOW_LOOPED) continue;
      char *mu = window_step(c, mult[d]);
      char *r2 = fmt(c, "%s - %s * %s", rem, sub.c[d], mu);
      free(rem), free(mu);
      rem = r2;
    }
    char *r2 = fmt(c, "%s)", rem);
    free(rem);
    rem = r2;
    if (solved < 0) sloth__str_printf(&valid, " && %s == 0", rem);
    else {
      char *size = param(c, g->shape[solved]);
      char *q;
      if (mult[solved] == 1) q = xstrdup(c, rem);
      else {
        char *mu = window_step(c, mult[solved]);
        q = fmt(c, "(%s / %s)", rem, mu);
        divides = true;
        if (t >= 0) {
          in_range_checked[t] = true;
          char *tsize = param(c, g->shape[t]);
          char *r = fmt(c, "(%s %% %s)", rem, mu);
          sloth__str_printf(&valid, " && %s < %s", r, tsize);
          sub.c[t] = r;
          free(tsize);
        } else sloth__str_printf(&valid, " && %s %% %s == 0", rem, mu);
        free(mu);
      }
      sloth__str_printf(&valid, " && %s >= 0 && %s < %s", rem, q, size);
      sub.c[solved] = q;
      in_range_checked[solved] = true;
      free(size);
    }
    free(rem);
  }
  for (int d = 0; d < g->rank; d++)
    if (!sub.c[d]) sub.c[d] = xstrdup(c, "0"); /* size-1 dims */
  for (int d = 0; d < n->rank; d++) free(co[d]);
  int r;
  if (divides) {
    /* the operand's coordinates step by 1/mult per output element: a
     * vector loop needs gathers, and gathers only come branch-free, so read
     * at coordinates clamped into range and select */
    for (int d = 0; d < g->rank; d++) {
      if (!in_range_checked[d]) continue;
      char *hi = param(c, g->shape[d] - 1);
      char *cl = fmt(c, "min(max(%s, (%s)0), %s)", sub.c[d], c->idx_t, hi);
      free(sub.c[d]), free(hi);
      sub.c[d] = cl;
    }
    int v = emit(c, g, &sub);
    if (valid.p && strcmp(valid.p, "1") != 0) {
      char *e = fmt(c, "(%s) ? v%d : (%s)0", valid.p, v, ctype(c, n->dtype));
      r = new_var(c, n, ix, e);
      free(e);
    } else remember(c, n, ix, r = v); /* every coordinate is in range */
  } else r = guarded(c, n, ix, valid.p ? valid.p : "1", g, &sub, "0");
  sloth__str_free(&valid);
  index_free(&sub);
  return r;
}

/* A reshape read at coordinates maps them group by group: dims of the
 * output and of the operand whose sizes multiply to the same product form a
 * group, and only a group that splits one dimension into several divides
 * (merging is a multiply-add). So [N, O, oh, ow] over [N, g, O/g, oh, ow]
 * divides nothing. False (use a linear position) for empty shapes. */
static bool reshape_coords(cg *c, const sloth__node *n, const position *ix, position *sub) {
  const sloth__node *in = n->in[0];
  if (sloth__numel(n->rank, n->shape) == 0) return false;
  sub->linear = false;
  sub->rank = in->rank;
  int a = 0, b = 0;
  while (a < n->rank || b < in->rank) {
    int a0 = a, b0 = b;
    int64_t pa = 1, pb = 1;
    if (a < n->rank) pa *= n->shape[a++];
    if (b < in->rank) pb *= in->shape[b++];
    while (pa != pb) {
      if (pa < pb && a < n->rank) pa *= n->shape[a++];
      else if (pb < pa && b < in->rank) pb *= in->shape[b++];
      else { /* cannot happen for equal element counts */
        for (int d = 0; d < b0; d++) free(sub->c[d]);
        return false;
      }
    }
    int non1_out = 0, non1_in = 0, last_out = -1;
    for (int d = a0; d < a; d++)
      if (n->shape[d] != 1) non1_out++, last_out = d;
    for (int d = b0; d < b; d++)
      if (in->shape[d] != 1) non1_in++;
    if (non1_in <= 1) { /* merge (or copy): a multiply-add */
      char *lin = a > a0 ? ravel(c, a - a0, n->shape + a0, ix->c + a0) : xstrdup(c, "0");
      for (int d = b0; d < b; d++) sub->c[d] = in->shape[d] != 1 ? xstrdup(c, lin) : xstrdup(c, "0");
      free(lin);
    } else if (non1_out == 1) { /* split one coordinate */
      unravel(c, ix->c[last_out], b - b0, in->shape + b0, sub->c + b0);
    } else {
      char *lin = ravel(c, a - a0, n->shape + a0, ix->c + a0);
      unravel(c, lin, b - b0, in->shape + b0, sub->c + b0);
      free(lin);
    }
  }
  return true;
}

static int emit_view(cg *c, const sloth__node *n, const position *ix) {
  const sloth__node *in = n->in[0];
  position sub = {0};
  switch (n->op) {
  case OP_RESHAPE:
    if (!ix->linear && reshape_coords(c, n, ix, &sub)) break;
    sub.linear = true;
    sub.lin = to_linear(c, n, ix);
    break;
  case OP_PERMUTE: {
    char *co[SLOTH_MAX_RANK];
    to_coords(c, n, ix, co);
    sub.rank = in->rank;
    for (int d = 0; d < n->rank; d++) sub.c[n->attrs.perm[d]] = co[d];
    break;
  }
  case OP_EXPAND: {
    to_coords(c, n, ix, sub.c);
    sub.rank = in->rank;
    for (int d = 0; d < in->rank; d++)
      if (in->shape[d] == 1) {
        free(sub.c[d]);
        sub.c[d] = xstrdup(c, "0");
      }
    break;
  }
  case OP_SLICE: {
    to_coords(c, n, ix, sub.c);
    sub.rank = in->rank;
    int a = n->attrs.axis;
    char *st = param(c, n->attrs.start), *sp = param(c, n->attrs.step);
    char *e = fmt(c, "(%s + %s * %s)", st, sub.c[a], sp);
    free(sub.c[a]), free(st), free(sp);
    sub.c[a] = e;
    break;
  }
  case OP_AS_STRIDED: { /* input position = offset + sum c_d * stride_d */
    char *co[SLOTH_MAX_RANK];
    to_coords(c, n, ix, co);
    int map[SLOTH_MAX_RANK];
    int64_t mult[SLOTH_MAX_RANK], origin[SLOTH_MAX_RANK];
    if (sloth__window_map(n->rank, n->shape, n->attrs.start, n->attrs.v, in->rank, in->shape, map, mult, origin)) {
      /* each output dim steps along one input dim: coordinates, no division */
      sub.rank = in->rank;
      for (int e = 0; e < in->rank; e++) {
        sloth__str t = {0};
        if (in->shape[e] == 1) sloth__str_printf(&t, "0");
        else {
          char *o = param(c, origin[e]);
          sloth__str_printf(&t, "(%s", o);
          free(o);
          for (int d = 0; d < n->rank; d++)
            if (n->shape[d] != 1 && map[d] == e) {
              if (mult[d] == 1) sloth__str_printf(&t, " + %s", co[d]); /* contiguous: vector loads */
              else {
                char *m = window_step(c, mult[d]);
                sloth__str_printf(&t, " + %s * %s", co[d], m);
                free(m);
              }
            }
          sloth__str_printf(&t, ")");
        }
        if (t.oom) c->oom = true;
        sub.c[e] = t.p;
      }
      for (int d = 0; d < n->rank; d++) free(co[d]);
      break;
    }
    sloth__str e = {0};
    char *off = param(c, n->attrs.start);
    sloth__str_printf(&e, "(%s", off);
    free(off);
    for (int d = 0; d < n->rank; d++) {
      if (n->shape[d] != 1) {
        char *st = param(c, n->attrs.v[d]);
        sloth__str_printf(&e, " + %s * %s", co[d], st);
        free(st);
      }
      free(co[d]);
    }
    sloth__str_printf(&e, ")");
    if (e.oom) c->oom = true;
    sub.linear = true;
    sub.lin = e.p;
    break;
  }
  case OP_PAD: return emit_pad(c, n, ix);
  case OP_GATHER: return emit_gather(c, n, ix);
  case OP_CONCAT: return emit_concat(c, n, ix);
  case OP_WINDOW_ADJOINT: return emit_window_adjoint(c, n, ix);
  default: break;
  }
  int v = emit(c, in, &sub);
  index_free(&sub);
  return v;
}

/* Random numbers: Philox at the element's linear position, keyed by the
 * seed and stream offset (kernel arguments). kernels/philox.cl is added to
 * the source of kernels that use it. */
static int emit_rand(cg *c, const sloth__node *n, const position *ix) {
  c->uses_rng = true;
  char *lin = to_linear(c, n, ix);
  int s0 = emit(c, n->in[0], ix), s1 = emit(c, n->in[1], ix), s2 = emit(c, n->in[2], ix);
  char *e = fmt(c, "%s((long)(%s), v%d, v%d, v%d)", n->attrs.dist == SLOTH__RAND_NORMAL ? "sl_rand_normal" : "sl_rand_uniform",
                lin, s0, s1, s2);
  int v = new_var(c, n, ix, e);
  free(e), free(lin);
  return v;
}

/* The kernel's own outputs are computed, never loaded. */
static bool is_output(const cg *c, const sloth__node *n) {
  for (int o = 0; o < c->k->noutputs; o++)
    if (c->g->order[c->k->outputs[o]] == n) return true;
  return false;
}

static int emit(cg *c, const sloth__node *n, const position *ix) {
  char *key = index_key(c, ix);
  for (int i = 0; i < c->nmemos; i++)
    if (c->memos[i].node == n && key && strcmp(c->memos[i].key, key) == 0) {
      free(key);
      return c->memos[i].var;
    }
  free(key);

  if (n->op == OP_SCALAR && sloth__graph_is_input(n)) {
    int arg = add_arg(c, ARG_SCALAR, -n->order - 1, n->dtype);
    char *e = fmt(c, "a%d", arg);
    int v = new_var(c, n, ix, e); /* an f16 scalar arrives rounded */
    free(e);
    return v;
  }
  if (sloth__graph_is_input(n) || (c->s->mat[n->order] >= 0 && !is_output(c, n))) return emit_load(c, n, ix);

  const sloth__op_info *info = &sloth__ops[n->op];
  switch (info->kind) {
  case KIND_VIEW: return emit_view(c, n, ix);
  case KIND_LEAF: {
    if (n->op == OP_RAND) return emit_rand(c, n, ix);
    /* ARANGE: start + i * step */
    char *co[1] = {0};
    to_coords(c, n, ix, co);
    int s0 = emit(c, n->in[0], ix), s1 = emit(c, n->in[1], ix);
    char *e = fmt(c, "v%d + (%s)%s * v%d", s0, ctype(c, n->dtype), co[0], s1);
    int v = new_var(c, n, ix, e);
    free(e), free(co[0]);
    return v;
  }
  case KIND_UNARY:
  case KIND_BINARY:
  case KIND_TERNARY: {
    int vars[3];
    for (int i = 0; i < n->nin; i++) vars[i] = emit(c, n->in[i], ix);
    /* operands share one dtype (ops.c casts them); where's condition is bool */
    sloth_dtype odt = n->in[n->nin - 1]->dtype;
    char *code = op_code(c, info, odt);
    char *e = subst(c, code ? code : "$0", n->nin, vars);
    /* a cast to f16 rounds (u8 and bool values are f16 already) */
    sloth_dtype from = n->in[0]->dtype;
    bool round = n->op == OP_CAST && n->dtype == SLOTH_F16 && from != SLOTH_F16 && from != SLOTH_U8 && from != SLOTH_BOOL;
    int v = new_var_as(c, n, ix, e ? e : "0", round);
    free(e), free(code);
    return v;
  }
  default: /* a reduction reached here is always materialized */
    c->oom = true;
    return 0;
  }
}

/* ------------------------------------------------------------------ kernels */

/* A kernel writing a sloth_assign target in place also reads it (at the
 * same index): its pointers may alias, so none is declared restrict. */
static bool writes_an_input(const cg *c) {
  const sloth__generated *o = c->out;
  for (int i = 0; i < o->nargs; i++) {
    if (o->args[i].kind != ARG_MAT || !o->args[i].written || !c->s->inplace) continue;
    int t = c->s->inplace[o->args[i].index];
    for (int j = 0; j < o->nargs && t >= 0; j++)
      if (o->args[j].kind == ARG_INPUT && o->args[j].index == t) return true;
  }
  return false;
}

static void emit_signature(cg *c, sloth__str *src, bool scratch) {
  sloth__generated *o = c->out;
  const char *restrict_kw = writes_an_input(c) ? "" : c->d->restrict_kw;
  sloth__str_printf(src, "%s %s(", c->d->kernel, o->name);
  for (int i = 0; i < o->nargs; i++) {
    const sloth__arg *a = &o->args[i];
    if (i) sloth__str_printf(src, ", ");
    switch (a->kind) {
    case ARG_MAT:
      sloth__str_printf(src, "%s%s%s *%s a%d", c->d->global, a->written ? "" : "const ", stype(c, a->dtype), restrict_kw, i);
      break;
    case ARG_INPUT:
      sloth__str_printf(src, "%sconst %s *%s a%d", c->d->global, stype(c, a->dtype), restrict_kw, i);
      break;
    case ARG_PARAMS: sloth__str_printf(src, "%sconst long *%s P", c->d->global, c->d->restrict_kw); break;
    case ARG_SCALAR: sloth__str_printf(src, "%s a%d", scalar_type(c, a->dtype), i); break;
    case ARG_ERROR: sloth__str_printf(src, "%sint *a%d", c->d->global, i); break;
    }
  }
  sloth__str_printf(src, "%s) {\n", scratch ? c->d->scratch_param : "");
}

static bool trailing_block(uint32_t mask, int rank) {
  /* the reduced axes are exactly the last k axes */
  int d = rank - 1;
  while (d >= 0 && (mask >> d & 1)) d--;
  for (; d >= 0; d--)
    if (mask >> d & 1) return false;
  return true;
}

static const char *init_value(sloth__opcode op, sloth_dtype dt) {
  switch (op) {
  case OP_SUM: case OP_MEAN: return "0";
  case OP_PROD: return "1";
  case OP_MAX: case OP_ARGMAX:
    return sloth__is_float(dt) ? "-INFINITY" : dt == SLOTH_I32 ? "(-2147483647 - 1)" : dt == SLOTH_I64 ? "(-9223372036854775807L - 1)" : "0";
  case OP_MIN: case OP_ARGMIN:
    return sloth__is_float(dt) ? "INFINITY" : dt == SLOTH_I32 ? "2147483647" : dt == SLOTH_I64 ? "9223372036854775807L" : "255";
  default: return "0";
  }
}

/* The pragma over a row loop of `row` elements. Four vectors at a time
 * needs 32 elements (8-wide): a shorter row (the 24 columns of a conv
 * output) would run entirely in the scalar remainder, so short rows get one
 * vector at a time. */
static const char *row_loop_pragma(int64_t row) {
  return row >= 128 ? "#pragma clang loop interleave_count(4)" : "#pragma clang loop interleave_count(1)";
}

/* The chunked loop's coordinates: variables i0.. set from `start` once and
 * stepped like an odometer, a row at a time: the inner loop runs along the
 * last dim (t), so views read without dividing the linear position, and
 * the compiler sees addresses affine in t. */
static void odometer_begin(cg *c, const char *start, int rank, const int64_t *shape, position *ix) {
  char *co[SLOTH_MAX_RANK];
  unravel(c, start, rank, shape, co);
  ix->linear = false;
  ix->rank = rank;
  for (int d = 0; d < rank; d++) {
    if (shape[d] == 1) ix->c[d] = xstrdup(c, "0");
    else {
      sloth__str_printf(&c->body, "  %s i%d = %s;\n", c->idx_t, d, co[d]);
      ix->c[d] = fmt(c, "i%d", d);
    }
    free(co[d]);
  }
}

/* The end of a run along the last stepping dim `last`: it advances by
 * `run`, and at the row's end wraps to 0 and carries into the dims before. */
static void odometer_next_row(cg *c, int rank, const int64_t *shape, int last) {
  int dims[SLOTH_MAX_RANK], m = 0;
  for (int d = 0; d < last; d++)
    if (shape[d] != 1) dims[m++] = d;
  char *size = param(c, shape[last]);
  sloth__str_printf(&c->body, "    i%d += run;\n    if (i%d == %s) {\n      i%d = 0;\n      ", last, last, size, last);
  free(size);
  for (int j = m - 1; j > 0; j--) {
    char *sz = param(c, shape[dims[j]]);
    sloth__str_printf(&c->body, "if (++i%d == %s) { i%d = 0; ", dims[j], sz, dims[j]);
    free(sz);
  }
  if (m) sloth__str_printf(&c->body, "++i%d;", dims[0]);
  for (int j = m - 1; j > 0; j--) sloth__str_printf(&c->body, " }");
  sloth__str_printf(&c->body, "\n    }\n");
}

/* Nested loops r0, r1, ... over the reduced dims (size-1 dims get "0"):
 * their coordinates in red[]; returns how many loops were opened. */
static int open_reduced_loops(cg *c, int nred, const int64_t *red_shape, char **red, const char *inner_pragma) {
  int loops = 0, innermost = -1;
  for (int b = 0; b < nred; b++)
    if (red_shape[b] != 1) innermost = b;
  for (int b = 0; b < nred; b++) {
    if (red_shape[b] == 1) {
      red[b] = xstrdup(c, "0");
      continue;
    }
    char *size = param(c, red_shape[b]);
    if (b == innermost && inner_pragma) sloth__str_printf(&c->body, "  %s\n", inner_pragma);
    sloth__str_printf(&c->body, "    for (%s r%d = 0; r%d < %s; r%d++) {\n", c->idx_t, b, b, size, b);
    free(size);
    red[b] = fmt(c, "r%d", b);
    loops++;
  }
  return loops;
}

/* Does the value of n, computed in this kernel, read a view by coordinates
 * (a permute, window, pad, ...)? Reshapes and elementwise ops keep linear
 * positions. seen: per order index, so shared operands are walked once. */
static bool reads_by_coords(const cg *c, const sloth__node *n, bool *seen) {
  if (sloth__graph_is_input(n) || seen[n->order]) return false;
  if (c->s->mat[n->order] >= 0 && !is_output(c, n)) return false;
  seen[n->order] = true;
  /* a broadcast scalar needs no coordinates */
  bool scalar_expand = n->op == OP_EXPAND && sloth__numel(n->in[0]->rank, n->in[0]->shape) == 1;
  if (sloth__ops[n->op].kind == KIND_VIEW && n->op != OP_RESHAPE && !scalar_expand) return true;
  for (int i = 0; i < n->nin; i++)
    if (reads_by_coords(c, n->in[i], seen)) return true;
  return false;
}

/* The same for several nodes (false when out of memory). */
static bool any_reads_by_coords(const cg *c, const sloth__node *const *nodes, int n) {
  bool *seen = calloc((size_t)c->g->n, 1), found = false;
  for (int o = 0; o < n && seen && !found; o++) found = reads_by_coords(c, nodes[o], seen);
  free(seen);
  return found;
}

/* A CPU reduction whose operand's last dim is kept (col2im's sum over
 * kernel offsets, a batch sum), or over a small window read by coordinates
 * (pooling): a work-item takes a chunk of outputs a row at a time (the last
 * kept dim), initializes the row in the output buffer, and for each reduced
 * position combines the whole row into it, so the innermost loop runs along
 * the row (the compiler vectorizes it) instead of over a few reduced
 * elements per output. For accumulators stored as they are (f32, f64, i32,
 * i64). */
static bool reduce_by_rows(const sloth__node *r, bool serial, bool window) {
  const sloth__node *x = r->in[0];
  uint32_t mask = r->attrs.axes_mask;
  if (!serial || r->op == OP_ARGMAX || r->op == OP_ARGMIN) return false;
  if (r->dtype != x->dtype || x->dtype == SLOTH_F16 || x->dtype == SLOTH_U8 || x->dtype == SLOTH_BOOL) return false;
  int last_kept = -1;
  int64_t inner = 1;
  for (int d = 0; d < x->rank; d++) {
    if (!(mask >> d & 1)) last_kept = d;
    else inner *= x->shape[d];
  }
  if (last_kept < 0 || x->shape[last_kept] < 2) return false;
  /* the row is the operand's last dim when it is kept, so the inner loop
   * reads along it; a reduced last dim is better read by the nested loops,
   * except for a small window read by coordinates (pooling): then the row
   * is the last kept dim (ow), read with a stride */
  if (!trailing_block(mask, x->rank) && last_kept == x->rank - 1) return true;
  return window && inner <= 64;
}

static void gen_reduce_rows(cg *c, const sloth__node *r, int64_t outer, int64_t inner, int64_t chunk) {
  const sloth__node *x = r->in[0];
  uint32_t mask = r->attrs.axes_mask;
  int64_t kept_shape[SLOTH_MAX_RANK], red_shape[SLOTH_MAX_RANK];
  int nkept = 0, nred = 0;
  for (int d = 0; d < x->rank; d++) {
    if (mask >> d & 1) red_shape[nred++] = x->shape[d];
    else kept_shape[nkept++] = x->shape[d];
  }
  int out = output_arg(c, r);
  char *pc = param(c, chunk), *pouter = param(c, outer);
  sloth__str_printf(&c->body, "  const %s first = (%s)%s * %s, last = min(first + %s, %s);\n", c->idx_t, c->idx_t,
                    c->d->global_id, pc, pc, pouter);
  free(pc), free(pouter);
  position kept = {0};
  odometer_begin(c, "first", nkept, kept_shape, &kept);
  int row = nkept - 1;
  free(kept.c[row]);
  kept.c[row] = fmt(c, "(i%d + t)", row);
  char *rowlen = param(c, kept_shape[row]);
  sloth__str_printf(&c->body,
                    "  for (%s o = first; o < last;) {\n    const %s run = min(last - o, %s - i%d);\n"
                    "    for (%s t = 0; t < run; t++) a%d[o + t] = %s;\n",
                    c->idx_t, c->idx_t, rowlen, row, c->idx_t, out, init_value(r->op, x->dtype));
  free(rowlen);
  char *red[SLOTH_MAX_RANK] = {0};
  int loops = open_reduced_loops(c, nred, red_shape, red, NULL);
  sloth__str_printf(&c->body, "  %s\n    for (%s t = 0; t < run; t++) {\n", row_loop_pragma(kept_shape[row]), c->idx_t);
  position ix = {.rank = x->rank};
  for (int d = 0, a = 0, b = 0; d < x->rank; d++) ix.c[d] = (mask >> d & 1) ? red[b++] : xstrdup(c, kept.c[a++]);
  int memo_mark = c->nmemos; /* values inside the loop are not reused outside it */
  int v = emit(c, x, &ix);
  for (int i = memo_mark; i < c->nmemos; i++) free(c->memos[i].key);
  c->nmemos = memo_mark;
  char *acc = fmt(c, "a%d[o + t]", out), *val = fmt(c, "v%d", v);
  char *code = op_code(c, &sloth__ops[r->op], x->dtype);
  char *e = code && acc && val ? combine(c, code, acc, val) : NULL;
  sloth__str_printf(&c->body, "    %s = %s;\n    }\n", acc ? acc : "", e ? e : "0");
  for (int l = 0; l < loops; l++) sloth__str_printf(&c->body, "    }\n");
  if (r->op == OP_MEAN) {
    char *pinner = param(c, inner);
    sloth__str_printf(&c->body, "    for (%s t = 0; t < run; t++) a%d[o + t] /= (%s)%s;\n", c->idx_t, out,
                      ctype(c, x->dtype), pinner);
    free(pinner);
  }
  sloth__str_printf(&c->body, "    o += run;\n");
  odometer_next_row(c, nkept, kept_shape, row);
  sloth__str_printf(&c->body, "  }\n");
  free(acc), free(val), free(code), free(e);
  index_free(&ix);
  index_free(&kept);
}

/* Stores output o of a reduction: the accumulated value `acc` (divided by
 * the count for mean), or for argmax/argmin the position `best` (0 when
 * there was none), under `guard`. */
static void store_reduced(cg *c, const sloth__node *r, const char *guard, const char *acc, const char *best,
                          const char *acc_t, const char *pinner) {
  int out_arg = output_arg(c, r);
  if (r->op == OP_ARGMAX || r->op == OP_ARGMIN) {
    sloth__str_printf(&c->body, "  %sa%d[o] = %s < 0 ? 0 : %s;\n", guard, out_arg, best, best);
    return;
  }
  char *val = r->op == OP_MEAN ? fmt(c, "%s / (%s)%s", acc, acc_t, pinner) : xstrdup(c, acc);
  char *st = store_stmt(c, r->dtype, out_arg, "o", val ? val : "0");
  sloth__str_printf(&c->body, "  %s%s\n", guard, st ? st : "");
  free(val), free(st);
}

/* One work-item per chunk of outputs, no local memory. */
static void serial_geometry(cg *c, int64_t outer, int64_t chunk) {
  c->out->geom.local = 1;
  c->out->geom.global = (size_t)((outer + chunk - 1) / chunk);
  c->out->geom.local_mem = sizeof(double) * 2; /* the scratch argument, unused */
}

static int gen_reduce(cg *c, const sloth__node *r, size_t local) {
  const sloth__node *x = r->in[0];
  uint32_t mask = r->attrs.axes_mask;
  int64_t outer = sloth__numel(r->rank, r->shape), inner = 1;
  int64_t kept_shape[SLOTH_MAX_RANK], red_shape[SLOTH_MAX_RANK];
  int nkept = 0, nred = 0;
  for (int d = 0; d < x->rank; d++) {
    if (mask >> d & 1) {
      red_shape[nred++] = x->shape[d];
      inner *= x->shape[d];
    } else kept_shape[nkept++] = x->shape[d];
  }
  bool arg = r->op == OP_ARGMAX || r->op == OP_ARGMIN;
  const char *acc_t = ctype(c, x->dtype); /* f16 accumulates in float */
  /* lanes of local memory: 4 bytes (also for u8/bool, see below), 8 for double and long */
  const bool wide = x->dtype == SLOTH_F64 || x->dtype == SLOTH_I64;
  const char *lane_t = wide ? acc_t : "float";
  char *pinner = param(c, inner);
  /* CPU devices with one work-item per output: each work-item reduces a
   * chunk of outputs in turn, with no local memory and no barriers (POCL
   * runs a work-group of one with a cost per group: 20-40 ns each) */
  const bool serial = local == 1 && cpu_opencl(c->d);
  int64_t chunk = 1;
  if (serial) {
    int64_t cu = sloth__rt.info.compute_units > 0 ? sloth__rt.info.compute_units : 1;
    chunk = (outer + 8 * cu - 1) / (8 * cu);
    if (chunk < 1) chunk = 1;
  }
  /* an operand that reads a view by coordinates (a pooling window) is read
   * at loop counters, never at a divided linear position */
  const bool coords = local == 1 && any_reads_by_coords(c, &x, 1);
  if (reduce_by_rows(r, serial, coords)) {
    gen_reduce_rows(c, r, outer, inner, chunk);
    free(pinner);
    serial_geometry(c, outer, chunk);
    return SLOTH_OK;
  }
  if (serial) {
    char *pc = param(c, chunk), *pouter = param(c, outer);
    sloth__str_printf(&c->body,
                      "  const %s lid = 0, lsz = 1;\n  const %s first = (%s)%s * %s, last = min(first + %s, %s);\n"
                      "  for (%s o = first; o < last; o++) {\n",
                      c->idx_t, c->idx_t, c->idx_t, c->d->global_id, pc, pc, pouter, c->idx_t);
    free(pc), free(pouter);
  } else
    sloth__str_printf(&c->body, "  const %s o = (%s)%s;\n  const %s lid = (%s)%s, lsz = (%s)%s;\n", c->idx_t, c->idx_t,
                      c->d->group_id, c->idx_t, c->idx_t, c->d->local_id, c->idx_t, c->d->local_size);
  sloth__str_printf(&c->body, "  %s acc = %s;\n", acc_t, init_value(r->op, x->dtype));
  if (arg) sloth__str_printf(&c->body, "  int best = -1;\n");
  position ix = {0};
  int loops = 0;
  /* one work-item per output (CPUs): the reduced coordinates are counters
   * of nested loops, not divisions of k on every element */
  bool nested = false;
  /* one work-item's loop may combine in any order (vectorize(enable) lets
   * the compiler keep several partial results): a sum kept in one register
   * waited on each add's latency (a conv's bias gradient, 4x) */
  const char *any_order = serial && !arg ? "#pragma clang loop vectorize(enable)" : NULL;
  if (trailing_block(mask, x->rank) && !coords) {
    if (any_order) sloth__str_printf(&c->body, "  %s\n", any_order);
    sloth__str_printf(&c->body, "  for (%s k = lid; k < %s; k += lsz) {\n", c->idx_t, pinner);
    loops = 1;
    ix.linear = true;
    ix.lin = fmt(c, "o * %s + k", pinner);
  } else {
    char *kept[SLOTH_MAX_RANK] = {0}, *red[SLOTH_MAX_RANK] = {0};
    unravel(c, "o", nkept, kept_shape, kept);
    if (local == 1) {
      if (arg) sloth__str_printf(&c->body, "  %s k = 0;\n", c->idx_t); /* argmax's position */
      loops = open_reduced_loops(c, nred, red_shape, red, any_order);
      nested = true;
      if (!loops) sloth__str_printf(&c->body, "  {\n"), loops = 1;
    } else {
      sloth__str_printf(&c->body, "  for (%s k = lid; k < %s; k += lsz) {\n", c->idx_t, pinner);
      loops = 1;
      unravel(c, "k", nred, red_shape, red);
    }
    ix.rank = x->rank;
    for (int d = 0, a = 0, b = 0; d < x->rank; d++) ix.c[d] = (mask >> d & 1) ? red[b++] : kept[a++];
  }
  /* values computed inside the loop must not be reused outside it */
  int memo_mark = c->nmemos;
  int v = emit(c, x, &ix);
  index_free(&ix);
  char *code = op_code(c, &sloth__ops[r->op], x->dtype);
  if (arg) {
    const char *cmp = r->op == OP_ARGMAX ? ">" : "<";
    sloth__str_printf(&c->body, "  if (best < 0 || v%d %s acc) { acc = v%d; best = (int)k; }\n", v, cmp, v);
  } else {
    char vname[16];
    snprintf(vname, sizeof vname, "v%d", v);
    char *e = combine(c, code, "acc", vname);
    sloth__str_printf(&c->body, "    acc = %s;\n", e ? e : "acc");
    free(e);
  }
  for (int i = memo_mark; i < c->nmemos; i++) free(c->memos[i].key);
  c->nmemos = memo_mark;
  if (arg && nested) sloth__str_printf(&c->body, "    k++;\n"); /* k counts the nested loops' elements */
  for (int l = 0; l < loops; l++) sloth__str_printf(&c->body, "  }\n");
  if (serial) {
    store_reduced(c, r, "", "acc", "best", acc_t, pinner);
    sloth__str_printf(&c->body, "  }\n");
    free(code);
    free(pinner);
    serial_geometry(c, outer, chunk);
    return SLOTH_OK;
  }

  /* tree reduction across the work-group in local memory */
  const char *L = c->d->local;
  sloth__str_printf(&c->body, "  %s%s *sv = (%s%s *)scratch;\n", L, acc_t, L, acc_t);
  /* indices after 4 bytes per lane whatever the value type, so they stay
   * aligned for u8/bool values (CUDA faults on a misaligned int) */
  if (arg) sloth__str_printf(&c->body, "  %sint *si = (%sint *)(scratch + sizeof(%s) * lsz);\n", L, L, lane_t);
  sloth__str_printf(&c->body, "  sv[lid] = acc;\n");
  if (arg) sloth__str_printf(&c->body, "  si[lid] = best;\n");
  sloth__str_printf(&c->body, "  %s;\n  for (%s s = lsz / 2; s > 0; s /= 2) {\n    if (lid < s) {\n", c->d->barrier, c->idx_t);
  if (arg) {
    const char *cmp = r->op == OP_ARGMAX ? ">" : "<";
    sloth__str_printf(&c->body,
                      "      const %s a = sv[lid], b = sv[lid + s];\n      const int ia = si[lid], ib = si[lid + s];\n"
                      "      if (ib >= 0 && (ia < 0 || b %s a || (b == a && ib < ia))) { sv[lid] = b; si[lid] = ib; }\n",
                      acc_t, cmp);
  } else {
    char *e = combine(c, code, "sv[lid]", "sv[lid + s]");
    sloth__str_printf(&c->body, "      sv[lid] = %s;\n", e ? e : "sv[lid]");
    free(e);
  }
  sloth__str_printf(&c->body, "    }\n    %s;\n  }\n", c->d->barrier);
  store_reduced(c, r, "if (lid == 0) ", "sv[0]", "si[0]", acc_t, pinner);
  free(code);
  free(pinner);
  c->out->geom.local = local;
  c->out->geom.global = (size_t)outer * local;
  c->out->geom.local_mem = local * ((wide ? 8 : sizeof(float)) + (arg ? sizeof(int) : 0));
  return SLOTH_OK;
}

static void gen_elementwise(cg *c, const sloth__sched_kernel *k) {
  const sloth__node *first = c->g->order[k->outputs[0]];
  int64_t n = sloth__numel(first->rank, first->shape);
  char *pn = param(c, n);
  /* CPU devices: one work-item per contiguous chunk, and a plain loop over it
   * that the compiler vectorizes (vector body, scalar remainder). The usual
   * one-element-per-work-item form with `if (gid >= n) return;` becomes, on
   * POCL, a vector loop over work-items with masked loads and stores
   * (vmaskmovps): 2-3x slower on this EPYC, for cheap and costly bodies. */
  const bool chunked = cpu_opencl(c->d);
  int64_t chunk = 0;
  if (chunked) {
    /* >= 8 chunks per core to balance the load, >= 1024 elements per chunk,
     * chunks start on 64-element (256-byte) boundaries */
    int64_t cu = sloth__rt.info.compute_units > 0 ? sloth__rt.info.compute_units : 1;
    chunk = (n + 8 * cu - 1) / (8 * cu);
    chunk = chunk < 1024 ? 1024 : (chunk + 63) / 64 * 64;
    char *pc = param(c, chunk);
    /* four vectors per iteration: long bodies (transcendental chains) are
     * latency-bound otherwise; this made one 1.7-2x faster */
    sloth__str_printf(&c->body, "  const %s start = (%s)%s * %s, end = min(start + %s, %s);\n", c->idx_t, c->idx_t,
                      c->d->global_id, pc, pc, pn);
    free(pc);
  } else sloth__str_printf(&c->body, "  const %s gid = (%s)%s;\n  if (gid >= %s) return;\n", c->idx_t, c->idx_t, c->d->global_id, pn);
  free(pn);
  position ix = {.linear = true, .lin = xstrdup(c, "gid")};
  /* On a CPU, a kernel that reads views by coordinates steps coordinates.
   * A single output that is a reshape of a pending view is computed in the
   * view's own shape (same elements, same order): an im2col copy steps the
   * window's 7 coordinates and divides nothing. */
  const sloth__node *value_of[k->noutputs];
  for (int o = 0; o < k->noutputs; o++) value_of[o] = c->g->order[k->outputs[o]];
  const sloth__node *iter = first;
  bool stepped = chunked && any_reads_by_coords(c, value_of, k->noutputs);
  int last = -1; /* the dim the inner loop runs along */
  if (stepped) {
    while (k->noutputs == 1 && iter->op == OP_RESHAPE && !sloth__graph_is_input(iter->in[0]) && c->s->mat[iter->in[0]->order] < 0)
      iter = iter->in[0];
    for (int d = 0; d < iter->rank; d++)
      if (iter->shape[d] != 1) last = d;
    stepped = last >= 0;
  }
  const char *at = "gid"; /* the linear position of the element */
  if (stepped) {
    value_of[0] = iter;
    index_free(&ix);
    odometer_begin(c, "start", iter->rank, iter->shape, &ix);
    free(ix.c[last]);
    ix.c[last] = fmt(c, "(i%d + t)", last);
    char *size = param(c, iter->shape[last]);
    sloth__str_printf(&c->body,
                      "  for (%s gid = start; gid < end;) {\n    const %s run = min(end - gid, %s - i%d);\n"
                      "  %s\n  for (%s t = 0; t < run; t++) {\n",
                      c->idx_t, c->idx_t, size, last, row_loop_pragma(iter->shape[last]), c->idx_t);
    free(size);
    at = "gid + t";
  } else if (chunked)
    sloth__str_printf(&c->body, "  #pragma clang loop interleave_count(4)\n  for (%s gid = start; gid < end; gid++) {\n", c->idx_t);
  /* every value first, then the stores: an output written in place over an
   * input must not be stored before another output has loaded that input */
  int vals[k->noutputs];
  for (int o = 0; o < k->noutputs; o++) vals[o] = emit(c, value_of[o], &ix);
  for (int o = 0; o < k->noutputs; o++) {
    const sloth__node *node = c->g->order[k->outputs[o]];
    int arg = output_arg(c, node);
    char val[16];
    snprintf(val, sizeof val, "v%d", vals[o]);
    char *st = store_stmt(c, node->dtype, arg, at, val);
    sloth__str_printf(&c->body, "  %s\n", st ? st : "");
    free(st);
  }
  index_free(&ix);
  if (stepped) {
    sloth__str_printf(&c->body, "  }\n    gid += run;\n");
    odometer_next_row(c, iter->rank, iter->shape, last);
  }
  if (chunked) {
    sloth__str_printf(&c->body, "  }\n");
    c->out->geom.local = 1;
    c->out->geom.global = (size_t)((n + chunk - 1) / chunk);
    return;
  }
  size_t local = 256;
  c->out->geom.local = local;
  c->out->geom.global = (size_t)((n + (int64_t)local - 1) / (int64_t)local) * local;
}

static void set_1d_geometry(cg *c, int64_t n) {
  size_t local = 64;
  c->out->geom.local = local;
  c->out->geom.global = (size_t)((n + (int64_t)local - 1) / (int64_t)local) * local;
}

/* Cumulative sums along an axis: one work-item per line, a sequential loop
 * along it; the producer expression is fused in. */
static void gen_scan(cg *c, const sloth__node *r) {
  const sloth__node *x = r->in[0];
  int a = r->attrs.axis;
  int64_t len = x->shape[a], lines = len ? sloth__numel(x->rank, x->shape) / len : 0;
  int64_t kept_shape[SLOTH_MAX_RANK];
  int nkept = 0;
  for (int d = 0; d < x->rank; d++)
    if (d != a) kept_shape[nkept++] = x->shape[d];
  char *plines = param(c, lines), *plen = param(c, len);
  sloth__str_printf(&c->body, "  const %s o = (%s)%s;\n  if (o >= %s) return;\n  %s acc = 0;\n", c->idx_t, c->idx_t,
                    c->d->global_id, plines, ctype(c, r->dtype));
  sloth__str_printf(&c->body, "  for (%s k = 0; k < %s; k++) {\n", c->idx_t, plen);
  char *kept[SLOTH_MAX_RANK] = {0};
  unravel(c, "o", nkept, kept_shape, kept);
  position ix = {.rank = x->rank};
  for (int d = 0, j = 0; d < x->rank; d++) ix.c[d] = d == a ? xstrdup(c, "k") : kept[j++];
  int memo_mark = c->nmemos;
  int v = emit(c, x, &ix);
  char vname[16];
  snprintf(vname, sizeof vname, "v%d", v);
  char *code = op_code(c, &sloth__ops[r->op], r->dtype);
  char *e = code ? combine(c, code, "acc", vname) : NULL;
  char *pos = ravel(c, r->rank, r->shape, ix.c);
  int out = output_arg(c, r);
  char *st = store_stmt(c, r->dtype, out, pos ? pos : "0", "acc"); /* f16: summed in float, each prefix rounded */
  sloth__str_printf(&c->body, "    acc = %s;\n    %s\n  }\n", e ? e : "acc", st ? st : "");
  free(e), free(pos), free(plines), free(plen), free(code), free(st);
  for (int i = memo_mark; i < c->nmemos; i++) free(c->memos[i].key);
  c->nmemos = memo_mark;
  index_free(&ix);
  set_1d_geometry(c, lines);
}

/* argsort: one work-item per line. The line's output holds positions
 * 0..n-1, heap-sorted in place (O(n log n), no scratch) by the keys, which
 * are read from a buffer (the schedule materializes the operand). The
 * order is total, so every backend gives the same result: by value, NaN
 * after every number (first when descending), ties by position. */
static void gen_sort(cg *c, const sloth__node *r) {
  const sloth__node *x = r->in[0];
  int a = r->attrs.axis;
  int64_t len = x->shape[a], lines = len ? sloth__numel(x->rank, x->shape) / len : 0, stride = 1;
  for (int d = a + 1; d < x->rank; d++) stride *= x->shape[d];
  int64_t kept_shape[SLOTH_MAX_RANK];
  int nkept = 0;
  for (int d = 0; d < x->rank; d++)
    if (d != a) kept_shape[nkept++] = x->shape[d];
  int key = buffer_arg(c, x);
  int out = output_arg(c, r);
  char *plines = param(c, lines), *plen = param(c, len), *pst = param(c, stride);
  char *kept[SLOTH_MAX_RANK] = {0};
  sloth__str_printf(&c->body, "  const %s o = (%s)%s;\n  if (o >= %s) return;\n", c->idx_t, c->idx_t, c->d->global_id, plines);
  unravel(c, "o", nkept, kept_shape, kept);
  position at = {.rank = x->rank};
  for (int d = 0, j = 0; d < x->rank; d++) at.c[d] = d == a ? xstrdup(c, "0") : kept[j++];
  char *base = ravel(c, x->rank, x->shape, at.c);
  char *kexpr = load_expr(c, x->dtype, key, "base + (J) * st");
  const char *kt = ctype(c, x->dtype);
  sloth__str_printf(&c->body, "  const %s base = %s, st = %s, n = %s;\n", c->idx_t, base ? base : "0", pst, plen);
  sloth__str_printf(&c->body, "#define SL_KEY(J) ((%s)(%s))\n#define SL_OUT(J) a%d[base + (J) * st]\n", kt,
                    kexpr ? kexpr : "0", out);
  /* SL_BEFORE(p, q): position p goes before position q */
  const bool desc = r->attrs.descending != 0;
  if (sloth__is_float(x->dtype))
    sloth__str_printf(&c->body,
                      "#define SL_BEFORE(P, Q) sl_sort_before(SL_KEY(P), SL_KEY(Q), (P) < (Q))\n"
                      "#define sl_sort_before(A, B, I) (isnan(A) != isnan(B) ? %s : (A) %s (B) || (((A) == (B) || isnan(A)) && (I)))\n",
                      desc ? "(bool)isnan(A)" : "(bool)isnan(B)", desc ? ">" : "<");
  else
    sloth__str_printf(&c->body, "#define SL_BEFORE(P, Q) (SL_KEY(P) %s SL_KEY(Q) || (SL_KEY(P) == SL_KEY(Q) && (P) < (Q)))\n",
                      desc ? ">" : "<");
  /* a max-heap in the "goes before" order: the root goes last */
  sloth__str_printf(&c->body,
                    "  for (%s i = 0; i < n; i++) SL_OUT(i) = (int)i;\n"
                    "  for (%s pass = 0; pass < 2; pass++) {\n"
                    "    for (%s k = pass ? n - 1 : n / 2 - 1; k >= (pass ? 1 : 0); k--) {\n"
                    "      %s root = pass ? 0 : k, end = pass ? k : n;\n"
                    "      if (pass) { const int top = SL_OUT(0); SL_OUT(0) = SL_OUT(k); SL_OUT(k) = top; }\n"
                    "      for (;;) {\n"
                    "        %s child = 2 * root + 1;\n"
                    "        if (child >= end) break;\n"
                    "        int ci = SL_OUT(child);\n"
                    "        if (child + 1 < end) { const int cj = SL_OUT(child + 1); if (SL_BEFORE(ci, cj)) { child++; ci = cj; } }\n"
                    "        const int ri = SL_OUT(root);\n"
                    "        if (!SL_BEFORE(ri, ci)) break;\n"
                    "        SL_OUT(root) = ci;\n        SL_OUT(child) = ri;\n        root = child;\n"
                    "      }\n    }\n  }\n"
                    "#undef SL_BEFORE\n#undef SL_KEY\n#undef SL_OUT\n",
                    c->idx_t, c->idx_t, c->idx_t, c->idx_t, c->idx_t);
  if (sloth__is_float(x->dtype)) sloth__str_printf(&c->body, "#undef sl_sort_before\n");
  free(plines), free(plen), free(pst), free(base), free(kexpr);
  index_free(&at);
  set_1d_geometry(c, lines);
}

static void gen_zero(cg *c, const sloth__node *r) {
  int64_t n = sloth__numel(r->rank, r->shape);
  char *pn = param(c, n);
  int out = output_arg(c, r);
  char *st = store_stmt(c, r->dtype, out, "gid", "0");
  sloth__str_printf(&c->body, "  const %s gid = (%s)%s;\n  if (gid < %s) %s\n", c->idx_t, c->idx_t, c->d->global_id, pn,
                    st ? st : "");
  free(pn), free(st);
  set_1d_geometry(c, n);
}

/* scatter_add: for each position c of the index tensor, adds src[c] at the
 * target position c with c[axis] = index[c], atomically. Out-of-range
 * indices are clamped and set the error word. */
static void gen_scatter(cg *c, const sloth__node *r) {
  const sloth__node *idx = r->in[0], *src = r->in[1];
  int a = r->attrs.axis;
  int64_t n = sloth__numel(idx->rank, idx->shape);
  char *pn = param(c, n);
  sloth__str_printf(&c->body, "  const %s gid = (%s)%s;\n  if (gid >= %s) return;\n", c->idx_t, c->idx_t, c->d->global_id, pn);
  free(pn);
  position lin = {.linear = true, .lin = xstrdup(c, "gid")};
  int vi = emit(c, idx, &lin), vs = emit(c, src, &lin);
  position at = {.rank = idx->rank};
  unravel(c, "gid", idx->rank, idx->shape, at.c);
  char *size = param(c, r->shape[a]);
  int err = add_arg(c, ARG_ERROR, 0, SLOTH_I32);
  sloth__str_printf(&c->body, "  if (v%d < 0 || v%d >= %s) a%d[0] = 1;\n", vi, vi, size, err);
  free(at.c[a]);
  if (idx->dtype == SLOTH_I64) at.c[a] = fmt(c, "(%s)max(min(v%d, (long)%s - 1), (long)0)", c->idx_t, vi, size);
  else at.c[a] = fmt(c, "max(min((%s)v%d, %s - 1), (%s)0)", c->idx_t, vi, size, c->idx_t);
  char *pos = ravel(c, r->rank, r->shape, at.c);
  int out = output_arg(c, r);
  c->uses_atomics = true;
  /* ops.c accumulates in f32, f64, i32 or i64 */
  const char *add = r->dtype == SLOTH_F32 ? "sl_atomic_add_f" : r->dtype == SLOTH_F64 ? "sl_atomic_add_d"
                  : r->dtype == SLOTH_I64 ? "sl_atomic_add_l" : "sl_atomic_add_i";
  if (r->dtype == SLOTH_F64 || r->dtype == SLOTH_I64) c->uses_atomics64 = true;
  sloth__str_printf(&c->body, "  %s(&a%d[%s], v%d);\n", add, out, pos, vs);
  free(size), free(pos);
  index_free(&at);
  index_free(&lin);
  set_1d_geometry(c, n);
}

static bool needs_long(const sloth__graph *g, const sloth__sched_kernel *k) {
  (void)k;
  /* SLOTH_INDEX_BITS=64 always indexes in 64 bits: tests that path (and
   * the CUDA C of it, see tests/test_nvrtc.c) on small tensors */
  const char *bits = sloth__env("SLOTH_INDEX_BITS");
  if (bits && atoi(bits) == 64) return true;
  for (int i = 0; i < g->n; i++)
    if (sloth__numel(g->order[i]->rank, g->order[i]->shape) >= (int64_t)1 << 31) return true;
  for (int i = 0; i < g->ninputs; i++)
    if (sloth__numel(g->inputs[i]->rank, g->inputs[i]->shape) >= (int64_t)1 << 31) return true;
  return false;
}

int sloth__codegen(const sloth__graph *g, const sloth__schedule *s, int kernel, sloth__generated *out) {
  return sloth__codegen_dialect(g, s, kernel, sloth__rt.backend->dialect, out);
}

int sloth__codegen_dialect(const sloth__graph *g, const sloth__schedule *s, int kernel, sloth__dialect_id dialect,
                           sloth__generated *out) {
  memset(out, 0, sizeof *out);
  const sloth__sched_kernel *k = &s->kernels[kernel];
  cg c = {.g = g, .s = s, .k = k, .d = &dialects[dialect], .out = out};
  c.idx_t = needs_long(g, k) ? "long" : "int";
  add_arg(&c, ARG_PARAMS, 0, SLOTH_F32);
  if (k->kind == SCHED_REDUCE) {
    const sloth__node *r = g->order[k->outputs[0]];
    int64_t outer = sloth__numel(r->rank, r->shape), inner = sloth__numel(r->in[0]->rank, r->in[0]->shape);
    inner = outer ? inner / outer : 0;
    /* one work-group per output element: on a CPU, one work-item each when
     * there are enough outputs to fill the cores */
    size_t local = 1;
    int lanes = sloth__rt.info.is_gpu ? 256 : 64;
    if (sloth__rt.info.is_gpu || outer < 4 * (int64_t)(sloth__rt.info.compute_units ? sloth__rt.info.compute_units : 1))
      while ((int64_t)local < inner && local < (size_t)lanes) local *= 2;
    snprintf(out->name, sizeof out->name, "sloth_reduce");
    gen_reduce(&c, r, local);
  } else if (k->kind == SCHED_SORT) {
    snprintf(out->name, sizeof out->name, "sloth_sort");
    gen_sort(&c, g->order[k->outputs[0]]);
  } else if (k->kind == SCHED_SCAN) {
    snprintf(out->name, sizeof out->name, "sloth_scan");
    gen_scan(&c, g->order[k->outputs[0]]);
  } else if (k->kind == SCHED_ZERO) {
    snprintf(out->name, sizeof out->name, "sloth_zero");
    gen_zero(&c, g->order[k->outputs[0]]);
  } else if (k->kind == SCHED_SCATTER) {
    snprintf(out->name, sizeof out->name, "sloth_scatter");
    gen_scatter(&c, g->order[k->outputs[0]]);
  } else {
    snprintf(out->name, sizeof out->name, "sloth_fused");
    gen_elementwise(&c, k);
  }
  /* assemble: prelude, signature, param loads, body */
  sloth__str *src = &out->source;
  /* the CPU math (~230 lines) only where the body calls an sl_ function:
   * dumped kernels stay readable and the compiler parses less */
  const bool math = c.body.p && strstr(c.body.p, "sl_");
  sloth__str sig = {0}; /* first: it notes the dtypes of the arguments too */
  emit_signature(&c, &sig, k->kind == SCHED_REDUCE);
  if (c.uses_f64) sloth__str_printf(src, "%s", c.d->fp64_enable);
  sloth__str_printf(src, "%s%s", c.d->prelude, !use_cpu_math(c.d) ? c.d->math : math ? c.d->cpu_math : "");
  if (c.uses_f64 && c.body.p && strstr(c.body.p, "sld_")) sloth__str_printf(src, "%s", c.d->math_f64);
  if (c.uses_half) sloth__str_printf(src, "%s", c.d->half_fns);
  if (c.uses_rng) sloth__str_printf(src, "%s", sloth__philox_cl);
  if (c.uses_atomics) sloth__str_printf(src, "%s", c.d->atomics);
  if (c.uses_atomics64) sloth__str_printf(src, "%s", c.d->atomics64);
  sloth__str_printf(src, "%s", sig.p ? sig.p : "");
  if (sig.oom) c.oom = true;
  sloth__str_free(&sig);
  sloth__str_printf(src, "%s", k->kind == SCHED_REDUCE ? c.d->scratch_decl : "");
  sloth__str_printf(src, "%s%s}\n", c.params_decl.p ? c.params_decl.p : "", c.body.p ? c.body.p : "");
  for (int i = 0; i < c.nmemos; i++) free(c.memos[i].key);
  free(c.memos);
  sloth__str_free(&c.params_decl);
  sloth__str_free(&c.body);
  if (c.oom || src->oom) {
    sloth__generated_free(out);
    return sloth__fail(SLOTH_E_NOMEM, "out of host memory (code generation)");
  }
  return SLOTH_OK;
}

void sloth__generated_free(sloth__generated *k) {
  sloth__str_free(&k->source);
  free(k->args);
  free(k->params);
  memset(k, 0, sizeof *k);
}
