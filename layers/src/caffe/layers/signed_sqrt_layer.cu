#include <vector>

#include "caffe/layers/signed_sqrt_layer.hpp"

namespace caffe {

template <typename Dtype>
__global__ void SignedSqrtForward(const int n, const Dtype* in, Dtype* out) {
  CUDA_KERNEL_LOOP(index, n) {
    out[index] = signed_sqrt(in[index]);
  }
}

template <typename Dtype>
__global__ void SignedSqrtBackward(const int n, const Dtype* in,
    const Dtype* top_diff, const Dtype epsilon, Dtype* out_diff) {
  CUDA_KERNEL_LOOP(index, n) {
    out_diff[index] = signed_sqrt_grad(in[index], top_diff[index], epsilon);
  }
}

template <typename Dtype>
void SignedSqrtLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int count = bottom[0]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  SignedSqrtForward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, bottom[0]->gpu_data(), top[0]->mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
}

template <typename Dtype>
void SignedSqrtLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0]) { return; }
  const int count = bottom[0]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  SignedSqrtBackward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, bottom[0]->gpu_data(), top[0]->gpu_diff(), epsilon_,
      bottom[0]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(SignedSqrtLayer);

}  // namespace caffe
