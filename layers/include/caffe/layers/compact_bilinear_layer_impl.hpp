#ifndef CAFFE_COMPACT_BILINEAR_LAYER_IMPL_HPP_
#define CAFFE_COMPACT_BILINEAR_LAYER_IMPL_HPP_

// The CompactBilinear forward and backward passes, written once for both
// devices. Included only by compact_bilinear_layer.cpp (Ops = the CPU
// primitives) and compact_bilinear_layer.cu (Ops = the GPU primitives), so the
// GPU path runs exactly the algorithm that the CPU tests check. Ops provides
//   data(blob), diff(blob), mutable_data(&blob), mutable_diff(&blob),
//   gemm, mul (Caffe's BLAS wrappers of that device), and
//   swap01(A, B, S, in, out):        (A, B, S) -> (B, A, S) permutation,
//   scale_rows(rows, L, g, in, out): out[r][j] = g[r] * in[r][j],
//   row_dot(A, B, L, x, w, out):     out[a][b] = sum_l x[a][b][l] w[a][l].

#include <algorithm>
#include <cmath>
#include <vector>

#include "caffe/layers/compact_bilinear_layer.hpp"

namespace caffe {

template <typename Dtype>
template <typename Ops>
void CompactBilinearLayer<Dtype>::ForwardImpl(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  if (factorization_ == CompactBilinearParameter_Factorization_GRAM) {
    GramForward<Ops>(bottom, top);
  } else {
    DirectForward<Ops>(bottom, top);
  }
}

template <typename Dtype>
template <typename Ops>
void CompactBilinearLayer<Dtype>::BackwardImpl(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  const bool two = bottom.size() > 1;
  // With one bottom (or the same blob twice) both contributions go to dX1.
  const bool need_dx1 = propagate_down[0] ||
      (shared_bottom_ && two && propagate_down[1]);
  const bool need_dx2 = !shared_bottom_ && two && propagate_down[1];
  // The Net sets param_propagate_down from the prototxt's lr_mult; the
  // projection is only differentiated when it is meant to be learned.
  const bool need_dw1 = learn_projection_ && this->param_propagate_down(0);
  const bool need_dw2 = learn_projection_ && this->param_propagate_down(1);
  if (!(need_dx1 || need_dx2 || need_dw1 || need_dw2)) { return; }
  if (factorization_ == CompactBilinearParameter_Factorization_GRAM) {
    GramBackward<Ops>(top, need_dx1, need_dx2, need_dw1, need_dw2, bottom);
  } else {
    DirectBackward<Ops>(top, need_dx1, need_dx2, need_dw1, need_dw2, bottom);
  }
}

// ---------------------------------------------------------------- DIRECT

/// q = dE/dP_i = g .* P_j over rows (k, n) of HW positions, with g of shape
/// d x m (sum_pool: broadcast over the positions) or d x m x HW.
template <typename Ops, typename Dtype>
inline void CompactBilinearGradTimes(bool sum_pool, int rows, int hw,
    const Dtype* g, const Dtype* p, Dtype* q) {
  if (sum_pool) {
    Ops::scale_rows(rows, hw, g, p, q);
  } else {
    Ops::mul(rows * hw, g, p, q);
  }
}

/// A chunk's bottom gradient, C x (m HW), into the bottom's diff at image n0
/// (m x C x HW). For m == 1 it was written in place.
template <typename Ops, typename Dtype>
inline void CompactBilinearUnchunk(int c, int m, int hw, const Dtype* dxp,
    Blob<Dtype>* bottom, int n0) {
  if (m > 1) {
    Ops::swap01(c, m, hw, dxp, Ops::mutable_diff(bottom) + n0 * c * hw);
  }
}

template <typename Dtype>
template <typename Ops>
void CompactBilinearLayer<Dtype>::DirectProject(
    const vector<Blob<Dtype>*>& bottom, int n0, int m, bool project,
    const Dtype** xp1, const Dtype** xp2) {
  const int d = num_output_, c1 = channels1_, c2 = channels2_, hw = spatial_;
  const Blob<Dtype>& b2 = *bottom[shared_bottom_ ? 0 : 1];
  const Dtype* x1 = Ops::data(*bottom[0]) + n0 * c1 * hw;
  const Dtype* x2 = Ops::data(b2) + n0 * c2 * hw;
  // (m, C, HW) -> (C, m, HW), so that one GEMM projects the whole chunk. For
  // m == 1 the permutation is the identity.
  if (m == 1) {
    *xp1 = x1;
    *xp2 = x2;
  } else {
    if (project) { Ops::swap01(m, c1, hw, x1, Ops::mutable_data(&xp1_)); }
    *xp1 = Ops::data(xp1_);
    if (shared_bottom_) {
      *xp2 = *xp1;
    } else {
      if (project) { Ops::swap01(m, c2, hw, x2, Ops::mutable_data(&xp2_)); }
      *xp2 = Ops::data(xp2_);
    }
  }
  if (!project) { return; }
  // P_i = d^(-1/4) W_i X_i, so that P1 .* P2 carries the 1 / sqrt(d).
  const Dtype scale = std::pow(Dtype(d), Dtype(-0.25));
  const int cols = m * hw;
  Ops::gemm(CblasNoTrans, CblasNoTrans, d, cols, c1, scale,
      Ops::data(*this->blobs_[0]), *xp1, Dtype(0), Ops::mutable_data(&p1_));
  Ops::gemm(CblasNoTrans, CblasNoTrans, d, cols, c2, scale,
      Ops::data(*this->blobs_[1]), *xp2, Dtype(0), Ops::mutable_data(&p2_));
}

template <typename Dtype>
template <typename Ops>
void CompactBilinearLayer<Dtype>::DirectForward(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const int d = num_output_, hw = spatial_;
  Dtype* top_data = Ops::mutable_data(top[0]);
  for (int n0 = 0; n0 < num_; n0 += chunk_) {
    const int m = std::min(chunk_, num_ - n0);
    const int cols = m * hw;
    const Dtype *xp1, *xp2;
    DirectProject<Ops>(bottom, n0, m, true, &xp1, &xp2);
    const Dtype* p1 = Ops::data(p1_);
    const Dtype* p2 = Ops::data(p2_);
    if (sum_pool_) {
      // y[n][k] = sum_s P1[k][n][s] P2[k][n][s].
      Dtype* y = top_data + n0 * d;
      Dtype* z = (m == 1) ? y : Ops::mutable_data(&g_);
      Ops::row_dot(d * m, 1, hw, p1, p2, z);
      if (m > 1) { Ops::swap01(d, m, 1, z, y); }
    } else {
      Dtype* y = top_data + n0 * d * hw;
      if (m == 1) {
        Ops::mul(d * hw, p1, p2, y);
      } else {
        Dtype* prod = Ops::mutable_data(&q_);
        Ops::mul(d * cols, p1, p2, prod);
        Ops::swap01(d, m, hw, prod, y);  // (d, m, HW) -> (m, d, HW)
      }
    }
  }
  projections_cached_ = (chunk_ >= num_);
}

template <typename Dtype>
template <typename Ops>
void CompactBilinearLayer<Dtype>::DirectBackward(
    const vector<Blob<Dtype>*>& top, bool need_dx1, bool need_dx2,
    bool need_dw1, bool need_dw2, const vector<Blob<Dtype>*>& bottom) {
  const int d = num_output_, c1 = channels1_, c2 = channels2_, hw = spatial_;
  const Dtype scale = std::pow(Dtype(d), Dtype(-0.25));
  const Dtype* w1 = Ops::data(*this->blobs_[0]);
  const Dtype* w2 = Ops::data(*this->blobs_[1]);
  const Dtype* top_diff = Ops::diff(*top[0]);
  for (int n0 = 0; n0 < num_; n0 += chunk_) {
    const int m = std::min(chunk_, num_ - n0);
    const int cols = m * hw;
    const Dtype *xp1, *xp2;
    DirectProject<Ops>(bottom, n0, m, !projections_cached_, &xp1, &xp2);
    const Dtype* p1 = Ops::data(p1_);
    const Dtype* p2 = Ops::data(p2_);
    // The top gradient in the chunk's (d, m, HW) or (d, m) layout.
    const Dtype* g;
    const int g_cols = sum_pool_ ? 1 : hw;
    const Dtype* g_src = top_diff + n0 * d * g_cols;
    if (m == 1) {
      g = g_src;
    } else {
      Ops::swap01(m, d, g_cols, g_src, Ops::mutable_data(&g_));
      g = Ops::data(g_);
    }
    Dtype* q = Ops::mutable_data(&q_);
    Dtype* dx1 = NULL;
    if (need_dx1) {
      dx1 = (m == 1) ? Ops::mutable_diff(bottom[0]) + n0 * c1 * hw
                     : Ops::mutable_data(&dxp_);
    }
    // Through P1: dX1 = d^(-1/4) W1' (g .* P2), dW1 += d^(-1/4) (g .* P2) X1'.
    if (need_dx1 || need_dw1) {
      CompactBilinearGradTimes<Ops>(sum_pool_, d * m, hw, g, p2, q);
      if (need_dx1) {
        Ops::gemm(CblasTrans, CblasNoTrans, c1, cols, d, scale, w1, q,
            Dtype(0), dx1);
      }
      if (need_dw1) {
        Ops::gemm(CblasNoTrans, CblasTrans, d, c1, cols, scale, q, xp1,
            Dtype(1), Ops::mutable_diff(this->blobs_[0].get()));
      }
    }
    if (need_dx1 && !shared_bottom_) {
      CompactBilinearUnchunk<Ops>(c1, m, hw, dx1, bottom[0], n0);
    }
    // Through P2, into dX2 or, with a shared bottom, added to dX1.
    const bool via_p2_dx = need_dx2 || (shared_bottom_ && need_dx1);
    if (via_p2_dx || need_dw2) {
      CompactBilinearGradTimes<Ops>(sum_pool_, d * m, hw, g, p1, q);
      if (shared_bottom_ && need_dx1) {
        Ops::gemm(CblasTrans, CblasNoTrans, c1, cols, d, scale, w2, q,
            Dtype(1), dx1);
        CompactBilinearUnchunk<Ops>(c1, m, hw, dx1, bottom[0], n0);
      } else if (need_dx2) {
        Dtype* dx2 = (m == 1) ? Ops::mutable_diff(bottom[1]) + n0 * c2 * hw
                              : Ops::mutable_data(&dxp_);
        Ops::gemm(CblasTrans, CblasNoTrans, c2, cols, d, scale, w2, q,
            Dtype(0), dx2);
        CompactBilinearUnchunk<Ops>(c2, m, hw, dx2, bottom[1], n0);
      }
      if (need_dw2) {
        Ops::gemm(CblasNoTrans, CblasTrans, d, c2, cols, scale, q, xp2,
            Dtype(1), Ops::mutable_diff(this->blobs_[1].get()));
      }
    }
  }
}

// ------------------------------------------------------------------ GRAM

template <typename Dtype>
template <typename Ops>
void CompactBilinearLayer<Dtype>::GramForward(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const int d = num_output_, c1 = channels1_, c2 = channels2_, hw = spatial_;
  const Dtype* x1 = Ops::data(*bottom[0]);
  const Dtype* x2 = shared_bottom_ ? x1 : Ops::data(*bottom[1]);
  const Dtype* w1 = Ops::data(*this->blobs_[0]);
  const Dtype* w2 = Ops::data(*this->blobs_[1]);
  Dtype* top_data = Ops::mutable_data(top[0]);
  const Dtype inv_sqrt_d = Dtype(1) / std::sqrt(Dtype(d));
  // G_n = X1_n X2_n' (C1 x C2): for the batch when Backward needs them (to
  // learn the projection), else for one chunk at a time.
  const bool keep = learn_projection_;
  for (int n0 = 0; n0 < num_; n0 += chunk_) {
    const int m = std::min(chunk_, num_ - n0);
    Dtype* gram = Ops::mutable_data(&gram_) + (keep ? n0 : 0) * c1 * c2;
    for (int n = n0; n < n0 + m; ++n) {
      Ops::gemm(CblasNoTrans, CblasTrans, c1, c2, hw, Dtype(1),
          x1 + n * c1 * hw, x2 + n * c2 * hw, Dtype(0),
          gram + (n - n0) * c1 * c2);
    }
    // R = d^(-1/2) W2 [G_n0 ... G_n0+m-1]', d x (m C1): R[k][n][i] =
    // d^(-1/2) (W2 G_n')[k][i]; then y[n][k] = sum_i W1[k][i] R[k][n][i].
    Dtype* r = Ops::mutable_data(&r_);
    Ops::gemm(CblasNoTrans, CblasTrans, d, m * c1, c2, inv_sqrt_d, w2, gram,
        Dtype(0), r);
    Dtype* y = top_data + n0 * d;
    Dtype* z = (m == 1) ? y : Ops::mutable_data(&g_);
    Ops::row_dot(d, m, c1, r, w1, z);
    if (m > 1) { Ops::swap01(d, m, 1, z, y); }
  }
}

template <typename Dtype>
template <typename Ops>
void CompactBilinearLayer<Dtype>::GramBackward(
    const vector<Blob<Dtype>*>& top, bool need_dx1, bool need_dx2,
    bool need_dw1, bool need_dw2, const vector<Blob<Dtype>*>& bottom) {
  const int d = num_output_, c1 = channels1_, c2 = channels2_, hw = spatial_;
  const Dtype inv_sqrt_d = Dtype(1) / std::sqrt(Dtype(d));
  const Dtype* x1 = Ops::data(*bottom[0]);
  const Dtype* x2 = shared_bottom_ ? x1 : Ops::data(*bottom[1]);
  const Dtype* w1 = Ops::data(*this->blobs_[0]);
  const Dtype* w2 = Ops::data(*this->blobs_[1]);
  const Dtype* top_diff = Ops::diff(*top[0]);
  // G_n from Forward (kept for the batch when the projection is learned).
  const Dtype* gram = (need_dw1 || need_dw2) ? Ops::data(gram_) : NULL;
  Dtype* dx1 = need_dx1 ? Ops::mutable_diff(bottom[0]) : NULL;
  Dtype* dx2 = need_dx2 ? Ops::mutable_diff(bottom[1]) : NULL;
  for (int n = 0; n < num_; ++n) {
    const Dtype* g = top_diff + n * d;
    const Dtype* gram_n = gram ? gram + n * c1 * c2 : NULL;
    if (need_dx1 || need_dx2 || need_dw1) {
      // S2 = diag(g_n) W2.
      Dtype* sw = Ops::mutable_data(&scaled_w_);
      Ops::scale_rows(d, c2, g, w2, sw);
      if (need_dx1 || need_dx2) {
        // dG = d^(-1/2) W1' S2; dX1 = dG X2, dX2 = dG' X1.
        Dtype* dg = Ops::mutable_data(&dgram_);
        Ops::gemm(CblasTrans, CblasNoTrans, c1, c2, d, inv_sqrt_d, w1, sw,
            Dtype(0), dg);
        if (need_dx1) {
          Ops::gemm(CblasNoTrans, CblasNoTrans, c1, hw, c2, Dtype(1), dg,
              x2 + n * c2 * hw, Dtype(0), dx1 + n * c1 * hw);
          if (shared_bottom_) {
            Ops::gemm(CblasTrans, CblasNoTrans, c1, hw, c1, Dtype(1), dg,
                x1 + n * c1 * hw, Dtype(1), dx1 + n * c1 * hw);
          }
        }
        if (need_dx2) {
          Ops::gemm(CblasTrans, CblasNoTrans, c2, hw, c1, Dtype(1), dg,
              x1 + n * c1 * hw, Dtype(0), dx2 + n * c2 * hw);
        }
      }
      if (need_dw1) {  // dW1 += d^(-1/2) S2 G_n'
        Ops::gemm(CblasNoTrans, CblasTrans, d, c1, c2, inv_sqrt_d, sw, gram_n,
            Dtype(1), Ops::mutable_diff(this->blobs_[0].get()));
      }
    }
    if (need_dw2) {  // dW2 += d^(-1/2) diag(g_n) W1 G_n
      Dtype* sw = Ops::mutable_data(&scaled_w_);
      Ops::scale_rows(d, c1, g, w1, sw);
      Ops::gemm(CblasNoTrans, CblasNoTrans, d, c2, c1, inv_sqrt_d, sw, gram_n,
          Dtype(1), Ops::mutable_diff(this->blobs_[1].get()));
    }
  }
}

}  // namespace caffe

#endif  // CAFFE_COMPACT_BILINEAR_LAYER_IMPL_HPP_
