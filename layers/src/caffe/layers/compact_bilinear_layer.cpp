#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "caffe/layers/compact_bilinear_layer.hpp"
#include "caffe/layers/compact_bilinear_layer_impl.hpp"
#include "caffe/util/cpu_parallel.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

namespace {

// Elementwise loops below this many elements stay on one thread.
const long kMinPerThread = 1L << 15;

CAFFE_CPU_CLONES void MulRange(const float* a, const float* b, float* y,
                              long n) {
  for (long i = 0; i < n; ++i) y[i] = a[i] * b[i];
}
CAFFE_CPU_CLONES void MulRange(const double* a, const double* b, double* y,
                              long n) {
  for (long i = 0; i < n; ++i) y[i] = a[i] * b[i];
}
CAFFE_CPU_CLONES void ScaleRange(float g, const float* in, float* out,
                                long n) {
  for (long i = 0; i < n; ++i) out[i] = g * in[i];
}
CAFFE_CPU_CLONES void ScaleRange(double g, const double* in, double* out,
                                long n) {
  for (long i = 0; i < n; ++i) out[i] = g * in[i];
}

/// The CPU primitives of the shared driver (compact_bilinear_layer_impl.hpp).
template <typename Dtype>
struct CompactBilinearCpuOps {
  static const Dtype* data(const Blob<Dtype>& b) { return b.cpu_data(); }
  static const Dtype* diff(const Blob<Dtype>& b) { return b.cpu_diff(); }
  static Dtype* mutable_data(Blob<Dtype>* b) { return b->mutable_cpu_data(); }
  static Dtype* mutable_diff(Blob<Dtype>* b) { return b->mutable_cpu_diff(); }
  static void gemm(const CBLAS_TRANSPOSE ta, const CBLAS_TRANSPOSE tb,
      int m, int n, int k, Dtype alpha, const Dtype* a, const Dtype* b,
      Dtype beta, Dtype* c) {
    caffe_cpu_gemm<Dtype>(ta, tb, m, n, k, alpha, a, b, beta, c);
  }
  static void mul(int n, const Dtype* a, const Dtype* b, Dtype* y) {
    cpu::parallel_for(n, [&](long i0, long i1) {
      MulRange(a + i0, b + i0, y + i0, i1 - i0);
    }, kMinPerThread);
  }
  // Row by row; the GPU kernel maps every element with cb_swap01_index.
  static void swap01(int A, int B, int S, const Dtype* in, Dtype* out) {
    if (S == 1) {
      cpu::parallel_for(A, [&](long a0, long a1) {
        for (long a = a0; a < a1; ++a) {
          for (int b = 0; b < B; ++b) { out[b * A + a] = in[a * B + b]; }
        }
      }, std::max<long>(1, kMinPerThread / std::max(1, B)));
      return;
    }
    cpu::parallel_for(static_cast<long>(A) * B, [&](long r0, long r1) {
      for (long r = r0; r < r1; ++r) {
        const long a = r / B, b = r % B;
        std::copy(in + r * S, in + (r + 1) * S, out + (b * A + a) * S);
      }
    }, std::max<long>(1, kMinPerThread / S));
  }
  static void scale_rows(int rows, int len, const Dtype* g, const Dtype* in,
      Dtype* out) {
    cpu::parallel_for(rows, [&](long r0, long r1) {
      for (long r = r0; r < r1; ++r) {
        ScaleRange(g[r], in + r * len, out + r * len, len);
      }
    }, std::max<long>(1, kMinPerThread / std::max(1, len)));
  }
  static void row_dot(int A, int B, int L, const Dtype* x, const Dtype* w,
      Dtype* out) {
    cpu::SingleThreadedBlas single;  // each of our threads calls the BLAS
    cpu::parallel_for(static_cast<long>(A) * B, [&](long r0, long r1) {
      for (long r = r0; r < r1; ++r) {
        out[r] = caffe_cpu_dot<Dtype>(L, x + r * L, w + (r / B) * L);
      }
    }, std::max<long>(1, kMinPerThread / std::max(1, L)));
  }
};

/// Images per chunk: as many as fit in the scratch budget, at least one.
int ChunkSize(int64_t limit, int64_t per_image, int num) {
  const int64_t m = per_image > 0 ? limit / per_image : num;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num, m)));
}

template <typename Dtype>
void Reshape1D(Blob<Dtype>* b, int64_t count) {
  b->Reshape(vector<int>(1, static_cast<int>(count)));
}

}  // namespace

template <typename Dtype>
double CompactBilinearLayer<Dtype>::DirectCost(int d, int c1, int c2,
    int spatial) {
  const double dd = d, hw = spatial;
  return dd * hw * (static_cast<double>(c1) + c2) + dd * hw;
}

template <typename Dtype>
double CompactBilinearLayer<Dtype>::GramCost(int d, int c1, int c2,
    int spatial) {
  const double cc = static_cast<double>(c1) * c2;
  return cc * spatial + d * cc + static_cast<double>(d) * c1;
}

template <typename Dtype>
void CompactBilinearLayer<Dtype>::LayerSetUp(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const string& name = this->layer_param_.name();
  const CompactBilinearParameter& param =
      this->layer_param_.compact_bilinear_param();
  CHECK(param.has_num_output() && param.num_output() >= 1)
      << "CompactBilinear layer " << name
      << ": compact_bilinear_param.num_output (d >= 1) is required";
  num_output_ = param.num_output();
  sum_pool_ = param.sum_pool();
  learn_projection_ = param.learn_projection();
  CHECK(sum_pool_ ||
        param.factorization() != CompactBilinearParameter_Factorization_GRAM)
      << "CompactBilinear layer " << name << ": factorization: GRAM needs "
      << "sum_pool: true (it sums over positions before projecting)";
  for (int i = 0; i < bottom.size(); ++i) {
    CHECK_GE(bottom[i]->num_axes(), 2) << "CompactBilinear layer " << name
        << ": bottom[" << i << "] must be N x C (x spatial axes), got shape "
        << bottom[i]->shape_string();
  }
  const int c1 = bottom[0]->shape(1);
  const int c2 = bottom[bottom.size() - 1]->shape(1);
  if (this->blobs_.size() > 0) {
    LOG(INFO) << "CompactBilinear layer " << name
        << ": skipping projection initialization (parameters given)";
    CHECK_EQ(this->blobs_.size(), 2) << "CompactBilinear layer " << name
        << ": expected 2 parameter blobs (W1, W2)";
  } else {
    // W1 (d x C1) then W2 (d x C2), +-1 from bit 31 of std::mt19937(seed):
    // the same matrices on every platform, independent of Caffe's RNG.
    this->blobs_.resize(2);
    this->blobs_[0].reset(new Blob<Dtype>(vector<int>{num_output_, c1}));
    this->blobs_[1].reset(new Blob<Dtype>(vector<int>{num_output_, c2}));
    std::mt19937 gen(param.seed());
    for (int i = 0; i < 2; ++i) {
      Dtype* w = this->blobs_[i]->mutable_cpu_data();
      for (int j = 0; j < this->blobs_[i]->count(); ++j) {
        w[j] = (gen() & 0x80000000u) ? Dtype(1) : Dtype(-1);
      }
    }
  }
  this->param_propagate_down_.assign(2, learn_projection_);
  if (!learn_projection_) {
    // Net::AppendParam reads lr_mult / decay_mult from this layer's own
    // LayerParameter after SetUp: a fixed projection gets lr_mult 0 (so no
    // solver moves it) and decay_mult 0 (so no solver computes its decay).
    while (this->layer_param_.param_size() < 2) {
      this->layer_param_.add_param();
    }
    for (int i = 0; i < 2; ++i) {
      ParamSpec* spec = this->layer_param_.mutable_param(i);
      CHECK(!spec->has_lr_mult() || spec->lr_mult() == 0)
          << "CompactBilinear layer " << name << ": param " << i
          << " has lr_mult " << spec->lr_mult() << " but the projection W"
          << i + 1 << " is fixed; set compact_bilinear_param { "
          << "learn_projection: true } to learn it, or lr_mult: 0";
      spec->set_lr_mult(0);
      if (!spec->has_decay_mult()) { spec->set_decay_mult(0); }
    }
  }
  chunk_ = 1;
  projections_cached_ = false;
  factorization_ = CompactBilinearParameter_Factorization_AUTO;
}

template <typename Dtype>
void CompactBilinearLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const string& name = this->layer_param_.name();
  const Blob<Dtype>& b1 = *bottom[0];
  CHECK_GE(b1.num_axes(), 2) << "CompactBilinear layer " << name
      << ": bottom[0] must be N x C (x spatial axes), got shape "
      << b1.shape_string();
  num_ = b1.shape(0);
  channels1_ = b1.shape(1);
  spatial_ = b1.count(2);
  shared_bottom_ = bottom.size() == 1 || bottom[0] == bottom[1];
  channels2_ = channels1_;
  if (bottom.size() > 1) {
    const Blob<Dtype>& b2 = *bottom[1];
    bool same = b2.num_axes() == b1.num_axes() && b2.shape(0) == num_;
    for (int i = 2; same && i < b1.num_axes(); ++i) {
      same = b2.shape(i) == b1.shape(i);
    }
    CHECK(same) << "CompactBilinear layer " << name << ": bottom[1] shape "
        << b2.shape_string() << " must have the same N and spatial shape as "
        << "bottom[0] shape " << b1.shape_string();
    channels2_ = b2.shape(1);
  }
  for (int i = 0; i < 2; ++i) {
    const Blob<Dtype>& w = *this->blobs_[i];
    const int c = i == 0 ? channels1_ : channels2_;
    CHECK(w.num_axes() == 2 && w.shape(0) == num_output_ && w.shape(1) == c)
        << "CompactBilinear layer " << name << ": bottom[" << i << "] shape "
        << bottom[std::min<int>(i, bottom.size() - 1)]->shape_string()
        << " has " << c << " channels but the projection W" << i + 1
        << " has shape " << w.shape_string() << " (expected " << num_output_
        << " x " << c << ")";
  }
  const int d = num_output_, c1 = channels1_, c2 = channels2_;
  const int hw = spatial_;
  vector<int> top_shape{num_, d};
  if (sum_pool_) {
    top_shape.push_back(1);
    top_shape.push_back(1);
  } else {
    for (int i = 2; i < b1.num_axes(); ++i) {
      top_shape.push_back(b1.shape(i));
    }
  }
  top[0]->Reshape(top_shape);

  // Factorization by the cost model (forward multiply-adds per image).
  CompactBilinearParameter::Factorization f =
      this->layer_param_.compact_bilinear_param().factorization();
  if (f == CompactBilinearParameter_Factorization_AUTO) {
    f = (sum_pool_ && GramCost(d, c1, c2, hw) < DirectCost(d, c1, c2, hw))
        ? CompactBilinearParameter_Factorization_GRAM
        : CompactBilinearParameter_Factorization_DIRECT;
  }
  LOG_IF(INFO, f != factorization_) << "CompactBilinear layer " << name
      << ": " << CompactBilinearParameter_Factorization_Name(f) << " for "
      << b1.shape_string() << " (multiply-adds per image: DIRECT "
      << DirectCost(d, c1, c2, hw) << ", GRAM " << GramCost(d, c1, c2, hw)
      << ")";
  factorization_ = f;

  // Scratch for chunks of images, as many as fit in scratch_limit_ elements.
  if (f == CompactBilinearParameter_Factorization_GRAM) {
    chunk_ = ChunkSize(std::min(scratch_limit_, kGramChunkLimit),
        int64_t(d) * c1, num_);
    Reshape1D(&gram_, int64_t(learn_projection_ ? num_ : chunk_) * c1 * c2);
    Reshape1D(&r_, int64_t(d) * chunk_ * c1);
    Reshape1D(&scaled_w_, int64_t(d) * std::max(c1, c2));
    Reshape1D(&dgram_, int64_t(c1) * c2);
    Reshape1D(&g_, int64_t(d) * chunk_);
  } else {
    const int64_t g_per_image = int64_t(d) * (sum_pool_ ? 1 : hw);
    chunk_ = ChunkSize(scratch_limit_, 3 * int64_t(d) * hw + g_per_image,
        num_);
    const int64_t cols = int64_t(chunk_) * hw;
    Reshape1D(&p1_, d * cols);
    Reshape1D(&p2_, d * cols);
    Reshape1D(&q_, d * cols);
    if (chunk_ > 1) {
      Reshape1D(&xp1_, c1 * cols);
      if (!shared_bottom_) { Reshape1D(&xp2_, c2 * cols); }
      Reshape1D(&dxp_, std::max(c1, c2) * cols);
      Reshape1D(&g_, g_per_image * chunk_);
    }
  }
  projections_cached_ = false;  // until the next Forward
}

template <typename Dtype>
void CompactBilinearLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  ForwardImpl<CompactBilinearCpuOps<Dtype> >(bottom, top);
}

template <typename Dtype>
void CompactBilinearLayer<Dtype>::Backward_cpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  BackwardImpl<CompactBilinearCpuOps<Dtype> >(top, propagate_down, bottom);
}

#ifdef CPU_ONLY
STUB_GPU(CompactBilinearLayer);
#endif

INSTANTIATE_CLASS(CompactBilinearLayer);
REGISTER_LAYER_CLASS(CompactBilinear);

}  // namespace caffe
