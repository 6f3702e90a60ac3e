#!/usr/bin/env bash
# Rehearse tools/gpu_check.sh here, on a machine as bare as the GPU one.
#
# Usage: tools/gpu_rehearse.sh BUNDLE OUTDIR     (root; after tools/gpu_bundle.sh)
#   ROOTFS=/tmp/posenorm-bare-root   made once with debootstrap (Debian minbase:
#                                    no python3, no xz, none of Caffe's libraries)
#
# In a chroot of that root, under `env -i`, with only:
#   /check/tree          the project's tracked files (what travels with the bundle)
#   /check/bundle.tar    the bundle
#   /usr/local/cuda-13.0 this machine's CUDA toolkit, bind-mounted read-only
#   /opt/pyenv/lib/python3.12/site-packages/nvidia/cu13/lib
#                        cuBLAS/cuRAND from the pinned wheels (build/gpu/cuda-libs),
#                        where a PyTorch environment's NVIDIA wheels put them
# it runs `tools/gpu_check.sh /check/bundle.tar /check/out`.  Without a GPU the
# GPU cases and timings fail, but every library must resolve and the script
# must run to its report, which is copied to OUTDIR.
set -euo pipefail
BUNDLE=$(cd "$(dirname "${1:?usage: tools/gpu_rehearse.sh BUNDLE OUTDIR}")" && pwd)/$(basename "$1")
OUTDIR=${2:?usage: tools/gpu_rehearse.sh BUNDLE OUTDIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
R=${ROOTFS:-/tmp/posenorm-bare-root}
CUDA=$(readlink -f /usr/local/cuda)
CUDA_LIBS=$ROOT/build/gpu/cuda-libs/lib
say() { echo "[rehearse] $*"; }
[ "$(id -u)" = 0 ] || { echo "[rehearse] ERROR: needs root (debootstrap, chroot, mount)" >&2; exit 1; }
[ -d "$CUDA_LIBS" ] || { echo "[rehearse] ERROR: $CUDA_LIBS missing (tools/gpu_bundle.sh builds it)" >&2; exit 1; }
if [ ! -x "$R/bin/bash" ]; then
  command -v debootstrap >/dev/null || apt-get install -y -q debootstrap
  say "debootstrap --variant=minbase bookworm $R"
  debootstrap --variant=minbase bookworm "$R" http://deb.debian.org/debian > "$R.log" 2>&1 \
    || { tail -5 "$R.log"; exit 1; }
fi
rm -rf "$R/check" "$R/opt/pyenv" "$R/tmp/"gpu_check.*
mkdir -p "$R/check/tree" "$R$CUDA" "$R/opt/pyenv/lib/python3.12/site-packages/nvidia/cu13/lib"
ln -sfn "$CUDA" "$R/usr/local/cuda"
(cd "$ROOT" && git ls-files -z | xargs -0 tar -cf - --no-recursion) | tar -C "$R/check/tree" -xf -
cp "$BUNDLE" "$R/check/bundle.tar"
cp -a "$CUDA_LIBS/." "$R/opt/pyenv/lib/python3.12/site-packages/nvidia/cu13/lib/"
cleanup() { umount "$R$CUDA" 2>/dev/null || true; umount "$R/proc" 2>/dev/null || true; }
trap cleanup EXIT
mount --bind -o ro "$CUDA" "$R$CUDA"
mount -t proc proc "$R/proc"
say "chroot $R, env -i: tools/gpu_check.sh /check/bundle.tar /check/out"
set +e
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb \
  chroot "$R" /bin/bash -c 'cd /check/tree && bash tools/gpu_check.sh /check/bundle.tar /check/out'
rc=$?
set -e
mkdir -p "$OUTDIR"
cp -r "$R/check/out/." "$OUTDIR/"
say "gpu_check.sh exit $rc; report and logs in $OUTDIR"
