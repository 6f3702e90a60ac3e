"""Sliding-window part detectors and the nearest-neighbour prior (paper 5.2).

Every object is its box crop (`features.prepare`: box with context, longer
side fixed).  A feature map (C x H x W) has a geometry (unit j centred at
offset + stride * j).  For keypoint type k:

* descriptor of unit (i, j): the `cells` x `cells` neighbouring units'
  columns concatenated (zeros beyond the map), L2-normalized;
* positives: units within `pos_radius` pixels (Euclidean) of the visible
  keypoint, or the single nearest unit when pos_radius is None (conv: "the
  closest features"); negatives: units farther than `neg_radius` in
  Chebyshev distance (conv: the keypoint is outside the unit's square
  receptive field, neg_radius = size / 2) or Euclidean (SIFT: >= 4x size);
* a linear SVM (liblinear) on the positives and a random start of
  negatives, then `rounds` of hard-negative mining: every negative unit of
  every training image scoring above -1 joins the set, and it retrains;
* its raw score is mapped to (0, 1) by a logistic fitted on the final
  training set's scores (Platt), so it can be raised to a power.

The prior of keypoint k on a test object: a spherical Gaussian (sigma
pixels) at the keypoint of the nearest training object (cosine of pool5)
that has k visible, carried over in box-normalized coordinates.  The final
score of a unit is s^(1 - eta) * p^eta; the prediction is the best unit's
centre.
"""
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

HARD_MARGIN = -1.0   # a negative scoring above this violates the SVM margin
START_NEGATIVES = 20  # random negatives per training image before mining
MAX_NEGATIVES = 20000


class Sample:
    """One object for the detectors: its map, geometry, keypoints (crop
    frame, K x 3) and box in the crop frame (x, y, w, h)."""

    def __init__(self, fmap, geometry, keypoints, box):
        self.fmap = np.asarray(fmap, np.float32)
        self.geometry = geometry
        self.keypoints = np.asarray(keypoints, np.float64)
        self.box = tuple(float(v) for v in box)
        _, h, w = self.fmap.shape
        ys = geometry.offset + geometry.stride * np.arange(h)
        xs = geometry.offset + geometry.stride * np.arange(w)
        self.centres = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)  # (x, y), row-major
        self._descriptors = {}

    def descriptors(self, cells):
        """`window_descriptors` of the map, kept: every keypoint's training reuses them."""
        if cells not in self._descriptors:
            self._descriptors[cells] = window_descriptors(self.fmap, cells)
        return self._descriptors[cells]


# ------------------------------------------------------------ descriptors ---

def window_descriptors(fmap, cells=3):
    """(H * W) x (cells^2 * C) L2-normalized window descriptors of a map."""
    c, h, w = fmap.shape
    r = cells // 2
    pad = np.zeros((c, h + 2 * r, w + 2 * r), np.float32)
    pad[:, r:r + h, r:r + w] = fmap
    parts = [pad[:, dy:dy + h, dx:dx + w] for dy in range(cells) for dx in range(cells)]
    d = np.concatenate(parts, 0).reshape(cells * cells * c, -1).T
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)


def window_scores(fmap, weights, bias, cells=3):
    """H x W scores w . descriptor + b of every unit, without building the
    descriptors: a sum of `cells`^2 shifted per-cell dot products, divided
    by the window norm."""
    c, h, w = fmap.shape
    r = cells // 2
    wts = np.asarray(weights, np.float32).reshape(cells * cells, c)
    pad = np.zeros((c, h + 2 * r, w + 2 * r), np.float32)
    pad[:, r:r + h, r:r + w] = fmap
    sq = (pad ** 2).sum(0)
    dot = np.zeros((h, w), np.float64)
    norm2 = np.zeros((h, w), np.float64)
    for n, (dy, dx) in enumerate((dy, dx) for dy in range(cells) for dx in range(cells)):
        dot += np.tensordot(wts[n], pad[:, dy:dy + h, dx:dx + w], axes=(0, 0))
        norm2 += sq[dy:dy + h, dx:dx + w]
    return dot / np.maximum(np.sqrt(norm2), 1e-12) + bias


# ---------------------------------------------------------------- labels ---

def unit_labels(sample, k, pos_radius, neg_radius, neg_metric):
    """(positive unit indices, negative unit indices) of keypoint k in a
    sample; both empty when k is not visible."""
    kp = sample.keypoints[k]
    if kp[2] <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    d = sample.centres - kp[:2]
    euclid = np.hypot(d[:, 0], d[:, 1])
    if pos_radius is None:
        pos = np.array([int(np.argmin(euclid))])
    else:
        pos = np.flatnonzero(euclid <= pos_radius)
        if not len(pos):
            pos = np.array([int(np.argmin(euclid))])
    far = np.abs(d).max(1) if neg_metric == 'chebyshev' else euclid
    return pos, np.flatnonzero(far > neg_radius if neg_metric == 'chebyshev' else far >= neg_radius)


# -------------------------------------------------------------- training ---

class Detector:
    """A linear part detector of one keypoint type, with its Platt map."""

    def __init__(self, weights, bias, platt, cells, stats):
        self.weights, self.bias, self.platt, self.cells = weights, bias, platt, cells
        self.stats = stats

    def raw(self, fmap):
        return window_scores(fmap, self.weights, self.bias, self.cells)

    def probability(self, fmap):
        a, b = self.platt
        return 1.0 / (1.0 + np.exp(-(a * self.raw(fmap) + b)))


def train_detector(samples, k, config, rng):
    """A `Detector` of keypoint k from training samples (None if no sample
    shows k).  config: dict(cells, C, pos_radius, neg_radius, neg_metric,
    rounds)."""
    cells = config['cells']
    descs = [None] * len(samples)
    pos_x, neg_sets = [], []
    for n, s in enumerate(samples):
        pos, neg = unit_labels(s, k, config['pos_radius'], config['neg_radius'], config['neg_metric'])
        if not len(pos):
            neg_sets.append(np.zeros(0, np.int64))
            continue
        descs[n] = s.descriptors(cells)
        pos_x.append(descs[n][pos])
        neg_sets.append(neg)
    if not pos_x:
        return None
    chosen = [rng.permutation(neg)[:START_NEGATIVES] for neg in neg_sets]
    pos_x = np.concatenate(pos_x)
    svm, stats = None, dict(positives=len(pos_x), rounds=[])
    for round_ in range(config['rounds'] + 1):
        neg_x = np.concatenate([descs[n][c] for n, c in enumerate(chosen) if len(c)] or
                               [np.zeros((0, pos_x.shape[1]), np.float32)])
        if not len(neg_x):
            raise ValueError('keypoint %d: no negative units (the crops are too small for '
                             'the negative radius %g)' % (k, config['neg_radius']))
        x = np.concatenate([pos_x, neg_x])
        y = np.r_[np.ones(len(pos_x)), -np.ones(len(neg_x))]
        svm = LinearSVC(C=config['C'], class_weight='balanced', dual=True, max_iter=5000,
                        random_state=0).fit(x, y)
        stats['rounds'].append(len(neg_x))
        if round_ == config['rounds']:
            break
        added = 0
        for n, neg in enumerate(neg_sets):
            if not len(neg):
                continue
            scores = descs[n][neg] @ svm.coef_[0] + svm.intercept_[0]
            hard = np.setdiff1d(neg[scores > HARD_MARGIN], chosen[n])
            chosen[n] = np.union1d(chosen[n], hard)
            added += len(hard)
        if not added or sum(map(len, chosen)) > MAX_NEGATIVES:
            break
    scores = x @ svm.coef_[0] + svm.intercept_[0]
    platt = LogisticRegression(C=1e4).fit(scores[:, None], y > 0)
    return Detector(svm.coef_[0].astype(np.float32), float(svm.intercept_[0]),
                    (float(platt.coef_[0, 0]), float(platt.intercept_[0])), cells, stats)


def train_all(samples, num_keypoints, config, seed=0):
    """[Detector or None] per keypoint type."""
    rng = np.random.default_rng(seed)
    return [train_detector(samples, k, config, rng) for k in range(num_keypoints)]


# ----------------------------------------------------------------- prior ---

def box_map(points, box_from, box_to):
    """Points (x, y) of one box frame carried to another in box-normalized
    coordinates (boxes (x, y, w, h))."""
    p = np.asarray(points, np.float64)
    fx, fy, fw, fh = box_from
    tx, ty, tw, th = box_to
    return np.stack([(p[..., 0] - fx) / fw * tw + tx, (p[..., 1] - fy) / fh * th + ty], -1)


def prior_means(test_box, neighbours, k):
    """Mean of keypoint k's prior: the first neighbour (Samples in order of
    similarity) with k visible, carried into the test box; None if none."""
    for s in neighbours:
        if s.keypoints[k, 2] > 0:
            return box_map(s.keypoints[k, :2], s.box, test_box)
    return None


def gaussian_prior(centres, mean, sigma):
    """Unnormalized spherical Gaussian at `mean` evaluated at unit centres
    (all ones without a mean: no prior)."""
    if mean is None:
        return np.ones(len(centres))
    d2 = ((centres - mean) ** 2).sum(1)
    return np.exp(-d2 / (2.0 * sigma ** 2))


# ------------------------------------------------------------ prediction ---

def combine(prob, prior, eta):
    """log of s^(1 - eta) * p^eta (logs keep the tiny priors ordered)."""
    return (1 - eta) * np.log(np.maximum(prob, 1e-300)) + eta * np.log(np.maximum(prior, 1e-300))


def unit_scores(detectors, sample, neighbours, sigma):
    """Per keypoint (prob (H*W), prior (H*W)) of one test sample; None for
    a keypoint without a detector."""
    out = []
    for k, det in enumerate(detectors):
        if det is None:
            out.append(None)
            continue
        prob = det.probability(sample.fmap).ravel()
        prior = gaussian_prior(sample.centres, prior_means(sample.box, neighbours, k), sigma)
        out.append((prob, prior))
    return out


def predict(scores, centres, eta):
    """K x 3 predicted keypoints (x, y, predicted) from `unit_scores`."""
    pred = np.zeros((len(scores), 3))
    for k, sc in enumerate(scores):
        if sc is None:
            continue
        j = int(np.argmax(combine(sc[0], sc[1], eta)))
        pred[k] = [centres[j, 0], centres[j, 1], 1]
    return pred
