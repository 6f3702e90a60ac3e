#!/usr/bin/env bash
# Unpack cuBLAS/cuRAND (CUDA 13) from their pinned PyPI wheels into DEST.
# Usage: get_cuda_libs.sh DEST [all|headers]
# DEST/include gets the headers; DEST/lib the libraries with unversioned links.
set -euo pipefail
DEST=${1:?usage: get_cuda_libs.sh DEST [all|headers]}
MODE=${2:-all}  # all | headers
HERE=$(cd "$(dirname "$0")" && pwd)
STAMP="$DEST/.complete-$MODE"
[ -f "$STAMP" ] && exit 0
[ "$MODE" = "headers" ] && [ -f "$DEST/.complete-all" ] && exit 0
PY=${PYTHON:-python3}
TMP=$(mktemp -d "${DEST%/}.tmp.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
echo "[cuda-libs] downloading pinned nvidia-cublas / nvidia-curand wheels"
if ! "$PY" -m pip download -q --no-deps --require-hashes -r "$HERE/requirements-cuda.txt" -d "$TMP/whl"; then
  echo "[cuda-libs] ERROR: could not download the cuBLAS/cuRAND wheels from PyPI" >&2
  exit 1
fi
mkdir -p "$TMP/out/include" "$TMP/out/lib"
for whl in "$TMP"/whl/*.whl; do
  if [ "$MODE" = "headers" ]; then
    (cd "$TMP" && "$PY" -m zipfile -e "$whl" x >/dev/null && cp -r x/nvidia/cu13/include/. out/include/ && rm -rf x)
  else
    (cd "$TMP" && "$PY" -m zipfile -e "$whl" x >/dev/null && cp -r x/nvidia/cu13/include/. out/include/ \
      && cp -r x/nvidia/cu13/lib/. out/lib/ && rm -rf x)
  fi
done
(cd "$TMP/out/lib" && for f in *.so.*; do [ -e "$f" ] && ln -sf "$f" "${f%%.so.*}.so"; done; true)
touch "$TMP/out/.complete-$MODE"
rm -rf "$DEST"; mkdir -p "$(dirname "$DEST")"; mv "$TMP/out" "$DEST"
echo "[cuda-libs] ready in $DEST"
