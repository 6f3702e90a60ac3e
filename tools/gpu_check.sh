#!/usr/bin/env bash
# The GPU half of the device check: run our CUDA code on a real GPU, once.
#
# Usage: tools/gpu_check.sh BUNDLE OUTDIR     (BUNDLE from tools/gpu_bundle.sh)
#   GPU=0             the device to use
#   CHECK_BUDGET=420  seconds for the tests and timings (the whole check,
#                     unpacking included, stays within 8 minutes)
#
# Needs only bash, coreutils, tar with gzip/xz (or python3), awk, grep -P and the NVIDIA
# driver with CUDA 13's cudart/cuBLAS/cuRAND (toolkit, or the NVIDIA wheels of
# a Python environment: both are searched).  Steps, each time-boxed, none
# stopping the others:
#   1. unpack; point the loader at the bundle's libraries and the machine's CUDA;
#      every library must resolve (ldd)
#   2. nvidia-smi, nvcc and driver/runtime versions, `caffe device_query`
#   3. gtest: our layers' GPU cases (GPU against CPU, gradient checks on the
#      GPU), then Caffe's own GPU cases for the layer types our nets use; a
#      crashing case is recorded and the rest run on
#   4. `caffe time --gpu` on the vgg16 and small joint train nets (real images)
#      and on each of our layers alone; `caffe train --gpu` a few iterations
#   5. OUTDIR/bench_gpu.md (the report; docs/bench_gpu.md is one) and OUTDIR/logs/
# Exit status 0 when every step passed.
set -uo pipefail
BUNDLE=${1:?usage: tools/gpu_check.sh BUNDLE OUTDIR}
OUTDIR=${2:?usage: tools/gpu_check.sh BUNDLE OUTDIR}
GPU=${GPU:-0}
BUDGET=${CHECK_BUDGET:-420}
T0=$SECONDS
[ -f "$BUNDLE" ] || { echo "error: bundle $BUNDLE not found" >&2; exit 1; }
mkdir -p "$OUTDIR/logs" || exit 1
OUTDIR=$(cd "$OUTDIR" && pwd)
LOGS=$OUTDIR/logs
REPORT=$OUTDIR/bench_gpu.md
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
FAILS=()
say() { echo "[check $((SECONDS - T0))s] $*"; }
left() { echo $((BUDGET - (SECONDS - T0))); }
# A step's time limit: its own cap, but never past the budget (min 5 s).
cap() { local l; l=$(left); [ "$l" -lt "$1" ] && echo $((l > 5 ? l : 5)) || echo "$1"; }
md() { printf '%s\n' "$@" >> "$REPORT.tmp"; }
fence() { md '```'; cat "$1" >> "$REPORT.tmp"; md '```'; }

# ---- 1. unpack; the loader
say "unpacking $BUNDLE"
if tar -C "$WORK" -xf "$BUNDLE" 2>"$LOGS/unpack.log"; then :  # GNU tar: gzip or xz
elif python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
       "$BUNDLE" "$WORK" 2>>"$LOGS/unpack.log"; then :
else echo "error: could not unpack $BUNDLE (log $LOGS/unpack.log)" >&2; exit 1; fi
B=$WORK/bundle
CAFFE=$B/bin/caffe
TESTBIN=$B/bin/test.testbin

cuda_dirs() {  # directories that may hold CUDA 13's libraries, best first
  local d
  for d in ${CUDA_HOME:-} ${CUDA_PATH:-} /usr/local/cuda /usr/local/cuda-13*; do
    [ -d "$d" ] && echo "$d/lib64" "$d/targets/x86_64-linux/lib"
  done
  python3 - <<'EOF' 2>/dev/null
import glob, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()] + [p for p in sys.path if p.endswith('-packages')]
for r in dict.fromkeys(roots):
    for d in sorted(glob.glob(r + '/nvidia/*/lib')) + sorted(glob.glob(r + '/nvidia/cu13/lib')):
        print(d)
EOF
  ldconfig -p 2>/dev/null | awk '/libcu(blas|rand|dart)\.so/ {sub(/\/[^\/]*$/, "", $NF); print $NF}'
}
unresolved() { { ldd "$CAFFE"; ldd "$TESTBIN"; } 2>&1 | awk '/not found/ {print $1}' | sort -u; }
export LD_LIBRARY_PATH=$B/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
add_dir() { case ":$LD_LIBRARY_PATH:" in *":$1:"*) ;; *) LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$1;; esac; }
DIRS=$(cuda_dirs)
for lib in $(unresolved); do
  found=
  for d in $DIRS; do [ -e "$d/$lib" ] && { found=$d; break; }; done
  # Last resort: anywhere on this file system (a wheel in some environment).
  [ -n "$found" ] || found=$(timeout 30 find / -xdev -name "$lib" -not -path '/proc/*' \
                               -not -path "$WORK/*" 2>/dev/null | head -1 | xargs -r dirname)
  [ -n "$found" ] && add_dir "$found"
done
# Our libstdc++ only if the machine's is older than the binaries need.
if ldd "$CAFFE" 2>&1 | grep -qE "GLIBCXX|CXXABI|GCC_[0-9]"; then
  LD_LIBRARY_PATH=$B/lib/compat:$LD_LIBRARY_PATH; COMPAT=" (bundled libstdc++: the machine's is older)"
fi
{ echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; ldd "$CAFFE"; echo; ldd "$TESTBIN"; } > "$LOGS/ldd.txt" 2>&1
MISSING=$(unresolved | paste -sd' ')
VERSION_ERR=$(grep -m3 "version \`" "$LOGS/ldd.txt" | paste -sd';')
if [ -n "$MISSING$VERSION_ERR" ]; then
  FAILS+=("libraries")
  say "UNRESOLVED: ${MISSING:-} ${VERSION_ERR:-}"
else
  say "every library resolves${COMPAT:-}"
fi
cuda_from() { ldd "$CAFFE" 2>/dev/null | awk -v n="$1" 'index($1, n) == 1 {print $3; exit}'; }

# ---- 2. the machine
say "nvidia-smi, versions, device_query"
{ nvidia-smi 2>&1 || echo "nvidia-smi failed"; } > "$LOGS/nvidia-smi.txt"
SMI=$(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader -i "$GPU" 2>/dev/null \
      | head -1 || true); SMI=${SMI:-nvidia-smi failed or missing}
NVCC=$({ nvcc --version || /usr/local/cuda/bin/nvcc --version; } 2>/dev/null | grep -m1 release || echo "nvcc not found")
GLOG=(env GLOG_logtostderr=1 GLOG_minloglevel=0)
timeout "$(cap 60)" "${GLOG[@]}" "$CAFFE" device_query --gpu "$GPU" > "$LOGS/device_query.log" 2>&1 \
  || FAILS+=("caffe device_query")
DEVICE_NAME=$(grep -m1 -oP 'Name:\s+\K.*' "$LOGS/device_query.log" || echo '?')
cat "$LOGS/nvidia-smi.txt"
echo "nvcc: $NVCC"
grep -oP '\] \K(Device id|Major revision number|Minor revision number|Name|Total global memory).*' \
  "$LOGS/device_query.log" || tail -3 "$LOGS/device_query.log"

# ---- 3. gtests
# Cases whose TypeParam is a GPUDevice, or with GPU in their name, for each
# case named in the bundle's tests.txt under the given origin.
gpu_cases() {  # origin -> gtest filter
  # This gtest lists no TypeParam: a case typed on TestDtypesAndDevices has
  # instances /0-/3, of which /2 and /3 are the GPU ones (test_caffe_main.hpp);
  # cases on TestDtypes run on the GPU when their name says so.
  awk -F'\t' -v o="$1" 'NR == FNR { if ($1 == o) want[$2] = 1; next }
    /^[^ ].*\.$/ { c = $1; sub(/\.$/, "", c); base = c; idx = -1
      if (match(c, /\/[0-9]+$/)) { idx = substr(c, RSTART + 1) + 0; base = substr(c, 1, RSTART - 1) }
      if (!(base in want)) next
      n++; cs[n] = c; bs[n] = base; is[n] = idx; if (idx > mx[base] + 0) mx[base] = idx }
    END { for (k = 1; k <= n; k++) if (bs[k] ~ /GPU/ || (mx[bs[k]] == 3 && is[k] >= 2))
            printf "%s%s.*", (m++ ? ":" : ""), cs[k] }' "$B/tests.txt" "$LOGS/gtest-list.txt"
}
GTEST_ROWS=()
run_gtests() {  # name filter cap
  local name=$1 filter=$2 end=$((SECONDS + $3)) log=$LOGS/gtest-$1.log round rc skip last pass fail note
  : > "$log"
  if [ -z "$filter" ]; then
    GTEST_ROWS+=("| $name | 0 | 0 | no GPU cases found |"); FAILS+=("gtest $name: no cases"); return
  fi
  # A CHECK failure aborts the binary: note the case that was running, go on without it.
  for round in 1 2 3 4 5; do
    skip=$(grep -oP '^\[ +(OK|FAILED|CRASHED) +\] \K[A-Za-z]\S*' "$log" | sort -u | paste -sd:)
    (cd "$B/caffe" && timeout "$(cap $((end - SECONDS > 5 ? end - SECONDS : 5)))" "$TESTBIN" "$GPU" \
       --gtest_filter="$filter${skip:+-$skip}") > "$log.round" 2>&1
    rc=$?
    cat "$log.round" >> "$log"
    # Finished (passed or not): gtest printed its summary.
    if [ $rc -eq 0 ] || grep -q '^\[==========\] .* ran\.' "$log.round"; then break; fi
    last=$(grep -oP '^\[ RUN +\] \K\S+' "$log.round" | tail -1)
    if [ -z "$last" ] || [ $rc -eq 124 ] || [ $SECONDS -ge $end ]; then
      echo "[ STOPPED  ] ${last:-before any case} (exit $rc$([ $rc -eq 124 ] && echo ', time limit'))" >> "$log"; break
    fi
    echo "[ CRASHED  ] $last (exit $rc)" >> "$log"
  done
  rm -f "$log.round"
  pass=$(grep -oP '^\[       OK \] \K\S+' "$log" | sort -u | wc -l)
  fail=$(grep -oP '^\[ +(FAILED|CRASHED) +\] \K[A-Za-z]\S*' "$log" | sort -u | wc -l)
  note=$(grep -oP '^\[ +(FAILED|CRASHED|STOPPED) +\] \K[A-Za-z].*' "$log" | sed 's/ ([0-9]* ms)$//; s/|/\\|/g' \
         | sort -u | head -8 | paste -sd';')
  if [ "$fail" -ne 0 ] || grep -q '^\[ STOPPED' "$log"; then FAILS+=("gtest $name"); fi
  GTEST_ROWS+=("| $name | $pass | $fail | ${note:-} |")
  say "gtest $name: $pass passed, $fail failed"
}
timeout 60 "$TESTBIN" --gtest_list_tests > "$LOGS/gtest-list.txt" 2>&1
run_gtests ours "$(gpu_cases ours)" "$(cap 150)"
run_gtests caffe "$(gpu_cases caffe)" "$(cap 120)"

# ---- 4. caffe time / caffe train on the GPU
TIME_ROWS=()
n_rows=$(wc -l < "$B/plan.tsv")
row_i=0
while IFS=$'\t' read -r name dir proto iters what ours; do
  row_i=$((row_i + 1))
  log=$LOGS/time-$name.log
  # Share the rest of the budget among the remaining nets (keep 40 s for training).
  per=$(( ($(left) - 40) / (n_rows - row_i + 1) ))
  [ "$per" -lt 10 ] && per=10
  (cd "$B/$dir" && timeout "$per" "${GLOG[@]}" "$CAFFE" time --model "$proto" --gpu "$GPU" \
     --iterations "$iters") > "$log" 2>&1
  rc=$?
  # (caffe time prints its Forward-Backward average in whole ms: add the two passes instead)
  read -r fwd bwd tot < <(awk '/Average Forward pass:/ {f = $(NF-1); n++} /Average Backward pass:/ {b = $(NF-1); n++}
                                 END {if (n == 2) print f+0, b+0, f+b; else print "-", "-", 0}' "$log")
  mine=$(awk -v ours="$ours" 'BEGIN { n = split(ours, o, ","); for (i = 1; i <= n; i++) w[o[i]] = 1 }
           /\t(forward|backward): [0-9.]+ ms\./ { split($0, a, "\t"); nm = a[1]; sub(/.*\] */, "", nm)
             if (nm in w) { split(a[2], v, " "); s += v[2] } } END { printf "%.3f", s }' "$log")
  if [ $rc -ne 0 ] || [ "$tot" = 0 ]; then
    FAILS+=("caffe time $name")
    err=$(grep -m1 -oP '^F\d+ .*?\] \K.*' "$log" | sed 's/|/\\|/g'); [ $rc -eq 124 ] && err="timed out after ${per}s"
    TIME_ROWS+=("| $name | $what | FAILED: ${err:-exit $rc} | | | |")
  else
    share=$(awk -v m="$mine" -v t="$tot" 'BEGIN { printf "%.3f (%.1f%%)", m, t > 0 ? 100 * m / t : 0 }')
    TIME_ROWS+=("| $name | $what | $fwd | $bwd | $tot | $share |")
  fi
  say "caffe time $name: fwd $fwd bwd $bwd total $tot ms (rc $rc)"
done < "$B/plan.tsv"

log=$LOGS/train-small.log
(cd "$B/runs/small" && timeout "$(cap 60)" "${GLOG[@]}" "$CAFFE" train --solver solver.prototxt \
   --gpu "$GPU") > "$log" 2>&1
rc=$?
losses=$(grep -oP 'Iteration \d+ \([^)]*\), loss = \K\S+' "$log" | paste -sd' ')
[ -n "$losses" ] || losses=$(grep -oP 'Iteration \d+, loss = \K\S+' "$log" | paste -sd' ')
rate=$(grep -oP 'Iteration \d+ \(\K[0-9.]+(?= iter/s)' "$log" | tail -1)
first=${losses%% *}; last=${losses##* }
if [ $rc -ne 0 ] || [ -z "$losses" ] || echo "$losses" | grep -qiE 'nan|inf'; then
  FAILS+=("caffe train --gpu"); TRAIN_OK=FAILED
else TRAIN_OK=ok; fi
say "caffe train: $TRAIN_OK, loss $first -> $last"

# ---- 5. the report
NCCL=$(ldd "$CAFFE" 2>/dev/null | grep -q libnccl && echo "linked" || echo "not linked (USE_NCCL off)")
: > "$REPORT.tmp"
md "# GPU check (tools/gpu_check.sh)" ""
md "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); host: $(hostname); wall time $((SECONDS - T0)) s of a $BUDGET s budget"
md "- bundle: $(basename "$BUNDLE"), $(stat -c %s "$BUNDLE") bytes; $(head -3 "$B/BUNDLE.txt" | tail -2 | paste -sd';' -)"
md "- GPU $GPU: ${SMI:-?} (device_query: $DEVICE_NAME)"
md "- CUDA: $NVCC; cudart $(cuda_from libcudart), cuBLAS $(cuda_from libcublas.), cuRAND $(cuda_from libcurand)"
md "- libraries: ${MISSING:+UNRESOLVED $MISSING }${VERSION_ERR:+$VERSION_ERR }${MISSING:-${VERSION_ERR:-all resolve}}${COMPAT:-}"
md "- NCCL: $NCCL. One GPU lent: multi-GPU training (\`caffe train --gpu 0,1\`) is compile-checked only, not run."
md "- result: $([ ${#FAILS[@]} -eq 0 ] && echo "every step passed" || echo "FAILED: ${FAILS[*]}")" ""
md "## gtest (GPU cases; logs/gtest-*.log)" ""
md "ours: every GPU-typed case and GPU-vs-CPU agreement case of layers/src/caffe/test; caffe: Caffe's own GPU cases for the layer types of the joint nets (\`$(awk -F'\t' '$1 == "caffe" {print $2}' "$B/tests.txt" | paste -sd' ')\`)." ""
md "| cases | passed | failed | failures |" "|---|---:|---:|---|" "${GTEST_ROWS[@]}" ""
md "## caffe time --gpu $GPU (ms per iteration, averages; logs/time-*.log)" ""
md "Whole nets: the checked-in joint train nets on real CUB images (LMDBs in the bundle); \"ours\" sums the forward and backward of our layers in the net. Layers alone: DummyData bottoms at their shapes in the joint nets, and tools/bench_layers.py's reference shapes (d = 8192; Tensor Sketch on a K40, quoted there: 118 ms fwd / 204 ms bwd at 32x512x28x28)." ""
md "| net | what | forward | backward | fwd+bwd | ours |" "|---|---|---:|---:|---:|---:|" "${TIME_ROWS[@]}" ""
md "## caffe train --gpu $GPU (logs/train-small.log)" ""
md "small joint_cbp_stage4, real images, solver_mode CPU in the solver overridden by --gpu: $TRAIN_OK; $(grep -c 'Iteration [0-9]*.*loss = ' "$log") iterations logged, loss $first -> $last${rate:+, $rate iter/s at the end}." ""
md "## nvidia-smi" ""
fence "$LOGS/nvidia-smi.txt"
mv "$REPORT.tmp" "$REPORT"
sed '/^## nvidia-smi/,$d' "$REPORT"
say "report: $REPORT"
[ ${#FAILS[@]} -eq 0 ]
