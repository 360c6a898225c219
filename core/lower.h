/* lower.h - the graph of one sync point, its schedule, and generated kernels.
 * Shared by executor.c (walk, plans), schedule.c (fusion) and codegen.c. */
#ifndef SLOTH_LOWER_H
#define SLOTH_LOWER_H

#include "internal.h"

/* The pending graph reachable from the roots of one sync point. */
typedef struct sloth__graph {
  sloth__node **order;  /* pending nodes, post-order (operands first); node->order = index */
  int n;
  sloth__node **inputs; /* leaves: data and scalars, first-visit order; node->order = -(index+1) */
  int ninputs;
  int *roots;           /* order indices of the nodes to materialize, no repeats */
  int nroots;
  sloth__hash128 key;   /* the plan cache key */
} sloth__graph;

static inline bool sloth__graph_is_input(const sloth__node *n) { return n->order < 0; }

/* What a kernel of a schedule does. Only elementwise kernels have several
 * outputs (of the same shape). */
typedef enum sloth__sched_kind {
  SCHED_ELEMENTWISE,
  SCHED_REDUCE,
  SCHED_SCAN,    /* cumulative sums along an axis */
  SCHED_ZERO,    /* fills a scatter's output with zeros, before SCHED_SCATTER */
  SCHED_SCATTER, /* atomic adds at data-dependent positions */
  SCHED_SORT,    /* argsort along an axis, one work-item per line */
  SCHED_GEMM     /* a library call, not generated code */
} sloth__sched_kind;

typedef struct sloth__sched_kernel {
  int *outputs; /* order indices */
  int noutputs;
  sloth__sched_kind kind;
} sloth__sched_kernel;

typedef struct sloth__schedule {
  int *mat;                      /* per order index: materialized slot, or -1 when fused */
  int nmat;
  int *mat_node;                 /* per slot: order index */
  int *inplace;                  /* per slot: input index of the sloth_assign target it
                                    may be written into, or -1 (see schedule.c) */
  sloth__sched_kernel *kernels;  /* in execution order */
  int nkernels;
} sloth__schedule;

int sloth__schedule_graph(const sloth__graph *g, sloth__schedule *s);
void sloth__schedule_free(sloth__schedule *s);

/* What a generated kernel takes, in order. */
/* ARG_ERROR: the device's error word; a kernel that reads with data-dependent
 * indices sets it when an index is out of range (it reads clamped indices). */
typedef enum sloth__arg_kind { ARG_MAT, ARG_INPUT, ARG_PARAMS, ARG_SCALAR, ARG_ERROR } sloth__arg_kind;
typedef struct sloth__arg {
  sloth__arg_kind kind;
  int index;         /* slot (ARG_MAT) or input index (ARG_INPUT, ARG_SCALAR) */
  sloth_dtype dtype; /* ARG_SCALAR: passed as float for f32, as int otherwise */
  bool written;      /* ARG_MAT: an output of this kernel */
} sloth__arg;

typedef struct sloth__generated {
  sloth__str source;
  char name[32];
  sloth__arg *args;
  int nargs;
  int64_t *params; /* sizes, strides and offsets: the contents of the P buffer */
  int nparams;
  sloth__launch geom;
} sloth__generated;

int sloth__codegen(const sloth__graph *g, const sloth__schedule *s, int kernel, sloth__generated *out);
/* The same in a given dialect (SLOTH_DUMP_CUDA generates CUDA C on any backend). */
int sloth__codegen_dialect(const sloth__graph *g, const sloth__schedule *s, int kernel, sloth__dialect_id dialect,
                           sloth__generated *out);
void sloth__generated_free(sloth__generated *k);

#endif
