#include <algorithm>
#include <vector>

#include "caffe/layers/blocked_conv_layer.hpp"
#include "caffe/util/cpu_gemm.hpp"
#include "caffe/util/cpu_parallel.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

namespace {

// A band's column slice aims at this many bytes (a core's L2 with room for
// the GEMM's packed panels), but has at least min_cols columns: each GEMM
// call repacks the weights, which must stay small next to its work.
const long kSliceBytes = 1L << 20;
int min_cols = 512;

// Winograd when the engine picks: F(4x4) from this many input channels
// (fewer: the transforms outweigh the GEMMs; docs/bench_conv.md).
const int kWinogradMinChannels = 16;
// The Winograd weight gradient when the engine picks: F(4x4) from this many
// output positions per channel pair (N x H x W of the top; fewer: the
// (m + 2)^2 x out x in sums it writes and reads back outweigh the saved
// multiplications; docs/bench_conv.md).
const long kWinogradWeightMinOutputs = 768;

using cpu::gemm;

}  // namespace

template <typename Dtype>
struct BlockedConvolutionLayer<Dtype>::Plan {
  cpu::ConvGeometry g;   // of one group's input channels
  int groups, m, k;      // per group: output channels, kernel_dim
  int rows, bands;       // output rows per band, bands per image
  long in_dim, out_hw;   // one group's input count, output plane size
  int nthreads;
  long col_size, weight_size;

  int band_begin(int b) const { return b * rows; }
  int band_end(int b) const { return std::min(g.out_h, (b + 1) * rows); }
};

template <typename Dtype>
bool BlockedConvolutionLayer<Dtype>::blocked() const {
  return this->num_spatial_axes_ == 2 && !this->force_nd_im2col_;
}

template <typename Dtype>
typename BlockedConvolutionLayer<Dtype>::Plan
BlockedConvolutionLayer<Dtype>::plan(int nthreads, int min_items) const {
  Plan p;
  const int* kernel = this->kernel_shape_.cpu_data();
  const int* stride = this->stride_.cpu_data();
  const int* pad = this->pad_.cpu_data();
  const int* dilation = this->dilation_.cpu_data();
  const int* in_shape = this->conv_input_shape_.cpu_data();
  p.groups = this->group_;
  p.g.channels = this->channels_ / this->group_;
  p.g.height = in_shape[1];
  p.g.width = in_shape[2];
  p.g.kernel_h = kernel[0];
  p.g.kernel_w = kernel[1];
  p.g.stride_h = stride[0];
  p.g.stride_w = stride[1];
  p.g.pad_h = pad[0];
  p.g.pad_w = pad[1];
  p.g.dilation_h = dilation[0];
  p.g.dilation_w = dilation[1];
  p.g.out_h = this->output_shape_[0];
  p.g.out_w = this->output_shape_[1];
  p.m = this->num_output_ / this->group_;
  p.k = p.g.channels * p.g.kernel_h * p.g.kernel_w;
  p.in_dim = static_cast<long>(p.g.channels) * p.g.height * p.g.width;
  p.out_hw = static_cast<long>(p.g.out_h) * p.g.out_w;
  // Bands two apart read disjoint input rows (the backward scatter relies
  // on it): rows * stride >= the kernel's extent.
  const int extent = (p.g.kernel_h - 1) * p.g.dilation_h + 1;
  const int min_rows = (extent + p.g.stride_h - 1) / p.g.stride_h;
  long cols = std::max<long>(min_cols, kSliceBytes / (sizeof(Dtype) * p.k));
  p.rows = std::max<long>(min_rows, (cols + p.g.out_w - 1) / p.g.out_w);
  // Enough bands to keep every thread busy (in each of the backward
  // scatter's two phases too).
  const int per_image = (min_items + this->num_ - 1) / this->num_;
  p.rows = std::max(min_rows, std::min(p.rows,
      (p.g.out_h + per_image - 1) / per_image));
  p.rows = std::min(p.rows, p.g.out_h);
  p.bands = (p.g.out_h + p.rows - 1) / p.rows;
  p.nthreads = std::max(1, std::min(nthreads, this->num_ * p.bands));
  // Too little output for a band of min_cols per thread: one band per
  // image on this thread, its GEMM threaded by the BLAS (as Caffe does).
  if (static_cast<long>(this->num_) * p.out_hw <
      static_cast<long>(nthreads) * min_cols) {
    p.rows = p.g.out_h;
    p.bands = 1;
    p.nthreads = 1;
  }
  p.col_size = static_cast<long>(p.k) * p.rows * p.g.out_w;
  p.weight_size = this->blobs_[0]->count();
  return p;
}

// Per thread: a column slice, then (backward) a weight diff.
template <typename Dtype>
void BlockedConvolutionLayer<Dtype>::reserve(const Plan& p, bool backward) {
  buffer_stride_ = p.col_size + (backward ? p.weight_size : 0);
  if (buffers_.size() < p.nthreads * buffer_stride_) {
    buffers_.resize(p.nthreads * buffer_stride_);
  }
}

template <typename Dtype>
Dtype* BlockedConvolutionLayer<Dtype>::thread_buffer(int tid) {
  return buffers_.data() + tid * buffer_stride_;
}

// 3x3, stride 1, undilated, ungrouped: what Winograd can take.
template <typename Dtype>
bool BlockedConvolutionLayer<Dtype>::winograd_geometry() const {
  if (!blocked() || this->group_ != 1) return false;
  const int* kernel = this->kernel_shape_.cpu_data();
  const int* stride = this->stride_.cpu_data();
  const int* dilation = this->dilation_.cpu_data();
  for (int i = 0; i < 2; ++i) {
    if (kernel[i] != 3 || stride[i] != 1 || dilation[i] != 1) return false;
  }
  return true;
}

template <typename Dtype>
int BlockedConvolutionLayer<Dtype>::winograd_tile() const {
  if (winograd_setting_.data == 0 || !winograd_geometry()) return 0;
  if (winograd_setting_.data > 0) return winograd_setting_.data;
  return this->channels_ >= kWinogradMinChannels ? 4 : 0;
}

template <typename Dtype>
int BlockedConvolutionLayer<Dtype>::winograd_weight_tile() const {
  if (winograd_setting_.weight == 0 || !winograd_geometry()) return 0;
  if (winograd_setting_.weight > 0) return winograd_setting_.weight;
  const long outputs = static_cast<long>(this->num_) * this->out_spatial_dim_;
  return this->channels_ >= kWinogradMinChannels &&
      outputs >= kWinogradWeightMinOutputs ? 4 : 0;
}

// Forward: bottom -> top.  flip (the data gradient): top diff -> bottom
// diff, padded by 2 - pad so that it reads every top position that a
// bottom position fed.
template <typename Dtype>
cpu::WinogradShape BlockedConvolutionLayer<Dtype>::winograd_shape(int m,
    bool flip) const {
  const int* in_shape = this->conv_input_shape_.cpu_data();
  const int* pad = this->pad_.cpu_data();
  cpu::WinogradShape s;
  s.m = m;
  s.in_channels = flip ? this->num_output_ : this->channels_;
  s.height = flip ? this->output_shape_[0] : in_shape[1];
  s.width = flip ? this->output_shape_[1] : in_shape[2];
  s.out_channels = flip ? this->channels_ : this->num_output_;
  s.out_h = flip ? in_shape[1] : this->output_shape_[0];
  s.out_w = flip ? in_shape[2] : this->output_shape_[1];
  s.pad_h = flip ? 2 - pad[0] : pad[0];
  s.pad_w = flip ? 2 - pad[1] : pad[1];
  return s;
}

template <typename Dtype>
const Dtype* BlockedConvolutionLayer<Dtype>::winograd_kernel(int m,
    bool flip) {
  WinogradKernel& k = winograd_[flip];
  const Blob<Dtype>& w = *this->blobs_[0];
  if (k.m != m || k.weights.size() != w.count() ||
      !std::equal(k.weights.begin(), k.weights.end(), w.cpu_data())) {
    k.m = m;
    k.weights.assign(w.cpu_data(), w.cpu_data() + w.count());
    k.u.resize(cpu::winograd_kernel_size(m, this->num_output_,
                                         this->channels_, flip));
    cpu::winograd_kernel(m, w.cpu_data(), this->num_output_, this->channels_,
                         flip, k.u.data());
  }
  return k.u.data();
}

template <typename Dtype>
void BlockedConvolutionLayer<Dtype>::forward_band(const Plan& p,
    const Dtype* bottom, const Dtype* weight, Dtype* top, int band,
    Dtype* col) const {
  const int r0 = p.band_begin(band), r1 = p.band_end(band);
  const int cols = (r1 - r0) * p.g.out_w;
  const Dtype* bias = this->bias_term_ ? this->blobs_[1]->cpu_data() : NULL;
  for (int gi = 0; gi < p.groups; ++gi) {
    const Dtype* in = bottom + gi * p.in_dim;
    Dtype* out = top + gi * p.m * p.out_hw + r0 * p.g.out_w;
    if (this->is_1x1_) {
      gemm(false, false, p.m, cols, p.k, Dtype(1), weight + gi * p.m * p.k,
           p.k, in + r0 * p.g.out_w, p.out_hw, Dtype(0), out, p.out_hw);
    } else {
      cpu::im2col_rows(in, p.g, r0, r1, col);
      gemm(false, false, p.m, cols, p.k, Dtype(1), weight + gi * p.m * p.k,
           p.k, col, cols, Dtype(0), out, p.out_hw);
    }
    if (bias) {
      for (int o = 0; o < p.m; ++o) {
        const Dtype b = bias[gi * p.m + o];
        Dtype* row = out + o * p.out_hw;
        for (int j = 0; j < cols; ++j) row[j] += b;
      }
    }
  }
}

template <typename Dtype>
void BlockedConvolutionLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  if (!blocked()) {
    ConvolutionLayer<Dtype>::Forward_cpu(bottom, top);
    return;
  }
  const int nthreads = cpu::num_threads();
  if (const int m = winograd_tile()) {
    const Dtype* u = winograd_kernel(m, false);
    const cpu::WinogradShape s = winograd_shape(m, false);
    const Dtype* bias = this->bias_term_ ? this->blobs_[1]->cpu_data() : NULL;
    for (int i = 0; i < bottom.size(); ++i) {
      cpu::winograd_conv(s, this->num_, bottom[i]->cpu_data(),
          this->bottom_dim_, u, bias, top[i]->mutable_cpu_data(),
          this->top_dim_, nthreads, &winograd_scratch_);
    }
    return;
  }
  const Plan p = plan(nthreads, nthreads);
  reserve(p, false);
  const Dtype* weight = this->blobs_[0]->cpu_data();
  const long items = static_cast<long>(this->num_) * p.bands;
  cpu::SingleThreadedBlas single(p.nthreads > 1);
  for (int i = 0; i < bottom.size(); ++i) {
    const Dtype* bottom_data = bottom[i]->cpu_data();
    Dtype* top_data = top[i]->mutable_cpu_data();
    cpu::parallel(p.nthreads, [&](int tid, int nt) {
      Dtype* col = thread_buffer(tid);
      for (long it = cpu::chunk_begin(items, tid, nt);
           it < cpu::chunk_begin(items, tid + 1, nt); ++it) {
        const long n = it / p.bands;
        forward_band(p, bottom_data + n * this->bottom_dim_, weight,
                     top_data + n * this->top_dim_, it % p.bands, col);
      }
    });
  }
}

template <typename Dtype>
void BlockedConvolutionLayer<Dtype>::backward_band(const Plan& p,
    const Dtype* top_diff, const Dtype* bottom, const Dtype* weight,
    Dtype* weight_diff, Dtype* bottom_diff, int band, Dtype* col) const {
  const int r0 = p.band_begin(band), r1 = p.band_end(band);
  const int cols = (r1 - r0) * p.g.out_w;
  for (int gi = 0; gi < p.groups; ++gi) {
    const Dtype* dout = top_diff + gi * p.m * p.out_hw + r0 * p.g.out_w;
    const Dtype* w = weight + gi * p.m * p.k;
    const long in = gi * p.in_dim;
    if (weight_diff) {
      const Dtype* b = bottom + in + r0 * p.g.out_w;
      int ldb = p.out_hw;
      if (!this->is_1x1_) {
        cpu::im2col_rows(bottom + in, p.g, r0, r1, col);
        b = col;
        ldb = cols;
      }
      gemm(false, true, p.m, p.k, cols, Dtype(1), dout, p.out_hw, b, ldb,
           Dtype(1), weight_diff + gi * p.m * p.k, p.k);
    }
    if (bottom_diff && this->is_1x1_) {
      gemm(true, false, p.k, cols, p.m, Dtype(1), w, p.k, dout, p.out_hw,
           Dtype(0), bottom_diff + in + r0 * p.g.out_w, p.out_hw);
    } else if (bottom_diff) {
      gemm(true, false, p.k, cols, p.m, Dtype(1), w, p.k, dout, p.out_hw,
           Dtype(0), col, cols);
      cpu::col2im_rows_add(col, p.g, r0, r1, bottom_diff + in);
    }
  }
}

template <typename Dtype>
void BlockedConvolutionLayer<Dtype>::backward_bias(const Dtype* top_diff,
    Dtype* bias_diff) const {
  const long hw = this->out_spatial_dim_;
  cpu::parallel_for(this->num_output_, [&](long o0, long o1) {
    for (long o = o0; o < o1; ++o) {
      Dtype sum = 0;
      for (int n = 0; n < this->num_; ++n) {
        const Dtype* row = top_diff + n * this->top_dim_ + o * hw;
        for (long j = 0; j < hw; ++j) sum += row[j];
      }
      bias_diff[o] += sum;
    }
  });
}

template <typename Dtype>
void BlockedConvolutionLayer<Dtype>::Backward_cpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  if (!blocked()) {
    ConvolutionLayer<Dtype>::Backward_cpu(top, propagate_down, bottom);
    return;
  }
  const int nthreads = cpu::num_threads();
  const Plan p = plan(nthreads, 2 * nthreads);
  const Dtype* weight = this->blobs_[0]->cpu_data();
  const int mw = winograd_weight_tile();
  const bool want_w = this->param_propagate_down_[0] && !mw;  // banded
  Dtype* weight_diff = want_w ? this->blobs_[0]->mutable_cpu_diff() : NULL;
  reserve(p, want_w);
  // Winograd gradients first: before `single`, which would leave the
  // pool's loops one thread.
  if (mw && this->param_propagate_down_[0]) {
    const cpu::WinogradShape s = winograd_shape(mw, false);
    Dtype* dw = this->blobs_[0]->mutable_cpu_diff();
    for (int i = 0; i < top.size(); ++i) {
      cpu::winograd_weight_grad(s, this->num_, bottom[i]->cpu_data(),
          this->bottom_dim_, top[i]->cpu_diff(), this->top_dim_, dw,
          nthreads, &winograd_scratch_);
    }
  }
  const int m = winograd_tile();
  vector<bool> banded_x(propagate_down);
  if (m && std::count(propagate_down.begin(), propagate_down.end(), true)) {
    const Dtype* u_flip = winograd_kernel(m, true);
    const cpu::WinogradShape s = winograd_shape(m, true);
    for (int i = 0; i < top.size(); ++i) {
      if (!propagate_down[i]) continue;
      cpu::winograd_conv(s, this->num_, top[i]->cpu_diff(), this->top_dim_,
          u_flip, static_cast<const Dtype*>(NULL),
          bottom[i]->mutable_cpu_diff(), this->bottom_dim_, nthreads,
          &winograd_scratch_);
      banded_x[i] = false;
    }
  }
  cpu::SingleThreadedBlas single(p.nthreads > 1);
  for (int i = 0; i < top.size(); ++i) {
    const Dtype* top_diff = top[i]->cpu_diff();
    if (this->bias_term_ && this->param_propagate_down_[1]) {
      backward_bias(top_diff, this->blobs_[1]->mutable_cpu_diff());
    }
    const bool want_x = banded_x[i];
    if (!want_w && !want_x) continue;
    const Dtype* bottom_data = bottom[i]->cpu_data();
    Dtype* bottom_diff = want_x ? bottom[i]->mutable_cpu_diff() : NULL;
    if (want_x && !this->is_1x1_) {
      cpu::parallel_for(bottom[i]->count(), [&](long b, long e) {
        caffe_set(static_cast<int>(e - b), Dtype(0), bottom_diff + b);
      }, 1 << 16);
    }
    // Thread 0 adds into the weight diff, the others into their own.
    if (want_w) {
      for (int t = 1; t < p.nthreads; ++t) {
        caffe_set(p.weight_size, Dtype(0), thread_buffer(t) + p.col_size);
      }
    }
    // Even bands, then odd ones: the bands of one phase scatter into
    // disjoint input rows (1x1: bands never overlap, one phase).
    const int phases = want_x && !this->is_1x1_ && p.bands > 1 ? 2 : 1;
    for (int phase = 0; phase < phases; ++phase) {
      const int per_image = (p.bands - phase + phases - 1) / phases;
      const long items = static_cast<long>(this->num_) * per_image;
      cpu::parallel(p.nthreads, [&](int tid, int nt) {
        Dtype* col = thread_buffer(tid);
        Dtype* wdiff = !want_w ? NULL : tid == 0 ? weight_diff
            : col + p.col_size;
        for (long it = cpu::chunk_begin(items, tid, nt);
             it < cpu::chunk_begin(items, tid + 1, nt); ++it) {
          const long n = it / per_image;
          const int band = phase + phases * static_cast<int>(it % per_image);
          backward_band(p, top_diff + n * this->top_dim_,
              bottom_data + n * this->bottom_dim_, weight, wdiff,
              want_x ? bottom_diff + n * this->bottom_dim_ : NULL, band, col);
        }
      });
    }
    if (want_w && p.nthreads > 1) {
      cpu::parallel_for(p.weight_size, [&](long b, long e) {
        for (int t = 1; t < p.nthreads; ++t) {
          caffe_axpy(static_cast<int>(e - b), Dtype(1),
                     thread_buffer(t) + p.col_size + b, weight_diff + b);
        }
      }, 1 << 14);
    }
  }
}

void BlockedConvolutionMinBandColumns(int cols) { min_cols = cols; }

INSTANTIATE_CLASS(BlockedConvolutionLayer);

}  // namespace caffe
