"""KeypointSigmoidCrossEntropyLoss through pycaffe against an independent numpy
implementation of the paper's pixelwise sigmoid cross-entropy (section 3.1),
plus the `caffe` tool's error messages for bad inputs."""

import numpy as np
import pytest

import caffe
from caffe import layers as L, params as P

from gpu_probe import gpu_available

N, K, H, W = 3, 4, 5, 6
f32 = np.float32


# ---- independent numpy reference -------------------------------------------

def round_half_away(v):
    """round() with halves away from zero (std::round), exact in float32."""
    v = np.asarray(v)
    t = np.trunc(v)
    return t + np.where(np.abs(v - t) >= 0.5, np.sign(v), 0)


def nearest_cell(coord, offset, stride, size):
    """Cell of an image coordinate, computed in float32 as the float net does."""
    v = (f32(coord) - f32(offset)) / f32(stride)
    return int(np.clip(round_half_away(v), 0, size - 1))


def targets(keypoints, shape, stride, offset, gaussian=False, sigma=1.0):
    n_, k_, h_, w_ = shape
    kps = keypoints.reshape(n_, k_, 3).astype(f32)
    t = np.zeros(shape)
    ii, jj = np.mgrid[0:h_, 0:w_]
    for n in range(n_):
        for k in range(k_):
            x, y, vis = kps[n, k]
            if not vis > 0:
                continue  # invisible: negative everywhere
            if gaussian:
                cx = float((x - f32(offset)) / f32(stride))
                cy = float((y - f32(offset)) / f32(stride))
                d2 = (jj - cx) ** 2 + (ii - cy) ** 2
                t[n, k] = np.exp(-d2 / (2.0 * sigma ** 2))
            else:
                t[n, k, nearest_cell(y, offset, stride, h_),
                  nearest_cell(x, offset, stride, w_)] = 1
    return t


def loss_and_grad(scores, t, normalizer, loss_weight=1.0):
    s = scores.astype(np.float64)
    # -[t log sigmoid(s) + (1 - t) log(1 - sigmoid(s))], overflow-free.
    loss = (t * np.logaddexp(0, -s) + (1 - t) * np.logaddexp(0, s)).sum()
    grad = loss_weight * (1 / (1 + np.exp(-s)) - t) / normalizer
    return loss / normalizer, grad


def random_keypoints(rng, stride, offset, n=N, k=K):
    """Keypoints inside, outside and on half-cell ties; some invisible."""
    span_x, span_y = offset + stride * (W - 1), offset + stride * (H - 1)
    kps = np.empty((n, k, 3), f32)
    kps[..., 0] = rng.uniform(-0.3 * span_x, 1.3 * span_x, (n, k))
    kps[..., 1] = rng.uniform(-0.3 * span_y, 1.3 * span_y, (n, k))
    kps[..., 2] = rng.choice([1, 1, 1, 2, 0, -1], (n, k))
    # Exact halves: (x - offset) / stride = j + 0.5 must round up.
    kps[0, 0, :2] = [offset + stride * 1.5, offset + stride * 2.5]
    kps[0, 0, 2] = 1
    return kps.reshape(n, 1, k, 3)


# ---- nets -------------------------------------------------------------------

def loss_net(tmp_path, kp_shape=(N, 1, K, 3), loss_weight=None, **params):
    n = caffe.NetSpec()
    n.scores = L.Input(shape=dict(dim=[N, K, H, W]))
    n.keypoints = L.Input(shape=dict(dim=list(kp_shape)))
    kwargs = dict(ntop=2)
    if loss_weight is not None:
        kwargs['loss_weight'] = loss_weight
    loss_param = params.pop('loss_param', None)
    if loss_param is not None:
        kwargs['loss_param'] = loss_param
    n.loss, n.target = L.KeypointSigmoidCrossEntropyLoss(
        n.scores, n.keypoints, keypoint_loss_param=params, **kwargs)
    path = tmp_path / 'kploss.prototxt'
    path.write_text('force_backward: true\n' + str(n.to_proto()))
    return caffe.Net(str(path), caffe.TEST)


def run(net, scores, keypoints):
    net.blobs['scores'].data[...] = scores
    net.blobs['keypoints'].data[...] = keypoints.reshape(
        net.blobs['keypoints'].data.shape)
    net.forward()
    net.backward()
    return (float(net.blobs['loss'].data), net.blobs['target'].data.copy(),
            net.blobs['scores'].diff.copy())


NORMALIZATIONS = [  # (loss_param or None, normalizer)
    (None, N),                                        # default: BATCH_SIZE
    (dict(normalization=P.Loss.BATCH_SIZE), N),
    (dict(normalization=P.Loss.FULL), N * K * H * W),
    (dict(normalization=P.Loss.VALID), N * K * H * W),  # no ignore label
    (dict(normalization=P.Loss.NONE), 1),
]


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('stride,offset', [(1, 0), (4, 2), (8, 3.5)])
def test_nearest_targets_loss_and_gradient(tmp_path, seed, stride, offset):
    rng = np.random.RandomState(seed)
    net = loss_net(tmp_path, stride=stride, offset=offset)
    scores = (3 * rng.randn(N, K, H, W)).astype(f32)
    kps = random_keypoints(rng, stride, offset)
    loss, target, diff = run(net, scores, kps)
    t = targets(kps, (N, K, H, W), stride, offset)
    np.testing.assert_array_equal(target, t)
    # One positive per visible keypoint, none for invisible ones.
    visible = kps.reshape(N, K, 3)[..., 2] > 0
    np.testing.assert_array_equal(target.sum(axis=(2, 3)), visible)
    ref_loss, ref_grad = loss_and_grad(scores, t, N)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(diff, ref_grad, rtol=1e-4, atol=1e-6)


def test_half_cell_ties_round_away_from_zero(tmp_path):
    net = loss_net(tmp_path, stride=4, offset=2)
    kps = np.zeros((N, K, 3), f32)
    kps[:, :, 2] = 1
    kps[0, 0, :2] = [2 + 4 * 1.5, 2 + 4 * 0.5]     # (1.5, 0.5) -> j 2, i 1
    kps[0, 1, :2] = [2 - 4 * 0.5, 2 + 4 * 3.5]     # (-0.5, 3.5) -> j 0, i 4
    kps[0, 2, :2] = [2 + 4 * 5.5, 2 - 4 * 1.5]     # (5.5, -1.5) -> j 5, i 0
    _, target, _ = run(net, np.zeros((N, K, H, W), f32), kps)
    assert target[0, 0, 1, 2] == 1
    assert target[0, 1, 4, 0] == 1
    assert target[0, 2, 0, 5] == 1


@pytest.mark.parametrize('loss_param,normalizer', NORMALIZATIONS)
def test_normalization_and_loss_weight(tmp_path, loss_param, normalizer):
    rng = np.random.RandomState(3)
    net = loss_net(tmp_path, loss_weight=2.5, stride=4, offset=2,
                   loss_param=loss_param)
    scores = (2 * rng.randn(N, K, H, W)).astype(f32)
    kps = random_keypoints(rng, 4, 2)
    loss, _, diff = run(net, scores, kps)
    t = targets(kps, (N, K, H, W), 4, 2)
    ref_loss, ref_grad = loss_and_grad(scores, t, normalizer, loss_weight=2.5)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(diff, ref_grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize('seed', [0, 1])
def test_gaussian_targets(tmp_path, seed):
    rng = np.random.RandomState(seed)
    net = loss_net(tmp_path, stride=8, offset=3.5,
                   target=P.KeypointLoss.GAUSSIAN, sigma=1.5,
                   loss_param=dict(normalization=P.Loss.NONE))
    scores = rng.randn(N, K, H, W).astype(f32)
    kps = random_keypoints(rng, 8, 3.5)
    loss, target, diff = run(net, scores, kps)
    t = targets(kps, (N, K, H, W), 8, 3.5, gaussian=True, sigma=1.5)
    np.testing.assert_allclose(target, t, rtol=1e-5, atol=1e-7)
    ref_loss, ref_grad = loss_and_grad(scores, t, 1)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(diff, ref_grad, rtol=1e-4, atol=1e-6)


def test_all_invisible_is_all_negative(tmp_path):
    rng = np.random.RandomState(4)
    net = loss_net(tmp_path)
    scores = rng.randn(N, K, H, W).astype(f32)
    kps = random_keypoints(rng, 1, 0)
    kps[..., 2] = 0
    loss, target, diff = run(net, scores, kps)
    assert not target.any()
    assert loss == pytest.approx(np.logaddexp(0, scores.astype(float)).sum() / N,
                                 rel=1e-5)
    np.testing.assert_allclose(diff, 1 / (1 + np.exp(-scores)) / N, rtol=1e-4)


def test_extreme_scores_do_not_overflow(tmp_path):
    net = loss_net(tmp_path, loss_param=dict(normalization=P.Loss.NONE))
    kps = np.zeros((N, K, 3), f32)  # all invisible
    scores = np.full((N, K, H, W), -200, f32)
    scores[0, 0, 0, 0] = 200  # one confident false positive
    loss, _, diff = run(net, scores, kps)
    assert loss == pytest.approx(200, rel=1e-6)
    assert np.isfinite(diff).all() and diff[0, 0, 0, 0] == pytest.approx(1)


def test_keypoint_blob_shape_is_free(tmp_path):
    """(N K) x 3 keypoints give the same result as N x 1 x K x 3."""
    rng = np.random.RandomState(5)
    scores = rng.randn(N, K, H, W).astype(f32)
    kps = random_keypoints(rng, 4, 2)
    a = run(loss_net(tmp_path, stride=4, offset=2), scores, kps)
    b = run(loss_net(tmp_path, kp_shape=(N * K, 3), stride=4, offset=2),
            scores, kps)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ---- CPU vs GPU ---------------------------------------------------------------

def test_gpu_matches_cpu(tmp_path):
    if not gpu_available():
        pytest.skip('no usable CUDA device (CPU_ONLY build or no GPU)')
    rng = np.random.RandomState(6)
    scores = (3 * rng.randn(N, K, H, W)).astype(f32)
    kps = random_keypoints(rng, 4, 2)
    for target in (P.KeypointLoss.NEAREST, P.KeypointLoss.GAUSSIAN):
        results = []
        for mode in ('cpu', 'gpu'):
            if mode == 'gpu':
                caffe.set_device(0)
                caffe.set_mode_gpu()
            else:
                caffe.set_mode_cpu()
            net = loss_net(tmp_path, stride=4, offset=2, target=target)
            results.append(run(net, scores, kps))
        caffe.set_mode_cpu()
        for c, g in zip(*results):
            np.testing.assert_allclose(c, g, rtol=1e-5, atol=1e-6)


# ---- error messages from the caffe tool -------------------------------------

from caffe_cli import input_layer, run_caffe_on  # noqa: E402


def test_keypoint_count_mismatch_is_a_clear_error(tmp_path, caffe_tool):
    res = run_caffe_on(tmp_path, caffe_tool,
                       input_layer('s', [2, 4, 5, 6]) + input_layer('k', [2, 1, 3, 3]) +
                       'layer { name: "kploss" type: "KeypointSigmoidCrossEntropyLoss" '
                       'bottom: "s" bottom: "k" top: "loss" }\n')
    assert res.returncode != 0
    assert ('KeypointSigmoidCrossEntropyLoss layer kploss: bottom[1] (keypoints) '
            'must hold N * K * 3 = 24 values') in res.stderr
    assert '2 4 5 6 (240)' in res.stderr and '2 1 3 3 (18)' in res.stderr


def test_bad_stride_is_a_clear_error(tmp_path, caffe_tool):
    res = run_caffe_on(tmp_path, caffe_tool,
                       input_layer('s', [2, 4, 5, 6]) + input_layer('k', [2, 1, 4, 3]) +
                       'layer { name: "kploss" type: "KeypointSigmoidCrossEntropyLoss" '
                       'bottom: "s" bottom: "k" top: "loss" '
                       'keypoint_loss_param { stride: 0 } }\n')
    assert res.returncode != 0
    assert ('KeypointSigmoidCrossEntropyLoss layer kploss: '
            'keypoint_loss_param.stride must be positive') in res.stderr


def test_wrong_bottom_count_is_an_error(tmp_path, caffe_tool):
    res = run_caffe_on(tmp_path, caffe_tool,
                       input_layer('s', [2, 4, 5, 6]) +
                       'layer { name: "kploss" type: "KeypointSigmoidCrossEntropyLoss" '
                       'bottom: "s" top: "loss" }\n')
    assert res.returncode != 0
    assert 'KeypointSigmoidCrossEntropyLoss Layer takes 2 bottom blob(s)' in res.stderr
