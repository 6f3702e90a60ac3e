#include <vector>

#include "caffe/layers/l2_normalize_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void L2NormalizeLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  epsilon_ = this->layer_param_.l2_normalize_param().epsilon();
  // epsilon 0 turns an all-zero sample into 0/0 = NaN: refused, as SignedSqrt.
  CHECK_GT(epsilon_, 0) << "L2Normalize layer " << this->layer_param_.name()
      << ": l2_normalize_param.epsilon must be positive, got " << epsilon_;
}

template <typename Dtype>
void L2NormalizeLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  CHECK_GE(bottom[0]->num_axes(), 1) << "L2Normalize layer "
      << this->layer_param_.name() << ": bottom has no batch axis (shape "
      << bottom[0]->shape_string() << ")";
  top[0]->ReshapeLike(*bottom[0]);
  squared_.ReshapeLike(*bottom[0]);
  const int num = bottom[0]->shape(0);
  norm_.Reshape(vector<int>(1, num));
  dot_.Reshape(vector<int>(1, num));
  const int dim = num > 0 ? bottom[0]->count() / num : 0;
  if (ones_.count() != dim) {
    ones_.Reshape(vector<int>(1, dim));
    caffe_set(dim, Dtype(1), ones_.mutable_cpu_data());
  }
}

template <typename Dtype>
void L2NormalizeLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int num = bottom[0]->shape(0);
  const int dim = bottom[0]->count() / num;
  const Dtype* x = bottom[0]->cpu_data();
  Dtype* y = top[0]->mutable_cpu_data();
  Dtype* norm = norm_.mutable_cpu_data();
  for (int n = 0; n < num; ++n) {
    norm[n] = hd::sqrt(caffe_cpu_dot(dim, x + n * dim, x + n * dim) + epsilon_);
    caffe_cpu_scale(dim, Dtype(1) / norm[n], x + n * dim, y + n * dim);
  }
}

template <typename Dtype>
void L2NormalizeLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0]) { return; }
  const int num = bottom[0]->shape(0);
  const int dim = bottom[0]->count() / num;
  const Dtype* y = top[0]->cpu_data();
  const Dtype* dy = top[0]->cpu_diff();
  const Dtype* norm = norm_.cpu_data();
  Dtype* dx = bottom[0]->mutable_cpu_diff();
  for (int n = 0; n < num; ++n) {
    const int o = n * dim;
    const Dtype dot = caffe_cpu_dot(dim, y + o, dy + o);
    for (int i = 0; i < dim; ++i) {
      dx[o + i] = l2_normalize_grad(dy[o + i], y[o + i], dot, norm[n]);
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(L2NormalizeLayer);
#endif

INSTANTIATE_CLASS(L2NormalizeLayer);
REGISTER_LAYER_CLASS(L2Normalize);

}  // namespace caffe
