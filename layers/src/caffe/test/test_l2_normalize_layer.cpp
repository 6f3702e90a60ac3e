#include <cmath>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/l2_normalize_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

template <typename TypeParam>
class L2NormalizeLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  L2NormalizeLayerTest()
      : blob_bottom_(new Blob<Dtype>(3, 4, 2, 3)),
        blob_top_(new Blob<Dtype>()) {
    Caffe::set_random_seed(1701);
    FillerParameter filler_param;
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(blob_bottom_);
    blob_bottom_vec_.push_back(blob_bottom_);
    blob_top_vec_.push_back(blob_top_);
  }
  virtual ~L2NormalizeLayerTest() { delete blob_bottom_; delete blob_top_; }
  Blob<Dtype>* const blob_bottom_;
  Blob<Dtype>* const blob_top_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(L2NormalizeLayerTest, TestDtypesAndDevices);

TYPED_TEST(L2NormalizeLayerTest, TestForward) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter layer_param;
  L2NormalizeLayer<Dtype> layer(layer_param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape(), this->blob_bottom_->shape());
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const int num = this->blob_bottom_->num();
  const int dim = this->blob_bottom_->count() / num;
  const Dtype* x = this->blob_bottom_->cpu_data();
  const Dtype* y = this->blob_top_->cpu_data();
  for (int n = 0; n < num; ++n) {
    double norm2 = 0, out2 = 0;
    for (int i = 0; i < dim; ++i) { norm2 += x[n * dim + i] * x[n * dim + i]; }
    for (int i = 0; i < dim; ++i) {
      EXPECT_NEAR(y[n * dim + i], x[n * dim + i] / std::sqrt(norm2), 1e-5);
      out2 += y[n * dim + i] * y[n * dim + i];
    }
    EXPECT_NEAR(out2, 1.0, 1e-5);
  }
}

TYPED_TEST(L2NormalizeLayerTest, TestZeroSampleStaysZero) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter layer_param;
  L2NormalizeLayer<Dtype> layer(layer_param);
  const int dim = this->blob_bottom_->count() / this->blob_bottom_->num();
  caffe_set(dim, Dtype(0), this->blob_bottom_->mutable_cpu_data() + dim);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  caffe_set(this->blob_top_->count(), Dtype(1),
      this->blob_top_->mutable_cpu_diff());
  layer.Backward(this->blob_top_vec_, vector<bool>(1, true),
      this->blob_bottom_vec_);
  for (int i = dim; i < 2 * dim; ++i) {
    EXPECT_EQ(this->blob_top_->cpu_data()[i], 0);
    EXPECT_TRUE(std::isfinite(this->blob_bottom_->cpu_diff()[i]));
  }
}

TYPED_TEST(L2NormalizeLayerTest, TestNonPositiveEpsilonRefusedAtSetUp) {
  typedef typename TypeParam::Dtype Dtype;
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  for (float epsilon : {0.f, -1e-6f}) {
    LayerParameter layer_param;
    layer_param.set_name("l2");
    layer_param.mutable_l2_normalize_param()->set_epsilon(epsilon);
    L2NormalizeLayer<Dtype> layer(layer_param);
    EXPECT_DEATH(layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_),
                 "L2Normalize layer l2: l2_normalize_param.epsilon must be positive");
  }
}

TYPED_TEST(L2NormalizeLayerTest, TestGradient) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter layer_param;
  L2NormalizeLayer<Dtype> layer(layer_param);
  GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_,
      this->blob_top_vec_);
}

TYPED_TEST(L2NormalizeLayerTest, TestGradient2D) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter layer_param;
  this->blob_bottom_->Reshape(vector<int>{4, 7});
  FillerParameter filler_param;
  GaussianFiller<Dtype> filler(filler_param);
  filler.Fill(this->blob_bottom_);
  L2NormalizeLayer<Dtype> layer(layer_param);
  GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_,
      this->blob_top_vec_);
}

}  // namespace caffe
