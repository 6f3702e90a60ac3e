#ifndef CAFFE_UTIL_CPU_GEMM_HPP_
#define CAFFE_UTIL_CPU_GEMM_HPP_

// Row-major GEMM with leading dimensions, for the CPU engine's blocked and
// Winograd convolutions: their operands are strided blocks of larger
// arrays, which caffe_cpu_gemm (dense operands only) cannot take.

#include "caffe/util/math_functions.hpp"  // the BLAS Caffe links

namespace caffe {
namespace cpu {

inline void gemm(bool ta, bool tb, int m, int n, int k, float alpha,
                 const float* a, int lda, const float* b, int ldb, float beta,
                 float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
              tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb,
              beta, c, ldc);
}

inline void gemm(bool ta, bool tb, int m, int n, int k, double alpha,
                 const double* a, int lda, const double* b, int ldb,
                 double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
              tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb,
              beta, c, ldc);
}

}  // namespace cpu
}  // namespace caffe

#endif  // CAFFE_UTIL_CPU_GEMM_HPP_
