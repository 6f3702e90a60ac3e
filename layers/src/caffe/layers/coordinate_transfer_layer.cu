#include <vector>

#include "caffe/layers/coordinate_transfer_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// One thread per part (n, k): its reported location and pooled cell.
template <typename Dtype>
__global__ void CoordinateTransferLocate(const int nthreads,
    const Dtype* heatmap, const int heatmap_height, const int heatmap_width,
    const Dtype* keypoints, const bool missing_argmax, const Dtype hstride,
    const Dtype hoffset, const Dtype threshold, const bool quadratic,
    const Dtype fstride, const Dtype foffset, const int height,
    const int width, Dtype* location, int* cell) {
  CUDA_KERNEL_LOOP(nk, nthreads) {
    Dtype pool[3];
    coordinate_transfer_locate(
        heatmap + nk * heatmap_height * heatmap_width, heatmap_height,
        heatmap_width, keypoints ? keypoints + 3 * nk : NULL, missing_argmax,
        hstride, hoffset, threshold, quadratic, pool, location + 3 * nk);
    transfer_cell(pool, foffset, fstride, height, width, cell + 2 * nk);
  }
}

// One thread per output (n, k, c); its index is also the index into top[0].
template <typename Dtype>
__global__ void CoordinateTransferPool(const int nthreads,
    const Dtype* feature, const int* cell, const int parts,
    const int channels, const int height, const int width, const int radius,
    const bool ave, Dtype* top_data, int* max_idx) {
  CUDA_KERNEL_LOOP(index, nthreads) {
    const int c = index % channels;
    const int nk = index / channels;
    const int n = nk / parts;
    if (cell[2 * nk] < 0) {
      top_data[index] = 0;
      max_idx[index] = -1;
    } else {
      int h0, h1, w0, w1;
      transfer_window(cell[2 * nk], radius, height, &h0, &h1);
      transfer_window(cell[2 * nk + 1], radius, width, &w0, &w1);
      top_data[index] = transfer_pool(
          feature + (n * channels + c) * height * width, width, h0, h1, w0,
          w1, ave, max_idx + index);
    }
  }
}

// One thread per bottom element (n, c, h, w), gathering over the parts k in
// ascending order (the CPU scatter's order): no races, deterministic.
template <typename Dtype>
__global__ void CoordinateTransferBackward(const int nthreads,
    const Dtype* top_diff, const int* cell, const int* max_idx,
    const int parts, const int channels, const int height, const int width,
    const int radius, const bool ave, Dtype* bottom_diff) {
  CUDA_KERNEL_LOOP(index, nthreads) {
    const int w = index % width;
    const int h = (index / width) % height;
    const int c = (index / width / height) % channels;
    const int n = index / width / height / channels;
    Dtype gradient = 0;
    for (int k = 0; k < parts; ++k) {
      const int nk = n * parts + k;
      if (cell[2 * nk] < 0) { continue; }
      int h0, h1, w0, w1;
      transfer_window(cell[2 * nk], radius, height, &h0, &h1);
      transfer_window(cell[2 * nk + 1], radius, width, &w0, &w1);
      if (h < h0 || h >= h1 || w < w0 || w >= w1) { continue; }
      const int out = nk * channels + c;
      if (ave) {
        gradient += transfer_ave_grad(top_diff[out], h0, h1, w0, w1);
      } else if (max_idx[out] == h * width + w) {
        gradient += top_diff[out];
      }
    }
    bottom_diff[index] = gradient;
  }
}

template <typename Dtype>
void CoordinateTransferLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const int num_parts = num_ * parts_;
  const Dtype* keypoints = bottom.size() > 2 ? bottom[2]->gpu_data() : NULL;
  // NOLINT_NEXT_LINE(whitespace/operators)
  CoordinateTransferLocate<Dtype><<<CAFFE_GET_BLOCKS(num_parts),
      CAFFE_CUDA_NUM_THREADS>>>(num_parts, bottom[1]->gpu_data(),
      heatmap_height_, heatmap_width_, keypoints, missing_argmax_,
      heatmap_stride_, heatmap_offset_, visibility_threshold_, quadratic_,
      feature_stride_, feature_offset_, height_, width_,
      location_.mutable_gpu_data(), cell_.mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
  const int count = top[0]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  CoordinateTransferPool<Dtype><<<CAFFE_GET_BLOCKS(count),
      CAFFE_CUDA_NUM_THREADS>>>(count, bottom[0]->gpu_data(),
      cell_.gpu_data(), parts_, channels_, height_, width_, radius_, ave_,
      top[0]->mutable_gpu_data(), max_idx_.mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
  if (top.size() > 1) {
    caffe_copy(location_.count(), location_.gpu_data(),
        top[1]->mutable_gpu_data());
  }
}

template <typename Dtype>
void CoordinateTransferLayer<Dtype>::Backward_gpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  // Heatmap and keypoints only choose the location: zero gradient (a.e.).
  for (size_t i = 1; i < bottom.size(); ++i) {
    if (propagate_down[i]) {
      caffe_gpu_set(bottom[i]->count(), Dtype(0),
          bottom[i]->mutable_gpu_diff());
    }
  }
  if (!propagate_down[0]) { return; }
  const int count = bottom[0]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  CoordinateTransferBackward<Dtype><<<CAFFE_GET_BLOCKS(count),
      CAFFE_CUDA_NUM_THREADS>>>(count, top[0]->gpu_diff(), cell_.gpu_data(),
      max_idx_.gpu_data(), parts_, channels_, height_, width_, radius_, ave_,
      bottom[0]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(CoordinateTransferLayer);

}  // namespace caffe
