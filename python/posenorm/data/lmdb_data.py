"""Caffe LMDBs from a CUB-layout dataset, their manifest, and their verification.

Per split (train, test) three LMDBs share the same keys `%08d_<image id>`
(`_flip` appended for mirrored copies), so three Caffe `Data` layers read
aligned batches:

  <split>_images     uint8 BGR CHW Datum, 3 x S x S, label = class id - 1
  <split>_keypoints  float Datum 1 x K x 3 (x, y, visible) in input pixels
  <split>_bboxes     float Datum 1 x 1 x 4 (x, y, w, h) in input pixels
  <split>_head, <split>_body  (crop_size > 0) uint8 BGR CHW Datum, 3 x C x C:
                     the part's box around its ground-truth keypoints, cut
                     from the original image (`posenorm.data.part_crops`)

plus `<split>_index.txt` (key, image id, label, flipped, original size, name)
and `manifest.json` (source, counts, sizes, versions, sha256 of every
data.mdb).  The %08d prefix is the read order: the train split is shuffled
(Caffe's Data layer has no shuffle of its own), the test split keeps image-id
order.  Flipped copies (`flip=True`) are added to the train split only.

Keypoints and boxes are stored in input pixels (`posenorm.data.coords`).
"""
import json
import math
import os
import re
import struct
import time

import numpy as np
from PIL import Image

from posenorm import __version__
from posenorm.core.atomic import atomic_directory, atomic_write_text, check_disjoint
from posenorm.core.files import progress_bar, sha256_file
from posenorm.data.coords import (COORDINATES, bbox_to_input, keypoints_to_input, resize_input,
                                   to_rgb)
from posenorm.data.cub import SPLITS, flip_bbox, flip_keypoints, flip_permutation, read_cub
from posenorm.data.part_crops import CROP_SIZE, PARTS, crop, crop_boxes

LMDB_FORMAT_VERSION = 'posenorm-lmdb 1'
KINDS = ('images', 'keypoints', 'bboxes')
MANIFEST = 'manifest.json'
KEY_RE = re.compile(r'^(\d{8})_(\d+)(_flip)?$')


class LMDBVerifyError(ValueError):
    """An LMDB set does not match its manifest or its own invariants."""


def _prepare(task):
    """Worker: decode and resize one image (and its mirror when asked), and
    cut its part crops ({part: box}, warped to crop_size)."""
    path, size, flip, boxes, crop_size = task
    try:
        with Image.open(path) as im:
            im = to_rgb(im)
            rgb = resize_input(im, size)
            crops = {part: crop(im, box, crop_size) for part, box in boxes.items()}
    except (OSError, ValueError, SyntaxError) as e:
        raise ValueError('cannot decode image %s: %s' % (path, e)) from None
    # The mirror of a part's crop is the crop of the mirrored image at the
    # mirrored box: both groups hold left and right parts alike.
    mirror = lambda a: a[:, ::-1] if flip else None  # noqa: E731
    return (rgb, mirror(rgb)), {part: (c, mirror(c)) for part, c in crops.items()}


# ------------------------------------------------------------------ build ---

def _caffe():
    try:
        import caffe
        import caffe.io  # noqa: F401
    except ImportError as e:
        raise ImportError('writing/reading Caffe Datums needs pycaffe (`import caffe` failed: %s); '
                          'run `make build`' % e) from None
    return caffe


def parse_manifest(out):
    path = os.path.join(out, MANIFEST)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise LMDBVerifyError('%s: no manifest (not an LMDB set written by build_lmdbs?)' % path) from None
    except json.JSONDecodeError as e:
        raise LMDBVerifyError('%s: invalid JSON: %s' % (path, e)) from None


def build_lmdbs(cub_dir, out, size=500, flip=False, classes=None, seed=0, force=False,
                progress=True, workers=1, part_tolerance=None, crop_size=CROP_SIZE, strict=False):
    """Write the LMDB set for a CUB-layout dataset into `out` (atomically).

    classes, part_tolerance and strict go to `read_cub`; crop_size 0 writes
    no part crops; `out` may not be, contain or sit inside `cub_dir`, and
    force replaces only an LMDB set (a directory with a manifest.json).  Returns the manifest dict,
    with build timing under 'throughput' (not saved: it varies per run).
    """
    import lmdb
    _check_build_args(size, crop_size, workers, part_tolerance)
    check_disjoint(out, [cub_dir])
    caffe = _caffe()
    data = read_cub(cub_dir, classes=classes, part_tolerance=part_tolerance, strict=strict)
    perm = flip_permutation(data.part_names)
    generator = None
    version_file = os.path.join(data.root, 'synthetic_version.txt')
    if os.path.isfile(version_file):
        with open(version_file) as f:
            generator = f.read().strip()
    manifest = dict(
        format=LMDB_FORMAT_VERSION, tool='posenorm %s tools/build_lmdb.py' % __version__,
        source=data.root, source_generator=generator, input_size=size, flip=flip,
        flip_splits=['train'] if flip else [], shuffle='train', seed=seed, coordinates=COORDINATES,
        image_encoding='uint8 BGR CHW; whole image resized to S x S with PIL bilinear',
        classes=data.classes.tolist(), class_names=data.class_names, num_classes=data.num_classes,
        labels='official class id - 1; num_classes = the largest class id kept, class_names[label]',
        part_names=list(data.part_names), flip_permutation=perm.tolist(),
        borderline_parts=len(data.borderline_parts), clipped_boxes=len(data.clipped_boxes),
        skipped_images=data.skipped_images, annotation_summary=data.adjustments(),
        adjustments=dict(clipped_boxes=[[i, round(px, 3)] for i, px in data.clipped_boxes],
                         clamped_parts=[list(b) for b in data.borderline_parts]),
        duplicate_images=data.duplicate_images, splits={}, lmdbs={}, files={},
        crop_size=crop_size, crop_parts=list(PARTS) if crop_size else [],
        crops='head/body boxes of posenorm.data.part_crops around ground-truth keypoints, warped '
              'to C x C, uint8 BGR CHW' if crop_size else None)
    kinds = KINDS + tuple(manifest['crop_parts'])
    start = time.perf_counter()
    images_done = 0
    pool = None
    if workers > 1:
        import multiprocessing
        pool = multiprocessing.get_context('fork').Pool(workers)
    try:
        with atomic_directory(out, force, inputs=[cub_dir], marker=MANIFEST) as tmp:
            for split in SPLITS:
                sub = data.split(split)
                n, do_flip = len(sub), flip and split == 'train'
                copies = 2 if do_flip else 1
                order = np.arange(n * copies)  # slot = copy * n + image
                if split == 'train':
                    order = np.random.default_rng(seed).permutation(n * copies)
                position = np.empty_like(order)
                position[order] = np.arange(len(order))
                keys = ['%08d_%d%s' % (position[s], sub.image_ids[s % n], '_flip' if s >= n else '')
                        for s in range(n * copies)]
                envs = {kind: lmdb.open(os.path.join(tmp, '%s_%s' % (split, kind)), subdir=True,
                                        map_size=_map_size(n * copies, crop_size if kind in PARTS
                                                           else size, kind), sync=False)
                        for kind in kinds}
                txns = {k: e.begin(write=True) for k, e in envs.items()}
                boxes, fell_back = crop_boxes(sub.keypoints, data.part_names, sub.sizes,
                                              manifest['crop_parts'])
                tasks = ((sub.path(i), size, do_flip, {p: b[i] for p, b in boxes.items()},
                          crop_size) for i in range(n))
                results = pool.imap(_prepare, tasks, chunksize=4) if pool else map(_prepare, tasks)
                bar = progress_bar(n, progress, '%s %s' % (os.path.basename(out), split))
                to_datum = lambda img, label: caffe.io.array_to_datum(  # noqa: E731
                    np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1)), label
                ).SerializeToString()
                for i, ((rgb, mirrored), crops) in enumerate(results):
                    wh = sub.sizes[i]
                    label = int(sub.labels[i])
                    kp = keypoints_to_input(sub.keypoints[i], wh, size)
                    box = bbox_to_input(sub.bboxes[i], wh, size)
                    records = [(keys[i], rgb, kp, box)]
                    if do_flip:
                        records.append((keys[n + i], mirrored, flip_keypoints(kp, size, perm),
                                        flip_bbox(box, size)))
                    for copy, (key, img, kps, bb) in enumerate(records):
                        key = key.encode('ascii')
                        txns['images'].put(key, to_datum(img, label))
                        for part, pair in crops.items():
                            txns[part].put(key, to_datum(pair[copy], label))
                        txns['keypoints'].put(key, caffe.io.array_to_datum(
                            kps.reshape(1, -1, 3), label).SerializeToString())
                        txns['bboxes'].put(key, caffe.io.array_to_datum(
                            bb.reshape(1, 1, 4), label).SerializeToString())
                    images_done += 1
                    bar.update(1)
                    if (i + 1) % 256 == 0:
                        for k in kinds:
                            txns[k].commit()
                            txns[k] = envs[k].begin(write=True)
                bar.close()
                for k in kinds:
                    txns[k].commit()
                    envs[k].sync(True)
                    envs[k].close()
                index = ['# key image_id label flipped width height name']
                for s in order:
                    i = s % n
                    index.append('%s %d %d %d %d %d %s' % (keys[s], sub.image_ids[i], sub.labels[i], s >= n,
                                                           sub.sizes[i, 0], sub.sizes[i, 1], sub.names[i]))
                name = '%s_index.txt' % split
                with open(os.path.join(tmp, name), 'w') as f:
                    f.write('\n'.join(index) + '\n')
                manifest['files'][name] = sha256_file(os.path.join(tmp, name))
                manifest['splits'][split] = dict(count=n * copies, images=n, flipped=n * (copies - 1),
                                                 per_class=np.bincount(sub.labels, minlength=data.num_classes
                                                                       ).tolist(),
                                                 crop_fallbacks={p: int(f.sum()) for p, f in fell_back.items()})
                for kind in kinds:
                    mdb = os.path.join(tmp, '%s_%s' % (split, kind), 'data.mdb')
                    manifest['lmdbs']['%s_%s' % (split, kind)] = dict(
                        entries=n * copies, bytes=os.path.getsize(mdb), sha256=sha256_file(mdb))
            seconds = time.perf_counter() - start
            atomic_write_text(os.path.join(tmp, MANIFEST), json.dumps(manifest, indent=1) + '\n')
    finally:
        if pool:
            pool.close()
            pool.join()
    manifest['throughput'] = dict(images=images_done, seconds=seconds, images_per_second=images_done / seconds,
                                  entries=sum(s['count'] for s in manifest['splits'].values()))
    return manifest


def _check_build_args(size, crop_size, workers, part_tolerance):
    """ValueError naming the argument, before any image is blamed for it."""
    for name, value, least in (('size', size, 1), ('crop_size', crop_size, 0), ('workers', workers, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
            raise ValueError('%s must be an integer >= %d, not %r' % (name, least, value))
    if part_tolerance is not None and not (math.isfinite(part_tolerance) and part_tolerance >= 0):
        raise ValueError('part_tolerance must be a finite number >= 0 (pixels), not %r' % part_tolerance)


def _map_size(entries, size, kind):
    per = 3 * size * size + 8192 if kind in ('images',) + PARTS else 8192
    return int(entries * per * 1.5) + (64 << 20)


# ----------------------------------------------------------------- verify ---

def read_lmdb(path):
    """[(key str, Datum)] of one LMDB, in key order (small sets and tests)."""
    import lmdb
    caffe = _caffe()
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
    import lmdb
    caffe = _caffe()
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
            for k in KINDS:
                n = txns[k].stat()['entries']
                if n != info['count']:
                    problem('%s_%s: %d entries, manifest says %d' % (split, k, n, info['count']))
            index = _read_index(os.path.join(out, '%s_index.txt' % split), problem)
            cursors = [txns[k].cursor().iternext() for k in KINDS]
            labels = np.zeros(C, np.int64)
            visible = n = 0
            for n, (img, kp, box) in enumerate(zip(*cursors), 1):
                key = img[0].decode('ascii', 'replace')
                if kp[0] != img[0] or box[0] != img[0]:
                    problem('%s entry %d: keys differ: images %s, keypoints %s, bboxes %s'
                            % (split, n, key, kp[0].decode(errors='replace'), box[0].decode(errors='replace')))
                    continue
                if not KEY_RE.match(key) or int(key[:8]) != n - 1:
                    problem('%s: key %s is not %%08d_<image id> with prefix %08d' % (split, key, n - 1))
                if index is not None and (n > len(index) or index[n - 1][0] != key):
                    problem('%s_index.txt line %d does not name key %s' % (split, n + 1, key))
                datums = []
                for kind, (_, value) in zip(KINDS, (img, kp, box)):
                    d = caffe.proto.caffe_pb2.Datum()
                    d.ParseFromString(value)
                    datums.append(d)
                di, dk, db = datums
                lab = {d.label for d in datums}
                if len(lab) != 1 or not 0 <= di.label < C:
                    problem('%s %s: labels %s not equal or not in [0, %d)' % (split, key, sorted(lab), C))
                    continue
                if index is not None and n <= len(index) and index[n - 1][1] != di.label:
                    problem('%s %s: label %d but index file says %d' % (split, key, di.label, index[n - 1][1]))
                labels[di.label] += 1
                if (di.channels, di.height, di.width) != (3, S, S) or len(di.data) != 3 * S * S:
                    problem('%s_images %s: shape %dx%dx%d (%d bytes), expected 3x%dx%d uint8'
                            % (split, key, di.channels, di.height, di.width, len(di.data), S, S))
                if (dk.channels, dk.height, dk.width) != (1, K, 3) or len(dk.float_data) != 3 * K:
                    problem('%s_keypoints %s: shape %dx%dx%d, expected 1x%dx3 floats'
                            % (split, key, dk.channels, dk.height, dk.width, K))
                    continue
                k = np.array(dk.float_data, np.float64).reshape(K, 3)
                vis = k[:, 2] == 1
                visible += int(vis.sum())
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
            if index is not None and len(index) != n:
                problem('%s_index.txt: %d entries, LMDBs have %d' % (split, len(index), n))
            if labels.tolist() != [c * (1 + (split in manifest.get('flip_splits', []))) for c in info['per_class']]:
                problem('%s: labels per class %s differ from the manifest' % (split, labels.tolist()))
            lines.append('%s: %d entries (%d images + %d flipped), %d classes present, %d visible keypoints, '
                         'keys aligned' % (split, n, info['images'], info['flipped'], int((labels > 0).sum()),
                                           visible))
            for part in manifest.get('crop_parts', []):
                if '%s_%s' % (split, part) not in unreadable:
                    lines.append(_verify_crops(out, split, part, manifest['crop_size'],
                                               txns['images'], problem))
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
    import lmdb
    caffe = _caffe()
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
