"""One view of the keypoint data sets: CUB-200-2011, synthetic birds, PASCAL VOC 2011.

`load(data_dir)` recognises the layout and returns a `Dataset` whose `items`
are uniform: image path, category, keypoints K x 3 (x, y, visible) in the
image's pixel coordinates (0-based pixel centres), box (x, y, w, h), the
keypoint names and the split.  Birds are one category ('bird') with the 15
CUB parts; PASCAL objects keep their category and its sorted keypoint names
(Bourdev et al.'s XMLs carry no split: an image is 'test' when a stable hash
of its name is odd, about half).  Without `data_dir` the synthetic birds are
generated once into a cache directory and read like CUB.
"""
import collections
import glob
import hashlib
import os

import numpy as np

from posenorm.data import pascal
from posenorm.data.cub import read_cub
from posenorm.data.synthetic import VERSION_FILE, write_dataset

Item = collections.namedtuple('Item', 'path category keypoints box names split')
Item.__doc__ = """One object: `keypoints` K x 3 float32 (x, y, visible) in
pixels of the image at `path`; `box` (x, y, w, h); `names` its K keypoint
names; `split` 'train' or 'test'."""

Dataset = collections.namedtuple('Dataset', 'kind root items categories')
Dataset.__doc__ = """`kind` 'cub', 'synthetic' or 'pascal'; `categories`
{category: keypoint names} in sorted order."""

SYNTHETIC_DIR = os.path.join('data', 'synthetic_correspondence')
SYNTHETIC_ARGS = dict(num_classes=10, per_class=24, size=256, seed=0)
BIRD = 'bird'


def layout(data_dir):
    """'cub', 'synthetic' or 'pascal' from the files present (ValueError if none)."""
    if os.path.isfile(os.path.join(data_dir, 'images.txt')):
        if os.path.isfile(os.path.join(data_dir, VERSION_FILE)):
            return 'synthetic'
        return 'cub'
    if glob.glob(os.path.join(data_dir, 'annotations', '**', '*.xml'), recursive=True):
        return 'pascal'
    if not os.path.isdir(data_dir):
        raise FileNotFoundError('data directory not found: %s' % data_dir)
    raise ValueError('%s: neither a CUB-200-2011 layout (images.txt, parts/part_locs.txt, ...) '
                     'nor PASCAL VOC 2011 keypoints (annotations/<category>/*.xml beside '
                     'the VOC JPEGImages)' % data_dir)


def synthetic_dir(cache_dir=SYNTHETIC_DIR, progress=True, **kwargs):
    """The synthetic birds, generated into `cache_dir` on first use."""
    if not os.path.isfile(os.path.join(cache_dir, 'images.txt')):
        write_dataset(cache_dir, progress=progress, **dict(SYNTHETIC_ARGS, **kwargs))
    return cache_dir


def load(data_dir=None, classes=None, cache_dir=SYNTHETIC_DIR, progress=True):
    """The Dataset at `data_dir` (synthetic birds when None)."""
    if data_dir is None:
        data_dir = synthetic_dir(cache_dir, progress)
    kind = layout(data_dir)
    if kind == 'pascal':
        return _pascal(data_dir, classes)
    cub = read_cub(data_dir, classes=classes)
    names = tuple(cub.part_names)
    items = [Item(im.path, BIRD, np.asarray(im.keypoints, np.float32),
                  tuple(float(v) for v in im.bbox), names, im.split) for im in cub]
    return Dataset(kind, os.path.abspath(data_dir), items, {BIRD: names})


def _pascal_split(image):
    return 'test' if hashlib.sha1(image.encode()).digest()[0] % 2 else 'train'


def _pascal(data_dir, categories=None):
    annotations = os.path.join(data_dir, 'annotations')
    groups = pascal.read_pascal_keypoints(annotations, categories)
    items = []
    for name, group in groups.items():
        for obj, kps in zip(group.objects, group.keypoints):
            items.append(Item(pascal.image_path(obj, data_dir), name, kps,
                              tuple(float(v) for v in obj.visible_bounds), group.keypoint_names,
                              _pascal_split(obj.image)))
    return Dataset('pascal', os.path.abspath(data_dir), items,
                   {name: g.keypoint_names for name, g in groups.items()})


def split(dataset, name):
    """The items of split 'train' or 'test'."""
    if name not in ('train', 'test'):
        raise ValueError('unknown split %r (train or test)' % name)
    return [item for item in dataset.items if item.split == name]


def check_keypoints(item, size, tolerance=0.0):
    """Raise ValueError naming the image when a visible keypoint lies more
    than `tolerance` pixels outside it (CUB has borderline ones)."""
    width, height = size
    kps = np.asarray(item.keypoints)
    vis = kps[:, 2] > 0
    lo, hi_x, hi_y = -0.5 - tolerance, width - 0.5 + tolerance, height - 0.5 + tolerance
    bad = vis & ((kps[:, 0] < lo) | (kps[:, 1] < lo) | (kps[:, 0] > hi_x) | (kps[:, 1] > hi_y))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError('%s: keypoint %r at (%.1f, %.1f) lies outside the %d x %d image'
                         % (item.path, item.names[k], kps[k, 0], kps[k, 1], width, height))
