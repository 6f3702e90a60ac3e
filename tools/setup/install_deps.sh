#!/usr/bin/env bash
# Install the Debian packages Caffe needs (idempotent). Runs as root or via sudo.
set -euo pipefail
PKGS=(
  build-essential cmake dpkg-dev ccache
  libboost-system-dev libboost-thread-dev libboost-filesystem-dev libboost-python-dev
  libgoogle-glog-dev libgflags-dev libprotobuf-dev protobuf-compiler
  libhdf5-dev libopenblas-dev liblmdb-dev graphviz
  python3-dev python3-venv
  libvlfeat-dev
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "[deps] all ${#PKGS[@]} Debian packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "[deps] ERROR: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "[deps] installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get update -qq; then
  echo "[deps] ERROR: apt-get update failed: is Debian's archive reachable? Fix the network or apt sources, then re-run 'make build'." >&2
  exit 1
fi
if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
  echo "[deps] ERROR: apt-get install failed for: ${missing[*]}" >&2
  exit 1
fi
echo "[deps] done"
