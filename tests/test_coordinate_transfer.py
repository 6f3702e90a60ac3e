"""CoordinateTransfer through pycaffe against an independent numpy implementation
of the paper's coordinate transfer layer (section 3.2), a tiny end-to-end
`caffe train` with both our keypoint layers, and the `caffe` tool's error
messages for bad inputs."""
import subprocess

import numpy as np
import pytest

import caffe
from caffe import layers as L, params as P

from gpu_probe import gpu_available

N, C, HF, WF = 3, 4, 7, 9   # features
K, HH, WH = 5, 4, 5         # heatmap
f32 = np.float32
# Heatmap cell (i, j) at (3.5 + 8j, 3.5 + 8i); feature cell at 1.5 + 4j, so a
# heatmap argmax lands exactly halfway between feature cells (0.5 + 2j).
GEOMETRY = dict(heatmap_stride=8, heatmap_offset=3.5, feature_stride=4,
                feature_offset=1.5)


# ---- independent numpy reference -------------------------------------------

def round_half_away(v):
    t = np.trunc(v)
    return t + np.where(np.abs(v - t) >= 0.5, np.sign(v), 0)


def nearest_cell(coord, offset, stride, size):
    v = (f32(coord) - f32(offset)) / f32(stride)  # float32, as the float net
    return int(np.clip(round_half_away(v), 0, size - 1))


def vertex(left, center, right):
    """Sub-cell offset of the parabola through (-1, left), (0, center),
    (1, right), in float32 like the float net; 0 unless it curves down."""
    curvature = left - f32(2) * center + right
    if not curvature < 0:
        return f32(0)
    return f32(np.clip((left - right) / (f32(2) * curvature), -0.5, 0.5))


def peak_point(hm, quadratic, stride, offset):
    """(x, y, score) of a heatmap's first maximum, its cell's point or, with
    quadratic, each interior axis moved to the parabola's vertex."""
    h, w = hm.shape
    i, j = divmod(int(np.argmax(hm)), w)
    col, row = f32(j), f32(i)
    if quadratic and 0 < j < w - 1:
        col = col + vertex(hm[i, j - 1], hm[i, j], hm[i, j + 1])
    if quadratic and 0 < i < h - 1:
        row = row + vertex(hm[i - 1, j], hm[i, j], hm[i + 1, j])
    return (f32(offset) + f32(stride) * col, f32(offset) + f32(stride) * row,
            hm[i, j])


def reference(features, heatmap, keypoints, top_diff, radius=1, ave=False,
              missing_argmax=False, heatmap_stride=1, heatmap_offset=0,
              feature_stride=1, feature_offset=0, visibility_threshold=-np.inf,
              quadratic=False):
    """(top[0], top[1], d top[0] / d features . top_diff) of the layer."""
    n_, c_, hf, wf = features.shape
    k_, wh = heatmap.shape[1], heatmap.shape[3]
    top = np.zeros((n_, k_ * c_))
    loc = np.zeros((n_, k_, 3), f32)
    grad = np.zeros(features.shape)
    kps = None if keypoints is None else keypoints.reshape(n_, k_, 3)
    for n in range(n_):
        for k in range(k_):
            if kps is not None and kps[n, k, 2] > 0:
                x, y = kps[n, k, 0], kps[n, k, 1]
                loc[n, k] = x, y, 1
            elif kps is not None and not missing_argmax:
                continue  # zero feature, location (0, 0, 0)
            else:
                i, j = divmod(int(np.argmax(heatmap[n, k])), wh)  # first max
                # pooled at the argmax cell, reported at the decoded peak
                x = f32(heatmap_offset) + f32(heatmap_stride) * f32(j)
                y = f32(heatmap_offset) + f32(heatmap_stride) * f32(i)
                rx, ry, score = peak_point(heatmap[n, k], quadratic,
                                           heatmap_stride, heatmap_offset)
                visible = not score < f32(visibility_threshold)
                loc[n, k] = rx, ry, visible
                if not visible:
                    continue  # predicted invisible: zero feature
            ci = nearest_cell(y, feature_offset, feature_stride, hf)
            cj = nearest_cell(x, feature_offset, feature_stride, wf)
            h0, w0 = max(ci - radius, 0), max(cj - radius, 0)
            rows, cols = slice(h0, ci + radius + 1), slice(w0, cj + radius + 1)
            window = features[n, :, rows, cols].astype(np.float64)
            g = top_diff[n, k * c_:(k + 1) * c_].astype(np.float64)
            flat = window.reshape(c_, -1)
            if ave:
                top[n, k * c_:(k + 1) * c_] = flat.mean(axis=1)
                grad[n, :, rows, cols] += g[:, None, None] / flat.shape[1]
            else:
                best = flat.argmax(axis=1)  # first maximum, row-major
                top[n, k * c_:(k + 1) * c_] = flat[np.arange(c_), best]
                for c in range(c_):
                    h, w = divmod(int(best[c]), window.shape[2])
                    grad[n, c, h0 + h, w0 + w] += g[c]
    return top, loc, grad


def random_keypoints(rng):
    kps = np.empty((N, K, 3), f32)
    kps[..., 0] = rng.uniform(-10, 45, (N, K))
    kps[..., 1] = rng.uniform(-10, 35, (N, K))
    kps[..., 2] = rng.choice([1, 1, 2, 0, -1], (N, K))
    kps[0, 0] = [1.5 + 4 * 2.5, 1.5 + 4 * 0.5, 1]  # halfway: cell (1, 3)
    return kps.reshape(N, 1, K, 3)


# ---- nets -------------------------------------------------------------------

def transfer_net(tmp_path, with_keypoints, kp_shape=(N, 1, K, 3), **params):
    n = caffe.NetSpec()
    n.features = L.Input(shape=dict(dim=[N, C, HF, WF]))
    n.heatmap = L.Input(shape=dict(dim=[N, K, HH, WH]))
    bottoms = [n.features, n.heatmap]
    if with_keypoints:
        n.keypoints = L.Input(shape=dict(dim=list(kp_shape)))
        bottoms.append(n.keypoints)
    n.parts, n.locations = L.CoordinateTransfer(
        *bottoms, coordinate_transfer_param=params, ntop=2)
    path = tmp_path / 'transfer.prototxt'
    path.write_text('force_backward: true\n' + str(n.to_proto()))
    return caffe.Net(str(path), caffe.TEST)


def run(net, features, heatmap, keypoints, top_diff):
    net.blobs['features'].data[...] = features
    net.blobs['heatmap'].data[...] = heatmap
    if keypoints is not None:
        net.blobs['keypoints'].data[...] = keypoints
    net.forward()
    net.blobs['parts'].diff[...] = top_diff
    net.backward()
    return (net.blobs['parts'].data.copy(), net.blobs['locations'].data.copy(),
            net.blobs['features'].diff.copy())


def random_inputs(rng, integer=False):
    if integer:  # many ties, in the heatmap and inside pooling windows
        features = rng.randint(0, 3, (N, C, HF, WF)).astype(f32)
        heatmap = rng.randint(0, 2, (N, K, HH, WH)).astype(f32)
    else:
        features = rng.randn(N, C, HF, WF).astype(f32)
        heatmap = rng.randn(N, K, HH, WH).astype(f32)
    top_diff = rng.randn(N, K * C).astype(f32)
    return features, heatmap, random_keypoints(rng), top_diff


SOURCES = [  # (with_keypoints, missing)
    (False, P.CoordinateTransfer.ZERO),   # TEST/deploy: predicted parts
    (True, P.CoordinateTransfer.ZERO),    # TRAIN: ground truth, zero if missing
    (True, P.CoordinateTransfer.ARGMAX),  # TRAIN: ground truth, else predicted
]


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('with_keypoints,missing', SOURCES)
@pytest.mark.parametrize('pool', [P.CoordinateTransfer.MAX,
                                  P.CoordinateTransfer.AVE])
@pytest.mark.parametrize('radius', [0, 1, 2])
def test_matches_reference(tmp_path, seed, with_keypoints, missing, pool,
                           radius):
    rng = np.random.RandomState(seed)
    features, heatmap, kps, top_diff = random_inputs(rng)
    net = transfer_net(tmp_path, with_keypoints, radius=radius, pool=pool,
                       missing=missing, **GEOMETRY)
    kps = kps if with_keypoints else None
    parts, locations, diff = run(net, features, heatmap, kps, top_diff)
    ref_parts, ref_loc, ref_grad = reference(
        features, heatmap, kps, top_diff, radius=radius,
        ave=pool == P.CoordinateTransfer.AVE,
        missing_argmax=missing == P.CoordinateTransfer.ARGMAX, **GEOMETRY)
    np.testing.assert_allclose(parts, ref_parts, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(locations, ref_loc)
    np.testing.assert_allclose(diff, ref_grad, rtol=1e-5, atol=1e-6)
    assert not net.blobs['heatmap'].diff.any()


@pytest.mark.parametrize('seed', [0, 1])
@pytest.mark.parametrize('with_keypoints', [False, True])
def test_ties_first_maximum_wins(tmp_path, seed, with_keypoints):
    rng = np.random.RandomState(seed)
    features, heatmap, kps, top_diff = random_inputs(rng, integer=True)
    net = transfer_net(tmp_path, with_keypoints, radius=2, **GEOMETRY)
    kps = kps if with_keypoints else None
    parts, locations, diff = run(net, features, heatmap, kps, top_diff)
    ref_parts, ref_loc, ref_grad = reference(features, heatmap, kps, top_diff,
                                             radius=2, **GEOMETRY)
    np.testing.assert_array_equal(parts, ref_parts)
    np.testing.assert_array_equal(locations, ref_loc)
    np.testing.assert_allclose(diff, ref_grad, rtol=1e-5, atol=1e-6)


def test_deploy_outputs_predicted_keypoints(tmp_path):
    """Without ground truth, top[1] is each heatmap's argmax in image pixels."""
    rng = np.random.RandomState(7)
    features, heatmap, _, top_diff = random_inputs(rng)
    net = transfer_net(tmp_path, False, **GEOMETRY)
    _, locations, _ = run(net, features, heatmap, None, top_diff)
    i, j = np.unravel_index(heatmap.reshape(N, K, -1).argmax(-1), (HH, WH))
    np.testing.assert_array_equal(locations[..., 0], 3.5 + 8 * j)
    np.testing.assert_array_equal(locations[..., 1], 3.5 + 8 * i)
    np.testing.assert_array_equal(locations[..., 2], 1)


def test_corner_windows_are_clipped(tmp_path):
    """Parts beyond the corners pool the clipped corner windows."""
    rng = np.random.RandomState(8)
    features, heatmap, _, top_diff = random_inputs(rng)
    kps = np.zeros((N, K, 3), f32)
    kps[:, :, 2] = 1
    kps[:, 0, :2] = [-100, -100]   # top-left
    kps[:, 1, :2] = [1000, -100]   # top-right
    kps[:, 2, :2] = [-100, 1000]   # bottom-left
    kps[:, 3, :2] = [1000, 1000]   # bottom-right
    kps[:, 4, 2] = 0               # invisible: zero
    net = transfer_net(tmp_path, True, radius=1, pool=P.CoordinateTransfer.AVE,
                       feature_stride=1, feature_offset=0)
    parts, locations, diff = run(net, features, heatmap,
                                 kps.reshape(N, 1, K, 3), top_diff)
    corners = [(slice(0, 2), slice(0, 2)), (slice(0, 2), slice(WF - 2, WF)),
               (slice(HF - 2, HF), slice(0, 2)),
               (slice(HF - 2, HF), slice(WF - 2, WF))]
    for k, (rows, cols) in enumerate(corners):
        np.testing.assert_allclose(parts[:, k * C:(k + 1) * C],
                                   features[:, :, rows, cols].mean(axis=(2, 3)),
                                   rtol=1e-5, atol=1e-6)
    assert not parts[:, 4 * C:].any()
    np.testing.assert_array_equal(locations[:, 4], 0)
    ref_grad = reference(features, heatmap, kps, top_diff, radius=1, ave=True)[2]
    np.testing.assert_allclose(diff, ref_grad, rtol=1e-5, atol=1e-6)


def test_gpu_matches_cpu(tmp_path):
    if not gpu_available():
        pytest.skip('no usable CUDA device (CPU_ONLY build or no GPU)')
    rng = np.random.RandomState(9)
    features, heatmap, kps, top_diff = random_inputs(rng)
    for pool in (P.CoordinateTransfer.MAX, P.CoordinateTransfer.AVE):
        for with_keypoints in (False, True):
            results = []
            for mode in ('cpu', 'gpu'):
                if mode == 'gpu':
                    caffe.set_device(0)
                    caffe.set_mode_gpu()
                else:
                    caffe.set_mode_cpu()
                net = transfer_net(tmp_path, with_keypoints, radius=2,
                                   pool=pool, **GEOMETRY)
                results.append(run(net, features, heatmap,
                                   kps if with_keypoints else None, top_diff))
            caffe.set_mode_cpu()
            for c, g in zip(*results):
                np.testing.assert_allclose(c, g, rtol=1e-5, atol=1e-6)


# ---- visibility_threshold and decode ------------------------------------------

def peak_scores(heatmap):
    return heatmap.reshape(heatmap.shape[0], heatmap.shape[1], -1).max(-1)


@pytest.mark.parametrize('seed', [0, 1])
@pytest.mark.parametrize('with_keypoints,missing', SOURCES)
@pytest.mark.parametrize('decode', [P.CoordinateTransfer.ARGMAX_CELL,
                                    P.CoordinateTransfer.QUADRATIC])
def test_threshold_and_decode_match_reference(tmp_path, seed, with_keypoints,
                                              missing, decode):
    rng = np.random.RandomState(seed)
    features, heatmap, kps, top_diff = random_inputs(rng)
    threshold = float(np.median(peak_scores(heatmap)))  # gates about half
    pool = [P.CoordinateTransfer.MAX, P.CoordinateTransfer.AVE][seed]
    net = transfer_net(tmp_path, with_keypoints, radius=1, pool=pool,
                       missing=missing, visibility_threshold=threshold,
                       decode=decode, **GEOMETRY)
    kps = kps if with_keypoints else None
    parts, locations, diff = run(net, features, heatmap, kps, top_diff)
    ref_parts, ref_loc, ref_grad = reference(
        features, heatmap, kps, top_diff, radius=1,
        ave=pool == P.CoordinateTransfer.AVE,
        missing_argmax=missing == P.CoordinateTransfer.ARGMAX,
        visibility_threshold=threshold,
        quadratic=decode == P.CoordinateTransfer.QUADRATIC, **GEOMETRY)
    if not with_keypoints:
        assert 0 < (locations[..., 2] == 0).sum() < N * K
    np.testing.assert_allclose(parts, ref_parts, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(locations, ref_loc, rtol=1e-6, atol=0)
    np.testing.assert_allclose(diff, ref_grad, rtol=1e-5, atol=1e-6)


def test_quadratic_recovers_synthetic_peaks(tmp_path):
    """Heatmaps -(j - xc)^2 - (i - yc)^2 (exact in float32): QUADRATIC reports
    (xc, yc) exactly for an interior peak cell, the cell's point on a border;
    the argmax cell, and so every pooled feature, is unchanged."""
    rng = np.random.RandomState(3)
    features, _, _, top_diff = random_inputs(rng)
    # Peak cells interior: xc in (0.5, WH - 1.5], a half a tie (first + 0.5).
    xc = rng.randint(9, 16 * WH - 23, (N, K)) / 16.0
    yc = rng.randint(9, 16 * HH - 23, (N, K)) / 16.0
    xc[:, -1] = -0.25  # column 0, a border: x stays the cell's
    i, j = np.arange(HH)[:, None], np.arange(WH)[None, :]
    heatmap = -(j - xc[..., None, None]) ** 2 - (i - yc[..., None, None]) ** 2
    heatmap = heatmap.astype(f32)
    results = {}
    for decode in (P.CoordinateTransfer.ARGMAX_CELL,
                   P.CoordinateTransfer.QUADRATIC):
        net = transfer_net(tmp_path, False, decode=decode, **GEOMETRY)
        results[decode] = run(net, features, heatmap, None, top_diff)
    cell, fit = (results[P.CoordinateTransfer.ARGMAX_CELL],
                 results[P.CoordinateTransfer.QUADRATIC])
    ox, s = GEOMETRY['heatmap_offset'], GEOMETRY['heatmap_stride']
    np.testing.assert_array_equal(fit[1][..., 0], ox + s * np.maximum(xc, 0))
    np.testing.assert_array_equal(fit[1][..., 1], ox + s * yc)
    np.testing.assert_array_equal(fit[1][..., 2], 1)
    # the argmax cell: the nearest, ties to the first
    np.testing.assert_array_equal(cell[1][..., 0],
                                  ox + s * np.ceil(np.maximum(xc, 0) - 0.5))
    np.testing.assert_array_equal(fit[0], cell[0])  # parts
    np.testing.assert_array_equal(fit[2], cell[2])  # gradient


def classifier_net(tmp_path, with_keypoints, **params):
    """Input -> CoordinateTransfer -> L2Normalize -> InnerProduct, the part
    branch of the pose nets."""
    n = caffe.NetSpec()
    n.features = L.Input(shape=dict(dim=[N, C, HF, WF]))
    n.heatmap = L.Input(shape=dict(dim=[N, K, HH, WH]))
    bottoms = [n.features, n.heatmap]
    if with_keypoints:
        n.keypoints = L.Input(shape=dict(dim=[N, 1, K, 3]))
        bottoms.append(n.keypoints)
    n.parts, n.locations = L.CoordinateTransfer(
        *bottoms, coordinate_transfer_param=params, ntop=2)
    n.parts_l2 = L.L2Normalize(n.parts)
    n.fc = L.InnerProduct(n.parts_l2, num_output=6)
    path = tmp_path / ('train.prototxt' if with_keypoints else 'deploy.prototxt')
    path.write_text(str(n.to_proto()))
    return caffe.Net(str(path), caffe.TEST)


@pytest.mark.parametrize('pool', [P.CoordinateTransfer.MAX,
                                  P.CoordinateTransfer.AVE])
def test_predicted_invisible_matches_training(tmp_path, pool):
    """Train/test consistency: a deploy net with a visibility threshold (no
    ground truth) predicts the numpy reference's visibility, and its features,
    zeros included, and classifier scores equal those of the training net
    (ground truth, missing: ZERO) given the same parts with that visibility."""
    rng = np.random.RandomState(11)
    features, heatmap, _, _ = random_inputs(rng)
    threshold = float(np.median(peak_scores(heatmap)))
    weights = rng.randn(6, K * C).astype(f32)
    nets = {}
    for with_keypoints in (False, True):
        params = dict(GEOMETRY, pool=pool, radius=1)
        if not with_keypoints:
            params['visibility_threshold'] = threshold
        nets[with_keypoints] = classifier_net(tmp_path, with_keypoints, **params)
        nets[with_keypoints].params['fc'][0].data[...] = weights
    deploy, train = nets[False], nets[True]
    deploy.blobs['features'].data[...] = features
    deploy.blobs['heatmap'].data[...] = heatmap
    deploy.forward()
    ref = np.array([[peak_point(heatmap[n, k], False, GEOMETRY['heatmap_stride'],
                                GEOMETRY['heatmap_offset'])
                     for k in range(K)] for n in range(N)], f32)
    visible = ref[..., 2] >= f32(threshold)
    assert 0 < visible.sum() < N * K
    locations = deploy.blobs['locations'].data
    np.testing.assert_array_equal(locations[..., :2], ref[..., :2])
    np.testing.assert_array_equal(locations[..., 2], visible)
    parts = deploy.blobs['parts'].data.reshape(N, K, C)
    assert not parts[~visible].any() and parts[visible].any(axis=-1).all()
    # The training net: those parts as ground truth, invisible where gated.
    train.blobs['features'].data[...] = features
    train.blobs['heatmap'].data[...] = rng.randn(N, K, HH, WH)  # unread
    train.blobs['keypoints'].data[...] = locations.reshape(N, 1, K, 3)
    train.forward()
    for blob in ('parts', 'parts_l2', 'fc'):
        np.testing.assert_array_equal(train.blobs[blob].data,
                                      deploy.blobs[blob].data, err_msg=blob)


# ---- end to end: `caffe train` with both layers -----------------------------

TRAIN_NET = '''
layer { name: "data" type: "DummyData" top: "data" top: "keypoints" top: "label"
  dummy_data_param {
    shape { dim: 4 dim: 3 dim: 16 dim: 16 }  data_filler { type: "gaussian" std: 1 }
    shape { dim: 4 dim: 1 dim: 2 dim: 3 }
    data_filler { type: "uniform" min: 1 max: 14 }
    shape { dim: 4 }  data_filler { type: "constant" value: 1 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1
    weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "kp_score" type: "Convolution" bottom: "pool1" top: "kp_score"
  convolution_param { num_output: 2 kernel_size: 1
    weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "kp_loss" type: "KeypointSigmoidCrossEntropyLoss"
  bottom: "kp_score" bottom: "keypoints" top: "kp_loss" top: "kp_target"
  keypoint_loss_param { stride: 2 offset: 0.5 } }
layer { name: "transfer" type: "CoordinateTransfer"
  bottom: "conv1" bottom: "kp_score" bottom: "keypoints"
  top: "parts" top: "part_locations"
  coordinate_transfer_param { heatmap_stride: 2 heatmap_offset: 0.5 radius: 1 } }
layer { name: "fc" type: "InnerProduct" bottom: "parts" top: "fc"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "cls_loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label"
  top: "cls_loss" }
'''


def test_caffe_train_with_both_layers(tmp_path, caffe_tool):
    (tmp_path / 'train.prototxt').write_text(TRAIN_NET)
    (tmp_path / 'solver.prototxt').write_text(
        'net: "%s"\nbase_lr: 0.05\nlr_policy: "fixed"\nmomentum: 0.9\n'
        'max_iter: 40\ndisplay: 10\nsnapshot_prefix: "%s"\nsolver_mode: CPU\n'
        'random_seed: 1701\n'
        % (tmp_path / 'train.prototxt', tmp_path / 'tiny'))
    res = subprocess.run([caffe_tool, 'train', '--solver',
                          str(tmp_path / 'solver.prototxt')],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'Optimization Done' in res.stderr
    losses = {}
    for line in res.stderr.splitlines():
        for name in ('kp_loss', 'cls_loss'):
            if 'Train net output' in line and name + ' = ' in line:
                value = line.split(name + ' = ')[1].split()[0]
                losses.setdefault(name, []).append(float(value))
    for name, values in losses.items():
        assert np.isfinite(values).all(), name
    assert losses['kp_loss'][-1] < losses['kp_loss'][0]
    assert losses['cls_loss'][-1] < losses['cls_loss'][0]


# ---- error messages from the caffe tool -------------------------------------

from caffe_cli import input_layer, run_caffe_on  # noqa: E402


def transfer_layer(*bottoms, params=''):
    return ('layer { name: "ct" type: "CoordinateTransfer" %s top: "parts" %s }\n'
            % (' '.join('bottom: "%s"' % b for b in bottoms), params))


def test_heatmap_and_keypoint_k_mismatch(tmp_path, caffe_tool):
    res = run_caffe_on(tmp_path, caffe_tool,
                       input_layer('f', [N, C, HF, WF]) +
                       input_layer('h', [N, K, HH, WH]) +
                       input_layer('k', [N, 1, K - 1, 3]) +
                       transfer_layer('f', 'h', 'k'))
    assert res.returncode != 0
    assert ('CoordinateTransfer layer ct: bottom[2] (keypoints) must hold '
            'N * K * 3 = 45 values') in res.stderr
    assert '3 5 4 5 (300)' in res.stderr and '3 1 4 3 (36)' in res.stderr


def test_batch_size_mismatch(tmp_path, caffe_tool):
    res = run_caffe_on(tmp_path, caffe_tool,
                       input_layer('f', [N, C, HF, WF]) +
                       input_layer('h', [N - 1, K, HH, WH]) +
                       transfer_layer('f', 'h'))
    assert res.returncode != 0
    assert ('CoordinateTransfer layer ct: features 3 4 7 9 (756) and keypoint '
            'heatmap 2 5 4 5 (200) must have the same batch size N') in res.stderr


@pytest.mark.parametrize('bottoms', [('f',), ('f', 'h', 'k', 'f')])
def test_wrong_bottom_count(tmp_path, caffe_tool, bottoms):
    res = run_caffe_on(tmp_path, caffe_tool,
                       input_layer('f', [N, C, HF, WF]) +
                       input_layer('h', [N, K, HH, WH]) +
                       input_layer('k', [N, 1, K, 3]) +
                       transfer_layer(*bottoms))
    assert res.returncode != 0
    assert ('CoordinateTransfer layer ct takes 2 or 3 bottoms (features, '
            'keypoint heatmap[, ground-truth keypoints]), got %d' % len(bottoms)
            ) in res.stderr


def test_bad_stride(tmp_path, caffe_tool):
    res = run_caffe_on(tmp_path, caffe_tool,
                       input_layer('f', [N, C, HF, WF]) +
                       input_layer('h', [N, K, HH, WH]) +
                       transfer_layer('f', 'h', params='coordinate_transfer_param '
                                      '{ feature_stride: -1 }'))
    assert res.returncode != 0
    assert ('CoordinateTransfer layer ct: coordinate_transfer_param.'
            'feature_stride must be positive, got -1') in res.stderr


def test_nan_visibility_threshold(tmp_path, caffe_tool):
    res = run_caffe_on(tmp_path, caffe_tool,
                       input_layer('f', [N, C, HF, WF]) +
                       input_layer('h', [N, K, HH, WH]) +
                       transfer_layer('f', 'h', params='coordinate_transfer_param '
                                      '{ visibility_threshold: nan }'))
    assert res.returncode != 0
    assert ('CoordinateTransfer layer ct: coordinate_transfer_param.'
            'visibility_threshold is NaN') in res.stderr
