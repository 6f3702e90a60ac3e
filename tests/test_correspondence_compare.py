"""`compare` (two nets on the same keypoints, paired tests) and
posenorm.correspondence.paired: hand-worked McNemar cases and transfer
outcomes, and the subcommand end to end on tiny birds with small nets."""
import json
import os
import shutil

import numpy as np
import pytest

from posenorm.correspondence import cli, dataset, paired, transfer
from posenorm.correspondence.commands import compare
from posenorm.nets.model_dir import training_record


def test_paired_test_counts_discordant_items_overall_and_per_type():
    a = [1, 1, 0, 0, 1, 0, 1]
    b = [1, 0, 1, 1, 1, 1, 1]
    types = [0, 0, 0, 1, 1, 1, 1]
    t = paired.paired_test(a, b, types, ['beak', 'tail'])
    assert (t['a_only'], t['b_only'], t['both'], t['neither'], t['items']) == (1, 3, 3, 0, 7)
    assert t['p'] == pytest.approx(2 * (1 + 4) / 16)  # n = 4, low = 1
    assert t['a'] == pytest.approx(4 / 7) and t['b'] == pytest.approx(6 / 7)
    beak, tail = t['per_type']
    assert (beak['name'], beak['a_only'], beak['b_only'], beak['items']) == ('beak', 1, 1, 3)
    assert (tail['a_only'], tail['b_only'], tail['p']) == (0, 2, 0.5)
    with pytest.raises(ValueError, match='differ in number'):
        paired.paired_test(a, b[:-1], types, ['beak', 'tail'])


def test_type_index_across_categories():
    names = {'cat': ('ear', 'nose'), 'bird': ('beak', 'tail', 'wing')}
    idx = paired.type_index([1, 0, 2], ['cat', 'bird', 'bird'], names)
    assert list(idx) == [4, 0, 2]
    assert paired.type_names(names)[4] == 'cat: nose'
    assert paired.type_names({'bird': names['bird']}) == ['beak', 'tail', 'wing']


def test_transfer_outcomes_judge_the_union_of_counted_instances():
    # one object, box 100 x 50 (threshold at alpha 0.1: 10 px), three keypoints:
    # 0 visible, A within, B off; 1 invisible, A predicts it (wrong), B does not;
    # 2 invisible, neither predicts it (counted by neither: not an item)
    gt = np.array([[[50, 20, 1], [0, 0, 0], [0, 0, 0]]], float)
    box = np.array([[0, 0, 100, 50]], float)
    pa = np.array([[[55, 20, 1], [30, 30, 1], [0, 0, 0]]], float)
    pb = np.array([[[50, 35, 1], [0, 0, 0], [0, 0, 0]]], float)
    (ra, rb), types = paired.transfer_outcomes([pa, pb], gt, box, 0.1, transfer.PCK_CONVENTION)
    assert list(types) == [0, 1]
    assert list(ra) == [True, False] and list(rb) == [False, True]


def _test(a_only, b_only, p, per_type=()):
    return dict(items=100, a=0.5, b=0.5 + (b_only - a_only) / 100, a_only=a_only,
                b_only=b_only, p=p, both=40, neither=60 - a_only - b_only,
                per_type=[dict(name=n, a=a, b=b, p=q, a_only=x, b_only=y)
                          for n, a, b, q, x, y in per_type])


def test_sentences_name_the_layers_and_the_parts_that_changed():
    parts = [('beak', 0.5, 0.8, 0.001, 1, 10), ('tail', 0.6, 0.3, 0.002, 9, 0),
             ('nape', 0.5, 0.6, 0.04, 2, 6)]  # nape: p above 0.05 / 3
    tests = {'conv5_1': _test(5, 5, 1.0), 'conv5_3': _test(2, 20, 1e-5, parts)}
    assert paired.verdict(tests['conv5_3']) == 'better'
    assert paired.verdict(_test(20, 2, 1e-5)) == 'worse'
    assert paired.parts_changed(tests['conv5_3']) == (['beak +30.0'], ['tail -30.0'])
    text = paired.describe('conv5_3', tests['conv5_3'], 'keypoint classification', 'B')
    assert 'better on beak +30.0; worse on tail -30.0' in text and 'nape' not in text
    assert 'p < 1e-4' in text and '20 right only with B, 2 only without' in text
    head = paired.headline(tests, 'Keypoint classification', 'A', 'B')
    assert head.startswith('Keypoint classification, B against A: better at conv5_3; no '
                           'different at conv5_1')


@pytest.fixture(scope='module')
def twin_models(small_model, tmp_path_factory):
    """A copy of the small model (same weights) and one with other weights."""
    root = tmp_path_factory.mktemp('twins')
    same = str(root / 'same')
    shutil.copytree(small_model, same)
    other = str(root / 'other')
    shutil.copytree(small_model, other)
    import caffe
    net = caffe.Net(os.path.join(other, 'deploy.prototxt'),
                    os.path.join(other, 'weights.caffemodel'), caffe.TEST)
    rng = np.random.RandomState(1)
    for layer in ('conv3', 'conv4'):
        w = net.params[layer][0].data
        w[...] = rng.randn(*w.shape) * np.std(w)
    net.save(os.path.join(other, 'weights.caffemodel'))
    record = os.path.join(other, 'weights.caffemodel.record.json')
    if os.path.exists(record):  # the copied record describes the old weights
        os.remove(record)
    return same, other


def _compare(small_model, against, tiny_birds, out, *extra):
    argv = ['compare', '--net', small_model, '--against', against, '--data', tiny_birds,
            '--input-size', '128', '--layers', 'conv3,conv4', '--out', out, '--quiet',
            '--C-grid', '0.1,10', '--folds', '2', '--k', '2', '--best', '1',
            '--iterations', '5'] + list(extra)
    assert cli.main(argv) == 0
    return json.load(open(os.path.join(out, 'results.json')))['compare']


def test_identical_nets_differ_nowhere(small_model, twin_models, tiny_birds, tmp_path):
    """The same weights under another name: every item alike, p = 1."""
    s = _compare(small_model, twin_models[0], tiny_birds, str(tmp_path / 'r'),
                 '--beside', small_model + ':conv2')
    a = os.path.basename(small_model)
    assert [n['label'] for n in s['nets']] == [a, 'same', a + ' (2)']
    c, g = s['classify'], s['align']
    assert set(c['rows']) == {a + ' conv3', a + ' conv4', 'same conv3', 'same conv4',
                              a + ' (2) conv2'}
    for layer in ('conv3', 'conv4'):
        t = c['tests'][layer]
        assert (t['a_only'], t['b_only'], t['p']) == (0, 0, 1.0)
        assert t['items'] == c['test_keypoints'] > 0
        assert c['rows'][a + ' ' + layer]['results'] == c['rows']['same ' + layer]['results']
        assert [t['p'] for t in g['tests'][layer]] == [1.0] * 3
        table = g['tables']['bird']['rows']
        assert table[a + ' ' + layer]['mean'] == table['same ' + layer]['mean']
    assert g['rows'][-1] == 'copy NN' and g['test'] == len(dataset.split(
        dataset.load(tiny_birds), 'test'))
    text = open(os.path.join(str(tmp_path / 'r'), 'README.md')).read()
    assert 'Two nets on the same keypoints' in text and 'better' not in text.split(
        'What changed where')[1]


def test_other_weights_change_the_items_and_markdown_block(small_model, twin_models, tiny_birds,
                                                           tmp_path):
    docs = tmp_path / 'doc.md'
    docs.write_text('intro\n%s\nSTALE BLOCK\n%s\nafter\n' % compare.MARKERS)
    s = _compare(small_model, twin_models[1], tiny_birds, str(tmp_path / 'r'),
                 '--steps', 'classify', '--markdown', str(docs))
    assert 'align' not in s
    t = s['classify']['tests']['conv4']
    assert t['a_only'] + t['b_only'] > 0  # other conv3/conv4 weights: other answers
    assert s['classify']['tests']['conv3']['items'] == t['items']
    # the other step alone: the classification of the same comparison is kept
    both = _compare(small_model, twin_models[1], tiny_birds, str(tmp_path / 'r'),
                    '--steps', 'align', '--markdown', str(docs))
    assert both['classify'] == s['classify'] and 'align' in both
    assert 'Keypoint transfer' in docs.read_text()
    # the same net named by its own weights file: the same items
    w = _compare(small_model, small_model, tiny_birds, str(tmp_path / 'w'), '--steps', 'classify',
                 '--against-weights', os.path.join(twin_models[1], 'weights.caffemodel'))
    assert w['nets'][1]['label'] == 'weights'
    assert w['classify']['tests']['conv4']['b_only'] == t['b_only']
    text = docs.read_text()
    assert text.startswith('intro\n') and text.endswith('after\n') and 'STALE BLOCK' not in text
    assert '### Two nets on the same keypoints' in text and 'Keypoint classification' in text


def test_bad_inputs_stop_before_work(small_model, twin_models, tiny_birds, tmp_path):
    out = str(tmp_path / 'r')
    docs = tmp_path / 'plain.md'
    docs.write_text('no markers\n')
    base = ['compare', '--net', small_model, '--data', tiny_birds, '--out', out, '--quiet']
    with pytest.raises(ValueError, match='plain.md: no .* markers'):
        cli.main(base + ['--against', twin_models[0], '--markdown', str(docs)])
    with pytest.raises(ValueError, match='--steps predict: choose from classify,align'):
        cli.main(base + ['--against', twin_models[0], '--steps', 'predict'])
    with pytest.raises(ValueError, match='unknown layer conv5_3'):
        cli.main(base + ['--against', twin_models[0], '--layers', 'conv5_3'])
    with pytest.raises(SystemExit):  # --against is required
        cli.main(base)


def test_training_record_of_a_model_in_a_run(small_model, tiny_birds, tmp_path):
    """A model exported as RUN/models/NAME: its run's records name the LMDB
    set, whose index files list the images read; test images are counted."""
    run = tmp_path / 'run'
    shutil.copytree(small_model, str(run / 'models' / 'm'))
    assert training_record(str(run / 'models' / 'm')) is None  # no records yet
    data = dataset.load(tiny_birds)
    names = {s: [os.path.join(*i.path.split(os.sep)[-2:]) for i in dataset.split(data, s)]
             for s in ('train', 'test')}
    lmdb = tmp_path / 'lmdb'
    lmdb.mkdir()
    header = '# key image_id label flipped width height name\n'
    rows = lambda ns: ''.join('%08d_%d %d 0 0 128 128 %s\n' % (i, i, i, n) for i, n in enumerate(ns))
    (lmdb / 'train_index.txt').write_text(header + rows(names['train'][1:]))
    (lmdb / 'val_index.txt').write_text(header + rows(names['train'][:1]))
    (lmdb / 'test_index.txt').write_text(header + rows(names['test']))
    (run / 'done').mkdir()
    (run / 'done' / 'stage1.json').write_text(json.dumps(dict(trained_on=dict(lmdb_dir=str(lmdb)),
                                                              finished=1.0)))
    (run / 'done' / 'stage2.started.json').write_text(json.dumps(dict(trained_on=dict(
        lmdb_dir=str(lmdb)))))  # a stage begun, not finished: not a record
    record = training_record(str(run / 'models' / 'm'))
    assert record['lmdb_dir'] == str(lmdb) and len(record['records']) == 1
    assert sorted(record['seen']['train'] + record['seen']['val']) == sorted(names['train'])
    seen = compare.seen_check(str(run / 'models' / 'm'), data)
    assert seen['test_images_seen'] == 0
    assert seen['test_images'] == seen['test_images_in_its_test_split'] == len(names['test'])
    (lmdb / 'val_index.txt').write_text(header + rows(names['test'][:2]))  # a leak
    assert compare.seen_check(str(run / 'models' / 'm'), data)['test_images_seen'] == 2
    snapshot = run / 'snapshots' / 'vgg16' / 'stage1_iter_10.caffemodel'
    snapshot.parent.mkdir(parents=True)
    snapshot.write_bytes(b'')
    assert training_record(str(snapshot))['lmdb_dir'] == str(lmdb)
