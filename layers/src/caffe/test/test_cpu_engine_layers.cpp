// posenorm's CPU engine against Caffe's reference CPU code: the same layer
// parameters, weights and inputs through both, forward and backward, at
// several thread counts.  (Caffe's own convolution and pooling tests also
// run on our classes: test_caffe_tests_on_cpu_engine.cpp.)
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/blocked_conv_layer.hpp"
#include "caffe/layers/cpu_engine.hpp"
#include "caffe/layers/threaded_pooling_layer.hpp"
#include "caffe/layers/threaded_relu_layer.hpp"
#include "caffe/util/cpu_parallel.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/winograd.hpp"
#include "caffe/util/winograd_product.hpp"

#include "caffe/test/test_caffe_main.hpp"

extern "C" {
void openblas_set_num_threads(int) __attribute__((weak));
int openblas_get_num_threads(void) __attribute__((weak));
}

namespace caffe {

namespace {

// Thread counts to try (the engine follows OpenBLAS's count).
std::vector<int> thread_counts() {
  if (!openblas_set_num_threads) return std::vector<int>(1, 1);
  return std::vector<int>{1, 2, 3};
}

class ScopedThreads {
 public:
  explicit ScopedThreads(int n) : saved_(0) {
    if (openblas_get_num_threads) {
      saved_ = openblas_get_num_threads();
      openblas_set_num_threads(n);
    }
  }
  ~ScopedThreads() { if (saved_) openblas_set_num_threads(saved_); }
 private:
  int saved_;
};

template <typename Dtype>
void fill(Blob<Dtype>* blob, int seed) {
  Caffe::set_random_seed(seed);
  FillerParameter param;
  param.set_std(1);
  GaussianFiller<Dtype> filler(param);
  filler.Fill(blob);
}

// Gaussian values into the blob's diff (a top diff, a starting parameter
// diff).
template <typename Dtype>
void fill_diff(Blob<Dtype>* blob, int seed) {
  Blob<Dtype> values(blob->shape());
  fill(&values, seed);
  caffe_copy(blob->count(), values.cpu_data(), blob->mutable_cpu_diff());
}

// Forward, then backward from the same top diff, through Caffe's layer and
// ours on the same input: every top and the bottom diff equal bit for bit.
template <typename Dtype>
void expect_identical(Layer<Dtype>* ref, Layer<Dtype>* ours, Blob<Dtype>* x,
                      int ntops, int seed) {
  vector<shared_ptr<Blob<Dtype> > > owned;
  vector<Blob<Dtype>*> bottom(1, x), top_ref, top_ours;
  for (int t = 0; t < 2 * ntops; ++t) {
    owned.push_back(shared_ptr<Blob<Dtype> >(new Blob<Dtype>()));
    (t < ntops ? top_ref : top_ours).push_back(owned.back().get());
  }
  ref->SetUp(bottom, top_ref);
  ours->SetUp(bottom, top_ours);
  ref->Forward(bottom, top_ref);
  ours->Forward(bottom, top_ours);
  for (int t = 0; t < ntops; ++t) {
    for (int i = 0; i < top_ref[t]->count(); ++i) {
      ASSERT_EQ(top_ref[t]->cpu_data()[i], top_ours[t]->cpu_data()[i])
          << "top " << t << " at " << i;
    }
  }
  fill_diff(top_ref[0], seed);
  top_ours[0]->CopyFrom(*top_ref[0], true);
  ref->Backward(top_ref, vector<bool>(1, true), bottom);
  Blob<Dtype> dx_ref;
  dx_ref.CopyFrom(*x, true, true);
  ours->Backward(top_ours, vector<bool>(1, true), bottom);
  for (int i = 0; i < x->count(); ++i) {
    ASSERT_EQ(dx_ref.cpu_diff()[i], x->cpu_diff()[i]) << "bottom diff " << i;
  }
}

template <typename Dtype>
Dtype tolerance() { return sizeof(Dtype) == 4 ? 1e-4 : 1e-10; }

// |a - b| <= tol * (1 + max |b|), element by element.
template <typename Dtype>
void expect_near(const Dtype* a, const Dtype* b, int n, const char* what,
                 Dtype tol) {
  Dtype scale = 1;
  for (int i = 0; i < n; ++i) scale = std::max(scale, std::abs(b[i]));
  for (int i = 0; i < n; ++i) {
    ASSERT_NEAR(a[i], b[i], tol * scale) << what << " at " << i;
  }
}

struct ConvCase {
  int num, channels, height, width, output, kernel_h, kernel_w;
  int stride_h, stride_w, pad_h, pad_w, dilation, group;
  bool bias;
};

LayerParameter conv_param(const ConvCase& c) {
  LayerParameter p;
  p.set_name("conv");
  p.set_type("Convolution");
  ConvolutionParameter* cp = p.mutable_convolution_param();
  cp->set_num_output(c.output);
  cp->set_kernel_h(c.kernel_h);
  cp->set_kernel_w(c.kernel_w);
  cp->set_stride_h(c.stride_h);
  cp->set_stride_w(c.stride_w);
  cp->set_pad_h(c.pad_h);
  cp->set_pad_w(c.pad_w);
  cp->add_dilation(c.dilation);
  cp->set_group(c.group);
  cp->set_bias_term(c.bias);
  cp->mutable_weight_filler()->set_type("gaussian");
  cp->mutable_bias_filler()->set_type("gaussian");
  return p;
}

// Odd sizes, groups, stride, pad, dilation, 1x1, N > 1, and maps large
// enough to be cut into several bands.
const ConvCase kConvCases[] = {
  {2, 3, 9, 11, 4, 3, 3, 1, 1, 1, 1, 1, 1, true},
  {1, 4, 13, 7, 6, 3, 2, 2, 2, 1, 1, 1, 2, true},
  {3, 2, 10, 10, 3, 3, 3, 1, 1, 2, 2, 2, 1, false},
  {2, 6, 8, 9, 4, 1, 1, 1, 1, 0, 0, 1, 2, true},
  {1, 5, 31, 17, 3, 5, 5, 3, 3, 2, 2, 1, 1, true},
  {1, 3, 23, 29, 5, 3, 3, 1, 2, 0, 1, 1, 1, true},
  {2, 8, 70, 66, 16, 3, 3, 1, 1, 1, 1, 1, 1, true},
  {1, 16, 97, 40, 8, 3, 3, 1, 1, 1, 1, 1, 4, true},
  {4, 2, 5, 3, 2, 3, 3, 1, 1, 1, 1, 1, 1, true},
};

// 3x3, stride 1: what the engine runs as Winograd.  Pads 0, 1, 2 (the
// data gradient's pad 2 - pad is then 2, 1, 0), odd, rectangular and tiny
// maps (one partial tile), N > 1, maps of several tile rows and blocks.
const ConvCase kWinogradCases[] = {
  {2, 3, 9, 11, 4, 3, 3, 1, 1, 1, 1, 1, 1, true},
  {3, 5, 10, 10, 3, 3, 3, 1, 1, 0, 0, 1, 1, false},
  {1, 4, 13, 7, 6, 3, 3, 1, 1, 2, 2, 1, 1, true},
  {2, 8, 70, 66, 16, 3, 3, 1, 1, 1, 1, 1, 1, true},
  {1, 16, 37, 93, 20, 3, 3, 1, 1, 1, 0, 1, 1, true},
  {4, 2, 3, 5, 2, 3, 3, 1, 1, 1, 1, 1, 1, true},
  {1, 17, 65, 129, 7, 3, 3, 1, 1, 2, 1, 1, 1, true},
  // Enough channels for the weight gradient's thread grid: input channel
  // ranges (70), output channel ranges (100).
  {2, 70, 11, 9, 36, 3, 3, 1, 1, 1, 1, 1, 1, true},
  {1, 40, 9, 14, 100, 3, 3, 1, 1, 0, 2, 1, 1, false},
};

// Runs case c through Caffe's layer and ours (both from the same weights,
// parameter diffs, input and top diff) and compares every output.
template <typename Dtype>
void expect_conv_near(const ConvCase& c, int propagate, Dtype tol,
                      int expect_tile) {
  const LayerParameter param = conv_param(c);
  Blob<Dtype> x(c.num, c.channels, c.height, c.width);
  fill(&x, 3);
  Blob<Dtype> y_ref, y_ours;
  vector<Blob<Dtype>*> bottom(1, &x), top_ref(1, &y_ref), top_ours(1, &y_ours);
  ConvolutionLayer<Dtype> ref(param);
  BlockedConvolutionLayer<Dtype> ours(param);
  ref.SetUp(bottom, top_ref);
  ours.SetUp(bottom, top_ours);
  if (expect_tile >= 0) {
    ASSERT_EQ(expect_tile, ours.winograd_tile());
  }
  for (int b = 0; b < ref.blobs().size(); ++b) {
    fill(ref.blobs()[b].get(), 10 + b);
    ours.blobs()[b]->CopyFrom(*ref.blobs()[b], false);
    // Parameter diffs accumulate: start both from the same values.
    fill_diff(ref.blobs()[b].get(), 20 + b);
    ours.blobs()[b]->CopyFrom(*ref.blobs()[b], true);
  }
  ref.Forward(bottom, top_ref);
  ours.Forward(bottom, top_ours);
  ASSERT_EQ(y_ref.shape_string(), y_ours.shape_string());
  expect_near(y_ours.cpu_data(), y_ref.cpu_data(), y_ref.count(), "top", tol);
  fill_diff(&y_ref, 30);
  y_ours.CopyFrom(y_ref, true);
  const vector<bool> down(1, propagate == 1);
  caffe_set(x.count(), Dtype(0), x.mutable_cpu_diff());
  ref.Backward(top_ref, down, bottom);
  Blob<Dtype> dx_ref;
  dx_ref.CopyFrom(x, true, true);
  caffe_set(x.count(), Dtype(7), x.mutable_cpu_diff());  // overwritten
  ours.Backward(top_ours, down, bottom);
  if (propagate) {
    expect_near(x.cpu_diff(), dx_ref.cpu_diff(), x.count(), "bottom diff",
                tol);
  }
  for (int b = 0; b < ref.blobs().size(); ++b) {
    expect_near(ours.blobs()[b]->cpu_diff(), ref.blobs()[b]->cpu_diff(),
                ref.blobs()[b]->count(), b ? "bias diff" : "weight diff", tol);
  }
}

// POSENORM_WINOGRAD for the layers created while alive.
class ScopedWinograd {
 public:
  explicit ScopedWinograd(const char* value) {
    setenv("POSENORM_WINOGRAD", value, 1);
  }
  ~ScopedWinograd() { unsetenv("POSENORM_WINOGRAD"); }
};

}  // namespace

template <typename Dtype>
class CpuEngineTest : public ::testing::Test {
 protected:
  CpuEngineTest() { Caffe::set_mode(Caffe::CPU); }
};

TYPED_TEST_CASE(CpuEngineTest, TestDtypes);

TYPED_TEST(CpuEngineTest, ConvolutionMatchesReference) {
  typedef TypeParam Dtype;
  ScopedWinograd banded("0");  // Winograd: WinogradMatchesReference
  // Default bands (tiny maps: one per image), and bands of a few columns.
  for (int min_cols : {512, 6}) {
  BlockedConvolutionMinBandColumns(min_cols);
  for (const ConvCase& c : kConvCases) {
    for (int threads : thread_counts()) {
      for (int propagate = 0; propagate < 2; ++propagate) {
        SCOPED_TRACE(::testing::Message() << "case " << (&c - kConvCases)
                     << ", threads " << threads << ", propagate_down "
                     << propagate << ", min band columns " << min_cols);
        ScopedThreads scoped(threads);
        expect_conv_near<Dtype>(c, propagate, tolerance<Dtype>(), -1);
      }
    }
  }
  }
  BlockedConvolutionMinBandColumns(512);
}

// Winograd F(4x4) and F(2x2), forced on every 3x3 stride-1 case, against
// Caffe's direct convolution: forward, data and weight gradients (the
// weight and bias diffs start from Gaussian values, so a pass that
// overwrites them instead of adding fails); then Winograd on the weight
// gradient alone and on all but it.  Tolerance: Winograd's transforms
// scale values by up to ~10 (F(4x4)) before the sums, so float results
// carry a few more rounding errors than the direct path's (measured on
// VGG-16: docs/bench_conv.md); 1e-4 of the largest value still catches any
// wrong tile, pad or coordinate.
TYPED_TEST(CpuEngineTest, WinogradMatchesReference) {
  typedef TypeParam Dtype;
  for (const char* tile : {"4", "2", "0,4", "2,0"}) {
    ScopedWinograd winograd(tile);
    // Blocks sized for the cache (one per image here), and of 16 tiles.
    for (int block : {0, 16}) {
      if (block && std::strchr(tile, ',')) continue;
      cpu::WinogradMaxBlockTiles(block);
      for (const ConvCase& c : kWinogradCases) {
        for (int threads : thread_counts()) {
          for (int propagate = 0; propagate < 2; ++propagate) {
            SCOPED_TRACE(::testing::Message() << "F(" << tile << "x" << tile
                         << ") case " << (&c - kWinogradCases) << ", threads "
                         << threads << ", propagate_down " << propagate
                         << ", block tiles " << block);
            ScopedThreads scoped(threads);
            expect_conv_near<Dtype>(c, propagate, tolerance<Dtype>(),
                                    std::atoi(tile));
          }
        }
      }
    }
  }
  cpu::WinogradMaxBlockTiles(0);
}

// The products' code for each instruction set this CPU has (the runs above
// use only the best): baseline x86-64, AVX2, AVX-512, each with its own
// register block, against Caffe's direct convolution.
TYPED_TEST(CpuEngineTest, WinogradProductsOnEveryTarget) {
  typedef TypeParam Dtype;
  int targets = 0;
  for (int target = 0; target < 3; ++target) {
    if (!cpu::WinogradProductTarget(target)) continue;
    ++targets;
    for (const char* tile : {"4", "2"}) {
      ScopedWinograd winograd(tile);
      for (const ConvCase& c : kWinogradCases) {
        for (int propagate = 0; propagate < 2; ++propagate) {
          SCOPED_TRACE(::testing::Message() << "target " << target << ", F("
                       << tile << "x" << tile << ") case "
                       << (&c - kWinogradCases) << ", propagate_down "
                       << propagate);
          expect_conv_near<Dtype>(c, propagate, tolerance<Dtype>(),
                                  std::atoi(tile));
        }
      }
    }
  }
  cpu::WinogradProductTarget(-1);
  EXPECT_GE(targets, 1);  // baseline x86-64 at least
}

// The engine picks Winograd for 3x3 stride-1 undilated ungrouped layers
// with enough input channels (the weight gradient: and enough outputs);
// POSENORM_WINOGRAD=0 turns it off.  The
// transformed kernel follows the weights (it is cached between passes).
TYPED_TEST(CpuEngineTest, WinogradPicksAndFollowsWeights) {
  typedef TypeParam Dtype;
  const ConvCase wide = {1, 64, 12, 12, 8, 3, 3, 1, 1, 1, 1, 1, 1, true};
  ConvCase strided = wide, dilated = wide, grouped = wide, narrow = wide;
  strided.stride_w = 2;
  dilated.dilation = 2;
  grouped.group = 2;
  narrow.channels = 3;
  Blob<Dtype> x(1, 64, 12, 12), y;
  vector<Blob<Dtype>*> bottom(1, &x), top(1, &y);
  const ConvCase* cases[] = {&wide, &strided, &dilated, &grouped, &narrow};
  for (int i = 0; i < 5; ++i) {
    x.Reshape(cases[i]->num, cases[i]->channels, cases[i]->height,
              cases[i]->width);
    BlockedConvolutionLayer<Dtype> layer(conv_param(*cases[i]));
    layer.SetUp(bottom, top);
    EXPECT_EQ(i == 0 ? 4 : 0, layer.winograd_tile()) << "case " << i;
    // The weight gradient: too few outputs (12 x 12) to pay.
    EXPECT_EQ(0, layer.winograd_weight_tile()) << "case " << i;
  }
  {
    ConvCase big = wide;  // 2 x 32 x 32 outputs per channel pair: it pays
    big.num = 2;
    big.height = big.width = 32;
    x.Reshape(2, 64, 32, 32);
    BlockedConvolutionLayer<Dtype> layer(conv_param(big));
    layer.SetUp(bottom, top);
    EXPECT_EQ(4, layer.winograd_weight_tile());
  }
  // POSENORM_WINOGRAD: T, or T,W (forward and data gradient, weight
  // gradient).
  const char* settings[] = {"0", "2", "4,0", "0,2", "auto,0", "2,auto"};
  const int tiles[][2] = {{0, 0}, {2, 2}, {4, 0}, {0, 2}, {4, 0}, {2, 0}};
  for (int i = 0; i < 6; ++i) {
    ScopedWinograd setting(settings[i]);
    x.Reshape(1, 64, 12, 12);
    BlockedConvolutionLayer<Dtype> layer(conv_param(wide));
    layer.SetUp(bottom, top);
    EXPECT_EQ(tiles[i][0], layer.winograd_tile()) << settings[i];
    EXPECT_EQ(tiles[i][1], layer.winograd_weight_tile()) << settings[i];
  }
  // New weights between passes: the second pass must use them.
  const LayerParameter param = conv_param(wide);
  x.Reshape(1, 64, 12, 12);
  fill(&x, 4);
  Blob<Dtype> y_ref;
  vector<Blob<Dtype>*> top_ref(1, &y_ref);
  ConvolutionLayer<Dtype> ref(param);
  BlockedConvolutionLayer<Dtype> ours(param);
  ref.SetUp(bottom, top_ref);
  ours.SetUp(bottom, top);
  for (int pass = 0; pass < 2; ++pass) {
    for (int b = 0; b < ref.blobs().size(); ++b) {
      fill(ref.blobs()[b].get(), 40 + 2 * pass + b);
      ours.blobs()[b]->CopyFrom(*ref.blobs()[b], false);
    }
    ref.Forward(bottom, top_ref);
    ours.Forward(bottom, top);
    expect_near(y.cpu_data(), y_ref.cpu_data(), y.count(), "top",
                tolerance<Dtype>());
  }
}

TYPED_TEST(CpuEngineTest, PoolingMatchesReferenceExactly) {
  typedef TypeParam Dtype;
  const PoolingParameter_PoolMethod methods[] = {
      PoolingParameter_PoolMethod_MAX, PoolingParameter_PoolMethod_AVE};
  // kernel, stride, pad, global, two tops (the argmax as a blob)
  const int cases[][5] = {{2, 2, 0, 0, 0}, {3, 2, 1, 0, 0}, {3, 2, 0, 0, 1},
                          {5, 3, 2, 0, 0}, {0, 0, 0, 1, 0}};
  for (PoolingParameter_PoolMethod method : methods) {
    for (const int* c : cases) {
      for (int threads : thread_counts()) {
        if (method == PoolingParameter_PoolMethod_AVE && c[4]) continue;
        SCOPED_TRACE(::testing::Message() << "method " << method << ", kernel "
                     << c[0] << ", threads " << threads);
        ScopedThreads scoped(threads);
        LayerParameter param;
        PoolingParameter* pp = param.mutable_pooling_param();
        pp->set_pool(method);
        if (c[3]) {
          pp->set_global_pooling(true);
        } else {
          pp->set_kernel_size(c[0]);
          pp->set_stride(c[1]);
          pp->set_pad(c[2]);
        }
        // Small planes, and planes wide enough for the vector loop of
        // VGG's 2x2 pools with an odd edge and a scalar tail.
        Blob<Dtype> x(3, 5, 17, 12), wide(2, 3, 9, 75);
        for (Blob<Dtype>* b : {&x, &wide}) {
          fill(b, 5);
          // Ties: max pooling must pick the same (first) index (every 3rd
          // value of `wide`: rows 75 apart).
          const int step = b == &x ? 7 : 3;
          for (int i = 0; i < b->count(); i += step) {
            b->mutable_cpu_data()[i] = 1;
          }
          PoolingLayer<Dtype> ref(param);
          ThreadedPoolingLayer<Dtype> ours(param);
          expect_identical<Dtype>(&ref, &ours, b, c[4] ? 2 : 1, 6);
        }
      }
    }
  }
}

TYPED_TEST(CpuEngineTest, ReLUMatchesReferenceExactly) {
  typedef TypeParam Dtype;
  for (float slope : {0.f, 0.1f}) {
    for (int threads : thread_counts()) {
      ScopedThreads scoped(threads);
      LayerParameter param;
      param.mutable_relu_param()->set_negative_slope(slope);
      Blob<Dtype> x(2, 3, 150, 151);  // > 2 chunks of 32K
      fill(&x, 8);
      ReLULayer<Dtype> ref(param);
      ThreadedReLULayer<Dtype> ours(param);
      expect_identical<Dtype>(&ref, &ours, &x, 1, 9);
    }
  }
}

// The factory gives our classes for the CAFFE engine, Caffe's with
// POSENORM_CPU_ENGINE=reference.
TYPED_TEST(CpuEngineTest, FactoryPicksTheEngine) {
  typedef TypeParam Dtype;
  LayerParameter param;
  param.set_type("Convolution");
  param.mutable_convolution_param()->set_num_output(2);
  param.mutable_convolution_param()->add_kernel_size(3);
  unsetenv("POSENORM_CPU_ENGINE");
  shared_ptr<Layer<Dtype> > fast = LayerRegistry<Dtype>::CreateLayer(param);
  EXPECT_TRUE(dynamic_cast<BlockedConvolutionLayer<Dtype>*>(fast.get()));
  setenv("POSENORM_CPU_ENGINE", "reference", 1);
  shared_ptr<Layer<Dtype> > ref = LayerRegistry<Dtype>::CreateLayer(param);
  param.set_type("ReLU");
  shared_ptr<Layer<Dtype> > relu = LayerRegistry<Dtype>::CreateLayer(param);
  unsetenv("POSENORM_CPU_ENGINE");
  EXPECT_FALSE(dynamic_cast<BlockedConvolutionLayer<Dtype>*>(ref.get()));
  EXPECT_TRUE(dynamic_cast<ConvolutionLayer<Dtype>*>(ref.get()));
  EXPECT_FALSE(dynamic_cast<ThreadedReLULayer<Dtype>*>(relu.get()));
  EXPECT_STREQ("Convolution", fast->type());
}

}  // namespace caffe
