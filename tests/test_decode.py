"""Keypoint decoding (posenorm.pose.predict.decode_heatmap): the paper's argmax
cell, the sub-cell quadratic refinement, the visibility threshold; the numpy
reference of CoordinateTransfer's `decode` and `visibility_threshold`."""
import numpy as np
import pytest

from posenorm.pose import predict

STRIDE, OFFSET = 16.0, 7.5


def _paraboloid(h, w, x0, y0, peak=3.0):
    """Scores of a separable paraboloid whose vertex is at cell (x0, y0)."""
    i, j = np.mgrid[0:h, 0:w].astype(float)
    return peak - (j - x0) ** 2 - 0.5 * (i - y0) ** 2


@pytest.mark.parametrize('x0, y0', [(3.0, 2.0), (3.3, 2.0), (2.6, 4.45), (4.5 - 1e-9, 1.5 + 1e-9)])
def test_quadratic_recovers_a_parabola_vertex_exactly_and_keeps_the_argmax_cell(x0, y0):
    hm = _paraboloid(6, 7, x0, y0)[None]
    arg, s_arg = predict.decode_heatmap(hm, STRIDE, OFFSET, 'argmax')
    quad, s_quad = predict.decode_heatmap(hm, STRIDE, OFFSET, 'quadratic')
    cell = (round(x0), round(y0))
    assert arg[0].tolist() == [OFFSET + STRIDE * cell[0], OFFSET + STRIDE * cell[1], 1]
    assert quad[0, :2] == pytest.approx([OFFSET + STRIDE * x0, OFFSET + STRIDE * y0], abs=1e-9)
    # the point stays inside the argmax cell: pooling there and the report agree
    assert np.all(np.abs(quad[0, :2] - arg[0, :2]) <= STRIDE / 2 + 1e-9)
    assert s_arg.tolist() == s_quad.tolist() == [hm[0, cell[1], cell[0]]]


def test_quadratic_by_hand_ties_flat_and_borders():
    hm = np.zeros((4, 3, 5))
    # a 1-2-... row: left 1, peak 2, right 0 -> (1 - 0) / (2 (1 - 4 + 0)) = -1/6
    hm[0, 1, 1:4] = (1, 2, 0)
    # a tie: the first cell is the argmax, its equal neighbour pulls +0.5
    hm[1, 1, 2:4] = (5, 5)
    # flat: no curvature, no offset
    hm[2] = 1.0
    # the peak on the left border (x stays), refined in y: up 1, peak 3, down 2
    hm[3, 0:3, 0] = (1, 3, 2)
    kp, _ = predict.decode_heatmap(hm, STRIDE, OFFSET, 'quadratic')
    dy3 = (1 - 2) / (2 * (1 - 6 + 2))
    np.testing.assert_allclose(kp[:, :2], [
        [OFFSET + STRIDE * (2 - 1 / 6), OFFSET + STRIDE * 1],
        [OFFSET + STRIDE * 2.5, OFFSET + STRIDE * 1],
        [OFFSET, OFFSET],
        [OFFSET, OFFSET + STRIDE * (1 + dy3)]])
    dx, dy = predict.peak_offsets(hm, np.array([1, 1, 0, 1]), np.array([2, 2, 0, 0]))
    assert np.all(np.abs(dx) <= 0.5) and np.all(np.abs(dy) <= 0.5)


def test_peak_on_a_corner_and_a_one_cell_map_fall_back_to_argmax():
    hm = np.zeros((2, 4, 4))
    hm[0, 3, 3] = 1
    hm[0, 2, 3] = hm[0, 3, 2] = 0.5
    one = np.full((1, 1, 1), 0.3)
    for m in (hm, one):
        assert (predict.decode_heatmap(m, STRIDE, OFFSET, 'quadratic')[0].tolist()
                == predict.decode_heatmap(m, STRIDE, OFFSET, 'argmax')[0].tolist())


def test_visibility_threshold_on_the_peak_score():
    hm = np.full((3, 2, 2), -5.0)
    hm[0, 1, 1] = 2.0        # visible
    hm[1, 0, 1] = -1.0       # below
    hm[2, 1, 0] = 0.0        # at the threshold: visible ("below" is invisible)
    kp, peak = predict.decode_heatmap(hm, STRIDE, OFFSET, 'argmax', visibility_threshold=0.0)
    assert kp[:, 2].tolist() == [1, 0, 1]
    assert peak.tolist() == [2.0, -1.0, 0.0]
    # a part predicted invisible keeps its location
    assert kp[1, :2].tolist() == [OFFSET + STRIDE, OFFSET]
    assert predict.decode_heatmap(hm, STRIDE, OFFSET)[0][:, 2].tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match='decode'):
        predict.decode_heatmap(hm, STRIDE, OFFSET, 'soft-argmax')


def test_visibility_precision_and_recall():
    out = predict.visibility_counts([[1, 1, 0, 0], [1, 0, 1, 1]], [[1, 0, 0, 1], [1, 1, 1, 0]])
    assert (out['true_positive'], out['false_positive'], out['false_negative'],
            out['true_negative']) == (3, 2, 2, 1)
    assert out['precision'] == pytest.approx(3 / 5) and out['recall'] == pytest.approx(3 / 5)
    assert predict.visibility_counts([[0]], [[0]])['precision'] is None


def test_choose_visibility_threshold_by_hand():
    # peaks -3 -1 0.5 2 (twice): invisible, invisible, visible, visible, invisible
    logits = [[-3.0, -1.0, 0.5], [2.0, 2.0, 9.0]]
    visible = [[0, 0, 1], [1, 0, 1]]
    out = predict.choose_visibility_threshold(logits, visible)
    # cut between -1 and 0.5: 2 invisible + 3 visible matched, 5 of 6
    assert out == dict(threshold=-0.25, matched=5, matched_all_visible=3, items=6)
    # all visible in the ground truth: no threshold
    assert predict.choose_visibility_threshold([1.0, -2.0], [1, 1])['threshold'] is None
    # none visible: above every peak
    assert predict.choose_visibility_threshold([1.0, -2.0], [0, 0])['threshold'] == 2.0
    # the threshold reproduces its count through decode_heatmap's rule (>= visible)
    t = out['threshold']
    called = np.asarray(logits) >= t
    assert int((called == (np.asarray(visible) > 0)).sum()) == out['matched']


def test_choose_decoding_prefers_argmax_on_a_tie():
    dec = lambda m: dict(alphas=[0.05, 0.1], mean=[0.0, m])  # noqa: E731
    assert predict.choose_decoding(dict(argmax=dec(0.5), quadratic=dec(0.6))) == 'quadratic'
    assert predict.choose_decoding(dict(argmax=dec(0.5), quadratic=dec(0.5))) == 'argmax'
    assert predict.choose_decoding(dict(argmax=dec(0.7), quadratic=dec(0.6))) == 'argmax'


def test_decoding_written_into_a_deploy_net_and_read_back():
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = text_format.Parse(
        'layer { name: "parts" type: "CoordinateTransfer" bottom: "f" bottom: "s" top: "p" '
        'top: "part_locations" coordinate_transfer_param { heatmap_stride: 16 } }',
        caffe_pb2.NetParameter())
    assert predict.deployed_decoding(net) == ('argmax', None)
    assert predict.apply_decoding(net, 'quadratic', -0.25) == 1
    assert predict.deployed_decoding(net) == ('quadratic', -0.25)
    text = str(net)
    assert 'decode: QUADRATIC' in text and 'visibility_threshold: -0.25' in text
    predict.apply_decoding(net, 'argmax', None)
    assert predict.deployed_decoding(net) == ('argmax', None)
    assert 'visibility_threshold' not in str(net)
    # a net without CoordinateTransfer: model.json's, else the paper's
    empty = caffe_pb2.NetParameter()
    assert predict.apply_decoding(empty, 'quadratic', 1.0) == 0
    assert predict.deployed_decoding(empty, dict(decode='quadratic', visibility_threshold=2.0)) \
        == ('quadratic', 2.0)
    assert predict.deployed_decoding(empty) == ('argmax', None)
