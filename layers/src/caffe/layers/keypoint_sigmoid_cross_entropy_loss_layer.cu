#include <vector>

#include "caffe/layers/keypoint_sigmoid_cross_entropy_loss_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// One thread per cell: the target and that cell's (non-negative) loss.
template <typename Dtype>
__global__ void KeypointLossForward(const int count, const int height,
    const int width, const Dtype* score, const Dtype* keypoints,
    const Dtype stride, const Dtype offset, const bool gaussian,
    const Dtype sigma, Dtype* target, Dtype* loss) {
  CUDA_KERNEL_LOOP(index, count) {
    const int j = index % width;
    const int i = (index / width) % height;
    const int nk = index / width / height;
    target[index] = keypoint_target(i, j, keypoints + 3 * nk, height, width,
        stride, offset, gaussian, sigma);
    loss[index] = sigmoid_cross_entropy(score[index], target[index]);
  }
}

template <typename Dtype>
__global__ void KeypointLossBackward(const int count, const Dtype* score,
    const Dtype* target, const Dtype scale, Dtype* diff) {
  CUDA_KERNEL_LOOP(index, count) {
    diff[index] = sigmoid_cross_entropy_grad(score[index], target[index],
        scale);
  }
}

template <typename Dtype>
void KeypointSigmoidCrossEntropyLossLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const int count = bottom[0]->count();
  Dtype* target = target_.mutable_gpu_data();
  Dtype* loss_data = target_.mutable_gpu_diff();  // scratch: per-cell loss
  // NOLINT_NEXT_LINE(whitespace/operators)
  KeypointLossForward<Dtype><<<CAFFE_GET_BLOCKS(count),
      CAFFE_CUDA_NUM_THREADS>>>(count, height_, width_, bottom[0]->gpu_data(),
      bottom[1]->gpu_data(), stride_, offset_, gaussian_, sigma_, target,
      loss_data);
  CUDA_POST_KERNEL_CHECK;
  // Every per-cell cross-entropy is >= 0, so the sum is the absolute sum.
  Dtype loss;
  caffe_gpu_asum(count, loss_data, &loss);
  top[0]->mutable_cpu_data()[0] = loss / normalizer_;
  if (top.size() > 1) {
    caffe_copy(count, target_.gpu_data(), top[1]->mutable_gpu_data());
  }
}

template <typename Dtype>
void KeypointSigmoidCrossEntropyLossLayer<Dtype>::Backward_gpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  if (propagate_down[1]) {
    LOG(FATAL) << this->type() << " layer " << this->layer_param_.name()
        << " cannot backpropagate to its keypoint input (bottom[1]); "
        << "set propagate_down: false for it.";
  }
  if (!propagate_down[0]) { return; }
  const int count = bottom[0]->count();
  const Dtype scale = top[0]->cpu_diff()[0] / normalizer_;
  // NOLINT_NEXT_LINE(whitespace/operators)
  KeypointLossBackward<Dtype><<<CAFFE_GET_BLOCKS(count),
      CAFFE_CUDA_NUM_THREADS>>>(count, bottom[0]->gpu_data(),
      target_.gpu_data(), scale, bottom[0]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(KeypointSigmoidCrossEntropyLossLayer);

}  // namespace caffe
