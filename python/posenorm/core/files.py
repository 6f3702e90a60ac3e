"""Reading files we check: their sha256, and a progress bar for long loops."""
import hashlib
import os

from tqdm import tqdm


def sha256_file(path, chunk=1 << 22):
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()


UTF8_BOM = b'\xef\xbb\xbf'


def read_text(path):
    """A UTF-8 text file's contents; a byte-order mark or bytes that are not
    UTF-8 are a ValueError naming file and line."""
    with open(path, 'rb') as f:
        data = f.read()
    if data.startswith(UTF8_BOM):
        raise ValueError('%s:1: the file starts with a UTF-8 BOM (byte-order mark); save it as '
                         'UTF-8 without BOM' % path)
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError as e:
        raise ValueError('%s:%d: not valid UTF-8 text' % (path, data[:e.start].count(b'\n') + 1)) \
            from None


def stat_fingerprint(root, names):
    """Hex sha256 of what results computed from files under `root` depend
    on: each name with its size and modification time to the nanosecond
    (cheap to recheck; a changed or replaced file changes it)."""
    h = hashlib.sha256()
    for name in names:
        st = os.stat(os.path.join(root, name))
        h.update(('%s\0%d\0%d\n' % (name, st.st_size, st.st_mtime_ns)).encode('utf-8', 'replace'))
    return h.hexdigest()


def progress_bar(total, enabled, desc, unit='img'):
    """A tqdm bar over `total` items, off when not `enabled`."""
    return tqdm(total=total, disable=not enabled, desc=desc, unit=unit, mininterval=0.5)
