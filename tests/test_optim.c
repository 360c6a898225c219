/* test_optim.c - in-place updates (sloth_assign), optimizers and schedules
 * against naive host formulas; a training step replays its plan, writes
 * in place and runs each parameter's update as one kernel. */
#include "sloth.h"
#include "tap.h"

#include <math.h>
#include <string.h>

static sloth_tensor *vec(const float *v, int64_t n) { return sloth_from_host(v, SLOTH_F32, 1, &n); }

static int read_close(sloth_tensor *t, const float *want, int n, float tol) {
  float got[256];
  if (sloth_to_host(t, got, (size_t)n * sizeof(float)) != SLOTH_OK) return 0;
  for (int i = 0; i < n; i++)
    if (!(fabsf(got[i] - want[i]) <= tol * (1 + fabsf(want[i])))) {
      diag("element %d: got %g, want %g", i, got[i], want[i]);
      return 0;
    }
  return 1;
}

static void test_assign(void) {
  float a[4] = {1, 2, 3, 4};
  sloth_tensor *p = vec(a, 4);
  sloth_sync(&p, 1);
  /* p = p * 2, twice: the second step replays and allocates nothing */
  for (int step = 0; step < 3; step++) {
    int64_t alloc0 = sloth_counter("buffer_alloc"), miss0 = sloth_counter("plan_cache_miss");
    sloth_tensor *v = sloth_mul_scalar(p, 2);
    ok(sloth_assign(p, v) == SLOTH_OK, "assign p = 2 p (step %d)", step);
    sloth_release(v);
    ok(sloth_mark_step() == SLOTH_OK, "step %d runs", step);
    if (step > 0) {
      ok(sloth_counter("buffer_alloc") == alloc0, "step %d writes in place (no buffer allocated)", step);
      ok(sloth_counter("plan_cache_miss") == miss0, "step %d replays the plan", step);
    }
  }
  ok(read_close(p, (float[]){8, 16, 24, 32}, 4, 0), "three doublings");

  /* tensors that read p before the assign keep the old elements */
  sloth_tensor *old_sum = sloth_sum(p, NULL, 0, 0), *same = sloth_reshape(p, 1, (int64_t[]){4});
  sloth_tensor *v = sloth_add_scalar(p, 1);
  sloth_assign(p, v);
  sloth_release(v);
  ok(sloth_mark_step() == SLOTH_OK, "step with readers of the old value");
  ok(read_close(old_sum, (float[]){80}, 1, 0), "a reduction recorded before the assign sees the old elements");
  ok(read_close(same, (float[]){8, 16, 24, 32}, 4, 0), "a tensor holding the old elements keeps them");
  ok(read_close(p, (float[]){9, 17, 25, 33}, 4, 0), "the assigned tensor has the new elements");
  sloth_release(old_sum), sloth_release(same);

  /* two assignments before one sync compose */
  v = sloth_add_scalar(p, 1);
  sloth_assign(p, v);
  sloth_release(v);
  v = sloth_mul_scalar(p, 2);
  sloth_assign(p, v);
  sloth_release(v);
  ok(read_close(p, (float[]){20, 36, 52, 68}, 4, 0), "assign twice before a sync: (p + 1) * 2");

  /* broadcast and dtype conversion */
  sloth_tensor *zero = sloth_scalar(0, SLOTH_F32);
  ok(sloth_assign(p, zero) == SLOTH_OK && read_close(p, (float[]){0, 0, 0, 0}, 4, 0), "assign a broadcast scalar");
  int32_t iv[3] = {1, 2, 3};
  sloth_tensor *ip = sloth_from_host(iv, SLOTH_I32, 1, (int64_t[]){3});
  sloth_tensor *fv = vec((float[]){1.7f, -2.2f, 3.9f}, 3);
  ok(sloth_assign(ip, fv) == SLOTH_OK && sloth_dtype_of(ip) == SLOTH_I32, "assign casts to the destination dtype");
  int32_t got[3];
  sloth_to_host(ip, got, sizeof got);
  ok(got[0] == 1 && got[1] == -2 && got[2] == 3, "cast values: %d %d %d", got[0], got[1], got[2]);

  /* bad input */
  sloth_tensor *three = vec((float[]){1, 2, 3}, 3);
  ok(sloth_assign(p, three) == SLOTH_E_SHAPE && strstr(sloth_last_error(), "shape"), "shape mismatch: %s",
     sloth_last_error());
  sloth_clear_error();
  ok(sloth_assign(NULL, three) == SLOTH_E_INVALID, "NULL destination");
  sloth_clear_error();
  ok(sloth_assign(p, NULL) == SLOTH_E_INVALID, "NULL value");
  ok(read_close(p, (float[]){0, 0, 0, 0}, 4, 0), "failed assigns leave the tensor as it was");
  sloth_release(zero), sloth_release(ip), sloth_release(fv), sloth_release(three), sloth_release(p);
}

/* The writer must not overwrite elements its own kernel still reads at
 * other indices, nor run before another kernel that reads the old ones. */
static void test_assign_hazards(void) {
  enum { N = 64 };
  static float a[N * N], want[N * N];
  for (int i = 0; i < N * N; i++) a[i] = (float)i;
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) want[i * N + j] = a[j * N + i] + 1;
  sloth_tensor *p = sloth_from_host(a, SLOTH_F32, 2, (int64_t[]){N, N});
  sloth_sync(&p, 1);
  for (int rep = 0; rep < 2; rep++) {
    sloth_tensor *t = sloth_add_scalar(sloth_transpose(p, 0, 1), 1);
    sloth_assign(p, t);
    sloth_release(t);
    sloth_mark_step();
    static float got[N * N];
    sloth_to_host(p, got, sizeof got);
    int bad = 0;
    for (int i = 0; i < N * N; i++) bad += got[i] != want[i];
    ok(bad == 0, "p = transpose(p) + 1 is not corrupted by writing in place (%d wrong, pass %d)", bad, rep);
    for (int i = 0; i < N; i++)
      for (int j = 0; j < N; j++) want[i * N + j] = got[j * N + i] + 1;
  }
  sloth_release(p);

  /* a matmul recorded before the update reads the old w, one recorded
   * after it the new w, whatever order the step runs its kernels in */
  float w0[4] = {1, 2, 3, 4}, x0[4] = {1, 1, 0, 1};
  sloth_tensor *w = sloth_from_host(w0, SLOTH_F32, 2, (int64_t[]){2, 2});
  sloth_tensor *x = sloth_from_host(x0, SLOTH_F32, 2, (int64_t[]){2, 2});
  sloth_sync(&w, 1);
  sloth_tensor *before = sloth_matmul(x, w);
  sloth_tensor *upd = sloth_mul_scalar(w, 10);
  sloth_assign(w, upd);
  sloth_release(upd);
  sloth_tensor *after = sloth_matmul(x, w);
  ok(sloth_mark_step() == SLOTH_OK, "one step with readers before and after an update");
  ok(read_close(before, (float[]){4, 6, 3, 4}, 4, 0), "matmul recorded before the update: old w");
  ok(read_close(after, (float[]){40, 60, 30, 40}, 4, 0), "matmul recorded after the update: new w");
  ok(read_close(w, (float[]){10, 20, 30, 40}, 4, 0), "w updated");
  sloth_release(before), sloth_release(after);
  sloth_release(w), sloth_release(x);

  /* a linear layer's step: GEMMs read w transposed (forward) and through
   * a second transpose (backward) by strides, with no copy of w^T, and
   * still before the in-place update of w */
  w = sloth_from_host(w0, SLOTH_F32, 2, (int64_t[]){2, 2});
  x = sloth_from_host(x0, SLOTH_F32, 2, (int64_t[]){2, 2});
  sloth_sync((sloth_tensor *[]){w, x}, 2);
  sloth_scope_begin(); /* the views are not held: only GEMMs read them */
  sloth_tensor *wt = sloth_transpose(w, 0, 1);
  sloth_tensor *fwd = sloth_keep(sloth_matmul(x, wt));                        /* x w^T */
  sloth_tensor *bwd = sloth_keep(sloth_matmul(x, sloth_transpose(wt, 0, 1))); /* x (w^T)^T = x w */
  sloth_assign(w, sloth_sub(w, sloth_mul_scalar(sloth_matmul(sloth_transpose(fwd, 0, 1), x), 0.5))); /* w - 0.5 fwd^T x */
  sloth_scope_end();
  int64_t launches = sloth_counter("kernel_launch"), gemms = sloth_counter("gemm_call");
  ok(sloth_mark_step() == SLOTH_OK, "one step: GEMMs over w^T and (w^T)^T, then w updated in place");
  /* x w^T = [[1,1],[0,1]] [[1,3],[2,4]] = [[3,7],[2,4]]; x w = [[4,6],[3,4]];
   * fwd^T x = [[3,2],[7,4]] [[1,1],[0,1]] = [[3,5],[7,11]] */
  ok(read_close(fwd, (float[]){3, 7, 2, 4}, 4, 0), "x w^T reads the old w");
  ok(read_close(bwd, (float[]){4, 6, 3, 4}, 4, 0), "x (w^T)^T reads the old w");
  ok(read_close(w, (float[]){-0.5f, -0.5f, -0.5f, -1.5f}, 4, 0), "w = w - 0.5 (x w^T)^T x");
  ok(sloth_counter("gemm_call") - gemms == 3 && sloth_counter("kernel_launch") - launches == 1,
     "3 GEMMs and one update kernel: w^T is not copied (%lld launches)",
     (long long)(sloth_counter("kernel_launch") - launches));
  sloth_release(fwd), sloth_release(bwd);
  sloth_release(w), sloth_release(x);
}

/* Parameters p, loss = 0.5 sum((p - c)^2): the gradient is p - c. */
typedef struct run {
  const char *name;
  int kind; /* 0 sgd, 1 adam, 2 adamw */
  double lr, momentum, wd, b1, b2, eps;
  int nesterov;
} run;

static void reference_steps(const run *r, float *p, const float *c, int n, const double *lrs, int steps) {
  float m[8] = {0}, v[8] = {0};
  for (int t = 1; t <= steps; t++)
    for (int i = 0; i < n; i++) {
      double g = p[i] - c[i], lr = lrs[t - 1];
      if (r->kind == 0) {
        g += r->wd * p[i];
        double step = g;
        if (r->momentum > 0) {
          m[i] = (float)(r->momentum * m[i] + g);
          step = r->nesterov ? g + r->momentum * m[i] : m[i];
        }
        p[i] = (float)(p[i] - lr * step);
      } else {
        double pp = p[i];
        if (r->kind == 1) g += r->wd * pp;
        else pp *= 1 - lr * r->wd;
        m[i] = (float)(r->b1 * m[i] + (1 - r->b1) * g);
        v[i] = (float)(r->b2 * v[i] + (1 - r->b2) * g * g);
        double mh = m[i] / (1 - pow(r->b1, t)), vh = v[i] / (1 - pow(r->b2, t));
        p[i] = (float)(pp - lr * mh / (sqrt(vh) + r->eps));
      }
    }
}

static void test_optimizers(void) {
  const run runs[] = {
      {"sgd", 0, 0.1, 0, 0, 0, 0, 0, 0},
      {"sgd momentum + weight decay", 0, 0.1, 0.9, 0.01, 0, 0, 0, 0},
      {"sgd nesterov", 0, 0.05, 0.9, 0, 0, 0, 0, 1},
      {"adam", 1, 0.01, 0, 0, 0.9, 0.999, 1e-8, 0},
      {"adam + L2", 1, 0.01, 0, 0.1, 0.9, 0.999, 1e-8, 0},
      {"adamw", 2, 0.01, 0, 0.1, 0.9, 0.99, 1e-6, 0},
  };
  const float c[6] = {1, -2, 0.5f, 3, -1, 0};
  enum { STEPS = 4 };
  for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
    const run *r = &runs[k];
    double lrs[STEPS];
    for (int t = 0; t < STEPS; t++) lrs[t] = sloth_lr_step(r->lr, t, 2, 0.5); /* StepLR: halves every 2 steps */
    float p0[6] = {0.3f, 0.1f, -0.4f, 2, 1, -3}, want[6];
    memcpy(want, p0, sizeof want);
    reference_steps(r, want, c, 6, lrs, STEPS);
    sloth_tensor *p = vec(p0, 6), *ct = vec(c, 6);
    sloth_sync(&p, 1);
    sloth_optimizer *o = r->kind == 0 ? sloth_sgd_new(&p, 1, r->lr, r->momentum, r->wd, r->nesterov)
                         : r->kind == 1 ? sloth_adam_new(&p, 1, r->lr, r->b1, r->b2, r->eps, r->wd)
                                        : sloth_adamw_new(&p, 1, r->lr, r->b1, r->b2, r->eps, r->wd);
    ok(o != NULL, "%s: created", r->name);
    int64_t miss = 0, alloc = 0, launches = 0;
    for (int t = 0; t < STEPS; t++) {
      sloth_optimizer_set_lr(o, lrs[t]); /* a kernel argument: compiles nothing */
      int64_t miss0 = sloth_counter("plan_cache_miss"), alloc0 = sloth_counter("buffer_alloc");
      int64_t launch0 = sloth_counter("kernel_launch");
      sloth_scope_begin();
      sloth_tensor *loss = sloth_mul_scalar(sloth_sum(sloth_square(sloth_sub(p, ct)), NULL, 0, 0), 0.5);
      int rc = sloth_optimizer_minimize(o, loss);
      sloth_scope_end(); /* the loss is not kept: the step computes only the update */
      if (rc != SLOTH_OK || sloth_mark_step() != SLOTH_OK) diag("%s: %s", r->name, sloth_last_error());
      if (t > 0) {
        miss += sloth_counter("plan_cache_miss") - miss0;
        alloc += sloth_counter("buffer_alloc") - alloc0;
        launches = sloth_counter("kernel_launch") - launch0;
      }
    }
    ok(read_close(p, want, 6, 1e-5f), "%s: %d steps with StepLR match the reference formulas", r->name, STEPS);
    ok(miss == 0, "%s: steps 2-%d compile nothing (the lr changed at step 3)", r->name, STEPS);
    ok(alloc == 0, "%s: steps 2-%d allocate nothing (parameter and state written in place)", r->name, STEPS);
    ok(launches == 1, "%s: gradient, state and parameter update run as one kernel (%lld launches)", r->name,
       (long long)launches);
    sloth_optimizer_free(o);
    sloth_release(p), sloth_release(ct);
  }
  ok(fabs(sloth_lr_step(1, 5, 2, 0.1) - 0.01) < 1e-12, "StepLR: gamma^floor(epoch / step)");
  ok(fabs(sloth_lr_cosine(1, 0, 5, 10) - 0.5) < 1e-12 && fabs(sloth_lr_cosine(1, 0.1, 10, 10) - 0.1) < 1e-12,
     "cosine schedule: half way and end");
}

static void test_optimizer_errors(void) {
  float a[2] = {1, 2};
  int32_t ia[2] = {1, 2};
  sloth_tensor *p = vec(a, 2), *ip = sloth_from_host(ia, SLOTH_I32, 1, (int64_t[]){2});
  sloth_tensor *two[2] = {p, p};
  ok(!sloth_sgd_new(NULL, 1, 0.1, 0, 0, 0) && sloth_last_status() == SLOTH_E_INVALID, "no parameters");
  ok(!sloth_sgd_new(two, 2, 0.1, 0, 0, 0), "a parameter given twice: %s", sloth_last_error());
  ok(!sloth_sgd_new(&ip, 1, 0.1, 0, 0, 0) && sloth_last_status() == SLOTH_E_DTYPE, "integer parameter: %s",
     sloth_last_error());
  ok(!sloth_sgd_new(&p, 1, -1, 0, 0, 0), "negative learning rate");
  ok(!sloth_sgd_new(&p, 1, 0.1, 0, 0, 1), "nesterov without momentum");
  ok(!sloth_adam_new(&p, 1, 0.1, 1.0, 0.999, 1e-8, 0), "beta1 = 1");
  sloth_optimizer *o = sloth_adam_new(&p, 1, 0.1, 0.9, 0.999, 1e-8, 0);
  sloth_tensor *bad = sloth_ones(SLOTH_F32, 1, (int64_t[]){3});
  ok(sloth_optimizer_step(o, &bad) == SLOTH_E_SHAPE, "gradient of the wrong shape: %s", sloth_last_error());
  ok(sloth_optimizer_step(NULL, &bad) == SLOTH_E_INVALID, "NULL optimizer");
  ok(sloth_optimizer_set_lr(o, NAN) == SLOTH_E_INVALID && sloth_optimizer_lr(o) == 0.1, "NaN learning rate refused");
  ok(read_close(p, a, 2, 0), "failed steps leave the parameter unchanged");
  sloth_optimizer_free(o);
  sloth_optimizer_free(NULL);
  sloth_release(bad), sloth_release(p), sloth_release(ip);
}

int main(void) {
  test_assign();
  test_assign_hazards();
  test_optimizers();
  test_optimizer_errors();
  return tap_done();
}
