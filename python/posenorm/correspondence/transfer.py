"""Keypoint transfer by alignment, the copy-NN baseline, and the convention of
PCK with the penalty of paper section 4 (Table 2).

Every object is seen through its crop (`features.prepare`: the box with
context, longer side fixed, aspect kept), so PCK in the crop frame, with the
box scaled alike, equals PCK in the image.  For a test object:

1. its K nearest training objects by cosine similarity of a global feature
   (pool5 of the crop, flattened);
2. each aligned to it (`flow.align`: source = the test grid, target = the
   neighbour's grid), its keypoints carried onto the test crop through the
   spline-interpolated flow (`warp.transfer_points`);
3. neighbours ordered by the energy of their alignment per grid node (the
   paper's "deformation energy": data plus smoothness terms of the
   minimized objective, as SIFT Flow ranks its matches);
4. keypoint k predicted when at least half of the `best` lowest-energy
   neighbours have it visible, at the coordinate-wise median of their
   transferred points.

The baseline copies the nearest neighbour's visible keypoints in
box-normalized coordinates: (x, y) of box (bx, by, bw, bh) becomes
((x - bx) / bw, (y - by) / bh), and back through the target's box.
"""
import numpy as np

from posenorm.core import metrics
from posenorm.correspondence import flow as flowmod
from posenorm.correspondence import warp

TABLE2_ALPHAS = (0.1, 0.05, 0.025)
# Table 2's PCK (section 4): within alpha * max(w, h) of the box, per
# keypoint type then averaged over types, "we penalize predicted keypoints
# that are not visible in the target image" (`metrics.pck` computes it).
PCK_CONVENTION = metrics.PckConvention(reference='box', average='keypoint', invisible='wrong')


# ------------------------------------------------------------ box frames ---

def to_crop(keypoints, box, size):
    """K x 3 (x, y, v) keypoints -> the frame where `box` (x, y, w, h) is
    [0, size]^2 (box-normalized coordinates when size = 1)."""
    kp = np.array(keypoints, np.float64)
    bx, by, bw, bh = box
    kp[:, 0] = (kp[:, 0] - bx) * size / bw
    kp[:, 1] = (kp[:, 1] - by) * size / bh
    return kp


def from_crop(keypoints, box, size):
    """Inverse of `to_crop`."""
    kp = np.array(keypoints, np.float64)
    bx, by, bw, bh = box
    kp[:, 0] = kp[:, 0] * bw / size + bx
    kp[:, 1] = kp[:, 1] * bh / size + by
    return kp


# ------------------------------------------------------------ neighbours ---

def cosine_neighbours(query, database, k, exclude=None):
    """Indices (N x k) of each query row's k most cosine-similar database rows.

    query: N x D, database: M x D.  exclude: optional N-vector of a database
    index to skip per query (the query itself when both are one set; -1 for
    none).  Ties go to the lower index (stable sort).
    """
    q = np.asarray(query, np.float64).reshape(len(query), -1)
    d = np.asarray(database, np.float64).reshape(len(database), -1)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    sim = q @ d.T
    if exclude is not None:
        ex = np.asarray(exclude)
        rows = np.flatnonzero(ex >= 0)
        sim[rows, ex[rows]] = -np.inf
    k = min(k, d.shape[0] - (exclude is not None))
    if k < 1:
        raise ValueError('need at least one training object to take neighbours from')
    return np.argsort(-sim, axis=1, kind='stable')[:, :k]


# -------------------------------------------------------------- transfer ---

def align_neighbour(test_grid, neighbour_grid, geometry, shape, radius, alpha, iterations):
    """Align one neighbour to the test object; dict of `flow.align`'s result
    plus `dense` (H x W x 2 pixel flow of the test crop, shape (H, W))."""
    result = flowmod.align(test_grid, neighbour_grid, radius, alpha, iterations)
    result['dense'] = warp.pixel_flow(result['flow'], geometry, shape)
    return result


def transfer(test_grid, neighbours, geometry, shape, radius=4, alpha=0.05, iterations=20,
             best=3, step=2):
    """Predicted keypoints of one test object (crop frame) by alignment.

    neighbours: [(feature grid h x w x C, keypoints K x 3 in crop frame)];
    shape: (H, W) of the test crop.
    Returns (pred K x 3 (x, y, predicted), alignments (list of the
    neighbours' `align_neighbour` results with their transferred points
    'points' K x 2, in neighbour order), order (neighbour indices by
    increasing energy)).
    """
    alignments = []
    for grid, kps in neighbours:
        result = align_neighbour(test_grid, grid, geometry, shape, radius, alpha, iterations)
        result['points'], _ = warp.transfer_points(np.asarray(kps)[:, :2], result['dense'], step)
        alignments.append(result)
    order = np.argsort([a['per_node'] for a in alignments], kind='stable')
    chosen = order[:best]
    points = np.stack([alignments[i]['points'] for i in chosen])          # B x K x 2
    visible = np.stack([np.asarray(neighbours[i][1])[:, 2] > 0 for i in chosen])  # B x K
    return median_keypoints(points, visible), alignments, order


def median_keypoints(points, visible):
    """K x 3: keypoint k at the median of the points of the neighbours that
    see it, predicted when at least half of them do (B x K x 2, B x K)."""
    b, k = visible.shape
    pred = np.zeros((k, 3))
    for j in range(k):
        seen = visible[:, j]
        if seen.any() and 2 * seen.sum() >= b:
            pred[j, :2] = np.median(points[seen, j], axis=0)
            pred[j, 2] = 1
    return pred


def copy_nearest(neighbour_keypoints, neighbour_box, target_box):
    """The copy baseline: the nearest neighbour's keypoints carried into the
    target box in box-normalized coordinates, predicted where it sees them."""
    kp = np.array(neighbour_keypoints, np.float64)
    unit = to_crop(kp, neighbour_box, 1.0)
    out = from_crop(unit, target_box, 1.0)
    out[:, 2] = kp[:, 2] > 0
    return out
