#ifndef CAFFE_THREADED_RELU_LAYER_HPP_
#define CAFFE_THREADED_RELU_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/layers/relu_layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Caffe's ReLULayer with its CPU loops spread over the CPU engine's
 *        threads and vectorized for the CPU at hand (run-time dispatch):
 *        what `type: "ReLU"` runs on the CPU.  Same results, bit for bit.
 */
template <typename Dtype>
class ThreadedReLULayer : public ReLULayer<Dtype> {
 public:
  explicit ThreadedReLULayer(const LayerParameter& param)
      : ReLULayer<Dtype>(param) {}

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
};

}  // namespace caffe

#endif  // CAFFE_THREADED_RELU_LAYER_HPP_
