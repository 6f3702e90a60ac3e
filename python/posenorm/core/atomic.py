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

from posenorm.core import outputs


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


@contextlib.contextmanager
def atomic_directory(path, force=False, inputs=(), marker=None, update=False):
    """Yield a fresh temporary directory beside `path`; rename it to `path`
    on success.

    Whether `path` may be written is `outputs.check_output`'s decision:
    never an input (`inputs`), and an existing directory is replaced only
    with `force` and only when it holds `marker` (when given, e.g. the
    manifest.json every LMDB set has).  update=True: a directory we add to
    (a report rewritten a section at a time): an existing `path` needs the
    marker but not `force`, and what the new build did not write is carried
    over from it (hard links, so a cache costs nothing), so its files change
    together in one rename (a report's JSON and its figures).  The temporary
    directory has a unique name (`.<name>.tmp-<pid>-XXXX`, marked as ours
    inside); on any exception it is removed and `path` is left as it was.
    Stale temporaries of dead builds are removed only when they carry our
    mark; a user's `<path>.tmp` or `<path>.old` is never touched.
    """
    kind = outputs.UPDATE if update else outputs.DIRECTORY
    path = outputs.check_output(path, kind, inputs, force, marker)
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
            # someone may have created or changed it while we worked
            outputs.check_output(path, kind, inputs, force, marker)
            if update:
                _carry_over(path, tmp)
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


def _carry_over(old, new):
    """Hard-link (copy where links fail) every entry of `old` that `new`
    lacks into `new`, recursively: an update keeps what it did not rewrite."""
    for name in os.listdir(old):
        src, dst = os.path.join(old, name), os.path.join(new, name)
        if os.path.islink(src):
            if not os.path.lexists(dst):
                os.symlink(os.readlink(src), dst)
        elif os.path.isdir(src):
            if not os.path.lexists(dst):
                os.mkdir(dst)
            if os.path.isdir(dst) and not os.path.islink(dst):
                _carry_over(src, dst)
        elif not os.path.lexists(dst):
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)


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
