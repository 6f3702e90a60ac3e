#!/usr/bin/env bash
# Every test of `make test`, in order of cost; prints one total at the end.
#   1. nvcc compiles each of our .cu files (a real test of the CUDA code)
#   2. gtest: our layers' tests, then Caffe's own suite (CPU), on our build
#   3. pytest: pycaffe's own python/caffe/test, then our tests/
# Usage: tests/run_all.sh BUILD_DIR [JOBS]     (after `make build`)
set -uo pipefail
BUILD=${1:-build/cpu}; JOBS=${2:-$(nproc)}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=.venv/bin/python
export PATH="$ROOT/.venv/bin:$PATH"
passed=0; failed=0; failures=()
step() { echo; echo "==== $*"; }
count_gtest() {  # log name
  local p f
  p=$(grep -oP '^\[  PASSED  \] \K[0-9]+' "$1" | tail -1); p=${p:-0}
  f=$(grep -oP '^\[  FAILED  \] \K[0-9]+(?= tests?, listed below)' "$1" | tail -1); f=${f:-0}
  passed=$((passed + p)); failed=$((failed + f))
  echo "[gtest] $2: $p passed, $f failed"
}
count_pytest() {  # log name
  local line p f e
  line=$(grep -E '(passed|failed|error).* in [0-9.]+s' "$1" | tail -1)
  p=$(grep -oP '[0-9]+(?= passed)' <<<"$line"); f=$(grep -oP '[0-9]+(?= failed)' <<<"$line")
  e=$(grep -oP '[0-9]+(?= error)' <<<"$line")
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0} + ${e:-0}))
}

step "nvcc: compile our CUDA code"
if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
  if cmake --build "$BUILD" --target cuda_check -j "$JOBS" > "$BUILD.cuda_check.log" 2>&1; then
    n=$(ls "$BUILD"/cuda-check/*.o | wc -l)
    echo "[nvcc] $n .cu files compiled"; passed=$((passed + n))
  else
    tail -40 "$BUILD.cuda_check.log"; failed=$((failed + 1)); failures+=("nvcc compile check")
  fi
else
  echo "[nvcc] SKIPPED: no nvcc on this machine, the CUDA code was not compiled"
fi

step "gtest: build Caffe's test binary (log: $BUILD.testbin.log)"
if ! cmake --build "$BUILD" --target caffe-testbin -j "$JOBS" > "$BUILD.testbin.log" 2>&1; then
  grep -m 20 -A5 "error" "$BUILD.testbin.log"; echo "total: $passed passed, $((failed + 1)) failed"; exit 1
fi
TESTBIN="$BUILD/caffe-build/test/test.testbin"
ours=$(grep -ohP '^(TYPED_)?TEST(_F|_CASE)?\(\K\w+' layers/src/caffe/test/*.cpp | sort -u | sed 's/$/*/' | paste -sd:)

step "gtest: our layers ($ours)"
# Caffe's tests read test data by paths relative to its source root.
(cd "$BUILD/caffe" && "$ROOT/$TESTBIN" --gtest_filter="$ours:-*GPU*") \
  > "$BUILD.gtest-ours.log" 2>&1 || failures+=("gtest (ours)")
grep -E '^\[  (FAILED|PASSED)' "$BUILD.gtest-ours.log" | head -20; count_gtest "$BUILD.gtest-ours.log" ours

step "gtest: Caffe's own suite, CPU (log: $BUILD.gtest-caffe.log)"
(cd "$BUILD/caffe" && "$ROOT/$TESTBIN" --gtest_filter="-*GPU*:$ours") \
  > "$BUILD.gtest-caffe.log" 2>&1 || failures+=("gtest (Caffe)")
grep -E '^\[  FAILED' "$BUILD.gtest-caffe.log" | head -20; count_gtest "$BUILD.gtest-caffe.log" caffe

step "pytest: pycaffe's own python/caffe/test"
(cd "$BUILD/caffe/python" && "$ROOT/$PY" -m pytest -q -p no:cacheprovider caffe/test) \
  > "$BUILD.pytest-pycaffe.log" 2>&1 || failures+=("pycaffe tests")
tail -3 "$BUILD.pytest-pycaffe.log"; count_pytest "$BUILD.pytest-pycaffe.log"

step "pytest: our tests/"
"$PY" -m pytest -q -m "not slow" tests 2>&1 | tee "$BUILD.pytest-ours.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failures+=("our pytest")
count_pytest "$BUILD.pytest-ours.log"

echo
if [ ${#failures[@]} -gt 0 ]; then echo "FAILED steps: ${failures[*]}"; fi
echo "total: $passed passed, $failed failed"
[ ${#failures[@]} -eq 0 ] && [ "$failed" -eq 0 ]
