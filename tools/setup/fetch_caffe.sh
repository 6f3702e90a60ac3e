#!/usr/bin/env bash
# Fetch BVLC Caffe (99bd997) as Debian's source package `caffe`, verify it, unpack it.
#
# Usage: fetch_caffe.sh DEST_DIR
# Uses a private apt sources list (bullseye deb-src) so the system's apt
# configuration is never touched.  The download is verified by sha256 and the
# tree is unpacked into a temporary directory that is renamed to DEST_DIR only
# when complete, so an interrupted run never leaves a tree that looks done.
set -euo pipefail
DEST=${1:?usage: fetch_caffe.sh DEST_DIR}
VERSION=1.0.0+git20180821.99bd997-8
ORIG=caffe_1.0.0+git20180821.99bd997.orig.tar.gz
ORIG_SHA=e0eb3f06794f7402c77b7dec8e8480273ee1a1bb192e9122b621a69d4147ad0c
DEB=caffe_${VERSION}.debian.tar.xz
DEB_SHA=07cf073227494a6b07234e40cb5df91db566616593eef9baafdc4d06ad159f21
MIRROR=${CAFFE_DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ -f "$DEST/.posenorm-fetched" ]; then
  echo "[fetch] Caffe source already at $DEST"
  exit 0
fi
command -v dpkg-source >/dev/null || { echo "[fetch] ERROR: dpkg-source missing: run tools/setup/install_deps.sh" >&2; exit 1; }

WORK=$(mktemp -d "${DEST%/}.tmp.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial" "$WORK/src"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bullseye main" \
  > "$WORK/apt/sources.list"
APT_OPTS=(
  -o "Dir::Etc::SourceList=$WORK/apt/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$WORK/apt/lists"
  -o "Dir::Cache=$WORK/apt/cache"
  -o "Debug::NoLocking=1"
)
echo "[fetch] apt-get update (private bullseye deb-src list)"
if ! apt-get "${APT_OPTS[@]}" update -qq >"$WORK/update.log" 2>&1; then
  cat "$WORK/update.log" >&2
  echo "[fetch] ERROR: could not reach Debian's archive ($MIRROR) for the caffe source package; check the network or set CAFFE_DEBIAN_MIRROR" >&2
  exit 1
fi
echo "[fetch] apt-get source caffe=$VERSION"
if ! (cd "$WORK/src" && apt-get "${APT_OPTS[@]}" source --download-only -qq "caffe=$VERSION" >"$WORK/source.log" 2>&1); then
  cat "$WORK/source.log" >&2
  echo "[fetch] ERROR: apt-get source caffe=$VERSION failed" >&2
  exit 1
fi
check() {
  local got
  got=$(sha256sum "$WORK/src/$1" | cut -d' ' -f1)
  if [ "$got" != "$2" ]; then
    echo "[fetch] ERROR: checksum mismatch for $1: got $got, want $2; refusing to build" >&2
    exit 1
  fi
}
check "$ORIG" "$ORIG_SHA"
check "$DEB" "$DEB_SHA"
echo "[fetch] sha256 verified; unpacking with Debian's patches"
(cd "$WORK/src" && dpkg-source --no-check -x "caffe_${VERSION}.dsc" caffe >"$WORK/unpack.log" 2>&1) \
  || { cat "$WORK/unpack.log" >&2; echo "[fetch] ERROR: dpkg-source -x failed" >&2; exit 1; }
touch "$WORK/src/caffe/.posenorm-fetched"
rm -rf "$DEST"
mkdir -p "$(dirname "$DEST")"
mv "$WORK/src/caffe" "$DEST"
echo "[fetch] Caffe source ready at $DEST"
