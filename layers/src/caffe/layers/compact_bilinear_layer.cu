#include <vector>

#include "caffe/layers/compact_bilinear_layer.hpp"
#include "caffe/layers/compact_bilinear_layer_impl.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
__global__ void CompactBilinearSwap01(const int n, const int A, const int B,
    const int S, const Dtype* in, Dtype* out) {
  CUDA_KERNEL_LOOP(i, n) {
    out[cb_swap01_index(i, A, B, S)] = in[i];
  }
}

template <typename Dtype>
__global__ void CompactBilinearScaleRows(const int n, const int len,
    const Dtype* g, const Dtype* in, Dtype* out) {
  CUDA_KERNEL_LOOP(i, n) {
    out[i] = g[i / len] * in[i];
  }
}

// out[r] = x[r] . w[r / B] over rows of length L: one warp per row (n = 32 x
// rows, so every warp is wholly inside or outside the grid-stride range).
template <typename Dtype>
__global__ void CompactBilinearRowDot(const int n, const int B, const int L,
    const Dtype* x, const Dtype* w, Dtype* out) {
  CUDA_KERNEL_LOOP(i, n) {
    const int row = i / 32;
    const int lane = i % 32;
    const Dtype* xr = x + row * L;
    const Dtype* wr = w + (row / B) * L;
    Dtype sum = 0;
    for (int l = lane; l < L; l += 32) {
      sum += xr[l] * wr[l];
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      sum += __shfl_down_sync(0xffffffffu, sum, offset);
    }
    if (lane == 0) { out[row] = sum; }
  }
}

namespace {

/// The GPU primitives of the shared driver (compact_bilinear_layer_impl.hpp).
template <typename Dtype>
struct CompactBilinearGpuOps {
  static const Dtype* data(const Blob<Dtype>& b) { return b.gpu_data(); }
  static const Dtype* diff(const Blob<Dtype>& b) { return b.gpu_diff(); }
  static Dtype* mutable_data(Blob<Dtype>* b) { return b->mutable_gpu_data(); }
  static Dtype* mutable_diff(Blob<Dtype>* b) { return b->mutable_gpu_diff(); }
  static void gemm(const CBLAS_TRANSPOSE ta, const CBLAS_TRANSPOSE tb,
      int m, int n, int k, Dtype alpha, const Dtype* a, const Dtype* b,
      Dtype beta, Dtype* c) {
    caffe_gpu_gemm<Dtype>(ta, tb, m, n, k, alpha, a, b, beta, c);
  }
  static void mul(int n, const Dtype* a, const Dtype* b, Dtype* y) {
    caffe_gpu_mul<Dtype>(n, a, b, y);
  }
  static void swap01(int A, int B, int S, const Dtype* in, Dtype* out) {
    const int n = A * B * S;
    // NOLINT_NEXT_LINE(whitespace/operators)
    CompactBilinearSwap01<Dtype><<<CAFFE_GET_BLOCKS(n),
        CAFFE_CUDA_NUM_THREADS>>>(n, A, B, S, in, out);
    CUDA_POST_KERNEL_CHECK;
  }
  static void scale_rows(int rows, int len, const Dtype* g, const Dtype* in,
      Dtype* out) {
    const int n = rows * len;
    // NOLINT_NEXT_LINE(whitespace/operators)
    CompactBilinearScaleRows<Dtype><<<CAFFE_GET_BLOCKS(n),
        CAFFE_CUDA_NUM_THREADS>>>(n, len, g, in, out);
    CUDA_POST_KERNEL_CHECK;
  }
  static void row_dot(int A, int B, int L, const Dtype* x, const Dtype* w,
      Dtype* out) {
    const int n = A * B * 32;
    // NOLINT_NEXT_LINE(whitespace/operators)
    CompactBilinearRowDot<Dtype><<<CAFFE_GET_BLOCKS(n),
        CAFFE_CUDA_NUM_THREADS>>>(n, B, L, x, w, out);
    CUDA_POST_KERNEL_CHECK;
  }
};

}  // namespace

template <typename Dtype>
void CompactBilinearLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  ForwardImpl<CompactBilinearGpuOps<Dtype> >(bottom, top);
}

template <typename Dtype>
void CompactBilinearLayer<Dtype>::Backward_gpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  BackwardImpl<CompactBilinearGpuOps<Dtype> >(top, propagate_down, bottom);
}

INSTANTIATE_LAYER_GPU_FUNCS(CompactBilinearLayer);

}  // namespace caffe
