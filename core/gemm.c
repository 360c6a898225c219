/* gemm.c - lowers a MATMUL node to one GEMM library call (CLBlast, cuBLAS,
 * or the host BLAS): each operand becomes (buffer, per-batch offsets,
 * leading dimension, transpose flag), read straight from strided views. */
#include "gemm.h"

#include <stdlib.h>
#include <string.h>

bool sloth__gemm_operand(const sloth__node *n, bool (*is_buffer)(const sloth__node *, void *), void *ctx,
                         sloth__gemm_side *out) {
  sloth__strided s;
  if (!sloth__strided_view(n, is_buffer, ctx, &s) || s.rank < 2) return false;
  memset(out, 0, sizeof *out);
  out->base = s.base;
  int r = s.rank;
  int64_t R = s.shape[r - 2], C = s.shape[r - 1], sr = s.stride[r - 2], sc = s.stride[r - 1];
  if (R == 0 || C == 0) { /* empty: nothing is read */
    out->trans = false;
    out->ld = C > 1 ? C : 1;
  } else if ((C <= 1 || sc == 1) && (R <= 1 || sr >= C)) {
    out->trans = false;
    out->ld = R <= 1 ? (C > 1 ? C : 1) : sr;
  } else if ((R <= 1 || sr == 1) && (C <= 1 || sc >= R)) {
    out->trans = true;
    out->ld = C <= 1 ? (R > 1 ? R : 1) : sc;
  } else {
    return false;
  }
  if (out->ld < 1) return false;
  out->offset = s.offset;
  out->nbatch = r - 2;
  for (int d = 0; d < r - 2; d++) {
    out->batch_shape[d] = s.shape[d];
    out->batch_stride[d] = s.stride[d];
    if (s.stride[d] < 0) return false;
  }
  return s.offset >= 0;
}

int64_t sloth__gemm_batch_offset(const sloth__gemm_side *side, int64_t b) {
  int64_t off = side->offset;
  for (int d = side->nbatch - 1; d >= 0; d--) {
    int64_t i = side->batch_shape[d] ? b % side->batch_shape[d] : 0;
    b = side->batch_shape[d] ? b / side->batch_shape[d] : 0;
    off += i * side->batch_stride[d];
  }
  return off;
}
