#include <vector>

#include "caffe/layers/signed_sqrt_layer.hpp"

namespace caffe {

template <typename Dtype>
void SignedSqrtLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  NeuronLayer<Dtype>::LayerSetUp(bottom, top);
  epsilon_ = this->layer_param_.signed_sqrt_param().epsilon();
  CHECK_GT(epsilon_, 0) << "SignedSqrt layer " << this->layer_param_.name()
      << ": signed_sqrt_param.epsilon must be positive, got " << epsilon_;
}

template <typename Dtype>
void SignedSqrtLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int count = bottom[0]->count();
  const Dtype* bottom_data = bottom[0]->cpu_data();
  Dtype* top_data = top[0]->mutable_cpu_data();
  for (int i = 0; i < count; ++i) {
    top_data[i] = signed_sqrt(bottom_data[i]);
  }
}

template <typename Dtype>
void SignedSqrtLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0]) { return; }
  const int count = bottom[0]->count();
  const Dtype* bottom_data = bottom[0]->cpu_data();
  const Dtype* top_diff = top[0]->cpu_diff();
  Dtype* bottom_diff = bottom[0]->mutable_cpu_diff();
  for (int i = 0; i < count; ++i) {
    bottom_diff[i] = signed_sqrt_grad(bottom_data[i], top_diff[i], epsilon_);
  }
}

#ifdef CPU_ONLY
STUB_GPU(SignedSqrtLayer);
#endif

INSTANTIATE_CLASS(SignedSqrtLayer);
REGISTER_LAYER_CLASS(SignedSqrt);

}  // namespace caffe
