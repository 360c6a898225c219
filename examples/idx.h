/* idx.h - reads the IDX files of MNIST and Fashion-MNIST (header-only, zlib).
 *
 * IDX: a 4-byte big-endian magic (0x00 0x00 type ndims; type 0x08 is
 * unsigned byte), ndims big-endian u32 sizes, then the elements row-major.
 * The files may be gzip-compressed or plain (gzread reads both).
 *
 *   idx_file f;
 *   char err[256];
 *   if (idx_read("train-images-idx3-ubyte.gz", 3, &f, err, sizeof err) != 0) puts(err);
 *   ... f.dims[0] images of f.dims[1] x f.dims[2] bytes in f.data ...
 *   idx_free(&f);
 *
 * fmnist_load reads the four files of a data set directory (train or t10k)
 * and checks that they agree. */
#ifndef SLOTH_EXAMPLES_IDX_H
#define SLOTH_EXAMPLES_IDX_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct idx_file {
  int ndims;
  int64_t dims[4];
  int64_t count; /* product of dims */
  uint8_t *data; /* count bytes */
} idx_file;

static int idx_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4), unused));
static int idx_fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && errlen) vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

/* Reads exactly n bytes; 0 on success. */
static int idx_gzread_all(gzFile gz, void *dst, size_t n) {
  uint8_t *p = (uint8_t *)dst;
  while (n > 0) {
    unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
    int got = gzread(gz, p, chunk);
    if (got <= 0) return -1;
    p += got;
    n -= (size_t)got;
  }
  return 0;
}

static void idx_free(idx_file *f) __attribute__((unused));
static void idx_free(idx_file *f) {
  if (!f) return;
  free(f->data);
  memset(f, 0, sizeof *f);
}

/* Reads an unsigned-byte IDX file with want_ndims dimensions (1 to 4).
 * 0 on success; -1 with a message in err otherwise. */
static int idx_read(const char *path, int want_ndims, idx_file *f, char *err, size_t errlen) __attribute__((unused));
static int idx_read(const char *path, int want_ndims, idx_file *f, char *err, size_t errlen) {
  memset(f, 0, sizeof *f);
  if (want_ndims < 1 || want_ndims > 4) return idx_fail(err, errlen, "%s: bad dimension count %d", path, want_ndims);
  errno = 0;
  gzFile gz = gzopen(path, "rb");
  if (!gz) return idx_fail(err, errlen, "%s: %s", path, errno ? strerror(errno) : "cannot open");
  gzbuffer(gz, 1 << 17);
  uint8_t head[4 + 4 * 4];
  int rc = -1;
  if (idx_gzread_all(gz, head, 4) != 0) {
    idx_fail(err, errlen, "%s: too short for an IDX header (truncated or not an IDX file)", path);
    goto out;
  }
  if (head[0] != 0 || head[1] != 0 || head[2] != 0x08 || head[3] != want_ndims) {
    idx_fail(err, errlen,
             "%s: bad magic number 0x%02x%02x%02x%02x (want 0x000008%02x: unsigned bytes, %d dimensions)", path,
             head[0], head[1], head[2], head[3], want_ndims, want_ndims);
    goto out;
  }
  if (idx_gzread_all(gz, head + 4, 4 * (size_t)want_ndims) != 0) {
    idx_fail(err, errlen, "%s: truncated IDX header", path);
    goto out;
  }
  f->ndims = want_ndims;
  f->count = 1;
  for (int d = 0; d < want_ndims; d++) {
    const uint8_t *b = head + 4 + 4 * d;
    f->dims[d] = ((int64_t)b[0] << 24) | ((int64_t)b[1] << 16) | ((int64_t)b[2] << 8) | (int64_t)b[3];
    if (f->dims[d] <= 0 || f->dims[d] > (1 << 28)) {
      idx_fail(err, errlen, "%s: implausible size %lld in dimension %d", path, (long long)f->dims[d], d);
      goto out;
    }
    f->count *= f->dims[d];
    if (f->count > ((int64_t)1 << 34)) {
      idx_fail(err, errlen, "%s: implausibly large (%lld elements)", path, (long long)f->count);
      goto out;
    }
  }
  f->data = (uint8_t *)malloc((size_t)f->count);
  if (!f->data) {
    idx_fail(err, errlen, "%s: out of memory for %lld bytes", path, (long long)f->count);
    goto out;
  }
  if (idx_gzread_all(gz, f->data, (size_t)f->count) != 0) {
    int zerr;
    const char *msg = gzerror(gz, &zerr);
    idx_fail(err, errlen, "%s: truncated: the header announces %lld bytes of data%s%s", path, (long long)f->count,
             zerr != Z_OK ? ": " : "", zerr != Z_OK ? msg : "");
    goto out;
  }
  uint8_t extra;
  if (gzread(gz, &extra, 1) != 0) {
    idx_fail(err, errlen, "%s: trailing bytes after the %lld announced by the header", path, (long long)f->count);
    goto out;
  }
  rc = 0;
out:
  gzclose(gz);
  if (rc != 0) idx_free(f);
  return rc;
}

/* One split of Fashion-MNIST (or MNIST): n images of rows x cols bytes and
 * n labels in [0, 10). */
typedef struct fmnist_set {
  int64_t n, rows, cols;
  uint8_t *images; /* n * rows * cols */
  uint8_t *labels; /* n */
} fmnist_set;

static void fmnist_free(fmnist_set *s) __attribute__((unused));
static void fmnist_free(fmnist_set *s) {
  if (!s) return;
  free(s->images);
  free(s->labels);
  memset(s, 0, sizeof *s);
}

/* Opens dir/name.gz, or dir/name when that is absent (gunzipped files). */
static void fmnist_path(char *out, size_t len, const char *dir, const char *name) {
  snprintf(out, len, "%s/%s.gz", dir, name);
  FILE *probe = fopen(out, "rb");
  if (probe) {
    fclose(probe);
    return;
  }
  char plain[4096];
  snprintf(plain, sizeof plain, "%s/%s", dir, name);
  probe = fopen(plain, "rb");
  if (probe) {
    fclose(probe);
    snprintf(out, len, "%s", plain);
  }
}

/* split: "train" or "t10k". 0 on success, -1 with a message in err. */
static int fmnist_load(const char *dir, const char *split, fmnist_set *s, char *err, size_t errlen) __attribute__((unused));
static int fmnist_load(const char *dir, const char *split, fmnist_set *s, char *err, size_t errlen) {
  memset(s, 0, sizeof *s);
  char name[256], path[4096];
  idx_file im, lb;
  snprintf(name, sizeof name, "%s-images-idx3-ubyte", split);
  fmnist_path(path, sizeof path, dir, name);
  if (idx_read(path, 3, &im, err, errlen) != 0) return -1;
  snprintf(name, sizeof name, "%s-labels-idx1-ubyte", split);
  fmnist_path(path, sizeof path, dir, name);
  if (idx_read(path, 1, &lb, err, errlen) != 0) {
    idx_free(&im);
    return -1;
  }
  if (im.dims[0] != lb.dims[0]) {
    idx_fail(err, errlen, "%s/%s: %lld images but %lld labels", dir, split, (long long)im.dims[0],
             (long long)lb.dims[0]);
    goto bad;
  }
  for (int64_t i = 0; i < lb.count; i++)
    if (lb.data[i] > 9) {
      idx_fail(err, errlen, "%s: label %d of image %lld is not a class in 0..9", path, lb.data[i], (long long)i);
      goto bad;
    }
  s->n = im.dims[0];
  s->rows = im.dims[1];
  s->cols = im.dims[2];
  s->images = im.data;
  s->labels = lb.data;
  return 0;
bad:
  idx_free(&im);
  idx_free(&lb);
  return -1;
}

#endif
