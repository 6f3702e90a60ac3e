"""Atomic file and directory writes: build beside the target, then rename.

A crash, Ctrl-C or full disk never leaves a half-written dataset, LMDB set or
model file where a later step would mistake it for a finished one: readers
see either the old complete target or the new complete one.
"""
import contextlib
import os
import shutil


def atomic_save(path, save):
    """Call save(tmp) on a temporary file beside `path`, then rename it over
    `path`: readers see the old file or the complete new one, never a part."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = '%s.tmp-%d' % (path, os.getpid())
    try:
        save(tmp)
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_bytes(path, data):
    """Write `data` to `path` via a temporary file in the same directory."""
    def write(tmp):
        with open(tmp, 'wb') as f:
            f.write(data)
    atomic_save(path, write)


def atomic_write_text(path, text):
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode('utf-8'))


def refuse_existing(path, force, what='output'):
    """Raise FileExistsError unless `path` is absent or `force` is set."""
    if os.path.lexists(path) and not force:
        raise FileExistsError('%s %s already exists; pass --force (force=True) '
                              'to replace it' % (what, path))


@contextlib.contextmanager
def atomic_directory(path, force=False):
    """Yield a fresh `<path>.tmp` directory; rename it to `path` on success.

    Refuses to replace an existing `path` unless `force`.  On any exception
    the temporary directory is removed and `path` is left as it was.  A stale
    `<path>.tmp` from an earlier crash is discarded first.
    """
    path = os.path.abspath(os.fspath(path))
    refuse_existing(path, force)
    tmp = path + '.tmp'
    if os.path.lexists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.lexists(path):
        refuse_existing(path, force)  # someone created it while we worked
        old = path + '.old'
        if os.path.lexists(old):
            shutil.rmtree(old)
        os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old)
    else:
        os.rename(tmp, path)
