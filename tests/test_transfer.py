"""Keypoint transfer (paper section 4) and its PCK, on hand-built cases."""
import collections

import numpy as np
import pytest

from posenorm.core import metrics
from posenorm.correspondence import objects, transfer

Geom = collections.namedtuple('Geom', 'stride offset size')


def test_shifted_copy_transfers_exactly_within_a_grid_step():
    # A test object and its own copy moved by (2, 1) grid steps: the
    # keypoints carried back land within one stride of the truth.
    geom, size = Geom(16.0, 7.5, 67.0), 208
    rng = np.random.default_rng(0)
    big = rng.normal(size=(16, 16, 32))
    test_grid, copy_grid = big[2:15, 1:14], big[:13, :13]  # copy(p) = test(p - (2, 1))
    truth = np.array([[60.0, 70.0, 1], [120.0, 100.0, 1], [150.0, 140.0, 1], [90.0, 40.0, 0]])
    moved = truth.copy()
    moved[:, 0] += 1 * geom.stride
    moved[:, 1] += 2 * geom.stride
    pred, alignments, order = transfer.transfer(test_grid, [(copy_grid, moved)], geom, (size, size),
                                                radius=3, alpha=0.1, iterations=30, best=1)
    assert (alignments[0]['flow'][:11, :12] == [2, 1]).all()   # where the copy has a match
    err = np.hypot(*(pred[:3, :2] - truth[:3, :2]).T)
    assert err.max() <= geom.stride
    assert pred[3, 2] == 0 and (pred[:3, 2] == 1).all()   # invisible stays unpredicted


def test_median_over_neighbours_that_see_the_keypoint():
    points = np.array([[[0, 0], [5, 5]], [[2, 2], [9, 9]], [[10, 10], [1, 1]]], float)
    visible = np.array([[1, 1], [1, 0], [1, 0]], bool)
    pred = transfer.median_keypoints(points, visible)
    np.testing.assert_allclose(pred[0], [2, 2, 1])
    assert pred[1, 2] == 0      # seen by 1 of 3: not predicted


def test_crop_frame_round_trip_and_copy_baseline():
    box = (10.0, 20.0, 50.0, 100.0)
    kp = np.array([[35.0, 70.0, 1], [10.0, 20.0, 0]])
    crop = transfer.to_crop(kp, box, 200)
    np.testing.assert_allclose(crop[0, :2], [100, 100])
    np.testing.assert_allclose(transfer.from_crop(crop, box, 200), kp)
    copied = transfer.copy_nearest(kp, box, (0.0, 0.0, 100.0, 200.0))
    np.testing.assert_allclose(copied, [[50, 100, 1], [0, 0, 0]])


def test_cosine_neighbours_excludes_self_and_orders_by_similarity():
    db = np.array([[1, 0], [1, 0.1], [0, 1], [1, 1]], float)
    nn = transfer.cosine_neighbours(db, db, 2, exclude=np.arange(4))
    assert nn[0].tolist() == [1, 3]
    assert nn[2].tolist() == [3, 1]
    with pytest.raises(ValueError):
        transfer.cosine_neighbours(db[:1], db[:1], 3, exclude=[0])


def test_pck_penalizes_predictions_of_invisible_keypoints():
    box = [[0, 0, 100, 50]]                       # threshold alpha * 100
    gt = np.array([[[10, 10, 1], [50, 20, 1], [0, 0, 0], [5, 5, 0]]], float)
    pred = np.array([[[19, 10, 1], [50, 31, 1], [3, 3, 1], [0, 0, 0]]], float)
    r = metrics.pck(pred, gt, box, (0.1, 0.05), transfer.PCK_CONVENTION)
    # kp0: 9 px (right at 0.1, wrong at 0.05); kp1: 11 px (wrong);
    # kp2: predicted but invisible (counted, wrong); kp3: neither (not counted).
    assert r['per_keypoint'] == [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [None, None]]
    assert r['counted'] == [1, 1, 1, 0]
    assert r['mean'] == pytest.approx([1 / 3, 0.0])
    # A distance exactly at alpha * max(w, h) counts (inclusive).
    pred[0, 1] = [50, 30, 1]
    assert metrics.pck(pred, gt, box, (0.1,), transfer.PCK_CONVENTION)['per_keypoint'][1] == [1.0]


def test_global_descriptor_pools_cells_of_any_map_size():
    fmap = np.arange(2 * 4 * 13, dtype=np.float32).reshape(2, 4, 13)
    d = objects.global_descriptor(fmap, bins=6).reshape(2, 6, 6)
    assert d[0, 0, 0] == fmap[0, 0, :3].max() and d[1, 5, 5] == fmap[1, 3, 10:].max()
    # Fewer rows than cells: cells repeat rows, never go empty.
    assert (d[:, 0] == d[:, 1]).all() or (d[:, 1] == d[:, 2]).all()


def test_finer_alignment_lattice():
    from posenorm.core.geometry import Geometry
    from posenorm.correspondence.commands import align
    geometry = Geometry(16.0, 7.5, 67.0)
    assert align.align_geometry(geometry, None) == (geometry, 1)
    assert align.align_geometry(geometry, 4) == (Geometry(4.0, 7.5, 67.0), 4)
    for bad in (6, 32):
        with pytest.raises(ValueError, match='must divide the conv layer'):
            align.align_geometry(geometry, bad)
    # bilinear between unit centres: a plane stays the plane, the old units stay put
    yy, xx = np.mgrid[0:3, 0:4].astype(np.float64)
    fmap = np.stack([2 * yy + 3 * xx, np.ones_like(yy)])
    fine = align.refine(fmap, 2)
    assert fine.shape == (2, 5, 7)
    y2, x2 = np.mgrid[0:5, 0:7] / 2.0
    assert np.allclose(fine[0], 2 * y2 + 3 * x2) and np.allclose(fine[1], 1)
    assert np.array_equal(fine[:, ::2, ::2], fmap)


def test_sift_descriptors_sit_at_the_given_points():
    # (x, y) order, not (row, column): an image moved 10 px right has, at
    # x + 10, the descriptors the original has at x; VLFeat's are unit norm
    # (x 512), so `flow.unit_columns` only rescales them.
    from scipy import ndimage
    from posenorm.correspondence import sift
    rng = np.random.default_rng(0)
    image = ndimage.gaussian_filter(rng.random((120, 160)), 2).astype(np.float32) * 255
    moved = np.zeros_like(image)
    moved[:, 10:] = image[:, :-10]
    points = np.array([[50.0, 40.0], [70.0, 60.0], [90.0, 45.0]])
    here = sift.descriptors(image, points, 32)
    assert np.allclose(sift.descriptors(moved, points + (10, 0), 32), here, atol=1e-3)
    assert not np.allclose(sift.descriptors(moved, points + (0, 10), 32), here, atol=1)
    assert np.allclose(np.linalg.norm(here, axis=1), 512, rtol=1e-4)
