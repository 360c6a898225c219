/* schedule.c - groups the nodes of a graph into kernels (fusion).
 *
 * Rules:
 *  - roots, reductions and matrix products are materialized: each gets a buffer;
 *  - a matrix product (a library call) reads its operands through strided
 *    views of buffers, so the node below an operand's views is materialized;
 *  - every other node is fused into the kernel of its consumers, unless its
 *    consumers sit in different kernels: then it is materialized too, so it
 *    is computed once;
 *  - elementwise kernels of the same output shape are merged into one kernel
 *    with several outputs when neither reaches the other through a third
 *    kernel (a direct read is fine: the merged kernel computes the value
 *    instead of loading it).
 *  - a node with an in-place target (sloth_assign) runs after every other
 *    kernel that reads the target's old elements when the dependencies allow;
 *    it is written in place only if that order holds and its own kernel reads
 *    the target at the same index it writes (elementwise paths only).
 */
#include "gemm.h"
#include "lower.h"

#include <stdlib.h>
#include <string.h>

void sloth__schedule_free(sloth__schedule *s) {
  for (int k = 0; k < s->nkernels; k++) free(s->kernels[k].outputs);
  free(s->kernels);
  free(s->mat);
  free(s->mat_node);
  free(s->inplace);
  memset(s, 0, sizeof *s);
}

/* kernel_of of a node computed in every kernel that reads it (see
 * cheap_to_replicate) */
enum { REPLICATED = -3 };

static bool same_shape(const sloth__node *a, const sloth__node *b) {
  return a->rank == b->rank && memcmp(a->shape, b->shape, (size_t)a->rank * sizeof a->shape[0]) == 0;
}

/* While scheduling, a node can hold a buffer if it is data already or a
 * pending node that is not a view (it can be materialized), or a view that
 * another GEMM copies into a buffer of its own (ctx: per order index, or NULL). */
static bool can_hold_buffer(const sloth__node *n, void *ctx) {
  const bool *copied = ctx;
  if (sloth__graph_is_input(n)) return n->materialized;
  return sloth__ops[n->op].kind != KIND_VIEW || (copied && copied[n->order]);
}

/* The node a GEMM operand is read from: the first non-view node below it
 * when the views in between are strides, or else the operand itself (it
 * gets a contiguous copy). */
static const sloth__node *gemm_operand_source(const sloth__node *operand, const bool *copied) {
  sloth__gemm_side side;
  return sloth__gemm_operand(operand, can_hold_buffer, (void *)copied, &side) ? side.base : operand;
}

/* Operands that must be copied because their views are not strides
 * (im2col windows, say). A GEMM that reads such a view through a permute
 * (the weight gradient of a convolution reads the im2col matrix
 * transposed) reads that copy through strides instead of making a second
 * one: an operand first marked as copied is not, when the views below it
 * reach another copy. Deeper operands are decided first (lower order
 * index), so every copy a decision relies on is final. */
static bool *copied_gemm_operands(const sloth__graph *g) {
  bool *copied = calloc((size_t)(g->n ? g->n : 1), 1);
  if (!copied) return NULL;
  for (int i = 0; i < g->n; i++) {
    const sloth__node *x = g->order[i];
    if (sloth__ops[x->op].kind != KIND_GEMM) continue;
    for (int j = 0; j < x->nin; j++) {
      const sloth__node *src = gemm_operand_source(x->in[j], NULL);
      if (src == x->in[j] && !sloth__graph_is_input(src)) copied[src->order] = true;
    }
  }
  for (int i = 0; i < g->n; i++) {
    if (!copied[i]) continue;
    copied[i] = false;
    copied[i] = gemm_operand_source(g->order[i], copied) == g->order[i];
  }
  return copied;
}

/* A GEMM reads its operands from buffers through strided views: the node
 * they are read from is materialized (forced: never replicated). The views
 * in between are noted in by_strides: computed nowhere, unless another
 * kernel reads them too (a transposed weight read by the forward and the
 * backward GEMM needs no copy). */
static void materialize_gemm_operand(const sloth__node *operand, const bool *copied, int *kernel_of, bool *forced,
                                     bool *by_strides) {
  const sloth__node *target = gemm_operand_source(operand, copied);
  if (!sloth__graph_is_input(target)) kernel_of[target->order] = -1, forced[target->order] = true;
  for (const sloth__node *v = operand; v != target; v = v->in[0]) by_strides[v->order] = true;
}

/* The node whose buffer a read of `in` touches: `in` itself, or below the
 * views that hold no buffer (a GEMM reads through them by strides). */
static const sloth__node *read_buffer(const sloth__schedule *s, const sloth__node *in) {
  while (!sloth__graph_is_input(in) && s->mat[in->order] < 0 && sloth__ops[in->op].kind == KIND_VIEW) in = in->in[0];
  return in;
}

/* Ops cheap enough to compute again in every kernel that reads them:
 * index arithmetic and light elementwise math. */
static bool cheap_op(sloth__opcode op) {
  switch (op) {
  case OP_RESHAPE: case OP_PERMUTE: case OP_EXPAND: case OP_SLICE: case OP_PAD: case OP_AS_STRIDED:
  case OP_WINDOW_ADJOINT: case OP_CONCAT: case OP_ARANGE:
  case OP_NEG: case OP_ABS: case OP_RELU: case OP_FLOOR: case OP_CEIL: case OP_ROUND: case OP_SQUARE: case OP_SIGN:
  case OP_NOT: case OP_CAST: case OP_DETACH: case OP_ADD: case OP_SUB: case OP_MUL: case OP_MAXIMUM: case OP_MINIMUM:
  case OP_EQ: case OP_NE: case OP_LT: case OP_LE: case OP_GT: case OP_GE: case OP_AND: case OP_OR: case OP_WHERE:
  case OP_LEAKY_RELU: case OP_CLAMP: return true;
  default: return false;
  }
}

/* A scalar, possibly reshaped and broadcast: a kernel argument, not a tensor read. */
static bool scalar_broadcast(const sloth__node *n) {
  while (!sloth__graph_is_input(n) && (n->op == OP_RESHAPE || n->op == OP_EXPAND)) n = n->in[0];
  return n->op == OP_SCALAR;
}

/* A node with consumers in several kernels is computed once into a buffer,
 * unless it is cheap to compute again in each of them: a cheap op reading
 * at most two tensors, each a buffer (not one this graph writes in place),
 * a kernel's own output (a reduction, a GEMM) or cheap itself. Replicating
 * saves a write and a read of every element (max-pool's window copy, its
 * hit mask, a bias add read by two kernels); its operands then count as
 * read by several kernels too. Over an expensive operand (a random draw,
 * an exp) the node's own buffer is the cheaper one to keep. */
static bool cheap_to_replicate(const sloth__node *x, const bool *target_input) {
  if (x->target || !cheap_op(x->op)) return false;
  int tensors = 0;
  for (int j = 0; j < x->nin; j++) {
    const sloth__node *in = x->in[j];
    if (scalar_broadcast(in)) continue;
    tensors++;
    if (sloth__graph_is_input(in)) {
      if (target_input[-in->order - 1]) return false;
      continue;
    }
    sloth__op_kind k = sloth__ops[in->op].kind;
    bool own_kernel = k == KIND_REDUCE || k == KIND_SCAN || k == KIND_SCATTER || k == KIND_GEMM || k == KIND_SORT;
    if (!own_kernel && !cheap_op(in->op)) return false;
  }
  return tensors <= 2;
}

static sloth__sched_kind sched_kind(const sloth__node *x) {
  switch (sloth__ops[x->op].kind) {
  case KIND_REDUCE: return SCHED_REDUCE;
  case KIND_SCAN: return SCHED_SCAN;
  case KIND_SCATTER: return SCHED_SCATTER;
  case KIND_SORT: return SCHED_SORT;
  case KIND_GEMM: return SCHED_GEMM;
  default: return SCHED_ELEMENTWISE;
  }
}

/* ------------------------------------------------------------------ in-place writes (sloth_assign) */

static bool is_elementwise(const sloth__node *x) {
  sloth__op_kind k = sloth__ops[x->op].kind;
  return k == KIND_UNARY || k == KIND_BINARY || k == KIND_TERNARY;
}

/* Does group `from` depend on group `to`, directly or through others? */
static bool group_reaches(const uint64_t *deps, int words, int ngroups, int from, int to) {
  char *seen = calloc((size_t)ngroups, 1);
  int *stack = malloc((size_t)ngroups * sizeof *stack);
  bool found = false;
  if (!seen || !stack) found = true; /* out of memory: answer "yes", which only forgoes a reorder */
  int top = 0;
  if (!found) stack[top++] = from, seen[from] = 1;
  while (top > 0 && !found) {
    int k = stack[--top];
    for (int m = 0; m < ngroups && !found; m++) {
      if (!(deps[(size_t)k * words + m / 64] >> (m % 64) & 1) || seen[m]) continue;
      if (m == to) found = true;
      seen[m] = 1;
      stack[top++] = m;
    }
  }
  free(seen), free(stack);
  return found;
}

/* A kernel that writes into a target must run after the kernels that read
 * the target's old elements: add those dependencies where they make no cycle. */
static void order_writers_after_readers(const sloth__graph *g, const sloth__schedule *s, const int *kernel_of,
                                        const int *group_rank, int ngroups, uint64_t *deps, int words) {
  for (int i = 0; i < g->n; i++) {
    const sloth__node *w = g->order[i];
    if (!w->target || s->mat[i] < 0) continue;
    int e = group_rank[kernel_of[i]];
    for (int y = 0; y < g->n; y++) {
      const sloth__node *r = g->order[y];
      if (kernel_of[y] == REPLICATED) continue; /* reads no target (cheap_to_replicate) */
      bool reads = false;
      for (int j = 0; j < r->nin; j++) reads |= read_buffer(s, r->in[j]) == w->target;
      int f = group_rank[kernel_of[y]];
      if (!reads || f == e || (deps[(size_t)e * words + f / 64] >> (f % 64) & 1)) continue;
      if (!group_reaches(deps, words, ngroups, f, e)) deps[(size_t)e * words + f / 64] |= 1ull << (f % 64);
    }
  }
}

/* Decides, per slot, whether it is written into its target's buffer: every
 * other kernel reading the target runs before it, and its own kernel reads
 * the target only through elementwise ops at the index it writes. */
static int choose_inplace(const sloth__graph *g, sloth__schedule *s, const int *kernel_at_node) {
  s->inplace = malloc((size_t)(s->nmat ? s->nmat : 1) * sizeof *s->inplace);
  char *state = malloc((size_t)(g->n ? g->n : 1)); /* 0 unreached, 1 same index, 2 other index */
  if (!s->inplace || !state) {
    free(state);
    return sloth__fail(SLOTH_E_NOMEM, "out of host memory (schedule)");
  }
  for (int m = 0; m < s->nmat; m++) {
    const sloth__node *w = g->order[s->mat_node[m]];
    s->inplace[m] = -1;
    if (!w->target || !same_shape(w, w->target) || w->dtype != w->target->dtype) continue;
    int kw = kernel_at_node[s->mat_node[m]];
    const sloth__sched_kernel *k = &s->kernels[kw];
    bool ok = true;
    /* readers in other kernels must come first */
    for (int y = 0; y < g->n && ok; y++) {
      const sloth__node *r = g->order[y];
      for (int j = 0; j < r->nin; j++)
        if (kernel_at_node[y] > kw && read_buffer(s, r->in[j]) == w->target) ok = false;
    }
    /* inside the writer's kernel: walk consumers before producers */
    memset(state, 0, (size_t)g->n);
    if (k->kind == SCHED_ELEMENTWISE)
      for (int o = 0; o < k->noutputs; o++) state[k->outputs[o]] = 1;
    else
      for (int o = 0; o < k->noutputs; o++) state[k->outputs[o]] = 2;
    /* a replicated node (kernel -1) is computed in every kernel that reads it */
    for (int y = g->n - 1; y >= 0 && ok; y--) {
      const sloth__node *r = g->order[y];
      if (!state[y] || (kernel_at_node[y] != kw && kernel_at_node[y] != -1)) continue;
      bool same_index = state[y] == 1 && is_elementwise(r);
      for (int j = 0; j < r->nin; j++) {
        const sloth__node *in = r->in[j];
        if (in == w->target && !(same_index && same_shape(in, r))) ok = false;
        /* loaded, not computed here (an output of this kernel read by another
         * of its outputs is computed again at the reader's index) */
        if (sloth__graph_is_input(in) || (kernel_at_node[in->order] != kw && kernel_at_node[in->order] != -1)) continue;
        char st = same_index && same_shape(in, r) ? 1 : 2;
        if (st > state[in->order]) state[in->order] = st;
      }
    }
    if (ok) s->inplace[m] = -w->target->order - 1;
  }
  free(state);
  return SLOTH_OK;
}

/* Kernel e depends on the groups of the materialized nodes that x reads,
 * directly or through replicated nodes (computed in e too). visited[p] ==
 * stamp: replicated node p was already followed for this stamp. */
static void add_reads(const sloth__graph *g, const sloth__schedule *s, const int *kernel_of, const int *group_rank,
                      const sloth__node *x, int e, uint64_t *deps, int words, int *visited, int stamp) {
  const bool gemm = sloth__ops[x->op].kind == KIND_GEMM;
  for (int j = 0; j < x->nin; j++) {
    /* a GEMM reads the buffer below its operand's views, wherever those
     * views are computed for other readers */
    const sloth__node *in = gemm ? read_buffer(s, x->in[j]) : x->in[j];
    if (sloth__graph_is_input(in)) continue;
    int p = in->order;
    if (kernel_of[p] == REPLICATED) {
      if (visited[p] == stamp) continue;
      visited[p] = stamp;
      add_reads(g, s, kernel_of, group_rank, in, e, deps, words, visited, stamp);
    } else if (s->mat[p] >= 0 && group_rank[kernel_of[p]] != e) {
      int f = group_rank[kernel_of[p]];
      deps[(size_t)e * words + f / 64] |= 1ull << (f % 64);
    }
  }
}

int sloth__schedule_graph(const sloth__graph *g, sloth__schedule *s) {
  memset(s, 0, sizeof *s);
  int n = g->n;
  int *kernel_of = malloc((size_t)(n ? n : 1) * sizeof *kernel_of); /* group id of each node */
  s->mat = malloc((size_t)(n ? n : 1) * sizeof *s->mat);
  s->mat_node = malloc((size_t)(n ? n : 1) * sizeof *s->mat_node);
  if (!kernel_of || !s->mat || !s->mat_node) {
    free(kernel_of);
    sloth__schedule_free(s);
    return sloth__fail(SLOTH_E_NOMEM, "out of host memory (schedule)");
  }
  bool *is_root = calloc((size_t)(n ? n : 1), 1);
  bool *forced = calloc((size_t)(n ? n : 1), 1);
  bool *target_input = calloc((size_t)(g->ninputs ? g->ninputs : 1), 1);
  bool *copied = copied_gemm_operands(g);
  bool *by_strides = calloc((size_t)(n ? n : 1), 1);
  if (!is_root || !forced || !target_input || !copied || !by_strides) {
    free(kernel_of), free(is_root), free(forced), free(target_input), free(copied), free(by_strides);
    sloth__schedule_free(s);
    return sloth__fail(SLOTH_E_NOMEM, "out of host memory (schedule)");
  }
  for (int i = 0; i < g->nroots; i++) is_root[g->roots[i]] = true;
  for (int i = 0; i < n; i++) {
    const sloth__node *t = g->order[i]->target;
    if (t && sloth__graph_is_input(t)) target_input[-t->order - 1] = true;
  }
  for (int i = 0; i < n; i++) {
    kernel_of[i] = -2; /* no consumer seen yet */
    s->mat[i] = -1;
  }

  /* Consumers come after producers in post-order, so walking backwards sees
   * every consumer of a node before the node itself. */
  int ngroups = 0;
  for (int i = n - 1; i >= 0; i--) {
    sloth__node *x = g->order[i];
    sloth__op_kind kind = sloth__ops[x->op].kind;
    if (by_strides[i] && kernel_of[i] == -2 && !is_root[i]) {
      kernel_of[i] = REPLICATED; /* only GEMMs read it, by strides */
      continue;
    }
    bool own = is_root[i] || kind == KIND_REDUCE || kind == KIND_SCAN || kind == KIND_SCATTER || kind == KIND_GEMM ||
               kind == KIND_SORT || kernel_of[i] == -1;
    if (own && kernel_of[i] == -1 && !is_root[i] && !forced[i] && cheap_to_replicate(x, target_input)) {
      kernel_of[i] = REPLICATED;
      for (int j = 0; j < x->nin; j++)
        if (!sloth__graph_is_input(x->in[j])) kernel_of[x->in[j]->order] = -1;
      continue;
    }
    if (own) {
      kernel_of[i] = ngroups++;
      s->mat[i] = 0; /* numbered below */
    }
    if (kind == KIND_GEMM)
      for (int j = 0; j < x->nin; j++) materialize_gemm_operand(x->in[j], copied, kernel_of, forced, by_strides);
    for (int j = 0; j < x->nin; j++) {
      sloth__node *in = x->in[j];
      if (sloth__graph_is_input(in) || (kind == KIND_GEMM && by_strides[in->order])) continue;
      int p = in->order;
      if (kernel_of[p] == -2) kernel_of[p] = kernel_of[i];
      else if (kernel_of[p] != kernel_of[i]) kernel_of[p] = -1; /* consumers in two kernels */
    }
    /* a sort reads its keys O(n log n) times: from a buffer, not recomputed */
    if (kind == KIND_SORT && !sloth__graph_is_input(x->in[0]))
      kernel_of[x->in[0]->order] = -1, forced[x->in[0]->order] = true;
  }

  /* Groups in execution order: a group runs after the groups it reads from.
   * Group ids were given from the end, so reverse them. */
  int *group_rank = malloc((size_t)(ngroups ? ngroups : 1) * sizeof *group_rank);
  sloth__sched_kernel *ks = calloc((size_t)(ngroups ? ngroups : 1), sizeof *ks);
  /* dependency bitsets between groups (transitive), for merging */
  int words = (ngroups + 63) / 64;
  uint64_t *deps = calloc((size_t)(ngroups ? ngroups : 1) * (size_t)(words ? words : 1), sizeof *deps);
  int *visited = malloc((size_t)(n ? n : 1) * sizeof *visited); /* replicated nodes followed, per reader */
  if (!group_rank || !ks || !deps || !visited) {
    free(group_rank), free(ks), free(deps), free(visited), free(kernel_of), free(is_root), free(forced), free(target_input),
        free(copied), free(by_strides);
    sloth__schedule_free(s);
    return sloth__fail(SLOTH_E_NOMEM, "out of host memory (schedule)");
  }
  for (int gi = 0; gi < ngroups; gi++) group_rank[gi] = ngroups - 1 - gi;
  /* execution index e = group_rank[group]; collect each group's outputs */
  for (int i = 0; i < n; i++) {
    if (s->mat[i] < 0) continue;
    int e = group_rank[kernel_of[i]];
    ks[e].outputs = malloc(sizeof(int));
    ks[e].outputs[0] = i;
    ks[e].noutputs = 1;
    ks[e].kind = sched_kind(g->order[i]);
  }
  /* direct dependencies: kernel e reads a materialized node of kernel f,
   * also through replicated nodes, which it computes itself */
  for (int i = 0; i < n; i++) visited[i] = -1;
  for (int i = 0; i < n; i++)
    if (kernel_of[i] != REPLICATED)
      add_reads(g, s, kernel_of, group_rank, g->order[i], group_rank[kernel_of[i]], deps, words, visited, i);
  free(visited);

  order_writers_after_readers(g, s, kernel_of, group_rank, ngroups, deps, words);

  /* Merge independent elementwise kernels with the same output shape. A
   * merge is refused when either kernel reaches the other through the
   * dependency graph, which keeps the merged graph acyclic. */
  int *leader = malloc((size_t)(ngroups ? ngroups : 1) * sizeof *leader);
  int *stack = malloc((size_t)(ngroups ? ngroups : 1) * sizeof *stack);
  char *seen = malloc((size_t)(ngroups ? ngroups : 1));
  for (int e = 0; e < ngroups; e++) leader[e] = e;
  for (int f = 1; f < ngroups; f++) {
    if (ks[f].kind != SCHED_ELEMENTWISE) continue;
    for (int e = 0; e < f; e++) {
      if (leader[e] != e || ks[e].kind != SCHED_ELEMENTWISE) continue;
      if (!same_shape(g->order[ks[e].outputs[0]], g->order[ks[f].outputs[0]])) continue;
      /* Does f reach group e through another group? A direct read of e is
       * fine: a kernel computes its own outputs instead of loading them. */
      memset(seen, 0, (size_t)ngroups);
      int top = 0;
      bool reaches = false;
      stack[top++] = f;
      seen[f] = 1;
      while (top > 0 && !reaches) {
        int k = stack[--top];
        for (int m = 0; m < ngroups && !reaches; m++) {
          if (!(deps[(size_t)k * words + m / 64] >> (m % 64) & 1)) continue;
          if (k == f && leader[m] == e) continue;
          /* entering any member of m's group means depending on that group */
          int L = leader[m];
          if (L == e) reaches = true;
          for (int q = 0; q < ngroups; q++)
            if (leader[q] == L && !seen[q]) {
              seen[q] = 1;
              stack[top++] = q;
            }
        }
      }
      if (reaches) continue;
      int *o = realloc(ks[e].outputs, (size_t)(ks[e].noutputs + ks[f].noutputs) * sizeof *o);
      if (!o) continue;
      memcpy(o + ks[e].noutputs, ks[f].outputs, (size_t)ks[f].noutputs * sizeof *o);
      free(ks[f].outputs);
      ks[f].outputs = NULL;
      ks[e].outputs = o;
      ks[e].noutputs += ks[f].noutputs;
      leader[f] = e;
      break;
    }
  }
  /* Topological order of the merged groups (Kahn), earliest original kernel first. */
  char *done = calloc((size_t)(ngroups ? ngroups : 1), 1);
  int *kernel_at = calloc((size_t)(ngroups ? ngroups : 1), sizeof *kernel_at); /* group -> kernel index */
  /* room for a zero-fill kernel before each scatter */
  s->kernels = calloc((size_t)(ngroups ? 2 * ngroups : 1), sizeof *s->kernels);
  for (;;) {
    int pick = -1;
    for (int e = 0; e < ngroups && pick < 0; e++) {
      if (leader[e] != e || done[e]) continue;
      bool ready = true;
      for (int q = 0; q < ngroups && ready; q++) {
        if (leader[q] != e) continue;
        for (int m = 0; m < ngroups && ready; m++)
          if ((deps[(size_t)q * words + m / 64] >> (m % 64) & 1) && leader[m] != e && !done[leader[m]]) ready = false;
      }
      if (ready) pick = e;
    }
    if (pick < 0) break;
    done[pick] = 1;
    if (ks[pick].kind == SCHED_SCATTER) { /* the adds need a zeroed output */
      int *o = malloc(sizeof *o);
      if (o) {
        o[0] = ks[pick].outputs[0];
        s->kernels[s->nkernels++] = (sloth__sched_kernel){o, 1, SCHED_ZERO};
      }
    }
    kernel_at[pick] = s->nkernels;
    s->kernels[s->nkernels++] = ks[pick];
  }
  for (int e = 0; e < ngroups; e++) kernel_at[e] = kernel_at[leader[e]];
  free(done), free(seen), free(stack), free(leader);
  /* number the materialized slots in execution order (a scatter's output
   * appears in two kernels: one slot) */
  for (int i = 0; i < n; i++) s->mat[i] = -1;
  for (int k = 0; k < s->nkernels; k++)
    for (int o = 0; o < s->kernels[k].noutputs; o++) {
      int i = s->kernels[k].outputs[o];
      if (s->mat[i] >= 0) continue;
      s->mat_node[s->nmat] = i;
      s->mat[i] = s->nmat++;
    }
  /* node -> kernel index, for the in-place checks */
  for (int i = 0; i < n; i++) kernel_of[i] = kernel_of[i] == REPLICATED ? -1 : kernel_at[group_rank[kernel_of[i]]];
  int rc = choose_inplace(g, s, kernel_of);
  free(kernel_at), free(deps), free(ks), free(group_rank), free(kernel_of), free(is_root), free(forced), free(target_input),
      free(copied), free(by_strides);
  if (rc != SLOTH_OK) sloth__schedule_free(s);
  return rc;
}
