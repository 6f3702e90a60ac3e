#ifndef CAFFE_BLOCKED_CONV_LAYER_HPP_
#define CAFFE_BLOCKED_CONV_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/layers/conv_layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/util/im2col_rows.hpp"
#include "caffe/util/winograd.hpp"

namespace caffe {

/**
 * @brief Caffe's ConvolutionLayer with a blocked, multi-threaded CPU path:
 *        what `type: "Convolution"` runs on the CPU (layer_factory.cpp,
 *        patches/cpu-engine-layer-factory.patch).
 *
 * Caffe's CPU path builds the whole column matrix of an image (576 MB for
 * VGG-16's conv1_2 at 500x500), single-threaded and out of cache, then runs
 * one GEMM.  Here the output rows are cut into bands whose column slice
 * fits in cache; each thread takes whole bands (of every image in the
 * batch), builds the slice and multiplies it with a single-threaded GEMM,
 * so the slice is read back from its own core's cache.  The backward pass
 * is banded alike: the weight gradient accumulates per thread and is summed
 * at the end; the data gradient of even bands, then of odd bands, is
 * scattered back (col2im), so no two threads write the same input row.
 * The schedule is static: results do not depend on timing.
 *
 * 3x3, stride-1, undilated, ungrouped convolutions run as Winograd
 * F(4x4, 3x3) instead (caffe/util/winograd.hpp): forward, the data
 * gradient as a Winograd convolution of the top diff with the flipped
 * kernel, and the weight gradient as a Winograd correlation of the input
 * with the top diff (winograd_weight_grad).  POSENORM_WINOGRAD (read when
 * the layer is created): "T" or "T,W", T for the forward pass and data
 * gradient, W for the weight gradient (T when absent): 0 off, 2 or 4
 * forces F(2x2) or F(4x4) on every such layer, auto (or unset) picks per
 * layer (winograd_tile(), winograd_weight_tile()).
 *
 * Same parameters, weights and numerics (up to float summation order, and
 * Winograd's rounding: docs/bench_conv.md) as ConvolutionLayer; N-D
 * convolutions use Caffe's path, and so does the GPU.
 */
template <typename Dtype>
class BlockedConvolutionLayer : public ConvolutionLayer<Dtype> {
 public:
  explicit BlockedConvolutionLayer(const LayerParameter& param)
      : ConvolutionLayer<Dtype>(param),
        winograd_setting_(cpu::winograd_setting()) {}

  /// The Winograd output tile this layer uses now: 4 or 2, 0 for the
  /// banded path.
  int winograd_tile() const;
  /// The same for the weight gradient.
  int winograd_weight_tile() const;

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

 private:
  struct Plan;
  bool blocked() const;
  bool winograd_geometry() const;
  Plan plan(int nthreads, int min_items) const;
  void reserve(const Plan& p, bool backward);
  Dtype* thread_buffer(int tid);
  void forward_band(const Plan& p, const Dtype* bottom, const Dtype* weight,
      Dtype* top, int band, Dtype* col) const;
  void backward_band(const Plan& p, const Dtype* top_diff,
      const Dtype* bottom, const Dtype* weight, Dtype* weight_diff,
      Dtype* bottom_diff, int band, Dtype* col) const;
  void backward_bias(const Dtype* top_diff, Dtype* bias_diff) const;
  cpu::WinogradShape winograd_shape(int m, bool flip) const;
  const Dtype* winograd_kernel(int m, bool flip);

  // The transformed kernel (forward, flipped) and the weights it was made
  // from: made again only when they change (never, in a feature pass).
  struct WinogradKernel {
    int m = 0;
    std::vector<Dtype> weights, u;
  };
  const cpu::WinogradSetting winograd_setting_;
  WinogradKernel winograd_[2];
  std::vector<Dtype> winograd_scratch_;

  std::vector<Dtype> buffers_;  // per thread: a column slice (+ weight diff)
  long buffer_stride_ = 0;
};

/// Tests: the smallest band (512 columns by default), so that tiny maps are
/// cut into bands too.
void BlockedConvolutionMinBandColumns(int cols);

}  // namespace caffe

#endif  // CAFFE_BLOCKED_CONV_LAYER_HPP_
