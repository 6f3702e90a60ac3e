#ifndef CAFFE_UTIL_CPU_SIMD_HPP_
#define CAFFE_UTIL_CPU_SIMD_HPP_

// kLanes values of a type as one GCC vector, for the CPU engine's Winograd
// transforms and products.  GCC lowers each vector to what the function's
// target has (4 SSE, 2 AVX2 or 1 AVX-512 register of floats), so one
// source serves every target clone.  Internal to the engine's .cpp files.

#define CAFFE_CPU_INLINE inline __attribute__((always_inline))

// The vectors never cross a call (everything here is inlined), so GCC's
// note that passing them would change the ABI does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace caffe {
namespace cpu {
namespace simd {

const int kLanes = 16;

// Unaligned, and may alias the arrays they are loaded from.
typedef float VecF __attribute__((vector_size(kLanes * 4), aligned(4),
                                  may_alias));
typedef double VecD __attribute__((vector_size(kLanes * 8), aligned(8),
                                   may_alias));
typedef int MaskF __attribute__((vector_size(kLanes * 4)));
typedef long long MaskD __attribute__((vector_size(kLanes * 8)));
template <typename D> struct Lanes;
template <> struct Lanes<float> { typedef VecF V; typedef MaskF Mask; };
template <> struct Lanes<double> { typedef VecD V; typedef MaskD Mask; };

template <typename D>
CAFFE_CPU_INLINE typename Lanes<D>::V load(const D* x) {
  return *reinterpret_cast<const typename Lanes<D>::V*>(x);
}
template <typename D>
CAFFE_CPU_INLINE void store(D* y, typename Lanes<D>::V v) {
  *reinterpret_cast<typename Lanes<D>::V*>(y) = v;
}

}  // namespace simd
}  // namespace cpu
}  // namespace caffe

#endif  // CAFFE_UTIL_CPU_SIMD_HPP_
