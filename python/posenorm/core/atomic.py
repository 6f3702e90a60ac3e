"""Atomic file and directory writes: build beside the target, then rename.

A crash, Ctrl-C or full disk never leaves a half-written dataset, LMDB set or
model file where a later step would mistake it for a finished one: readers
see either the old complete target or the new complete one.
"""
import contextlib
import errno
import glob
import os
import shutil
import tempfile


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
def atomic_directory(path, force=False, inputs=(), marker=None):
    """Yield a fresh temporary directory beside `path`; rename it to `path`
    on success.

    Refuses to replace an existing `path` unless `force`, and even then
    unless it is a real directory holding `marker` (when given, e.g. the
    manifest.json every LMDB set has): --force replaces an output of ours,
    never a user's directory that happens to have its name.  `inputs`: paths
    the output may not be, contain or sit inside (`check_disjoint`).  The
    temporary directory has a unique name (`.<name>.tmp-<pid>-XXXX`, marked
    as ours inside); on any exception it is removed and `path` is left as it
    was.  Stale temporaries of dead builds are removed only when they carry
    our mark; a user's `<path>.tmp` or `<path>.old` is never touched.
    """
    path = os.path.abspath(os.fspath(path))
    check_disjoint(path, inputs)
    check_replaceable(path, force, marker)
    parent, base = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    _remove_stale(parent, base)
    tmp = _make_temp_dir(parent, '.%s.tmp-%d-' % (base, os.getpid()))
    try:
        with open(os.path.join(tmp, PARTIAL_MARKER), 'w') as f:
            f.write('%s %d\n' % (os.uname().nodename, os.getpid()))
        yield tmp
        os.remove(os.path.join(tmp, PARTIAL_MARKER))
        if os.path.lexists(path):
            check_replaceable(path, force, marker)  # someone created it while we worked
            old = _make_temp_dir(parent, '.%s.old-' % base)
            os.rename(path, os.path.join(old, base))
            os.rename(tmp, path)
            shutil.rmtree(old)
        else:
            os.rename(tmp, path)
    except BaseException as e:
        full = _disk_full(tmp, e)
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        if full:
            raise DiskFullError('no space left on %s while writing %s (nothing of it was kept): '
                                'free some space and run again' % (full, path)) from None
        raise


class DiskFullError(OSError):
    """The file system filled up while we wrote an output."""


# An I/O error with less than this free is a full disk (LMDB reports one as
# "Input/output error", without errno).
DISK_FULL_BYTES = 16 << 20


def _disk_full(path, error):
    """'<mount point> (device D, N bytes free)' when `error` is an I/O error
    from a file system that is full, else None."""
    io = isinstance(error, OSError) or type(error).__module__ == 'lmdb'
    if not io or isinstance(error, DiskFullError):
        return None
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    free = st.f_bavail * st.f_frsize
    if getattr(error, 'errno', None) != errno.ENOSPC and free >= DISK_FULL_BYTES:
        return None
    mount = os.path.realpath(path)
    while not os.path.ismount(mount):
        mount = os.path.dirname(mount)
    device = '?'
    with contextlib.suppress(OSError), open('/proc/mounts') as f:
        for line in f:
            fields = line.split()
            if len(fields) > 1 and fields[1] == mount:
                device = fields[0]
    return '%s (device %s, %d bytes free)' % (mount, device, free)


PARTIAL_MARKER = '.posenorm-partial'


def _inside(path, root):
    return os.path.commonpath([path, root]) == root


def check_disjoint(out, inputs, what='output'):
    """Raise ValueError if `out` is, contains or lies inside one of `inputs`
    (symbolic links resolved): writing it could delete or change an input."""
    real = os.path.realpath(os.fspath(out))
    for source in inputs:
        if source is None:
            continue
        src = os.path.realpath(os.fspath(source))
        if real == src:
            how = 'is'
        elif _inside(src, real):
            how = 'contains'
        elif _inside(real, src):
            how = 'lies inside'
        else:
            continue
        raise ValueError('%s %s %s the input %s: refusing to write it (an output may never be, '
                         'contain or sit inside an input); choose another output path'
                         % (what, out, how, source))


def check_replaceable(path, force, marker=None):
    """Raise unless `path` is absent, or a real directory that `force` may
    replace: one holding `marker` when given (an output of ours)."""
    if os.path.islink(path):
        raise FileExistsError('output %s is a symbolic link; refusing to replace it: remove '
                              'it yourself or choose another output path' % path)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise NotADirectoryError('output %s exists and is not a directory; refusing to replace '
                                 'it: remove it yourself or choose another output path' % path)
    refuse_existing(path, force)
    if marker and os.path.isdir(path) and not os.path.lexists(os.path.join(path, marker)):
        raise FileExistsError('output %s exists but has no %s, so it is not one of ours; '
                              'refusing to replace it even with --force: remove it yourself '
                              'or choose another output path' % (path, marker))


def _make_temp_dir(parent, prefix):
    """mkdtemp beside the output, with the permissions of a plain mkdir."""
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    return tmp


def _remove_stale(parent, base):
    """Remove `.<base>.tmp-*` directories that carry our mark from a process
    of this host that no longer runs (a build killed outright), and empty
    ones named by such a process (killed before it could mark it)."""
    prefix = '.%s.tmp-' % base
    for tmp in glob.glob(os.path.join(glob.escape(parent), glob.escape(prefix) + '*')):
        if os.path.islink(tmp) or not os.path.isdir(tmp):
            continue
        try:
            with open(os.path.join(tmp, PARTIAL_MARKER)) as f:
                host, pid = f.read().split()
            pid = int(pid)
        except (OSError, ValueError):
            pid = os.path.basename(tmp)[len(prefix):].split('-')[0]
            if pid.isdigit() and not os.listdir(tmp) and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    os.rmdir(tmp)  # empty: nothing to lose
            continue  # otherwise not recognisably ours
        if host != os.uname().nodename or _alive(pid):
            continue
        shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
