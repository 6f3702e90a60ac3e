"""Choices on val from cached features (posenorm.pose.selection): the early
stop and rate picked from val curves, the final solver scaled to train +
val, the val pass's net, and train + val caches joined without a pass."""
import os

import lmdb
import numpy as np
import pytest
from caffe.proto import caffe_pb2

from posenorm.pose import feature_cache, selection, stages
from posenorm.pose.nets import pose_normalized_net


def test_best_point_is_the_earliest_lowest_finite_loss():
    assert selection.best_point([(10, 2.0), (20, 1.0), (30, 1.0), (40, 3.0)]) == (20, 1.0)
    assert selection.best_point([(10, float('nan')), (20, 5.0)]) == (20, 5.0)
    assert selection.best_point([(10, float('inf'))]) is None


def test_choose_the_lowest_val_loss_and_refuse_all_diverged():
    cands = [selection.candidate_record(lr, {'test/loss_cls': curve}, 'loss_cls')
             for lr, curve in ((1.0, [(5, 0.9), (10, 0.7)]), (0.1, [(5, 0.8), (10, 0.6)]),
                               (10.0, [(5, float('nan'))]))]
    chosen = selection.choose(cands)
    assert (chosen['base_lr'], chosen['best_iteration']) == (0.1, 10)
    with pytest.raises(Exception, match='diverged'):
        selection.choose(cands[2:])


def test_final_solver_keeps_the_chosen_epochs_on_train_plus_val():
    base = caffe_pb2.SolverParameter(base_lr=1.0, stepsize=400, max_iter=1000)
    chosen = dict(base_lr=0.1, best_iteration=300)  # 3 epochs of 100 train images
    s = selection.final_solver(base, 'net', 'prefix', chosen, 100, 125, batch=1)
    assert (s.max_iter, s.stepsize) == (375, 500) and s.base_lr == pytest.approx(0.1)  # 3 epochs of 125
    assert not s.test_net and not s.HasField('test_interval')
    c = selection.candidate_solver(base, 'train', 'val', 'p', 0.1, 100, 25, batch=4)
    assert (c.test_interval, c.test_iter[0], c.test_net[0]) == (25, 7, 'val')


def test_val_pass_reads_the_val_split_with_the_same_layers():
    net = pose_normalized_net('train', stages.stage('frozen_joint_cbp').variant('small'),
                              backbone='small', lmdb_dir='/L')
    val = feature_cache.reading_split(net, 'train', 'val')
    sources = [l.data_param.source for l in val.layer if l.type == 'Data']
    assert sources == ['/L/val_images', '/L/val_keypoints']
    for a, b in zip(net.layer, val.layer):  # nothing else changes
        if a.type != 'Data':
            assert a == b
    with pytest.raises(ValueError, match='not a val LMDB'):
        feature_cache.reading_split(val, 'val', 'train') and feature_cache.reading_split(
            net, 'val', 'test')


def _cache(path, values):
    """{blob: LMDB} of float Datums 0..n-1, blobs 'a' (value) and 'b' (-value)."""
    out = {}
    os.makedirs(path)
    for blob, sign in (('a', 1), ('b', -1)):
        out[blob] = os.path.join(path, blob)
        with lmdb.open(out[blob], map_size=1 << 22) as env, env.begin(write=True) as txn:
            for i, v in enumerate(values):
                d = caffe_pb2.Datum(channels=1, height=1, width=1, float_data=[sign * v])
                txn.put(b'%08d' % i, d.SerializeToString())
    return out


def _read(path):
    with lmdb.open(path, readonly=True, lock=False) as env, env.begin() as txn:
        return [caffe_pb2.Datum.FromString(v).float_data[0] for _, v in txn.cursor()]


def test_concat_caches_keeps_blobs_aligned_and_every_record(tmp_path):
    train = _cache(str(tmp_path / 'train'), [1, 2, 3, 4])
    val = _cache(str(tmp_path / 'val'), [10, 20])
    both = feature_cache.concat_caches([train, val], str(tmp_path / 'both'), seed=0)
    a, b = _read(both['a']), _read(both['b'])
    assert sorted(a) == [1, 2, 3, 4, 10, 20] and b == [-x for x in a]
    assert a != [1, 2, 3, 4, 10, 20]  # shuffled: val is not all at the end
    again = feature_cache.concat_caches([train, val], str(tmp_path / 'again'), seed=0)
    assert _read(again['a']) == a


@pytest.mark.slow
def test_frozen_protocol_chooses_on_val_with_one_pass_per_image(tmp_path, caffe_tool):
    import caffe
    from posenorm.data import lmdb_data, synthetic
    from posenorm.pose.train import Run, train
    root = tmp_path / 'birds'
    synthetic.write_dataset(str(root / 'cub'), num_classes=3, per_class=12, size=64, seed=4,
                            progress=False)
    lmdb = str(root / 'lmdb')
    m = lmdb_data.build_lmdbs(str(root / 'cub'), lmdb, size=64, progress=False,
                              val_fraction=0.34)  # 2 of each class's 6 training images
    n_train, n_val = m['splits']['train']['count'], m['splits']['val']['count']
    # one trunk for every stage, as ImageNet weights give it
    proto = tmp_path / 'trunk.prototxt'
    proto.write_text(str(pose_normalized_net('deploy', stages.KEYPOINTS, backbone='small',
                                             input_size=64)))
    caffe.set_random_seed(0)
    trunk = str(tmp_path / 'trunk.caffemodel')
    caffe.Net(str(proto), caffe.TEST).save(trunk)
    logs = []
    run = Run(str(tmp_path / 'run'), 'small', lmdb, 3, caffe=caffe_tool, batch_size=2,
              progress=False, log=logs.append, iter_scale=0.02, imagenet_weights=trunk)
    train(run, list(stages.PROTOCOLS['frozen']))
    passes = run.feature_passes()
    # the trunk ran once over train and once over val, serving all five stages
    assert [(p['split'], p['images']) for p in passes] == [('train', n_train), ('val', n_val)]
    assert all(len(p['companions']) == 4 for p in passes)
    for s in stages.plan(stages.PROTOCOLS['frozen']):
        record = run.done_record(s.name)
        sel = record['selection']
        assert [c['base_lr'] for c in sel['candidates']][0] == pytest.approx(
            s.solver('small').base_lr)
        assert sel['final']['images'] == n_train + n_val == sel['train_images'] + sel['val_images']
        chosen = selection.choose(sel['candidates'])
        assert sel['chosen']['val_loss'] == chosen['best_val_loss']
        assert record['iterations'] == sel['final']['iterations']
