#ifndef CAFFE_COORDINATE_TRANSFER_LAYER_HPP_
#define CAFFE_COORDINATE_TRANSFER_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/util/host_device.hpp"
#include "caffe/util/keypoint_grid.hpp"

namespace caffe {

/// The first maximum, in row-major order, of a heatmap of `count` cells.
template <typename Dtype>
CAFFE_HOST_DEVICE inline int heatmap_argmax(const Dtype* heatmap,
    int count) {
  int best = 0;
  for (int index = 1; index < count; ++index) {
    if (heatmap[index] > heatmap[best]) { best = index; }
  }
  return best;
}

/// Where one part is pooled, pool = (x, y, pooled), and where it is
/// reported, loc = (x, y, visible), both in image coordinates. kp is the
/// part's ground truth (x, y, visible), or NULL when the net has no keypoint
/// bottom. A visible keypoint is used as is (pool = loc); an invisible one
/// with missing: ZERO gives pool = loc = (0, 0, 0), a zero feature.
/// Otherwise (no ground truth, or missing: ARGMAX) the part is located by the
/// first maximum (i, j) of its Hh x Wh heatmap: pooled at the cell's point
/// (hoffset + hstride j, hoffset + hstride i), reported there or, with
/// quadratic, at the sub-cell peak (grid_peak); a peak score below
/// `threshold` makes it invisible: pooled 0 (a zero feature, as an invisible
/// ground-truth part gets in training) and reported with visible 0.
template <typename Dtype>
CAFFE_HOST_DEVICE inline void coordinate_transfer_locate(
    const Dtype* heatmap, int heatmap_height, int heatmap_width,
    const Dtype* kp, bool missing_argmax, Dtype hstride, Dtype hoffset,
    Dtype threshold, bool quadratic, Dtype* pool, Dtype* loc) {
  if (kp != NULL && kp[2] > 0) {
    pool[0] = loc[0] = kp[0];
    pool[1] = loc[1] = kp[1];
    pool[2] = loc[2] = Dtype(1);
  } else if (kp != NULL && !missing_argmax) {
    pool[0] = pool[1] = pool[2] = loc[0] = loc[1] = loc[2] = Dtype(0);
  } else {
    const int best = heatmap_argmax(heatmap, heatmap_height * heatmap_width);
    const Dtype visible = heatmap[best] < threshold ? Dtype(0) : Dtype(1);
    pool[0] = grid_coord(best % heatmap_width, hoffset, hstride);
    pool[1] = grid_coord(best / heatmap_width, hoffset, hstride);
    pool[2] = visible;
    Dtype row, col;
    grid_peak(heatmap, heatmap_height, heatmap_width, best, quadratic, &row,
        &col);
    loc[0] = grid_point(col, hoffset, hstride);
    loc[1] = grid_point(row, hoffset, hstride);
    loc[2] = visible;
  }
}

/// The feature cell (i, j) nearest to loc = (x, y, pooled), clamped into the
/// height x width map; (-1, -1) for a zero-filled part (pooled == 0).
template <typename Dtype>
CAFFE_HOST_DEVICE inline void transfer_cell(const Dtype* loc,
    Dtype foffset, Dtype fstride, int height, int width, int* cell) {
  if (loc[2] > 0) {
    cell[0] = grid_cell(loc[1], foffset, fstride, height);
    cell[1] = grid_cell(loc[0], foffset, fstride, width);
  } else {
    cell[0] = cell[1] = -1;
  }
}

/// The window [*start, *end) of cells within `radius` of `center` along an
/// axis of `size` cells, clipped at the borders (never empty: 0 <= center <
/// size).
CAFFE_HOST_DEVICE inline void transfer_window(int center, int radius,
    int size, int* start, int* end) {
  *start = center - radius > 0 ? center - radius : 0;
  *end = center + radius + 1 < size ? center + radius + 1 : size;
}

/// Pools rows [h0, h1) x columns [w0, w1) of a feature plane `width` wide.
/// AVE: the mean over the clipped window (*argmax = -1). MAX: the maximum;
/// *argmax = h * width + w of its first occurrence in row-major order.
template <typename Dtype>
CAFFE_HOST_DEVICE inline Dtype transfer_pool(const Dtype* plane, int width,
    int h0, int h1, int w0, int w1, bool ave, int* argmax) {
  if (ave) {
    Dtype sum = 0;
    for (int h = h0; h < h1; ++h) {
      for (int w = w0; w < w1; ++w) { sum += plane[h * width + w]; }
    }
    *argmax = -1;
    return sum / Dtype((h1 - h0) * (w1 - w0));
  }
  int best = h0 * width + w0;
  for (int h = h0; h < h1; ++h) {
    for (int w = w0; w < w1; ++w) {
      if (plane[h * width + w] > plane[best]) { best = h * width + w; }
    }
  }
  *argmax = best;
  return plane[best];
}

/// The share of a pooled value's gradient each cell of an AVE window gets.
template <typename Dtype>
CAFFE_HOST_DEVICE inline Dtype transfer_ave_grad(Dtype top_diff, int h0,
    int h1, int w0, int w1) {
  return top_diff / Dtype((h1 - h0) * (w1 - w0));
}

/**
 * @brief Coordinate transfer (Zhang et al., "Fine-grained pose prediction,
 *        normalization, and recognition", section 3.2): pools features in a
 *        window around each of K part locations and stacks the K pooled
 *        vectors into one pose-normalized representation.
 *
 * bottom[0]: features, N x C x Hf x Wf. bottom[1]: keypoint heatmap scores,
 * N x K x Hh x Wh (the argmax, its score and, with decode: QUADRATIC, its
 * 3 x 3 neighbourhood are used). bottom[2] (optional, the TRAIN net):
 * ground-truth keypoints, N * K * 3 values (x, y, visible) in image
 * pixels. The paper pools at ground-truth part locations in training and at
 * predicted ones at test time: with bottom[2] a visible keypoint is used,
 * an invisible one gets a zero feature (missing: ZERO) or falls back to the
 * heatmap (missing: ARGMAX); without bottom[2] (TEST/deploy) every part is
 * the first row-major maximum (i, j) of its heatmap, at image point
 * (heatmap_offset + heatmap_stride j, heatmap_offset + heatmap_stride i).
 * A heatmap-located part whose peak score (the raw logit) is below
 * visibility_threshold (default -inf: never) is predicted invisible and gets
 * a zero feature, as an invisible ground-truth part does with missing: ZERO,
 * so a classifier trained on ground truth meets the same features at test.
 *
 * An image point (x, y) maps to feature cell (round((y - feature_offset) /
 * feature_stride), round((x - feature_offset) / feature_stride)), halves away
 * from zero, clamped into the map; the (2r+1) x (2r+1) window around it
 * (radius r), clipped at the borders, is MAX or AVE pooled per channel.
 *
 * top[0]: N x (K C), part k in columns [k C, (k+1) C). top[1] (optional):
 * N x K x 3, per part (x, y, visible): the image point used and 1; a
 * predicted-invisible part's point and 0; (0, 0, 0) for an invisible
 * ground-truth part with missing: ZERO. A deploy net outputs its predicted
 * keypoints this way. decode: QUADRATIC reports a heatmap-located point at
 * its sub-cell peak (a separable parabola through the argmax cell and its
 * neighbours, within half a cell; the cell itself on a border) while pooling
 * stays on the argmax cell.
 *
 * Backward reaches bottom[0] only: MAX routes each gradient to the recorded
 * first maximum of its window, AVE spreads it evenly over the clipped window;
 * overlapping windows of different parts accumulate; a zero feature (an
 * invisible part, given or predicted) is a constant and sends none. The
 * location and the visibility gate are piecewise-constant functions of the
 * heatmap (argmax, threshold) and of the keypoints (rounding), so their true
 * gradient is zero almost everywhere: when Net asks for it (the heatmap
 * comes from learnable layers) their diff is set to zero rather than
 * failing, and force_backward does not ask for it.
 */
template <typename Dtype>
class CoordinateTransferLayer : public Layer<Dtype> {
 public:
  explicit CoordinateTransferLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "CoordinateTransfer"; }
  // 2 or 3 bottoms: checked in LayerSetUp with a message naming the layer.
  virtual inline int MinTopBlobs() const { return 1; }
  virtual inline int MaxTopBlobs() const { return 2; }
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return bottom_index == 0;
  }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  Dtype heatmap_stride_, heatmap_offset_, feature_stride_, feature_offset_;
  int radius_;  // clamped to the feature map size (same windows, no overflow)
  Dtype visibility_threshold_;
  bool ave_, missing_argmax_, quadratic_;
  int num_, channels_, height_, width_;  // features
  int parts_, heatmap_height_, heatmap_width_;
  Blob<Dtype> location_;  // N x K x 3: (x, y, visible), copied to top[1]
  Blob<int> cell_;        // N x K x 2: feature cell (i, j); -1 if zero-filled
  Blob<int> max_idx_;     // N x K x C: MAX argmax h * Wf + w in its plane
};

}  // namespace caffe

#endif  // CAFFE_COORDINATE_TRANSFER_LAYER_HPP_
