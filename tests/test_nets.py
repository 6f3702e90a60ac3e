"""The generated nets and solvers: checked-in files, shapes, forward/backward."""
import os
import subprocess
import sys

import numpy as np
import pytest

import caffe
from posenorm.nets.backbones import BACKBONES
from posenorm.pose import nets, solvers, stages
from posenorm.pose.variant import Variant

SMALL_TRAINED = list(stages.trained_nets('small'))


def test_checked_in_files_equal_generator_output(tmp_path, repo_root):
    subprocess.run([sys.executable, os.path.join(repo_root, 'tools', 'make_nets.py'),
                    '--out', str(tmp_path)], check=True, capture_output=True)
    for sub in ('prototxt', 'solvers'):
        made = sorted(os.path.relpath(os.path.join(d, f), tmp_path / sub)
                      for d, _, fs in os.walk(tmp_path / sub) for f in fs)
        ours = sorted(os.path.relpath(os.path.join(d, f), os.path.join(repo_root, sub))
                      for backbone in BACKBONES  # prototxt/alexnet/ comes from its own tool
                      for d, _, fs in os.walk(os.path.join(repo_root, sub, backbone)) for f in fs)
        assert made == ours, 'regenerate with tools/make_nets.py'
        for rel in made:
            with open(tmp_path / sub / rel) as a, open(os.path.join(repo_root, sub, rel)) as b:
                assert a.read() == b.read(), '%s/%s is stale: run tools/make_nets.py' % (sub, rel)


def test_geometry_from_coord_map():
    """vgg16 at 500 px: fc7 is 10x10, cell j at 111.5 + 32 j; conv5_3 at 7.5 + 16 j."""
    text = str(nets.pose_normalized_net('train', Variant(holistic='cbp'), backbone='vgg16'))
    assert 'stride: 32' in text and 'offset: 111.5' in text
    assert 'feature_stride: 16' in text and 'feature_offset: 7.5' in text


def _net(tmp_path, proto, weights=None):
    path = tmp_path / 'net.prototxt'
    path.write_text(str(proto))
    return caffe.Net(str(path), caffe.TRAIN if 'train' in proto.name else caffe.TEST)


@pytest.mark.parametrize('name', SMALL_TRAINED)
def test_small_nets_forward_backward(name, tmp_path, small_lmdb):
    caffe.set_random_seed(0)
    # small_lmdb's classes are too small for a val split: val nets read test
    setting = dict(lmdb_dir=small_lmdb, batch_size=2, num_classes=3, val_split='test')
    for phase in ('train', 'val'):
        proto = nets.make_net(phase, stages.trained_nets('small')[name], 'small', **setting)
        proto.name = phase
        net = _net(tmp_path, proto)
        out = net.forward()
        for key, value in out.items():
            assert np.all(np.isfinite(value)), (name, phase, key)
        if 'loss_kp' in out:
            assert out['loss_kp'] > 0
        if phase == 'train':
            net.backward()
            grads = [np.abs(p.diff).sum() for ps in net.params.values() for p in ps]
            assert any(g > 0 for g in grads)


def test_deploy_nets_outputs(tmp_path):
    for name, variant in stages.deploy_nets().items():
        proto = nets.pose_normalized_net('deploy', variant, backbone='small', num_classes=3)
        proto.name = 'deploy'
        net = _net(tmp_path, proto)
        net.blobs['data'].data[...] = np.random.RandomState(0).randn(
            *net.blobs['data'].data.shape)
        out = net.forward()
        if variant.classify:
            np.testing.assert_allclose(out['prob'].sum(1), 1, rtol=1e-5)
        if name.startswith('joint') or name == 'baseline_keypoint_features':
            locs = net.blobs['part_locations'].data
            assert locs.shape == (1, nets.NUM_KEYPOINTS, 3)
            assert np.all((locs[..., :2] >= 0) & (locs[..., :2] < 256))


def test_faithful_vgg16_joint_net_shapes(tmp_path):
    """The paper's net at 500x500, batch 1: instantiated, not trained."""
    proto = nets.pose_normalized_net('deploy', Variant(holistic='cbp'), backbone='vgg16')
    proto.name = 'deploy'
    net = _net(tmp_path, proto)
    shape = lambda b: net.blobs[b].data.shape
    assert shape('fc7') == (1, 4096, 10, 10)
    assert shape('kp_score') == (1, 15, 10, 10)
    assert shape('cls_conv5_3') == (1, 512, 32, 32)
    assert shape('parts') == (1, 15 * 512)
    assert shape('cbp') == (1, 5000, 1, 1)
    assert shape('cls_score') == (1, 200)
    assert shape('part_locations') == (1, 15, 3)


def test_solvers_reference_generated_nets(repo_root):
    for backbone in BACKBONES:
        for name in stages.trained_nets(backbone):
            s = solvers.make_solver(backbone, name, epoch_iters=100)
            assert os.path.exists(os.path.join(repo_root, s.train_net)), s.train_net
            assert os.path.exists(os.path.join(repo_root, s.test_net[0]))
            assert s.snapshot_prefix.startswith('snapshots/%s/' % backbone)


@pytest.mark.parametrize('name', list(stages.deploy_nets()))
def test_faithful_vgg16_deploy_nets_instantiate(name, tmp_path):
    """Every vgg16 deploy net at 500x500: the paper's 10x10 keypoint maps."""
    proto = nets.pose_normalized_net('deploy', stages.deploy_nets()[name], backbone='vgg16')
    proto.name = 'deploy'
    net = _net(tmp_path, proto)
    if stages.deploy_nets()[name].parts:  # the baselines without parts have none
        assert net.blobs['kp_score'].data.shape == (1, 15, 10, 10)
    if 'prob' in net.blobs:
        assert net.blobs['prob'].data.shape == (1, 200)
