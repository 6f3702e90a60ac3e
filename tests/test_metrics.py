"""posenorm.core.metrics on hand-computed cases: ties, boundaries, empty classes,
invisible keypoints, degenerate boxes."""
import math

import numpy as np
import pytest

from posenorm.core import class_metrics, metrics
from posenorm.data.cub import PART_NAMES
from posenorm.data.coords import from_input_coords, to_input_coords

NAN = float('nan')


# --------------------------------------------------------- classification ---

def test_top1_ties_go_to_the_lowest_index():
    scores = np.array([[0.5, 0.5, 0.0],     # tie 0/1 -> 0
                       [0.0, 1.0, 0.0],     # 1
                       [0.2, 0.4, 0.4]])    # tie 1/2 -> 1
    assert class_metrics.predicted_labels(scores).tolist() == [0, 1, 1]
    assert class_metrics.top1_accuracy(scores, [0, 1, 2]) == pytest.approx(2 / 3)
    assert class_metrics.top1_accuracy(scores, [1, 1, 1]) == pytest.approx(2 / 3)
    assert class_metrics.top1_accuracy([2, 1, 1], [2, 1, 1]) == 1.0
    assert math.isnan(class_metrics.top1_accuracy([], []))


def test_mean_per_class_excludes_and_reports_empty_classes():
    labels = [0, 0, 0, 1, 3]
    pred = [0, 0, 1, 1, 0]
    # class 0: 2/3, class 1: 1/1, class 2: no images, class 3: 0/1
    out = class_metrics.mean_per_class_accuracy(pred, labels, 4)
    assert out['mean'] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert out['empty_classes'] == [2]
    assert out['classes_evaluated'] == 3
    assert out['counts'] == [3, 1, 0, 1]
    assert out['per_class'][2] is None
    assert out['per_class'][0] == pytest.approx(2 / 3)
    # top-1 weighs images, not classes
    assert class_metrics.top1_accuracy(pred, labels) == pytest.approx(3 / 5)
    assert math.isnan(class_metrics.mean_per_class_accuracy([], [], 3)['mean'])


def test_confusion_matrix_rows_are_true_classes():
    cm = class_metrics.confusion_matrix([0, 0, 1, 1, 2], [0, 0, 0, 1, 1], 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 0]]
    assert cm.sum(1).tolist() == [3, 2, 0]
    with pytest.raises(ValueError):
        class_metrics.confusion_matrix([0, 3], [0, 1], 3)
    scores = np.eye(3)[[2, 1]]
    assert class_metrics.confusion_matrix(scores, [2, 0], 3).tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 1]]


# -------------------------------------------------------------------- PCK ---

def _one(pred_xy, gt_xy, visible=1, predicted=1):
    return (np.array([[[pred_xy[0], pred_xy[1], predicted]]], float),
            np.array([[[gt_xy[0], gt_xy[1], visible]]], float))


BOX = np.array([[0, 0, 100, 50]], float)  # max(h, w) = 100


def test_pck_threshold_is_inclusive():
    # distance exactly 5 = 0.05 * 100 (a 3-4-5 triangle): correct at 0.05
    pred, gt = _one((13, 14), (10, 10))
    assert metrics.keypoint_correct(pred, gt, BOX, 0.05)[0].all()
    assert not metrics.keypoint_correct(pred, gt, BOX, 0.02)[0].any()
    pred, gt = _one((13, 14.01), (10, 10))
    assert not metrics.keypoint_correct(pred, gt, BOX, 0.05)[0].any()
    # the threshold uses max(h, w): a tall box scales by its height
    assert metrics.keypoint_correct(*_one((13, 14), (10, 10)), [[0, 0, 20, 250]], 0.02)[0].all()


def test_pck_boundary_survives_float_rounding():
    # 0.29 * 100 = 28.999999999999996 in floating point; 29 px is "at" the threshold
    assert 0.29 * 100 < 29
    pred, gt = _one((39, 10), (10, 10))
    assert metrics.keypoint_correct(pred, gt, BOX, 0.29)[0].all()
    # and a point mapped to the input image and back stays exactly at the threshold
    back = from_input_coords(to_input_coords(np.array([39.0, 10.0]), (333, 217), 256), (333, 217), 256)
    pred[0, 0, :2] = back
    assert metrics.keypoint_correct(pred, gt, BOX, 0.29)[0].all()
    pred[0, 0, 0] = 39.001
    assert not metrics.keypoint_correct(pred, gt, BOX, 0.29)[0].any()


def test_pck_counts_visible_ground_truth_only_and_unpredicted_is_wrong():
    gt = np.array([[[10, 10, 1], [0, 0, 0], [50, 50, 1]],
                   [[10, 10, 1], [30, 30, 1], [50, 50, 1]]], float)
    pred = np.array([[[10, 12, 1], [90, 90, 1], [50, 50, 0]],     # k2 not predicted -> wrong
                     [[10, 17, 1], [30, 31, 1], [80, 80, 1]]], float)
    boxes = np.array([[0, 0, 100, 100], [0, 0, 50, 100]], float)
    out = metrics.pck(pred, gt, boxes, alphas=[0.02, 0.05, 0.10])
    # thresholds: 2, 5, 10 for both images
    # k0: d = 2, 7 -> 0.02: 1/2, 0.05: 1/2, 0.10: 2/2
    # k1: image 0 invisible (not counted); image 1 d = 1 -> 1 at every alpha
    # k2: image 0 unpredicted, image 1 d = 42.4 -> 0 at every alpha
    assert out['visible'] == [2, 1, 2]
    assert out['per_keypoint'] == [[0.5, 0.5, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    assert out['mean'] == pytest.approx([0.5, 0.5, 2 / 3])
    assert out['pooled'] == pytest.approx([2 / 5, 2 / 5, 3 / 5])
    assert out['keypoints_evaluated'] == 3
    # two-column predictions mean "every point predicted"
    out2 = metrics.pck(pred[..., :2], gt, boxes, alphas=[0.02])
    assert out2['per_keypoint'][2] == [0.5]


def test_pck_never_visible_keypoint_is_nan_and_left_out_of_the_mean():
    gt = np.array([[[10, 10, 1], [0, 0, 0]]], float)
    pred = np.array([[[10, 10, 1], [0, 0, 1]]], float)
    out = metrics.pck(pred, gt, [[0, 0, 10, 10]], alphas=[0.1])
    assert out['per_keypoint'] == [[1.0], [None]]
    assert out['mean'] == [1.0] and out['keypoints_evaluated'] == 1
    with pytest.raises(ValueError):
        metrics.pck(pred, gt, [[0, 0, 0, 0]], alphas=[0.1])


def test_pck_curve_is_monotone_and_zero_at_alpha_zero():
    rng = np.random.default_rng(0)
    gt = np.concatenate([rng.uniform(0, 100, (20, 15, 2)), np.ones((20, 15, 1))], -1)
    pred = gt + np.concatenate([rng.normal(0, 8, (20, 15, 2)), np.zeros((20, 15, 1))], -1)
    curve = metrics.pck_curve(pred, gt, np.tile([0, 0, 100, 80], (20, 1)))
    assert curve['alphas'][0] == 0 and curve['alphas'][-1] == 0.2
    assert curve['mean'][0] == 0
    assert np.all(np.diff(curve['mean']) >= 0)


# The conventions on one hand-worked case.  Two images, three keypoint types,
# alpha 0.1; image 0: box 100 x 50 in a 400 x 200 image (threshold 10 px by
# the box, 40 px by the image); image 1: box 20 x 60 in a 80 x 60 image
# (threshold 6 by the box, 8 by the image).
CONV_GT = np.array([[[0, 0, 1], [0, 0, 1], [0, 0, 0]],
                    [[0, 0, 1], [0, 0, 0], [0, 0, 1]]], float)
CONV_PRED = np.array([[[8, 0, 1], [30, 0, 1], [5, 5, 1]],     # 8 px, 30 px, k2 invisible
                      [[0, 7, 1], [1, 1, 1], [0, 0, 0]]], float)  # 7 px, k1 invisible, unpredicted
CONV_BOX = np.array([[0, 0, 100, 50], [0, 0, 20, 60]], float)
CONV_SIZE = np.array([[400, 200], [80, 60]], float)


@pytest.mark.parametrize('reference, invisible, per_keypoint, pooled, per_image', [
    # box: img0 k0 right (8 <= 10), k1 wrong (30); img1 k0 wrong (7 > 6), k2 unpredicted
    ('box', 'ignored', [0.5, 0.0, 0.0], 1 / 4, (1 / 2 + 0 / 2) / 2),
    # penalized: img0 k2 and img1 k1 are predicted but invisible: counted, wrong
    ('box', 'wrong', [0.5, 0.0, 0.0], 1 / 6, (1 / 3 + 0 / 3) / 2),
    # image: img0 threshold 40: k0, k1 right; img1 threshold 8: k0 right
    ('image', 'ignored', [1.0, 1.0, 0.0], 3 / 4, (2 / 2 + 1 / 2) / 2),
    ('image', 'wrong', [1.0, 0.5, 0.0], 3 / 6, (2 / 3 + 1 / 3) / 2),
])
def test_pck_conventions_by_hand(reference, invisible, per_keypoint, pooled, per_image):
    means = dict(keypoint=np.mean(per_keypoint), pooled=pooled, image=per_image)
    for average, expected in means.items():
        conv = metrics.PckConvention(reference, average, invisible)
        out = metrics.pck(CONV_PRED, CONV_GT, CONV_BOX, alphas=[0.1], convention=conv,
                          image_sizes=CONV_SIZE)
        assert [r[0] for r in out['per_keypoint']] == pytest.approx(per_keypoint)
        assert out['mean'] == pytest.approx([np.mean(per_keypoint)])
        assert out['pooled'] == pytest.approx([pooled])
        assert out['per_image_mean'] == pytest.approx([per_image])
        assert out['value'] == pytest.approx([expected])
        assert out['convention']['average'] == average
        assert out['counted'] == ([2, 1, 1] if invisible == 'ignored' else [2, 2, 2])


def test_pck_convention_is_validated_and_described():
    with pytest.raises(ValueError, match='reference'):
        metrics.PckConvention(reference='diagonal')
    with pytest.raises(ValueError, match='image sizes'):
        metrics.pck(CONV_PRED, CONV_GT, CONV_BOX, convention=metrics.PckConvention('image'))
    text = metrics.PckConvention('box', 'keypoint', 'wrong').describe()
    assert 'max(w, h) of the object box' in text and 'counts wrong' in text
    assert 'only visible ground truth' in metrics.PckConvention().describe()


# ---------------------------------------------------------------- McNemar ---

def _paired(a_only, b_only, both=0, neither=0):
    a = [1] * a_only + [0] * b_only + [1] * both + [0] * neither
    b = [0] * a_only + [1] * b_only + [1] * both + [0] * neither
    return np.array(a, bool), np.array(b, bool)


def test_mcnemar_exact_against_hand_worked_tables():
    # b = 10, c = 2: 2 * (C(12,0) + C(12,1) + C(12,2)) / 2^12 = 2 * 79 / 4096
    out = class_metrics.mcnemar(*_paired(10, 2, both=50, neither=7))
    assert out['p'] == pytest.approx(158 / 4096, abs=1e-15) and round(out['p'], 4) == 0.0386
    assert (out['a_only'], out['b_only'], out['both'], out['neither'], out['items']) == (10, 2, 50, 7, 69)
    # symmetric in A and B; concordant items do not matter
    assert class_metrics.mcnemar(*_paired(2, 10))['p'] == out['p']
    assert class_metrics.mcnemar(*_paired(10, 2, both=500))['p'] == out['p']
    # 6 vs 0: 2 / 64; equal counts: p = 1 (capped); no discordant item: p = 1
    assert class_metrics.mcnemar(*_paired(6, 0))['p'] == pytest.approx(2 / 64)
    assert class_metrics.mcnemar(*_paired(5, 5))['p'] == 1.0
    assert class_metrics.mcnemar(*_paired(0, 0, both=3))['p'] == 1.0
    # 5 vs 0 is not significant at 0.05 (p = 1/16), 6 vs 0 is
    assert class_metrics.mcnemar(*_paired(5, 0))['p'] == pytest.approx(0.0625)
    with pytest.raises(ValueError):
        class_metrics.mcnemar([1, 0], [1])


# -------------------------------------------------------- part boxes, PCP ---

def _kp(points):
    """15 x 3 keypoints with the named parts visible at the given points."""
    kp = np.zeros((len(PART_NAMES), 3))
    for name, (x, y) in points.items():
        kp[PART_NAMES.index(name)] = (x, y, 1)
    return kp


def test_head_box_by_hand():
    # beak (0, 0), crown (10, 0): tight 10 x 0, L = 10; min side -> 10 x 5;
    # margin 10% each side -> 12 x 6 about the centre (5, 0)
    kp = _kp({'beak': (0, 0), 'crown': (10, 0), 'back': (100, 100)})
    box = metrics.part_box(kp, PART_NAMES, 'head')
    assert box == pytest.approx([-1, -3, 11, 3])
    # a non-degenerate box: only the margin
    kp = _kp({'beak': (0, 0), 'crown': (10, 8), 'nape': (4, 2)})
    assert metrics.part_box(kp, PART_NAMES, 'head') == pytest.approx([-1, -0.8, 11, 8.8])


def test_boxes_are_defined_by_names_not_indices():
    kp = _kp({'back': (10, 20), 'tail': (60, 40), 'left leg': (30, 70), 'beak': (0, 0)})
    body = metrics.part_box(kp, PART_NAMES, 'body')
    # tight (10, 20)-(60, 70), 50 x 50 -> 60 x 60 about (35, 45)
    assert body == pytest.approx([5, 15, 65, 75])
    perm = np.random.default_rng(3).permutation(len(PART_NAMES))
    names = [PART_NAMES[i] for i in perm]
    assert metrics.part_box(kp[perm], names, 'body') == pytest.approx(body)
    # CUB-style spellings match too
    odd = [n.replace(' ', '_').title() for n in PART_NAMES]
    assert metrics.part_box(kp, odd, 'body') == pytest.approx(body)
    with pytest.raises(KeyError, match='throat'):
        metrics.part_box(kp[:14], PART_NAMES[:14], 'head')


def test_degenerate_boxes():
    one = _kp({'beak': (5, 5)})
    same = _kp({'beak': (5, 5), 'crown': (5, 5)})
    invisible = np.zeros((len(PART_NAMES), 3))
    boxes = metrics.part_box(np.stack([one, same, invisible]), PART_NAMES, 'head')
    assert np.isnan(boxes).all()
    # vertical pair: width grows to half the height
    vert = _kp({'beak': (5, 0), 'throat': (5, 20)})
    assert metrics.part_box(vert, PART_NAMES, 'head') == pytest.approx([-1, -2, 11, 22])


def test_boxes_clip_to_the_image():
    kp = _kp({'beak': (0, 0), 'crown': (10, 8)})
    box = metrics.part_box(kp, PART_NAMES, 'head', image_size=(10, 8))
    assert box == pytest.approx([-0.5, -0.5, 9.5, 7.5])


def test_iou_by_hand():
    a = np.array([0, 0, 2, 1.0])
    assert metrics.box_iou(a, [0, 0, 1, 1]) == 0.5
    assert metrics.box_iou(a, [1, 0, 3, 1]) == pytest.approx(1 / 3)
    assert metrics.box_iou(a, [5, 5, 6, 6]) == 0
    assert metrics.box_iou([1, 1, 1, 1], [1, 1, 1, 1]) == 0        # no area at all
    assert np.isnan(metrics.box_iou(a, [NAN] * 4))


def test_pcp_threshold_inclusive_and_exclusions():
    gt = np.array([[0, 0, 2, 1], [0, 0, 2, 1], [0, 0, 2, 1], [NAN] * 4, [0, 0, 2, 1]])
    pred = np.array([[0, 0, 1, 1],            # IoU 0.5 exactly: correct
                     [0, 0, 0.99, 1],         # 0.495: wrong
                     [NAN] * 4,               # no predicted box: wrong
                     [0, 0, 2, 1],            # no ground-truth box: excluded
                     [0, 0, 2, 1]])           # 1.0: correct
    out = metrics.pcp(pred, gt)
    assert out['evaluated'] == 4 and out['excluded'] == 1
    assert out['correct'] == 2 and out['pcp'] == 0.5
    assert out['missing_predictions'] == 1
    assert out['iou'][2] is None and out['iou'][3] is None
    assert out['mean_iou'] == pytest.approx((0.5 + 0.495 + 1) / 3)
    assert math.isnan(metrics.pcp(pred[3:4], gt[3:4])['pcp'])


def test_perfect_prediction_gives_pcp_one():
    rng = np.random.default_rng(1)
    gt = np.concatenate([rng.uniform(0, 200, (6, 15, 2)), rng.integers(0, 2, (6, 15, 1))], -1)
    gt[0, :, 2] = 0                                   # image 0: no parts visible
    for group in ('head', 'body'):
        g = metrics.part_box(gt, PART_NAMES, group)
        out = metrics.pcp(metrics.part_box(gt, PART_NAMES, group), g)
        assert out['excluded'] >= 1 and out['pcp'] == 1.0
