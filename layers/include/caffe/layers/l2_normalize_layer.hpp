#ifndef CAFFE_L2_NORMALIZE_LAYER_HPP_
#define CAFFE_L2_NORMALIZE_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/util/host_device.hpp"

namespace caffe {

/// Gradient of y = x / n with n = sqrt(sum x^2 + eps), given y, n and
/// dot = sum_j y_j dE/dy_j: dE/dx = (dE/dy - y dot) / n.
template <typename Dtype>
CAFFE_HOST_DEVICE inline Dtype l2_normalize_grad(Dtype top_diff, Dtype top,
    Dtype dot, Dtype norm) {
  return (top_diff - top * dot) / norm;
}

/**
 * @brief Divides each sample by its L2 norm over all non-batch axes:
 *        @f$ y = x / \sqrt{\sum x^2 + \epsilon} @f$.
 *
 * The last step of the compact bilinear feature (after SignedSqrt). The type
 * name matches the compact bilinear Caffe fork. epsilon
 * (l2_normalize_param.epsilon, default 1e-12, must be > 0) keeps an
 * all-zero sample at zero; Backward is the exact derivative of the expression above.
 */
template <typename Dtype>
class L2NormalizeLayer : public Layer<Dtype> {
 public:
  explicit L2NormalizeLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "L2Normalize"; }
  virtual inline int ExactNumBottomBlobs() const { return 1; }
  virtual inline int ExactNumTopBlobs() const { return 1; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  Dtype epsilon_;
  Blob<Dtype> norm_;     // N: sqrt(sum x^2 + eps) per sample
  Blob<Dtype> dot_;      // N: sum y dE/dy per sample (backward)
  Blob<Dtype> squared_;  // like bottom: scratch for x^2 and y dE/dy
  Blob<Dtype> ones_;     // per-sample length: all ones, for GEMV row sums
};

}  // namespace caffe

#endif  // CAFFE_L2_NORMALIZE_LAYER_HPP_
