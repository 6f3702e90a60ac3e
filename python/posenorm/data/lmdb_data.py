"""Caffe LMDBs from a CUB-layout dataset, their manifest, and their verification.

Per split (train, val, test) three LMDBs share the same keys `%08d_<image id>`
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
(Caffe's Data layer has no shuffle of its own), val and test keep image-id
order.  Flipped copies (`flip=True`) are added to the train split only.

The val split is drawn from the official *train* split only: `val_fraction`
of each class's training images (rounded; none for a tiny class), picked
with the seed (`validation_mask`); the train split
holds the rest.  The test split is the official one, untouched, so choices
made on val never look at it.  The manifest records the fraction and the
validation image ids.

Keypoints and boxes are stored in input pixels (`posenorm.data.coords`).
"""
import json
import math
import multiprocessing
import os
import re
import time

import lmdb
import numpy as np

from posenorm import __version__
from posenorm.core import outputs
from posenorm.core.atomic import atomic_directory, atomic_write_text
from posenorm.core.files import progress_bar, sha256_file, stat_fingerprint
from posenorm.core.images import read_image
from posenorm.data.coords import COORDINATES, bbox_to_input, keypoints_to_input, resize_input
from posenorm.data.cub import flip_bbox, flip_keypoints, flip_permutation, read_cub
from posenorm.data.part_crops import CROP_SIZE, PARTS, crop, crop_boxes

LMDB_FORMAT_VERSION = 'posenorm-lmdb 1'
KINDS = ('images', 'keypoints', 'bboxes')
SPLITS = ('train', 'val', 'test')
VAL_FRACTION = 0.15
MANIFEST = 'manifest.json'
# The CUB-layout files an LMDB set is computed from, besides the images.
ANNOTATION_FILES = ('images.txt', 'classes.txt', 'image_class_labels.txt', 'train_test_split.txt',
                    'bounding_boxes.txt', os.path.join('parts', 'parts.txt'),
                    os.path.join('parts', 'part_locs.txt'))
KEY_RE = re.compile(r'^(\d{8})_(\d+)(_flip)?$')


class LMDBVerifyError(ValueError):
    """An LMDB set does not match its manifest or its own invariants."""


def _prepare(task):
    """Worker: decode and resize one image (and its mirror when asked), and
    cut its part crops ({part: box}, warped to crop_size)."""
    path, size, flip, boxes, crop_size = task
    im = read_image(path)  # errors name the file
    rgb = resize_input(im, size)
    crops = {part: crop(im, box, crop_size) for part, box in boxes.items()}
    # The mirror of a part's crop is the crop of the mirrored image at the
    # mirrored box: both groups hold left and right parts alike.
    mirror = lambda a: a[:, ::-1] if flip else None  # noqa: E731
    return (rgb, mirror(rgb)), {part: (c, mirror(c)) for part, c in crops.items()}


# ------------------------------------------------------------------ build ---

def pycaffe():
    try:
        import caffe
        import caffe.io  # noqa: F401
    except ImportError as e:
        raise ImportError('writing/reading Caffe Datums needs pycaffe (`import caffe` failed: %s); '
                          'run `make build`' % e) from None
    return caffe


# What every reader of a manifest relies on (tools/train.py, demo, verify).
MANIFEST_KEYS = ('input_size', 'num_classes', 'classes', 'part_names', 'splits', 'lmdbs')


def parse_manifest(out):
    path = os.path.join(out, MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (FileNotFoundError, NotADirectoryError):
        raise LMDBVerifyError('%s: no manifest (not an LMDB set written by build_lmdbs?)' % path) from None
    except json.JSONDecodeError as e:
        raise LMDBVerifyError('%s: invalid JSON: %s' % (path, e)) from None
    missing = [k for k in MANIFEST_KEYS if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        raise LMDBVerifyError('%s: manifest lacks %s (not an LMDB set written by build_lmdbs?)'
                              % (path, ', '.join(map(repr, missing))))
    return manifest


def validation_mask(data, fraction, seed):
    """Boolean mask over `data`'s images: the validation split, `fraction`
    of each class's official training images (rounded half up, so a class
    of fewer than 1 / (2 fraction) training images gives none, and one
    always stays for training), drawn per class with `seed`: the same seed,
    data and fraction give the same split, whatever other classes the set
    holds."""
    mask = np.zeros(len(data), bool)
    if not fraction:
        return mask
    for class_id in np.unique(data.class_ids):
        members = np.flatnonzero(data.is_train & (data.class_ids == class_id))
        n = min(int(np.floor(fraction * len(members) + 0.5)), len(members) - 1)
        if n > 0:
            rng = np.random.default_rng([seed, int(class_id)])
            mask[rng.choice(np.sort(members), n, replace=False)] = True
    return mask


def val_split_record(manifest):
    """What a model trained from an LMDB set records of its val split
    (model.json's `val_split`: fraction, seed, rule, image ids), so
    `tools/evaluate.py --split val` scores exactly the images the builder
    held out; None when the set has no val split."""
    ids = manifest.get('val_image_ids') or []
    if not ids:
        return None
    return dict(fraction=manifest['val_fraction'], seed=manifest['val_seed'],
                rule=manifest.get('val_rule'), image_ids=list(ids))


def split_data(data, split, val):
    """The images of one LMDB split; `val` is `validation_mask`'s mask."""
    if split == 'val':
        return data.select(val)
    if split == 'train':
        return data.select(data.is_train & ~val)
    return data.select(~data.is_train)


def build_lmdbs(cub_dir, out, size=500, flip=False, classes=None, seed=0, force=False,
                progress=True, workers=1, part_tolerance=None, crop_size=CROP_SIZE, strict=False,
                val_fraction=VAL_FRACTION):
    """Write the LMDB set for a CUB-layout dataset into `out` (atomically).

    classes, part_tolerance and strict go to `read_cub`; crop_size 0 writes
    no part crops; val_fraction of each class's training images form the
    val split (`validation_mask`; 0: no val split); `out` may not be, contain or sit inside `cub_dir`, and
    force replaces only an LMDB set (a directory with a manifest.json).  Returns the manifest dict,
    with build timing under 'throughput' (not saved: it varies per run).
    """
    _check_build_args(size, crop_size, workers, part_tolerance)
    if not 0 <= val_fraction < 1:
        raise ValueError('val_fraction must be in [0, 1), not %r' % (val_fraction,))
    outputs.check_output(out, outputs.DIRECTORY, [cub_dir], force, MANIFEST)  # before any work
    writer = _DatumWriter(pycaffe())
    data = read_cub(cub_dir, classes=classes, part_tolerance=part_tolerance, strict=strict)
    manifest = _new_manifest(data, size, flip, seed, crop_size)
    val = validation_mask(data, val_fraction, seed)
    manifest.update(val_fraction=val_fraction, val_seed=seed,
                    val_image_ids=data.image_ids[val].tolist(),
                    val_rule='val_fraction of each class\'s official training images, rounded '
                             'half up, 1 kept for training; the train split is the rest')
    start = time.perf_counter()
    images_done = 0
    pool = multiprocessing.get_context('fork').Pool(workers) if workers > 1 else None
    try:
        with atomic_directory(out, force, inputs=[cub_dir], marker=MANIFEST) as tmp:
            for split in SPLITS if val.any() else ('train', 'test'):
                images_done += _write_split(tmp, split_data(data, split, val), split, manifest,
                                            writer, pool,
                                            progress_bar_name=os.path.basename(out),
                                            progress=progress)
            seconds = time.perf_counter() - start
            atomic_write_text(os.path.join(tmp, MANIFEST), json.dumps(manifest, indent=1) + '\n')
    finally:
        if pool:
            pool.close()
            pool.join()
    manifest['throughput'] = dict(images=images_done, seconds=seconds, images_per_second=images_done / seconds,
                                  entries=sum(s['count'] for s in manifest['splits'].values()))
    return manifest


def source_fingerprint(data):
    """The stat fingerprint of a read dataset: its annotation files and
    every image kept (a manifest records it; `built_from` rechecks it)."""
    names = [n for n in ANNOTATION_FILES if os.path.exists(os.path.join(data.root, n))]
    return stat_fingerprint(data.root, names + [os.path.join('images', n) for n in data.names])


def built_from(manifest, cub_dir, classes=None):
    """Whether an LMDB set's manifest was built from `cub_dir` (with
    `classes`) as its files are now, judged by their fingerprint, not its path."""
    data = read_cub(cub_dir, classes=classes)
    return manifest.get('source_fingerprint') == source_fingerprint(data) and \
        manifest.get('classes') == data.classes.tolist()


def _new_manifest(data, size, flip, seed, crop_size):
    """The manifest of an LMDB set before its splits are written."""
    generator = None
    version_file = os.path.join(data.root, 'synthetic_version.txt')
    if os.path.isfile(version_file):
        with open(version_file) as f:
            generator = f.read().strip()
    return dict(
        format=LMDB_FORMAT_VERSION, tool='posenorm %s tools/build_lmdb.py' % __version__,
        source=data.root, source_fingerprint=source_fingerprint(data), source_generator=generator,
        input_size=size, flip=flip,
        flip_splits=['train'] if flip else [], shuffle='train', seed=seed, coordinates=COORDINATES,
        image_encoding='uint8 BGR CHW; whole image resized to S x S with PIL bilinear',
        classes=data.classes.tolist(), class_names=data.class_names, num_classes=data.num_classes,
        labels='official class id - 1; num_classes = the largest class id kept, class_names[label]',
        part_names=list(data.part_names), flip_permutation=flip_permutation(data.part_names).tolist(),
        borderline_parts=len(data.borderline_parts), clipped_boxes=len(data.clipped_boxes),
        skipped_images=data.skipped_images, annotation_summary=data.adjustments(),
        adjustments=dict(clipped_boxes=[[i, round(px, 3)] for i, px in data.clipped_boxes],
                         clamped_parts=[list(b) for b in data.borderline_parts]),
        duplicate_images=data.duplicate_images, splits={}, lmdbs={}, files={},
        crop_size=crop_size, crop_parts=list(PARTS) if crop_size else [],
        crops='head/body boxes of posenorm.data.part_crops around ground-truth keypoints, warped '
              'to C x C, uint8 BGR CHW' if crop_size else None)


class _DatumWriter(object):
    """Caffe Datums: images as uint8 BGR CHW, keypoints and boxes as floats."""

    def __init__(self, caffe):
        self.caffe = caffe

    def image(self, rgb, label):
        return self.caffe.io.array_to_datum(
            np.ascontiguousarray(rgb[:, :, ::-1].transpose(2, 0, 1)), label).SerializeToString()

    def floats(self, array, label):
        return self.caffe.io.array_to_datum(array, label).SerializeToString()


def _split_keys(sub, split, flip, seed):
    """(read order of the slots, key of each slot); slot = copy * n + image.
    The train split is shuffled (Caffe's Data layer has no shuffle)."""
    n = len(sub)
    copies = 2 if flip else 1
    order = np.arange(n * copies)
    if split == 'train':
        order = np.random.default_rng(seed).permutation(n * copies)
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    keys = ['%08d_%d%s' % (position[s], sub.image_ids[s % n], '_flip' if s >= n else '')
            for s in range(n * copies)]
    return order, keys


def _write_split(tmp, sub, split, manifest, writer, pool, progress_bar_name, progress):
    """Write one split's LMDBs and index (the images of `sub`) into `tmp`,
    record them in the manifest; return how many source images it read."""
    size, crop_size, seed = manifest['input_size'], manifest['crop_size'], manifest['seed']
    perm = np.asarray(manifest['flip_permutation'])
    n, do_flip = len(sub), split in manifest['flip_splits']
    copies = 2 if do_flip else 1
    order, keys = _split_keys(sub, split, do_flip, seed)
    kinds = KINDS + tuple(manifest['crop_parts'])
    envs = {kind: lmdb.open(os.path.join(tmp, '%s_%s' % (split, kind)), subdir=True,
                            map_size=_map_size(n * copies, crop_size if kind in PARTS else size, kind),
                            sync=False)
            for kind in kinds}
    txns = {k: e.begin(write=True) for k, e in envs.items()}
    boxes, fell_back = crop_boxes(sub.keypoints, sub.part_names, sub.sizes, manifest['crop_parts'])
    tasks = ((sub.path(i), size, do_flip, {p: b[i] for p, b in boxes.items()}, crop_size)
             for i in range(n))
    results = pool.imap(_prepare, tasks, chunksize=4) if pool else map(_prepare, tasks)
    bar = progress_bar(n, progress, '%s %s' % (progress_bar_name, split))
    for i, ((rgb, mirrored), crops) in enumerate(results):
        wh, label = sub.sizes[i], int(sub.labels[i])
        kp = keypoints_to_input(sub.keypoints[i], wh, size)
        box = bbox_to_input(sub.bboxes[i], wh, size)
        records = [(keys[i], rgb, kp, box)]
        if do_flip:
            records.append((keys[n + i], mirrored, flip_keypoints(kp, size, perm), flip_bbox(box, size)))
        for copy, (key, img, kps, bb) in enumerate(records):
            key = key.encode('ascii')
            txns['images'].put(key, writer.image(img, label))
            for part, pair in crops.items():
                txns[part].put(key, writer.image(pair[copy], label))
            txns['keypoints'].put(key, writer.floats(kps.reshape(1, -1, 3), label))
            txns['bboxes'].put(key, writer.floats(bb.reshape(1, 1, 4), label))
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
    _write_index(tmp, split, sub, order, keys, manifest)
    manifest['splits'][split] = dict(count=n * copies, images=n, flipped=n * (copies - 1),
                                     per_class=np.bincount(sub.labels, minlength=sub.num_classes).tolist(),
                                     crop_fallbacks={p: int(f.sum()) for p, f in fell_back.items()})
    for kind in kinds:
        mdb = os.path.join(tmp, '%s_%s' % (split, kind), 'data.mdb')
        manifest['lmdbs']['%s_%s' % (split, kind)] = dict(
            entries=n * copies, bytes=os.path.getsize(mdb), sha256=sha256_file(mdb))
    return n


def _write_index(tmp, split, sub, order, keys, manifest):
    """<split>_index.txt: one line per entry in read order."""
    n = len(sub)
    index = ['# key image_id label flipped width height name']
    for s in order:
        i = s % n
        index.append('%s %d %d %d %d %d %s' % (keys[s], sub.image_ids[i], sub.labels[i], s >= n,
                                               sub.sizes[i, 0], sub.sizes[i, 1], sub.names[i]))
    name = '%s_index.txt' % split
    with open(os.path.join(tmp, name), 'w') as f:
        f.write('\n'.join(index) + '\n')
    manifest['files'][name] = sha256_file(os.path.join(tmp, name))


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
