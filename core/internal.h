/* internal.h - declarations shared by the files of core/ (never installed). */
#ifndef SLOTH_INTERNAL_H
#define SLOTH_INTERNAL_H

#include "sloth.h"
#include "backend.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ errors */

/* Records a message for sloth_last_error() and returns the status. */
sloth_status sloth__fail(sloth_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sloth__clear_error(void);

/* ------------------------------------------------------------------ hashing */

typedef struct sloth__hash128 {
  uint64_t lo, hi;
} sloth__hash128;

sloth__hash128 sloth__hash_bytes(const void *data, size_t n, uint64_t seed);
static inline bool sloth__hash_eq(sloth__hash128 a, sloth__hash128 b) { return a.lo == b.lo && a.hi == b.hi; }

/* Incremental hasher (XXH3 128-bit streaming state, kept opaque here). */
typedef struct sloth__hasher sloth__hasher;
sloth__hasher *sloth__hasher_new(void);
void sloth__hasher_reset(sloth__hasher *h);
void sloth__hasher_add(sloth__hasher *h, const void *data, size_t n);
sloth__hash128 sloth__hasher_digest(sloth__hasher *h);
void sloth__hasher_free(sloth__hasher *h);

/* ------------------------------------------------------------------ op table */

typedef enum sloth__op_kind {
  KIND_LEAF, KIND_UNARY, KIND_BINARY, KIND_TERNARY, KIND_VIEW, KIND_REDUCE, KIND_SCAN, KIND_SCATTER, KIND_GEMM, KIND_SORT
} sloth__op_kind;
typedef enum sloth__dtype_rule { RULE_SAME, RULE_FLOAT, RULE_BOOL, RULE_LOGIC } sloth__dtype_rule;

typedef enum sloth__opcode {
#define OP(id, name, kind, rule, fcode, icode, grad) OP_##id,
#include "ops.def"
#undef OP
  OP_COUNT
} sloth__opcode;

/* What a gradient rule (core/grad.c) gets and gives: the op's node (attrs
 * and shape only: its operands may be gone if a sync ran meanwhile), its
 * value and operands as tensors, the gradient of its output; it sets gin[i]
 * to the gradient of operand i (borrowed: the engine takes a reference), or
 * leaves it NULL when none flows. Rules run under the (recursive) lock and
 * compose public ops, so gradients are lazy and fuse like any other op. */
typedef struct sloth__grad_args {
  const struct sloth__node *node;
  sloth_tensor *out;
  sloth_tensor *in[3];
  sloth_tensor *g;
  bool need[3];         /* operand i leads to a requested gradient */
  sloth_tensor *gin[3];
} sloth__grad_args;
typedef int sloth__grad_fn(sloth__grad_args *a);
#define OP(id, name, kind, rule, fcode, icode, grad) sloth__grad_fn grad;
#include "ops.def"
#undef OP

typedef struct sloth__op_info {
  const char *name;
  sloth__op_kind kind;
  sloth__dtype_rule rule;
  const char *float_code;
  const char *int_code;
  sloth__grad_fn *grad;
} sloth__op_info;

extern const sloth__op_info sloth__ops[OP_COUNT];

/* ------------------------------------------------------------------ IR */

enum { SLOTH__RAND_UNIFORM = 0, SLOTH__RAND_NORMAL = 1 };

typedef struct sloth__node sloth__node;
typedef struct sloth__dbuf sloth__dbuf;

/* Attributes; only the fields of the node's op are meaningful, all others are zero
 * (so the whole struct can be hashed). */
typedef struct sloth__attrs {
  int32_t perm[SLOTH_MAX_RANK]; /* PERMUTE: output axis d reads input axis perm[d] */
  int32_t axis;                 /* SLICE axis */
  int32_t keepdim;              /* REDUCE */
  uint32_t axes_mask;           /* REDUCE: bit d set = input axis d reduced */
  int32_t cast_to;              /* CAST */
  int32_t dist;                 /* RAND: SLOTH__RAND_UNIFORM or SLOTH__RAND_NORMAL */
  int32_t descending;           /* ARGSORT */
  int64_t start, step;          /* SLICE; AS_STRIDED: start is the offset */
  int64_t v[2 * SLOTH_MAX_RANK]; /* PAD: pads before (0..r-1), after (r..2r-1); AS_STRIDED: strides */
  /* sizes, strides, offsets and pads reach kernels as params, never as source */
} sloth__attrs;

struct sloth__node {
  int refcount;
  sloth__opcode op;
  sloth_dtype dtype;
  int rank;
  int64_t shape[SLOTH_MAX_RANK];
  int nin;
  sloth__node *in[3];
  sloth__attrs attrs;
  double scalar;              /* SCALAR value: a kernel argument, never hashed */
  sloth__hash128 local_hash;  /* op, attrs, dtype, shape */
  sloth__hash128 hash;        /* local_hash + operand hashes (output index 0) */
  int depth;                  /* longest pending path down to data; 0 once materialized */
  bool materialized;          /* holds device data (buf; NULL for zero-size) */
  sloth__dbuf *buf;           /* device data once materialized (contiguous, row-major) */
  /* sloth_assign: a materialized node whose buffer this node's result is
   * written into, when nothing else needs the old elements (executor.c) */
  sloth__node *target;
  bool trimmed;               /* materialized by SLOTH_MAX_DEPTH trimming: autograd cannot see through */
  uint64_t id;
  /* scratch used by one graph walk at a time (under the global lock) */
  uint64_t mark;
  int order;
};

sloth__node *sloth__node_new(sloth__opcode op, sloth_dtype dt, int rank, const int64_t *shape, int nin,
                             sloth__node *const *in, const sloth__attrs *attrs);
void sloth__node_retain(sloth__node *n);
void sloth__node_release(sloth__node *n);
/* Attaches device data and drops the inputs: the node becomes a data leaf. */
void sloth__node_materialize(sloth__node *n, sloth__dbuf *b);
static inline bool sloth__node_is_leaf(const sloth__node *n) {
  return n->materialized || n->op == OP_SCALAR;
}
int64_t sloth__numel(int rank, const int64_t *shape);

/* ------------------------------------------------------------------ tensors */

struct sloth_tensor {
  uint32_t magic;
  int refcount;
  uint64_t id;
  sloth__node *node;
  sloth_tensor *prev, *next; /* registry of live tensors */
  int scope_depth;           /* 0 = in no scope */
  int scope_slot;
  const void *scope_owner;   /* identifies the thread whose scope holds it */
};

/* Wraps a node in a new tensor (takes over the node reference). */
sloth_tensor *sloth__tensor_wrap(sloth__node *n);
/* Validates a handle; records an error and returns false for NULL or released ones. */
bool sloth__tensor_ok(const sloth_tensor *t);
/* The same under the lock, for ops composed from public calls (nn.c, conv.c). */
bool sloth__tensor_valid(const sloth_tensor *t);
/* Normalizes a possibly negative axis; records an error naming `what`. */
int sloth__norm_axis(int axis, int rank, const char *what);
/* The transpose of an as_strided window view, for its gradient (ops.c). */
sloth_tensor *sloth__window_adjoint(sloth_tensor *g, const sloth__node *view, int *nloop);
/* Puts a tensor that is in no scope into the thread's innermost scope, as
 * if it had been created there (results built inside a private scope). */
void sloth__scope_adopt(sloth_tensor *t);
/* Iterates the registry of live tensors. */
sloth_tensor *sloth__tensor_first(void);

/* ------------------------------------------------------------------ runtime */

void sloth__lock(void);
void sloth__unlock(void);
/* Ensures a device is open (lazy init). Must be called with the lock held. */
int sloth__ensure_device(void);

typedef struct sloth__runtime {
  const sloth__backend *backend;
  sloth__device *dev;
  sloth_device_info info;
  int max_depth;         /* SLOTH_MAX_DEPTH: graph trimming bound */
  const char *dump_kernels_dir;
  const char *build_options;
  uint64_t rng_seed;     /* sloth_manual_seed */
  uint32_t rng_offset;   /* the next draw's Philox stream */
} sloth__runtime;

extern sloth__runtime sloth__rt;

/* A pooled device buffer: the backend's memory plus its (rounded) size. */
struct sloth__dbuf {
  sloth__buffer *mem;
  size_t bytes;
  struct sloth__dbuf *next; /* free list link while pooled */
};

/* Buffer pool over the backend's allocator. bytes == 0 gives NULL (not an error). */
sloth__dbuf *sloth__buffer_get(size_t bytes);
size_t sloth__buffer_rounded(size_t bytes); /* the size of the buffer that bytes get */
void sloth__buffer_put(sloth__dbuf *b);
void sloth__pool_trim(void);

/* Sync: materializes the given nodes (one graph). */
int sloth__sync_nodes(sloth__node *const *nodes, int n);

/* ------------------------------------------------------------------ metrics */

typedef enum sloth__counter_id {
  CTR_PLAN_CACHE_HIT,
  CTR_PLAN_CACHE_MISS,
  CTR_KERNEL_COMPILE,
  CTR_KERNEL_CACHE_HIT,
  CTR_KERNEL_LAUNCH,
  CTR_GEMM_CALL,
  CTR_BYTES_TO_DEVICE,
  CTR_BYTES_FROM_DEVICE,
  CTR_GRAPH_TRIM,
  CTR_SYNC,
  CTR_NODES_CREATED,
  CTR_BUFFER_ALLOC,
  CTR_BUFFER_REUSE,
  CTR_BUFFER_SHARE,
  CTR_TRACE_NS,
  CTR_LOWER_NS,
  CTR_COMPILE_NS,
  CTR_EXECUTE_NS,
  CTR_COUNT
} sloth__counter_id;

void sloth__count(sloth__counter_id c, int64_t v);
int64_t sloth__counter_value(sloth__counter_id c);
uint64_t sloth__now_ns(void);

/* ------------------------------------------------------------------ small utilities */

void *sloth__xmalloc(size_t n);  /* NULL + error on failure */
void *sloth__xcalloc(size_t n, size_t size);
const char *sloth__env(const char *name); /* getenv, with "" treated as unset */

/* dtypes (util.c) */
static inline bool sloth__is_float(sloth_dtype dt) { return dt == SLOTH_F32 || dt == SLOTH_F16 || dt == SLOTH_F64; }
uint16_t sloth__f32_to_f16(float f); /* round to nearest even */
float sloth__f16_to_f32(uint16_t h);
/* SLOTH_OK, or SLOTH_E_UNSUPPORTED with a message naming `what` when the
 * device cannot compute in dt (f64 without fp64). */
int sloth__dtype_supported(sloth_dtype dt, const char *what);

/* Growable string used by the code generator and the dumpers. */
typedef struct sloth__str {
  char *p;
  size_t len, cap;
  bool oom;
} sloth__str;
void sloth__str_printf(sloth__str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sloth__str_free(sloth__str *s);

#endif
