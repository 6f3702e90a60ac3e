#include <vector>

#include "caffe/layers/l2_normalize_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
__global__ void L2NormalizeSqrt(const int num, const Dtype epsilon,
    Dtype* norm) {
  CUDA_KERNEL_LOOP(n, num) {
    norm[n] = hd::sqrt(norm[n] + epsilon);
  }
}

template <typename Dtype>
__global__ void L2NormalizeForward(const int count, const int dim,
    const Dtype* x, const Dtype* norm, Dtype* y) {
  CUDA_KERNEL_LOOP(index, count) {
    y[index] = x[index] / norm[index / dim];
  }
}

template <typename Dtype>
__global__ void L2NormalizeBackward(const int count, const int dim,
    const Dtype* y, const Dtype* dy, const Dtype* dot, const Dtype* norm,
    Dtype* dx) {
  CUDA_KERNEL_LOOP(index, count) {
    const int n = index / dim;
    dx[index] = l2_normalize_grad(dy[index], y[index], dot[n], norm[n]);
  }
}

template <typename Dtype>
void L2NormalizeLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int num = bottom[0]->shape(0);
  const int count = bottom[0]->count();
  const int dim = count / num;
  const Dtype* x = bottom[0]->gpu_data();
  Dtype* sq = squared_.mutable_gpu_data();
  Dtype* norm = norm_.mutable_gpu_data();
  // Row sums of x^2 by one GEMV, then sqrt(. + eps).
  caffe_gpu_mul(count, x, x, sq);
  caffe_gpu_gemv(CblasNoTrans, num, dim, Dtype(1), sq, ones_.gpu_data(),
      Dtype(0), norm);
  // NOLINT_NEXT_LINE(whitespace/operators)
  L2NormalizeSqrt<Dtype><<<CAFFE_GET_BLOCKS(num), CAFFE_CUDA_NUM_THREADS>>>(
      num, epsilon_, norm);
  // NOLINT_NEXT_LINE(whitespace/operators)
  L2NormalizeForward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, dim, x, norm, top[0]->mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
}

template <typename Dtype>
void L2NormalizeLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0]) { return; }
  const int num = bottom[0]->shape(0);
  const int count = bottom[0]->count();
  const int dim = count / num;
  const Dtype* y = top[0]->gpu_data();
  const Dtype* dy = top[0]->gpu_diff();
  Dtype* prod = squared_.mutable_gpu_data();
  caffe_gpu_mul(count, y, dy, prod);
  caffe_gpu_gemv(CblasNoTrans, num, dim, Dtype(1), prod, ones_.gpu_data(),
      Dtype(0), dot_.mutable_gpu_data());
  // NOLINT_NEXT_LINE(whitespace/operators)
  L2NormalizeBackward<Dtype><<<CAFFE_GET_BLOCKS(count),
      CAFFE_CUDA_NUM_THREADS>>>(count, dim, y, dy, dot_.gpu_data(),
      norm_.gpu_data(), bottom[0]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(L2NormalizeLayer);

}  // namespace caffe
