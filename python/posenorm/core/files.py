"""Reading files we check: their sha256, and a progress bar for long loops."""
import hashlib

from tqdm import tqdm


def sha256_file(path, chunk=1 << 22):
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()


def progress_bar(total, enabled, desc, unit='img'):
    """A tqdm bar over `total` items, off when not `enabled`."""
    return tqdm(total=total, disable=not enabled, desc=desc, unit=unit, mininterval=0.5)
