#include <algorithm>
#include <cstring>

#include "caffe/util/cpu_parallel.hpp"
#include "caffe/util/im2col_rows.hpp"

namespace caffe {
namespace cpu {

namespace {

CAFFE_CPU_CLONES void add_row(float* dst, const float* src, int n) {
  for (int i = 0; i < n; ++i) dst[i] += src[i];
}
CAFFE_CPU_CLONES void add_row(double* dst, const double* src, int n) {
  for (int i = 0; i < n; ++i) dst[i] += src[i];
}

// Output columns [lo, hi) of one kernel column read inside the image.
template <typename Dtype>
void valid_cols(const ConvGeometry& g, int kw, int* lo, int* hi) {
  const int offset = kw * g.dilation_w - g.pad_w;  // input col of out col 0
  // iw = ow * stride + offset in [0, width)
  int l = offset >= 0 ? 0 : (-offset + g.stride_w - 1) / g.stride_w;
  int h = g.width - offset <= 0 ? 0
      : (g.width - offset + g.stride_w - 1) / g.stride_w;
  *lo = std::min(l, g.out_w);
  *hi = std::max(*lo, std::min(h, g.out_w));
}

}  // namespace

template <typename Dtype>
void im2col_rows(const Dtype* im, const ConvGeometry& g, int row_begin,
                 int row_end, Dtype* col) {
  const int w = g.out_w;
  for (int c = 0; c < g.channels; ++c) {
    const Dtype* plane = im + static_cast<long>(c) * g.height * g.width;
    for (int kh = 0; kh < g.kernel_h; ++kh) {
      for (int kw = 0; kw < g.kernel_w; ++kw) {
        int lo, hi;
        valid_cols<Dtype>(g, kw, &lo, &hi);
        const int offset = kw * g.dilation_w - g.pad_w;
        for (int oh = row_begin; oh < row_end; ++oh, col += w) {
          const int ih = oh * g.stride_h - g.pad_h + kh * g.dilation_h;
          if (ih < 0 || ih >= g.height) {
            std::memset(col, 0, sizeof(Dtype) * w);
            continue;
          }
          const Dtype* src = plane + static_cast<long>(ih) * g.width + offset;
          if (lo > 0) std::memset(col, 0, sizeof(Dtype) * lo);
          if (g.stride_w == 1) {
            std::memcpy(col + lo, src + lo, sizeof(Dtype) * (hi - lo));
          } else {
            for (int ow = lo; ow < hi; ++ow) col[ow] = src[ow * g.stride_w];
          }
          if (hi < w) std::memset(col + hi, 0, sizeof(Dtype) * (w - hi));
        }
      }
    }
  }
}

template <typename Dtype>
void col2im_rows_add(const Dtype* col, const ConvGeometry& g, int row_begin,
                     int row_end, Dtype* im) {
  const int w = g.out_w;
  for (int c = 0; c < g.channels; ++c) {
    Dtype* plane = im + static_cast<long>(c) * g.height * g.width;
    for (int kh = 0; kh < g.kernel_h; ++kh) {
      for (int kw = 0; kw < g.kernel_w; ++kw) {
        int lo, hi;
        valid_cols<Dtype>(g, kw, &lo, &hi);
        const int offset = kw * g.dilation_w - g.pad_w;
        for (int oh = row_begin; oh < row_end; ++oh, col += w) {
          const int ih = oh * g.stride_h - g.pad_h + kh * g.dilation_h;
          if (ih < 0 || ih >= g.height) continue;
          Dtype* dst = plane + static_cast<long>(ih) * g.width + offset;
          if (g.stride_w == 1) {
            add_row(dst + lo, col + lo, hi - lo);
          } else {
            for (int ow = lo; ow < hi; ++ow) dst[ow * g.stride_w] += col[ow];
          }
        }
      }
    }
  }
}

template void im2col_rows<float>(const float*, const ConvGeometry&, int, int,
                                 float*);
template void im2col_rows<double>(const double*, const ConvGeometry&, int, int,
                                  double*);
template void col2im_rows_add<float>(const float*, const ConvGeometry&, int,
                                     int, float*);
template void col2im_rows_add<double>(const double*, const ConvGeometry&, int,
                                      int, double*);

}  // namespace cpu
}  // namespace caffe
