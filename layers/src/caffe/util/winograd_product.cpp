#include <algorithm>

#include "caffe/util/cpu_simd.hpp"
#include "caffe/util/winograd_product.hpp"

namespace caffe {
namespace cpu {

namespace {

using simd::kLanes;

// R rows by NP lane groups of c, accumulated in registers over the whole
// depth: per q, NP loads of v and R broadcasts of u feed R * NP
// multiply-adds.  Only the first `rows` rows are stored (the last run of U
// is padded).
template <typename D, int R, int NP>
CAFFE_CPU_INLINE void register_block(int depth, const D* u, const D* v,
                                     long ldv, D* c, long ldc, int rows) {
  typedef typename simd::Lanes<D>::V V;
  V acc[R][NP];
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NP; ++j) acc[i][j] = V{};
  }
  for (int q = 0; q < depth; ++q) {
    V b[NP];
#pragma GCC unroll 4
    for (int j = 0; j < NP; ++j) b[j] = simd::load(v + q * ldv + j * kLanes);
    const D* a = u + q * kPackRows;
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const D ai = a[i];
#pragma GCC unroll 4
      for (int j = 0; j < NP; ++j) acc[i][j] += ai * b[j];
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) {
    if (i >= rows) break;
#pragma GCC unroll 4
    for (int j = 0; j < NP; ++j) {
      simd::store(c + i * ldc + j * kLanes, acc[i][j]);
    }
  }
}

// Row blocks outer (a block of U, depth x R, stays in L1 while V streams
// past it from L2), lane groups inner.
template <typename D, int R, int NP>
CAFFE_CPU_INLINE void product(int rows, int cols, int depth, const D* u,
                              const D* v, long ldv, D* c, long ldc) {
  static_assert(kPackRows % R == 0, "R divides a packed run");
  for (int r0 = 0; r0 < rows; r0 += R) {
    const D* ur = u + static_cast<long>(r0 / kPackRows) * kPackRows * depth +
        r0 % kPackRows;
    const int nr = std::min(R, rows - r0);
    D* cr = c + r0 * ldc;
    int p = 0;
    for (; p + NP * kLanes <= cols; p += NP * kLanes) {
      register_block<D, R, NP>(depth, ur, v + p, ldv, cr + p, ldc, nr);
    }
    for (; p < cols; p += kLanes) {
      register_block<D, R, 1>(depth, ur, v + p, ldv, cr + p, ldc, nr);
    }
  }
}

// Register blocks per target: accumulators R * NP vectors of kLanes
// filling most of the registers (AVX-512: 32 of 512 bits; AVX2: 16 of
// 256; SSE: 16 of 128).
#define WINOGRAD_PRODUCT(NAME, D, R, NP)                                   \
  void NAME(int rows, int cols, int depth, const D* u, const D* v,         \
            long ldv, D* c, long ldc) {                                    \
    product<D, R, NP>(rows, cols, depth, u, v, ldv, c, ldc);               \
  }
#if defined(__x86_64__) && defined(__GNUC__)
#define WINOGRAD_TARGET(T) __attribute__((target(T)))
WINOGRAD_TARGET("avx512f,fma") WINOGRAD_PRODUCT(product_avx512, float, 12, 2)
WINOGRAD_TARGET("avx512f,fma") WINOGRAD_PRODUCT(product_avx512, double, 6, 1)
WINOGRAD_TARGET("avx2,fma") WINOGRAD_PRODUCT(product_avx2, float, 6, 1)
WINOGRAD_TARGET("avx2,fma") WINOGRAD_PRODUCT(product_avx2, double, 3, 1)
#undef WINOGRAD_TARGET
#endif
WINOGRAD_PRODUCT(product_baseline, float, 3, 1)
WINOGRAD_PRODUCT(product_baseline, double, 2, 1)
#undef WINOGRAD_PRODUCT

enum Target { kBaseline, kAvx2, kAvx512 };

Target best_target() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    return kAvx2;
  }
#endif
  return kBaseline;
}

Target target = best_target();

}  // namespace

bool WinogradProductTarget(int t) {
  if (t > best_target()) return false;
  target = t < 0 ? best_target() : static_cast<Target>(t);
  return true;
}

template <typename Dtype>
void winograd_product(int rows, int cols, int depth, const Dtype* u,
                      const Dtype* v, long ldv, Dtype* c, long ldc) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (target == kAvx512) {
    product_avx512(rows, cols, depth, u, v, ldv, c, ldc);
    return;
  }
  if (target == kAvx2) {
    product_avx2(rows, cols, depth, u, v, ldv, c, ldc);
    return;
  }
#endif
  product_baseline(rows, cols, depth, u, v, ldv, c, ldc);
}

template void winograd_product<float>(int, int, int, const float*,
    const float*, long, float*, long);
template void winograd_product<double>(int, int, int, const double*,
    const double*, long, double*, long);

}  // namespace cpu
}  // namespace caffe
