#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "caffe/common.hpp"
#include "caffe/util/cpu_gemm.hpp"
#include "caffe/util/cpu_parallel.hpp"
#include "caffe/util/winograd.hpp"
#include "caffe/util/winograd_blocks.hpp"
#include "caffe/util/winograd_product.hpp"
#include "caffe/util/winograd_tile.hpp"

namespace caffe {
namespace cpu {

namespace {

using winograd::Block;
using winograd::kLanes;
using winograd::kSkew;
using winograd::Tile;
using winograd::TileSize;
int max_block_tiles = 0;

// Tiles per block of the forward pass and the data gradient: V and M of
// 32 tiles stay in a core's L2 up to 256 channels, and the product's
// register block covers them in one pass (VGG-16 at 500 x 500: 32 beat
// 16, 48, 64, 128 and 256 on every layer; docs/bench_conv.md).
const long kBlockTiles = 32;

template <int M, typename Dtype>
void kernel_impl(const Dtype* w, int num_output, int channels, bool flip,
                 Dtype* u) {
  const int A = M + 2;
  const int rows = flip ? channels : num_output;
  const int cols = flip ? num_output : channels;
  const long xi_stride = packed_rows(rows) * cols;
  // Row r of U (an output channel of this convolution), kChunk kernels at
  // a time, then each coordinate's values in turn: the coordinates'
  // matrices lie a power of two apart, too many streams for the cache.
  // Packed for winograd_product.
  const int kChunk = 64;
  parallel_for(rows, [&](long r0, long r1) {
    double g[9], t[A * 3], uu[kChunk][A * A];
    for (long r = r0; r < r1; ++r) {
      for (int q0 = 0; q0 < cols; q0 += kChunk) {
        const int n = std::min(kChunk, cols - q0);
        for (int q = 0; q < n; ++q) {
          // w[k][c]: forward k = r, c = q0 + q; flipped k = q0 + q, c = r.
          const Dtype* src = w + (flip ? (q0 + q) * channels + r
                                       : r * channels + q0 + q) * 9;
          for (int i = 0; i < 9; ++i) g[i] = src[flip ? 8 - i : i];
          for (int j = 0; j < 3; ++j) Tile<M>::kernel(g + j, 3, t + j, 3);
          for (int i = 0; i < A; ++i) {
            Tile<M>::kernel(t + i * 3, 1, uu[q] + i * A, 1);
          }
        }
        for (int xi = 0; xi < A * A; ++xi) {
          Dtype* dst = u + xi * xi_stride + r / kPackRows * kPackRows * cols +
              q0 * kPackRows + r % kPackRows;
          for (int q = 0; q < n; ++q) {
            dst[q * kPackRows] = static_cast<Dtype>(uu[q][xi]);
          }
        }
      }
    }
  }, 4);
}

template <int M, typename Dtype>
void conv_impl(const WinogradShape& s, int num, const Dtype* in,
               long in_stride, const Dtype* u, const Dtype* bias, Dtype* out,
               long out_stride, int nthreads, std::vector<Dtype>* scratch) {
  const int A2 = (M + 2) * (M + 2);
  Block b;
  b.tiles_x = (s.out_w + M - 1) / M;
  const long tiles = static_cast<long>(b.tiles_x) * ((s.out_h + M - 1) / M);
  const long round = kLanes;
  // Block size, measured (docs/bench_conv.md): kBlockTiles; at least one
  // block per thread; a whole number of lane groups.
  long P = kBlockTiles;
  P = std::min(P, (num * tiles + nthreads - 1) / nthreads);
  if (max_block_tiles > 0) P = std::min<long>(P, max_block_tiles);
  P = std::min(P, tiles);
  P = std::max(round, (P + round - 1) / round * round);
  const long blocks = (tiles + P - 1) / P;
  const long items = num * blocks;
  const int nt = static_cast<int>(std::min<long>(nthreads, items));
  const long v_xi = s.in_channels * P + kSkew;
  const long m_xi = s.out_channels * P + kSkew;
  const long v_size = A2 * v_xi;
  const long buffer = v_size + A2 * m_xi;
  if (static_cast<long>(scratch->size()) < nt * buffer) {
    scratch->resize(nt * buffer);
  }
  b.P = P;
  const long u_stride = packed_rows(s.out_channels) * s.in_channels;
  parallel(nt, [&](int tid, int nthr) {
    Dtype* v = scratch->data() + tid * buffer;
    Dtype* mm = v + v_size;
    Block mine = b;
    for (long it = chunk_begin(items, tid, nthr);
         it < chunk_begin(items, tid + 1, nthr); ++it) {
      const long n = it / blocks;
      mine.t0 = it % blocks * P;
      mine.count = static_cast<int>(std::min(P, tiles - mine.t0));
      const int cols = (mine.count + kLanes - 1) / kLanes * kLanes;
      input_block(TileSize<M>(), s, mine, in + n * in_stride,
                  v, 0, s.in_channels);
      for (int xi = 0; xi < A2; ++xi) {
        winograd_product(s.out_channels, cols, s.in_channels,
                         u + xi * u_stride, v + xi * v_xi, P, mm + xi * m_xi,
                         P);
      }
      output_block(TileSize<M>(), s, mine, mm, bias,
                   out + n * out_stride);
    }
  });
}

// The weight gradient's blocks: P tiles (the GEMMs' inner dimension) whose
// transforms take about kWeightBlockBytes per thread, within [64, 512]
// (docs/bench_conv.md); ranges of at least kMinRange channels per thread.
const long kWeightBlockBytes = 2L << 20;
const int kMinRange = 32;

// Threads form a grid over (input channel, output channel) ranges, input
// channels first (their transform is the dearer one).  Each transforms its
// channels' input patches and top-diff tiles of every block and multiplies
// them into its own part of the summed products S[xi][k][c]: no two
// threads write one value, no reduction, a static schedule.
template <int M, typename Dtype>
void weight_grad_impl(const WinogradShape& s, int num, const Dtype* in,
                      long in_stride, const Dtype* dout, long out_stride,
                      Dtype* dw, int nthreads, std::vector<Dtype>* scratch) {
  const int A2 = (M + 2) * (M + 2);
  const int C = s.in_channels, K = s.out_channels;
  Block b;
  b.tiles_x = (s.out_w + M - 1) / M;
  const long tiles = static_cast<long>(b.tiles_x) * ((s.out_h + M - 1) / M);
  const int ct = std::max(1, std::min(nthreads, C / kMinRange));
  const int kt = std::max(1, std::min(nthreads / ct, K / kMinRange));
  const int nt = ct * kt;
  const int cr = (C + ct - 1) / ct, kr = (K + kt - 1) / kt;
  const long round = kLanes;
  long P = kWeightBlockBytes / (A2 * (cr + kr) * sizeof(Dtype));
  P = std::max(64L, std::min(512L, P));
  if (max_block_tiles > 0) P = std::min<long>(P, max_block_tiles);
  P = std::min(P, num * ((tiles + round - 1) / round * round));
  P = std::max(round, (P + round - 1) / round * round);
  const long sum_size = static_cast<long>(A2) * K * C;
  const long buffer = A2 * ((cr + kr) * P + 2 * kSkew);
  if (static_cast<long>(scratch->size()) < sum_size + nt * buffer) {
    scratch->resize(sum_size + nt * buffer);
  }
  Dtype* sum = scratch->data();
  SingleThreadedBlas single(nt > 1);
  parallel(nt, [&](int tid, int) {
    const int ci = tid % ct, ki = tid / ct;
    const int c0 = chunk_begin(C, ci, ct), c1 = chunk_begin(C, ci + 1, ct);
    const int k0 = chunk_begin(K, ki, kt), k1 = chunk_begin(K, ki + 1, kt);
    Dtype* v = scratch->data() + sum_size + tid * buffer;
    const long v_xi = (c1 - c0) * P + kSkew, dy_xi = (k1 - k0) * P + kSkew;
    Dtype* dy = v + A2 * v_xi;
    Dtype beta = 0;  // the first block sets S, the others add
    Block mine = b;
    mine.P = P;
    long col = 0;
    for (int n = 0; n < num; ++n) {
      for (long t0 = 0; t0 < tiles; t0 += mine.count) {
        mine.t0 = t0;
        mine.count = static_cast<int>(std::min(P - col, tiles - t0));
        input_block(TileSize<M>(), s, mine, in + n * in_stride,
                    v + col, c0, c1);
        grad_block(TileSize<M>(), s, mine,
                   dout + n * out_stride, dy + col, k0, k1);
        col += (mine.count + round - 1) / round * round;
        if (col < P && (n + 1 < num || t0 + mine.count < tiles)) continue;
        for (int xi = 0; xi < A2; ++xi) {
          gemm(false, true, k1 - k0, c1 - c0, static_cast<int>(col),
               Dtype(1), dy + xi * dy_xi, static_cast<int>(P),
               v + xi * v_xi, static_cast<int>(P), beta,
               sum + xi * K * C + k0 * C + c0, C);
        }
        beta = 1;
        col = 0;
      }
    }
    inverse_block(TileSize<M>(), sum, K, C, k0, k1, c0, c1,
                  dw);
  });
}

}  // namespace

template <typename Dtype>
void winograd_weight_grad(const WinogradShape& s, int num, const Dtype* in,
                          long in_stride, const Dtype* dout, long out_stride,
                          Dtype* dw, int nthreads,
                          std::vector<Dtype>* scratch) {
  if (s.m == 4) {
    weight_grad_impl<4>(s, num, in, in_stride, dout, out_stride, dw, nthreads,
                        scratch);
  } else {
    weight_grad_impl<2>(s, num, in, in_stride, dout, out_stride, dw, nthreads,
                        scratch);
  }
}

long winograd_kernel_size(int m, int num_output, int channels, bool flip) {
  return (m + 2) * (m + 2) * packed_rows(flip ? channels : num_output) *
      (flip ? num_output : channels);
}

template <typename Dtype>
void winograd_kernel(int m, const Dtype* w, int num_output, int channels,
                     bool flip, Dtype* u) {
  if (m == 4) {
    kernel_impl<4>(w, num_output, channels, flip, u);
  } else {
    kernel_impl<2>(w, num_output, channels, flip, u);
  }
}

template <typename Dtype>
void winograd_conv(const WinogradShape& s, int num, const Dtype* in,
                   long in_stride, const Dtype* u, const Dtype* bias,
                   Dtype* out, long out_stride, int nthreads,
                   std::vector<Dtype>* scratch) {
  if (s.m == 4) {
    conv_impl<4>(s, num, in, in_stride, u, bias, out, out_stride, nthreads,
                 scratch);
  } else {
    conv_impl<2>(s, num, in, in_stride, u, bias, out, out_stride, nthreads,
                 scratch);
  }
}

namespace {

// One part of POSENORM_WINOGRAD: -1 for auto, else the tile (0: off).
int setting_part(const std::string& part, const char* whole) {
  if (part == "auto") return -1;
  CHECK(part == "0" || part == "2" || part == "4")
      << "POSENORM_WINOGRAD=" << whole << ": expected T or T,W, each 0 (off), "
      << "2 or 4 (tile) or auto";
  return part[0] - '0';
}

}  // namespace

WinogradSetting winograd_setting() {
  WinogradSetting s = {-1, -1};
  const char* v = std::getenv("POSENORM_WINOGRAD");
  if (!v || !*v) return s;
  const std::string all(v);
  const size_t comma = all.find(',');
  s.data = setting_part(all.substr(0, comma), v);
  s.weight = comma == std::string::npos ? s.data
      : setting_part(all.substr(comma + 1), v);
  return s;
}

void WinogradMaxBlockTiles(int tiles) { max_block_tiles = tiles; }

template void winograd_kernel<float>(int, const float*, int, int, bool,
                                     float*);
template void winograd_kernel<double>(int, const double*, int, int, bool,
                                      double*);
template void winograd_weight_grad<float>(const WinogradShape&, int,
    const float*, long, const float*, long, float*, int, std::vector<float>*);
template void winograd_weight_grad<double>(const WinogradShape&, int,
    const double*, long, const double*, long, double*, int,
    std::vector<double>*);
template void winograd_conv<float>(const WinogradShape&, int, const float*,
    long, const float*, const float*, float*, long, int,
    std::vector<float>*);
template void winograd_conv<double>(const WinogradShape&, int, const double*,
    long, const double*, const double*, double*, long, int,
    std::vector<double>*);

}  // namespace cpu
}  // namespace caffe
