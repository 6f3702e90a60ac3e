"""The staged training driver: a tiny real run, resume after a signal,
divergence, and the cached fixed-feature path against the uncached one."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import caffe
from posenorm.core import caffe_run, netgraph
from posenorm.pose import stages
from posenorm.pose.stages import plan
from posenorm.pose.train import Run, train

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tools')


def _run(tmp_path, small_lmdb, caffe_tool, name='run', **kwargs):
    return Run(str(tmp_path / name), 'small', small_lmdb, 3, caffe=caffe_tool,
               batch_size=2, progress=False, log=lambda *a: None, **kwargs)


def test_plan_orders_stages_by_their_inputs():
    names = [s.name for s in plan(['joint_cbp'])]
    assert names == ['keypoint_stage1', 'keypoint_stage2', 'joint_cbp_stage3',
                     'joint_cbp_stage4']
    assert [s.name for s in plan(['keypoint'])] == ['keypoint_stage1',
                                                            'keypoint_stage2']
    assert plan(['keypoint'])[0].is_cached('vgg16')  # frozen VGG trunk in stage 1


@pytest.fixture(scope='module')
def keypoint_run(tmp_path_factory, small_lmdb, caffe_tool):
    """Stages 1-2 of the small backbone, a few iterations each (real Caffe)."""
    run = _run(tmp_path_factory.mktemp('kp'), small_lmdb, caffe_tool, iter_scale=0.01)
    train(run, ['keypoint'])
    return run


def test_two_stage_run_end_to_end(keypoint_run):
    run = keypoint_run
    for stage in ('keypoint_stage1', 'keypoint_stage2'):
        record = run.done_record(stage)
        assert record and os.path.exists(record['weights'])
        assert np.isfinite(record['final_loss'])
        assert os.path.exists(run.path('logs', stage + '.log'))
    model = run.path('models', 'keypoint')
    assert os.path.exists(os.path.join(model, 'weights.caffemodel'))
    # A rerun skips finished stages.
    t0 = time.time()
    train(run, ['keypoint'])
    assert time.time() - t0 < 20


def test_resume_after_a_real_signal(tmp_path, small_lmdb, caffe_tool):
    out = tmp_path / 'resume'
    cmd = [sys.executable, os.path.join(TOOLS, 'train.py'), '--lmdb', small_lmdb,
           '--out', str(out), '--models', 'keypoint', '--batch-size', '2',
           '--iter-scale', '0.05', '--quiet', '--caffe', caffe_tool]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = out / 'logs' / 'keypoint_stage1.log'
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for the first periodic snapshot
        if (out / 'snapshots' / 'small').exists() and any(
                p.suffix == '.solverstate' for p in (out / 'snapshots' / 'small').iterdir()):
            break
        time.sleep(0.2)
    child.send_signal(signal.SIGTERM)
    output = child.communicate(timeout=60)[0].decode()
    assert child.returncode == 1, output
    assert 'interrupted' in output
    it, state = caffe_run.latest_snapshot(str(out / 'snapshots' / 'small' / 'keypoint_stage1'))
    assert state and 0 < it < 40
    assert not (out / 'done' / 'keypoint_stage1.json').exists()
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert 'resuming from iteration %d' % it in res.stdout
    assert (out / 'models' / 'keypoint' / 'weights.caffemodel').exists()
    text = log.read_text()
    assert 'Resuming from' in text  # Caffe's own line: restored the solverstate
    curves = caffe_run.parse_log(str(log))
    assert curves['loss'][-1][0] > it


def test_divergence_stops_without_a_model(tmp_path, caffe_tool):
    net = tmp_path / 'net.prototxt'
    net.write_text(
        'layer { name: "d" type: "DummyData" top: "x" top: "y" dummy_data_param {'
        ' shape { dim: 4 dim: 3 } shape { dim: 4 dim: 3 }'
        ' data_filler { type: "gaussian" std: 1 } data_filler { type: "gaussian" std: 1 } } }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "z" inner_product_param {'
        ' num_output: 3 weight_filler { type: "gaussian" std: 1 } } }\n'
        'layer { name: "loss" type: "EuclideanLoss" bottom: "z" bottom: "y" top: "loss" }\n')
    solver = tmp_path / 'solver.prototxt'
    solver.write_text('net: "%s"\nbase_lr: 1e30\nlr_policy: "fixed"\nmax_iter: 100\n'
                      'display: 1\nsnapshot: 0\nsnapshot_prefix: "%s"\n'
                      % (net, tmp_path / 'snap'))
    with pytest.raises(caffe_run.StageDiverged, match='diverged'):
        caffe_run.run_caffe_train(caffe_tool, str(solver), str(tmp_path / 'log'), 100,
                                  progress=False)
    assert not list(tmp_path.glob('snap_iter_*'))


def test_cached_stage_equals_uncached(tmp_path, keypoint_run, small_lmdb, caffe_tool):
    """No stochastic layer between cache and head: same weights either way."""
    stage = next(s for s in plan(['joint_cbp']) if s.name == 'joint_cbp_stage3')
    results = {}
    for cached in (True, False):
        run = _run(tmp_path, small_lmdb, caffe_tool, name='c%d' % cached,
                   iter_scale=0.01, use_cache=cached)
        run.prepare()
        os.makedirs(run.path('done'))
        for s in ('keypoint_stage1', 'keypoint_stage2'):
            os.symlink(keypoint_run.path('done', s + '.json'), run.path('done', s + '.json'))
        weights = run.run_stage(stage)
        net = caffe.Net(run.path('prototxt', 'small', 'joint_cbp_deploy.prototxt'), weights,
                        caffe.TEST)
        results[cached] = [p.data.copy() for p in net.params['cls_score']]
    # Float rounding of the two forward paths, amplified by the head's rate of
    # 1.0 over 15 SGD steps, reaches ~2e-5 in a few weights (seen on a loaded
    # machine); a cache holding wrong features moves them by 1e-2 and more.
    for a, b in zip(results[True], results[False]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_combined_init_is_made_again_after_its_source_is_retrained(tmp_path, keypoint_run,
                                                                    small_lmdb, caffe_tool):
    """Stage 3 starts from keypoint_stage2's trunk: a stage 3 init made before
    keypoint_stage2 was trained again is stale."""
    run = _run(tmp_path, small_lmdb, caffe_tool)
    run.prepare()
    os.makedirs(run.path('done'))
    for s in ('keypoint_stage1', 'keypoint_stage2'):
        os.symlink(keypoint_run.path('done', s + '.json'), run.path('done', s + '.json'))
    stage = stages.stage('joint_cbp_stage3')
    init = run.init_weights(stage)
    made = os.stat(init).st_ino  # written atomically: a new file each time
    assert run.init_weights(stage) == init and os.stat(init).st_ino == made  # reused
    later = os.path.getmtime(init) + 10
    os.utime(run.final_weights('keypoint_stage2'), (later, later))  # as a retrained stage's
    try:
        assert run.init_weights(stage) == init and os.stat(init).st_ino != made
        net = caffe.Net(run.path('prototxt', 'small', 'joint_cbp_stage3_train.prototxt'),
                        caffe.TEST, weights=init)
        source = caffe.Net(run.path('prototxt', 'small', 'keypoint_stage2_train.prototxt'),
                           caffe.TEST, weights=run.final_weights('keypoint_stage2'))
        np.testing.assert_array_equal(net.params['kp_score'][0].data,
                                      source.params['kp_score'][0].data)
    finally:
        os.utime(run.final_weights('keypoint_stage2'))


def test_classification_stream_starts_from_one_stream_imagenet_weights(
        tmp_path, keypoint_run, small_lmdb, caffe_tool):
    """ImageNet weights as published hold one stream (conv1_1 ...): stage 3's
    classification stream (cls_conv1_1 ...) starts from them too, not from
    its fillers, while the localization stream is keypoint_stage2's."""
    imagenet = keypoint_run.final_weights('keypoint_stage1')
    run = _run(tmp_path, small_lmdb, caffe_tool, imagenet_weights=imagenet)
    run.prepare()
    os.makedirs(run.path('done'))
    for s in ('keypoint_stage1', 'keypoint_stage2'):
        os.symlink(keypoint_run.path('done', s + '.json'), run.path('done', s + '.json'))
    init = run.init_weights(stages.stage('joint_cbp_stage3'))
    net = caffe.Net(run.path('prototxt', 'small', 'joint_cbp_stage3_train.prototxt'),
                    caffe.TEST, weights=init)
    one_stream = caffe.Net(run.path('prototxt', 'small', 'keypoint_stage2_train.prototxt'),
                           caffe.TEST, weights=imagenet)
    kp = caffe.Net(run.path('prototxt', 'small', 'keypoint_stage2_train.prototxt'),
                   caffe.TEST, weights=run.final_weights('keypoint_stage2'))
    for name in ('conv1_1', 'conv3_1'):
        np.testing.assert_array_equal(net.params['cls_' + name][0].data,
                                      one_stream.params[name][0].data)
        np.testing.assert_array_equal(net.params[name][0].data, kp.params[name][0].data)
    assert not np.array_equal(one_stream.params['conv3_1'][0].data, kp.params['conv3_1'][0].data)
    # a stage that starts from ImageNet alone, with a classification stream
    stage = stages.stage('partial_baseline_cbp_stage3')
    net = caffe.Net(run.train_net(stage), caffe.TEST, weights=run.init_weights(stage))
    cls = [n for n in net.params if n.startswith('cls_conv')]
    assert cls
    for name in cls:
        np.testing.assert_array_equal(net.params[name][0].data,
                                      one_stream.params[name[4:]][0].data)


def test_feature_pass_skips_the_localization_stream(tmp_path, small_lmdb, caffe_tool):
    """Stage 3 pools at ground-truth keypoints: its feature pass needs the
    classification trunk and the keypoint labels, not the heatmap net."""
    from posenorm.pose import feature_cache
    run = _run(tmp_path, small_lmdb, caffe_tool)
    run.prepare()
    path = run.path('prototxt', 'small', 'joint_cbp_stage3_train.prototxt')
    net, blobs, _, names, param = feature_cache.open_feature_net(path, 'cls_score')
    assert {'keypoints', 'cls_conv1_1', 'parts'} <= set(names)
    assert not {'conv1_1', 'kp_score', 'loss_kp'} & set(names)
    order = netgraph.layer_names(net)
    assert [n for n in order if n.startswith('data_') and n.endswith('_split')] and \
        all(n in names for n in order if n.startswith('data_') and n.endswith('_split'))
    assert names == [n for n in order if n in names]  # net order kept
    # falling back to the heatmap for invisible keypoints reads its values
    ct = next(l for l in param.layer if l.type == 'CoordinateTransfer')
    ct.coordinate_transfer_param.missing = ct.coordinate_transfer_param.ARGMAX
    assert 'kp_score' in netgraph.value_layers(net, param, blobs)


def _lmdb_floats(path):
    import lmdb
    from caffe.proto import caffe_pb2
    out = []
    with lmdb.open(path, readonly=True, lock=False) as env, env.begin() as txn:
        for _, value in txn.cursor():
            datum = caffe_pb2.Datum()
            datum.ParseFromString(value)
            out.append(np.array(datum.float_data, np.float32))
    return np.array(out)


def test_one_feature_pass_serves_the_stages_sharing_a_trunk(tmp_path, keypoint_run, small_lmdb,
                                                            caffe_tool):
    """The frozen fc7 baseline and both stage-3 nets start from the same
    classification trunk: one pass writes their caches, each equal to the
    cache of the stage's own pass; the keypoint-features baseline (parts
    from the localization stream) shares no weighted layer and is left."""
    from posenorm.pose import feature_cache
    by_name = stages.STAGES_BY_NAME
    names = ['baseline_fc7_frozen', 'joint_fc7_stage3', 'joint_cbp_stage3',
             'baseline_keypoint_features']
    run = _run(tmp_path, small_lmdb, caffe_tool)
    run.prepare()
    os.makedirs(run.path('done'))
    for s in ('keypoint_stage1', 'keypoint_stage2'):
        os.symlink(keypoint_run.path('done', s + '.json'), run.path('done', s + '.json'))
    assert [s.name for s in run._companions([by_name[n] for n in names])] == names
    jobs = [run._feature_job(by_name[n], run.init_weights(by_name[n])) for n in names]
    # every classification stream (the fc7 baseline's too, which has no
    # localization stream) starts from the trained localization trunk
    kp = caffe.Net(run.path('prototxt', 'small', 'keypoint_deploy.prototxt'), caffe.TEST,
                   weights=run.final_weights('keypoint_stage2'))
    for prototxt, weights, _, _ in jobs[:3]:
        net = caffe.Net(prototxt, caffe.TEST, weights=weights)
        np.testing.assert_array_equal(net.params['cls_conv3_3'][0].data,
                                      kp.params['conv3_3'][0].data)
    count = run.train_count()
    together = feature_cache.write_feature_caches(jobs, count)
    assert [r is not None for r in together] == [True, True, True, False]
    assert not os.path.exists(jobs[3][2])
    for name, (prototxt, weights, out, head), r in zip(names[:3], jobs, together):
        alone, _, _ = feature_cache.write_feature_cache(prototxt, weights,
                                                        str(tmp_path / 'alone' / name), count, head)
        assert sorted(alone) == sorted(r[0])
        for blob in alone:
            a, b = _lmdb_floats(alone[blob]), _lmdb_floats(r[0][blob])
            assert a.shape[0] == count and a.std() > 0
            np.testing.assert_array_equal(a, b)
    assert run._companions([by_name[n] for n in names]) == [by_name[names[3]]]


def test_cached_keypoint_head_trains_only_the_score_layer(tmp_path, small_lmdb, caffe_tool):
    """Stage 1 from cached conv5_3 maps + keypoints: the trunk stays as it was."""
    run = _run(tmp_path, small_lmdb, caffe_tool, iter_scale=0.02)
    run.prepare()
    weights = run.run_stage(stages.stage('keypoint_stage1')._replace(cached=True))
    init = run.path('init', 'keypoint_stage1.caffemodel')
    proto = run.path('prototxt', 'small', 'keypoint_deploy.prototxt')
    before = caffe.Net(proto, caffe.TEST, weights=init)
    after = caffe.Net(proto, caffe.TEST, weights=weights)
    np.testing.assert_array_equal(before.params['conv3_1'][0].data, after.params['conv3_1'][0].data)
    assert np.abs(before.params['kp_score'][0].data - after.params['kp_score'][0].data).max() > 0
    assert os.path.isdir(run.path('cache', 'keypoint_stage1', 'features', 'keypoints'))


@pytest.mark.slow
def test_every_vgg16_stage_trains(tmp_path_factory, caffe_tool):
    """The faithful nets through the driver: every stage of every model, one
    iteration each, at 500x500 on two images (minutes on this CPU)."""
    from posenorm.data import lmdb_data, synthetic
    root = tmp_path_factory.mktemp('vgg16')
    synthetic.write_dataset(str(root / 'cub'), num_classes=2, per_class=2, size=96, seed=3,
                            progress=False)
    lmdb_data.build_lmdbs(str(root / 'cub'), str(root / 'lmdb'), size=500, progress=False)
    logs = []
    run = Run(str(root / 'run'), 'vgg16', str(root / 'lmdb'), 2, caffe=caffe_tool,
              progress=False, log=logs.append, iter_scale=1e-4, test_iter=1)
    dirs = train(run)
    assert len(dirs) == 7
    for name in ('joint_fc7_stage3', 'joint_cbp_stage3'):  # the trunk ran once for them
        assert any(l.startswith('[train] %s: ' % name) and l.endswith(
            'features cached in the same pass (the trunk it shares with baseline_fc7_frozen '
            'ran once)') for l in logs)
    for stage in plan():
        assert run.done_record(stage.name)['iterations'] == 1


def test_part_nets_stages_and_their_fused_model(tmp_path, keypoint_run, small_lmdb, caffe_tool):
    """Section 3.6 through the driver: part nets start from the keypoint
    trunk, the fused model from the three sources with only a new classifier
    trained, and its deploy net cuts the crops at its own predictions."""
    from posenorm.pose.predict import Predictor, preprocess
    from posenorm.data.part_crops import crop, crop_boxes
    from posenorm.data.coords import from_input_coords
    from PIL import Image
    run = _run(tmp_path, small_lmdb, caffe_tool, iter_scale=0.01)
    run.prepare()
    os.makedirs(run.path('done'))
    for s in ('keypoint_stage1', 'keypoint_stage2'):
        os.symlink(keypoint_run.path('done', s + '.json'), run.path('done', s + '.json'))
    [model] = train(run, ['joint_cbp_partnets'])
    kp2 = caffe.Net(run.path('prototxt', 'small', 'keypoint_deploy.prototxt'), caffe.TEST,
                    weights=run.final_weights('keypoint_stage2'))
    part_init = caffe.Net(run.path('prototxt', 'small', 'part_head_val.prototxt'), caffe.TEST,
                          weights=run.path('init', 'part_head.caffemodel'))
    np.testing.assert_array_equal(part_init.params['head_conv4_1'][0].data,
                                  kp2.params['conv4_1'][0].data)
    deploy = run.path('prototxt', 'small', 'joint_cbp_partnets_deploy.prototxt')
    fused = caffe.Net(deploy, caffe.TEST, weights=run.final_weights('joint_cbp_partnets'))
    joint = caffe.Net(run.path('prototxt', 'small', 'joint_cbp_deploy.prototxt'), caffe.TEST,
                      weights=run.final_weights('joint_cbp_stage4'))
    head = caffe.Net(run.path('prototxt', 'small', 'part_head_val.prototxt'), caffe.TEST,
                     weights=run.final_weights('part_head'))
    np.testing.assert_array_equal(fused.params['cls_conv2_1'][0].data, joint.params['cls_conv2_1'][0].data)
    np.testing.assert_array_equal(fused.params['head_fc7'][0].data, head.params['head_fc7'][0].data)
    assert fused.params['cls_score'][0].data.shape[1] > joint.params['cls_score'][0].data.shape[1]
    # Two passes (Predictor) = one pass with the crops cut at the first pass's keypoints.
    cub = os.path.join(os.path.dirname(small_lmdb), 'cub')
    path = next(os.path.join(r, f) for r, _, fs in os.walk(os.path.join(cub, 'images')) for f in fs)
    r = Predictor(model).predict(path)
    net = Predictor(model).net
    with Image.open(path) as im:
        original = im.convert('RGB')
    kp = r['keypoints']
    boxes, _ = crop_boxes(kp[None], run.manifest['part_names'], [original.size])
    net.blobs['data'].data[...] = preprocess(r['input'])
    for part in ('head', 'body'):
        net.blobs[part + '_data'].data[...] = preprocess(crop(original, boxes[part][0], 224))
    net.forward()
    np.testing.assert_allclose(net.blobs['prob'].data[0], r['prob'], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(from_input_coords(net.blobs['part_locations'].data[0, :, :2],
                                                 original.size, run.input_size), kp[:, :2])
    assert r['oracle_prob'] is None and abs(r['prob'].sum() - 1) < 1e-5


def test_start_outputs_are_the_last_attempts_first_iteration():
    """A log kept across attempts holds each attempt's iteration 0: the
    record's start is the attempt that trained the final weights."""
    from posenorm.pose.train import start_outputs
    curves = {'train/loss_cls': [(0, 1.4), (20, 0.8), (0, 0.05), (20, 0.04)],
              'train/loss_kp': [(0, 39.0), (20, 20.0)], 'val/loss_cls': [(0, 3.0)],
              'train/empty': [(20, 1.0)]}
    assert start_outputs(curves) == {'loss_cls': 0.05, 'loss_kp': 39.0}
