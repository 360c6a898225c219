/* safetensors.c - saving and loading tensors as safetensors files.
 *
 * The format (Hugging Face's safetensors, what PyTorch checkpoints use): an
 * 8-byte little-endian header length N, N bytes of JSON mapping each name
 * to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to
 * the byte after the header), an optional "__metadata__" object of strings,
 * then the data, little-endian, row-major, packed without gaps.
 *
 * Saving writes a temporary file next to path and renames it over path, so
 * readers see the old file or the new one, never a part. Loading maps the
 * file and checks the whole header against the file size before it creates
 * any tensor: a hostile header gives an error, never a read out of bounds.
 */
#include "internal.h"

#include <jansson.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Data is copied between the file and the devices as is. */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "core/safetensors.c assumes a little-endian host"
#endif

#define MAX_HEADER 100000000 /* bytes: safetensors' own limit */

static const struct {
  const char *name;
  sloth_dtype dt;
} dtypes[] = {{"F32", SLOTH_F32}, {"F16", SLOTH_F16}, {"F64", SLOTH_F64}, {"I32", SLOTH_I32},
              {"I64", SLOTH_I64}, {"U8", SLOTH_U8},   {"BOOL", SLOTH_BOOL}};

static const char *st_dtype_name(sloth_dtype dt) {
  for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
    if (dtypes[i].dt == dt) return dtypes[i].name;
  return NULL;
}

static void shape_str(char *buf, size_t n, int rank, const int64_t *shape) {
  size_t used = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < rank && used < n; i++) used += (size_t)snprintf(buf + used, n - used, i ? ",%lld" : "%lld", (long long)shape[i]);
  if (used < n) snprintf(buf + used, n - used, "]");
}

/* ------------------------------------------------------------------ saving */

static int write_all(int fd, const void *p, size_t n) {
  for (const char *c = p; n;) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (w == 0) errno = EIO;
      return -1;
    }
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Checks the arguments and builds the header; *order gets the tensors in
 * file order. Data is ordered by element size, largest first (as the
 * safetensors writer does), so every tensor starts aligned to its element
 * size: readers that view the data in place need that. */
static int save_header(const char *const *names, sloth_tensor *const *tensors, int n, int *order, json_t **out) {
  for (int i = 0; i < n; i++) {
    if (!names[i] || !names[i][0]) return sloth__fail(SLOTH_E_INVALID, "save_safetensors: names[%d] is NULL or empty", i);
    if (!tensors[i]) return sloth__fail(SLOTH_E_INVALID, "save_safetensors: tensors[%d] (\"%s\") is NULL", i, names[i]);
    if (!sloth__tensor_ok(tensors[i])) return sloth_last_status();
  }
  /* transformers checks for format "pt" in __metadata__ (older versions require it) */
  json_t *root = json_pack("{s:{s:s}}", "__metadata__", "format", "pt");
  int rc = root ? SLOTH_OK : sloth__fail(SLOTH_E_NOMEM, "save_safetensors: out of memory");
  int k = 0;
  uint64_t offset = 0;
  for (size_t size = 8; size && rc == SLOTH_OK; size /= 2) {
    for (int i = 0; i < n && rc == SLOTH_OK; i++) {
      const sloth__node *nd = tensors[i]->node;
      if (sloth_dtype_size(nd->dtype) != size) continue;
      if (!strcmp(names[i], "__metadata__") || json_object_get(root, names[i])) {
        rc = sloth__fail(SLOTH_E_INVALID, "save_safetensors: name \"%s\" is reserved or given twice", names[i]);
        break;
      }
      uint64_t bytes = (uint64_t)sloth__numel(nd->rank, nd->shape) * size;
      json_t *shape = json_array(), *e = NULL;
      for (int d = 0; d < nd->rank; d++) json_array_append_new(shape, json_integer(nd->shape[d]));
      if (json_array_size(shape) == (size_t)nd->rank) /* else out of memory */
        e = json_pack("{s:s, s:O, s:[I,I]}", "dtype", st_dtype_name(nd->dtype), "shape", shape, "data_offsets", (json_int_t)offset,
                      (json_int_t)(offset + bytes));
      json_decref(shape);
      if (!e) rc = sloth__fail(SLOTH_E_NOMEM, "save_safetensors: out of memory");
      else if (json_object_set_new(root, names[i], e))
        rc = sloth__fail(SLOTH_E_INVALID, "save_safetensors: name \"%s\" is not valid UTF-8", names[i]);
      order[k++] = i;
      offset += bytes;
    }
  }
  if (rc != SLOTH_OK) json_decref(root);
  else *out = root;
  return rc;
}

/* Writes header and data to fd; tensors are computed already. */
static int save_data(int fd, json_t *header, sloth_tensor *const *tensors, const int *order, int n) {
  char *js = json_dumps(header, JSON_COMPACT);
  if (!js) return sloth__fail(SLOTH_E_NOMEM, "save_safetensors: out of memory");
  /* the data starts 8-byte aligned: pad the header with spaces, as the safetensors writer does */
  size_t len = strlen(js), padded = (len + 7) & ~(size_t)7;
  uint8_t head[8];
  for (int b = 0; b < 8; b++) head[b] = (uint8_t)((uint64_t)padded >> (8 * b));
  int rc = SLOTH_OK;
  bool failed = write_all(fd, head, 8) || write_all(fd, js, len) || write_all(fd, "       ", padded - len);
  free(js);
  for (int k = 0; k < n && !failed && rc == SLOTH_OK; k++) {
    sloth_tensor *t = tensors[order[k]];
    size_t bytes = (size_t)sloth__numel(t->node->rank, t->node->shape) * sloth_dtype_size(t->node->dtype);
    void *buf = bytes ? sloth__xmalloc(bytes) : NULL;
    if (bytes && !buf) return SLOTH_E_NOMEM;
    if ((rc = sloth_to_host(t, buf, bytes)) == SLOTH_OK) failed = write_all(fd, buf, bytes);
    free(buf);
  }
  return failed ? sloth__fail(SLOTH_E_INVALID, "save_safetensors: write failed: %s", strerror(errno)) : rc;
}

int sloth_save_safetensors(const char *path, const char *const *names, sloth_tensor *const *tensors, int n) {
  sloth__lock();
  int rc = SLOTH_OK, fd = -1, *order = NULL;
  char *tmp = NULL;
  bool made = false; /* the temporary file exists (ours to remove) */
  json_t *header = NULL;
  if (!path || !path[0] || n < 0 || (n > 0 && (!names || !tensors))) {
    rc = sloth__fail(SLOTH_E_INVALID, "save_safetensors: bad arguments (NULL or empty path, NULL lists, or n < 0)");
    goto out;
  }
  if (!(order = sloth__xmalloc((size_t)n * sizeof *order + 1)) || !(tmp = sloth__xmalloc(strlen(path) + 32))) {
    rc = SLOTH_E_NOMEM;
    goto out;
  }
  if ((rc = save_header(names, tensors, n, order, &header)) != SLOTH_OK) goto out;
  if ((rc = sloth_sync(tensors, n)) != SLOTH_OK) goto out; /* one graph for all of them */
  sprintf(tmp, "%s.tmp.%ld", path, (long)getpid());
  /* O_EXCL: never write through a link someone left at the temporary name */
  if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666)) < 0) {
    rc = sloth__fail(SLOTH_E_INVALID, "save_safetensors: cannot create %s: %s", tmp, strerror(errno));
    goto out;
  }
  made = true;
  if ((rc = save_data(fd, header, tensors, order, n)) != SLOTH_OK) goto out;
  /* the data reaches the disk before the rename makes it the file */
  if (fsync(fd)) rc = sloth__fail(SLOTH_E_INVALID, "save_safetensors: cannot write %s: %s", tmp, strerror(errno));
  if (close(fd) && rc == SLOTH_OK) rc = sloth__fail(SLOTH_E_INVALID, "save_safetensors: cannot write %s: %s", tmp, strerror(errno));
  fd = -1;
  if (rc == SLOTH_OK && rename(tmp, path))
    rc = sloth__fail(SLOTH_E_INVALID, "save_safetensors: cannot rename %s to %s: %s", tmp, path, strerror(errno));
out:
  if (fd >= 0) close(fd);
  if (rc != SLOTH_OK && made) unlink(tmp);
  json_decref(header);
  free(order);
  free(tmp);
  sloth__unlock();
  return rc;
}

/* ------------------------------------------------------------------ loading */

typedef struct entry {
  const char *name; /* a key of the header (lives as long as it) */
  sloth_dtype dt;
  int rank;
  int64_t shape[SLOTH_MAX_RANK];
  size_t begin, bytes; /* in the data section */
} entry;

typedef struct stfile {
  uint8_t *map;
  size_t size;
  const uint8_t *data; /* after the header */
  json_t *header;
  entry *e; /* sorted by name */
  int n;
} stfile;

static void st_close(stfile *f) {
  if (f->map) munmap(f->map, f->size);
  json_decref(f->header);
  free(f->e);
}

static int by_name(const void *a, const void *b) { return strcmp(((const entry *)a)->name, ((const entry *)b)->name); }

/* A non-negative JSON integer, or -1. */
static int64_t json_count(const json_t *j) {
  return json_is_integer(j) && json_integer_value(j) >= 0 ? (int64_t)json_integer_value(j) : -1;
}

static bool string_map(json_t *j) {
  const char *k;
  json_t *v;
  if (!json_is_object(j)) return false;
  json_object_foreach(j, k, v) if (!json_is_string(v)) return false;
  return true;
}

/* Checks one header entry against the data size and fills *e. */
static int parse_entry(const char *path, const char *name, json_t *j, size_t data_size, entry *e) {
  json_t *dt = json_object_get(j, "dtype"), *shape = json_object_get(j, "shape"), *off = json_object_get(j, "data_offsets");
  const char *bad = NULL;
  if (!json_is_object(j)) bad = "is not an object";
  else if (!json_is_string(dt)) bad = "has no dtype string";
  else if (!json_is_array(shape) || json_array_size(shape) > SLOTH_MAX_RANK) bad = "has no shape array of rank <= 8";
  else if (!json_is_array(off) || json_array_size(off) != 2) bad = "has no data_offsets [begin, end]";
  if (bad) return sloth__fail(SLOTH_E_INVALID, "load_safetensors: %s: tensor \"%s\" %s", path, name, bad);
  size_t d = 0;
  while (d < sizeof dtypes / sizeof *dtypes && strcmp(dtypes[d].name, json_string_value(dt))) d++;
  if (d == sizeof dtypes / sizeof *dtypes)
    return sloth__fail(SLOTH_E_UNSUPPORTED, "load_safetensors: %s: tensor \"%s\" has dtype %s, which Sloth does not support",
                       path, name, json_string_value(dt));
  e->name = name;
  e->dt = dtypes[d].dt;
  e->rank = (int)json_array_size(shape);
  uint64_t bytes = sloth_dtype_size(e->dt);
  for (int i = 0; i < e->rank; i++) {
    e->shape[i] = json_count(json_array_get(shape, (size_t)i));
    if (e->shape[i] < 0)
      return sloth__fail(SLOTH_E_INVALID, "load_safetensors: %s: tensor \"%s\": shape[%d] is not an integer >= 0", path, name, i);
    if (__builtin_mul_overflow(bytes, (uint64_t)e->shape[i], &bytes) || bytes > INT64_MAX)
      return sloth__fail(SLOTH_E_INVALID, "load_safetensors: %s: tensor \"%s\": the shape's byte size overflows", path, name);
  }
  int64_t b = json_count(json_array_get(off, 0)), end = json_count(json_array_get(off, 1));
  if (b < 0 || end < b || (uint64_t)end > data_size || (uint64_t)(end - b) != bytes)
    return sloth__fail(SLOTH_E_INVALID,
                       "load_safetensors: %s: tensor \"%s\": data_offsets do not give %llu bytes inside the %zu bytes of data",
                       path, name, (unsigned long long)bytes, data_size);
  e->begin = (size_t)b;
  e->bytes = (size_t)bytes;
  return SLOTH_OK;
}

/* Maps the file and checks its whole header. */
static int st_open(const char *path, stfile *f) {
  memset(f, 0, sizeof *f);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st)) {
    int rc = sloth__fail(SLOTH_E_INVALID, "load_safetensors: cannot open %s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return rc;
  }
  if (!S_ISREG(st.st_mode) || st.st_size < 8) {
    close(fd);
    return sloth__fail(SLOTH_E_INVALID, "load_safetensors: %s is not a safetensors file (%s)", path,
                       S_ISREG(st.st_mode) ? "shorter than 8 bytes" : "not a regular file");
  }
  f->size = (size_t)st.st_size;
  void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (m == MAP_FAILED) return sloth__fail(SLOTH_E_INVALID, "load_safetensors: cannot map %s: %s", path, strerror(errno));
  f->map = m;
  uint64_t hlen = 0;
  for (int b = 7; b >= 0; b--) hlen = hlen << 8 | f->map[b];
  if (hlen > f->size - 8 || hlen > MAX_HEADER)
    return sloth__fail(SLOTH_E_INVALID, "load_safetensors: %s: header length %llu does not fit a file of %zu bytes (or exceeds 100 MB)",
                       path, (unsigned long long)hlen, f->size);
  f->data = f->map + 8 + hlen;
  json_error_t err;
  f->header = json_loadb((const char *)f->map + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &err);
  if (!f->header)
    return sloth__fail(SLOTH_E_INVALID, "load_safetensors: %s: the header is not valid JSON: %s (at byte %d)", path, err.text,
                       err.position);
  if (!json_is_object(f->header)) return sloth__fail(SLOTH_E_INVALID, "load_safetensors: %s: the header is not a JSON object", path);
  if (!(f->e = sloth__xcalloc(json_object_size(f->header) + 1, sizeof *f->e))) return SLOTH_E_NOMEM;
  const char *name;
  json_t *j;
  json_object_foreach(f->header, name, j) {
    if (!strcmp(name, "__metadata__")) {
      if (!string_map(j)) return sloth__fail(SLOTH_E_INVALID, "load_safetensors: %s: __metadata__ is not an object of strings", path);
      continue;
    }
    int rc = parse_entry(path, name, j, f->size - 8 - (size_t)hlen, &f->e[f->n]);
    if (rc != SLOTH_OK) return rc;
    f->n++;
  }
  qsort(f->e, (size_t)f->n, sizeof *f->e, by_name);
  return SLOTH_OK;
}

/* A tensor with the entry's elements (in the caller's scope). */
static sloth_tensor *st_tensor(const stfile *f, const entry *e) {
  return sloth_from_host(f->data + e->begin, e->dt, e->rank, e->shape);
}

/* The status of a failed call that returned NULL. */
static int null_status(void) { return sloth_last_status() < 0 ? sloth_last_status() : SLOTH_E_NOMEM; }

int sloth_load_safetensors(const char *path, sloth_named_tensor **out, int *n) {
  sloth__lock();
  if (out) *out = NULL;
  if (n) *n = 0;
  stfile f = {0};
  sloth_named_tensor *list = NULL;
  int rc;
  if (!path || !out || !n) rc = sloth__fail(SLOTH_E_INVALID, "load_safetensors: NULL path or output");
  else if ((rc = st_open(path, &f)) == SLOTH_OK && !(list = sloth__xcalloc((size_t)f.n + 1, sizeof *list))) rc = SLOTH_E_NOMEM;
  /* the list owns its references outside any scope (freed by sloth_named_tensors_free) */
  sloth_scope_begin();
  for (int i = 0; rc == SLOTH_OK && i < f.n; i++) {
    sloth_tensor *t = st_tensor(&f, &f.e[i]);
    if (!t || !(list[i].name = strdup(f.e[i].name))) {
      rc = t ? sloth__fail(SLOTH_E_NOMEM, "load_safetensors: out of memory") : null_status();
      break;
    }
    list[i].tensor = sloth_retain(t);
  }
  sloth_scope_end();
  if (rc == SLOTH_OK) {
    *out = list;
    *n = f.n;
  } else sloth_named_tensors_free(list, f.n);
  st_close(&f);
  sloth__unlock();
  return rc;
}

void sloth_named_tensors_free(sloth_named_tensor *list, int n) {
  if (!list) return;
  for (int i = 0; i < n; i++) {
    free(list[i].name);
    sloth_release(list[i].tensor);
  }
  free(list);
}

int sloth_load_safetensors_into(const char *path, const char *const *names, sloth_tensor *const *tensors, int n) {
  sloth__lock();
  stfile f = {0};
  entry **found = NULL;
  int rc = SLOTH_OK;
  if (!path || n < 0 || (n > 0 && (!names || !tensors))) {
    rc = sloth__fail(SLOTH_E_INVALID, "load_safetensors_into: bad arguments (NULL path or lists, or n < 0)");
    goto out;
  }
  for (int i = 0; i < n && rc == SLOTH_OK; i++) {
    if (!names[i] || !tensors[i]) rc = sloth__fail(SLOTH_E_INVALID, "load_safetensors_into: names[%d] or tensors[%d] is NULL", i, i);
    else if (!sloth__tensor_ok(tensors[i])) rc = sloth_last_status();
  }
  if (rc != SLOTH_OK || (rc = st_open(path, &f)) != SLOTH_OK) goto out;
  if (!(found = sloth__xcalloc((size_t)n + 1, sizeof *found))) {
    rc = SLOTH_E_NOMEM;
    goto out;
  }
  /* all or nothing: every name and shape is checked before anything is assigned */
  for (int i = 0; i < n && rc == SLOTH_OK; i++) {
    entry key = {.name = names[i]};
    const sloth__node *d = tensors[i]->node;
    if (!(found[i] = bsearch(&key, f.e, (size_t)f.n, sizeof *f.e, by_name)))
      rc = sloth__fail(SLOTH_E_INVALID, "load_safetensors_into: %s has no tensor \"%s\"", path, names[i]);
    else if (found[i]->rank != d->rank || memcmp(found[i]->shape, d->shape, (size_t)d->rank * sizeof *d->shape)) {
      char a[200], b[200];
      shape_str(a, sizeof a, found[i]->rank, found[i]->shape);
      shape_str(b, sizeof b, d->rank, d->shape);
      rc = sloth__fail(SLOTH_E_SHAPE, "load_safetensors_into: tensor \"%s\" of %s has shape %s, the destination %s", names[i], path, a, b);
    }
  }
  if (rc != SLOTH_OK) goto out;
  sloth_scope_begin();
  sloth_tensor **loaded = sloth__xcalloc((size_t)n + 1, sizeof *loaded);
  if (!loaded) rc = SLOTH_E_NOMEM;
  for (int i = 0; i < n && rc == SLOTH_OK; i++)
    if (!(loaded[i] = st_tensor(&f, found[i]))) rc = null_status();
  /* sloth_assign casts to the destination's dtype */
  for (int i = 0; i < n && rc == SLOTH_OK; i++) rc = sloth_assign(tensors[i], loaded[i]);
  /* run the copies now: the destinations are data again (as before the
   * call), and the loaded buffers are freed instead of waiting for a sync */
  if (rc == SLOTH_OK) rc = sloth_sync(tensors, n);
  free(loaded);
  sloth_scope_end();
out:
  free(found);
  st_close(&f);
  sloth__unlock();
  return rc;
}
