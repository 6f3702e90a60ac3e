#!/usr/bin/env bash
# Pack everything the GPU check needs that a bare GPU machine lacks, into one file.
#
# Usage: tools/gpu_bundle.sh OUT            (here, after `make build`)
#   ARCH=90        the one CUDA architecture to build for (an H200 is sm_90)
#   BUILD=build/gpu  the CUDA build to (re)use; configured for ARCH only
#   MAX_MB=50      refuse to write a bundle larger than this
#
# The target (docs/gpu_check.md) has the NVIDIA driver, a CUDA 13 toolkit and
# Python 3.12, but no package manager and none of Caffe's other libraries; it
# receives at most 64 MiB.  So OUT (a tar, gzip or xz) holds:
#   bin/caffe, bin/test.testbin   stripped, from BUILD; the gtest binary holds our
#                                 tests and Caffe's for our nets' layer types
#                                 (TESTS=all: Caffe's whole binary)
#   lib/                          every library they load per ldd, except glibc,
#                                 libstdc++/libgcc_s and the CUDA/driver ones
#                                 (gpu_check.sh finds those on the machine)
#   lib/compat/                   our libstdc++/libgcc_s, used only if the
#                                 machine's are older than the binaries need
#   caffe/src/caffe/test/test_data  the gtests' data (paths relative to it)
#   tests.txt                     gtest cases: ours, then Caffe's for the layer
#                                 types our joint nets use
#   plan.tsv, runs/, layers/      tools/gpu_bundle_data.py: nets + real images
#   BUNDLE.txt                    what, when, from which commit, for which arch
# Then tools/gpu_check.sh OUT OUTDIR runs on the GPU machine.
set -euo pipefail
OUT=${1:?usage: tools/gpu_bundle.sh OUT}
ARCH=${ARCH:-90}
MAX_MB=${MAX_MB:-50}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build/gpu}
JOBS=${JOBS:-$(nproc)}
PY=$ROOT/.venv/bin/python
say() { echo "[bundle] $*"; }
die() { echo "[bundle] ERROR: $*" >&2; exit 1; }
case "$ARCH" in ''|*[!0-9]*) die "ARCH must be one CUDA architecture number such as 90, not '$ARCH'";; esac
[ -x "$PY" ] || die "$PY missing: run \`make build\` first (the nets are made with the CPU pycaffe)"
OUT_ABS=$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")

# ---- 1. the CUDA build, for ARCH only
say "CUDA build in $BUILD for sm_$ARCH (logs $BUILD.*.log)"
cmake -S . -B "$BUILD" -DCPU_ONLY=OFF -DCUDA_ARCH_BIN="$ARCH" \
  -DPython3_EXECUTABLE="$PY" > "$BUILD.configure.log" 2>&1 \
  || { tail -20 "$BUILD.configure.log"; die "configure failed ($BUILD.configure.log)"; }
cmake --build "$BUILD" -j "$JOBS" > "$BUILD.build.log" 2>&1 \
  || { grep -m 10 -A5 -E "error" "$BUILD.build.log"; die "build failed ($BUILD.build.log)"; }
CB=$BUILD/caffe-build
# Caffe's test sources for the layer types of our joint nets (its neurons share one file).
NETS="prototxt/vgg16/joint_cbp_stage4_train.prototxt prototxt/small/joint_cbp_stage4_train.prototxt"
net_types() { grep -ohP '^  type: "\K\w+' $NETS | sort -u; }
snake() { sed -E 's/([a-z0-9])([A-Z])/\1_\2/g; s/([A-Z])([A-Z][a-z])/\1_\2/g' | tr 'A-Z' 'a-z'; }
if [ "${TESTS:-subset}" = all ]; then
  say "Caffe's whole gtest binary (TESTS=all)"
  cmake --build "$BUILD" --target caffe-testbin -j "$JOBS" > "$BUILD.testbin.log" 2>&1 \
    || { grep -m 10 -A5 -E "error" "$BUILD.testbin.log"; die "test binary failed ($BUILD.testbin.log)"; }
  TESTBIN=$CB/test/test.testbin
else
  # Only the sources the check runs: ours, Caffe's for our nets' layer types, gtest's main.
  # Objects come from Caffe's own generated makefile (same flags); the link line is its
  # own with the other objects left out.
  TD=src/caffe/test/CMakeFiles/test.testbin.dir
  [ -f "$CB/$TD/build.make" ] || die "$CB/$TD/build.make missing (a Makefile-generator build is needed; or TESTS=all)"
  srcs="test_caffe_main.cpp $(cd layers/src/caffe/test && ls test_*.cpp)"
  for t in $(net_types | sed -E 's/^(ReLU|Dropout|Sigmoid|TanH)$/Neuron/' | sort -u); do
    f=test_$(echo "$t" | snake)_layer.cpp
    [ -f "$BUILD/caffe/src/caffe/test/$f" ] && srcs="$srcs $f"
  done
  srcs=$(echo $srcs | tr ' ' '\n' | sort -u | paste -sd' ')
  say "gtest sources: $srcs"
  objs=$(for f in $srcs; do echo "$TD/$f.o"; done)
  { cmake --build "$CB" --target gtest -j "$JOBS" \
    && make -C "$CB" -f "$TD/build.make" -j "$JOBS" $objs; } > "$BUILD.testbin.log" 2>&1 \
    || { grep -m 10 -A5 -E "error" "$BUILD.testbin.log"; die "test objects failed ($BUILD.testbin.log)"; }
  keep=" $(for f in $srcs; do printf 'CMakeFiles/test.testbin.dir/%s.o ' "$f"; done)"
  link=$(tr ' ' '\n' < "$CB/$TD/link.txt" | awk -v keep="$keep" \
    '/\.o$/ && index(keep, " " $0 " ") == 0 {next} $0 == "../../../test/test.testbin" {$0 = "../../../test/test.subset.testbin"} {print}' \
    | paste -sd' ')
  (cd "$CB/src/caffe/test" && eval "$link") >> "$BUILD.testbin.log" 2>&1 \
    || { tail -20 "$BUILD.testbin.log"; die "linking the test binary failed ($BUILD.testbin.log)"; }
  TESTBIN=$CB/test/test.subset.testbin
fi
LIBCAFFE=$(ls "$CB"/lib/libcaffe.so.* | head -1)
if command -v cuobjdump >/dev/null; then
  archs=$(cuobjdump --list-elf "$LIBCAFFE" | grep -oE 'sm_[0-9]+' | sort -u | paste -sd' ')
  [ "$archs" = "sm_$ARCH" ] || die "$LIBCAFFE holds code for '$archs', not sm_$ARCH only"
fi

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/gpu_bundle.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
B=$STAGE/bundle
mkdir -p "$B/bin" "$B/lib/compat"

# ---- 2. binaries and libraries
cp "$CB/tools/caffe" "$B/bin/"
cp "$TESTBIN" "$B/bin/test.testbin"
cp "$LIBCAFFE" "$B/lib/"
# Left to the machine: glibc, the C++ runtime, CUDA and the driver.
SKIP='^(linux-vdso|ld-linux|libc|libm|libpthread|libdl|librt|libresolv|libutil|libstdc\+\+|libgcc_s|libcuda|libcudart|libcublas|libcublasLt|libcurand|libnvidia|libnccl)\.so'
for bin in "$B/bin/caffe" "$B/bin/test.testbin" "$B/lib/$(basename "$LIBCAFFE")"; do
  missing=$(ldd "$bin" | grep "not found" || true)
  [ -z "$missing" ] || die "$bin: unresolved here already: $missing"
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  if [[ ! $name =~ $SKIP ]] && [ ! -e "$B/lib/$name" ]; then cp -L "$path" "$B/lib/$name"; fi
done
for lib in libstdc++.so.6 libgcc_s.so.1; do
  cp -L "$(ldd "$B/bin/caffe" | awk -v n="$lib" '$1 == n {print $3}')" "$B/lib/compat/$lib"
done
strip --strip-unneeded "$B"/bin/* "$B"/lib/*.so* "$B"/lib/compat/*
say "$(ls "$B/lib" | grep -c '\.so') libraries: $(ls "$B/lib" | grep '\.so' | paste -sd' ')"

# ---- 3. gtest data and the cases to run
mkdir -p "$B/caffe/src/caffe/test"
cp -r "$BUILD/caffe/src/caffe/test/test_data" "$B/caffe/src/caffe/test/"
{
  grep -ohP '^(TYPED_)?TEST(_F|_CASE)?\(\K\w+' layers/src/caffe/test/*.cpp | sort -u | sed 's/^/ours\t/'
  # Caffe's cases are named after the layer type; its neurons share one.
  net_types | awk '
    BEGIN { split("CompactBilinear CoordinateTransfer KeypointSigmoidCrossEntropyLoss L2Normalize SignedSqrt", o)
            for (i in o) ours[o[i]] = 1
            split("ReLU Dropout Sigmoid TanH PReLU AbsVal BNLL Power Exp Log Threshold", n)
            for (i in n) neuron[n[i]] = 1 }
    !($1 in ours) { print "caffe\t" (($1 in neuron) ? "Neuron" : $1) "LayerTest" }' | sort -u
} > "$B/tests.txt"

# ---- 4. nets and real images (CPU pycaffe)
"$PY" tools/gpu_bundle_data.py --out "$B/gen" > "$STAGE/data.log" 2>&1 \
  || { cat "$STAGE/data.log"; die "tools/gpu_bundle_data.py failed"; }
mv "$B/gen/plan.tsv" "$B/gen/runs" "$B/gen/layers" "$B/" && rmdir "$B/gen"

cat > "$B/BUNDLE.txt" <<EOF
posenorm GPU bundle: tools/gpu_bundle.sh, $(date -u '+%Y-%m-%d %H:%M UTC')
commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')
arch sm_$ARCH; built with $(nvcc --version | tail -2 | head -1); $(gcc --version | head -1)
built on $(. /etc/os-release && echo "$PRETTY_NAME"), glibc $(ldd --version | head -1 | grep -oE '[0-9.]+$')
EOF

# ---- 5. pack, measure, refuse if too big
# gzip where it fits (a bare machine may lack xz, and python3 to read it), else xz.
(cd "$STAGE" && tar -cf - bundle | gzip -9 > "$STAGE/out.tar")
bytes=$(stat -c %s "$STAGE/out.tar"); FORMAT=gzip
if [ "$bytes" -gt $((MAX_MB * 1048576)) ]; then
  (cd "$STAGE" && tar -cf - bundle | xz -9 -T"$JOBS" > "$STAGE/out.tar")
  bytes=$(stat -c %s "$STAGE/out.tar"); FORMAT=xz
fi
unpacked=$(du -sb "$B" | cut -f1)
say "bundle ($FORMAT): $bytes bytes ($(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}') MiB), $(awk -v b="$unpacked" 'BEGIN {printf "%.1f", b / 1048576}') MiB unpacked"
(cd "$B" && du -ab bin lib runs layers | sort -k2) > "$STAGE/sizes.txt"
[ "$bytes" -le $((MAX_MB * 1048576)) ] || die "bundle is $bytes bytes, over MAX_MB=$MAX_MB MiB"
mkdir -p "$(dirname "$OUT_ABS")"
mv "$STAGE/out.tar" "$OUT_ABS.tmp" && mv "$OUT_ABS.tmp" "$OUT_ABS"
say "wrote $OUT_ABS; on the GPU machine: tools/gpu_check.sh $(basename "$OUT_ABS") OUTDIR"
