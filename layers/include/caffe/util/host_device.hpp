#ifndef CAFFE_UTIL_HOST_DEVICE_HPP_
#define CAFFE_UTIL_HOST_DEVICE_HPP_

// Per-element math shared by a layer's .cpp (host) and .cu (device) code: one
// definition, so the CPU and GPU paths cannot drift apart.

#include <cmath>

#ifdef __CUDACC__
#define CAFFE_HOST_DEVICE __host__ __device__
#else
#define CAFFE_HOST_DEVICE
#endif

namespace caffe {
namespace hd {

// sqrt/exp/log/round/abs that pick the right overload on host and device.
template <typename Dtype>
CAFFE_HOST_DEVICE inline Dtype sqrt(Dtype x) {
#ifdef __CUDA_ARCH__
  return ::sqrt(x);
#else
  return std::sqrt(x);
#endif
}

template <typename Dtype>
CAFFE_HOST_DEVICE inline Dtype exp(Dtype x) {
#ifdef __CUDA_ARCH__
  return ::exp(x);
#else
  return std::exp(x);
#endif
}

template <typename Dtype>
CAFFE_HOST_DEVICE inline Dtype log(Dtype x) {
#ifdef __CUDA_ARCH__
  return ::log(x);
#else
  return std::log(x);
#endif
}

/// Rounds half away from zero, like std::round, on host and device.
template <typename Dtype>
CAFFE_HOST_DEVICE inline Dtype round(Dtype x) {
#ifdef __CUDA_ARCH__
  return ::round(x);
#else
  return std::round(x);
#endif
}

template <typename Dtype>
CAFFE_HOST_DEVICE inline Dtype abs(Dtype x) {
  return x < 0 ? -x : x;
}

}  // namespace hd
}  // namespace caffe

#endif  // CAFFE_UTIL_HOST_DEVICE_HPP_
