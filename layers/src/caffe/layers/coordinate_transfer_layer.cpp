#include <algorithm>
#include <cmath>
#include <vector>

#include "caffe/layers/coordinate_transfer_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void CoordinateTransferLayer<Dtype>::LayerSetUp(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  CHECK(bottom.size() == 2 || bottom.size() == 3) << this->type()
      << " layer " << this->layer_param_.name() << " takes 2 or 3 bottoms "
      << "(features, keypoint heatmap[, ground-truth keypoints]), got "
      << bottom.size();
  const CoordinateTransferParameter& param =
      this->layer_param_.coordinate_transfer_param();
  heatmap_stride_ = param.heatmap_stride();
  heatmap_offset_ = param.heatmap_offset();
  feature_stride_ = param.feature_stride();
  feature_offset_ = param.feature_offset();
  CHECK_GT(heatmap_stride_, 0) << this->type() << " layer "
      << this->layer_param_.name()
      << ": coordinate_transfer_param.heatmap_stride must be positive, got "
      << heatmap_stride_;
  CHECK_GT(feature_stride_, 0) << this->type() << " layer "
      << this->layer_param_.name()
      << ": coordinate_transfer_param.feature_stride must be positive, got "
      << feature_stride_;
  // NaN would compare false and silently keep every part.
  CHECK(!std::isnan(param.visibility_threshold())) << this->type()
      << " layer " << this->layer_param_.name()
      << ": coordinate_transfer_param.visibility_threshold is NaN";
  visibility_threshold_ = param.visibility_threshold();
  ave_ = param.pool() == CoordinateTransferParameter_PoolMethod_AVE;
  missing_argmax_ =
      param.missing() == CoordinateTransferParameter_Missing_ARGMAX;
  quadratic_ = param.decode() == CoordinateTransferParameter_Decode_QUADRATIC;
}

template <typename Dtype>
void CoordinateTransferLayer<Dtype>::Reshape(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  CHECK_EQ(bottom[0]->num_axes(), 4) << this->type() << " layer "
      << this->layer_param_.name() << ": bottom[0] (features) must be "
      << "N x C x H x W, got shape " << bottom[0]->shape_string();
  CHECK_EQ(bottom[1]->num_axes(), 4) << this->type() << " layer "
      << this->layer_param_.name() << ": bottom[1] (keypoint heatmap) must "
      << "be N x K x H x W, got shape " << bottom[1]->shape_string();
  num_ = bottom[0]->shape(0);
  channels_ = bottom[0]->shape(1);
  height_ = bottom[0]->shape(2);
  width_ = bottom[0]->shape(3);
  parts_ = bottom[1]->shape(1);
  heatmap_height_ = bottom[1]->shape(2);
  heatmap_width_ = bottom[1]->shape(3);
  CHECK_EQ(bottom[1]->shape(0), num_) << this->type() << " layer "
      << this->layer_param_.name() << ": features " << bottom[0]->shape_string()
      << " and keypoint heatmap " << bottom[1]->shape_string()
      << " must have the same batch size N";
  CHECK(height_ > 0 && width_ > 0) << this->type() << " layer "
      << this->layer_param_.name() << ": empty feature map "
      << bottom[0]->shape_string();
  CHECK(heatmap_height_ > 0 && heatmap_width_ > 0) << this->type()
      << " layer " << this->layer_param_.name() << ": empty keypoint heatmap "
      << bottom[1]->shape_string();
  if (bottom.size() > 2) {
    CHECK_EQ(bottom[2]->count(), num_ * parts_ * 3) << this->type()
        << " layer " << this->layer_param_.name() << ": bottom[2] "
        << "(keypoints) must hold N * K * 3 = " << num_ * parts_ * 3
        << " values (x, y, visible) for the keypoint heatmap of shape "
        << bottom[1]->shape_string() << ", got shape "
        << bottom[2]->shape_string();
  }
  // A radius beyond the map size gives the same (whole-map) windows.
  radius_ = static_cast<int>(std::min<uint32_t>(
      this->layer_param_.coordinate_transfer_param().radius(),
      std::max(height_, width_)));
  top[0]->Reshape(vector<int>{num_, parts_ * channels_});
  const vector<int> part_shape{num_, parts_, 3};
  location_.Reshape(part_shape);
  if (top.size() > 1) {
    top[1]->Reshape(part_shape);
  }
  cell_.Reshape(vector<int>{num_, parts_, 2});
  max_idx_.Reshape(vector<int>{num_, parts_, channels_});
}

template <typename Dtype>
void CoordinateTransferLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const Dtype* feature = bottom[0]->cpu_data();
  const Dtype* heatmap = bottom[1]->cpu_data();
  const Dtype* keypoints = bottom.size() > 2 ? bottom[2]->cpu_data() : NULL;
  Dtype* location = location_.mutable_cpu_data();
  int* cell = cell_.mutable_cpu_data();
  int* max_idx = max_idx_.mutable_cpu_data();
  Dtype* top_data = top[0]->mutable_cpu_data();
  const int plane = height_ * width_;
  for (int n = 0; n < num_; ++n) {
    for (int k = 0; k < parts_; ++k) {
      const int nk = n * parts_ + k;
      Dtype pool[3];
      coordinate_transfer_locate(
          heatmap + nk * heatmap_height_ * heatmap_width_, heatmap_height_,
          heatmap_width_, keypoints ? keypoints + 3 * nk : NULL,
          missing_argmax_, heatmap_stride_, heatmap_offset_,
          visibility_threshold_, quadratic_, pool, location + 3 * nk);
      transfer_cell(pool, feature_offset_, feature_stride_, height_, width_,
          cell + 2 * nk);
      int h0, h1, w0, w1;
      transfer_window(cell[2 * nk], radius_, height_, &h0, &h1);
      transfer_window(cell[2 * nk + 1], radius_, width_, &w0, &w1);
      for (int c = 0; c < channels_; ++c) {
        const int out = nk * channels_ + c;
        if (cell[2 * nk] < 0) {
          top_data[out] = 0;
          max_idx[out] = -1;
        } else {
          top_data[out] = transfer_pool(
              feature + (n * channels_ + c) * plane, width_, h0, h1, w0, w1,
              ave_, max_idx + out);
        }
      }
    }
  }
  if (top.size() > 1) {
    caffe_copy(location_.count(), location, top[1]->mutable_cpu_data());
  }
}

template <typename Dtype>
void CoordinateTransferLayer<Dtype>::Backward_cpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  // Heatmap and keypoints only choose the location: zero gradient (a.e.).
  for (size_t i = 1; i < bottom.size(); ++i) {
    if (propagate_down[i]) {
      caffe_set(bottom[i]->count(), Dtype(0), bottom[i]->mutable_cpu_diff());
    }
  }
  if (!propagate_down[0]) { return; }
  const Dtype* top_diff = top[0]->cpu_diff();
  const int* cell = cell_.cpu_data();
  const int* max_idx = max_idx_.cpu_data();
  Dtype* bottom_diff = bottom[0]->mutable_cpu_diff();
  caffe_set(bottom[0]->count(), Dtype(0), bottom_diff);
  const int plane = height_ * width_;
  // Scatter part by part (k ascending, like the GPU gather).
  for (int n = 0; n < num_; ++n) {
    for (int k = 0; k < parts_; ++k) {
      const int nk = n * parts_ + k;
      if (cell[2 * nk] < 0) { continue; }
      int h0, h1, w0, w1;
      transfer_window(cell[2 * nk], radius_, height_, &h0, &h1);
      transfer_window(cell[2 * nk + 1], radius_, width_, &w0, &w1);
      for (int c = 0; c < channels_; ++c) {
        const int out = nk * channels_ + c;
        Dtype* diff = bottom_diff + (n * channels_ + c) * plane;
        if (ave_) {
          const Dtype share = transfer_ave_grad(top_diff[out], h0, h1, w0, w1);
          for (int h = h0; h < h1; ++h) {
            for (int w = w0; w < w1; ++w) { diff[h * width_ + w] += share; }
          }
        } else {
          diff[max_idx[out]] += top_diff[out];
        }
      }
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(CoordinateTransferLayer);
#endif

INSTANTIATE_CLASS(CoordinateTransferLayer);
REGISTER_LAYER_CLASS(CoordinateTransfer);

}  // namespace caffe
