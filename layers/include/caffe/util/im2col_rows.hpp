#ifndef CAFFE_UTIL_IM2COL_ROWS_HPP_
#define CAFFE_UTIL_IM2COL_ROWS_HPP_

// Caffe's 2-D im2col / col2im restricted to a band of output rows, so that a
// blocked convolution can build one cache-sized slice of the column matrix at
// a time.  The slice for output rows [row_begin, row_end) is the matching
// columns of Caffe's full column matrix: (channels * kernel_h * kernel_w)
// rows of (row_end - row_begin) * out_w values.

namespace caffe {
namespace cpu {

struct ConvGeometry {
  int channels, height, width;
  int kernel_h, kernel_w, pad_h, pad_w, stride_h, stride_w;
  int dilation_h, dilation_w;
  int out_h, out_w;
};

template <typename Dtype>
void im2col_rows(const Dtype* im, const ConvGeometry& g, int row_begin,
                 int row_end, Dtype* col);

/// Adds the slice's column gradient into im (which the caller zeroed).
template <typename Dtype>
void col2im_rows_add(const Dtype* col, const ConvGeometry& g, int row_begin,
                     int row_end, Dtype* im);

/// The input rows [first, last] that output rows [row_begin, row_end) read.
inline int first_input_row(const ConvGeometry& g, int row_begin) {
  return row_begin * g.stride_h - g.pad_h;
}
inline int last_input_row(const ConvGeometry& g, int row_end) {
  return (row_end - 1) * g.stride_h - g.pad_h
      + (g.kernel_h - 1) * g.dilation_h;
}

}  // namespace cpu
}  // namespace caffe

#endif  // CAFFE_UTIL_IM2COL_ROWS_HPP_
