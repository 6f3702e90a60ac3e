#ifndef CAFFE_CPU_ENGINE_HPP_
#define CAFFE_CPU_ENGINE_HPP_

// posenorm's CPU engine: what Caffe's layer factory creates for the CAFFE
// engine of Convolution, Pooling and ReLU (patches/
// cpu-engine-layer-factory.patch), so every prototxt gets it unedited.  The
// layers are Caffe's own classes with faster CPU code; their GPU code is
// Caffe's.  POSENORM_CPU_ENGINE=reference (read when a layer is created)
// gives Caffe's original classes, for comparisons.

#include "caffe/common.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

template <typename Dtype>
shared_ptr<Layer<Dtype> > CpuEngineConvolution(const LayerParameter& param);

template <typename Dtype>
shared_ptr<Layer<Dtype> > CpuEnginePooling(const LayerParameter& param);

template <typename Dtype>
shared_ptr<Layer<Dtype> > CpuEngineReLU(const LayerParameter& param);

}  // namespace caffe

#endif  // CAFFE_CPU_ENGINE_HPP_
