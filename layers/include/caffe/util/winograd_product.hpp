#ifndef CAFFE_UTIL_WINOGRAD_PRODUCT_HPP_
#define CAFFE_UTIL_WINOGRAD_PRODUCT_HPP_

// The Winograd convolution's products, one per transform coordinate:
// M = U V, U (out x in) the transformed kernel, V (in x tiles) the block's
// transformed patches.  Our own register-blocked loop rather than the
// BLAS: U is packed once per weight change (a BLAS packs both operands on
// every call, a tenth of the forward pass at 500 x 500), and V is read as
// the input transform wrote it.

namespace caffe {
namespace cpu {

/// U's rows are packed in runs of this many: u(r, q) lies at
/// u[(r / kPackRows) * kPackRows * depth + q * kPackRows + r % kPackRows],
/// rows padded to a whole run.
const int kPackRows = 12;

inline long packed_rows(int rows) {
  return (rows + kPackRows - 1) / kPackRows * static_cast<long>(kPackRows);
}

/// c[r * ldc + p] = sum over q < depth of u(r, q) v[q * ldv + p], for
/// r < rows and p < cols (a multiple of simd::kLanes); single-threaded.
template <typename Dtype>
void winograd_product(int rows, int cols, int depth, const Dtype* u,
                      const Dtype* v, long ldv, Dtype* c, long ldc);

/// Tests: run the products with the code for one instruction set (0:
/// baseline x86-64, 1: AVX2, 2: AVX-512; -1: the best this CPU has, the
/// default).  Returns false, changing nothing, where the CPU lacks it.
bool WinogradProductTarget(int target);

}  // namespace cpu
}  // namespace caffe

#endif  // CAFFE_UTIL_WINOGRAD_PRODUCT_HPP_
