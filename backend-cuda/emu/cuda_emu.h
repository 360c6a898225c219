/* cuda_emu.h - just enough of CUDA C++ to run Sloth's generated kernels on
 * the CPU (tests only). fake_nvrtc.c compiles a kernel's CUDA C with the host
 * C++ compiler as:  #include "cuda_emu.h"  <the kernel>  SLOTH_EMU_LAUNCHER(name, barrier)
 *
 * A launch runs the blocks one after another. Without __syncthreads the
 * threads of a block run one after another; with it, each thread is a
 * ucontext fiber and a barrier switches to the next thread, so every thread
 * of the block reaches the barrier before any passes it, as on a GPU.
 * Dynamic shared memory (`extern __shared__ uchar scratch[]`) is filled with
 * garbage before each block.
 */
#include <math.h> /* C++'s: float overloads of exp, log, pow, fmax ... in the global namespace */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <type_traits>
#include <utility>

struct sloth_emu_dim3 {
  unsigned x, y, z;
};
static sloth_emu_dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __restrict__ __restrict
#define __shared__

/* the kernel's `extern __shared__ uchar scratch[]` refers to this */
#define SLOTH_EMU_SMEM (128 * 1024)
unsigned char scratch[SLOTH_EMU_SMEM];

static inline float __int_as_float(int i) {
  float f;
  memcpy(&f, &i, sizeof f);
  return f;
}
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }

/* ------------------------------------------------------------------ fibers */

enum { SLOTH_EMU_STACK = 128 * 1024 };
static ucontext_t sloth_emu_sched, sloth_emu_ctx[1024];
static bool sloth_emu_done[1024];
static unsigned sloth_emu_cur;
static char *sloth_emu_stacks;
static void (*sloth_emu_thunk)(void **);
static void **sloth_emu_params;

static void __syncthreads() { swapcontext(&sloth_emu_ctx[sloth_emu_cur], &sloth_emu_sched); }

static void sloth_emu_entry() {
  sloth_emu_thunk(sloth_emu_params);
  sloth_emu_done[sloth_emu_cur] = true; /* then returns to uc_link: the scheduler */
}

/* ------------------------------------------------------------------ launching */

/* Calls f with its arguments read from kernelParams: p[i] points to argument i. */
template <class... A, size_t... I>
static void sloth_emu_call(void (*f)(A...), void **p, std::index_sequence<I...>) {
  f(*static_cast<std::remove_cv_t<A> *>(p[I])...);
}

static void *sloth_emu_fn;
template <class... A> static void sloth_emu_thunk_for(void **p) {
  sloth_emu_call(reinterpret_cast<void (*)(A...)>(sloth_emu_fn), p, std::index_sequence_for<A...>{});
}

/* Pointer arguments must be allocations of the fake driver (or NULL). */
template <class... A, size_t... I>
static bool sloth_emu_check(void **p, int (*valid)(const void *), std::index_sequence<I...>) {
  bool good = true;
  ((good = good && (!std::is_pointer<A>::value || valid(*static_cast<const void *const *>(p[I])))), ...);
  return good;
}

/* Returns 0, 1 for a bad pointer argument, 2 for a bad launch. */
template <class... A>
static int sloth_emu_launch(void (*f)(A...), unsigned grid, unsigned block, size_t smem, void **params,
                            int (*valid)(const void *), bool barrier) {
  if (!sloth_emu_check<A...>(params, valid, std::index_sequence_for<A...>{})) return 1;
  if (block > 1024 || smem > SLOTH_EMU_SMEM) return 2;
  gridDim = {grid, 1, 1};
  blockDim = {block, 1, 1};
  sloth_emu_fn = reinterpret_cast<void *>(f);
  sloth_emu_thunk = sloth_emu_thunk_for<A...>;
  sloth_emu_params = params;
  if (barrier && !sloth_emu_stacks && !(sloth_emu_stacks = (char *)malloc((size_t)1024 * SLOTH_EMU_STACK))) return 2;
  for (unsigned b = 0; b < grid; b++) {
    blockIdx = {b, 0, 0};
    memset(scratch, 0xCD, smem);
    if (!barrier) {
      for (unsigned t = 0; t < block; t++) {
        threadIdx = {t, 0, 0};
        sloth_emu_thunk(params);
      }
      continue;
    }
    for (unsigned t = 0; t < block; t++) {
      getcontext(&sloth_emu_ctx[t]);
      sloth_emu_ctx[t].uc_stack.ss_sp = sloth_emu_stacks + (size_t)t * SLOTH_EMU_STACK;
      sloth_emu_ctx[t].uc_stack.ss_size = SLOTH_EMU_STACK;
      sloth_emu_ctx[t].uc_link = &sloth_emu_sched;
      makecontext(&sloth_emu_ctx[t], sloth_emu_entry, 0);
      sloth_emu_done[t] = false;
    }
    for (;;) { /* one round = every thread runs to its next barrier or its end */
      unsigned waiting = 0;
      for (unsigned t = 0; t < block; t++) {
        if (sloth_emu_done[t]) continue;
        sloth_emu_cur = t;
        threadIdx = {t, 0, 0};
        swapcontext(&sloth_emu_sched, &sloth_emu_ctx[t]);
        waiting += !sloth_emu_done[t];
      }
      if (waiting == 0) break;
      if (waiting != block) return 2; /* some threads ended while others wait at a barrier */
    }
  }
  return 0;
}

#define SLOTH_EMU_LAUNCHER(name, barrier)                                                                      \
  extern "C" __attribute__((visibility("default"))) int sloth_emu_launch_##name(                               \
      unsigned grid, unsigned block, size_t smem, void **params, int (*valid)(const void *)) {                 \
    return sloth_emu_launch(name, grid, block, smem, params, valid, barrier);                                  \
  }
