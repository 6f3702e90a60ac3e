#ifndef CAFFE_KEYPOINT_SIGMOID_CROSS_ENTROPY_LOSS_LAYER_HPP_
#define CAFFE_KEYPOINT_SIGMOID_CROSS_ENTROPY_LOSS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/layers/loss_layer.hpp"
#include "caffe/util/host_device.hpp"
#include "caffe/util/keypoint_grid.hpp"

namespace caffe {

/// The target of heatmap cell (i, j) for one keypoint kp = (x, y, visible)
/// given in image coordinates. 0 for an invisible keypoint (visible <= 0 or
/// NaN). NEAREST: 1 at the nearest cell (clamped into the map), else 0.
/// GAUSSIAN: exp(-d^2 / (2 sigma^2)), d the distance in cells between (i, j)
/// and the continuous position ((x - offset) / stride, (y - offset) / stride).
template <typename Dtype>
CAFFE_HOST_DEVICE inline Dtype keypoint_target(int i, int j, const Dtype* kp,
    int height, int width, Dtype stride, Dtype offset, bool gaussian,
    Dtype sigma) {
  if (!(kp[2] > 0)) { return Dtype(0); }
  if (gaussian) {
    const Dtype dx = Dtype(j) - grid_position(kp[0], offset, stride);
    const Dtype dy = Dtype(i) - grid_position(kp[1], offset, stride);
    return hd::exp(-(dx * dx + dy * dy) / (Dtype(2) * sigma * sigma));
  }
  return (i == grid_cell(kp[1], offset, stride, height) &&
          j == grid_cell(kp[0], offset, stride, width)) ? Dtype(1) : Dtype(0);
}

/// Sigmoid cross-entropy of logit s against target t in [0, 1],
/// -[t log sigmoid(s) + (1 - t) log(1 - sigmoid(s))], in the overflow-free
/// form of Caffe's SigmoidCrossEntropyLossLayer:
/// -(s (t - [s >= 0]) - log(1 + exp(s - 2 s [s >= 0]))).
template <typename Dtype>
CAFFE_HOST_DEVICE inline Dtype sigmoid_cross_entropy(Dtype s, Dtype t) {
  const Dtype pos = s >= 0 ? Dtype(1) : Dtype(0);
  return -(s * (t - pos) -
           hd::log(Dtype(1) + hd::exp(s - Dtype(2) * s * pos)));
}

/// d(loss)/ds = (sigmoid(s) - t) * scale; sigmoid evaluated without overflow.
template <typename Dtype>
CAFFE_HOST_DEVICE inline Dtype sigmoid_cross_entropy_grad(Dtype s, Dtype t,
    Dtype scale) {
  const Dtype sigmoid = s >= 0 ? Dtype(1) / (Dtype(1) + hd::exp(-s))
                               : hd::exp(s) / (Dtype(1) + hd::exp(s));
  return (sigmoid - t) * scale;
}

/**
 * @brief Pixelwise sigmoid cross-entropy between keypoint score maps and
 *        target maps built on the fly from keypoint coordinates
 *        (Zhang et al., "Fine-grained pose prediction, normalization, and
 *        recognition", section 3.1).
 *
 * bottom[0]: scores (logits) @f$ s @f$, N x K x H x W, one map per keypoint.
 * bottom[1]: keypoints, N * K * 3 values in any shape (e.g. N x 1 x K x 3 from
 * a Data layer): (x, y, visible) per keypoint, in input-image pixels.
 * top[0]: the loss. top[1] (optional): the target map @f$ p @f$, N x K x H x W,
 * for inspection; loss_weight defaults to 1 for top[0] and 0 for top[1] (one
 * loss_weight value is enough with two tops).
 *
 * Heatmap cell (i, j) sits at image point (offset + stride j,
 * offset + stride i) (keypoint_loss_param.stride, .offset). With
 * target: NEAREST (the paper) a visible keypoint is a single positive cell,
 * j = round((x - offset) / stride), i = round((y - offset) / stride), halves
 * away from zero, clamped into the map; all other cells are negatives, and an
 * invisible keypoint (visible <= 0) is negative everywhere. GAUSSIAN gives
 * @f$ p = \exp(-d^2 / 2\sigma^2) @f$ instead, d the distance in cells to the
 * continuous keypoint position.
 *
 * @f$ \ell = -\frac{1}{Z} \sum_{n,k,i,j} [p \log \hat p +
 * (1 - p) \log(1 - \hat p)] @f$, @f$ \hat p = \sigma(s) @f$, computed without
 * overflow as Caffe's SigmoidCrossEntropyLossLayer does. The normalizer Z
 * comes from loss_param.normalization: BATCH_SIZE (N, the paper's 1/N; the
 * default when normalization is not set), FULL or VALID (N K H W: there is no
 * ignore label, every cell is valid), NONE (1); like Caffe, Z >= 1.
 * Building the targets inside the layer avoids a dense N x K x H x W label
 * blob in the data pipeline and keeps stride/offset next to the net that
 * defines them. Backward: @f$ \partial E / \partial s = \lambda
 * (\hat p - p) / Z @f$ with @f$ \lambda @f$ the loss weight; the keypoints
 * get no gradient.
 */
template <typename Dtype>
class KeypointSigmoidCrossEntropyLossLayer : public LossLayer<Dtype> {
 public:
  explicit KeypointSigmoidCrossEntropyLossLayer(const LayerParameter& param)
      : LossLayer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const {
    return "KeypointSigmoidCrossEntropyLoss";
  }
  virtual inline int ExactNumTopBlobs() const { return -1; }
  virtual inline int MinTopBlobs() const { return 1; }
  virtual inline int MaxTopBlobs() const { return 2; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  /// Gradient to bottom[0] only; propagate_down[1] is a fatal error.
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  Dtype stride_, offset_, sigma_;
  bool gaussian_;
  LossParameter_NormalizationMode normalization_;
  Dtype normalizer_;
  int num_, channels_, height_, width_;
  /// N x K x H x W target map; its diff holds per-cell losses on the GPU.
  Blob<Dtype> target_;
};

}  // namespace caffe

#endif  // CAFFE_KEYPOINT_SIGMOID_CROSS_ENTROPY_LOSS_LAYER_HPP_
