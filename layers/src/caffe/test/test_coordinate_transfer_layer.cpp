#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/coordinate_transfer_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

namespace {

// Ground truth (x, y, visible) for 2 x 3 parts. Feature cells: j at x = 3 + 6j
// (7 columns), i at y = 3 + 6i (6 rows).
const double kKeypoints[2][3][3] = {{
  {15, 9, 1},       // cell (1, 2) exactly
  {0, 0, 1},        // (-0.5, -0.5) -> -1 -> clamped: top-left corner (0, 0)
  {6, 18, 0},       // invisible
}, {
  {139, 40, 1},     // outside: clamped to the bottom-right corner (5, 6)
  {12, 12, 1},      // halfway (1.5, 1.5) -> (2, 2), away from zero
  {13, 13, 1},      // (1.67, 1.67) -> (2, 2): same window as part 1
}};

double RoundHalfAway(double v) {
  return v >= 0 ? std::floor(v + 0.5) : -std::floor(-v + 0.5);
}

int Clamp(double v, int size) {
  return static_cast<int>(std::min(std::max(v, 0.0), size - 1.0));
}

// The vertex of the parabola through (-1, l), (0, c), (1, r), for c a
// maximum (so within half a cell); 0 if flat.
double Vertex(double l, double c, double r) {
  const double curvature = l - 2 * c + r;
  return curvature < 0 ? (l - r) / (2 * curvature) : 0;
}

}  // namespace

template <typename TypeParam>
class CoordinateTransferLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  CoordinateTransferLayerTest()
      : blob_bottom_feature_(new Blob<Dtype>(2, 3, 6, 7)),
        blob_bottom_heatmap_(new Blob<Dtype>(2, 3, 4, 5)),
        blob_bottom_keypoints_(new Blob<Dtype>(2, 1, 3, 3)),
        blob_top_(new Blob<Dtype>()),
        blob_top_location_(new Blob<Dtype>()),
        threshold_(-std::numeric_limits<float>::infinity()),
        quadratic_(false) {
    Caffe::set_random_seed(1701);
    // Distinct feature values 0.1 apart (a permutation), so that MAX pooling
    // has no ties and finite differences of 1e-2 cannot reorder them.
    const int count = blob_bottom_feature_->count();  // 252, coprime to 37
    Dtype* f = blob_bottom_feature_->mutable_cpu_data();
    for (int i = 0; i < count; ++i) {
      f[i] = Dtype(0.1) * ((i * 37) % count) - Dtype(12.6);
    }
    FillerParameter filler_param;
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(blob_bottom_heatmap_);
    Dtype* kp = blob_bottom_keypoints_->mutable_cpu_data();
    for (int i = 0; i < 18; ++i) { kp[i] = (&kKeypoints[0][0][0])[i]; }
    blob_bottom_vec_.push_back(blob_bottom_feature_);
    blob_bottom_vec_.push_back(blob_bottom_heatmap_);
    blob_top_vec_.push_back(blob_top_);
  }
  virtual ~CoordinateTransferLayerTest() {
    delete blob_bottom_feature_;
    delete blob_bottom_heatmap_;
    delete blob_bottom_keypoints_;
    delete blob_top_;
    delete blob_top_location_;
  }

  // threshold_ and quadratic_ set visibility_threshold and decode when not
  // the defaults.
  LayerParameter Param(int radius, bool ave, bool missing_argmax) const {
    LayerParameter param;
    CoordinateTransferParameter* ct = param.mutable_coordinate_transfer_param();
    ct->set_heatmap_stride(8);  // heatmap cell (i, j) at (4 + 8j, 4 + 8i)
    ct->set_heatmap_offset(4);
    ct->set_feature_stride(6);
    ct->set_feature_offset(3);
    ct->set_radius(radius);
    ct->set_pool(ave ? CoordinateTransferParameter_PoolMethod_AVE
                     : CoordinateTransferParameter_PoolMethod_MAX);
    ct->set_missing(missing_argmax ? CoordinateTransferParameter_Missing_ARGMAX
                                   : CoordinateTransferParameter_Missing_ZERO);
    if (threshold_ > -std::numeric_limits<float>::infinity()) {
      ct->set_visibility_threshold(threshold_);
    }
    if (quadratic_) {
      ct->set_decode(CoordinateTransferParameter_Decode_QUADRATIC);
    }
    return param;
  }

  // Lowers heatmap (n, k) by 10 so that its peak is negative (the filler's
  // maxima over 20 cells are positive): below a visibility threshold of 0.
  void LowerPeak(int n, int k) {
    Blob<Dtype>& hm = *blob_bottom_heatmap_;
    Dtype* map = hm.mutable_cpu_data() + hm.offset(n, k);
    for (int i = 0; i < hm.height() * hm.width(); ++i) { map[i] -= 10; }
  }

  // Independent reference of the whole layer for Param(radius, ave, missing):
  // top[0], top[1] and, for top[0] diff `top_diff`, the features' gradient.
  void Reference(int radius, bool ave, bool missing_argmax, bool with_kp,
      const Dtype* top_diff, vector<double>* top, vector<double>* location,
      vector<double>* grad) {
    const Blob<Dtype>& f = *blob_bottom_feature_;
    const Blob<Dtype>& hm = *blob_bottom_heatmap_;
    const int N = f.num(), C = f.channels(), H = f.height(), W = f.width();
    const int K = hm.channels(), HW = hm.height() * hm.width();
    top->assign(N * K * C, 0);
    location->assign(N * K * 3, 0);
    grad->assign(f.count(), 0);
    for (int n = 0; n < N; ++n) {
      for (int k = 0; k < K; ++k) {
        double x, y, rx, ry;  // pooled at (x, y), reported at (rx, ry)
        bool visible = true;
        const Dtype* kp = blob_bottom_keypoints_->cpu_data() + 3 * (n * K + k);
        if (with_kp && kp[2] > 0) {
          x = rx = kp[0];
          y = ry = kp[1];
        } else if (with_kp && !missing_argmax) {
          continue;  // zero feature, location (0, 0, 0)
        } else {
          const Dtype* map = hm.cpu_data() + hm.offset(n, k);
          const int best = std::max_element(map, map + HW) - map;
          const int i = best / hm.width(), j = best % hm.width();
          x = rx = 4 + 8 * j;
          y = ry = 4 + 8 * i;
          // The parabola's vertex through the peak and its neighbours along
          // each axis, unless the peak is on that axis's border.
          if (quadratic_ && j > 0 && j < hm.width() - 1) {
            rx += 8 * Vertex(map[best - 1], map[best], map[best + 1]);
          }
          if (quadratic_ && i > 0 && i < hm.height() - 1) {
            ry += 8 * Vertex(map[best - hm.width()], map[best],
                             map[best + hm.width()]);
          }
          visible = !(map[best] < Dtype(threshold_));
        }
        (*location)[3 * (n * K + k)] = rx;
        (*location)[3 * (n * K + k) + 1] = ry;
        if (!visible) { continue; }  // zero feature, reported (rx, ry, 0)
        (*location)[3 * (n * K + k) + 2] = 1;
        const int ci = Clamp(RoundHalfAway((y - 3) / 6), H);
        const int cj = Clamp(RoundHalfAway((x - 3) / 6), W);
        const int h0 = std::max(ci - radius, 0);
        const int h1 = std::min(ci + radius, H - 1);  // inclusive
        const int w0 = std::max(cj - radius, 0);
        const int w1 = std::min(cj + radius, W - 1);
        const double area = (h1 - h0 + 1) * (w1 - w0 + 1);
        for (int c = 0; c < C; ++c) {
          const int out = (n * K + k) * C + c;
          double sum = 0, best = -1e300;
          int best_h = -1, best_w = -1;
          for (int h = h0; h <= h1; ++h) {
            for (int w = w0; w <= w1; ++w) {
              const double v = f.data_at(n, c, h, w);
              sum += v;
              if (v > best) { best = v; best_h = h; best_w = w; }
            }
          }
          (*top)[out] = ave ? sum / area : best;
          if (!top_diff) { continue; }
          for (int h = h0; h <= h1; ++h) {
            for (int w = w0; w <= w1; ++w) {
              if (ave) {
                (*grad)[f.offset(n, c, h, w)] += top_diff[out] / area;
              } else if (h == best_h && w == best_w) {
                (*grad)[f.offset(n, c, h, w)] += top_diff[out];
              }
            }
          }
        }
      }
    }
  }

  // Forward and backward (random top diff) against the reference.
  void TestAgainstReference(int radius, bool ave, bool missing_argmax,
      bool with_kp) {
    if (with_kp) { blob_bottom_vec_.push_back(blob_bottom_keypoints_); }
    blob_top_vec_.push_back(blob_top_location_);
    CoordinateTransferLayer<Dtype> layer(Param(radius, ave, missing_argmax));
    layer.SetUp(blob_bottom_vec_, blob_top_vec_);
    layer.Forward(blob_bottom_vec_, blob_top_vec_);
    FillerParameter filler_param;
    GaussianFiller<Dtype> filler(filler_param);
    Blob<Dtype> top_diff;
    top_diff.ReshapeLike(*blob_top_);
    filler.Fill(&top_diff);
    caffe_copy(top_diff.count(), top_diff.cpu_data(),
        blob_top_->mutable_cpu_diff());
    vector<bool> propagate_down(blob_bottom_vec_.size(), false);
    propagate_down[0] = true;
    layer.Backward(blob_top_vec_, propagate_down, blob_bottom_vec_);
    vector<double> top, location, grad;
    Reference(radius, ave, missing_argmax, with_kp, top_diff.cpu_data(), &top,
        &location, &grad);
    ASSERT_EQ(blob_top_->count(), static_cast<int>(top.size()));
    for (size_t i = 0; i < top.size(); ++i) {
      EXPECT_NEAR(blob_top_->cpu_data()[i], top[i], 1e-5) << "top " << i;
    }
    // Exact but for the sub-cell vertex, computed in Dtype by the layer.
    const double tolerance = quadratic_ ? 1e-4 : 0;
    for (size_t i = 0; i < location.size(); ++i) {
      EXPECT_NEAR(blob_top_location_->cpu_data()[i], location[i], tolerance)
          << "location " << i;
    }
    for (size_t i = 0; i < grad.size(); ++i) {
      EXPECT_NEAR(blob_bottom_feature_->cpu_diff()[i], grad[i], 1e-5)
          << "grad " << i;
    }
  }

  void TestGradient(int radius, bool ave, bool missing_argmax, bool with_kp) {
    if (with_kp) { blob_bottom_vec_.push_back(blob_bottom_keypoints_); }
    CoordinateTransferLayer<Dtype> layer(Param(radius, ave, missing_argmax));
    GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
    checker.CheckGradientExhaustive(&layer, blob_bottom_vec_, blob_top_vec_,
        0);
  }

  Blob<Dtype>* const blob_bottom_feature_;
  Blob<Dtype>* const blob_bottom_heatmap_;
  Blob<Dtype>* const blob_bottom_keypoints_;
  Blob<Dtype>* const blob_top_;
  Blob<Dtype>* const blob_top_location_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
  float threshold_;  // visibility_threshold
  bool quadratic_;   // decode: QUADRATIC
};

TYPED_TEST_CASE(CoordinateTransferLayerTest, TestDtypesAndDevices);

TYPED_TEST(CoordinateTransferLayerTest, TestSetUp) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_bottom_vec_.push_back(this->blob_bottom_keypoints_);
  this->blob_top_vec_.push_back(this->blob_top_location_);
  CoordinateTransferLayer<Dtype> layer(this->Param(1, false, false));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape(), (vector<int>{2, 9}));
  EXPECT_EQ(this->blob_top_location_->shape(), (vector<int>{2, 3, 3}));
}

TYPED_TEST(CoordinateTransferLayerTest, TestHeatmapArgmaxAndTies) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype>& hm = *this->blob_bottom_heatmap_;
  Dtype* map = hm.mutable_cpu_data();
  // n0 k0: a constant map, every cell ties: the first, (0, 0), wins.
  caffe_set(20, Dtype(0.5), map + hm.offset(0, 0));
  // n0 k1: equal maxima at (2, 1) and (1, 3): (1, 3) comes first.
  map[hm.offset(0, 1, 2, 1)] = 10;
  map[hm.offset(0, 1, 1, 3)] = 10;
  // n1 k2: the maximum in the bottom-right corner (3, 4).
  map[hm.offset(1, 2, 3, 4)] = 10;
  this->blob_top_vec_.push_back(this->blob_top_location_);
  CoordinateTransferLayer<Dtype> layer(this->Param(1, false, false));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const Blob<Dtype>& loc = *this->blob_top_location_;
  EXPECT_EQ(loc.data_at(0, 0, 0, 0), 4);   // x = 4 + 8 * 0
  EXPECT_EQ(loc.data_at(0, 0, 1, 0), 4);   // y = 4 + 8 * 0
  EXPECT_EQ(loc.data_at(0, 0, 2, 0), 1);
  EXPECT_EQ(loc.data_at(0, 1, 0, 0), 28);  // x = 4 + 8 * 3
  EXPECT_EQ(loc.data_at(0, 1, 1, 0), 12);  // y = 4 + 8 * 1
  EXPECT_EQ(loc.data_at(1, 2, 0, 0), 36);
  EXPECT_EQ(loc.data_at(1, 2, 1, 0), 28);
  // n0 k0 at (4, 4) -> feature cell (0, 0): the window is clipped to the
  // 2 x 2 top-left corner; its maximum is part k0's feature.
  const Blob<Dtype>& f = *this->blob_bottom_feature_;
  for (int c = 0; c < 3; ++c) {
    const Dtype expected = std::max(
        std::max(f.data_at(0, c, 0, 0), f.data_at(0, c, 0, 1)),
        std::max(f.data_at(0, c, 1, 0), f.data_at(0, c, 1, 1)));
    EXPECT_EQ(this->blob_top_->cpu_data()[c], expected);
  }
  // n1 k2 at (36, 28) -> feature cell (round(25 / 6), round(33 / 6)) = (4, 6)
  // (5.5 rounds up): rows 3-5, columns 5-6.
  for (int c = 0; c < 3; ++c) {
    Dtype expected = f.data_at(1, c, 3, 5);
    for (int h = 3; h < 6; ++h) {
      for (int w = 5; w < 7; ++w) {
        expected = std::max(expected, f.data_at(1, c, h, w));
      }
    }
    EXPECT_EQ(this->blob_top_->cpu_data()[9 + 6 + c], expected);
  }
}

TYPED_TEST(CoordinateTransferLayerTest, TestGroundTruthLocations) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_bottom_vec_.push_back(this->blob_bottom_keypoints_);
  this->blob_top_vec_.push_back(this->blob_top_location_);
  CoordinateTransferLayer<Dtype> layer(this->Param(0, false, false));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  // Radius 0: the feature at the cell itself.
  const int cells[2][3][2] = {{{1, 2}, {0, 0}, {-1, -1}},
                              {{5, 6}, {2, 2}, {2, 2}}};
  const Blob<Dtype>& f = *this->blob_bottom_feature_;
  const Dtype* top = this->blob_top_->cpu_data();
  const Dtype* loc = this->blob_top_location_->cpu_data();
  for (int n = 0; n < 2; ++n) {
    for (int k = 0; k < 3; ++k) {
      const bool visible = kKeypoints[n][k][2] > 0;
      EXPECT_EQ(loc[3 * (3 * n + k)], visible ? kKeypoints[n][k][0] : 0);
      EXPECT_EQ(loc[3 * (3 * n + k) + 1], visible ? kKeypoints[n][k][1] : 0);
      EXPECT_EQ(loc[3 * (3 * n + k) + 2], visible ? 1 : 0);
      for (int c = 0; c < 3; ++c) {
        EXPECT_EQ(top[(3 * n + k) * 3 + c], visible ?
            f.data_at(n, c, cells[n][k][0], cells[n][k][1]) : 0);
      }
    }
  }
}

TYPED_TEST(CoordinateTransferLayerTest, TestMissingArgmax) {
  typedef typename TypeParam::Dtype Dtype;
  // n0 k2 is invisible: with missing: ARGMAX it uses the heatmap.
  Blob<Dtype>& hm = *this->blob_bottom_heatmap_;
  hm.mutable_cpu_data()[hm.offset(0, 2, 3, 1)] = 10;
  this->blob_bottom_vec_.push_back(this->blob_bottom_keypoints_);
  this->blob_top_vec_.push_back(this->blob_top_location_);
  CoordinateTransferLayer<Dtype> layer(this->Param(1, false, true));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const Blob<Dtype>& loc = *this->blob_top_location_;
  EXPECT_EQ(loc.data_at(0, 2, 0, 0), 12);  // x = 4 + 8 * 1
  EXPECT_EQ(loc.data_at(0, 2, 1, 0), 28);  // y = 4 + 8 * 3
  EXPECT_EQ(loc.data_at(0, 2, 2, 0), 1);
}

TYPED_TEST(CoordinateTransferLayerTest, TestAllInvisibleSample) {
  typedef typename TypeParam::Dtype Dtype;
  Dtype* kp = this->blob_bottom_keypoints_->mutable_cpu_data();
  for (int k = 0; k < 3; ++k) { kp[9 + 3 * k + 2] = 0; }  // sample 1
  this->blob_bottom_vec_.push_back(this->blob_bottom_keypoints_);
  this->blob_top_vec_.push_back(this->blob_top_location_);
  CoordinateTransferLayer<Dtype> layer(this->Param(1, true, false));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  for (int i = 0; i < 9; ++i) {
    EXPECT_EQ(this->blob_top_->cpu_data()[9 + i], 0);
    EXPECT_EQ(this->blob_top_location_->cpu_data()[9 + i], 0);
  }
  caffe_set(this->blob_top_->count(), Dtype(1),
      this->blob_top_->mutable_cpu_diff());
  layer.Backward(this->blob_top_vec_, vector<bool>{true, false, false},
      this->blob_bottom_vec_);
  const Blob<Dtype>& f = *this->blob_bottom_feature_;
  for (int i = f.offset(1); i < f.count(); ++i) {
    EXPECT_EQ(f.cpu_diff()[i], 0);
  }
}

TYPED_TEST(CoordinateTransferLayerTest, TestMaxTieInWindow) {
  typedef typename TypeParam::Dtype Dtype;
  // Every feature equal: MAX takes (and back-propagates to) the first cell
  // of each clipped window in row-major order.
  caffe_set(this->blob_bottom_feature_->count(), Dtype(2),
      this->blob_bottom_feature_->mutable_cpu_data());
  this->blob_bottom_vec_.push_back(this->blob_bottom_keypoints_);
  CoordinateTransferLayer<Dtype> layer(this->Param(1, false, false));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  caffe_set(this->blob_top_->count(), Dtype(1),
      this->blob_top_->mutable_cpu_diff());
  layer.Backward(this->blob_top_vec_, vector<bool>{true, false, false},
      this->blob_bottom_vec_);
  const Blob<Dtype>& f = *this->blob_bottom_feature_;
  for (int c = 0; c < 3; ++c) {
    for (int h = 0; h < 6; ++h) {
      for (int w = 0; w < 7; ++w) {
        // n0: k0 at (1, 2) -> window from (0, 1); k1 at (0, 0) -> from
        // (0, 0); n1: k0 at (5, 6) -> from (4, 5); k1 and k2 at (2, 2) ->
        // both from (1, 1), so that cell gets 2.
        double n0 = (h == 0 && (w == 1 || w == 0)) ? 1 : 0;
        double n1 = (h == 4 && w == 5) ? 1 : (h == 1 && w == 1) ? 2 : 0;
        EXPECT_EQ(f.diff_at(0, c, h, w), n0) << c << " " << h << " " << w;
        EXPECT_EQ(f.diff_at(1, c, h, w), n1) << c << " " << h << " " << w;
      }
    }
  }
}

TYPED_TEST(CoordinateTransferLayerTest, TestNoGradientToHeatmapKeypoints) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_bottom_vec_.push_back(this->blob_bottom_keypoints_);
  CoordinateTransferLayer<Dtype> layer(this->Param(1, false, false));
  EXPECT_TRUE(layer.AllowForceBackward(0));
  EXPECT_FALSE(layer.AllowForceBackward(1));
  EXPECT_FALSE(layer.AllowForceBackward(2));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  caffe_set(this->blob_top_->count(), Dtype(1),
      this->blob_top_->mutable_cpu_diff());
  for (int i = 1; i < 3; ++i) {
    caffe_set(this->blob_bottom_vec_[i]->count(), Dtype(7),
        this->blob_bottom_vec_[i]->mutable_cpu_diff());
  }
  layer.Backward(this->blob_top_vec_, vector<bool>(3, true),
      this->blob_bottom_vec_);
  for (int i = 1; i < 3; ++i) {
    for (int j = 0; j < this->blob_bottom_vec_[i]->count(); ++j) {
      EXPECT_EQ(this->blob_bottom_vec_[i]->cpu_diff()[j], 0);
    }
  }
}

TYPED_TEST(CoordinateTransferLayerTest, TestReferenceArgmaxMax) {
  for (int radius = 0; radius <= 2; ++radius) {
    this->blob_bottom_vec_.resize(2);
    this->blob_top_vec_.resize(1);
    this->TestAgainstReference(radius, false, false, false);
  }
}

TYPED_TEST(CoordinateTransferLayerTest, TestReferenceArgmaxAve) {
  for (int radius = 0; radius <= 2; ++radius) {
    this->blob_bottom_vec_.resize(2);
    this->blob_top_vec_.resize(1);
    this->TestAgainstReference(radius, true, false, false);
  }
}

TYPED_TEST(CoordinateTransferLayerTest, TestReferenceGroundTruth) {
  for (int radius = 0; radius <= 2; ++radius) {
    for (int ave = 0; ave < 2; ++ave) {
      for (int missing = 0; missing < 2; ++missing) {
        this->blob_bottom_vec_.resize(2);
        this->blob_top_vec_.resize(1);
        this->TestAgainstReference(radius, ave, missing, true);
      }
    }
  }
}

TYPED_TEST(CoordinateTransferLayerTest, TestReferenceLargeRadius) {
  // A radius beyond the map pools the whole map.
  this->TestAgainstReference(1000, true, false, true);
}

TYPED_TEST(CoordinateTransferLayerTest, TestGradientMaxRadius0) {
  this->TestGradient(0, false, false, true);
}

TYPED_TEST(CoordinateTransferLayerTest, TestGradientMaxRadius1) {
  this->TestGradient(1, false, false, true);
}

TYPED_TEST(CoordinateTransferLayerTest, TestGradientMaxRadius2) {
  this->TestGradient(2, false, false, true);
}

TYPED_TEST(CoordinateTransferLayerTest, TestGradientAveRadius0) {
  this->TestGradient(0, true, false, true);
}

TYPED_TEST(CoordinateTransferLayerTest, TestGradientAveRadius1) {
  this->TestGradient(1, true, false, true);
}

TYPED_TEST(CoordinateTransferLayerTest, TestGradientAveRadius2) {
  this->TestGradient(2, true, false, true);
}

TYPED_TEST(CoordinateTransferLayerTest, TestGradientMissingArgmax) {
  this->TestGradient(1, false, true, true);
}

TYPED_TEST(CoordinateTransferLayerTest, TestGradientHeatmapOnlyMax) {
  this->TestGradient(1, false, false, false);
}

TYPED_TEST(CoordinateTransferLayerTest, TestGradientHeatmapOnlyAve) {
  this->TestGradient(2, true, false, false);
}

// Synthetic peaks s(i, j) = -(j - xc)^2 - (i - yc)^2, exact in float: the
// fit recovers (xc, yc) where the peak cell is interior, keeps the cell's
// index on a border, and leaves the argmax cell, and so pooling, unchanged.
TYPED_TEST(CoordinateTransferLayerTest, TestQuadraticDecodeExact) {
  typedef typename TypeParam::Dtype Dtype;
  // Per part of sample 0: (xc, yc), the expected point 4 + 8 (xc', yc') and
  // the argmax cell's point.
  const double peaks[3][6] = {
    {2.25, 1.375, 22, 15, 20, 12},  // interior: both axes refined
    {-0.25, 1.75, 4, 18, 4, 20},    // column 0 is a border: x stays
    {1.5, 3.25, 16, 28, 12, 28},    // a tie of columns 1 and 2: the first
  };                                // + 0.5; row 3 is a border: y stays
  Blob<Dtype>& hm = *this->blob_bottom_heatmap_;
  for (int k = 0; k < 3; ++k) {
    for (int i = 0; i < 4; ++i) {
      for (int j = 0; j < 5; ++j) {
        const Dtype dx = j - peaks[k][0], dy = i - peaks[k][1];
        hm.mutable_cpu_data()[hm.offset(0, k, i, j)] = -dx * dx - dy * dy;
      }
    }
  }
  this->blob_top_vec_.push_back(this->blob_top_location_);
  Blob<Dtype> top[2], location[2];
  for (int quadratic = 0; quadratic < 2; ++quadratic) {
    this->quadratic_ = quadratic;
    CoordinateTransferLayer<Dtype> layer(this->Param(1, false, false));
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    top[quadratic].CopyFrom(*this->blob_top_, false, true);
    location[quadratic].CopyFrom(*this->blob_top_location_, false, true);
  }
  for (int k = 0; k < 3; ++k) {
    EXPECT_EQ(location[1].data_at(0, k, 0, 0), peaks[k][2]) << k;
    EXPECT_EQ(location[1].data_at(0, k, 1, 0), peaks[k][3]) << k;
    EXPECT_EQ(location[1].data_at(0, k, 2, 0), 1) << k;
    EXPECT_EQ(location[0].data_at(0, k, 0, 0), peaks[k][4]) << k;
    EXPECT_EQ(location[0].data_at(0, k, 1, 0), peaks[k][5]) << k;
  }
  for (int i = 0; i < top[0].count(); ++i) {
    EXPECT_EQ(top[0].cpu_data()[i], top[1].cpu_data()[i]) << i;
  }
}

// A heatmap-located part whose peak is below the threshold: zero feature,
// reported at its argmax with visible 0; the other parts are unchanged; a
// peak equal to the threshold is visible.
TYPED_TEST(CoordinateTransferLayerTest, TestVisibilityThreshold) {
  typedef typename TypeParam::Dtype Dtype;
  this->LowerPeak(0, 1);
  this->LowerPeak(1, 0);
  this->blob_top_vec_.push_back(this->blob_top_location_);
  Blob<Dtype> top[2], location[2];
  for (int gated = 0; gated < 2; ++gated) {
    this->threshold_ = gated ? 0 : -std::numeric_limits<float>::infinity();
    CoordinateTransferLayer<Dtype> layer(this->Param(1, false, false));
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    top[gated].CopyFrom(*this->blob_top_, false, true);
    location[gated].CopyFrom(*this->blob_top_location_, false, true);
  }
  const Blob<Dtype>& hm = *this->blob_bottom_heatmap_;
  for (int n = 0; n < 2; ++n) {
    for (int k = 0; k < 3; ++k) {
      const bool lowered = (n == 0 && k == 1) || (n == 1 && k == 0);
      const Dtype* map = hm.cpu_data() + hm.offset(n, k);
      ASSERT_EQ(*std::max_element(map, map + 20) < 0, lowered) << n << k;
      for (int d = 0; d < 2; ++d) {
        EXPECT_EQ(location[1].data_at(n, k, d, 0),
                  location[0].data_at(n, k, d, 0));
      }
      EXPECT_EQ(location[0].data_at(n, k, 2, 0), 1);
      EXPECT_EQ(location[1].data_at(n, k, 2, 0), lowered ? 0 : 1);
      for (int c = 0; c < 3; ++c) {
        const int i = (3 * n + k) * 3 + c;
        EXPECT_EQ(top[1].cpu_data()[i], lowered ? 0 : top[0].cpu_data()[i]);
      }
    }
  }
  // Part (1, 2)'s peak set to 3.5, above every other cell: a threshold of
  // 3.5 keeps that part and drops the others.
  Blob<Dtype>& heat = *this->blob_bottom_heatmap_;
  heat.mutable_cpu_data()[heat.offset(1, 2, 2, 3)] = Dtype(3.5);
  this->threshold_ = 3.5;
  CoordinateTransferLayer<Dtype> layer(this->Param(1, false, false));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  for (int nk = 0; nk < 6; ++nk) {
    const Dtype* map = heat.cpu_data() + 20 * nk;
    ASSERT_EQ(*std::max_element(map, map + 20) == Dtype(3.5), nk == 5);
    EXPECT_EQ(this->blob_top_location_->cpu_data()[3 * nk + 2],
              nk == 5 ? 1 : 0) << nk;
  }
  EXPECT_EQ(this->blob_top_location_->cpu_data()[15], 28);  // x = 4 + 8 * 3
  EXPECT_EQ(this->blob_top_location_->cpu_data()[16], 20);  // y = 4 + 8 * 2
}

// With ground truth the threshold gates only the parts the heatmap locates:
// none with missing: ZERO, the invisible ones with missing: ARGMAX.
TYPED_TEST(CoordinateTransferLayerTest, TestVisibilityThresholdGroundTruth) {
  typedef typename TypeParam::Dtype Dtype;
  for (int nk = 0; nk < 6; ++nk) { this->LowerPeak(nk / 3, nk % 3); }
  this->blob_bottom_vec_.push_back(this->blob_bottom_keypoints_);
  this->blob_top_vec_.push_back(this->blob_top_location_);
  for (int missing_argmax = 0; missing_argmax < 2; ++missing_argmax) {
    Blob<Dtype> top[2], location[2];
    for (int gated = 0; gated < 2; ++gated) {
      this->threshold_ = gated ? 0 : -std::numeric_limits<float>::infinity();
      CoordinateTransferLayer<Dtype> layer(
          this->Param(1, false, missing_argmax));
      layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
      layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
      top[gated].CopyFrom(*this->blob_top_, false, true);
      location[gated].CopyFrom(*this->blob_top_location_, false, true);
    }
    for (int n = 0; n < 2; ++n) {
      for (int k = 0; k < 3; ++k) {
        const bool gated = missing_argmax && kKeypoints[n][k][2] <= 0;
        for (int d = 0; d < 2; ++d) {
          EXPECT_EQ(location[1].data_at(n, k, d, 0),
                    location[0].data_at(n, k, d, 0));
        }
        EXPECT_EQ(location[1].data_at(n, k, 2, 0),
                  gated ? 0 : location[0].data_at(n, k, 2, 0));
        for (int c = 0; c < 3; ++c) {
          const int i = (3 * n + k) * 3 + c;
          EXPECT_EQ(top[1].cpu_data()[i], gated ? 0 : top[0].cpu_data()[i]);
        }
      }
    }
  }
}

// Train/test consistency: a TRAIN layer given the TEST layer's reported
// parts as ground truth (invisible where predicted invisible, missing: ZERO)
// produces exactly the TEST layer's features, zeros included.
TYPED_TEST(CoordinateTransferLayerTest, TestTrainTestConsistency) {
  typedef typename TypeParam::Dtype Dtype;
  this->LowerPeak(0, 1);
  this->LowerPeak(1, 2);
  this->threshold_ = 0;
  this->blob_top_vec_.push_back(this->blob_top_location_);
  CoordinateTransferLayer<Dtype> test_layer(this->Param(1, true, false));
  test_layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  test_layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  Blob<Dtype> test_top;
  test_top.CopyFrom(*this->blob_top_, false, true);
  caffe_copy(18, this->blob_top_location_->cpu_data(),
      this->blob_bottom_keypoints_->mutable_cpu_data());
  EXPECT_EQ(this->blob_bottom_keypoints_->cpu_data()[5], 0);   // (0, 1)
  EXPECT_EQ(this->blob_bottom_keypoints_->cpu_data()[17], 0);  // (1, 2)
  this->blob_bottom_vec_.push_back(this->blob_bottom_keypoints_);
  this->threshold_ = -std::numeric_limits<float>::infinity();
  CoordinateTransferLayer<Dtype> train_layer(this->Param(1, true, false));
  train_layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  train_layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  for (int i = 0; i < test_top.count(); ++i) {
    EXPECT_EQ(this->blob_top_->cpu_data()[i], test_top.cpu_data()[i]) << i;
  }
}

TYPED_TEST(CoordinateTransferLayerTest, TestReferenceThresholdQuadratic) {
  this->LowerPeak(0, 2);
  this->LowerPeak(1, 1);
  this->threshold_ = 0;
  this->quadratic_ = true;
  for (int radius = 0; radius <= 1; ++radius) {
    for (int ave = 0; ave < 2; ++ave) {
      for (int source = 0; source < 3; ++source) {  // heatmap, ZERO, ARGMAX
        this->blob_bottom_vec_.resize(2);
        this->blob_top_vec_.resize(1);
        this->TestAgainstReference(radius, ave, source == 2, source > 0);
      }
    }
  }
}

TYPED_TEST(CoordinateTransferLayerTest, TestGradientThresholdMax) {
  this->LowerPeak(0, 1);
  this->LowerPeak(1, 0);
  this->threshold_ = 0;
  this->TestGradient(1, false, false, false);
}

TYPED_TEST(CoordinateTransferLayerTest, TestGradientThresholdAve) {
  this->LowerPeak(0, 1);
  this->LowerPeak(1, 0);
  this->threshold_ = 0;
  this->TestGradient(2, true, false, false);
}

TYPED_TEST(CoordinateTransferLayerTest, TestGradientThresholdMissingArgmax) {
  this->LowerPeak(0, 2);  // the invisible ground-truth part: gated
  this->threshold_ = 0;
  this->TestGradient(1, false, true, true);
}

TYPED_TEST(CoordinateTransferLayerTest, TestGradientQuadratic) {
  this->quadratic_ = true;
  this->TestGradient(1, false, false, false);
}

#ifndef CPU_ONLY
// GPU forward/backward against the CPU path on the same inputs.
template <typename Dtype>
class CoordinateTransferLayerGPUvsCPUTest
    : public CoordinateTransferLayerTest<GPUDevice<Dtype> > {};

TYPED_TEST_CASE(CoordinateTransferLayerGPUvsCPUTest, TestDtypes);

TYPED_TEST(CoordinateTransferLayerGPUvsCPUTest, TestAgree) {
  typedef TypeParam Dtype;
  this->blob_top_vec_.push_back(this->blob_top_location_);
  this->LowerPeak(0, 2);  // gated in the threshold runs
  for (int options = 0; options < 4; ++options) {
    // Neither, visibility_threshold, decode: QUADRATIC, both.
    this->threshold_ = options % 2 ? 0
        : -std::numeric_limits<float>::infinity();
    this->quadratic_ = options / 2;
    for (int source = 0; source < 3; ++source) {  // heatmap, ZERO, ARGMAX
      const bool with_kp = source > 0, ave = (options + source) % 2;
      this->blob_bottom_vec_.resize(2);
      if (with_kp) {
        this->blob_bottom_vec_.push_back(this->blob_bottom_keypoints_);
      }
      Blob<Dtype> top[2], location[2], diff[2];
      for (int gpu = 0; gpu < 2; ++gpu) {
        Caffe::set_mode(gpu ? Caffe::GPU : Caffe::CPU);
        CoordinateTransferLayer<Dtype> layer(
            this->Param(2, ave, source == 2));
        layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
        layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
        Dtype* top_diff = this->blob_top_->mutable_cpu_diff();
        for (int i = 0; i < this->blob_top_->count(); ++i) {
          top_diff[i] = Dtype(0.25) * (i % 7) - Dtype(0.5);
        }
        vector<bool> propagate_down(this->blob_bottom_vec_.size(), false);
        propagate_down[0] = true;
        layer.Backward(this->blob_top_vec_, propagate_down,
            this->blob_bottom_vec_);
        top[gpu].CopyFrom(*this->blob_top_, false, true);
        location[gpu].CopyFrom(*this->blob_top_location_, false, true);
        diff[gpu].CopyFrom(*this->blob_bottom_feature_, true, true);
      }
      for (int i = 0; i < top[0].count(); ++i) {
        EXPECT_NEAR(top[0].cpu_data()[i], top[1].cpu_data()[i], 1e-5);
      }
      // The sub-cell vertex may round differently (nvcc contracts to FMA).
      const double tolerance = this->quadratic_ ? 1e-4 : 0;
      for (int i = 0; i < location[0].count(); ++i) {
        EXPECT_NEAR(location[0].cpu_data()[i], location[1].cpu_data()[i],
                    tolerance);
      }
      for (int i = 0; i < diff[0].count(); ++i) {
        EXPECT_NEAR(diff[0].cpu_data()[i], diff[1].cpu_data()[i], 1e-5);
      }
    }
  }
}
#endif

}  // namespace caffe
