#include <cmath>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/signed_sqrt_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

template <typename TypeParam>
class SignedSqrtLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  SignedSqrtLayerTest()
      : blob_bottom_(new Blob<Dtype>(2, 3, 4, 5)),
        blob_top_(new Blob<Dtype>()) {
    Caffe::set_random_seed(1701);
    FillerParameter filler_param;
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(blob_bottom_);
    // Keep |x| >= 0.2 so finite differences do not straddle the kink at 0.
    Dtype* x = blob_bottom_->mutable_cpu_data();
    for (int i = 0; i < blob_bottom_->count(); ++i) {
      x[i] = x[i] < 0 ? x[i] - Dtype(0.2) : x[i] + Dtype(0.2);
    }
    blob_bottom_vec_.push_back(blob_bottom_);
    blob_top_vec_.push_back(blob_top_);
  }
  virtual ~SignedSqrtLayerTest() { delete blob_bottom_; delete blob_top_; }
  Blob<Dtype>* const blob_bottom_;
  Blob<Dtype>* const blob_top_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(SignedSqrtLayerTest, TestDtypesAndDevices);

TYPED_TEST(SignedSqrtLayerTest, TestForward) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter layer_param;
  SignedSqrtLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const Dtype* x = this->blob_bottom_->cpu_data();
  const Dtype* y = this->blob_top_->cpu_data();
  for (int i = 0; i < this->blob_bottom_->count(); ++i) {
    const double expected = (x[i] < 0 ? -1 : 1) * std::sqrt(std::fabs(x[i]));
    EXPECT_NEAR(y[i], expected, 1e-6);
    EXPECT_EQ(y[i] < 0, x[i] < 0);
  }
}

TYPED_TEST(SignedSqrtLayerTest, TestGradientFiniteAtZero) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter layer_param;
  layer_param.mutable_signed_sqrt_param()->set_epsilon(1e-4);
  SignedSqrtLayer<Dtype> layer(layer_param);
  caffe_set(this->blob_bottom_->count(), Dtype(0),
      this->blob_bottom_->mutable_cpu_data());
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  caffe_set(this->blob_top_->count(), Dtype(1),
      this->blob_top_->mutable_cpu_diff());
  layer.Backward(this->blob_top_vec_, vector<bool>(1, true),
      this->blob_bottom_vec_);
  const Dtype* y = this->blob_top_->cpu_data();
  const Dtype* dx = this->blob_bottom_->cpu_diff();
  for (int i = 0; i < this->blob_bottom_->count(); ++i) {
    EXPECT_EQ(y[i], 0);
    EXPECT_NEAR(dx[i], 0.5 / std::sqrt(1e-4), 1e-2);  // 50, finite
  }
}

TYPED_TEST(SignedSqrtLayerTest, TestGradient) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter layer_param;
  SignedSqrtLayer<Dtype> layer(layer_param);
  GradientChecker<Dtype> checker(1e-3, 1e-2, 1701);
  checker.CheckGradientEltwise(&layer, this->blob_bottom_vec_,
      this->blob_top_vec_);
}

TYPED_TEST(SignedSqrtLayerTest, TestInPlaceMatchesOutOfPlace) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter layer_param;
  SignedSqrtLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  Blob<Dtype> in_place;
  in_place.CopyFrom(*this->blob_bottom_, false, true);
  vector<Blob<Dtype>*> vec(1, &in_place);
  SignedSqrtLayer<Dtype> layer2(layer_param);
  layer2.SetUp(vec, vec);
  layer2.Forward(vec, vec);
  for (int i = 0; i < in_place.count(); ++i) {
    EXPECT_EQ(in_place.cpu_data()[i], this->blob_top_->cpu_data()[i]);
  }
}

}  // namespace caffe
