#!/usr/bin/env bash
# Create .venv from a CPython 3.11 and install the pinned requirements (idempotent).
# Usage: make_venv.sh PYTHON VENV_DIR REQUIREMENTS
set -euo pipefail
PY=${1:?usage: make_venv.sh PYTHON VENV REQUIREMENTS}; VENV=${2:?}; REQ=${3:?}
if ! command -v "$PY" >/dev/null; then
  echo "[venv] ERROR: $PY not found: pycaffe needs CPython 3.11 (Debian 12: apt-get install python3-dev python3-venv)" >&2
  exit 1
fi
ver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$ver" != "3.11" ]; then
  echo "[venv] ERROR: $PY is Python $ver; pycaffe links Debian's Boost.Python, which is built for CPython 3.11. Pass PYTHON=/path/to/python3.11." >&2
  exit 1
fi
# Built from its sdist against Debian's libvlfeat-dev, without build isolation
# (it needs the venv's Cython and numpy); part of the venv's fingerprint.
POST_REQ="cyvlfeat==0.7.1"
want=$( { cat "$REQ"; echo "$POST_REQ"; } | sha256sum | cut -d' ' -f1)
if [ -f "$VENV/.requirements.sha256" ] && [ "$(cat "$VENV/.requirements.sha256")" = "$want" ] \
   && [ -x "$VENV/bin/python" ]; then
  echo "[venv] $VENV up to date"
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[venv] creating $VENV from $PY"
  "$PY" -m venv "$VENV"
fi
echo "[venv] installing $REQ"
# (this machine's pip config names local index folders that may be absent: hide those warnings)
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" 2>&1 \
  | { grep -v "^WARNING: Location 'file:" || true; }
[ "${PIPESTATUS[0]}" -eq 0 ] \
  || { echo "[venv] ERROR: pip install -r $REQ failed (is PyPI reachable?)" >&2; exit 1; }
echo "[venv] building $POST_REQ from its sdist (VLFeat SIFT)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation \
  --no-binary cyvlfeat "$POST_REQ" 2>&1 | { grep -v "^WARNING: Location 'file:\|DEPRECATION" || true; }
[ "${PIPESTATUS[0]}" -eq 0 ] \
  || { echo "[venv] ERROR: building $POST_REQ failed (needs libvlfeat-dev: tools/setup/install_deps.sh)" >&2; exit 1; }
echo "$want" > "$VENV/.requirements.sha256"
