#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "caffe/common.hpp"
#include "caffe/util/cpu_parallel.hpp"

// Weak: Caffe may be linked with a BLAS that lacks them.
extern "C" {
void openblas_set_num_threads(int) __attribute__((weak));
int openblas_get_num_threads(void) __attribute__((weak));
}

namespace caffe {
namespace cpu {

namespace {

int env_threads(const char* name) {
  const char* v = std::getenv(name);
  int n = v ? std::atoi(v) : 0;
  return n > 0 ? n : 0;
}

thread_local bool in_parallel = false;

// Workers sleep between jobs; a job is one function run by every thread.
class Pool {
 public:
  static Pool& get() {
    static Pool* pool = new Pool();  // never destroyed: no join at exit
    return *pool;
  }

  void run(int nthreads, const std::function<void(int, int)>& fn) {
    std::lock_guard<std::mutex> job_lock(job_mutex_);  // one job at a time
    {
      std::unique_lock<std::mutex> lock(mutex_);
      while (static_cast<int>(workers_.size()) < nthreads - 1) {
        int tid = static_cast<int>(workers_.size()) + 1;
        workers_.push_back(std::thread(&Pool::work, this, tid));
      }
      fn_ = &fn;
      nthreads_ = nthreads;
      pending_ = nthreads - 1;
      ++generation_;
    }
    wake_.notify_all();
    in_parallel = true;
    fn(0, nthreads);
    in_parallel = false;
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    fn_ = NULL;
  }

 private:
  void work(int tid) {
    in_parallel = true;
    unsigned long seen = 0;
    for (;;) {
      const std::function<void(int, int)>* fn;
      int nthreads;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        fn = fn_;
        nthreads = nthreads_;
      }
      if (tid >= nthreads) continue;  // this job needs fewer threads
      (*fn)(tid, nthreads);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex job_mutex_, mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int, int)>* fn_ = NULL;
  int nthreads_ = 0;
  int pending_ = 0;
  unsigned long generation_ = 0;
};

}  // namespace

int num_threads() {
  int n = 0;
  if (openblas_get_num_threads) {
    n = openblas_get_num_threads();
  } else {
    n = env_threads("OMP_NUM_THREADS");
    if (!n) n = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  }
  return std::max(1, n);
}

void parallel(int nthreads, const std::function<void(int, int)>& fn) {
  if (nthreads <= 1 || in_parallel) {
    for (int t = 0; t < std::max(1, nthreads); ++t) fn(t, nthreads);
    return;
  }
  Pool::get().run(nthreads, fn);
}

void parallel_for(long n, const std::function<void(long, long)>& fn,
                  long min_per_thread) {
  int nthreads = static_cast<int>(std::min<long>(
      num_threads(), n / std::max(1L, min_per_thread)));
  if (nthreads <= 1 || in_parallel) {
    if (n > 0) fn(0, n);
    return;
  }
  parallel(nthreads, [&](int tid, int nt) {
    long begin = chunk_begin(n, tid, nt), end = chunk_begin(n, tid + 1, nt);
    if (begin < end) fn(begin, end);
  });
}

SingleThreadedBlas::SingleThreadedBlas(bool active) : saved_(0) {
  if (active && openblas_get_num_threads && openblas_set_num_threads) {
    saved_ = openblas_get_num_threads();
    if (saved_ > 1) openblas_set_num_threads(1);
  }
}

SingleThreadedBlas::~SingleThreadedBlas() {
  if (saved_ > 1) openblas_set_num_threads(saved_);
}

bool use_reference_engine() {
  const char* v = std::getenv("POSENORM_CPU_ENGINE");
  if (!v || !*v || !std::strcmp(v, "fast")) return false;
  CHECK(!std::strcmp(v, "reference"))
      << "POSENORM_CPU_ENGINE=" << v << ": expected 'fast' or 'reference'";
  return true;
}

}  // namespace cpu
}  // namespace caffe
