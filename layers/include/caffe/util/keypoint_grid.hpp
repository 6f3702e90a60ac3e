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

/// The vertex, in cells from the centre sample, of the parabola through
/// (-1, left), (0, center), (1, right): (left - right) / (2 (left - 2 center
/// + right)), clamped to [-0.5, 0.5] (the peak stays in its cell); 0 when the
/// samples do not curve down (a flat top, NaN).  For a center that is a
/// maximum the vertex is within [-0.5, 0.5] already (0.5 exactly for a tie
/// with a neighbour); the clamp only guards rounding.
template <typename Dtype>
CAFFE_HOST_DEVICE inline Dtype quadratic_peak_offset(Dtype left, Dtype center,
    Dtype right) {
  const Dtype curvature = left - Dtype(2) * center + right;
  if (!(curvature < 0)) { return Dtype(0); }
  const Dtype offset = (left - right) / (Dtype(2) * curvature);
  if (offset < Dtype(-0.5)) { return Dtype(-0.5); }
  return offset > Dtype(0.5) ? Dtype(0.5) : offset;
}

/// The position (*row, *col), in cells, of the peak of a height x width map
/// whose maximum is cell `best` (row-major).  quadratic: each axis moves by
/// quadratic_peak_offset of the peak and its two neighbours along that axis
/// (separable), except where the peak is on that axis's border (no neighbour
/// on one side): there, and without quadratic, the cell's own index.
template <typename Dtype>
CAFFE_HOST_DEVICE inline void grid_peak(const Dtype* map, int height,
    int width, int best, bool quadratic, Dtype* row, Dtype* col) {
  const int i = best / width;
  const int j = best % width;
  *row = Dtype(i);
  *col = Dtype(j);
  if (!quadratic) { return; }
  if (j > 0 && j < width - 1) {
    *col += quadratic_peak_offset(map[best - 1], map[best], map[best + 1]);
  }
  if (i > 0 && i < height - 1) {
    *row += quadratic_peak_offset(map[best - width], map[best],
        map[best + width]);
  }
}

/// The image coordinate of a (fractional) grid position: offset + stride *
/// position; at an integer position it equals grid_coord.
template <typename Dtype>
CAFFE_HOST_DEVICE inline Dtype grid_point(Dtype position, Dtype offset,
    Dtype stride) {
  return offset + stride * position;
}

}  // namespace caffe

#endif  // CAFFE_UTIL_KEYPOINT_GRID_HPP_
