/* optim.c - SGD, Adam and AdamW, and learning-rate schedules.
 *
 * A step records each parameter's update as lazy ops and writes the results
 * into the parameter and its state with sloth_assign, so the next sync point
 * runs forward, backward and update as one graph and the executor writes in
 * place. Everything that changes from step to step (the learning rate, Adam's
 * bias corrections) enters as a scalar, which is a kernel argument: the
 * graph, and so the plan, is the same every step. The updates of one
 * parameter and its state have the same shape and fuse into one kernel. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { OPT_SGD, OPT_ADAM, OPT_ADAMW } opt_kind;

struct sloth_optimizer {
  opt_kind kind;
  int n;
  sloth_tensor **params; /* references held */
  sloth_tensor **m;      /* SGD: momentum buffers (or NULL); Adam: first moments */
  sloth_tensor **v;      /* Adam: second moments */
  double lr, momentum, weight_decay, beta1, beta2, eps;
  int nesterov;
  int64_t steps;
};

void sloth_optimizer_free(sloth_optimizer *o) {
  if (!o) return;
  for (int i = 0; i < o->n; i++) {
    if (o->params) sloth_release(o->params[i]);
    if (o->m) sloth_release(o->m[i]);
    if (o->v) sloth_release(o->v[i]);
  }
  free(o->params), free(o->m), free(o->v), free(o);
}

/* Zeros shaped like t, computed now: state must be data before the first
 * step, or the first step's graph (with the fill) would differ from the rest. */
static sloth_tensor *zeros_like(sloth_tensor *t) {
  sloth_tensor *z = sloth_zeros(sloth_dtype_of(t), sloth_rank(t), sloth_shape(t));
  if (z && sloth_sync(&z, 1) != SLOTH_OK) {
    sloth_release(z);
    return NULL;
  }
  return z;
}

static sloth_optimizer *create(opt_kind kind, sloth_tensor *const *params, int n, double lr) {
  if (n < 1 || !params) {
    sloth__fail(SLOTH_E_INVALID, "optimizer: no parameters");
    return NULL;
  }
  if (!(lr >= 0) || !isfinite(lr)) {
    sloth__fail(SLOTH_E_INVALID, "optimizer: learning rate %g must be finite and >= 0", lr);
    return NULL;
  }
  for (int i = 0; i < n; i++) {
    if (!sloth__tensor_valid(params[i])) return NULL;
    sloth_dtype dt = sloth_dtype_of(params[i]);
    if (dt != SLOTH_F32 && dt != SLOTH_F16 && dt != SLOTH_F64) {
      sloth__fail(SLOTH_E_DTYPE, "optimizer: parameter %d is %s; parameters must be floating point", i, sloth_dtype_name(dt));
      return NULL;
    }
    for (int j = 0; j < i; j++)
      if (params[j] == params[i]) {
        sloth__fail(SLOTH_E_INVALID, "optimizer: parameter %d is given twice", i);
        return NULL;
      }
  }
  sloth_optimizer *o = sloth__xcalloc(1, sizeof *o);
  if (!o) return NULL;
  o->kind = kind;
  o->lr = lr;
  o->params = sloth__xcalloc((size_t)n, sizeof *o->params);
  if (!o->params) {
    free(o);
    return NULL;
  }
  o->n = n;
  for (int i = 0; i < n; i++) o->params[i] = sloth_retain(params[i]);
  return o;
}

/* One zero-filled state tensor per parameter. */
static sloth_tensor **new_state(sloth_optimizer *o) {
  sloth_tensor **s = sloth__xcalloc((size_t)o->n, sizeof *s);
  for (int i = 0; s && i < o->n; i++)
    if (!(s[i] = zeros_like(o->params[i]))) {
      for (int j = 0; j < i; j++) sloth_release(s[j]);
      free(s);
      return NULL;
    }
  return s;
}

sloth_optimizer *sloth_sgd_new(sloth_tensor *const *params, int n, double lr, double momentum, double weight_decay,
                               int nesterov) {
  if (!(momentum >= 0) || !(weight_decay >= 0) || (nesterov && momentum <= 0)) {
    sloth__fail(SLOTH_E_INVALID, "sgd: momentum (%g) and weight decay (%g) must be >= 0; nesterov needs momentum > 0",
                momentum, weight_decay);
    return NULL;
  }
  sloth_optimizer *o = create(OPT_SGD, params, n, lr);
  if (!o) return NULL;
  o->momentum = momentum;
  o->weight_decay = weight_decay;
  o->nesterov = nesterov != 0;
  if (momentum > 0 && !(o->m = new_state(o))) {
    sloth_optimizer_free(o);
    return NULL;
  }
  return o;
}

static sloth_optimizer *adam_new(opt_kind kind, sloth_tensor *const *params, int n, double lr, double beta1,
                                 double beta2, double eps, double weight_decay) {
  if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1) || !(eps >= 0) || !(weight_decay >= 0)) {
    sloth__fail(SLOTH_E_INVALID, "adam: betas (%g, %g) must be in [0, 1), eps (%g) and weight decay (%g) >= 0", beta1,
                beta2, eps, weight_decay);
    return NULL;
  }
  sloth_optimizer *o = create(kind, params, n, lr);
  if (!o) return NULL;
  o->beta1 = beta1, o->beta2 = beta2, o->eps = eps, o->weight_decay = weight_decay;
  if (!(o->m = new_state(o)) || !(o->v = new_state(o))) {
    sloth_optimizer_free(o);
    return NULL;
  }
  return o;
}

sloth_optimizer *sloth_adam_new(sloth_tensor *const *params, int n, double lr, double beta1, double beta2, double eps,
                                double weight_decay) {
  return adam_new(OPT_ADAM, params, n, lr, beta1, beta2, eps, weight_decay);
}

sloth_optimizer *sloth_adamw_new(sloth_tensor *const *params, int n, double lr, double beta1, double beta2, double eps,
                                 double weight_decay) {
  return adam_new(OPT_ADAMW, params, n, lr, beta1, beta2, eps, weight_decay);
}

/* The update of parameter i from gradient g, recorded (inside a scope). */
static int update_sgd(sloth_optimizer *o, int i, sloth_tensor *g) {
  sloth_tensor *p = o->params[i];
  if (o->weight_decay > 0) g = sloth_add(g, sloth_mul_scalar(p, o->weight_decay));
  sloth_tensor *step = g;
  if (o->m) {
    sloth_tensor *buf = sloth_add(sloth_mul_scalar(o->m[i], o->momentum), g);
    step = o->nesterov ? sloth_add(g, sloth_mul_scalar(buf, o->momentum)) : buf;
    int rc = sloth_assign(o->m[i], buf);
    if (rc != SLOTH_OK) return rc;
  }
  return sloth_assign(p, sloth_sub(p, sloth_mul_scalar(step, o->lr)));
}

static int update_adam(sloth_optimizer *o, int i, sloth_tensor *g) {
  sloth_tensor *p = o->params[i], *decayed = p;
  if (o->weight_decay > 0) {
    if (o->kind == OPT_ADAM) g = sloth_add(g, sloth_mul_scalar(p, o->weight_decay));
    else decayed = sloth_mul_scalar(p, 1 - o->lr * o->weight_decay);
  }
  double t = (double)o->steps;
  double step_size = o->lr / (1 - pow(o->beta1, t)), v_scale = 1 / (1 - pow(o->beta2, t));
  sloth_tensor *m = sloth_add(sloth_mul_scalar(o->m[i], o->beta1), sloth_mul_scalar(g, 1 - o->beta1));
  sloth_tensor *v = sloth_add(sloth_mul_scalar(o->v[i], o->beta2), sloth_mul_scalar(sloth_square(g), 1 - o->beta2));
  sloth_tensor *denom = sloth_add_scalar(sloth_sqrt(sloth_mul_scalar(v, v_scale)), o->eps);
  sloth_tensor *np = sloth_sub(decayed, sloth_mul_scalar(sloth_div(m, denom), step_size));
  int rc = sloth_assign(o->m[i], m);
  if (rc == SLOTH_OK) rc = sloth_assign(o->v[i], v);
  if (rc == SLOTH_OK) rc = sloth_assign(p, np);
  return rc;
}

int sloth_optimizer_step(sloth_optimizer *o, sloth_tensor *const *grads) {
  if (!o || !grads) return sloth__fail(SLOTH_E_INVALID, "optimizer_step: NULL optimizer or gradient list");
  for (int i = 0; i < o->n; i++) {
    if (!sloth__tensor_valid(grads[i])) return sloth_last_status();
    int r = sloth_rank(grads[i]);
    if (r != sloth_rank(o->params[i]) || memcmp(sloth_shape(grads[i]), sloth_shape(o->params[i]), (size_t)r * sizeof(int64_t)))
      return sloth__fail(SLOTH_E_SHAPE, "optimizer_step: gradient %d is not shaped like its parameter", i);
  }
  /* the whole step or nothing: checks above, then one scope of updates */
  sloth__lock();
  o->steps++;
  int rc = SLOTH_OK;
  sloth_scope_begin();
  for (int i = 0; i < o->n && rc == SLOTH_OK; i++) {
    sloth_tensor *g = sloth_cast(grads[i], sloth_dtype_of(o->params[i]));
    rc = o->kind == OPT_SGD ? update_sgd(o, i, g) : update_adam(o, i, g);
  }
  sloth_scope_end();
  sloth__unlock();
  return rc;
}

int sloth_optimizer_minimize(sloth_optimizer *o, sloth_tensor *loss) {
  if (!o) return sloth__fail(SLOTH_E_INVALID, "optimizer_minimize: NULL optimizer");
  sloth_tensor **grads = sloth__xcalloc((size_t)o->n, sizeof *grads);
  if (!grads) return SLOTH_E_NOMEM;
  int rc = sloth_grad(loss, o->params, o->n, grads);
  if (rc == SLOTH_OK) rc = sloth_optimizer_step(o, grads);
  for (int i = 0; i < o->n; i++) sloth_release(grads[i]);
  free(grads);
  return rc;
}

int sloth_optimizer_set_lr(sloth_optimizer *o, double lr) {
  if (!o) return sloth__fail(SLOTH_E_INVALID, "optimizer_set_lr: NULL optimizer");
  if (!(lr >= 0) || !isfinite(lr)) return sloth__fail(SLOTH_E_INVALID, "optimizer_set_lr: learning rate %g must be finite and >= 0", lr);
  o->lr = lr;
  return SLOTH_OK;
}

double sloth_optimizer_lr(const sloth_optimizer *o) { return o ? o->lr : -1; }

double sloth_lr_step(double base_lr, int epoch, int step_size, double gamma) {
  if (step_size < 1 || epoch < 0) return base_lr;
  return base_lr * pow(gamma, (double)(epoch / step_size));
}

double sloth_lr_cosine(double base_lr, double min_lr, int t, int t_max) {
  if (t_max < 1) return base_lr;
  return min_lr + (base_lr - min_lr) * (1 + cos(M_PI * (double)t / t_max)) / 2;
}
