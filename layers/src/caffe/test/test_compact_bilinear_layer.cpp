#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/compact_bilinear_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

/// A CompactBilinearLayer with a given scratch budget, to exercise chunking.
template <typename Dtype>
class ChunkedCompactBilinearLayer : public CompactBilinearLayer<Dtype> {
 public:
  ChunkedCompactBilinearLayer(const LayerParameter& param, int scratch_limit)
      : CompactBilinearLayer<Dtype>(param) {
    this->scratch_limit_ = scratch_limit;
  }
};

template <typename TypeParam>
class CompactBilinearLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  CompactBilinearLayerTest()
      : blob_bottom_a_(new Blob<Dtype>(3, 3, 2, 2)),
        blob_bottom_b_(new Blob<Dtype>(3, 4, 2, 2)),
        blob_top_(new Blob<Dtype>()) {
    Caffe::set_random_seed(1701);
    FillerParameter filler_param;
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(blob_bottom_a_);
    filler.Fill(blob_bottom_b_);
    blob_top_vec_.push_back(blob_top_);
  }
  virtual ~CompactBilinearLayerTest() {
    delete blob_bottom_a_;
    delete blob_bottom_b_;
    delete blob_top_;
  }

  vector<Blob<Dtype>*> OneBottom() { return vector<Blob<Dtype>*>{
      blob_bottom_a_}; }
  vector<Blob<Dtype>*> TwoBottoms() { return vector<Blob<Dtype>*>{
      blob_bottom_a_, blob_bottom_b_}; }

  LayerParameter Param(int d, bool sum_pool,
      CompactBilinearParameter::Factorization f, bool learn = false,
      int seed = 3) {
    LayerParameter p;
    p.set_name("cb");
    CompactBilinearParameter* cb = p.mutable_compact_bilinear_param();
    cb->set_num_output(d);
    cb->set_sum_pool(sum_pool);
    cb->set_factorization(f);
    cb->set_learn_projection(learn);
    cb->set_seed(seed);
    return p;
  }

  // y (double) by the definition, from the layer's W1 and W2.
  vector<double> Reference(CompactBilinearLayer<Dtype>* layer,
      const vector<Blob<Dtype>*>& bottom, bool sum_pool) {
    const Blob<Dtype>& x1 = *bottom[0];
    const Blob<Dtype>& x2 = *bottom[bottom.size() - 1];
    const Blob<Dtype>& w1 = *layer->blobs()[0];
    const Blob<Dtype>& w2 = *layer->blobs()[1];
    const int n_img = x1.shape(0), c1 = x1.shape(1), c2 = x2.shape(1);
    const int hw = x1.count(2), d = w1.shape(0);
    vector<double> y(n_img * d * (sum_pool ? 1 : hw), 0.0);
    for (int n = 0; n < n_img; ++n) {
      for (int k = 0; k < d; ++k) {
        for (int s = 0; s < hw; ++s) {
          double p1 = 0, p2 = 0;
          for (int c = 0; c < c1; ++c) {
            p1 += w1.cpu_data()[k * c1 + c] * x1.cpu_data()[(n * c1 + c) * hw
                + s];
          }
          for (int c = 0; c < c2; ++c) {
            p2 += w2.cpu_data()[k * c2 + c] * x2.cpu_data()[(n * c2 + c) * hw
                + s];
          }
          const double v = p1 * p2 / std::sqrt(static_cast<double>(d));
          if (sum_pool) {
            y[n * d + k] += v;
          } else {
            y[(n * d + k) * hw + s] = v;
          }
        }
      }
    }
    return y;
  }

  void CheckForward(const LayerParameter& p,
      const vector<Blob<Dtype>*>& bottom) {
    CompactBilinearLayer<Dtype> layer(p);
    layer.SetUp(bottom, blob_top_vec_);
    layer.Forward(bottom, blob_top_vec_);
    const bool sum_pool = p.compact_bilinear_param().sum_pool();
    const vector<double> y = Reference(&layer, bottom, sum_pool);
    ASSERT_EQ(blob_top_->count(), y.size());
    for (int i = 0; i < y.size(); ++i) {
      EXPECT_NEAR(blob_top_->cpu_data()[i], y[i], 1e-4 * (1 + std::fabs(y[i])));
    }
  }

  void CheckGradient(Layer<Dtype>* layer, const vector<Blob<Dtype>*>& bottom) {
    GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
    checker.CheckGradientExhaustive(layer, bottom, blob_top_vec_);
  }

  // Top data, bottom diffs and parameter diffs after a forward and a backward
  // pass with a fixed top gradient.
  struct Result {
    vector<Dtype> top, dx1, dx2, dw1, dw2;
  };
  static vector<Dtype> copy(const Dtype* p, int n) {
    return vector<Dtype>(p, p + n);
  }
  Result Run(Layer<Dtype>* layer, const vector<Blob<Dtype>*>& bottom) {
    layer->SetUp(bottom, blob_top_vec_);
    for (int i = 0; i < 2; ++i) {
      caffe_set(layer->blobs()[i]->count(), Dtype(0),
          layer->blobs()[i]->mutable_cpu_diff());
    }
    layer->Forward(bottom, blob_top_vec_);
    Dtype* g = blob_top_->mutable_cpu_diff();
    for (int i = 0; i < blob_top_->count(); ++i) {
      g[i] = std::sin(Dtype(0.7) * i + Dtype(0.3));
    }
    layer->Backward(blob_top_vec_, vector<bool>(bottom.size(), true), bottom);
    Result r;
    r.top = copy(blob_top_->cpu_data(), blob_top_->count());
    r.dx1 = copy(bottom[0]->cpu_diff(), bottom[0]->count());
    if (bottom.size() > 1) {
      r.dx2 = copy(bottom[1]->cpu_diff(), bottom[1]->count());
    }
    r.dw1 = copy(layer->blobs()[0]->cpu_diff(), layer->blobs()[0]->count());
    r.dw2 = copy(layer->blobs()[1]->cpu_diff(), layer->blobs()[1]->count());
    return r;
  }

  static void ExpectClose(const vector<Dtype>& a, const vector<Dtype>& b,
      const char* what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    for (int i = 0; i < a.size(); ++i) {
      EXPECT_NEAR(a[i], b[i], 1e-4 * (1 + std::fabs(b[i]))) << what << " " << i;
    }
  }
  static void ExpectResultsClose(const Result& a, const Result& b) {
    ExpectClose(a.top, b.top, "top");
    ExpectClose(a.dx1, b.dx1, "dx1");
    ExpectClose(a.dx2, b.dx2, "dx2");
    ExpectClose(a.dw1, b.dw1, "dw1");
    ExpectClose(a.dw2, b.dw2, "dw2");
  }

  Blob<Dtype>* const blob_bottom_a_;
  Blob<Dtype>* const blob_bottom_b_;
  Blob<Dtype>* const blob_top_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(CompactBilinearLayerTest, TestDtypesAndDevices);

const CompactBilinearParameter::Factorization kAuto =
    CompactBilinearParameter_Factorization_AUTO;
const CompactBilinearParameter::Factorization kDirect =
    CompactBilinearParameter_Factorization_DIRECT;
const CompactBilinearParameter::Factorization kGram =
    CompactBilinearParameter_Factorization_GRAM;

TYPED_TEST(CompactBilinearLayerTest, TestSetUpShapes) {
  typedef typename TypeParam::Dtype Dtype;
  CompactBilinearLayer<Dtype> pooled(this->Param(7, true, kAuto));
  pooled.SetUp(this->TwoBottoms(), this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape(), (vector<int>{3, 7, 1, 1}));
  ASSERT_EQ(pooled.blobs().size(), 2);
  EXPECT_EQ(pooled.blobs()[0]->shape(), (vector<int>{7, 3}));
  EXPECT_EQ(pooled.blobs()[1]->shape(), (vector<int>{7, 4}));
  CompactBilinearLayer<Dtype> dense(this->Param(5, false, kAuto));
  dense.SetUp(this->OneBottom(), this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape(), (vector<int>{3, 5, 2, 2}));
  EXPECT_EQ(dense.blobs()[1]->shape(), (vector<int>{5, 3}));
}

TYPED_TEST(CompactBilinearLayerTest, TestProjectionPlusMinusOneFromSeed) {
  typedef typename TypeParam::Dtype Dtype;
  CompactBilinearLayer<Dtype> layer(this->Param(9, true, kAuto, false, 42));
  layer.SetUp(this->TwoBottoms(), this->blob_top_vec_);
  // W1 then W2 from std::mt19937(seed): +1 iff bit 31 of the draw is set.
  std::mt19937 gen(42);
  int plus = 0, total = 0;
  for (int i = 0; i < 2; ++i) {
    const Blob<Dtype>& w = *layer.blobs()[i];
    for (int j = 0; j < w.count(); ++j) {
      const Dtype expected = (gen() & 0x80000000u) ? 1 : -1;
      EXPECT_EQ(w.cpu_data()[j], expected) << "W" << i + 1 << " " << j;
      plus += w.cpu_data()[j] > 0;
      ++total;
    }
  }
  EXPECT_GT(plus, total / 4);
  EXPECT_LT(plus, 3 * total / 4);
  // The first draws of std::mt19937(42) are fixed by the standard.
  std::mt19937 ref(42);
  EXPECT_EQ(ref(), 1608637542u);
}

TYPED_TEST(CompactBilinearLayerTest, TestProjectionDeterministicPerSeed) {
  typedef typename TypeParam::Dtype Dtype;
  Caffe::set_random_seed(1);  // Caffe's global RNG plays no part
  CompactBilinearLayer<Dtype> a(this->Param(6, true, kAuto, false, 7));
  a.SetUp(this->TwoBottoms(), this->blob_top_vec_);
  Caffe::set_random_seed(2);
  CompactBilinearLayer<Dtype> b(this->Param(6, true, kAuto, false, 7));
  b.SetUp(this->TwoBottoms(), this->blob_top_vec_);
  CompactBilinearLayer<Dtype> c(this->Param(6, true, kAuto, false, 8));
  c.SetUp(this->TwoBottoms(), this->blob_top_vec_);
  int differ = 0;
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < a.blobs()[i]->count(); ++j) {
      EXPECT_EQ(a.blobs()[i]->cpu_data()[j], b.blobs()[i]->cpu_data()[j]);
      differ += a.blobs()[i]->cpu_data()[j] != c.blobs()[i]->cpu_data()[j];
    }
  }
  EXPECT_GT(differ, 0);
}

TYPED_TEST(CompactBilinearLayerTest, TestForwardDirect) {
  this->CheckForward(this->Param(7, true, kDirect), this->TwoBottoms());
  this->CheckForward(this->Param(7, true, kDirect), this->OneBottom());
  this->CheckForward(this->Param(5, false, kDirect), this->TwoBottoms());
  this->CheckForward(this->Param(5, false, kDirect), this->OneBottom());
}

TYPED_TEST(CompactBilinearLayerTest, TestForwardGram) {
  this->CheckForward(this->Param(7, true, kGram), this->TwoBottoms());
  this->CheckForward(this->Param(7, true, kGram), this->OneBottom());
}

TYPED_TEST(CompactBilinearLayerTest, TestForwardDimOne) {
  this->CheckForward(this->Param(1, true, kDirect), this->TwoBottoms());
  this->CheckForward(this->Param(1, true, kGram), this->TwoBottoms());
  this->CheckForward(this->Param(1, false, kDirect), this->OneBottom());
}

TYPED_TEST(CompactBilinearLayerTest, TestForwardNoSpatialAxes) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_bottom_a_->Reshape(vector<int>{4, 5});
  this->blob_bottom_b_->Reshape(vector<int>{4, 3});
  FillerParameter filler_param;
  GaussianFiller<Dtype> filler(filler_param);
  filler.Fill(this->blob_bottom_a_);
  filler.Fill(this->blob_bottom_b_);
  this->CheckForward(this->Param(11, true, kDirect), this->TwoBottoms());
  this->CheckForward(this->Param(11, true, kGram), this->TwoBottoms());
  this->CheckForward(this->Param(11, false, kDirect), this->TwoBottoms());
  EXPECT_EQ(this->blob_top_->shape(), (vector<int>{4, 11}));
}

TYPED_TEST(CompactBilinearLayerTest, TestFactorizationsAgree) {
  typedef typename TypeParam::Dtype Dtype;
  for (int two = 0; two < 2; ++two) {
    const vector<Blob<Dtype>*> bottom = two ? this->TwoBottoms()
                                            : this->OneBottom();
    CompactBilinearLayer<Dtype> direct(this->Param(13, true, kDirect, true));
    CompactBilinearLayer<Dtype> gram(this->Param(13, true, kGram, true));
    const typename TestFixture::Result a = this->Run(&direct, bottom);
    const typename TestFixture::Result b = this->Run(&gram, bottom);
    EXPECT_EQ(direct.factorization(), kDirect);
    EXPECT_EQ(gram.factorization(), kGram);
    TestFixture::ExpectResultsClose(a, b);
  }
}

TYPED_TEST(CompactBilinearLayerTest, TestChunkedAgreesWithWholeBatch) {
  typedef typename TypeParam::Dtype Dtype;
  // N = 3 in chunks of 2 and 1: permuted layouts, and no projection cache.
  const int hw = 4, d = 6;
  struct Case { bool sum_pool; CompactBilinearParameter::Factorization f;
                int per_image; };
  const Case cases[] = {{true, kDirect, 3 * d * hw + d},
                        {false, kDirect, 4 * d * hw},
                        {true, kGram, d * 3}};
  for (const Case& c : cases) {
    for (int two_learn = 0; two_learn < 4; ++two_learn) {
      const bool two = two_learn % 2, learn = two_learn / 2;
      const vector<Blob<Dtype>*> bottom = two ? this->TwoBottoms()
                                              : this->OneBottom();
      ChunkedCompactBilinearLayer<Dtype> chunked(
          this->Param(d, c.sum_pool, c.f, learn), 2 * c.per_image);
      CompactBilinearLayer<Dtype> whole(this->Param(d, c.sum_pool, c.f,
          learn));
      const typename TestFixture::Result a = this->Run(&chunked, bottom);
      const typename TestFixture::Result b = this->Run(&whole, bottom);
      EXPECT_EQ(chunked.chunk(), 2);
      EXPECT_EQ(whole.chunk(), 3);
      TestFixture::ExpectResultsClose(a, b);
    }
  }
}

TYPED_TEST(CompactBilinearLayerTest, TestSameBlobTwiceIsOneBottom) {
  typedef typename TypeParam::Dtype Dtype;
  for (int f = 0; f < 2; ++f) {
    const CompactBilinearParameter::Factorization fact = f ? kGram : kDirect;
    CompactBilinearLayer<Dtype> one(this->Param(5, true, fact, true));
    CompactBilinearLayer<Dtype> twice(this->Param(5, true, fact, true));
    const typename TestFixture::Result a = this->Run(&one, this->OneBottom());
    const typename TestFixture::Result b = this->Run(&twice,
        vector<Blob<Dtype>*>{this->blob_bottom_a_, this->blob_bottom_a_});
    // Both contributions land in the one blob's diff.
    TestFixture::ExpectClose(a.top, b.top, "top");
    TestFixture::ExpectClose(a.dx1, b.dx1, "dx1");
    TestFixture::ExpectClose(a.dx1, b.dx2, "dx2");
    TestFixture::ExpectClose(a.dw1, b.dw1, "dw1");
    TestFixture::ExpectClose(a.dw2, b.dw2, "dw2");
  }
}

TYPED_TEST(CompactBilinearLayerTest, TestFixedProjection) {
  typedef typename TypeParam::Dtype Dtype;
  for (int f = 0; f < 2; ++f) {
    const CompactBilinearParameter::Factorization fact = f ? kGram : kDirect;
    CompactBilinearLayer<Dtype> fixed(this->Param(5, true, fact, false));
    CompactBilinearLayer<Dtype> learned(this->Param(5, true, fact, true));
    const typename TestFixture::Result a = this->Run(&fixed,
        this->TwoBottoms());
    const typename TestFixture::Result b = this->Run(&learned,
        this->TwoBottoms());
    // Same bottom gradients; the fixed projection's diffs are left alone.
    TestFixture::ExpectClose(a.dx1, b.dx1, "dx1");
    TestFixture::ExpectClose(a.dx2, b.dx2, "dx2");
    for (int i = 0; i < a.dw1.size(); ++i) { EXPECT_EQ(a.dw1[i], 0); }
    for (int i = 0; i < a.dw2.size(); ++i) { EXPECT_EQ(a.dw2[i], 0); }
    EXPECT_FALSE(fixed.param_propagate_down(0));
    EXPECT_FALSE(fixed.param_propagate_down(1));
    EXPECT_TRUE(learned.param_propagate_down(0));
    // The solver reads lr_mult / decay_mult from the layer's parameter.
    ASSERT_EQ(fixed.layer_param().param_size(), 2);
    for (int i = 0; i < 2; ++i) {
      EXPECT_EQ(fixed.layer_param().param(i).lr_mult(), 0);
      EXPECT_EQ(fixed.layer_param().param(i).decay_mult(), 0);
    }
    EXPECT_EQ(learned.layer_param().param_size(), 0);
  }
}

TYPED_TEST(CompactBilinearLayerTest, TestAutoFollowsCostModel) {
  typedef typename TypeParam::Dtype Dtype;
  typedef CompactBilinearLayer<Dtype> CB;
  // Many positions, few channels: GRAM; few positions: DIRECT.
  EXPECT_LT(CB::GramCost(64, 3, 3, 16), CB::DirectCost(64, 3, 3, 16));
  EXPECT_GT(CB::GramCost(64, 3, 4, 1), CB::DirectCost(64, 3, 4, 1));
  this->blob_bottom_a_->Reshape(vector<int>{2, 3, 4, 4});
  CB many(this->Param(64, true, kAuto));
  many.SetUp(this->OneBottom(), this->blob_top_vec_);
  EXPECT_EQ(many.factorization(), kGram);
  CB dense(this->Param(64, false, kAuto));
  dense.SetUp(this->OneBottom(), this->blob_top_vec_);
  EXPECT_EQ(dense.factorization(), kDirect);
  this->blob_bottom_a_->Reshape(vector<int>{2, 3});
  CB few(this->Param(64, true, kAuto));
  few.SetUp(this->OneBottom(), this->blob_top_vec_);
  EXPECT_EQ(few.factorization(), kDirect);
}

// Gradients (bottoms and, with learn_projection, W1 and W2) by finite
// differences. d = 5: not a multiple of anything in particular.
TYPED_TEST(CompactBilinearLayerTest, TestGradientDirectTwoBottoms) {
  typedef typename TypeParam::Dtype Dtype;
  CompactBilinearLayer<Dtype> layer(this->Param(5, true, kDirect, true));
  this->CheckGradient(&layer, this->TwoBottoms());
}

TYPED_TEST(CompactBilinearLayerTest, TestGradientDirectOneBottom) {
  typedef typename TypeParam::Dtype Dtype;
  CompactBilinearLayer<Dtype> layer(this->Param(5, true, kDirect, true));
  this->CheckGradient(&layer, this->OneBottom());
}

TYPED_TEST(CompactBilinearLayerTest, TestGradientGramTwoBottoms) {
  typedef typename TypeParam::Dtype Dtype;
  CompactBilinearLayer<Dtype> layer(this->Param(5, true, kGram, true));
  this->CheckGradient(&layer, this->TwoBottoms());
}

TYPED_TEST(CompactBilinearLayerTest, TestGradientGramOneBottom) {
  typedef typename TypeParam::Dtype Dtype;
  CompactBilinearLayer<Dtype> layer(this->Param(5, true, kGram, true));
  this->CheckGradient(&layer, this->OneBottom());
}

// Only one of two bottoms propagates (GradientChecker's check_bottom).
TYPED_TEST(CompactBilinearLayerTest, TestGradientEachBottomAlone) {
  typedef typename TypeParam::Dtype Dtype;
  for (int f = 0; f < 2; ++f) {
    for (int b = 0; b < 2; ++b) {
      CompactBilinearLayer<Dtype> layer(this->Param(4, true,
          f ? kGram : kDirect, true));
      GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
      checker.CheckGradientExhaustive(&layer, this->TwoBottoms(),
          this->blob_top_vec_, b);
    }
  }
}

TYPED_TEST(CompactBilinearLayerTest, TestGradientNoSumPoolTwoBottoms) {
  typedef typename TypeParam::Dtype Dtype;
  CompactBilinearLayer<Dtype> layer(this->Param(3, false, kDirect, true));
  this->CheckGradient(&layer, this->TwoBottoms());
}

TYPED_TEST(CompactBilinearLayerTest, TestGradientNoSumPoolOneBottom) {
  typedef typename TypeParam::Dtype Dtype;
  CompactBilinearLayer<Dtype> layer(this->Param(3, false, kDirect, true));
  this->CheckGradient(&layer, this->OneBottom());
}

TYPED_TEST(CompactBilinearLayerTest, TestGradientDimOne) {
  typedef typename TypeParam::Dtype Dtype;
  CompactBilinearLayer<Dtype> direct(this->Param(1, true, kDirect, true));
  this->CheckGradient(&direct, this->TwoBottoms());
  CompactBilinearLayer<Dtype> gram(this->Param(1, true, kGram, true));
  this->CheckGradient(&gram, this->TwoBottoms());
}

TYPED_TEST(CompactBilinearLayerTest, TestGradientChunked) {
  typedef typename TypeParam::Dtype Dtype;
  ChunkedCompactBilinearLayer<Dtype> direct(
      this->Param(2, false, kDirect, true), 2 * 4 * 2 * 4);
  this->CheckGradient(&direct, this->TwoBottoms());
  EXPECT_EQ(direct.chunk(), 2);
  ChunkedCompactBilinearLayer<Dtype> gram(this->Param(2, true, kGram, true),
      2 * 2 * 3);
  this->CheckGradient(&gram, this->OneBottom());
  EXPECT_EQ(gram.chunk(), 2);
}

TYPED_TEST(CompactBilinearLayerTest, TestGradientSameBlobTwice) {
  typedef typename TypeParam::Dtype Dtype;
  CompactBilinearLayer<Dtype> layer(this->Param(4, true, kDirect, true));
  this->CheckGradient(&layer, vector<Blob<Dtype>*>{this->blob_bottom_a_,
      this->blob_bottom_a_});
}

// Bad input stops with a CHECK naming the layer and the shapes.
TYPED_TEST(CompactBilinearLayerTest, TestBadInputDies) {
  typedef typename TypeParam::Dtype Dtype;
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  this->blob_bottom_b_->Reshape(vector<int>{3, 4, 2, 3});
  CompactBilinearLayer<Dtype> spatial(this->Param(5, true, kAuto));
  EXPECT_DEATH(spatial.SetUp(this->TwoBottoms(), this->blob_top_vec_),
      "CompactBilinear layer cb: bottom\\[1\\] shape 3 4 2 3 \\(72\\) must "
      "have the same N and spatial shape as bottom\\[0\\] shape 3 3 2 2");
  this->blob_bottom_b_->Reshape(vector<int>{2, 4, 2, 2});
  CompactBilinearLayer<Dtype> batch(this->Param(5, true, kAuto));
  EXPECT_DEATH(batch.SetUp(this->TwoBottoms(), this->blob_top_vec_),
      "CompactBilinear layer cb: bottom\\[1\\] shape 2 4 2 2");
  CompactBilinearLayer<Dtype> channels(this->Param(5, true, kAuto));
  channels.SetUp(this->OneBottom(), this->blob_top_vec_);
  this->blob_bottom_a_->Reshape(vector<int>{3, 6, 2, 2});
  EXPECT_DEATH(channels.Reshape(this->OneBottom(), this->blob_top_vec_),
      "CompactBilinear layer cb: bottom\\[0\\] shape 3 6 2 2 \\(72\\) has 6 "
      "channels but the projection W1 has shape 5 3");
  CompactBilinearLayer<Dtype> gram(this->Param(5, false, kGram));
  EXPECT_DEATH(gram.SetUp(this->OneBottom(), this->blob_top_vec_),
      "CompactBilinear layer cb: factorization: GRAM needs sum_pool: true");
  LayerParameter no_d = this->Param(5, true, kAuto);
  no_d.mutable_compact_bilinear_param()->clear_num_output();
  CompactBilinearLayer<Dtype> missing(no_d);
  EXPECT_DEATH(missing.SetUp(this->OneBottom(), this->blob_top_vec_),
      "CompactBilinear layer cb: compact_bilinear_param.num_output");
  LayerParameter lr = this->Param(5, true, kAuto);
  lr.add_param()->set_lr_mult(1);
  CompactBilinearLayer<Dtype> learning(lr);
  EXPECT_DEATH(learning.SetUp(this->OneBottom(), this->blob_top_vec_),
      "CompactBilinear layer cb: param 0 has lr_mult 1 but the projection W1 "
      "is fixed");
}

#ifndef CPU_ONLY
// The same layer on the CPU and on the GPU (GPU builds, with a device).
template <typename Dtype>
class CompactBilinearLayerGPUAgreementTest : public GPUDeviceTest<Dtype> {};

TYPED_TEST_CASE(CompactBilinearLayerGPUAgreementTest, TestDtypes);

TYPED_TEST(CompactBilinearLayerGPUAgreementTest, TestCPUvsGPU) {
  typedef TypeParam Dtype;
  Blob<Dtype> x1(4, 6, 3, 3), x2(4, 5, 3, 3), top;
  FillerParameter filler_param;
  GaussianFiller<Dtype> filler(filler_param);
  filler.Fill(&x1);
  filler.Fill(&x2);
  const vector<Blob<Dtype>*> tops{&top};
  for (int sum_pool = 0; sum_pool < 2; ++sum_pool) {
    for (int f = 0; f < 2; ++f) {
      if (f == 1 && !sum_pool) { continue; }
      for (int two = 0; two < 2; ++two) {
        vector<Blob<Dtype>*> bottom(1, &x1);
        if (two) { bottom.push_back(&x2); }
        LayerParameter p;
        p.set_name("cb");
        p.mutable_compact_bilinear_param()->set_num_output(17);
        p.mutable_compact_bilinear_param()->set_sum_pool(sum_pool);
        p.mutable_compact_bilinear_param()->set_learn_projection(true);
        p.mutable_compact_bilinear_param()->set_factorization(f ? kGram
                                                                : kDirect);
        vector<vector<Dtype> > out[2];
        for (int gpu = 0; gpu < 2; ++gpu) {
          Caffe::set_mode(gpu ? Caffe::GPU : Caffe::CPU);
          ChunkedCompactBilinearLayer<Dtype> layer(p, 17 * 9 * 8);
          layer.SetUp(bottom, tops);
          for (int i = 0; i < 2; ++i) {
            caffe_set(layer.blobs()[i]->count(), Dtype(0),
                layer.blobs()[i]->mutable_cpu_diff());
          }
          layer.Forward(bottom, tops);
          caffe_copy(top.count(), top.cpu_data(), top.mutable_cpu_diff());
          layer.Backward(tops, vector<bool>(bottom.size(), true), bottom);
          const Blob<Dtype>* blobs[] = {&top, bottom[0],
              bottom[bottom.size() - 1], layer.blobs()[0].get(),
              layer.blobs()[1].get()};
          for (const Blob<Dtype>* b : blobs) {
            const Dtype* v = b == &top ? b->cpu_data() : b->cpu_diff();
            out[gpu].push_back(vector<Dtype>(v, v + b->count()));
          }
        }
        for (int j = 0; j < out[0].size(); ++j) {
          for (int i = 0; i < out[0][j].size(); ++i) {
            EXPECT_NEAR(out[0][j][i], out[1][j][i],
                1e-4 * (1 + std::fabs(out[0][j][i])));
          }
        }
      }
    }
  }
}
#endif

}  // namespace caffe
