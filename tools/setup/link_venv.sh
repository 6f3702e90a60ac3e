#!/usr/bin/env bash
# Make the venv see our Caffe: `caffe` in .venv/bin, pycaffe and posenorm via a .pth.
# Usage: link_venv.sh VENV CAFFE_BUILD_DIR PROJECT_DIR
set -euo pipefail
VENV=$(cd "${1:?}" && pwd); BUILD=$(cd "${2:?}" && pwd); PROJECT=$(cd "${3:?}" && pwd)
tool="$BUILD/caffe-build/tools/caffe"
[ -x "$tool" ] || { echo "[link] ERROR: $tool missing: the Caffe build did not finish" >&2; exit 1; }
ln -sfn "$tool" "$VENV/bin/caffe"
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n%s\n' "$BUILD/caffe/python" "$PROJECT/python" > "$site/posenorm.pth.tmp"
mv "$site/posenorm.pth.tmp" "$site/posenorm.pth"
echo "[link] .venv: caffe -> $tool; import caffe -> $BUILD/caffe/python"
