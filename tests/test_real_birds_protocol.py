"""The frozen protocol (issue 13): its stages train heads only, one feature
pass serves all of them, its nets hold no fc6/fc7, its joint model carries
the keypoint head of one stage and the classifier of another, and the
evaluation's shared pass gives exactly the unshared numbers."""
import os

import numpy as np
import pytest

import caffe
from posenorm.core import class_metrics
from posenorm.pose import stages
from posenorm.pose.evaluate import evaluate_models
from posenorm.pose.nets import pose_normalized_net
from posenorm.pose.train import Run, train


def test_frozen_protocol_plan_and_nets():
    frozen = stages.PROTOCOLS['frozen']
    assert [s.name for s in stages.plan(frozen)] == ['frozen_joint_cbp', 'frozen_keypoint',
                                                     'baseline_cbp_frozen', 'frozen_joint_avg',
                                                     'baseline_avg_frozen']
    assert all(s.cached and s.needs() == () for s in stages.plan(frozen))
    # the default plan (the synthetic demo's) is unchanged by the new entries
    assert not {s.name for s in stages.plan()} & {s.name for s in stages.plan(frozen)}
    with pytest.raises(ValueError, match='unknown model'):
        stages.plan(['nope'])
    for name in ('frozen_joint_cbp', 'frozen_keypoint', 'baseline_cbp_frozen',
                 'frozen_joint_avg', 'baseline_avg_frozen'):
        variant = stages.for_run(stages.stage(name).variant('vgg16'), score_from='conv5_3')
        net = pose_normalized_net('train', variant, backbone='vgg16', lmdb_dir='/x')
        layers = [l.name for l in net.layer]
        assert not [l for l in layers if 'fc6' in l or 'fc7' in l or l.startswith('cls_conv')], layers
        assert 'conv5_3' in layers


def test_accuracy_interval():
    lo, hi = class_metrics.accuracy_interval(0.8, 250)
    assert lo < 0.8 < hi and 0.04 < 0.8 - lo < 0.06 and 0.04 < hi - 0.8 < 0.06
    assert class_metrics.accuracy_interval(1.0, 10)[1] == pytest.approx(1.0) and class_metrics.accuracy_interval(0.0, 10)[0] == pytest.approx(0.0)
    assert class_metrics.accuracy_interval(1.0, 10)[0] < 0.8
    assert class_metrics.accuracy_interval(0.5, 0) == (None, None)


def _predictions(report, name):
    with np.load(os.path.join(report, 'predictions_%s.npz' % name)) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.slow
def test_frozen_protocol_end_to_end_one_pass(tmp_path, small_lmdb, caffe_tool):
    # one trunk for every stage, as ImageNet weights give it (fillers would
    # differ per net: each Data layer draws from Caffe's RNG)
    proto = tmp_path / 'trunk.prototxt'
    proto.write_text(str(pose_normalized_net('deploy', stages.KEYPOINTS, backbone='small')))
    caffe.set_random_seed(0)
    trunk = str(tmp_path / 'trunk.caffemodel')
    caffe.Net(str(proto), caffe.TEST).save(trunk)
    logs = []
    run = Run(str(tmp_path / 'run'), 'small', small_lmdb, 3, caffe=caffe_tool, batch_size=2,
              progress=False, log=logs.append, iter_scale=0.01, imagenet_weights=trunk)
    dirs = train(run, list(stages.PROTOCOLS['frozen']))
    same_pass = [l for l in logs if 'features cached in the same pass' in l]
    assert len(same_pass) == 4, logs
    # the joint model: keypoint head of frozen_keypoint, classifier of frozen_joint_cbp
    joint = caffe.Net(os.path.join(dirs[1], 'deploy.prototxt'), caffe.TEST,
                      weights=os.path.join(dirs[1], 'weights.caffemodel'))
    kp = caffe.Net(run.path('prototxt', 'small', 'frozen_keypoint_train.prototxt'), caffe.TEST,
                   weights=run.final_weights('frozen_keypoint'))
    cls = caffe.Net(run.path('prototxt', 'small', 'frozen_joint_cbp_train.prototxt'), caffe.TEST,
                    weights=run.final_weights('frozen_joint_cbp'))
    assert np.array_equal(joint.params['kp_score'][0].data, kp.params['kp_score'][0].data)
    assert np.array_equal(joint.params['cls_score'][0].data, cls.params['cls_score'][0].data)
    cub_dir = os.path.join(os.path.dirname(small_lmdb), 'cub')
    alone = evaluate_models(dirs, cub_dir, str(tmp_path / 'alone'), progress=False, figure_images=2)
    shared = evaluate_models(dirs, cub_dir, str(tmp_path / 'shared'), progress=False, figure_images=2,
                             share=True)
    name = 'joint_cbp_frozen'
    assert shared['models'][name]['shared_pass_with'] == 'baseline_cbp_frozen'
    for model in alone['models']:
        a, b = _predictions(str(tmp_path / 'alone'), model), _predictions(str(tmp_path / 'shared'), model)
        assert sorted(a) == sorted(b)
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert shared['models'][name]['oracle_classification'] is not None


def _demo(repo_root):
    import importlib.util
    spec = importlib.util.spec_from_file_location('demo', os.path.join(repo_root, 'tools', 'demo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_protocol_and_classes_options(repo_root, capsys):
    demo = _demo(repo_root)
    with pytest.raises(SystemExit):
        demo.main(['--classes', '1-3'])  # class ids need a real dataset
    assert '--classes needs --data' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demo.main(['--protocol', 'frozen', '--models', 'nope'])
    assert 'unknown nope' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demo.main(['--protocol', 'thawed'])
    assert 'invalid choice' in capsys.readouterr().err
