#ifndef CAFFE_UTIL_KEYPOINT_GRID_HPP_
#define CAFFE_UTIL_KEYPOINT_GRID_HPP_

// Image point <-> grid cell mapping shared by KeypointSigmoidCrossEntropyLoss
// and CoordinateTransfer, on host and device (one definition).
//
// A grid (heatmap or feature map) places cell index i at the image coordinate
// offset + stride * i, separately along x (columns j) and y (rows i).

#include <cmath>

#include "caffe/util/host_device.hpp"

namespace caffe {

/// The continuous grid position of an image coordinate: (coord - offset) /
/// stride, in cells.
template <typename Dtype>
CAFFE_HOST_DEVICE inline Dtype grid_position(Dtype coord, Dtype offset,
    Dtype stride) {
  return (coord - offset) / stride;
}

/// The grid cell nearest to an image coordinate, round((coord - offset) /
/// stride) with halves away from zero, clamped into [0, size - 1]. Clamping
/// happens before the conversion to int, so huge or NaN coordinates are safe
/// (NaN goes to cell 0).
template <typename Dtype>
CAFFE_HOST_DEVICE inline int grid_cell(Dtype coord, Dtype offset, Dtype stride,
    int size) {
  const Dtype r = hd::round(grid_position(coord, offset, stride));
  if (!(r > 0)) { return 0; }
  if (r >= Dtype(size - 1)) { return size - 1; }
  return static_cast<int>(r);
}

/// The image coordinate of grid cell `index`: offset + stride * index.
template <typename Dtype>
CAFFE_HOST_DEVICE inline Dtype grid_coord(int index, Dtype offset,
    Dtype stride) {
  return offset + stride * Dtype(index);
}

}  // namespace caffe

#endif  // CAFFE_UTIL_KEYPOINT_GRID_HPP_
