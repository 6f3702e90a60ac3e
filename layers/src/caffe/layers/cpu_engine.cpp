#include "caffe/layers/blocked_conv_layer.hpp"
#include "caffe/layers/cpu_engine.hpp"
#include "caffe/layers/threaded_pooling_layer.hpp"
#include "caffe/layers/threaded_relu_layer.hpp"
#include "caffe/util/cpu_parallel.hpp"

namespace caffe {

template <typename Dtype>
shared_ptr<Layer<Dtype> > CpuEngineConvolution(const LayerParameter& param) {
  if (cpu::use_reference_engine()) {
    return shared_ptr<Layer<Dtype> >(new ConvolutionLayer<Dtype>(param));
  }
  return shared_ptr<Layer<Dtype> >(new BlockedConvolutionLayer<Dtype>(param));
}

template <typename Dtype>
shared_ptr<Layer<Dtype> > CpuEnginePooling(const LayerParameter& param) {
  if (cpu::use_reference_engine()) {
    return shared_ptr<Layer<Dtype> >(new PoolingLayer<Dtype>(param));
  }
  return shared_ptr<Layer<Dtype> >(new ThreadedPoolingLayer<Dtype>(param));
}

template <typename Dtype>
shared_ptr<Layer<Dtype> > CpuEngineReLU(const LayerParameter& param) {
  if (cpu::use_reference_engine()) {
    return shared_ptr<Layer<Dtype> >(new ReLULayer<Dtype>(param));
  }
  return shared_ptr<Layer<Dtype> >(new ThreadedReLULayer<Dtype>(param));
}

#define INSTANTIATE_CREATOR(name) \
  template shared_ptr<Layer<float> > name<float>(const LayerParameter&); \
  template shared_ptr<Layer<double> > name<double>(const LayerParameter&)

INSTANTIATE_CREATOR(CpuEngineConvolution);
INSTANTIATE_CREATOR(CpuEnginePooling);
INSTANTIATE_CREATOR(CpuEngineReLU);

}  // namespace caffe
