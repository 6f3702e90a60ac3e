#!/usr/bin/env bash
# Create the benchmark-only venv (ONNX Runtime, onnx, numpy) from hash-pinned wheels (idempotent).
# Usage: make_bench_venv.sh [PYTHON [VENV_DIR [REQUIREMENTS]]]
# Separate from .venv: onnxruntime needs a newer protobuf than pycaffe's. Nothing of
# posenorm or Caffe imports it; only tools/bench_conv.py runs its python as a child.
set -euo pipefail
PY=${1:-$(command -v /usr/bin/python3.11 || command -v python3.11 || true)}
VENV=${2:-.venv-bench}
REQ=${3:-$(dirname "$0")/requirements-bench.txt}
[ -n "$PY" ] && command -v "$PY" >/dev/null \
  || { echo "[bench-venv] ERROR: python3.11 not found (the pinned wheels are cp311)" >&2; exit 1; }
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ -f "$VENV/.requirements.sha256" ] && [ "$(cat "$VENV/.requirements.sha256")" = "$want" ] \
   && [ -x "$VENV/bin/python" ]; then
  echo "[bench-venv] $VENV up to date"
  exit 0
fi
[ -x "$VENV/bin/python" ] || { echo "[bench-venv] creating $VENV from $PY"; "$PY" -m venv "$VENV"; }
echo "[bench-venv] installing $REQ (--require-hashes, wheels only)"
# (this machine's pip config names local index folders that may be absent: hide those warnings)
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes --no-deps \
  --only-binary :all: -r "$REQ" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
[ "${PIPESTATUS[0]}" -eq 0 ] \
  || { echo "[bench-venv] ERROR: pip install -r $REQ failed (PyPI reachable? a cp311 x86_64 Linux host?)" >&2; exit 1; }
"$VENV/bin/python" -c "import onnxruntime, onnx, numpy; print('[bench-venv] ok: onnxruntime', onnxruntime.__version__, 'onnx', onnx.__version__, 'numpy', numpy.__version__)"
echo "$want" > "$VENV/.requirements.sha256"
