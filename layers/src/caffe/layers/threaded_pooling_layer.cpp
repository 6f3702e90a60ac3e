#include <algorithm>
#include <cfloat>
#include <cstring>
#include <vector>

#include "caffe/layers/threaded_pooling_layer.hpp"
#include "caffe/util/cpu_parallel.hpp"
#include "caffe/util/cpu_simd.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

using std::max;
using std::min;

namespace {

const long kMinPlanesPerThread = 4;

// MAX over 2x2 windows at stride 2 (VGG's pools), output columns [0, n)
// of one row whose windows lie inside the input: Caffe's comparisons in
// Caffe's order, kLanes columns at a time.  r0, r1: the window's input
// rows, index0: r0's offset in the plane (Caffe's mask holds plane
// offsets).
CAFFE_CPU_CLONES void max_2x2_row(const float* r0, const float* r1, int n,
                                  int index0, int width, float* out,
                                  int* mask) {
  typedef cpu::simd::VecF V;
  typedef cpu::simd::MaskF I;
  const int L = cpu::simd::kLanes;
  I even, odd;  // shuffle masks; even is also each window's column offset
  for (int l = 0; l < L; ++l) {
    even[l] = 2 * l;
    odd[l] = 2 * l + 1;
  }
  int pw = 0;
  for (; pw + L <= n; pw += L) {
    const V a0 = cpu::simd::load(r0 + 2 * pw),
        a1 = cpu::simd::load(r0 + 2 * pw + L),
        b0 = cpu::simd::load(r1 + 2 * pw),
        b1 = cpu::simd::load(r1 + 2 * pw + L);
    const V x[4] = {__builtin_shuffle(a0, a1, even),
                    __builtin_shuffle(a0, a1, odd),
                    __builtin_shuffle(b0, b1, even),
                    __builtin_shuffle(b0, b1, odd)};
    const I at = even + (index0 + 2 * pw);
    const int offset[4] = {0, 1, width, width + 1};
    V best = V{} - FLT_MAX;
    I best_index = I{} - 1;
    for (int k = 0; k < 4; ++k) {
      const I greater = x[k] > best;
      best = greater ? x[k] : best;
      best_index = greater ? at + offset[k] : best_index;
    }
    cpu::simd::store(out + pw, best);
    std::memcpy(mask + pw, &best_index, sizeof(best_index));  // unaligned
  }
  for (; pw < n; ++pw) {
    const float x[4] = {r0[2 * pw], r0[2 * pw + 1], r1[2 * pw], r1[2 * pw + 1]};
    const int at[4] = {index0 + 2 * pw, index0 + 2 * pw + 1,
                       index0 + width + 2 * pw, index0 + width + 2 * pw + 1};
    float best = -FLT_MAX;
    int best_index = -1;
    for (int k = 0; k < 4; ++k) {
      const bool greater = x[k] > best;
      best = greater ? x[k] : best;
      best_index = greater ? at[k] : best_index;
    }
    out[pw] = best;
    mask[pw] = best_index;
  }
}

// The whole windows of a plane of VGG's pools: output rows [0, height / 2)
// by columns [0, width / 2); false where not done (doubles).
template <typename Dtype>
bool max_2x2_whole(const Dtype*, int, int, int, Dtype*, int*) {
  return false;
}

template <>
bool max_2x2_whole<float>(const float* in, int height, int width,
                          int pooled_width, float* out, int* mask) {
  for (int ph = 0; ph < height / 2; ++ph) {
    const int index0 = 2 * ph * width;
    max_2x2_row(in + index0, in + index0 + width, width / 2, index0, width,
                out + ph * pooled_width, mask + ph * pooled_width);
  }
  return true;
}

}  // namespace

template <typename Dtype>
bool ThreadedPoolingLayer<Dtype>::threaded() const {
  const PoolingParameter_PoolMethod pool =
      this->layer_param_.pooling_param().pool();
  return pool == PoolingParameter_PoolMethod_MAX ||
      pool == PoolingParameter_PoolMethod_AVE;
}

// The per-plane loops of PoolingLayer::Forward_cpu / Backward_cpu.
template <typename Dtype>
void ThreadedPoolingLayer<Dtype>::max_plane(const Dtype* in, Dtype* out,
    int* mask, Dtype* top_mask) const {
  const bool vgg = mask && this->kernel_h_ == 2 && this->kernel_w_ == 2 &&
      this->stride_h_ == 2 && this->stride_w_ == 2 && this->pad_h_ == 0 &&
      this->pad_w_ == 0 && max_2x2_whole(in, this->height_, this->width_,
                                         this->pooled_width_, out, mask);
  // The rest: windows clipped by the edge, or every window when not vgg.
  const int whole_h = vgg ? this->height_ / 2 : 0;
  const int whole_w = vgg ? this->width_ / 2 : 0;
  for (int ph = 0; ph < this->pooled_height_; ++ph) {
    for (int pw = ph < whole_h ? whole_w : 0; pw < this->pooled_width_;
         ++pw) {
      int hstart = ph * this->stride_h_ - this->pad_h_;
      int wstart = pw * this->stride_w_ - this->pad_w_;
      const int hend = min(hstart + this->kernel_h_, this->height_);
      const int wend = min(wstart + this->kernel_w_, this->width_);
      hstart = max(hstart, 0);
      wstart = max(wstart, 0);
      const int pool_index = ph * this->pooled_width_ + pw;
      Dtype best = Dtype(-FLT_MAX);
      int best_index = -1;
      // Caffe's `if (v > best)`, as selects: no branch on the data, which
      // random activations mispredict.
      for (int h = hstart; h < hend; ++h) {
        for (int w = wstart; w < wend; ++w) {
          const int index = h * this->width_ + w;
          const Dtype v = in[index];
          const bool greater = v > best;
          best = greater ? v : best;
          best_index = greater ? index : best_index;
        }
      }
      out[pool_index] = best;
      if (top_mask) {
        top_mask[pool_index] = static_cast<Dtype>(best_index);
      } else {
        mask[pool_index] = best_index;
      }
    }
  }
}

// AVE's window of output (ph, pw) inside the image, and Caffe's divisor:
// the window clipped to the padded image.
template <typename Dtype>
int ThreadedPoolingLayer<Dtype>::ave_window(int ph, int pw, int* hstart,
    int* hend, int* wstart, int* wend) const {
  const int h0 = ph * this->stride_h_ - this->pad_h_;
  const int w0 = pw * this->stride_w_ - this->pad_w_;
  const int h1 = min(h0 + this->kernel_h_, this->height_ + this->pad_h_);
  const int w1 = min(w0 + this->kernel_w_, this->width_ + this->pad_w_);
  *hstart = max(h0, 0);
  *wstart = max(w0, 0);
  *hend = min(h1, this->height_);
  *wend = min(w1, this->width_);
  return (h1 - h0) * (w1 - w0);
}

template <typename Dtype>
void ThreadedPoolingLayer<Dtype>::ave_plane(const Dtype* in, Dtype* out)
    const {
  for (int ph = 0; ph < this->pooled_height_; ++ph) {
    for (int pw = 0; pw < this->pooled_width_; ++pw) {
      int hstart, hend, wstart, wend;
      const int pool_size = ave_window(ph, pw, &hstart, &hend, &wstart, &wend);
      Dtype sum = 0;
      for (int h = hstart; h < hend; ++h) {
        for (int w = wstart; w < wend; ++w) sum += in[h * this->width_ + w];
      }
      out[ph * this->pooled_width_ + pw] = sum / pool_size;
    }
  }
}

template <typename Dtype>
void ThreadedPoolingLayer<Dtype>::ave_plane_backward(const Dtype* top_diff,
    Dtype* bottom_diff) const {
  for (int ph = 0; ph < this->pooled_height_; ++ph) {
    for (int pw = 0; pw < this->pooled_width_; ++pw) {
      int hstart, hend, wstart, wend;
      const int pool_size = ave_window(ph, pw, &hstart, &hend, &wstart, &wend);
      for (int h = hstart; h < hend; ++h) {
        for (int w = wstart; w < wend; ++w) {
          bottom_diff[h * this->width_ + w] +=
              top_diff[ph * this->pooled_width_ + pw] / pool_size;
        }
      }
    }
  }
}

template <typename Dtype>
void ThreadedPoolingLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  if (!threaded()) {
    PoolingLayer<Dtype>::Forward_cpu(bottom, top);
    return;
  }
  const bool is_max = this->layer_param_.pooling_param().pool() ==
      PoolingParameter_PoolMethod_MAX;
  const Dtype* bottom_data = bottom[0]->cpu_data();
  Dtype* top_data = top[0]->mutable_cpu_data();
  Dtype* top_mask = is_max && top.size() > 1 ? top[1]->mutable_cpu_data()
      : NULL;
  int* mask = is_max && !top_mask ? this->max_idx_.mutable_cpu_data() : NULL;
  const long in_plane = static_cast<long>(this->height_) * this->width_;
  const long out_plane =
      static_cast<long>(this->pooled_height_) * this->pooled_width_;
  cpu::parallel_for(static_cast<long>(bottom[0]->num()) * this->channels_,
      [&](long p0, long p1) {
    for (long p = p0; p < p1; ++p) {
      if (is_max) {
        max_plane(bottom_data + p * in_plane, top_data + p * out_plane,
                  mask ? mask + p * out_plane : NULL,
                  top_mask ? top_mask + p * out_plane : NULL);
      } else {
        ave_plane(bottom_data + p * in_plane, top_data + p * out_plane);
      }
    }
  }, kMinPlanesPerThread);
}

template <typename Dtype>
void ThreadedPoolingLayer<Dtype>::Backward_cpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  if (!threaded()) {
    PoolingLayer<Dtype>::Backward_cpu(top, propagate_down, bottom);
    return;
  }
  if (!propagate_down[0]) return;
  const bool is_max = this->layer_param_.pooling_param().pool() ==
      PoolingParameter_PoolMethod_MAX;
  const Dtype* top_diff = top[0]->cpu_diff();
  Dtype* bottom_diff = bottom[0]->mutable_cpu_diff();
  const Dtype* top_mask = is_max && top.size() > 1 ? top[1]->cpu_data()
      : NULL;
  const int* mask = is_max && !top_mask ? this->max_idx_.cpu_data() : NULL;
  const long in_plane = static_cast<long>(this->height_) * this->width_;
  const long out_plane =
      static_cast<long>(this->pooled_height_) * this->pooled_width_;
  cpu::parallel_for(static_cast<long>(bottom[0]->num()) * this->channels_,
      [&](long p0, long p1) {
    caffe_set(static_cast<int>((p1 - p0) * in_plane), Dtype(0),
              bottom_diff + p0 * in_plane);
    for (long p = p0; p < p1; ++p) {
      Dtype* dx = bottom_diff + p * in_plane;
      const Dtype* dy = top_diff + p * out_plane;
      if (!is_max) {
        ave_plane_backward(dy, dx);
        continue;
      }
      const long o = p * out_plane;
      for (long i = 0; i < out_plane; ++i) {
        const int index = top_mask ? static_cast<int>(top_mask[o + i])
            : mask[o + i];
        if (index >= 0) dx[index] += dy[i];  // -1: a window of -FLT_MAX
      }
    }
  }, kMinPlanesPerThread);
}

INSTANTIATE_CLASS(ThreadedPoolingLayer);

}  // namespace caffe
