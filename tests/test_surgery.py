"""posenorm.pose.surgery and tools/surgery.py: Model-Zoo-style VGG weights into both streams."""
import os
import subprocess
import sys

import numpy as np
import pytest

import caffe
from caffe import layers as L
from caffe.proto import caffe_pb2

from posenorm.core import net_loading
from posenorm.nets.backbones import BACKBONES, conv_trunk_proto
from posenorm.pose import surgery
from posenorm.pose.nets import pose_normalized_net
from posenorm.pose.variant import Variant
from posenorm.pose.stages import trained_nets

SMALL = BACKBONES['small']
ZOO_FC = 256        # the small backbone's fc width
ZOO_CLASSES = 10    # "ImageNet" classes of the fake Model Zoo net


def _conv_names(backbone=SMALL):
    return ['conv%d_%d' % (b, i) for b, widths in enumerate(backbone.blocks, 1)
            for i in range(1, len(widths) + 1)]


def _zoo_prototxt(fc8=ZOO_CLASSES):
    """A deploy prototxt in the Model Zoo's VGG_ILSVRC_16_layers style (V1 syntax,
    input_dim, InnerProduct fc6/fc7/fc8 at 224 px) with the small backbone's widths."""
    layers, bottom = [], 'data'
    for b, widths in enumerate(SMALL.blocks, 1):
        for i, width in enumerate(widths, 1):
            name = 'conv%d_%d' % (b, i)
            layers.append('layers { bottom: "%s" top: "%s" name: "%s" type: CONVOLUTION\n'
                          '  convolution_param { num_output: %d pad: 1 kernel_size: 3 } }'
                          % (bottom, name, name, width))
            layers.append('layers { bottom: "%s" top: "%s" name: "relu%d_%d" type: RELU }'
                          % (name, name, b, i))
            bottom = name
        layers.append('layers { bottom: "%s" top: "pool%d" name: "pool%d" type: POOLING\n'
                      '  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }' % (bottom, b, b))
        bottom = 'pool%d' % b
    for name, nout in (('fc6', ZOO_FC), ('fc7', ZOO_FC), ('fc8', fc8)):
        layers.append('layers { bottom: "%s" top: "%s" name: "%s" type: INNER_PRODUCT\n'
                      '  inner_product_param { num_output: %d } }' % (bottom, name, name, nout))
        bottom = name
        if name != 'fc8':
            layers.append('layers { bottom: "%s" top: "%s" name: "relu%s" type: RELU }'
                          % (name, name, name[2:]))
            layers.append('layers { bottom: "%s" top: "%s" name: "drop%s" type: DROPOUT\n'
                          '  dropout_param { dropout_ratio: 0.5 } }' % (name, name, name[2:]))
    layers.append('layers { bottom: "fc8" top: "prob" name: "prob" type: SOFTMAX }')
    return ('name: "VGG_ILSVRC_16_layers"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\n'
            'input_dim: 224\ninput_dim: 224\n' + '\n'.join(layers) + '\n')


def _zoo_params(seed=0):
    """Random weights of the fake Model Zoo net: name -> (W, b), Caffe shapes."""
    rng = np.random.RandomState(seed)
    params, c = {}, 3
    widths = [w for block in SMALL.blocks for w in block]
    for name, width in zip(_conv_names(), widths):
        params[name] = (rng.randn(width, c, 3, 3).astype(np.float32),
                        rng.randn(width).astype(np.float32))
        c = width
    k = c * 7 * 7
    for name, nout in (('fc6', ZOO_FC), ('fc7', ZOO_FC), ('fc8', ZOO_CLASSES)):
        params[name] = (rng.randn(nout, k).astype(np.float32), rng.randn(nout).astype(np.float32))
        k = nout
    return params


def _write_v1_caffemodel(path, params, prototxt_types):
    """A caffemodel as the Model Zoo's 2014 files are: V1 `layers`, legacy 4-D blob dims."""
    net = caffe_pb2.NetParameter(name='VGG_ILSVRC_16_layers')
    for name, arrays in params.items():
        layer = net.layers.add(name=name, type=prototxt_types[name])
        for a in arrays:
            dims = (1,) * (4 - a.ndim) + a.shape
            bp = layer.blobs.add(num=dims[0], channels=dims[1], height=dims[2], width=dims[3])
            bp.data.extend(a.ravel())
    with open(path, 'wb') as f:
        f.write(net.SerializeToString())


@pytest.fixture(scope='module')
def zoo(tmp_path_factory):
    d = tmp_path_factory.mktemp('zoo')
    proto, model = str(d / 'small_zoo_deploy.prototxt'), str(d / 'small_zoo.caffemodel')
    with open(proto, 'w') as f:
        f.write(_zoo_prototxt())
    params = _zoo_params()
    V1 = caffe_pb2.V1LayerParameter
    types = {n: V1.INNER_PRODUCT if n.startswith('fc') else V1.CONVOLUTION for n in params}
    _write_v1_caffemodel(model, params, types)
    return dict(dir=d, prototxt=proto, caffemodel=model, params=params)


def _write_proto(path, proto):
    with open(path, 'w') as f:
        f.write(str(proto))
    return str(path)


def _quiet(*args):
    pass


def _train_like(proto, input_size=SMALL.input_size, batch=2):
    """A train net with its LMDB Data layers replaced by Input blobs of the same shapes."""
    shapes = dict(data=[batch, 3, input_size, input_size], label=[batch],
                  keypoints=[batch, 1, 15, 3], head_data=[batch, 3, 224, 224],
                  body_data=[batch, 3, 224, 224])
    out = caffe_pb2.NetParameter(name=proto.name)
    for layer in proto.layer:
        if layer.type == 'Data':
            new = out.layer.add(name=layer.name, type='Input', top=layer.top)
            for top in layer.top:
                new.input_param.shape.add(dim=shapes[top])
        else:
            out.layer.add().CopyFrom(layer)
    return out


def _assert_loads_by_name(prototxt, weights, phase):
    """caffe.Net(prototxt, weights): shapes checked in Python first, so a
    mismatch fails the test instead of aborting the process in Caffe."""
    net = caffe.Net(prototxt, phase)
    saved = net_loading.caffemodel_blobs(weights)
    for name in set(saved) & set(net.params):
        for (shape, has_shape), blob in zip(saved[name], net.params[name]):
            assert has_shape and shape == blob.data.shape, (prototxt, name, shape, blob.data.shape)
    net.copy_from(weights)
    return net


@pytest.fixture(scope='module')
def joint(zoo):
    """Surgery of the fake Model Zoo net into the small joint (fc7) deploy net."""
    out = str(zoo['dir'] / 'small_init.caffemodel')
    log = []
    report = surgery.surgery(zoo['caffemodel'], out, source_net=zoo['prototxt'],
                             backbone='small', holistic='fc7', num_classes=5, log=log.append)
    target = _write_proto(zoo['dir'] / 'small_joint_fc7_deploy.prototxt',
                          pose_normalized_net('deploy', Variant(holistic='fc7'),
                                              backbone='small', num_classes=5))
    return dict(out=out, report=report, log=log, target=target)


def test_round_trip_both_streams(zoo, joint):
    src = zoo['params']
    net = caffe.Net(joint['target'], joint['out'], caffe.TEST)
    for name in _conv_names():
        for prefix in ('', 'cls_'):
            for blob, a in zip(net.params[prefix + name], src[name]):
                np.testing.assert_array_equal(blob.data, a, err_msg=prefix + name)
    # the small backbone scores keypoints on conv5_3: fc6/fc7 exist in the cls_ stream only
    assert 'fc6' not in net.params and 'fc7' not in net.params
    assert net.params['cls_fc6'][0].data.shape == (ZOO_FC, 64, 7, 7)
    assert net.params['cls_fc7'][0].data.shape == (ZOO_FC, ZOO_FC, 1, 1)
    for name in ('fc6', 'fc7'):
        w, b = net.params['cls_' + name]
        np.testing.assert_array_equal(w.data.reshape(src[name][0].shape), src[name][0])
        np.testing.assert_array_equal(w.data, src[name][0].reshape(w.data.shape))
        np.testing.assert_array_equal(b.data, src[name][1])


def test_report_and_output_layers(joint):
    r = joint['report']
    convs = _conv_names()
    assert sorted(r['copied']) == sorted([(n, n) for n in convs] + [(n, 'cls_' + n) for n in convs])
    assert [(s, d) for s, d, _, _ in r['coerced']] == [('fc6', 'cls_fc6'), ('fc7', 'cls_fc7')]
    assert r['coerced'][0][2:] == ([(ZOO_FC, 64 * 49), (ZOO_FC,)], [(ZOO_FC, 64, 7, 7), (ZOO_FC,)])
    assert r['dropped'] == ['fc8']
    assert r['filler'] == ['kp_score', 'cls_score']
    # only the layers that got weights are saved: fc8, kp_score and cls_score are not
    saved = net_loading.caffemodel_blobs(joint['out'])
    assert list(saved) == r['written']
    assert set(saved) == set(convs) | {'cls_' + n for n in convs} | {'cls_fc6', 'cls_fc7'}
    text = '\n'.join(joint['log'])
    assert 'coercing InnerProduct fc6' in text and 'dropping fc8' in text
    assert 'left at filler' in text and '1 dropped' in text


def test_output_loads_into_every_train_net(zoo, joint, tmp_path):
    """What `caffe train --weights` does, for every stage of the small backbone."""
    src = zoo['params']
    known, skipped = set(caffe.layer_type_list()), []
    for name, variant in trained_nets('small').items():
        if variant.part:  # part nets: the driver copies the trunk in renamed
            continue      # (surgery.copy_weights, tests/test_train.py)
        proto = _train_like(pose_normalized_net('train', variant, backbone='small',
                                                num_classes=5))
        missing = {layer.type for layer in proto.layer} - known
        if missing:  # e.g. CompactBilinear before it is built
            skipped.append(name)
            continue
        net = _assert_loads_by_name(_write_proto(tmp_path / (name + '.prototxt'), proto),
                                    joint['out'], caffe.TRAIN)
        # a partial-protocol net's streams share one trunk up to pool4: its
        # classification stream starts at cls_conv5_1
        loaded = [(p, layer) for p in ('', 'cls_') for layer in ('conv1_1', 'conv5_3')
                  if p + layer in net.params]
        assert {layer for _, layer in loaded} == {'conv1_1', 'conv5_3'}, name
        for prefix, layer in loaded:
            np.testing.assert_array_equal(net.params[prefix + layer][0].data, src[layer][0])
    assert len(skipped) < len(trained_nets('small'))
    if skipped:
        pytest.skip('loaded all but %s (layer types missing from this build)' % ', '.join(skipped))


def test_cbp_target_drops_fc(zoo, tmp_path):
    out = str(tmp_path / 'cbp.caffemodel')
    if 'CompactBilinear' not in caffe.layer_type_list():
        with pytest.raises(surgery.SurgeryError, match='CompactBilinear, which this Caffe build lacks'):
            surgery.surgery(zoo['caffemodel'], out, source_net=zoo['prototxt'], backbone='small',
                            holistic='cbp', log=_quiet)
        pytest.skip('CompactBilinear is not in this Caffe build yet')
    r = surgery.surgery(zoo['caffemodel'], out, source_net=zoo['prototxt'], backbone='small',
                        holistic='cbp', log=_quiet)
    assert r['dropped'] == ['fc6', 'fc7', 'fc8'] and not r['coerced']
    assert len(r['copied']) == 2 * len(_conv_names())


def test_streams_option(zoo, tmp_path):
    out = str(tmp_path / 'cls_only.caffemodel')
    r = surgery.surgery(zoo['caffemodel'], out, source_net=zoo['prototxt'], backbone='small',
                        streams=('cls_',), log=_quiet)
    assert {d for _, d in r['copied']} == {'cls_' + n for n in _conv_names()}
    assert 'conv1_1' in r['filler']
    assert surgery.parse_streams("'',cls_") == ('', 'cls_')
    assert surgery.parse_streams(',cls_') == ('', 'cls_')
    assert surgery.parse_streams('cls_') == ('cls_',)
    with pytest.raises(ValueError):
        surgery.parse_streams('cls_,cls_')


def _net(tmp_path, name, build):
    """A tiny net; its params random (seeded by name) so that copies are visible."""
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 4, 8, 8]))
    build(n)
    net = caffe.Net(_write_proto(tmp_path / (name + '.prototxt'), n.to_proto()), caffe.TEST)
    rng = np.random.RandomState(sum(map(ord, name)))
    for blobs in net.params.values():
        for blob in blobs:
            blob.data[...] = rng.randn(*blob.data.shape)
    return net


def _conv(name, **kw):
    return lambda n: setattr(n, name, L.Convolution(n.data, **kw))


def test_shape_mismatch_is_a_clear_error(tmp_path):
    src = _net(tmp_path, 'src', _conv('conv1_1', num_output=6, kernel_size=3))
    dst = _net(tmp_path, 'dst', _conv('conv1_1', num_output=8, kernel_size=3))
    before = dst.params['conv1_1'][0].data.copy()
    with pytest.raises(surgery.SurgeryError,
                       match=r'layer conv1_1, param 0: source Convolution conv1_1 is 6x4x3x3, '
                             r'new net Convolution conv1_1 is 8x4x3x3'):
        surgery.transplant(dst, src, log=_quiet)
    np.testing.assert_array_equal(dst.params['conv1_1'][0].data, before)
    # the same count is coerced only InnerProduct -> Convolution, never conv -> conv
    grouped = _net(tmp_path, 'grouped', _conv('conv1_1', num_output=24, kernel_size=3, group=4))
    assert grouped.params['conv1_1'][0].data.size == src.params['conv1_1'][0].data.size
    with pytest.raises(surgery.SurgeryError, match=r'conv1_1.*6x4x3x3.*24x1x3x3'):
        surgery.transplant(grouped, src, log=_quiet)
    # nothing is written when any layer fails, not even the layers that fit
    def two(first, second):
        def build(n):
            n.conv1_1 = L.Convolution(n.data, num_output=first, kernel_size=3)
            n.conv1_2 = L.Convolution(n.conv1_1, num_output=second, kernel_size=3)
        return build
    src12 = _net(tmp_path, 'src12', two(6, 6))
    dst12 = _net(tmp_path, 'dst12', two(6, 7))
    before = [b.data.copy() for b in dst12.params['conv1_1']]
    with pytest.raises(surgery.SurgeryError, match='conv1_2'):
        surgery.transplant(dst12, src12, log=_quiet)
    for blob, old in zip(dst12.params['conv1_1'], before):
        np.testing.assert_array_equal(blob.data, old)
    # a different number of param blobs
    no_bias = _net(tmp_path, 'nobias', _conv('conv1_1', num_output=6, kernel_size=3, bias_term=False))
    with pytest.raises(surgery.SurgeryError, match=r'conv1_1: the source has 2 param blobs.*has 1'):
        surgery.transplant(no_bias, src, log=_quiet)


def test_coercion_needs_innerproduct_and_equal_count(tmp_path):
    ip = _net(tmp_path, 'ip', lambda n: setattr(n, 'fc6', L.InnerProduct(n.data, num_output=3)))
    conv = _net(tmp_path, 'conv', _conv('fc6', num_output=3, kernel_size=8))
    r = surgery.transplant(conv, ip, log=_quiet)
    assert r['coerced'] == [('fc6', 'fc6', [(3, 256), (3,)], [(3, 4, 8, 8), (3,)])]
    np.testing.assert_array_equal(conv.params['fc6'][0].data.reshape(3, 256), ip.params['fc6'][0].data)
    np.testing.assert_array_equal(conv.params['fc6'][1].data, ip.params['fc6'][1].data)
    smaller = _net(tmp_path, 'smaller', _conv('fc6', num_output=3, kernel_size=7))
    with pytest.raises(surgery.SurgeryError, match=r'InnerProduct fc6 is 3x256.*Convolution fc6 is 3x4x7x7'):
        surgery.transplant(smaller, ip, log=_quiet)


def test_missing_files(zoo, tmp_path):
    out = str(tmp_path / 'out.caffemodel')
    with pytest.raises(FileNotFoundError, match='nope.caffemodel'):
        surgery.surgery(str(tmp_path / 'nope.caffemodel'), out, log=_quiet)
    with pytest.raises(FileNotFoundError, match='nope.prototxt'):
        surgery.surgery(zoo['caffemodel'], out, source_net=str(tmp_path / 'nope.prototxt'),
                        backbone='small', log=_quiet)
    with pytest.raises(FileNotFoundError, match='target.*nope_net.prototxt'):
        surgery.surgery(zoo['caffemodel'], out, source_net=zoo['prototxt'], backbone='small',
                        net=str(tmp_path / 'nope_net.prototxt'), log=_quiet)
    assert not os.path.exists(out)


def test_source_net_must_match_the_caffemodel(zoo, tmp_path):
    out = str(tmp_path / 'out.caffemodel')
    # the Model Zoo caffemodel read as a conv-only trunk would silently lose fc6/fc7
    with pytest.raises(surgery.SurgeryError, match=r'fc6, fc7, fc8.*--source-net'):
        surgery.surgery(zoo['caffemodel'], out, backbone='small', log=_quiet)
    # a prototxt with layers the caffemodel lacks would copy filler values
    conv_only = _write_proto(tmp_path / 'conv.prototxt', conv_trunk_proto('small'))
    proto_with_fc = zoo['prototxt']
    net = caffe.Net(conv_only, caffe.TEST)
    only_convs = str(tmp_path / 'convs.caffemodel')
    surgery.save_weights(net, only_convs)
    with pytest.raises(surgery.SurgeryError, match=r'no weights for layer\(s\) fc6, fc7, fc8'):
        surgery.load_weights(proto_with_fc, only_convs)
    # a shape Caffe would abort on is an exception here
    bad = str(tmp_path / 'bad_fc8.prototxt')
    with open(bad, 'w') as f:
        f.write(_zoo_prototxt(fc8=ZOO_CLASSES + 1))
    with pytest.raises(surgery.SurgeryError, match=r'layer fc8: .*1x1x10x256.*11x256'):
        surgery.load_weights(bad, zoo['caffemodel'])
    garbage = str(tmp_path / 'garbage.prototxt')
    with open(garbage, 'w') as f:
        f.write('layer { this is not a net')
    with pytest.raises(surgery.SurgeryError, match='not a Caffe net prototxt'):
        surgery.load_weights(garbage, zoo['caffemodel'])
    assert not os.path.exists(out)


def test_refuses_to_overwrite(zoo, tmp_path):
    out = tmp_path / 'out.caffemodel'
    out.write_bytes(b'precious')
    with pytest.raises(FileExistsError, match='--force'):
        surgery.surgery(zoo['caffemodel'], str(out), source_net=zoo['prototxt'], backbone='small',
                        log=_quiet)
    assert out.read_bytes() == b'precious'
    surgery.surgery(zoo['caffemodel'], str(out), source_net=zoo['prototxt'], backbone='small',
                    force=True, log=_quiet)
    assert 'cls_conv1_1' in net_loading.caffemodel_blobs(str(out))
    assert sorted(os.listdir(tmp_path)) == ['out.caffemodel', 'out.caffemodel.record.json']  # no temporaries


def test_copy_stream(tmp_path):
    target = _write_proto(tmp_path / 'joint.prototxt',
                          pose_normalized_net('deploy', Variant(holistic='fc7'), backbone='small',
                                              num_classes=5))
    net = caffe.Net(target, caffe.TEST)
    rng = np.random.RandomState(1)
    for name in net.params:
        for blob in net.params[name]:
            blob.data[...] = rng.randn(*blob.data.shape)
    before = {n: [b.data.copy() for b in blobs] for n, blobs in net.params.items()}
    r = surgery.copy_stream(net, '', 'cls_', log=_quiet)
    assert r['copied'] == [(n, 'cls_' + n) for n in _conv_names()]
    # the small loc stream ends at conv5_3; cls_score is the head, not a stream layer
    assert r['missing'] == ['cls_fc6', 'cls_fc7', 'cls_score']
    for name in _conv_names():
        for a, b in zip(net.params[name], net.params['cls_' + name]):
            np.testing.assert_array_equal(a.data, b.data)
            assert a.data is not b.data
    for name in ('conv1_1', 'kp_score', 'cls_fc6', 'cls_fc7', 'cls_score'):
        for blob, old in zip(net.params[name], before[name]):
            np.testing.assert_array_equal(blob.data, old)
    # and mismatched streams are an error
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    n.conv1_1 = L.Convolution(n.data, num_output=4, kernel_size=3)
    n.cls_conv1_1 = L.Convolution(n.data, num_output=5, kernel_size=3)
    bad = caffe.Net(_write_proto(tmp_path / 'bad.prototxt', n.to_proto()), caffe.TEST)
    with pytest.raises(surgery.SurgeryError, match=r'conv1_1 is 4x3x3x3.*cls_conv1_1 is 5x3x3x3'):
        surgery.copy_stream(bad, log=_quiet)


def test_cli(zoo, tmp_path, repo_root):
    tool = os.path.join(repo_root, 'tools', 'surgery.py')
    help_ = subprocess.run([sys.executable, tool, '--help'], capture_output=True, text=True)
    assert help_.returncode == 0 and '--streams' in help_.stdout and '--source-net' in help_.stdout
    out = str(tmp_path / 'cli.caffemodel')
    args = [sys.executable, tool, '--weights', zoo['caffemodel'], '--source-net', zoo['prototxt'],
            '--backbone', 'small', '--out', out]
    res = subprocess.run(args, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert 'coercing InnerProduct fc6' in res.stdout and 'dropping fc8' in res.stdout
    assert os.path.isfile(out)
    again = subprocess.run(args, capture_output=True, text=True)
    assert again.returncode == 1 and 'already exists' in again.stderr
    missing = subprocess.run(args[:3] + ['nope.caffemodel'] + args[4:-1] + [out + '2'],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and 'not found: nope.caffemodel' in missing.stderr


def test_caffe_train_weights(zoo, joint, tmp_path, caffe_tool):
    """`caffe train --weights OUT` on a stage-4 train net (Input blobs for the LMDBs)."""
    proto = _train_like(pose_normalized_net('train', Variant(holistic='fc7'), backbone='small',
                                            num_classes=5),
                        input_size=224, batch=1)
    net = _write_proto(tmp_path / 'train.prototxt', proto)
    (tmp_path / 'solver.prototxt').write_text(
        'train_net: "%s"\nbase_lr: 0\nlr_policy: "fixed"\nmax_iter: 1\ndisplay: 1\n'
        'snapshot_prefix: "%s"\nsolver_mode: CPU\n' % (net, tmp_path / 'snap'))
    res = subprocess.run([caffe_tool, 'train', '--solver', str(tmp_path / 'solver.prototxt'),
                          '--weights', joint['out']], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'Optimization Done' in res.stderr
    assert 'Finetuning from %s' % joint['out'] in res.stderr
    assert 'Ignoring source layer' not in res.stderr  # every saved layer is in this net
    # base_lr 0: the snapshot holds exactly the transplanted weights
    snap = caffe.Net(net, str(tmp_path / 'snap_iter_1.caffemodel'), caffe.TEST)
    np.testing.assert_array_equal(snap.params['cls_fc6'][0].data.reshape(ZOO_FC, -1), zoo['params']['fc6'][0])
    np.testing.assert_array_equal(snap.params['conv4_2'][1].data, zoo['params']['conv4_2'][1])
