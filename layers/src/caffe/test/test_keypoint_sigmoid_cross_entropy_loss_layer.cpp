#include <algorithm>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/keypoint_sigmoid_cross_entropy_loss_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

namespace {

// 2 x 3 keypoints (x, y, visible) for a 4 x 5 map with stride 4, offset 2
// (cells at x = 2, 6, 10, 14, 18 and y = 2, 6, 10, 14).
const double kKeypoints[2][3][3] = {{
  {10, 6, 1},         // cell (1, 2) exactly
  {8, 12, 1},         // halfway: (1.5, 2.5) -> j = 2, i = 3 (away from 0)
  {6, 6, 0},          // invisible
}, {
  {-100, 1000, 1},    // outside: clamped to (3, 0)
  {19.9, -0.1, 2},    // (4.475, -0.525) -> (4, -1) -> clamped to (0, 4)
  {3, 3, -1},         // invisible
}};
// The positive cell (i, j) of each keypoint above, (-1, -1) if invisible.
const int kCells[2][3][2] = {
  {{1, 2}, {3, 2}, {-1, -1}},
  {{3, 0}, {0, 4}, {-1, -1}}};

// Independent reference: round half away from zero.
double RoundHalfAway(double v) {
  return v >= 0 ? std::floor(v + 0.5) : -std::floor(-v + 0.5);
}

}  // namespace

template <typename TypeParam>
class KeypointSigmoidCrossEntropyLossLayerTest
    : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  KeypointSigmoidCrossEntropyLossLayerTest()
      : blob_bottom_score_(new Blob<Dtype>(2, 3, 4, 5)),
        blob_bottom_keypoints_(new Blob<Dtype>(2, 1, 3, 3)),
        blob_top_loss_(new Blob<Dtype>()),
        blob_top_target_(new Blob<Dtype>()) {
    Caffe::set_random_seed(1701);
    FillerParameter filler_param;
    filler_param.set_std(2);
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(blob_bottom_score_);
    Dtype* kp = blob_bottom_keypoints_->mutable_cpu_data();
    for (int i = 0; i < 18; ++i) { kp[i] = (&kKeypoints[0][0][0])[i]; }
    blob_bottom_vec_.push_back(blob_bottom_score_);
    blob_bottom_vec_.push_back(blob_bottom_keypoints_);
    blob_top_vec_.push_back(blob_top_loss_);
  }
  virtual ~KeypointSigmoidCrossEntropyLossLayerTest() {
    delete blob_bottom_score_;
    delete blob_bottom_keypoints_;
    delete blob_top_loss_;
    delete blob_top_target_;
  }

  static LayerParameter Param(LossParameter_NormalizationMode mode,
      bool gaussian = false) {
    LayerParameter param;
    KeypointLossParameter* kp_param = param.mutable_keypoint_loss_param();
    kp_param->set_stride(4);
    kp_param->set_offset(2);
    if (gaussian) {
      kp_param->set_target(KeypointLossParameter_Target_GAUSSIAN);
      kp_param->set_sigma(1.5);
    }
    if (mode != static_cast<LossParameter_NormalizationMode>(-1)) {
      param.mutable_loss_param()->set_normalization(mode);
    }
    return param;
  }

  // The target of every cell, computed independently from the layer.
  vector<double> ReferenceTarget(double stride, double offset, bool gaussian,
      double sigma) {
    const Blob<Dtype>& s = *blob_bottom_score_;
    const Dtype* kp = blob_bottom_keypoints_->cpu_data();
    vector<double> target(s.count(), 0);
    for (int n = 0; n < s.num(); ++n) {
      for (int k = 0; k < s.channels(); ++k) {
        const Dtype* p = kp + 3 * (n * s.channels() + k);
        if (!(p[2] > 0)) { continue; }
        const double cx = (p[0] - offset) / stride;
        const double cy = (p[1] - offset) / stride;
        const int j = std::min(std::max(RoundHalfAway(cx), 0.0),
                               s.width() - 1.0);
        const int i = std::min(std::max(RoundHalfAway(cy), 0.0),
                               s.height() - 1.0);
        for (int h = 0; h < s.height(); ++h) {
          for (int w = 0; w < s.width(); ++w) {
            double& t = target[s.offset(n, k, h, w)];
            if (gaussian) {
              const double d2 = (w - cx) * (w - cx) + (h - cy) * (h - cy);
              t = std::exp(-d2 / (2 * sigma * sigma));
            } else {
              t = (h == i && w == j) ? 1 : 0;
            }
          }
        }
      }
    }
    return target;
  }

  // -sum [t log p + (1 - t) log(1 - p)] / normalizer, plainly.
  double ReferenceLoss(const vector<double>& target, double normalizer) {
    const Dtype* s = blob_bottom_score_->cpu_data();
    double loss = 0;
    for (int i = 0; i < blob_bottom_score_->count(); ++i) {
      const double p = 1 / (1 + std::exp(-static_cast<double>(s[i])));
      loss -= target[i] * std::log(p) + (1 - target[i]) * std::log(1 - p);
    }
    return loss / normalizer;
  }

  void TestForwardBackward(LossParameter_NormalizationMode mode,
      double normalizer, bool gaussian) {
    LayerParameter param = Param(mode, gaussian);
    const Dtype kLossWeight = 3.7;
    param.add_loss_weight(kLossWeight);
    KeypointSigmoidCrossEntropyLossLayer<Dtype> layer(param);
    layer.SetUp(blob_bottom_vec_, blob_top_vec_);
    const Dtype weighted = layer.Forward(blob_bottom_vec_, blob_top_vec_);
    const vector<double> target = ReferenceTarget(4, 2, gaussian, 1.5);
    const double loss = ReferenceLoss(target, normalizer);
    EXPECT_NEAR(blob_top_loss_->cpu_data()[0], loss, 1e-5 * loss);
    EXPECT_NEAR(weighted, kLossWeight * loss, 1e-5 * kLossWeight * loss);
    layer.Backward(blob_top_vec_, vector<bool>{true, false},
        blob_bottom_vec_);
    const Dtype* s = blob_bottom_score_->cpu_data();
    const Dtype* diff = blob_bottom_score_->cpu_diff();
    for (int i = 0; i < blob_bottom_score_->count(); ++i) {
      const double p = 1 / (1 + std::exp(-static_cast<double>(s[i])));
      EXPECT_NEAR(diff[i], kLossWeight * (p - target[i]) / normalizer, 1e-6);
    }
  }

  Blob<Dtype>* const blob_bottom_score_;
  Blob<Dtype>* const blob_bottom_keypoints_;
  Blob<Dtype>* const blob_top_loss_;
  Blob<Dtype>* const blob_top_target_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(KeypointSigmoidCrossEntropyLossLayerTest,
    TestDtypesAndDevices);

#define KEYPOINT_LOSS_UNSET static_cast<LossParameter_NormalizationMode>(-1)

TYPED_TEST(KeypointSigmoidCrossEntropyLossLayerTest, TestSetUp) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_top_vec_.push_back(this->blob_top_target_);
  KeypointSigmoidCrossEntropyLossLayer<Dtype> layer(
      this->Param(KEYPOINT_LOSS_UNSET));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_loss_->num_axes(), 0);
  EXPECT_EQ(this->blob_top_target_->shape(),
      this->blob_bottom_score_->shape());
}

TYPED_TEST(KeypointSigmoidCrossEntropyLossLayerTest, TestNearestTarget) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_top_vec_.push_back(this->blob_top_target_);
  KeypointSigmoidCrossEntropyLossLayer<Dtype> layer(
      this->Param(KEYPOINT_LOSS_UNSET));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const Blob<Dtype>& t = *this->blob_top_target_;
  for (int n = 0; n < 2; ++n) {
    for (int k = 0; k < 3; ++k) {
      for (int h = 0; h < 4; ++h) {
        for (int w = 0; w < 5; ++w) {
          const bool positive = h == kCells[n][k][0] && w == kCells[n][k][1];
          EXPECT_EQ(t.data_at(n, k, h, w), positive ? 1 : 0)
              << "n " << n << " k " << k << " h " << h << " w " << w;
        }
      }
    }
  }
}

TYPED_TEST(KeypointSigmoidCrossEntropyLossLayerTest, TestGaussianTarget) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_top_vec_.push_back(this->blob_top_target_);
  KeypointSigmoidCrossEntropyLossLayer<Dtype> layer(
      this->Param(KEYPOINT_LOSS_UNSET, true));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const vector<double> target = this->ReferenceTarget(4, 2, true, 1.5);
  const Dtype* t = this->blob_top_target_->cpu_data();
  for (int i = 0; i < this->blob_top_target_->count(); ++i) {
    EXPECT_NEAR(t[i], target[i], 1e-6);
  }
  // Keypoint n0 k0 sits exactly on cell (1, 2): target 1 there.
  EXPECT_NEAR(this->blob_top_target_->data_at(0, 0, 1, 2), 1, 1e-6);
  // Invisible keypoints: all zero.
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(t[this->blob_top_target_->offset(0, 2) + i], 0);
    EXPECT_EQ(t[this->blob_top_target_->offset(1, 2) + i], 0);
  }
}

TYPED_TEST(KeypointSigmoidCrossEntropyLossLayerTest, TestDefaultIsBatchSize) {
  this->TestForwardBackward(KEYPOINT_LOSS_UNSET, 2, false);
}

TYPED_TEST(KeypointSigmoidCrossEntropyLossLayerTest, TestBatchSize) {
  this->TestForwardBackward(LossParameter_NormalizationMode_BATCH_SIZE, 2,
      false);
}

TYPED_TEST(KeypointSigmoidCrossEntropyLossLayerTest, TestFull) {
  this->TestForwardBackward(LossParameter_NormalizationMode_FULL, 120, false);
}

TYPED_TEST(KeypointSigmoidCrossEntropyLossLayerTest, TestValidIsFull) {
  this->TestForwardBackward(LossParameter_NormalizationMode_VALID, 120,
      false);
}

TYPED_TEST(KeypointSigmoidCrossEntropyLossLayerTest, TestNone) {
  this->TestForwardBackward(LossParameter_NormalizationMode_NONE, 1, false);
}

TYPED_TEST(KeypointSigmoidCrossEntropyLossLayerTest, TestGaussianForward) {
  this->TestForwardBackward(LossParameter_NormalizationMode_NONE, 1, true);
}

TYPED_TEST(KeypointSigmoidCrossEntropyLossLayerTest, TestDeprecatedNormalize) {
  typedef typename TypeParam::Dtype Dtype;
  // loss_param.normalize: true means VALID (here: N K H W), as in Caffe.
  LayerParameter param = this->Param(KEYPOINT_LOSS_UNSET);
  param.mutable_loss_param()->set_normalize(true);
  KeypointSigmoidCrossEntropyLossLayer<Dtype> layer(param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const double loss = this->ReferenceLoss(
      this->ReferenceTarget(4, 2, false, 1), 120);
  EXPECT_NEAR(this->blob_top_loss_->cpu_data()[0], loss, 1e-5 * loss);
}

TYPED_TEST(KeypointSigmoidCrossEntropyLossLayerTest, TestAllInvisible) {
  typedef typename TypeParam::Dtype Dtype;
  Dtype* kp = this->blob_bottom_keypoints_->mutable_cpu_data();
  for (int i = 0; i < 6; ++i) { kp[3 * i + 2] = 0; }
  this->blob_top_vec_.push_back(this->blob_top_target_);
  KeypointSigmoidCrossEntropyLossLayer<Dtype> layer(
      this->Param(KEYPOINT_LOSS_UNSET));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  // All negatives: loss = sum softplus(s) / N.
  const Dtype* s = this->blob_bottom_score_->cpu_data();
  double loss = 0;
  for (int i = 0; i < 120; ++i) {
    loss += std::log1p(std::exp(static_cast<double>(s[i])));
    EXPECT_EQ(this->blob_top_target_->cpu_data()[i], 0);
  }
  EXPECT_NEAR(this->blob_top_loss_->cpu_data()[0], loss / 2, 1e-5 * loss);
}

TYPED_TEST(KeypointSigmoidCrossEntropyLossLayerTest, TestExtremeScores) {
  typedef typename TypeParam::Dtype Dtype;
  // |s| = 100 must not overflow: a confident right answer costs ~0, a
  // confident wrong one ~|s|.
  Dtype* s = this->blob_bottom_score_->mutable_cpu_data();
  for (int i = 0; i < 120; ++i) { s[i] = -100; }
  s[this->blob_bottom_score_->offset(0, 0, 1, 2)] = 100;   // right
  s[this->blob_bottom_score_->offset(0, 1, 0, 0)] = 100;   // wrong
  LayerParameter param =
      this->Param(LossParameter_NormalizationMode_NONE);
  KeypointSigmoidCrossEntropyLossLayer<Dtype> layer(param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  // Wrong: the false positive (100) and the three missed positives (100 each).
  EXPECT_NEAR(this->blob_top_loss_->cpu_data()[0], 400, 1e-3);
  layer.Backward(this->blob_top_vec_, vector<bool>{true, false},
      this->blob_bottom_vec_);
  const Dtype* diff = this->blob_bottom_score_->cpu_diff();
  for (int i = 0; i < 120; ++i) { EXPECT_TRUE(std::isfinite(diff[i])); }
  EXPECT_NEAR(diff[this->blob_bottom_score_->offset(0, 1, 0, 0)], 1, 1e-6);
  EXPECT_NEAR(diff[this->blob_bottom_score_->offset(0, 1, 3, 2)], -1, 1e-6);
}

TYPED_TEST(KeypointSigmoidCrossEntropyLossLayerTest, TestKeypointShapeFree) {
  typedef typename TypeParam::Dtype Dtype;
  KeypointSigmoidCrossEntropyLossLayer<Dtype> layer(
      this->Param(KEYPOINT_LOSS_UNSET));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const Dtype loss = this->blob_top_loss_->cpu_data()[0];
  // The same keypoints as a (N K) x 3 blob give the same loss.
  this->blob_bottom_keypoints_->Reshape(vector<int>{6, 3});
  KeypointSigmoidCrossEntropyLossLayer<Dtype> layer2(
      this->Param(KEYPOINT_LOSS_UNSET));
  layer2.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer2.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_loss_->cpu_data()[0], loss);
}

TYPED_TEST(KeypointSigmoidCrossEntropyLossLayerTest, TestGradientNearest) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param = this->Param(LossParameter_NormalizationMode_NONE);
  param.add_loss_weight(3);
  KeypointSigmoidCrossEntropyLossLayer<Dtype> layer(param);
  GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_,
      this->blob_top_vec_, 0);
}

TYPED_TEST(KeypointSigmoidCrossEntropyLossLayerTest, TestGradientGaussian) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param =
      this->Param(LossParameter_NormalizationMode_NONE, true);
  KeypointSigmoidCrossEntropyLossLayer<Dtype> layer(param);
  GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_,
      this->blob_top_vec_, 0);
}

TYPED_TEST(KeypointSigmoidCrossEntropyLossLayerTest, TestGradientBatchSize) {
  typedef typename TypeParam::Dtype Dtype;
  KeypointSigmoidCrossEntropyLossLayer<Dtype> layer(
      this->Param(KEYPOINT_LOSS_UNSET));
  GradientChecker<Dtype> checker(1e-2, 1e-3, 1701);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_,
      this->blob_top_vec_, 0);
}

TYPED_TEST(KeypointSigmoidCrossEntropyLossLayerTest, TestGradientFull) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param = this->Param(LossParameter_NormalizationMode_FULL);
  param.add_loss_weight(50);  // the 1/120 makes gradients small
  KeypointSigmoidCrossEntropyLossLayer<Dtype> layer(param);
  GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_,
      this->blob_top_vec_, 0);
}

TYPED_TEST(KeypointSigmoidCrossEntropyLossLayerTest, TestGradientTargetTop) {
  typedef typename TypeParam::Dtype Dtype;
  // With the target map as a second top: it does not depend on the scores
  // (zero gradient), and the loss gradient is unchanged.
  this->blob_top_vec_.push_back(this->blob_top_target_);
  LayerParameter param = this->Param(LossParameter_NormalizationMode_NONE);
  KeypointSigmoidCrossEntropyLossLayer<Dtype> layer(param);
  GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_,
      this->blob_top_vec_, 0);
}

#ifndef CPU_ONLY
// GPU forward/backward against the CPU path on the same inputs.
template <typename Dtype>
class KeypointSigmoidCrossEntropyLossLayerGPUvsCPUTest
    : public KeypointSigmoidCrossEntropyLossLayerTest<GPUDevice<Dtype> > {};

TYPED_TEST_CASE(KeypointSigmoidCrossEntropyLossLayerGPUvsCPUTest, TestDtypes);

TYPED_TEST(KeypointSigmoidCrossEntropyLossLayerGPUvsCPUTest, TestAgree) {
  typedef TypeParam Dtype;
  this->blob_top_vec_.push_back(this->blob_top_target_);
  for (int gaussian = 0; gaussian < 2; ++gaussian) {
    LayerParameter param =
        this->Param(LossParameter_NormalizationMode_FULL, gaussian);
    param.add_loss_weight(2.5);
    Dtype loss[2];
    Blob<Dtype> target[2], diff[2];
    for (int gpu = 0; gpu < 2; ++gpu) {
      Caffe::set_mode(gpu ? Caffe::GPU : Caffe::CPU);
      KeypointSigmoidCrossEntropyLossLayer<Dtype> layer(param);
      layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
      loss[gpu] = layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
      layer.Backward(this->blob_top_vec_, vector<bool>{true, false},
          this->blob_bottom_vec_);
      target[gpu].CopyFrom(*this->blob_top_target_, false, true);
      diff[gpu].CopyFrom(*this->blob_bottom_score_, true, true);
    }
    EXPECT_NEAR(loss[0], loss[1], 1e-5 * std::abs(loss[0]));
    for (int i = 0; i < this->blob_bottom_score_->count(); ++i) {
      EXPECT_NEAR(target[0].cpu_data()[i], target[1].cpu_data()[i], 1e-6);
      EXPECT_NEAR(diff[0].cpu_data()[i], diff[1].cpu_data()[i], 1e-6);
    }
  }
}
#endif

}  // namespace caffe
