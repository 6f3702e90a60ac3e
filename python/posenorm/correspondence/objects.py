"""The objects that alignment (`align`) and keypoint prediction (`predict`)
work on: each item's crop (`features.prepare`), its ground truth in the crop
frame, its feature maps, and SIFT on a lattice, with the skipped items
counted rather than fatal.

The crop frame: `features.prepare` cuts the box with context (clipped to the
image) and scales it uniformly so the longer side is `side`; a point moves
as x' + 0.5 = (x + 0.5 - x0) * scale.  The scale is uniform, so PCK measured
in the crop frame with the box scaled alike equals PCK in the image.
"""
import collections

import numpy as np
from posenorm.core.geometry import Geometry, InputSizeError
from posenorm.core.images import ImageError, image_size
from posenorm.correspondence import features, sift

Obj = collections.namedtuple('Obj', 'item image keypoints box maps glob')
Obj.__doc__ = """One object: crop image (RGB uint8), keypoints K x 3 and box
(x, y, w, h) in the crop frame (not clipped), maps {layer: C x H x W},
glob: the global feature (pool5 in GLOBAL_BINS^2 cells) for cosine neighbours."""

# Crops keep their aspect, so pool5 maps differ in size: max-pooled into a
# fixed grid of cells (6 x 6: pool5's own size on a 227 x 227 input).
GLOBAL_BINS = 6


def crop_frame(item, image_size, side=features.DEFAULT_SIDE, context=features.CONTEXT):
    """(x0, y0, scale) of `features.prepare`'s crop of `item` in an image of
    `image_size` (W, H): the same arithmetic, kept beside it by a test."""
    width, height = image_size
    x, y, w, h = item.box
    m = context * max(w, h)
    x0, y0 = max(0.0, x - m), max(0.0, y - m)
    x1, y1 = min(float(width), x + w + m), min(float(height), y + h + m)
    return x0, y0, side / max(x1 - x0, y1 - y0)


def to_frame(item, frame):
    """(keypoints K x 3, box (x, y, w, h)) of `item` in a crop frame."""
    x0, y0, scale = frame
    kps = np.array(item.keypoints, np.float64)
    kps[:, 0] = (kps[:, 0] + 0.5 - x0) * scale - 0.5
    kps[:, 1] = (kps[:, 1] + 0.5 - y0) * scale - 0.5
    bx, by, bw, bh = item.box
    box = ((bx + 0.5 - x0) * scale - 0.5, (by + 0.5 - y0) * scale - 0.5, bw * scale, bh * scale)
    return kps, box


def global_layer(fnet):
    """pool5 when the net has it as a spatial blob, else its last one."""
    return 'pool5' if 'pool5' in fnet.geometry else list(fnet.geometry)[-1]


def _cells(n, bins):
    """[(start, stop)] of `bins` nearly equal, non-empty ranges covering 0..n."""
    out = []
    for i in range(bins):
        start = int(np.floor(i * n / bins))
        out.append((start, max(int(np.ceil((i + 1) * n / bins)), start + 1)))
    return out


def global_descriptor(fmap, bins=GLOBAL_BINS):
    """C * bins^2 vector: a C x H x W map max-pooled over a bins x bins grid
    of nearly equal cells (cells overlap when the map is smaller than that)."""
    c, h, w = fmap.shape
    out = np.empty((c, bins, bins), np.float32)
    for i, (y0, y1) in enumerate(_cells(h, bins)):
        for j, (x0, x1) in enumerate(_cells(w, bins)):
            out[:, i, j] = fmap[:, y0:y1, x0:x1].max(axis=(1, 2))
    return out.ravel()


def shared_layers(fnet, mine):
    """`mine` plus the default layers of `align` (4th conv) and `predict`
    (last conv): one cache file per object serves both subcommands."""
    defaults = {fnet.layers[min(3, len(fnet.layers) - 1)], fnet.layers[-1]}
    return sorted(set(mine) | defaults)


def load(cache, items, layers, glob_layer, progress=True, desc='objects'):
    """(objects, skipped {reason: count}) for `items`.

    An item whose image is missing or unreadable, whose box or keypoints
    fall outside its image, or that shows no keypoint is skipped and counted
    by reason (the first message of each reason kept in `examples`)."""
    from tqdm import tqdm
    wanted = sorted(set(layers) | {glob_layer})
    objs, skipped, examples = [], collections.Counter(), {}
    for item in tqdm(items, desc=desc, unit='img', disable=not progress, mininterval=0.5):
        kps = np.asarray(item.keypoints)
        if not (kps[:, 2] > 0).any():
            skipped['no visible keypoint'] += 1
            continue
        try:
            size = image_size(item.path)
            maps, image, _ = cache.get(item, wanted)
        except (OSError, ValueError) as e:
            reason = ('unreadable image' if isinstance(e, (OSError, ImageError)) else
                      'too small for the net' if isinstance(e, InputSizeError) else 'bad annotation')
            skipped[reason] += 1
            examples.setdefault(reason, str(e))
            continue
        frame = crop_frame(item, size, cache.side, cache.context)
        kp, box = to_frame(item, frame)
        glob = global_descriptor(maps[glob_layer])
        if glob_layer not in layers:
            del maps[glob_layer]
        objs.append(Obj(item, image, kp, box, maps, glob))
    return objs, dict(counts=dict(skipped), examples=examples)


def lattice(geometry, shape):
    """Unit centres (x, y) of a map of `shape` (h, w), row-major, h*w x 2."""
    h, w = shape
    ys = geometry.offset + geometry.stride * np.arange(h)
    xs = geometry.offset + geometry.stride * np.arange(w)
    return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)


def sift_map(image, geometry, shape, size):
    """128 x h x w SIFT-`size` descriptors at the centres of a map of `shape`
    with `geometry` (SIFT on the conv grid, as the paper aligns)."""
    d = sift.descriptors(image, lattice(geometry, shape), size)
    return d.T.reshape(-1, shape[0], shape[1])


def dense_sift(image, stride, size):
    """(128 x h x w map, Geometry) of SIFT-`size` on a lattice of `stride`
    pixels covering the image (first centre at (stride - 1) / 2)."""
    h_img, w_img = image.shape[:2]
    offset = (stride - 1) / 2.0
    shape = (max(1, int((h_img - 1 - offset) // stride) + 1), max(1, int((w_img - 1 - offset) // stride) + 1))
    geometry = Geometry(float(stride), offset, float(size))
    return sift_map(image, geometry, shape, size), geometry


def subset(items, n, rng):
    """n items drawn at random (all when n <= 0 or n >= len), in their order."""
    if n <= 0 or n >= len(items):
        return list(items)
    return [items[i] for i in np.sort(rng.permutation(len(items))[:n])]


def skipped_text(skipped):
    """One line saying what was skipped, by split and reason."""
    parts = []
    for split in ('train', 'test'):
        counts = skipped[split]['counts']
        parts.append('%s: %s' % (split, ', '.join('%d %s' % (n, r) for r, n in counts.items())
                                 if counts else 'none'))
    cats = skipped['categories_without_training']
    if cats:
        parts.append('test objects of categories without enough training objects: %s'
                     % ', '.join('%s %d' % kv for kv in cats.items()))
    return '; '.join(parts)
