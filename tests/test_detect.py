"""Part detectors and the nearest-neighbour prior of paper section 5.2."""
import collections

import numpy as np
import pytest

from posenorm.correspondence import detect

Geom = collections.namedtuple('Geom', 'stride offset size')
GEOM = Geom(8.0, 3.5, 40.0)
CONFIG = dict(cells=3, C=1.0, pos_radius=None, neg_radius=20.0, neg_metric='chebyshev', rounds=2)


def _samples(n, rng, num_kp=2, side=12, channels=8):
    """Maps of noise with keypoint k's signature at the unit nearest it."""
    signatures = np.random.default_rng(99).normal(size=(num_kp, channels)) * 3
    out = []
    for _ in range(n):
        fmap = rng.normal(size=(channels, side, side)).astype(np.float32)
        kps = np.zeros((num_kp, 3))
        for k in range(num_kp):
            i, j = rng.integers(1, side - 1, size=2)
            fmap[:, i, j] += signatures[k]
            kps[k] = [GEOM.offset + GEOM.stride * j, GEOM.offset + GEOM.stride * i, 1]
        out.append(detect.Sample(fmap, GEOM, kps, (0, 0, side * 8, side * 8)))
    return out


def test_window_scores_equal_descriptor_dot_products():
    rng = np.random.default_rng(0)
    fmap = rng.normal(size=(5, 6, 7)).astype(np.float32)
    w = rng.normal(size=9 * 5)
    d = detect.window_descriptors(fmap, 3)
    assert d.shape == (42, 45)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(detect.window_scores(fmap, w, 0.5).ravel(), d @ w + 0.5, rtol=1e-4)
    # The corner window holds the corner unit in its centre cell (index 4)
    # and zeros beyond the map (cells 0-3 and 6).
    np.testing.assert_allclose(d[0, 20:25] * np.linalg.norm(fmap[:, :2, :2]), fmap[:, 0, 0], rtol=1e-5)
    assert not d[0, :20].any() and not d[0, 30:35].any()


def test_unit_labels_positives_nearest_negatives_outside_receptive_field():
    s = _samples(1, np.random.default_rng(1))[0]
    s.keypoints[0] = [40.0, 30.0, 1]
    pos, neg = detect.unit_labels(s, 0, None, 20.0, 'chebyshev')
    assert s.centres[pos[0]].tolist() == [43.5, 27.5]
    assert (np.abs(s.centres[neg] - [40, 30]).max(1) > 20).all()
    assert len(neg) + (np.abs(s.centres - [40, 30]).max(1) <= 20).sum() == len(s.centres)
    pos, neg = detect.unit_labels(s, 0, 16.0, 32.0, 'euclidean')   # the SIFT rule
    assert (np.hypot(*(s.centres[pos] - [40, 30]).T) <= 16).all() and len(pos) > 1
    assert (np.hypot(*(s.centres[neg] - [40, 30]).T) >= 32).all()
    s.keypoints[1, 2] = 0
    assert [len(a) for a in detect.unit_labels(s, 1, None, 20.0, 'chebyshev')] == [0, 0]


def test_detectors_find_their_keypoints_far_above_chance():
    rng = np.random.default_rng(2)
    train, test = _samples(40, rng), _samples(20, rng)
    dets = detect.train_all(train, 2, CONFIG)
    assert all(d.stats['rounds'][-1] >= d.stats['rounds'][0] for d in dets)  # mining adds
    hits = 0
    for s in test:
        pred = detect.predict(detect.unit_scores(dets, s, [], sigma=10.0), s.centres, eta=0.0)
        # Units beside the keypoint share its signature in an off-centre
        # cell and are not negatives: a hit is within one unit.
        hits += (np.hypot(*(pred[:, :2] - s.keypoints[:, :2]).T) <= 1.5 * GEOM.stride).sum()
    assert hits / (2 * len(test)) > 0.8        # chance: 9 units of 144


def test_prior_breaks_ties_and_eta_one_follows_it():
    s = _samples(1, np.random.default_rng(3))[0]
    neighbour = detect.Sample(s.fmap, GEOM, [[20.0, 20.0, 0], [60.0, 50.0, 1]], (10, 10, 80, 80))
    other = detect.Sample(s.fmap, GEOM, [[30.0, 30.0, 1], [0, 0, 0]], (0, 0, 160, 160))
    # Keypoint 0: the first neighbour does not see it, the second does.
    assert detect.prior_means(s.box, [neighbour, other], 0) == pytest.approx(
        [30 * 96 / 160, 30 * 96 / 160])
    assert detect.prior_means(s.box, [neighbour, other], 1) == pytest.approx(
        [50 * 96 / 80, 40 * 96 / 80])
    flat = np.full(len(s.centres), 0.5)
    prior = detect.gaussian_prior(s.centres, np.array([60.0, 44.0]), 10.0)
    pred = detect.predict([(flat, prior)], s.centres, eta=1.0)
    assert pred[0].tolist() == [59.5, 43.5, 1]
    assert detect.gaussian_prior(s.centres, None, 10.0).tolist() == [1.0] * len(s.centres)
    # eta = 0 ignores the prior entirely.
    prob = np.zeros(len(s.centres)); prob[5] = 1
    assert detect.predict([(prob, prior)], s.centres, eta=0.0)[0, :2].tolist() == s.centres[5].tolist()
