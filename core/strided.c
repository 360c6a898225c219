/* strided.c - describes a chain of view ops over a buffer as one strided
 * window (offset + per-dimension strides), when that is possible. Library
 * calls such as GEMM take (buffer, offset, leading dimension), so a
 * transposed or sliced operand needs no copy. */
#include "strided.h"

#include <string.h>

static void contiguous(sloth__strided *s, const sloth__node *n) {
  s->base = n;
  s->offset = 0;
  s->rank = n->rank;
  int64_t st = 1;
  for (int d = n->rank - 1; d >= 0; d--) {
    s->shape[d] = n->shape[d];
    s->stride[d] = st;
    st *= n->shape[d];
  }
}

/* NumPy's no-copy reshape: groups of old dims that multiply to groups of new
 * dims must be contiguous among themselves. */
static bool reshape_strides(sloth__strided *s, int rank, const int64_t *shape) {
  int64_t n = 1;
  for (int d = 0; d < rank; d++) n *= shape[d];
  int64_t new_stride[SLOTH_MAX_RANK];
  if (n == 0) {
    memset(new_stride, 0, sizeof new_stride);
  } else {
    /* old dims without the size-1 ones, which carry no layout */
    int64_t os[SLOTH_MAX_RANK], ost[SLOTH_MAX_RANK];
    int orank = 0;
    for (int d = 0; d < s->rank; d++)
      if (s->shape[d] != 1) os[orank] = s->shape[d], ost[orank++] = s->stride[d];
    int oi = 0, ni = 0;
    while (ni < rank) {
      if (shape[ni] == 1) {
        new_stride[ni++] = 0;
        continue;
      }
      if (oi >= orank) return false;
      int64_t np = shape[ni], op = os[oi];
      int nj = ni + 1, oj = oi + 1;
      while (np != op) {
        if (np < op) {
          if (nj >= rank) return false;
          np *= shape[nj++];
        } else {
          if (oj >= orank) return false;
          op *= os[oj++];
        }
      }
      for (int k = oi; k < oj - 1; k++)
        if (ost[k] != os[k + 1] * ost[k + 1]) return false;
      new_stride[nj - 1] = ost[oj - 1];
      for (int k = nj - 1; k > ni; k--) new_stride[k - 1] = shape[k] == 1 ? new_stride[k] : new_stride[k] * shape[k];
      /* size-1 dims inside the group got a product stride: harmless */
      ni = nj;
      oi = oj;
    }
    if (oi != orank) return false;
  }
  s->rank = rank;
  memcpy(s->shape, shape, (size_t)rank * sizeof *shape);
  memcpy(s->stride, new_stride, (size_t)rank * sizeof *new_stride);
  return true;
}

bool sloth__strided_view(const sloth__node *n, bool (*is_buffer)(const sloth__node *, void *), void *ctx,
                         sloth__strided *out) {
  if (is_buffer(n, ctx)) {
    contiguous(out, n);
    return true;
  }
  if (sloth__ops[n->op].kind != KIND_VIEW) return false;
  if (!sloth__strided_view(n->in[0], is_buffer, ctx, out)) return false;
  sloth__strided in = *out;
  switch (n->op) {
  case OP_PERMUTE:
    for (int d = 0; d < n->rank; d++) {
      out->shape[d] = in.shape[n->attrs.perm[d]];
      out->stride[d] = in.stride[n->attrs.perm[d]];
    }
    return true;
  case OP_EXPAND:
    for (int d = 0; d < n->rank; d++) {
      out->shape[d] = n->shape[d];
      if (in.shape[d] == 1 && n->shape[d] != 1) out->stride[d] = 0;
    }
    return true;
  case OP_SLICE: {
    int a = n->attrs.axis;
    out->offset += n->attrs.start * in.stride[a];
    out->stride[a] = in.stride[a] * n->attrs.step;
    out->shape[a] = n->shape[a];
    return out->offset >= 0;
  }
  case OP_RESHAPE: return reshape_strides(out, n->rank, n->shape);
  case OP_AS_STRIDED: { /* strides count in the operand's row-major positions */
    int64_t st = 1;
    for (int d = in.rank - 1; d >= 0; d--) {
      if (in.shape[d] != 1 && in.stride[d] != st) return false; /* operand not contiguous */
      st *= in.shape[d];
    }
    out->rank = n->rank;
    out->offset = in.offset + n->attrs.start;
    for (int d = 0; d < n->rank; d++) out->shape[d] = n->shape[d], out->stride[d] = n->attrs.v[d];
    return true;
  }
  default: return false;
  }
}

bool sloth__window_map(int rank, const int64_t *shape, int64_t start, const int64_t *strides, int base_rank,
                       const int64_t *base_shape, int *map, int64_t *mult, int64_t *origin) {
  int64_t cs[SLOTH_MAX_RANK], st = 1, reach[SLOTH_MAX_RANK];
  for (int e = base_rank - 1; e >= 0; e--) {
    cs[e] = st;
    st *= base_shape[e];
  }
  if (sloth__numel(rank, shape) == 0 || st == 0) return false;
  int64_t rest = start;
  for (int e = 0; e < base_rank; e++) {
    origin[e] = rest / cs[e];
    rest %= cs[e];
    reach[e] = origin[e];
  }
  for (int d = 0; d < rank; d++) {
    map[d] = -1;
    mult[d] = 0;
    if (shape[d] == 1) continue;
    for (int e = 0; e < base_rank && map[d] < 0; e++) /* outermost dim whose stride divides */
      if (base_shape[e] > 1 && strides[d] % cs[e] == 0) map[d] = e;
    if (map[d] < 0) return false;
    mult[d] = strides[d] / cs[map[d]];
    reach[map[d]] += mult[d] * (shape[d] - 1);
  }
  for (int e = 0; e < base_rank; e++)
    if (reach[e] >= base_shape[e]) return false;
  return true;
}

bool sloth__window_roles(int rank, const int64_t *shape, int64_t start, const int64_t *strides, int base_rank,
                         const int64_t *base_shape, int *map, int64_t *mult, int64_t *origin, sloth__window_role *role,
                         int *partner) {
  if (!sloth__window_map(rank, shape, start, strides, base_rank, base_shape, map, mult, origin)) return false;
  for (int d = 0; d < rank; d++) {
    role[d] = map[d] < 0 ? WINDOW_UNIT : WINDOW_LOOPED;
    partner[d] = -1;
  }
  for (int e = 0; e < base_rank; e++) {
    int solved = -1, others = 0, other = -1;
    for (int d = 0; d < rank; d++)
      if (map[d] == e && mult[d] > 0 && (solved < 0 || shape[d] > shape[solved])) solved = d;
    if (solved < 0) continue;
    role[solved] = WINDOW_SOLVED;
    for (int d = 0; d < rank; d++)
      if (map[d] == e && d != solved) others++, other = d;
    if (others == 1 && mult[other] == 1 && shape[other] <= mult[solved]) {
      role[other] = WINDOW_SPLIT;
      partner[solved] = other;
    }
  }
  return true;
}
