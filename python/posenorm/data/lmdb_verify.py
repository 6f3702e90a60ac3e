"""Verification of an LMDB set against its manifest and its own invariants
(`tools/build_lmdb.py --verify`): a damaged file is reported, never mapped."""
import os
import struct

import lmdb
import numpy as np

from posenorm.core.files import sha256_file
from posenorm.data.lmdb_data import KEY_RE, KINDS, MANIFEST, LMDBVerifyError, parse_manifest, pycaffe


def read_lmdb(path):
    """[(key str, Datum)] of one LMDB, in key order (small sets and tests)."""
    caffe = pycaffe()
    out = []
    check_lmdb_file(path)
    try:
        with lmdb.open(path, readonly=True, lock=False, subdir=True) as env, env.begin() as txn:
            for key, value in txn.cursor():
                datum = caffe.proto.caffe_pb2.Datum()
                datum.ParseFromString(value)
                out.append((key.decode('ascii'), datum))
    except lmdb.Error as e:
        raise LMDBVerifyError('corrupt LMDB: %s: %s' % (os.path.join(path, 'data.mdb'), e)) from None
    return out


_MDB_MAGIC = 0xBEEFC0DE
_MDB_NO_PAGE = (1 << 64) - 1


def check_lmdb_file(path):
    """LMDBVerifyError 'corrupt LMDB: <data.mdb>: <why>' unless the data.mdb
    of LMDB directory `path` has two valid meta pages and is as long as they
    say.  Mapping a truncated file would die of SIGBUS on the first page read
    past its end; LMDB itself trusts the header."""
    mdb = os.path.join(path, 'data.mdb')

    def corrupt(why):
        return LMDBVerifyError('corrupt LMDB: %s: %s' % (mdb, why))
    try:
        size = os.path.getsize(mdb)
        with open(mdb, 'rb') as f:
            head = f.read(160)
            psize = struct.unpack_from('<I', head, 40)[0] if len(head) == 160 else 0
            f.seek(psize)
            metas = [head, f.read(160)]
    except OSError as e:
        raise corrupt(e.strerror or e) from None
    if size < 160:
        raise corrupt('%d bytes, too short for an LMDB header (truncated or empty)' % size)
    if psize < 512 or psize > 65536 or psize & (psize - 1):
        raise corrupt('page size %d in the first meta page is not a power of two in 512..65536'
                      % psize)
    if size < 2 * psize or len(metas[1]) < 160:
        raise corrupt('truncated: %d bytes, less than its two %d-byte meta pages' % (size, psize))
    fields = []
    for i, meta in enumerate(metas):
        magic, version = struct.unpack_from('<II', meta, 16)
        if magic != _MDB_MAGIC or version != 1 or not struct.unpack_from('<H', meta, 10)[0] & 8:
            raise corrupt('meta page %d is damaged (magic %#x, version %d)' % (i, magic, version))
        root, last_pg, txnid = struct.unpack_from('<Q', meta, 128)[0], *struct.unpack_from('<QQ', meta, 136)
        fields.append((txnid, last_pg, root))
    _, last_pg, root = max(fields)  # LMDB uses the newer meta page
    if size < (last_pg + 1) * psize:
        raise corrupt('truncated: %d bytes, its header says %d (%d pages of %d bytes)'
                      % (size, (last_pg + 1) * psize, last_pg + 1, psize))
    if root != _MDB_NO_PAGE and root > last_pg:
        raise corrupt('root page %d lies past the last page %d' % (root, last_pg))


def verify_lmdbs(out, checksums=True, max_problems=20):
    """Re-read an LMDB set and check it; return a summary string.

    Checks counts against the manifest, identical keys across the LMDBs of a
    split (and the index file), Datum shapes, labels in range and equal
    across LMDBs, visible keypoints within [0, S), invisible ones zero,
    finite positive boxes, and the sha256 of every data.mdb.  Raises
    LMDBVerifyError listing the problems found.
    """
    caffe = pycaffe()
    manifest = parse_manifest(out)
    problems = []

    def problem(msg):
        problems.append(msg)
        if len(problems) >= max_problems:
            raise LMDBVerifyError('%s: %d problems (stopped):\n  %s' % (out, len(problems), '\n  '.join(problems)))
    try:
        S, C, K = manifest['input_size'], manifest['num_classes'], len(manifest['part_names'])
        splits, lmdbs = manifest['splits'], manifest['lmdbs']
    except (KeyError, TypeError) as e:
        raise LMDBVerifyError('%s: manifest lacks %s' % (os.path.join(out, MANIFEST), e)) from None
    lines = []
    unreadable = _unreadable_lmdbs(out, lmdbs, checksums, problem)
    for split, info in splits.items():
        paths = {k: os.path.join(out, '%s_%s' % (split, k)) for k in KINDS}
        missing = [p for p in paths.values() if not os.path.isfile(os.path.join(p, 'data.mdb'))]
        if missing:
            problem('missing LMDB %s' % ', '.join(missing))
            continue
        if any('%s_%s' % (split, k) in unreadable for k in KINDS):
            continue  # reported; mapping a damaged file can crash the process
        envs = {}
        try:
            envs.update((k, lmdb.open(p, readonly=True, lock=False, subdir=True)) for k, p in paths.items())
            txns = {k: e.begin() for k, e in envs.items()}
            lines += _verify_split(caffe, out, split, info, manifest, txns, unreadable, problem)
        except lmdb.Error as e:
            problem('corrupt LMDB in the %s split of %s: %s' % (split, out, e))
        finally:
            for e in envs.values():
                e.close()
    if checksums:
        for name, digest in manifest.get('files', {}).items():
            path = os.path.join(out, name)
            if not os.path.isfile(path) or sha256_file(path) != digest:
                problem('%s: missing or sha256 differs from the manifest' % path)
        lines.append('sha256 of %d LMDBs and %d index files match the manifest'
                     % (len(lmdbs), len(manifest.get('files', {}))))
    if problems:
        raise LMDBVerifyError('%s: %d problem(s):\n  %s' % (out, len(problems), '\n  '.join(problems)))
    return '%s (input %dx%d, %d classes, %d parts)\n  %s' % (out, S, S, C, K, '\n  '.join(lines))


def _verify_split(caffe, out, split, info, manifest, txns, unreadable, problem):
    """Check one split's open LMDBs (`txns` by kind) entry by entry against
    the manifest; return its summary lines."""
    for k in KINDS:
        n = txns[k].stat()['entries']
        if n != info['count']:
            problem('%s_%s: %d entries, manifest says %d' % (split, k, n, info['count']))
    index = _read_index(os.path.join(out, '%s_index.txt' % split), problem)
    cursors = [txns[k].cursor().iternext() for k in KINDS]
    S, C, K = manifest['input_size'], manifest['num_classes'], len(manifest['part_names'])
    labels = np.zeros(C, np.int64)
    visible = n = 0
    for n, entry in enumerate(zip(*cursors), 1):
        checked = _check_entry(caffe, (S, C, K), split, n, entry, index, problem)
        if checked is not None:
            labels[checked[0]] += 1
            visible += checked[1]
    if index is not None and len(index) != n:
        problem('%s_index.txt: %d entries, LMDBs have %d' % (split, len(index), n))
    if labels.tolist() != [c * (1 + (split in manifest.get('flip_splits', []))) for c in info['per_class']]:
        problem('%s: labels per class %s differ from the manifest' % (split, labels.tolist()))
    lines = ['%s: %d entries (%d images + %d flipped), %d classes present, %d visible keypoints, '
             'keys aligned' % (split, n, info['images'], info['flipped'], int((labels > 0).sum()),
                               visible)]
    for part in manifest.get('crop_parts', []):
        if '%s_%s' % (split, part) not in unreadable:
            lines.append(_verify_crops(out, split, part, manifest['crop_size'],
                                       txns['images'], problem))
    return lines


def _check_entry(caffe, sizes, split, n, entry, index, problem):
    """Check the n-th (1-based) aligned (images, keypoints, bboxes) entry of
    a split against the index file and the invariants; report through
    `problem`.  Returns (label, visible keypoints), or None when unusable."""
    S, C, K = sizes
    img, kp, box = entry
    key = img[0].decode('ascii', 'replace')
    if kp[0] != img[0] or box[0] != img[0]:
        problem('%s entry %d: keys differ: images %s, keypoints %s, bboxes %s'
                % (split, n, key, kp[0].decode(errors='replace'), box[0].decode(errors='replace')))
        return None
    if not KEY_RE.match(key) or int(key[:8]) != n - 1:
        problem('%s: key %s is not %%08d_<image id> with prefix %08d' % (split, key, n - 1))
    if index is not None and (n > len(index) or index[n - 1][0] != key):
        problem('%s_index.txt line %d does not name key %s' % (split, n + 1, key))
    datums = []
    for _, value in (img, kp, box):
        d = caffe.proto.caffe_pb2.Datum()
        d.ParseFromString(value)
        datums.append(d)
    di, dk, db = datums
    lab = {d.label for d in datums}
    if len(lab) != 1 or not 0 <= di.label < C:
        problem('%s %s: labels %s not equal or not in [0, %d)' % (split, key, sorted(lab), C))
        return None
    if index is not None and n <= len(index) and index[n - 1][1] != di.label:
        problem('%s %s: label %d but index file says %d' % (split, key, di.label, index[n - 1][1]))
    if (di.channels, di.height, di.width) != (3, S, S) or len(di.data) != 3 * S * S:
        problem('%s_images %s: shape %dx%dx%d (%d bytes), expected 3x%dx%d uint8'
                % (split, key, di.channels, di.height, di.width, len(di.data), S, S))
    if (dk.channels, dk.height, dk.width) != (1, K, 3) or len(dk.float_data) != 3 * K:
        problem('%s_keypoints %s: shape %dx%dx%d, expected 1x%dx3 floats'
                % (split, key, dk.channels, dk.height, dk.width, K))
        return di.label, 0
    k = np.array(dk.float_data, np.float64).reshape(K, 3)
    vis = k[:, 2] == 1
    if not np.all((k[:, 2] == 0) | vis):
        problem('%s_keypoints %s: visibility flags not 0/1: %s' % (split, key, k[:, 2].tolist()))
    elif np.any(k[~vis] != 0):
        problem('%s_keypoints %s: invisible keypoints not (0, 0, 0)' % (split, key))
    elif not np.all((k[vis, :2] >= 0) & (k[vis, :2] < S)):
        problem('%s_keypoints %s: visible keypoint outside [0, %d)' % (split, key, S))
    b = np.array(db.float_data, np.float64)
    if (db.channels, db.height, db.width) != (1, 1, 4) or len(b) != 4 or \
            not np.all(np.isfinite(b)) or b[2] <= 0 or b[3] <= 0:
        problem('%s_bboxes %s: not a finite 1x1x4 box with positive size: %s' % (split, key, b.tolist()))
    return di.label, int(vis.sum())


def _unreadable_lmdbs(out, lmdbs, checksums, problem):
    """Names of the LMDBs whose data.mdb is damaged (`check_lmdb_file`) or,
    with checksums, differs from the manifest's sha256; each reported."""
    bad = set()
    for name, info in lmdbs.items():
        mdb = os.path.join(out, name, 'data.mdb')
        if not os.path.isfile(mdb):
            continue
        try:
            check_lmdb_file(os.path.dirname(mdb))
        except LMDBVerifyError as e:
            bad.add(name)
            problem(str(e))
            continue
        if checksums and sha256_file(mdb) != info.get('sha256'):
            bad.add(name)
            problem('%s: sha256 differs from the manifest (modified or corrupt)' % mdb)
    return bad


def _verify_crops(out, split, part, size, images_txn, problem):
    """A crop LMDB: the images' keys in the same order, their labels, C x C."""
    caffe = pycaffe()
    path = os.path.join(out, '%s_%s' % (split, part))
    if not os.path.isfile(os.path.join(path, 'data.mdb')):
        problem('missing LMDB %s' % path)
        return '%s_%s: missing' % (split, part)
    env = lmdb.open(path, readonly=True, lock=False, subdir=True)
    try:
        n = 0
        crops = env.begin().cursor().iternext()
        for n, ((key, value), (img_key, img_value)) in enumerate(
                zip(crops, images_txn.cursor().iternext()), 1):
            d, di = caffe.proto.caffe_pb2.Datum(), caffe.proto.caffe_pb2.Datum()
            d.ParseFromString(value)
            di.ParseFromString(img_value)
            if key != img_key or d.label != di.label:
                problem('%s_%s entry %d: key %s label %d, images have key %s label %d'
                        % (split, part, n, key.decode(errors='replace'), d.label,
                           img_key.decode(errors='replace'), di.label))
            if (d.channels, d.height, d.width) != (3, size, size) or len(d.data) != 3 * size * size:
                problem('%s_%s %s: shape %dx%dx%d, expected 3x%dx%d uint8'
                        % (split, part, key.decode(errors='replace'), d.channels, d.height,
                           d.width, size, size))
        total = env.stat()['entries']
        if total != images_txn.stat()['entries']:
            problem('%s_%s: %d entries, %s_images has %d'
                    % (split, part, total, split, images_txn.stat()['entries']))
    finally:
        env.close()
    return '%s_%s: %d crops %dx%d, keys and labels aligned with the images' % (
        split, part, n, size, size)


def _read_index(path, problem):
    """[(key, label)] from an index file, or None (after reporting) if absent."""
    if not os.path.isfile(path):
        problem('%s: missing' % path)
        return None
    out = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.startswith('#') or not line.strip():
                continue
            fields = line.split(None, 6)
            try:
                out.append((fields[0], int(fields[2])))
            except (IndexError, ValueError):
                problem('%s:%d: malformed line %r' % (path, number, line.rstrip()))
    return out
