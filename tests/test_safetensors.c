/* test_safetensors.c - safetensors files (core/safetensors.c): bit-exact
 * round trips of every dtype and odd shapes, the exact bytes of a tiny file,
 * files laid out like the Python writer's, loading into existing tensors,
 * atomic replacement, and hostile or broken files and arguments, each of
 * which must fail with a message and leave the runtime working. */
#include <sloth.h>

#include "tap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static const char *path_of(const char *name) {
  static char buf[4][256];
  static int k;
  char *p = buf[k++ % 4];
  snprintf(p, 256, "%s/%s", dir, name);
  return p;
}

static bool write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return false;
  bool good = fwrite(p, 1, n, f) == n;
  return fclose(f) == 0 && good;
}

/* The whole file in a malloc'd buffer (NULL if unreadable). */
static uint8_t *read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *p = malloc((size_t)len + 1);
  *n = p ? fread(p, 1, (size_t)len, f) : 0;
  fclose(f);
  return p;
}

/* Entries of d whose name contains ".tmp." (leftover temporary files). */
static int temp_files(const char *d) {
  DIR *dp = opendir(d);
  int count = 0;
  for (struct dirent *e; dp && (e = readdir(dp));) count += strstr(e->d_name, ".tmp.") != NULL;
  if (dp) closedir(dp);
  return count;
}

static void remove_all(const char *d) {
  DIR *dp = opendir(d);
  for (struct dirent *e; dp && (e = readdir(dp));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char p[512];
    snprintf(p, sizeof p, "%s/%s", d, e->d_name);
    struct stat st;
    if (!lstat(p, &st) && S_ISDIR(st.st_mode)) {
      chmod(p, 0700);
      remove_all(p);
    } else unlink(p);
  }
  if (dp) closedir(dp);
  rmdir(d);
}

/* A small op still computes correctly (the runtime survived a failure). */
static bool runtime_works(void) {
  float in[3] = {1, 2, 3}, out[3] = {0};
  int64_t n = 3;
  sloth_scope_begin();
  sloth_tensor *x = sloth_from_host(in, SLOTH_F32, 1, &n);
  bool good = sloth_to_host(sloth_add_scalar(sloth_mul(x, x), 1.0), out, sizeof out) == SLOTH_OK;
  sloth_scope_end();
  return good && out[0] == 2 && out[1] == 5 && out[2] == 10;
}

static size_t tensor_bytes(sloth_tensor *t) { return (size_t)sloth_numel(t) * sloth_dtype_size(sloth_dtype_of(t)); }

/* The elements of t (malloc'd; NULL on failure). */
static void *contents(sloth_tensor *t) {
  size_t n = tensor_bytes(t);
  void *p = malloc(n + 1);
  if (p && sloth_to_host(t, p, n) != SLOTH_OK) {
    free(p);
    return NULL;
  }
  return p;
}

static bool same_shape(sloth_tensor *a, sloth_tensor *b) {
  int r = sloth_rank(a);
  return r == sloth_rank(b) && !memcmp(sloth_shape(a), sloth_shape(b), (size_t)r * sizeof(int64_t));
}

/* a and b have the same dtype, shape and bytes. */
static bool identical(sloth_tensor *a, sloth_tensor *b) {
  if (!a || !b || sloth_dtype_of(a) != sloth_dtype_of(b) || !same_shape(a, b)) return false;
  void *pa = contents(a), *pb = contents(b);
  bool eq = pa && pb && !memcmp(pa, pb, tensor_bytes(a));
  free(pa);
  free(pb);
  return eq;
}

static sloth_tensor *find(sloth_named_tensor *list, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!strcmp(list[i].name, name)) return list[i].tensor;
  return NULL;
}

/* The header of a safetensors file as JSON, and where its data starts. */
static json_t *header_of(const uint8_t *p, size_t n, size_t *data_start) {
  if (n < 8) return NULL;
  uint64_t h = 0;
  for (int b = 7; b >= 0; b--) h = h << 8 | p[b];
  if (h > n - 8) return NULL;
  *data_start = 8 + (size_t)h;
  return json_loadb((const char *)p + 8, (size_t)h, JSON_REJECT_DUPLICATES, NULL);
}

/* ------------------------------------------------------------------ round trips */

static void test_round_trip(void) {
  sloth_scope_begin();
  uint32_t fbits[12];
  for (int i = 0; i < 12; i++) fbits[i] = 0x3f800000u + (uint32_t)i * 0x01234567u;
  fbits[3] = 0x7fc01234u; /* a NaN payload */
  fbits[4] = 0x80000000u; /* -0 */
  fbits[5] = 0x7f800000u; /* inf */
  fbits[6] = 0x00000001u; /* a denormal */
  int32_t ints[5] = {0, -1, INT32_MAX, INT32_MIN, 12345};
  uint8_t bytes[3] = {0, 200, 255}, bools[4] = {1, 0, 0, 1};
  float one = 42.5f;
  const float x6[6] = {1, 2, 3, 4, 5, 6};
  sloth_tensor *x = sloth_from_host(x6, SLOTH_F32, 2, (int64_t[]){2, 3});
  const char *names[] = {"f32.2x3", "f32.rank4", "f32.scalar", "f32.empty", "i32",
                         "u8",      "bool",      "pending",    "view",      "long.name/with:odd chars é"};
  sloth_tensor *ts[] = {
      sloth_from_host(fbits, SLOTH_F32, 2, (int64_t[]){2, 6}),
      sloth_from_host(fbits, SLOTH_F32, 4, (int64_t[]){3, 1, 2, 2}),
      sloth_from_host(&one, SLOTH_F32, 0, NULL),
      sloth_from_host(NULL, SLOTH_F32, 2, (int64_t[]){0, 3}),
      sloth_from_host(ints, SLOTH_I32, 1, (int64_t[]){5}),
      sloth_from_host(bytes, SLOTH_U8, 1, (int64_t[]){3}), /* odd sizes between wider tensors */
      sloth_from_host(bools, SLOTH_BOOL, 2, (int64_t[]){2, 2}),
      sloth_add_scalar(sloth_mul(x, x), 1.0), /* pending: saving syncs it */
      sloth_transpose(x, 0, 1),                /* a view: saved row-major */
      sloth_from_host(x6, SLOTH_F32, 1, (int64_t[]){1}),
  };
  int n = (int)(sizeof ts / sizeof *ts);
  bool made = true;
  for (int i = 0; i < n; i++) made &= ts[i] != NULL;
  ok(made, "round trip: tensors made (%s)", sloth_last_error());
  const char *p = path_of("rt.safetensors");
  int rc = sloth_save_safetensors(p, names, ts, n);
  ok(rc == SLOTH_OK, "round trip: saved (%s)", sloth_last_error());
  ok(!sloth_is_pending(ts[7]), "round trip: saving synced the pending tensor");
  ok(temp_files(dir) == 0, "round trip: no temporary file left");

  sloth_named_tensor *list = NULL;
  int m = -1;
  rc = sloth_load_safetensors(p, &list, &m);
  ok(rc == SLOTH_OK && m == n, "round trip: loaded %d tensors (%s)", m, sloth_last_error());
  for (int i = 0; i < n && rc == SLOTH_OK; i++)
    ok(identical(find(list, m, names[i]), ts[i]), "round trip: \"%s\" has the same dtype, shape and bits", names[i]);
  float t6[6];
  sloth_tensor *v = find(list, m, "view");
  ok(v && sloth_to_host(v, t6, sizeof t6) == SLOTH_OK && t6[1] == 4 && t6[2] == 2, "round trip: a view is saved row-major");
  sloth_named_tensors_free(list, m);

  /* every data range starts aligned to its element size and the data is packed */
  size_t len, start;
  uint8_t *file = read_file(p, &len);
  json_t *h = file ? header_of(file, len, &start) : NULL;
  bool aligned = h && start % 8 == 0, packed = true;
  uint64_t total = 0;
  const char *k;
  json_t *e;
  json_object_foreach(h, k, e) {
    if (!strcmp(k, "__metadata__")) continue;
    const char *dt = json_string_value(json_object_get(e, "dtype"));
    int64_t b = json_integer_value(json_array_get(json_object_get(e, "data_offsets"), 0));
    int64_t end = json_integer_value(json_array_get(json_object_get(e, "data_offsets"), 1));
    int64_t size = !strcmp(dt, "U8") || !strcmp(dt, "BOOL") ? 1 : 4;
    aligned &= b % size == 0;
    total += (uint64_t)(end - b);
  }
  packed = h && start + total == len;
  ok(aligned, "round trip: data starts 8-byte aligned and every tensor at a multiple of its element size");
  ok(packed, "round trip: the data is packed (no gaps, nothing after it)");
  json_decref(h);
  free(file);

  /* zero tensors */
  rc = sloth_save_safetensors(path_of("none.safetensors"), NULL, NULL, 0);
  list = NULL;
  m = -1;
  int rc2 = sloth_load_safetensors(path_of("none.safetensors"), &list, &m);
  ok(rc == SLOTH_OK && rc2 == SLOTH_OK && m == 0, "round trip: a file of no tensors (%s)", sloth_last_error());
  sloth_named_tensors_free(list, m);
  sloth_scope_end();
}

/* f16, i64 and f64, where the device takes them */
static void test_wide_dtypes(void) {
  sloth_scope_begin();
  uint16_t h[4] = {0x3c00, 0xc000, 0x7e01, 0x0001};
  int64_t l[3] = {INT64_MIN, -1, INT64_MAX};
  double d[2] = {3.141592653589793, -1e300};
  const char *names[] = {"f16", "i64", "f64"};
  sloth_tensor *ts[3] = {sloth_from_host(h, SLOTH_F16, 2, (int64_t[]){2, 2}), sloth_from_host(l, SLOTH_I64, 1, (int64_t[]){3}),
                         sloth_from_host(d, SLOTH_F64, 1, (int64_t[]){2})};
  const char *want[3] = {"F16", "I64", "F64"};
  for (int i = 0; i < 3; i++) {
    if (!ts[i]) {
      ok(1, "%s: # SKIP this device does not take it (%s)", names[i], sloth_last_error());
      continue;
    }
    const char *p = path_of("wide.safetensors");
    sloth_named_tensor *list = NULL;
    int m = 0;
    int rc = sloth_save_safetensors(p, &names[i], &ts[i], 1);
    if (rc == SLOTH_OK) rc = sloth_load_safetensors(p, &list, &m);
    ok(rc == SLOTH_OK && m == 1 && identical(list[0].tensor, ts[i]), "%s: round trip bit-exact (%s)", names[i], sloth_last_error());
    sloth_named_tensors_free(list, m);
    size_t len, start;
    uint8_t *file = read_file(p, &len);
    json_t *hd = file ? header_of(file, len, &start) : NULL;
    const char *dt = json_string_value(json_object_get(json_object_get(hd, names[i]), "dtype"));
    ok(dt && !strcmp(dt, want[i]), "%s: written as dtype %s", names[i], want[i]);
    json_decref(hd);
    free(file);
  }
  sloth_scope_end();
}

/* ------------------------------------------------------------------ the exact bytes */

static void test_layout(void) {
  sloth_scope_begin();
  float a[2] = {1.0f, -2.0f};
  sloth_tensor *t = sloth_from_host(a, SLOTH_F32, 1, (int64_t[]){2});
  const char *name = "a", *p = path_of("tiny.safetensors");
  ok(sloth_save_safetensors(p, &name, &t, 1) == SLOTH_OK, "layout: saved (%s)", sloth_last_error());
  /* 85 bytes of JSON padded with spaces to 88, then the floats */
  const char json[] = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}   ";
  uint8_t want[8 + 88 + 8] = {88, 0, 0, 0, 0, 0, 0, 0};
  memcpy(want + 8, json, 88);
  memcpy(want + 96, (const uint8_t[]){0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0}, 8);
  size_t len = 0, start = 0;
  uint8_t *file = read_file(p, &len);
  ok(file && len == sizeof want && !memcmp(file, want, len), "layout: the file is exactly the expected %zu bytes (got %zu)",
     sizeof want, len);
  json_t *h = file ? header_of(file, len, &start) : NULL;
  json_t *e = json_object_get(h, "a"), *meta = json_object_get(h, "__metadata__");
  json_t *shape = json_object_get(e, "shape"), *off = json_object_get(e, "data_offsets");
  ok(start == 96 && start % 8 == 0, "layout: the data starts at byte %zu, 8-byte aligned", start);
  ok(json_object_size(h) == 2 && !strcmp(json_string_value(json_object_get(e, "dtype")), "F32") && json_array_size(shape) == 1 &&
         json_integer_value(json_array_get(shape, 0)) == 2 && json_array_size(off) == 2 &&
         json_integer_value(json_array_get(off, 0)) == 0 && json_integer_value(json_array_get(off, 1)) == 8,
     "layout: the header parses back to dtype F32, shape [2], data_offsets [0, 8]");
  ok(json_is_string(json_object_get(meta, "format")) && !strcmp(json_string_value(json_object_get(meta, "format")), "pt"),
     "layout: __metadata__ says format pt (what transformers checks)");
  json_decref(h);
  free(file);
  sloth_scope_end();
}

/* ------------------------------------------------------------------ files in the Python writer's conventions */

/* Appends an 8-byte length and the JSON (padded to 8 if pad), then the data. */
static size_t build(uint8_t *out, const char *json, bool pad, const void *data, size_t n) {
  size_t len = strlen(json), padded = pad ? (len + 7) / 8 * 8 : len;
  for (int b = 0; b < 8; b++) out[b] = (uint8_t)((uint64_t)padded >> (8 * b));
  memcpy(out + 8, json, len);
  memset(out + 8 + len, ' ', padded - len);
  memcpy(out + 8 + padded, data, n);
  return 8 + padded + n;
}

static uint8_t PY_DATA[39];
static const char PY_JSON[] = /* safetensors' order: by alignment, then name; tensors as in the data */
    "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"hand-built\"},"
    "\"bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]},"
    "\"idx\":{\"dtype\":\"I32\",\"shape\":[3],\"data_offsets\":[24,36]},"
    "\"weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
    "\"mask\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[36,39]}}";

static size_t python_file(uint8_t *out, bool pad) {
  float w[4] = {0.5f, -1.5f, 2.25f, 8.0f}, b[2] = {-0.125f, 3.0f};
  int32_t idx[3] = {7, -3, 1 << 30};
  uint8_t mask[3] = {1, 0, 1};
  memcpy(PY_DATA, w, 16);
  memcpy(PY_DATA + 16, b, 8);
  memcpy(PY_DATA + 24, idx, 12);
  memcpy(PY_DATA + 36, mask, 3);
  return build(out, PY_JSON, pad, PY_DATA, sizeof PY_DATA);
}

static bool has(sloth_tensor *t, sloth_dtype dt, int rank, const int64_t *shape, const void *want) {
  if (!t || sloth_dtype_of(t) != dt || sloth_rank(t) != rank || memcmp(sloth_shape(t), shape, (size_t)rank * sizeof *shape)) return false;
  void *p = contents(t);
  bool eq = p && !memcmp(p, want, tensor_bytes(t));
  free(p);
  return eq;
}

static void test_python_file(void) {
  uint8_t buf[512];
  for (int pad = 1; pad >= 0; pad--) {
    const char *p = path_of("py.safetensors");
    ok(write_file(p, buf, python_file(buf, pad)), "python file: written");
    sloth_named_tensor *list = NULL;
    int n = 0;
    int rc = sloth_load_safetensors(p, &list, &n);
    ok(rc == SLOTH_OK && n == 4, "python file (%s header): loads 4 tensors (%s)", pad ? "padded" : "unpadded", sloth_last_error());
    ok(has(find(list, n, "weight"), SLOTH_F32, 2, (int64_t[]){2, 2}, PY_DATA) &&
           has(find(list, n, "bias"), SLOTH_F32, 1, (int64_t[]){2}, PY_DATA + 16) &&
           has(find(list, n, "idx"), SLOTH_I32, 1, (int64_t[]){3}, PY_DATA + 24) &&
           has(find(list, n, "mask"), SLOTH_BOOL, 1, (int64_t[]){3}, PY_DATA + 36),
       "python file: every tensor has its dtype, shape and values");
    sloth_named_tensors_free(list, n);
  }
}

/* ------------------------------------------------------------------ loading into existing tensors */

static void test_load_into(void) {
  sloth_scope_begin();
  uint8_t buf[512];
  const char *p = path_of("into.safetensors");
  write_file(p, buf, python_file(buf, true));
  float zeros[4] = {0}, got[4];
  sloth_tensor *w = sloth_from_host(zeros, SLOTH_F32, 2, (int64_t[]){2, 2});
  sloth_tensor *b = sloth_from_host(zeros, SLOTH_F32, 1, (int64_t[]){2});
  sloth_tensor *idx = sloth_from_host(zeros, SLOTH_F32, 1, (int64_t[]){3}); /* i32 in the file: converts */
  sloth_tensor *old_w = sloth_mul_scalar(w, 1.0);                           /* reads w before the load */

  const char *names[] = {"weight", "bias", "idx"};
  sloth_tensor *ts[] = {w, b, idx};
  int rc = sloth_load_safetensors_into(p, names, ts, 3);
  ok(rc == SLOTH_OK, "load_into: three tensors (%s)", sloth_last_error());
  ok(sloth_to_host(w, got, 16) == SLOTH_OK && !memcmp(got, PY_DATA, 16), "load_into: weight has the file's values");
  ok(sloth_to_host(b, got, 8) == SLOTH_OK && !memcmp(got, PY_DATA + 16, 8), "load_into: bias has the file's values");
  ok(sloth_to_host(idx, got, 12) == SLOTH_OK && got[0] == 7 && got[1] == -3 && got[2] == (float)(1 << 30),
     "load_into: i32 elements converted into an f32 tensor");
  ok(sloth_to_host(old_w, got, 16) == SLOTH_OK && !memcmp(got, zeros, 16), "load_into: a tensor read before the load keeps the old values");
  ok(sloth_dtype_of(idx) == SLOTH_F32 && !sloth_is_pending(w), "load_into: destinations keep their dtype and are computed");

  /* all or nothing: a missing name or a wrong shape changes nothing */
  sloth_tensor *w2 = sloth_from_host(zeros, SLOTH_F32, 2, (int64_t[]){2, 2});
  sloth_tensor *wrong = sloth_from_host(zeros, SLOTH_F32, 2, (int64_t[]){1, 2});
  const char *n1[] = {"weight", "missing.name"};
  sloth_tensor *t1[] = {w2, b};
  rc = sloth_load_safetensors_into(p, n1, t1, 2);
  ok(rc < 0 && strstr(sloth_last_error(), "missing.name"), "load_into: a missing name fails naming it (%s)", sloth_last_error());
  const char *n2[] = {"weight", "bias"};
  sloth_tensor *t2[] = {w2, wrong};
  rc = sloth_load_safetensors_into(p, n2, t2, 2);
  ok(rc == SLOTH_E_SHAPE && strstr(sloth_last_error(), "[2]") && strstr(sloth_last_error(), "[1,2]"),
     "load_into: a wrong shape fails naming both shapes (%s)", sloth_last_error());
  ok(sloth_to_host(w2, got, 16) == SLOTH_OK && !memcmp(got, zeros, 16), "load_into: nothing was assigned after a failure");

  /* bad arguments */
  sloth_tensor *gone = sloth_from_host(zeros, SLOTH_F32, 1, (int64_t[]){2});
  sloth_keep(gone);
  sloth_release(gone);
  const char *nb[] = {"bias"}, *nnull[] = {NULL};
  sloth_tensor *tb[] = {b}, *tgone[] = {gone}, *tnull[] = {NULL};
  struct {
    const char *what, *path;
    const char *const *names;
    sloth_tensor *const *ts;
    int n;
  } bad[] = {
      {"NULL path", NULL, nb, tb, 1},          {"NULL names", p, NULL, tb, 1},    {"NULL tensors", p, nb, NULL, 1},
      {"n < 0", p, nb, tb, -1},                {"a NULL name", p, nnull, tb, 1},  {"a NULL tensor", p, nb, tnull, 1},
      {"a released tensor", p, nb, tgone, 1},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    sloth_clear_error();
    rc = sloth_load_safetensors_into(bad[i].path, bad[i].names, bad[i].ts, bad[i].n);
    ok(rc == SLOTH_E_INVALID && sloth_last_error()[0], "load_into: %s gives SLOTH_E_INVALID (%s)", bad[i].what, sloth_last_error());
  }
  ok(sloth_load_safetensors_into(p, NULL, NULL, 0) == SLOTH_OK, "load_into: zero tensors is fine");
  sloth_scope_end();
}

/* ------------------------------------------------------------------ saving: atomic replacement and failures */

static void test_replace(void) {
  sloth_clear_error();
  sloth_scope_begin();
  const char *p = path_of("replace.safetensors"), *name = "x";
  float a[4] = {1, 2, 3, 4}, b[2] = {9, 8};
  sloth_tensor *ta = sloth_from_host(a, SLOTH_F32, 1, (int64_t[]){4}), *tb = sloth_from_host(b, SLOTH_F32, 1, (int64_t[]){2});
  ok(sloth_save_safetensors(p, &name, &ta, 1) == SLOTH_OK, "replace: first save");
  size_t old_len;
  uint8_t *old = read_file(p, &old_len);
  struct stat st0, st1;
  int fd = open(p, O_RDONLY); /* a reader of the old file */
  stat(p, &st0);
  ok(sloth_save_safetensors(p, &name, &tb, 1) == SLOTH_OK, "replace: second save over it (%s)", sloth_last_error());
  stat(p, &st1);
  uint8_t *again = malloc(old_len + 1);
  ssize_t got = pread(fd, again, old_len + 1, 0);
  ok(got == (ssize_t)old_len && !memcmp(again, old, old_len),
     "replace: a reader that opened the old file still reads all of it (a new file was renamed over, not rewritten)");
  ok(st0.st_ino != st1.st_ino, "replace: the path names a new file");
  close(fd);
  free(again);
  free(old);
  sloth_named_tensor *list = NULL;
  int n = 0;
  ok(sloth_load_safetensors(p, &list, &n) == SLOTH_OK && n == 1 && identical(list[0].tensor, tb), "replace: the file has the new content");
  sloth_named_tensors_free(list, n);
  ok(temp_files(dir) == 0, "replace: no temporary file left");
  sloth_scope_end();
}

static void test_save_errors(void) {
  sloth_scope_begin();
  float v[2] = {1, 2};
  sloth_tensor *t = sloth_from_host(v, SLOTH_F32, 1, (int64_t[]){2});
  sloth_tensor *gone = sloth_keep(sloth_from_host(v, SLOTH_F32, 1, (int64_t[]){2}));
  sloth_release(gone);
  const char *p = path_of("bad.safetensors");
  const char *n1[] = {"x"}, *n2[] = {"x", "x"}, *nempty[] = {""}, *nnull[] = {NULL}, *nmeta[] = {"__metadata__"};
  const char *nutf[] = {"bad\xff"};
  sloth_tensor *t1[] = {t}, *t2[] = {t, t}, *tnull[] = {NULL}, *tgone[] = {gone};
  struct {
    const char *what, *path;
    const char *const *names;
    sloth_tensor *const *ts;
    int n;
  } bad[] = {
      {"NULL path", NULL, n1, t1, 1},       {"empty path", "", n1, t1, 1},       {"n < 0", p, n1, t1, -1},
      {"NULL names", p, NULL, t1, 1},       {"NULL tensors", p, n1, NULL, 1},    {"a NULL name", p, nnull, t1, 1},
      {"an empty name", p, nempty, t1, 1},  {"a name given twice", p, n2, t2, 2}, {"the name __metadata__", p, nmeta, t1, 1},
      {"a NULL tensor", p, n1, tnull, 1},   {"a released tensor", p, n1, tgone, 1}, {"a name not UTF-8", p, nutf, t1, 1},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    sloth_clear_error();
    int rc = sloth_save_safetensors(bad[i].path, bad[i].names, bad[i].ts, bad[i].n);
    ok(rc == SLOTH_E_INVALID && sloth_last_error()[0] && access(p, F_OK) != 0,
       "save: %s gives SLOTH_E_INVALID and no file (%s)", bad[i].what, sloth_last_error());
  }

  /* a failed save leaves an existing file as it was */
  ok(sloth_save_safetensors(p, n1, t1, 1) == SLOTH_OK, "save: a file to keep");
  size_t len0, len1;
  uint8_t *before = read_file(p, &len0);
  /* an index out of range fails the read of the second tensor, after the
   * temporary file was made and half written */
  sloth_tensor *oob = sloth_gather(t, 0, sloth_from_host((int32_t[]){5}, SLOTH_I32, 1, (int64_t[]){1}));
  const char *nfail[] = {"x", "oob"};
  sloth_tensor *tfail[] = {t, oob};
  int rc = sloth_save_safetensors(p, nfail, tfail, 2);
  ok(rc < 0 && temp_files(dir) == 0, "save: a read failing mid-write fails, no temporary file (%d: %s)", rc, sloth_last_error());
  uint8_t *after = read_file(p, &len1);
  ok(before && after && len0 == len1 && !memcmp(before, after, len0), "save: the old file is untouched");
  free(before);
  free(after);

  /* unwritable places */
  char sub[300], sub_file[300];
  snprintf(sub, sizeof sub, "%s/adir", dir);
  mkdir(sub, 0700);
  const char *places[] = {"/nonexistent-sloth-dir/x.safetensors", path_of("bad.safetensors/x"), sub};
  const char *why[] = {"a missing directory", "a file as directory", "an existing directory as path"};
  for (int i = 0; i < 3; i++) {
    int rc = sloth_save_safetensors(places[i], n1, t1, 1);
    ok(rc < 0 && sloth_last_error()[0] && temp_files(dir) == 0, "save to %s fails, no temporary file (%s)", why[i], sloth_last_error());
  }
  snprintf(sub_file, sizeof sub_file, "%s/ro/x.safetensors", dir);
  snprintf(sub, sizeof sub, "%s/ro", dir);
  mkdir(sub, 0500);
  if (geteuid() == 0) ok(1, "save to a read-only directory # SKIP running as root");
  else {
    int rc = sloth_save_safetensors(sub_file, n1, t1, 1);
    ok(rc < 0 && temp_files(sub) == 0, "save to a read-only directory fails, no temporary file (%s)", sloth_last_error());
  }
  ok(runtime_works(), "save: the runtime still works");
  sloth_scope_end();
}

/* ------------------------------------------------------------------ hostile files */

/* Loading bytes[0..n) fails with a message (and `want` if not 0), with
 * load and load_into both, and the runtime still works. */
static void expect_bad(const char *what, const void *bytes, size_t n, sloth_status want, const char *mention) {
  const char *p = path_of("hostile.safetensors");
  write_file(p, bytes, n);
  sloth_named_tensor *list = (sloth_named_tensor *)1;
  int count = -1;
  sloth_clear_error();
  int rc = sloth_load_safetensors(p, &list, &count);
  char msg[256];
  snprintf(msg, sizeof msg, "%s", sloth_last_error());
  float z[2] = {0};
  sloth_scope_begin();
  sloth_tensor *dst = sloth_from_host(z, SLOTH_F32, 1, (int64_t[]){2});
  const char *name = "a";
  sloth_clear_error();
  int rc2 = sloth_load_safetensors_into(p, &name, &dst, 1);
  bool untouched = sloth_to_host(dst, z, sizeof z) == SLOTH_OK && z[0] == 0 && z[1] == 0;
  sloth_scope_end();
  ok(rc < 0 && (!want || rc == want) && msg[0] && list == NULL && count == 0 && (!mention || strstr(msg, mention)) && rc2 < 0 &&
         untouched && runtime_works(),
     "hostile: %s fails (%d: %s)", what, rc, msg);
}

/* A file with this header (unpadded) and `data` bytes of zeros. */
static void expect_bad_header(const char *what, const char *json, size_t data, sloth_status want, const char *mention) {
  static uint8_t buf[1 << 12], zeros[256];
  expect_bad(what, buf, build(buf, json, false, zeros, data), want, mention);
}

#define E(fields) "{\"a\":{" fields "}}"
#define GOOD_FIELDS "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]"
#define WITH_SHAPE(shape) E("\"dtype\":\"F32\",\"shape\":" shape ",\"data_offsets\":[0,8]")
#define WITH_OFFSETS(off) E("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" off)

static void test_hostile(void) {
  uint8_t buf[512];
  size_t full = python_file(buf, true);
  bool all = true;
  for (size_t len = 0; len < full; len++) {
    const char *p = path_of("prefix.safetensors");
    write_file(p, buf, len);
    sloth_named_tensor *list = NULL;
    int n = 0;
    sloth_clear_error();
    int rc = sloth_load_safetensors(p, &list, &n);
    if (!(rc < 0 && sloth_last_error()[0] && !list && !n)) {
      diag("prefix of %zu bytes: rc %d", len, rc);
      all = false;
    }
  }
  ok(all, "hostile: every one of the %zu proper prefixes of a valid file fails with a message", full);
  ok(runtime_works(), "hostile: the runtime works after the prefixes");

  /* header lengths */
  uint8_t h[64] = {0};
  memcpy(h + 8, "{}", 2);
  for (int b = 0; b < 8; b++) h[b] = 0xff;
  expect_bad("header length 2^64 - 1", h, 16, SLOTH_E_INVALID, "header length");
  memset(h, 0, 8);
  h[7] = 0x80;
  expect_bad("header length 2^63", h, 16, SLOTH_E_INVALID, "header length");
  memset(h, 0, 8);
  h[0] = 9; /* one past the 8 bytes that follow */
  expect_bad("header length past the end of the file", h, 16, SLOTH_E_INVALID, "header length");
  {
    /* a header over 100 MB in a file that big (sparse) */
    const char *p = path_of("huge.safetensors");
    uint64_t big = 100000001;
    uint8_t l[8];
    for (int b = 0; b < 8; b++) l[b] = (uint8_t)(big >> (8 * b));
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    bool made = fd >= 0 && write(fd, l, 8) == 8 && ftruncate(fd, (off_t)(8 + big)) == 0;
    if (fd >= 0) close(fd);
    sloth_named_tensor *list = NULL;
    int n = 0;
    int rc = made ? sloth_load_safetensors(p, &list, &n) : 0;
    ok(made && rc == SLOTH_E_INVALID && strstr(sloth_last_error(), "100 MB"), "hostile: a header over 100 MB fails (%s)",
       sloth_last_error());
    unlink(p);
  }
  expect_bad("an empty file", "", 0, SLOTH_E_INVALID, NULL);
  expect_bad("a file of 7 bytes", "\0\0\0\0\0\0\0", 7, SLOTH_E_INVALID, NULL);

  /* JSON */
  expect_bad_header("invalid JSON", "{\"a\":", 0, SLOTH_E_INVALID, "JSON");
  expect_bad_header("not JSON at all", "hello world", 0, SLOTH_E_INVALID, "JSON");
  expect_bad_header("a trailing comma", "{\"a\":{" GOOD_FIELDS ",}}", 8, SLOTH_E_INVALID, "JSON");
  expect_bad_header("garbage after the object", "{} x", 0, SLOTH_E_INVALID, "JSON");
  expect_bad_header("an array header", "[1,2]", 0, SLOTH_E_INVALID, "object");
  expect_bad_header("invalid UTF-8 in a name", "{\"a\xff\":{" GOOD_FIELDS "}}", 8, SLOTH_E_INVALID, NULL);
  expect_bad("a NUL byte in the header", (const uint8_t[]){4, 0, 0, 0, 0, 0, 0, 0, '{', '}', 0, ' '}, 12, SLOTH_E_INVALID, NULL);
  expect_bad_header("an escaped NUL in a name", "{\"a\\u0000b\":{" GOOD_FIELDS "}}", 8, SLOTH_E_INVALID, NULL);
  expect_bad_header("duplicate keys", "{\"a\":{" GOOD_FIELDS "},\"a\":{" GOOD_FIELDS "}}", 8, SLOTH_E_INVALID, "duplicate");
  {
    /* deeper than Jansson's parser allows (2048) */
    static char deep[20100];
    int k = sprintf(deep, "{\"__metadata__\":");
    for (int d = 0; d < 10000; d++) deep[k++] = '[';
    for (int d = 0; d < 10000; d++) deep[k++] = ']';
    strcpy(deep + k, "}");
    static uint8_t file[20200];
    expect_bad("deep nesting", file, build(file, deep, true, "", 0), SLOTH_E_INVALID, NULL);
  }
  expect_bad_header("__metadata__ not an object", "{\"__metadata__\":[]," "\"a\":{" GOOD_FIELDS "}}", 8, SLOTH_E_INVALID, "__metadata__");
  expect_bad_header("__metadata__ with a number", "{\"__metadata__\":{\"k\":1}}", 0, SLOTH_E_INVALID, "__metadata__");

  /* entries */
  expect_bad_header("an entry that is a number", "{\"a\":1}", 0, SLOTH_E_INVALID, "\"a\"");
  expect_bad_header("an entry that is an array", "{\"a\":[\"F32\",[2],[0,8]]}", 8, SLOTH_E_INVALID, "\"a\"");
  expect_bad_header("an entry that is null", "{\"a\":null}", 0, SLOTH_E_INVALID, "\"a\"");
  expect_bad_header("no dtype", E("\"shape\":[2],\"data_offsets\":[0,8]"), 8, SLOTH_E_INVALID, "dtype");
  expect_bad_header("a numeric dtype", E("\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]"), 8, SLOTH_E_INVALID, "dtype");
  expect_bad_header("no shape", E("\"dtype\":\"F32\",\"data_offsets\":[0,8]"), 8, SLOTH_E_INVALID, "shape");
  expect_bad_header("a shape that is a number", E("\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]"), 8, SLOTH_E_INVALID, "shape");
  expect_bad_header("no data_offsets", E("\"dtype\":\"F32\",\"shape\":[2]"), 8, SLOTH_E_INVALID, "data_offsets");

  /* unknown dtypes name the tensor */
  expect_bad_header("dtype BF16", "{\"w.bf\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, SLOTH_E_UNSUPPORTED, "w.bf");
  expect_bad_header("dtype F8_E4M3", "{\"w8\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, SLOTH_E_UNSUPPORTED,
                    "F8_E4M3");
  expect_bad_header("dtype f32 (lower case)", E("\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]"), 8, SLOTH_E_UNSUPPORTED, "\"a\"");

  /* shapes */
  expect_bad_header("a negative dimension", WITH_SHAPE("[-2]"), 8, SLOTH_E_INVALID, "shape");
  expect_bad_header("a float dimension", WITH_SHAPE("[2.0]"), 8, SLOTH_E_INVALID, "shape");
  expect_bad_header("a string dimension", WITH_SHAPE("[\"2\"]"), 8, SLOTH_E_INVALID, "shape");
  expect_bad_header("a dimension too big for JSON integers", WITH_SHAPE("[99999999999999999999]"), 8, SLOTH_E_INVALID, NULL);
  expect_bad_header("a huge dimension", WITH_SHAPE("[4611686018427387904]"), 8, SLOTH_E_INVALID, NULL);
  expect_bad_header("numel overflow", WITH_SHAPE("[4294967296,4294967296,2]"), 8, SLOTH_E_INVALID, "overflow");
  expect_bad_header("numel * size overflow", E("\"dtype\":\"F64\",\"shape\":[1152921504606846976,2],\"data_offsets\":[0,8]"), 8,
                    SLOTH_E_INVALID, "overflow");
  expect_bad_header("rank 9", WITH_SHAPE("[1,1,1,1,1,1,1,1,2]"), 8, SLOTH_E_INVALID, "rank");

  /* data_offsets */
  expect_bad_header("data_offsets past the data", WITH_OFFSETS("[0,8]"), 7, SLOTH_E_INVALID, "data_offsets");
  expect_bad_header("data_offsets far out of range", WITH_OFFSETS("[9223372036854775800,9223372036854775807]"), 8,
                    SLOTH_E_INVALID, "data_offsets");
  expect_bad_header("data_offsets reversed", WITH_OFFSETS("[8,0]"), 8, SLOTH_E_INVALID, "data_offsets");
  expect_bad_header("data_offsets of one number", WITH_OFFSETS("[8]"), 8, SLOTH_E_INVALID, "data_offsets");
  expect_bad_header("data_offsets of three numbers", WITH_OFFSETS("[0,8,8]"), 8, SLOTH_E_INVALID, "data_offsets");
  expect_bad_header("negative data_offsets", WITH_OFFSETS("[-8,0]"), 8, SLOTH_E_INVALID, "data_offsets");
  expect_bad_header("float data_offsets", WITH_OFFSETS("[0.0,8.0]"), 8, SLOTH_E_INVALID, "data_offsets");
  expect_bad_header("a range shorter than the shape", WITH_OFFSETS("[0,4]"), 8, SLOTH_E_INVALID, "data_offsets");
  expect_bad_header("a range longer than the shape", WITH_OFFSETS("[0,12]"), 12, SLOTH_E_INVALID, "data_offsets");
  expect_bad_header("a bad second entry", "{\"a\":{" GOOD_FIELDS "},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,16]}}", 8,
                    SLOTH_E_INVALID, "\"b\"");

  /* paths */
  sloth_named_tensor *list = NULL;
  int n = 0;
  sloth_clear_error();
  ok(sloth_load_safetensors(path_of("no-such-file"), &list, &n) == SLOTH_E_INVALID && strstr(sloth_last_error(), "no-such-file"),
     "hostile: a missing file fails naming it (%s)", sloth_last_error());
  ok(sloth_load_safetensors(dir, &list, &n) == SLOTH_E_INVALID && strstr(sloth_last_error(), "regular"),
     "hostile: a directory fails (%s)", sloth_last_error());
  ok(sloth_load_safetensors(NULL, &list, &n) == SLOTH_E_INVALID, "load: a NULL path fails");
  ok(sloth_load_safetensors(path_of("py.safetensors"), NULL, &n) == SLOTH_E_INVALID, "load: a NULL output fails");
  ok(sloth_load_safetensors(path_of("py.safetensors"), &list, NULL) == SLOTH_E_INVALID, "load: a NULL count fails");
  sloth_named_tensors_free(NULL, 3); /* does nothing */
  ok(runtime_works(), "hostile: the runtime still works at the end");
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/sloth-st-XXXXXX");
  if (!mkdtemp(dir)) skip_all("no temporary directory");
  if (sloth_init(NULL) != SLOTH_OK) {
    remove_all(dir);
    skip_all("no device");
  }
  test_round_trip();
  test_wide_dtypes();
  test_layout();
  test_python_file();
  test_load_into();
  test_replace();
  test_save_errors();
  test_hostile();
  remove_all(dir);
  return tap_done();
}
