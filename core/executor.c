/* executor.c - sync points: walk the pending graph, hash it, find or build
 * a plan, run it, and attach the results to the nodes. */
#include "gemm.h"
#include "lower.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ plans */

/* A library GEMM call: its descriptor, per-batch offsets, and where its
 * operands live (ARG_INPUT or ARG_MAT bindings). */
typedef struct plan_gemm {
  sloth__gemm desc; /* offsets point into `offsets` */
  size_t *offsets;  /* a, b and c offsets: 3 * batch */
  sloth__arg a, b, c;
} plan_gemm;

typedef struct plan_kernel {
  char name[32];         /* the generated kernel's name, for SLOTH_PROFILE */
  char source_id[20];    /* the start of its source hash: SLOTH_DUMP_KERNELS's file name */
  plan_gemm *gemm;       /* set for a library call instead of a generated kernel */
  sloth__kernel *kernel; /* owned by the kernel cache */
  sloth__launch geom;
  sloth__arg *args;
  int nargs;
  sloth__dbuf *params; /* the P buffer: sizes are fixed for a plan, uploaded once */
} plan_kernel;

typedef struct plan {
  sloth__hash128 key;
  plan_kernel *kernels;
  int nkernels;
  int nmat;
  int *mat_node;     /* slot -> order index */
  size_t *mat_bytes;
  int *inplace;      /* slot -> input index of its sloth_assign target, or -1 */
  int *first_write;  /* slot -> the kernel that first writes it */
  int *last_read;    /* slot -> the last kernel that touches it */
  bool has_inplace;  /* some slot has an in-place target */
  bool may_share;    /* some slot could take an earlier slot's buffer */
  struct plan *lru_prev, *lru_next, *hash_next;
} plan;

/* A bounded LRU of plans keyed by graph hash, and an unbounded map of
 * compiled kernels keyed by the hash of their source. */
#define PLAN_BUCKETS 4096
static plan *plan_buckets[PLAN_BUCKETS];
static plan *lru_head, *lru_tail; /* head = most recently used */
static int nplans;

typedef struct kentry {
  sloth__hash128 key;
  sloth__kernel *kernel;
  struct kentry *next;
} kentry;
#define KERNEL_BUCKETS 1024
static kentry *kernel_buckets[KERNEL_BUCKETS];

static int plan_cache_capacity(void) {
  const char *v = sloth__env("SLOTH_PLAN_CACHE_SIZE");
  int n = v ? atoi(v) : 1024;
  return n < 1 ? 1 : n;
}

static void plan_free(plan *p) {
  for (int k = 0; k < p->nkernels; k++) {
    if (p->kernels[k].gemm) free(p->kernels[k].gemm->offsets);
    free(p->kernels[k].gemm);
    free(p->kernels[k].args);
    sloth__buffer_put(p->kernels[k].params);
  }
  free(p->kernels);
  free(p->mat_node);
  free(p->mat_bytes);
  free(p->inplace);
  free(p->first_write);
  free(p->last_read);
  free(p);
}

static void lru_unlink(plan *p) {
  if (p->lru_prev) p->lru_prev->lru_next = p->lru_next;
  else lru_head = p->lru_next;
  if (p->lru_next) p->lru_next->lru_prev = p->lru_prev;
  else lru_tail = p->lru_prev;
  p->lru_prev = p->lru_next = NULL;
}

static void lru_push_front(plan *p) {
  p->lru_next = lru_head;
  p->lru_prev = NULL;
  if (lru_head) lru_head->lru_prev = p;
  lru_head = p;
  if (!lru_tail) lru_tail = p;
}

static plan *plan_lookup(sloth__hash128 key) {
  for (plan *p = plan_buckets[key.lo % PLAN_BUCKETS]; p; p = p->hash_next)
    if (sloth__hash_eq(p->key, key)) {
      lru_unlink(p);
      lru_push_front(p);
      return p;
    }
  return NULL;
}

static void plan_remove(plan *p) {
  plan **pp = &plan_buckets[p->key.lo % PLAN_BUCKETS];
  while (*pp != p) pp = &(*pp)->hash_next;
  *pp = p->hash_next;
  lru_unlink(p);
  nplans--;
  plan_free(p);
}

static void plan_insert(plan *p) {
  int cap = plan_cache_capacity();
  while (nplans >= cap && lru_tail) plan_remove(lru_tail);
  p->hash_next = plan_buckets[p->key.lo % PLAN_BUCKETS];
  plan_buckets[p->key.lo % PLAN_BUCKETS] = p;
  lru_push_front(p);
  nplans++;
}

/* see error_buffer() */
static sloth__dbuf *error_word;
static bool error_word_used;

void sloth__executor_shutdown(void) {
  sloth__buffer_put(error_word);
  error_word = NULL;
  error_word_used = false;
  while (lru_tail) plan_remove(lru_tail);
  for (int b = 0; b < KERNEL_BUCKETS; b++) {
    while (kernel_buckets[b]) {
      kentry *e = kernel_buckets[b];
      kernel_buckets[b] = e->next;
      sloth__rt.backend->kernel_free(sloth__rt.dev, e->kernel);
      free(e);
    }
  }
}

/* ------------------------------------------------------------------ kernels */

static void dump_file(const char *dir, sloth__hash128 h, const char *src, const char *ext) {
  mkdir(dir, 0777);
  char path[4096], tmp[4200];
  snprintf(path, sizeof path, "%s/%016llx%016llx.%s", dir, (unsigned long long)h.hi, (unsigned long long)h.lo, ext);
  snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) return; /* a debugging aid: never an error */
  fputs(src, f);
  if (fclose(f) == 0) rename(tmp, path);
  else remove(tmp);
}

/* A generated kernel is known by the hash of its source (kernel cache key,
 * dump file name). */
static sloth__hash128 source_hash(const sloth__generated *gen) {
  return sloth__hash_bytes(gen->source.p, gen->source.len, 0x6b65726e);
}

static void dump_kernel(sloth__hash128 h, const char *src) {
  const char *dir = sloth__rt.dump_kernels_dir;
  if (dir) dump_file(dir, h, src, sloth__rt.backend->dialect == DIALECT_CUDA ? "cu" : "cl");
}

/* SLOTH_DUMP_CUDA=dir: also writes the CUDA C of every kernel a new plan
 * builds, whatever the backend, as dir/HASH.cu (tests/test_nvrtc compiles
 * them with NVRTC, so the CUDA generator is checked without a GPU). */
static void dump_cuda(const sloth__graph *g, const sloth__schedule *s, int k) {
  const char *dir = sloth__env("SLOTH_DUMP_CUDA");
  sloth__generated gen;
  if (!dir || sloth__codegen_dialect(g, s, k, DIALECT_CUDA, &gen) != SLOTH_OK) return;
  dump_file(dir, source_hash(&gen), gen.source.p, "cu");
  sloth__generated_free(&gen);
}

/* The compiled kernel for gen, whose source hashes to h (source_hash). */
static int kernel_get(const sloth__generated *gen, sloth__hash128 h, sloth__kernel **out) {
  for (kentry *e = kernel_buckets[h.lo % KERNEL_BUCKETS]; e; e = e->next)
    if (sloth__hash_eq(e->key, h)) {
      sloth__count(CTR_KERNEL_CACHE_HIT, 1);
      *out = e->kernel;
      return SLOTH_OK;
    }
  dump_kernel(h, gen->source.p);
  uint64_t t0 = sloth__now_ns();
  sloth__kernel *k;
  int rc = sloth__rt.backend->compile(sloth__rt.dev, gen->source.p, gen->name, sloth__rt.build_options, &k);
  sloth__count(CTR_COMPILE_NS, (int64_t)(sloth__now_ns() - t0));
  if (rc != SLOTH_OK) {
    /* keep the backend's message (the build log) and add the kernel's own
     * source; the shared prelude before it is only counted */
    char log[16384];
    snprintf(log, sizeof log, "%s", sloth_last_error());
    const char *body = strstr(gen->source.p, gen->name);
    while (body && body > gen->source.p && body[-1] != '\n') body--;
    if (!body) body = gen->source.p;
    return sloth__fail(rc, "%s\n--- kernel source (after %zu bytes of prelude) ---\n%s", log,
                       (size_t)(body - gen->source.p), body);
  }
  sloth__count(CTR_KERNEL_COMPILE, 1);
  kentry *e = sloth__xmalloc(sizeof *e);
  if (!e) {
    sloth__rt.backend->kernel_free(sloth__rt.dev, k);
    return SLOTH_E_NOMEM;
  }
  e->key = h;
  e->kernel = k;
  e->next = kernel_buckets[h.lo % KERNEL_BUCKETS];
  kernel_buckets[h.lo % KERNEL_BUCKETS] = e;
  *out = k;
  return SLOTH_OK;
}

/* ------------------------------------------------------------------ graph walk */

static uint64_t walk_id;

static int push(void **arr, int *n, int *cap, void *item) {
  if (*n == *cap) {
    int c = *cap ? *cap * 2 : 64;
    void **p = realloc(*arr, (size_t)c * sizeof *p);
    if (!p) return sloth__fail(SLOTH_E_NOMEM, "out of host memory (graph)");
    *arr = p;
    *cap = c;
  }
  ((void **)*arr)[(*n)++] = item;
  return SLOTH_OK;
}

static void graph_free(sloth__graph *g) {
  free(g->order);
  free(g->inputs);
  free(g->roots);
  memset(g, 0, sizeof *g);
}

/* What a leaf contributes to the key: its kind, dtype and shape, never its value. */
typedef struct leaf_key {
  int32_t kind, dtype, rank, pad;
  int64_t shape[SLOTH_MAX_RANK];
} leaf_key;

/* Adds a leaf to the graph's inputs; the key gets its kind, dtype and shape. */
static int add_input(sloth__graph *g, sloth__node *in, int *cap_inputs, sloth__hasher *h) {
  in->order = -(g->ninputs + 1);
  leaf_key lk;
  memset(&lk, 0, sizeof lk);
  lk.kind = in->op == OP_SCALAR ? 1 : 0;
  lk.dtype = in->dtype;
  lk.rank = in->rank;
  memcpy(lk.shape, in->shape, sizeof lk.shape);
  sloth__hasher_add(h, "I", 1);
  sloth__hasher_add(h, &lk, sizeof lk);
  return push((void **)&g->inputs, &g->ninputs, cap_inputs, in);
}

static int graph_build(sloth__node *const *roots, int nroots, sloth__graph *g, sloth__hasher *h) {
  memset(g, 0, sizeof *g);
  uint64_t id = ++walk_id;
  int cap_order = 0, cap_inputs = 0, top = 0, cap_stack = 0;
  sloth__node **stack = NULL;
  int *child = NULL; /* next operand to visit, per stack entry */
  int rc = SLOTH_OK;
  sloth__hasher_reset(h);
  for (int r = 0; r < nroots && rc == SLOTH_OK; r++) {
    sloth__node *root = roots[r];
    if (root->mark == id || sloth__node_is_leaf(root)) continue;
    /* iterative post-order DFS */
    root->mark = id;
    if (top == cap_stack) {
      cap_stack = cap_stack ? cap_stack * 2 : 64;
      stack = realloc(stack, (size_t)cap_stack * sizeof *stack);
      child = realloc(child, (size_t)cap_stack * sizeof *child);
      if (!stack || !child) { rc = sloth__fail(SLOTH_E_NOMEM, "out of host memory (graph)"); break; }
    }
    stack[top] = root;
    child[top++] = 0;
    while (top > 0 && rc == SLOTH_OK) {
      sloth__node *x = stack[top - 1];
      if (child[top - 1] < x->nin) {
        sloth__node *in = x->in[child[top - 1]++];
        if (in->mark == id) continue;
        in->mark = id;
        if (sloth__node_is_leaf(in)) {
          rc = add_input(g, in, &cap_inputs, h);
          continue;
        }
        if (top == cap_stack) {
          cap_stack *= 2;
          stack = realloc(stack, (size_t)cap_stack * sizeof *stack);
          child = realloc(child, (size_t)cap_stack * sizeof *child);
          if (!stack || !child) { rc = sloth__fail(SLOTH_E_NOMEM, "out of host memory (graph)"); break; }
        }
        stack[top] = in;
        child[top++] = 0;
        continue;
      }
      /* all operands done: x goes into the order; its key entry names its
       * operands by position (node index or input index) */
      top--;
      x->order = g->n;
      rc = push((void **)&g->order, &g->n, &cap_order, x);
      int32_t refs[4] = {0, 0, 0, 0};
      for (int i = 0; i < x->nin; i++) refs[i] = x->in[i]->order;
      if (x->target && rc == SLOTH_OK) { /* an in-place write: the target is an input too */
        if (x->target->mark != id) {
          x->target->mark = id;
          rc = add_input(g, x->target, &cap_inputs, h);
        }
        refs[3] = x->target->order;
      }
      sloth__hasher_add(h, "N", 1);
      sloth__hasher_add(h, &x->local_hash, sizeof x->local_hash);
      sloth__hasher_add(h, refs, sizeof refs);
    }
  }
  free(stack);
  free(child);
  if (rc == SLOTH_OK) {
    g->roots = malloc((size_t)(nroots > 0 ? nroots : 1) * sizeof *g->roots);
    if (!g->roots) rc = sloth__fail(SLOTH_E_NOMEM, "out of host memory (graph)");
  }
  if (rc == SLOTH_OK) {
    uint64_t rid = ++walk_id; /* dedupe roots */
    for (int r = 0; r < nroots; r++) {
      sloth__node *x = roots[r];
      if (sloth__node_is_leaf(x) || x->mark == rid) continue;
      x->mark = rid;
      g->roots[g->nroots++] = x->order;
    }
    sloth__hasher_add(h, "R", 1);
    sloth__hasher_add(h, g->roots, (size_t)g->nroots * sizeof *g->roots);
    g->key = sloth__hasher_digest(h);
  }
  if (rc != SLOTH_OK) graph_free(g);
  return rc;
}

/* ------------------------------------------------------------------ plan building */

/* In a plan, a node's elements are in a buffer if it is data or materialized. */
static bool planned_buffer(const sloth__node *n, void *ctx) {
  const sloth__schedule *s = ctx;
  if (sloth__graph_is_input(n)) return n->materialized;
  return s->mat[n->order] >= 0;
}

static sloth__arg buffer_binding(const sloth__schedule *s, const sloth__node *n) {
  if (sloth__graph_is_input(n)) return (sloth__arg){ARG_INPUT, -n->order - 1, n->dtype, false};
  return (sloth__arg){ARG_MAT, s->mat[n->order], n->dtype, false};
}

/* Lowers the MATMUL node of kernel k to a GEMM call. The schedule made sure
 * both operands are strided views of buffers. */
static int gemm_step(const sloth__graph *g, const sloth__schedule *s, int k, plan_gemm **out) {
  const sloth__node *x = g->order[s->kernels[k].outputs[0]];
  sloth__gemm_side A, B;
  if (!sloth__gemm_operand(x->in[0], planned_buffer, (void *)s, &A) ||
      !sloth__gemm_operand(x->in[1], planned_buffer, (void *)s, &B))
    return sloth__fail(SLOTH_E_INVALID, "internal error: a matmul operand is not a strided buffer view");
  int r = x->rank;
  int64_t batch = sloth__numel(r - 2, x->shape), M = x->shape[r - 2], N = x->shape[r - 1];
  int64_t K = x->in[0]->shape[r - 1];
  plan_gemm *pg = sloth__xcalloc(1, sizeof *pg);
  if (!pg) return SLOTH_E_NOMEM;
  pg->offsets = sloth__xcalloc((size_t)(batch ? batch : 1) * 3, sizeof *pg->offsets);
  if (!pg->offsets) {
    free(pg);
    return SLOTH_E_NOMEM;
  }
  for (int64_t b = 0; b < batch; b++) {
    pg->offsets[b] = (size_t)sloth__gemm_batch_offset(&A, b);
    pg->offsets[batch + b] = (size_t)sloth__gemm_batch_offset(&B, b);
    pg->offsets[2 * batch + b] = (size_t)(b * M * N);
  }
  pg->desc = (sloth__gemm){.dtype = x->dtype, .trans_a = A.trans, .trans_b = B.trans, .m = (size_t)M, .n = (size_t)N,
                           .k = (size_t)K, .lda = (size_t)A.ld, .ldb = (size_t)B.ld, .ldc = (size_t)(N > 0 ? N : 1),
                           .batch = (size_t)batch, .a_offsets = pg->offsets, .b_offsets = pg->offsets + batch,
                           .c_offsets = pg->offsets + 2 * batch, .alpha = 1.0f, .beta = 0.0f};
  pg->a = buffer_binding(s, A.base);
  pg->b = buffer_binding(s, B.base);
  pg->c = buffer_binding(s, x);
  *out = pg;
  return SLOTH_OK;
}

/* Can a buffer of `have` bytes (pooled) serve `want` bytes: it holds them,
 * at most twice over. */
static bool fits(size_t have, size_t want) {
  have = sloth__buffer_rounded(have), want = sloth__buffer_rounded(want);
  return want > 0 && have >= want && have <= 2 * want;
}

/* When each slot is first written and last read, in kernel order: a
 * slot whose value does not outlive the run hands its buffer to a slot
 * first written after its last reader (plan_run). */
static void touch_slot(plan *p, const sloth__arg *a, int k) {
  if (a->kind != ARG_MAT) return;
  if (p->first_write[a->index] < 0) p->first_write[a->index] = k; /* nothing reads a slot before it is written */
  p->last_read[a->index] = k;
}

static int slot_lifetimes(plan *p) {
  p->first_write = malloc((size_t)(p->nmat ? p->nmat : 1) * sizeof *p->first_write);
  p->last_read = malloc((size_t)(p->nmat ? p->nmat : 1) * sizeof *p->last_read);
  if (!p->first_write || !p->last_read) return sloth__fail(SLOTH_E_NOMEM, "out of host memory (plan)");
  for (int m = 0; m < p->nmat; m++) p->first_write[m] = -1, p->last_read[m] = -1;
  for (int k = 0; k < p->nkernels; k++) {
    const plan_kernel *pk = &p->kernels[k];
    if (pk->gemm) {
      touch_slot(p, &pk->gemm->a, k);
      touch_slot(p, &pk->gemm->b, k);
      touch_slot(p, &pk->gemm->c, k);
    } else
      for (int i = 0; i < pk->nargs; i++) touch_slot(p, &pk->args[i], k);
  }
  /* runs skip the liveness pass when no pair of slots could share */
  for (int m = 0; m < p->nmat && !p->may_share; m++)
    for (int d = 0; d < m && !p->may_share; d++)
      p->may_share = p->last_read[d] < p->first_write[m] && fits(p->mat_bytes[d], p->mat_bytes[m]);
  return SLOTH_OK;
}

static int plan_build(const sloth__graph *g, plan **out) {
  sloth__schedule s;
  int rc = sloth__schedule_graph(g, &s);
  if (rc != SLOTH_OK) return rc;
  plan *p = sloth__xcalloc(1, sizeof *p);
  if (!p) {
    sloth__schedule_free(&s);
    return SLOTH_E_NOMEM;
  }
  p->key = g->key;
  p->nmat = s.nmat;
  p->mat_node = malloc((size_t)(s.nmat ? s.nmat : 1) * sizeof *p->mat_node);
  p->mat_bytes = malloc((size_t)(s.nmat ? s.nmat : 1) * sizeof *p->mat_bytes);
  p->inplace = s.inplace;
  s.inplace = NULL;
  p->kernels = calloc((size_t)(s.nkernels ? s.nkernels : 1), sizeof *p->kernels);
  if (!p->mat_node || !p->mat_bytes || !p->kernels || !p->inplace) {
    rc = sloth__fail(SLOTH_E_NOMEM, "out of host memory (plan)");
    goto fail;
  }
  for (int m = 0; m < s.nmat; m++) {
    const sloth__node *x = g->order[s.mat_node[m]];
    p->mat_node[m] = s.mat_node[m];
    p->mat_bytes[m] = (size_t)sloth__numel(x->rank, x->shape) * sloth_dtype_size(x->dtype);
    p->has_inplace |= p->inplace[m] >= 0;
  }
  for (int k = 0; k < s.nkernels; k++) {
    if (s.kernels[k].kind == SCHED_GEMM) {
      rc = gemm_step(g, &s, k, &p->kernels[p->nkernels].gemm);
      if (rc != SLOTH_OK) goto fail;
      p->nkernels++;
      continue;
    }
    sloth__generated gen;
    rc = sloth__codegen(g, &s, k, &gen);
    if (rc != SLOTH_OK) goto fail;
    dump_cuda(g, &s, k);
    plan_kernel *pk = &p->kernels[p->nkernels++];
    const sloth__hash128 h = source_hash(&gen);
    rc = kernel_get(&gen, h, &pk->kernel);
    if (rc == SLOTH_OK && gen.nparams) {
      size_t bytes = (size_t)gen.nparams * sizeof(int64_t);
      pk->params = sloth__buffer_get(bytes);
      if (!pk->params) rc = SLOTH_E_NOMEM;
      else rc = sloth__rt.backend->write(sloth__rt.dev, pk->params->mem, 0, gen.params, bytes);
    }
    pk->geom = gen.geom;
    snprintf(pk->name, sizeof pk->name, "%s", gen.name);
    snprintf(pk->source_id, sizeof pk->source_id, "%016llx", (unsigned long long)h.hi);
    pk->args = gen.args;
    pk->nargs = gen.nargs;
    gen.args = NULL;
    sloth__generated_free(&gen);
    if (rc != SLOTH_OK) goto fail;
  }
  sloth__schedule_free(&s);
  rc = slot_lifetimes(p);
  if (rc != SLOTH_OK) goto fail_built;
  *out = p;
  return SLOTH_OK;
fail:
  sloth__schedule_free(&s);
fail_built:
  plan_free(p);
  return rc;
}

/* ------------------------------------------------------------------ running */

static sloth__buffer *bound_buffer(const sloth__arg *a, const sloth__graph *g, sloth__dbuf *const *bufs) {
  const sloth__dbuf *d = a->kind == ARG_MAT ? bufs[a->index] : g->inputs[a->index]->buf;
  return d ? d->mem : NULL;
}

static int run_gemm(const plan_gemm *pg, const sloth__graph *g, sloth__dbuf *const *bufs) {
  if (!sloth__rt.backend->gemm)
    return sloth__fail(SLOTH_E_UNSUPPORTED, "matmul: the %s backend has no GEMM", sloth__rt.backend->name);
  sloth__count(CTR_GEMM_CALL, 1);
  return sloth__rt.backend->gemm(sloth__rt.dev, &pg->desc, bound_buffer(&pg->a, g, bufs), bound_buffer(&pg->b, g, bufs),
                                 bound_buffer(&pg->c, g, bufs));
}

/* The device's error word (declared above): kernels that read with
 * data-dependent indices set it when an index is out of range. It is checked
 * at the next blocking read (sloth_to_host, sloth_wait). */

static sloth__buffer *error_buffer(void) {
  if (!error_word) {
    int32_t zero = 0;
    error_word = sloth__buffer_get(sizeof zero);
    if (error_word && sloth__rt.backend->write(sloth__rt.dev, error_word->mem, 0, &zero, sizeof zero) != SLOTH_OK) {
      sloth__buffer_put(error_word);
      error_word = NULL;
    }
  }
  error_word_used = true;
  return error_word ? error_word->mem : NULL;
}

/* Reports (once) an out-of-range index seen by a kernel since the last check. */
static int check_error_word(void) {
  if (!error_word_used || !error_word) return SLOTH_OK;
  int32_t flag = 0;
  int rc = sloth__rt.backend->read(sloth__rt.dev, error_word->mem, 0, &flag, sizeof flag);
  error_word_used = false;
  if (rc != SLOTH_OK || !flag) return rc;
  flag = 0;
  sloth__rt.backend->write(sloth__rt.dev, error_word->mem, 0, &flag, sizeof flag);
  return sloth__fail(SLOTH_E_INVALID, "an index was out of range in gather, index_select, embedding, scatter_add "
                                      "or a loss's labels (the affected elements used the nearest valid index)");
}

/* What outlives this run. steal[m]: in-place targets that can give their
 * buffer to the node written into them, those whose old elements nobody can
 * read after the run (the target input index, or -1). keep[m]: slot m's
 * value is read after the run. Both are needed when something outside this
 * graph holds them (a tensor, a pending node), or when a node of this graph
 * that stays pending (held from outside, not materialized by the plan)
 * reaches them through other such nodes; roots are kept. */
static int plan_lifetimes(const plan *p, const sloth__graph *g, int *steal, bool *keep) {
  int n = g->n, rc = SLOTH_OK;
  int *edges = calloc((size_t)n + (size_t)g->ninputs + 1, sizeof *edges); /* in-graph references per node */
  char *alive = calloc((size_t)(n ? n : 1), 1);
  bool *materialized = calloc((size_t)(n ? n : 1), sizeof *materialized);
  if (!edges || !alive || !materialized) {
    rc = sloth__fail(SLOTH_E_NOMEM, "out of host memory (run)");
    goto out;
  }
  int *input_edges = edges + n;
  for (int m = 0; m < p->nmat; m++) materialized[p->mat_node[m]] = true;
  for (int i = 0; i < n; i++) {
    const sloth__node *x = g->order[i];
    for (int j = 0; j < x->nin; j++) {
      if (sloth__graph_is_input(x->in[j])) input_edges[-x->in[j]->order - 1]++;
      else edges[x->in[j]->order]++;
    }
    if (x->target) input_edges[-x->target->order - 1]++;
  }
  /* consumers come after producers: walking backwards, a node's liveness is
   * known before its operands are looked at. The sync holds one reference. */
  for (int i = n - 1; i >= 0; i--) {
    const sloth__node *x = g->order[i];
    if (materialized[i]) continue;
    if (x->refcount - edges[i] - 1 > 0) alive[i] = 1;
    if (!alive[i]) continue;
    for (int j = 0; j < x->nin; j++) {
      const sloth__node *in = x->in[j];
      if (sloth__graph_is_input(in)) input_edges[-in->order - 1] = -1000000; /* read after the run */
      else alive[in->order] = 1;
    }
  }
  for (int i = n - 1; i >= 0; i--) /* a materialized node held from outside */
    if (materialized[i] && g->order[i]->refcount - edges[i] - 1 > 0) alive[i] = 1;
  for (int r = 0; r < g->nroots; r++) alive[g->roots[r]] = 1;
  for (int m = 0; m < p->nmat; m++) keep[m] = alive[p->mat_node[m]];
  for (int m = 0; m < p->nmat; m++) {
    int t = p->inplace[m];
    steal[m] = -1;
    if (t < 0) continue;
    const sloth__node *target = g->inputs[t];
    if (target->buf && input_edges[t] >= 0 && target->refcount == input_edges[t]) steal[m] = t;
  }
out:
  free(edges), free(alive), free(materialized);
  return rc;
}

/* A scalar kernel argument's bytes (codegen.c's scalar_type): float for f32
 * and f16 (the value rounded to f16), double, long (saturated), else int.
 * A bool scalar is "!= 0" (0.5 is true), as in scalar_to_host. */
static size_t scalar_arg(sloth_dtype dt, double v, unsigned char *out) {
  switch (dt) {
  case SLOTH_F32: case SLOTH_F16: {
    float f = dt == SLOTH_F16 ? sloth__f16_to_f32(sloth__f32_to_f16((float)v)) : (float)v;
    memcpy(out, &f, sizeof f);
    return sizeof f;
  }
  case SLOTH_F64: memcpy(out, &v, sizeof v); return sizeof v;
  case SLOTH_I64: {
    int64_t l = isnan(v) ? 0 : v >= 0x1p63 ? INT64_MAX : v <= -0x1p63 ? INT64_MIN : (int64_t)v;
    memcpy(out, &l, sizeof l);
    return sizeof l;
  }
  default: {
    int32_t iv = dt == SLOTH_BOOL ? (v != 0) : (int32_t)v;
    memcpy(out, &iv, sizeof iv);
    return sizeof iv;
  }
  }
}

/* SLOTH_PROFILE=1: each kernel waited for and timed, one line on stderr. */
static void profile_line(const plan_kernel *pk, uint64_t t0) {
  sloth__rt.backend->finish(sloth__rt.dev);
  double us = (double)(sloth__now_ns() - t0) / 1e3;
  if (pk->gemm)
    fprintf(stderr, "sloth profile: %10.1f us  gemm %zux%zux%zu batch %zu\n", us, pk->gemm->desc.m, pk->gemm->desc.n,
            pk->gemm->desc.k, pk->gemm->desc.batch);
  else fprintf(stderr, "sloth profile: %10.1f us  %s %s (%zu work-items)\n", us, pk->name, pk->source_id, pk->geom.global);
}

/* A slot whose buffer slot m can take, or -1: its value ends with the run,
 * its last reader runs before m's first writer, the buffer holds m's
 * pooled size (at most twice over: the smallest such), and it has not gone
 * to another slot yet. The queue runs kernels in order, so m's writes come
 * after those reads. */
static int shared_buffer_for(const plan *p, int m, const int *steal, const bool *keep, sloth__dbuf *const *bufs,
                             const int *next_holder) {
  if (p->first_write[m] < 0) return -1;
  int best = -1;
  for (int d = 0; d < m; d++)
    if (steal[d] < 0 && !keep[d] && next_holder[d] < 0 && bufs[d] && fits(bufs[d]->bytes, p->mat_bytes[m]) &&
        p->last_read[d] < p->first_write[m] && (best < 0 || bufs[d]->bytes < bufs[best]->bytes))
      best = d;
  return best;
}

static int plan_run(const plan *p, const sloth__graph *g) {
  uint64_t t0 = sloth__now_ns();
  const size_t nm = (size_t)(p->nmat ? p->nmat : 1);
  sloth__dbuf **bufs = calloc(nm, sizeof *bufs);
  int *steal = malloc(nm * sizeof *steal);
  bool *keep = calloc(nm, sizeof *keep);
  int *next_holder = malloc(nm * sizeof *next_holder); /* the slot its buffer goes to next, or -1 */
  bool *received = calloc(nm, sizeof *received);       /* its buffer came from an earlier slot */
  if (!bufs || !steal || !keep || !next_holder || !received) {
    free(bufs), free(steal), free(keep), free(next_holder), free(received);
    return sloth__fail(SLOTH_E_NOMEM, "out of host memory (run)");
  }
  int rc = SLOTH_OK;
  if (p->has_inplace || p->may_share) rc = plan_lifetimes(p, g, steal, keep);
  else
    for (int m = 0; m < p->nmat; m++) steal[m] = -1, keep[m] = true; /* nothing to decide */
  for (int m = 0; m < p->nmat && rc == SLOTH_OK; m++) {
    next_holder[m] = -1;
    if (steal[m] >= 0) {
      bufs[m] = g->inputs[steal[m]]->buf; /* written in place */
      continue;
    }
    int d = shared_buffer_for(p, m, steal, keep, bufs, next_holder);
    if (d >= 0) {
      bufs[m] = bufs[d], next_holder[d] = m, received[m] = true;
      sloth__count(CTR_BUFFER_SHARE, 1);
      continue;
    }
    bufs[m] = sloth__buffer_get(p->mat_bytes[m]);
    if (p->mat_bytes[m] && !bufs[m]) rc = sloth_last_status() ? sloth_last_status() : SLOTH_E_NOMEM;
  }
  sloth__karg args[64];
  const bool profile = sloth__env("SLOTH_PROFILE") != NULL;
  for (int k = 0; k < p->nkernels && rc == SLOTH_OK; k++) {
    const plan_kernel *pk = &p->kernels[k];
    uint64_t k0 = profile ? (sloth__rt.backend->finish(sloth__rt.dev), sloth__now_ns()) : 0;
    if (pk->gemm) {
      rc = run_gemm(pk->gemm, g, bufs);
      if (profile) profile_line(pk, k0);
      continue;
    }
    if (pk->geom.global == 0) continue; /* zero-size output */
    sloth__karg *a = pk->nargs <= 64 ? args : malloc((size_t)pk->nargs * sizeof *a);
    if (!a) {
      rc = sloth__fail(SLOTH_E_NOMEM, "out of host memory (run)");
      break;
    }
    for (int i = 0; i < pk->nargs; i++) {
      const sloth__arg *s = &pk->args[i];
      memset(&a[i], 0, sizeof a[i]);
      a[i].kind = KARG_BUFFER;
      switch (s->kind) {
      case ARG_MAT: a[i].buffer = bufs[s->index] ? bufs[s->index]->mem : NULL; break;
      case ARG_INPUT: a[i].buffer = g->inputs[s->index]->buf ? g->inputs[s->index]->buf->mem : NULL; break;
      case ARG_PARAMS: a[i].buffer = pk->params ? pk->params->mem : NULL; break;
      case ARG_ERROR: a[i].buffer = error_buffer(); break;
      case ARG_SCALAR:
        a[i].kind = KARG_BYTES;
        a[i].size = scalar_arg(s->dtype, g->inputs[s->index]->scalar, a[i].value);
        break;
      }
    }
    rc = sloth__rt.backend->launch(sloth__rt.dev, pk->kernel, &pk->geom, pk->nargs, a);
    if (a != args) free(a);
    sloth__count(CTR_KERNEL_LAUNCH, 1);
    if (profile) profile_line(pk, k0);
  }
  if (rc != SLOTH_OK) {
    for (int m = 0; m < p->nmat; m++)
      if (steal[m] < 0 && !received[m]) sloth__buffer_put(bufs[m]);
    free(bufs), free(steal), free(keep), free(next_holder), free(received);
    return rc;
  }
  /* Attach results. Slots are in execution order, and materializing a node
   * drops its operands, so attach from the last one back. A target whose
   * buffer was written in place gives it up (nothing reads it any more).
   * A slot whose value ends with the run stays pending (nothing can read it:
   * it is freed with the graph) and its buffer, unless passed on to a later
   * slot, goes back to the pool now. */
  for (int m = p->nmat - 1; m >= 0; m--) {
    if (steal[m] >= 0) g->inputs[steal[m]]->buf = NULL;
    if (next_holder[m] >= 0) continue;
    if (steal[m] < 0 && !keep[m]) sloth__buffer_put(bufs[m]);
    else sloth__node_materialize(g->order[p->mat_node[m]], bufs[m]);
  }
  free(bufs), free(steal), free(keep), free(next_holder), free(received);
  sloth__count(CTR_EXECUTE_NS, (int64_t)(sloth__now_ns() - t0));
  return SLOTH_OK;
}

static sloth__hasher *key_hasher;

int sloth__sync_nodes(sloth__node *const *nodes, int n) {
  int rc = sloth__ensure_device();
  if (rc != SLOTH_OK) return rc;
  if (!key_hasher && !(key_hasher = sloth__hasher_new())) return SLOTH_E_NOMEM;
  uint64_t t0 = sloth__now_ns();
  int64_t compile0 = sloth__counter_value(CTR_COMPILE_NS);
  sloth__graph g;
  rc = graph_build(nodes, n, &g, key_hasher);
  if (rc != SLOTH_OK) return rc;
  if (g.n == 0) {
    graph_free(&g);
    return SLOTH_OK;
  }
  /* keep every node of the graph alive while attaching results */
  for (int i = 0; i < g.n; i++) sloth__node_retain(g.order[i]);
  sloth__count(CTR_SYNC, 1);
  plan *p = plan_lookup(g.key);
  if (p) sloth__count(CTR_PLAN_CACHE_HIT, 1);
  else {
    sloth__count(CTR_PLAN_CACHE_MISS, 1);
    rc = plan_build(&g, &p);
    if (rc == SLOTH_OK) plan_insert(p);
  }
  /* lower_ns: walk, hash, lookup, schedule and codegen; compiling counts in compile_ns */
  sloth__count(CTR_LOWER_NS, (int64_t)(sloth__now_ns() - t0) - (sloth__counter_value(CTR_COMPILE_NS) - compile0));
  if (rc == SLOTH_OK) rc = plan_run(p, &g);
  for (int i = 0; i < g.n; i++) sloth__node_release(g.order[i]);
  graph_free(&g);
  return rc;
}

/* ------------------------------------------------------------------ public sync points */

int sloth_mark_step(void) {
  sloth__lock();
  int rc = SLOTH_OK, n = 0, cap = 0;
  sloth__node **nodes = NULL;
  for (sloth_tensor *t = sloth__tensor_first(); t && rc == SLOTH_OK; t = t->next)
    if (!sloth__node_is_leaf(t->node)) rc = push((void **)&nodes, &n, &cap, t->node);
  if (rc == SLOTH_OK && n) rc = sloth__sync_nodes(nodes, n);
  free(nodes);
  sloth__unlock();
  return rc;
}

int sloth_sync(sloth_tensor *const *tensors, int n) {
  sloth__lock();
  int rc = SLOTH_OK;
  sloth__node **nodes = NULL;
  if (n < 0 || (n > 0 && !tensors)) rc = sloth__fail(SLOTH_E_INVALID, "sloth_sync: bad tensor list");
  else if (n > 0 && !(nodes = sloth__xmalloc((size_t)n * sizeof *nodes))) rc = SLOTH_E_NOMEM;
  for (int i = 0; i < n && rc == SLOTH_OK; i++) {
    if (!sloth__tensor_ok(tensors[i])) rc = sloth_last_status();
    else nodes[i] = tensors[i]->node;
  }
  if (rc == SLOTH_OK && n) rc = sloth__sync_nodes(nodes, n);
  free(nodes);
  sloth__unlock();
  return rc;
}

int sloth_wait(void) {
  sloth__lock();
  int rc = sloth__rt.dev ? sloth__rt.backend->finish(sloth__rt.dev) : SLOTH_OK;
  if (rc == SLOTH_OK && sloth__rt.dev) rc = check_error_word();
  sloth__unlock();
  return rc;
}

static void scalar_to_host(const sloth__node *n, void *dst) {
  switch (n->dtype) {
  case SLOTH_F32: *(float *)dst = (float)n->scalar; break;
  case SLOTH_I32: *(int32_t *)dst = (int32_t)n->scalar; break;
  case SLOTH_U8: *(uint8_t *)dst = (uint8_t)n->scalar; break;
  case SLOTH_F16: *(uint16_t *)dst = sloth__f32_to_f16((float)n->scalar); break;
  case SLOTH_F64: *(double *)dst = n->scalar; break;
  case SLOTH_I64: scalar_arg(SLOTH_I64, n->scalar, dst); break;
  default: *(uint8_t *)dst = n->scalar != 0; break;
  }
}

int sloth_to_host(sloth_tensor *t, void *dst, size_t bytes) {
  sloth__lock();
  int rc = SLOTH_OK;
  if (!sloth__tensor_ok(t)) rc = sloth_last_status();
  else {
    sloth__node *n = t->node;
    size_t want = (size_t)sloth__numel(n->rank, n->shape) * sloth_dtype_size(n->dtype);
    if (bytes != want) rc = sloth__fail(SLOTH_E_INVALID, "to_host: buffer of %zu bytes for a tensor of %zu bytes", bytes, want);
    else if (want && !dst) rc = sloth__fail(SLOTH_E_INVALID, "to_host: NULL destination");
    else if (n->op == OP_SCALAR) scalar_to_host(n, dst);
    else {
      rc = sloth__sync_nodes(&t->node, 1);
      if (rc == SLOTH_OK && want) {
        rc = sloth__rt.backend->read(sloth__rt.dev, t->node->buf->mem, 0, dst, want);
        if (rc == SLOTH_OK) sloth__count(CTR_BYTES_FROM_DEVICE, (int64_t)want);
      }
      if (rc == SLOTH_OK) rc = check_error_word();
    }
  }
  sloth__unlock();
  return rc;
}
