"""The partial fine-tuning protocol (issue 13 part 3): its stages in order,
nets whose streams share one fixed trunk up to the cache layer, the layers
it trains from the trunk cache exactly those above it, and training from the
cache equal to training the full net."""
import os

import numpy as np
import pytest

import caffe
from caffe import layers as L
from posenorm.nets.backbones import BACKBONES, trunk
from posenorm.pose import feature_cache, report, solvers, stages
from posenorm.pose.nets import pose_normalized_net, trunk_cache_net
from posenorm.pose.train import Run, train
from posenorm.pose.variant import Variant

PARTIAL = ['partial_keypoint_stage1', 'partial_keypoint_stage2', 'partial_joint_cbp_stage3',
           'partial_joint_cbp_stage4', 'partial_baseline_cbp_stage3', 'partial_baseline_cbp_ft',
           'partial_baseline_kpfeat_stage3', 'partial_baseline_kpfeat_ft']


def _net(name, backbone='vgg16', cache_layer=None, phase='train'):
    variant = stages.for_run(stages.stage(name).variant(backbone), cache_layer, 'conv5_3')
    return pose_normalized_net(phase, variant, backbone=backbone, lmdb_dir='/x')


def test_partial_plan_has_the_papers_stages_in_order():
    assert [s.name for s in stages.plan(stages.PROTOCOLS['partial'])] == PARTIAL
    assert stages.PROTOCOLS['partial'] == ('baseline_cbp_partial', 'joint_cbp_partial',
                                           'baseline_keypoint_features_partial')
    # the fine-tuning stages get the stated budget: two epochs of the run's
    # actual training set (make_solver counts them from its size)
    for name in ('partial_keypoint_stage2', 'partial_joint_cbp_stage4', 'partial_baseline_cbp_ft',
                 'partial_baseline_kpfeat_ft'):
        assert stages.stage(name).solver('vgg16').epochs
        assert stages.stage(name).solver('vgg16').max_iter == stages.PARTIAL_EPOCHS
        s = solvers.make_solver('vgg16', name, epoch_iters=625)
        assert s.max_iter == 625 * stages.PARTIAL_EPOCHS
    with pytest.raises(ValueError, match='epochs'):
        solvers.make_solver('vgg16', 'frozen_keypoint')
    # heads on fixed features as under the frozen protocol, so the two compare
    assert stages.stage('partial_keypoint_stage1').solver('vgg16') == \
        stages.stage('frozen_keypoint').solver('vgg16')
    assert stages.stage('partial_joint_cbp_stage3').solver('vgg16') == \
        stages.stage('frozen_joint_cbp').solver('vgg16')
    # other protocols' plans are unchanged by the new entries
    assert not {s.name for s in stages.plan()} & set(PARTIAL)
    assert stages.deploy_nets()['joint_cbp_partial_oracle'] == Variant(
        shared_upto='pool4', part_layer='conv5_3', holistic='cbp', oracle=True)


@pytest.mark.parametrize('cache_layer', [None, 'pool3'])
def test_partial_nets_share_a_fixed_trunk_and_train_exactly_what_is_above(cache_layer):
    split = int((cache_layer or stages.PARTIAL_CACHE)[4:])
    lower = [l.name for l in trunk_cache_net('vgg16', upto=cache_layer or 'pool4').layer
             if l.type != 'Data']
    for name in PARTIAL:
        net = _net(name, cache_layer=cache_layer)
        layers = {l.name: l for l in net.layer}
        # one trunk below the cut, fixed, unprefixed; no fc6/fc7 (conv-only weights)
        assert all(n in layers for n in lower)
        assert all(p.lr_mult == 0 for n in lower for p in layers[n].param)
        assert not [n for n in layers if 'fc6' in n or 'fc7' in n]
        assert not [n for n in layers if n.startswith('cls_conv%d' % split)]
        above = [l.name for l in feature_cache.layers_above(net, cache_layer or 'pool4')]
        assert above == [l.name for l in net.layer if l.type != 'Data' and l.name not in lower]
        blocks = {n.replace('cls_', '').split('_')[0] for n in above if 'conv' in n}
        assert blocks <= {'conv%d' % b for b in range(split + 1, 6)}, blocks
    stage4 = _net('partial_joint_cbp_stage4', cache_layer=cache_layer)
    assert 'cls_conv%d_1' % (split + 1) in [l.name for l in stage4.layer]
    learning = {l.name for l in stage4.layer if l.param and l.param[0].lr_mult > 0}
    assert learning == {l.name for l in feature_cache.layers_above(stage4, cache_layer or 'pool4')
                        if l.param and l.type != 'CompactBilinear'}


def test_partial_rejects_a_cut_that_is_not_a_pool_layer(tmp_path):
    with pytest.raises(ValueError, match='pool1 ... pool4'):
        Variant(shared_upto='conv4_3')
    with pytest.raises(ValueError, match='inside the trunk shared up to pool4'):
        pose_normalized_net('train', Variant(shared_upto='pool4'), backbone='small',
                            lmdb_dir='/x')


def _trunk(tmp_path):
    """Both streams with one trunk's weights, as tools/surgery.py gives
    ImageNet's (fillers would differ per net)."""
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 64, 64]))
    trunk(n, n.data, BACKBONES['small'], upto='conv5_3')
    trunk(n, n.pool4, BACKBONES['small'], prefix='cls_', first_block=5, upto='conv5_3')
    proto = tmp_path / 'trunk.prototxt'
    proto.write_text(str(n.to_proto()))
    caffe.set_random_seed(0)
    net = caffe.Net(str(proto), caffe.TEST)
    for i in (1, 2, 3):
        for a, b in zip(net.params['conv5_%d' % i], net.params['cls_conv5_%d' % i]):
            b.data[...] = a.data
    path = str(tmp_path / 'trunk.caffemodel')
    net.save(path)
    return path


@pytest.mark.slow
def test_partial_stages_from_the_cache_equal_the_full_net(tmp_path, small_lmdb, caffe_tool,
                                                          monkeypatch):
    # a rate at which the few test iterations move the weights far beyond
    # the tolerance (the real budget's 1e-5 would not)
    for name in PARTIAL:
        s = stages.stage(name)
        monkeypatch.setitem(stages.STAGES_BY_NAME, name, s._replace(
            solvers=dict(s.solvers, small=s.solvers['small']._replace(type='Adam', base_lr=1e-3))))
    trunk = _trunk(tmp_path)
    weights, logs = {}, []
    for cached in (True, False):
        run = Run(str(tmp_path / ('c%d' % cached)), 'small', small_lmdb, 3, caffe=caffe_tool,
                  batch_size=2, progress=False, log=logs.append, iter_scale=0.01,
                  imagenet_weights=trunk, use_cache=cached)
        train(run, list(stages.PROTOCOLS['partial']))
        weights[cached] = {name: run.final_weights(name) for name in PARTIAL}
        if cached:
            assert sum('trunk cache: pool4' in l for l in logs) == 1, logs  # one pass
            assert [l for l in logs if 'features cached in the same pass' in l]
    full = str(tmp_path / 'c1' / 'prototxt' / 'small' / '%s_train.prototxt')
    moved = 0
    for name in PARTIAL:
        a = caffe.Net(full % name, caffe.TEST, weights=weights[True][name])
        b = caffe.Net(full % name, caffe.TEST, weights=weights[False][name])
        start = caffe.Net(full % name, caffe.TEST, weights=trunk)
        for layer in a.params:
            for x, y, z in zip(a.params[layer], b.params[layer], start.params[layer]):
                # float rounding of the two forward paths, through Adam's steps
                np.testing.assert_allclose(x.data, y.data, rtol=1e-3, atol=1e-4,
                                           err_msg='%s %s' % (name, layer))
                if layer.startswith(('conv5', 'cls_conv5')):
                    moved = max(moved, float(np.abs(x.data - z.data).max()))
        # the fixed trunk stays ImageNet's
        for layer in ('conv1_1', 'conv4_3'):
            np.testing.assert_array_equal(a.params[layer][0].data, start.params[layer][0].data)
    assert moved > 1e-3  # the conv5 blocks did train


def test_partial_demo_refuses_a_random_trunk(tmp_path, repo_root, capsys):
    """The partial protocol keeps the trunk below pool4 fixed: without ImageNet
    weights (the small backbone has none) demo.py refuses before any work,
    instead of labelling heads on random filters "partial fine-tuning"."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('demo', os.path.join(repo_root, 'tools', 'demo.py'))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    assert demo.main(['--protocol', 'partial', '--synthetic-classes', '3', '--per-class', '4',
                      '--work', str(tmp_path / 'work'), '--out', str(tmp_path / 'report')]) == 1
    assert 'fixed ImageNet trunk' in capsys.readouterr().err
    assert not (tmp_path / 'work').exists()


def _model(label, acc, interval, oracle=None, pck=None, right=None):
    """A model's results: accuracy `acc` over 10 images, `right` the ids of
    those it gets right (for the paired tests)."""
    def c(a, i, right=right):
        right = right if right is not None else range(int(round(a * 10)))
        return dict(accuracy=a, accuracy_interval=i, mean_per_class_accuracy=a, images=10,
                    per_image=dict(image_ids=list(range(10)),
                                   correct=[int(k in right) for k in range(10)]))
    return dict(label=label, classification=c(acc, interval),
                oracle_classification=oracle and c(*oracle, right=None),
                pck=pck and dict(alphas=[0.02, 0.05, 0.08, 0.1], mean=pck))


def test_both_protocols_side_by_side_from_their_results():
    frozen = dict(images=10, image_ids=[1, 2], models=dict(
        baseline_cbp_frozen=_model('CB frozen', 0.8, (0.49, 0.94)),
        joint_cbp_frozen=_model('Parts frozen', 0.8, (0.49, 0.94), (0.9, (0.6, 0.98)),
                                [0.05, 0.2, 0.4, 0.5], right=[0, 1, 2, 3, 4, 5, 8, 9])))
    partial = dict(images=10, image_ids=[1, 2], models=dict(
        baseline_cbp_partial=_model('CB partial', 0.0, (0.0, 0.28)),
        joint_cbp_partial=_model('Parts partial', 0.7, (0.4, 0.89), (0.9, (0.6, 0.98)),
                                 [0.1, 0.3, 0.6, 0.7])))
    rows = report.protocol_rows(frozen)
    # the same accuracy, discordant on 4 images (2 each way): p = 1
    assert list(rows) == ['frozen'] and 'does not measurably help' in rows['frozen']['verdict']
    assert 'only under the first on 2, only under the second on 2, p = 1.000' in \
        rows['frozen']['verdict']
    partial['comparison'] = dict(reports=['reports/demo_frozen/results.json'], protocols=dict(
        frozen=dict(rows['frozen'], image_ids=[1, 2])))
    text = '\n'.join(report.comparison_section(partial))
    assert '| frozen | Parts frozen | 80.00% | [49.0, 94.0] | 80.00% | 50.00% |' in text
    assert '| partial | Parts partial | 70.00% | [40.0, 89.0] | 70.00% | 70.00% |' in text
    # 7 right only with parts, none the other way: p = 2 / 2^7
    assert '- partial: pose normalization helps: parts at predicted keypoints +70.00 points, ' \
        'better (exact McNemar on the same 10 images: right only under the first on 7, only ' \
        'under the second on 0, p = 0.016)' in text
    # protocol against protocol, row by row, on the same images
    assert '- partial vs frozen, whole image: 0.00% [0.0, 28.0] vs 80.00% [49.0, 94.0]: worse' in text
    # another protocol's report on other test images is not set beside this one
    partial['comparison']['protocols']['frozen']['image_ids'] = [3]
    assert report.comparison_section(partial) == []


def test_cost_section_states_the_measured_cost():
    cost = dict(cache_layer='pool4', stage='partial_joint_cbp_stage4', iterations=2, batch_size=1,
                full_ms=8000.0, above_ms=1000.0,
                trunk_pass=dict(layer='pool4', images=300, seconds=360.0, shape=[512, 14, 14]),
                stages=[dict(stage='partial_keypoint_stage1', iterations=3000, seconds=400.0,
                             cached='head'),
                        dict(stage='partial_keypoint_stage2', iterations=600, seconds=300.0,
                             cached='above pool4')])
    text = '\n'.join(report.cost_section(cost))
    assert '512x14x14 per image) over 300 training images, 360 s (1.20 s per image)' in text
    assert 'the full net 8000 ms, from the trunk cache 1000 ms (8.0x less)' in text
    assert '| partial_keypoint_stage2 | above pool4 | 600 | 300 | 0.500 |' in text
    assert 'Training in all: 700 s' in text
    assert report.cost_section(None) == []
