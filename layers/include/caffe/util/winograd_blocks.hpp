#ifndef CAFFE_UTIL_WINOGRAD_BLOCKS_HPP_
#define CAFFE_UTIL_WINOGRAD_BLOCKS_HPP_

// The Winograd convolution's per-block data movement: the transforms of a
// block of tiles between the planes and the (m + 2)^2 matrices the products
// read and write, and the weight gradient's inverse transform.  Each is
// compiled for AVX-512, AVX2 and baseline x86-64 and picked at run time;
// overloads on the tile size (target_clones takes no templates).
// Internal to the CPU engine's winograd*.cpp files.

#include "caffe/util/cpu_simd.hpp"
#include "caffe/util/winograd.hpp"

namespace caffe {
namespace cpu {
namespace winograd {

template <int M> struct TileSize {};

// Tiles [t0, t0 + count) of one image, in raster order; P: the block's
// capacity, the row length of V and M.
struct Block {
  int tiles_x;
  long t0;
  int count;
  long P;
};

// Values between one transform coordinate's matrix of V (M) and the next,
// past its rows x P: one cache line.  The (m + 2)^2 matrices of a block
// are a power of two apart without it (channels x 32 tiles), so the 36
// stores of one tile group's transform fell into one set of L1 and
// evicted each other.
const long kSkew = simd::kLanes;

#define WINOGRAD_BLOCKS(M, D)                                               \
  /* V[xi][c - c0][p] = (B^T d B)[xi], channels c0 <= c < c1 */             \
  void input_block(TileSize<M>, const WinogradShape& s, const Block& b,     \
                   const D* in, D* v, int c0, int c1);                      \
  /* out[o] = (A^T M A) + bias[o], clipped to the map */                    \
  void output_block(TileSize<M>, const WinogradShape& s, const Block& b,    \
                    const D* mm, const D* bias, D* out);                    \
  /* DY[xi][k - k0][p] = (A dy A^T)[xi] of the top diff's tiles */          \
  void grad_block(TileSize<M>, const WinogradShape& s, const Block& b,      \
                  const D* dout, D* dy, int k0, int k1);                    \
  /* dw[k][c] += G^T S[k][c] G, k0 <= k < k1, c0 <= c < c1 */               \
  void inverse_block(TileSize<M>, const D* sum, int K, int C, int k0,       \
                     int k1, int c0, int c1, D* dw);
WINOGRAD_BLOCKS(2, float)
WINOGRAD_BLOCKS(4, float)
WINOGRAD_BLOCKS(2, double)
WINOGRAD_BLOCKS(4, double)
#undef WINOGRAD_BLOCKS

}  // namespace winograd
}  // namespace cpu
}  // namespace caffe

#endif  // CAFFE_UTIL_WINOGRAD_BLOCKS_HPP_
