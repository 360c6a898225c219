/* test_conv.c - pad, as_strided, conv2d and pooling against direct loops:
 * strides, padding, dilation and groups; bad geometry gives clear errors. */
#include <sloth.h>

#include "tap.h"

#include <stdbool.h>
#include <string.h>

static unsigned rng = 777;
static float frand(void) {
  rng = rng * 1103515245u + 12345u;
  return (float)((rng >> 9) & 0xffff) / 65536.0f - 0.5f;
}
static void fill(float *p, int64_t n) {
  for (int64_t i = 0; i < n; i++) p[i] = frand();
}

static float X[1 << 16], Wt[1 << 14], Bs[64], Y[1 << 17], G[1 << 17];

static void ref_conv(int N, int C, int H, int W, int O, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                     int g, int OH, int OW, const float *bias) {
  int Cg = C / g, Og = O / g;
  for (int n = 0; n < N; n++)
    for (int o = 0; o < O; o++)
      for (int y = 0; y < OH; y++)
        for (int x = 0; x < OW; x++) {
          double acc = bias ? bias[o] : 0;
          int grp = o / Og;
          for (int c = 0; c < Cg; c++)
            for (int i = 0; i < kh; i++)
              for (int j = 0; j < kw; j++) {
                int iy = y * sh - ph + i * dh, ix = x * sw - pw + j * dw;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                acc += (double)X[((n * C + grp * Cg + c) * H + iy) * W + ix] * Wt[((o * Cg + c) * kh + i) * kw + j];
              }
          Y[((n * O + o) * OH + y) * OW + x] = (float)acc;
        }
}

static void conv_case(int N, int C, int H, int W, int O, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                      int g, bool with_bias) {
  int OH = (H + 2 * ph - dh * (kh - 1) - 1) / sh + 1, OW = (W + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
  fill(X, (int64_t)N * C * H * W);
  fill(Wt, (int64_t)O * (C / g) * kh * kw);
  fill(Bs, O);
  ref_conv(N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, g, OH, OW, with_bias ? Bs : NULL);
  sloth_scope_begin();
  sloth_tensor *x = sloth_from_host(X, SLOTH_F32, 4, (int64_t[]){N, C, H, W});
  sloth_tensor *w = sloth_from_host(Wt, SLOTH_F32, 4, (int64_t[]){O, C / g, kh, kw});
  sloth_tensor *b = with_bias ? sloth_from_host(Bs, SLOTH_F32, 1, (int64_t[]){O}) : NULL;
  sloth_tensor *y = sloth_conv2d(x, w, b, sh, sw, ph, pw, dh, dw, g);
  int64_t n = (int64_t)N * O * OH * OW;
  bool shape_ok = y && sloth_rank(y) == 4 && sloth_dim(y, 2) == OH && sloth_dim(y, 3) == OW;
  int rc = y ? sloth_to_host(y, G, (size_t)n * sizeof(float)) : -1;
  double e = rc == SLOTH_OK ? tap_max_err(G, Y, n, 1e-4, 1e-4) : INFINITY;
  ok(shape_ok && rc == SLOTH_OK && e <= 1,
     "conv2d N%d C%d %dx%d O%d k%dx%d s%d,%d p%d,%d d%d,%d g%d%s (err %.3g) %s", N, C, H, W, O, kh, kw, sh, sw, ph, pw,
     dh, dw, g, with_bias ? " +bias" : "", e, rc == SLOTH_OK ? "" : sloth_last_error());
  sloth_scope_end();
}

static void ref_pool(bool max, int N, int C, int H, int W, int kh, int kw, int sh, int sw, int ph, int pw, int OH, int OW) {
  for (int nc = 0; nc < N * C; nc++)
    for (int y = 0; y < OH; y++)
      for (int x = 0; x < OW; x++) {
        double acc = max ? -INFINITY : 0;
        for (int i = 0; i < kh; i++)
          for (int j = 0; j < kw; j++) {
            int iy = y * sh - ph + i, ix = x * sw - pw + j;
            bool in = iy >= 0 && iy < H && ix >= 0 && ix < W;
            double v = in ? X[(nc * H + iy) * W + ix] : (max ? -INFINITY : 0);
            acc = max ? fmax(acc, v) : acc + v;
          }
        Y[(nc * OH + y) * OW + x] = (float)(max ? acc : acc / (kh * kw));
      }
}

static void pool_case(bool max, int N, int C, int H, int W, int kh, int kw, int sh, int sw, int ph, int pw) {
  int OH = (H + 2 * ph - kh) / sh + 1, OW = (W + 2 * pw - kw) / sw + 1;
  fill(X, (int64_t)N * C * H * W);
  ref_pool(max, N, C, H, W, kh, kw, sh, sw, ph, pw, OH, OW);
  sloth_scope_begin();
  sloth_tensor *x = sloth_from_host(X, SLOTH_F32, 4, (int64_t[]){N, C, H, W});
  int64_t launches = sloth_counter("kernel_launch");
  sloth_tensor *y = max ? sloth_max_pool2d(x, kh, kw, sh, sw, ph, pw) : sloth_avg_pool2d(x, kh, kw, sh, sw, ph, pw);
  int64_t n = (int64_t)N * C * OH * OW;
  int rc = y ? sloth_to_host(y, G, (size_t)n * sizeof(float)) : -1;
  double e = rc == SLOTH_OK ? tap_max_err(G, Y, n, 1e-5, 1e-5) : INFINITY;
  ok(rc == SLOTH_OK && e <= 1 && sloth_counter("kernel_launch") - launches == 1,
     "%s_pool2d %dx%d k%dx%d s%d,%d p%d,%d in one kernel (err %.3g)", max ? "max" : "avg", H, W, kh, kw, sh, sw, ph, pw, e);
  sloth_scope_end();
}

/* PyTorch's adaptive windows: rows floor(i H / OH) .. ceil((i + 1) H / OH) - 1 */
static void ref_adaptive(int N, int C, int H, int W, int OH, int OW) {
  for (int n = 0; n < N * C; n++)
    for (int i = 0; i < OH; i++)
      for (int j = 0; j < OW; j++) {
        int h0 = i * H / OH, h1 = ((i + 1) * H + OH - 1) / OH, w0 = j * W / OW, w1 = ((j + 1) * W + OW - 1) / OW;
        double acc = 0;
        for (int h = h0; h < h1; h++)
          for (int w = w0; w < w1; w++) acc += X[(n * H + h) * W + w];
        Y[(n * OH + i) * OW + j] = (float)(acc / ((h1 - h0) * (w1 - w0)));
      }
}

static void adaptive_case(int N, int C, int H, int W, int OH, int OW) {
  fill(X, (int64_t)N * C * H * W);
  ref_adaptive(N, C, H, W, OH, OW);
  sloth_tensor *x = sloth_from_host(X, SLOTH_F32, 4, (int64_t[]){N, C, H, W});
  sloth_tensor *y = sloth_adaptive_avg_pool2d(x, OH, OW);
  int n = N * C * OH * OW;
  ok(y && sloth_rank(y) == 4 && sloth_dim(y, 2) == OH && sloth_dim(y, 3) == OW &&
         sloth_to_host(y, G, (size_t)n * sizeof(float)) == SLOTH_OK && tap_max_err(G, Y, n, 1e-5, 1e-5) <= 1,
     "adaptive_avg_pool2d [%d,%d,%d,%d] -> %dx%d", N, C, H, W, OH, OW);
  sloth_release(y);
  sloth_release(x);
}

static void views(void) {
  sloth_scope_begin();
  float v[6] = {1, 2, 3, 4, 5, 6}, out[20];
  sloth_tensor *x = sloth_from_host(v, SLOTH_F32, 2, (int64_t[]){2, 3});
  sloth_tensor *p = sloth_pad(x, (int64_t[]){1, 0, 0, 2}, -1.0);
  float w2[15] = {-1, -1, -1, -1, -1, 1, 2, 3, -1, -1, 4, 5, 6, -1, -1};
  ok(p && sloth_dim(p, 0) == 3 && sloth_dim(p, 1) == 5 && sloth_to_host(p, out, 15 * sizeof(float)) == SLOTH_OK &&
         memcmp(out, w2, sizeof w2) == 0,
     "pad [2,3] by (1,0),(0,2) with -1");
  /* sliding windows of a vector: [4, 3] windows of arange(6) */
  sloth_tensor *r = sloth_arange(0, 6, 1, SLOTH_F32);
  sloth_tensor *win = sloth_as_strided(r, 2, (int64_t[]){4, 3}, (int64_t[]){1, 1}, 0);
  float ww[12] = {0, 1, 2, 1, 2, 3, 2, 3, 4, 3, 4, 5};
  ok(win && sloth_to_host(win, out, sizeof ww) == SLOTH_OK && memcmp(out, ww, sizeof ww) == 0, "as_strided sliding windows");
  ok(sloth_as_strided(r, 2, (int64_t[]){4, 3}, (int64_t[]){2, 1}, 0) == NULL && sloth_last_status() == SLOTH_E_INVALID,
     "as_strided past the end fails: %s", sloth_last_error());
  ok(sloth_pad(x, (int64_t[]){-1, 0, 0, 0}, 0) == NULL && sloth_last_status() == SLOTH_E_INVALID, "negative pad fails");
  sloth_clear_error();
  sloth_scope_end();
}

static void bad_geometry(void) {
  sloth_scope_begin();
  sloth_tensor *x = sloth_zeros(SLOTH_F32, 4, (int64_t[]){1, 4, 5, 5});
  sloth_tensor *w = sloth_zeros(SLOTH_F32, 4, (int64_t[]){8, 4, 7, 7});
  ok(sloth_conv2d(x, w, NULL, 1, 1, 0, 0, 1, 1, 1) == NULL && sloth_last_status() == SLOTH_E_SHAPE,
     "a 7x7 kernel on a 5x5 input: %s", sloth_last_error());
  sloth_tensor *w3 = sloth_zeros(SLOTH_F32, 4, (int64_t[]){8, 3, 3, 3});
  ok(sloth_conv2d(x, w3, NULL, 1, 1, 1, 1, 1, 1, 1) == NULL && sloth_last_status() == SLOTH_E_SHAPE,
     "weight channels that do not match: %s", sloth_last_error());
  sloth_tensor *w2 = sloth_zeros(SLOTH_F32, 4, (int64_t[]){6, 2, 3, 3});
  ok(sloth_conv2d(x, w2, NULL, 1, 1, 1, 1, 1, 1, 4) == NULL, "channels that do not split into groups: %s", sloth_last_error());
  ok(sloth_conv2d(x, w2, NULL, 0, 1, 1, 1, 1, 1, 2) == NULL && sloth_last_status() == SLOTH_E_INVALID, "stride 0: %s",
     sloth_last_error());
  ok(sloth_max_pool2d(sloth_zeros(SLOTH_F32, 2, (int64_t[]){3, 3}), 2, 2, 2, 2, 0, 0) == NULL, "pooling a rank-2 tensor: %s",
     sloth_last_error());
  ok(sloth_adaptive_avg_pool2d(x, 0, 2) == NULL && sloth_last_status() == SLOTH_E_INVALID, "adaptive to 0x2: %s",
     sloth_last_error());
  sloth_clear_error();
  float out[8];
  sloth_tensor *y = sloth_conv2d(x, w2, NULL, 1, 1, 1, 1, 1, 1, 2);
  ok(y && sloth_to_host(sloth_sum(y, NULL, 0, 0), out, 4) == SLOTH_OK && out[0] == 0.0f, "the runtime works afterwards");
  sloth_scope_end();
}

int main(void) {
  if (sloth_init(NULL) != SLOTH_OK) skip_all(sloth_last_error());
  views();
  conv_case(2, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, true);
  conv_case(1, 4, 9, 7, 6, 3, 2, 2, 1, 0, 1, 1, 1, 1, false);
  conv_case(2, 4, 10, 10, 4, 3, 3, 1, 2, 2, 2, 2, 2, 1, true);
  conv_case(1, 6, 7, 7, 9, 3, 3, 1, 1, 1, 1, 1, 1, 3, true);
  conv_case(2, 4, 6, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 4, false); /* depthwise */
  conv_case(1, 1, 5, 5, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, false);
  conv_case(3, 2, 4, 5, 2, 4, 5, 1, 1, 0, 0, 1, 1, 1, true);  /* kernel = input */
  pool_case(true, 2, 3, 8, 8, 2, 2, 2, 2, 0, 0);
  pool_case(true, 1, 2, 7, 9, 3, 3, 2, 2, 1, 1);
  pool_case(false, 2, 3, 8, 8, 2, 2, 2, 2, 0, 0);
  pool_case(false, 1, 2, 7, 7, 3, 3, 2, 1, 1, 1);
  /* adaptive: 8x8 -> 2x4 is avg pool 4x2 */
  fill(X, 2 * 3 * 64);
  ref_pool(false, 2, 3, 8, 8, 4, 2, 4, 2, 0, 0, 2, 4);
  sloth_tensor *x = sloth_from_host(X, SLOTH_F32, 4, (int64_t[]){2, 3, 8, 8});
  sloth_tensor *y = sloth_adaptive_avg_pool2d(x, 2, 4);
  ok(y && sloth_to_host(y, G, 2 * 3 * 8 * sizeof(float)) == SLOTH_OK && tap_max_err(G, Y, 48, 1e-5, 1e-5) <= 1,
     "adaptive_avg_pool2d 8x8 -> 2x4");
  sloth_release(y);
  sloth_release(x);
  /* windows of different sizes (overlapping where the output is larger) */
  adaptive_case(2, 3, 5, 5, 2, 2);
  adaptive_case(1, 2, 7, 10, 3, 4);
  adaptive_case(2, 1, 3, 4, 5, 7); /* upsampling: windows of one element, repeated */
  adaptive_case(1, 2, 9, 6, 1, 4);
  bad_geometry();
  return tap_done();
}
