/* ir.c - IR nodes: creation with structural hashing, reference counting. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

const sloth__op_info sloth__ops[OP_COUNT] = {
#define OP(id, nm, kind, rule, fcode, icode, grad) [OP_##id] = {nm, KIND_##kind, RULE_##rule, fcode, icode, grad},
#include "ops.def"
#undef OP
};

int64_t sloth__numel(int rank, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= shape[i];
  return n;
}

static uint64_t next_node_id = 1;

/* What identifies a node apart from its operands. Slice start/step are sizes,
 * kept out of kernel source but part of the plan key like every shape. */
typedef struct local_key {
  int32_t op, dtype, rank, pad;
  int64_t shape[SLOTH_MAX_RANK];
  sloth__attrs attrs;
} local_key;

sloth__node *sloth__node_new(sloth__opcode op, sloth_dtype dt, int rank, const int64_t *shape, int nin,
                             sloth__node *const *in, const sloth__attrs *attrs) {
  sloth__node *n = sloth__xcalloc(1, sizeof *n);
  if (!n) return NULL;
  n->refcount = 1;
  n->op = op;
  n->dtype = dt;
  n->rank = rank;
  if (rank) memcpy(n->shape, shape, (size_t)rank * sizeof *shape);
  if (attrs) n->attrs = *attrs;
  n->id = next_node_id++;
  n->nin = nin;
  int depth = 0;
  for (int i = 0; i < nin; i++) {
    n->in[i] = in[i];
    sloth__node_retain(in[i]);
    if (in[i]->depth > depth) depth = in[i]->depth;
  }
  n->depth = (op == OP_DATA || op == OP_SCALAR) ? 0 : depth + 1;

  local_key k;
  memset(&k, 0, sizeof k);
  k.op = op;
  k.dtype = dt;
  k.rank = rank;
  memcpy(k.shape, n->shape, sizeof k.shape);
  k.attrs = n->attrs;
  n->local_hash = sloth__hash_bytes(&k, sizeof k, 0x510f);
  /* structural hash: local hash, then each operand's hash with its output index (0) */
  struct {
    sloth__hash128 local;
    sloth__hash128 operand[3];
    uint64_t output_index[3];
  } s;
  memset(&s, 0, sizeof s);
  s.local = n->local_hash;
  for (int i = 0; i < nin; i++) s.operand[i] = in[i]->hash;
  n->hash = sloth__hash_bytes(&s, sizeof s, 0x510f);
  sloth__count(CTR_NODES_CREATED, 1);
  return n;
}

void sloth__node_retain(sloth__node *n) { n->refcount++; }

void sloth__node_release(sloth__node *n) {
  /* iterative, so releasing a long chain does not recurse deeply */
  sloth__node *stack[64];
  int top = 0;
  stack[top++] = n;
  while (top > 0) {
    sloth__node *x = stack[--top];
    if (--x->refcount > 0) continue;
    for (int i = 0; i < x->nin; i++) {
      if (top < 64) stack[top++] = x->in[i];
      else sloth__node_release(x->in[i]);
    }
    if (x->target) sloth__node_release(x->target);
    if (x->buf) sloth__buffer_put(x->buf);
    free(x);
  }
}

void sloth__node_materialize(sloth__node *n, sloth__dbuf *b) {
  if (n->buf) sloth__buffer_put(n->buf);
  n->buf = b;
  n->materialized = true;
  n->depth = 0;
  for (int i = 0; i < n->nin; i++) sloth__node_release(n->in[i]);
  n->nin = 0;
  memset(n->in, 0, sizeof n->in);
  if (n->target) sloth__node_release(n->target);
  n->target = NULL;
}
