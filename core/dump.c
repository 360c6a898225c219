/* dump.c - writes a tensor's pending graph as text IR or Graphviz DOT. */
#include "internal.h"

#include <stdlib.h>

static void shape_text(FILE *out, const sloth__node *n) {
  fprintf(out, "%s[", sloth_dtype_name(n->dtype));
  for (int i = 0; i < n->rank; i++) fprintf(out, i ? ",%lld" : "%lld", (long long)n->shape[i]);
  fprintf(out, "]");
}

static void node_label(FILE *out, const sloth__node *n) {
  if (n->materialized) fprintf(out, "data");
  else if (n->op == OP_SCALAR) fprintf(out, "scalar(%g)", n->scalar);
  else fprintf(out, "%s", sloth__ops[n->op].name);
}

/* post-order collection of the reachable nodes, each once */
static int collect(sloth__node *root, sloth__node ***out) {
  int n = 0, cap = 16, top = 0;
  sloth__node **list = malloc((size_t)cap * sizeof *list), **stack = malloc(4096 * sizeof *stack);
  int *child = malloc(4096 * sizeof *child);
  if (!list || !stack || !child) goto oom;
  static uint64_t dump_mark = (uint64_t)1 << 62;
  uint64_t id = ++dump_mark;
  root->mark = id;
  stack[top] = root;
  child[top++] = 0;
  while (top > 0) {
    sloth__node *x = stack[top - 1];
    if (child[top - 1] < x->nin) {
      sloth__node *in = x->in[child[top - 1]++];
      if (in->mark == id || top >= 4096) continue;
      in->mark = id;
      stack[top] = in;
      child[top++] = 0;
      continue;
    }
    top--;
    if (n == cap) {
      sloth__node **p = realloc(list, (size_t)(cap *= 2) * sizeof *p);
      if (!p) goto oom;
      list = p;
    }
    x->order = n;
    list[n++] = x;
  }
  free(stack);
  free(child);
  *out = list;
  return n;
oom:
  free(list), free(stack), free(child);
  return sloth__fail(SLOTH_E_NOMEM, "out of host memory (dump)");
}

int sloth_dump_graph(const sloth_tensor *t, FILE *out, sloth_dump_format fmt) {
  sloth__lock();
  int rc = SLOTH_OK;
  sloth__node **list = NULL;
  int n = 0;
  if (!sloth__tensor_ok(t)) rc = sloth_last_status();
  else if (!out) rc = sloth__fail(SLOTH_E_INVALID, "dump_graph: NULL file");
  else if (fmt != SLOTH_DUMP_TEXT && fmt != SLOTH_DUMP_DOT) rc = sloth__fail(SLOTH_E_INVALID, "dump_graph: unknown format %d", (int)fmt);
  else if ((n = collect(t->node, &list)) < 0) rc = n;
  if (rc == SLOTH_OK) {
    if (fmt == SLOTH_DUMP_DOT) fprintf(out, "digraph sloth {\n  node [shape=box, fontname=monospace];\n");
    for (int i = 0; i < n; i++) {
      sloth__node *x = list[i];
      if (fmt == SLOTH_DUMP_TEXT) {
        fprintf(out, "%%%d = ", i);
        node_label(out, x);
        fprintf(out, "(");
        for (int j = 0; j < x->nin; j++) fprintf(out, j ? ", %%%d" : "%%%d", x->in[j]->order);
        fprintf(out, ") : ");
        shape_text(out, x);
        fprintf(out, "  # hash %016llx%016llx\n", (unsigned long long)x->hash.hi, (unsigned long long)x->hash.lo);
      } else {
        fprintf(out, "  n%d [label=\"%%%d ", i, i);
        node_label(out, x);
        fprintf(out, "\\n");
        shape_text(out, x);
        fprintf(out, "\"%s];\n", x->materialized ? ", style=filled, fillcolor=lightgrey" : "");
        for (int j = 0; j < x->nin; j++) fprintf(out, "  n%d -> n%d;\n", x->in[j]->order, i);
      }
    }
    if (fmt == SLOTH_DUMP_DOT) fprintf(out, "}\n");
  }
  free(list);
  sloth__unlock();
  return rc;
}
