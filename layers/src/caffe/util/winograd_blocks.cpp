#include <algorithm>

#include "caffe/util/cpu_parallel.hpp"
#include "caffe/util/winograd_blocks.hpp"
#include "caffe/util/winograd_tile.hpp"

namespace caffe {
namespace cpu {
namespace winograd {

namespace {

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
  const long xi_stride = (c1 - c0) * b.P + kSkew;
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
  const long xi_stride = s.out_channels * b.P + kSkew;
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
  const long xi_stride = (k1 - k0) * b.P + kSkew;
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
                      runs[r].ox, s.out_w, M * runs[r].len,
                      buf + M * runs[r].a);
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

}  // namespace

// The hot loops, one clone set per tile size and type (overloads: GCC's
// target_clones takes no templates).
#define WINOGRAD_CLONES(M, D)                                               \
  CAFFE_CPU_CLONES void input_block(TileSize<M>, const WinogradShape& s,       \
      const Block& b, const D* in, D* v, int c0, int c1) {                  \
    input_block_impl<M>(s, b, in, v, c0, c1);                               \
  }                                                                         \
  CAFFE_CPU_CLONES void grad_block(TileSize<M>, const WinogradShape& s,        \
      const Block& b, const D* dout, D* dy, int k0, int k1) {               \
    grad_block_impl<M>(s, b, dout, dy, k0, k1);                             \
  }                                                                         \
  CAFFE_CPU_CLONES void output_block(TileSize<M>, const WinogradShape& s,      \
      const Block& b, const D* mm, const D* bias, D* out) {                 \
    output_block_impl<M>(s, b, mm, bias, out);                              \
  }                                                                         \
  CAFFE_CPU_CLONES void inverse_block(TileSize<M>, const D* sum, int K, int C, \
      int k0, int k1, int c0, int c1, D* dw) {                              \
    inverse_block_impl<M>(sum, K, C, k0, k1, c0, c1, dw);                   \
  }
WINOGRAD_CLONES(2, float)
WINOGRAD_CLONES(4, float)
WINOGRAD_CLONES(2, double)
WINOGRAD_CLONES(4, double)
#undef WINOGRAD_CLONES

}  // namespace winograd
}  // namespace cpu
}  // namespace caffe
