#ifndef CAFFE_COMPACT_BILINEAR_LAYER_HPP_
#define CAFFE_COMPACT_BILINEAR_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/util/host_device.hpp"

namespace caffe {

/// Index, in a (B, A, S) row-major array, of element i of an (A, B, S) array:
/// the permutation that swaps the two leading axes.
CAFFE_HOST_DEVICE inline int cb_swap01_index(int i, int A, int B, int S) {
  const int s = i % S;
  const int b = (i / S) % B;
  const int a = i / (S * B);
  return (b * A + a) * S + s;
}

/**
 * @brief Compact bilinear pooling by Random Maclaurin projection (Gao, Beijbom,
 *        Zhang, Darrell, "Compact Bilinear Pooling", CVPR 2016), as used by
 *        Zhang et al. (section 3.5) for the pose-normalized representation.
 *
 * Bottoms: @f$ X_1 @f$ (N x C1 x H x W) and optionally @f$ X_2 @f$
 * (N x C2 x H x W, same N and spatial shape; any number of spatial axes, also
 * none). With one bottom, @f$ X_2 = X_1 @f$, still with two independent
 * projections. For image n, with @f$ x_{1s}, x_{2s} @f$ the feature vectors
 * at spatial position s, and d = compact_bilinear_param.num_output:
 * @f[
 *   y = \frac{1}{\sqrt d} \sum_s (W_1 x_{1s}) \odot (W_2 x_{2s})
 *     \qquad (N \times d \times 1 \times 1, \mbox{ sum\_pool: true})
 * @f]
 * or @f$ y_s = \frac{1}{\sqrt d} (W_1 x_{1s}) \odot (W_2 x_{2s}) @f$ per
 * position (N x d x H x W, sum_pool: false). Since
 * @f$ E[w w^\top] = I @f$ for a row w of a random +-1 matrix,
 * @f$ E \langle y(X), y(Z) \rangle = \sum_{s,t} (x_s \cdot z_t)^2 @f$, the
 * bilinear (second order) kernel, approximated in d dimensions.
 *
 * Parameters: blobs_[0] = W1 (d x C1) and blobs_[1] = W2 (d x C2), entries
 * +1 or -1 with equal probability, drawn once at set-up from
 * std::mt19937(seed) (W1 row-major, then W2; entry = +1 iff bit 31 of the
 * 32-bit draw is set), independent of Caffe's global RNG, so a seed gives
 * the same matrices on every platform. They are saved in the caffemodel and
 * weights loaded from one win over the seed. Unless learn_projection, they
 * are fixed: the layer adds `param { lr_mult: 0 decay_mult: 0 }` for both to
 * its own LayerParameter (which Net::AppendParam reads for the solver after
 * SetUp), so no solver moves them, weight decay included (SGD's decay would
 * otherwise add decay * W to the diff and update W); an explicit non-zero
 * lr_mult is a CHECK failure. Prototxts may spell out
 * `param { lr_mult: 0 decay_mult: 0 }` twice, which is equivalent. Backward
 * never touches their diffs (the Net sets param_propagate_down from the
 * prototxt's lr_mult, default 1, so Backward also checks learn_projection).
 * With learn_projection their gradients are exact and the usual ParamSpecs
 * (lr_mult, decay_mult) apply.
 *
 * Two exact factorizations, per image (multiply-adds):
 *  - DIRECT: project every position, @f$ P_i = d^{-1/4} W_i X_i @f$
 *    (d x HW each), then y = row sums of @f$ P_1 \odot P_2 @f$:
 *    d HW (C1 + C2) + d HW. Backward: @f$ Q_2 = g \odot P_2 @f$,
 *    @f$ dX_1 = d^{-1/4} W_1^\top Q_2 @f$, @f$ dW_1 = d^{-1/4} Q_2 X_1^\top
 *    @f$ and symmetrically, d HW (C1 + C2) for the bottoms. Images are
 *    processed in chunks whose inputs are laid out as C x (images * HW), so
 *    one GEMM projects a whole chunk. When the whole batch fits in the
 *    scratch budget the projections are kept for Backward, otherwise
 *    Backward recomputes them chunk by chunk (twice the forward cost).
 *  - GRAM (sum_pool only): @f$ G = X_1 X_2^\top = \sum_s x_{1s} x_{2s}^\top
 *    @f$ (C1 x C2), @f$ y_k = d^{-1/2} w_{1k}^\top G\, w_{2k} @f$, computed as
 *    @f$ R = d^{-1/2} W_2 [G_1 \ldots G_m]^\top @f$ (one GEMM for a chunk of
 *    m images) and y = row sums of @f$ R \odot W_1 @f$:
 *    C1 C2 HW + d C1 C2 + d C1. Backward:
 *    @f$ dG = d^{-1/2} W_1^\top \mathrm{diag}(g) W_2 @f$,
 *    @f$ dX_1 = dG X_2 @f$, @f$ dX_2 = dG^\top X_1 @f$,
 *    @f$ dW_1 = d^{-1/2} \mathrm{diag}(g) W_2 G^\top @f$,
 *    @f$ dW_2 = d^{-1/2} \mathrm{diag}(g) W_1 G @f$:
 *    d C1 C2 + 2 C1 C2 HW for the bottoms.
 * factorization AUTO picks the one with the smaller forward cost (GRAM wins
 * when HW is large against C, e.g. 28 x 28 x 512 maps; DIRECT when HW is
 * small, e.g. 10 x 10 x 512). DIRECT and GRAM force one; GRAM with
 * sum_pool: false is an error. Both are GEMM-bound (Caffe's gemm wrappers);
 * the CPU and GPU code is one driver (compact_bilinear_layer_impl.hpp) over
 * two sets of primitives, so the GPU runs the algorithm the CPU tests check.
 * Memory: DIRECT 3 d HW per chunked image (+ d HW without sum_pool); GRAM
 * d C1 per chunked image (about a last-level cache in all) and C1 C2 per
 * image of the batch when the projection is learned.
 */
template <typename Dtype>
class CompactBilinearLayer : public Layer<Dtype> {
 public:
  explicit CompactBilinearLayer(const LayerParameter& param)
      : Layer<Dtype>(param), scratch_limit_(kDefaultScratchLimit) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "CompactBilinear"; }
  virtual inline int MinBottomBlobs() const { return 1; }
  virtual inline int MaxBottomBlobs() const { return 2; }
  virtual inline int ExactNumTopBlobs() const { return 1; }

  /// The factorization used for the current shapes (DIRECT or GRAM).
  CompactBilinearParameter::Factorization factorization() const {
    return factorization_;
  }
  /// Images per chunk for the current shapes.
  int chunk() const { return chunk_; }
  /// Forward multiply-adds per image of each factorization (the cost model).
  static double DirectCost(int d, int c1, int c2, int spatial);
  static double GramCost(int d, int c1, int c2, int spatial);
  /// Scratch budget, in elements, that bounds the chunk size (DIRECT keeps
  /// the projections of a batch for Backward when they fit in it).
  static const int kDefaultScratchLimit = 1 << 25;
  /// GRAM's R chunk is kept at about the size of a last-level cache, since
  /// it is read back right after the GEMM writes it.
  static const int kGramChunkLimit = 1 << 22;

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  // The shared CPU/GPU driver; Ops supplies the primitives (BLAS wrappers,
  // permutations) and the blob accessors of one device.
  template <typename Ops> void ForwardImpl(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  template <typename Ops> void BackwardImpl(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  template <typename Ops> void DirectForward(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  template <typename Ops> void DirectBackward(const vector<Blob<Dtype>*>& top,
      bool need_dx1, bool need_dx2, bool need_dw1, bool need_dw2,
      const vector<Blob<Dtype>*>& bottom);
  template <typename Ops> void GramForward(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  template <typename Ops> void GramBackward(const vector<Blob<Dtype>*>& top,
      bool need_dx1, bool need_dx2, bool need_dw1, bool need_dw2,
      const vector<Blob<Dtype>*>& bottom);
  // DIRECT: the chunk's inputs as C x (m * HW) (permuted into xp1_/xp2_
  // unless m == 1) and, if project, P1 and P2 into p1_/p2_.
  template <typename Ops> void DirectProject(const vector<Blob<Dtype>*>& bottom,
      int n0, int m, bool project, const Dtype** xp1, const Dtype** xp2);

  int num_output_;      // d
  bool sum_pool_;
  bool learn_projection_;
  CompactBilinearParameter::Factorization factorization_;  // DIRECT or GRAM
  int num_;             // N
  int channels1_;       // C1
  int channels2_;       // C2
  int spatial_;         // HW (product of the spatial axes)
  bool shared_bottom_;  // one bottom (or the same blob twice): X2 = X1
  int chunk_;           // images per chunk
  bool projections_cached_;  // DIRECT: p1_/p2_ hold the whole batch
  int scratch_limit_;   // elements; tests lower it to exercise chunking

  Blob<Dtype> xp1_, xp2_;  // DIRECT: chunk inputs, C x (m HW)
  Blob<Dtype> p1_, p2_;    // DIRECT: chunk projections, d x (m HW)
  Blob<Dtype> q_;          // DIRECT: product / gradient, d x (m HW)
  Blob<Dtype> dxp_;        // DIRECT: bottom gradient, C x (m HW)
  Blob<Dtype> gram_;       // GRAM: G_n, (N or m) x C1 x C2
  Blob<Dtype> r_;          // GRAM: R for a chunk, d x (m C1)
  Blob<Dtype> scaled_w_;   // GRAM backward: diag(g_n) W, d x max(C1, C2)
  Blob<Dtype> dgram_;      // GRAM backward: dG_n, C1 x C2
  Blob<Dtype> g_;          // d x m x HW (or d x m): gradient / sums, permuted
};

}  // namespace caffe

#endif  // CAFFE_COMPACT_BILINEAR_LAYER_HPP_
