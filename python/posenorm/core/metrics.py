"""The keypoint metrics of the paper's section 4, in plain numpy (classification:
`core.class_metrics`).

Every function states its exact definition; the choices the paper leaves open
are fixed here once and named in the report:

* PCK (Table 2): a visible ground-truth keypoint is correct when the
  predicted point lies within alpha * max(h, w) of it, (h, w) the object's
  bounding box, *inclusive* (distance <= threshold: the paper's "lies
  within").  Coordinates are original-image pixels.  The choices PCK
  depends on (threshold reference, averaging, predictions of invisible
  keypoints) are a `PckConvention`, the one definition for both papers.
* Part boxes and PCP (Table 3): head and body boxes are built from keypoints
  chosen *by part name* (`HEAD_PARTS`, `BODY_PARTS`), the same function for
  ground-truth and predicted keypoints; a predicted box is correct when its
  IoU with the ground-truth box is >= 0.5.

Coordinates follow `posenorm.data.lmdb_data`: 0-based pixel centres, so an image
W x H spans [-0.5, W - 0.5] x [-0.5, H - 0.5] as a continuous region.  Boxes
here are continuous (x0, y0, x1, y1) with area (x1 - x0) * (y1 - y0); CUB's
(x, y, w, h) boxes enter only through their w and h (PCK's max(h, w)).
"""
import collections

import numpy as np

# The alphas of the paper's Table 2, and the grid of the PCK-vs-alpha curves.
PCK_ALPHAS = (0.02, 0.05, 0.08, 0.10)
PCK_CURVE_ALPHAS = tuple(np.round(np.linspace(0.0, 0.2, 41), 3).tolist())

# Relative slack on the PCK threshold: a distance within 1e-9 * threshold of
# alpha * max(h, w) counts as "at" the threshold (hence correct), so float
# rounding of alpha * L (0.1 * 30 = 3.0000000000000004) or of the
# input <-> original coordinate round trip cannot flip an exact tie.
PCK_RELATIVE_TOLERANCE = 1e-9

# Section 3.6 / Table 3 (after Zhang et al., 2014): the parts whose keypoints
# define the head and the body box.  Matched by name (case-insensitive, '_'
# and ' ' alike), never by index, so any part order works.
HEAD_PARTS = ('beak', 'crown', 'forehead', 'left eye', 'right eye', 'nape', 'throat')
BODY_PARTS = ('back', 'belly', 'breast', 'tail', 'left wing', 'right wing',
              'left leg', 'right leg')
PART_GROUPS = {'head': HEAD_PARTS, 'body': BODY_PARTS}

# Box construction (see `part_box`): at least BOX_MIN_POINTS visible points;
# each side at least BOX_MIN_SIDE of the longer side; then BOX_MARGIN of each
# side's length added on both ends.
BOX_MIN_POINTS = 2
BOX_MIN_SIDE = 0.5
BOX_MARGIN = 0.1
PCP_IOU = 0.5


# -------------------------------------------------------------------- PCK ---

class PckConvention(collections.namedtuple('PckConvention', 'reference average invisible')):
    """The choices a PCK number depends on, stated once (public code has
    shipped PCK bugs from leaving them implicit):

    reference: the length alpha multiplies: 'box' = max(w, h) of the object's
      bounding box (both papers), 'image' = max(W, H) of the whole image.
    average: how the correct instances become one number: 'keypoint' = the
      mean over keypoint types of each type's fraction (both papers' tables),
      'pooled' = all counted instances together, 'image' = the mean over
      images of each image's fraction.
    invisible: a prediction (flag > 0) of a keypoint the ground truth does
      not show: 'ignored' (not counted: the first paper, only visible ground
      truth counts) or 'wrong' (counted and wrong: the second paper's "we
      penalize predicted keypoints that are not visible in the target").

    Always: a visible ground-truth keypoint without a prediction (flag 0) is
    wrong; "within" is inclusive (distance <= threshold, slack
    PCK_RELATIVE_TOLERANCE); a keypoint type (or image) with nothing counted
    is left out of the mean.
    """
    __slots__ = ()
    CHOICES = dict(reference=('box', 'image'), average=('keypoint', 'pooled', 'image'),
                   invisible=('ignored', 'wrong'))

    def __new__(cls, reference='box', average='keypoint', invisible='ignored'):
        self = super().__new__(cls, reference, average, invisible)
        for field, choices in cls.CHOICES.items():
            if getattr(self, field) not in choices:
                raise ValueError('PCK %s must be one of %s, not %r'
                                 % (field, choices, getattr(self, field)))
        return self

    def describe(self):
        """One line for a table header."""
        return ('PCK: within alpha x max(%s, inclusive; %s; %s' % (
            'w, h) of the object box' if self.reference == 'box' else 'W, H) of the image',
            {'keypoint': 'mean over keypoint types', 'pooled': 'pooled over all counted points',
             'image': 'mean over images'}[self.average],
            'only visible ground truth counts' if self.invisible == 'ignored' else
            'a predicted keypoint invisible in the ground truth counts wrong'))


def pck_scale(bboxes):
    """max(h, w) of N (x, y, w, h) object boxes: the unit of PCK's threshold."""
    b = np.asarray(bboxes, np.float64)
    scale = np.maximum(b[..., 2], b[..., 3])
    if np.any(~(scale > 0)):
        raise ValueError('object boxes need a positive width or height')
    return scale


def _reference_scale(convention, bboxes, image_sizes):
    if convention.reference == 'box':
        return pck_scale(bboxes)
    if image_sizes is None:
        raise ValueError('PCK relative to the image needs the image sizes (W, H)')
    size = np.asarray(image_sizes, np.float64)
    return pck_scale(np.concatenate([np.zeros_like(size), size], -1))


def keypoint_distances(pred, gt):
    """Euclidean distance (pixels) between predicted and ground-truth points.

    pred, gt: N x K x 2+ arrays ((x, y, ...)).  Returns N x K.
    """
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    return np.hypot(pred[..., 0] - gt[..., 0], pred[..., 1] - gt[..., 1])


def keypoint_correct(pred, gt, bboxes, alpha, convention=PckConvention(), image_sizes=None):
    """Which keypoints PCK at `alpha` counts correct, and which it counts at all.

    pred: N x K x 3 predicted (x, y, predicted) in original-image pixels; a
      prediction with third column 0 (the model gave no point) is wrong.
      N x K x 2 means every point is predicted.
    gt: N x K x 3 ground truth (x, y, visible).  bboxes: N x 4 (x, y, w, h);
    image_sizes: N x 2 (W, H), for convention.reference 'image'.
    Returns (correct, counted), N x K booleans: counted = gt visible (or
    predicted, under convention.invisible 'wrong'); correct = gt visible and
    predicted and distance <= alpha * reference * (1 + PCK_RELATIVE_TOLERANCE).
    """
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    if pred.shape[:2] != gt.shape[:2]:
        raise ValueError('pred %s and gt %s differ in N x K' % (pred.shape, gt.shape))
    has_pred = pred[..., 2] > 0 if pred.shape[-1] > 2 else np.ones(pred.shape[:2], bool)
    visible = gt[..., 2] > 0
    counted = visible | has_pred if convention.invisible == 'wrong' else visible
    scale = _reference_scale(convention, bboxes, image_sizes)
    threshold = alpha * scale[:, None] * (1 + PCK_RELATIVE_TOLERANCE)
    correct = visible & has_pred & (keypoint_distances(pred, gt) <= threshold)
    return correct, counted


def _fraction(correct, counted, axis=None):
    n = counted.sum(axis)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(n > 0, correct.sum(axis) / np.maximum(n, 1), np.nan)


def pck(pred, gt, bboxes, alphas=PCK_ALPHAS, convention=PckConvention(), image_sizes=None):
    """Percentage of correct keypoints, per keypoint and alpha, under `convention`.

    For keypoint k at alpha a: PCK[k, a] = #{correct instances of k} /
    #{counted instances of k} (`keypoint_correct`); NaN (None) for a keypoint
    never counted.  Returns dict(alphas, per_keypoint (K x A), counted (K),
    visible (K: visible ground truth), mean (A: over keypoint types with a
    counted instance), pooled (A), per_image_mean (A: over images with a
    counted instance), value (A: the one of the three `convention.average`
    names), keypoints_evaluated, convention (its fields and `describe()`)).
    """
    alphas = [float(a) for a in alphas]
    k = np.asarray(gt).shape[1]
    table = np.full((k, len(alphas)), np.nan)
    pooled, per_image = [], []
    for j, a in enumerate(alphas):
        correct, counted = keypoint_correct(pred, gt, bboxes, a, convention, image_sizes)
        table[:, j] = _fraction(correct, counted, 0)
        pooled.append(float(_fraction(correct, counted)))
        per_image.append(float(np.nanmean(_fraction(correct, counted, 1))) if counted.any()
                         else float('nan'))
    present = counted.sum(0) > 0
    mean = table[present].mean(0) if present.any() else np.full(len(alphas), np.nan)
    averages = dict(keypoint=[float(v) for v in mean], pooled=pooled, image=per_image)
    return dict(alphas=alphas,
                per_keypoint=[[None if np.isnan(v) else float(v) for v in row] for row in table],
                counted=counted.sum(0).tolist(), visible=(np.asarray(gt)[..., 2] > 0).sum(0).tolist(),
                mean=averages['keypoint'], pooled=pooled, per_image_mean=per_image,
                value=averages[convention.average], keypoints_evaluated=int(present.sum()),
                convention=dict(convention._asdict(), text=convention.describe()))


def pck_curve(pred, gt, bboxes, alphas=PCK_CURVE_ALPHAS, **convention):
    """PCK as a function of alpha: `pck` over a grid of alphas (default 0 to 0.2)."""
    return pck(pred, gt, bboxes, alphas, **convention)


# -------------------------------------------------------- part boxes, PCP ---

def _norm(name):
    return ' '.join(name.lower().replace('_', ' ').split())


def group_indices(part_names, group):
    """Indices in `part_names` of the parts named in `group` (a name tuple or
    'head'/'body'); KeyError naming any part missing from `part_names`."""
    if isinstance(group, str):
        group = PART_GROUPS[group]
    index = {_norm(n): i for i, n in enumerate(part_names)}
    missing = [g for g in group if _norm(g) not in index]
    if missing:
        raise KeyError('parts %s not among the part names %s' % (missing, list(part_names)))
    return np.array([index[_norm(g)] for g in group], np.int64)


def part_box(keypoints, part_names, group, image_size=None, margin=BOX_MARGIN,
             min_side=BOX_MIN_SIDE, min_points=BOX_MIN_POINTS):
    """The head or body box of each image from its keypoints.

    keypoints: N x K x 3 (x, y, flag) (or K x 3 for one image): ground truth
    (flag = visible) or predictions (flag = predicted); the same rule serves
    both.  group: 'head', 'body' or a tuple of part names.  For each image:

    1. P = the group's points with flag > 0.  Fewer than `min_points` (2)
       points: no box.
    2. The tight box (min x, min y, max x, max y) of P, width w, height h,
       L = max(w, h).  L = 0 (all points coincide): no box.
    3. A side shorter than `min_side` * L (0.5) grows symmetrically about its
       centre to min_side * L (so two points on a line still give an area).
    4. Each side grows by `margin` (0.1) of its length at both ends (the box
       is 1.2x the size in each direction).
    5. With image_size (N x 2 or 2: W, H), clipped to [-0.5, W - 0.5] x
       [-0.5, H - 0.5], the image's extent.

    Returns N x 4 (x0, y0, x1, y1) float64; a row of NaN where there is no box.
    """
    kp = np.asarray(keypoints, np.float64)
    single = kp.ndim == 2
    if single:
        kp = kp[None]
    idx = group_indices(part_names, group)
    pts = kp[:, idx]
    use = pts[..., 2] > 0
    inf = np.inf
    x0 = np.where(use, pts[..., 0], inf).min(1)
    y0 = np.where(use, pts[..., 1], inf).min(1)
    x1 = np.where(use, pts[..., 0], -inf).max(1)
    y1 = np.where(use, pts[..., 1], -inf).max(1)
    ok = use.sum(1) >= min_points
    with np.errstate(invalid='ignore'):
        w, h = x1 - x0, y1 - y0
        side = np.maximum(w, h)
        ok &= side > 0
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        w = np.maximum(w, min_side * side) * (1 + 2 * margin)
        h = np.maximum(h, min_side * side) * (1 + 2 * margin)
        box = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    if image_size is not None:
        size = np.broadcast_to(np.asarray(image_size, np.float64), (len(box), 2))
        lo = -0.5
        box[:, 0] = np.clip(box[:, 0], lo, size[:, 0] - 0.5)
        box[:, 2] = np.clip(box[:, 2], lo, size[:, 0] - 0.5)
        box[:, 1] = np.clip(box[:, 1], lo, size[:, 1] - 0.5)
        box[:, 3] = np.clip(box[:, 3], lo, size[:, 1] - 0.5)
    box[~ok] = np.nan
    return box[0] if single else box


def box_iou(a, b):
    """Intersection over union of (..., 4) continuous boxes (x0, y0, x1, y1).

    area = (x1 - x0) * (y1 - y0); IoU = area(a & b) / area(a | b); 0 when the
    union has no area; NaN when either box is missing (NaN).
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area = lambda c: (c[..., 2] - c[..., 0]) * (c[..., 3] - c[..., 1])  # noqa: E731
    union = area(a) + area(b) - inter
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    missing = np.isnan(a).any(-1) | np.isnan(b).any(-1)
    return np.where(missing, np.nan, iou)


def pcp(pred_boxes, gt_boxes, threshold=PCP_IOU):
    """Percentage of correctly localized parts (one part, e.g. the head).

    An image counts when its ground-truth box exists; images without one
    (too few visible ground-truth points, see `part_box`) are excluded and
    counted.  A counted image is correct when its predicted box exists and
    IoU(pred, gt) >= threshold (0.5: the paper says "over 0.5"; we take the
    PASCAL devkit's >=, which differs only at exact equality); a missing
    predicted box is wrong.  Returns dict(pcp (NaN when nothing counts),
    correct, evaluated, excluded, missing_predictions, mean_iou (over the
    counted images with a prediction), iou (N list, None where undefined)).
    """
    gt_boxes = np.asarray(gt_boxes, np.float64)
    pred_boxes = np.asarray(pred_boxes, np.float64)
    iou = box_iou(pred_boxes, gt_boxes)
    has_gt = ~np.isnan(gt_boxes).any(-1)
    has_pred = ~np.isnan(pred_boxes).any(-1)
    correct = has_gt & has_pred & (np.nan_to_num(iou, nan=-1.0) >= threshold)
    n = int(has_gt.sum())
    both = has_gt & has_pred
    return dict(pcp=float(correct.sum() / n) if n else float('nan'),
                correct=int(correct.sum()), evaluated=n, excluded=int((~has_gt).sum()),
                missing_predictions=int((has_gt & ~has_pred).sum()),
                mean_iou=float(iou[both].mean()) if both.any() else float('nan'),
                iou=[None if np.isnan(v) else float(v) for v in iou])
