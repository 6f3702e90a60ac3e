#ifndef CAFFE_UTIL_WINOGRAD_TILE_HPP_
#define CAFFE_UTIL_WINOGRAD_TILE_HPP_

// Winograd F(m x m, 3 x 3)'s one-dimensional transforms over simd::kLanes
// tiles at a time (Lavin & Gray 2016): Tile<4>, Tile<2>.  Internal to the
// CPU engine's winograd*.cpp files; everything here is inlined.

#include <algorithm>

#include "caffe/util/cpu_simd.hpp"

#define WINOGRAD_INLINE CAFFE_CPU_INLINE

namespace caffe {
namespace cpu {
namespace winograd {

using simd::kLanes;
using simd::Lanes;
using simd::load;
using simd::store;

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

}  // namespace winograd
}  // namespace cpu
}  // namespace caffe

#endif  // CAFFE_UTIL_WINOGRAD_TILE_HPP_
