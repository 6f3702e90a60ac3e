#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "caffe/common.hpp"
#include "caffe/util/cpu_gemm.hpp"
#include "caffe/util/cpu_parallel.hpp"
#include "caffe/util/cpu_simd.hpp"
#include "caffe/util/winograd.hpp"
#include "caffe/util/winograd_product.hpp"

#define WINOGRAD_INLINE CAFFE_CPU_INLINE

namespace caffe {
namespace cpu {

namespace {

// Tiles transformed together: the transforms' vector lanes.
using simd::kLanes;
using simd::Lanes;
using simd::load;
using simd::store;
int max_block_tiles = 0;

// Tiles per block of the forward pass and the data gradient: V and M of
// 32 tiles stay in a core's L2 up to 256 channels, and the product's
// register block covers them in one pass (VGG-16 at 500 x 500: 32 beat
// 16, 48, 64, 128 and 256 on every layer; docs/bench_conv.md).
const long kBlockTiles = 32;

// Shuffle masks over two vectors a, b (lanes 0 .. 2 kLanes - 1 of a then
// b).  strided: lane l takes first + step * l for l < count (the rest
// repeat the last: don't care).
template <typename D>
WINOGRAD_INLINE typename Lanes<D>::Mask strided(int first, int step,
                                                int count) {
  typename Lanes<D>::Mask m;
  for (int l = 0; l < kLanes; ++l) m[l] = first + step * std::min(l, count - 1);
  return m;
}
template <typename D>
WINOGRAD_INLINE typename Lanes<D>::Mask pairs(int first, int width) {
  // width lanes of a from first, then width of b, and so on (width 2:
  // a a b b a a b b ...).
  typename Lanes<D>::Mask m;
  for (int l = 0; l < kLanes; ++l) {
    const int pair = l / (2 * width), side = l / width % 2;
    m[l] = side * kLanes + first + pair * width + l % width;
  }
  return m;
}

// The 1-D transforms B^T (input, m + 2 -> m + 2), A^T (output, m + 2 -> m)
// over kLanes lanes, x[i * xs + l] -> y[k * ys + l], and G (kernel, 3 ->
// m + 2, in double: it runs once per weight).
template <int M> struct Tile;

template <> struct Tile<4> {
  template <typename D>
  static WINOGRAD_INLINE void in(const D* x, long xs, D* y, long ys) {
    typedef typename Lanes<D>::V V;
    const V x0 = load(x), x1 = load(x + xs), x2 = load(x + 2 * xs),
        x3 = load(x + 3 * xs), x4 = load(x + 4 * xs), x5 = load(x + 5 * xs);
    const D two = 2, four = 4, five = 5;
    store(y, four * x0 - five * x2 + x4);
    store(y + ys, x3 + x4 - four * (x1 + x2));
    store(y + 2 * ys, x4 - x3 + four * (x1 - x2));
    store(y + 3 * ys, x4 - x2 + two * (x3 - x1));
    store(y + 4 * ys, x4 - x2 + two * (x1 - x3));
    store(y + 5 * ys, four * x1 - five * x3 + x5);
  }
  template <typename D>
  static WINOGRAD_INLINE void out(const D* x, long xs, D* y, long ys) {
    typedef typename Lanes<D>::V V;
    const V x1 = load(x + xs), x2 = load(x + 2 * xs), x3 = load(x + 3 * xs),
        x4 = load(x + 4 * xs);
    const V a = x1 + x2, b = x1 - x2, c = x3 + x4, d = x3 - x4;
    const D two = 2, four = 4, eight = 8;
    store(y, load(x) + a + c);
    store(y + ys, b + two * d);
    store(y + 2 * ys, a + four * c);
    store(y + 3 * ys, b + eight * d + load(x + 5 * xs));
  }
  // e[j * es + l] = src[4 l + j], j < 6: one input row of the lanes'
  // patches (all inside the image), by shuffles instead of gathers.
  template <typename D>
  static WINOGRAD_INLINE void split(const D* src, D* e, long es) {
    typedef typename Lanes<D>::V V;
    const V a0 = load(src), a1 = load(src + kLanes),
        a2 = load(src + 2 * kLanes), a3 = load(src + 3 * kLanes);
    V ej[4];
    for (int j = 0; j < 4; ++j) {
      const typename Lanes<D>::Mask m = strided<D>(j, 4, kLanes / 2);
      const V lo = __builtin_shuffle(a0, a1, m),
          hi = __builtin_shuffle(a2, a3, m);
      ej[j] = __builtin_shuffle(lo, hi, pairs<D>(0, kLanes / 2));
      store(e + j * es, ej[j]);
    }
    const typename Lanes<D>::Mask shift = strided<D>(1, 1, kLanes - 1);
    V e4 = __builtin_shuffle(ej[0], shift),
        e5 = __builtin_shuffle(ej[1], shift);
    e4[kLanes - 1] = src[4 * kLanes];
    e5[kLanes - 1] = src[4 * kLanes + 1];
    store(e + 4 * es, e4);
    store(e + 5 * es, e5);
  }
  // dst[4 l + q] = y[q * ys + l] + bias, q < 4: one output row of the lanes'
  // tiles, by shuffles instead of scatters.
  template <typename D>
  static WINOGRAD_INLINE void join(const D* y, long ys, D bias, D* dst) {
    typedef typename Lanes<D>::V V;
    const V y0 = load(y) + bias, y1 = load(y + ys) + bias,
        y2 = load(y + 2 * ys) + bias, y3 = load(y + 3 * ys) + bias;
    const int h = kLanes / 2;
    const V z0 = __builtin_shuffle(y0, y1, pairs<D>(0, 1)),
        z1 = __builtin_shuffle(y0, y1, pairs<D>(h, 1)),
        w0 = __builtin_shuffle(y2, y3, pairs<D>(0, 1)),
        w1 = __builtin_shuffle(y2, y3, pairs<D>(h, 1));
    store(dst, __builtin_shuffle(z0, w0, pairs<D>(0, 2)));
    store(dst + kLanes, __builtin_shuffle(z0, w0, pairs<D>(h, 2)));
    store(dst + 2 * kLanes, __builtin_shuffle(z1, w1, pairs<D>(0, 2)));
    store(dst + 3 * kLanes, __builtin_shuffle(z1, w1, pairs<D>(h, 2)));
  }
  static void kernel(const double* g, int gs, double* u, int us) {
    const double g0 = g[0], g1 = g[gs], g2 = g[2 * gs];
    // Products with the reciprocals, not divisions: this runs for every
    // weight whenever the weights change.
    const double sixth = 1.0 / 6, g02 = (g0 + g2) * sixth, g1_6 = g1 * sixth;
    const double g0_24 = g0 * (1.0 / 24) + g2 * sixth, g1_12 = g1 * (1.0 / 12);
    u[0] = g0 * 0.25;
    u[us] = -g02 - g1_6;
    u[2 * us] = g1_6 - g02;
    u[3 * us] = g0_24 + g1_12;
    u[4 * us] = g0_24 - g1_12;
    u[5 * us] = g2;
  }
  // The weight gradient (dg = G^T [(A dy) . (B^T d)]): A, m -> m + 2, on
  // the top diff's tiles...
  template <typename D>
  static WINOGRAD_INLINE void grad(const D* x, long xs, D* y, long ys) {
    typedef typename Lanes<D>::V V;
    const V x0 = load(x), x1 = load(x + xs), x2 = load(x + 2 * xs),
        x3 = load(x + 3 * xs);
    const D two = 2, four = 4;
    const V a = x0 + x2, b = x1 + x3, c = x0 + four * x2,
        d = two * (x1 + four * x3);
    store(y, x0);
    store(y + ys, a + b);
    store(y + 2 * ys, a - b);
    store(y + 3 * ys, c + d);
    store(y + 4 * ys, c - d);
    store(y + 5 * ys, x3);
  }
  // e[j * es + l] = src[4 l + j], j < 4: one row of the lanes' tiles.
  template <typename D>
  static WINOGRAD_INLINE void deal(const D* src, D* e, long es) {
    typedef typename Lanes<D>::V V;
    const V a0 = load(src), a1 = load(src + kLanes),
        a2 = load(src + 2 * kLanes), a3 = load(src + 3 * kLanes);
    for (int j = 0; j < 4; ++j) {
      const typename Lanes<D>::Mask m = strided<D>(j, 4, kLanes / 2);
      const V lo = __builtin_shuffle(a0, a1, m),
          hi = __builtin_shuffle(a2, a3, m);
      store(e + j * es, __builtin_shuffle(lo, hi, pairs<D>(0, kLanes / 2)));
    }
  }
  // ... and G^T, m + 2 -> 3, on the summed products (T: values or lanes
  // of them, S: their scalar).
  template <typename T, typename S>
  static WINOGRAD_INLINE void kernel_grad(const T* m, int ms, T* g, int gs) {
    const S quarter = S(0.25), sixth = S(1) / S(6), twelfth = S(1) / S(12),
        twenty_fourth = S(1) / S(24);
    const T m0 = m[0], m12 = m[ms] + m[2 * ms], d12 = m[2 * ms] - m[ms];
    const T m34 = m[3 * ms] + m[4 * ms], d34 = m[3 * ms] - m[4 * ms];
    g[0] = m0 * quarter - m12 * sixth + m34 * twenty_fourth;
    g[gs] = d12 * sixth + d34 * twelfth;
    g[2 * gs] = (m34 - m12) * sixth + m[5 * ms];
  }
};

template <> struct Tile<2> {
  template <typename D>
  static WINOGRAD_INLINE void in(const D* x, long xs, D* y, long ys) {
    typedef typename Lanes<D>::V V;
    const V x0 = load(x), x1 = load(x + xs), x2 = load(x + 2 * xs),
        x3 = load(x + 3 * xs);
    store(y, x0 - x2);
    store(y + ys, x1 + x2);
    store(y + 2 * ys, x2 - x1);
    store(y + 3 * ys, x1 - x3);
  }
  template <typename D>
  static WINOGRAD_INLINE void out(const D* x, long xs, D* y, long ys) {
    typedef typename Lanes<D>::V V;
    const V x1 = load(x + xs), x2 = load(x + 2 * xs);
    store(y, load(x) + x1 + x2);
    store(y + ys, x1 - x2 - load(x + 3 * xs));
  }
  template <typename D>
  static WINOGRAD_INLINE void split(const D* src, D* e, long es) {
    typedef typename Lanes<D>::V V;
    const V a0 = load(src), a1 = load(src + kLanes);
    const V e0 = __builtin_shuffle(a0, a1, strided<D>(0, 2, kLanes)),
        e1 = __builtin_shuffle(a0, a1, strided<D>(1, 2, kLanes));
    const typename Lanes<D>::Mask shift = strided<D>(1, 1, kLanes - 1);
    V e2 = __builtin_shuffle(e0, shift), e3 = __builtin_shuffle(e1, shift);
    e2[kLanes - 1] = src[2 * kLanes];
    e3[kLanes - 1] = src[2 * kLanes + 1];
    store(e, e0);
    store(e + es, e1);
    store(e + 2 * es, e2);
    store(e + 3 * es, e3);
  }
  template <typename D>
  static WINOGRAD_INLINE void join(const D* y, long ys, D bias, D* dst) {
    typedef typename Lanes<D>::V V;
    const V y0 = load(y) + bias, y1 = load(y + ys) + bias;
    store(dst, __builtin_shuffle(y0, y1, pairs<D>(0, 1)));
    store(dst + kLanes, __builtin_shuffle(y0, y1, pairs<D>(kLanes / 2, 1)));
  }
  static void kernel(const double* g, int gs, double* u, int us) {
    const double g0 = g[0], g1 = g[gs], g2 = g[2 * gs];
    u[0] = g0;
    u[us] = (g0 + g1 + g2) * 0.5;
    u[2 * us] = (g0 - g1 + g2) * 0.5;
    u[3 * us] = g2;
  }
  template <typename D>
  static WINOGRAD_INLINE void grad(const D* x, long xs, D* y, long ys) {
    typedef typename Lanes<D>::V V;
    const V x0 = load(x), x1 = load(x + xs);
    store(y, x0);
    store(y + ys, x0 + x1);
    store(y + 2 * ys, x0 - x1);
    store(y + 3 * ys, -x1);
  }
  template <typename D>
  static WINOGRAD_INLINE void deal(const D* src, D* e, long es) {
    typedef typename Lanes<D>::V V;
    const V a0 = load(src), a1 = load(src + kLanes);
    store(e, __builtin_shuffle(a0, a1, strided<D>(0, 2, kLanes)));
    store(e + es, __builtin_shuffle(a0, a1, strided<D>(1, 2, kLanes)));
  }
  template <typename T, typename S>
  static WINOGRAD_INLINE void kernel_grad(const T* m, int ms, T* g, int gs) {
    const S half = S(0.5);
    const T h = (m[ms] + m[2 * ms]) * half;
    g[0] = m[0] + h;
    g[gs] = (m[ms] - m[2 * ms]) * half;
    g[2 * gs] = h + m[3 * ms];
  }
};

// Tiles [t0, t0 + count) of one image, in raster order; P: the block's
// capacity, the row length of V and M; skew: values between one transform
// coordinate's matrix of V (M) and the next, past its rows x P.
struct Block {
  int tiles_x;
  long t0;
  int count;
  long P;
  long skew;
};

// One cache line: the (m + 2)^2 matrices of a block are a power of two
// apart without it (channels x 32 tiles), so the 36 stores of one tile
// group's transform fell into one set of L1 and evicted each other.
const long kSkew = kLanes;

// A group's lanes as runs of neighbouring tiles in one tile row: lanes
// [a, a + len), lane a's tile at output origin (oy, ox).
struct Run {
  int a, len, oy, ox;
};

// The runs of lane group g (at most kLanes); *n: its tiles.
template <int M>
WINOGRAD_INLINE int lane_runs(const Block& b, int g, Run* runs, int* n) {
  *n = std::min(kLanes, b.count - g * kLanes);
  int k = 0;
  for (int l = 0; l < *n; ++k) {
    const long t = b.t0 + g * kLanes + l;
    const int tx = static_cast<int>(t % b.tiles_x);
    runs[k].a = l;
    runs[k].len = std::min(*n - l, b.tiles_x - tx);
    runs[k].oy = static_cast<int>(t / b.tiles_x) * M;
    runs[k].ox = tx * M;
    l += runs[k].len;
  }
  return k;
}

// dst[p] = src[p], p < n: whole vectors, then the rest (short rows: no
// call to memcpy).
template <typename D>
WINOGRAD_INLINE void copy_row(const D* src, int n, D* dst) {
  int p = 0;
  for (; p + kLanes <= n; p += kLanes) store(dst + p, load(src + p));
  for (; p < n; ++p) dst[p] = src[p];
}

// row[p] = line[x0 + p] for p < span, zero where x0 + p is outside
// [0, width) or line is NULL (a row outside the map).
template <typename D>
WINOGRAD_INLINE void clipped_row(const D* line, int x0, int width, int span,
                                 D* row) {
  const int lo = line ? std::min(span, std::max(0, -x0)) : span;
  const int hi = line ? std::max(lo, std::min(span, width - x0)) : span;
  for (int p = 0; p < lo; ++p) row[p] = D(0);
  if (hi > lo) copy_row(line + x0 + lo, hi - lo, row + lo);
  for (int p = hi; p < span; ++p) row[p] = D(0);
}

// Lanes of a run: the blend that keeps a run's lanes of one split.
template <typename D>
WINOGRAD_INLINE typename Lanes<D>::Mask run_mask(const Run& r) {
  typename Lanes<D>::Mask m;
  for (int l = 0; l < kLanes; ++l) m[l] = l >= r.a && l < r.a + r.len ? -1 : 0;
  return m;
}

// d[(i * A + j) * L + l] = the input at row i, column j of lane l's patch
// (zero outside the image and for lanes past the group's tiles): input
// row i of every run, split into the lanes straight from the plane where
// one run fills the group inside the image, else through a zero-padded
// copy of the row (a few vector copies, not A^2 L scalar reads).
template <int M, typename D>
WINOGRAD_INLINE void gather_patches(const WinogradShape& s, const D* plane,
                                    const Run* runs, int nruns, D* d) {
  typedef typename Lanes<D>::V V;
  const int A = M + 2, L = kLanes, span_all = M * L + 2;
  alignas(64) D buf[M * kLanes + 2 + kLanes], e[A * kLanes];
  const bool whole = nruns == 1 && runs[0].len == L;
  for (int i = 0; i < A; ++i) {
    D* di = d + i * A * L;
    for (int k = 0; k < nruns; ++k) {
      const Run& r = runs[k];
      const int y = r.oy - s.pad_h + i, x0 = r.ox - s.pad_w;
      const D* line = y >= 0 && y < s.height
          ? plane + static_cast<long>(y) * s.width : NULL;
      if (whole && line && x0 >= 0 && x0 + span_all <= s.width) {
        Tile<M>::split(line + x0, di, L);
        continue;
      }
      if (k == 0 && !whole) {
        for (int p = 0; p < span_all; p += kLanes) store(buf + p, V{});
      }
      clipped_row(line, x0, s.width, M * r.len + 2, buf + M * r.a);
      if (whole) {
        Tile<M>::split(buf, di, L);
        continue;
      }
      Tile<M>::split(buf, e, L);
      const typename Lanes<D>::Mask keep = run_mask<D>(r);
      for (int j = 0; j < A; ++j) {
        const V old = k == 0 ? V{} : load(di + j * L);
        store(di + j * L, keep ? load(e + j * L) : old);
      }
    }
  }
}

// Channels ahead that the transforms prefetch, on planes of at least
// kPrefetchMinPlane values: a group's rows of one plane are a few short
// runs in separate pages, too short for the hardware's prefetcher, and the
// next plane is up to a megabyte away.  On smaller planes (VGG-16's conv3
// and up at 500 x 500) the rows are mostly cached and the prefetches cost
// more than they save (docs/bench_conv.md).
const int kPrefetchAhead = 2;
const long kPrefetchMinPlane = 32768;

// Prefetches the lines of rows [y0, y0 + rows) x [x0, x0 + span) of a
// plane (clipped to it) for reading (write 0) or writing (1).
template <int Write, typename D>
WINOGRAD_INLINE void prefetch_rows(const D* plane, int height, int width,
                                   int y0, int rows, int x0, int span) {
  const int xa = std::max(0, x0), xb = std::min(width, x0 + span);
  for (int y = std::max(0, y0); y < std::min(height, y0 + rows); ++y) {
    const D* line = plane + static_cast<long>(y) * width;
    for (int x = xa; x < xb; x += 64 / sizeof(D)) {
      __builtin_prefetch(line + x, Write);
    }
    if (xb > xa) __builtin_prefetch(line + xb - 1, Write);
  }
}

// V[xi][c - c0][p] = (B^T d B)[xi] for the block's tiles p and channels
// c0 <= c < c1.
template <int M, typename D>
WINOGRAD_INLINE void input_block_impl(const WinogradShape& s, const Block& b,
                                      const D* in, D* v, int c0, int c1) {
  const int A = M + 2, L = kLanes;
  const long xi_stride = (c1 - c0) * b.P + b.skew;
  const long plane_size = static_cast<long>(s.height) * s.width;
  alignas(64) D d[A * A * L], t[A * A * L];
  Run runs[kLanes];
  int n;
  for (int g = 0; g * L < b.count; ++g) {
    const int nruns = lane_runs<M>(b, g, runs, &n);
    for (int c = c0; c < c1; ++c) {
      if (plane_size >= kPrefetchMinPlane && c + kPrefetchAhead < c1) {
        for (int r = 0; r < nruns; ++r) {
          prefetch_rows<0>(in + (c + kPrefetchAhead) * plane_size, s.height,
                           s.width, runs[r].oy - s.pad_h, A,
                           runs[r].ox - s.pad_w, M * runs[r].len + 2);
        }
      }
      gather_patches<M>(s, in + c * plane_size, runs, nruns, d);
      for (int j = 0; j < A; ++j) {
        Tile<M>::in(d + j * L, A * L, t + j * L, A * L);
      }
      D* dst = v + (c - c0) * b.P + g * L;
      for (int i = 0; i < A; ++i) {
        Tile<M>::in(t + i * A * L, L, dst + i * A * xi_stride, xi_stride);
      }
    }
  }
}

// out[o] = (A^T M A) + bias[o] for the block's tiles, clipped to the map:
// each output row of the group's tiles joined into the plane when one run
// fills the group inside the map, else into a row copied out run by run.
template <int M, typename D>
WINOGRAD_INLINE void output_block_impl(const WinogradShape& s,
    const Block& b, const D* mm, const D* bias, D* out) {
  const int A = M + 2, L = kLanes;
  const long xi_stride = s.out_channels * b.P + b.skew;
  const long plane_size = static_cast<long>(s.out_h) * s.out_w;
  alignas(64) D t[M * A * L], y[M * M * L], row[M * L];
  Run runs[kLanes];
  int n;
  for (int g = 0; g * L < b.count; ++g) {
    const int nruns = lane_runs<M>(b, g, runs, &n);
    const bool fast = nruns == 1 && n == L && runs[0].oy + M <= s.out_h &&
        runs[0].ox + M * L <= s.out_w;
    for (int o = 0; o < s.out_channels; ++o) {
      if (plane_size >= kPrefetchMinPlane &&
          o + kPrefetchAhead < s.out_channels) {
        for (int r = 0; r < nruns; ++r) {
          prefetch_rows<1>(out + (o + kPrefetchAhead) * plane_size, s.out_h,
                           s.out_w, runs[r].oy, M, runs[r].ox,
                           M * runs[r].len);
        }
      }
      const D* src = mm + o * b.P + g * L;
      for (int j = 0; j < A; ++j) {
        Tile<M>::out(src + j * xi_stride, A * xi_stride, t + j * L, A * L);
      }
      for (int k = 0; k < M; ++k) {
        Tile<M>::out(t + k * A * L, L, y + k * M * L, L);
      }
      const D bo = bias ? bias[o] : D(0);
      D* plane = out + o * plane_size;
      for (int k = 0; k < M; ++k) {
        if (fast) {
          Tile<M>::join(y + k * M * L, L, bo,
              plane + static_cast<long>(runs[0].oy + k) * s.out_w + runs[0].ox);
          continue;
        }
        Tile<M>::join(y + k * M * L, L, bo, row);
        for (int r = 0; r < nruns; ++r) {
          const int yy = runs[r].oy + k;
          const int w = std::min(M * runs[r].len, s.out_w - runs[r].ox);
          if (yy >= s.out_h) continue;
          copy_row(row + M * runs[r].a, w,
                   plane + static_cast<long>(yy) * s.out_w + runs[r].ox);
        }
      }
    }
  }
}

// DY[xi][k - k0][p] = (A dy A^T)[xi] for the block's tiles p of the top
// diff (zero past the map's edge and for lanes past the group's tiles) and
// channels k0 <= k < k1.  The tiles do not overlap: one row, run by run.
template <int M, typename D>
WINOGRAD_INLINE void grad_block_impl(const WinogradShape& s, const Block& b,
                                     const D* dout, D* dy, int k0, int k1) {
  const int A = M + 2, L = kLanes;
  const long xi_stride = (k1 - k0) * b.P + b.skew;
  const long plane_size = static_cast<long>(s.out_h) * s.out_w;
  alignas(64) D d[M * M * L], t[A * M * L], buf[M * L];
  Run runs[kLanes];
  int n;
  for (int g = 0; g * L < b.count; ++g) {
    const int nruns = lane_runs<M>(b, g, runs, &n);
    const bool fast = nruns == 1 && n == L && runs[0].oy + M <= s.out_h &&
        runs[0].ox + M * L <= s.out_w;
    for (int k = k0; k < k1; ++k) {
      const D* plane = dout + k * plane_size;
      for (int i = 0; i < M; ++i) {
        if (fast) {
          Tile<M>::deal(plane + static_cast<long>(runs[0].oy + i) * s.out_w +
                        runs[0].ox, d + i * M * L, L);
          continue;
        }
        for (int r = 0; r < nruns; ++r) {
          const int yy = runs[r].oy + i;
          clipped_row(yy < s.out_h ? plane + static_cast<long>(yy) * s.out_w
                                   : static_cast<const D*>(NULL),
                      runs[r].ox, s.out_w, M * runs[r].len, buf + M * runs[r].a);
        }
        for (int p = M * n; p < M * L; ++p) buf[p] = D(0);
        Tile<M>::deal(buf, d + i * M * L, L);
      }
      for (int j = 0; j < M; ++j) {
        Tile<M>::grad(d + j * L, M * L, t + j * L, M * L);
      }
      D* dst = dy + (k - k0) * b.P + g * L;
      for (int i = 0; i < A; ++i) {
        Tile<M>::grad(t + i * M * L, L, dst + i * A * xi_stride, xi_stride);
      }
    }
  }
}

// dw[k][c] += G^T S[k][c] G from the summed products S[xi][k][c], for
// k0 <= k < k1, c0 <= c < c1: kLanes channels at a time as vectors (the
// (m + 2)^2 values of a channel pair lie K C apart, those of neighbouring
// channels side by side), the rest one by one in double.
template <int M, typename D>
WINOGRAD_INLINE void inverse_block_impl(const D* sum, int K, int C, int k0,
                                        int k1, int c0, int c1, D* dw) {
  typedef typename Lanes<D>::V V;
  const int A = M + 2, A2 = A * A, L = kLanes;
  const long xi_stride = static_cast<long>(K) * C;
  for (int k = k0; k < k1; ++k) {
    const D* row = sum + static_cast<long>(k) * C;
    int q = c0;
    for (; q + L <= c1; q += L) {
      V m[A2], t[A * 3], g[9];
      for (int xi = 0; xi < A2; ++xi) m[xi] = load(row + xi * xi_stride + q);
      for (int i = 0; i < A; ++i) {
        Tile<M>::template kernel_grad<V, D>(m + i * A, 1, t + i * 3, 1);
      }
      for (int j = 0; j < 3; ++j) {
        Tile<M>::template kernel_grad<V, D>(t + j, 3, g + j, 3);
      }
      D* w = dw + (static_cast<long>(k) * C + q) * 9;
      for (int l = 0; l < L; ++l) {
        for (int i = 0; i < 9; ++i) w[l * 9 + i] += g[i][l];
      }
    }
    for (; q < c1; ++q) {
      double m[A2], t[A * 3], g[9];
      for (int xi = 0; xi < A2; ++xi) m[xi] = row[xi * xi_stride + q];
      for (int i = 0; i < A; ++i) {
        Tile<M>::template kernel_grad<double, double>(m + i * A, 1, t + i * 3,
                                                      1);
      }
      for (int j = 0; j < 3; ++j) {
        Tile<M>::template kernel_grad<double, double>(t + j, 3, g + j, 3);
      }
      D* w = dw + (static_cast<long>(k) * C + q) * 9;
      for (int i = 0; i < 9; ++i) w[i] += static_cast<D>(g[i]);
    }
  }
}

// The hot loops, one clone set per tile size and type (overloads: GCC's
// target_clones takes no templates).
#define WINOGRAD_CLONES(M, D)                                               \
  CAFFE_CPU_CLONES void input_block(Tile<M>*, const WinogradShape& s,       \
      const Block& b, const D* in, D* v, int c0, int c1) {                  \
    input_block_impl<M>(s, b, in, v, c0, c1);                               \
  }                                                                         \
  CAFFE_CPU_CLONES void grad_block(Tile<M>*, const WinogradShape& s,        \
      const Block& b, const D* dout, D* dy, int k0, int k1) {               \
    grad_block_impl<M>(s, b, dout, dy, k0, k1);                             \
  }                                                                         \
  CAFFE_CPU_CLONES void output_block(Tile<M>*, const WinogradShape& s,      \
      const Block& b, const D* mm, const D* bias, D* out) {                 \
    output_block_impl<M>(s, b, mm, bias, out);                              \
  }                                                                         \
  CAFFE_CPU_CLONES void inverse_block(Tile<M>*, const D* sum, int K, int C, \
      int k0, int k1, int c0, int c1, D* dw) {                              \
    inverse_block_impl<M>(sum, K, C, k0, k1, c0, c1, dw);                   \
  }
WINOGRAD_CLONES(2, float)
WINOGRAD_CLONES(4, float)
WINOGRAD_CLONES(2, double)
WINOGRAD_CLONES(4, double)
#undef WINOGRAD_CLONES

template <int M, typename Dtype>
void kernel_impl(const Dtype* w, int num_output, int channels, bool flip,
                 Dtype* u) {
  const int A = M + 2;
  const int rows = flip ? channels : num_output;
  const int cols = flip ? num_output : channels;
  const long xi_stride = packed_rows(rows) * cols;
  // Row r of U (an output channel of this convolution), kChunk kernels at
  // a time, then each coordinate's values in turn: the coordinates'
  // matrices lie a power of two apart, too many streams for the cache.
  // Packed for winograd_product.
  const int kChunk = 64;
  parallel_for(rows, [&](long r0, long r1) {
    double g[9], t[A * 3], uu[kChunk][A * A];
    for (long r = r0; r < r1; ++r) {
      for (int q0 = 0; q0 < cols; q0 += kChunk) {
        const int n = std::min(kChunk, cols - q0);
        for (int q = 0; q < n; ++q) {
          // w[k][c]: forward k = r, c = q0 + q; flipped k = q0 + q, c = r.
          const Dtype* src = w + (flip ? (q0 + q) * channels + r
                                       : r * channels + q0 + q) * 9;
          for (int i = 0; i < 9; ++i) g[i] = src[flip ? 8 - i : i];
          for (int j = 0; j < 3; ++j) Tile<M>::kernel(g + j, 3, t + j, 3);
          for (int i = 0; i < A; ++i) {
            Tile<M>::kernel(t + i * 3, 1, uu[q] + i * A, 1);
          }
        }
        for (int xi = 0; xi < A * A; ++xi) {
          Dtype* dst = u + xi * xi_stride + r / kPackRows * kPackRows * cols +
              q0 * kPackRows + r % kPackRows;
          for (int q = 0; q < n; ++q) {
            dst[q * kPackRows] = static_cast<Dtype>(uu[q][xi]);
          }
        }
      }
    }
  }, 4);
}

template <int M, typename Dtype>
void conv_impl(const WinogradShape& s, int num, const Dtype* in,
               long in_stride, const Dtype* u, const Dtype* bias, Dtype* out,
               long out_stride, int nthreads, std::vector<Dtype>* scratch) {
  const int A2 = (M + 2) * (M + 2);
  Block b;
  b.tiles_x = (s.out_w + M - 1) / M;
  const long tiles = static_cast<long>(b.tiles_x) * ((s.out_h + M - 1) / M);
  const long round = kLanes;
  // Block size, measured (docs/bench_conv.md): kBlockTiles; at least one
  // block per thread; a whole number of lane groups.
  long P = kBlockTiles;
  P = std::min(P, (num * tiles + nthreads - 1) / nthreads);
  if (max_block_tiles > 0) P = std::min<long>(P, max_block_tiles);
  P = std::min(P, tiles);
  P = std::max(round, (P + round - 1) / round * round);
  const long blocks = (tiles + P - 1) / P;
  const long items = num * blocks;
  const int nt = static_cast<int>(std::min<long>(nthreads, items));
  const long v_xi = s.in_channels * P + kSkew;
  const long m_xi = s.out_channels * P + kSkew;
  const long v_size = A2 * v_xi;
  const long buffer = v_size + A2 * m_xi;
  if (static_cast<long>(scratch->size()) < nt * buffer) {
    scratch->resize(nt * buffer);
  }
  b.P = P;
  b.skew = kSkew;
  const long u_stride = packed_rows(s.out_channels) * s.in_channels;
  parallel(nt, [&](int tid, int nthr) {
    Dtype* v = scratch->data() + tid * buffer;
    Dtype* mm = v + v_size;
    Block mine = b;
    for (long it = chunk_begin(items, tid, nthr);
         it < chunk_begin(items, tid + 1, nthr); ++it) {
      const long n = it / blocks;
      mine.t0 = it % blocks * P;
      mine.count = static_cast<int>(std::min(P, tiles - mine.t0));
      const int cols = (mine.count + kLanes - 1) / kLanes * kLanes;
      input_block(static_cast<Tile<M>*>(NULL), s, mine, in + n * in_stride,
                  v, 0, s.in_channels);
      for (int xi = 0; xi < A2; ++xi) {
        winograd_product(s.out_channels, cols, s.in_channels,
                         u + xi * u_stride, v + xi * v_xi, P, mm + xi * m_xi,
                         P);
      }
      output_block(static_cast<Tile<M>*>(NULL), s, mine, mm, bias,
                   out + n * out_stride);
    }
  });
}

// The weight gradient's blocks: P tiles (the GEMMs' inner dimension) whose
// transforms take about kWeightBlockBytes per thread, within [64, 512]
// (docs/bench_conv.md); ranges of at least kMinRange channels per thread.
const long kWeightBlockBytes = 2L << 20;
const int kMinRange = 32;

// Threads form a grid over (input channel, output channel) ranges, input
// channels first (their transform is the dearer one).  Each transforms its
// channels' input patches and top-diff tiles of every block and multiplies
// them into its own part of the summed products S[xi][k][c]: no two
// threads write one value, no reduction, a static schedule.
template <int M, typename Dtype>
void weight_grad_impl(const WinogradShape& s, int num, const Dtype* in,
                      long in_stride, const Dtype* dout, long out_stride,
                      Dtype* dw, int nthreads, std::vector<Dtype>* scratch) {
  const int A2 = (M + 2) * (M + 2);
  const int C = s.in_channels, K = s.out_channels;
  Block b;
  b.tiles_x = (s.out_w + M - 1) / M;
  const long tiles = static_cast<long>(b.tiles_x) * ((s.out_h + M - 1) / M);
  const int ct = std::max(1, std::min(nthreads, C / kMinRange));
  const int kt = std::max(1, std::min(nthreads / ct, K / kMinRange));
  const int nt = ct * kt;
  const int cr = (C + ct - 1) / ct, kr = (K + kt - 1) / kt;
  const long round = kLanes;
  long P = kWeightBlockBytes / (A2 * (cr + kr) * sizeof(Dtype));
  P = std::max(64L, std::min(512L, P));
  if (max_block_tiles > 0) P = std::min<long>(P, max_block_tiles);
  P = std::min(P, num * ((tiles + round - 1) / round * round));
  P = std::max(round, (P + round - 1) / round * round);
  const long sum_size = static_cast<long>(A2) * K * C;
  const long buffer = A2 * ((cr + kr) * P + 2 * kSkew);
  if (static_cast<long>(scratch->size()) < sum_size + nt * buffer) {
    scratch->resize(sum_size + nt * buffer);
  }
  Dtype* sum = scratch->data();
  SingleThreadedBlas single(nt > 1);
  parallel(nt, [&](int tid, int) {
    const int ci = tid % ct, ki = tid / ct;
    const int c0 = chunk_begin(C, ci, ct), c1 = chunk_begin(C, ci + 1, ct);
    const int k0 = chunk_begin(K, ki, kt), k1 = chunk_begin(K, ki + 1, kt);
    Dtype* v = scratch->data() + sum_size + tid * buffer;
    const long v_xi = (c1 - c0) * P + kSkew, dy_xi = (k1 - k0) * P + kSkew;
    Dtype* dy = v + A2 * v_xi;
    Dtype beta = 0;  // the first block sets S, the others add
    Block mine = b;
    mine.P = P;
    mine.skew = kSkew;
    long col = 0;
    for (int n = 0; n < num; ++n) {
      for (long t0 = 0; t0 < tiles; t0 += mine.count) {
        mine.t0 = t0;
        mine.count = static_cast<int>(std::min(P - col, tiles - t0));
        input_block(static_cast<Tile<M>*>(NULL), s, mine, in + n * in_stride,
                    v + col, c0, c1);
        grad_block(static_cast<Tile<M>*>(NULL), s, mine,
                   dout + n * out_stride, dy + col, k0, k1);
        col += (mine.count + round - 1) / round * round;
        if (col < P && (n + 1 < num || t0 + mine.count < tiles)) continue;
        for (int xi = 0; xi < A2; ++xi) {
          gemm(false, true, k1 - k0, c1 - c0, static_cast<int>(col),
               Dtype(1), dy + xi * dy_xi, static_cast<int>(P),
               v + xi * v_xi, static_cast<int>(P), beta,
               sum + xi * K * C + k0 * C + c0, C);
        }
        beta = 1;
        col = 0;
      }
    }
    inverse_block(static_cast<Tile<M>*>(NULL), sum, K, C, k0, k1, c0, c1,
                  dw);
  });
}

}  // namespace

template <typename Dtype>
void winograd_weight_grad(const WinogradShape& s, int num, const Dtype* in,
                          long in_stride, const Dtype* dout, long out_stride,
                          Dtype* dw, int nthreads,
                          std::vector<Dtype>* scratch) {
  if (s.m == 4) {
    weight_grad_impl<4>(s, num, in, in_stride, dout, out_stride, dw, nthreads,
                        scratch);
  } else {
    weight_grad_impl<2>(s, num, in, in_stride, dout, out_stride, dw, nthreads,
                        scratch);
  }
}

long winograd_kernel_size(int m, int num_output, int channels, bool flip) {
  return (m + 2) * (m + 2) * packed_rows(flip ? channels : num_output) *
      (flip ? num_output : channels);
}

template <typename Dtype>
void winograd_kernel(int m, const Dtype* w, int num_output, int channels,
                     bool flip, Dtype* u) {
  if (m == 4) {
    kernel_impl<4>(w, num_output, channels, flip, u);
  } else {
    kernel_impl<2>(w, num_output, channels, flip, u);
  }
}

template <typename Dtype>
void winograd_conv(const WinogradShape& s, int num, const Dtype* in,
                   long in_stride, const Dtype* u, const Dtype* bias,
                   Dtype* out, long out_stride, int nthreads,
                   std::vector<Dtype>* scratch) {
  if (s.m == 4) {
    conv_impl<4>(s, num, in, in_stride, u, bias, out, out_stride, nthreads,
                 scratch);
  } else {
    conv_impl<2>(s, num, in, in_stride, u, bias, out, out_stride, nthreads,
                 scratch);
  }
}

namespace {

// One part of POSENORM_WINOGRAD: -1 for auto, else the tile (0: off).
int setting_part(const std::string& part, const char* whole) {
  if (part == "auto") return -1;
  CHECK(part == "0" || part == "2" || part == "4")
      << "POSENORM_WINOGRAD=" << whole << ": expected T or T,W, each 0 (off), "
      << "2 or 4 (tile) or auto";
  return part[0] - '0';
}

}  // namespace

WinogradSetting winograd_setting() {
  WinogradSetting s = {-1, -1};
  const char* v = std::getenv("POSENORM_WINOGRAD");
  if (!v || !*v) return s;
  const std::string all(v);
  const size_t comma = all.find(',');
  s.data = setting_part(all.substr(0, comma), v);
  s.weight = comma == std::string::npos ? s.data
      : setting_part(all.substr(comma + 1), v);
  return s;
}

void WinogradMaxBlockTiles(int tiles) { max_block_tiles = tiles; }

template void winograd_kernel<float>(int, const float*, int, int, bool,
                                     float*);
template void winograd_kernel<double>(int, const double*, int, int, bool,
                                      double*);
template void winograd_weight_grad<float>(const WinogradShape&, int,
    const float*, long, const float*, long, float*, int, std::vector<float>*);
template void winograd_weight_grad<double>(const WinogradShape&, int,
    const double*, long, const double*, long, double*, int,
    std::vector<double>*);
template void winograd_conv<float>(const WinogradShape&, int, const float*,
    long, const float*, const float*, float*, long, int,
    std::vector<float>*);
template void winograd_conv<double>(const WinogradShape&, int, const double*,
    long, const double*, const double*, double*, long, int,
    std::vector<double>*);

}  // namespace cpu
}  // namespace caffe
