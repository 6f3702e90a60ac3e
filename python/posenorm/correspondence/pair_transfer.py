"""Keypoint transfer between two images, the algorithm of `align` on one pair.

SRC (with keypoints) is aligned to DST on a feature grid, a conv layer of a
net or SIFT on a lattice, by the same SIFT-Flow-style BP (`flow.align`:
source = DST's grid, target = SRC's), and SRC's keypoints are carried onto
DST through the spline-interpolated flow (`warp`), exactly as `align` carries
a neighbour's keypoints onto a test object.

* Objects: each image's box with `features.CONTEXT` context (the whole image
  when no box is given), cropped and scaled so its longer side is `side`
  (`features.prepare`); points move between image and crop by
  `objects.crop_frame`'s arithmetic.
* Mirrored pose: the mirrored SRC (left/right keypoint names swapped, since a
  mirror turns a bird's left wing into a right one) is aligned too, and the
  alignment of lower deformation energy per grid node is kept.
* Confidence: the deformation energy is the minimized objective in units of
  the pair's median match cost (`flow.data_cost`), so a node matched exactly
  with no strain costs 0 and a typical match about 1; a keypoint's
  confidence is exp(-energy of the DST grid node nearest it), the pair's
  exp(-energy per node).
"""
import collections
import re

import numpy as np

from posenorm.core.geometry import nearest_unit
from posenorm.core.images import image_size
from posenorm.correspondence import dataset, features, flow, objects, transfer, warp
from posenorm.data.cub import mirror_name

# BP settings of `align` (docs/correspondence_alignment.md says how they were picked).
RADIUS, ALPHA, ITERATIONS = 4, 0.1, 20
STEP = 2  # lattice (pixels) on which `warp.transfer_points` inverts the flow

Side = collections.namedtuple('Side', 'image keypoints frame')
Side.__doc__ = """One image's object: `image` the crop (RGB uint8), `keypoints`
K x 3 (x, y, v) in the crop frame (None for DST), `frame` (x0, y0, scale)."""


# ----------------------------------------------------------- features ---

def net_describer(fnet, layer):
    """image -> (h x w x C unit columns, Geometry) of a conv layer of a FeatureNet."""
    layer = fnet.check_layers([layer])[0]

    def describe(image):
        fmap = fnet.extract(image, [layer])[layer]
        return flow.unit_columns(fmap.transpose(1, 2, 0)), fnet.geometry[layer]
    return describe


def sift_describer(size, stride):
    """image -> (h x w x 128 unit columns, Geometry) of SIFT-`size` on a
    lattice of `stride` pixels (`objects.dense_sift`)."""
    def describe(image):
        fmap, geometry = objects.dense_sift(image, stride, size)
        return flow.unit_columns(fmap.transpose(1, 2, 0)), geometry
    return describe


def parse_sift_layer(layer):
    """SIFT size of a `--transfer-layer` value 'SIFT-<size>' (`sift.row_name`), else None."""
    m = re.fullmatch(r'SIFT-(\d+)', layer or '')
    if not m:
        return None
    if int(m.group(1)) < 4:
        raise ValueError('--transfer-layer %s: SIFT needs a size of at least 4 pixels' % layer)
    return int(m.group(1))


# ------------------------------------------------------------- frames ---

def crop_object(path, keypoints, names, box=None, side=features.DEFAULT_SIDE):
    """Side of the image at `path`: its `box` (x, y, w, h; None: the whole
    image) with context, longer side `side`.  Visible keypoints more than 10
    pixels outside the image are an error naming the image and keypoint."""
    size = image_size(path)
    if box is None:
        box = (0.0, 0.0, float(size[0]), float(size[1]))
    else:
        check_box(box, size, path)
    kps = np.zeros((len(names), 3)) if keypoints is None else np.asarray(keypoints, np.float64)
    item = dataset.Item(path, 'object', kps, tuple(box), tuple(names), 'test')
    frame = objects.crop_frame(item, size, side, features.CONTEXT)
    image, _ = features.prepare(item, side, features.CONTEXT)
    kp, _ = objects.to_frame(item, frame)
    return Side(image, None if keypoints is None else kp, frame)


def check_box(box, size, path):
    x, y, w, h = box
    if not (w > 0 and h > 0 and x < size[0] and y < size[1] and x + w > 0 and y + h > 0):
        raise ValueError('%s: box %s does not overlap the %d x %d image'
                         % (path, ','.join('%g' % v for v in box), size[0], size[1]))


def to_image(points, frame):
    """K x 2 crop-frame points back to image pixels (inverse of `objects.to_frame`)."""
    x0, y0, scale = frame
    pts = np.array(points, np.float64)
    pts[:, 0] = (pts[:, 0] + 0.5) / scale - 0.5 + x0
    pts[:, 1] = (pts[:, 1] + 0.5) / scale - 0.5 + y0
    return pts


# ------------------------------------------------------------- mirror ---

def _partner_name(name):
    """`name`'s left/right partner (`cub.mirror_name`, the dataset's flip
    rule), else None."""
    swapped = mirror_name(name)
    return swapped if swapped != name else None


def mirror_permutation(names):
    """Index list p: the mirrored object's keypoint k is the original's p[k]
    (left and right partners exchanged, the others kept)."""
    index = {n: i for i, n in enumerate(names)}
    return [index.get(_partner_name(n), i) for i, n in enumerate(names)]


def mirror_side(side, names):
    """The crop flipped left-right, its keypoints moved and renamed."""
    width = side.image.shape[1]
    kps = np.array(side.keypoints, np.float64)
    kps[:, 0] = width - 1 - kps[:, 0]
    return Side(np.ascontiguousarray(side.image[:, ::-1]), kps[mirror_permutation(names)],
                side.frame)


# ---------------------------------------------------------- alignment ---

def node_energy(labels, cost, alpha):
    """H x W map of each grid node's share of `flow.energy`: its data cost
    plus half of alpha x the squared label change to each 4-neighbour (the
    map sums to the energy)."""
    labels = np.asarray(labels, np.float64)
    h, w = cost.shape[:2]
    out = cost[np.arange(h)[:, None], np.arange(w)[None, :],
               labels[..., 0].astype(int), labels[..., 1].astype(int)].astype(np.float64)
    dy = 0.5 * alpha * ((labels[1:] - labels[:-1]) ** 2).sum(-1)
    dx = 0.5 * alpha * ((labels[:, 1:] - labels[:, :-1]) ** 2).sum(-1)
    out[1:] += dy
    out[:-1] += dy
    out[:, 1:] += dx
    out[:, :-1] += dx
    return out


def align(src, dst_image, describe, radius=RADIUS, alpha=ALPHA, iterations=ITERATIONS):
    """SRC (a Side) aligned to DST: `transfer.align_neighbour`'s dict plus
    'points' K x 2 (SRC's keypoints on DST's crop), 'residual' K (pixels),
    'node_energy' H x W and 'keypoint_energy' K (of the nearest DST node)."""
    dst_grid, geometry = describe(dst_image)
    src_grid, _ = describe(src.image)
    result = transfer.align_neighbour(dst_grid, src_grid, geometry, dst_image.shape[:2], radius,
                                      alpha, iterations)
    result['points'], result['residual'] = warp.transfer_points(src.keypoints[:, :2],
                                                                result['dense'], STEP)
    cost, _ = flow.data_cost(dst_grid, src_grid, radius)
    nodes = node_energy(result['flow'] + radius, cost, alpha)
    h, w = nodes.shape
    i = nearest_unit(geometry, result['points'][:, 1], h)
    j = nearest_unit(geometry, result['points'][:, 0], w)
    result.update(node_energy=nodes, keypoint_energy=nodes[i, j])
    return result


def transfer_pair(src, dst_image, names, describe, mirror=True, **bp):
    """Transfer SRC's keypoints onto DST's crop.

    src: Side with keypoints; dst_image: DST's crop.  Returns dict(points
    K x 3 (x, y, transferred) in DST's crop frame, confidence K,
    mirrored (whether the mirrored SRC won), energy (per node of the kept
    alignment), energies {'as is', 'mirrored'}, warped (SRC, mirrored when
    it won, resampled onto DST's crop), source (the Side aligned), alignment)."""
    candidates = {'as is': src}
    if mirror:
        candidates['mirrored'] = mirror_side(src, names)
    results = {k: align(s, dst_image, describe, **bp) for k, s in candidates.items()}
    best = min(results, key=lambda k: results[k]['per_node'])  # ties keep 'as is'
    result, used = results[best], candidates[best]
    seen = used.keypoints[:, 2] > 0
    points = np.zeros((len(names), 3))
    points[seen, :2] = result['points'][seen]
    points[seen, 2] = 1
    return dict(points=points, confidence=np.where(seen, np.exp(-result['keypoint_energy']), 0.0),
                mirrored=best == 'mirrored', energy=result['per_node'],
                energies={k: r['per_node'] for k, r in results.items()},
                warped=np.clip(warp.warp_image(used.image, result['dense']), 0, 255).astype(np.uint8),
                source=used, alignment=result)


CONFIDENCE = ('exp(-deformation energy) of the DST grid node nearest the keypoint, in units of '
              'the pair\'s median match cost (1: an exact match with no strain)')
