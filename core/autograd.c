/* autograd.c - reverse-mode differentiation over the lazy IR.
 *
 * The pending graph below the outputs is walked once (post-order), the
 * nodes that lead to a requested gradient are marked, and each op's rule
 * (ops.def's last column, core/grad.c) turns the gradient of its output into
 * gradients of its operands, in reverse order, summing where a node feeds
 * several consumers. Every gradient is a lazy tensor: nothing runs here, and
 * forward, backward and the optimizer update of a step become one graph.
 *
 * The walk keeps its own node table (a pointer hash map) and copies of each
 * node's operands: rules build new ops, and a graph grown past
 * SLOTH_MAX_DEPTH syncs in the middle, which materializes nodes (they drop
 * their operands) and reuses the executor's scratch fields. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct gnode {
  sloth__node *node;     /* one reference held */
  sloth__node *in[3];    /* its operands at walk time (references held) */
  int nin;
  bool needed;           /* leads to a requested gradient */
  sloth_tensor *grad;    /* accumulated gradient of its value (a reference), or NULL */
} gnode;

typedef struct walk {
  gnode *nodes; /* post-order: operands first */
  int n, cap;
  int *slots;   /* open addressing: node -> index + 1, 0 = empty */
  int nslots;   /* power of two */
} walk;

static size_t slot_of(const walk *w, const sloth__node *x) {
  uint64_t h = (uint64_t)(uintptr_t)x * 0x9e3779b97f4a7c15ull;
  return (size_t)(h >> 20) & (size_t)(w->nslots - 1);
}

static int lookup(const walk *w, const sloth__node *x) {
  for (size_t s = slot_of(w, x);; s = (s + 1) & (size_t)(w->nslots - 1)) {
    int i = w->slots[s];
    if (i == 0) return -1;
    if (w->nodes[i - 1].node == x) return i - 1;
  }
}

static int rehash(walk *w) {
  int n = w->nslots ? w->nslots * 2 : 256;
  int *slots = calloc((size_t)n, sizeof *slots);
  if (!slots) return sloth__fail(SLOTH_E_NOMEM, "out of host memory (autograd)");
  free(w->slots);
  w->slots = slots;
  w->nslots = n;
  for (int i = 0; i < w->n; i++) {
    size_t s = slot_of(w, w->nodes[i].node);
    while (w->slots[s]) s = (s + 1) & (size_t)(n - 1);
    w->slots[s] = i + 1;
  }
  return SLOTH_OK;
}

static int add_node(walk *w, sloth__node *x) {
  if (w->n == w->cap) {
    int cap = w->cap ? w->cap * 2 : 128;
    gnode *p = realloc(w->nodes, (size_t)cap * sizeof *p);
    if (!p) return sloth__fail(SLOTH_E_NOMEM, "out of host memory (autograd)");
    w->nodes = p;
    w->cap = cap;
  }
  if (2 * (w->n + 1) > w->nslots && rehash(w) != SLOTH_OK) return SLOTH_E_NOMEM;
  gnode *g = &w->nodes[w->n];
  memset(g, 0, sizeof *g);
  g->node = x;
  sloth__node_retain(x);
  if (!sloth__node_is_leaf(x)) {
    g->nin = x->nin;
    for (int i = 0; i < x->nin; i++) {
      g->in[i] = x->in[i];
      sloth__node_retain(x->in[i]);
    }
  }
  size_t s = slot_of(w, x);
  while (w->slots[s]) s = (s + 1) & (size_t)(w->nslots - 1);
  w->slots[s] = ++w->n;
  return SLOTH_OK;
}

static void walk_free(walk *w) {
  for (int i = 0; i < w->n; i++) {
    gnode *g = &w->nodes[i];
    for (int j = 0; j < g->nin; j++) sloth__node_release(g->in[j]);
    sloth__node_release(g->node);
    if (g->grad) sloth_release(g->grad);
  }
  free(w->nodes);
  free(w->slots);
}

/* Post-order over the pending nodes below the outputs; leaves end the walk. */
static int collect(walk *w, sloth__node *const *outs, int nout) {
  typedef struct frame { sloth__node *x; int next; } frame;
  int cap = 64, top = 0, rc = SLOTH_OK;
  frame *st = malloc((size_t)cap * sizeof *st);
  if (!st) return sloth__fail(SLOTH_E_NOMEM, "out of host memory (autograd)");
  for (int o = 0; o < nout && rc == SLOTH_OK; o++) {
    if (lookup(w, outs[o]) >= 0) continue;
    st[top++] = (frame){outs[o], 0};
    while (top > 0 && rc == SLOTH_OK) {
      frame *f = &st[top - 1];
      if (!sloth__node_is_leaf(f->x) && f->next < f->x->nin) {
        sloth__node *in = f->x->in[f->next++];
        if (lookup(w, in) >= 0) continue;
        /* a node reached twice before it is done would be a cycle; the IR has none */
        if (top == cap) {
          frame *p = realloc(st, (size_t)(cap *= 2) * sizeof *st);
          if (!p) {
            rc = sloth__fail(SLOTH_E_NOMEM, "out of host memory (autograd)");
            break;
          }
          st = p;
        }
        st[top++] = (frame){in, 0};
        continue;
      }
      top--;
      if (lookup(w, f->x) < 0) rc = add_node(w, f->x);
    }
  }
  free(st);
  return rc;
}

static bool is_float_dtype(sloth_dtype dt) { return dt == SLOTH_F32 || dt == SLOTH_F16 || dt == SLOTH_F64; }

/* A leaf that an op computed (not data, not a scalar): its operands are gone. */
static bool computed_leaf(const sloth__node *x) {
  return x->materialized && x->op != OP_DATA && x->op != OP_SCALAR;
}

/* g += t, both references owned by the engine (t's is taken over). */
static int accumulate(gnode *g, sloth_tensor *t) {
  if (!g->grad) {
    g->grad = t;
    return SLOTH_OK;
  }
  sloth_scope_begin();
  sloth_tensor *sum = sloth_retain(sloth_add(g->grad, t));
  sloth_scope_end();
  sloth_release(t);
  if (!sum) return sloth_last_status();
  sloth_release(g->grad);
  g->grad = sum;
  return SLOTH_OK;
}

static sloth_tensor *wrap(sloth__node *x) {
  sloth__node_retain(x);
  return sloth__tensor_wrap(x);
}

/* Applies the rule of node i: gradients of its needed operands. */
static int backprop(walk *w, int i) {
  gnode *gn = &w->nodes[i];
  const sloth__op_info *info = &sloth__ops[gn->node->op];
  sloth__grad_args a;
  memset(&a, 0, sizeof a);
  a.node = gn->node;
  a.g = gn->grad;
  int idx[3] = {-1, -1, -1}, rc = SLOTH_OK;
  bool any = false;
  for (int j = 0; j < gn->nin; j++) {
    idx[j] = lookup(w, gn->in[j]);
    a.need[j] = idx[j] >= 0 && w->nodes[idx[j]].needed;
    any |= a.need[j];
  }
  if (!any) return SLOTH_OK;
  sloth_scope_begin();
  a.out = wrap(gn->node);
  for (int j = 0; j < gn->nin; j++) a.in[j] = wrap(gn->in[j]);
  bool wrapped = a.out && (gn->nin < 1 || a.in[0]) && (gn->nin < 2 || a.in[1]) && (gn->nin < 3 || a.in[2]);
  rc = wrapped ? info->grad(&a) : SLOTH_E_NOMEM;
  sloth_tensor *keep[3] = {NULL, NULL, NULL};
  for (int j = 0; j < gn->nin && rc == SLOTH_OK; j++)
    if (a.need[j] && a.gin[j]) keep[j] = sloth_retain(a.gin[j]);
  sloth_scope_end();
  for (int j = 0; j < gn->nin; j++) {
    if (!keep[j]) continue;
    if (rc == SLOTH_OK) rc = accumulate(&w->nodes[idx[j]], keep[j]);
    else sloth_release(keep[j]);
  }
  if (rc != SLOTH_OK && !sloth_last_error()[0]) rc = sloth__fail(rc, "autograd: the rule of %s failed", info->name);
  return rc;
}

/* Marks the nodes leading to a requested gradient: the requested ones, and
 * every float node with a needed operand. A leaf cut off by SLOTH_MAX_DEPTH
 * trimming cannot be seen through: reaching one is an error (below). */
static void mark_needed(walk *w, sloth_tensor *const *wrt, int n) {
  for (int i = 0; i < n; i++) {
    int k = lookup(w, wrt[i]->node);
    if (k >= 0) w->nodes[k].needed = is_float_dtype(wrt[i]->node->dtype);
  }
  for (int i = 0; i < w->n; i++) {
    gnode *g = &w->nodes[i];
    if (!is_float_dtype(g->node->dtype)) continue;
    if (g->node->trimmed) g->needed = true;
    for (int j = 0; j < g->nin; j++) {
      int k = lookup(w, g->in[j]);
      if (k >= 0 && w->nodes[k].needed) g->needed = true;
    }
  }
}

static int check_args(sloth_tensor *const *outputs, sloth_tensor *const *seeds, int nout, sloth_tensor *const *wrt,
                      int n, sloth_tensor **grads_out) {
  if (nout < 1 || !outputs || n < 0 || (n > 0 && (!wrt || !grads_out)))
    return sloth__fail(SLOTH_E_INVALID, "grad: bad argument lists (need outputs, and wrt/grads_out arrays of n >= 0)");
  for (int j = 0; j < nout; j++) {
    if (!sloth__tensor_ok(outputs[j]) || (seeds && !sloth__tensor_ok(seeds[j]))) return sloth_last_status();
    const sloth__node *o = outputs[j]->node;
    if (!is_float_dtype(o->dtype))
      return sloth__fail(SLOTH_E_DTYPE, "grad: output %d is %s; only floating-point outputs have gradients", j,
                         sloth_dtype_name(o->dtype));
    if (seeds && (seeds[j]->node->rank != o->rank ||
                  memcmp(seeds[j]->node->shape, o->shape, (size_t)o->rank * sizeof o->shape[0]) != 0))
      return sloth__fail(SLOTH_E_SHAPE, "grad: seed %d is not shaped like its output", j);
  }
  for (int i = 0; i < n; i++)
    if (!sloth__tensor_ok(wrt[i])) return sloth_last_status();
  return SLOTH_OK;
}

/* The gradient of wrt i: the accumulated one, cast to its dtype, or zeros. */
static sloth_tensor *result_for(walk *w, sloth_tensor *t) {
  int k = lookup(w, t->node);
  const sloth__node *x = t->node;
  sloth_scope_begin();
  sloth_tensor *r;
  if (k >= 0 && w->nodes[k].grad) r = sloth_cast(w->nodes[k].grad, x->dtype);
  else r = sloth_zeros(x->dtype, x->rank, x->shape);
  sloth_retain(r);
  sloth_scope_end();
  sloth__scope_adopt(r);
  return r;
}

int sloth_vjp(sloth_tensor *const *outputs, sloth_tensor *const *seeds, int noutputs, sloth_tensor *const *wrt, int n,
              sloth_tensor **grads_out) {
  sloth__lock();
  walk w;
  memset(&w, 0, sizeof w);
  /* entries are ours from here: a failure leaves NULLs, never releases what was there */
  for (int i = 0; grads_out && i < n; i++) grads_out[i] = NULL;
  int rc = check_args(outputs, seeds, noutputs, wrt, n, grads_out);
  sloth__node **outs = NULL;
  if (rc == SLOTH_OK && !(outs = sloth__xmalloc((size_t)noutputs * sizeof *outs))) rc = SLOTH_E_NOMEM;
  for (int j = 0; j < noutputs && rc == SLOTH_OK; j++) outs[j] = outputs[j]->node;
  if (rc == SLOTH_OK) rc = rehash(&w);
  if (rc == SLOTH_OK) rc = collect(&w, outs, noutputs);
  if (rc == SLOTH_OK) mark_needed(&w, wrt, n);
  /* seed the outputs */
  for (int j = 0; j < noutputs && rc == SLOTH_OK; j++) {
    sloth__node *o = outs[j];
    gnode *g = &w.nodes[lookup(&w, o)];
    if (computed_leaf(o) && g->needed == false && n > 0) {
      bool requested = false;
      for (int i = 0; i < n; i++) requested |= wrt[i]->node == o;
      if (!requested) {
        rc = sloth__fail(SLOTH_E_INVALID, "grad: output %d was already computed by a sync point, which forgets how; "
                                          "take gradients before reading or syncing it", j);
        break;
      }
    }
    sloth_scope_begin();
    sloth_tensor *seed = seeds ? seeds[j] : sloth_full(1, o->dtype, o->rank, o->shape);
    sloth_retain(seed);
    sloth_scope_end();
    rc = seed ? accumulate(g, seed) : sloth_last_status();
  }
  /* reverse post-order: a node's gradient is complete before its rule runs */
  for (int i = w.n - 1; i >= 0 && rc == SLOTH_OK; i--) {
    gnode *g = &w.nodes[i];
    if (!g->grad || !g->needed) continue;
    if (sloth__node_is_leaf(g->node)) {
      if (g->node->trimmed)
        rc = sloth__fail(SLOTH_E_INVALID, "grad: the graph was cut by SLOTH_MAX_DEPTH trimming (a pending chain deeper "
                                          "than %d ops was computed early); raise SLOTH_MAX_DEPTH or sync sooner",
                         sloth__rt.max_depth);
      continue;
    }
    rc = backprop(&w, i);
  }
  for (int i = 0; i < n && rc == SLOTH_OK; i++)
    if (!(grads_out[i] = result_for(&w, wrt[i]))) rc = sloth_last_status();
  if (rc != SLOTH_OK)
    for (int i = 0; i < n && grads_out; i++) {
      sloth_release(grads_out[i]);
      grads_out[i] = NULL;
    }
  walk_free(&w);
  free(outs);
  sloth__unlock();
  return rc;
}

int sloth_grad(sloth_tensor *loss, sloth_tensor *const *wrt, int n, sloth_tensor **grads_out) {
  sloth__lock();
  int rc = SLOTH_OK;
  if (!sloth__tensor_ok(loss)) rc = sloth_last_status();
  else if (sloth__numel(loss->node->rank, loss->node->shape) != 1)
    rc = sloth__fail(SLOTH_E_SHAPE, "grad: the loss must have one element (use sloth_vjp for other outputs)");
  if (rc == SLOTH_OK) rc = sloth_vjp(&loss, NULL, 1, wrt, n, grads_out);
  else if (n > 0 && grads_out)
    for (int i = 0; i < n; i++) grads_out[i] = NULL;
  sloth__unlock();
  return rc;
}
