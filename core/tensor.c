/* tensor.c - tensor handles: reference counts, the live registry, scopes. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define TENSOR_LIVE 0x51074e11u
#define TENSOR_DEAD 0xdead7e50u

/* Released handles are kept (marked dead) for a while before their memory
 * is freed, so that using a released tensor is reported instead of crashing. */
#define QUARANTINE 4096

static sloth_tensor *registry;
static uint64_t next_tensor_id = 1;
static sloth_tensor *quarantine[QUARANTINE];
static int quarantine_next;

/* Scopes are per thread: a stack of growable lists of tensors. */
typedef struct scope {
  sloth_tensor **items;
  int n, cap;
} scope;
static _Thread_local scope *scopes;
static _Thread_local int nscopes, scopes_cap;

static int scope_add(int depth, sloth_tensor *t) {
  scope *s = &scopes[depth - 1];
  if (s->n == s->cap) {
    int cap = s->cap ? s->cap * 2 : 64;
    sloth_tensor **p = realloc(s->items, (size_t)cap * sizeof *p);
    if (!p) return sloth__fail(SLOTH_E_NOMEM, "out of host memory (scope)");
    s->items = p;
    s->cap = cap;
  }
  t->scope_depth = depth;
  t->scope_owner = &nscopes;
  t->scope_slot = s->n;
  s->items[s->n++] = t;
  return SLOTH_OK;
}

static void scope_remove(sloth_tensor *t) {
  if (t->scope_owner == &nscopes && t->scope_depth > 0 && t->scope_depth <= nscopes) scopes[t->scope_depth - 1].items[t->scope_slot] = NULL;
  t->scope_depth = 0;
}

sloth_tensor *sloth__tensor_wrap(sloth__node *n) {
  if (!n) return NULL;
  sloth_tensor *t = sloth__xcalloc(1, sizeof *t);
  if (!t) {
    sloth__node_release(n);
    return NULL;
  }
  t->magic = TENSOR_LIVE;
  t->refcount = 1;
  t->id = next_tensor_id++;
  t->node = n;
  t->next = registry;
  if (registry) registry->prev = t;
  registry = t;
  if (nscopes > 0 && scope_add(nscopes, t) != SLOTH_OK) {
    sloth_release(t);
    return NULL;
  }
  return t;
}

bool sloth__tensor_ok(const sloth_tensor *t) {
  if (!t) {
    if (sloth_last_status() == SLOTH_OK) sloth__fail(SLOTH_E_INVALID, "NULL tensor");
    return false;
  }
  if (t->magic == TENSOR_DEAD) {
    sloth__fail(SLOTH_E_INVALID, "tensor used after it was released");
    return false;
  }
  if (t->magic != TENSOR_LIVE) {
    sloth__fail(SLOTH_E_INVALID, "not a sloth tensor handle");
    return false;
  }
  return true;
}

bool sloth__tensor_valid(const sloth_tensor *t) {
  sloth__lock();
  bool ok = sloth__tensor_ok(t);
  sloth__unlock();
  return ok;
}

void sloth__scope_adopt(sloth_tensor *t) {
  if (t && t->scope_depth == 0 && nscopes > 0) scope_add(nscopes, t);
}

sloth_tensor *sloth__tensor_first(void) { return registry; }

static void tensor_destroy(sloth_tensor *t) {
  if (t->prev) t->prev->next = t->next;
  else registry = t->next;
  if (t->next) t->next->prev = t->prev;
  scope_remove(t);
  sloth__node_release(t->node);
  t->node = NULL;
  t->magic = TENSOR_DEAD;
  free(quarantine[quarantine_next]);
  quarantine[quarantine_next] = t;
  quarantine_next = (quarantine_next + 1) % QUARANTINE;
}

sloth_tensor *sloth_retain(sloth_tensor *t) {
  sloth__lock();
  sloth_tensor *r = NULL;
  if (sloth__tensor_ok(t)) {
    t->refcount++;
    r = t;
  }
  sloth__unlock();
  return r;
}

void sloth_release(sloth_tensor *t) {
  if (!t) return;
  sloth__lock();
  if (sloth__tensor_ok(t) && --t->refcount == 0) tensor_destroy(t);
  sloth__unlock();
}

void sloth_scope_begin(void) {
  if (nscopes == scopes_cap) {
    int cap = scopes_cap ? scopes_cap * 2 : 8;
    scope *p = realloc(scopes, (size_t)cap * sizeof *p);
    if (!p) {
      sloth__fail(SLOTH_E_NOMEM, "out of host memory (scope)");
      return;
    }
    scopes = p;
    scopes_cap = cap;
  }
  memset(&scopes[nscopes], 0, sizeof scopes[nscopes]);
  nscopes++;
}

void sloth_scope_end(void) {
  if (nscopes == 0) return;
  sloth__lock();
  scope *s = &scopes[nscopes - 1];
  for (int i = 0; i < s->n; i++) {
    sloth_tensor *t = s->items[i];
    if (!t) continue;
    t->scope_depth = 0;
    if (--t->refcount == 0) tensor_destroy(t);
  }
  free(s->items);
  if (--nscopes == 0) { /* the thread may end now: give its scope stack back */
    free(scopes);
    scopes = NULL;
    scopes_cap = 0;
  }
  sloth__unlock();
}

sloth_tensor *sloth_keep(sloth_tensor *t) {
  sloth__lock();
  sloth_tensor *r = NULL;
  if (sloth__tensor_ok(t)) {
    int depth = t->scope_depth;
    scope_remove(t);
    /* it moves to the enclosing scope, if there is one */
    if (depth > 1) scope_add(depth - 1, t);
    r = t;
  }
  sloth__unlock();
  return r;
}

/* ------------------------------------------------------------------ introspection */

#define GETTER(type, name, bad, expr)                                                                       \
  type name(const sloth_tensor *t) {                                                                       \
    sloth__lock();                                                                                         \
    type r = sloth__tensor_ok(t) ? (expr) : (bad);                                                         \
    sloth__unlock();                                                                                       \
    return r;                                                                                              \
  }

GETTER(int, sloth_rank, -1, t->node->rank)
GETTER(const int64_t *, sloth_shape, NULL, t->node->shape)
GETTER(int64_t, sloth_numel, -1, sloth__numel(t->node->rank, t->node->shape))
GETTER(sloth_dtype, sloth_dtype_of, (sloth_dtype)-1, t->node->dtype)
GETTER(uint64_t, sloth_tensor_id, 0, t->id)
GETTER(int, sloth_is_pending, -1, !sloth__node_is_leaf(t->node))

int64_t sloth_dim(const sloth_tensor *t, int axis) {
  sloth__lock();
  int64_t r = -1;
  if (sloth__tensor_ok(t)) {
    int rank = t->node->rank;
    int a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a >= rank) sloth__fail(SLOTH_E_INVALID, "axis %d out of range for rank %d", axis, rank);
    else r = t->node->shape[a];
  }
  sloth__unlock();
  return r;
}

size_t sloth_dtype_size(sloth_dtype dt) {
  switch (dt) {
  case SLOTH_F64: case SLOTH_I64: return 8;
  case SLOTH_F32: case SLOTH_I32: return 4;
  case SLOTH_F16: return 2;
  case SLOTH_U8: case SLOTH_BOOL: return 1;
  default: return 0;
  }
}

const char *sloth_dtype_name(sloth_dtype dt) {
  switch (dt) {
  case SLOTH_F32: return "f32";
  case SLOTH_I32: return "i32";
  case SLOTH_U8: return "u8";
  case SLOTH_BOOL: return "bool";
  case SLOTH_F16: return "f16";
  case SLOTH_I64: return "i64";
  case SLOTH_F64: return "f64";
  default: return "?";
  }
}
