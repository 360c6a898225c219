/* gemm.h - lowering of MATMUL nodes to GEMM calls (gemm.c). */
#ifndef SLOTH_GEMM_H
#define SLOTH_GEMM_H

#include "strided.h"

/* One operand of a GEMM as the BLAS sees it. */
typedef struct sloth__gemm_side {
  const sloth__node *base; /* node whose buffer is read */
  bool trans;              /* the matrix is stored transposed (column-major) */
  int64_t ld;              /* leading dimension, in elements */
  int64_t offset;          /* of batch 0, in elements */
  int nbatch;
  int64_t batch_shape[SLOTH_MAX_RANK], batch_stride[SLOTH_MAX_RANK];
} sloth__gemm_side;

/* Describes operand n ([batch..., rows, cols]) for a GEMM, reading the buffer
 * of the first node below its views for which is_buffer() holds. False when
 * its layout needs a copy first. */
bool sloth__gemm_operand(const sloth__node *n, bool (*is_buffer)(const sloth__node *, void *), void *ctx,
                         sloth__gemm_side *out);
/* Offset in elements of batch b (row-major over the batch dims). */
int64_t sloth__gemm_batch_offset(const sloth__gemm_side *side, int64_t b);

#endif
