"""CompactBilinear (Random Maclaurin) through pycaffe and the caffe tool.

Checked against an independent numpy implementation of the forward and
backward formulas, the statistical property the projection exists for, the
caffemodel round trip, the solver leaving a fixed projection alone, and the
CHECK messages on bad input.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import caffe
from caffe import layers as L, params as P

caffe.set_mode_cpu()

DIRECT = P.CompactBilinear.DIRECT
GRAM = P.CompactBilinear.GRAM
AUTO = P.CompactBilinear.AUTO


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _cb_net(tmp_path, shape1, shape2=None, name='net.prototxt', **param):
    """Input blob(s) x1 (, x2) -> CompactBilinear 'cb' -> top 'y'."""
    n = caffe.NetSpec()
    n.x1 = L.Input(shape=dict(dim=list(shape1)))
    bottoms = [n.x1]
    if shape2 is not None:
        n.x2 = L.Input(shape=dict(dim=list(shape2)))
        bottoms.append(n.x2)
    n.y = L.CompactBilinear(*bottoms, name='cb', compact_bilinear_param=param)
    path = _write(tmp_path, name, 'force_backward: true\n' + str(n.to_proto()))
    return caffe.Net(path, caffe.TEST)


# ---------------------------------------------------------------- reference

def ref_forward(x1, x2, w1, w2, sum_pool):
    """y = d^-1/2 sum_s (W1 x1_s) * (W2 x2_s), in float64, by einsum."""
    n, d = x1.shape[0], w1.shape[0]
    spatial = x1.shape[2:]
    X1 = x1.reshape(n, x1.shape[1], -1).astype(np.float64)
    X2 = x2.reshape(n, x2.shape[1], -1).astype(np.float64)
    P1 = np.einsum('kc,ncs->nks', w1.astype(np.float64), X1)
    P2 = np.einsum('kc,ncs->nks', w2.astype(np.float64), X2)
    Y = P1 * P2 / np.sqrt(d)
    if sum_pool:
        return Y.sum(2).reshape(n, d, 1, 1)
    return Y.reshape((n, d) + spatial)


def ref_backward(x1, x2, w1, w2, sum_pool, g, shared):
    """dE/dx1, dE/dx2 (summed into dx1 when shared), dE/dW1, dE/dW2."""
    n, d = x1.shape[0], w1.shape[0]
    X1 = x1.reshape(n, x1.shape[1], -1).astype(np.float64)
    X2 = x2.reshape(n, x2.shape[1], -1).astype(np.float64)
    W1, W2 = w1.astype(np.float64), w2.astype(np.float64)
    P1 = np.einsum('kc,ncs->nks', W1, X1)
    P2 = np.einsum('kc,ncs->nks', W2, X2)
    G = g.reshape(n, d, 1 if sum_pool else -1).astype(np.float64)
    dP1 = G * P2 / np.sqrt(d)
    dP2 = G * P1 / np.sqrt(d)
    dX1 = np.einsum('kc,nks->ncs', W1, dP1)
    dX2 = np.einsum('kc,nks->ncs', W2, dP2)
    dW1 = np.einsum('nks,ncs->kc', dP1, X1)
    dW2 = np.einsum('nks,ncs->kc', dP2, X2)
    if shared:
        return (dX1 + dX2).reshape(x1.shape), None, dW1, dW2
    return dX1.reshape(x1.shape), dX2.reshape(x2.shape), dW1, dW2


def assert_close(actual, expected, rtol=2e-5):
    scale = max(1.0, np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


CASES = [  # (two bottoms, sum_pool, factorization)
    (True, True, DIRECT), (True, True, GRAM), (True, True, AUTO),
    (False, True, DIRECT), (False, True, GRAM), (False, True, AUTO),
    (True, False, DIRECT), (False, False, DIRECT), (False, False, AUTO),
]


@pytest.mark.parametrize('two,sum_pool,fact', CASES)
@pytest.mark.parametrize('learn', [False, True])
def test_forward_backward_match_numpy(tmp_path, two, sum_pool, fact, learn):
    shape1, shape2 = (3, 6, 3, 4), (3, 5, 3, 4)
    d = 37  # not a multiple of anything in particular
    net = _cb_net(tmp_path, shape1, shape2 if two else None, num_output=d,
                  sum_pool=sum_pool, factorization=fact, seed=11,
                  learn_projection=learn)
    rng = np.random.RandomState(0)
    x1 = rng.randn(*shape1).astype(np.float32)
    x2 = rng.randn(*shape2).astype(np.float32) if two else x1
    net.blobs['x1'].data[...] = x1
    if two:
        net.blobs['x2'].data[...] = x2
    w1, w2 = (net.params['cb'][i].data.copy() for i in range(2))
    assert w1.shape == (d, 6) and w2.shape == (d, 5 if two else 6)
    net.forward()
    y = ref_forward(x1, x2, w1, w2, sum_pool)
    assert net.blobs['y'].data.shape == y.shape
    assert_close(net.blobs['y'].data, y)

    g = rng.randn(*y.shape).astype(np.float32)
    net.clear_param_diffs()
    net.blobs['y'].diff[...] = g
    net.backward()
    dx1, dx2, dw1, dw2 = ref_backward(x1, x2, w1, w2, sum_pool, g, not two)
    assert_close(net.blobs['x1'].diff, dx1)
    if two:
        assert_close(net.blobs['x2'].diff, dx2)
    if learn:
        assert_close(net.params['cb'][0].diff, dw1)
        assert_close(net.params['cb'][1].diff, dw2)
    else:  # a fixed projection gets no gradient
        assert not net.params['cb'][0].diff.any()
        assert not net.params['cb'][1].diff.any()


def test_chunked_large_batch_matches_numpy(tmp_path):
    """A batch larger than the scratch budget goes through in chunks."""
    shape = (40, 8, 16, 16)  # DIRECT: 3 d HW per image > 2^25 / 40
    net = _cb_net(tmp_path, shape, num_output=1100, factorization=DIRECT)
    x = np.random.RandomState(1).randn(*shape).astype(np.float32)
    net.blobs['x1'].data[...] = x
    net.forward()
    w1, w2 = (net.params['cb'][i].data for i in range(2))
    assert_close(net.blobs['y'].data, ref_forward(x, x, w1, w2, True))
    g = np.random.RandomState(2).randn(40, 1100, 1, 1).astype(np.float32)
    net.blobs['y'].diff[...] = g
    net.backward()
    dx = ref_backward(x, x, w1, w2, True, g, True)[0]
    assert_close(net.blobs['x1'].diff, dx)


def test_gao_style_prototxt_parses(tmp_path):
    """Gao et al.'s Tensor Sketch prototxts (same type and fields) parse."""
    proto = _write(tmp_path, 'gao.prototxt', textwrap.dedent('''\
        layer { name: "in1" type: "Input" top: "in1"
                input_param { shape { dim: 2 dim: 4 dim: 3 dim: 3 } } }
        layer { name: "in2" type: "Input" top: "in2"
                input_param { shape { dim: 2 dim: 5 dim: 3 dim: 3 } } }
        layer { name: "compact_bilinear" type: "CompactBilinear"
                bottom: "in1" bottom: "in2" top: "out"
                compact_bilinear_param { num_output: 4096 sum_pool: false } }
        '''))
    net = caffe.Net(proto, caffe.TEST)
    assert net.blobs['out'].data.shape == (2, 4096, 3, 3)


# ---------------------------------------------------------------- projection

def mt19937_signs(seed, count):
    """+-1 from bit 31 of MT19937(seed) draws: numpy's legacy RandomState is
    the reference Mersenne Twister, independent of the C++ library's."""
    draws = np.random.RandomState(seed).randint(0, 2 ** 32, size=count,
                                                dtype=np.uint64)
    return np.where(draws >> 31, 1.0, -1.0)


def test_projection_is_plus_minus_one_from_seed(tmp_path):
    net = _cb_net(tmp_path, (1, 6, 2, 2), (1, 5, 2, 2), num_output=50,
                  seed=1234)
    w1, w2 = (net.params['cb'][i].data for i in range(2))
    signs = mt19937_signs(1234, 50 * 6 + 50 * 5)
    np.testing.assert_array_equal(w1.ravel(), signs[:300])
    np.testing.assert_array_equal(w2.ravel(), signs[300:])
    assert 0.35 < (signs > 0).mean() < 0.65
    other = _cb_net(tmp_path, (1, 6, 2, 2), (1, 5, 2, 2), num_output=50,
                    seed=1235, name='other.prototxt')
    assert (other.params['cb'][0].data != w1).any()


def test_inner_product_estimates_bilinear_kernel_over_seeds(tmp_path):
    """E <y(X), y(Z)> = sum_{s,t} (x_s . z_t)^2, averaged over 200 seeds."""
    rng = np.random.RandomState(3)
    x = rng.randn(3, 6, 2, 2).astype(np.float32)  # images X, Z, and X again
    x[2] = x[0]
    feats = x.reshape(3, 6, 4)
    truth_xz = ((feats[0].T @ feats[1]) ** 2).sum()
    truth_xx = ((feats[0].T @ feats[0]) ** 2).sum()
    xz, xx = [], []
    for seed in range(200):
        net = _cb_net(tmp_path, x.shape, num_output=16, seed=seed,
                      name='s%d.prototxt' % seed)
        net.blobs['x1'].data[...] = x
        y = net.forward()['y'].reshape(3, -1).astype(np.float64)
        xz.append(y[0] @ y[1])
        xx.append(y[0] @ y[2])
    for est, truth in ((np.array(xz), truth_xz), (np.array(xx), truth_xx)):
        stderr = est.std(ddof=1) / np.sqrt(len(est))
        assert abs(est.mean() - truth) < 5 * stderr, (est.mean(), truth, stderr)
        assert stderr < 0.25 * truth  # the test has power


def test_inner_product_estimates_bilinear_kernel_one_big_d(tmp_path):
    """Each coordinate's d y_k(X) y_k(Z) is an independent unbiased estimate:
    their mean is <y(X), y(Z)> and their spread gives its standard error."""
    d = 60000
    rng = np.random.RandomState(4)
    x = rng.randn(2, 5, 3, 1).astype(np.float32)
    net = _cb_net(tmp_path, x.shape, num_output=d, seed=9)
    net.blobs['x1'].data[...] = x
    y = net.forward()['y'].reshape(2, d).astype(np.float64)
    terms = d * y[0] * y[1]
    feats = x.reshape(2, 5, 3).astype(np.float64)
    truth = ((feats[0].T @ feats[1]) ** 2).sum()
    stderr = terms.std(ddof=1) / np.sqrt(d)
    assert abs(terms.mean() - truth) < 5 * stderr, (terms.mean(), truth, stderr)
    assert stderr < 0.05 * truth
    np.testing.assert_allclose(terms.mean(), y[0] @ y[1], rtol=1e-6)


# ---------------------------------------------------------------- caffemodel

def test_weights_saved_and_reloaded_reproduce_output(tmp_path):
    shape = (2, 6, 3, 3)
    net = _cb_net(tmp_path, shape, num_output=64, seed=5, name='a.prototxt')
    x = np.random.RandomState(6).randn(*shape).astype(np.float32)
    net.blobs['x1'].data[...] = x
    y = net.forward()['y'].copy()
    model = str(tmp_path / 'cb.caffemodel')
    net.save(model)
    # A different seed in the prototxt: the caffemodel's projection wins.
    again = _cb_net(tmp_path, shape, num_output=64, seed=77, name='b.prototxt')
    again.blobs['x1'].data[...] = x
    assert not np.array_equal(again.forward()['y'], y)
    again.copy_from(model)
    for i in range(2):
        np.testing.assert_array_equal(again.params['cb'][i].data,
                                      net.params['cb'][i].data)
    np.testing.assert_array_equal(again.forward()['y'], y)
    # The same through the constructor that takes weights.
    loaded = caffe.Net(str(tmp_path / 'b.prototxt'), caffe.TEST,
                       weights=model)
    loaded.blobs['x1'].data[...] = x
    np.testing.assert_array_equal(loaded.forward()['y'], y)


# ---------------------------------------------------------------- solver

def _train(tmp_path, caffe_tool, learn, solver_type, iters=6):
    """`caffe train` from saved initial weights; (initial, trained) nets."""
    n = caffe.NetSpec()
    n.data, n.label = L.DummyData(
        shape=[dict(dim=[4, 3, 5, 5]), dict(dim=[4])],
        data_filler=[dict(type='gaussian', std=1),
                     dict(type='uniform', min=0, max=2.99)], ntop=2)
    n.conv = L.Convolution(n.data, num_output=6, kernel_size=3,
                           weight_filler=dict(type='gaussian', std=0.3))
    n.cb = L.CompactBilinear(n.conv, compact_bilinear_param=dict(
        num_output=32, seed=21, learn_projection=learn))
    n.sqrt = L.SignedSqrt(n.cb)
    n.norm = L.L2Normalize(n.sqrt)
    n.ip = L.InnerProduct(n.norm, num_output=3,
                          weight_filler=dict(type='gaussian', std=1))
    n.loss = L.SoftmaxWithLoss(n.ip, n.label)
    train = _write(tmp_path, 'train.prototxt', str(n.to_proto()))
    before = caffe.Net(train, caffe.TEST)
    init = str(tmp_path / 'init.caffemodel')
    before.save(init)
    prefix = str(tmp_path / 'snap')
    solver = _write(tmp_path, 'solver.prototxt', textwrap.dedent('''\
        net: "%s"
        type: "%s"
        base_lr: %g
        momentum: 0.9
        weight_decay: 0.05
        lr_policy: "fixed"
        max_iter: %d
        snapshot: %d
        snapshot_prefix: "%s"
        solver_mode: CPU
        ''' % (train, solver_type, 0.5 if solver_type == 'SGD' else 0.05,
               iters, iters, prefix)))
    res = subprocess.run([caffe_tool, 'train', '--solver', solver,
                          '--weights', init],
                         capture_output=True, text=True, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    after = caffe.Net(train, caffe.TEST,
                      weights='%s_iter_%d.caffemodel' % (prefix, iters))
    return before, after


@pytest.mark.parametrize('solver_type', ['SGD', 'Adam'])
def test_caffe_train_leaves_fixed_projection_bit_identical(
        tmp_path, caffe_tool, solver_type):
    before, after = _train(tmp_path, caffe_tool, False, solver_type)
    for i in range(2):
        w0, w1 = before.params['cb'][i].data, after.params['cb'][i].data
        assert np.array_equal(w0, w1)  # bit-identical despite weight_decay
        assert set(np.unique(w1)) == {-1.0, 1.0}
    # ... while the rest of the net did train.
    assert not np.array_equal(before.params['conv'][0].data,
                              after.params['conv'][0].data)


def test_caffe_train_updates_learned_projection(tmp_path, caffe_tool):
    before, after = _train(tmp_path, caffe_tool, True, 'SGD')
    for i in range(2):
        assert not np.array_equal(before.params['cb'][i].data,
                                  after.params['cb'][i].data)


# ---------------------------------------------------------------- bad input

BAD = {
    'spatial': ('bottom: "a" bottom: "b"', 'num_output: 8',
                'CompactBilinear layer bad_cb: bottom[1] shape 2 5 3 4 (120) '
                'must have the same N and spatial shape as bottom[0] shape '
                '2 4 3 3 (72)'),
    'num_output': ('bottom: "a"', 'sum_pool: true',
                   'CompactBilinear layer bad_cb: compact_bilinear_param.'
                   'num_output (d >= 1) is required'),
    'gram': ('bottom: "a"', 'num_output: 8 sum_pool: false factorization: GRAM',
             'CompactBilinear layer bad_cb: factorization: GRAM needs '
             'sum_pool: true'),
}


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_input_is_a_clear_error(tmp_path, caffe_tool, case):
    bottoms, param, message = BAD[case]
    proto = _write(tmp_path, 'bad.prototxt', textwrap.dedent('''\
        layer { name: "a" type: "Input" top: "a"
                input_param { shape { dim: 2 dim: 4 dim: 3 dim: 3 } } }
        layer { name: "b" type: "Input" top: "b"
                input_param { shape { dim: 2 dim: 5 dim: 3 dim: 4 } } }
        layer { name: "bad_cb" type: "CompactBilinear" %s top: "y"
                compact_bilinear_param { %s } }
        ''' % (bottoms, param)))
    res = subprocess.run([caffe_tool, 'time', '--model', proto,
                          '--iterations', '1'], capture_output=True, text=True)
    assert res.returncode != 0
    assert message in res.stderr, res.stderr[-2000:]


def test_learning_rate_on_fixed_projection_is_an_error(tmp_path, caffe_tool):
    proto = _write(tmp_path, 'lr.prototxt', textwrap.dedent('''\
        layer { name: "a" type: "Input" top: "a"
                input_param { shape { dim: 2 dim: 4 dim: 3 dim: 3 } } }
        layer { name: "bad_cb" type: "CompactBilinear" bottom: "a" top: "y"
                param { lr_mult: 1 } param { lr_mult: 1 }
                compact_bilinear_param { num_output: 8 } }
        '''))
    res = subprocess.run([caffe_tool, 'time', '--model', proto,
                          '--iterations', '1'], capture_output=True, text=True)
    assert res.returncode != 0
    assert ('CompactBilinear layer bad_cb: param 0 has lr_mult 1 but the '
            'projection W1 is fixed') in res.stderr


# ---------------------------------------------------------------- GPU

GPU_SCRIPT = textwrap.dedent('''\
    import json, sys
    import numpy as np
    import caffe
    from caffe import layers as L
    caffe.set_device(0)
    out = {}
    for case in json.loads(sys.argv[2]):
        two, sum_pool, fact = case
        n = caffe.NetSpec()
        n.x1 = L.Input(shape=dict(dim=[5, 6, 4, 3]))
        bottoms = [n.x1]
        if two:
            n.x2 = L.Input(shape=dict(dim=[5, 7, 4, 3]))
            bottoms.append(n.x2)
        n.y = L.CompactBilinear(*bottoms, name='cb', compact_bilinear_param=dict(
            num_output=29, sum_pool=sum_pool, factorization=fact,
            learn_projection=True))
        path = sys.argv[1] + '/gpu_%d_%d_%d.prototxt' % (two, sum_pool, fact)
        open(path, 'w').write('force_backward: true\\n' + str(n.to_proto()))
        res = []
        for mode in (caffe.set_mode_cpu, caffe.set_mode_gpu):
            mode()
            net = caffe.Net(path, caffe.TEST)
            rng = np.random.RandomState(0)
            for b in net.inputs:
                net.blobs[b].data[...] = rng.randn(*net.blobs[b].data.shape)
            net.forward()
            net.blobs['y'].diff[...] = np.cos(np.arange(net.blobs['y'].count)
                                              ).reshape(net.blobs['y'].shape)
            net.clear_param_diffs()
            net.backward()
            res.append([net.blobs['y'].data.copy()] +
                       [net.blobs[b].diff.copy() for b in net.inputs] +
                       [p.diff.copy() for p in net.params['cb']])
        out[str(case)] = max(float(np.abs(a - b).max() / max(1, np.abs(a).max()))
                             for a, b in zip(*res))
    print('RESULT ' + json.dumps(out))
    ''')


def _gpu_pythonpaths(repo_root):
    """pycaffe builds to try: this one, then a CUDA build in build/gpu."""
    paths = [None]
    gpu = os.path.join(repo_root, 'build', 'gpu', 'caffe', 'python')
    if os.path.isdir(gpu):
        paths.append(gpu)
    return paths


def test_cpu_and_gpu_agree(tmp_path, repo_root):
    cases = [[1, 1, 1], [1, 1, 2], [0, 1, 1], [0, 1, 2], [1, 0, 1], [0, 0, 1]]
    script = _write(tmp_path, 'gpu.py', GPU_SCRIPT)
    reasons = []
    for path in _gpu_pythonpaths(repo_root):
        env = dict(os.environ, GLOG_minloglevel='2')
        if path:
            env['PYTHONPATH'] = path + os.pathsep + env.get('PYTHONPATH', '')
        probe = subprocess.run(
            [sys.executable, '-c', 'import caffe; caffe.set_device(0); '
             'caffe.set_mode_gpu(); print("GPU OK")'],
            capture_output=True, text=True, env=env)
        if 'GPU OK' not in probe.stdout:
            lines = probe.stderr.strip().splitlines() or ['?']
            fatal = [l for l in lines if l[:1] == 'F' and l[1:2].isdigit()]
            reason = (fatal or lines)[-1].split('] ', 1)[-1]
            reasons.append('%s: %s' % (path or 'this pycaffe', reason[-120:]))
            continue
        res = subprocess.run([sys.executable, script, str(tmp_path),
                              json.dumps(cases)],
                             capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr[-3000:]
        line = [l for l in res.stdout.splitlines() if l.startswith('RESULT ')]
        diffs = json.loads(line[-1][len('RESULT '):])
        assert all(v < 1e-4 for v in diffs.values()), diffs
        return
    pytest.skip('no CUDA device / CPU-only Caffe: ' + '; '.join(reasons))


# ---------------------------------------------------------------- docs

def test_documented_pipeline_prototxt_runs(tmp_path, repo_root):
    """The prototxt snippet in docs/layers.md's CompactBilinear section runs."""
    with open(os.path.join(repo_root, 'docs', 'layers.md')) as f:
        section = f.read().split('## CompactBilinear, SignedSqrt, L2Normalize', 1)[1]
    snippet = section.split('```')[1]
    proto = _write(tmp_path, 'doc.prototxt',
                   'layer { name: "in" type: "Input" top: "conv5_3" '
                   'input_param { shape { dim: 2 dim: 8 dim: 3 dim: 3 } } }\n'
                   + snippet)
    net = caffe.Net(proto, caffe.TEST)
    net.blobs['conv5_3'].data[...] = np.random.RandomState(0).randn(2, 8, 3, 3)
    net.forward()
    assert net.blobs['cbp'].data.shape == (2, 5000, 1, 1)
    np.testing.assert_allclose((net.blobs['cbp_l2'].data ** 2).sum((1, 2, 3)),
                               1, rtol=1e-5)
    assert net.blobs['fc_cub'].data.shape == (2, 200)
