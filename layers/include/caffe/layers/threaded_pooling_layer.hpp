#ifndef CAFFE_THREADED_POOLING_LAYER_HPP_
#define CAFFE_THREADED_POOLING_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/layers/pooling_layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Caffe's PoolingLayer with MAX and AVE pooling spread over the CPU
 *        engine's threads, one (image, channel) plane at a time: what
 *        `type: "Pooling"` runs on the CPU.  Same loops per plane, so the
 *        same results and the same argmax mask, bit for bit.
 */
template <typename Dtype>
class ThreadedPoolingLayer : public PoolingLayer<Dtype> {
 public:
  explicit ThreadedPoolingLayer(const LayerParameter& param)
      : PoolingLayer<Dtype>(param) {}

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

 private:
  bool threaded() const;
  void max_plane(const Dtype* in, Dtype* out, int* mask, Dtype* top_mask)
      const;
  int ave_window(int ph, int pw, int* hstart, int* hend, int* wstart,
      int* wend) const;
  void ave_plane(const Dtype* in, Dtype* out) const;
  void ave_plane_backward(const Dtype* top_diff, Dtype* bottom_diff) const;
};

}  // namespace caffe

#endif  // CAFFE_THREADED_POOLING_LAYER_HPP_
