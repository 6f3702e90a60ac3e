#include <algorithm>
#include <vector>

#include "caffe/layers/keypoint_sigmoid_cross_entropy_loss_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void KeypointSigmoidCrossEntropyLossLayer<Dtype>::LayerSetUp(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  // Like LossLayer::LayerSetUp, top[0] gets loss weight 1 when none is set;
  // the optional target top gets 0, so that one loss_weight (or none)
  // suffices with two tops (SoftmaxWithLoss would need both).
  LayerParameter& layer_param = this->layer_param_;
  while (layer_param.loss_weight_size() < static_cast<int>(top.size())) {
    layer_param.add_loss_weight(layer_param.loss_weight_size() ? 0 : 1);
  }
  const KeypointLossParameter& param = this->layer_param_.keypoint_loss_param();
  stride_ = param.stride();
  offset_ = param.offset();
  sigma_ = param.sigma();
  gaussian_ = param.target() == KeypointLossParameter_Target_GAUSSIAN;
  CHECK_GT(stride_, 0) << this->type() << " layer "
      << this->layer_param_.name()
      << ": keypoint_loss_param.stride must be positive, got " << stride_;
  if (gaussian_) {
    CHECK_GT(sigma_, 0) << this->type() << " layer "
        << this->layer_param_.name() << ": keypoint_loss_param.sigma must be "
        << "positive for target: GAUSSIAN, got " << sigma_;
  }
  const LossParameter& loss_param = this->layer_param_.loss_param();
  CHECK(!loss_param.has_ignore_label()) << this->type() << " layer "
      << this->layer_param_.name() << ": loss_param.ignore_label is not "
      << "supported (targets are built from keypoints, not labels)";
  // LossParameter's own default is VALID; the paper (and this layer)
  // normalizes by the batch size unless told otherwise.
  if (loss_param.has_normalization()) {
    normalization_ = loss_param.normalization();
  } else if (loss_param.has_normalize()) {
    normalization_ = loss_param.normalize() ?
        LossParameter_NormalizationMode_VALID :
        LossParameter_NormalizationMode_BATCH_SIZE;
  } else {
    normalization_ = LossParameter_NormalizationMode_BATCH_SIZE;
  }
}

template <typename Dtype>
void KeypointSigmoidCrossEntropyLossLayer<Dtype>::Reshape(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  // Not LossLayer::Reshape: the keypoints need not have N as first axis.
  CHECK_EQ(bottom[0]->num_axes(), 4) << this->type() << " layer "
      << this->layer_param_.name() << ": bottom[0] (scores) must be "
      << "N x K x H x W, got shape " << bottom[0]->shape_string();
  num_ = bottom[0]->shape(0);
  channels_ = bottom[0]->shape(1);
  height_ = bottom[0]->shape(2);
  width_ = bottom[0]->shape(3);
  CHECK_EQ(bottom[1]->count(), num_ * channels_ * 3) << this->type()
      << " layer " << this->layer_param_.name() << ": bottom[1] (keypoints) "
      << "must hold N * K * 3 = " << num_ * channels_ * 3
      << " values (x, y, visible) for scores of shape "
      << bottom[0]->shape_string() << ", got shape "
      << bottom[1]->shape_string();
  top[0]->Reshape(vector<int>());
  target_.ReshapeLike(*bottom[0]);
  if (top.size() > 1) {
    top[1]->ReshapeLike(*bottom[0]);
  }
  Dtype normalizer = 1;
  switch (normalization_) {
    case LossParameter_NormalizationMode_FULL:
    case LossParameter_NormalizationMode_VALID:  // no ignore label: all valid
      normalizer = Dtype(bottom[0]->count());
      break;
    case LossParameter_NormalizationMode_BATCH_SIZE:
      normalizer = Dtype(num_);
      break;
    case LossParameter_NormalizationMode_NONE:
      normalizer = Dtype(1);
      break;
    default:
      LOG(FATAL) << this->type() << " layer " << this->layer_param_.name()
          << ": unknown normalization mode "
          << LossParameter_NormalizationMode_Name(normalization_);
  }
  // As in Caffe's loss layers: an empty batch must not divide by zero.
  normalizer_ = std::max(Dtype(1), normalizer);
}

template <typename Dtype>
void KeypointSigmoidCrossEntropyLossLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const Dtype* score = bottom[0]->cpu_data();
  const Dtype* keypoints = bottom[1]->cpu_data();
  Dtype* target = target_.mutable_cpu_data();
  const int spatial = height_ * width_;
  Dtype loss = 0;
  for (int nk = 0; nk < num_ * channels_; ++nk) {
    const Dtype* kp = keypoints + 3 * nk;
    for (int i = 0; i < height_; ++i) {
      for (int j = 0; j < width_; ++j) {
        const int index = nk * spatial + i * width_ + j;
        target[index] = keypoint_target(i, j, kp, height_, width_, stride_,
            offset_, gaussian_, sigma_);
        loss += sigmoid_cross_entropy(score[index], target[index]);
      }
    }
  }
  top[0]->mutable_cpu_data()[0] = loss / normalizer_;
  if (top.size() > 1) {
    caffe_copy(target_.count(), target, top[1]->mutable_cpu_data());
  }
}

template <typename Dtype>
void KeypointSigmoidCrossEntropyLossLayer<Dtype>::Backward_cpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  if (propagate_down[1]) {
    LOG(FATAL) << this->type() << " layer " << this->layer_param_.name()
        << " cannot backpropagate to its keypoint input (bottom[1]); "
        << "set propagate_down: false for it.";
  }
  if (!propagate_down[0]) { return; }
  const int count = bottom[0]->count();
  const Dtype* score = bottom[0]->cpu_data();
  const Dtype* target = target_.cpu_data();
  Dtype* diff = bottom[0]->mutable_cpu_diff();
  const Dtype scale = top[0]->cpu_diff()[0] / normalizer_;
  for (int i = 0; i < count; ++i) {
    diff[i] = sigmoid_cross_entropy_grad(score[i], target[i], scale);
  }
}

#ifdef CPU_ONLY
STUB_GPU(KeypointSigmoidCrossEntropyLossLayer);
#endif

INSTANTIATE_CLASS(KeypointSigmoidCrossEntropyLossLayer);
REGISTER_LAYER_CLASS(KeypointSigmoidCrossEntropyLoss);

}  // namespace caffe
