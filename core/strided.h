/* strided.h - a view chain as one strided window on a buffer (strided.c). */
#ifndef SLOTH_STRIDED_H
#define SLOTH_STRIDED_H

#include "internal.h"

typedef struct sloth__strided {
  const sloth__node *base; /* the node whose buffer holds the elements */
  int64_t offset;          /* in elements */
  int rank;
  int64_t shape[SLOTH_MAX_RANK];
  int64_t stride[SLOTH_MAX_RANK]; /* in elements; may be 0 (broadcast) or negative */
} sloth__strided;

/* Describes n as a strided window on the buffer of the first node below it
 * for which is_buffer() is true, through view ops only. False when some
 * view on the way cannot be expressed with strides, or no buffer is found. */
bool sloth__strided_view(const sloth__node *n, bool (*is_buffer)(const sloth__node *, void *), void *ctx,
                         sloth__strided *out);

/* An as_strided view (rank, shape, offset `start`, strides counted in the
 * row-major positions of an operand of (base_rank, base_shape)) read as
 * coordinates of the operand: true when every stepping view dim d moves
 * along one operand dim map[d] by mult[d] (its stride is a multiple of that
 * dim's row-major stride) and no window reaches past the dim's size, so no
 * carry crosses dims. Conv and pooling windows are such views. origin is the
 * offset as coordinates; size-1 view dims get map -1. */
bool sloth__window_map(int rank, const int64_t *shape, int64_t start, const int64_t *strides, int base_rank,
                       const int64_t *base_shape, int *map, int64_t *mult, int64_t *origin);

/* How the transpose of a window view (sloth__window_adjoint in ops.c)
 * recovers each view dim from operand coordinates. Along an operand dim,
 * the longest view dim with a nonzero step is SOLVED (divided for); one
 * other dim of step 1 that is shorter than the solved dim's step is SPLIT
 * (the remainder: non-overlapping windows, as in 2x2 pooling of stride 2);
 * any others are LOOPED (summed over: overlapping windows). */
typedef enum sloth__window_role { WINDOW_UNIT, WINDOW_SOLVED, WINDOW_SPLIT, WINDOW_LOOPED } sloth__window_role;

/* sloth__window_map plus the role of each view dim; partner[d] is the split
 * dim of a solved dim d, or -1. */
bool sloth__window_roles(int rank, const int64_t *shape, int64_t start, const int64_t *strides, int base_rank,
                         const int64_t *base_shape, int *map, int64_t *mult, int64_t *origin, sloth__window_role *role,
                         int *partner);

#endif
