#ifndef CAFFE_SIGNED_SQRT_LAYER_HPP_
#define CAFFE_SIGNED_SQRT_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/layers/neuron_layer.hpp"
#include "caffe/util/host_device.hpp"

namespace caffe {

/// y = sign(x) sqrt(|x|), the first normalization after compact bilinear.
template <typename Dtype>
CAFFE_HOST_DEVICE inline Dtype signed_sqrt(Dtype x) {
  return x < 0 ? -hd::sqrt(-x) : hd::sqrt(x);
}

/// dE/dx = dE/dy * 0.5 / sqrt(|x| + epsilon): finite at x = 0.
template <typename Dtype>
CAFFE_HOST_DEVICE inline Dtype signed_sqrt_grad(Dtype x, Dtype top_diff,
    Dtype epsilon) {
  return top_diff * Dtype(0.5) / hd::sqrt(hd::abs(x) + epsilon);
}

/**
 * @brief Signed square root, @f$ y = \mathrm{sign}(x) \sqrt{|x|} @f$.
 *
 * The type name matches the compact bilinear Caffe fork (Gao et al.), so its
 * prototxts parse. The derivative @f$ 1 / (2\sqrt{|x|}) @f$ is infinite at
 * 0; Backward uses @f$ 1 / (2\sqrt{|x| + \epsilon}) @f$ with
 * signed_sqrt_param.epsilon (default 1e-8), which stays finite
 * (@f$ 0.5/\sqrt{\epsilon} @f$ at 0) and is exact to a relative
 * @f$ \epsilon / (2|x|) @f$ elsewhere.
 */
template <typename Dtype>
class SignedSqrtLayer : public NeuronLayer<Dtype> {
 public:
  explicit SignedSqrtLayer(const LayerParameter& param)
      : NeuronLayer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "SignedSqrt"; }

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
};

}  // namespace caffe

#endif  // CAFFE_SIGNED_SQRT_LAYER_HPP_
