#ifndef CAFFE_UTIL_WINOGRAD_HPP_
#define CAFFE_UTIL_WINOGRAD_HPP_

// Winograd convolution F(m x m, 3 x 3), m = 2 or 4 (Lavin & Gray, "Fast
// Algorithms for Convolutional Neural Networks", 2016), for the CPU
// engine's 3 x 3, stride-1, undilated convolutions.
//
// The output is cut into m x m tiles; each reads an (m + 2)^2 input patch.
// A thread takes whole blocks of tiles: it transforms the block's patches
// of every input channel (V = B^T d B), multiplies them with the
// transformed kernel in one GEMM per transform coordinate (M = U V, (m + 2)^2
// GEMMs of out_channels x tiles x in_channels), and transforms the
// products back (Y = A^T M A).  F(4x4) does 36 / 144 = 1/4 of the direct
// multiplications, F(2x2) 16 / 36.  The schedule is static: results do not
// depend on timing.

#include <vector>

namespace caffe {
namespace cpu {

/// One image's convolution: input planes -> output planes.
struct WinogradShape {
  int m;                              // output tile: 2 or 4
  int in_channels, height, width;     // input
  int out_channels, out_h, out_w;     // output
  int pad_h, pad_w;  // output (0, 0) reads input (-pad_h, -pad_w); may be < 0
};

/// The transformed kernel U: (m + 2)^2 matrices of out x in (each packed
/// for winograd_product, winograd_kernel_size values in all), from Caffe's
/// weights w[num_output][channels][3][3].  Forward: out = num_output,
/// in = channels.  flip (the data gradient, a convolution of the top diff
/// with the flipped kernel): out = channels, in = num_output,
/// w'[c][k][r][s] = w[k][c][2 - r][2 - s].
template <typename Dtype>
void winograd_kernel(int m, const Dtype* w, int num_output, int channels,
                     bool flip, Dtype* u);

long winograd_kernel_size(int m, int num_output, int channels, bool flip);

/// Convolves num images (in + n * in_stride -> out + n * out_stride),
/// writing every output value (+ bias[o] when bias is not NULL), on up to
/// nthreads threads of the engine's pool (nthreads: what
/// cpu::num_threads() said before any SingleThreadedBlas), the products in
/// winograd_product.  scratch: per-thread buffers.
template <typename Dtype>
void winograd_conv(const WinogradShape& s, int num, const Dtype* in,
                   long in_stride, const Dtype* u, const Dtype* bias,
                   Dtype* out, long out_stride, int nthreads,
                   std::vector<Dtype>* scratch);

/// The weight gradient of a convolution of shape s (in: the bottom data,
/// out: the top diff): dw[o][c][3][3] += the sum over num images of the
/// correlation of in's channel c with out's channel o.  Lavin & Gray's
/// F(m x m, 3 x 3) with the roles swapped, dg = G^T [(A dy A^T) .
/// (B^T d B)] G: the input patches get the forward transform, the top
/// diff's m x m tiles A, and per transform coordinate one GEMM of
/// (out x tiles) by (tiles x in) sums the products over every tile; then
/// one G^T S G per (o, c).  Threads and scratch as in winograd_conv; a
/// static schedule.
template <typename Dtype>
void winograd_weight_grad(const WinogradShape& s, int num, const Dtype* in,
                          long in_stride, const Dtype* out, long out_stride,
                          Dtype* dw, int nthreads,
                          std::vector<Dtype>* scratch);

/// POSENORM_WINOGRAD, "T" or "T,W": the tile of the forward pass and the
/// data gradient (T) and of the weight gradient (W; T when absent), each 0
/// (off), 2 or 4 (that tile on every layer that can take it) or auto (-1:
/// the engine picks per layer; also when the variable is unset).
struct WinogradSetting {
  int data, weight;
};
WinogradSetting winograd_setting();

/// Tests: the most tiles in one block (0: sized for the cache), so that
/// small maps are cut into several blocks too (both passes).
void WinogradMaxBlockTiles(int tiles);

}  // namespace cpu
}  // namespace caffe

#endif  // CAFFE_UTIL_WINOGRAD_HPP_
