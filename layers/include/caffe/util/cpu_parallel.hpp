#ifndef CAFFE_UTIL_CPU_PARALLEL_HPP_
#define CAFFE_UTIL_CPU_PARALLEL_HPP_

// Threads for posenorm's CPU engine (blocked convolution, threaded ReLU and
// pooling, the loops of our own layers).
//
// One small pool of sleeping workers rather than OpenMP: OpenBLAS (pthread
// build) keeps its own pool, and OpenMP's workers spin after each region,
// stealing the cores OpenBLAS's next GEMM needs.  Our workers wait on a
// condition variable.
//
// The thread count follows OpenBLAS's (OPENBLAS_NUM_THREADS, or
// openblas_set_num_threads at run time); without OpenBLAS, OMP_NUM_THREADS,
// else the number of online CPUs.

#include <functional>

// Hot elementwise loops: compiled for AVX-512, AVX2 and baseline x86-64,
// the best picked at run time (the build itself targets baseline x86-64).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__)
#define CAFFE_CPU_CLONES \
  __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CAFFE_CPU_CLONES
#endif

namespace caffe {
namespace cpu {

/// Threads the CPU engine uses now (>= 1).
int num_threads();

/// Runs fn(tid, nthreads) for tid = 0 .. nthreads - 1, tid 0 on the calling
/// thread, and returns when all have returned.  Nested calls run inline.
void parallel(int nthreads, const std::function<void(int, int)>& fn);

/// Splits [0, n) into contiguous chunks, one per thread (a static schedule,
/// so results do not depend on timing), and runs fn(begin, end) on each.
/// Runs inline when n < min_per_thread * 2 or with one thread.
void parallel_for(long n, const std::function<void(long, long)>& fn,
                  long min_per_thread = 1);

/// The [begin, end) chunk of thread tid of nthreads over [0, n).
inline long chunk_begin(long n, int tid, int nthreads) {
  return n * tid / nthreads;
}

/// While alive (and active), the BLAS runs single-threaded (our threads
/// each call it); restores the previous count on exit.
class SingleThreadedBlas {
 public:
  explicit SingleThreadedBlas(bool active = true);
  ~SingleThreadedBlas();
 private:
  int saved_;
  SingleThreadedBlas(const SingleThreadedBlas&);
  SingleThreadedBlas& operator=(const SingleThreadedBlas&);
};

/// True when POSENORM_CPU_ENGINE=reference: layers created from then on use
/// Caffe's original CPU code (for benchmarks and equality tests).
bool use_reference_engine();

}  // namespace cpu
}  // namespace caffe

#endif  // CAFFE_UTIL_CPU_PARALLEL_HPP_
