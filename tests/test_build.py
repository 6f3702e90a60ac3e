"""The build: our Caffe, its tool and pycaffe, with our layers compiled in."""
import os
import subprocess

import numpy as np
import pytest

import caffe
from caffe import layers as L

OUR_TYPES = ['SignedSqrt', 'L2Normalize', 'KeypointSigmoidCrossEntropyLoss',
             'CoordinateTransfer', 'CompactBilinear']


def test_caffe_tool_version(caffe_tool):
    out = subprocess.run([caffe_tool, '--version'], capture_output=True,
                         text=True, check=True)
    assert 'caffe version 1.0.0' in out.stdout + out.stderr


def test_caffe_is_our_build(repo_root):
    assert os.path.realpath(caffe.__file__).startswith(
        os.path.realpath(os.path.join(repo_root, 'build')))


@pytest.mark.parametrize('layer_type', OUR_TYPES)
def test_layer_types_registered(layer_type):
    assert layer_type in caffe.layer_type_list()


def _normalize_net(tmp_path, epsilon=1e-8):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[3, 4, 2, 2]))
    n.sqrt = L.SignedSqrt(n.data, signed_sqrt_param=dict(epsilon=epsilon))
    n.norm = L.L2Normalize(n.sqrt)
    path = tmp_path / 'net.prototxt'
    path.write_text('force_backward: true\n' + str(n.to_proto()))
    return caffe.Net(str(path), caffe.TEST)


def test_signed_sqrt_l2_normalize_forward_backward(tmp_path):
    net = _normalize_net(tmp_path)
    rng = np.random.RandomState(0)
    x = rng.randn(3, 4, 2, 2).astype(np.float32)
    net.blobs['data'].data[...] = x
    net.forward()
    s = np.sign(x) * np.sqrt(np.abs(x))
    flat = s.reshape(3, -1)
    y = flat / np.sqrt((flat ** 2).sum(1, keepdims=True) + 1e-12)
    np.testing.assert_allclose(net.blobs['sqrt'].data, s, rtol=1e-5)
    np.testing.assert_allclose(net.blobs['norm'].data.reshape(3, -1), y,
                               rtol=1e-5, atol=1e-6)
    # Backward against the analytic chain rule in numpy.
    g = rng.randn(3, 16).astype(np.float32)
    net.blobs['norm'].diff[...] = g.reshape(3, 4, 2, 2)
    net.backward()
    n = np.sqrt((flat ** 2).sum(1, keepdims=True) + 1e-12)
    ds = (g - y * (y * g).sum(1, keepdims=True)) / n
    dx = ds.reshape(x.shape) * 0.5 / np.sqrt(np.abs(x) + 1e-8)
    np.testing.assert_allclose(net.blobs['data'].diff, dx, rtol=1e-4, atol=1e-5)


def test_params_parse_from_prototxt(tmp_path):
    net = _normalize_net(tmp_path, epsilon=0.25)
    net.blobs['data'].data[...] = 0
    net.forward()
    net.blobs['sqrt'].diff[...] = 1
    net._backward(list(net._layer_names).index('sqrt'), 0)
    np.testing.assert_allclose(net.blobs['data'].diff, 0.5 / np.sqrt(0.25))


def test_caffe_train_tiny_solver(tmp_path, caffe_tool):
    """`caffe train` runs a solver on a net that uses our layers."""
    n = caffe.NetSpec()
    n.data, n.label = L.DummyData(
        shape=[dict(dim=[8, 6]), dict(dim=[8])],
        data_filler=[dict(type='gaussian', std=1), dict(type='constant', value=1)],
        ntop=2)
    n.ip = L.InnerProduct(n.data, num_output=5,
                          weight_filler=dict(type='xavier'))
    n.sqrt = L.SignedSqrt(n.ip)
    n.norm = L.L2Normalize(n.sqrt)
    n.scaled = L.Power(n.norm, power_param=dict(scale=10.0))
    n.loss = L.SoftmaxWithLoss(n.scaled, n.label)
    (tmp_path / 'train.prototxt').write_text(str(n.to_proto()))
    (tmp_path / 'solver.prototxt').write_text(
        'net: "%s"\nbase_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 30\n'
        'display: 10\nsnapshot_prefix: "%s"\nsolver_mode: CPU\nrandom_seed: 1701\n'
        % (tmp_path / 'train.prototxt', tmp_path / 'tiny'))
    res = subprocess.run([caffe_tool, 'train', '--solver',
                          str(tmp_path / 'solver.prototxt')],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'Optimization Done' in res.stderr
    assert (tmp_path / 'tiny_iter_30.caffemodel').exists()
    losses = [float(l.rsplit('=', 1)[1].split()[0]) for l in res.stderr.splitlines()
              if 'Iteration' in l and ', loss = ' in l]
    assert losses[-1] < losses[0]


def test_bad_param_is_a_clear_error(tmp_path, caffe_tool):
    """A non-positive epsilon stops with a CHECK naming the layer."""
    (tmp_path / 'bad.prototxt').write_text(
        'layer { name: "in" type: "Input" top: "x" '
        'input_param { shape { dim: 2 dim: 3 } } }\n'
        'layer { name: "bad_sqrt" type: "SignedSqrt" bottom: "x" top: "y" '
        'signed_sqrt_param { epsilon: 0 } }\n')
    res = subprocess.run([caffe_tool, 'time', '--model',
                          str(tmp_path / 'bad.prototxt'), '--iterations', '1'],
                         capture_output=True, text=True)
    assert res.returncode != 0
    assert 'SignedSqrt layer bad_sqrt' in res.stderr
